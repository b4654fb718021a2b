"""Drawing on frames (in place, OpenCV): text blocks, status line, face boxes, panels, notices.

Text sits on opaque filled boxes rather than blended ones: alpha blending a panel costs more per
frame than the rest of the overlay together, and opaque boxes stay readable on any background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from edgekit.apps.plausibility import shown

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
GREEN, YELLOW, RED, CYAN = (60, 200, 60), (0, 220, 255), (40, 40, 230), (230, 200, 40)
PALETTE = [(60, 200, 60), (230, 160, 40), (200, 80, 220), (40, 200, 230), (80, 120, 250), (200, 200, 60)]


def text_block(frame: np.ndarray, lines: Sequence[str], org: tuple[int, int], scale: float = 0.5,
               color: tuple[int, int, int] = WHITE, bg: tuple[int, int, int] | None = BLACK,
               anchor: str = "top-left") -> tuple[int, int, int, int]:
    """Lines of text on a filled box; returns the box ``(x, y, w, h)``. ``org`` is the box's corner
    named by ``anchor`` (top-left, top-right, bottom-left, bottom-right); the box stays in the frame."""
    if not lines:
        return org[0], org[1], 0, 0
    sizes = [cv2.getTextSize(t, FONT, scale, 1) for t in lines]
    line_h = max(s[0][1] + s[1] for s in sizes) + 4
    w = max(s[0][0] for s in sizes) + 8
    h = line_h * len(lines) + 4
    x, y = org
    if anchor.endswith("right"):
        x -= w
    if anchor.startswith("bottom"):
        y -= h
    x = int(np.clip(x, 0, max(0, frame.shape[1] - w)))
    y = int(np.clip(y, 0, max(0, frame.shape[0] - h)))
    if bg is not None:
        cv2.rectangle(frame, (x, y), (x + w, y + h), bg, -1)
    for i, t in enumerate(lines):
        cv2.putText(frame, t, (x + 4, y + (i + 1) * line_h - 2), FONT, scale, color, 1, cv2.LINE_AA)
    return x, y, w, h


def prediction_lines(pred: dict[str, Any], topk: int = 1) -> list[str]:
    """One line per class of each head's top-k, ``labels`` of multilabel heads, a regression's value."""
    lines = []
    for head, p in pred.items():
        if "top" in p:
            for rank, (label, score) in enumerate(p["top"][:max(1, topk)]):
                lines.append(f"{head if rank == 0 else ' ' * len(head)}: {label} {100 * score:.1f}%")
        elif "labels" in p:
            lines.append(f"{head}: {', '.join(p['labels']) or '-'}")
        else:
            lines.append(f"{head}: {shown(head, p['value'], 1)}")  # an impossible age is shown as ?
    return lines


def draw_status(frame: np.ndarray, fps: float, latency_ms: float, extra: str = "") -> None:
    """``FPS 31.2 | model 4.1 ms`` at the top right."""
    text = f"FPS {fps:5.1f} | model {latency_ms:5.1f} ms" + (f" | {extra}" if extra else "")
    text_block(frame, [text], (frame.shape[1] - 4, 4), color=YELLOW, anchor="top-right")


def draw_box(frame: np.ndarray, box: Sequence[int], lines: Sequence[str], color: tuple[int, int, int]) -> None:
    """A rectangle with its lines of text above it (below when there is no room above)."""
    x, y, w, h = (int(v) for v in box)
    cv2.rectangle(frame, (x, y), (x + w, y + h), color, 2)
    if lines:
        line_h = 18
        top = y - line_h * len(lines) - 6
        text_block(frame, lines, (x, top if top >= 0 else y + h + 2), scale=0.45, color=BLACK, bg=color)


def draw_panel(frame: np.ndarray, title: str, rows: Sequence[str]) -> None:
    """An analytics panel at the bottom right."""
    text_block(frame, [title, *rows], (frame.shape[1] - 4, frame.shape[0] - 4), scale=0.45, bg=(60, 40, 20),
               anchor="bottom-right")


def draw_notice(frame: np.ndarray, lines: Sequence[str]) -> None:
    """A red banner at the bottom left (e.g. a model not trained on faces)."""
    text_block(frame, lines, (4, frame.shape[0] - 4), scale=0.45, bg=RED, anchor="bottom-left")


def pixelate(frame: np.ndarray, box: Sequence[int], blocks: int = 8) -> None:
    """Replace a region with ``blocks`` x ``blocks`` coarse pixels (anonymize a face in place)."""
    x, y, w, h = (int(v) for v in box)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(frame.shape[1], x + w), min(frame.shape[0], y + h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    roi = frame[y0:y1, x0:x1]
    small = cv2.resize(roi, (blocks, blocks), interpolation=cv2.INTER_AREA)
    frame[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
