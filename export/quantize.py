"""``edgekit quantize``: INT8 deliverables, evaluated through the real INT8 runtimes, and ``quant.json``.

It is :func:`edgekit.export.exporter.export_checkpoint` with an INT8 policy (:mod:`edgekit.export.int8`) and
its defaults: the model fused first when it is MobileOne-style, a dynamic batch, the float-layer search
(``--skip-layers auto``, the default, or any ``--max-drop``) for PTQ, or QAT. Every file is judged once, in that
export; this module then measures FP32 vs INT8 per backend (accuracy, agreement, size, batch-1 latency and
speed-up, interleaved in one run) into ``quant.json`` and the INT8 files' cards.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.atomic import write_json
from edgekit.console import say
from edgekit.errors import ConfigError, option
from edgekit.export.exporter import default_out_dir, export_checkpoint
from edgekit.export.int8 import MAX_FLOAT, SEARCH_BY, Int8, fuse_if_possible
from edgekit.export.report import ExportError, ExportReport
from edgekit.train.trained import Trained, load_trained


def quantize_checkpoint(ckpt: str | Path, method: str = "ptq", targets: Sequence[str] = ("onnx", "tflite"),
                        out_dir: str | Path | None = None, calib_images: int = 256, calib_method: str = "minmax",
                        skip_layers: Sequence[str] | str = "auto", epochs: int = 3, lr: float = 1e-4,
                        verbose: bool = True, max_drop: float | None = None, min_sqnr: float | None = None,
                        max_mae_increase: float | None = None, data: str | None = None,
                        search_by: str = SEARCH_BY, max_float: float = MAX_FLOAT) -> dict[str, Any]:
    """Quantize ``ckpt`` (``method`` ptq or qat) and write INT8 files plus ``quant.json``.

    Every file is judged by its precision's gate (:mod:`edgekit.export.gates`; ``max_drop``,
    ``min_sqnr`` and ``max_mae_increase`` override its thresholds). ``skip_layers="auto"`` (or any
    ``max_drop``) runs the float-layer search (:mod:`edgekit.export.int8`): the layers ``edgekit diff`` ranks
    worst (``search_by="layer"``, at most ``max_float`` of the conv/linear layers) or the most sensitive blocks
    (``"block"``) go to float until each backend's INT8 file passes its gate. A file that misses its gate is moved
    aside and, after ``quant.json`` is written, the call raises."""
    from edgekit.export.gates import check_overrides, gate_for

    if max_drop is not None and skip_layers != "auto" and list(skip_layers):
        raise ConfigError(f"{option('max_drop')} chooses the float layers itself: "
                          f"leave {option('skip_layers')} at auto")
    auto = method == "ptq" and (skip_layers == "auto" or max_drop is not None)
    policy = Int8(method=method, float_layers="auto" if auto else tuple([] if skip_layers == "auto" else skip_layers),
                  calib_images=calib_images, calib_method=calib_method, epochs=epochs, lr=lr, fuse=True,
                  rank_always=True,  # quant.json's sensitivity ranking and plot
                  search_by=search_by, max_float=max_float)
    overrides = check_overrides(max_drop, min_sqnr, max_mae_increase)
    trained = load_trained(ckpt, data=data)
    if trained.card.input.frames:
        raise ConfigError(f"{ckpt} is a clip model: INT8 for clip models is not supported yet "
                          "(edgekit export gives FP32/FP16 ONNX and TFLite)")
    fuse_if_possible(trained, verbose)
    out = Path(out_dir) if out_dir else default_out_dir(trained.card, "quantize") / method
    if method == "qat":
        targets = [t for t in targets if t != "coreml"]  # INT8-weight CoreML is PTQ only
    report = export_checkpoint(trained, targets, out, int8=policy, dynamic_batch=True, verbose=verbose,
                               strict=False, gate_overrides=overrides)
    search = report.int8_search
    floats: Any = search["float_layers"] if search else policy.named_float_layers
    summary = {**summarize(trained, report, method, floats, verbose),
               "int8_gate": gate_for("int8", overrides).to_dict()}
    if search:
        summary["gate"] = {k: search[k] for k in ("max_drop_points", "int8_gate", "float_layers", "trail", "failed",
                                                  "seconds", "attempts", "search")}
        summary["sensitivity"] = search["sensitivity"]
        summary["sensitivity_plot"] = "sensitivity.png" if (out / "sensitivity.png").exists() else None
    write_json(out / "quant.json", summary)
    if search and search["failed"]:
        raise ExportError("; ".join(e["error"] for e in report.failures if e["precision"] == "int8"
                                    and e["format"] in search["failed"]), report)
    report.raise_for_failures()
    return summary


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
    summary = {"method": method, "source": trained.source, "fused": bool(trained.card.provenance.get("fused")),
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

    from edgekit import formats
    from edgekit.runtime.metadata import read_card

    for info in backends.values():
        path = report.out_dir / info["int8"]["file"]
        rewrite = getattr(formats.of_file(path).steps(), "rewrite_card", None)
        if rewrite is None:  # a card that cannot be edited (a .pte's is part of the lowered program)
            continue
        card = read_card(path)
        card.metrics = {**card.metrics, "int8": {"heads": info["heads"], "speedup_vs_fp32": info["speedup"],
                                                 "latency_ms": info["int8"]["latency_ms"]}}
        rewrite(path, card)
