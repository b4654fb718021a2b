"""A model's validation data, for measuring its accuracy through a runtime: which dataset (its card's own,
``--data``), the image files and labels of that dataset's val split for the model's heads, and the images
decoded once per input size into an ``.npy``. Used by ``edgekit bench`` (:mod:`edgekit.recipes.bench`) and
``edgekit check --min-accuracy`` (:mod:`edgekit.recipes.check`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgekit.card import ModelCard
from edgekit.errors import EdgekitError

AUTO = "auto"  # --data default: each model's own validation data (its card names it), else no accuracy


def own_data(card: ModelCard) -> str | None:
    """The dataset a model's card says it was trained on, when it is here (an embedded name, or paths that
    exist); None otherwise."""
    from edgekit.config import EMBEDDED_SOURCES

    source = card.provenance.get("data")
    if not isinstance(source, str) or not source:
        return None
    if source in EMBEDDED_SOURCES:
        return source
    parts = [source] if Path(source).exists() else source.split("+")
    return source if all(Path(p).exists() for p in parts) else None


def dataset_files(card: ModelCard, data: str, work: Path, limit: int | None = None) -> tuple[list[str], dict] | None:
    """Image files and labels ({head: [class name]}) of ``data``'s val split for this model's heads. When
    ``data`` is the model's own dataset, the val split is the one it was trained with (its card records
    how it was split)."""
    from edgekit.config import DataConfig, HeadConfig
    from edgekit.train.data import load_data

    heads = [HeadConfig(name=h.name, kind=h.kind) for h in card.heads]
    split_cfg = card.provenance.get("data_split") if data == card.provenance.get("data") else None
    cfg = DataConfig(source=data, imgsz=card.input.size[0], **(split_cfg or {}))
    try:
        bundle = load_data(cfg, [] if data == "digits" else heads)
    except EdgekitError:
        return None
    names = {h.name for h in bundle.heads}
    pairs = {h.name: h.name for h in card.heads if h.kind == "classification" and h.name in names}
    pairs = pairs or _labelled_pairs(card, bundle.heads)
    others = {h.name: h for h in card.heads if h.kind != "classification" and h.name in names}
    if not pairs and not others:
        return None
    split = bundle.val
    n = len(split) if limit is None else min(limit, len(split))
    files = []
    folder = work / "data" / f"{Path(data).name or 'data'}-{card.input.size[0]}"
    for i in range(n):  # images that live in memory (the digits, FER2013's pixels): written once as PNG
        if Path(split.names[i]).is_file():
            files.append(split.names[i])
            continue
        folder.mkdir(parents=True, exist_ok=True)
        f = folder / f"{i:05d}.png"
        if not f.exists():
            split.load(i).save(f)
        files.append(str(f))
    spec = {h.name: h for h in bundle.heads}
    labels: dict[str, Any] = {mine: [spec[theirs].classes[int(t)] if t >= 0 else None
                                     for t in split.targets[theirs][:n]] for mine, theirs in pairs.items()}
    for name, head in others.items():  # regression values, multilabel label lists (None: not labelled)
        values = split.targets[name][:n]
        if head.kind == "regression":
            labels[name] = {"kind": "regression", "values": [None if v != v else float(v) for v in values]}
        else:
            classes = spec[name].classes
            labels[name] = {"kind": "multilabel", "classes": classes,
                            "labels": [None if row[0] != row[0] else [c for c, on in zip(classes, row, strict=True)
                                                                      if on > 0.5] for row in values]}
    return files, labels


def _labelled_pairs(card: ModelCard, heads: list) -> dict[str, str]:
    """A card built for a file edgekit did not write names its heads after the graph's outputs: the head that
    got ``--labels`` (the first classification head) stands for the dataset's head whose classes it holds."""
    mine = next((h for h in card.heads if h.kind == "classification"), None)
    if not card.provenance.get("labels") or mine is None:
        return {}
    theirs = next((h for h in heads if h.kind == "classification" and set(h.classes) <= set(mine.classes)), None)
    return {mine.name: theirs.name} if theirs else {}


def prepare_dataset(card: ModelCard, data: str, work: Path) -> tuple[Path, Path] | None:
    """The val images (an ``.npy`` of RGB uint8 at the model's input size) and labels, or None."""
    found = dataset_files(card, data, work)
    if not found:
        return None
    files, labels = found
    images = _load_images(files, work, card)
    labels_path = images.with_suffix(".labels.json")
    labels_path.write_text(json.dumps(labels))
    return images, labels_path


def _load_images(files: list[str], work: Path, card: ModelCard) -> Path:
    """Decode the dataset once per input size into an ``.npy`` of RGB uint8 images at that size."""
    import hashlib

    import cv2
    import numpy as np

    from edgekit.runtime.preprocess import read_image, resize_crop

    h, w = card.input.size
    key = hashlib.sha1(json.dumps([files, h, w, card.input.crop_pct]).encode()).hexdigest()[:10]
    out = work / "data" / f"images-{h}x{w}-{key}.npy"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        imgs = [cv2.cvtColor(resize_crop(read_image(f), card.input), cv2.COLOR_BGR2RGB) for f in files]
        np.save(out, np.stack(imgs))
    return out
