"""``edgekit quantize``: INT8 deliverables, evaluated through the real INT8 runtimes.

PTQ: the checkpoint (fused first when it is a MobileOne-style model) is exported to FP32 and
INT8 ONNX / TFLite / ExecuTorch (and INT8-weight CoreML) by :mod:`edgekit.export.exporter`. QAT:
the model is prepared with ``prepare_qat_pt2e``, fine-tuned by the edgekit trainer with the FP32
model as its teacher, converted, and that one graph is exported to ONNX (QDQ), TFLite and
ExecuTorch (XNNPACK). Either way every INT8 file is run by its own runtime on the validation set:
FP32 vs INT8 accuracy, top-1 agreement, size, and the measured speed-up at batch 1 go into
``quant.json`` and (ONNX, TFLite) the files' cards.

``--skip-layers auto`` / ``--max-drop`` run the accuracy gate (:mod:`edgekit.recipes.accuracy_gate`):
blocks are ranked by their INT8 sensitivity (output SQNR with the block alone quantized, on
held-out training images), and each backend keeps the most sensitive ones in float until its INT8
accuracy on the validation images, through its own runtime, is within the drop.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.atomic import write_json
from edgekit.console import say
from edgekit.errors import ConfigError, option
from edgekit.export.exporter import ExportReport, default_out_dir, export_checkpoint, verify_artifacts
from edgekit.train.trained import Trained, load_trained


def quantize_checkpoint(ckpt: str | Path, method: str = "ptq", targets: Sequence[str] = ("onnx", "tflite"),
                        out_dir: str | Path | None = None, calib_images: int = 256, calib_method: str = "minmax",
                        skip_layers: Sequence[str] | str = "auto", epochs: int = 3, lr: float = 1e-4,
                        verbose: bool = True, max_drop: float | None = None, min_sqnr: float | None = None,
                        max_mae_increase: float | None = None, data: str | None = None) -> dict[str, Any]:
    """Quantize ``ckpt`` (``method`` ptq or qat) and write INT8 files plus ``quant.json``.

    Every file is judged by its precision's gate (:mod:`edgekit.export.gates`; ``max_drop``,
    ``min_sqnr`` and ``max_mae_increase`` override its thresholds). ``skip_layers="auto"`` (or any
    ``max_drop``) runs the accuracy gate's search (:mod:`edgekit.recipes.accuracy_gate`): blocks go
    to float, most sensitive first, until each backend's INT8 file passes its gate. A file that
    misses its gate is moved aside and, after ``quant.json`` is written, the call raises."""
    from edgekit.export.gates import check_overrides, gate_for

    if calib_images < 1:
        raise ConfigError(f"INT8 calibration needs at least one image, got {calib_images}")
    if method not in ("ptq", "qat"):
        raise ConfigError(f"{option('method')} must be ptq or qat, got '{method}'")
    if method == "qat" and epochs < 1:
        raise ConfigError(f"QAT fine-tunes for {option('epochs')} >= 1, got {epochs}")
    if method == "qat" and lr <= 0:
        raise ConfigError(f"{option('lr')} must be positive, got {lr}")
    if max_drop is not None and skip_layers != "auto" and list(skip_layers):
        raise ConfigError(f"{option('max_drop')} chooses the float layers itself: "
                          f"leave {option('skip_layers')} at auto")
    overrides = check_overrides(max_drop, min_sqnr, max_mae_increase)
    trained = load_trained(ckpt, data=data)
    if trained.card.input.frames:
        raise ConfigError(f"{ckpt} is a clip model: INT8 for clip models is not supported yet "
                          "(edgekit export gives FP32/FP16 ONNX and TFLite)")
    fuse_if_possible(trained, verbose)
    out = Path(out_dir) if out_dir else default_out_dir(trained.card, "quantize") / method
    gated = method == "ptq" and (skip_layers == "auto" or max_drop is not None)
    skip: list[str] | dict[str, list[str]] = [] if skip_layers == "auto" else list(skip_layers)
    extra: dict[str, Any] = {"int8_gate": gate_for("int8", overrides).to_dict()}
    if gated:
        report, skip, more = _gated(trained, targets, out, calib_images, calib_method, overrides, verbose)
        extra.update(more)
    elif method == "ptq":
        report = export_checkpoint(trained, targets, out, int8=True, calib_images=calib_images,
                                   calib_method=calib_method, skip_layers=skip, dynamic_batch=True, verbose=verbose,
                                   strict=False, gate_overrides=overrides)
    else:
        report = export_checkpoint(trained, [t for t in targets if t != "coreml"], out, dynamic_batch=True,
                                   verbose=verbose, verify=False, golden=True)  # verified below, with the QAT files
        report.artifacts += qat_artifacts(trained, out, skip, epochs, lr, verbose, targets)
        verify_artifacts(trained, report, verbose=verbose, strict=False, overrides=overrides)
    summary = {**summarize(trained, report, method, skip, verbose), **extra}
    write_json(out / "quant.json", summary)
    if extra.get("gate", {}).get("failed"):
        from edgekit.recipes.accuracy_gate import GateError

        raise GateError(extra["gate"]["error"])
    report.raise_for_failures()
    return summary


def _gated(trained: Trained, targets: Sequence[str], out: Path, calib_images: int, calib_method: str,
           overrides: dict[str, float | None], verbose: bool):
    """PTQ through the accuracy gate: per-backend float layers; CoreML (INT8 weights, not measurable
    on Linux) is exported as usual. Returns (report of every file in ``out``, float layers, extras)."""
    from edgekit import formats
    from edgekit.export.exporter import Artifact
    from edgekit.recipes.accuracy_gate import GateError, gate, plot_sensitivity, raise_if_failed

    gated = [t for t in targets if t in formats.int8_targets()]
    result = gate(trained, gated, out, candidate_layers(trained), overrides, calib_images, calib_method, verbose)
    if "coreml" in targets:
        export_checkpoint(trained, ["coreml"], out / ".coreml", int8=True, verify=False, verbose=False)
        for f in (out / ".coreml").glob("*.mlpackage"):
            dest = out / f.name
            if dest.exists():
                import shutil

                shutil.rmtree(dest)
            f.rename(dest)
        (out / ".coreml").joinpath("parity.json").unlink(missing_ok=True)
        (out / ".coreml").rmdir()

    seconds = {a.path.name: a.seconds for r in result.reports for a in r.artifacts}
    arts = [Artifact(out / formats.FORMATS[t].file(p), t, p, seconds.get(formats.FORMATS[t].file(p), 0.0))
            for t in targets
            for p in formats.FORMATS[t].precisions if p in ("fp32", "fp16", "int8", "int8-weights")
            if (out / formats.FORMATS[t].file(p)).exists()]
    report = ExportReport(out_dir=out, artifacts=arts)
    verify_artifacts(trained, report, verbose=verbose, strict=False, overrides=overrides)
    plot = plot_sensitivity(result.sensitivity, out / "sensitivity.png")
    from edgekit.export.gates import gate_for

    int8_gate = gate_for("int8", overrides)
    extra: dict[str, Any] = {"gate": {"max_drop_points": int8_gate.max_drop_points, "int8_gate": int8_gate.to_dict(),
                                      "float_layers": result.float_layers, "trail": result.trail,
                                      "failed": result.failed},
                             "sensitivity": result.sensitivity, "sensitivity_plot": plot.name if plot else None}
    try:
        raise_if_failed(result)
    except GateError as exc:
        extra["gate"]["error"] = str(exc)
    return report, result.float_layers, extra


def fuse_if_possible(trained: Trained, verbose: bool = True) -> None:
    """Quantize the inference form: fuse MobileOne-style blocks first (checked on val images)."""
    from edgekit.compress.reparam import fuse_verified, has_reparam_blocks

    if trained.card.provenance.get("fused") or not has_reparam_blocks(trained.model):
        return
    x, _ = trained.images("val", limit=128)
    fused, _, worst = fuse_verified(trained.model, torch.from_numpy(x))
    trained.model = fused
    trained.card.provenance.update(fused=True, fusion_max_rel_error=worst)
    trained.card.params = sum(p.numel() for p in fused.parameters())
    if verbose:
        say(f"fused {trained.card.arch} before quantizing (relative error {worst:.1e})")


def candidate_layers(trained: Trained) -> list[str]:
    """Top-level blocks a user would keep in float: the backbone's children and each head. Blocks without
    weights count too: NNCF quantizes the input of a global pool (``backbone.head``), which left the issue's
    OpenVINO INT8 mobileone_s0 at 8.5 dB with every weighted block in float; blocks with no node in the graph
    (an Identity, a Dropout) are dropped by the sensitivity step."""
    names = [f"backbone.{n}" for n, _ in trained.model.backbone.named_children()]
    if hasattr(trained.model.backbone, "stages"):  # one candidate per stage, not the whole trunk
        stages = [f"backbone.stages.{n}" for n, _ in trained.model.backbone.stages.named_children()]
        names = [n for n in names if n != "backbone.stages"] + stages
    return names + [f"heads.{h}" for h in trained.card.head_names]


def qat_artifacts(trained: Trained, out: Path, skip: list[str], epochs: int, lr: float, verbose: bool,
                  targets: Sequence[str] = ("onnx", "tflite")):
    """Fine-tune with fake quantization once, convert, and export that one INT8 graph to each of
    ``targets`` (ONNX QDQ, TFLite, ExecuTorch/XNNPACK; all NHWC); returns the artifacts."""
    from litert_torch.quantize.quant_config import QuantConfig

    from edgekit import formats
    from edgekit.compress.qat import fine_tune, qat_convert
    from edgekit.export.exporter import Artifact
    from edgekit.export.onnx import export_onnx
    from edgekit.export.tflite import export_tflite
    from edgekit.train.models import module_path

    sample = trained.sample(2).permute(0, 2, 3, 1).contiguous()
    prepared, quantizer, train_s = fine_tune(trained, out, [module_path(trained.model, s) for s in skip], epochs,
                                             lr, verbose)
    for_onnx = qat_convert(copy.deepcopy(prepared), fold=True)  # int8 weights in the file
    converted = qat_convert(prepared)  # litert-torch wants the weights' Q/DQ unfolded
    from edgekit.compress.qat import QATModel
    from edgekit.export.golden import golden_inputs

    qat_model = QATModel(for_onnx, trained.card.head_names)  # what the files are the INT8 form of

    golden = golden_inputs(trained, model=qat_model)  # the files are checked against the fine-tuned model
    arts = []
    quant = {"method": "qat", "epochs": epochs, "lr": lr, "teacher": "fp32 self-distillation",
             "activations": "int8", "weights": "int8 per-channel", "float_layers": skip}
    writers = {
        # fixed batch 1: re-exporting the already-exported QAT graph with a symbolic batch trips torch.export
        "onnx": lambda c, p: export_onnx(for_onnx, c, p, sample[:1]),
        "tflite": lambda c, p: export_tflite(converted, c, p, sample[:1],
                                             quant_config=QuantConfig(pt2e_quantizer=quantizer)),
        "executorch": lambda c, p: _qat_pte(for_onnx, c, p, sample[:1]),  # XNNPACK fuses the Q/DQ pairs
    }
    for fmt, write in writers.items():
        if fmt not in targets:
            continue
        name = formats.FORMATS[fmt].file("int8")
        t1 = time.perf_counter()
        c = trained.card.derive(precision="int8", quantization={**quant, "backend": fmt})
        c.input.layout, c.golden = "NHWC", golden
        path = write(c, out / name)
        arts.append(Artifact(path, fmt, "int8", time.perf_counter() - t1 + train_s, reference=qat_model,
                             reference_name="qat"))
    return arts


def _qat_pte(graph: torch.fx.GraphModule, card, path: Path, sample: torch.Tensor) -> Path:
    from edgekit.export.executorch import export_executorch

    return export_executorch(graph, card, path, sample)


def summarize(trained: Trained, report: ExportReport, method: str, skip: list[str], verbose: bool) -> dict[str, Any]:
    """FP32 vs INT8 per backend: accuracy, agreement, size, measured batch-1 latency and speed-up."""
    from edgekit import formats
    from edgekit.runtime import load
    from edgekit.runtime.backends import default_threads

    x, _ = trained.images("val", limit=1)
    threads = default_threads()  # the same explicit count for both files of every backend
    backends: dict[str, Any] = {}
    for target in formats.int8_targets():
        f = formats.FORMATS[target]
        fmt, fp32_name, int8_name = f.runtime, f.file("fp32"), f.file("int8")
        a, b = report.by_file(fp32_name), report.by_file(int8_name)
        if not a or not b or not (a.get("passed") is True and b.get("passed") is True):
            continue  # a file that missed its gate was moved aside: parity.json says why
        fp32 = load(report.out_dir / fp32_name, threads=threads)
        int8 = load(report.out_dir / int8_name, threads=threads)
        fp32_ms, int8_ms = _latency_pair(fp32, int8, x)
        heads = {}
        for head, s in b["heads"].items():
            heads[head] = {k: s.get(k) for k in ("accuracy", "reference_accuracy", "top1_agreement", "mae",
                                                  "reference_mae") if k in s}
            if "accuracy" in s:
                fp32_acc = a["heads"][head]["accuracy"]
                heads[head]["fp32_accuracy"] = fp32_acc
                heads[head]["drop_points"] = (fp32_acc - s["accuracy"]) * 100
        backends[fmt] = {"threads": {"fp32": fp32.backend.threads, "int8": int8.backend.threads},
                         "fp32": {"file": fp32_name, "size_bytes": a["size_bytes"], "latency_ms": fp32_ms},
                         "int8": {"file": int8_name, "size_bytes": b["size_bytes"], "latency_ms": int8_ms},
                         "speedup": fp32_ms / int8_ms, "size_ratio": a["size_bytes"] / b["size_bytes"],
                         "heads": heads}
        if fp32_ms < int8_ms:
            warnings.warn(f"{fmt}: INT8 is slower than FP32 here ({int8_ms:.3f} vs {fp32_ms:.3f} ms at batch 1); "
                          f"ship the FP32 file for this backend or try {option('skip_layers')}", stacklevel=2)
        if verbose:
            drops = ", ".join(f"{h}: {v['drop_points']:+.2f} pts" for h, v in heads.items() if "drop_points" in v)
            say(f"{fmt}: INT8 {int8_ms:.3f} ms vs FP32 {fp32_ms:.3f} ms at batch 1, {threads} threads "
                f"(x{fp32_ms / int8_ms:.2f}), {a['size_bytes'] / b['size_bytes']:.1f}x smaller, accuracy drop {drops}")
    summary = {"method": method, "source": str(trained.path), "fused": bool(trained.card.provenance.get("fused")),
               "float_layers": skip, "val_images": report.parity[0].get("val_images") if report.parity else None,
               "backends": backends, "files": [e["file"] for e in report.parity]}
    _record_in_cards(report, backends)
    from edgekit.parity import reseal

    reseal(report.out_dir, [info["int8"]["file"] for info in backends.values()])  # their cards grew, not the model
    return summary


def _latency_pair(fp32, int8, x: np.ndarray, runs: int = 200, warmup: int = 20) -> tuple[float, float]:
    """Median batch-1 latency of two predictors, interleaved so both see the same machine load."""
    feeds = []
    for p in (fp32, int8):
        feeds.append(x if p.card.input.layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    for _ in range(warmup):
        fp32.backend.run(feeds[0])
        int8.backend.run(feeds[1])
    times: list[list[float]] = [[], []]
    for _ in range(runs):
        for i, p in enumerate((fp32, int8)):
            t = time.perf_counter()
            p.backend.run(feeds[i])
            times[i].append(time.perf_counter() - t)
    return float(np.median(times[0]) * 1e3), float(np.median(times[1]) * 1e3)


def _record_in_cards(report: ExportReport, backends: dict[str, Any]) -> None:
    """Write the measured INT8 accuracy and speed-up into the INT8 files' own cards (ONNX, TFLite, OpenVINO).

    A ``.pte`` keeps its card as a constant method of the lowered program, which cannot be edited
    without lowering again: its numbers are in ``quant.json`` only."""
    from edgekit.export.onnx import rewrite_card as onnx_card
    from edgekit.export.tflite import rewrite_card as tflite_card
    from edgekit.runtime.metadata import read_card

    rewrite = {".onnx": onnx_card, ".tflite": tflite_card}
    if any(Path(i["int8"]["file"]).suffix == ".xml" for i in backends.values()):
        from edgekit.export.openvino import rewrite_card as ir_card

        rewrite[".xml"] = ir_card
    for info in backends.values():
        path = report.out_dir / info["int8"]["file"]
        if path.suffix not in rewrite:
            continue
        card = read_card(path)
        card.metrics = {**card.metrics, "int8": {"heads": info["heads"], "speedup_vs_fp32": info["speedup"],
                                                 "latency_ms": info["int8"]["latency_ms"]}}
        rewrite[path.suffix](path, card)
