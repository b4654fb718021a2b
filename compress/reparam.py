"""MobileOne / RepVGG / FastViT reparameterization: fuse training branches into single convs.

``reparameterize(model)`` is ``timm.utils.reparameterize_model`` on a copy; ``fuse_checkpoint``
adds what makes it safe to ship: the fused model is checked against the original on real
validation images (max abs / relative error, top-1 agreement per head) and is written only when
the relative error is at most ``tol`` (1e-4). Params, FLOPs (``FlopCounterMode``) and eager latency
before/after go into ``reparam.json`` and the new card (``provenance.fused = True``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.atomic import write_json
from edgekit.errors import EdgekitError, option
from edgekit.train.checkpoint import save_checkpoint
from edgekit.train.models import count_params, gflops

TOLERANCE = 1e-4


class FusionError(EdgekitError):
    """The fused model does not compute what the original computes."""


def reparameterize(model: nn.Module) -> nn.Module:
    """A fused copy of ``model`` (the original is untouched)."""
    from timm.utils import reparameterize_model

    return reparameterize_model(copy.deepcopy(model).eval())


def has_reparam_blocks(model: nn.Module) -> bool:
    """True if some module of ``model`` knows how to fuse itself (timm's convention)."""
    return any(hasattr(m, "reparameterize") or hasattr(m, "fuse") for m in model.modules())


@torch.no_grad()
def compare(reference: nn.Module, candidate: nn.Module, x: torch.Tensor, batch: int = 64) -> dict[str, Any]:
    """Per-head max abs error, relative error (max abs / max |ref|) and top-1 agreement."""
    ref_out: dict[str, list[torch.Tensor]] = {}
    new_out: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(x), batch):
        for store, model in ((ref_out, reference), (new_out, candidate)):
            for k, v in model(x[i: i + batch]).items():
                store.setdefault(k, []).append(v.float())
    result = {}
    for head in ref_out:
        a, b = torch.cat(ref_out[head]), torch.cat(new_out[head])
        max_abs = float((a - b).abs().max())
        result[head] = {"max_abs": max_abs, "rel": max_abs / max(float(a.abs().max()), 1e-12),
                        "top1_agreement": float((a.argmax(1) == b.argmax(1)).float().mean()) if a.shape[1] > 1
                        else None}
    return result


@torch.no_grad()
def eager_latency_ms(model: nn.Module, x: torch.Tensor, runs: int = 50, warmup: int = 10) -> float:
    """Median eager latency on batch ``x`` on the CPU (a rough figure; `edgekit bench` measures properly)."""
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def fuse_verified(model: nn.Module, x: torch.Tensor, tol: float = TOLERANCE,
                  fuse=reparameterize) -> tuple[nn.Module, dict[str, Any], float]:
    """``(fused copy, per-head errors, worst relative error)``; :class:`FusionError` above ``tol``."""
    fused = fuse(model)
    errors = compare(model, fused, x)
    worst = max(e["rel"] for e in errors.values())
    if not worst <= tol:  # also catches NaN
        raise FusionError(f"fused model differs from the original: relative error {worst:.2e} > {tol:.0e} "
                          f"on {len(x)} val images")
    return fused, errors, worst


@dataclass
class FuseReport:
    path: Path
    stats: dict[str, Any]


def fuse_checkpoint(ckpt_path: str | Path, out_dir: str | Path, tol: float = TOLERANCE, n_images: int = 256,
                    fuse=reparameterize, data: str | None = None) -> FuseReport:
    """Fuse the model of ``ckpt_path``, verify it on real images, write ``out_dir/model.pt``. ``data``: the
    dataset it was trained on when it has moved (the fused checkpoint's config then names it)."""
    from edgekit.train.trained import load_trained

    if n_images < 1:
        raise FusionError(f"the equivalence check needs at least one val image ({option('n_images', flag='--images')}"
                          f" >= 1), got {n_images}")
    src = load_trained(ckpt_path, data=data)
    if src.card.provenance.get("fused"):
        raise FusionError(f"{ckpt_path} is already fused")
    if not has_reparam_blocks(src.model):
        raise FusionError(f"{src.card.arch} has no reparameterizable blocks (MobileOne, RepVGG, FastViT... have)")
    one = src.sample(1)
    x_np, _ = src.images("val", limit=n_images)
    try:
        fused, errors, worst = fuse_verified(src.model, torch.from_numpy(x_np), tol, fuse)
    except FusionError as exc:
        raise FusionError(f"{exc}; nothing written") from None
    stats = {"source": str(ckpt_path), "images": len(x_np), "tolerance": tol, "errors": errors, "max_rel": worst,
             "params_before": count_params(src.model), "params_after": count_params(fused),
             "gflops_before": gflops(src.model, one), "gflops_after": gflops(fused, one),
             "eager_ms_before": eager_latency_ms(src.model, one), "eager_ms_after": eager_latency_ms(fused, one)}
    out_dir = Path(out_dir)
    card = src.card.derive(fused=True, fused_from=str(ckpt_path), fusion_max_rel_error=worst)
    card.params = stats["params_after"]
    path = save_checkpoint(out_dir / "model.pt", {"card": card.to_dict(), "config": src.config,
                                                  "model_state": fused.state_dict(), "epoch": None})
    write_json(out_dir / "card.json", card.to_dict())
    write_json(out_dir / "reparam.json", stats)
    return FuseReport(path=path, stats=stats)
