"""The numbers parity is judged on: per head, the file's outputs against the reference's (PyTorch's, or
another runtime's) and, where labels are given, both against the labels.

Relative error (max abs / max |reference|), mean cosine similarity and SQNR (dB) for every head;
top-1 agreement and accuracy (classification), MAE (regression), mAP and LWLRAP (multilabel), for the
file and for the reference. :mod:`edgekit.export.verify`, the web bundle's check
(:mod:`edgekit.export.web`) and the end-to-end check (:mod:`edgekit.export.end_to_end`) all compare
through this module; the gates (:mod:`edgekit.export.gates`) judge what it returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.card import HeadSpec, ModelCard
from edgekit.metrics import head_metrics
from edgekit.runtime.predictor import softmax


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float | None:
    """Signal-to-quantization-noise ratio (dB) of ``out`` against ``ref``; ``None`` when they are equal."""
    noise = float(((np.asarray(out, np.float64) - ref) ** 2).sum())
    return float(10 * np.log10((np.asarray(ref, np.float64) ** 2).sum() / noise)) if noise > 0 else None


def compare_outputs(card: ModelCard, ref: dict[str, np.ndarray], out: dict[str, np.ndarray],
                    targets: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """Per-head parity statistics of ``out`` against ``ref`` (and accuracy against ``targets``)."""
    result = {}
    for head in card.heads:
        a = ref[head.name].reshape(len(ref[head.name]), -1).astype(np.float64)
        b = out[head.name].reshape(len(out[head.name]), -1).astype(np.float64)
        if card.provenance.get("outputs_activated") and head.kind == "classification":
            a = softmax(a)  # the file gives probabilities: compare like with like
        diff = np.abs(a - b)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-30), 1.0)
        stats: dict[str, Any] = {"max_abs": float(diff.max()), "rel": float(diff.max() / max(np.abs(a).max(), 1e-12)),
                                 "cosine": float(cos.mean()),
                                 # signal-to-quantization-noise ratio of the outputs (dB): unlike top-1
                                 # agreement, it means something for a model that predicts one class everywhere
                                 "sqnr_db": sqnr_db(a, b)}
        if head.kind == "classification":
            stats["top1_agreement"] = float((a.argmax(1) == b.argmax(1)).mean())
            if targets is not None and head.name in targets:
                y = targets[head.name]
                valid = y >= 0
                stats["accuracy"] = float((b.argmax(1)[valid] == y[valid]).mean())
                stats["reference_accuracy"] = float((a.argmax(1)[valid] == y[valid]).mean())
        elif head.kind == "regression" and targets is not None and head.name in targets:
            y = targets[head.name].reshape(len(b), -1).astype(np.float64)
            if y.shape[1] != b.shape[1]:
                raise ValueError(f"head '{head.name}' gives {b.shape[1]} values per input but its labels have "
                                 f"{y.shape[1]}")
            valid = ~np.isnan(y)  # every output column that has a label
            if valid.any():
                stats["mae"] = float(np.abs(b - y)[valid].mean())
                stats["reference_mae"] = float(np.abs(a - y)[valid].mean())
        elif head.kind == "multilabel" and targets is not None and head.name in targets:
            stats.update(_ranking(targets[head.name], a, b))
        result[head.name] = stats
    return result


def _ranking(truth: np.ndarray, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """mAP and LWLRAP of the file's and PyTorch's multilabel scores (logits rank like probabilities)."""
    spec = HeadSpec("h", "multilabel", classes=[str(i) for i in range(truth.shape[1])])
    mine, theirs = head_metrics(spec, out, truth), head_metrics(spec, ref, truth)
    stats = {}
    for key in ("map", "lwlrap"):
        if mine.get(key) is not None and theirs.get(key) is not None:
            stats[key], stats[f"reference_{key}"] = float(mine[key]), float(theirs[key])
    return stats
