"""Validation metrics per head, computed with scikit-learn.

classification: ``acc`` (top-1); multilabel: ``map`` (macro average precision) and ``f1``
(micro, at the head's threshold); regression: ``mae`` and ``rmse``. Keys are ``<head>/<metric>``.
"""

from __future__ import annotations

import numpy as np

from edgekit.card import HeadSpec

PRIMARY = {"classification": ("acc", "max"), "multilabel": ("map", "max"), "regression": ("mae", "min")}


def head_metrics(spec: HeadSpec, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    if spec.kind == "classification":
        valid = target >= 0
        if not valid.any():
            return {}
        return {"acc": float(skm.accuracy_score(target[valid], output[valid].argmax(1)))}
    if spec.kind == "multilabel":
        probs = 1.0 / (1.0 + np.exp(-output))
        has_pos = target.sum(0) > 0
        out = {"f1": float(skm.f1_score(target, probs >= spec.threshold, average="micro", zero_division=0))}
        if has_pos.any():
            out["map"] = float(skm.average_precision_score(target[:, has_pos], probs[:, has_pos], average="macro"))
        return out
    pred = output.reshape(len(output), -1)[:, 0]
    target = target.reshape(-1)
    valid = ~np.isnan(target)
    if not valid.any():
        return {}
    return {"mae": float(skm.mean_absolute_error(target[valid], pred[valid])),
            "rmse": float(np.sqrt(skm.mean_squared_error(target[valid], pred[valid])))}


def compute_metrics(heads: list[HeadSpec], outputs: dict[str, np.ndarray],
                    targets: dict[str, np.ndarray]) -> dict[str, float]:
    result: dict[str, float] = {}
    for spec in heads:
        for k, v in head_metrics(spec, outputs[spec.name], targets[spec.name]).items():
            result[f"{spec.name}/{k}"] = v
    return result


def monitor_key(heads: list[HeadSpec], monitor: str = "auto") -> tuple[str, str]:
    """The metric that picks ``best.pt`` and whether higher (``max``) or lower (``min``) is better."""
    if monitor != "auto":
        if monitor == "loss" or monitor.endswith(("/mae", "/rmse", "/loss")):
            return monitor, "min"
        return monitor, "max"
    for kind in ("classification", "multilabel", "regression"):
        for h in heads:
            if h.kind == kind:
                metric, mode = PRIMARY[kind]
                return f"{h.name}/{metric}", mode
    return "loss", "min"
