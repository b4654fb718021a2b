"""A small IoU tracker: the same face across frames gets the same id, so a visitor is counted once.

Greedy matching of detections to live tracks by box overlap (IoU, highest first). A track becomes
a visitor after ``min_hits`` detections (one-frame false positives are not visitors) and ends
after ``max_missed`` processed frames without a match. Each track carries its running vote
(``votes``, set by the app) for the per-visitor record; ended tracks that never became visitors are
dropped, so memory stays bounded on a run of any length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Box = tuple[int, int, int, int]  # x, y, w, h


def iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: Box
    first_time: float
    last_time: float
    hits: int = 1
    missed: int = 0
    votes: Any = None  # the app's running aggregate of this face's predictions (apps.analytics.Votes)


class IoUTracker:
    def __init__(self, min_iou: float = 0.3, min_hits: int = 3, max_missed: int = 15) -> None:
        self.min_iou, self.min_hits, self.max_missed = min_iou, min_hits, max_missed
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self._next = 1

    def update(self, boxes: list[Box], time: float) -> list[Track]:
        """Match ``boxes`` (one processed frame at ``time`` s) to tracks; one track per box, in order."""
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.active) for bi, b in enumerate(boxes)),
                       reverse=True)
        track_of: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used or bi in track_of:
                continue
            t = self.active[ti]
            t.box, t.last_time, t.hits, t.missed = boxes[bi], time, t.hits + 1, 0
            track_of[bi] = t
            used.add(ti)
        for ti, t in enumerate(self.active):
            if ti not in used:
                t.missed += 1
        self.finished += [t for t in self.active if t.missed > self.max_missed and self.is_visitor(t)]
        self.active = [t for t in self.active if t.missed <= self.max_missed]
        for bi, b in enumerate(boxes):
            if bi not in track_of:
                t = Track(self._next, b, time, time)
                self._next += 1
                self.active.append(t)
                track_of[bi] = t
        return [track_of[bi] for bi in range(len(boxes))]

    def is_visitor(self, track: Track) -> bool:
        return track.hits >= self.min_hits

    def visitors(self) -> list[Track]:
        """Every track (ended or live) seen often enough to count, by id."""
        return sorted((t for t in self.finished + self.active if self.is_visitor(t)), key=lambda t: t.id)
