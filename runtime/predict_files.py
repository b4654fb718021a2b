"""``edgekit predict``: a model on an image, a folder of images, a video, or sound files (no torch needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from edgekit.runtime.prediction_text import format_prediction
from edgekit.runtime.predictor import load
from edgekit.runtime.preprocess import IMAGE_SUFFIXES, InputError, read_image
from edgekit.runtime.video import VIDEO_SUFFIXES, clip_frames, video_frames

BATCH = 32


def run_on_source(model: str | Path, source: str | Path, topk: int = 1, device: str = "auto",
                  threads: int | None = None, stride: int = 1, assume: Any = None) -> list[dict[str, Any]]:
    """Predictions for every image (or every ``stride``-th video frame) of ``source``. ``assume``
    (:class:`edgekit.runtime.foreign.Assume` or its fields) opens a file without a card; each result then
    says what was assumed (``"assumed"``)."""
    predictor = load(model, device=device, threads=threads, assume=assume)
    results = _on_source(predictor, Path(source), topk, stride)
    if predictor.assumed:
        for r in results:
            r["assumed"] = predictor.assumed
    return results


def _on_source(predictor, source: Path, topk: int, stride: int) -> list[dict[str, Any]]:
    if not source.exists():
        raise InputError(f"not found: {source}")
    if predictor.card.input.audio:  # a sound model: tags of each sound file, with their times
        from edgekit.runtime.tagging import tag_source

        return tag_source(predictor, source, topk)
    if predictor.frames:
        return _clips_on_source(predictor, source, topk)
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


def _clips_on_source(predictor, source: Path, topk: int) -> list[dict[str, Any]]:
    """A clip model on a video (one clip: T frames spread over the whole video) or a folder of videos."""
    videos = sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if source.is_dir() else [source]
    if not videos or any(v.suffix.lower() not in VIDEO_SUFFIXES for v in videos):
        raise InputError(f"{predictor.path.name} is a clip model ({predictor.frames} frames): give it a video or a "
                         f"folder of videos ({', '.join(VIDEO_SUFFIXES)}), not {source}")
    results: list[dict[str, Any]] = []
    for video in videos:
        try:
            frames, n = clip_frames(video, predictor.frames)
        except InputError as exc:  # one bad video in a folder: report it, go on
            results.append({"source": str(video), "error": str(exc)})
            continue
        results.append({"source": str(video), "frames": n, "predictions": predictor.predict(frames, topk=topk)[0]})
    if all("error" in r for r in results):
        raise InputError(f"no readable video in {source}")
    return results


def print_predictions(results: list[dict[str, Any]], as_json: bool = False, model: str | Path = "model") -> None:
    assumed = next((r["assumed"] for r in results if r.get("assumed")), None)
    if assumed:  # stderr: stdout stays the predictions (or one JSON document)
        from edgekit.runtime.foreign import assumed_note

        print(f"note: {assumed_note(model, assumed)}", file=sys.stderr)
    if as_json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if any("duration_s" in r for r in results):
        from edgekit.runtime.tagging import print_tags

        return print_tags(results)
    for r in results:
        where = r["source"] + (f"#{r['frame']}" if "frame" in r else "")
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
        else:
            print(f"{where}: {format_prediction(r['predictions'])}")
