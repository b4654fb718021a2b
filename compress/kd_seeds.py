"""KD against no KD over several seeds: is distillation's gain bigger than the seed-to-seed noise?

One seed on a few hundred validation images cannot separate a distilled student from the same
student trained without a teacher (a one-image difference on 360 images is 0.28 points).
:func:`kd_over_seeds` runs :func:`~edgekit.compress.distill.distill` (KD student + its no-KD
baseline, same epochs, data and seed) for seeds ``seed, seed + 1, ...`` and compares the
monitored val metric of the two arms with :func:`aggregate_seeds`:

- per arm: the per-seed values, their mean and sample standard deviation (``ddof=1``);
- the gain: mean(KD) - mean(no KD), signed so that positive means KD is better (for a metric
  where lower is better, such as a MAE, it is mean(no KD) - mean(KD));
- the gain **exceeds the spread** when ``gain > max(std(KD), std(no KD))``: the average
  improvement is larger than the seed-to-seed standard deviation of either arm. It needs two
  seeds or more (one seed: no spread, the flag is ``None``). It is a rule of thumb, not a
  significance test: with 3 seeds a standard deviation is itself rough.

The teacher is trained (or loaded) once: a ``timm:`` teacher without ``--teacher-weights`` is
trained first, on the *full* training split (:func:`~edgekit.compress.distill.ensure_teacher`,
reused when that teacher run already finished), and every seed distills from those weights.
With ``data.fraction`` (e.g. 0.1) the students see that labelled share while the teacher saw
everything: the small-data regime where distillation is expected to matter.

Run folders: the first seed is ``cfg.run_dir`` (the run ``edgekit distill`` would write), seed
``s`` is ``<name>-seed<s>``, each with its ``<name>-nokd`` baseline under ``out/train``;
``seeds.json`` goes into the first seed's folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.atomic import write_json
from edgekit.config import RunConfig
from edgekit.console import say
from edgekit.errors import ConfigError, either, option
from edgekit.runs import finished

RULE = ("gain > max(std KD, std no-KD) (sample stds over seeds, ddof=1); "
        "gain = mean KD - mean no-KD, positive = KD better")


def aggregate_seeds(kd: list[float], no_kd: list[float], mode: str = "max") -> dict[str, Any]:
    """Mean, sample std (``ddof=1``) and values of both arms, the gain and whether it exceeds the spread.

    ``kd[i]`` and ``no_kd[i]`` come from the same seed. ``mode`` is ``"max"`` when higher is better
    (accuracy) and ``"min"`` when lower is (MAE): the gain and the per-seed differences are signed
    so that positive always means KD is better. See the module doc for the rule.
    """
    a, b = np.asarray(kd, dtype=float), np.asarray(no_kd, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"need as many KD as no-KD values (one per seed), got {len(a)} and {len(b)}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got '{mode}'")
    n = len(a)
    sign = 1.0 if mode == "max" else -1.0
    diffs = sign * (a - b)

    def std(x: np.ndarray) -> float | None:
        return float(x.std(ddof=1)) if n > 1 else None

    def arm(x: np.ndarray) -> dict[str, Any]:
        return {"values": x.tolist(), "mean": float(x.mean()), "std": std(x)}

    gain = float(diffs.mean())
    spread = max(std(a), std(b)) if n > 1 else None
    exceeds = None if spread is None else bool(gain > spread)
    if spread is None:
        verdict = "one seed: no spread to compare with"
    elif exceeds:
        verdict = "KD is better by more than the seed-to-seed spread"
    elif -gain > spread:
        verdict = "KD is worse by more than the seed-to-seed spread"
    else:
        verdict = "the difference is within the seed-to-seed spread"
    return {"n": n, "mode": mode, "kd": arm(a), "no_kd": arm(b), "differences": diffs.tolist(),
            "gain": gain, "spread": spread, "exceeds_spread": exceeds, "verdict": verdict, "rule": RULE}


def seed_configs(cfg: RunConfig, seeds: int) -> list[RunConfig]:
    """The distill configs of seeds ``cfg.train.seed + i`` (i < seeds): the first is ``cfg`` itself."""
    out = []
    for i in range(seeds):
        c = cfg.model_copy(deep=True)
        c.train.seed = cfg.train.seed + i
        if i:
            c.name = f"{cfg.name}-seed{c.train.seed}"
        out.append(c)
    return out


def kd_over_seeds(cfg: RunConfig, seeds: int = 3, fraction: float | None = None, verbose: bool = True,
                  reuse: bool = True, unlabeled: str | None = None) -> dict[str, Any] | None:
    """Distill with a no-KD baseline for ``seeds`` seeds; the comparison, also written to ``seeds.json``.

    ``fraction``, when given, sets ``data.fraction`` (the labelled share the students see; the
    teacher it trains still sees the full split) and tags the run name with ``-f<fraction>`` so
    it does not overwrite a full-data run; ``None`` keeps ``cfg.data.fraction``. ``reuse``: a seed
    whose distillation and baseline already finished with the same config is read back, not
    retrained. ``unlabeled`` (``"rest"`` or a folder, see ``distill.unlabeled``) adds a third arm per seed:
    KD whose student also sees those images through the teacher, compared with the same no-KD baseline
    (``result["with_unlabeled"]``). Returns the dict of :func:`aggregate_seeds` plus the monitor, the
    teacher, the per-seed runs and timings (``None`` on DDP ranks other than 0).
    """
    from edgekit.compress.distill import ensure_teacher
    from edgekit.train.metrics import monitor_key
    from edgekit.train.supervised import default_name

    if seeds < 1:
        raise ConfigError(f"{option('seeds')} must be 1 or more, got {seeds}")
    if cfg.distill is None:
        raise ConfigError("distill needs a distill: section")
    if not cfg.distill.baseline:
        raise ConfigError("comparing KD over seeds needs the no-KD baseline "
                          f"({either('drop --no-baseline', 'baseline=True')})")
    cfg = cfg.model_copy(deep=True)
    if cfg.name is None:
        cfg.name = default_name(cfg)
    if fraction is not None:
        cfg.data.fraction = fraction
        cfg.name = f"{cfg.name}-f{fraction:g}"
    t0 = time.perf_counter()
    trained_here = cfg.distill.teacher_weights is None and cfg.distill.teacher.startswith("timm:")
    if trained_here:  # once, on the full split; every seed distills from these weights
        cfg.distill.teacher_weights = str(ensure_teacher(cfg, verbose=verbose) / "best.pt")
    runs: list[dict[str, Any]] = []
    main = True
    extra: list[dict[str, Any]] = []
    for i, c in enumerate(seed_configs(cfg, seeds)):
        if verbose:
            say(f"\n[bold]seed {c.train.seed}[/] ({i + 1}/{seeds}): KD and no-KD -> {c.run_dir}")
        run = _seed_run(c, reuse, verbose, needs_baseline=True)
        if run is None:  # a DDP rank other than 0 trains along but reports nothing
            main = False
            continue
        runs.append(run)
        if unlabeled:
            u = c.model_copy(deep=True)
            u.name, u.distill.unlabeled, u.distill.baseline = f"{c.name}-unl", unlabeled, False
            if verbose:
                say(f"[bold]seed {c.train.seed}[/]: KD with the unlabelled images ({unlabeled}) -> {u.run_dir}")
            extra.append(_seed_run(u, reuse, verbose, needs_baseline=False))
    if not main:
        return None
    key = runs[0]["monitor"]
    _, mode = monitor_key([], key)
    result = aggregate_seeds([r["student"]["val"][key] for r in runs], [r["baseline"]["val"][key] for r in runs],
                             mode)
    t = runs[0]["teacher"]
    result.update({
        "monitor": key, "seeds": [cfg.train.seed + i for i in range(seeds)], "fraction": cfg.data.fraction,
        "student": cfg.model.arch, "train_samples": _train_samples(runs[0]),
        "teacher": {"name": t["name"], "weights": t["weights"], "val": t["val"].get(key),
                    "trained_here": trained_here, "params": t["params"]},
        "runs": [{"seed": cfg.train.seed + i, "kd": r["student"]["run_dir"], "no_kd": r["baseline"]["run_dir"],
                  "reused": r["reused"]} for i, r in enumerate(runs)],
        "run_dir": str(cfg.run_dir), "seconds": time.perf_counter() - t0})
    if unlabeled:
        arm = aggregate_seeds([r["student"]["val"][key] for r in extra], [r["baseline"]["val"][key] for r in runs],
                              mode)
        arm.update(unlabeled=unlabeled, unlabeled_samples=_card_value(extra[0], "unlabeled_samples"),
                   runs=[{"seed": cfg.train.seed + i, "kd": r["student"]["run_dir"], "reused": r["reused"]}
                         for i, r in enumerate(extra)])
        result["with_unlabeled"] = arm
        result["seconds"] = time.perf_counter() - t0
    write_json(cfg.run_dir / "seeds.json", result)
    return result


def _seed_run(c: RunConfig, reuse: bool, verbose: bool, needs_baseline: bool) -> dict[str, Any] | None:
    """One seed's distillation (and its baseline): read back when it already finished with this config."""
    from edgekit.compress.distill import baseline_config, distill

    summary = c.run_dir / "distill.json"
    if reuse and finished(c) and summary.is_file() and (not needs_baseline or finished(baseline_config(c))):
        d = json.loads(summary.read_text())
        if d.get("baseline") is not None or not needs_baseline:
            if verbose:
                say(f"reusing the finished seed {c.train.seed} in {c.run_dir}")
            return {**d, "reused": True}
    report = distill(c, verbose=verbose)
    return None if report is None else {**report.to_dict(), "reused": False}


def _train_samples(run: dict[str, Any]) -> int | None:
    """The student's labelled training-set size, from its model card."""
    return _card_value(run, "train_samples")


def _card_value(run: dict[str, Any], key: str) -> Any:
    """A provenance entry of a seed run's student card (None when it cannot be read)."""
    try:
        card = json.loads((Path(run["student"]["run_dir"]) / "card.json").read_text())
        return card["provenance"].get(key)
    except (OSError, KeyError, json.JSONDecodeError):
        return None


def print_seeds(result: dict[str, Any]) -> None:
    """The per-seed table, the means ± stds, the gain and whether it exceeds the spread."""
    from rich.table import Table

    key, mode = result["monitor"], result["mode"]
    frac = result["fraction"]
    data = f"{result['train_samples']} labelled train samples" if result["train_samples"] else "train split"
    if frac not in (None, 1.0):
        data += f" (data.fraction {frac:g}; the teacher saw the full split)"
    table = Table(title=f"KD vs no KD over {result['n']} seeds: {result['teacher']['name']} -> {result['student']}, "
                        f"{data}")
    table.add_column("arm", justify="left")
    for s in result["seeds"]:
        table.add_column(f"seed {s}", justify="right")
    table.add_column(f"val {key}: mean ± std", justify="right")
    for name, arm in (("KD", result["kd"]), ("no KD", result["no_kd"])):
        std = "n/a" if arm["std"] is None else f"{arm['std']:.4f}"
        table.add_row(name, *(f"{v:.4f}" for v in arm["values"]), f"{arm['mean']:.4f} ± {std}")
    table.add_row("KD better by", *(_delta(v, mode) for v in result["differences"]), _delta(result["gain"], mode))
    arm = result.get("with_unlabeled")
    if arm:
        std = "n/a" if arm["kd"]["std"] is None else f"{arm['kd']['std']:.4f}"
        table.add_row(f"KD + {arm['unlabeled_samples'] or '?'} unlabelled", *(f"{v:.4f}" for v in arm["kd"]["values"]),
                      f"{arm['kd']['mean']:.4f} ± {std}")
        table.add_row("  better than no KD by", *(_delta(v, mode) for v in arm["differences"]),
                      _delta(arm["gain"], mode))
    say(table)
    teacher = result["teacher"]["val"]
    say(f"teacher val {key}: {'-' if teacher is None else f'{teacher:.4f}'}")
    spread = "n/a" if result["spread"] is None else _delta(result["spread"], mode, sign=False)
    say(f"gain {_delta(result['gain'], mode)}, spread {spread}: exceeds the spread = {result['exceeds_spread']} "
        f"({result['verdict']}). Rule: {result['rule']}.")
    if arm:
        spread = "n/a" if arm["spread"] is None else _delta(arm["spread"], mode, sign=False)
        say(f"with the unlabelled images: gain {_delta(arm['gain'], mode)}, spread {spread}: exceeds the spread = "
            f"{arm['exceeds_spread']} ({arm['verdict']}).")
    say(f"time {result['seconds']:.0f}s  ->  {result['run_dir']}/seeds.json")


def _delta(v: float, mode: str, sign: bool = True) -> str:
    """A difference of the metric: in points (x100) for accuracy-like metrics, as is for errors."""
    return f"{v * 100:{'+' if sign else ''}.2f} pts" if mode == "max" else f"{v:{'+' if sign else ''}.4f}"
