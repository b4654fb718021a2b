"""``edgekit predict``: a model on an image, a folder of images or a video (no torch needed)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.runtime.predictor import load
from edgekit.runtime.preprocess import IMAGE_SUFFIXES, InputError, read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
BATCH = 32


def run_on_source(model: str | Path, source: str | Path, topk: int = 1, device: str = "auto",
                  threads: int | None = None, stride: int = 1) -> list[dict[str, Any]]:
    """Predictions for every image (or every ``stride``-th video frame) of ``source``."""
    predictor = load(model, device=device, threads=threads)
    source = Path(source)
    if not source.exists():
        raise InputError(f"not found: {source}")
    results: list[dict[str, Any]] = []
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{source} has no images ({', '.join(IMAGE_SUFFIXES)})")
        for i in range(0, len(files), BATCH):
            chunk, frames = [], []
            for f in files[i: i + BATCH]:
                try:
                    frames.append(read_image(f))
                    chunk.append(f)
                except InputError as exc:  # one bad file in a folder: report it, go on
                    results.append({"source": str(f), "error": str(exc)})
            if frames:
                for f, pred in zip(chunk, predictor.predict(frames, topk=topk), strict=True):
                    results.append({"source": str(f), "predictions": pred})
        if all("error" in r for r in results):
            raise InputError(f"no readable image in {source}")
        return sorted(results, key=lambda r: r["source"])
    if source.suffix.lower() in VIDEO_SUFFIXES:
        for index, frame in video_frames(source, stride):
            results.append({"source": str(source), "frame": index,
                            "predictions": predictor.predict(frame, topk=topk)[0]})
        return results
    return [{"source": str(source), "predictions": predictor.predict(read_image(source), topk=topk)[0]}]


def video_frames(path: Path, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) for every ``stride``-th frame of a video file."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {path}")
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % max(1, stride) == 0:
                yield index, frame
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise InputError(f"{path} has no readable frames")


def format_prediction(pred: dict[str, Any]) -> str:
    parts = []
    for head, p in pred.items():
        if "label" in p:
            top = p["top"]
            text = ", ".join(f"{label} ({score:.3f})" for label, score in top)
            parts.append(f"{head}={text}")
        elif "labels" in p:
            parts.append(f"{head}=[{', '.join(p['labels'])}]")
        else:
            parts.append(f"{head}={p['value']:.3f}")
    return "  ".join(parts)


def print_predictions(results: list[dict[str, Any]], as_json: bool = False) -> None:
    if as_json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for r in results:
        where = r["source"] + (f"#{r['frame']}" if "frame" in r else "")
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
        else:
            print(f"{where}: {format_prediction(r['predictions'])}")
