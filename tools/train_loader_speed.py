"""Images per second of the train loader's transform: timm's ``create_transform(is_training=True)`` (what
training used before it resized with the runtime's code) against edgekit's :class:`TrainTransform`, on the
same ImageFolder (crops of scikit-image's photos), timed alternately in one process so both see the same
machine load::

    python tools/train_loader_speed.py --imgsz 224 --threads 1
"""

from __future__ import annotations

import statistics
import time
from typing import Annotated

import typer


def main(imgsz: Annotated[int, typer.Option(help="Input size.")] = 224,
         photo: Annotated[int, typer.Option(help="Side of the photo crops on disk (px).")] = 320,
         threads: Annotated[int, typer.Option(help="torch threads (a DataLoader worker has 1).")] = 1,
         rounds: int = 5, folder: str = "/tmp/edgekit-loader-photos") -> None:
    import torch
    from timm.data import create_transform

    from edgekit.config import DataConfig, HeadConfig
    from edgekit.recipes.photos import photo_folder
    from edgekit.train.data import ImageDataset, load_data
    from edgekit.train.data.sampling import EpochSampler
    from edgekit.train.data.transforms import build_transforms

    torch.set_num_threads(threads)
    root = photo_folder(folder, train_per_class=16, val_per_class=2, size=photo)
    cfg = DataConfig(source=str(root), imgsz=imgsz)
    bundle = load_data(cfg, [HeadConfig(name="class")])
    tfs = build_transforms(cfg, bundle.kind, {})
    s = tfs.input
    aug = {k: v for k, v in tfs.augment.items() if k != "enabled"}
    before = create_transform(input_size=(3, imgsz, imgsz), interpolation=s.interpolation, mean=tuple(s.mean),
                              std=tuple(s.std), is_training=True, **aug)
    keys = list(EpochSampler(len(bundle.train), seed=0))
    rates: dict[str, list[float]] = {"timm create_transform": [], "TrainTransform (runtime resize)": []}
    for _ in range(rounds):
        for rate, tf in zip(rates.values(), (before, tfs.train), strict=True):
            ds = ImageDataset(bundle.train, tf)
            t = time.perf_counter()
            for k in keys:
                ds[k]
            rate.append(len(keys) / (time.perf_counter() - t))
    print(f"{len(keys)} images of {photo} px -> {imgsz} px, augmentation {aug}, torch threads {threads}")
    for name, rate in rates.items():
        print(f"{name}: {statistics.mean(rate):.1f} ± {statistics.stdev(rate):.1f} images/s ({rounds} rounds)")


if __name__ == "__main__":
    typer.run(main)
