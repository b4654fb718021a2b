"""Sampling: the dataset, its sampler and loader.

Every sample is a pure function of ``(index, view, seed)``: the sampler hands the dataset a key,
and augmentation runs under that key's seed. That makes runs reproducible regardless of worker
count, makes ``--resume`` bit-identical, and lets distillation cache the teacher's outputs per
fixed augmentation view (``view`` >= 0) while plain training draws a fresh view every epoch.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch

from edgekit.errors import DataError
from edgekit.train.data.split import Split


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under a fixed torch + python RNG seed, restoring both afterwards."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


class ImageDataset(torch.utils.data.Dataset):
    """Indexed by ``(index, view, seed)`` keys from :class:`EpochSampler` (or a plain index)."""

    def __init__(self, split: Split, transform: Callable) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict[str, Any]:
        idx, view, seed = key if isinstance(key, tuple) else (int(key), -1, 0)
        img = self.split.load(idx, seed) if self.split.seeded else self.split.load(idx)
        if isinstance(img, list):  # a clip: every frame gets the same augmentation -> [T, C, H, W]
            frames = []
            with seeded(seed):
                py_state, torch_state = random.getstate(), torch.get_rng_state()
                for frame in img:  # replay the same random draws for every frame
                    random.setstate(py_state)
                    torch.set_rng_state(torch_state)
                    frames.append(self.transform(frame))
            x = torch.stack(frames)
        else:
            with seeded(seed):
                x = self.transform(img)
        targets = {name: torch.as_tensor(t[idx]) for name, t in self.split.targets.items()}
        return {"image": x, "targets": targets, "index": idx, "view": view}


def mix_seed(*parts: int) -> int:
    """A well-spread 31-bit seed from integers (splitmix64 over the parts)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFF


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(index, view, seed)`` keys; the epoch's order and augmentations depend only on
    ``(seed, epoch)``, and each DDP rank gets an equal-sized shard of the same permutation.

    ``views=None``: a fresh augmentation per epoch. ``views=K``: each sample uses one of K fixed
    views (seeded by ``(seed, index, view)``), so a teacher's outputs on them can be cached.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, views: int | None = None,
                 rank: int = 0, world: int = 1) -> None:
        if n == 0:
            raise DataError("the dataset is empty")
        self.n, self.seed, self.shuffle, self.views = n, seed, shuffle, views
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        views = (torch.randint(0, self.views, (self.n,), generator=g).tolist() if self.views else None)
        total = len(self) * self.world
        order = (order + order[: total - self.n])[self.rank::self.world]
        for idx in order:
            if views is None:
                yield idx, -1, mix_seed(self.seed, self.epoch, idx)
            else:
                yield idx, views[idx], view_seed(self.seed, idx, views[idx])


def view_seed(seed: int, idx: int, view: int) -> int:
    """The augmentation seed of fixed view ``view`` of sample ``idx`` (stored with the cache)."""
    return mix_seed(seed, 0x5EED, idx, view)


def make_loader(ds: ImageDataset, batch_size: int, sampler: torch.utils.data.Sampler | None,
                workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over keys from ``sampler`` (or the plain, ordered, unaugmented index)."""
    if sampler is None:
        sampler = [(i, -1, 0) for i in range(len(ds))]
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       persistent_workers=workers > 0, drop_last=False)
