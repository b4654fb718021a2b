"""INT8: post-training quantization (PTQ) and quantization-aware training (QAT), as model transforms.

- ONNX: ``onnxruntime.quantization`` — ``quant_pre_process`` then ``quantize_static`` (QDQ,
  per-channel, QUInt8 activations / QInt8 weights; s8s8 was 2-4x slower on CPU and dynamic
  quantization up to 15x slower than FP32 on conv nets, so neither is offered as a default).
- TFLite: pt2e with litert-torch's ``PT2EQuantizer`` (symmetric, per-channel) from
  ``torchao.quantization.pt2e``; the converted graph goes to ``litert_torch.convert``.
- CoreML: FP16 program with INT8 weights (``coremltools.optimize.coreml.linear_quantize_weights``;
  activation calibration needs macOS).
- QAT: ``prepare_qat_pt2e`` with the same quantizer, fine-tuned by the edgekit trainer with the
  FP32 model as its own teacher (KD keeps the quantized model close to the float one),
  ``convert_pt2e``; the result exports to ONNX (QDQ) and TFLite like PTQ's.

``skip`` names modules of the model (``backbone.stem``, ``heads.age``) kept in float: mixed
precision for layers that quantize badly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.card import ModelCard
from edgekit.errors import ConfigError, EdgekitError, first_line

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


class QuantizationError(EdgekitError):
    """The model (or a layer of it) cannot be quantized."""


# -- ONNX ------------------------------------------------------------------------------------------


def ort_quantize(fp32_path: str | Path, out_path: str | Path, calib: np.ndarray, card: ModelCard,
                 method: str = "minmax", skip: Sequence[str] = (), batch: int = 32) -> Path:
    """Static INT8 QDQ ONNX from an FP32 ONNX file, calibrated on ``calib`` (NCHW float32)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgekit.export.onnx import write_onnx

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got '{method}'")
    out_path = Path(out_path)
    pre = out_path.with_name(f".{out_path.stem}.pre.onnx")
    raw = out_path.with_name(f".{out_path.stem}.q.onnx")
    graph_input = onnx.load(str(fp32_path), load_external_data=False).graph.input[0]
    name = graph_input.name
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
        with _quiet_logs():
            quant_pre_process(str(fp32_path), str(pre))
            exclude = onnx_nodes_in(onnx.load(str(pre)), skip)
            quantize_static(str(pre), str(raw), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method={"minmax": CalibrationMethod.MinMax,
                                              "percentile": CalibrationMethod.Percentile,
                                              "entropy": CalibrationMethod.Entropy}[method],
                            nodes_to_exclude=exclude)
        card.provenance.update(quantization={"method": "ptq", "backend": "onnxruntime", "format": "QDQ",
                                             "activations": "uint8", "weights": "int8 per-channel",
                                             "calibration": method, "calibration_images": int(len(calib)),
                                             "float_layers": list(skip), "float_nodes": len(exclude)})
        return write_onnx(onnx.load(str(raw)), card, out_path)
    except EdgekitError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises plain exceptions naming the node
        raise QuantizationError(f"onnxruntime could not quantize {fp32_path}: {first_line(exc)}") \
            from None
    finally:
        for tmp in (pre, raw, Path(str(raw) + ".data")):
            tmp.unlink(missing_ok=True)


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
        raise ConfigError(f"--skip-layers: no layer named {', '.join(missing)} in the model "
                          "(use module names such as backbone.stem or heads.<head>)")
    return found


# -- pt2e (TFLite, QAT) ----------------------------------------------------------------------------


def make_quantizer(qat: bool = False, skip: Sequence[str] = (), prefix: str = ""):
    """litert-torch's PT2EQuantizer: symmetric INT8, per-channel weights; ``skip`` modules stay float.

    Skipped nodes are pre-annotated as "done, no quantization" before litert-torch annotates the
    graph (its own ``set_module_name`` does not match the module keys torch 2.14 records).
    """
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    prefixes = tuple(f"{prefix}{name.strip('.')}" for name in skip)

    class _Quantizer(PT2EQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            for node in model.graph.nodes:
                if node.op == "call_function" and _in_modules(node, prefixes):
                    node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
            return super().annotate(model)

    return _Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def _node_modules(node) -> list[str]:
    return [path for path, _ in (node.meta.get("nn_module_stack") or {}).values()]


def _in_modules(node, prefixes: tuple[str, ...]) -> bool:
    return bool(prefixes) and any(p == pre or p.startswith(pre + ".") for p in _node_modules(node) for pre in prefixes)


def export_graph(module: nn.Module, sample: torch.Tensor) -> torch.fx.GraphModule:
    """``torch.export`` with a dynamic batch (calibration and training use other batch sizes)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        return torch.export.export(module.eval(), (sample,), dynamic_shapes=({0: batch},)).module()
    except Exception as exc:  # noqa: BLE001 - torch.export errors are long; keep the first line
        raise QuantizationError(f"torch.export could not capture the model: {first_line(exc)}") \
            from None


def pt2e_ptq(module: nn.Module, calib: np.ndarray, skip: Sequence[str] = (), batch: int = 32):
    """Static INT8 of a channels-last module (NHWC input): returns ``(converted graph, quantizer)``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    x = torch.from_numpy(np.ascontiguousarray(calib.transpose(0, 2, 3, 1)))
    graph = export_graph(module, x[:2])  # module: ChannelsLast(HeadsAsTuple(model))
    _check_skip(graph, skip)
    quantizer = make_quantizer(qat=False, skip=skip, prefix=_module_prefix(graph))
    try:
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for i in range(0, len(x), batch):
                prepared(x[i: i + batch])
        return convert_pt2e(prepared, fold_quantize=False), quantizer
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(f"pt2e quantization failed: {first_line(exc)}") from None


def _module_prefix(graph: torch.fx.GraphModule) -> str:
    """Where the EdgeModel sits in the exported graph (``module.model.`` under the wrappers)."""
    for node in graph.graph.nodes:
        for path in _node_modules(node):
            if path.endswith("backbone"):
                return path[: -len("backbone")]
    return "model."


def _check_skip(graph: torch.fx.GraphModule, skip: Sequence[str]) -> None:
    if not skip:
        return
    prefix = _module_prefix(graph)
    missing = [s for s in skip
               if not any(_in_modules(n, (f"{prefix}{s.strip('.')}",)) for n in graph.graph.nodes)]
    if missing:
        raise ConfigError(f"--skip-layers: no layer named {', '.join(missing)} in the model "
                          "(use module names such as backbone.stem or heads.<head>)")


# -- CoreML ----------------------------------------------------------------------------------------


def coreml_int8_weights(model):
    """INT8 (symmetric, per-channel) weights for a CoreML mlprogram."""
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
    with _quiet_logs():
        return linear_quantize_weights(model, config=config)


# -- QAT -------------------------------------------------------------------------------------------


class QATModel(nn.Module):
    """A prepared pt2e graph (NHWC input) seen as an EdgeModel by the trainer: NCHW batches in,
    dict outputs, and ``train()`` / ``eval()`` that switch the exported graph's batch-norm and
    fake-quantizers correctly."""

    def __init__(self, graph: torch.fx.GraphModule, heads: list[str]) -> None:
        super().__init__()
        self.graph, self.heads = graph, list(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.heads, self.graph(x.permute(0, 2, 3, 1)), strict=True))

    def train(self, mode: bool = True) -> QATModel:
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.graph)
        self.training = mode
        return self


class SelfDistillLoss(nn.Module):
    """Task loss plus KL to the frozen FP32 model's outputs (its own teacher)."""

    def __init__(self, task: nn.Module, teacher: nn.Module, beta: float = 1.0, temperature: float = 2.0) -> None:
        super().__init__()
        self.task, self.beta, self.temperature = task, beta, temperature
        self.teacher = [teacher.eval()]  # a list: not a submodule, so not trained nor checkpointed

    def forward(self, model: nn.Module, batch: dict[str, Any]):
        from edgekit.compress.distill import response_loss

        outputs = model(batch["image"])
        task, terms = self.task(outputs, batch["targets"])
        teacher = self.teacher[0].to(batch["image"].device)
        with torch.no_grad():
            ref = teacher(batch["image"])
        kinds = {h: k for h, k in getattr(self.task, "kinds", {}).items()}
        resp = [response_loss(outputs[h], ref[h], self.temperature) for h in outputs
                if kinds.get(h) == "classification"]
        l_resp = torch.stack(resp).mean() if resp else task * 0.0
        return task + self.beta * l_resp, {"task": task, "resp": l_resp, **terms}, outputs


def qat_prepare(module: nn.Module, sample: torch.Tensor, skip: Sequence[str] = ()):
    """``prepare_qat_pt2e`` on a channels-last module (NHWC ``sample``): ``(prepared graph, quantizer)``."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from edgekit.compress.litert_qat_fix import litert_qat_fix

    graph = export_graph(module, sample)
    _check_skip(graph, skip)
    quantizer = make_quantizer(qat=True, skip=skip, prefix=_module_prefix(graph))
    try:
        with litert_qat_fix():
            return prepare_qat_pt2e(graph, quantizer), quantizer
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(f"QAT preparation failed: {first_line(exc)}") from None


def qat_convert(prepared: torch.fx.GraphModule, fold: bool = False) -> torch.fx.GraphModule:
    """Fake-quant graph -> quantized graph. ``fold=True`` stores int8 weights (for ONNX);
    litert-torch needs ``fold=False`` (it folds the weight Q/DQ itself)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared, fold_quantize=fold)


# -- helpers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """onnxruntime's quantizer logs a warning per per-channel tensor it cannot split; keep errors only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
