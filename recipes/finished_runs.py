"""Finished runs read back: finding run folders (``runs/<stage>/<name>/`` with ``config.yaml``,
``history.json``, ``card.json``), reading one (:class:`Run`; an unfinished or corrupt run is a
:class:`~edgekit.errors.RunError`), and summarizing it as one report row, every number read from its
files. ``edgekit report`` (:mod:`edgekit.recipes.report`) tabulates and plots the rows; its sweep
(:mod:`edgekit.recipes.sweep`) reruns a run's recipe on fractions of its data. Needs no torch."""

from __future__ import annotations

import glob
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.config import RunConfig, load_config
from edgekit.errors import ConfigError, RunError, first_line
from edgekit.metrics import monitor_key
from edgekit.recipes.run_latency import read_latency
from edgekit.runs import missing

PERCENT = ("/acc", "/top5")  # metrics shown as percentages


@dataclass
class Run:
    """One finished run folder, read back."""

    path: Path
    cfg: RunConfig
    history: list[dict[str, Any]]
    card: dict[str, Any]
    distill: dict[str, Any] | None = None  # distill.json of distill runs

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def monitor(self) -> tuple[str, str]:
        key = self.history[-1].get("monitor") or self.card.get("metrics", {}).get("monitor")
        return monitor_key([], key) if key else ("loss", "min")


# -- finding and reading runs --------------------------------------------------------------------


def find_runs(paths: list[str | Path], exclude: Path | None = None) -> list[Path]:
    """Run folders named by ``paths``: run folders, files inside one, glob patterns, or folders holding
    runs (``runs/train`` or ``runs``). Order kept, duplicates dropped; anything else is a :class:`RunError`."""
    found: list[Path] = []
    for raw in paths:
        text = str(raw)
        matches = sorted(glob.glob(text)) if any(ch in text for ch in "*?[") else [text]
        if not matches:
            raise RunError(f"no run matches {text}")
        for m in matches:
            found += _runs_in(Path(m), exclude)
    seen, runs = set(), []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            runs.append(p)
    if not runs:
        raise RunError("no runs given")
    return runs


def _runs_in(path: Path, exclude: Path | None) -> list[Path]:
    if not path.exists():
        raise RunError(f"run not found: {path}")
    if path.is_file():
        path = path.parent
    if (path / "config.yaml").is_file():
        return [path]
    nested = sorted(p.parent for p in [*path.glob("*/config.yaml"), *path.glob("*/*/config.yaml")])
    if exclude is not None:
        ex = exclude.resolve()
        nested = [p for p in nested if ex not in p.resolve().parents and p.resolve() != ex]
    if not nested:
        raise RunError(f"{path} is not a run folder (no config.yaml) and holds no runs")
    return nested


def load_run(path: str | Path) -> Run:
    """Read a finished run folder; a missing file, an unfinished or a corrupt run is a :class:`RunError`."""
    path = Path(path)
    lacking = missing(path)
    if lacking:
        raise RunError(f"{path} is not a finished run: {', '.join(lacking)} missing")
    try:
        cfg = load_config(path / "config.yaml")
    except ConfigError as exc:
        raise RunError(f"{path}: corrupt config.yaml ({exc})") from None
    history = _read_json(path / "history.json")
    card = _read_json(path / "card.json")
    if not isinstance(history, list) or not all(isinstance(r, dict) and {"epoch", "train", "val"} <= r.keys()
                                                    for r in history):
        raise RunError(f"{path}: corrupt history.json (expected one record per epoch)")
    if not isinstance(card, dict) or "arch" not in card:
        raise RunError(f"{path}: corrupt card.json (no arch)")
    if len(history) < cfg.train.epochs:
        verb = "distill" if cfg.stage == "distill" else "train"
        raise RunError(f"{path} is unfinished: {len(history)} of {cfg.train.epochs} epochs "
                       f"(continue it with: edgekit {verb} --resume {path})")
    distill = _read_json(path / "distill.json") if (path / "distill.json").is_file() else None
    return Run(path=path, cfg=cfg, history=history, card=card, distill=distill)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is corrupt: {first_line(exc)}") from None


# -- one row per run -----------------------------------------------------------------------------


def summarize(run: Run) -> dict[str, Any]:
    """The report row of one run (every number read from its files)."""
    key, mode = run.monitor
    hist = run.history
    vals = [(r["epoch"], r["val"].get(key)) for r in hist if r["val"].get(key) is not None]
    best_epoch, best = None, None
    if vals:
        best = (max if mode == "max" else min)(v for _, v in vals)
        best_epoch = next(e for e, v in vals if v == best)  # the first epoch reaching it, as best.pt holds
    best_rec = next((r for r in hist if r["epoch"] == best_epoch), None)
    final = hist[-1]
    secs = [r["seconds"] for r in hist if r.get("seconds") is not None]
    prov = run.card.get("provenance", {})
    teacher = _teacher(run)
    params = run.card.get("params")
    cfg = run.cfg
    config: dict[str, Any] = {"epochs": cfg.train.epochs, "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
                              "imgsz": cfg.data.imgsz, "limit": cfg.data.limit, "fraction": cfg.data.fraction}
    if is_clip(run):
        config.update(frames=run.card["input"]["frames"],
                      temporal=(run.card.get("temporal") or {}).get("pooling", cfg.model.temporal))
    return {
        "name": run.name, "run_dir": str(run.path), "stage": cfg.stage, "arch": run.card.get("arch", cfg.model.arch),
        "data": cfg.data.source, "config": config, "params": params,
        "train_samples": prov.get("train_samples"), "val_samples": prov.get("val_samples"),
        "teacher": teacher,
        "compression": teacher["params"] / params if teacher and teacher.get("params") and params else None,
        "monitor": key, "mode": mode, "epochs_run": len(hist),
        "best": {"value": best, "epoch": best_epoch,
                 "train": best_rec["train"].get(key) if best_rec else None,
                 "gap": best_rec.get("overfit_gap") if best_rec else None},
        "final": {"value": final["val"].get(key), "epoch": final["epoch"], "train": final["train"].get(key),
                  "gap": final.get("overfit_gap"), "train_loss": final.get("train_loss"),
                  "val_loss": final["val"].get("loss")},
        "seconds_per_epoch": statistics.median(secs) if secs else None,
        "seconds": sum(secs) if secs else None,
        "val": final["val"], "best_val": best_rec["val"] if best_rec else {}, "latency": read_latency(run.path),
        "curves": {"epoch": [r["epoch"] for r in hist], "train_loss": [r.get("train_loss") for r in hist],
                   "train": [r["train"].get(key) for r in hist], "val": [r["val"].get(key) for r in hist]},
    }


def is_clip(run: Run) -> bool:
    """A clip (video) model: its card's input says how many frames it reads (``input.frames``)."""
    return bool((run.card.get("input") or {}).get("frames"))


def _teacher(run: Run) -> dict[str, Any] | None:
    """Teacher name and params of a distill run: from distill.json, else the teacher run's card."""
    if run.cfg.stage != "distill":
        return None
    if run.distill and "teacher" in run.distill:
        t = run.distill["teacher"]
        return {"name": t.get("name"), "params": t.get("params"), "weights": t.get("weights")}
    prov = run.card.get("provenance", {})
    weights = teacher_weights(run)
    params = None
    if weights is not None and (weights.parent / "card.json").is_file():
        params = _read_json(weights.parent / "card.json").get("params")
    return {"name": prov.get("teacher"), "params": params, "weights": str(weights) if weights else None}


def teacher_weights(run: Run) -> Path | None:
    """The teacher weights file a distill run used (a relative path is tried from the cwd, then from the
    folder holding the run's ``out`` folder)."""
    raw = run.card.get("provenance", {}).get("teacher_weights") or (run.distill or {}).get("teacher", {}).get(
        "weights")
    if not raw:
        return None
    p = Path(raw).expanduser()
    if p.is_absolute() or p.exists():
        return p
    root = run.path.parents[2] if len(run.path.parents) > 2 else Path(".")
    return root / p if (root / p).exists() else p
