"""Latency statistics: median, p90, p99 and the spread of repeated timings."""

from __future__ import annotations

import numpy as np


def latency_stats(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """Summaries in milliseconds; percentiles use linear interpolation (numpy's default).

    ``spread_pct`` is the interquartile range over the median: how stable the measurement was.
    """
    x = np.asarray(seconds, dtype=np.float64) * 1e3
    if x.size == 0:
        raise ValueError("no timings")
    p25, p50, p75, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
    return {"runs": int(x.size), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(x.mean()), "std_ms": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min_ms": float(x.min()), "max_ms": float(x.max()),
            "spread_pct": float((p75 - p25) / p50 * 100) if p50 > 0 else 0.0}


def time_calls(fn, min_runs: int = 50, min_seconds: float = 1.0, max_runs: int = 5000, warmup: int = 10,
               clock=None) -> list[float]:
    """Call ``fn`` ``warmup`` times, then until both ``min_runs`` calls and ``min_seconds`` have passed."""
    import time

    clock = clock or time.perf_counter
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = clock()
    while len(samples) < max_runs and (len(samples) < min_runs or clock() - start < min_seconds):
        t = clock()
        fn()
        samples.append(clock() - t)
    return samples
