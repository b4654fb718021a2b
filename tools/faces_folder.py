"""An ImageFolder of faces and non-faces as a user brings it: JPEGs of mixed sizes and shapes, odd file names,
and a phone-style copy whose files store their pixels sideways with EXIF orientation 6.

Built from data in scikit-image's wheel (no download): ``data.lfw_subset()`` (100 faces and 100 non-faces
from Labeled Faces in the Wild, 25x25 grey) enlarged to 48-320 px with a random aspect ratio (3:4 to 4:3),
tinted, and half of the non-faces replaced by crops of scikit-image's colour photos at their own resolution
(detail at every scale). 80 training and 20 validation files per class::

    python tools/faces_folder.py /tmp/faces             # -> /tmp/faces/plain/{train,val}/{face,non-face}/*.jpg
                                                       #    /tmp/faces/phone/... (the same photos, EXIF 6)
    edgekit train --data /tmp/faces/plain --imgsz 32 --epochs 1

The phone copy holds the same upright images as the plain one: each is stored rotated 90 degrees
counter-clockwise with orientation 6 ("rotate 90 clockwise to display"), so a decoder that ignores EXIF
sees a sideways photo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

CLASSES = ("face", "non-face")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
NAMES = ("IMG_{i:04d}.JPG", "photo {i} (copy).jpg", "été_{i}.jpeg", "{i}.jpg", "DSC-{i:05d}.jpg")


def make_folder(out: Path, seed: int = 0, val_per_class: int = 20) -> tuple[Path, Path]:
    """Write ``out/plain`` and ``out/phone`` (ImageFolders with train/ and val/); returns both."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    lfw = (data.lfw_subset() * 255).round().astype(np.uint8)  # 100 faces, then 100 non-faces
    photos = [getattr(data, p)() for p in PHOTOS]
    plain, phone = out / "plain", out / "phone"
    for c, cls in enumerate(CLASSES):
        order = rng.permutation(100)
        for k, idx in enumerate(order):
            split = "val" if k < val_per_class else "train"
            if cls == "non-face" and k % 2 == 1:  # a crop of a colour photo, at its own resolution
                photo = photos[int(rng.integers(len(photos)))]
                h, w = photo.shape[:2]
                side_h = int(rng.integers(40, min(h, 360)))
                side_w = int(np.clip(side_h * rng.uniform(0.75, 1.333), 32, w))
                y, x = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
                rgb = photo[y: y + side_h, x: x + side_w]
            else:  # an LFW image, enlarged to a photo-like size and shape, with a tint
                grey = Image.fromarray(lfw[c * 100 + int(idx)])
                h = int(rng.integers(48, 320))
                w = int(np.clip(h * rng.uniform(0.75, 1.333), 40, 400))
                big = np.asarray(grey.resize((w, h), Image.BICUBIC), np.float32)
                tint = rng.uniform(0.8, 1.1, 3).astype(np.float32)
                rgb = np.clip(big[:, :, None] * tint, 0, 255).astype(np.uint8)
            if rgb.ndim == 2:
                rgb = np.repeat(rgb[:, :, None], 3, axis=2)
            name = NAMES[k % len(NAMES)].format(i=k)
            for root, exif in ((plain, False), (phone, True)):
                path = root / split / cls / name
                path.parent.mkdir(parents=True, exist_ok=True)
                _save(np.ascontiguousarray(rgb[:, :, :3]), path, exif)
    return plain, phone


def _save(rgb: np.ndarray, path: Path, exif: bool) -> None:
    from PIL import Image

    if not exif:
        Image.fromarray(rgb).save(path, format="JPEG", quality=90)
        return
    tags = Image.Exif()
    tags[0x0112] = 6  # rotate 90 CW to display: the stored pixels are the upright image turned 90 CCW
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1))).save(path, format="JPEG", quality=90, exif=tags)


def main(out: Annotated[Path, typer.Argument(help="Folder for plain/ and phone/.")],
         seed: int = 0) -> None:
    for path in make_folder(out, seed):
        print(path)


if __name__ == "__main__":
    typer.run(main)
