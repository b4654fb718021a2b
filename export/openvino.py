"""OpenVINO IR (``model.xml`` + ``model.bin``): ``openvino.convert_model`` on edgekit's ONNX graph, the card
in the IR's ``rt_info``; FP16 weights by ``save_model(compress_to_fp16=True)``; INT8 by NNCF post-training
quantization (:func:`to_int8`).

Why from the ONNX file rather than the PyTorch module: on 12 timm architectures at 224 px
(``python tools/openvino_paths.py``: MobileOne-S0, ResNet-18, MobileNetV3-S, MobileViT-XXS, MobileViTv2-050,
EfficientViT-M0, FastViT-T8, LeViT-128S, DeiT-Tiny, EdgeNeXt-XXS, MobileNetV4-hybrid-M, ConvNeXt-atto) both
paths convert all 12 and reproduce PyTorch within 1e-4 with f32 inference, so coverage does not decide. The
ONNX path keeps the graph's input and output names (the heads', whatever a user called them) and the export's
input shape and batch axis, and its node names are the ONNX exporter's, which record the PyTorch module each
node came from (``pkg.torch.onnx.name_scopes``): that is how ``--skip-layers backbone.stages.3`` becomes NNCF's
ignored scope, exactly as for onnxruntime's quantizer. The TorchScript path leaves the outputs unnamed, the
input shape dynamic unless told, and names convolutions after the BatchNorm folds (``Multiply_8023``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.card import ModelCard
from edgekit.errors import ConfigError, EdgekitError, QuantizationError, first_line, option
from edgekit.logs import quiet
from edgekit.runtime.openvino import CARD_PATH, HINTS, PIN_PATH, read_ir


class OpenVINOExportError(EdgekitError):
    """OpenVINO's ONNX frontend could not convert the graph."""

# What the attention float policy of export/onnx.py (ATTENTION_FLOAT_OPS) is called in an OpenVINO graph:
# ONNX's LayerNormalization arrives as MVN (then Multiply, Add), Mul as Multiply.
OV_FLOAT_OPS = {"Softmax": ("Softmax",), "LayerNormalization": ("MVN",), "Add": ("Add",), "Mul": ("Multiply",)}
# --calib-method -> NNCF's activation range estimator. minmax: the extremes over all calibration images, as
# onnxruntime's. Measured on the tests' tiny EfficientNet (output SQNR, f32 hint): MINMAX 17.3 dB, NNCF's own
# default (mean over batches of each batch's min and max) 10.4, MEAN_QUANTILE 1.2: so no percentile here.
CALIBRATION = {"minmax": "MINMAX"}


def write_ir(model: Any, card: ModelCard, path: str | Path, fp16: bool = False) -> Path:
    """Embed ``card`` in ``model``'s rt_info and write ``path`` (.xml) and its .bin atomically: both are
    written under temporary names and moved into place, the .bin first."""
    import openvino as ov

    from edgekit.runtime.metadata import card_json

    path = Path(path)
    model.set_rt_info(card_json(card), CARD_PATH)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=".xml", dir=path.parent)
    os.close(fd)
    tmp_xml, tmp_bin = Path(tmp), Path(tmp).with_suffix(".bin")
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=fp16)
        os.replace(tmp_bin, path.with_suffix(".bin"))
        os.replace(tmp_xml, path)
    finally:
        for t in (tmp_xml, tmp_bin):
            with contextlib.suppress(OSError):
                t.unlink()
    return path


def rewrite_card(path: str | Path, card: ModelCard) -> Path:
    """Replace the card embedded in an IR (the weights are rewritten unchanged)."""
    return write_ir(read_ir(path), card, path, fp16=False)


def pin_precision(path: str | Path, sample: np.ndarray, precision: str = "fp32", runs: int = 50) -> dict[str, Any]:
    """Repair an IR whose runtime-chosen precision (bf16 on CPUs with bf16 instructions) missed its gate while
    ``precision`` passed: pin ``INFERENCE_PRECISION_HINT`` in its ``rt_info`` runtime options (edgekit's
    runtime applies it, :mod:`edgekit.runtime.openvino`) and record in its card what the pin costs: the
    median latency of ``sample`` (one batch) at OpenVINO's default and at ``precision``, measured here in
    one interleaved run. Returns that record."""
    import time

    from edgekit.runtime.metadata import read_card
    from edgekit.runtime.openvino import OpenVINOBackend

    default, fixed = OpenVINOBackend(Path(path)), OpenVINOBackend(Path(path), precision=precision)
    times: dict[str, list[float]] = {"default": [], "pinned": []}
    for i in range(runs + 5):
        for name, backend in (("default", default), ("pinned", fixed)):
            t = time.perf_counter()
            backend.run(sample)
            if i >= 5:  # warm-up
                times[name].append(time.perf_counter() - t)
    ms = {k: float(np.median(v) * 1e3) for k, v in times.items()}
    record = {"setting": f"INFERENCE_PRECISION_HINT={HINTS[precision]}", "rt_info": "/".join(PIN_PATH),
              "default_ran": default.execution_precision, "pinned_ran": fixed.execution_precision,
              "default_ms": round(ms["default"], 4), "pinned_ms": round(ms["pinned"], 4),
              "slowdown": round(ms["pinned"] / ms["default"], 3), "batch": int(len(sample)),
              "threads": default.threads, "runs": runs}
    model = read_ir(path)
    model.set_rt_info(HINTS[precision], PIN_PATH)
    card = read_card(path)
    card.provenance["precision_pin"] = record
    write_ir(model, card, path)
    return record


def export_ir(job, card: ModelCard, path: str | Path) -> Path:
    """The FP32 IR: the module through edgekit's ONNX exporter, then ``openvino.convert_model``. Keeps in
    ``job.scratch`` what INT8 needs from the ONNX graph (its module scopes, to find the nodes of
    ``job.skip``'s modules, which the float-layer search changes per attempt) and whether it has attention."""
    import onnx
    import openvino as ov

    from edgekit.export.onnx import export_onnx, float_op_types

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(job.module, card.derive(), Path(tmp) / "model.onnx", job.sample,
                                dynamic_batch=job.dynamic_batch)
        proto = onnx.load(str(onnx_path), load_external_data=False)
        try:
            model = ov.convert_model(str(onnx_path))
        except Exception as exc:  # noqa: BLE001 - the frontend raises OpConversionFailure and friends
            raise OpenVINOExportError(f"openvino.convert_model failed: {first_line(exc, 240)}") from None
    from edgekit.runtime.taps import IR_SCOPES, onnx_scopes

    model.set_rt_info(json.dumps(onnx_scopes(proto), separators=(",", ":")), IR_SCOPES)  # edgekit diff's names
    job.scratch["openvino"] = {"proto": proto, "float_ops": float_op_types(proto)}
    card.provenance.update(format="openvino", converted_from="onnx (torch.onnx dynamo exporter)",
                           openvino=ov.__version__, batch="dynamic" if job.dynamic_batch else int(job.sample.shape[0]))
    return write_ir(model, card, path)


def to_fp16(src: str | Path, card: ModelCard, path: str | Path) -> Path:
    """FP16 weights (``compress_to_fp16``); the CPU computes in its inference precision, as for the FP32 IR."""
    card.provenance.update(weights="fp16")
    return write_ir(read_ir(src), card, path, fp16=True)


def to_int8(fp32_path: str | Path, card: ModelCard, out_path: str | Path, calib: np.ndarray,
            method: str = "minmax", skip: Sequence[str] = (), float_nodes: Sequence[str] = (),
            float_ops: Sequence[str] = ()) -> Path:
    """INT8 IR from the FP32 IR by NNCF post-training quantization, calibrated on ``calib`` (NCHW float32).

    ``float_nodes`` (the nodes of the ``skip`` modules) and, for graphs with attention or LayerNorm,
    ``float_ops`` (export/onnx.py's :data:`~edgekit.export.onnx.ATTENTION_FLOAT_OPS`) become NNCF's ignored
    scope; attention graphs are quantized with ``ModelType.TRANSFORMER``. Activations are asymmetric (NNCF's
    ``MIXED`` preset, as onnxruntime's u8 activations): on test_efficientnet trained 3 epochs on an ImageFolder
    (tests/recipes/test_user_path.py's data; 6 models: seeds 0-2, each trained before and after training called
    the runtime's resize) the output SQNR goes from 9.1 ± 1.5 dB with the ``PERFORMANCE`` preset (symmetric) to
    15.0 ± 1.5 dB, at the same latency (mobilenetv4_conv_small at 96 px: 25.6 and 25.7 dB, 1.35 and 1.34 ms)."""
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # nncf imports it: "No CUDA runtime"
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if method not in CALIBRATION:
        raise ConfigError(f"{option('calib_method', method)}: OpenVINO INT8 (NNCF) calibrates with "
                          f"{' or '.join(CALIBRATION)} only")
    model = read_ir(fp32_path)
    # OpenVINO's ONNX frontend names an op after its ONNX node, or splits it (Conv with a bias: the Convolution
    # "node_conv2d/WithoutBiases", then the Add "node_conv2d"): every op of a float node is ignored
    wanted = set(float_nodes)
    ignored = sorted(n for n in (op.get_friendly_name() for op in model.get_ops()) if n.split("/")[0] in wanted)
    types = sorted({t for op in float_ops for t in OV_FLOAT_OPS.get(op, ())})
    shape = model.inputs[0].get_partial_shape()
    batch = shape[0].get_length() if shape[0].is_static else 1
    items = [calib[i: i + batch] for i in range(0, len(calib) - batch + 1, batch)] or [calib[:batch]]
    transformer = bool(float_ops)
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=getattr(RangeEstimatorParametersSet, CALIBRATION[method]))
    try:
        with quiet("nncf", logging.WARNING, stdout=True):  # NNCF draws a progress bar per statistics pass
            quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items),
                                      model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                                      preset=nncf.QuantizationPreset.MIXED,
                                      ignored_scope=nncf.IgnoredScope(names=ignored, types=types, validate=False),
                                      advanced_parameters=advanced)
    except EdgekitError:
        raise
    except Exception as exc:  # noqa: BLE001 - NNCF raises plain exceptions naming the node
        raise QuantizationError(f"NNCF could not quantize {Path(fp32_path).name}: {first_line(exc, 240)}") from None
    card.provenance.update(quantization={
        "method": "ptq", "backend": "nncf", "format": "FakeQuantize (OpenVINO IR)",
        "preset": "mixed", "weights": "int8 per-channel",
        "calibration": f"{method} (NNCF {CALIBRATION[method]})", "calibration_images": int(sum(len(i) for i in items)),
        "float_layers": list(skip), "float_nodes": len(ignored), "float_ops": types,
        "model_type": "transformer" if transformer else "default"})
    return write_ir(quantized, card, out_path)


FROM_FP32_FILE = ("fp16", "int8")  # variants made from the FP32 IR


def build(job, precision: str, card: ModelCard, path: str | Path) -> Path:
    """One file of ``job`` (:class:`~edgekit.export.exporter.ExportJob`) at ``precision``."""
    if precision == "fp32":
        return export_ir(job, card, path)
    if precision == "fp16":
        return to_fp16(job.fp32, job.like(card), path)
    from edgekit.export.onnx import onnx_nodes_in

    made = job.scratch.get("openvino", {})
    float_nodes = onnx_nodes_in(made["proto"], job.skip) if "proto" in made else ()  # ConfigError: a name it lacks
    return to_int8(job.fp32, job.like(card), path, job.calib, job.calib_method, job.skip, float_nodes,
                   made.get("float_ops", ()))
