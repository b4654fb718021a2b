"""``edgekit report``: compare finished runs, plot their training, sweep their training-set size.

A recipe: it reads any run folder, and its sample-efficiency sweep (:mod:`edgekit.recipes.sweep`)
reruns the `train` or `distill` recipe of each run.

:func:`report` reads run folders (``runs/<stage>/<name>/`` with ``config.yaml``, ``history.json``,
``card.json``, ``best.pt``) and writes, atomically, into ``out``:

- ``report.md`` / ``report.json`` / ``report.csv``: one row per run, like the reference experiment
  summaries: config (epochs, batch, lr, imgsz; frames and temporal pooling for clip models),
  params, compression (teacher params / student params, for distill runs), the monitored metric at
  its best epoch and at the final one, the train/val gap there (``overfit_gap`` of the history:
  train - val, or val - train for lower-is-better metrics), median seconds per epoch, and every
  final val metric per head.
- ``curves.png`` (:mod:`edgekit.recipes.plots`): train loss and the val monitor metric per epoch, one line per run.
- with ``fractions``: the sweep's points. ``sweep.png`` plots the best val monitor metric against
  the number of training samples (log x) per run; ``sweep.csv`` and a table in ``report.md`` hold
  the points.

Reading runs (:mod:`edgekit.recipes.finished_runs`) needs no torch; only the sweep (which trains) imports it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from edgekit.atomic import write_json, write_text
from edgekit.recipes.finished_runs import PERCENT, find_runs, load_run, summarize
from edgekit.recipes.run_latency import side_by_side

# -- writing -------------------------------------------------------------------------------------


def report(paths: list[str | Path], out: str | Path, fractions: list[float] | None = None,
           verbose: bool = True) -> dict[str, Path]:
    """Read the runs, optionally sweep them, write report.md/json/csv and the plots; returns the paths.

    The tables are written before the sweep starts (and again with it), so a failed sweep leaves them."""
    out = Path(out)
    runs = [load_run(p) for p in find_runs(paths, exclude=out)]
    rows = [summarize(r) for r in runs]
    written = write_report(rows, [], out, fractions)
    if verbose:
        print_table(rows)
    if fractions:
        from edgekit.recipes.sweep import sweep

        written = write_report(rows, sweep(runs, fractions, out, verbose), out, fractions)
    return written


def write_report(rows: list[dict[str, Any]], points: list[dict[str, Any]], out: Path,
                 fractions: list[float] | None = None) -> dict[str, Path]:
    """report.json / .csv / .md, curves.png and, with sweep points, sweep.png and sweep.csv."""
    from edgekit.recipes.plots import curves_plot, sweep_plot

    out.mkdir(parents=True, exist_ok=True)
    written = {"curves": curves_plot(rows, out / "curves.png")}
    if points:
        written["sweep"] = sweep_plot(points, out / "sweep.png")
        written["sweep_csv"] = write_text(out / "sweep.csv", _csv(points, SWEEP_CSV))
    written["json"] = write_json(out / "report.json", {"runs": rows, "sweep": points, "fractions": fractions or []})
    written["csv"] = write_text(out / "report.csv", _csv([flat_row(r) for r in rows], None))
    written["md"] = write_text(out / "report.md", markdown(rows, points))
    return written


COLUMNS = [("name", "run"), ("stage", "stage"), ("arch", "arch"), ("data", "data"), ("config", "config"),
           ("params", "params"), ("compression", "compression"), ("monitor", "monitor"), ("best", "best val (epoch)"),
           ("final", "final val"), ("gap_final", "gap final"), ("gap_best", "gap at best"),
           ("seconds_per_epoch", "s/epoch")]


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: scalars only, config and val metrics flattened."""
    flat = {k: row[k] for k in ("name", "stage", "arch", "data", "params", "train_samples", "val_samples",
                                "compression", "monitor", "seconds_per_epoch", "run_dir")}
    flat.update({k: v for k, v in row["config"].items()})
    flat["teacher"] = (row["teacher"] or {}).get("name")
    flat["teacher_params"] = (row["teacher"] or {}).get("params")
    flat.update(best_val=row["best"]["value"], best_epoch=row["best"]["epoch"], final_val=row["final"]["value"],
                gap_final=row["final"]["gap"], gap_best=row["best"]["gap"])
    flat.update({f"val/{k}": v for k, v in row["val"].items()})
    return flat


SWEEP_CSV = ["run", "arch", "fraction", "train_samples", "monitor", "best", "best_epoch", "final", "train_final",
             "gap", "seconds", "reused", "run_dir"]


def _csv(rows: list[dict[str, Any]], keys: list[str] | None) -> str:
    if keys is None:
        keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def fmt_metric(key: str, v: float | None, gap: bool = False) -> str:
    """Accuracies as percentages (gaps in points), anything else with 4 decimals; ``-`` when missing."""
    if v is None:
        return "-"
    if key.endswith(PERCENT):
        return f"{v * 100:+.2f} pts" if gap else f"{v * 100:.2f}%"
    return f"{v:+.4f}" if gap else f"{v:.4f}"


def _config_cell(c: dict[str, Any]) -> str:
    parts = [f"{c['epochs']} ep", f"bs {c['batch_size']}", f"lr {c['lr']:g}", f"{c['imgsz']}px"]
    if "frames" in c:
        parts += [f"{c['frames']} frames", c["temporal"]]
    return ", ".join(parts)


def _data_cell(row: dict[str, Any]) -> str:
    c = row["config"]
    extra = [f"limit {c['limit']}"] if c.get("limit") else []
    extra += [f"fraction {c['fraction']:g}"] if c.get("fraction") else []
    extra += [f"{row['train_samples']} train"] if row.get("train_samples") is not None else []
    return row["data"] + (f" ({', '.join(extra)})" if extra else "")


def cells(row: dict[str, Any]) -> list[str]:
    """The Markdown / console cells of one run (in COLUMNS order)."""
    key = row["monitor"]
    t = row["teacher"]
    comp = (f"{row['compression']:.1f}x ({t['params'] / 1e6:.2f} M teacher)" if row["compression"] else
            ("n/a (teacher params unknown)" if t else "-"))
    params = f"{row['params'] / 1e6:.2f} M" if row["params"] else "-"
    best = f"{fmt_metric(key, row['best']['value'])} ({row['best']['epoch']})"
    spe = f"{row['seconds_per_epoch']:.1f}" if row["seconds_per_epoch"] is not None else "-"
    return [row["name"], row["stage"], row["arch"], _data_cell(row), _config_cell(row["config"]), params, comp, key,
            best, fmt_metric(key, row["final"]["value"]), fmt_metric(key, row["final"]["gap"], gap=True),
            fmt_metric(key, row["best"]["gap"], gap=True), spe]


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in body])


def markdown(rows: list[dict[str, Any]], points: list[dict[str, Any]]) -> str:
    """report.md: the run table, final val metrics per head, curves, and the sweep when there is one."""
    md = ["# edgekit report", "", f"{len(rows)} run(s): " + ", ".join(f"`{r['run_dir']}`" for r in rows), "",
          "## Runs", ""]
    md += _md_table([t for _, t in COLUMNS], [cells(r) for r in rows])
    keys = list(dict.fromkeys(k for r in rows for k in r["val"]))
    md += ["", "## Final val metrics", ""]
    md += _md_table(["run", *keys], [[r["name"], *(fmt_metric(k, r["val"].get(k)) for k in keys)] for r in rows])
    md += [""] + side_by_side(rows, fmt_metric)
    md += ["", "## Training curves", "", "![training curves](curves.png)", ""]
    if points:
        md += ["## Sample efficiency", "",
               "Each run's config retrained on a nested, stratified share of its training split "
               "(`data.fraction`); val is the best epoch's.", ""]
        body = [[p["run"], f"{p['fraction']:g}", f"{p['train_samples']:,}", fmt_metric(p["monitor"], p["train_final"]),
                 f"{fmt_metric(p['monitor'], p['best'])} ({p['best_epoch']})", fmt_metric(p["monitor"], p["final"]),
                 fmt_metric(p["monitor"], p["gap"], gap=True), f"{p['seconds']:.0f} s" if p["seconds"] else "-"]
                for p in points]
        md += _md_table(["run", "fraction", "train samples", "final train", "best val (epoch)", "final val",
                         "overfitting gap", "training time"], body)
        md += ["", "![sample efficiency](sweep.png)", ""]
    md += ["## Notes", "",
           "- best val: the monitored val metric at the epoch `best.pt` holds; final val: at the last epoch.",
           "- gap: train - val of the monitored metric at that epoch (val - train for lower-is-better metrics), "
           "as `overfit_gap` in history.json; train metrics are measured on augmented batches while training.",
           "- compression: teacher params / student params (distill runs).",
           "- s/epoch: median wall-clock seconds per epoch, validation included.", ""]
    return "\n".join(md)


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from edgekit.console import console

    table = Table(title="edgekit report")
    keep = ("run", "arch", "params", "compression", "monitor", "best val (epoch)", "final val", "gap final", "s/epoch")
    idx = [i for i, (_, t) in enumerate(COLUMNS) if t in keep]
    for i in idx:
        table.add_column(COLUMNS[i][1], justify="left" if i < 3 else "right")
    for r in rows:
        c = cells(r)
        table.add_row(*[c[i] for i in idx])
    console().print(table)
