"""TFLite: ``litert_torch.convert`` with channels-last (NHWC) input, one output per head.

The card goes into the flatbuffer itself, as a ``Model.metadata`` entry named ``edgekit.card``
pointing at a buffer of UTF-8 JSON. That keeps the ``.tflite`` self-contained (no sidecar to lose
when copying the file to a phone); the TFLite runtime ignores metadata it does not know. INT8
files take int8 inputs and give int8 outputs: their scales and zero points go into the card too.
FP16 is ai-edge-quantizer's float-casting recipe on the FP32 file.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edgekit.atomic import write_with
from edgekit.card import CARD_KEY, ModelCard
from edgekit.errors import EdgekitError
from edgekit.logs import quiet


def export_tflite(module: torch.nn.Module, card: ModelCard, path: str | Path, sample: torch.Tensor,
                  quant_config=None) -> Path:
    """Convert ``module`` to TFLite at ``path`` with the card embedded.

    ``module`` takes NHWC input (:class:`~edgekit.train.trained.ChannelsLast`, or a pt2e graph
    quantized from one, then with ``quant_config``); ``sample`` is an NHWC batch.
    """
    import litert_torch

    tmp = Path(path).with_name(f".{Path(path).name}.convert")
    try:
        with quiet(stdout=True, stderr=True):  # litert-torch and ai-edge-quantizer print progress and warnings
            edge = litert_torch.convert(module.eval() if quant_config is None else module, (sample,),
                                        quant_config=quant_config)
            edge.export(str(tmp))
        data = tmp.read_bytes()
    finally:  # every path, a failed conversion included, removes the converter's file
        tmp.unlink(missing_ok=True)
    card.input.layout = "NHWC"
    card.provenance.update(format="tflite", batch=int(sample.shape[0]))
    return write_tflite(data, card, path)


def write_tflite(data: bytes, card: ModelCard, path: str | Path) -> Path:
    """Fill the card's integer I/O scales from the model, embed it, write ``path`` atomically."""
    _io_quant_into_card(data, card)
    return write_with(path, lambda fh: fh.write(embed_metadata(data, CARD_KEY, _card_bytes(card))))


def rewrite_card(path: str | Path, card: ModelCard) -> Path:
    """Replace the card embedded in a TFLite file."""
    data = Path(path).read_bytes()
    return write_with(path, lambda fh: fh.write(embed_metadata(data, CARD_KEY, _card_bytes(card))))


def to_fp16(src: str | Path, card: ModelCard, path: str | Path) -> Path:
    """FP16 weights (ai-edge-quantizer float casting) of an FP32 ``.tflite``."""
    from ai_edge_quantizer import quantizer, recipe_manager
    from ai_edge_quantizer.recipe import AlgorithmName, TFLOperationName

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              algorithm_key=AlgorithmName.FLOAT_CASTING)
    with quiet(stdout=True, stderr=True):  # litert-torch and ai-edge-quantizer print progress and warnings
        result = quantizer.Quantizer(str(src), rm.get_quantization_recipe()).quantize()
    return write_tflite(bytes(result.quantized_model), card, path)


def embed_metadata(data: bytes, name: str, value: bytes) -> bytes:
    """Add (or replace) a named metadata buffer in a TFLite flatbuffer."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for b in model.buffers or []:
        if (b.offset or 0) > 1:  # weights stored after the flatbuffer (ai-edge-quantizer does this): inline them
            if b.offset + b.size > 2**31 - 2**20:
                raise EdgekitError("this .tflite is too large (>2 GB) to embed the card; use a .card.json sidecar")
            b.data = np.frombuffer(data, dtype=np.uint8, count=b.size, offset=b.offset)
            b.offset, b.size = 0, 0
    buf = schema.BufferT()
    buf.data = np.frombuffer(value, dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (name, name.encode())] + [entry]
    builder = flatbuffers.Builder(len(data) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _io_quant_into_card(data: bytes, card: ModelCard) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.runtime.backends import tflite_output_position

    interp = Interpreter(model_content=data)
    inp = interp.get_input_details()[0]
    scale, zero = inp["quantization"]
    card.input.dtype = np.dtype(inp["dtype"]).name
    card.input.quant = {"scale": float(scale), "zero_point": int(zero)} if scale else None
    outs = {}
    for i, o in enumerate(sorted(interp.get_output_details(), key=tflite_output_position)):
        s, z = o["quantization"]
        if s and i < len(card.heads):
            outs[card.heads[i].name] = {"scale": float(s), "zero_point": int(z), "dtype": np.dtype(o["dtype"]).name}
    card.output_quant = outs or None


def _card_bytes(card: ModelCard) -> bytes:
    from edgekit.runtime.metadata import card_json

    return card_json(card).encode("utf-8")


FROM_FP32_FILE = ("fp16",)  # variants made from the FP32 .tflite (INT8 comes from the graph)


def build(job, precision: str, card: ModelCard, path: str | Path) -> Path:
    """One file of ``job`` (:class:`~edgekit.export.exporter.ExportJob`) at ``precision``."""
    from edgekit.train.trained import ChannelsLast, to_channels_last

    nhwc, sample = ChannelsLast(job.module), to_channels_last(job.sample)
    if precision == "fp16":
        return to_fp16(job.fp32, job.like(card), path)
    with converter_rewrites(job.module):
        if precision == "fp32":
            return export_tflite(nhwc, card, path, sample)
        return to_int8(nhwc, card, path, sample, job.calib, job.skip, job.calib_method)


@contextlib.contextmanager
def converter_rewrites(module: torch.nn.Module):
    """Same-math rewrites of patterns the LiteRT converter mishandles, for the time of a conversion.

    MobileViTv2's linear attention multiplies by ``context.expand_as(value)``: after the NHWC
    layout passes the converter gives the explicit BROADCAST_TO a shape that no longer broadcasts
    ("'tfl.mul' op operands don't have broadcast-compatible shapes"). Implicit broadcasting computes
    the same product and converts.

    timm's fused attention (``F.scaled_dot_product_attention``) is converted through LiteRT's SDPA
    lowering, which lost precision on MobileNetV4-hybrid's multi-query attention (82.5 dB output
    SQNR, max relative error 1.3e-4 against the 1e-4 FP32 gate); timm's explicit path (scale,
    matmul, softmax, matmul) is the same math and converts at 108.7 dB."""
    try:
        from timm.models.mobilevit import LinearSelfAttention
    except ImportError:  # pragma: no cover - timm is part of edgekit[train]
        yield
        return
    import types

    patched = [m for m in module.modules() if isinstance(m, LinearSelfAttention)]
    for m in patched:
        m._forward_self_attn = types.MethodType(_linear_self_attn, m)
    fused = [m for m in module.modules() if getattr(m, "fused_attn", None) is True]
    for m in fused:
        m.fused_attn = False
    try:
        yield
    finally:
        for m in patched:
            del m._forward_self_attn
        for m in fused:
            m.fused_attn = True


def _linear_self_attn(self, x: torch.Tensor) -> torch.Tensor:
    """timm's ``LinearSelfAttention._forward_self_attn`` without ``expand_as`` (broadcasting instead)."""
    qkv = self.qkv_proj(x)
    query, key, value = qkv.split([1, self.embed_dim, self.embed_dim], dim=1)
    context_scores = self.attn_drop(torch.softmax(query, dim=-1))
    context_vector = (key * context_scores).sum(dim=-1, keepdim=True)
    out = torch.relu(value) * context_vector
    return self.out_drop(self.out_proj(out))


def to_int8(nhwc: torch.nn.Module, card: ModelCard, path: str | Path, sample_nhwc: torch.Tensor, calib: np.ndarray,
            skip: Sequence[str] = (), calib_method: str = "minmax") -> Path:
    """Static INT8 TFLite through litert-torch's pt2e quantizer (histogram observers on activations,
    per-channel min/max on weights): int8 input and outputs, their scales in the card."""
    from litert_torch.quantize.quant_config import QuantConfig

    from edgekit.compress.quantize import QuantConfig as GraphQuantConfig
    from edgekit.compress.quantize import attention_float_ops, quantize

    if calib_method != "minmax":
        warnings.warn(f"the TFLite pt2e path calibrates with its own observers (histogram activations, min/max "
                      f"weights); '{calib_method}' applies to ONNX only", stacklevel=2)
    graph, quantizer = quantize(nhwc, calib, GraphQuantConfig(method="ptq", skip=list(skip)))
    card.provenance.update(quantization={"method": "ptq", "backend": "litert-torch pt2e", "activations": "int8",
                                         "weights": "int8 per-channel", "calibration": "histogram",
                                         "calibration_images": int(len(calib)), "float_layers": list(skip),
                                         "float_ops": attention_float_ops(graph)})
    return export_tflite(graph, card, path, sample_nhwc, quant_config=QuantConfig(pt2e_quantizer=quantizer))
