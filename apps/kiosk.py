"""``edgekit demo kiosk``: faces found, analysed and counted by an exported multi-task model.

Per processed frame: detect faces (Haar cascade: a full scan every ``scan_every`` processed frames,
in between a search around the tracked faces only; or YuNet), crop each with a margin, run the
model on all crops in one batch, track faces across frames (IoU) and draw box + attributes per
face, an analytics panel (visitors by gender / age band / emotion, mean dwell) and the live FPS.
The heads come from the model card: age, gender and emotion when the model has them, else all
its heads. A model whose card does not say it was trained on faces gets an on-screen notice, and
so does a model answering impossible values (an age outside 0-120 years, shown as ``?`` and
counted as unknown) or 100% probabilities: they are printed once and listed in the summary's
``warnings`` (:mod:`edgekit.apps.plausibility`).

Privacy by default: no face image is written. Crops are saved only with ``save_crops``, and the
annotated video shows faces pixelated unless ``show_faces`` is set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import cv2

from edgekit.apps.analytics import panel_rows, totals, visitor_record, write_report
from edgekit.apps.capture import Frame, open_source
from edgekit.apps.faces import crop, make_detector
from edgekit.apps.loop import loop_summary, run_frames, summary_line
from edgekit.apps.output import JsonLines, Window, plan_outputs
from edgekit.apps.overlay import PALETTE, WHITE, draw_box, draw_notice, draw_panel, draw_status, pixelate
from edgekit.apps.plausibility import OutputCheck, shown
from edgekit.apps.timing import StageClock
from edgekit.apps.tracking import IoUTracker
from edgekit.atomic import write_json
from edgekit.card import HeadSpec, ModelCard
from edgekit.errors import ConfigError
from edgekit.runtime.predictor import load

FACE_HEADS = ("age", "gender", "emotion")


def face_heads(card: ModelCard) -> list[HeadSpec]:
    """age / gender / emotion when the model has any of them, otherwise every head it has."""
    return [h for h in card.heads if h.name in FACE_HEADS] or list(card.heads)


def faces_notice(card: ModelCard) -> list[str] | None:
    """The on-screen notice for a model whose card does not say it was trained on faces."""
    domain = card.provenance.get("domain")
    if domain == "faces":
        return None
    return [f"model not trained on faces (domain: {domain or 'unknown'}):",
            "its outputs are not face attributes"]


def face_lines(track_id: int, visitor: bool, pred: dict[str, Any], heads: list[HeadSpec]) -> list[str]:
    lines = [f"visitor {track_id}" if visitor else f"face {track_id}"]
    for h in heads:
        p = pred.get(h.name)
        if p is None:
            continue
        if "label" in p:
            lines.append(f"{h.name} {p['label']} {100 * p['score']:.0f}%")
        elif "labels" in p:
            lines.append(f"{h.name} {', '.join(p['labels']) or '-'}")
        else:
            lines.append(f"{h.name} {shown(h.name, p['value'])}")
    return lines


def run_kiosk(model: str | os.PathLike, source: str | int = "0", *, headless: bool = False,
              out: str | os.PathLike | None = None, log: str | os.PathLike | None = None,
              report: str | os.PathLike | None = None, detector: str | os.PathLike | None = None,
              save_crops: str | os.PathLike | None = None, show_faces: bool = False, every: int = 1,
              scan_every: int = 5,
              threads: int | None = None, device: str = "auto", max_frames: int | None = None, min_hits: int = 3,
              max_missed: int | None = None, margin: float = 0.2, prefetch: bool = True,
              verbose: bool = True) -> dict[str, Any]:
    """Run the kiosk demo; writes the analytics report (JSON + CSV) and the summary, returns the summary."""
    if min(every, scan_every, min_hits) < 1 or (max_frames is not None and max_frames < 1):
        raise ConfigError("--every, --scan-every, --min-hits and --max-frames must be at least 1")
    video, log_path, summary_path = plan_outputs("kiosk", out, log, headless)
    report = report or summary_path.parent / (video.stem + ".report" if video else "report")
    window = None if headless else Window("edgekit kiosk")
    predictor = load(model, device=device, threads=threads)
    if predictor.frames:
        raise ConfigError(f"{model} is a clip model ({predictor.frames} frames); the kiosk analyses single face crops")
    faces = make_detector(detector)
    src = open_source(source)
    heads = face_heads(predictor.card)
    notice = faces_notice(predictor.card)
    checks = OutputCheck(heads)
    if notice and verbose:
        print(f"notice: {predictor.path.name}: {' '.join(notice)}", file=sys.stderr)
    crops_dir = Path(save_crops) if save_crops else None
    if crops_dir:
        crops_dir.mkdir(parents=True, exist_ok=True)
    tracker = IoUTracker(min_hits=min_hits, max_missed=max_missed if max_missed is not None
                         else max(2, round(src.fps / every)))  # a face may vanish for ~1 s
    clock = StageClock()
    records = JsonLines(log_path) if log_path else None
    anonymize = video is not None and not show_faces
    refresh = max(1, round(src.fps / every / 2))
    state: dict[str, Any] = {"faces": [], "processed": 0, "scans": 0, "detections": 0, "crops": 0, "latency": 0.0,
                             "visitors": 0,
                             "panel": panel_rows(totals([], heads), 0)}

    ended: dict[int, dict[str, Any]] = {}  # records of tracks that ended never change: computed once

    def current_visitors() -> list[dict[str, Any]]:
        for t in tracker.finished:
            if t.id not in ended and tracker.is_visitor(t):
                ended[t.id] = visitor_record(t, heads, every / src.fps)
        live = [visitor_record(t, heads, every / src.fps) for t in tracker.active if tracker.is_visitor(t)]
        return [*ended.values(), *live]

    def step(frame: Frame, live_fps: float) -> None:
        image = frame.image
        if frame.index % every == 0:
            if not faces.searches_near or state["processed"] % scan_every == 0:
                with clock("detect"):
                    found = faces.detect(image)  # a full scan: finds new faces
                state["scans"] += 1
            else:  # in between: only around the faces being tracked
                with clock("detect_near"):
                    found = faces.detect(image, near=[t.box for t in tracker.active]) if tracker.active else []
            preds: list[dict[str, Any]] = []
            if found:
                with clock("crop"):
                    crops = [crop(image, f.box, margin) for f in found]
                with clock("preprocess"):
                    batch = predictor.preprocess(crops)
                with clock("inference"):
                    outputs = predictor.run(batch)
                with clock("postprocess"):
                    preds = predictor.decode(outputs, topk=1)
                for warning in checks.observe(preds):  # each kind of problem is printed once
                    if verbose:
                        print(f"warning: {predictor.path.name}: {warning}", file=sys.stderr)
                state["latency"] = sum(clock.last_ms(s) for s in ("preprocess", "inference", "postprocess"))
            with clock("track"):
                tracks = tracker.update([f.box for f in found], frame.time)
                for t, p in zip(tracks, preds, strict=True):
                    t.predictions.append(p)
                visitors = sum(tracker.is_visitor(t) for t in tracker.finished + tracker.active)
                if visitors != state["visitors"] or state["processed"] % refresh == 0:  # ~2 times a second
                    state["panel"] = panel_rows(totals(current_visitors(), heads), len(tracker.active))
                    state["visitors"] = visitors
            state["faces"] = list(zip(tracks, preds, strict=True))
            state["processed"] += 1
            state["detections"] += len(found)
            if crops_dir and found:
                with clock("save_crops"):
                    for t, c in zip(tracks, crops, strict=True):
                        cv2.imwrite(str(crops_dir / f"visitor{t.id:04d}_frame{frame.index:06d}.jpg"), c)
                        state["crops"] += 1
            if records:
                records.write({"frame": frame.index, "time": round(frame.time, 4),
                               "latency_ms": round(state["latency"], 3) if found else None,
                               "faces": [{"track": t.id, "box": list(t.box), "visitor": tracker.is_visitor(t),
                                          "predictions": p} for t, p in state["faces"]]})
        with clock("overlay"):
            for t, p in state["faces"]:
                if anonymize:
                    pixelate(image, t.box)
                visitor = tracker.is_visitor(t)
                draw_box(image, t.box, face_lines(t.id, visitor, p, heads),
                         PALETTE[t.id % len(PALETTE)] if visitor else WHITE)
            draw_panel(image, "kiosk analytics", state["panel"])
            if notice or checks.impossible or checks.certain:
                draw_notice(image, [*(notice or []), *checks.notice()])
            draw_status(image, live_fps, state["latency"], extra=f"faces {len(state['faces'])}")

    try:
        result = run_frames(src, step, clock, video=video, window=window, max_frames=max_frames, prefetch=prefetch)
    finally:
        if records:
            records.close()
    frame_dt = every / src.fps
    visitors = [visitor_record(t, heads, frame_dt) for t in tracker.visitors()]
    summary = loop_summary("kiosk", predictor, src, result, prefetch)
    session = {
        "model": str(predictor.path), "model_domain": predictor.card.provenance.get("domain"),
        "trained_on_faces": notice is None, "notice": " ".join(notice) if notice else None,
        "heads": [h.name for h in heads], "detector": faces.name, "source": src.name,
        "frames": result.frames, "processed_frames": state["processed"], "full_scans": state["scans"],
        "face_detections": state["detections"],
        "source_fps": round(src.fps, 3), "duration_s": round(result.frames / src.fps, 3), "every": every,
        "scan_every": scan_every,
        "min_hits": tracker.min_hits, "max_missed": tracker.max_missed, "fps": summary["fps"],
        "crops_saved": state["crops"], "totals": totals(visitors, heads), "warnings": checks.warnings(),
    }
    json_path, csv_path = write_report(report, session, visitors)
    summary.update(processed=state["processed"], face_detections=state["detections"], every=every,
                   totals=session["totals"], notice=session["notice"], warnings=session["warnings"],
                   report=[str(json_path), str(csv_path)],
                   crops_saved=state["crops"], log=str(log_path) if log_path else None, summary=str(summary_path))
    write_json(summary_path, summary)
    if verbose:
        print(summary_line(summary))
        t = session["totals"]
        print(f"visitors {t['visitors']}; " + "; ".join(f"{k[3:]}: {v}" for k, v in t.items() if k.startswith("by_")))
        for warning in session["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
        for p in (summary["video"], summary["log"], json_path, csv_path, summary_path):
            if p:
                print(Path(p))
    if result.error is not None:
        raise result.error
    return summary
