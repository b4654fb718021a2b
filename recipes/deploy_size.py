"""The quickstart's deployment-size table: the run's teacher and student exported at a deployment input size
(224 px), FP32 and INT8 per backend, latency only. Each INT8 file comes from the float-layer search: the fully
INT8 file when it passes its gate, else one with blocks put in float, most sensitive first, until it does (marked,
and the blocks named); a file that still misses its gate there is timed but marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMGSZ, BATCHES = 224, (1, 8)  # the deployment size and batches the quickstart re-measures at


def find_row(rows: list[dict[str, Any]], role: str, backend: str, precision: str, batch: int = 1) -> dict | None:
    return next((r for r in rows if r["role"] == role and r["backend"] == backend and r["precision"] == precision
                 and r["batch"] == batch and "p50_ms" in r), None)


def backend_name(backend: str) -> str:
    return {"ort": "onnxruntime", "tflite": "TFLite (XNNPACK)"}.get(backend, backend)


def deployment_table(ckpts: dict[str, Path], out: Path, imgsz: int = IMGSZ, batches: tuple[int, ...] = BATCHES,
                     seconds: float = 0.5, verbose: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """The same teacher and student at a deployment size: the run's weights exported at ``imgsz``
    (convolutions do not depend on the input size; BatchNorm statistics are the run's), FP32 and
    INT8 per backend, batch 1 and 8, latency only. Returns bench rows and notes."""
    from edgekit import formats
    from edgekit.export.exporter import export_checkpoint
    from edgekit.export.gates import gate_failures_text
    from edgekit.export.int8 import Int8
    from edgekit.export.report import failure_reason
    from edgekit.recipes.bench import bench

    files, notes, uncertified, mixed = [], [], set(), set()
    for role, ckpt in ckpts.items():
        # INT8 by the float-layer search (the INT8 gate decides; fully INT8 first, a block in float only when the
        # file misses). keep_failed: a file that misses its gate here stays for its latency, its card saying it
        # failed (the recommendation never picks it) and its rows marked; the kernels' speed does not depend on
        # the answers
        report = export_checkpoint(ckpt, ["onnx", "tflite"], out / role, int8=Int8(float_layers="auto",
                                                                                   calib_images=32),
                                   imgsz=imgsz, val_images=32, dynamic_batch=True, verbose=False, strict=False,
                                   keep_failed=True)
        search = report.int8_search or {}
        for target, floats in (search.get("float_layers") or {}).items():
            if floats:
                name = formats.FORMATS[target].file("int8")
                mixed.add(str(out / role / name))
                first = search["trail"][target][0]
                notes.append(f"{role}: the fully INT8 {name} missed its gate at {imgsz} px "
                             f"({'; '.join(first['failures'])}); the file timed keeps {', '.join(floats)} in float "
                             f"(INT8 float-layer search, {len(search['trail'][target])} attempts) and passes (†)")
        for f in report.failed:
            if f.get("kept"):
                uncertified.add(str(out / role / f["file"]))
                notes.append(f"{role}: {f['file']} missed its {f.get('precision_ran') or f.get('precision')} gate "
                             f"at {imgsz} px ({gate_failures_text(f)}): "
                             "kept for its latency only (*), not certified")
            else:
                notes.append(f"{role}: {f['file']} failed at {imgsz} px: {failure_reason(f)}")
        files += [(role, str(a.path)) for a in report.artifacts]  # kept_failed: every made file is there
    rows: list[dict[str, Any]] = []
    for role in ckpts:
        mine = [f for r, f in files if r == role]
        if mine:
            got, _ = bench(mine, ["ort", "tflite"], list(batches), "cpu", None, None, out / "bench" / role,
                           min_seconds=seconds, verbose=False)
            rows += [{**r, "role": role, "certified": str(r.get("file")) not in uncertified,
                      "float_blocks": str(r.get("file")) in mixed} for r in got]
    return rows, notes


def deployment_lines(rows: list[dict[str, Any]], imgsz: int) -> list[str]:
    from edgekit.benchmarks.report import threads_line

    lines = [f"## Deployment size: {imgsz} px", "",
             f"The same teacher and student exported at {imgsz} px (the runs' weights; latency only), each file "
             f"measured in its own process; {threads_line(rows)}. Regenerate: `edgekit quickstart`.",
             "", "| model | backend | batch | threads | FP32 ms | INT8 ms | INT8 speed-up | size FP32 -> INT8 |",
             "|---|---|---|---|---|---|---|---|"]
    for role in dict.fromkeys(r["role"] for r in rows):
        for backend in ("ort", "tflite"):
            for batch in sorted({r["batch"] for r in rows if r["batch"]}):
                f, q = find_row(rows, role, backend, "fp32", batch), find_row(rows, role, backend, "int8", batch)
                if not f and not q:
                    continue
                fm, qm = (f or {}).get("p50_ms"), (q or {}).get("p50_ms")
                used = sorted({r["threads"] for r in (f, q) if r and r.get("threads") is not None})
                lines.append(f"| {role} | {backend_name(backend)} | {batch} | {'/'.join(map(str, used)) or 'n/a'} | "
                             f"{_ms(fm)}{_star(f)} | {_ms(qm)}{_star(q)} | "
                             f"{f'{fm / qm:.2f}x' if fm and qm else 'n/a'} | "
                             f"{_mb(f)} -> {_mb(q)} |")
    return lines + [""]


def _star(r: dict | None) -> str:
    """``*`` beside a latency whose file missed its gate (kept for timing only), ``†`` beside an INT8 file that
    keeps blocks in float to pass it (see the notes below the table)."""
    if r and r.get("certified") is False:
        return " *"
    return " †" if r and r.get("float_blocks") else ""


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _mb(r: dict | None) -> str:
    return "n/a" if not r or r.get("size_mb") is None else f"{r['size_mb']:.2f} MB"
