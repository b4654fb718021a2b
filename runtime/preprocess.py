"""Image -> model input, driven only by the model card (OpenCV + numpy, no torch).

Mirrors timm's eval transform: resize the short side to ``floor(size / crop_pct)``, centre-crop
to ``size``, scale to [0, 1], normalize with the card's mean/std, then lay out as the card says
(NCHW or NHWC). Images given as numpy arrays are BGR by default (what OpenCV and the webcam
deliver); pass ``color="RGB"`` for PIL-style arrays. Downscaling uses ``INTER_AREA`` (closest to
PIL's antialiased resize), upscaling the card's interpolation.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from edgekit.card import InputSpec
from edgekit.errors import EdgekitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_INTERP = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST,
           "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}


class InputError(EdgekitError):
    """An image or tensor the model cannot take (empty, corrupt, wrong shape or dtype)."""


def read_image(path: str | Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 BGR array, or an :class:`InputError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None or img.size == 0:
        raise InputError(f"cannot read image {path}: empty, corrupt or not an image")
    return img


def check_frame(img: np.ndarray, where: str = "image") -> np.ndarray:
    """Validate an HxWx3 (or HxW gray) uint8 array; return it as HxWx3."""
    if not isinstance(img, np.ndarray):
        raise InputError(f"{where}: expected a numpy array, a file path or a list of them, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise InputError(f"{where}: expected uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(f"{where}: expected an HxWx3 image, got shape {img.shape}")
    return img[:, :, :3]


def resize_crop(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Short side to ``floor(size / crop_pct)``, then a centre crop to ``size`` (timm's eval)."""
    th, tw = spec.size
    h, w = img.shape[:2]
    if (h, w) != (th, tw):
        short = math.floor(min(th, tw) / spec.crop_pct) if th == tw else None
        if short is not None:
            # torchvision's rule: the long side is truncated, not rounded
            nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        else:  # non-square target: scale so both sides cover it
            scale = max(th / h, tw / w) / spec.crop_pct
            nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
        if (nh, nw) != (h, w):
            interp = cv2.INTER_AREA if nh < h else _INTERP.get(spec.interpolation, cv2.INTER_LINEAR)
            img = cv2.resize(img, (nw, nh), interpolation=interp)
        top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
        img = img[top: top + th, left: left + tw]
    return img


def preprocess(images: list[np.ndarray], spec: InputSpec, color: str = "BGR") -> np.ndarray:
    """A float32 batch for the model: resized, cropped, normalized, in the card's layout."""
    if color not in ("BGR", "RGB"):
        raise InputError(f"color must be BGR or RGB, got {color}")
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    batch = np.empty((len(images), spec.size[0], spec.size[1], 3), np.float32)
    for i, img in enumerate(images):
        img = resize_crop(check_frame(img, f"image {i}"), spec)
        if color != spec.color:
            img = img[:, :, ::-1]
        batch[i] = img
    batch /= np.float32(255.0)
    batch -= mean
    batch /= std
    if spec.layout == "NCHW":
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return batch
