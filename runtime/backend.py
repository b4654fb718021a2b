"""The interface every runtime backend implements, and what all of them share.

:class:`Backend` (``run(x)``: a float32 batch in, one float32 array per head out), the error for a file
no backend can load, the thread count every backend runs with, and running a fixed-batch file over a
batch of any size. The backends themselves (:mod:`.backends`, :mod:`.openvino`, :mod:`.pte`,
:mod:`.web`, and ``edgekit.train``'s ``.pt`` backend) import this module; it imports none of them.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError, option


class ModelFileError(EdgekitError):
    """The file is not a model this runtime can load."""


class Backend:
    """Runs a batch; ``batch`` is the fixed batch size of the file, or None when it is dynamic.

    ``threads`` is the CPU thread count in effect, and ``threads_from`` how it is known: read back from
    the library (``session options``, ``threadpool``) or only ``set`` where the library has no getter."""

    name = "?"
    batch: int | None = None
    device = "cpu"
    threads: int | None = None
    threads_from = "set"

    def runs_at(self, n: int) -> int:
        """The batch a call with ``n`` inputs runs at (a fixed-batch file runs in chunks of its batch)."""
        return self.batch or n

    def run(self, x: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


def default_threads() -> int:
    """The CPU cores this process may use: what every backend runs with when the user gives no count (never
    a library's own default, which differs: onnxruntime takes every core, TFLite one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def check_threads(threads: int | None) -> int:
    """``threads`` or the default; a count below 1 is an error (0 does not mean "all" anywhere here)."""
    if threads is None:
        return default_threads()
    if int(threads) < 1:
        raise EdgekitError(f"{option('threads')} must be at least 1 (default: the {default_threads()} usable "
                           f"cores), got {threads}")
    return int(threads)


def run_in_chunks(run, x: np.ndarray, fixed: int) -> list[np.ndarray]:
    """``run`` (a backend's ``run``) over a batch of any size, for a file with a fixed batch:
    chunks of ``fixed``, the last one padded by repeating its last sample."""
    parts = []
    for i in range(0, len(x), fixed):
        chunk = x[i: i + fixed]
        n = len(chunk)
        if n < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
        parts.append([o[:n] for o in run(chunk)])
    return [np.concatenate(p) for p in zip(*parts, strict=True)]
