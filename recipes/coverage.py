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
failing cell carries a one-line reason and whose bug it is (:data:`KNOWN`).

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
from edgekit.recipes.floors import add_floors, floor_lines, input_floors, judge_floors, pt2e_reference

ARCHS = ("mobileone_s0", "mobileone_s2", "mobilevit_xxs", "mobilevitv2_050", "mobilenetv3_small_100",
         "mobilenetv3_large_100", "mobilenetv4_conv_small", "mobilenetv4_hybrid_medium", "efficientnet_b0",
         "efficientvit_m0", "fastvit_t8", "repvit_m0_9", "convnext_atto", "edgenext_xx_small", "ghostnet_100",
         "levit_128s", "deit_tiny_patch16_224", "resnet18", "regnetx_002", "lcnet_050")
# (column, export format, precision, file name)
CELLS = (("onnx fp32", "onnx", "fp32", "model.onnx"), ("onnx fp16", "onnx", "fp16", "model.fp16.onnx"),
         ("onnx int8", "onnx", "int8", "model.int8.onnx"), ("tflite fp32", "tflite", "fp32", "model.tflite"),
         ("tflite fp16", "tflite", "fp16", "model.fp16.tflite"), ("tflite int8", "tflite", "int8", "model.int8.tflite"),
         ("coreml", "coreml", "fp16", "model.mlpackage"), ("executorch fp32", "executorch", "fp32", "model.pte"),
         ("executorch int8", "executorch", "int8", "model.int8.pte"))
# the numeric part of export's gates (edgekit.export.gates): the stand-ins have random weights, so their top-1
# agreement and accuracy mean little; a cell is judged by the FP32 relative error or the FP16/INT8 SQNR floor
GATES = {p: ("rel", g.max_rel) if g.max_rel is not None else ("sqnr_db", g.min_sqnr_db)
         for p, g in EXPORT_GATES.items() if p in ("fp32", "fp16", "int8")}
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
            "ai-edge-quantizer", "torchao", "coremltools", "executorch", "numpy")


def run_arch(arch: str, work: Path, imgsz: int = 224, calib: int = 32, val: int = 48,
             min_seconds: float = 0.3, data: str = "digits") -> dict[str, Any]:
    """Build, export, verify and time one architecture; returns ``{"arch", "cells": {column: cell}}``.
    ``data``: the images for BatchNorm statistics, the probe, calibration and parity (the matrix
    passes :func:`~edgekit.recipes.photos.photo_folder`'s photos)."""
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
    row["floors"] = {**input_floors(trained, val), "tflite_pt2e_db": pt2e_reference(trained, calib, val)}
    row["prepare_seconds"] = round(time.perf_counter() - t0, 1)
    parity: dict[str, dict] = {}
    for targets, extra in ((["onnx", "tflite"], {"int8": True, "fp16": True}), (["coreml"], {}),
                           (["executorch"], {"int8": True})):
        report = export_checkpoint(trained, targets, out / "files", calib_images=calib, val_images=val,
                                   verbose=False, strict=False, keep_failed=True, **extra)  # kept: to be timed
        parity.update({e["file"]: e for e in report.parity + report.failures})
    for column, _fmt, precision, name in CELLS:
        row["cells"][column] = _cell(out / "files" / name, parity.get(name), precision, min_seconds)
    return row


def probe_head(ckpt: Path, out: Path, head: str = "class", limit: int = 512) -> Path:
    """Replace the random 1000-way head with a logistic-regression probe fitted on the frozen
    backbone's embeddings of the data's training images (digits, or the photos' crops labelled by
    photo): outputs then carry signal (a random head's logits barely move between images, so any
    quantization noise swamps them), and accuracy means something. The head keeps a user-style
    name (``class`` is a Python keyword)."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    from edgekit.card import HeadSpec
    from edgekit.train.checkpoint import load_checkpoint, save_checkpoint
    from edgekit.train.models import build_student
    from edgekit.train.trained import load_trained

    src = load_trained(ckpt)
    x, _ = src.images("train", limit=limit)
    data = src._data  # loaded by images(): the targets of the same split, drawn the same way
    n = len(data.train)
    ids = np.arange(n) if n <= limit else np.sort(np.random.default_rng(0).choice(n, limit, replace=False))
    y = data.train.targets[data.heads[0].name][ids]
    with torch.no_grad():
        emb = torch.cat([src.model.forward_features(torch.from_numpy(x[i: i + 32])) for i in range(0, len(x), 32)])
    clf = LogisticRegression(max_iter=2000).fit(emb.numpy(), y)
    classes = list(data.heads[0].classes or [])
    model = build_student(src.card.arch, [HeadSpec(head, "classification", classes)])
    state = {k: v for k, v in src.model.state_dict().items() if not k.startswith("heads.")}
    model.load_state_dict(state, strict=False)
    coef = np.zeros((len(classes), emb.shape[1]), np.float32)
    bias = np.full(len(classes), -10.0, np.float32)  # a class with no training image never wins
    coef[clf.classes_] = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_, clf.coef_])
    bias[clf.classes_] = clf.intercept_ if len(clf.classes_) > 2 else np.r_[-clf.intercept_, clf.intercept_]
    with torch.no_grad():
        linear = model.heads[head][1]
        linear.weight.copy_(torch.from_numpy(coef))
        linear.bias.copy_(torch.from_numpy(bias))
    card = src.card.derive(weights=f"random backbone (seed 0) + logistic-regression probe on {len(x)} training images")
    card.heads = model.head_specs
    raw = load_checkpoint(ckpt)
    return save_checkpoint(out / "model.pt", {"card": card.to_dict(), "config": raw["config"],
                                              "model_state": model.state_dict(), "epoch": None})


def _cell(path: Path, entry: dict | None, precision: str, min_seconds: float) -> dict[str, Any]:
    if entry is None:
        return {"passed": False, "reason": "not attempted", "owner": "ours"}
    cell: dict[str, Any] = {"export_seconds": entry.get("export_seconds")}
    if "error" in entry:
        cell.update(passed=False, reason=entry["error"], **_owner(entry["error"]))
        return cell
    cell["size_mb"] = round(entry["size_bytes"] / 1e6, 2)
    if "heads" not in entry:  # CoreML on Linux: conversion and structure only
        cell.update(passed=bool(entry.get("structure_ok")), structure="ok" if entry.get("structure_ok") else
                    "; ".join(entry.get("problems", [])), latency="n/a: needs macOS")
        if not cell["passed"]:
            cell.update(reason=f"structure: {cell['structure']}", owner="ours")
        return cell
    stats = next(iter(entry["heads"].values()))
    cell.update(max_rel=stats["rel"], cosine=stats["cosine"], sqnr_db=stats.get("sqnr_db"),
                top1_agreement=stats.get("top1_agreement"))
    key, limit = GATES[precision]
    value = stats["rel"] if key == "rel" else (stats.get("sqnr_db") if stats.get("sqnr_db") is not None else 1e9)
    ok = value <= limit if key == "rel" else value >= limit
    if not ok:
        cell.update(passed=False, owner="numeric", reason=f"{'relative error' if key == 'rel' else 'SQNR'} "
                    f"{value:.3g}{'' if key == 'rel' else ' dB'} misses the {precision} gate ({limit:g})")
    else:
        cell["passed"] = True
    if not path.exists():  # an FP32 file over the tolerance was moved aside as *.failed: the reason stands
        return cell
    try:
        cell["p50_ms"] = _latency(path, min_seconds)
    except Exception as exc:  # noqa: BLE001 - a file that does not run is a failed cell
        cell.update(passed=False, reason=f"runtime: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                    owner="ours")
    return cell


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
               timeout: int = 1800, render_only: bool = False) -> dict[str, Any]:
    """Each architecture in its own process (results cached in ``work/ARCH/row.json``), then the report.

    ``render_only`` writes the report from the cached rows; an architecture without one is a row
    of "not run" cells (stale rows missing a column get "not run" for it)."""
    from edgekit.recipes.photos import photo_folder

    data = str(photo_folder(work / "photos"))
    rows = []
    for arch in archs:
        cached = work / arch / "row.json"
        if render_only and not cached.exists():
            rows.append({"arch": arch, "imgsz": imgsz, "error": "not run",
                         "cells": {c[0]: {"passed": False, "reason": "not run", "owner": "not run"} for c in CELLS}})
            continue
        stale = fresh or not cached.exists() or _stale(json.loads(cached.read_text()), Path(data).name)
        if not render_only and stale:
            t0 = time.perf_counter()
            print(f"[coverage] {arch} ...", flush=True)
            cmd = [sys.executable, "-m", "edgekit.recipes.coverage", "--one", arch, "--work", str(work),
                   "--imgsz", str(imgsz), "--data", data]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1] if proc.returncode else None
            except subprocess.TimeoutExpired:
                err = f"timed out after {timeout}s"
            if err or not cached.exists():
                row = {"arch": arch, "imgsz": imgsz, "data": Path(data).name, "error": err or "no result",
                       "cells": {c[0]: {"passed": False, "reason": f"model: {err}", **_owner(err or "")}
                                 for c in CELLS}}
                _write(cached, row)
            print(f"[coverage] {arch} done in {time.perf_counter() - t0:.0f}s", flush=True)
        row = json.loads(cached.read_text())
        if not {"tflite_pt2e_db", "fp32_rel"} <= set(row.get("floors") or {}) and not render_only:
            row["floors"] = add_floors(work, arch, row.get("floors"))
            _write(cached, row)
        rows.append(row)
    for row in rows:
        judge_floors(row, {p: limit for p, (_, limit) in GATES.items()})
    result = {"machine": machine(), "packages": versions(), "imgsz": imgsz, "threads": 2,
              "columns": [c[0] for c in CELLS], "gates": {k: list(v) for k, v in GATES.items()}, "rows": rows}
    for row in rows:  # the classification of known upstream failures is re-read, so it can improve
        for cell in row["cells"].values():
            if not cell.get("passed") and cell.get("owner") in ("unclassified", None) and cell.get("reason"):
                cell.update(_owner(cell["reason"]))
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "coverage.json", result)
    (out / "coverage.md").write_text(render(result))
    return result


def render(result: dict[str, Any]) -> str:
    cols = result["columns"]
    cells = [r["cells"][c] for r in result["rows"] for c in cols if c in r["cells"]]
    ran = [c for c in cells if c.get("owner") != "not run"]
    passed = sum(bool(c.get("passed")) for c in cells)
    lines = ["# Coverage matrix", "",
             f"{len(result['rows'])} architectures x {len(cols)} targets at {result['imgsz']} px: "
             f"**{passed} of {len(cells)} cells pass ({passed / max(len(cells), 1) * 100:.0f}%)**"
             + (f"; {len(cells) - len(ran)} cells were not run ({passed / max(len(ran), 1) * 100:.0f}% of those run "
                "pass)" if len(ran) < len(cells) else "") + ".", "",
             f"Machine: {result['machine']}. Latency: batch-1 p50 through the edgekit runtime, "
             f"{result['threads']} threads; rows run one after another on a machine that may be busy, so compare "
             "latencies within a row. Regenerate: `python -m edgekit.recipes.coverage` "
             "(one process per architecture; `--archs a,b` for a subset).", "",
             "Stand-ins: random-init weights (seed 0) with BatchNorm statistics from real photos, and a "
             "logistic-regression probe as the `class` head: " + _data_line(result["rows"]), "",
             "Gates: FP32 max relative error <= 1e-4; FP16 SQNR >= 30 dB; INT8 SQNR >= 10 dB (top-1 agreement is "
             "reported but does not gate). CoreML: conversion + structure on Linux; prediction needs macOS.", ""]
    lines += floor_lines(result["rows"], cols)
    lines += ["| arch | params | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in result["rows"]:
        params = f"{r['params'] / 1e6:.1f} M" if r.get("params") else "?"
        lines.append(f"| {r['arch']} | {params} | " + " | ".join(_short(r["cells"].get(c)) for c in cols) + " |")
    lines += ["", "Cell: latency in ms (p50, batch 1) and SQNR in dB; `ok` = CoreML structure verified; "
              "`FAIL` = see below.", "", "## Failures", ""]
    for r in result["rows"]:
        for c in cols:
            cell = r["cells"].get(c)
            if cell is not None and not cell.get("passed") and cell.get("owner") != "not run":
                where = cell.get("owner", "?")
                if cell.get("upstream"):
                    where += f" ({cell['upstream']})"
                action = f" — {cell['action']}" if cell.get("action") else ""
                lines.append(f"- **{r['arch']} / {c}** [{where}]: {cell.get('reason')}{action}")
    unfused = [f"{r['arch']} ({r['fused']['error']})" for r in result["rows"] if (r.get("fused") or {}).get("error")]
    if unfused:
        lines += ["", "Not reparameterized, so exported in training form (`edgekit reparam` refuses a fusion that "
                  "changes the outputs by more than 1e-4): " + "; ".join(unfused) + "."]
    missing = [r["arch"] for r in result["rows"] if r.get("error") == "not run"]
    if missing:
        lines += ["", f"Not run (the session's time ran out; `python -m edgekit.recipes.coverage --archs "
                  f"{','.join(missing)}` runs them): {', '.join(missing)}."]
    lines += ["", "## Details", "", "| arch | target | max rel | cosine | SQNR dB | floor | top-1 agree | "
              "size MB | export s | p50 ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        for c in cols:
            x = r["cells"].get(c) or {}
            if x.get("passed") is not None and "max_rel" in x:
                lines.append(f"| {r['arch']} | {c} | {x['max_rel']:.1e} | {x['cosine']:.5f} | "
                             f"{_num(x.get('sqnr_db'), '.1f')} | "
                             + (f"{x['floor_rel']:.1e}" if x.get("floor_rel") is not None
                                else _num(x.get("floor_db"), ".1f"))
                             + (f" (pt2e {x['pt2e_db']:.1f})" if x.get("pt2e_db") is not None else "") + " | "
                             f"{_num(x.get('top1_agreement'), '.3f')} | "
                             f"{x.get('size_mb')} | {x.get('export_seconds')} | {x.get('p50_ms', 'n/a')} |")
    lines += ["", "## Versions", ""] + [f"- {k} {v}" for k, v in result["packages"].items()] + [""]
    return "\n".join(lines)


def _data_line(rows: list[dict[str, Any]]) -> str:
    from edgekit.recipes.photos import PHOTOS

    data = sorted({r.get("data", "digits") for r in rows if r.get("error") != "not run"})
    if data == ["photos"]:
        return (f"crops of the {len(PHOTOS)} photos scikit-image ships, one class per photo "
                "(`edgekit.recipes.photos`: on upsampled 8x8 digits, random backbones barely tell images apart, "
                "so an 8-bit quantizer's noise outweighed the signal).")
    return "images: " + ", ".join(data) + "."


def _short(cell: dict[str, Any] | None) -> str:
    if cell is None or cell.get("owner") == "not run":
        return "not run"
    if not cell.get("passed"):
        return "FAIL"
    if "p50_ms" not in cell:
        return "ok"
    sq = cell.get("sqnr_db")
    return f"{cell['p50_ms']:.2f} ms" + (f", {sq:.0f} dB" if sq is not None else "")


def _num(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def machine() -> str:
    from edgekit.recipes.deployment import environment

    env = environment(())
    return f"{env['machine']}, Python {env['python']}"


def versions() -> dict[str, str]:
    from edgekit.recipes.deployment import environment

    return {p: v or "not installed" for p, v in environment(PACKAGES)["packages"].items()}


def _stale(row: dict[str, Any], data: str) -> bool:
    """A cached row made before a column was added, or on other images (rows before the photos: digits)."""
    return bool({c[0] for c in CELLS} - set(row["cells"])) or row.get("data", "digits") != data


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
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the per-architecture child process
    ap.add_argument("--data", default="digits", help=argparse.SUPPRESS)  # its images (the parent passes the photos)
    args = ap.parse_args(argv)
    if args.one:
        from edgekit.cli import quiet_native_logs

        quiet_native_logs()
        _write(args.work / args.one / "row.json", run_arch(args.one, args.work, args.imgsz, data=args.data))
        return 0
    run_matrix([a.strip() for a in args.archs.split(",") if a.strip()], args.work, args.out, args.imgsz, args.fresh,
               render_only=args.render)
    print(args.out / "coverage.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
