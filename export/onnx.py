"""ONNX: ``torch.onnx.export(..., dynamo=True)``, one named output per head, the card in
``metadata_props["edgekit.card"]``; FP16 through onnxruntime's float16 converter (float32 I/O)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from edgekit.atomic import write_with
from edgekit.card import CARD_KEY, ModelCard


def export_onnx(module: torch.nn.Module, card: ModelCard, path: str | Path, sample: torch.Tensor,
                dynamic_batch: bool = False, opset: int | None = None) -> Path:
    """Trace ``module`` (heads as a tuple) at ``sample``'s shape and write ``path`` with the card."""
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter prints progress
        warnings.simplefilter("ignore")
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
