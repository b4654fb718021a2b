"""CoreML: an mlprogram converted from ``torch.export``, FP16 by default, INT8 weights optionally.

The model takes an RGB image (``ct.ImageType``, what Xcode previews and Vision feed), so the
normalization is folded into the graph and the card's mean/std become the identity on [0, 255]
pixels. Heads are activated in the graph (softmax / sigmoid) so Swift code gets probabilities;
a single classification head is a CoreML classifier with its class labels (Xcode shows them).
The card is in ``user_defined_metadata["edgekit.card"]``. Prediction needs macOS: on Linux the
converted program is checked for structure only (see :func:`check_structure`).
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekit.card import CARD_KEY, ModelCard
from edgekit.errors import DependencyError


class ImageInModel(nn.Module):
    """Normalize [0, 255] RGB pixels inside the graph and activate each head. A sound model (``pixels``
    False) takes its normalized log-mel tensor as is: the frontend runs beside the model, in the app."""

    def __init__(self, module: nn.Module, card: ModelCard, pixels: bool = True) -> None:
        super().__init__()
        self.module, self.kinds, self.pixels = module, [h.kind for h in card.heads], pixels
        c = card.input.channels
        self.register_buffer("mean", torch.tensor(card.input.mean).view(1, c, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(card.input.std).view(1, c, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.module((x - self.mean) / self.std if self.pixels else x)
        return tuple(torch.softmax(o, 1) if k == "classification" else torch.sigmoid(o) if k == "multilabel" else o
                     for o, k in zip(outs, self.kinds, strict=True))


def export_coreml(module: nn.Module, card: ModelCard, path: str | Path, sample: torch.Tensor,
                  int8_weights: bool = False, fp16: bool = True) -> Path:
    try:
        import coremltools as ct
    except ImportError as exc:
        raise DependencyError("CoreML export needs coremltools: pip install 'edgekit[all]'") from exc
    h, w = card.input.size
    audio = bool(card.input.audio)  # a log-mel tensor in, not an image
    program = torch.export.export(ImageInModel(module, card, pixels=not audio).eval(),
                                  (sample * 0 + (0.0 if audio else 128.0),)).run_decompositions({})
    _drop_aliases(program)
    single_classifier = len(card.heads) == 1 and card.heads[0].kind == "classification"
    kwargs: dict[str, Any] = {}
    if single_classifier:
        kwargs["classifier_config"] = ct.ClassifierConfig([str(c) for c in card.heads[0].classes])
    else:
        kwargs["outputs"] = [ct.TensorType(name=n) for n in card.head_names]
    with contextlib.redirect_stderr(io.StringIO()):  # coremltools draws a progress bar per pass
        inp = (ct.TensorType(name="logmel", shape=tuple(int(d) for d in sample.shape)) if audio else
               ct.ImageType(name="image", shape=(int(sample.shape[0]), 3, h, w), color_layout=ct.colorlayout.RGB))
        model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16, inputs=[inp],
                           compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32, **kwargs)
        if int8_weights:
            model = _int8_weights(model)
    if not audio:
        card.input.mean, card.input.std = [0.0, 0.0, 0.0], [1 / 255.0] * 3  # the graph normalizes
        card.input.dtype, card.input.layout = "image", "NHWC"
    card.provenance.update(format="coreml", outputs_activated=True, batch=int(sample.shape[0]),
                           classifier=single_classifier)
    from edgekit.runtime.metadata import card_json

    model.user_defined_metadata[CARD_KEY] = card_json(card)
    model.short_description = f"{card.name}: {card.arch} with heads {', '.join(card.head_names)} (edgekit)"
    model.author = "edgekit"
    return _save_atomically(model, Path(path))


def _drop_aliases(program) -> None:
    """``aten.alias`` is an identity that coremltools' torch.export frontend does not know
    (apple/coremltools#2517: "Unsupported fx node alias", e.g. EfficientViT's attention biases):
    route its users to its input and drop it."""
    graph = program.graph_module.graph
    aliases = [n for n in graph.nodes if n.op == "call_function"
               and n.target in (torch.ops.aten.alias.default, torch.ops.aten.alias_copy.default)]
    for node in aliases:
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
    if aliases:
        program.graph_module.recompile()


def build(job, precision: str, card: ModelCard, path: str | Path) -> Path:
    """One file of ``job`` (:class:`~edgekit.export.exporter.ExportJob`): FP16, or INT8 weights."""
    return export_coreml(job.module, card, path, job.sample, int8_weights=precision.startswith("int8"))


def _int8_weights(model):
    """INT8 (symmetric, per-channel) weights for an mlprogram (activation calibration needs macOS)."""
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    from edgekit.logs import quiet

    config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"))
    with quiet():  # onnxruntime's quantizer logs a warning per per-channel tensor it cannot split
        return linear_quantize_weights(model, config=config)


def _save_atomically(model, path: Path) -> Path:
    """An .mlpackage is a folder: build it beside the target, then swap it in."""
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save(str(tmp))
    except BaseException:  # a full disk, an interrupt: no half-written package stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".old-{path.name}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def check_structure(path: str | Path, card: ModelCard) -> dict[str, Any]:
    """What can be verified without macOS: input image size, one output per head, the card inside."""
    import coremltools as ct

    from edgekit.runtime.metadata import read_card

    spec = ct.utils.load_spec(str(path))
    desc = spec.description
    problems = []
    inp = desc.input[0]
    if card.input.audio:  # a sound model takes the log-mel tensor [N, 1, n_mels, frames]
        shape = list(inp.type.multiArrayType.shape) if inp.type.WhichOneof("Type") == "multiArrayType" else None
        if shape is None or shape[1:] != [1, *card.input.size]:
            problems.append(f"input is {shape or inp.type.WhichOneof('Type')}, card says [N, 1, {card.input.size}]")
    elif inp.type.WhichOneof("Type") != "imageType":
        problems.append("input is not an image")
    elif (inp.type.imageType.height, inp.type.imageType.width) != tuple(card.input.size):
        problems.append(f"input is {inp.type.imageType.height}x{inp.type.imageType.width}, card says {card.input.size}")
    outputs = [o.name for o in desc.output]
    if card.provenance.get("classifier"):
        if not (desc.predictedFeatureName and desc.predictedProbabilitiesName in outputs):
            problems.append("classifier lacks its label / probabilities outputs")
    elif outputs != card.head_names:
        problems.append(f"outputs {outputs} != heads {card.head_names}")
    embedded = read_card(path)
    if embedded.head_names != card.head_names:
        problems.append("embedded card does not match")
    return {"structure_ok": not problems, "problems": problems, "outputs": outputs,
            "spec_version": spec.specificationVersion, "numeric": "skipped: CoreML prediction needs macOS"}
