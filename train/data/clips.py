"""Clip datasets: N frames per sample, for the temporal models (:mod:`edgekit.train.temporal`).

- ``moving_digits`` (embedded): every one of scikit-learn's 1,797 digits moves across a black
  canvas in one of four directions; the label is the direction. The start point is drawn so that
  the positions a digit visits have the same distribution for opposite directions: a single frame,
  or the average of the frames, cannot tell ``left`` from ``right``. Only the order can.
- a clip CSV ``video,start_frame,stop_frame,label`` (EPIC-KITCHENS style: ``verb_class`` and
  ``noun_class`` columns give two heads, ``verb`` and ``noun``), videos relative to the CSV, frames
  read with ``cv2.VideoCapture``.

Frame sampling splits ``[start_frame, stop_frame]`` into N equal segments and takes each one's
centre (``uniform``; always for validation) or, in training with ``data.sampling=random``, a
random frame of each segment, drawn from the sample's seed (so runs stay reproducible). A clip
loads as a list of PIL images; :class:`edgekit.train.data.sampling.ImageDataset` applies the same
augmentation to every frame of a clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.card import HeadSpec, clip_frame_indices
from edgekit.config import DataConfig, HeadConfig
from edgekit.errors import ConfigError, DataError, EdgekitError, option
from edgekit.train.data.labels import csv_header, encode_labels, read_csv, split_rows
from edgekit.train.data.split import DataBundle, Split

MOVING_DIGITS = "moving_digits"
DIRECTIONS = ["right", "left", "down", "up"]
_STEP = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}  # (dx, dy)
CLIP_COLUMNS = ("video", "start_frame", "stop_frame")
EPIC_HEADS = (("verb", "verb_class"), ("noun", "noun_class"))


# -- moving digits -------------------------------------------------------------------------------


def moving_digit_clip(digit: np.ndarray, direction: str, frames: int, size: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``frames`` RGB frames ``[T, size, size, 3]`` of ``digit`` (a uint8 grey image) moving one way."""
    d = max(4, size // 2)
    sprite = np.asarray(Image.fromarray(digit, mode="L").resize((d, d), Image.BICUBIC))
    free = size - d
    travel = rng.uniform(0.6, 1.0) * free
    lo = rng.uniform(0.0, free - travel)  # the visited stretch is [lo, lo + travel] whichever the direction
    across = rng.uniform(0.0, free)
    dx, dy = _STEP[direction]
    out = np.zeros((frames, size, size), np.uint8)
    for t in range(frames):
        step = travel * t / max(1, frames - 1)
        along = lo + step if (dx + dy) > 0 else lo + travel - step
        x, y = (along, across) if dx else (across, along)
        x, y = int(round(x)), int(round(y))
        out[t, y: y + d, x: x + d] = sprite
    return np.repeat(out[..., None], 3, axis=3)


def moving_digits(cfg: DataConfig, heads: list[HeadConfig]):
    """The embedded clip dataset (see the module docstring): head ``direction``, 4 classes."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if heads and (len(heads) != 1 or heads[0].kind != "classification"):
        raise ConfigError("moving_digits has one label per clip (its direction): give one classification head")
    name = heads[0].name if heads else "direction"
    digits = load_digits()
    pixels = np.clip(digits.images / 16.0 * 255.0, 0, 255).astype(np.uint8)
    labels = np.random.default_rng(0).integers(0, len(DIRECTIONS), len(pixels)).astype(np.int64)
    frames, size = cfg.frames, cfg.imgsz

    def load(i: int, ids: np.ndarray) -> list[Image.Image]:
        j = int(ids[i])
        clip = moving_digit_clip(pixels[j], DIRECTIONS[labels[j]], frames, size, np.random.default_rng(j))
        return [Image.fromarray(f) for f in clip]

    tr, va = train_test_split(np.arange(len(labels)), test_size=cfg.val_fraction, stratify=labels, random_state=0)

    def split(ids: np.ndarray) -> Split:
        ids = np.sort(ids)
        return Split(names=[f"{MOVING_DIGITS}[{i}]" for i in ids], load=lambda i, ids=ids: load(i, ids),
                     targets={name: labels[ids]})

    spec = HeadSpec(name=name, kind="classification", classes=list(DIRECTIONS))
    return DataBundle(train=split(tr), val=split(va), heads=[spec], kind="digits", frames=frames)


# -- clips from videos ---------------------------------------------------------------------------


def is_clip_source(source: str) -> bool:
    """Whether ``data.source`` names clips (the embedded moving digits or a clip CSV)."""
    return source == MOVING_DIGITS or (source.lower().endswith(".csv") and is_clip_csv(Path(source)))


def is_clip_csv(path: Path) -> bool:
    """A CSV whose header names ``video``, ``start_frame`` and ``stop_frame``."""
    return set(CLIP_COLUMNS) <= set(csv_header(path))


def read_frames(video: str, indices: list[int]) -> list[Image.Image]:
    """Frames ``indices`` of ``video`` as RGB PIL images (decoding: :mod:`edgekit.runtime.video`)."""
    from edgekit.runtime.video import read_frames as read_bgr

    try:
        return [Image.fromarray(f[:, :, ::-1].copy()) for f in read_bgr(video, indices)]
    except EdgekitError as exc:
        raise DataError(str(exc)) from None


def clip_csv(path: Path, cfg: DataConfig, heads: list[HeadConfig]):
    """Clips from ``video,start_frame,stop_frame,<labels>`` rows (see the module docstring)."""
    rows, columns = _read_clip_csv(path)
    if not heads:
        if {"verb_class", "noun_class"} <= set(columns):
            heads = [HeadConfig(name=n, column=c) for n, c in EPIC_HEADS]
        else:
            labels = [c for c in columns if c not in CLIP_COLUMNS]
            if len(labels) != 1:
                raise ConfigError(f"{path} has label columns {labels}: say which heads they are with {option('heads')}")
            heads = [HeadConfig(name=labels[0])]
    rows, val_rows, specs = split_rows(path, rows, columns, heads, cfg, _read_clip_csv)
    skipped: list[str] = []
    counts: dict[str, int | None] = {}
    frames, random_sampling = cfg.frames, cfg.sampling == "random"

    def build(rows: list[dict[str, str]], where: Path, train: bool) -> Split:
        keep = []
        for r in rows:
            reason = _check_clip(r, counts)
            if reason is None:
                keep.append(r)
            elif cfg.skip_bad:
                skipped.append(f"{r['video']} [{r['start_frame']}-{r['stop_frame']}]")
            else:
                raise DataError(f"{where}: {reason} (pass {option('skip_bad', True)} to skip bad clips)")
        if not keep:
            raise DataError(f"{where}: no readable clips left")
        spans = [(r["video"], int(r["start_frame"]), int(r["stop_frame"])) for r in keep]
        targets = {h.name: np.asarray(encode_labels(h, s, [r[h.column or h.name] for r in keep], where))
                   for h, s in zip(heads, specs, strict=True)}

        def load(i: int, seed: int = 0) -> list[Image.Image]:
            video, start, stop = spans[i]
            rng = np.random.default_rng(seed) if (train and random_sampling) else None
            return read_frames(video, clip_frame_indices(start, stop, frames, rng))

        return Split(names=[f"{v}[{a}-{b}]" for v, a, b in spans], load=load, targets=targets, seeded=True)

    train = build(rows, path, True)
    val = build(val_rows, Path(cfg.val) if cfg.val else path, False)
    return DataBundle(train=train, val=val, heads=specs, kind="clips", skipped=skipped, frames=frames)


def _read_clip_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    return read_csv(path, required=CLIP_COLUMNS, files=("video",), frames=CLIP_COLUMNS[1:])


def _check_clip(row: dict[str, str], counts: dict[str, int | None]) -> str | None:
    """Why a clip cannot be read (None: it can). Each video is opened once."""
    from edgekit.runtime.video import frame_count

    video, start, stop = row["video"], int(row["start_frame"]), int(row["stop_frame"])
    if video not in counts:
        counts[video] = frame_count(video) if Path(video).is_file() else None
    n = counts[video]
    if n is None:
        return f"cannot read video {video}" + ("" if Path(video).is_file() else " (file not found)")
    if start > stop:
        return f"{video}: start_frame {start} is after stop_frame {stop}"
    if stop >= n:
        return f"{video}: stop_frame {stop} is past the last frame ({n - 1})"
    return None
