"""``edgekit demo webcam``: an exported classifier on a camera, a video or an image folder.

Each frame (or every ``every``-th) goes through the model; the frame gets the top-k labels with
their confidence, the live FPS and the model's latency. A window shows it, or with ``headless``
an annotated video, a JSON-lines log (one record per inference) and a summary are written.

A clip model (its card has ``frames`` = T) classifies a sliding window: the last T sampled frames
(every ``every``-th), each preprocessed once as it arrives; until T frames are in, nothing is shown.

An impossible value (an age outside 0-120 years) is shown as ``?``, printed once, noticed on screen
and listed in the summary's ``warnings`` (:mod:`edgekit.apps.plausibility`). Unlike the kiosk's face
attributes, a 100% probability is no warning here: a classifier is rightly sure of a clear digit.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.apps.capture import Frame, open_source
from edgekit.apps.loop import loop_summary, run_frames, summary_line
from edgekit.apps.output import JsonLines, Window, plan_outputs
from edgekit.apps.overlay import draw_notice, draw_status, prediction_lines, text_block
from edgekit.apps.plausibility import OutputCheck
from edgekit.apps.timing import StageClock
from edgekit.atomic import write_json
from edgekit.errors import ConfigError, option
from edgekit.runtime.predictor import load
from edgekit.runtime.preprocess import InputError, preprocess


def run_webcam(model: str | os.PathLike, source: str | int = "0", *, headless: bool = False,
               out: str | os.PathLike | None = None, log: str | os.PathLike | None = None, every: int = 1,
               topk: int = 3, threads: int | None = None, device: str = "auto", max_frames: int | None = None,
               prefetch: bool = True, verbose: bool = True) -> dict[str, Any]:
    """Run the classifier demo; returns (and writes) its summary."""
    if every < 1 or topk < 1 or (max_frames is not None and max_frames < 1):
        raise ConfigError(f"{option('every')}, {option('topk')} and {option('max_frames')} must be at least 1")
    video, log_path, summary_path = plan_outputs("webcam", out, log, headless)
    window = None if headless else Window("edgekit webcam")  # no display: fail before loading anything
    predictor = load(model, device=device, threads=threads)
    src = open_source(source)
    clock = StageClock()
    checks = OutputCheck(predictor.card.heads, certainty=False)
    records = JsonLines(log_path) if log_path else None
    state: dict[str, Any] = {"pred": None, "inferred": 0, "latency": 0.0, "errors": 0}
    clip: deque[np.ndarray] | None = deque(maxlen=predictor.frames) if predictor.frames else None

    def step(frame: Frame, live_fps: float) -> None:
        if frame.index % every == 0:
            try:
                with clock("preprocess"):
                    if clip is None:
                        batch = predictor.preprocess(frame.image)
                    else:  # a clip model: this frame joins the window of the last T
                        clip.append(preprocess([frame.image], predictor.card.input)[0])
                        batch = np.stack(clip)[None] if len(clip) == clip.maxlen else None
                if batch is None:
                    return _annotate(frame, live_fps)
                with clock("inference"):
                    outputs = predictor.run(batch)
                with clock("postprocess"):
                    state["pred"] = predictor.decode(outputs, topk)[0]
                for warning in checks.observe([state["pred"]]):  # each kind of problem is printed once
                    if verbose:
                        print(f"warning: {predictor.path.name}: {warning}", file=sys.stderr)
            except InputError as exc:  # a bad frame: log it and go on with the next one
                state["errors"] += 1
                if records:
                    records.write({"frame": frame.index, "time": round(frame.time, 4), "error": str(exc)})
            else:
                state["inferred"] += 1
                state["latency"] = sum(clock.last_ms(s) for s in ("preprocess", "inference", "postprocess"))
                if records:
                    records.write({"frame": frame.index, "time": round(frame.time, 4),
                                   "latency_ms": round(state["latency"], 3), "predictions": state["pred"]})
        _annotate(frame, live_fps)

    def _annotate(frame: Frame, live_fps: float) -> None:
        with clock("overlay"):
            if state["pred"] is not None:
                text_block(frame.image, prediction_lines(state["pred"], topk), (4, 4))
            elif clip is not None:
                text_block(frame.image, [f"collecting {len(clip)}/{clip.maxlen} frames"], (4, 4))
            draw_status(frame.image, live_fps, state["latency"])
            if checks.impossible or checks.certain:
                draw_notice(frame.image, checks.notice())

    try:
        result = run_frames(src, step, clock, video=video, window=window, max_frames=max_frames, prefetch=prefetch)
    finally:
        if records:
            records.close()
    summary = loop_summary("webcam", predictor, src, result, prefetch)
    summary.update(inferred=state["inferred"], every=every, topk=topk, bad_frames=state["errors"],
                   warnings=checks.warnings(),
                   log=str(log_path) if log_path else None, summary=str(summary_path))
    write_json(summary_path, summary)
    if verbose:
        print(summary_line(summary))
        for p in (summary["video"], summary["log"], summary_path):
            if p:
                print(Path(p))
    if result.error is not None:
        raise result.error
    return summary
