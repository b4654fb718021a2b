"""Which batches a TFLite graph may be resized to: only those proven to give the exported batch's answers.

A ``.tflite`` is converted at a fixed batch (litert-torch's default). ``resize_tensor_input`` then
accepts another batch, and some graphs give outputs of the right shape and wrong values:
timm's ``fasternet_t0`` (a ``SLICE`` whose size keeps the exported batch of 1 feeds an ``ADD``
that broadcasts it over the batch, so every image gets the first image's partial convolution:
relative error 0.03 at batch 4 on random weights, 0.92 on a trained model). Nothing in the file
says so, so the runtime proves it: the first time a file would run at batch ``n``, the same
``n`` inputs are run at the exported batch, in chunks, and at ``n``; the resize is used only when
every output matches (relative error <= :data:`TOLERANCE`), otherwise the file runs in chunks of
its exported batch. Verdicts are kept per file (in memory, and in
``~/.cache/edgekit/tflite-batches.json`` keyed by the file's SHA-256, the LiteRT version and the
CPU architecture), so the check runs once per file, batch and machine.

The inputs are the card's golden inputs (real validation images, :mod:`edgekit.runtime.golden`),
repeated with their values rolled so that each of the ``n`` samples differs; a file whose card has
no golden inputs (a card-less file, or one exported without verification) is proven on seeded random
pixels through its card's preprocessing (random tensors without a card): the check compares the
file with itself, so it needs inputs that differ per sample, not reference answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-4  # max |resized - chunked| / max |chunked| per output: the FP32 gate's relative error
CACHE_FILE = "tflite-batches.json"
MAX_FILES = 512  # verdicts of the files most recently proven on this machine


def cache_dir() -> Path:
    """``EDGEKIT_CACHE``, else ``$XDG_CACHE_HOME/edgekit`` (``~/.cache/edgekit``)."""
    if os.environ.get("EDGEKIT_CACHE"):
        return Path(os.environ["EDGEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit"


def file_key(path: Path) -> str:
    """What a verdict depends on: the file's bytes, the LiteRT version and the CPU architecture."""
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - a vendored or renamed build: verdicts are still per file
        litert = "?"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()}:{litert}:{platform.machine()}"


def cached(key: str, n: int) -> dict[str, Any] | None:
    """The verdict recorded on this machine for ``key`` at batch ``n`` (None: never proven here)."""
    try:
        return json.loads((cache_dir() / CACHE_FILE).read_text()).get(key, {}).get(str(n))
    except (OSError, ValueError, AttributeError):
        return None


def remember(key: str, n: int, verdict: dict[str, Any]) -> None:
    """Record a verdict (best effort: a cache that cannot be written is only a cache)."""
    from edgekit.atomic import write_json

    path = cache_dir() / CACHE_FILE
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(data, dict):
            data = {}
        data[key] = {**data.pop(key, {}), str(n): verdict}  # most recent last
        for old in list(data)[:-MAX_FILES]:
            del data[old]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)
    except (OSError, ValueError):
        pass


def probe_inputs(card, shape: tuple[int, ...], dtype: np.dtype, n: int) -> tuple[np.ndarray, str]:
    """``n`` different inputs for the file (``shape``: its exported input shape) and where they come from:
    ``golden`` (the card's golden inputs, rolled per repeat) or ``random``."""
    rng = np.random.default_rng(0)
    base, source = None, "random"
    if card is not None and card.golden and not card.input.audio:
        from edgekit.runtime.golden import golden_batch

        try:
            base, source = golden_batch(card.golden, card.input), "golden"
        except Exception:  # noqa: BLE001 - unreadable golden inputs: random pixels prove the resize as well
            base = None
    if base is None and card is not None and not card.input.audio and not card.input.frames:
        from edgekit.runtime.preprocess import preprocess

        h, w = card.input.size
        base = preprocess([rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)], card.input, "RGB")
    if base is None or tuple(base.shape[1:]) != tuple(shape[1:]):
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            base = rng.integers(info.min, int(info.max) + 1, (4, *shape[1:])).astype(dtype)
        else:
            base = rng.standard_normal((4, *shape[1:])).astype(dtype)
        source = "random"
    base = base.astype(dtype, copy=False)
    out = np.empty((n, *base.shape[1:]), dtype)
    for i in range(n):
        sample, k = base[i % len(base)], i // len(base)
        out[i] = sample if k == 0 else np.roll(sample.reshape(-1), 7919 * k).reshape(sample.shape)
    return out, source


def compare(chunked: list[np.ndarray], resized: list[np.ndarray]) -> float:
    """The largest relative error of ``resized`` against ``chunked`` over the outputs."""
    worst = 0.0
    for a, b in zip(chunked, resized, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.shape != b64.shape:
            return float("inf")
        worst = max(worst, float(np.abs(a64 - b64).max() / max(np.abs(a64).max(), 1e-12)))
    return worst
