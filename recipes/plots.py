"""The plots of ``edgekit report`` (PNG, written atomically): training curves per run and the
sample-efficiency sweep."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from edgekit.atomic import write_with
from edgekit.recipes.finished_runs import PERCENT


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, layout: bool = True) -> Path:
    buf = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buf, format="png")
    _plt().close(fig)
    return write_with(path, lambda fh: fh.write(buf.getvalue()))


def _scale(key: str) -> float:
    return 100.0 if key.endswith(PERCENT) else 1.0


def curves_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Train loss (left) and the val monitor metric (right; train dashed) per epoch, one colour per run."""
    plt = _plt()
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    colors = plt.get_cmap("tab10")
    for i, r in enumerate(rows):
        c, k = r["curves"], r["monitor"]
        s = _scale(k)
        ax_l.plot(c["epoch"], c["train_loss"], marker="o", ms=3, color=colors(i % 10), label=r["name"])
        ax_m.plot(c["epoch"], [None if v is None else v * s for v in c["val"]], marker="o", ms=3,
                  color=colors(i % 10))
        ax_m.plot(c["epoch"], [None if v is None else v * s for v in c["train"]], ls="--", lw=1,
                  color=colors(i % 10), alpha=0.6)
    monitors = sorted({r["monitor"] for r in rows})
    ax_l.set(xlabel="epoch", ylabel="train loss", title="train loss")
    ax_m.set(xlabel="epoch", ylabel=", ".join(f"{m}{' (%)' if _scale(m) != 1 else ''}" for m in monitors),
             title="val (solid) and train (dashed)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_l, ax_m):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    # one legend for both panels, below them, so no curve is hidden behind it
    fig.legend(*ax_l.get_legend_handles_labels(), loc="lower center", ncol=min(3, len(rows)), fontsize=7)
    fig.tight_layout(rect=(0, 0.06 * ((len(rows) + 2) // 3), 1, 1))
    return _save(fig, path, layout=False)


def sweep_plot(points: list[dict[str, Any]], path: Path) -> Path:
    """Best val monitor metric vs training-set size (log x), one line per run."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    colors = plt.get_cmap("tab10")
    for i, name in enumerate(dict.fromkeys(p["run"] for p in points)):
        mine = sorted((p for p in points if p["run"] == name), key=lambda p: p["train_samples"])
        s = _scale(mine[0]["monitor"])
        ax.plot([p["train_samples"] for p in mine], [None if p["best"] is None else p["best"] * s for p in mine],
                marker="o", color=colors(i % 10), label=f"{name} ({mine[0]['arch']})")
    monitors = sorted({p["monitor"] for p in points})
    ax.set_xscale("log")
    ax.set(xlabel="training samples (log scale)",
           ylabel="best val " + ", ".join(f"{m}{' (%)' if _scale(m) != 1 else ''}" for m in monitors),
           title="sample efficiency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)

