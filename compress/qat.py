"""Quantization-aware training: fine-tune a pt2e fake-quant graph with the edgekit trainer.

``fine_tune(trained, ...)`` prepares the model with :func:`edgekit.compress.quantize.quantize`
(``QuantConfig(method="qat")``), trains it with the FP32 model as its own teacher (KD keeps the
quantized model close to the float one), and returns the prepared graph; :func:`qat_convert`
turns it into the INT8 graph the exporters take.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekit.compress.quantize import QuantConfig, quantize


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


def qat_convert(prepared: torch.fx.GraphModule, fold: bool = False) -> torch.fx.GraphModule:
    """Fake-quant graph -> quantized graph. ``fold=True`` stores int8 weights (for ONNX);
    litert-torch needs ``fold=False`` (it folds the weight Q/DQ itself)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared, fold_quantize=fold)


def fine_tune(trained, out: Path, skip: Sequence[str], epochs: int, lr: float, verbose: bool = True):
    """QAT of a :class:`~edgekit.train.trained.Trained` on its own training data.

    Returns ``(prepared graph, quantizer, seconds)``; the run folder is ``out`` + ``-train``."""
    from edgekit.config import RunConfig
    from edgekit.train.data import build_transforms, load_data
    from edgekit.train.losses import TaskLoss
    from edgekit.train.trained import ChannelsLast
    from edgekit.train.trainer import fit

    cfg = RunConfig.model_validate(trained.config)
    cfg.stage, cfg.distill, cfg.out = "qat", None, str(out.parent)
    cfg.name = out.name + "-train"
    cfg.train.epochs, cfg.train.lr, cfg.train.warmup_epochs, cfg.train.save_every = epochs, lr, 0.0, 0
    cfg.data.limit = None
    inp = trained.card.input
    cfg.data.mean, cfg.data.std = tuple(inp.mean), tuple(inp.std)
    cfg.data.interpolation, cfg.data.crop_pct = inp.interpolation, inp.crop_pct
    data = load_data(cfg.data, cfg.model.heads)
    tfs = build_transforms(cfg.data, data.kind, {})  # the augmentation the FP32 model was trained with
    sample = trained.sample(2).permute(0, 2, 3, 1).contiguous()
    # torch.export shares parameters with the module it captures: QAT must train a copy, or the
    # FP32 model (the reference and the teacher) would change under it
    prepared, quantizer = quantize(ChannelsLast(copy.deepcopy(trained.wrapped())), sample,
                                   QuantConfig(method="qat", skip=list(skip)))
    model = QATModel(prepared, trained.card.head_names)
    criterion = SelfDistillLoss(TaskLoss(data.heads, cfg.model.heads, cfg.train.label_smoothing), trained.model)
    card = trained.card.derive(stage="qat", qat_training_state=True)
    t0 = time.perf_counter()
    fit(model, criterion, data, tfs, cfg, card, verbose=verbose)
    return prepared, quantizer, time.perf_counter() - t0
