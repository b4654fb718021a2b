"""ExecuTorch: ``torch.export`` -> ``to_edge_transform_and_lower`` with the XNNPACK partitioner -> ``.pte``.

FP32 lowers the traced module as is. INT8 is pt2e post-training quantization with ExecuTorch's own
``XNNPACKQuantizer`` (symmetric INT8, per-channel weights; its base class is torchao's
``torchao.quantization.pt2e.quantizer.Quantizer``, so torchao's ``prepare_pt2e`` / ``convert_pt2e``
drive it — ``torch.ao.quantization`` is gone in torch 2.14), calibrated on real images, then
lowered the same way: XNNPACK fuses the quantize/dequantize pairs into integer kernels. Both take
and give float32 tensors, NCHW, at the batch they were exported with (``torch.export`` shapes are
static here; the runtime backend runs other batch sizes in chunks).

The card travels inside the file, as a *constant method* ``edgekit_card`` of the program that
returns the card's JSON string (``constant_methods`` of ``to_edge_transform_and_lower``; strings
are one of the primitive types the emitter supports). Any ExecuTorch runtime lists it among the
program's methods and returns the exact string when it is executed, and the C++ runtime ignores
methods it is not asked to run, so no sidecar is needed (a ``.pte.card.json`` is only read for
files without an embedded card, as for every format). :func:`export_executorch` also records in
the card how much of the graph XNNPACK took (``provenance["delegation"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit.atomic import write_with
from edgekit.card import ModelCard
from edgekit.errors import DependencyError, EdgekitError, first_line
from edgekit.logs import quiet
from edgekit.runtime.pte import CARD_METHOD

INSTALL = "pip install 'edgekit[executorch]'"
PLUMBING = ("getitem",)  # delegate outputs unpacked by the graph: not operators anyone runs


class ExecuTorchExportError(EdgekitError):
    """ExecuTorch could not capture, quantize or lower the model."""


def check_available() -> None:
    """Raise a :class:`DependencyError` naming the extra when executorch is not installed."""
    try:
        import executorch.exir  # noqa: F401
    except ImportError as exc:
        raise DependencyError(f"the executorch target needs the executorch package: {INSTALL}") from exc


def export_executorch(module: torch.nn.Module, card: ModelCard, path: str | Path, sample: torch.Tensor,
                      int8: bool = False, calib: np.ndarray | None = None, calib_batch: int = 32,
                      skip: Sequence[str] = ()) -> Path:
    """Lower ``module`` (heads as a tuple, NCHW input) to XNNPACK at ``sample``'s shape and write ``path``.

    ``int8``: quantize first (pt2e, ``XNNPACKQuantizer``), calibrated on ``calib`` (float32 NCHW
    images, preprocessed as the card says); ``skip`` modules stay in float. The card records the
    format, batch, quantization and the delegation summary, and is embedded in the file.
    """
    check_available()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgekit.compress.quantize import attention_float_ops
    from edgekit.runtime.metadata import card_json

    if int8:
        if calib is None or len(calib) == 0:
            raise EdgekitError("INT8 ExecuTorch export needs calibration images")
        module = quantize_xnnpack(module, calib, calib_batch, skip)
        card.provenance.update(quantization={"method": "ptq", "backend": "executorch XNNPACKQuantizer pt2e",
                                             "activations": "int8", "weights": "int8 per-channel",
                                             "calibration": "histogram", "calibration_images": int(len(calib)),
                                             "float_layers": list(skip), "float_ops": attention_float_ops(module)})
    elif not isinstance(module, torch.fx.GraphModule):  # pt2e graphs refuse .eval(); they are converted
        module.eval()
    import executorch.version

    card.provenance.update(format="executorch", batch=int(sample.shape[0]), delegate="xnnpack",
                           executorch=executorch.version.__version__)
    methods = {CARD_METHOD: card_json(card)}
    with quiet(stdout=True, python_warnings=True):  # torch.export and exir warn and log on every call
        try:
            program = torch.export.export(module, (sample,))
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                               constant_methods=methods)
        except Exception as exc:  # noqa: BLE001 - torch.export / exir errors are pages long
            raise ExecuTorchExportError(f"ExecuTorch could not lower the model: {first_line(exc)}") from None
        card.provenance["delegation"] = delegation_summary(edge.exported_program().graph_module)
        # The delegation is known only after lowering, and to_backend() keeps its own copy of the
        # constant methods: update that copy so the embedded card has it too (if a future executorch
        # moves it, the file still carries the card, without the delegation entry).
        kept = getattr(edge, "_config_methods", None)
        if isinstance(kept, dict) and CARD_METHOD in kept:
            kept[CARD_METHOD] = card_json(card)
        buffer = edge.to_executorch().buffer
    return write_with(path, lambda fh: fh.write(buffer))


def quantize_xnnpack(module: torch.nn.Module, calib: np.ndarray, batch: int = 32,
                     skip: Sequence[str] = ()) -> torch.fx.GraphModule:
    """Static INT8 (pt2e PTQ) of an NCHW module with ExecuTorch's ``XNNPACKQuantizer``: the converted graph
    (``skip`` modules in float)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekit.compress.quantize import export_graph, keep_float

    x = torch.from_numpy(np.ascontiguousarray(calib, dtype=np.float32))
    graph = drop_zero_pads(export_graph(module, x[:2]))  # dynamic batch: calibration in batches of any size
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    keep_float(quantizer, graph, skip)  # a ConfigError for unknown names, before the try below
    try:
        with quiet(stdout=True, python_warnings=True):  # torch.export and exir warn and log on every call
            prepared = prepare_pt2e(graph, quantizer)
            with torch.no_grad():
                for i in range(0, len(x), batch):
                    prepared(x[i: i + batch])
            return convert_pt2e(prepared)
    except Exception as exc:  # noqa: BLE001
        raise ExecuTorchExportError(f"pt2e quantization for XNNPACK failed: {first_line(exc)}") from None


def drop_zero_pads(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove pads of zero width (identities; EfficientViT's attention pads by ``[0, 0, 0, 0, 0, 0]``).

    Quantized, XNNPACK lowers such a pad but cannot build it when the program loads (``Failed to
    create StaticConstantPad node ... xnn_status_invalid_parameter``, then ``Failed to load method
    forward, error: 0x1``), so the INT8 ``.pte`` would never run. In FP32 it loads either way."""
    pads = (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default)
    dropped = [n for n in graph.graph.nodes if n.op == "call_function" and n.target in pads
               and len(n.args) > 1 and all(p == 0 for p in n.args[1])]
    for node in dropped:
        node.replace_all_uses_with(node.args[0])
        graph.graph.erase_node(node)
    if dropped:
        graph.recompile()
    return graph


def delegation_summary(graph_module: torch.fx.GraphModule) -> dict[str, Any]:
    """How much of the lowered graph XNNPACK runs (``executorch.devtools.backend_debug``).

    Operator names are ExecuTorch's (``aten_convolution_default``); ``non_delegated`` lists what
    runs on ExecuTorch's portable CPU kernels instead, by count. ``getitem`` nodes only unpack the
    delegate's outputs and are not counted.
    """
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    ops = {k: v for k, v in info.delegation_by_operator.items() if k not in PLUMBING}
    outside = {k: int(v.non_delegated) for k, v in sorted(ops.items()) if v.non_delegated}
    return {"delegated_ops": int(sum(v.delegated for v in ops.values())),
            "non_delegated_ops": int(sum(outside.values())),
            "subgraphs": int(info.num_delegated_subgraphs), "non_delegated": outside}


def build(job, precision: str, card: ModelCard, path: str | Path) -> Path:
    """One file of ``job`` (:class:`~edgekit.export.exporter.ExportJob`): FP32, or INT8 (pt2e XNNPACK)."""
    if precision == "fp32":
        return export_executorch(job.module, card, path, job.sample)
    return export_executorch(job.module, card, path, job.sample, int8=True, calib=job.calib, skip=job.skip)
