"""The interface every runtime backend implements, and what all of them share.

:class:`Backend` (``run(x)``: a float32 batch in, one float32 array per head out) and what each backend
says of itself: the card in its files, its graph's tensors, what ran where (residency, integer layers),
whether its files run on this machine. :func:`backend_class` finds the backend of a file from the format
table (:mod:`edgekit.formats`: each row names its backend class). Also: the error for a file no backend
can load, the thread count every backend runs with, and running a fixed-batch file over a batch of any
size. The backends themselves (:mod:`.backends`, :mod:`.openvino`, :mod:`.pte`, :mod:`.web`, and
``edgekit.train``'s ``.pt`` backend) import this module; it imports none of them (the format table names
them, and they are imported when a file of theirs is opened).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import formats
from edgekit.errors import EdgekitError, option


class ModelFileError(EdgekitError):
    """The file is not a model this runtime can load."""


class UnsupportedModelError(ModelFileError):
    """A graph input edgekit cannot synthesize (strings, sequences, maps)."""


@dataclass
class TensorInfo:
    """One graph input or output: ``None`` in ``shape`` is a dynamic axis."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    quant: tuple[float, int] | None = None  # (scale, zero point) of an integer tensor

    def describe(self, shape: tuple[int, ...] | None = None) -> str:
        dims = shape if shape is not None else ["?" if d is None else d for d in self.shape]
        return f"{self.dtype.name}[{', '.join(map(str, dims))}]"


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

    def order_outputs(self, heads: list[str]) -> None:
        """Return the outputs in the card's head order from now on (default: they already are)."""

    # -- what a backend says of itself (defaults; each backend overrides what it knows) ----------------
    library = ""  # the module it runs on: the bench worker imports it before measuring the model's memory

    @classmethod
    def card_text(cls, path: Path, session: Any = None) -> str | None:
        """The card JSON embedded in one of its files (None: the file carries none). ``session``: an
        already opened session on it, where the library has one."""
        return None

    @classmethod
    def not_run_here(cls) -> str | None:
        """Why its files cannot run on this machine (CoreML off macOS), or None."""
        return None

    def input_tensors(self, where: str = "the model") -> list[TensorInfo]:
        """The graph's inputs, as it declares them (an error for non-numeric inputs)."""
        raise ModelFileError(f"{where}: inputs cannot be read from a {self.name} file")

    def output_tensors(self) -> list[TensorInfo]:
        """The graph's outputs, in the order :meth:`run` returns them."""
        raise ModelFileError(f"outputs cannot be read from a {self.name} file")

    def raw_runner(self, feed: dict[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """A call that runs the graph on ``feed`` (input name -> array) as is, every output, set up once."""
        raise ModelFileError(f"a {self.name} file cannot be run on synthesized inputs")

    def named_feed(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``x`` as a feed of named graph inputs, for a backend whose residency reruns it ({}: not needed)."""
        return {}

    def residency(self, path: Path, feed: dict[str, np.ndarray]) -> dict[str, Any] | str:
        """Where the graph's nodes ran (execution provider, delegate, precision), or "n/a: why"."""
        return f"n/a: not measured for {self.name}"

    def quant(self, path: Path) -> dict[str, Any] | str | None:
        """Integer vs float layers of an INT8 file (None: a float file, or not known for this backend)."""
        return None

    def fallback(self, requested: str, residency: Any) -> str | None:
        """A requested accelerator that did not run everything, in one line (None when all ran where asked)."""
        requested = (requested or "auto").lower()
        if requested not in ("auto", "cpu") and not str(self.device).startswith(requested.split(":")[0]):
            return f"asked for {requested}; it ran on {self.device}"
        return None

    def device_sync(self) -> Callable[[], None] | None:
        """For a backend that queues work on a device (torch on CUDA): a call that waits for it, after its
        peak-memory counter was reset; None where :meth:`run` returns when the work is done."""
        return None

    def peak_device_mb(self) -> float | None:
        """Peak device memory since :meth:`device_sync` (None: no device memory of its own)."""
        return None


def backend_class(path: str | Path) -> type[Backend]:
    """The backend class that opens ``path``, from the format table's row for its suffix. A backend outside
    the runtime (``.pt``: ``edgekit.train``) is used once its module is imported (the CLI and the bench worker
    do, :func:`edgekit.formats.import_backend`): the runtime itself never imports train."""
    path = Path(path)
    fmt = formats.SUFFIXES.get(path.suffix.lower())
    if fmt is None or not fmt.backend:
        known = sorted(s for s, f in formats.SUFFIXES.items() if f.backend)
        raise ModelFileError(f"{path}: unknown model format '{path.suffix}' (expected {', '.join(known)})")
    module, _, name = fmt.backend.partition(":")
    if not (module.startswith("edgekit.runtime.") or module in sys.modules):
        raise ModelFileError(f"{path}: a {fmt.suffix} file is opened by {module} (pip install "
                             f"'edgekit[{fmt.extra}]'), which the runtime does not import: import it first "
                             "(or export the model and open the exported file)")
    return getattr(importlib.import_module(module), name)


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
