"""Where a demo's time goes: per-stage wall time, live FPS, and the run's summary numbers.

End-to-end FPS is frames shown or written divided by the wall time of the whole loop (decode,
inference, overlay, encoding, display): the number a user sees, not the model's alone.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class StageClock:
    """Accumulates wall time per named stage: ``with clock("inference"): ...``."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t0)

    def add(self, stage: str, seconds: float) -> None:
        self.samples.setdefault(stage, []).append(seconds)

    def last_ms(self, stage: str) -> float:
        s = self.samples.get(stage)
        return 1000.0 * s[-1] if s else 0.0

    def percentile_ms(self, stage: str, q: float) -> float | None:
        s = self.samples.get(stage)
        return round(float(np.percentile(s, q)) * 1000.0, 3) if s else None

    def breakdown(self, frames: int) -> dict[str, dict[str, float]]:
        """Per stage: total seconds, ms per frame (over all ``frames``), calls and ms per call."""
        out = {}
        for stage, s in self.samples.items():
            total = float(sum(s))
            out[stage] = {"total_s": round(total, 4), "ms_per_frame": round(1000.0 * total / max(1, frames), 3),
                          "calls": len(s), "ms_per_call": round(1000.0 * total / max(1, len(s)), 3)}
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

