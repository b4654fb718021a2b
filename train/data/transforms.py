"""Transforms: timm train/eval transforms from the backbone's data config, overridden by the data
config, with augmentation defaults per kind of source; the eval transform of a model card's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgekit.card import InputSpec
from edgekit.config import DataConfig

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


@dataclass
class Transforms:
    """A run's train and eval transforms, the input contract they implement, and the resolved augmentation."""

    train: Callable
    eval: Callable
    input: InputSpec
    augment: dict[str, Any]  # the resolved augmentation settings


def build_transforms(cfg: DataConfig, kind: str, backbone_cfg: dict[str, Any]) -> Transforms:
    """timm train/eval transforms from the backbone's data config, overridden by ``cfg``."""
    from timm.data import create_transform

    size = cfg.imgsz
    mean = tuple(cfg.mean or backbone_cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.std or backbone_cfg.get("std", (0.229, 0.224, 0.225)))
    interp = cfg.interpolation or ("bicubic" if kind == "digits" else backbone_cfg.get("interpolation", "bilinear"))
    crop_pct = cfg.crop_pct or (1.0 if kind == "digits" else backbone_cfg.get("crop_pct", 0.875))
    aug = {k: v for k, v in cfg.augment.model_dump().items() if k != "enabled"}
    aug = {k: (_AUG_DEFAULTS[kind].get(k) if v is None else v) for k, v in aug.items()}
    spec = InputSpec(size=[size, size], mean=list(mean), std=list(std), interpolation=interp, crop_pct=crop_pct)
    eval_tf = eval_transform(spec)
    train_tf = create_transform(input_size=(3, size, size), interpolation=interp, mean=mean, std=std,
                                is_training=True, **aug) if cfg.augment.enabled else eval_tf
    return Transforms(train=train_tf, eval=eval_tf, input=spec, augment={"enabled": cfg.augment.enabled, **aug})


def eval_transform(spec: InputSpec) -> Callable:
    """timm's eval transform for a model card's input contract (what the runtime mirrors); for a sound
    model, its log-mel frontend."""
    from timm.data import create_transform

    if spec.audio:
        from edgekit.train.data.audio_transforms import audio_eval_transform

        return audio_eval_transform(spec)

    return create_transform(input_size=(3, *spec.size), interpolation=spec.interpolation, mean=tuple(spec.mean),
                            std=tuple(spec.std), crop_pct=spec.crop_pct, is_training=False)
