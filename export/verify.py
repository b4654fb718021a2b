"""Parity: does the exported file give the answers the PyTorch model gives, on real images?

Each file is opened with :func:`edgekit.runtime.load` — the same code that runs on the device —
and fed the validation images the PyTorch model sees (same preprocessed tensors). Per head: max
abs difference, relative error (max abs / max |reference|), mean cosine similarity, SQNR (dB), and
against the labels: top-1 agreement and accuracy (classification), mAP and LWLRAP (multilabel), MAE
(regression), for the file and for PyTorch. Each file is then judged by the gate of the precision
that ran (:mod:`edgekit.export.gates`): its own precision, or the one its runtime chose (OpenVINO
runs an FP32 file in bf16 on AMX CPUs). A CoreML file on Linux is "not run here" (prediction needs
macOS): its structure is checked, which can fail it but never pass it; on macOS it runs and is judged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit import formats
from edgekit.card import ModelCard
from edgekit.export.compare import compare_outputs, sqnr_db  # noqa: F401 - sqnr_db: re-exported
from edgekit.export.gates import GATES, gate_failures_text, gate_for, judge

FP32_TOLERANCE = GATES["fp32"].max_rel
RUNTIME_BATCHES = (8, 32)  # edgekit bench's default batches besides 1: proven at export where a runtime resizes
RAN = {"f32": "fp32", "fp32": "fp32", "f16": "fp16", "fp16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "int8",
       "int8": "int8"}  # what a backend says ran -> the gate's precision


def verify_file(path: str | Path, reference: dict[str, np.ndarray], x: np.ndarray,
                targets: dict[str, np.ndarray] | None, source: ModelCard,
                overrides: dict[str, float | None] | None = None) -> dict[str, Any]:
    """Run ``path`` through the edgekit runtime on ``x``, compare with ``reference`` and judge it.

    ``x`` is the NCHW float32 batch the PyTorch model saw, normalized as ``source`` (the
    checkpoint's card) says; it is re-laid-out (NHWC) or turned back into pixels (CoreML images)
    as the file's own card requires. ``overrides``: the user's gate thresholds
    (:func:`edgekit.export.gates.check_overrides`).
    """
    from edgekit.runtime import load
    from edgekit.runtime.backend import backend_class
    from edgekit.runtime.metadata import read_card

    path = Path(path)
    card = read_card(path)
    precision = card.provenance.get("precision", "fp32")
    entry: dict[str, Any] = {"file": path.name, "format": card.provenance.get("format"), "precision": precision}
    fmt = formats.of_file(path)
    not_here = backend_class(path).not_run_here()
    if not_here:  # not run here (CoreML off macOS): neither passed nor failed
        # what can be checked without running it
        structure = getattr(fmt.steps(), "check_structure", None)
        if structure is None:
            return {**entry, "verdict": "not_run", "passed": False, "not_run": not_here}
        entry.update(structure(path, card))
        if not entry["structure_ok"]:  # what could be checked is wrong: that fails
            return {**entry, "verdict": "failed", "passed": False,
                    "gate_failures": [f"structure: {p}" for p in entry["problems"]]}
        return {**entry, "verdict": "not_run", "passed": False, "not_run": f"{not_here}; its structure was checked"}
    predictor = load(path, device="cpu")
    feed = x
    if card.input.dtype == "image":  # CoreML on macOS: back to [0, 255] pixels
        mean = np.asarray(source.input.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(source.input.std, np.float32).reshape(1, 3, 1, 1)
        feed = np.round((x * std + mean) * 255.0).clip(0, 255).astype(np.float32)
    if card.input.layout == "NHWC":
        feed = np.ascontiguousarray(feed.transpose((0, 2, 3, 1) if feed.ndim == 4 else (0, 1, 3, 4, 2)))
    out = predictor.run(feed)
    if getattr(predictor.backend, "proven", None) and predictor.backend.batch is None:
        entry["batches"] = prove_batches(predictor.backend)
    entry["heads"] = compare_outputs(card, reference, out, targets)
    entry["max_rel"] = max(h["rel"] for h in entry["heads"].values())
    entry["precision_ran"] = ran = precision_ran(precision, getattr(predictor.backend, "execution_precision", None))
    entry = {**entry, **verdict(entry, ran, overrides)}
    if fmt.file_checks:  # a target's own checks (a web bundle: its page's, export/web.py)
        entry = formats.function(fmt.file_checks)(path, predictor.backend, entry, overrides)
    as_stored = getattr(predictor.backend, "as_stored", None)  # OpenVINO: the same file with f32 float layers
    # the runtime chose a lower precision for the file (bf16 for an FP32 IR), or for the layers an INT8 IR keeps
    # in float and that missed: prove the file at the precision it stores too, and repair it where that passes
    lowered = ran != precision.split("-")[0] or (
        not entry["passed"] and getattr(predictor.backend, "floats_lowered", lambda: None)() is not None)
    if lowered and as_stored is not None:
        stored = stored_check(as_stored(), card, reference, feed, targets, precision, overrides)
        entry["as_stored"] = stored
        if not stored["passed"]:
            entry.update(passed=False, verdict="failed")
            entry["gate_failures"] = entry["gate_failures"] + [f"run at {stored['precision_ran']}: {f}"
                                                               for f in stored["gate_failures"]]
        elif not entry["passed"]:  # only the precision the runtime chose misses: pin the one that passes
            entry = repair(path, entry, feed, lambda: verify_file(path, reference, x, targets, source, overrides))
    return entry


def repair(path: Path, entry: dict[str, Any], feed: np.ndarray, reverify) -> dict[str, Any]:
    """A file whose runtime-chosen precision (OpenVINO's bf16) missed its gate while the precision it stores
    passed: where its format carries a setting (its export module's ``pin_precision``), pin that precision in
    the file, verify it again (``reverify``) and record the repair, its measured speed cost, and the verdict
    it replaced. Formats without such a setting keep the failed entry."""
    pin = getattr(formats.FORMATS[entry["format"]].steps(), "pin_precision", None)
    if pin is None:
        return entry
    record = pin(path, feed[:1])  # the hint the stored-precision check ran with (f32)
    again = reverify()
    again["repair"] = {**record, "replaced": {"precision_ran": entry["precision_ran"], "passed": entry["passed"],
                                              "gate_failures": entry["gate_failures"]}}
    return again


def prove_batches(backend) -> dict[str, dict[str, Any]]:
    """The batches a TFLite file's runtime resizes it to, proven on its golden inputs: the verification's own
    batch and :data:`RUNTIME_BATCHES` (``{batch: {"proven", "max_rel", "inputs"}}``; the runtime runs an
    unproven batch in chunks of the exported one)."""
    for n in RUNTIME_BATCHES:
        backend.proven(n)
    return {str(n): v for n, v in sorted(backend.verdicts.items())}


def stored_check(backend, card: ModelCard, reference: dict[str, np.ndarray], feed: np.ndarray,
                 targets: dict[str, np.ndarray] | None, precision: str,
                 overrides: dict[str, float | None] | None = None) -> dict[str, Any]:
    """A file run by ``backend`` at the precision it stores (OpenVINO with its float layers forced to f32),
    judged by that precision's gate: an FP32 IR must match PyTorch as any FP32 file must, whatever precision
    its runtime chooses by default."""
    from edgekit.runtime.predictor import Predictor

    heads = compare_outputs(card, reference, Predictor(backend, card, backend.path).run(feed), targets)
    ran = precision_ran(precision, getattr(backend, "execution_precision", None))
    stored = {"heads": heads, "max_rel": max(h["rel"] for h in heads.values()), "precision_ran": ran}
    return {**stored, **verdict(stored, ran, overrides)}


def precision_ran(precision: str, execution: str | None) -> str:
    """The precision a file is gated at: its own, or the noisier one its runtime chose for a float file
    (OpenVINO's bf16 on CPUs with bf16 instructions, for an FP32 IR or one with FP16 weights). A quantized
    file keeps its own precision's gate."""
    base = precision.split("-")[0]
    ran = RAN.get((execution or "").lower())
    floats = ("bf16", "fp16", "fp32")  # most to least rounding noise: bf16 keeps 8 significant bits, fp16 11
    return ran if base in floats and ran in floats and floats.index(ran) < floats.index(base) else base


def verdict(entry: dict[str, Any], precision: str, overrides: dict[str, float | None] | None = None
            ) -> dict[str, Any]:
    """``{"verdict", "passed", "gate", "gate_failures"}`` of a compared entry under ``precision``'s gate
    (the file ran here: ``passed`` or ``failed``)."""
    result = judge(entry, gate_for(precision, overrides))
    return {"verdict": "passed" if result["passed"] else "failed", "passed": result["passed"], "gate": result["gate"],
            "gate_failures": result["failures"]}


def describe_entry(e: dict[str, Any]) -> str:
    """One console line on a verified entry of ``parity.json`` (:func:`edgekit.export.exporter.verify_artifacts`)."""
    from edgekit import parity as verdicts

    if "error" in e:
        return f"  {e['file']}: [red]FAILED[/] {e['error']}"
    if verdicts.verdict_of(e) == "not_run":
        return f"  {verdicts.not_run_line(e)}"
    if "heads" not in e:
        return f"  {e['file']}: [red]FAILED[/] {'; '.join(e.get('gate_failures') or ['nothing was measured'])}"
    parts = []
    for head, s in e["heads"].items():
        bits = [f"rel {s['rel']:.1e}"]
        if e.get("precision_ran", "fp32") != "fp32":
            bits.append("SQNR " + ("exact" if s.get("sqnr_db") is None else f"{s['sqnr_db']:.1f} dB"))
        if "top1_agreement" in s:
            bits.append(f"agree {s['top1_agreement'] * 100:.1f}%")
        if "accuracy" in s:
            bits.append(f"acc {s['accuracy'] * 100:.2f}% (torch {s['reference_accuracy'] * 100:.2f}%)")
        if "mae" in s:
            bits.append(f"MAE {s['mae']:.4g} (torch {s['reference_mae']:.4g})")
        if "map" in s:
            bits.append(f"mAP {s['map'] * 100:.2f}% (torch {s['reference_map'] * 100:.2f}%)")
        parts.append(f"{head}: {', '.join(bits)}")
    status = "ok" if e["passed"] else "[red]FAILED[/]"
    ran = e.get("precision_ran", e.get("precision"))
    gate = f"{ran} gate" + ("" if e["passed"] else ": " + gate_failures_text(e))
    line = (f"  {e['file']}: {status} ({gate})  {'; '.join(parts)}  ({e['export_seconds']:.1f}s, "
            f"{e['size_bytes'] / 1e6:.2f} MB)")
    if "end_to_end" in e:
        from edgekit.export.end_to_end import describe

        line += "\n    " + describe(e["end_to_end"])
    if "browser" in e:  # a web bundle: what ran in Chromium, and its page's own check (export/web.py)
        from edgekit.export.web import describe_check

        line += "\n    " + describe_check(e)
    return line
