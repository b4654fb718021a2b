"""One decoded prediction (:meth:`edgekit.runtime.predictor.Predictor.decode`: per head, the top classes,
the labels over threshold or the value) as one line of text: what ``edgekit predict`` prints for an image,
a clip or a sound."""

from __future__ import annotations

from typing import Any


def format_prediction(pred: dict[str, Any]) -> str:
    parts = []
    for head, p in pred.items():
        if "label" in p:
            top = p["top"]
            text = ", ".join(f"{label} ({score:.3f})" for label, score in top)
            parts.append(f"{head}={text}")
        elif "labels" in p:
            parts.append(f"{head}=[{', '.join(p['labels'])}]")
        else:
            parts.append(f"{head}={p['value']:.3f}")
    return "  ".join(parts)
