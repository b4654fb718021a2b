"""Splits: the :class:`Split` and :class:`DataBundle` containers every source returns, fixed
(seed 0) stratified train/val splits, and nested, stratified fractions of a training split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from edgekit.card import HeadSpec
from edgekit.errors import DataError


@dataclass
class Split:
    """One split of a dataset: how to load image ``i`` (a clip: a list of frames) and its targets.

    ``seeded`` splits take the sample's seed, ``load(i, seed)``, for random frame sampling.
    """

    names: list[str]  # file paths, or "digits[i]" for the embedded set
    load: Callable[..., Image.Image | list[Image.Image]]
    targets: dict[str, np.ndarray]  # int64 (-1 missing) / float32 (NaN missing) / float32 [N, C]
    seeded: bool = False
    # sound sources' validation splits hold one sample per window; ``groups[i]`` is the sound window ``i``
    # was cut from, and evaluation aggregates the windows of a sound into one prediction
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, ids: np.ndarray) -> Split:
        ids = np.asarray(ids)
        return Split(names=[self.names[i] for i in ids],
                     load=lambda i, *seed, ids=ids, load=self.load: load(int(ids[i]), *seed),
                     targets={k: v[ids] for k, v in self.targets.items()}, seeded=self.seeded,
                     groups=None if self.groups is None else self.groups[ids])


@dataclass
class DataBundle:
    """Train and val splits plus the heads (with class names) they define."""

    train: Split
    val: Split
    heads: list[HeadSpec]
    kind: str  # "digits", "images", "faces", "clips" or "audio": picks augmentation defaults
    skipped: list[str] = field(default_factory=list)
    frames: int | None = None  # clip datasets: frames per sample


def nested_fraction(split: Split, heads: list[HeadSpec], fraction: float) -> Split:
    """A fixed (seed 0), stratified share of ``split`` (by the first classification head), nested:
    the samples kept at 0.1 are also kept at 0.25, so a sample-efficiency curve only adds data."""
    n = len(split)
    keep = max(2, round(n * fraction))
    order = np.random.default_rng(0).permutation(n)
    first = next((h for h in heads if h.kind == "classification"), None)
    if first is not None:  # interleave classes so every prefix of ``order`` is stratified
        labels = split.targets[first.name][order]
        rank = np.zeros(n)
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            rank[members] = (np.arange(len(members)) + 0.5) / len(members)
        order = order[np.argsort(rank, kind="stable")]
    return split.subset(np.sort(order[:keep]))


def split_lists(paths: list[str], labels: list[Any], frac: float):
    """A fixed (seed 0) ``frac`` validation split of ``paths`` and their ``labels``, stratified by the
    labels when every class has two samples: ``(train paths, train labels, val paths, val labels)``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(paths))
    strat = labels if len(set(labels)) > 1 and min(labels.count(v) for v in set(labels)) >= 2 else None
    try:
        try:
            tr, va = train_test_split(idx, test_size=frac, stratify=strat, random_state=0)
        except ValueError:  # too few samples per class to stratify: a plain random split
            tr, va = train_test_split(idx, test_size=frac, random_state=0)
    except ValueError as exc:
        raise DataError(f"cannot split {len(paths)} samples into train/val: {exc}") from exc
    tr, va = np.sort(tr), np.sort(va)
    return [paths[i] for i in tr], [labels[i] for i in tr], [paths[i] for i in va], [labels[i] for i in va]


def missing_targets(split: Split, heads: list[HeadSpec], n: int | None = None) -> dict[str, np.ndarray]:
    """Targets meaning "no label" for ``n`` samples (default: ``len(split)``) of ``heads``: class ``-1``,
    regression ``NaN``, a multilabel row of ``NaN``; the losses and metrics mask them."""
    n = len(split) if n is None else n
    out = {}
    for h in heads:
        if h.kind == "classification":
            out[h.name] = np.full(n, -1, np.int64)
        elif h.kind == "multilabel":
            out[h.name] = np.full((n, h.outputs), np.nan, np.float32)
        else:
            out[h.name] = np.full(n, np.nan, np.float32)
    return out


def concat_splits(first: Split, second: Split) -> Split:
    """``first`` then ``second`` as one split (targets concatenated head by head)."""
    n = len(first)

    def load(i: int, *seed):
        return first.load(i, *seed) if i < n else second.load(i - n, *seed)

    targets = {k: np.concatenate([first.targets[k], second.targets[k]]) for k in first.targets}
    return Split(names=first.names + second.names, load=load, targets=targets,
                 seeded=first.seeded or second.seeded)
