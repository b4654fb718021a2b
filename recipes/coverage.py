"""The coverage matrix: popular edge architectures x every target, each cell made, verified, timed.

``python -m edgekit.recipes.coverage`` (defaults: the 20 architectures below at 224 px) writes
``docs/coverage.json`` and ``docs/coverage.md``. Per architecture, in its own process (a converter
that crashes or hangs costs one row, not the run):

1. a random-init timm model with edgekit heads, made safe to measure as ``edgekit bench`` does
   (zero-init BatchNorm gammas set to 1, BatchNorm statistics from real images: crops of
   scikit-image's sample photos, :mod:`edgekit.recipes.photos`), a logistic-regression probe as its
   ``class`` head, fused first when it has reparameterizable branches;
2. ``export_checkpoint`` to every target and precision, each file failing alone;
3. per file, parity against PyTorch on real images through the edgekit runtime (max relative
   error, cosine, SQNR, top-1 agreement), batch-1 p50 latency on 2 threads, size, export seconds.

A cell passes when its file was made, loads in the runtime, and meets its numeric gate: FP32
relative error <= 1e-4 (the export gate), FP16 SQNR >= 30 dB, INT8 SQNR >= 10 dB. Top-1
agreement alone says nothing for random weights (one class can win everywhere), hence SQNR. A
failing cell carries a one-line reason and whose bug it is (:data:`KNOWN`). A CoreML cell on
Linux is "not run here" (made and structure-checked; prediction needs macOS): counted apart,
never a pass (:mod:`edgekit.recipes.coverage_report`).

Each row also measures its stand-in's own floors (:mod:`edgekit.recipes.floors`): a low-precision
cell below a floor the random weights set fails on the stand-in, not on the exporter.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgekit.export.gates import GATES as EXPORT_GATES
from edgekit.recipes.coverage_report import render, summarize, with_verdicts
from edgekit.recipes.floors import add_floors, bf16_floor, input_floors, judge_floors, pt2e_reference
from edgekit.recipes.probe import probe_head

ARCHS = ("mobileone_s0", "mobileone_s2", "mobilevit_xxs", "mobilevitv2_050", "mobilenetv3_small_100",
         "mobilenetv3_large_100", "mobilenetv4_conv_small", "mobilenetv4_hybrid_medium", "efficientnet_b0",
         "efficientvit_m0", "fastvit_t8", "repvit_m0_9", "convnext_atto", "edgenext_xx_small", "ghostnet_100",
         "levit_128s", "deit_tiny_patch16_224", "resnet18", "regnetx_002", "lcnet_050")
# (column, export format, precision, file name)
CELLS = (("onnx fp32", "onnx", "fp32", "model.onnx"), ("onnx fp16", "onnx", "fp16", "model.fp16.onnx"),
         ("onnx int8", "onnx", "int8", "model.int8.onnx"), ("tflite fp32", "tflite", "fp32", "model.tflite"),
         ("tflite fp16", "tflite", "fp16", "model.fp16.tflite"), ("tflite int8", "tflite", "int8", "model.int8.tflite"),
         ("coreml", "coreml", "fp16", "model.mlpackage"), ("executorch fp32", "executorch", "fp32", "model.pte"),
         ("executorch int8", "executorch", "int8", "model.int8.pte"),
         ("openvino fp32", "openvino", "fp32", "model.xml"), ("openvino int8", "openvino", "int8", "model.int8.xml"))
# the numeric part of export's gates (edgekit.export.gates): the stand-ins have random weights, so their top-1
# agreement and accuracy mean little; a cell is judged by the FP32 relative error or the FP16/bf16/INT8 SQNR floor
# (bf16: what OpenVINO runs an FP32 IR in on CPUs with bf16 instructions)
GATES = {p: ("rel", g.max_rel) if g.max_rel is not None else ("sqnr_db", g.min_sqnr_db)
         for p, g in EXPORT_GATES.items() if p in ("fp32", "fp16", "bf16", "int8")}
GROUPS = ((["onnx", "tflite"], {"int8": True, "fp16": True}), (["coreml"], {}), (["executorch"], {"int8": True}),
          (["openvino"], {"int8": True}))  # targets exported together, and their variants
# Failures that are not ours: (pattern in the one-line reason, owner, upstream issue, what we do about it).
KNOWN: list[tuple[str, str, str, str]] = [
    (r"Unsupported fx node alias", "upstream", "https://github.com/apple/coremltools/issues/2517",
     "worked around since: export/coreml.py drops aten.alias before converting"),
    (r"Lowering not found: aten._upsample_bicubic2d_aa", "upstream (litert-torch has no lowering for antialiased "
     "bicubic resize, which dynamic-size ViTs use to resample position embeddings)", "",
     "worked around since: the exporter fixes the embedding at the export size (train/models.py "
     "fix_position_embeddings)"),
    (r"object of type 'NoneType' has no len\(\)", "upstream (onnxruntime's symbolic shape inference crashes on "
     "EdgeNeXt's Expand in quant_pre_process)", "",
     "worked around since: export/onnx.py pre-processes without symbolic shape inference when it crashes"),
    (r'"histogram_cpu" not implemented for', "upstream (LiteRT's pt2e quantizer observes an int64 operand of mul)",
     "", "worked around since: compress/quantize.py keeps arithmetic on integer tensors in float"),
    (r"ExecuTorch cannot load 'forward'", "upstream (XNNPACK lowers a quantized zero-width pad it cannot build "
     "at load time: StaticConstantPad xnn_status_invalid_parameter)", "",
     "worked around since: export/executorch.py drops zero-width pads before quantizing"),
    (r"XNNPack delegate failed to reshape", "upstream (XNNPACK cannot resize batch-folding reshapes)", "",
     "worked around: the runtime runs such files at their exported batch, in chunks"),
]
PACKAGES = ("torch", "timm", "onnx", "onnxruntime", "onnxscript", "litert-torch", "ai-edge-litert",
            "ai-edge-quantizer", "torchao", "coremltools", "executorch", "openvino", "nncf", "numpy")


def run_arch(arch: str, work: Path, imgsz: int = 224, calib: int = 32, val: int = 48,
             min_seconds: float = 0.3, data: str = "digits", only: list[str] | None = None) -> dict[str, Any]:
    """Build, export, verify and time one architecture; returns ``{"arch", "cells": {column: cell}}``.
    ``data``: the images for BatchNorm statistics, the probe, calibration and parity (the matrix
    passes :func:`~edgekit.recipes.photos.photo_folder`'s photos). ``only``: these targets' columns alone,
    without the floors (:mod:`edgekit.recipes.coverage_add` adds them to an existing row)."""
    import torch

    from edgekit.compress.reparam import FusionError, fuse_checkpoint, has_reparam_blocks
    from edgekit.export.exporter import export_checkpoint
    from edgekit.recipes.bench import random_checkpoint
    from edgekit.train.trained import load_trained

    torch.set_num_threads(2)
    out = work / arch
    row: dict[str, Any] = {"arch": arch, "imgsz": imgsz, "data": Path(data).name, "cells": {}}
    t0 = time.perf_counter()
    ckpt, _ = random_checkpoint(arch, out / "random", imgsz, data)
    ckpt = probe_head(ckpt, out / "probe")
    trained = load_trained(ckpt)
    row["params"] = sum(p.numel() for p in trained.model.parameters())
    if has_reparam_blocks(trained.model):
        try:
            fused = fuse_checkpoint(ckpt, out / "fused", n_images=16)
        except FusionError as exc:  # as a user would: `edgekit reparam` refuses, the training form is exported
            row["fused"] = {"error": str(exc)}
        else:
            row["fused"] = {"params_before": fused.stats["params_before"],
                            "params_after": fused.stats["params_after"], "max_rel": fused.stats["max_rel"]}
            trained = load_trained(fused.path)
    if not only:
        row["floors"] = {**input_floors(trained, val), "tflite_pt2e_db": pt2e_reference(trained, calib, val)}
    if not only or "openvino" in only:  # OpenVINO runs FP32 IRs in bf16 on CPUs with bf16 instructions
        row.setdefault("floors", {})["bf16_db"] = bf16_floor(trained, val)
    row["prepare_seconds"] = round(time.perf_counter() - t0, 1)
    parity: dict[str, dict] = {}
    for targets, extra in GROUPS:
        if only and not set(targets) & set(only):
            continue
        report = export_checkpoint(trained, targets, out / "files", calib_images=calib, val_images=val,
                                   verbose=False, strict=False, keep_failed=True, **extra)  # kept: to be timed
        parity.update({e["file"]: e for e in report.parity + report.failures})
    for column, fmt, precision, name in CELLS:
        if not only or fmt in only:
            row["cells"][column] = _cell(out / "files" / name, parity.get(name), precision, min_seconds)
    return row


def _cell(path: Path, entry: dict | None, precision: str, min_seconds: float) -> dict[str, Any]:
    if entry is None:
        return {"verdict": "failed", "passed": False, "reason": "not attempted", "owner": "ours"}
    cell: dict[str, Any] = {"export_seconds": entry.get("export_seconds")}
    if "error" in entry:
        cell.update(verdict="failed", passed=False, reason=entry["error"], **_owner(entry["error"]))
        return cell
    cell["size_mb"] = round(entry["size_bytes"] / 1e6, 2)
    if "heads" not in entry:  # CoreML on Linux: conversion and structure only, so not run here (never a pass)
        ok = bool(entry.get("structure_ok"))
        cell.update(verdict="not_run" if ok else "failed", passed=False,
                    structure="ok" if ok else "; ".join(entry.get("problems", [])), latency="n/a: needs macOS")
        if ok:
            cell["not_run"] = entry.get("not_run") or "CoreML prediction needs macOS"
        else:
            cell.update(reason=f"structure: {cell['structure']}", owner="ours")
        return cell
    stats = next(iter(entry["heads"].values()))
    cell.update(max_rel=stats["rel"], cosine=stats["cosine"], sqnr_db=stats.get("sqnr_db"),
                top1_agreement=stats.get("top1_agreement"))
    ran = entry.get("precision_ran") or precision  # OpenVINO's FP32 IR runs bf16 on CPUs with bf16 instructions
    if ran != precision:
        cell["precision_ran"] = ran
    reasons = [_missed(stats, ran)]
    stored = entry.get("as_stored")  # the same file with f32 float layers: it must pass its own precision's gate
    if stored:
        cell["stored_rel"] = stored["max_rel"]
        reasons.append(_missed(next(iter(stored["heads"].values())), stored.get("precision_ran", precision),
                               " with the float layers forced to f32"))
    reasons = [r for r in reasons if r]
    if reasons:
        cell.update(verdict="failed", passed=False, owner="numeric", reason="; ".join(reasons))
    else:
        cell.update(verdict="passed", passed=True)
    if not path.exists():  # an FP32 file over the tolerance was moved aside as *.failed: the reason stands
        return cell
    try:
        cell["p50_ms"] = _latency(path, min_seconds)
    except Exception as exc:  # noqa: BLE001 - a file that does not run is a failed cell
        cell.update(verdict="failed", passed=False, owner="ours",
                    reason=f"runtime: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return cell


def _missed(stats: dict[str, Any], precision: str, how: str = "") -> str | None:
    """Why ``stats`` (one head's parity) misses the coverage gate of ``precision``, or None."""
    key, limit = GATES[precision]
    value = stats["rel"] if key == "rel" else (stats.get("sqnr_db") if stats.get("sqnr_db") is not None else 1e9)
    if (value <= limit) if key == "rel" else (value >= limit):
        return None
    return (f"{'relative error' if key == 'rel' else 'SQNR'} {value:.3g}{'' if key == 'rel' else ' dB'}{how} misses "
            f"the {precision} gate ({limit:g})")


def _latency(path: Path, min_seconds: float) -> float:
    """Batch-1 p50 (ms) through the edgekit runtime on 2 threads."""
    import numpy as np

    from edgekit.benchmarks.stats import latency_stats, time_calls
    from edgekit.runtime import load

    model = load(path, device="cpu", threads=2)
    h, w = model.card.input.size
    x = model.preprocess([np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)], color="RGB")
    return round(latency_stats(time_calls(lambda: model.run(x), min_runs=20, min_seconds=min_seconds,
                                          warmup=5))["p50_ms"], 3)


def _owner(reason: str) -> dict[str, str]:
    for pattern, owner, link, action in KNOWN:
        if re.search(pattern, reason):
            return {"owner": owner, "upstream": link, "action": action}
    return {"owner": "unclassified"}


# -- the whole matrix ------------------------------------------------------------------------------


def run_matrix(archs: list[str], work: Path, out: Path, imgsz: int = 224, fresh: bool = False,
               timeout: int = 1800, render_only: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    """Each architecture in its own process (results cached in ``work/ARCH/row.json``), then the report.

    ``render_only`` writes the report from the cached rows (else ``out/coverage.json``'s, re-judged with this
    edgekit's verdicts); an architecture without one is a row of "not run" cells (stale rows missing a column
    get "not run" for it). ``only`` (targets) runs just
    their columns and adds them to each row there is (``work/ARCH/row.json``, else ``out/coverage.json``'s)."""
    from edgekit.recipes.photos import photo_folder

    data = str(photo_folder(work / "photos"))
    last = json.loads((out / "coverage.json").read_text()) if (out / "coverage.json").exists() else {}
    rows, reused = [], 0
    for arch in archs:
        cached = work / arch / "row.json"
        old = next((r for r in last.get("rows", []) if r["arch"] == arch), None)
        if render_only and not cached.exists() and old:  # the last report's row, judged again
            rows.append(old)
            reused += 1
            continue
        if only and not cached.exists() and old:  # add columns to the last report's row
            _write(cached, old)
        if render_only and not cached.exists():
            rows.append({"arch": arch, "imgsz": imgsz, "error": "not run",
                         "cells": {c[0]: {"passed": False, "reason": "not run", "owner": "not run"} for c in CELLS}})
            continue
        stale = fresh or not cached.exists() or _stale(json.loads(cached.read_text()), Path(data).name, only)
        if not render_only and stale:
            t0 = time.perf_counter()
            print(f"[coverage] {arch} ...", flush=True)
            cmd = [sys.executable, "-m", "edgekit.recipes.coverage", "--one", arch, "--work", str(work),
                   "--imgsz", str(imgsz), "--data", data] + (["--only", ",".join(only)] if only else [])
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1] if proc.returncode else None
            except subprocess.TimeoutExpired:
                err = f"timed out after {timeout}s"
            if err or not cached.exists():
                failed = {c[0]: {"passed": False, "reason": f"model: {err}", **_owner(err or "")} for c in CELLS
                          if not only or c[1] in only}
                row = json.loads(cached.read_text()) if only and cached.exists() else {
                    "arch": arch, "imgsz": imgsz, "data": Path(data).name, "error": err or "no result", "cells": {}}
                row["cells"].update(failed)
                _write(cached, row)
            print(f"[coverage] {arch} done in {time.perf_counter() - t0:.0f}s", flush=True)
        row = json.loads(cached.read_text())
        needed = {"tflite_pt2e_db", "fp32_rel"} | ({"bf16_db"} if "openvino fp32" in row["cells"] else set())
        if not needed <= set(row.get("floors") or {}) and not render_only:
            row["floors"] = add_floors(work, arch, row.get("floors"))
            _write(cached, row)
        rows.append(row)
    for row in rows:
        judge_floors(row, {p: limit for p, (_, limit) in GATES.items()})
    same = reused == len(rows) and rows  # every row re-judged from the last report: its machine measured them
    result = {"machine": last["machine"] if same else machine(), "packages": last["packages"] if same else versions(),
              "imgsz": imgsz, "threads": 2, "columns": [c[0] for c in CELLS],
              "gates": {k: list(v) for k, v in GATES.items()}, "rows": rows}
    for row in rows:  # verdicts and the classification of known upstream failures are re-read, so they can improve
        with_verdicts(row)
        for cell in row["cells"].values():
            if not cell.get("passed") and cell.get("owner") in ("unclassified", None) and cell.get("reason"):
                cell.update(_owner(cell["reason"]))
    result["summary"] = summarize(result)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "coverage.json", result)
    (out / "coverage.md").write_text(render(result))
    return result


def machine() -> str:
    from edgekit.recipes.deployment import environment

    env = environment(())
    return f"{env['machine']}, Python {env['python']}"


def versions() -> dict[str, str]:
    from edgekit.recipes.deployment import environment

    return {p: v or "not installed" for p, v in environment(PACKAGES)["packages"].items()}


def _stale(row: dict[str, Any], data: str, only: list[str] | None = None) -> bool:
    """A cached row made before a column was added (with ``only``: one of those targets' columns), or on other
    images (rows before the photos: digits)."""
    wanted = {c[0] for c in CELLS if not only or c[1] in only}
    return bool(wanted - set(row["cells"])) or row.get("data", "digits") != data


def _write(path: Path, obj: Any) -> None:
    from edgekit.atomic import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekit.recipes.coverage", description=__doc__.split("\n\n")[0],
                                 epilog="Example: python -m edgekit.recipes.coverage --archs mobileone_s0,resnet18")
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma-separated timm names (default: the 20)")
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--work", type=Path, default=Path("runs/coverage"), help="files and per-arch results")
    ap.add_argument("--out", type=Path, default=Path("docs"), help="where coverage.md/.json go")
    ap.add_argument("--fresh", action="store_true", help="redo architectures that already have results")
    ap.add_argument("--render", action="store_true", help="only write the report from the results there are")
    ap.add_argument("--only", help="targets whose columns to run, added to the rows there are (e.g. openvino)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per architecture before its row fails")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the per-architecture child process
    ap.add_argument("--data", default="digits", help=argparse.SUPPRESS)  # its images (the parent passes the photos)
    args = ap.parse_args(argv)
    if args.one:
        from edgekit.logs import quiet_native_logs

        quiet_native_logs()
        only = [t for t in (args.only or "").split(",") if t]
        row = run_arch(args.one, args.work, args.imgsz, data=args.data, only=only or None)
        cached = args.work / args.one / "row.json"
        if only and cached.exists():  # the new columns join the row that has the others (and its floors)
            old = json.loads(cached.read_text())
            row = {**old, "cells": {**old["cells"], **row["cells"]}, "floors": {**(old.get("floors") or {}),
                                                                               **row.get("floors", {})}}
        _write(cached, row)
        return 0
    run_matrix([a.strip() for a in args.archs.split(",") if a.strip()], args.work, args.out, args.imgsz, args.fresh,
               args.timeout, render_only=args.render, only=[t for t in (args.only or "").split(",") if t] or None)
    print(args.out / "coverage.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
