"""Where a demo's time goes: per-stage wall time, live FPS, and the run's summary numbers.

End-to-end FPS is frames shown or written divided by the wall time of the whole loop (decode,
inference, overlay, encoding, display): the number a user sees, not the model's alone.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class Durations:
    """One stage's durations in bounded memory, however long the run: count, total, last, min, max, and
    percentiles — exact (numpy's linear interpolation) over the first :attr:`EXACT` samples, then from a
    log-bucket histogram with 1% relative resolution (an HDR-style estimator), so a kiosk left on for a
    week holds the same few kilobytes as one left on for a minute."""

    EXACT = 2048
    LOW, RATIO, BUCKETS = 1e-7, 1.01, 2400  # 100 ns .. ~2 h in 1% steps

    def __init__(self) -> None:
        self.count, self.total, self.last = 0, 0.0, 0.0
        self.min, self.max = float("inf"), 0.0
        self._exact: list[float] = []
        self._hist: np.ndarray | None = None

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.last = seconds
        self.min, self.max = min(self.min, seconds), max(self.max, seconds)
        if self._hist is None:
            self._exact.append(seconds)
            if len(self._exact) > self.EXACT:  # from here on: the histogram only
                self._hist = np.zeros(self.BUCKETS, np.int64)
                for v in self._exact:
                    self._hist[self._bucket(v)] += 1
                self._exact = []
        else:
            self._hist[self._bucket(seconds)] += 1

    def _bucket(self, seconds: float) -> int:
        b = int(math.log(max(seconds, self.LOW) / self.LOW) / math.log(self.RATIO))
        return min(max(b, 0), self.BUCKETS - 1)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile in seconds (None before the first sample)."""
        if self.count == 0:
            return None
        if self._hist is None:
            return float(np.percentile(self._exact, q))
        rank = q / 100.0 * (self.count - 1)
        b = int(np.searchsorted(np.cumsum(self._hist), rank, side="right"))
        mid = self.LOW * self.RATIO ** (b + 0.5)  # the bucket's geometric middle: within 0.5% of any value in it
        return float(min(max(mid, self.min), self.max))

    def __len__(self) -> int:
        return self.count


class StageClock:
    """Accumulates wall time per named stage: ``with clock("inference"): ...`` (bounded memory:
    :class:`Durations` per stage)."""

    def __init__(self) -> None:
        self.stages: dict[str, Durations] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def add(self, stage: str, seconds: float) -> None:
        self.stage(stage).add(seconds)

    def stage(self, name: str) -> Durations:
        if name not in self.stages:
            self.stages[name] = Durations()
        return self.stages[name]

    def last_ms(self, stage: str) -> float:
        s = self.stages.get(stage)
        return 1000.0 * s.last if s else 0.0

    def percentile_ms(self, stage: str, q: float) -> float | None:
        s = self.stages.get(stage)
        value = s.percentile(q) if s else None
        return None if value is None else round(value * 1000.0, 3)

    def breakdown(self, frames: int) -> dict[str, dict[str, float]]:
        """Per stage: total seconds, ms per frame (over all ``frames``), calls and ms per call."""
        out = {}
        for stage, s in self.stages.items():
            if not s.count:
                continue
            out[stage] = {"total_s": round(s.total, 4), "ms_per_frame": round(1000.0 * s.total / max(1, frames), 3),
                          "calls": s.count, "ms_per_call": round(1000.0 * s.total / s.count, 3)}
        return out


class FpsMeter:
    """Frames per second over the last ``window`` frames (what the overlay shows live)."""

    def __init__(self, window: int = 30) -> None:
        self._t: deque[float] = deque(maxlen=window)

    def tick(self) -> float:
        self._t.append(time.perf_counter())
        if len(self._t) < 2:
            return 0.0
        return (len(self._t) - 1) / max(1e-9, self._t[-1] - self._t[0])

