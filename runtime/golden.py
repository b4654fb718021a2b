"""Decode the golden inputs a card carries (see :mod:`edgekit.export.golden`) into a model batch.

Torch-free: ``edgekit check FILE --parity`` runs them on the device. Images are PNG (base64) at the
model's input size, so the runtime's preprocessing only normalizes and lays them out, exactly as the
exporter did when it computed PyTorch's reference outputs.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from edgekit.card import InputSpec
from edgekit.errors import CardError

GOLDEN_KIND_IMAGES = "images"
GOLDEN_KIND_AUDIO = "audio"  # waveform windows, FLAC (16-bit PCM) base64: see edgekit.runtime.golden_audio


def decode_png(data: str) -> np.ndarray:
    """A base64 PNG as an HxWx3 uint8 BGR array (what the runtime's preprocessing takes)."""
    import cv2

    try:
        raw = np.frombuffer(base64.b64decode(data, validate=True), np.uint8)
    except (ValueError, TypeError) as exc:
        raise CardError(f"golden input is not base64: {exc}") from None
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if img is None:
        raise CardError("golden input is not a PNG image")
    return img


def golden_batch(golden: dict[str, Any], spec: InputSpec) -> np.ndarray:
    """The preprocessed batch of a card's golden image inputs (clips: ``[N, T, ...]``)."""
    from edgekit.runtime.preprocess import preprocess

    if golden.get("kind") == GOLDEN_KIND_AUDIO:
        from edgekit.runtime.golden_audio import golden_audio_batch

        return golden_audio_batch(golden, spec)
    if golden.get("kind") != GOLDEN_KIND_IMAGES:
        raise CardError(f"golden inputs of kind '{golden.get('kind')}' are not images")
    items = golden.get("inputs") or []
    if not items:
        raise CardError("the card's golden inputs are empty")
    if spec.frames:
        clips = [[decode_png(f) for f in clip] for clip in items]
        flat = preprocess([f for clip in clips for f in clip], spec, "BGR")
        return flat.reshape(len(clips), spec.frames, *flat.shape[1:])
    return preprocess([decode_png(x) for x in items], spec, "BGR")


def golden_reference(golden: dict[str, Any]) -> dict[str, np.ndarray]:
    """PyTorch's outputs on the golden inputs, per head, as float32 ``[N, width]``."""
    outputs = golden.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise CardError("the card's golden inputs carry no reference outputs")
    return {h: np.asarray(v, np.float32).reshape(len(v), -1) for h, v in outputs.items()}
