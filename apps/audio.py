"""``edgekit demo audio``: an exported sound model on a microphone, or on a file played as a stream.

Sound arrives in chunks of one hop (the card's ``hop_s``, or ``--hop``); each time a full window has
arrived, the model tags the last ``window_s`` seconds: the same windows :func:`edgekit.runtime.tagging.tag`
cuts from a file (every hop from the start, one more ending at the last sample; a sound shorter than
a window is zero-padded), so a file gives the demo the answers ``edgekit predict`` gives. A window
shows the current log-mel spectrogram, the top tags with their scores and a rolling history of the
last windows' tags. With ``headless`` (or ``log``) a JSON-lines log gets one record per window and a
summary (like the webcam demo's: where the time went, latency percentiles, plus the sound's tags and
timed events) is written beside it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.apps.capture import CaptureError
from edgekit.apps.output import JsonLines, Window
from edgekit.apps.sound_sources import open_sound_source
from edgekit.apps.timing import StageClock
from edgekit.atomic import write_json
from edgekit.errors import ConfigError, option
from edgekit.runtime.logmel import aggregate
from edgekit.runtime.predictor import load
from edgekit.runtime.preprocess import InputError
from edgekit.runtime.tagging import events, frontend, sound_batch

HISTORY = 8  # windows in the rolling history shown


def run_audio(model: str | os.PathLike, source: str = "mic", *, headless: bool = False,
              log: str | os.PathLike | None = None, hop_s: float | None = None, topk: int = 3,
              threads: int | None = None, device: str = "auto", max_windows: int | None = None,
              realtime: bool | None = None, verbose: bool = True) -> dict[str, Any]:
    """Run the audio demo; returns (and writes) its summary."""
    if topk < 1 or (max_windows is not None and max_windows < 1) or (hop_s is not None and hop_s <= 0):
        raise ConfigError(f"{option('topk')} and {option('max_windows')} must be at least 1, {option('hop_s')} "
                          "positive")
    log_path = Path(log) if log else (Path("runs/demo/audio/audio.jsonl") if headless else None)
    summary_path = log_path.with_suffix(".summary.json") if log_path else Path("runs/demo/audio/summary.json")
    window = None if headless else Window("edgekit audio")  # no display: fail before loading anything
    predictor = load(model, device=device, threads=threads)
    fe = frontend(predictor)
    w, hop = fe.window_samples, max(1, int(round((hop_s or fe.hop_s) * fe.sample_rate)))
    src = open_sound_source(source, fe.sample_rate, hop, realtime=(not headless) if realtime is None else realtime)
    clock = StageClock()
    records = JsonLines(log_path) if log_path else None
    state: dict[str, Any] = {"outputs": [], "preds": [], "spans": [], "errors": 0}
    history: deque[str] = deque(maxlen=HISTORY)

    def infer(samples: np.ndarray, start: int) -> bool:
        """Tag one window; False when the user closed the window."""
        t0, t1 = start / fe.sample_rate, min(start + w, total) / fe.sample_rate
        try:
            with clock("preprocess"):
                batch = sound_batch(predictor, fe.cut(samples, 0))
            with clock("inference"):
                out = predictor.run(batch)
            with clock("postprocess"):
                pred = predictor.decode(out, topk)[0]
        except InputError as exc:
            state["errors"] += 1
            if records:
                records.write({"window": len(state["preds"]), "start": round(t0, 3), "error": str(exc)})
            return True
        state["outputs"].append(out)
        state["preds"].append(pred)
        state["spans"].append((t0, t1))
        latency = sum(clock.last_ms(s) for s in ("preprocess", "inference", "postprocess"))
        if records:
            records.write({"window": len(state["preds"]) - 1, "start": round(t0, 3), "end": round(t1, 3),
                           "latency_ms": round(latency, 3), "predictions": pred})
        history.appendleft(f"{t0:6.2f}s  {_short(pred, topk)}")
        if window is not None:
            with clock("display"):
                from edgekit.apps.sound_panel import render

                return window.show(render(batch, pred, list(history), predictor.card, latency))
        return True

    pending, consumed, total, stopped, error = np.zeros(0, np.float32), 0, 0, False, None
    tail = np.zeros(0, np.float32)  # the last window's worth of samples, for the window ending at the end
    t_start = time.perf_counter()
    try:
        it = iter(src)
        while max_windows is None or len(state["preds"]) < max_windows:
            t_read = time.perf_counter()
            chunk = next(it, None)
            clock.add("read", time.perf_counter() - t_read)
            if chunk is None:
                break
            pending = np.concatenate([pending, chunk.samples])
            tail = np.concatenate([tail, chunk.samples])[-w:]
            total += len(chunk.samples)
            while len(pending) >= w and (max_windows is None or len(state["preds"]) < max_windows):
                if not infer(pending[:w], consumed):
                    stopped = True
                    break
                pending, consumed = pending[hop:], consumed + hop
            if stopped:
                break
        if not stopped and (max_windows is None or len(state["preds"]) < max_windows):
            if total <= w and not state["preds"]:  # shorter than a window: one zero-padded window
                infer(tail, 0)
            elif total > w and consumed - hop != total - w and state["preds"]:
                infer(tail, total - w)  # the window ending at the last sample, as tag() cuts it
    except CaptureError as exc:
        error = exc
    except KeyboardInterrupt:
        stopped = True
    finally:
        wall = time.perf_counter() - t_start
        src.close()
        if records:
            records.close()
        if window is not None:
            window.close()
    summary = _summary(predictor, src, fe, clock, state, wall, total, hop, topk, stopped, error)
    summary.update(log=str(log_path) if log_path else None, summary=str(summary_path))
    write_json(summary_path, summary)
    if verbose:
        print(summary_line(summary))
        for p in (summary["log"], summary_path):
            if p:
                print(Path(p))
    if error is not None:
        raise error
    return summary


def _summary(predictor, src, fe, clock: StageClock, state: dict[str, Any], wall: float, total: int, hop: int,
             topk: int, stopped: bool, error: Exception | None) -> dict[str, Any]:
    n = len(state["preds"])
    whole, timed = None, {}
    if n:
        heads = predictor.card.head_names
        outs = {h: np.concatenate([o[h] for o in state["outputs"]]) for h in heads}
        whole = predictor.decode({h: aggregate(o, fe.aggregate)[None] for h, o in outs.items()}, topk)[0]
        timed = {h.name: events(h, [p[h.name] for p in state["preds"]], state["spans"])
                 for h in predictor.card.heads if h.kind != "regression"}
    audio_s = total / fe.sample_rate
    stages = clock.breakdown(n)
    return {"app": "audio", "model": str(predictor.path), "backend": predictor.backend.name, "source": src.name,
            "live": src.live, "sample_rate": fe.sample_rate, "window_s": fe.window_s, "hop_s": hop / fe.sample_rate,
            "windows": n, "audio_s": round(audio_s, 3), "wall_s": round(wall, 3),
            "windows_per_s": round(n / wall, 2) if wall > 0 else 0.0,
            "realtime_factor": round(audio_s / wall, 2) if wall > 0 else None,
            "latency_ms": {"inference_p50": clock.percentile_ms("inference", 50),
                           "inference_p90": clock.percentile_ms("inference", 90),
                           "preprocess_p50": clock.percentile_ms("preprocess", 50)},
            "stages_ms_per_window": {k: v["ms_per_frame"] for k, v in stages.items()}, "stages": stages,
            "topk": topk, "bad_windows": state["errors"], "aggregate": fe.aggregate, "predictions": whole,
            "events": timed, "stopped_by_user": stopped, "error": str(error) if error else None}


def _short(pred: dict[str, Any], topk: int) -> str:
    parts = []
    for head, p in pred.items():
        if "scores" in p:
            top = sorted(p["scores"].items(), key=lambda kv: -kv[1])[:topk]
            parts.append(", ".join(f"{c} {s:.2f}" for c, s in top))
        elif "top" in p:
            parts.append(", ".join(f"{c} {s:.2f}" for c, s in p["top"][:topk]))
        else:
            parts.append(f"{head} {p['value']:.2f}")
    return " | ".join(parts)


def summary_line(summary: dict[str, Any]) -> str:
    """``audio: 61 windows of 30.0 s in 1.9 s (15.8x real time); frontend p50 2.1 ms, inference p50 1.0 ms``."""
    lat = summary["latency_ms"]
    f = lat["preprocess_p50"] if lat["preprocess_p50"] is not None else float("nan")
    i = lat["inference_p50"] if lat["inference_p50"] is not None else float("nan")
    rt = summary["realtime_factor"]
    return (f"audio: {summary['windows']} windows of {summary['audio_s']:.1f} s in {summary['wall_s']:.2f} s"
            f"{f' ({rt:.1f}x real time)' if rt else ''}; frontend p50 {f:.2f} ms, inference p50 {i:.2f} ms "
            f"({summary['backend']})")
