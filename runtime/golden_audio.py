"""Golden inputs of sound models: a few validation windows as FLAC (16-bit PCM, lossless), base64.

The runtime turns them into the model's input with its own frontend (:mod:`edgekit.runtime.logmel`),
so ``edgekit check FILE --parity`` re-checks the spectrogram code along with the model: the stored
PyTorch outputs were computed on the same decoded samples, through the same frontend.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from edgekit.card import InputSpec
from edgekit.errors import CardError, require


def encode_window(wave: np.ndarray, sample_rate: int) -> str:
    """A waveform window as base64 FLAC (16-bit PCM; samples outside [-1, 1] are clipped)."""
    sf = require("soundfile", "audio")
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, np.float32), -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_window(data: str) -> tuple[np.ndarray, int]:
    """``(float32 samples, sample rate)`` of a base64 FLAC golden input."""
    sf = require("soundfile", "audio")
    try:
        wave, rate = sf.read(io.BytesIO(base64.b64decode(data, validate=True)), dtype="float32")
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CardError(f"golden sound input is not base64 FLAC: {exc}") from None
    return wave, int(rate)


def golden_audio_batch(golden: dict[str, Any], spec: InputSpec) -> np.ndarray:
    """The model batch of a card's golden sound windows (their log-mel, as the runtime computes it)."""
    from edgekit.runtime.tagging import audio_batch

    items = golden.get("inputs") or []
    if not items:
        raise CardError("the card's golden inputs are empty")
    if not spec.audio:
        raise CardError("golden sound inputs in the card of a model that is not a sound model")
    waves = []
    for item in items:
        wave, rate = decode_window(item)
        if rate != spec.audio.get("sample_rate"):
            raise CardError(f"golden sound input at {rate} Hz, the model takes {spec.audio.get('sample_rate')} Hz")
        waves.append(wave)
    return audio_batch(np.stack(waves), spec)
