"""ONNX: ``torch.onnx.export(..., dynamo=True)``, one named output per head, the card in
``metadata_props["edgekit.card"]``; FP16 through onnxruntime's float16 converter (float32 I/O);
INT8 through onnxruntime's static QDQ quantizer (:func:`to_int8`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edgekit.atomic import write_with
from edgekit.card import CARD_KEY, ModelCard
from edgekit.errors import ConfigError, EdgekitError, QuantizationError, first_line, option
from edgekit.logs import quiet

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def export_onnx(module: torch.nn.Module, card: ModelCard, path: str | Path, sample: torch.Tensor,
                dynamic_batch: bool = False, opset: int | None = None) -> Path:
    """Trace ``module`` (heads as a tuple) at ``sample``'s shape and write ``path`` with the card."""
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    with quiet(level=None, stdout=True, python_warnings=True):  # the exporter prints progress
        if not isinstance(module, torch.fx.GraphModule):  # pt2e graphs refuse .eval(); they are converted
            module.eval()
        program = torch.onnx.export(module, (sample,), dynamo=True, input_names=["image"],
                                    output_names=card.head_names, dynamic_shapes=dynamic, opset_version=opset,
                                    verbose=False)
    proto = program.model_proto
    card.provenance.update(format="onnx", opset=onnx_opset(proto),
                           batch="dynamic" if dynamic_batch else int(sample.shape[0]))
    return write_onnx(proto, card, path)


def write_onnx(proto, card: ModelCard, path: str | Path) -> Path:
    """Embed ``card`` in ``proto`` and write it atomically."""
    from edgekit.runtime.metadata import card_json

    keep = [p for p in proto.metadata_props if p.key != CARD_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card_json(card)
    proto.producer_name = "edgekit"
    return write_with(path, lambda fh: fh.write(proto.SerializeToString()))


def rewrite_card(path: str | Path, card: ModelCard) -> Path:
    """Replace the card embedded in an ONNX file."""
    import onnx

    return write_onnx(onnx.load(str(path)), card, path)


def onnx_opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), -1)


def to_fp16(src: str | Path, card: ModelCard, path: str | Path) -> Path:
    """FP16 weights and activations, float32 inputs/outputs (onnxruntime's converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    return write_onnx(proto, card, path)


def to_int8(fp32_path: str | Path, card: ModelCard, out_path: str | Path, calib: np.ndarray,
            method: str = "minmax", skip: Sequence[str] = (), batch: int = 32) -> Path:
    """Static INT8 QDQ ONNX from an FP32 ONNX file, calibrated on ``calib`` (NCHW float32).

    onnxruntime's ``quant_pre_process`` then ``quantize_static``: QDQ, per-channel, QUInt8
    activations / QInt8 weights (s8s8 was 2-4x slower on CPU and dynamic quantization up to 15x
    slower than FP32 on conv nets, so neither is offered). ``skip`` names model modules
    (``backbone.stem``, ``heads.h_age``) whose nodes stay float. Graphs with attention or LayerNorm
    keep the softmax and the residual stream in float (:data:`ATTENTION_FLOAT_OPS`).

    On an x86 CPU without VNNI or AMX, onnxruntime's u8s8 kernels add pairs of products into a saturating
    int16 (VPMADDUBSW), so full-range 8-bit weights clip (a test model: output SQNR 7.5 dB fused vs 19.9 dB
    simulated in float): there the weights are uint8 too (U8U8, one of onnxruntime's two documented remedies:
    20.1 dB on that model, against 18.0 dB for the other, 7-bit weights), and the card says which CPU features
    decided it."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got '{method}'")
    out_path = Path(out_path)
    pre = out_path.with_name(f".{out_path.stem}.pre.onnx")
    raw = out_path.with_name(f".{out_path.stem}.q.onnx")
    try:
        graph_input = onnx.load(str(fp32_path), load_external_data=False).graph.input[0]
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, an empty graph...
        raise QuantizationError(f"onnxruntime could not quantize {fp32_path}: not a readable ONNX model "
                                f"({first_line(exc, 120)})") from None
    name = graph_input.name
    from edgekit.runtime.machine import cpu_features, u8s8_saturates

    machine = cpu_features()
    saturates = u8s8_saturates(machine["features"])
    fixed = graph_input.type.tensor_type.shape.dim[0].dim_value
    if fixed > 0:  # a file exported with a fixed batch is calibrated in batches of that size
        batch = fixed
        calib = calib[: max(fixed, len(calib) // fixed * fixed)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{name: calib[i: i + batch]} for i in range(0, len(calib), batch)])

        def get_next(self):
            return next(self.batches, None)

    try:
        with quiet():
            shapes = _pre_process(fp32_path, pre)
            exclude = _float_nodes(fp32_path, pre, skip)
            floats = float_op_types(onnx.load(str(pre), load_external_data=False))
            quantize_static(str(pre), str(raw), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QUInt8 if saturates else QuantType.QInt8,
                            calibrate_method={"minmax": CalibrationMethod.MinMax,
                                              "percentile": CalibrationMethod.Percentile,
                                              "entropy": CalibrationMethod.Entropy}[method],
                            nodes_to_exclude=exclude, op_types_to_quantize=quantized_op_types(floats))
        card.provenance.update(quantization={"method": "ptq", "backend": "onnxruntime", "format": "QDQ",
                                             "activations": "uint8",
                                             "weights": ("uint8" if saturates else "int8") + " per-channel",
                                             "weight_type": _weight_reason(saturates, machine),
                                             "calibration": method, "calibration_images": int(len(calib)),
                                             "float_layers": list(skip), "float_nodes": len(exclude),
                                             "shape_inference": shapes, "float_ops": floats})
        return write_onnx(onnx.load(str(raw)), card, out_path)
    except EdgekitError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises plain exceptions naming the node
        raise QuantizationError(f"onnxruntime could not quantize {fp32_path}: {first_line(exc)}") \
            from None
    finally:
        for tmp in (pre, raw, Path(str(raw) + ".data")):
            tmp.unlink(missing_ok=True)


ATTENTION_FLOAT_OPS = ("Softmax", "LayerNormalization", "Add", "Mul")
"""Op types kept in float in graphs that have attention or LayerNorm (a Softmax or LayerNormalization
node): the softmax, and the residual stream (its adds, layer-scale muls and the LayerNorms reading
it), whose few outlier channels a per-tensor 8-bit scale cannot hold (Bondarenko et al., 2021,
"Understanding and Overcoming the Challenges of Efficient Transformer Quantization"). Measured on the
coverage matrix's stand-ins: DeiT-Tiny's output SQNR goes from -7.3 to 14.7 dB, LeViT-128S's from 4.7
to 6.4; the other attention models move by 0.2 dB or less. Conv nets keep onnxruntime's defaults
(their quantized adds fuse into integer kernels)."""


def float_op_types(model) -> list[str]:
    """:data:`ATTENTION_FLOAT_OPS` for a graph with Softmax or LayerNormalization, else none."""
    ops = {n.op_type for n in model.graph.node}
    return list(ATTENTION_FLOAT_OPS) if ops & {"Softmax", "LayerNormalization"} else []


def quantized_op_types(floats: Sequence[str] = ()) -> list[str]:
    """onnxruntime's default op types for ``quantize_static`` (its QLinear and QDQ registries), less
    ``floats``."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - set(floats))


def _pre_process(fp32_path: Path, pre: Path) -> str:
    """onnxruntime's ``quant_pre_process``; when its symbolic shape inference crashes on a graph (EdgeNeXt:
    ``_infer_Expand`` gets no shape, ``object of type 'NoneType' has no len()``), again without it: ONNX's
    own shape inference and the graph optimization still run. Returns which shape inference ran."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32_path), str(pre))
        return "symbolic"
    except Exception as exc:  # noqa: BLE001 - symbolic_shape_infer raises TypeError/KeyError/... on odd graphs
        pre.unlink(missing_ok=True)
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        return f"onnx (onnxruntime's symbolic shape inference failed: {first_line(exc, 120)})"


def _float_nodes(fp32_path: str | Path, pre: Path, skip: Sequence[str]) -> list[str]:
    """Nodes of ``skip``'s modules in the pre-processed graph. Its optimizer drops the exporter's
    module scopes on some models (MobileNetV3: all of them), so the modules are looked up in the FP32
    file and matched by node name (most names survive; decomposed ops get new ones)."""
    import onnx

    names = onnx_nodes_in(onnx.load(str(fp32_path), load_external_data=False), skip)
    kept = {n.name for n in onnx.load(str(pre), load_external_data=False).graph.node}
    return [n for n in names if n in kept]


def onnx_nodes_in(proto, modules: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes the dynamo exporter attributed to the given model modules."""
    if not modules:
        return []
    prefixes = tuple(f"model.{m.strip('.')}" for m in modules)
    found, seen = [], set()
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        for pre in prefixes:
            if f"'{pre}'" in scopes or f"'{pre}." in scopes:
                found.append(node.name)
                seen.add(pre)
    missing = [p[len("model."):] for p in prefixes if p not in seen]
    if missing:
        raise ConfigError(f"{option('skip', flag='--skip-layers')}: no layer named {', '.join(missing)} in the model "
                          "(use module names such as backbone.stem or heads.<head>)")
    return found


FROM_FP32_FILE = ("fp16", "int8")  # variants made from the FP32 .onnx file


def build(job, precision: str, card: ModelCard, path: str | Path) -> Path:
    """One file of ``job`` (:class:`~edgekit.export.exporter.ExportJob`) at ``precision``."""
    if precision == "fp32":
        return export_onnx(job.module, card, path, job.sample, dynamic_batch=job.dynamic_batch)
    if precision == "fp16":
        return to_fp16(job.fp32, job.like(card), path)
    return to_int8(job.fp32, job.like(card), path, job.calib, job.calib_method, job.skip)


def _weight_reason(saturates: bool, machine: dict) -> dict:
    """Why the weights are int8 or uint8, from the CPU features read on the machine that quantized and verified."""
    import platform

    from edgekit.runtime.machine import NO_SATURATION

    have = ", ".join(machine["features"]) or "none of AVX2, VNNI, AMX, dot-product"
    cpu = f"this {platform.machine()} CPU ({machine['cpu']}; features: {have})"
    why = (f"{cpu} has none of {', '.join(NO_SATURATION)}, so onnxruntime's u8s8 kernels would saturate: weights "
           "are uint8 (U8U8)" if saturates else f"{cpu} does not saturate u8s8 products: weights are int8 (U8S8)")
    return {"type": "uint8" if saturates else "int8", "why": why}
