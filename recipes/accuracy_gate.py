"""An accuracy gate for INT8 (``--max-drop``): float layers, most sensitive first, until each backend's
INT8 file passes its gate through its own runtime — or a refusal that says what was tried.

1. Sensitivity: each top-level block (backbone stem/stages, heads) is quantized *alone* (every other
   block kept in float) with onnxruntime's quantizer, and the SQNR of the model's outputs against
   FP32 is measured on held-out training images. Low SQNR = sensitive. Cheap (ONNX only), and it
   ranks layers for every backend.
2. Per backend (ONNX through onnxruntime, TFLite through the interpreter, ExecuTorch): the INT8 file
   is made with the current float set by :func:`edgekit.export.exporter.export_checkpoint`, which
   verifies it on the validation images through the real runtime and judges it with the INT8 gate
   (:mod:`edgekit.export.gates`: output SQNR, and per head top-1 agreement and accuracy drop,
   mAP/LWLRAP drop, MAE increase; ``max_drop`` sets the drop in points). While the file misses its
   gate, the next most sensitive block goes to float. Each backend may end with a different float set.
3. A backend that cannot meet the gate with every block in float gets no INT8 file: the command
   fails (exit 2) naming the float sets tried and why each missed. ``quant.json`` keeps the trail.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.console import say
from edgekit.errors import ConfigError, EdgekitError
from edgekit.export.exporter import ExportReport, export_checkpoint
from edgekit.export.verify import sqnr_db
from edgekit.train.models import module_path
from edgekit.train.trained import Trained


class GateError(EdgekitError):
    """INT8 cannot meet ``--max-drop`` on some backend, even with every candidate block in float."""


@dataclass
class GateResult:
    float_layers: dict[str, list[str]]  # backend -> blocks kept in float
    trail: dict[str, list[dict[str, Any]]]  # backend -> [{float_layers, drop_points}]
    sensitivity: list[dict[str, Any]]  # [{layer, sqnr_db}] most sensitive first
    reports: list[ExportReport] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # backend -> why


def sensitivity(trained: Trained, candidates: list[str], calib: np.ndarray, held: np.ndarray,
                calib_method: str, work: Path) -> list[dict[str, Any]]:
    """Output SQNR (dB) when each candidate block alone is INT8 (ONNX), most sensitive first."""
    from edgekit.export.onnx import export_onnx, to_int8
    from edgekit.runtime import load

    work.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(trained.wrapped(), trained.card.derive(), work / "fp32.onnx", trained.sample(1),
                       dynamic_batch=True)
    ref = _flat(load(fp32, device="cpu").run(held))
    import onnx

    from edgekit.export.onnx import onnx_nodes_in

    proto = onnx.load(str(fp32))  # the module scopes live in the exported file (to_int8 matches by node name)
    present = []
    for layer in candidates:  # a block the exporter folded away (e.g. into its neighbour) cannot be chosen
        try:
            onnx_nodes_in(proto, [module_path(trained.model, layer)])
            present.append(layer)
        except ConfigError:
            continue
    candidates = present
    rows = []
    for layer in candidates:
        others = [module_path(trained.model, c) for c in candidates if c != layer]
        q = to_int8(fp32, trained.card.derive(), work / "alone.onnx", calib, calib_method, others)
        out = _flat(load(q, device="cpu").run(held))
        rows.append({"layer": layer, "sqnr_db": sqnr_db(ref, out)})
    # None: the block alone in INT8 changes nothing in onnxruntime (no op it quantizes): least sensitive there,
    # tried last (another backend's quantizer may still place one, e.g. NNCF before a global pool)
    return sorted(rows, key=lambda r: float("inf") if r["sqnr_db"] is None else r["sqnr_db"])


def gate(trained: Trained, backends: list[str], out: Path, candidates: list[str],
         overrides: dict[str, float | None], calib_images: int = 256, calib_method: str = "minmax",
         verbose: bool = True) -> GateResult:
    """Run the search for each backend (``onnx``, ``tflite``, ``executorch``); files that pass their
    INT8 gate (with the user's ``overrides``, see :func:`edgekit.export.gates.check_overrides`) end up
    in ``out``."""
    work = out / ".gate"
    calib, _ = trained.images("train", limit=calib_images, seed=0)
    held, _ = trained.images("train", limit=min(256, calib_images * 2), seed=1)
    order = sensitivity(trained, candidates, calib, held, calib_method, work / "sensitivity")
    if verbose:
        say("INT8 sensitivity (output SQNR with the block alone in INT8): " + ", ".join(
            f"{r['layer']} {r['sqnr_db']:.1f} dB" for r in order if r["sqnr_db"] is not None))
    result = GateResult({}, {}, order)
    for backend in backends:
        chosen: list[str] = []
        trail = result.trail.setdefault(backend, [])
        while True:
            attempt = work / backend / str(len(trail))
            report = export_checkpoint(trained, [backend], attempt, int8=True, calib_images=calib_images,
                                       calib_method=calib_method, skip_layers=chosen, dynamic_batch=True,
                                       verbose=False, strict=False, gate_overrides=overrides)
            step = _attempt(report, backend)
            trail.append({"float_layers": list(chosen), **step})
            if verbose:
                drop = "n/a" if step["drop_points"] is None else f"{step['drop_points']:+.2f}"
                say(f"{backend}: float {chosen or 'none'} -> accuracy drop {drop} points, "
                    + ("passes its gate" if step["passed"] else f"misses its gate ({'; '.join(step['failures'])})"))
            if step["passed"]:
                result.float_layers[backend] = chosen
                result.reports.append(report)
                _adopt(attempt, out)
                break
            rest = [r["layer"] for r in order if r["layer"] not in chosen]
            if not step["made"] or not rest:
                result.failed[backend] = ("the INT8 file could not be made" if not step["made"] else
                                          f"{'; '.join(step['failures'])} even with {len(chosen)} block(s) in float")
                break
            chosen.append(rest[0])
    shutil.rmtree(work, ignore_errors=True)
    return result


def raise_if_failed(result: GateResult) -> None:
    if not result.failed:
        return
    tried = "; ".join(f"{b}: " + ", ".join(_step(t) for t in result.trail[b]) for b in result.failed)
    raise GateError(f"INT8 cannot pass its gate on {', '.join(result.failed)} "
                    f"({'; '.join(result.failed.values())}); no INT8 file written for it. Tried: {tried}")


def _step(t: dict[str, Any]) -> str:
    drop = "n/a" if t["drop_points"] is None else f"drop {t['drop_points']:.2f}"
    return f"{t['float_layers'] or 'none'} -> {drop}{'' if t['passed'] else ' (missed)'}"


def _attempt(report: ExportReport, backend: str) -> dict[str, Any]:
    """What one INT8 attempt gave: made, passed its gate, why not, and the mean accuracy drop (points,
    over classification heads; None without one)."""
    from edgekit import formats

    fmt = formats.FORMATS[backend]
    int8 = report.by_file(fmt.file("int8"))
    if not int8 or "heads" not in int8:
        why = next((f["error"] for f in report.failures if f["file"] == fmt.file("int8")), None)
        return {"made": False, "passed": False, "failures": [why or (int8 or {}).get("error", "not made")],
                "drop_points": None}
    drops = [(s["reference_accuracy"] - s["accuracy"]) * 100 for s in int8["heads"].values() if "accuracy" in s]
    return {"made": True, "passed": bool(int8["passed"]), "failures": int8.get("gate_failures", []),
            "drop_points": float(np.mean(drops)) if drops else None}


def _adopt(attempt: Path, out: Path) -> None:
    """Move an accepted attempt's files (and its parity.json entries) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for f in attempt.iterdir():
        if f.name == "parity.json":
            continue
        target = out / f.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(f), str(target))


def _flat(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([v.reshape(len(v), -1) for v in outputs.values()], axis=1).astype(np.float64)


def plot_sensitivity(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """A bar chart of each block's output SQNR when it alone is INT8 (lower = more sensitive)."""
    rows = [r for r in rows if r["sqnr_db"] is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    ax.barh([r["layer"] for r in rows][::-1], [r["sqnr_db"] for r in rows][::-1], color="#4c72b0")
    ax.set_xlabel("output SQNR with only this block in INT8 (dB; lower = more sensitive)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
