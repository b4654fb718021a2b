"""Sound sources: the embedded ``speech_commands``, a folder per class, or a label CSV of sound files.

- A CSV in the Freesound Audio Tagging style, ``fname,labels`` with several labels in one quoted cell
  (``"Bark,Walk_and_footsteps"``), or ``path,label[,more label columns]``. Paths are relative to the
  CSV; a ``fname`` that is not there is looked for in the folder named like the CSV (Kaggle's
  ``train_curated.csv`` + ``train_curated/``). Without ``--heads``, one label column is a head of its
  name: ``multilabel`` when a cell holds several labels (separated by ``,``, ``|`` or ``;``), else
  ``classification``.
- A folder per class: ``root/<class>/*.wav`` (a fixed stratified validation split) or
  ``root/train/<class>/`` and ``root/val/<class>/``; one classification head, ``class``.

Every file is decoded once up front with :func:`edgekit.runtime.audio_io.read_audio` (the runtime's
own decoder: mono, resampled to ``data.audio.sample_rate``): a bad, empty or truncated file stops
with its name, or with ``--skip-bad`` is skipped with a warning. Sounds of any length: training takes
a random crop of one window per sample (seeded like every augmentation), a sound shorter than the
window is zero-padded; validation cuts every sound into the windows the runtime cuts
(:meth:`~edgekit.runtime.logmel.AudioFrontend.window_starts`), one sample each, and ``Split.groups``
lets evaluation aggregate them back into one prediction per sound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.card import HeadSpec
from edgekit.config import AudioConfig, DataConfig, HeadConfig
from edgekit.errors import ConfigError, DataError, option
from edgekit.runtime.audio_io import AUDIO_SUFFIXES, AudioError, read_audio
from edgekit.runtime.logmel import AudioFrontend
from edgekit.train.data.labels import class_order, csv_header, multi_hot, read_csv
from edgekit.train.data.speech import SPEECH_COMMANDS, WORDS, speech_clips
from edgekit.train.data.split import DataBundle, Split, split_lists

SPEECH_HEAD = "words"
FOLDER_HEAD = "class"
CACHE_BYTES = 1 << 30  # decoded sounds are kept in memory up to this size, else decoded again per use


def frontend_of(cfg: DataConfig) -> AudioFrontend:
    """The frontend ``data.audio`` describes (its defaults when unset)."""
    a = (cfg.audio or AudioConfig()).model_dump()
    keep = {k: v for k, v in a.items() if k not in ("freq_masks", "freq_mask", "time_masks", "time_mask")}
    return AudioFrontend(**keep)


def is_audio_source(source: str) -> bool:
    """The embedded speech commands, a CSV naming sound files, or a folder holding sound files."""
    if source == SPEECH_COMMANDS:
        return True
    path = Path(source)
    if path.is_dir():
        return next((True for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES), False)
    if path.suffix.lower() == ".csv" and path.is_file():
        header = csv_header(path)
        if "fname" in header:
            return True
        if "path" in header:
            return Path(_first_cell(path, header.index("path"))).suffix.lower() in AUDIO_SUFFIXES
    return False


def _first_cell(path: Path, column: int) -> str:
    """Column ``column`` of the first data row ('' when there is none or the file cannot be read)."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            row = next(reader, [])
            return row[column].strip() if len(row) > column else ""
    except (OSError, UnicodeDecodeError, csv.Error):
        return ""


def load_audio(source: str, cfg: DataConfig, heads: list[HeadConfig]) -> DataBundle:
    """The sound source ``source`` names (see the module docstring)."""
    if cfg.audio is None:
        cfg.audio = AudioConfig()  # the run's config.yaml records the frontend it trained with
    frontend = frontend_of(cfg)
    if source == SPEECH_COMMANDS:
        return _speech_commands(cfg, heads, frontend)
    path = Path(source)
    return _folder(path, cfg, heads, frontend) if path.is_dir() else _csv(path, cfg, heads, frontend)


# -- splits over waveforms -------------------------------------------------------------------------


class Sounds:
    """Decoded sounds: kept in memory (``waves``) or decoded again from ``paths`` when used."""

    def __init__(self, names: list[str], lengths: list[int], waves: list[np.ndarray] | None,
                 sample_rate: int) -> None:
        self.names, self.lengths, self.waves, self.sample_rate = names, lengths, waves, sample_rate

    def wave(self, i: int) -> np.ndarray:
        if self.waves is not None:
            return self.waves[i]
        try:
            return read_audio(self.names[i], self.sample_rate)
        except AudioError as exc:  # changed on disk since it was verified
            raise DataError(str(exc)) from None


def train_split(sounds: Sounds, targets: dict[str, np.ndarray], frontend: AudioFrontend) -> Split:
    """One sample per sound: a random window (from the sample's seed; seed 0 for unaugmented uses)."""
    w = frontend.window_samples

    def load(i: int, seed: int = 0) -> np.ndarray:
        n = sounds.lengths[i]
        start = int(np.random.default_rng(seed).integers(0, n - w + 1)) if n > w else 0
        return frontend.cut(sounds.wave(i), start)

    return Split(names=list(sounds.names), load=load, targets=targets, seeded=True)


def window_split(sounds: Sounds, targets: dict[str, np.ndarray], frontend: AudioFrontend) -> Split:
    """One sample per window the runtime would cut (every ``hop_s``), grouped by sound."""
    items = [(i, s) for i, n in enumerate(sounds.lengths) for s in frontend.window_starts(n)]
    ids = np.asarray([i for i, _ in items], np.int64)
    sr = frontend.sample_rate

    def load(j: int, seed: int = 0) -> np.ndarray:
        i, start = items[j]
        return frontend.cut(sounds.wave(i), start)

    split = Split(names=[f"{sounds.names[i]}@{s / sr:.2f}s" for i, s in items], load=load,
                  targets={k: v[ids] for k, v in targets.items()}, seeded=True, groups=ids)
    split.starts = np.asarray([s for _, s in items], np.int64)  # exact start samples (names round them)
    return split


# -- the embedded speech commands ------------------------------------------------------------------


def _speech_commands(cfg: DataConfig, heads: list[HeadConfig], frontend: AudioFrontend) -> DataBundle:
    if heads and (len(heads) != 1 or heads[0].kind != "multilabel"):
        raise ConfigError(f"{SPEECH_COMMANDS} has one multilabel head (the words in each clip): "
                          f"give one '{SPEECH_HEAD}:multilabel' head (or none)")
    name = heads[0].name if heads else SPEECH_HEAD
    clips = speech_clips(frontend.sample_rate)
    splits = []
    for split, make in (("train", train_split), ("val", window_split)):
        x, y = clips[split]
        sounds = Sounds([f"{SPEECH_COMMANDS}/{split}[{i}]" for i in range(len(x))], [x.shape[1]] * len(x), list(x),
                        frontend.sample_rate)
        splits.append(make(sounds, {name: y}, frontend))
    spec = HeadSpec(name=name, kind="multilabel", classes=list(WORDS))
    return DataBundle(train=splits[0], val=splits[1], heads=[spec], kind="audio")


# -- a folder per class ----------------------------------------------------------------------------


def _list_sounds(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _folder(root: Path, cfg: DataConfig, heads: list[HeadConfig], frontend: AudioFrontend) -> DataBundle:
    if heads and (len(heads) != 1 or heads[0].kind != "classification"):
        raise ConfigError("a folder per class has one label per sound: give one classification head (or none)")
    name = heads[0].name if heads else FOLDER_HEAD
    base = root / "train" if (root / "train").is_dir() else root
    classes = class_order(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")
                          and _list_sounds(d))
    if len(classes) < 2:
        raise DataError(f"{base} needs two or more class folders holding sound files ({', '.join(AUDIO_SUFFIXES)})")

    def scan(folder: Path) -> tuple[list[str], list[int]]:
        paths, labels = [], []
        for c in class_order(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
            if c not in classes:
                raise DataError(f"class folder {folder / c} does not exist under {base}")
            files = _list_sounds(folder / c)
            paths += files
            labels += [classes.index(c)] * len(files)
        return paths, labels

    tr, tr_y = scan(base)
    if (root / "val").is_dir() and base != root:
        va, va_y = scan(root / "val")
    else:
        tr, tr_y, va, va_y = split_lists(tr, tr_y, cfg.val_fraction)
    spec = HeadSpec(name=name, kind="classification", classes=classes)
    return _bundle(tr, {name: np.asarray(tr_y, np.int64)}, va, {name: np.asarray(va_y, np.int64)}, [spec], cfg,
                   frontend)


# -- a label CSV -----------------------------------------------------------------------------------


def split_tags(value: str) -> list[str]:
    """Labels of one cell: separated by ``,`` (Freesound), ``|`` or ``;``; spaces around them dropped."""
    for sep in "|;":
        value = value.replace(sep, ",")
    return [v.strip() for v in value.split(",") if v.strip()]


def _csv(path: Path, cfg: DataConfig, heads: list[HeadConfig], frontend: AudioFrontend) -> DataBundle:
    rows, columns, col = _read(path)
    labels = [c for c in columns if c != col]
    if not heads:
        if len(labels) != 1:
            raise ConfigError(f"{path} has label columns {labels}: say which heads they are with "
                              f"{option('heads', 'name:kind,...')} (kind: classification, multilabel)")
        multi = any(len(split_tags(r[labels[0]])) > 1 for r in rows)
        heads = [HeadConfig(name=labels[0], kind="multilabel" if multi else "classification")]
    for h in heads:
        if (h.column or h.name) not in columns:
            raise DataError(f"{path} has no column '{h.column or h.name}' for head '{h.name}' (columns: {columns})")
        if h.kind == "regression":
            raise ConfigError(f"head '{h.name}': sound sources take classification and multilabel heads")
    if cfg.val:
        val_rows = _read(Path(cfg.val))[0]
    else:
        first = heads[0].column or heads[0].name
        rows, _, val_rows, _ = split_lists(rows, [r[first] for r in rows], cfg.val_fraction)
    specs = [_spec(h, rows, path) for h in heads]

    def encode(rows: list[dict[str, str]], where: Path) -> tuple[list[str], dict[str, np.ndarray]]:
        out = {}
        for h, s in zip(heads, specs, strict=True):
            cells = [r[h.column or h.name] for r in rows]
            out[h.name] = np.asarray([_encode(s, c, where) for c in cells],
                                     np.float32 if s.kind == "multilabel" else np.int64)
        return [r[col] for r in rows], out

    tr, tr_y = encode(rows, path)
    va, va_y = encode(val_rows, Path(cfg.val) if cfg.val else path)
    return _bundle(tr, tr_y, va, va_y, specs, cfg, frontend)


def _read(path: Path) -> tuple[list[dict[str, str]], list[str], str]:
    header = csv_header(path)
    col = "fname" if "fname" in header else "path"
    rows, columns = read_csv(path, required=(col,), files=(col,))
    for r in rows:  # Kaggle's layout: train_curated.csv next to train_curated/
        p = Path(r[col])
        alt = path.parent / path.stem / p.name
        if not p.exists() and alt.exists():
            r[col] = str(alt)
    return rows, columns, col


def _spec(h: HeadConfig, rows: list[dict[str, str]], path: Path) -> HeadSpec:
    col = h.column or h.name
    cells = [r[col] for r in rows if r[col].strip()]
    if not cells:
        raise DataError(f"{path}: column '{col}' has no labels")
    if h.kind == "multilabel":
        classes = class_order({t for c in cells for t in split_tags(c)})
    else:
        classes = class_order(cells)
        if len(classes) < 2:
            raise DataError(f"{path}: column '{col}' has a single class ({classes[0]}); a classifier needs two")
    return HeadSpec(name=h.name, kind=h.kind, classes=classes, threshold=h.threshold)


def _encode(spec: HeadSpec, cell: str, where: Path) -> Any:
    if spec.kind == "multilabel":
        return multi_hot(spec, split_tags(cell), where)
    if cell == "":
        return -1
    if cell not in spec.classes:
        raise DataError(f"{where}: label '{cell}' for head '{spec.name}' was not seen in training")
    return spec.classes.index(cell)


# -- decoding and checking every file --------------------------------------------------------------


def _bundle(tr: list[str], tr_y: dict[str, np.ndarray], va: list[str], va_y: dict[str, np.ndarray],
            specs: list[HeadSpec], cfg: DataConfig, frontend: AudioFrontend) -> DataBundle:
    skipped: list[str] = []
    budget = [CACHE_BYTES]
    train = decode_all(tr, tr_y, frontend.sample_rate, cfg.skip_bad, skipped, budget)
    val = decode_all(va, va_y, frontend.sample_rate, cfg.skip_bad, skipped, budget)
    for part, what in ((train, "train"), (val, "val")):
        if not part[0].names:
            raise DataError(f"{cfg.source}: no readable sound files left in the {what} split")
    return DataBundle(train=train_split(*train, frontend), val=window_split(*val, frontend), heads=specs,
                      kind="audio", skipped=skipped)


def decode_all(paths: list[str], targets: dict[str, np.ndarray], sample_rate: int, skip_bad: bool,
               skipped: list[str], budget: list[int]) -> tuple[Sounds, dict[str, np.ndarray]]:
    """Decode every file once (a bad one: a one-line error naming it, or skipped with ``skip_bad``)."""
    keep, lengths, waves = [], [], []
    for i, p in enumerate(paths):
        try:
            wave = read_audio(p, sample_rate)
        except AudioError as exc:
            if not skip_bad:
                raise DataError(f"{exc} (pass {option('skip_bad', True)} to skip unreadable files)") from None
            skipped.append(p)
            continue
        keep.append(i)
        lengths.append(len(wave))
        budget[0] -= wave.nbytes
        waves.append(wave if budget[0] >= 0 else None)
    cached = waves if all(w is not None for w in waves) else None
    sounds = Sounds([paths[i] for i in keep], lengths, cached, sample_rate)
    return sounds, {k: v[keep] for k, v in targets.items()}
