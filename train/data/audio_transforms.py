"""Sound -> model input for training: the runtime's log-mel frontend, then SpecAugment.

The features come from :class:`edgekit.runtime.logmel.AudioFrontend`, the code the runtime runs on
the device, so training and deployment cannot compute different spectrograms. The normalization
(one mean and one std over every log-mel value) is measured on up to 256 training windows (seed 0)
and recorded in the card as ``input.mean`` / ``input.std``. SpecAugment (Park et al., 2019) zeroes
``freq_masks`` bands of up to ``freq_mask`` mel bins and ``time_masks`` spans of up to ``time_mask``
frames of the normalized spectrogram, drawn from the torch RNG that
:class:`~edgekit.train.data.sampling.ImageDataset` seeds per sample, so runs stay reproducible.
"""

from __future__ import annotations

import numpy as np
import torch

from edgekit.card import InputSpec
from edgekit.config import AudioConfig, DataConfig
from edgekit.runtime.logmel import AudioFrontend
from edgekit.train.data.audio import frontend_of
from edgekit.train.data.split import DataBundle, Split
from edgekit.train.data.transform_set import Transforms

STATS_WINDOWS = 256


class AudioTransform:
    """A waveform window -> ``[1, n_mels, frames]`` float tensor (normalized log-mel, SpecAugment when given)."""

    def __init__(self, frontend: AudioFrontend, mean: float, std: float, masks: dict[str, int] | None = None) -> None:
        self.frontend, self.mean, self.std, self.masks = frontend, float(mean), float(std), masks

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.frontend.features(np.asarray(wave)[None], self.mean, self.std)[0])
        if self.masks:
            spec_augment(x, **self.masks)
        return x


def spec_augment(x: torch.Tensor, freq_masks: int, freq_mask: int, time_masks: int, time_mask: int) -> torch.Tensor:
    """Zero random frequency bands and time spans of ``x`` ``[C, n_mels, frames]`` in place (torch RNG)."""
    _, bins, frames = x.shape
    for count, width, size, axis in ((freq_masks, freq_mask, bins, 1), (time_masks, time_mask, frames, 2)):
        for _ in range(count):
            w = int(torch.randint(0, min(width, size) + 1, ()).item())
            if w == 0:
                continue
            start = int(torch.randint(0, size - w + 1, ()).item())
            x.narrow(axis, start, w).zero_()
    return x


def feature_stats(split: Split, frontend: AudioFrontend, limit: int = STATS_WINDOWS) -> tuple[float, float]:
    """Mean and std of the log-mel values of up to ``limit`` training windows (seed 0 crops, seed 0 choice)."""
    n = len(split)
    ids = np.sort(np.random.default_rng(0).permutation(n)[:limit])
    values = frontend.log_mel(np.stack([split.load(int(i), 0) for i in ids])).astype(np.float64)
    std = float(values.std())
    return float(values.mean()), std if std > 0 else 1.0


def audio_transforms(cfg: DataConfig, data: DataBundle) -> Transforms:
    """Train (features + SpecAugment) and eval (features) transforms of a sound dataset, and its input contract."""
    audio = cfg.audio or AudioConfig()
    frontend = frontend_of(cfg)
    mean, std = feature_stats(data.train, frontend)
    masks = {k: getattr(audio, k) for k in ("freq_masks", "freq_mask", "time_masks", "time_mask")}
    spec = InputSpec(size=frontend.size, mean=[mean], std=[std], audio=frontend.to_dict(), interpolation="none")
    train = AudioTransform(frontend, mean, std, masks if cfg.augment.enabled else None)
    return Transforms(train=train, eval=AudioTransform(frontend, mean, std), input=spec,
                      augment={"enabled": cfg.augment.enabled, "spec_augment": masks if cfg.augment.enabled else None})


def audio_eval_transform(spec: InputSpec) -> AudioTransform:
    """The eval transform of a model card's audio input (what the runtime computes)."""
    return AudioTransform(AudioFrontend.from_dict(spec.audio), spec.mean[0], spec.std[0])
