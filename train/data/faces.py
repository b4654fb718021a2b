"""Face datasets (the kiosk's multi-task model): FER2013's ``fer2013.csv`` (head ``emotion``) and a
UTKFace folder (heads ``age``, ``gender``, ``race``), each providing the configured heads it knows.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from edgekit.card import HeadSpec
from edgekit.config import DataConfig, HeadConfig
from edgekit.errors import ConfigError, DataError, option
from edgekit.train.data.labels import (
    IMAGE_EXTENSIONS,
    csv_errors,
    csv_header,
    file_split,
    open_csv,
    verify_images,
)
from edgekit.train.data.split import DataBundle, Split, split_lists

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


def is_fer2013(path: Path) -> bool:
    """A CSV whose header has ``emotion`` and ``pixels`` columns: FER2013's own layout."""
    return {"emotion", "pixels"} <= set(csv_header(path))


def fer2013(path: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """FER2013's ``fer2013.csv``: ``emotion,pixels,Usage`` rows of 48x48 grey faces (pixels as a
    space-separated string). Usage ``Training`` is train, ``PublicTest``/``PrivateTest`` val; without
    a Usage column (or without val rows) a stratified split. Head ``emotion`` (7 classes)."""
    specs = _face_heads([HeadSpec(name="emotion", kind="classification", classes=FER_EMOTIONS)], ["emotion"],
                        heads, path)
    skipped: list[str] = []

    def read(csv_path: Path) -> tuple[list[str], np.ndarray, list[int], list[str]]:
        names, pixels, labels, usage = [], [], [], []
        with csv_errors(csv_path), open_csv(csv_path) as reader:
            for line, raw in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
                where = f"{csv_path}:{line}"
                reason = _fer_row_problem(row)
                if reason is not None:
                    if cfg.skip_bad:
                        skipped.append(where)
                        continue
                    raise DataError(f"{where}: {reason} (pass {option('skip_bad', True)} to skip bad rows)")
                names.append(where)
                pixels.append(np.asarray(row["pixels"].split(), np.int64).astype(np.uint8))
                labels.append(int(row["emotion"]))
                usage.append(row.get("usage", "").lower())
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
            tr, _, va, _ = split_lists(tr, [labels[i] for i in tr], cfg.val_fraction)
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


def is_utkface(folder: Path) -> bool:
    """A flat folder (no ``train/``) holding images named ``age_gender_race_date*.jpg``."""
    if (folder / "train").is_dir():
        return False
    return any(_UTK_NAME.match(p.name) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def utkface(folder: Path, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
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
    for p in sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                    and not f.name.startswith(".")):
        m = _UTK_NAME.match(p.name)
        if m is None or int(m.group(1)) > 120:
            if cfg.skip_bad:
                skipped.append(str(p))
                continue
            raise DataError(f"{p}: not a UTKFace name age_gender_race_date.jpg (age 0-120, gender 0/1, race 0-4); "
                            f"pass {option('skip_bad', True)} to skip such files")
        paths.append(str(p))
        cols["age"].append(np.float32(m.group(1)))
        cols["gender"].append(np.int64(m.group(2)))
        cols["race"].append(np.int64(m.group(3)))
    if not paths:
        raise DataError(f"{folder} has no UTKFace images left")
    names = [h.name for h in specs]
    tr, _, va, _ = split_lists(list(range(len(paths))), [int(g) for g in cols["gender"]], cfg.val_fraction)

    def split(ids: list[int]) -> Split:
        ps, cs = verify_images([paths[i] for i in ids], [[cols[n][i] for i in ids] for n in names],
                               cfg.skip_bad, skipped)
        return file_split(ps, {n: np.asarray(c) for n, c in zip(names, cs, strict=True)})

    train, val = split(tr), split(va)
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"{folder}: no readable images left in the {'train' if len(train) == 0 else 'val'} split")
    return DataBundle(train=train, val=val, heads=specs, kind="faces", skipped=skipped)
