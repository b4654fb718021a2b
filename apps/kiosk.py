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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2

from edgekit.apps.analytics import Votes, panel_rows, totals, visitor_record, write_report
from edgekit.apps.capture import Frame, Source, open_source
from edgekit.apps.faces import crop, make_detector
from edgekit.apps.loop import loop_summary, run_frames, summary_line
from edgekit.apps.output import JsonLines, Window, plan_outputs
from edgekit.apps.overlay import PALETTE, WHITE, draw_box, draw_notice, draw_panel, draw_status, pixelate
from edgekit.apps.plausibility import OutputCheck, shown
from edgekit.apps.timing import StageClock
from edgekit.apps.tracking import IoUTracker
from edgekit.atomic import write_json
from edgekit.card import HeadSpec, ModelCard
from edgekit.errors import ConfigError, option
from edgekit.runtime.predictor import Predictor, load

FACE_HEADS = ("age", "gender", "emotion")


def face_heads(card: ModelCard) -> list[HeadSpec]:
    """age / gender / emotion when the model has any of them, otherwise every head it has."""
    return [h for h in card.heads if h.name in FACE_HEADS] or list(card.heads)


def faces_notice(card: ModelCard) -> list[str] | None:
    """The on-screen notice for a model whose card does not say it was trained on faces."""
    domain = card.provenance.get("domain")
    if domain == "faces":
        return None
    if domain is None and {h.name.lower() for h in card.heads} & set(FACE_HEADS):
        return None  # an older card without a domain, whose heads say it is a face model
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


@dataclass(frozen=True)
class KioskOptions:
    """What a kiosk run does besides which model and source: outputs, detection, tracking, runtime.

    The fields mirror ``edgekit demo kiosk``'s options (``scan_every`` is ``--scan-every``).
    """

    headless: bool = False  # no window: write the annotated video, log and summary
    out: str | os.PathLike | None = None  # annotated .mp4 (default with headless: runs/demo/kiosk/)
    log: str | os.PathLike | None = None  # JSON-lines records, one per processed frame
    report: str | os.PathLike | None = None  # analytics base path: PATH.json + PATH.csv
    detector: str | os.PathLike | None = None  # YuNet .onnx; None: OpenCV's Haar cascade
    save_crops: str | os.PathLike | None = None  # folder for face crops (off: no face image is written)
    show_faces: bool = False  # do not pixelate faces in the written video
    every: int = 1  # run detection + model on every N-th frame
    scan_every: int = 5  # Haar: full-frame scan every N-th processed frame, else search near tracks
    min_hits: int = 3  # detections before a track counts as a visitor
    max_missed: int | None = None  # processed frames a track may miss (default: about 1 s)
    margin: float = 0.2  # crop margin around a face box, as a fraction of its size
    threads: int | None = None
    device: str = "auto"
    max_frames: int | None = None
    prefetch: bool = True  # decode the next frame while this one is processed
    verbose: bool = True

    def __post_init__(self) -> None:
        small = [name for name in ("every", "scan_every", "min_hits", "max_frames")
                 if getattr(self, name) is not None and getattr(self, name) < 1]
        if small:
            raise ConfigError(f"kiosk: {', '.join(map(option, small))} must be at least 1, got "
                              + ", ".join(option(n, getattr(self, n)) for n in small))
        if self.margin < 0:
            raise ConfigError(f"kiosk: {option('margin')} must be 0 or more, got {self.margin}")


class Kiosk:
    """One kiosk session: the per-frame step (detect, crop, infer, track, draw) and its counters."""

    def __init__(self, predictor: Predictor, src: Source, options: KioskOptions, anonymize: bool,
                 log_path: Path | None) -> None:
        self.predictor, self.src, self.opt, self.anonymize = predictor, src, options, anonymize
        self.faces = make_detector(options.detector)
        self.heads = face_heads(predictor.card)
        self.notice = faces_notice(predictor.card)
        self.checks = OutputCheck(self.heads)
        self.crops_dir = Path(options.save_crops) if options.save_crops else None
        if self.crops_dir:
            self.crops_dir.mkdir(parents=True, exist_ok=True)
        max_missed = options.max_missed if options.max_missed is not None else max(2, round(src.fps / options.every))
        self.tracker = IoUTracker(min_hits=options.min_hits, max_missed=max_missed)  # a face may vanish ~1 s
        self.clock = StageClock()
        self.records = JsonLines(log_path) if log_path else None
        self.frame_dt = options.every / src.fps
        self.refresh = max(1, round(src.fps / options.every / 2))  # the panel: ~2 times a second
        self.shown: list[tuple[Any, dict[str, Any]]] = []  # (track, prediction) drawn on every frame
        self.processed = self.scans = self.detections = self.crops = self.visitors = 0
        self.latency = 0.0
        self.panel = panel_rows(totals([], self.heads), 0)
        self._ended: dict[int, dict[str, Any]] = {}  # records of tracks that ended never change: computed once

    def say(self, line: str) -> None:
        if self.opt.verbose:
            print(line, file=sys.stderr)

    def current_visitors(self) -> list[dict[str, Any]]:
        tracker = self.tracker
        for t in tracker.finished:
            if t.id not in self._ended and tracker.is_visitor(t):
                self._ended[t.id] = visitor_record(t, self.heads, self.frame_dt)
        live = [visitor_record(t, self.heads, self.frame_dt) for t in tracker.active if tracker.is_visitor(t)]
        return [*self._ended.values(), *live]

    def detect(self, image: Any) -> list[Any]:
        """A full scan finds new faces; in between, only the tracked faces' surroundings are searched."""
        if not self.faces.searches_near or self.processed % self.opt.scan_every == 0:
            self.scans += 1
            with self.clock("detect"):
                return self.faces.detect(image)
        with self.clock("detect_near"):
            active = self.tracker.active
            return self.faces.detect(image, near=[t.box for t in active]) if active else []

    def analyse(self, image: Any, found: list[Any]) -> tuple[list[Any], list[dict[str, Any]]]:
        """One batch through the model for every face found; returns the crops and predictions."""
        clock, predictor = self.clock, self.predictor
        with clock("crop"):
            crops = [crop(image, f.box, self.opt.margin) for f in found]
        with clock("preprocess"):
            batch = predictor.preprocess(crops)
        with clock("inference"):
            outputs = predictor.run(batch)
        with clock("postprocess"):
            preds = predictor.decode(outputs, topk=1)
        for warning in self.checks.observe(preds):  # each kind of problem is printed once
            self.say(f"warning: {predictor.path.name}: {warning}")
        self.latency = sum(clock.last_ms(s) for s in ("preprocess", "inference", "postprocess"))
        return crops, preds

    def track(self, found: list[Any], preds: list[dict[str, Any]], time: float) -> list[Any]:
        tracker = self.tracker
        with self.clock("track"):
            tracks = tracker.update([f.box for f in found], time)
            for t, p in zip(tracks, preds, strict=True):
                if t.votes is None:
                    t.votes = Votes(self.heads)
                t.votes.add(p)
            visitors = sum(tracker.is_visitor(t) for t in tracker.finished + tracker.active)
            if visitors != self.visitors or self.processed % self.refresh == 0:
                self.panel = panel_rows(totals(self.current_visitors(), self.heads), len(tracker.active))
                self.visitors = visitors
        return tracks

    def step(self, frame: Frame, live_fps: float) -> None:
        image = frame.image
        if frame.index % self.opt.every == 0:
            found = self.detect(image)
            crops, preds = self.analyse(image, found) if found else ([], [])
            tracks = self.track(found, preds, frame.time)
            self.shown = list(zip(tracks, preds, strict=True))
            self.processed += 1
            self.detections += len(found)
            if self.crops_dir and found:
                with self.clock("save_crops"):
                    for t, c in zip(tracks, crops, strict=True):
                        cv2.imwrite(str(self.crops_dir / f"visitor{t.id:04d}_frame{frame.index:06d}.jpg"), c)
                        self.crops += 1
            if self.records:
                self.records.write({
                    "frame": frame.index, "time": round(frame.time, 4),
                    "latency_ms": round(self.latency, 3) if found else None,
                    "faces": [{"track": t.id, "box": list(t.box), "visitor": self.tracker.is_visitor(t),
                               "predictions": p} for t, p in self.shown]})
        self.draw(image, live_fps)

    def draw(self, image: Any, live_fps: float) -> None:
        with self.clock("overlay"):
            for t, p in self.shown:
                if self.anonymize:
                    pixelate(image, t.box)
                visitor = self.tracker.is_visitor(t)
                draw_box(image, t.box, face_lines(t.id, visitor, p, self.heads),
                         PALETTE[t.id % len(PALETTE)] if visitor else WHITE)
            draw_panel(image, "kiosk analytics", self.panel)
            if self.notice or self.checks.impossible or self.checks.certain:
                draw_notice(image, [*(self.notice or []), *self.checks.notice()])
            draw_status(image, live_fps, self.latency, extra=f"faces {len(self.shown)}")

    def session(self, result: Any, visitors: list[dict[str, Any]], fps: float) -> dict[str, Any]:
        """The analytics report's session block."""
        o, src = self.opt, self.src
        return {
            "model": str(self.predictor.path), "model_domain": self.predictor.card.provenance.get("domain"),
            "trained_on_faces": self.notice is None, "notice": " ".join(self.notice) if self.notice else None,
            "heads": [h.name for h in self.heads], "detector": self.faces.name, "source": src.name,
            "frames": result.frames, "processed_frames": self.processed, "full_scans": self.scans,
            "face_detections": self.detections, "source_fps": round(src.fps, 3),
            "duration_s": round(result.frames / src.fps, 3), "every": o.every, "scan_every": o.scan_every,
            "min_hits": self.tracker.min_hits, "max_missed": self.tracker.max_missed, "fps": fps,
            "crops_saved": self.crops, "totals": totals(visitors, self.heads), "warnings": self.checks.warnings(),
        }


def run_kiosk(model: str | os.PathLike, source: str | int = "0", options: KioskOptions | None = None,
              **overrides: Any) -> dict[str, Any]:
    """Run the kiosk demo; writes the analytics report (JSON + CSV) and the summary, returns the summary.

    ``options`` holds everything else; keyword arguments override its fields
    (``run_kiosk(m, "store.mp4", headless=True, every=2)``).
    """
    o = replace(options or KioskOptions(), **overrides) if overrides else (options or KioskOptions())
    video, log_path, summary_path = plan_outputs("kiosk", o.out, o.log, o.headless)
    report = o.report or summary_path.parent / (video.stem + ".report" if video else "report")
    window = None if o.headless else Window("edgekit kiosk")
    predictor = load(model, device=o.device, threads=o.threads)
    if predictor.frames:
        raise ConfigError(f"{model} is a clip model ({predictor.frames} frames); the kiosk analyses single face crops")
    src = open_source(source)
    kiosk = Kiosk(predictor, src, o, anonymize=video is not None and not o.show_faces, log_path=log_path)
    if kiosk.notice:
        kiosk.say(f"notice: {predictor.path.name}: {' '.join(kiosk.notice)}")

    try:
        result = run_frames(src, kiosk.step, kiosk.clock, video=video, window=window, max_frames=o.max_frames,
                            prefetch=o.prefetch)
    finally:
        if kiosk.records:
            kiosk.records.close()

    visitors = [visitor_record(t, kiosk.heads, kiosk.frame_dt) for t in kiosk.tracker.visitors()]
    summary = loop_summary("kiosk", predictor, src, result, o.prefetch)
    session = kiosk.session(result, visitors, summary["fps"])
    json_path, csv_path = write_report(report, session, visitors)
    summary.update(processed=kiosk.processed, face_detections=kiosk.detections, every=o.every,
                   totals=session["totals"], notice=session["notice"], warnings=session["warnings"],
                   report=[str(json_path), str(csv_path)], crops_saved=kiosk.crops,
                   log=str(log_path) if log_path else None, summary=str(summary_path))
    write_json(summary_path, summary)
    if o.verbose:
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
