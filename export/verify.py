"""Parity: does the exported file give the answers the PyTorch model gives, on real images?

Each file is opened with :func:`edgekit.runtime.load` — the same code that runs on the device —
and fed the validation images the PyTorch model sees (same preprocessed tensors). Per head: max
abs difference, relative error (max abs / max |reference|), mean cosine similarity, SQNR (dB), top-1
agreement, and accuracy of both against the labels. FP32 files fail above ``tol`` relative error;
FP16 and INT8 files report agreement and accuracy. CoreML files are checked for structure on
Linux (prediction needs macOS) and numerically on macOS.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.card import ModelCard
from edgekit.runtime.predictor import softmax

FP32_TOLERANCE = 1e-4


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
        result[head.name] = stats
    return result


def verify_file(path: str | Path, reference: dict[str, np.ndarray], x: np.ndarray,
                targets: dict[str, np.ndarray] | None, source: ModelCard,
                tol: float = FP32_TOLERANCE) -> dict[str, Any]:
    """Run ``path`` through the edgekit runtime on ``x`` and compare with ``reference``.

    ``x`` is the NCHW float32 batch the PyTorch model saw, normalized as ``source`` (the
    checkpoint's card) says; it is re-laid-out (NHWC) or turned back into pixels (CoreML images)
    as the file's own card requires.
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
    worst = max(h["rel"] for h in entry["heads"].values())
    entry["max_rel"] = worst
    ran = getattr(predictor.backend, "execution_precision", precision)  # OpenVINO: bf16 on a bf16 CPU
    entry["execution_precision"] = ran
    if ran == "fp32" and card.provenance.get("format") != "coreml":
        entry["tolerance"] = tol
        entry["passed"] = bool(worst <= tol)
    else:
        entry["passed"] = True  # reported, not gated: quantized files differ by design
    as_stored = getattr(predictor.backend, "as_stored", None)
    if ran != precision and as_stored is not None:  # also prove the file itself, at the precision it stores
        stored = stored_check(as_stored(), card, reference, feed, targets, tol)
        entry["as_stored"] = stored
        entry["passed"] = entry["passed"] and stored["passed"]
    return entry


def stored_check(backend, card: ModelCard, reference: dict[str, np.ndarray], feed: np.ndarray,
                 targets: dict[str, np.ndarray] | None, tol: float = FP32_TOLERANCE) -> dict[str, Any]:
    """Parity of a file run by ``backend`` at the precision the file stores (OpenVINO with its float layers
    forced to f32): an FP32 IR must match PyTorch as any FP32 file must, whatever its runtime chooses by default."""
    from edgekit.runtime.predictor import Predictor

    path = getattr(backend, "path", None)
    heads = compare_outputs(card, reference, Predictor(backend, card, path).run(feed), targets)
    worst = max(h["rel"] for h in heads.values())
    ran = getattr(backend, "execution_precision", "fp32")
    result = {"execution_precision": ran, "heads": heads, "max_rel": worst, "passed": True}
    if ran == "fp32":
        result.update(tolerance=tol, passed=bool(worst <= tol))
    return result
