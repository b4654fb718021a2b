"""Sources: what ``data.source`` names, dispatched to its loader (the embedded digits, an
ImageFolder root, a label CSV, the face datasets, clips, or several sources joined with ``+``), and
:func:`load_data`, which also applies ``data.limit`` and ``data.fraction``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.card import HeadSpec
from edgekit.config import DataConfig, HeadConfig
from edgekit.errors import ConfigError, DataError, option
from edgekit.train.data.audio import is_audio_source, load_audio
from edgekit.train.data.clips import MOVING_DIGITS, clip_csv, is_clip_csv, moving_digits
from edgekit.train.data.faces import fer2013, is_fer2013, is_utkface, utkface
from edgekit.train.data.labels import (
    IMAGE_EXTENSIONS,
    class_order,
    encode_labels,
    file_split,
    read_csv,
    split_rows,
    verify_images,
)
from edgekit.train.data.split import DataBundle, Split, nested_fraction, split_lists

DIGITS_HEAD = "digit"
FOLDER_HEAD = "class"


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
        bundle.train = nested_fraction(bundle.train, bundle.heads, cfg.fraction)
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
    if is_audio_source(src):
        return load_audio(src, cfg, heads)
    if not path.exists():
        raise DataError(f"dataset not found: {src} (expected 'digits', 'speech_commands', a folder or a CSV file)")
    if path.is_dir():
        return utkface(path, cfg, heads) if is_utkface(path) else _image_folder(path, cfg, heads)
    if path.suffix.lower() == ".csv":
        if is_clip_csv(path):
            return clip_csv(path, cfg, heads)
        return fer2013(path, cfg, heads) if is_fer2013(path) else _csv(path, cfg, heads)
    raise DataError(f"dataset {src} is neither a folder nor a .csv file")


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
    """Image files under ``folder``, recursively; hidden entries (``.ipynb_checkpoints``, ``.DS_Store``,
    ``._photo.jpg``) are not data."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_dirs(folder: Path) -> list[str]:
    """Class folders of an ImageFolder split, hidden ones left out (Jupyter leaves ``.ipynb_checkpoints`` in
    every folder it opens), in the one class order edgekit uses everywhere (:func:`class_order`)."""
    return class_order(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _image_folder(root: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg`` (val optional: then split)."""
    head = _single_head(heads, FOLDER_HEAD, "an ImageFolder dataset")
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise DataError(f"ImageFolder layout needs {train_dir}/<class>/ folders; {train_dir} does not exist")
    classes = _class_dirs(train_dir)
    if not classes:
        raise DataError(f"{train_dir} has no class folders")

    def scan(split_dir: Path, must_fill: bool) -> tuple[list[str], list[int]]:
        paths, labels = [], []
        for c in _class_dirs(split_dir):
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
        tr_paths, tr_labels, va_paths, va_labels = split_lists(tr_paths, tr_labels, cfg.val_fraction)
    skipped: list[str] = []
    tr_paths, (tr_labels,) = verify_images(tr_paths, [tr_labels], cfg.skip_bad, skipped)
    va_paths, (va_labels,) = verify_images(va_paths, [va_labels], cfg.skip_bad, skipped)
    for ci, c in enumerate(classes):
        if ci not in tr_labels:
            raise DataError(f"class '{c}' has no readable training images left")
    spec = HeadSpec(name=head.name, kind="classification", classes=classes)
    return DataBundle(
        train=file_split(tr_paths, {head.name: np.asarray(tr_labels, np.int64)}),
        val=file_split(va_paths, {head.name: np.asarray(va_labels, np.int64)}),
        heads=[spec], kind="images", skipped=skipped)


def _csv(path: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """A CSV of ``path,label[,more label columns]``; paths relative to the CSV's folder."""
    rows, columns = read_csv(path)
    label_cols = [c for c in columns if c != "path"]
    if not heads:
        if len(label_cols) != 1:
            raise ConfigError(f"{path} has label columns {label_cols}: say which heads they are with "
                              f"{option('heads', 'name:kind,...')} (kind: classification, multilabel, regression)")
        heads = [HeadConfig(name=label_cols[0], kind="classification")]
    rows, val_rows, specs = split_rows(path, rows, columns, heads, cfg,
                                       lambda p: read_csv(p, need=[h.column or h.name for h in heads]))
    skipped: list[str] = []

    def build(rows: list[dict[str, str]], where: Path) -> Split:
        paths = [r["path"] for r in rows]
        cols = [encode_labels(h, s, [r[h.column or h.name] for r in rows], where)
                for h, s in zip(heads, specs, strict=True)]
        paths, cols = verify_images(paths, cols, cfg.skip_bad, skipped)
        return file_split(paths, {h.name: np.asarray(c) for h, c in zip(heads, cols, strict=True)})

    train = build(rows, path)
    val = build(val_rows, Path(cfg.val) if cfg.val else path)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"{path}: no readable images left in the {'train' if len(train) == 0 else 'val'} split")
    return DataBundle(train=train, val=val, heads=specs, kind="images", skipped=skipped)


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


def warn_skipped(bundle: DataBundle) -> None:
    """Warn once about the images ``--skip-bad`` left out of ``bundle`` (naming the first)."""
    if bundle.skipped:
        warnings.warn(f"skipped {len(bundle.skipped)} unreadable image(s), e.g. {bundle.skipped[0]}",
                      stacklevel=2)
