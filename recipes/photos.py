"""An ImageFolder of natural photos for random-weight stand-ins: crops of scikit-image's sample images.

The coverage matrix measures random-init timm models. Their BatchNorm
statistics, INT8 calibration, probe head and parity images must come from *real* images, and the
embedded digits are a poor choice at 224 px: an 8x8 digit upsampled 28 times is 64 flat blocks, so a
random backbone maps every digit to nearly the same embedding. Then the tiny input noise of an 8-bit
quantizer moves the output as much as a different digit does (fused random ``mobileone_s0``: an
embedding whose image-to-image variation is 1.7 dB above that noise on digits, 10.9 dB on these
photos; the output SQNR of LiteRT's INT8 graph goes from 2.9 to 12.6 dB). Photos carry detail at
every scale, as users' images do.

``photo_folder(root)`` writes ``root/train/<photo>/*.jpg`` and ``root/val/<photo>/*.jpg``: random
crops (a quarter to all of the shorter side, mirrored half the time) of every colour or grey photo
scikit-image ships in its wheel (no download), one class per photo. Deterministic for a seed; the
folder appears whole or not at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgekit.errors import ConfigError

# photos in scikit-image's wheel (skimage/data), not fetched: the synthetic ones (chessboard,
# phantom, colour wheel) and the 102-px microaneurysms are left out
PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png", "coins.png",
          "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "logo.png", "moon.png",
          "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png", "clock_motion.png")
DONE = ".complete"


def photo_folder(root: str | Path, train_per_class: int = 16, val_per_class: int = 4, size: int = 256,
                 seed: int = 0) -> Path:
    """Write (or reuse) the ImageFolder at ``root``; returns ``root``."""
    import numpy as np
    from PIL import Image

    root = Path(root)
    stamp = f"{train_per_class} {val_per_class} {size} {seed}"
    if (root / DONE).exists() and (root / DONE).read_text() == stamp:
        return root
    try:
        import skimage
    except ImportError:
        raise ConfigError("the photo stand-in data needs scikit-image (pip install 'edgekit[dev]')") from None
    src = Path(skimage.__file__).parent / "data"
    rng = np.random.default_rng(seed)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for name in PHOTOS:
        photo = Image.open(src / name).convert("RGB")
        label, (w, h) = name.rsplit(".", 1)[0], photo.size
        for split, n in (("train", train_per_class), ("val", val_per_class)):
            (tmp / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                side = int(min(w, h) * rng.uniform(0.25, 1.0))
                x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
                crop = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
                crop.save(tmp / split / label / f"{i:03d}.jpg", quality=92)
    (tmp / DONE).write_text(stamp)
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(root)
    return root
