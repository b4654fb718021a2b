"""Task losses per head: cross-entropy (with label smoothing), BCE, L1 / MSE / smooth-L1.

Missing labels are masked: class index ``-1``, regression ``NaN`` and a multilabel row of ``NaN``
contribute nothing, so a multi-task CSV may leave cells empty and distillation may add unlabelled images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.card import HeadSpec
from edgekit.config import HeadConfig

DEFAULT_LOSS = {"classification": "ce", "multilabel": "bce", "regression": "l1"}


class TaskLoss(nn.Module):
    """``sum_h weight_h * loss_h(output_h, target_h)`` over the model's heads."""

    def __init__(self, heads: list[HeadSpec], head_cfgs: list[HeadConfig] | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        cfgs = {c.name: c for c in head_cfgs or []}
        self.heads = list(heads)
        self.kinds = {h.name: h.kind for h in heads}
        self.losses = {h.name: (cfgs[h.name].loss if h.name in cfgs and cfgs[h.name].loss else DEFAULT_LOSS[h.kind])
                       for h in heads}
        self.weights = {h.name: (cfgs[h.name].weight if h.name in cfgs else 1.0) for h in heads}
        self.smoothing = {h.name: (cfgs[h.name].label_smoothing if h.name in cfgs
                                   and cfgs[h.name].label_smoothing is not None else label_smoothing)
                          for h in heads}

    def head_loss(self, name: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        kind, loss = self.kinds[name], self.losses[name]
        if kind == "classification":
            valid = target >= 0
            if not bool(valid.any()):
                return output.sum() * 0.0
            return F.cross_entropy(output[valid].float(), target[valid].long(), label_smoothing=self.smoothing[name])
        if kind == "multilabel":  # a row of NaN: no labels for this sample
            valid = ~torch.isnan(target.float()).any(dim=1)
            if not bool(valid.any()):
                return output.sum() * 0.0
            return F.binary_cross_entropy_with_logits(output[valid].float(), target[valid].float())
        pred = output.reshape(output.shape[0], -1)[:, 0].float()
        target = target.reshape(-1).float()
        valid = ~torch.isnan(target)
        if not bool(valid.any()):
            return output.sum() * 0.0
        fn = {"l1": F.l1_loss, "mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss}[loss]
        return fn(pred[valid], target[valid])

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]):
        """Returns ``(total, {"task/<head>": loss})``."""
        terms = {f"task/{n}": self.head_loss(n, outputs[n], targets[n]) for n in self.kinds}
        total = sum(self.weights[n] * terms[f"task/{n}"] for n in self.kinds)
        return total, terms


class Supervised(nn.Module):
    """The criterion of plain training: run the model, apply the task loss to the labels.

    A criterion maps ``(model, batch)`` to ``(loss, terms, outputs)``; the trainer knows no more.
    """

    def __init__(self, task: TaskLoss) -> None:
        super().__init__()
        self.task = task

    def forward(self, model: nn.Module, batch: dict):
        outputs = model(batch["image"])
        loss, terms = self.task(outputs, batch["targets"])
        return loss, terms, outputs


class Mixup(nn.Module):
    """Plain training with mixup (Zhang et al., 2018): each batch is mixed with a shuffled copy of
    itself, ``x = lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)``, and the loss is
    ``lam * L(y) + (1 - lam) * L(y[perm])`` (for BCE that is the loss of the mixed multi-hot targets).
    The draws come from the torch RNG the trainer seeds per epoch. Evaluation sees unmixed inputs."""

    def __init__(self, task: TaskLoss, alpha: float) -> None:
        super().__init__()
        self.task, self.alpha = task, float(alpha)

    def forward(self, model: nn.Module, batch: dict):
        x, targets = batch["image"], batch["targets"]
        if not model.training or len(x) < 2:
            outputs = model(x)
            loss, terms = self.task(outputs, targets)
            return loss, terms, outputs
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        perm = torch.randperm(len(x), device=x.device)
        outputs = model(lam * x + (1.0 - lam) * x[perm])
        loss_a, terms_a = self.task(outputs, targets)
        loss_b, terms_b = self.task(outputs, {k: v[perm] for k, v in targets.items()})
        terms = {k: lam * terms_a[k] + (1.0 - lam) * terms_b[k] for k in terms_a}
        return lam * loss_a + (1.0 - lam) * loss_b, terms, outputs
