"""The sample-efficiency sweep of ``edgekit report --fractions``: each run retrained on shares of its data.

Each run's own ``config.yaml`` is rerun with ``data.fraction = f`` (a nested, stratified share of its
train split) under ``out/sweep/<stage>/<name>-f<f>/`` with the run's own recipe (``edgekit train``, or
``edgekit distill`` without the no-KD baseline, reusing the run's teacher weights). Sweep runs that
already finished with the same config are reused, and ``f = 1.0`` is the run itself when it has no
fraction, so a second report costs nothing. :mod:`edgekit.recipes.report` writes the points
(``sweep.png``, ``sweep.csv``, a table in ``report.md``). Training imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.config import RunConfig
from edgekit.errors import RunError
from edgekit.recipes.finished_runs import Run, load_run, summarize, teacher_weights
from edgekit.runs import finished


def sweep_config(run: Run, fraction: float, out: Path) -> RunConfig:
    """The run's own config with ``data.fraction = fraction``, written under ``out/sweep``."""
    cfg = run.cfg.model_copy(deep=True)
    cfg.data.fraction = fraction
    cfg.out = str(out / "sweep")
    cfg.name = f"{run.name}-f{fraction:g}"
    if cfg.distill is not None:
        cfg.distill.baseline = False
        weights = teacher_weights(run)
        if weights is None or not weights.is_file():
            raise RunError(f"{run.path}: cannot rerun the distillation, its teacher weights "
                           f"({weights or 'not recorded'}) are not there")
        cfg.distill.teacher_weights = str(weights)
    return cfg


def _train(cfg: RunConfig, verbose: bool) -> None:
    """Run the recipe of ``cfg.stage`` (imports torch)."""
    if cfg.stage == "distill":
        from edgekit.compress.distill import distill

        distill(cfg, verbose=verbose)
    elif cfg.stage in ("train", "teacher"):
        from edgekit.train.supervised import train

        train(cfg, verbose=verbose)
    else:
        raise RunError(f"cannot sweep a '{cfg.stage}' run (train, teacher and distill runs only)")


def _train_samples(row: dict[str, Any], cfg: RunConfig) -> int:
    """Training-set size of a run: from its card, else by loading its data (runs older than that field)."""
    if row.get("train_samples") is not None:
        return int(row["train_samples"])
    from edgekit.train.data import load_data

    return len(load_data(cfg.data, cfg.model.heads).train)


def sweep(runs: list[Run], fractions: list[float], out: Path, verbose: bool = True) -> list[dict[str, Any]]:
    """Train (or reuse) every run at every fraction; one point per (run, fraction)."""
    from edgekit.console import say

    points = []
    for run in runs:
        for f in fractions:
            if f == 1.0 and run.cfg.data.fraction in (None, 1.0):
                cfg, sweep_run, reused = run.cfg, run, True
            else:
                cfg = sweep_config(run, f, out)
                reused = finished(cfg)
                if verbose:
                    say(f"sweep {run.name} at fraction {f:g}: "
                        f"{'reusing' if reused else 'training'} {cfg.run_dir}")
                if not reused:
                    _train(cfg, verbose)
                sweep_run = load_run(cfg.run_dir)
            row = summarize(sweep_run)
            points.append({"run": run.name, "arch": row["arch"], "fraction": f,
                           "train_samples": _train_samples(row, cfg), "monitor": row["monitor"],
                           "best": row["best"]["value"], "best_epoch": row["best"]["epoch"],
                           "final": row["final"]["value"], "train_final": row["final"]["train"],
                           "gap": row["final"]["gap"], "seconds": row["seconds"], "run_dir": str(sweep_run.path),
                           "reused": reused})
    return points
