"""``edgekit diff FILE``: the first layer where a model file stops agreeing with PyTorch.

The file runs through its own runtime with its intermediate tensors kept (:mod:`edgekit.runtime.taps`); the
reference is the checkpoint the file came from (its card's provenance) run in PyTorch with a forward hook on every
named module, or another file tapped the same way. Both run the same inputs: the card's golden inputs, or images
from ``--data``.

Mapping, never guessed: a module's output in the file is the last tensor the file attributes to that module or to
one of its submodules, in execution order; a module with no such tensor (a BatchNorm folded into its conv, a conv
fused with what follows) or whose tensor has another shape is listed as having no counterpart. Several modules
sharing one tensor (a block and its last activation) are one row. Layouts are explicit: a TFLite file's 4-D
activations are NHWC and are compared with PyTorch's NCHW ones transposed.

Per row: SQNR (dB) of the tensor and the median of its channels' SQNRs, mean cosine and max abs difference over the
inputs. The verdict is the row where the error *jumps*: among the rows whose lower SQNR is below the layer
threshold (the gate's SQNR floor for the file's precision; 60 dB for FP32, :func:`layer_threshold`), the one whose
SQNR fell most from the row before it. A drop caused by an error that merely accumulated is small; a broken
layer's is not.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import CardError, ConfigError
from edgekit.export.diff_formats import check_format, tap_any
from edgekit.export.gates import gate_for
from edgekit.export.layer_map import WRAPPERS, onnx_scopes_of, resolve, to_reference_layout, torch_activations
from edgekit.runtime.taps import ir_scopes, tap_file

EXACT_DB = 200.0  # the SQNR of two identical tensors, for the drop between rows


FP32_LAYER_DB = 60.0  # see layer_threshold


def layer_threshold(precision: str) -> float:
    """The per-layer SQNR floor (dB): the SQNR floor of ``precision``'s gate. The FP32 gate has none (it bounds the
    outputs' max relative error at 1e-4 of their largest value); over whole tensors, healthy FP32 files sit at
    75-85 dB in every layer against PyTorch (measured: the tests' mobileone_s0 in ONNX, TFLite and OpenVINO), so
    the FP32 floor is 20 dB under that: :data:`FP32_LAYER_DB`."""
    gate = gate_for(precision)
    return FP32_LAYER_DB if gate.min_sqnr_db is None else float(gate.min_sqnr_db)


def compare(ref: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    """SQNR (dB; ``None``: identical; ``-inf``: non-finite values), mean cosine and max abs of ``out`` vs ``ref``."""
    a = ref.reshape(len(ref), -1).astype(np.float64)
    b = out.reshape(len(out), -1).astype(np.float64)
    if not np.isfinite(b).all():
        return {"sqnr_db": -math.inf, "cosine": None, "max_abs": math.inf, "non_finite": int((~np.isfinite(b)).sum())}
    noise = float(((a - b) ** 2).sum())
    signal = float((a ** 2).sum())
    sqnr = None if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-30), 1.0)
    return {"sqnr_db": sqnr, "channel_sqnr_db": channel_sqnr(ref, out), "cosine": float(cos.mean()),
            "max_abs": float(np.abs(a - b).max())}


def channel_sqnr(ref: np.ndarray, out: np.ndarray) -> float | None:
    """The median over channels (axis 1, PyTorch's layout) of each channel's SQNR (dB; ``None``: all exact). A
    tensor's SQNR follows its loudest channels: one channel 1000 times larger than the others (an activation
    outlier that sets an INT8 scale) keeps it high while every other channel rounds to zero; the median does not."""
    if ref.ndim < 2:
        return None
    a = np.moveaxis(ref, 1, 0).reshape(ref.shape[1], -1).astype(np.float64)
    b = np.moveaxis(out, 1, 0).reshape(out.shape[1], -1).astype(np.float64)
    signal, noise = (a ** 2).sum(1), ((a - b) ** 2).sum(1)
    keep = signal > 0
    if not keep.any() or not (noise[keep] > 0).any():
        return None
    db = 10 * np.log10(signal[keep] / np.maximum(noise[keep], signal[keep] * 1e-20))
    return float(np.median(db))


def row_db(row: dict[str, Any]) -> float:
    """The SQNR the verdict reads: the lower of the tensor's and its median channel's (``None``: exact)."""
    values = [v for v in (row.get("sqnr_db"), row.get("channel_sqnr_db")) if v is not None]
    return EXACT_DB if not values else max(min(values), -EXACT_DB)


def rows_of(order: list[str], ref: dict[str, np.ndarray], mapping: dict[str, Any], layout: str
            ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Compared rows (one per file tensor, in the reference's order) and the modules with no counterpart."""
    mapping, absorbed = absorbed_activations(order, ref, mapping)
    rows, missing, done = [], [], {}
    for name in order:
        tap = mapping.get(name)
        if tap is None:
            why = absorbed.get(name, "no tensor in the file (fused, folded or renamed)")
            missing.append({"module": name, "why": why})
            continue
        if id(tap) in done:
            rows[done[id(tap)]]["also"].append(name)
            continue
        value = to_reference_layout(tap.value, layout)
        if value.shape != ref[name].shape:
            missing.append({"module": name, "why": f"the file's tensor {tap.tensor} has shape {list(tap.value.shape)}"
                                                   f" ({layout}), PyTorch's {list(ref[name].shape)}"})
            continue
        done[id(tap)] = len(rows)
        rows.append({"layer": name, "also": [], "tensor": tap.tensor, "op": tap.op, **compare(ref[name], value)})
    return rows, missing


ABSORB_LOOKAHEAD = 4  # modules after a conv where its activation may be (a norm's or block's wrapper between)


def _clips(x: np.ndarray, y: np.ndarray) -> bool:
    """``y`` is ``x`` clipped below at 0 (a ReLU), and above at ``y``'s largest value (a ReLU6: an ONNX Clip), and
    the clipping changed ``x`` (a module whose output is ``x`` again, a block holding it, is no activation of it)."""
    if y.shape != x.shape:
        return False
    tol = 1e-5 * max(float(np.abs(x).max()), 1e-12)
    return float(np.abs(y - x).max()) > tol and float(np.abs(y - np.clip(x, 0, float(y.max()))).max()) <= tol


def absorbed_activations(order: list[str], ref: dict[str, np.ndarray], mapping: dict[str, Any]
                         ) -> tuple[dict[str, Any], dict[str, str]]:
    """A tap read after a quantizer whose range starts at 0 (``Tap.clips_at_zero``) holds ``max(0, x)``:
    onnxruntime's quantizer drops a ReLU (or a ReLU6's Clip) before a QuantizeLinear and lets the range clip instead.
    Such a tensor is the output of the ReLU, not of the conv the file names: it moves to the first of the next
    modules whose PyTorch output is the conv's clipped that way, and the conv gets no row (with why). Where no such
    module follows, the tensor stays with the conv (its clipping is then an error of the file, shown as one).
    Returns (mapping, module -> why)."""
    mapping, why, moved = dict(mapping), {}, set()
    pos = {n: i for i, n in enumerate(order)}  # mapping's modules are all in order (layer_map.resolve)
    for k, name in enumerate(order):
        tap = mapping.get(name)
        if tap is None or not getattr(tap, "clips_at_zero", False) or id(tap) in moved:
            continue
        later = next((m for m in order[k + 1: k + 1 + ABSORB_LOOKAHEAD] if _clips(ref[name], ref[m])), None)
        if later is None:
            continue
        for m in [m for m in mapping if mapping[m] is tap and pos[m] < pos[later] and not later.startswith(m + ".")]:
            del mapping[m]  # the conv (and what holds it alone) computed x; the file keeps only its clipped values
            why[m] = (f"its activation ({later}) was folded into the file's quantizer, which keeps only the clipped "
                      "values: compared at the activation")
        mapping[later] = tap
        moved.add(id(tap))  # once: the activation's own output is not clipped again
    return mapping, why


def first_jump(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    """The row where the error jumps: below ``threshold``, with the largest SQNR fall from the row before it
    (the earliest of equal falls). ``None`` when every row is above the threshold."""
    best, best_drop, before = None, -math.inf, EXACT_DB
    for k, row in enumerate(rows):
        sqnr = row_db(row)
        drop = before - sqnr
        row["drop_db"] = drop
        if sqnr < threshold and drop > best_drop:
            best, best_drop = {"index": k, **row}, drop
        before = sqnr
    return best


# -- the command --------------------------------------------------------------------------------------------------
def inputs_for(card, data: str | None, limit: int) -> tuple[np.ndarray, str]:
    """The NCHW batch both sides run: images from ``data`` (a folder or image files) or the card's golden inputs."""
    spec = replace(card.input, layout="NCHW", dtype="float32", quant=None)  # PyTorch's floats; a file with an integer
    # input (full-INT8 TFLite) is quantized by its tapped run (runtime.taps), with its own scale
    if data is None:
        from edgekit.runtime.golden import golden_batch

        if not card.golden:
            raise CardError("the file's card has no golden inputs: give validation images with --data FOLDER")
        n = min(limit, len(card.golden["inputs"]))
        return golden_batch(card.golden, spec)[:limit], f"the card's {n} golden inputs"
    from edgekit.runtime.preprocess import preprocess, read_image

    root = Path(data)
    if not root.exists():
        raise ConfigError(f"--data: {data} not found")
    files = sorted(p for p in (root.rglob("*") if root.is_dir() else [root])
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))[:limit]
    if not files:
        raise ConfigError(f"--data: no images (.png, .jpg, .jpeg, .bmp, .webp) in {data}")
    return preprocess([read_image(p) for p in files], spec, "BGR"), f"{len(files)} images from {data}"


def diff(file: str | Path, against: str | Path | None = None, data: str | None = None, images: int = 4,
         out_dir: str | Path | None = None, tap=None, ran_on: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare ``file``'s activations with its reference's, write ``diff.json`` and ``diff.png`` beside it (or in
    ``out_dir``), and return the report. ``tap``: where the file's tensors come from instead of
    :func:`~edgekit.runtime.taps.tap_file` here (``tap(path, x, scopes, layout, modules) -> Tapped``: ``edgekit diff
    --on DEVICE``), with ``ran_on`` describing that machine (:func:`machine_summary`); the reference runs here."""
    from edgekit.runtime.metadata import NoCardError, read_card

    t0 = time.perf_counter()
    file = Path(file)
    if not file.exists():
        raise ConfigError(f"model file not found: {file}")
    check_format(file)
    try:
        card = read_card(file)
    except NoCardError:
        if against is None:
            raise CardError(f"{file} carries no edgekit model card, so its checkpoint is unknown: give the reference "
                            "with --against CHECKPOINT.pt or --against OTHER_FILE") from None
        card = None
    ref_path = Path(against) if against is not None else None
    if ref_path is None:
        source = card.provenance.get("source")
        if not source or not Path(source).exists():
            raise CardError(f"{file}'s card names its checkpoint as {source or 'nothing'}, which is not found here: "
                            "give it with --against CHECKPOINT.pt")
        ref_path = Path(source)
    if not ref_path.exists():
        raise ConfigError(f"--against: {ref_path} not found")
    if ref_path.suffix != ".pt":
        check_format(ref_path)
    if ref_path.suffix == ".pt":
        report = _against_checkpoint(file, card, ref_path, data, images, tap)
    else:
        report = _against_file(file, card, ref_path, data, images, tap)
    here = _this_machine()
    report["ran_on"] = {"file": ran_on or here, "reference": here}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    write_report(report, Path(out_dir) if out_dir else file.parent / f"{file.name}.diff")
    return report


def _check_same_model(file: Path, card, ref_card, ref: str) -> None:
    if card is None:
        return
    if card.arch != ref_card.arch or card.head_names != ref_card.head_names:
        raise ConfigError(f"{file.name} is a {card.arch} with heads {', '.join(card.head_names)}; {ref} is a "
                          f"{ref_card.arch} with heads {', '.join(ref_card.head_names)}: not the same model")


def _tap(tap, path: Path, x: np.ndarray, scopes, layout: str, modules: list[str] | None, card=None):
    """The file's tapped run: here (:func:`tap_any`: each format its own way), or by ``tap`` (on a device), told the
    reference's modules."""
    return tap_any(path, x, scopes, layout, card) if tap is None else tap(path, x, scopes, layout, modules)


def machine_summary(name: str, where: str, record: dict[str, Any]) -> dict[str, Any]:
    """Where a side of the diff ran, from a machine record (:func:`edgekit.runtime.machine.machine_record`)."""
    return {"machine": name, "where": where, "arch": record.get("arch"), "cpu": record.get("cpu"),
            "cpu_features": record.get("cpu_features") or [], "emulated": bool(record.get("emulated")),
            "packages": record.get("packages") or {}}


def _this_machine() -> dict[str, Any]:
    import platform

    from edgekit.runtime.machine import machine_record

    return machine_summary(platform.node() or "this machine", "host", machine_record())


def _against_checkpoint(file: Path, card, ckpt: Path, data: str | None, images: int, tap=None) -> dict[str, Any]:
    from edgekit.train.trained import load_trained

    trained = load_trained(ckpt)
    _check_same_model(file, card, trained.card, str(ckpt))
    if card is not None:  # a file exported at another size (--imgsz) than the checkpoint trained at
        trained.at_size(card.input.size)
    source = card or trained.card
    if data is None and not source.golden:  # a card-less file: the checkpoint's own validation images
        x = trained.images("val", limit=images)[0]
        described = f"{len(x)} validation images of {ckpt.name}'s data"
    else:
        x, described = inputs_for(source, data, images)
    if card is not None and list(card.input.size) != list(x.shape[-2:]):
        raise ConfigError(f"{file.name} takes {card.input.size} px inputs, the inputs are {list(x.shape[-2:])}")
    order, ref, aliases = torch_activations(trained.model, x)
    layout = card.input.layout if card is not None else "NCHW"
    own = file.suffix == ".xml" and ir_scopes(file) is not None  # IRs edgekit exported carry their module names
    scopes = onnx_scopes_of(trained.model, trained.card, x) if file.suffix == ".xml" and not own else None
    feed = x.transpose(0, 2, 3, 1).copy() if layout == "NHWC" else x
    tapped = _tap(tap, file, feed, scopes, layout, [*order, *aliases], card)
    mapping, prefix = resolve(order, tapped.taps, aliases)
    if not mapping:
        raise ConfigError(f"no layer of {file.name} maps to a module of {ckpt.name} ({len(tapped.taps)} tensors name "
                          f"modules such as {', '.join(t.module for t in tapped.taps[:3]) or 'none'}): is it the "
                          "same architecture?")
    rows, missing = rows_of(order, ref, mapping, layout)
    precision = (card.provenance.get("precision", "fp32") if card is not None else "fp32")
    return _report(file, str(ckpt), "pytorch", precision, described, tapped, rows, missing, prefix)


def _against_file(file: Path, card, other: Path, data: str | None, images: int, tap=None) -> dict[str, Any]:
    from edgekit.runtime.metadata import NoCardError, read_card

    try:
        ref_card = read_card(other)
    except NoCardError:
        ref_card = None
    if card is None and ref_card is None:
        raise CardError(f"neither {file.name} nor {other.name} carries an edgekit card: their inputs are unknown")
    if card is not None and ref_card is not None:
        _check_same_model(file, card, ref_card, str(other))
    x, described = inputs_for(card or ref_card, data, images)
    taps = []
    for path, c in ((other, ref_card), (file, card)):
        layout = c.input.layout if c is not None else "NCHW"
        feed = x.transpose(0, 2, 3, 1).copy() if layout == "NHWC" else x
        taps.append(_tap(None if path is other else tap, path, feed, None, layout, None, c))  # the reference: here
    ref_tapped, tapped = taps
    for side in taps:  # module names without the export wrappers (model., module.model.)
        wrapper = max((w for w in WRAPPERS if all(t.module.startswith(w) for t in side.taps)), key=len)
        for t in side.taps:
            t.module = t.module[len(wrapper):]
    order = [t.module for t in ref_tapped.taps]
    own, _ = resolve(order, ref_tapped.taps)  # each module's output by the same rule as the file's
    ref = {m: to_reference_layout(t.value, ref_tapped.layout) for m, t in own.items()}
    if tapped.layout != ref_tapped.layout:  # module paths differ by their wrappers: compare without them
        raise ConfigError(f"{file.name} ({tapped.layout}) and {other.name} ({ref_tapped.layout}) name their layers "
                          "differently: diff each against the checkpoint instead")
    mapping, prefix = resolve(order, tapped.taps)
    if not mapping:
        raise ConfigError(f"no layer of {file.name} maps to a layer of {other.name}: not the same architecture")
    rows, missing = rows_of(order, ref, mapping, tapped.layout)
    precision = (card.provenance.get("precision", "fp32") if card is not None else "fp32")
    return _report(file, str(other), ref_tapped.runner, precision, described, tapped, rows, missing, prefix)


def _report(file: Path, against: str, ref_runner: str, precision: str, described: str, tapped, rows, missing,
            prefix: str) -> dict[str, Any]:
    threshold = layer_threshold(precision)
    verdict = first_jump(rows, threshold)
    return {"file": str(file), "against": against, "reference_runner": ref_runner, "file_runner": tapped.runner,
            "precision": precision, "inputs": described, "layout": tapped.layout, "threshold_db": threshold,
            "threshold_from": f"the {precision.split('-')[0]} gate", "wrapper_prefix": prefix,
            "taps_changed_outputs_rel": tapped.outputs_vs_plain, "unscoped_tensors": tapped.unscoped,
            "notes": tapped.notes,
            "first_diverging": None if verdict is None else {k: verdict[k] for k in
                                                             ("layer", "also", "sqnr_db", "channel_sqnr_db",
                                                              "drop_db", "index")},
            "layers": rows, "no_counterpart": missing}


def write_report(report: dict[str, Any], out: Path) -> None:
    """``diff.json`` and ``diff.png`` (SQNR by depth, the threshold drawn) in ``out``, atomically."""
    from edgekit.atomic import write_json, write_with

    out.mkdir(parents=True, exist_ok=True)
    report["json"], report["plot"] = str(out / "diff.json"), str(out / "diff.png")
    write_json(out / "diff.json", report)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    ys = [max(row_db(r), -20.0) for r in report["layers"]]
    ax.plot(range(len(ys)), ys, marker=".", label=Path(report["file"]).name)
    ax.axhline(report["threshold_db"], color="red", linestyle="--", label=f"{report['threshold_from']}: "
                                                                           f"{report['threshold_db']:.0f} dB")
    if report["first_diverging"]:
        k = report["first_diverging"]["index"]
        ax.annotate(report["first_diverging"]["layer"], (k, ys[k]), fontsize=8, color="red")
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel(f"SQNR vs {Path(report['against']).name} (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_with(out / "diff.png", lambda fh: fig.savefig(fh, format="png", dpi=100))
    plt.close(fig)


# -- a gate failure's message -------------------------------------------------------------------------------------
DIFFED_AT_EXPORT = (".onnx", ".tflite", ".xml")


def first_diverging_layer(path: str | Path, model, card, x: np.ndarray, precision: str) -> dict[str, Any]:
    """For a file that missed its gate at export: the first diverging layer on ``x`` (a couple of the inputs it
    was verified on; NCHW) as ``{"layer", "sqnr_db", "drop_db"}``, ``{"layer": None}`` when none is below the
    threshold, or ``{"error": ...}`` when the layers could not be compared. Runs only on the failing path."""
    from edgekit.errors import first_line

    path = Path(path)
    try:
        order, ref, aliases = torch_activations(model, x)
        layout = card.input.layout
        scopes = onnx_scopes_of(model, card, x) if path.suffix == ".xml" and not ir_scopes(path) else None
        tapped = tap_file(path, x.transpose(0, 2, 3, 1).copy() if layout == "NHWC" else x, scopes, layout)
        mapping, _ = resolve(order, tapped.taps, aliases)
        rows, _ = rows_of(order, ref, mapping, layout)
        first = first_jump(rows, layer_threshold(precision))
    except Exception as exc:  # noqa: BLE001 - a hint on a failure must never hide the failure itself
        return {"error": first_line(exc, 160)}
    if first is None:
        return {"layer": None, "layers": len(rows)}
    return {"layer": first["layer"], "sqnr_db": row_db(first), "drop_db": first["drop_db"], "layers": len(rows)}
