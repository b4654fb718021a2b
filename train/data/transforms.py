"""Transforms: the train and eval transforms of a run, from the backbone's data config overridden by the
data config, with augmentation defaults per kind of source; the eval transform of a model card's input.

One preprocessing: the runtime's (:mod:`edgekit.runtime.preprocess`). The eval transform *is* the
runtime's resize, crop, colour order and normalization, made a torch tensor, so a file through the
runtime and the PyTorch model through training's pipeline see the same tensor (export gates FP32
files on it, :mod:`edgekit.export.end_to_end`). Training's augmentation is timm's
(``create_transform(is_training=True)``: a random crop box, flips, colour jitter or an AutoAugment
policy, random erasing) except where pixels are resampled: the crop box is cut and brought to the
input size by the runtime's own resize, and the pixels are normalized by the runtime's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekit.card import InputSpec
from edgekit.config import DataConfig
from edgekit.runtime.preprocess import check_frame, normalize, resize, resize_crop, to_color
from edgekit.train.data.transform_set import Transforms

# Augmentation defaults per kind of source (see AugmentConfig): digits must not be mirrored.
_AUG_DEFAULTS = {
    "digits": {"scale": (0.75, 1.0), "ratio": (0.9, 1.1), "hflip": 0.0, "vflip": 0.0, "color_jitter": 0.0,
               "re_prob": 0.0},
    "images": {"scale": (0.5, 1.0), "ratio": (3 / 4, 4 / 3), "hflip": 0.5, "vflip": 0.0, "color_jitter": 0.3,
               "re_prob": 0.0},
    # video clips: a mirrored clip can change its label (a direction, "swipe left"), so no flips by default
    "clips": {"scale": (0.5, 1.0), "ratio": (3 / 4, 4 / 3), "hflip": 0.0, "vflip": 0.0, "color_jitter": 0.3,
              "re_prob": 0.0},
    # face crops (FER2013, UTKFace): mirrored faces are faces; keep most of the face in the crop
    "faces": {"scale": (0.7, 1.0), "ratio": (0.9, 1.1), "hflip": 0.5, "vflip": 0.0, "color_jitter": 0.15,
              "re_prob": 0.0},
}


def build_transforms(cfg: DataConfig, kind: str, backbone_cfg: dict[str, Any]) -> Transforms:
    """Train and eval transforms from the backbone's data config, overridden by ``cfg``."""
    size = cfg.imgsz
    mean = tuple(cfg.mean or backbone_cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.std or backbone_cfg.get("std", (0.229, 0.224, 0.225)))
    interp = cfg.interpolation or ("bicubic" if kind == "digits" else backbone_cfg.get("interpolation", "bilinear"))
    crop_pct = cfg.crop_pct or (1.0 if kind == "digits" else backbone_cfg.get("crop_pct", 0.875))
    aug = {k: v for k, v in cfg.augment.model_dump().items() if k != "enabled"}
    aug = {k: (_AUG_DEFAULTS[kind].get(k) if v is None else v) for k, v in aug.items()}
    spec = InputSpec(size=[size, size], mean=list(mean), std=list(std), interpolation=interp, crop_pct=crop_pct)
    eval_tf = eval_transform(spec)
    train_tf = TrainTransform(spec, aug) if cfg.augment.enabled else eval_tf
    return Transforms(train=train_tf, eval=eval_tf, input=spec, augment={"enabled": cfg.augment.enabled, **aug})


def _rgb(img: Any) -> np.ndarray:
    """A PIL image (any mode) or an HxWx3 RGB uint8 array as an RGB array."""
    if isinstance(img, np.ndarray):
        return check_frame(img)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _torch_spec(spec: InputSpec) -> InputSpec:
    """The card's contract as PyTorch takes it: NCHW float (the card of a file may say NHWC or INT8)."""
    return dataclasses.replace(spec, layout="NCHW", quant=None, dtype="float32")


class EvalTransform:
    """The runtime's preprocessing of one image (a PIL image or an HxWx3 RGB uint8 array) as a CHW torch
    tensor: what training validates on, golden inputs and calibration are made of, and what the file's
    runtime computes from the same image."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = _torch_spec(spec)

    def geometric(self, img: Any) -> np.ndarray:
        """The resized and centre-cropped RGB pixels (uint8 ``[H, W, 3]``): everything before normalization."""
        return resize_crop(_rgb(img), self.spec)

    def __call__(self, img: Any):
        import torch

        return torch.from_numpy(normalize(to_color(self.geometric(img), "RGB", self.spec)[None], self.spec)[0])

    def __repr__(self) -> str:
        s = self.spec
        return f"EvalTransform(size={s.size}, crop_pct={s.crop_pct}, interpolation={s.interpolation}, color={s.color})"


class TrainTransform:
    """timm's training augmentation with the runtime's resize and normalization: a random crop box
    (``RandomResizedCrop``'s ``get_params``), cut and resized by :func:`edgekit.runtime.preprocess.resize`,
    then timm's flips, colour jitter (or AutoAugment), normalization by the runtime's code, random erasing."""

    def __init__(self, spec: InputSpec, aug: dict[str, Any]) -> None:
        from timm.data import create_transform

        self.spec = _torch_spec(spec)
        primary, secondary, final = create_transform(
            input_size=(3, *spec.size), interpolation=spec.interpolation, mean=tuple(spec.mean),
            std=tuple(spec.std), is_training=True, separate=True, **aug)
        self.crop = primary.transforms[0]  # RandomResizedCropAndInterpolation: only its box is used
        self.pil = [*primary.transforms[1:], *secondary.transforms]  # flips, colour jitter / AutoAugment
        self.tensor = [t for t in final.transforms if type(t).__name__ not in ("MaybeToTensor", "ToTensor",
                                                                                 "Normalize")]  # random erasing

    def __call__(self, img: Any):
        import torch
        from PIL import Image

        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        top, left, h, w = self.crop.get_params(img, self.crop.scale, self.crop.ratio)
        pixels = _rgb(img)[top: top + h, left: left + w]
        th, tw = self.spec.size
        if (h, w) != (th, tw):
            pixels = resize(np.ascontiguousarray(pixels), th, tw, self.spec.interpolation)
        if self.pil:
            img = Image.fromarray(pixels)
            for t in self.pil:
                img = t(img)
            pixels = np.asarray(img)
        x = torch.from_numpy(normalize(to_color(pixels, "RGB", self.spec)[None], self.spec)[0])
        for t in self.tensor:
            x = t(x)
        return x


def eval_transform(spec: InputSpec) -> Callable:
    """The eval transform of a model card's input contract: the runtime's preprocessing
    (:class:`EvalTransform`); for a sound model, its log-mel frontend."""
    if spec.audio:
        from edgekit.train.data.audio_transforms import audio_eval_transform

        return audio_eval_transform(spec)
    return EvalTransform(spec)
