"""Labels: reading label CSVs, turning label strings into targets (class index, float, multi-hot),
and verifying image files up front (a bad file is reported before training starts).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgekit.card import HeadSpec
from edgekit.config import DataConfig, HeadConfig
from edgekit.errors import DataError, option
from edgekit.train.data.split import Split, split_lists

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


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
        rows, _, val_rows, _ = split_lists(rows, strat, cfg.val_fraction)
    return rows, val_rows, [_head_spec(h, rows, path) for h in heads]


def read_csv(path: Path, need: list[str] | None = None, required: tuple[str, ...] = ("path",),
             files: tuple[str, ...] = ("path",), frames: tuple[str, ...] = ()
             ) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a label CSV: ``required`` columns present and non-empty in every row, ``files``
    columns resolved relative to the CSV's folder, ``frames`` columns frame numbers."""
    if not path.is_file():
        raise DataError(f"CSV file not found: {path}")
    with csv_errors(path), open_csv(path) as reader:
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
    if not rows:
        raise DataError(f"{path} has no rows")
    for col in need or []:
        if col not in columns:
            raise DataError(f"{path} has no column '{col}' (columns: {columns})")
    return rows, columns


DELIMITERS = (",", ";", "\t")


@contextlib.contextmanager
def open_csv(path: Path) -> Iterator[csv.DictReader]:
    """A ``csv.DictReader`` over a label CSV as spreadsheets write them: UTF-8 with or without Excel's
    byte-order mark ("CSV UTF-8"), separated by commas, semicolons (European Excel) or tabs — the one
    the header line uses most. In a semicolon or tab CSV a regression label may use a decimal comma (``20,5``)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = fh.readline()
        fh.seek(0)
        delimiter = max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","
        yield csv.DictReader(fh, delimiter=delimiter)


@contextlib.contextmanager
def csv_errors(path: Path) -> Iterator[None]:
    """A CSV that is not UTF-8 text or not CSV at all becomes a one-line :class:`DataError`."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 text CSV ({exc.reason})") from exc
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV: {exc}") from exc


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV, stripped and lower-cased (empty when it cannot be read)."""
    try:
        with open_csv(path) as reader:
            return [c.strip().lower() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _multi(value: str) -> list[str]:
    return [v.strip() for v in value.replace(";", "|").split("|") if v.strip()]


def _head_spec(h: HeadConfig, rows: list[dict[str, str]], path: Path) -> HeadSpec:
    col = h.column or h.name
    values = [r[col] for r in rows if r[col] != ""]
    if not values:
        raise DataError(f"{path}: column '{col}' has no labels")
    if h.kind == "regression":
        return HeadSpec(name=h.name, kind="regression", outputs=1)
    classes = class_order({c for v in values for c in _multi(v)} if h.kind == "multilabel" else set(values))
    if h.kind == "classification" and len(classes) < 2:
        raise DataError(f"{path}: column '{col}' has a single class ({classes[0]}); a classifier needs two")
    return HeadSpec(name=h.name, kind=h.kind, classes=classes, threshold=h.threshold)


CLASS_ORDER = "natural: numeric names by value (2 before 10), then the others as text"


def class_order(names) -> list[str]:
    """The one order of class names, for folders and CSV labels alike (:data:`CLASS_ORDER`; the card says it)."""
    return sorted(set(names), key=_natural)


def _natural(s: str) -> tuple:
    try:
        value = float(s)
    except ValueError:
        return (1, 0.0, s)
    return (0, value, s) if math.isfinite(value) else (1, 0.0, s)  # "nan", "inf" are names, not numbers


def encode_labels(h: HeadConfig, spec: HeadSpec, values: list[str], where: Path) -> list[Any]:
    """Turn label strings into numbers: class index (-1 missing), float (NaN missing), multi-hot."""
    out: list[Any] = []
    for v in values:
        if h.kind == "regression":
            try:
                out.append(np.float32(_decimal(v, where)) if v != "" else np.float32("nan"))
            except ValueError:
                raise DataError(f"{where}: '{v}' in column '{h.column or h.name}' is not a number") from None
        elif h.kind == "multilabel":
            out.append(multi_hot(spec, _multi(v), where))
        else:
            if v == "":
                out.append(np.int64(-1))
            elif v in spec.classes:
                out.append(np.int64(spec.classes.index(v)))
            else:
                raise DataError(f"{where}: label '{v}' for head '{h.name}' was not seen in training")
    return out


def multi_hot(spec: HeadSpec, labels: list[str], where: Path) -> np.ndarray:
    """The multi-hot target of a multilabel head (float32, one per class); a label the head has no class for is
    an error (images and sounds alike: each source splits its cells into labels its own way)."""
    vec = np.zeros(spec.outputs, np.float32)
    for c in labels:
        if c not in spec.classes:
            raise DataError(f"{where}: label '{c}' for head '{spec.name}' was not seen in training")
        vec[spec.classes.index(c)] = 1.0
    return vec


def _decimal(value: str, where: Path) -> str:
    """A number as European Excel writes it in a semicolon (or tab) CSV, ``20,5``, as Python reads it. In a
    comma CSV a comma inside a number is ambiguous (``1,234``) and stays an error."""
    if "," in value and "." not in value and value.count(",") == 1 and _delimiter(where) != ",":
        return value.replace(",", ".")
    return value


@functools.lru_cache(maxsize=32)
def _delimiter(path: Path) -> str | None:
    try:
        with open_csv(Path(path)) as reader:
            return reader.reader.dialect.delimiter
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def verify_images(paths: list[str], cols: list[list[Any]], skip_bad: bool, skipped: list[str]):
    """Decode every image once, up front: a bad file is reported before training starts."""
    keep = []
    for i, p in enumerate(paths):
        reason = _unreadable(p)
        if reason is None:
            keep.append(i)
        elif skip_bad:
            skipped.append(p)
        else:
            raise DataError(f"cannot read image {p}: {reason} "
                            f"(pass {option('skip_bad', True)} to skip unreadable files)")
    return [paths[i] for i in keep], [[c[i] for i in keep] for c in cols]


def _unreadable(path: str) -> str | None:
    """Why an image file cannot be used (None: it can). PIL's full decode catches truncated files that
    OpenCV would fill with grey; OpenCV's decode is the one training and the runtime then use."""
    from edgekit.runtime.preprocess import InputError, read_image

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
    try:
        read_image(path)
    except InputError as exc:
        return str(exc)
    return None


def decode_rgb(path: str | Path) -> Image.Image:
    """An image file as training sees it, decoded by the runtime's own decoder (OpenCV, EXIF orientation
    applied: a portrait phone photo is upright on both sides), as an RGB PIL image for timm's transforms."""
    import cv2

    from edgekit.runtime.preprocess import InputError, read_image

    try:
        bgr = read_image(path)
    except InputError as exc:  # changed on disk since it was verified
        raise DataError(str(exc)) from exc
    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def file_split(paths: list[str], targets: dict[str, np.ndarray]) -> Split:
    """A :class:`Split` over image files (already checked by :func:`verify_images`), loaded as RGB by
    :func:`decode_rgb`, the decoder the runtime uses."""
    return Split(names=list(paths), load=lambda i: decode_rgb(paths[i]), targets=targets)
