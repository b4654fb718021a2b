"""Bench reports: a rich table, ``bench.json``, ``bench.csv``, ``bench.md`` and a Pareto plot."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from edgekit.atomic import write_json, write_text

COLUMNS = [("model", "model"), ("backend", "backend"), ("precision", "prec"), ("batch", "batch"),
           ("threads", "threads"), ("params", "params (M)"), ("gflops", "GFLOPs"), ("size_mb", "size (MB)"),
           ("p50_ms", "p50 ms"),
           ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("spread_pct", "spread %"), ("throughput_ips", "img/s"),
           ("peak_rss_mb", "peak RSS MB"), ("accuracy", "accuracy"), ("speedup_vs_teacher_torch", "x teacher"),
           ("compression_vs_teacher", "compression"), ("load_ms", "load ms"), ("first_run_ms", "1st run ms"),
           ("model_rss_mb", "model MB"), ("residency", "residency"), ("quant", "int8 layers")]
FRONTEND = ("frontend_p50_ms", "frontend ms")  # sound models: the log-mel frontend per batch, beside the model
MEASURED = ("threads", "frontend_p50_ms", "p50_ms", "p90_ms", "p99_ms", "spread_pct", "throughput_ips",
            "peak_rss_mb", "accuracy", "load_ms", "first_run_ms", "model_rss_mb", "residency")


def cell(row: dict[str, Any], key: str) -> str:
    """A table cell; anything not measured says n/a (never a made-up number)."""
    if "error" in row and key in MEASURED:
        return "n/a"
    v = row.get(key)
    if key == "residency":
        return residency_cell(v) if v is not None else "n/a"
    if key == "quant":
        return quant_cell(v)
    if key == "precision" and row.get("execution_precision") not in (None, v):
        return f"{v} (ran {row['execution_precision']})"  # OpenVINO's FP32 IR in bf16 on a bf16 CPU
    if v is None:
        return "n/a" if key in ("params", "gflops", "accuracy", "peak_rss_mb") else "-"
    if key == "params":
        return f"{v / 1e6:.2f}"
    if key == "accuracy":
        parts = [f"{h} {a * 100:.2f}%" for h, a in v.items()]
        parts += [f"{h} {m.upper()} {x * 100:.2f}%" if m == "map" else f"{h} {m.upper()} {x:.3g}"
                  for h, ms in (row.get("metrics") or {}).items() for m, x in ms.items() if isinstance(x, float)]
        return ", ".join(parts) if parts else "n/a"
    if key in ("speedup_vs_teacher_torch", "compression_vs_teacher"):
        return f"{v:.1f}x"
    if key == "gflops":
        return f"{v:.3f}"
    if key in ("p50_ms", "p90_ms", "p99_ms", "frontend_p50_ms"):
        return f"{v:.3f}"
    if isinstance(v, float):
        return f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    return str(v)


def columns_for(rows: list[dict[str, Any]], columns=COLUMNS) -> list[tuple[str, str]]:
    """``columns``, with the frontend's cost after p50 when a sound model was measured."""
    if not any(FRONTEND[0] in r for r in rows):
        return list(columns)
    at = [k for k, _ in columns].index("p50_ms") + 1
    return [*columns[:at], FRONTEND, *columns[at:]]


def markdown_table(rows: list[dict[str, Any]], columns=None) -> str:
    columns = columns or columns_for(rows)
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, sep] + ["| " + " | ".join(cell(r, k) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_reports(rows: list[dict[str, Any]], out: Path, notes: list[str], meta: dict[str, Any]) -> dict[str, Path]:
    """bench.json (everything), bench.csv (flat), bench.md (table + notes), pareto.png."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(out / "bench.json", {"meta": meta, "notes": notes, "rows": rows})}
    buf = io.StringIO()
    keys = [k for k, _ in columns_for(rows)] + ["device", "fallback", "assumed", "pid", "error", "file"]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        flat = dict(r)
        if isinstance(flat.get("accuracy"), dict):
            flat["accuracy"] = ";".join(f"{h}={a:.4f}" for h, a in flat["accuracy"].items())
        for k in ("residency", "quant"):
            flat[k] = cell(r, k)
        if flat.get("assumed"):
            flat["assumed"] = json.dumps(flat["assumed"], separators=(",", ":"))
        writer.writerow(flat)
    paths["csv"] = write_text(out / "bench.csv", buf.getvalue())
    errors = [f"- {r['model']} [{r['backend']}]{_batch(r)}: n/a because {r['error']}" for r in rows if "error" in r]
    errors += [f"- {r['model']} [{r['backend']} {r['precision']}] batch {r['batch']}: {r['note']}" for r in rows
               if r.get("note")]
    errors += ran_notes(rows)
    md = ["# edgekit bench", "", _meta_line(meta), "", threads_line(rows) + ".", "", markdown_table(rows)]
    if notes or errors:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + errors + [""]
    md += ["Latency: median (p50), p90 and p99 of repeated calls after warm-up; spread is the interquartile "
           "range over the median. Peak RSS is the peak resident memory of a process that loaded and ran only "
           "that model (each measurement runs in its own process). Load: creating the session (interpreter), then "
           "its first inference; model MB: the RSS they add to a process that has the backend's library loaded. "
           "Residency: nodes per execution provider (ONNX Runtime's profile of one run), the share of ops the "
           "XNNPACK delegate took (TFLite, and ExecuTorch from the card's lowering record; a .pte without one shows "
           "its partitions and portable-kernel ops, read from the program). INT8 layers: ONNX compute nodes (Conv, "
           "MatMul, Gemm) that are QDQ-wrapped "
           "or integer ops vs plain float; TFLite ops by the type of their data tensor (int8 vs float32)."
           + (" Frontend (sound models): the numpy log-mel of the batch's waveform windows (p50), which runs "
              "beside the model on the device; p50 ms is the model alone." if any(FRONTEND[0] in r for r in rows)
              else ""), ""]
    plot = pareto_plot(rows, out / "pareto.png")
    if plot:
        paths["png"] = plot
        md += ["![latency vs accuracy](pareto.png)", ""]
    paths["md"] = write_text(out / "bench.md", "\n".join(md))
    return paths


def residency_cell(v: Any) -> str:
    """``XNNPACK 5/6`` (ops the TFLite delegate took), ``CPU 7/7`` (nodes per ONNX Runtime provider), or n/a."""
    if not isinstance(v, dict):
        return "n/a"
    if "ops" in v and "delegated" in v:
        if v["ops"] is None:  # a .pte without a card: partitions and portable kernels from the program
            return f"{v['delegate'] or 'no delegate'} x{v['partitions']}, {sum(v['not_delegated'].values())} portable"
        return f"{v['delegate'] or 'no delegate'} {v['delegated']}/{v['ops']}"
    if "precisions" in v:  # OpenVINO: layers of the compiled graph per runtime precision
        return f"{v['device']} " + " / ".join(f"{p} {n}" for p, n in v["precisions"].items())
    if "providers" in v:
        return ", ".join(f"{p.replace('ExecutionProvider', '')} {n}/{v['nodes']}" for p, n in v["providers"].items())
    return str(v.get("device", "n/a"))


def quant_cell(v: Any) -> str:
    """``5 int, 1 float`` for an INT8 file, ``-`` for a float one."""
    if v is None:
        return "-"
    if not isinstance(v, dict):
        return "n/a"
    parts = [f"{v['integer']['layers']} int"]
    if v["weight_only"]["layers"]:
        parts.append(f"{v['weight_only']['layers']} weight-only")
    return ", ".join([*parts, f"{v['float']['layers']} float"])


def ran_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What ran, once per file and backend: assumptions, fallbacks, ops left off the delegate, float layers."""
    notes, seen = [], set()
    for r in rows:
        key = (r["model"], r["backend"], r.get("precision"), r.get("file"))
        if key in seen or "error" in r:
            continue
        seen.add(key)
        what = f"- {r['model']} [{r['backend']} {r.get('precision')}]"
        if r.get("assumed") and "inputs" in r["assumed"]:  # (a card built from flags is in the notes above)
            notes.append(f"{what}: no edgekit card; synthesized {json.dumps(r['assumed'], separators=(', ', ': '))}")
        if r.get("fallback"):
            notes.append(f"{what}: **fell back**: {r['fallback']}")
        res = r.get("residency")
        if isinstance(res, dict) and res.get("not_delegated"):
            left = ", ".join(f"{op} x{n}" for op, n in res["not_delegated"].items())
            took = (f"{res['delegated']} of {res['ops']} ops" if res["ops"] is not None
                    else f"{res['partitions']} partition(s)")
            own = "ExecuTorch's portable kernels" if r["backend"] == "executorch" else "TFLite's own kernels"
            notes.append(f"{what}: {res['delegate'] or 'no delegate'} took {took}; {own} ran {left}")
        elif isinstance(res, str):
            notes.append(f"{what}: residency {res}")
        q = r.get("quant")
        if isinstance(q, dict) and q["float"]["layers"]:
            ops = ", ".join(f"{op} x{n}" for op, n in q["float"]["ops"].items())
            notes.append(f"{what}: INT8 file with float layers: {ops}")
    return notes


def _batch(row: dict[str, Any]) -> str:
    return "" if row.get("batch") is None else f" batch {row['batch']}"


def _meta_line(meta: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in meta.items())


def threads_line(rows: list[dict[str, Any]]) -> str:
    """What the rows say about threads, read from them: one count for every backend, or each backend's."""
    seen: dict[str, set] = {}
    for r in rows:
        if r.get("threads") is not None:
            seen.setdefault(r["backend"], set()).add((r["threads"], r.get("threads_from", "set")))
    if not seen:
        return "threads: not reported"
    counts = {t for v in seen.values() for t, _ in v}
    how = "; ".join(f"{b} {', '.join(f'{t} ({src})' for t, src in sorted(v))}" for b, v in seen.items())
    if len(counts) == 1:
        return f"every backend ran with {counts.pop()} threads ({how})"
    return f"backends ran with different thread counts: {how}"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both latency (lower) and accuracy (higher)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any((l2 <= lat and a2 >= acc) and (l2 < lat or a2 > acc) for j, (l2, a2) in enumerate(points)
                        if j != i)
        if not dominated:
            front.append(i)
    return front


def pareto_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Latency (batch 1, log scale) vs accuracy of the first head; colour per model, Pareto front in red."""
    pts = [(r["p50_ms"], next(iter(r["accuracy"].values())), r["model"], f"{r['backend']} {r['precision']}")
           for r in rows if r.get("batch") == 1 and r.get("accuracy") and "p50_ms" in r]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front([(p[0], p[1]) for p in pts])
    models = list(dict.fromkeys(p[2] for p in pts))
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for m_i, model in enumerate(models):
        mine = [p for p in pts if p[2] == model]
        ax.scatter([p[0] for p in mine], [p[1] * 100 for p in mine], s=36, color=colors(m_i % 10), label=model,
                   zorder=3)
        for lat, acc, _, what in mine:
            ax.annotate(what, (lat, acc * 100), fontsize=7, xytext=(4, 3), textcoords="offset points")
    fp = sorted((pts[i][0], pts[i][1] * 100) for i in front)
    ax.plot([p[0] for p in fp], [p[1] for p in fp], color="tab:red", lw=1, ls="--", zorder=2, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("latency at batch 1, p50 (ms, log scale)")
    ax.set_ylabel("val accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    from edgekit.atomic import write_with

    return write_with(path, lambda fh: fh.write(buf.getvalue()))


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from edgekit.console import console

    keep = ("model", "backend", "precision", "batch", "threads", "params", "size_mb", "p50_ms", "frontend_p50_ms",
            "p99_ms", "throughput_ips", "peak_rss_mb", "accuracy", "speedup_vs_teacher_torch", "load_ms",
            "residency")  # the rest: bench.md
    columns = [(k, t) for k, t in columns_for(rows) if k in keep]
    table = Table(title="edgekit bench")
    for _, title in columns:
        table.add_column(title, justify="left" if title in ("model", "backend", "prec") else "right")
    for r in rows:
        table.add_row(*[cell(r, k) for k, _ in columns])
    console().print(table)
