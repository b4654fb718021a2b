"""Reading sound files for training and the device alike: decode, mix down to mono, resample.

WAV, FLAC and OGG (and whatever else libsndfile reads) are decoded with ``soundfile``; stereo and
multi-channel files are averaged to mono; any sample rate is resampled to the model's with
``soxr`` (its high-quality setting). Training and the runtime both call :func:`read_audio`, so a
file gives the model the same samples wherever it is read.

A file that cannot give audio is an :class:`AudioError` (an :class:`~edgekit.runtime.preprocess.InputError`)
naming it: not found, empty, not a sound file, no samples, or a WAV whose data chunk is cut short
(libsndfile reads a truncated WAV without complaint, so its RIFF header is checked here).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from edgekit.errors import require
from edgekit.runtime.preprocess import InputError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


class AudioError(InputError):
    """A sound file (or waveform) the model cannot take."""


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """The samples of ``path`` as float32 mono at ``sample_rate`` (values in [-1, 1] for PCM files)."""
    wave, rate = decode(path)
    return resample(to_mono(wave), rate, sample_rate)


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """``(samples [frames, channels] float32, sample rate)`` of a sound file, or an :class:`AudioError`."""
    sf = require("soundfile", "audio")
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"sound file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"cannot read audio {path}: empty file")
    problem = wav_problem(path)
    if problem:
        raise AudioError(f"cannot read audio {path}: {problem}")
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError) as exc:
        reason = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
        raise AudioError(f"cannot read audio {path}: {reason}") from None
    if wave.shape[0] == 0:
        raise AudioError(f"cannot read audio {path}: no samples (empty or truncated)")
    if not np.isfinite(wave).all():
        raise AudioError(f"cannot read audio {path}: samples are not finite (NaN or inf)")
    return wave, int(rate)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """``[frames]`` or ``[frames, channels]`` -> ``[frames]`` float32, the mean of the channels."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1, dtype=np.float32) if wave.shape[1] > 1 else wave[:, 0]
    if wave.ndim != 1:
        raise AudioError(f"expected a waveform [samples] or [samples, channels], got shape {wave.shape}")
    return np.ascontiguousarray(wave)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``wave`` from ``rate`` to ``target`` Hz with soxr (high quality); unchanged when they are equal."""
    if rate <= 0:
        raise AudioError(f"sample rate must be positive, got {rate}")
    if rate == target:
        return np.ascontiguousarray(wave, dtype=np.float32)
    soxr = require("soxr", "audio")
    return np.ascontiguousarray(soxr.resample(wave, rate, target, quality="HQ"), dtype=np.float32)


def wav_problem(path: Path) -> str | None:
    """Why a RIFF/WAVE file is cut short (its ``data`` chunk claims more bytes than the file has), or None.

    Files that are not RIFF/WAVE are left to the decoder."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                chunk, length = struct.unpack("<4sI", fh.read(8))
                if chunk == b"data":
                    if length != 0xFFFFFFFF and pos + 8 + length > size:  # 0xFFFFFFFF: streamed, length unknown
                        return f"truncated WAV (data chunk of {length} bytes, {size - pos - 8} present)"
                    return None
                pos += 8 + length + (length & 1)
            return "WAV file without a data chunk"
    except OSError as exc:
        return str(exc)
