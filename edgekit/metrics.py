"""Metrics per head, for every stage: training's validation, export's parity against labels and the bench
worker's accuracy through a runtime all compute them here (numpy at import; scikit-learn, imported where a
metric needs it, for top-5, F1 and mAP; top-1, MAE and RMSE are numpy alone, so a device with only
``edgekit[runtime]`` measures them).

Keys are ``<head>/<metric>``:

- classification: ``acc`` (top-1) and, for heads with more than 5 classes, ``top5``; samples whose
  label is missing (``-1``) are left out of both.
- multilabel: ``map`` (macro average precision over classes with a positive), ``f1`` (micro, at the
  head's threshold) and ``lwlrap`` (label-weighted label-ranking average precision, see :func:`lwlrap`).
- regression: ``mae`` and ``rmse``, over samples with a label (not ``NaN``).

A model with two or more classification heads (EPIC-style verb + noun) also gets ``action/acc``
(:data:`ACTION_KEY`): the share of samples on which every classification head is right, over the
samples labelled for all of them. It is left out when a head is itself named ``action``.
"""

from __future__ import annotations

import numpy as np

from edgekit.card import HeadSpec

PRIMARY = {"classification": ("acc", "max"), "multilabel": ("map", "max"), "regression": ("mae", "min")}
ACTION_KEY = "action/acc"


def top1(scores: np.ndarray, target: np.ndarray) -> float:
    """Share of rows of ``scores`` ``[N, C]`` whose highest score is at ``target`` ``[N]`` (class indices; give only
    labelled rows). As ``sklearn.metrics.accuracy_score`` on the argmax, to the bit."""
    return float((np.asarray(scores).argmax(1) == np.asarray(target)).mean())


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error of labelled values, in their own precision (as ``sklearn.metrics.mean_absolute_error``)."""
    return float(np.abs(np.asarray(pred) - np.asarray(target)).mean())


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error (the mean in the values' precision, the root in float64, as scikit-learn)."""
    return float(np.sqrt(float(((np.asarray(target) - np.asarray(pred)) ** 2).mean())))


def mean_average_precision(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """mAP: ``sklearn.metrics.average_precision_score`` (macro) over the classes of ``truth`` ``[N, C]`` (0/1) that
    have a positive; None when none has. Needs scikit-learn (an ImportError without it)."""
    truth, scores = np.asarray(truth), np.asarray(scores)
    has_pos = truth.sum(0) > 0
    if not has_pos.any():
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(truth[:, has_pos], scores[:, has_pos], average="macro"))


def lwlrap(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Label-weighted label-ranking average precision (Freesound Audio Tagging 2019).

    For every positive label of every sample: the precision of the sample's ranking of labels
    (by score, highest first) down to that label; the mean over all (sample, positive label) pairs,
    which weights each class by its number of positives. Samples without positives count for
    nothing; tied scores count as ranked above (as ``sklearn.metrics.label_ranking_average_precision_score``).
    ``truth`` and ``scores`` are ``[N, C]``; ``None`` when there is no positive label at all.
    """
    truth = np.asarray(truth) > 0
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must be the same [N, C] shape")
    total = int(truth.sum())
    if total == 0:
        return None
    n, c = scores.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    t = np.take_along_axis(truth, order, axis=1)
    hits = np.cumsum(t, axis=1)  # positives at sorted positions <= p
    # last position of each run of tied scores: a label's rank counts every label tied with it
    is_end = np.ones((n, c), bool)
    is_end[:, :-1] = s[:, :-1] != s[:, 1:]
    end = np.where(is_end, np.arange(c), c)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    precision = np.take_along_axis(hits, end, axis=1) / (end + 1.0)
    return float(precision[t].sum() / total)


def head_metrics(spec: HeadSpec, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The metrics of one head (see the module docstring) from its raw outputs and targets."""
    if spec.kind == "classification":
        valid = target >= 0
        if not valid.any():
            return {}
        out = {"acc": top1(output[valid], target[valid])}
        if output.shape[1] > 5:
            from sklearn import metrics as skm

            out["top5"] = float(skm.top_k_accuracy_score(target[valid], output[valid], k=5,
                                                         labels=np.arange(output.shape[1])))
        return out
    if spec.kind == "multilabel":
        valid = ~np.isnan(target).any(axis=1)  # rows of NaN: unlabelled samples
        if not valid.any():
            return {}
        from sklearn import metrics as skm

        output, target = output[valid], target[valid]
        probs = 1.0 / (1.0 + np.exp(-output))
        out = {"f1": float(skm.f1_score(target, probs >= spec.threshold, average="micro", zero_division=0))}
        ap = mean_average_precision(target, probs)
        if ap is not None:
            out["map"] = ap
            out["lwlrap"] = lwlrap(target, output)  # on logits: the sigmoid would tie saturated scores
        return out
    pred = output.reshape(len(output), -1)[:, 0]
    target = target.reshape(-1)
    valid = ~np.isnan(target)
    if not valid.any():
        return {}
    return {"mae": mae(pred[valid], target[valid]), "rmse": rmse(pred[valid], target[valid])}


def action_accuracy(heads: list[HeadSpec], outputs: dict[str, np.ndarray],
                    targets: dict[str, np.ndarray]) -> float | None:
    """Share of samples on which every classification head is right (over samples labelled for all)."""
    cls = [h.name for h in heads if h.kind == "classification"]
    if len(cls) < 2:
        return None
    valid = np.logical_and.reduce([targets[h] >= 0 for h in cls])
    if not valid.any():
        return None
    right = np.logical_and.reduce([outputs[h].argmax(1) == targets[h] for h in cls])
    return float(right[valid].mean())


def compute_metrics(heads: list[HeadSpec], outputs: dict[str, np.ndarray],
                    targets: dict[str, np.ndarray]) -> dict[str, float]:
    """``{"<head>/<metric>": value}`` for every head, plus ``action/acc`` for two or more classifiers."""
    result: dict[str, float] = {}
    for spec in heads:
        for k, v in head_metrics(spec, outputs[spec.name], targets[spec.name]).items():
            result[f"{spec.name}/{k}"] = v
    if all(h.name != ACTION_KEY.split("/")[0] for h in heads):
        action = action_accuracy(heads, outputs, targets)
        if action is not None:
            result[ACTION_KEY] = action
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
