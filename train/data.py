"""Datasets: the embedded digits, ImageFolder trees and label CSVs, with timm transforms.

Every sample is a pure function of ``(index, view, seed)``: the sampler hands the dataset a key,
and augmentation runs under that key's seed. That makes runs reproducible regardless of worker
count, makes ``--resume`` bit-identical, and lets distillation cache the teacher's outputs per
fixed augmentation view (``view`` >= 0) while plain training draws a fresh view every epoch.
"""

from __future__ import annotations

import contextlib
import csv
import math
import random
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from edgekit.card import HeadSpec, InputSpec
from edgekit.config import DataConfig, HeadConfig
from edgekit.errors import ConfigError, DataError
from edgekit.train.clips import MOVING_DIGITS, clip_csv, is_clip_csv, moving_digits

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DIGITS_HEAD = "digit"
FOLDER_HEAD = "class"

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
class Split:
    """One split of a dataset: how to load image ``i`` (a clip: a list of frames) and its targets.

    ``seeded`` splits take the sample's seed, ``load(i, seed)``, for random frame sampling.
    """

    names: list[str]  # file paths, or "digits[i]" for the embedded set
    load: Callable[..., Image.Image | list[Image.Image]]
    targets: dict[str, np.ndarray]  # int64 (-1 missing) / float32 (NaN missing) / float32 [N, C]
    seeded: bool = False

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, ids: np.ndarray) -> Split:
        ids = np.asarray(ids)
        return Split(names=[self.names[i] for i in ids],
                     load=lambda i, *seed, ids=ids, load=self.load: load(int(ids[i]), *seed),
                     targets={k: v[ids] for k, v in self.targets.items()}, seeded=self.seeded)


@dataclass
class DataBundle:
    """Train and val splits plus the heads (with class names) they define."""

    train: Split
    val: Split
    heads: list[HeadSpec]
    kind: str  # "digits", "images", "faces" or "clips": picks augmentation defaults
    skipped: list[str] = field(default_factory=list)
    frames: int | None = None  # clip datasets: frames per sample


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------


def load_data(cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """Load the dataset ``cfg.source`` names: ``digits``, an ImageFolder root, a CSV file, FER2013's
    ``fer2013.csv``, a UTKFace folder, or several of them joined with ``+`` (``utk/+fer2013.csv``)."""
    bundle = _combined(cfg, heads) if _parts(cfg.source) else _load_source(cfg.source, cfg, heads)
    if cfg.limit:
        rng = np.random.default_rng(0)
        for name, n in (("train", cfg.limit), ("val", max(1, cfg.limit // 4))):
            split = getattr(bundle, name)
            if len(split) > n:
                setattr(bundle, name, split.subset(np.sort(rng.choice(len(split), n, replace=False))))
    if cfg.fraction is not None and cfg.fraction < 1.0:
        bundle.train = _fraction(bundle.train, bundle.heads, cfg.fraction)
    missing = [h.name for h in heads if h.name not in {s.name for s in bundle.heads}]
    if missing:
        raise ConfigError(f"no head {', '.join(missing)} in {cfg.source} (it provides "
                          f"{', '.join(s.name for s in bundle.heads)})")
    return bundle


def _load_source(src: str, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    path = Path(src)
    if src == "digits":
        return _digits(cfg, heads)
    if src == MOVING_DIGITS:
        return moving_digits(cfg, heads)
    if not path.exists():
        raise DataError(f"dataset not found: {src} (expected 'digits', an ImageFolder root or a CSV file)")
    if path.is_dir():
        return _utkface(path, cfg, heads) if _is_utkface(path) else _image_folder(path, cfg, heads)
    if path.suffix.lower() == ".csv":
        if is_clip_csv(path):
            return clip_csv(path, cfg, heads)
        return _fer2013(path, cfg, heads) if _is_fer2013(path) else _csv(path, cfg, heads)
    raise DataError(f"dataset {src} is neither a folder nor a .csv file")


def _fraction(split: Split, heads: list[HeadSpec], fraction: float) -> Split:
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


def _single_head(heads: list[HeadConfig], default: str, source: str) -> HeadConfig:
    if not heads:
        return HeadConfig(name=default, kind="classification")
    if len(heads) != 1 or heads[0].kind != "classification":
        raise ConfigError(f"{source} has one label per image: give one classification head (or none)")
    return heads[0]


def _digits(cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """scikit-learn's 1,797 handwritten 8x8 digits, rendered to RGB at ``cfg.imgsz``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    head = _single_head(heads, DIGITS_HEAD, "the digits dataset")
    digits = load_digits()
    pixels = np.clip(digits.images / 16.0 * 255.0, 0, 255).astype(np.uint8)
    size = (cfg.imgsz, cfg.imgsz)
    rendered = np.stack([
        np.asarray(Image.fromarray(p, mode="L").resize(size, Image.BICUBIC).convert("RGB")) for p in pixels
    ])
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr, va = train_test_split(idx, test_size=cfg.val_fraction, stratify=labels, random_state=0)

    def split(ids: np.ndarray) -> Split:
        ids = np.sort(ids)
        return Split(names=[f"digits[{i}]" for i in ids],
                     load=lambda i, ids=ids: Image.fromarray(rendered[ids[i]]),
                     targets={head.name: labels[ids]})

    classes = [str(c) for c in range(10)]
    return DataBundle(train=split(tr), val=split(va), kind="digits",
                      heads=[HeadSpec(name=head.name, kind="classification", classes=classes)])


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _image_folder(root: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg`` (val optional: then split)."""
    head = _single_head(heads, FOLDER_HEAD, "an ImageFolder dataset")
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise DataError(f"ImageFolder layout needs {train_dir}/<class>/ folders; {train_dir} does not exist")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{train_dir} has no class folders")

    def scan(split_dir: Path, must_fill: bool) -> tuple[list[str], list[int]]:
        paths, labels = [], []
        for c in sorted(d.name for d in split_dir.iterdir() if d.is_dir()):
            if c not in classes:
                raise DataError(f"class folder {split_dir / c} does not exist under {train_dir}")
            files = _list_images(split_dir / c)
            if not files and must_fill:
                raise DataError(f"class folder {split_dir / c} has no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths += [str(f) for f in files]
            labels += [classes.index(c)] * len(files)
        return paths, labels

    tr_paths, tr_labels = scan(train_dir, must_fill=True)
    if val_dir.is_dir():
        va_paths, va_labels = scan(val_dir, must_fill=False)
        if not va_paths:
            raise DataError(f"{val_dir} has no images")
    else:
        tr_paths, tr_labels, va_paths, va_labels = _split_lists(tr_paths, tr_labels, cfg.val_fraction)
    skipped: list[str] = []
    tr_paths, (tr_labels,) = _verify(tr_paths, [tr_labels], cfg.skip_bad, skipped)
    va_paths, (va_labels,) = _verify(va_paths, [va_labels], cfg.skip_bad, skipped)
    for ci, c in enumerate(classes):
        if ci not in tr_labels:
            raise DataError(f"class '{c}' has no readable training images left")
    spec = HeadSpec(name=head.name, kind="classification", classes=classes)
    return DataBundle(
        train=_file_split(tr_paths, {head.name: np.asarray(tr_labels, np.int64)}),
        val=_file_split(va_paths, {head.name: np.asarray(va_labels, np.int64)}),
        heads=[spec], kind="images", skipped=skipped)


def _split_lists(paths: list[str], labels: list[Any], frac: float):
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


def _csv(path: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """A CSV of ``path,label[,more label columns]``; paths relative to the CSV's folder."""
    rows, columns = _read_csv(path)
    label_cols = [c for c in columns if c != "path"]
    if not heads:
        if len(label_cols) != 1:
            raise ConfigError(f"{path} has label columns {label_cols}: say which heads they are with "
                              "--heads name:kind,... (kind: classification, multilabel, regression)")
        heads = [HeadConfig(name=label_cols[0], kind="classification")]
    rows, val_rows, specs = split_rows(path, rows, columns, heads, cfg,
                                       lambda p: _read_csv(p, need=[h.column or h.name for h in heads]))
    skipped: list[str] = []

    def build(rows: list[dict[str, str]], where: Path) -> Split:
        paths = [r["path"] for r in rows]
        cols = [_encode(h, s, [r[h.column or h.name] for r in rows], where) for h, s in zip(heads, specs, strict=True)]
        paths, cols = _verify(paths, cols, cfg.skip_bad, skipped)
        return _file_split(paths, {h.name: np.asarray(c) for h, c in zip(heads, cols, strict=True)})

    train = build(rows, path)
    val = build(val_rows, Path(cfg.val) if cfg.val else path)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"{path}: no readable images left in the {'train' if len(train) == 0 else 'val'} split")
    return DataBundle(train=train, val=val, heads=specs, kind="images", skipped=skipped)


def split_rows(path: Path, rows: list[dict[str, str]], columns: list[str], heads: list[HeadConfig], cfg: DataConfig,
               read_val: Callable[[Path], tuple[list[dict[str, str]], list[str]]]):
    """``(train rows, val rows, head specs)`` of a label CSV: every head needs its column; val rows
    come from ``cfg.val`` (read with ``read_val``) or a split stratified by the first classifier."""
    for h in heads:
        if (h.column or h.name) not in columns:
            raise DataError(f"{path} has no column '{h.column or h.name}' for head '{h.name}' (columns: {columns})")
    if cfg.val:
        val_rows, _ = read_val(Path(cfg.val))
    else:
        first = next((h for h in heads if h.kind == "classification"), None)
        strat = [r[first.column or first.name] for r in rows] if first else [""] * len(rows)
        rows, _, val_rows, _ = _split_lists(rows, strat, cfg.val_fraction)
    return rows, val_rows, [_head_spec(h, rows, path) for h in heads]


def _read_csv(path: Path, need: list[str] | None = None, required: tuple[str, ...] = ("path",),
              files: tuple[str, ...] = ("path",), frames: tuple[str, ...] = ()
              ) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a label CSV: ``required`` columns present and non-empty in every row, ``files``
    columns resolved relative to the CSV's folder, ``frames`` columns frame numbers."""
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if any(c not in columns for c in required):
                names = ", ".join(f"'{c}'" for c in required)
                raise DataError(f"{path} needs a header row with the {names} column{'s' * (len(required) > 1)} "
                                f"(got {columns or 'nothing'})")
            rows = []
            for line, raw in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
                for c in required:
                    if not row.get(c):
                        raise DataError(f"{path}:{line}: empty '{c}'")
                for c in frames:
                    if not row[c].isdigit():
                        raise DataError(f"{path}:{line}: {c} must be a frame number, got '{row[c]}'")
                for c in files:
                    p = Path(row[c])
                    row[c] = str(p if p.is_absolute() else path.parent / p)
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 text CSV ({exc.reason})") from exc
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV: {exc}") from exc
    if not rows:
        raise DataError(f"{path} has no rows")
    for col in need or []:
        if col not in columns:
            raise DataError(f"{path} has no column '{col}' (columns: {columns})")
    return rows, columns


def _multi(value: str) -> list[str]:
    return [v.strip() for v in value.replace(";", "|").split("|") if v.strip()]


def _head_spec(h: HeadConfig, rows: list[dict[str, str]], path: Path) -> HeadSpec:
    col = h.column or h.name
    values = [r[col] for r in rows if r[col] != ""]
    if not values:
        raise DataError(f"{path}: column '{col}' has no labels")
    if h.kind == "regression":
        return HeadSpec(name=h.name, kind="regression", outputs=1)
    if h.kind == "multilabel":
        classes = sorted({c for v in values for c in _multi(v)}, key=_natural)
    else:
        classes = sorted(set(values), key=_natural)
    if h.kind == "classification" and len(classes) < 2:
        raise DataError(f"{path}: column '{col}' has a single class ({classes[0]}); a classifier needs two")
    return HeadSpec(name=h.name, kind=h.kind, classes=classes, threshold=h.threshold)


def _natural(s: str) -> tuple:
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def _encode(h: HeadConfig, spec: HeadSpec, values: list[str], where: Path) -> list[Any]:
    """Turn label strings into numbers: class index (-1 missing), float (NaN missing), multi-hot."""
    out: list[Any] = []
    for v in values:
        if h.kind == "regression":
            try:
                out.append(np.float32(v) if v != "" else np.float32("nan"))
            except ValueError:
                raise DataError(f"{where}: '{v}' in column '{h.column or h.name}' is not a number") from None
        elif h.kind == "multilabel":
            vec = np.zeros(spec.outputs, np.float32)
            for c in _multi(v):
                if c not in spec.classes:
                    raise DataError(f"{where}: label '{c}' for head '{h.name}' was not seen in training")
                vec[spec.classes.index(c)] = 1.0
            out.append(vec)
        else:
            if v == "":
                out.append(np.int64(-1))
            elif v in spec.classes:
                out.append(np.int64(spec.classes.index(v)))
            else:
                raise DataError(f"{where}: label '{v}' for head '{h.name}' was not seen in training")
    return out


def _verify(paths: list[str], cols: list[list[Any]], skip_bad: bool, skipped: list[str]):
    """Decode every image once, up front: a bad file is reported before training starts."""
    keep = []
    for i, p in enumerate(paths):
        reason = _unreadable(p)
        if reason is None:
            keep.append(i)
        elif skip_bad:
            skipped.append(p)
        else:
            raise DataError(f"cannot read image {p}: {reason} (pass --skip-bad to skip unreadable files)")
    return [paths[i] for i in keep], [[c[i] for i in keep] for c in cols]


def _unreadable(path: str) -> str | None:
    try:
        with Image.open(path) as im:
            im.load()
            if im.width == 0 or im.height == 0:
                return "empty image"
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, ValueError, SyntaxError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _file_split(paths: list[str], targets: dict[str, np.ndarray]) -> Split:
    def load(i: int) -> Image.Image:
        try:
            with Image.open(paths[i]) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as exc:  # changed on disk since it was verified
            raise DataError(f"cannot read image {paths[i]}: {exc}") from exc

    return Split(names=list(paths), load=load, targets=targets)


# ----------------------------------------------------------------------------------------------
# Face datasets (the kiosk's multi-task model) and combined sources
# ----------------------------------------------------------------------------------------------

FER_EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FER_SIZE = 48  # FER2013 faces are 48x48 grey
UTK_GENDERS = ["male", "female"]
UTK_RACES = ["white", "black", "asian", "indian", "other"]
_UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_\d+")  # age_gender_race_date*.jpg


def _face_heads(available: list[HeadSpec], default: list[str], heads: list[HeadConfig], source: Path) -> list[HeadSpec]:
    """The heads a face source provides: ``default`` when no heads are configured, else the configured
    heads it knows (heads it does not know may come from another source joined with ``+``)."""
    known = {h.name: h for h in available}
    if not heads:
        return [known[n] for n in default]
    picked = []
    for h in heads:
        if h.name in known:
            if h.kind != known[h.name].kind:
                raise ConfigError(f"head '{h.name}' of {source} is {known[h.name].kind}, not {h.kind}")
            picked.append(known[h.name])
    if not picked:
        raise ConfigError(f"{source} provides the heads {', '.join(known)}; none of them is configured "
                          f"(heads: {', '.join(h.name for h in heads)})")
    return picked


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV, stripped and lower-cased (empty when it cannot be read)."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return [c.strip().lower() for c in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _is_fer2013(path: Path) -> bool:
    """A CSV whose header has ``emotion`` and ``pixels`` columns: FER2013's own layout."""
    return {"emotion", "pixels"} <= set(csv_header(path))


def _fer2013(path: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """FER2013's ``fer2013.csv``: ``emotion,pixels,Usage`` rows of 48x48 grey faces (pixels as a
    space-separated string). Usage ``Training`` is train, ``PublicTest``/``PrivateTest`` val; without
    a Usage column (or without val rows) a stratified split. Head ``emotion`` (7 classes)."""
    specs = _face_heads([HeadSpec(name="emotion", kind="classification", classes=FER_EMOTIONS)], ["emotion"],
                        heads, path)
    skipped: list[str] = []

    def read(csv_path: Path) -> tuple[list[str], np.ndarray, list[int], list[str]]:
        names, pixels, labels, usage = [], [], [], []
        try:
            with csv_path.open(newline="", encoding="utf-8") as fh:
                for line, raw in enumerate(csv.DictReader(fh), start=2):
                    row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
                    where = f"{csv_path}:{line}"
                    reason = _fer_row_problem(row)
                    if reason is not None:
                        if cfg.skip_bad:
                            skipped.append(where)
                            continue
                        raise DataError(f"{where}: {reason} (pass --skip-bad to skip bad rows)")
                    names.append(where)
                    pixels.append(np.asarray(row["pixels"].split(), np.int64).astype(np.uint8))
                    labels.append(int(row["emotion"]))
                    usage.append(row.get("usage", "").lower())
        except UnicodeDecodeError as exc:
            raise DataError(f"{csv_path} is not a UTF-8 text CSV ({exc.reason})") from exc
        except csv.Error as exc:
            raise DataError(f"{csv_path} is not a valid CSV: {exc}") from exc
        if not names:
            raise DataError(f"{csv_path} has no usable rows")
        faces = np.stack(pixels).reshape(-1, FER_SIZE, FER_SIZE)
        return names, faces, labels, usage

    names, faces, labels, usage = read(path)
    if cfg.val:
        v_names, v_faces, v_labels, _ = read(Path(cfg.val))
        names, faces, labels = names + v_names, np.concatenate([faces, v_faces]), labels + v_labels
        tr, va = list(range(len(usage))), list(range(len(usage), len(names)))
    else:
        unknown = sorted({u for u in usage if u not in ("training", "publictest", "privatetest", "")})
        if unknown:
            raise DataError(f"{path}: unknown Usage value(s) {unknown} (expected Training, PublicTest, PrivateTest)")
        tr = [i for i, u in enumerate(usage) if u != "publictest" and u != "privatetest"]
        va = [i for i, u in enumerate(usage) if u in ("publictest", "privatetest")]
        if not va:  # no Usage column, or training rows only
            tr, _, va, _ = _split_lists(tr, [labels[i] for i in tr], cfg.val_fraction)
        if not tr:
            raise DataError(f"{path} has no Training rows")
    labels_arr = np.asarray(labels, np.int64)

    def split(ids: list[int]) -> Split:
        ids_arr = np.asarray(ids, np.int64)
        return Split(names=[names[i] for i in ids_arr],
                     load=lambda i, ids=ids_arr: Image.fromarray(faces[ids[i]], mode="L").convert("RGB"),
                     targets={"emotion": labels_arr[ids_arr]})

    return DataBundle(train=split(tr), val=split(va), heads=specs, kind="faces", skipped=skipped)


def _fer_row_problem(row: dict[str, str]) -> str | None:
    if "emotion" not in row or "pixels" not in row:
        return "missing emotion or pixels"
    if not row["emotion"].isdigit() or not 0 <= int(row["emotion"]) < len(FER_EMOTIONS):
        return f"emotion '{row['emotion']}' is not a class index 0..{len(FER_EMOTIONS) - 1}"
    values = row["pixels"].split()
    if len(values) != FER_SIZE * FER_SIZE:
        return f"pixels has {len(values)} values, expected {FER_SIZE * FER_SIZE} (48x48)"
    if not all(v.isdigit() and int(v) <= 255 for v in values):
        return "pixels must be integers 0..255"
    return None


def _is_utkface(folder: Path) -> bool:
    """A flat folder (no ``train/``) holding images named ``age_gender_race_date*.jpg``."""
    if (folder / "train").is_dir():
        return False
    return any(_UTK_NAME.match(p.name) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _utkface(folder: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """UTKFace: ``age_gender_race_date.jpg`` (gender 0 male / 1 female; race 0-4) in one folder.

    Heads ``age`` (regression) and ``gender`` by default, ``race`` when configured; a stratified
    split by gender. A file named otherwise is an error naming it (or skipped with ``--skip-bad``).
    """
    available = [HeadSpec(name="age", kind="regression"),
                 HeadSpec(name="gender", kind="classification", classes=UTK_GENDERS),
                 HeadSpec(name="race", kind="classification", classes=UTK_RACES)]
    specs = _face_heads(available, ["age", "gender"], heads, folder)
    skipped: list[str] = []
    paths, cols = [], {"age": [], "gender": [], "race": []}
    for p in sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS):
        m = _UTK_NAME.match(p.name)
        if m is None or int(m.group(1)) > 120:
            if cfg.skip_bad:
                skipped.append(str(p))
                continue
            raise DataError(f"{p}: not a UTKFace name age_gender_race_date.jpg (age 0-120, gender 0/1, race 0-4); "
                            "pass --skip-bad to skip such files")
        paths.append(str(p))
        cols["age"].append(np.float32(m.group(1)))
        cols["gender"].append(np.int64(m.group(2)))
        cols["race"].append(np.int64(m.group(3)))
    if not paths:
        raise DataError(f"{folder} has no UTKFace images left")
    names = [h.name for h in specs]
    tr, _, va, _ = _split_lists(list(range(len(paths))), [int(g) for g in cols["gender"]], cfg.val_fraction)

    def split(ids: list[int]) -> Split:
        ps, cs = _verify([paths[i] for i in ids], [[cols[n][i] for i in ids] for n in names], cfg.skip_bad, skipped)
        return _file_split(ps, {n: np.asarray(c) for n, c in zip(names, cs, strict=True)})

    train, val = split(tr), split(va)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"{folder}: no readable images left in the {'train' if len(train) == 0 else 'val'} split")
    return DataBundle(train=train, val=val, heads=specs, kind="faces", skipped=skipped)


def _parts(source: str) -> list[str]:
    """The sources of ``a+b+...`` (empty for a single source, or a path that itself contains '+')."""
    if "+" not in source or Path(source).exists():
        return []
    parts = [p.strip() for p in source.split("+")]
    if not all(parts):
        raise DataError(f"empty source in '{source}' (join sources with '+', e.g. utk/+fer2013.csv)")
    return parts


def _combined(cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """Several sources as one: heads are the union; a label one source lacks is missing there
    (class -1, regression NaN), which the losses and metrics mask."""
    parts = _parts(cfg.source)
    bundles = [_load_source(p, cfg, heads) for p in parts]
    specs: dict[str, HeadSpec] = {}
    for b, src in zip(bundles, parts, strict=True):
        for h in b.heads:
            seen = specs.setdefault(h.name, h)
            if (seen.kind, seen.classes) != (h.kind, h.classes):
                raise DataError(f"head '{h.name}' of {src} ({h.kind}, classes {h.classes}) differs from another "
                                f"source's ({seen.kind}, classes {seen.classes})")
    for name, spec in specs.items():
        if spec.kind == "multilabel" and not all(name in b.train.targets for b in bundles):
            raise DataError(f"multilabel head '{name}' must be labelled in every source of {cfg.source}")

    def join(splits: list[Split]) -> Split:
        offsets = np.cumsum([0] + [len(s) for s in splits])
        targets = {}
        for name, spec in specs.items():
            fill = (lambda n: np.full(n, -1, np.int64)) if spec.kind == "classification" else (
                lambda n: np.full(n, np.nan, np.float32))
            targets[name] = np.concatenate([s.targets[name] if name in s.targets else fill(len(s)) for s in splits])

        def load(i: int) -> Image.Image:
            k = int(np.searchsorted(offsets, i, side="right")) - 1
            return splits[k].load(i - int(offsets[k]))

        return Split(names=[n for s in splits for n in s.names], load=load, targets=targets)

    kinds = {b.kind for b in bundles}
    return DataBundle(train=join([b.train for b in bundles]), val=join([b.val for b in bundles]),
                      heads=list(specs.values()), kind=kinds.pop() if len(kinds) == 1 else "images",
                      skipped=[s for b in bundles for s in b.skipped])


# ----------------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------------


@dataclass
class Transforms:
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
    """timm's eval transform for a model card's input contract (what the runtime mirrors)."""
    from timm.data import create_transform

    return create_transform(input_size=(3, *spec.size), interpolation=spec.interpolation, mean=tuple(spec.mean),
                            std=tuple(spec.std), crop_pct=spec.crop_pct, is_training=False)


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


def warn_skipped(bundle: DataBundle) -> None:
    if bundle.skipped:
        warnings.warn(f"skipped {len(bundle.skipped)} unreadable image(s), e.g. {bundle.skipped[0]}",
                      stacklevel=2)
