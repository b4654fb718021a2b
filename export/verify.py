"""Parity: does the exported file give the answers the PyTorch model gives, on real images?

Each file is opened with :func:`edgekit.runtime.load` — the same code that runs on the device —
and fed the validation images the PyTorch model sees (same preprocessed tensors). Per head: max
abs difference, relative error (max abs / max |reference|), mean cosine similarity, SQNR (dB), and
against the labels: top-1 agreement and accuracy (classification), mAP and LWLRAP (multilabel), MAE
(regression), for the file and for PyTorch. Each file is then judged by the gate of the precision
that ran (:mod:`edgekit.export.gates`): its own precision, or the one its runtime chose (OpenVINO
runs an FP32 file in bf16 on AMX CPUs). CoreML files are checked for structure on Linux (prediction
needs macOS) and numerically on macOS.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.card import HeadSpec, ModelCard
from edgekit.export.gates import GATES, gate_for, judge
from edgekit.runtime.predictor import softmax

FP32_TOLERANCE = GATES["fp32"].max_rel
RAN = {"f32": "fp32", "fp32": "fp32", "f16": "fp16", "fp16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "int8",
       "int8": "int8"}  # what a backend says ran -> the gate's precision


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
            y = targets[head.name].reshape(-1)
            valid = ~np.isnan(y)
            stats["mae"] = float(np.abs(b[valid, 0] - y[valid]).mean())
            stats["reference_mae"] = float(np.abs(a[valid, 0] - y[valid]).mean())
        elif head.kind == "multilabel" and targets is not None and head.name in targets:
            stats.update(_ranking(targets[head.name], a, b))
        result[head.name] = stats
    return result


def _ranking(truth: np.ndarray, ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """mAP and LWLRAP of the file's and PyTorch's multilabel scores (logits rank like probabilities)."""
    from edgekit.train.metrics import head_metrics

    spec = HeadSpec("h", "multilabel", classes=[str(i) for i in range(truth.shape[1])])
    mine, theirs = head_metrics(spec, out, truth), head_metrics(spec, ref, truth)
    stats = {}
    for key in ("map", "lwlrap"):
        if mine.get(key) is not None and theirs.get(key) is not None:
            stats[key], stats[f"reference_{key}"] = float(mine[key]), float(theirs[key])
    return stats


def verify_file(path: str | Path, reference: dict[str, np.ndarray], x: np.ndarray,
                targets: dict[str, np.ndarray] | None, source: ModelCard,
                overrides: dict[str, float | None] | None = None) -> dict[str, Any]:
    """Run ``path`` through the edgekit runtime on ``x``, compare with ``reference`` and judge it.

    ``x`` is the NCHW float32 batch the PyTorch model saw, normalized as ``source`` (the
    checkpoint's card) says; it is re-laid-out (NHWC) or turned back into pixels (CoreML images)
    as the file's own card requires. ``overrides``: the user's gate thresholds
    (:func:`edgekit.export.gates.check_overrides`).
    """
    from edgekit.runtime import load
    from edgekit.runtime.metadata import read_card

    path = Path(path)
    card = read_card(path)
    precision = card.provenance.get("precision", "fp32")
    entry: dict[str, Any] = {"file": path.name, "format": card.provenance.get("format"), "precision": precision}
    if path.suffix == ".mlpackage" and platform.system() != "Darwin":
        from edgekit.export.coreml import check_structure

        entry.update(check_structure(path, card))
        entry["passed"] = entry["structure_ok"]
        return entry
    predictor = load(path, device="cpu")
    feed = x
    if card.input.dtype == "image":  # CoreML on macOS: back to [0, 255] pixels
        mean = np.asarray(source.input.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(source.input.std, np.float32).reshape(1, 3, 1, 1)
        feed = np.round((x * std + mean) * 255.0).clip(0, 255).astype(np.float32)
    if card.input.layout == "NHWC":
        feed = np.ascontiguousarray(feed.transpose((0, 2, 3, 1) if feed.ndim == 4 else (0, 1, 3, 4, 2)))
    out = predictor.run(feed)
    entry["heads"] = compare_outputs(card, reference, out, targets)
    entry["max_rel"] = max(h["rel"] for h in entry["heads"].values())
    entry["precision_ran"] = ran = precision_ran(precision, getattr(predictor.backend, "execution_precision", None))
    return {**entry, **verdict(entry, ran, overrides)}


def precision_ran(precision: str, execution: str | None) -> str:
    """The precision a file is gated at: its own, or the lower one its runtime chose for an FP32 file
    (OpenVINO's bf16 on AMX CPUs). A quantized file keeps its own precision's gate."""
    base = precision.split("-")[0]
    ran = RAN.get((execution or "").lower())
    return ran if base == "fp32" and ran in ("fp16", "bf16") else base


def verdict(entry: dict[str, Any], precision: str, overrides: dict[str, float | None] | None = None
            ) -> dict[str, Any]:
    """``{"passed", "gate", "gate_failures"}`` of a compared entry under ``precision``'s gate."""
    result = judge(entry, gate_for(precision, overrides))
    return {"passed": result["passed"], "gate": result["gate"], "gate_failures": result["failures"]}
