"""The audio frontend: waveform windows -> normalized log-mel spectrograms, in numpy.

One implementation serves training (:mod:`edgekit.train.data.audio`) and every runtime backend,
so the spectrogram a model learned from and the one it gets on the device come from the same
code and cannot disagree. The frontend stays out of the exported graph: an STFT lowers poorly to
TFLite, CoreML and ExecuTorch (complex FFTs are missing or fall back to slow kernels), while this
numpy code runs beside any backend. Its parameters travel in the model card (``card.input.audio``;
the normalization's mean and std are ``card.input.mean`` / ``std``, as for images):

- ``sample_rate``: Hz every file is resampled to; ``window_s``: seconds the model sees at once;
  ``hop_s``: seconds between the windows cut from a longer sound at evaluation and inference;
  ``aggregate``: how window outputs become one per sound (``mean`` or ``max`` of the logits).
- ``n_fft``, ``win_length``, ``hop_length``: the STFT (a periodic Hann window of ``win_length``
  samples centred in ``n_fft``; the window is zero-padded by ``n_fft // 2`` at both ends, and frame
  ``t`` is centred on sample ``t * hop_length``; ``window_samples // hop_length`` frames).
- ``n_mels``, ``fmin``, ``fmax``, ``mel_scale`` (``slaney``: librosa's default, area-normalized
  triangles; ``htk``): the mel filterbank applied to the power spectrum.
- ``log_offset``: ``log(mel + log_offset)``.

The model's input is ``[N, 1, n_mels, frames]`` (NCHW; NHWC files take ``[N, n_mels, frames, 1]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from edgekit.errors import CardError

AGGREGATES = ("mean", "max")
MEL_SCALES = ("slaney", "htk")


@dataclass(frozen=True)
class AudioFrontend:
    """The frontend's parameters (see the module docstring) and its precomputed window and filterbank."""

    sample_rate: int = 16000
    window_s: float = 0.96
    hop_s: float = 0.48
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float | None = None  # None: sample_rate / 2
    mel_scale: str = "slaney"
    log_offset: float = 1e-6
    aggregate: str = "mean"

    def __post_init__(self) -> None:
        bad = []
        if self.sample_rate < 1000:
            bad.append(f"sample_rate {self.sample_rate} (at least 1000 Hz)")
        if not 0 < self.win_length <= self.n_fft:
            bad.append(f"win_length {self.win_length} (1..n_fft={self.n_fft})")
        if self.hop_length < 1:
            bad.append(f"hop_length {self.hop_length}")
        if self.n_mels < 1 or self.n_mels > self.n_fft // 2 + 1:
            bad.append(f"n_mels {self.n_mels} (1..{self.n_fft // 2 + 1})")
        top = self.fmax if self.fmax is not None else self.sample_rate / 2
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            bad.append(f"fmin {self.fmin} / fmax {top} (0 <= fmin < fmax <= sample_rate / 2)")
        if self.window_samples < self.hop_length or self.hop_s <= 0:
            bad.append(f"window_s {self.window_s} / hop_s {self.hop_s}")
        if self.mel_scale not in MEL_SCALES:
            bad.append(f"mel_scale '{self.mel_scale}' ({' or '.join(MEL_SCALES)})")
        if self.aggregate not in AGGREGATES:
            bad.append(f"aggregate '{self.aggregate}' ({' or '.join(AGGREGATES)})")
        if not self.log_offset > 0:
            bad.append(f"log_offset {self.log_offset} (must be positive)")
        if bad:
            raise CardError("audio frontend: bad " + "; ".join(bad))
        object.__setattr__(self, "_window", _hann(self.win_length, self.n_fft))
        mel = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, top, self.mel_scale)
        object.__setattr__(self, "_mel", mel)
        object.__setattr__(self, "_sparse", _sparse_rows(mel))

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AudioFrontend:
        """From a card's ``input.audio`` (unknown keys are ignored, so newer cards stay readable)."""
        if not isinstance(data, dict):
            raise CardError("the model card has no audio frontend (input.audio)")
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise CardError(f"audio frontend: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"frames": self.frames}

    # -- shape ---------------------------------------------------------------------------------
    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return max(1, int(round(self.hop_s * self.sample_rate)))

    @property
    def frames(self) -> int:
        return self.window_samples // self.hop_length

    @property
    def size(self) -> list[int]:
        """The model input's [height, width]: [n_mels, frames]."""
        return [self.n_mels, self.frames]

    # -- windows -------------------------------------------------------------------------------
    def window_starts(self, n: int) -> list[int]:
        """Start samples of the windows covering ``n`` samples: every ``hop_s``, plus one ending at the
        last sample when the hops do not land there. A sound shorter than a window gets one window
        (zero-padded at the end)."""
        w, h = self.window_samples, self.hop_samples
        if n <= w:
            return [0]
        starts = list(range(0, n - w + 1, h))
        if starts[-1] != n - w:
            starts.append(n - w)
        return starts

    def cut(self, wave: np.ndarray, start: int) -> np.ndarray:
        """The window of ``wave`` starting at ``start`` (zero-padded past the end)."""
        w = self.window_samples
        seg = np.asarray(wave[start: start + w], dtype=np.float32)
        if len(seg) < w:
            seg = np.concatenate([seg, np.zeros(w - len(seg), np.float32)])
        return seg

    def windows(self, wave: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """``([W, window_samples] windows, start samples)`` of a mono waveform."""
        starts = self.window_starts(len(wave))
        return np.stack([self.cut(wave, s) for s in starts]), starts

    # -- features ------------------------------------------------------------------------------
    def log_mel(self, windows: np.ndarray) -> np.ndarray:
        """``[W, window_samples]`` (or one ``[window_samples]``) -> ``[W, n_mels, frames]`` float32 log-mel."""
        x = np.asarray(windows, dtype=np.float32)
        one = x.ndim == 1
        if one:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise ValueError(f"expected windows of {self.window_samples} samples, got shape {np.shape(windows)}")
        pad = self.n_fft // 2
        padded = np.pad(x, ((0, 0), (pad, pad)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=1)
        frames = frames[:, : self.frames * self.hop_length: self.hop_length]  # [W, T, n_fft]
        spec = np.fft.rfft(frames * self._window, axis=-1)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        # the filterbank as sums over each filter's few bins: a dense [T, bins] @ [bins, n_mels] product
        # would go through BLAS, whose threads made it 4x slower than this on a busy 2-core machine
        idx, weights, starts = self._sparse
        mel = np.add.reduceat(power[..., idx] * weights, starts, axis=-1)  # [W, T, n_mels]
        out = np.log(mel + np.float32(self.log_offset)).astype(np.float32).transpose(0, 2, 1)
        return np.ascontiguousarray(out[0] if one else out)

    def features(self, windows: np.ndarray, mean: float, std: float) -> np.ndarray:
        """Normalized log-mel ``[W, 1, n_mels, frames]``: the model's NCHW input for these windows."""
        out = self.log_mel(np.atleast_2d(windows))
        out -= np.float32(mean)
        out /= np.float32(std)
        return out[:, None]


def aggregate(outputs: np.ndarray, mode: str = "mean") -> np.ndarray:
    """One row per sound from its windows' raw outputs ``[W, C]``: the mean or the max over windows."""
    if mode not in AGGREGATES:
        raise ValueError(f"aggregate must be {' or '.join(AGGREGATES)}, got '{mode}'")
    out = np.asarray(outputs, dtype=np.float32)
    return out.mean(axis=0) if mode == "mean" else out.max(axis=0)


def group_outputs(outputs: dict[str, np.ndarray], groups: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    """Window outputs ``{head: [W, C]}`` -> one row per group (sound), in the order groups first appear."""
    groups = np.asarray(groups)
    _, first = np.unique(groups, return_index=True)
    order = groups[np.sort(first)]
    return {h: np.stack([aggregate(o[groups == g], mode) for g in order]) for h, o in outputs.items()}


def _hann(win_length: int, n_fft: int) -> np.ndarray:
    """A periodic Hann window of ``win_length`` samples, centred in ``n_fft`` (as ``torch.stft`` pads it)."""
    n = np.arange(win_length, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left)).astype(np.float32)


def _sparse_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(column index, weight, row start)`` of each row's nonzero span, for ``np.add.reduceat``; an empty
    row keeps one zero weight (reduceat would otherwise copy its neighbour's first element)."""
    idx, weights, starts = [], [], []
    for row in matrix:
        nz = np.flatnonzero(row)
        cols = np.arange(nz[0], nz[-1] + 1) if len(nz) else np.array([0])
        starts.append(len(idx))
        idx += cols.tolist()
        weights += (row[cols] if len(nz) else np.zeros(1, np.float32)).tolist()
    return np.asarray(idx, np.int64), np.asarray(weights, np.float32), np.asarray(starts, np.int64)


def hz_to_mel(f: np.ndarray, scale: str = "slaney") -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0  # slaney: linear below 1 kHz, logarithmic above
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m: np.ndarray, scale: str = "slaney") -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float,
                   scale: str = "slaney") -> np.ndarray:
    """``[n_mels, n_fft // 2 + 1]`` triangular filters, equally spaced on the mel scale; ``slaney``
    divides each by its width in Hz (constant energy per band, librosa's ``norm="slaney"``)."""
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), n_mels + 2), scale)
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if scale == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)

