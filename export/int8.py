"""INT8 as a policy of the export: how the INT8 files are made (:class:`Int8`), and the float-layer search.

``export_checkpoint(..., int8=Int8(...))`` makes every INT8 file in the same export as the FP32 files it derives
from, judged by the same :class:`~edgekit.export.certify.Verifier`, written to one ``parity.json``:

- ``method="ptq"`` with named ``float_layers`` (or none): each target's INT8 step, as any other precision;
- ``method="ptq"`` with ``float_layers="auto"`` (``edgekit quantize``, ``--max-drop``): the float-layer search.
  Per target, the fully INT8 file is tried first; when it misses its gate, blocks are ranked (once per export,
  or always with ``rank_always``) by their INT8 sensitivity (output SQNR with the block alone quantized by
  onnxruntime, on held-out training images: :func:`sensitivity`). Each INT8 file is made from the FP32 file of
  this export with the current float set and judged through its own runtime by the INT8 gate; while it misses,
  the next most sensitive block goes to float. The file that passes moves into the export folder with its
  verdict (it is not judged again); a target that cannot pass with every block in float gets no INT8 file and
  a failure naming every float set tried and why each missed. The trail is in ``parity.json`` (``int8_search``);
- ``method="qat"``: fake-quantized fine-tuning once (:mod:`edgekit.compress.qat`), then that one INT8 graph
  exported to ONNX (QDQ), TFLite and ExecuTorch (:func:`qat_artifacts`), judged against the fine-tuned model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit import formats
from edgekit.console import say
from edgekit.errors import ConfigError
from edgekit.export.report import Artifact, reason
from edgekit.train.models import module_path
from edgekit.train.trained import Trained

SEARCH_BY = "block"  # the float search's default: per layer cost 2-5x more and found no set within the cap (export.md)
MAX_FLOAT = 0.1  # per layer: at most this share of the model's conv/linear layers in float

QAT_TARGETS = ("onnx", "tflite", "executorch")  # what one fine-tuned INT8 graph is exported to


@dataclass(frozen=True)
class Int8:
    """How ``export_checkpoint`` makes INT8 files. ``float_layers``: module names kept in float, or ``"auto"``
    for the float-layer search (PTQ). ``fuse``: fuse MobileOne-style blocks first (checked on val images);
    ``None``: when searching (the inference form is what gets quantized)."""
    method: str = "ptq"
    float_layers: str | tuple[str, ...] = ()
    calib_images: int = 256
    calib_method: str = "minmax"
    epochs: int = 3  # QAT
    lr: float = 1e-4  # QAT
    fuse: bool | None = None
    rank_always: bool = False  # the search: rank every block even when the fully INT8 file passes (a report's plot)
    search_by: str = SEARCH_BY  # float: top-level blocks, or first the "layer"s edgekit diff ranks worst
    max_float: float = MAX_FLOAT

    def __post_init__(self) -> None:
        from edgekit.errors import option

        if self.calib_images < 1:
            raise ConfigError(f"INT8 calibration needs at least one image, got {self.calib_images}")
        if self.method not in ("ptq", "qat"):
            raise ConfigError(f"{option('method')} must be ptq or qat, got '{self.method}'")
        if self.method == "qat" and self.epochs < 1:
            raise ConfigError(f"QAT fine-tunes for {option('epochs')} >= 1, got {self.epochs}")
        if self.search_by not in ("layer", "block"):
            raise ConfigError(f"{option('search_by', flag='--float-search')} must be layer or block, got "
                              f"'{self.search_by}'")
        if not 0 < self.max_float <= 1:
            raise ConfigError(f"{option('max_float', flag='--max-float')} is a share of the layers (0-1], got "
                              f"{self.max_float}")
        if self.method == "qat" and self.lr <= 0:
            raise ConfigError(f"{option('lr')} must be positive, got {self.lr}")

    @property
    def search(self) -> bool:
        return self.method == "ptq" and self.float_layers == "auto"

    @property
    def named_float_layers(self) -> list[str]:
        return [] if self.float_layers == "auto" else list(self.float_layers)

    def makes(self, target: str) -> str:
        """How this policy makes ``target``'s INT8 file: ``search``, ``qat`` or ``build`` (the target's step)."""
        if self.method == "qat":
            return "qat"
        return "search" if self.search and target in formats.int8_targets() else "build"


def policy(int8: bool | Int8, skip_layers: Sequence[str] = (), calib_images: int = 256,
           calib_method: str = "minmax") -> Int8 | None:
    """``export_checkpoint``'s ``int8`` argument as a policy (``True``: PTQ with the named float layers)."""
    if isinstance(int8, Int8):
        return int8
    return Int8(float_layers=tuple(skip_layers), calib_images=calib_images, calib_method=calib_method) if int8 else None


@dataclass
class Search:
    """The float-layer search of one export: the sensitivity ranking (made once, on the first target that
    needs it) and, per target, the trail of attempts."""
    trained: Trained
    out: Path
    overrides: dict[str, float | None] | None
    calib_images: int
    calib_method: str
    verbose: bool = True
    rank_always: bool = False  # else the ranking is made only when a fully INT8 file misses its gate
    by: str = SEARCH_BY  # "block": top-level blocks; "layer": first the layers diff ranks worst (float_layers.py)
    max_float: float = MAX_FLOAT
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # per target: how it was searched
    diffs: dict[str, Any] = field(default_factory=dict)  # per layer: PyTorch's activations, a proxy ranking
    order: list[dict[str, Any]] | None = None
    trail: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    float_layers: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, target: str, steps, job, card, verifier):
        """The INT8 file of ``target`` that passes its gate, moved into the export folder with its verdict
        (an :class:`~edgekit.export.report.Artifact` whose ``entry`` is set), or ``None`` with the reason in
        :attr:`failed`. ``job`` holds this export's FP32 file of ``target``."""
        from edgekit.export import float_layers

        t0 = time.perf_counter()
        if self.order is None and self.rank_always:
            self.order = self._rank()
        saved = job.skip
        try:
            art, entry, step = self.attempt(target, steps, job, card, verifier, [])
            if step["passed"]:
                return self.keep(target, art, entry, [], verifier)
            if self.by == "layer":
                found = float_layers.by_layer(self, target, steps, job, card, verifier, art, step)
                record = self.layers[target]
                if found is not float_layers.UNMAPPED and (found is not None or not record.get("capped")):
                    return found
                if found is None:  # no float set within the cap: said, then the blocks as before
                    record.update(failed=self.failed.pop(target), then="block")
                    if self.verbose:
                        say(f"{target}: per layer: {record['failed']}; searching by block")
            return self._by_block(target, steps, job, card, verifier, step)
        finally:
            job.skip = saved
            self.seconds[target] = round(time.perf_counter() - t0, 2)
            import shutil

            shutil.rmtree(self.out / ".int8-search" / target, ignore_errors=True)

    def attempt(self, target: str, steps, job, card, verifier, floats: list[str], **note: Any):
        """One INT8 file of ``target`` with the modules ``floats`` in float, judged by its gate: (artifact or
        None, entry, step); the step is added to the trail (with ``note``)."""
        trail = self.trail.setdefault(target, [])
        attempt = self.out / ".int8-search" / target / str(len(trail))
        attempt.mkdir(parents=True, exist_ok=True)
        job.skip = [module_path(self.trained.model, s) for s in floats]
        t1 = time.perf_counter()
        try:
            path = steps.build(job, "int8", card, attempt / formats.FORMATS[target].file("int8"))
            art = Artifact(path, target, "int8", time.perf_counter() - t1)
            entry = verifier.entry(art, end_to_end=False)  # raw files: for the file that is kept
        except Exception as exc:  # noqa: BLE001 - a converter's failure ends this target's search
            art, entry = None, {"error": reason(exc)}
        step = _attempt(entry)
        trail.append({"float_layers": list(floats), **note, **step, "seconds": round(time.perf_counter() - t1, 2)})
        if self.verbose:
            say(f"{target}: float {_short(floats)} -> " + _step_text(step))
        return art, entry, step

    def keep(self, target: str, art, entry: dict[str, Any], floats: list[str], verifier):
        """The attempt that passed, moved into the export folder with its verdict."""
        from edgekit.export.certify import replace

        for f in formats.model_files(art.path):  # with an IR's .bin
            replace(f, self.out / f.name)
        art.path = self.out / formats.FORMATS[target].file("int8")
        verifier.end_to_end(entry, art)
        art.entry = {**entry, "float_layers": list(floats)}
        self.float_layers[target] = list(floats)
        return art

    def _by_block(self, target: str, steps, job, card, verifier, step: dict[str, Any]):
        """The search by top-level block (after the fully INT8 file missed): the next most sensitive block goes
        to float while the file misses."""
        chosen: list[str] = []
        while True:
            if self.order is None:  # the fully INT8 file missed: rank the blocks now, once per export
                self.order = self._rank()
            rest = [r["layer"] for r in self.order if r["layer"] not in chosen]
            if not step["made"] or not rest:
                self.failed[target] = ("the INT8 file could not be made" if not step["made"] else
                                       f"{'; '.join(step['failures'])} even with {len(chosen)} block(s) in float")
                return None
            chosen.append(rest[0])
            art, entry, step = self.attempt(target, steps, job, card, verifier, chosen)
            if step["passed"]:
                return self.keep(target, art, entry, chosen, verifier)

    def failure(self, target: str) -> str:
        """One line: why ``target`` has no INT8 file, and every float set tried."""
        tried = ", ".join(_step(t) for t in self.trail.get(target, []))
        per_layer = self.layers.get(target, {}).get("failed")
        why = self.failed[target] + (f"; per layer: {per_layer}" if per_layer else "")
        return (f"INT8 cannot pass its gate on {target} ({why}); no INT8 file written for it. "
                f"Tried: {target}: {tried}")

    def record(self) -> dict[str, Any]:
        """What ``parity.json`` (``int8_search``) and ``quant.json`` (``gate``) keep of the search."""
        from edgekit.export.gates import gate_for

        g = gate_for("int8", self.overrides)
        return {"max_drop_points": g.max_drop_points, "int8_gate": g.to_dict(), "float_layers": self.float_layers,
                "trail": self.trail, "failed": self.failed, "seconds": self.seconds, "sensitivity": self.order or [],
                "attempts": sum(len(t) for t in self.trail.values()),
                "search": self.layers}

    def _rank(self) -> list[dict[str, Any]]:
        calib, _ = self.trained.images("train", limit=self.calib_images, seed=0)
        held, _ = self.trained.images("train", limit=min(256, self.calib_images * 2), seed=1)
        order = sensitivity(self.trained, candidate_layers(self.trained), calib, held, self.calib_method,
                            self.out / ".int8-search" / "sensitivity")
        if self.verbose:
            say("INT8 sensitivity (output SQNR with the block alone in INT8): " + ", ".join(
                f"{r['layer']} {r['sqnr_db']:.1f} dB" for r in order if r["sqnr_db"] is not None))
        plot_sensitivity(order, self.out / "sensitivity.png")
        return order


def sensitivity(trained: Trained, candidates: list[str], calib: np.ndarray, held: np.ndarray,
                calib_method: str, work: Path) -> list[dict[str, Any]]:
    """Output SQNR (dB) when each candidate block alone is INT8 (ONNX), most sensitive first."""
    import onnx

    from edgekit.export.compare import sqnr_db
    from edgekit.export.onnx import export_onnx, onnx_nodes_in, to_int8
    from edgekit.runtime import load

    work.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(trained.wrapped(), trained.card.derive(), work / "fp32.onnx", trained.sample(1),
                       dynamic_batch=True)
    ref = _flat(load(fp32, device="cpu").run(held))
    proto = onnx.load(str(fp32))  # the module scopes live in the exported file (to_int8 matches by node name)
    present = []
    for layer in candidates:  # a block the exporter folded away (e.g. into its neighbour) cannot be chosen
        try:
            onnx_nodes_in(proto, [module_path(trained.model, layer)])
            present.append(layer)
        except ConfigError:
            continue
    rows = []
    for layer in present:
        others = [module_path(trained.model, c) for c in present if c != layer]
        q = to_int8(fp32, trained.card.derive(), work / "alone.onnx", calib, calib_method, others)
        out = _flat(load(q, device="cpu").run(held))
        rows.append({"layer": layer, "sqnr_db": sqnr_db(ref, out)})
    # None: the block alone in INT8 changes nothing in onnxruntime (no op it quantizes): least sensitive there,
    # tried last (another backend's quantizer may still place one, e.g. NNCF before a global pool)
    return sorted(rows, key=lambda r: float("inf") if r["sqnr_db"] is None else r["sqnr_db"])


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


def qat_artifacts(trained: Trained, out: Path, skip: list[str], epochs: int, lr: float, verbose: bool,
                  targets: Sequence[str] = QAT_TARGETS):
    """Fine-tune with fake quantization once, convert, and export that one INT8 graph to each of
    ``targets`` (ONNX QDQ, TFLite, ExecuTorch/XNNPACK; all NHWC); returns the artifacts."""
    from litert_torch.quantize.quant_config import QuantConfig

    from edgekit.compress.qat import QATModel, fine_tune, qat_convert
    from edgekit.export.executorch import export_executorch
    from edgekit.export.golden import golden_inputs
    from edgekit.export.onnx import export_onnx
    from edgekit.export.tflite import export_tflite

    sample = trained.sample(2).permute(0, 2, 3, 1).contiguous()
    prepared, quantizer, train_s = fine_tune(trained, out, [module_path(trained.model, s) for s in skip], epochs,
                                             lr, verbose)
    for_onnx = qat_convert(copy.deepcopy(prepared), fold=True)  # int8 weights in the file
    converted = qat_convert(prepared)  # litert-torch wants the weights' Q/DQ unfolded
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
        "executorch": lambda c, p: export_executorch(for_onnx, c, p, sample[:1]),  # XNNPACK fuses the Q/DQ pairs
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


def _attempt(entry: dict[str, Any]) -> dict[str, Any]:
    """What one INT8 attempt gave: made, passed its gate, why not, and the mean accuracy drop (points,
    over classification heads; None without one)."""
    if "heads" not in entry:
        return {"made": False, "passed": False, "failures": [entry.get("error", "not made")], "drop_points": None}
    drops = [(s["reference_accuracy"] - s["accuracy"]) * 100 for s in entry["heads"].values() if "accuracy" in s]
    return {"made": True, "passed": bool(entry["passed"]), "failures": entry.get("gate_failures", []),
            "drop_points": float(np.mean(drops)) if drops else None}


def _step_text(step: dict[str, Any]) -> str:
    drop = "n/a" if step["drop_points"] is None else f"{step['drop_points']:+.2f}"
    return f"accuracy drop {drop} points, " + (
        "passes its gate" if step["passed"] else f"misses its gate ({'; '.join(step['failures'])})")


def _step(t: dict[str, Any]) -> str:
    drop = "n/a" if t["drop_points"] is None else f"drop {t['drop_points']:.2f}"
    return f"{t['float_layers'] or 'none'} -> {drop}{'' if t['passed'] else ' (missed)'}"


def _short(floats: list[str]) -> str:
    return "none" if not floats else str(floats) if len(floats) <= 4 else f"{len(floats)} modules ({floats[0]}, ...)"


def _flat(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([v.reshape(len(v), -1) for v in outputs.values()], axis=1).astype(np.float64)
