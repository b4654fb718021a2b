"""What the data wing hands the trainer for any kind of input (images, clips, sound): a run's train and eval
transforms, the input contract they implement (the card's ``input``) and the augmentation that was resolved.
Built by :func:`edgekit.train.data.transforms.build_transforms` (images, clips) and
:func:`edgekit.train.data.audio_transforms.audio_transforms` (sound)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgekit.card import InputSpec


@dataclass
class Transforms:
    """A run's train and eval transforms, the input contract they implement, and the resolved augmentation."""

    train: Callable
    eval: Callable
    input: InputSpec
    augment: dict[str, Any]  # the resolved augmentation settings
