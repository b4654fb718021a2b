"""A run's measured latency in ``edgekit report``: read from the ``latency.json`` that ``edgekit bench``
writes into the run folder of each checkpoint it measures, and a side-by-side table of the runs' val
metrics, params and that latency (the reference experiments' CNN-vs-ViT comparison)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_latency(run_dir: Path) -> dict[str, Any] | None:
    """``{"rows": [{backend, precision, batch, p50_ms, frontend_p50_ms...}], "machine", "threads", "measured"}``
    of a run folder, or None when it was never benchmarked (or the file is unreadable)."""
    path = Path(run_dir) / "latency.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("rows"), list) else None


def _latency_cell(lat: dict[str, Any] | None, backend: str) -> str:
    row = next((r for r in (lat or {}).get("rows", []) if r.get("backend") == backend and r.get("batch") == 1), None)
    if row is None or row.get("p50_ms") is None:
        return "-"
    front = f" + {row['frontend_p50_ms']:.2f} frontend" if row.get("frontend_p50_ms") is not None else ""
    return f"{row['p50_ms']:.2f}{front}"


def side_by_side(rows: list[dict[str, Any]], fmt) -> list[str]:
    """Markdown lines: one row per run with params, every val metric of its best epoch (what best.pt, the
    checkpoint bench measured, holds) and the batch-1 p50 latency per
    backend bench measured (ms; the frontend's cost beside the model's for sound models). Empty when no run
    has a latency."""
    if not any(r.get("latency") for r in rows):
        return []
    keys = list(dict.fromkeys(k for r in rows for k in r["best_val"] if k != "loss"))
    backends = list(dict.fromkeys(x["backend"] for r in rows for x in (r.get("latency") or {}).get("rows", [])
                                  if x.get("batch") == 1))
    header = ["run", "arch", "params", *[f"val {k} (best.pt)" for k in keys],
              *[f"{b} p50 ms (batch 1)" for b in backends]]
    body = [[r["name"], r["arch"], f"{r['params'] / 1e6:.2f} M" if r["params"] else "-",
             *(fmt(k, r["best_val"].get(k)) for k in keys), *(_latency_cell(r.get("latency"), b) for b in backends)]
            for r in rows]
    where = {(r["latency"]["machine"], str(r["latency"]["threads"])) for r in rows if r.get("latency")}
    lines = ["## Side by side", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in b) + " |" for b in body]
    lines += ["", "Latency: `edgekit bench` on each run's best.pt (exported), read from the run's latency.json; "
              "measured on " + "; ".join(f"{m}, threads {t}" for m, t in sorted(where)) + ".", ""]
    return lines
