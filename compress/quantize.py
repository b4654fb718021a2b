"""INT8 as graph transforms on torch models, in torchao's one-call shape:
``quantize(module, calib, QuantConfig(method="ptq"|"qat", skip=[...]))``.

pt2e with litert-torch's ``PT2EQuantizer`` (symmetric INT8, per-channel weights) from
``torchao.quantization.pt2e``. PTQ returns the calibrated, converted graph; QAT returns the
prepared (fake-quant) graph that :mod:`edgekit.compress.qat` fine-tunes and converts. Files are
not written here: each target in :mod:`edgekit.export` owns its ``to_int8`` (ONNX through
onnxruntime's quantizer on the FP32 file, TFLite through this graph, CoreML through coremltools).

``skip`` names modules of the model (``backbone.stem``, ``heads.h_age``) kept in float: mixed
precision for layers that quantize badly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgekit.errors import ConfigError, QuantizationError, first_line, option


@dataclass
class QuantConfig:
    """How to quantize a graph: ``ptq`` (calibrate + convert) or ``qat`` (prepare for fine-tuning)."""

    method: str = "ptq"
    skip: Sequence[str] = field(default_factory=tuple)  # modules kept in float
    batch: int = 32  # calibration batch

    def __post_init__(self) -> None:
        if self.method not in ("ptq", "qat"):
            raise ConfigError(f"quantization method must be ptq or qat, got '{self.method}'")


def quantize(module: nn.Module, calib: np.ndarray | torch.Tensor, config: QuantConfig | None = None):
    """INT8 graph of a channels-last ``module`` (NHWC input): ``(graph, quantizer)``.

    PTQ: ``calib`` (NCHW float32 images) calibrates min/max observers, the graph is converted.
    QAT: ``calib`` is a sample batch (NHWC tensor) to capture the graph; the prepared graph is
    returned for fine-tuning (:mod:`edgekit.compress.qat`)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    config = config or QuantConfig()
    skip = list(config.skip)
    if config.method == "qat":
        from edgekit.compress.litert_qat_fix import litert_qat_fix

        graph = export_graph(module, calib)
        quantizer = keep_float(make_quantizer(qat=True), graph, skip)
        try:
            with litert_qat_fix():
                return prepare_qat_pt2e(graph, quantizer), quantizer
        except Exception as exc:  # noqa: BLE001
            raise QuantizationError(f"QAT preparation failed: {first_line(exc)}") from None
    if len(calib) < 1:
        raise ConfigError("INT8 calibration needs at least one image")
    x = torch.from_numpy(np.ascontiguousarray(calib.transpose(0, 2, 3, 1)))
    graph = export_graph(module, x[:2])  # module: ChannelsLast(HeadsAsTuple(model))
    quantizer = keep_float(make_quantizer(qat=False), graph, skip)
    try:
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for i in range(0, len(x), config.batch):
                prepared(x[i: i + config.batch])
        return convert_pt2e(prepared, fold_quantize=False), quantizer
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(f"pt2e quantization failed: {first_line(exc)}") from None


def make_quantizer(qat: bool = False):
    """litert-torch's PT2EQuantizer: symmetric INT8, per-channel weights."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def keep_float(quantizer, graph: torch.fx.GraphModule, skip: Sequence[str] = ()):
    """Make any pt2e ``quantizer`` (LiteRT's, ExecuTorch's XNNPACK one) leave the ``skip`` modules of
    ``graph`` in float, and every op that takes an integer tensor; unknown names are a
    :class:`ConfigError`. Returns the same quantizer.

    Such nodes are pre-annotated as "done, no quantization" before the quantizer annotates the
    graph: the quantizers' own ``set_module_name`` does not match the module keys torch 2.14 records,
    and they would put an observer on an integer constant (EdgeNeXt's Fourier position encoding
    multiplies by an ``int64`` index tensor: ``"histogram_cpu" not implemented for 'Long'``).
    Graphs with attention or LayerNorm also keep their residual stream in float
    (:func:`attention_float_ops`).
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    _check_skip(graph, skip)
    prefix = _module_prefix(graph)
    prefixes = tuple(f"{prefix}{name.strip('.')}" for name in skip)
    annotate = quantizer.annotate

    def annotate_floats_first(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        floats = set(attention_float_ops(model))
        for node in model.graph.nodes:
            if node.op == "call_function" and (_in_modules(node, prefixes) or _takes_integers(model, node)
                                               or _op_name(node) in floats):
                node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
        return annotate(model)

    quantizer.annotate = annotate_floats_first
    return quantizer


ARITHMETIC = {"mul", "add", "sub", "rsub", "div", "pow"}  # ops whose operands a quantizer observes
ATTENTION_OPS = {"softmax", "_softmax", "layer_norm", "native_layer_norm", "scaled_dot_product_attention"}
RESIDUAL_OPS = ("add", "add_", "mul", "mul_")


def attention_float_ops(graph: torch.fx.GraphModule) -> list[str]:
    """The ops a pt2e graph keeps in float: its adds and muls (the residual stream and layer scales)
    when it has attention or LayerNorm, else none. A per-tensor 8-bit scale cannot hold the residual
    stream's few outlier channels (Bondarenko et al., 2021); ONNX INT8 keeps the same ops in float
    (:data:`edgekit.export.onnx.ATTENTION_FLOAT_OPS`). Measured on the coverage matrix's DeiT-Tiny
    stand-in: XNNPACK's INT8 graph goes from -5.0 to 14.6 dB output SQNR; LeViT-128S gains 1 dB on
    both LiteRT and XNNPACK; the other attention models move by 0.5 dB or less."""
    ops = {_op_name(n) for n in graph.graph.nodes if n.op == "call_function"}
    return list(RESIDUAL_OPS) if ops & ATTENTION_OPS else []


def _op_name(node) -> str:
    return getattr(node.target, "__name__", "").split(".")[0]


def _takes_integers(graph: torch.fx.GraphModule, node) -> bool:
    """Whether ``node`` is arithmetic on an integer tensor (a traced value or a constant attribute);
    indexing ops keep their integer indices and their annotations."""
    if _op_name(node) not in ARITHMETIC:
        return False
    for arg in node.all_input_nodes:
        value = arg.meta.get("val")
        if value is None and arg.op == "get_attr":
            value = getattr(graph, str(arg.target), None)
        if isinstance(value, torch.Tensor) and not (value.dtype.is_floating_point or value.dtype.is_complex):
            return True
    return False


def _node_modules(node) -> list[str]:
    return [path for path, _ in (node.meta.get("nn_module_stack") or {}).values()]


def _in_modules(node, prefixes: tuple[str, ...]) -> bool:
    return bool(prefixes) and any(p == pre or p.startswith(pre + ".") for p in _node_modules(node) for pre in prefixes)


def export_graph(module: nn.Module, sample: torch.Tensor) -> torch.fx.GraphModule:
    """``torch.export`` with a dynamic batch (calibration and training use other batch sizes)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        graph = torch.export.export(module.eval(), (sample,), dynamic_shapes=({0: batch},)).module()
    except Exception as exc:  # noqa: BLE001 - torch.export errors are long; keep the first line
        raise QuantizationError(f"torch.export could not capture the model: {first_line(exc)}") \
            from None
    return drop_dropouts(graph)


DROPOUTS = ("aten.dropout.default", "aten.feature_dropout.default", "aten.alpha_dropout.default")


def drop_dropouts(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove eval-mode dropouts (identities) from a captured graph.

    No quantizer annotates ``aten.dropout``, so one between a pooled embedding and a head's Linear gets
    the Linear its own input observer: a requantization in PyTorch. LiteRT's converter folds the
    dropout and that requantization away but keeps the bias it scaled for the requantized input: in
    9 of the coverage matrix's 20 ``.tflite`` files the head's bias scale was 0.19-0.93 of input x
    weight scale (mobileone_s2: -26 dB output SQNR where the pt2e graph gives 10 dB). Without the
    dropout, the Linear shares the pool's scale."""
    changed = False
    for node in list(graph.graph.nodes):
        if node.op == "call_function" and str(node.target) in DROPOUTS:
            train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train", False)
            if not train:
                node.replace_all_uses_with(node.args[0])
                graph.graph.erase_node(node)
                changed = True
    if changed:
        graph.graph.lint()
        graph.recompile()
    return graph


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
        raise ConfigError(f"{option('skip', flag='--skip-layers')}: no layer named {', '.join(missing)} in the model "
                          "(use module names such as backbone.stem or heads.<head>)")
