"""The training loop, top to bottom in one file.

``fit(model, criterion, data, transforms, cfg, card)`` trains ``model`` with AdamW, a per-step
cosine schedule with linear warm-up, gradient clipping and AMP (CUDA), and writes the run folder:
``config.yaml``, ``history.json``, ``best.pt``, ``last.pt``, ``epoch_N.pt`` and ``card.json``
(all atomically). ``criterion(model, batch) -> (loss, terms, outputs)`` is the only thing that
differs between plain training and distillation; its own parameters (a projection layer) are
trained and checkpointed too.

Eval mode must give what the model learned: before each validation (and so before every
checkpoint) the BatchNorm statistics are recomputed from up to 512 training images with the final
weights (:mod:`edgekit.train.batchnorm`), and regression heads train on standardized targets with
the scaling folded back into every checkpoint (:mod:`edgekit.train.target_scaling`): metrics,
checkpoints and exported files are in the targets' units; regression loss terms are standardized.

Reproducibility: each epoch's sample order, augmentations and dropout masks are seeded from
``(seed, epoch)`` alone, so ``resume=True`` from ``last.pt`` reproduces the uninterrupted run.
Under ``torchrun`` (``WORLD_SIZE > 1``) the same call trains with DistributedDataParallel (gloo
on CPU, NCCL on CUDA); rank 0 validates and writes files. The process group stays up for later
``fit`` calls in the same process (distillation trains teacher, student and baseline); the CLI
tears it down on exit.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from edgekit.atomic import write_json, write_text
from edgekit.card import ModelCard
from edgekit.config import RunConfig
from edgekit.console import console, progress, say
from edgekit.errors import CheckpointError, ConfigError, option
from edgekit.train.batchnorm import BN_IMAGES, bn_layers, recompute_bn_stats
from edgekit.train.checkpoint import load_checkpoint, save_checkpoint
from edgekit.train.data import DataBundle, EpochSampler, ImageDataset, Split, Transforms, make_loader, mix_seed
from edgekit.train.device import resolve_device
from edgekit.train.metrics import compute_metrics, monitor_key, per_sound
from edgekit.train.models import count_params
from edgekit.train.target_scaling import (
    Scaling,
    denormalize,
    fold_,
    folded_state,
    load_raw_heads,
    prepare_scaling,
    raw_heads,
    standardized_batch,
)


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]  # {"epoch", "metric", "value", "metrics"}
    model: nn.Module  # the trained model on the CPU, with the weights of the last epoch
    card: ModelCard
    seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)


class _Step(nn.Module):
    """model + criterion as one module, so DDP sees (and syncs) every trainable parameter."""

    def __init__(self, model: nn.Module, criterion: nn.Module) -> None:
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, batch: dict[str, Any]):
        return self.criterion(self.model, batch)


def fit(model: nn.Module, criterion: nn.Module, data: DataBundle, tfs: Transforms, cfg: RunConfig,
        card: ModelCard, *, resume: bool = False, views: int | None = None, stop_after: int | None = None,
        verbose: bool = True) -> FitResult:
    """Train ``model`` on ``data`` and write ``cfg.run_dir``. See the module docstring."""
    t_cfg = cfg.train
    rank, world, local_rank = _init_distributed(t_cfg.device)
    main = rank == 0
    device = resolve_device(t_cfg.device, local_rank if world > 1 else None)
    if device.type == "cpu" and t_cfg.threads:
        torch.set_num_threads(t_cfg.threads)
    run_dir = cfg.run_dir
    key, mode = monitor_key(card.heads, t_cfg.monitor)

    # -- data --------------------------------------------------------------------------------
    train_ds, val_ds = ImageDataset(data.train, tfs.train), ImageDataset(data.val, tfs.eval)
    sampler = EpochSampler(len(train_ds), seed=t_cfg.seed, views=views, rank=rank, world=world)
    train_loader = make_loader(train_ds, t_cfg.batch_size, sampler, cfg.data.workers)
    val_loader = make_loader(val_ds, t_cfg.batch_size, None, cfg.data.workers)
    bn_loader = _bn_loader(model, data.train, tfs, t_cfg.batch_size, t_cfg.seed, cfg.data.workers)
    scaling = prepare_scaling(model, card, data.train.targets)

    # -- model, optimizer, schedule, AMP -----------------------------------------------------
    step = _Step(model, criterion).to(device)
    if world > 1:
        step = nn.parallel.DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)
    decay = [p for p in step.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in step.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": t_cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=t_cfg.lr)
    steps_per_epoch = len(train_loader)
    total_steps = t_cfg.epochs * steps_per_epoch
    warmup = int(t_cfg.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, warmup, total_steps, t_cfg.min_lr_ratio))
    amp_dtype = _amp_dtype(t_cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    # -- resume ------------------------------------------------------------------------------
    start_epoch, history, best = 0, [], {"epoch": None, "metric": key, "value": None, "metrics": {}}
    if resume:
        ckpt = load_checkpoint(run_dir / "last.pt")
        state = ckpt.get("train_state")
        if state is None:
            raise CheckpointError(f"{run_dir / 'last.pt'} has no training state to resume from")
        model.load_state_dict(ckpt["model_state"])
        scaling = _resumed_scaling(scaling, card, ckpt, state)
        load_raw_heads(model, state.get("raw_heads", {}))
        criterion.load_state_dict(state["criterion"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, history, best = int(ckpt["epoch"]), list(state["history"]), dict(state["best"])
        if start_epoch >= t_cfg.epochs:
            raise ConfigError(f"{run_dir} already finished its {t_cfg.epochs} epochs; nothing to resume")
    card.params = count_params(model)
    card.provenance.setdefault("stage", cfg.stage)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", cfg.to_yaml())
        write_json(run_dir / "card.json", card.to_dict())

    # -- epochs ------------------------------------------------------------------------------
    log = _Log(verbose and main)
    log.start(cfg, card, device, world, len(train_ds), len(val_ds), start_epoch)
    t_start = time.perf_counter()
    end_epoch = t_cfg.epochs if stop_after is None else min(t_cfg.epochs, start_epoch + stop_after)
    epoch_seconds = []
    for epoch in range(start_epoch, end_epoch):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        torch.manual_seed(mix_seed(t_cfg.seed, epoch, 1))  # dropout / drop-path masks of this epoch
        step.train()
        sums: dict[str, float] = {}
        seen = 0
        outs: dict[str, list[np.ndarray]] = {h: [] for h in card.head_names}
        tgts: dict[str, list[np.ndarray]] = {h: [] for h in card.head_names}
        with log.epoch_bar(epoch, t_cfg.epochs, steps_per_epoch) as advance:
            for batch in train_loader:
                batch = _to(batch, device)
                labels, batch = batch["targets"], standardized_batch(batch, scaling)
                with _autocast(device, amp_dtype):
                    loss, terms, outputs = step(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}; lower {option('lr')}")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if t_cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(step.parameters(), t_cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                n = batch["image"].shape[0]
                seen += n
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach()) * n
                for h in card.head_names:
                    outs[h].append(outputs[h].detach().float().cpu().numpy())
                    tgts[h].append(labels[h].cpu().numpy())
                advance(float(loss.detach()))
        train_terms = {k: v / seen for k, v in sums.items()}
        train_metrics = compute_metrics(card.heads, denormalize(_cat(outs), scaling), _cat(tgts))

        record: dict[str, Any] = {}
        if main:
            if bn_loader is not None:  # eval-mode statistics of the weights just trained
                with _autocast(device, amp_dtype):
                    used = recompute_bn_stats(model, bn_loader, BN_IMAGES, device)
                card.provenance["bn_stats"] = {"images": used, "transform": "eval", "split": "train"}
            val = evaluate(model, criterion, val_loader, card, device, amp_dtype, scaling=scaling,
                           groups=data.val.groups)
            secs = time.perf_counter() - t0
            record = _record(epoch, train_terms, train_metrics, val, key, mode,
                             optimizer.param_groups[0]["lr"], secs)
            record.update(steps=steps_per_epoch, world_size=world)
            history.append(record)
            improved = best["value"] is None or _better(val.get(key), best["value"], mode)
            if improved and val.get(key) is not None:
                best = {"epoch": epoch + 1, "metric": key, "value": val[key], "metrics": val}
            card.metrics = {"val": best["metrics"], "best_epoch": best["epoch"], "monitor": key}
            payload = {"card": card.to_dict(), "config": cfg.model_dump(mode="json"),
                       "model_state": folded_state(model, scaling), "epoch": epoch + 1}
            train_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "scaler": scaler.state_dict(), "criterion": criterion.state_dict(),
                           "history": history, "best": best, "raw_heads": raw_heads(model, scaling)}
            if improved:
                save_checkpoint(run_dir / "best.pt", payload)
            save_checkpoint(run_dir / "last.pt", {**payload, "train_state": train_state})
            if t_cfg.save_every and (epoch + 1) % t_cfg.save_every == 0:
                save_checkpoint(run_dir / f"epoch_{epoch + 1}.pt", {**payload, "train_state": train_state})
            write_json(run_dir / "history.json", history)
            write_json(run_dir / "card.json", card.to_dict())
            log.epoch_line(record, key)
        epoch_seconds.append(time.perf_counter() - t0)
        if world > 1:
            dist.barrier()

    seconds = time.perf_counter() - t_start
    fold_(model, scaling)  # the returned model answers in target units, like its checkpoints
    log.summary(history, best, run_dir, seconds)
    return FitResult(run_dir=run_dir, history=history, best=best, model=model.cpu().eval(), card=card,
                     seconds=seconds, epoch_seconds=epoch_seconds)


@torch.no_grad()
def evaluate(model: nn.Module, criterion: nn.Module, loader, card: ModelCard, device: torch.device,
             amp_dtype: torch.dtype | None = None, scaling: Scaling | None = None,
             groups: np.ndarray | None = None) -> dict[str, float]:
    """Val metrics per head plus the task loss (``loss``) of ``model`` on ``loader``.

    ``scaling``: heads whose outputs are standardized (inside ``fit``); the loss is taken on
    standardized targets, the metrics in target units. ``groups`` (sound sources: the sound of each
    window): the loss is per window, the metrics per sound, its windows aggregated as the card says."""
    model.eval()
    task = getattr(criterion, "task", None)
    outs: dict[str, list[np.ndarray]] = {h: [] for h in card.head_names}
    tgts: dict[str, list[np.ndarray]] = {h: [] for h in card.head_names}
    loss_sum, n = 0.0, 0
    for batch in loader:
        batch = _to(batch, device)
        with _autocast(device, amp_dtype):
            outputs = model(batch["image"])
        if task is not None:
            loss, _ = task(outputs, standardized_batch(batch, scaling or {})["targets"])
            loss_sum += float(loss) * batch["image"].shape[0]
        n += batch["image"].shape[0]
        for h in card.head_names:
            outs[h].append(outputs[h].float().cpu().numpy())
            tgts[h].append(batch["targets"][h].cpu().numpy())
    outputs, targets = denormalize(_cat(outs), scaling or {}), _cat(tgts)
    if groups is not None:
        outputs, targets = per_sound(outputs, targets, groups, (card.input.audio or {}).get("aggregate", "mean"))
    result = compute_metrics(card.heads, outputs, targets)
    if task is not None and n:
        result["loss"] = loss_sum / n
    return result


# -- helpers -------------------------------------------------------------------------------------


def _bn_loader(model: nn.Module, train: Split, tfs: Transforms, batch_size: int, seed: int, workers: int):
    """Up to 512 training images in a seeded random order, through the *eval* transform (None without BatchNorm).

    Training images, not validation ones (no peeking), and the eval transform (resize + centre
    crop): the statistics should describe the inputs eval mode will see (validation, export
    parity, the runtime), not the random crops and colour jitter of the training transform.
    Batches are shuffled and whole: the mean of the batches' variances then estimates the
    population's (batches of files in name order, and UTKFace names start with the age, would each
    hold similar images, underestimate it and make eval outputs explode). They are 4x the training
    batch: a no-grad forward keeps a few activations where training keeps them all, so it fits,
    and with bigger batches every layer sees inputs normalized nearly as eval mode will normalize
    them (38 training faces: the lowest eval-mode age went from -99 to -13 years for batches of 6 -> 36)."""
    if not bn_layers(model):
        return None
    n, bs = len(train), max(2, 4 * batch_size)
    take = min(n, BN_IMAGES)
    take = take if take < bs else take - take % bs  # whole batches: each batch weighs the same in the average
    ids = np.random.default_rng(seed).permutation(n)[:take]
    return make_loader(ImageDataset(train, tfs.eval), min(bs, take), [(int(i), -1, 0) for i in ids], workers)


def _resumed_scaling(scaling: Scaling, card: ModelCard, ckpt: dict[str, Any], state: dict[str, Any]) -> Scaling:
    """The scaling the interrupted run trained with (as its checkpoint's card says; none for runs
    from before regression targets were standardized)."""
    saved = {h.get("name"): h for h in ckpt["card"].get("heads", [])}
    out: Scaling = {}
    for head in card.heads:
        was = saved.get(head.name, {})
        if head.name in scaling and "raw_heads" in state and was.get("target_mean") is not None:
            out[head.name] = (float(was["target_mean"]), float(was["target_std"]))
        if head.name in scaling:
            head.target_mean, head.target_std = out.get(head.name, (None, None))
    return out


def _lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at the last step."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """AMP on CUDA by default (bf16 where supported, else fp16 with a GradScaler)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _cat(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}


def _better(value: float | None, best: float, mode: str) -> bool:
    if value is None:
        return False
    return value > best if mode == "max" else value < best


def _record(epoch: int, terms: dict[str, float], train_metrics: dict[str, float], val: dict[str, float],
            key: str, mode: str, lr: float, secs: float) -> dict[str, Any]:
    gap = None
    if key in train_metrics and key in val:
        gap = train_metrics[key] - val[key] if mode == "max" else val[key] - train_metrics[key]
    return {"epoch": epoch + 1, "lr": lr, "seconds": round(secs, 3), "train_loss": terms.get("loss"),
            "losses": terms, "train": train_metrics, "val": val, "monitor": key, "overfit_gap": gap}


def is_main_process() -> bool:
    """False on DDP ranks other than 0 (which must not write files or print reports)."""
    return int(os.environ.get("RANK", "0")) == 0


def _init_distributed(device_name: str) -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available()) \
            else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


class _Log:
    """Progress bar per epoch, one line per finished epoch, a summary table at the end (rich)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def start(self, cfg: RunConfig, card: ModelCard, device, world, n_train, n_val, start_epoch) -> None:
        if self.enabled:
            what = "resuming" if start_epoch else "training"
            say(f"[bold]{what}[/] {card.arch} ({card.params / 1e6:.2f} M params) on {device}"
                f"{f' x{world} (DDP)' if world > 1 else ''}: {n_train} train / {n_val} val images, "
                f"heads {', '.join(card.head_names)} -> {cfg.run_dir}")

    def epoch_bar(self, epoch: int, epochs: int, steps: int):
        return progress(self.enabled, f"epoch {epoch + 1}/{epochs}", steps, show_loss=True)

    def epoch_line(self, rec: dict[str, Any], key: str) -> None:
        if self.enabled:
            say(f"epoch {rec['epoch']:>3}  loss {rec['train_loss']:.4f}  {key} train {_fmt(rec['train'].get(key))} "
                f"val {_fmt(rec['val'].get(key))}  lr {rec['lr']:.1e}  {rec['seconds']:.1f}s")

    def summary(self, history: list[dict[str, Any]], best: dict[str, Any], run_dir: Path, seconds: float) -> None:
        if not self.enabled or not history:
            return
        from rich.table import Table

        key = best["metric"]
        table = Table(title=f"{run_dir}: best {key} {_fmt(best['value'])} at epoch {best['epoch']} ({seconds:.0f}s)")
        for col in ("epoch", "train loss", f"train {key}", f"val {key}", "val loss", "gap", "lr", "s"):
            table.add_column(col, justify="right")
        for r in history:
            table.add_row(str(r["epoch"]), _fmt(r["train_loss"]), _fmt(r["train"].get(key)), _fmt(r["val"].get(key)),
                          _fmt(r["val"].get("loss")), _fmt(r["overfit_gap"]), f"{r['lr']:.1e}", f"{r['seconds']:.1f}")
        console().print(table)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
