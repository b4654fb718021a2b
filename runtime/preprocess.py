"""Image -> model input, driven only by the model card (OpenCV + numpy, no torch).

THE implementation of the input contract: training's eval transform and the end of its augmentation
call these functions (:mod:`edgekit.train.data.transforms`), so a file and the model it was trained as
see the same tensor. The stages, each a function (export's end-to-end check compares them one by one):

1. decode: :func:`read_image` (OpenCV, EXIF orientation applied);
2. resize: :func:`resize_crop`, timm's eval geometry: the short side to ``floor(size / crop_pct)``, a
   centre crop to ``size``; downscaling through an area filter (antialiased), upscaling through the card's
   interpolation (:func:`resize`);
3. colour order: :func:`to_color`, the channels in the card's order (numpy images are BGR by default, what
   OpenCV and the webcam deliver; pass ``color="RGB"`` for PIL-style arrays);
4. normalization: :func:`normalize`, [0, 1], the card's mean/std, the card's layout (NCHW or NHWC), and
   quantized when the model takes an integer tensor (the card's input scale).

The web page (export/webpage/resize.js, preprocess.js) mirrors these in the browser, bit for bit.
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
            img = resize(img, nh, nw, spec.interpolation)
        top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
        img = img[top: top + th, left: left + tw]
    return img


def resize(img: np.ndarray, nh: int, nw: int, interpolation: str) -> np.ndarray:
    """An HxWxC uint8 image resized to ``nh`` x ``nw``: upscaled with ``interpolation``, downscaled with
    an area filter (antialiased, like PIL's resize). Training's random crops end here too.

    OpenCV's area filter is slow for large non-integer factors (0.5 ms for 640x480 -> 42x32), so a
    big reduction goes first to 2x or 4x the target with a linear filter, then by area: 0.06 ms,
    within a few grey levels of PIL's antialiased resize.
    """
    h = img.shape[0]
    if nh >= h:
        return cv2.resize(img, (nw, nh), interpolation=_INTERP.get(interpolation, cv2.INTER_LINEAR))
    factor = h / nh
    if factor >= 2:
        m = 4 if factor >= 4 else 2
        if m * nh < h:
            img = cv2.resize(img, (m * nw, m * nh), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)


def to_color(img: np.ndarray, color: str, spec: InputSpec) -> np.ndarray:
    """An image whose channels are in ``color`` order (``BGR`` or ``RGB``) in the card's order."""
    return img if color == spec.color else img[:, :, ::-1]


def preprocess(images: list[np.ndarray], spec: InputSpec, color: str = "BGR") -> np.ndarray:
    """A float32 batch for the model: resized, cropped, normalized, in the card's layout."""
    if color not in ("BGR", "RGB"):
        raise InputError(f"color must be BGR or RGB, got {color}")
    batch = np.empty((len(images), spec.size[0], spec.size[1], 3), np.float32)
    for i, img in enumerate(images):
        batch[i] = to_color(resize_crop(check_frame(img, f"image {i}"), spec), color, spec)
    return normalize(batch, spec)


def normalize(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """``[N, H, W, 3]`` pixels (0-255: uint8, or float32, which may be changed in place) in the card's colour
    order -> the model's input: [0, 1], minus the card's mean, over its std, in its layout, quantized for an
    integer input tensor. (Laid out first, then the same three operations on every element.)"""
    if spec.layout == "NCHW":
        batch, channels = batch.transpose(0, 3, 1, 2), (1, 3, 1, 1)
    else:
        channels = (1, 1, 1, 3)
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    batch /= np.float32(255.0)
    batch -= np.asarray(spec.mean, np.float32).reshape(channels)
    batch /= np.asarray(spec.std, np.float32).reshape(channels)
    if spec.quant:  # an integer input tensor (full-INT8 TFLite): quantize here, once
        batch = quantize(batch, spec.dtype, spec.quant["scale"], spec.quant["zero_point"])
    return batch


def quantize(x: np.ndarray, dtype: str | type, scale: float, zero_point: int) -> np.ndarray:
    """float -> integer tensor with a tensor's scale and zero point (round half to even, clipped)."""
    info = np.iinfo(np.dtype(dtype))
    q = np.rint(x / np.float32(scale))
    q += zero_point
    np.clip(q, info.min, info.max, out=q)
    return q.astype(dtype)
