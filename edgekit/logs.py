"""Quieting the libraries edgekit drives, in one place: every stage may import it (standard library only).

Converters and quantizers (litert-torch, ai-edge-quantizer, torch.export and exir, onnxruntime's quantizer,
NNCF, coremltools) print progress bars, log at INFO and warn on every call; edgekit reports what matters
itself. :func:`quiet_native_logs` sets, once per process, what native (C++) libraries read from the
environment at load time; :func:`quiet` silences a block of Python calls and restores everything after it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator


def quiet_native_logs() -> None:
    """TensorFlow-Lite / absl C++ logging and coremltools' import-time warnings drown the useful
    output; keep their errors only (set the variables yourself to see more)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    logging.getLogger("coremltools").setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet(logger: str | None = None, level: int | None = logging.ERROR, stdout: bool = False, stderr: bool = False,
          python_warnings: bool = False) -> Iterator[None]:
    """Within the block, ``logger`` (the root logger when None) logs at ``level`` and above only (None: its level
    is left alone); ``stdout`` / ``stderr``: what the library prints is dropped; ``python_warnings``: warnings are
    ignored. The logger's level is restored after the block, also when it raises."""
    log = logging.getLogger(logger)
    before = log.level
    if level is not None:
        log.setLevel(level)
    try:
        with contextlib.ExitStack() as stack:
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            if stderr:
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            if python_warnings:
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(before)
