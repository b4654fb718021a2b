"""What the audio demo's window shows: the current log-mel spectrogram, the top tags with score bars,
and a rolling history of the last windows' tags (OpenCV drawing, no torch)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

WIDTH, SPEC_H, ROW = 640, 192, 22


def render(batch: np.ndarray, pred: dict[str, Any], history: list[str], card, latency_ms: float) -> np.ndarray:
    """A BGR image of one window: spectrogram (low frequencies at the bottom), tags, history."""
    x = np.asarray(batch, dtype=np.float32)[0]
    spec = x[0] if card.input.layout == "NCHW" else x[..., 0]  # [n_mels, frames]
    if card.input.quant:
        spec = (spec.astype(np.float32) - card.input.quant["zero_point"]) * card.input.quant["scale"]
    lo, hi = np.percentile(spec, 2), np.percentile(spec, 98)
    grey = np.clip((spec - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)[::-1]
    img = cv2.applyColorMap(cv2.resize(grey, (WIDTH, SPEC_H), interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_MAGMA)
    lines = _tags(pred)
    panel = np.zeros((ROW * (len(lines) + len(history) + 3), WIDTH, 3), np.uint8)
    y = ROW
    cv2.putText(panel, f"latency {latency_ms:.1f} ms", (8, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 200), 1)
    for label, score in lines:
        y += ROW
        cv2.rectangle(panel, (200, y - 15), (200 + int(score * (WIDTH - 210)), y - 3), (80, 180, 80), -1)
        cv2.putText(panel, f"{label[:22]} {score:.2f}", (8, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    y += ROW
    for text in history:
        y += ROW
        cv2.putText(panel, text[:80], (8, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (170, 170, 170), 1)
    return np.concatenate([img, panel])


def _tags(pred: dict[str, Any], k: int = 5) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for head, p in pred.items():
        if "scores" in p:
            out += sorted(p["scores"].items(), key=lambda kv: -kv[1])[:k]
        elif "top" in p:
            out += [(str(c), float(s)) for c, s in p["top"][:k]]
        else:
            out.append((f"{head} = {p['value']:.2f}", 0.0))
    return out
