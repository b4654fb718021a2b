"""Regression heads learn standardized targets; every model edgekit writes answers in the targets' units.

Why: an age head must output 1..116 from a linear layer that starts near 0. Trained on raw years
the network reaches those values by growing its weights and features, which after a short run
leaves the BatchNorm statistics (and the eval-mode outputs) far off. Trained on
``z = (y - mean) / std`` (mean and std of the head's training labels) the head's outputs stay of
order one, like the logits of the other heads, and the loss terms are of comparable size.

Where the scaling lives: ``fit`` trains the head's last linear layer on ``z``, and folds the
scaling into that layer (``W' = std W``, ``b' = std b + mean``) in every checkpoint it writes and
in the model it returns. So a checkpoint's forward (eval, metrics, export parity) and every file
exported from it output years, with no change to the graph, the exporters or the runtime, and an
older runtime reading a newer file still gets years. The card records the scaling
(:attr:`edgekit.card.HeadSpec.target_mean` / ``target_std``) as what the head was trained with,
which also tells a later ``fit`` how to unfold the layer to go on training it. Consumers of a
model's outputs must not apply it again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.card import ModelCard

Scaling = dict[str, tuple[float, float]]  # {head: (mean, std)}


def target_stats(values: np.ndarray) -> tuple[float, float]:
    """``(mean, std)`` of the labelled (non-NaN) values; std 1 when there are fewer than two or they
    are all equal (the head then learns ``y - mean``), ``(0, 1)`` when there is no label."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    mean = float(v.mean())
    std = float(v.std()) if v.size > 1 else 0.0
    return mean, (std if std > 1e-6 * max(1.0, abs(mean)) else 1.0)


def head_linear(model: nn.Module, name: str) -> nn.Linear | None:
    """The last linear layer of head ``name`` of an :class:`~edgekit.train.models.EdgeModel`, or
    ``None`` for a model whose heads are not reachable as modules (a traced QAT graph)."""
    heads = getattr(model, "heads", None)
    if heads is None or not isinstance(heads, nn.Module):
        return None
    try:
        if name not in heads:
            return None
        head = heads[name]
    except (KeyError, TypeError):
        return None
    last = head[-1] if isinstance(head, nn.Sequential) and len(head) else head
    return last if isinstance(last, nn.Linear) else None


def prepare_scaling(model: nn.Module, card: ModelCard, train_targets: dict[str, np.ndarray]) -> Scaling:
    """The scaling ``fit`` trains ``model``'s regression heads with, written into ``card``'s heads.

    A head whose card already records a scaling comes from a model with it folded in (fine-tuning
    a checkpoint): that layer is unfolded, in place, to go on training on the same ``z``. Heads
    without a reachable linear layer keep training on raw targets (their model answers in the
    targets' units already).
    """
    scaling: Scaling = {}
    for head in card.heads:
        if head.kind != "regression" or head_linear(model, head.name) is None:
            continue
        if head.target_mean is not None and head.target_std is not None:
            scaling[head.name] = (float(head.target_mean), float(head.target_std))
            unfold_(model, {head.name: scaling[head.name]})
        else:
            scaling[head.name] = target_stats(train_targets[head.name])
            head.target_mean, head.target_std = scaling[head.name]
    return scaling


@torch.no_grad()
def fold_(model: nn.Module, scaling: Scaling) -> nn.Module:
    """In place: the heads in ``scaling`` output target units (``std * z + mean``)."""
    for name, (mean, std) in scaling.items():
        lin = head_linear(model, name)
        lin.weight.mul_(std)
        lin.bias.mul_(std).add_(mean)
    return model


@torch.no_grad()
def unfold_(model: nn.Module, scaling: Scaling) -> nn.Module:
    """In place: the inverse of :func:`fold_` (the heads output standardized ``z`` again)."""
    for name, (mean, std) in scaling.items():
        lin = head_linear(model, name)
        lin.bias.sub_(mean).div_(std)
        lin.weight.div_(std)
    return model


def folded_state(model: nn.Module, scaling: Scaling) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with the scaling folded into the heads' tensors (the model is untouched)."""
    state = model.state_dict()
    keys = {id(m): k for k, m in model.named_modules()}
    for name, (mean, std) in scaling.items():
        prefix = keys[id(head_linear(model, name))]
        state[f"{prefix}.weight"] = state[f"{prefix}.weight"] * std
        state[f"{prefix}.bias"] = state[f"{prefix}.bias"] * std + mean
    return state


def raw_heads(model: nn.Module, scaling: Scaling) -> dict[str, dict[str, torch.Tensor]]:
    """The standardized heads' own tensors (kept in ``last.pt``'s training state: exact resumes)."""
    return {name: {k: v.detach().clone() for k, v in head_linear(model, name).state_dict().items()}
            for name in scaling}


def load_raw_heads(model: nn.Module, raw: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, tensors in raw.items():
        head_linear(model, name).load_state_dict(tensors)


def standardize(targets: dict[str, torch.Tensor], scaling: Scaling) -> dict[str, torch.Tensor]:
    """Targets with the scaled heads' values standardized (NaN, a missing label, stays NaN)."""
    if not scaling:
        return targets
    out = dict(targets)
    for name, (mean, std) in scaling.items():
        out[name] = (targets[name].float() - mean) / std
    return out


def standardized_batch(batch: dict[str, Any], scaling: Scaling) -> dict[str, Any]:
    return {**batch, "targets": standardize(batch["targets"], scaling)} if scaling else batch


def denormalize(outputs: dict[str, np.ndarray], scaling: Scaling) -> dict[str, np.ndarray]:
    """Standardized outputs of the scaled heads back in target units (metrics are reported in them)."""
    return {k: (v * scaling[k][1] + scaling[k][0] if k in scaling else v) for k, v in outputs.items()}
