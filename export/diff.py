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

Per row: SQNR (dB), mean cosine and max abs difference over the inputs. The verdict is the row where the error
*jumps*: among the rows below the layer threshold (the gate's SQNR floor for the file's precision; 60 dB for FP32,
:func:`layer_threshold`), the one whose SQNR fell most from the row before it. A drop caused by an
error that merely accumulated is small; a broken layer's is not.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import CardError, ConfigError
from edgekit.export.gates import gate_for
from edgekit.runtime.taps import check_tappable, tap_file

EXACT_DB = 200.0  # the SQNR of two identical tensors, for the drop between rows
WRAPPERS = ("", "model.", "module.model.", "module.")  # what edgekit's export wrappers put before module names


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
    return {"sqnr_db": sqnr, "cosine": float(cos.mean()), "max_abs": float(np.abs(a - b).max())}


# -- the reference: PyTorch ---------------------------------------------------------------------------------------
def torch_activations(model, x: np.ndarray) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """Every named module's output on ``x`` (NCHW), in the order the modules finished. Returns (order, values,
    aliases): a module called more than once is left out (its output is not one tensor); ``aliases`` maps each
    module's path without its ModuleList/ModuleDict levels (what LiteRT records: those containers are never
    called) to its name."""
    import torch

    seen: dict[str, list[np.ndarray]] = {}
    order: list[str] = []
    calls: dict[str, int] = {}

    def hook(name):
        def fn(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                if name not in seen:
                    seen[name] = []
                    order.append(name)
                seen[name].append(output.detach().float().numpy().copy())
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            for i in range(len(x)):
                calls.clear()
                model(torch.from_numpy(x[i: i + 1]))
                for n, c in calls.items():
                    if c > 1:
                        seen.pop(n, None)
    finally:
        for h in handles:
            h.remove()
    order = [n for n in order if n in seen and len(seen[n]) == len(x)]
    containers = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.ModuleList, torch.nn.ModuleDict))}
    aliases: dict[str, str] = {}
    for n in order:
        parts = n.split(".")
        called = [p for k, p in enumerate(parts) if ".".join(parts[: k + 1]) not in containers]
        alias = ".".join(called)
        aliases[alias] = n if alias not in aliases else ""  # two modules on one called path: ambiguous
    return order, {n: np.concatenate(seen[n]) for n in order}, {a: n for a, n in aliases.items() if n}


def onnx_scopes_of(model, card, sample: np.ndarray) -> dict[str, str]:
    """ONNX node name (and output tensor name) -> module, from exporting ``model`` as edgekit's exporter does (what
    an OpenVINO IR was converted from: its op names are those node names)."""
    import tempfile

    import onnx
    import torch

    from edgekit.export.onnx import export_onnx
    from edgekit.runtime.taps import onnx_scopes
    from edgekit.train.trained import HeadsAsTuple

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(HeadsAsTuple(model, card.head_names).eval(), card.derive(), Path(tmp) / "m.onnx",
                           torch.from_numpy(sample[:1]))
        proto = onnx.load(str(path), load_external_data=False)
    scopes = onnx_scopes(proto)
    # OpenVINO renames an op that feeds a graph output after that output (the last Linear becomes "digit"): its
    # tensor keeps the ONNX output's name, so tensor names map too
    by_node = {n.name: n for n in proto.graph.node}
    return {**{by_node[k].output[0]: m for k, m in scopes.items() if by_node[k].output}, **scopes}


# -- mapping ------------------------------------------------------------------------------------------------------
def resolve(modules: list[str], taps, aliases: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
    """Each of ``modules`` -> the file's tap holding its output (the last tap of the module or a submodule), after
    stripping the wrapper prefix that matches most names. Returns (mapping, prefix)."""
    names = set(modules) | set(aliases or {})

    def strip(module: str, prefix: str) -> str | None:
        return module[len(prefix):] if module.startswith(prefix) else None

    prefix = max(WRAPPERS, key=lambda p: sum(1 for t in taps if strip(t.module, p) in names))
    mapping: dict[str, Any] = {}
    for t in taps:  # execution order: a later tap of the same module replaces the earlier one
        name = strip(t.module, prefix)
        if name is None:
            continue
        name = (aliases or {}).get(name, name)
        parts = name.split(".")
        for k in range(len(parts), 0, -1):
            mapping[".".join(parts[:k])] = t
    return {m: mapping[m] for m in modules if m in mapping}, prefix


def to_reference_layout(value: np.ndarray, layout: str) -> np.ndarray:
    """A file's activation in PyTorch's layout: NHWC 4-D tensors are transposed to NCHW; others unchanged."""
    return value.transpose(0, 3, 1, 2) if layout == "NHWC" and value.ndim == 4 else value


def rows_of(order: list[str], ref: dict[str, np.ndarray], mapping: dict[str, Any], layout: str
            ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Compared rows (one per file tensor, in the reference's order) and the modules with no counterpart."""
    rows, missing, done = [], [], {}
    for name in order:
        tap = mapping.get(name)
        if tap is None:
            missing.append({"module": name, "why": "no tensor in the file (fused, folded or renamed)"})
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


def first_jump(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    """The row where the error jumps: below ``threshold``, with the largest SQNR fall from the row before it
    (the earliest of equal falls). ``None`` when every row is above the threshold."""
    best, best_drop, before = None, -math.inf, EXACT_DB
    for k, row in enumerate(rows):
        sqnr = EXACT_DB if row["sqnr_db"] is None else max(row["sqnr_db"], -EXACT_DB)
        drop = before - sqnr
        row["drop_db"] = drop
        if sqnr < threshold and drop > best_drop:
            best, best_drop = {"index": k, **row}, drop
        before = sqnr
    return best


# -- the command --------------------------------------------------------------------------------------------------
def inputs_for(card, data: str | None, limit: int) -> tuple[np.ndarray, str]:
    """The NCHW batch both sides run: images from ``data`` (a folder or image files) or the card's golden inputs."""
    spec = replace(card.input, layout="NCHW")
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
         out_dir: str | Path | None = None) -> dict[str, Any]:
    """Compare ``file``'s activations with its reference's, write ``diff.json`` and ``diff.png`` beside it (or in
    ``out_dir``), and return the report."""
    from edgekit.runtime.metadata import NoCardError, read_card

    t0 = time.perf_counter()
    file = Path(file)
    if not file.exists():
        raise ConfigError(f"model file not found: {file}")
    check_tappable(file)
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
        check_tappable(ref_path)
    if ref_path.suffix == ".pt":
        report = _against_checkpoint(file, card, ref_path, data, images)
    else:
        report = _against_file(file, card, ref_path, data, images)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    write_report(report, Path(out_dir) if out_dir else file.parent / f"{file.name}.diff")
    return report


def _check_same_model(file: Path, card, ref_card, ref: str) -> None:
    if card is None:
        return
    if card.arch != ref_card.arch or card.head_names != ref_card.head_names:
        raise ConfigError(f"{file.name} is a {card.arch} with heads {', '.join(card.head_names)}; {ref} is a "
                          f"{ref_card.arch} with heads {', '.join(ref_card.head_names)}: not the same model")


def _against_checkpoint(file: Path, card, ckpt: Path, data: str | None, images: int) -> dict[str, Any]:
    from edgekit.train.trained import load_trained

    trained = load_trained(ckpt)
    _check_same_model(file, card, trained.card, str(ckpt))
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
    scopes = onnx_scopes_of(trained.model, trained.card, x) if file.suffix == ".xml" else None
    feed = x.transpose(0, 2, 3, 1).copy() if layout == "NHWC" else x
    tapped = tap_file(file, feed, scopes, layout)
    mapping, prefix = resolve(order, tapped.taps, aliases)
    if not mapping:
        raise ConfigError(f"no layer of {file.name} maps to a module of {ckpt.name} ({len(tapped.taps)} tensors name "
                          f"modules such as {', '.join(t.module for t in tapped.taps[:3]) or 'none'}): is it the "
                          "same architecture?")
    rows, missing = rows_of(order, ref, mapping, layout)
    precision = (card.provenance.get("precision", "fp32") if card is not None else "fp32")
    return _report(file, str(ckpt), "pytorch", precision, described, tapped, rows, missing, prefix)


def _against_file(file: Path, card, other: Path, data: str | None, images: int) -> dict[str, Any]:
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
        taps.append(tap_file(path, x.transpose(0, 2, 3, 1).copy() if layout == "NHWC" else x, None, layout))
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
            "first_diverging": None if verdict is None else {k: verdict[k] for k in
                                                             ("layer", "also", "sqnr_db", "drop_db", "index")},
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
    ys = [EXACT_DB if r["sqnr_db"] is None else max(r["sqnr_db"], -20.0) for r in report["layers"]]
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
