"""Knowledge distillation: ``L = alpha * L_feat + beta * L_resp + gamma * L_task``.

- ``L_feat``: the student's embedding, projected to the teacher's width by a linear layer, against
  the teacher's embedding (``cosine``: mean of 1 - cos; ``mse``: mean squared error).
- ``L_resp``: ``KL(softmax(t / T) || softmax(s / T)) * T^2`` per classification head the teacher
  has logits for (Hinton et al.); for a multilabel head, the binary KL of each class's softened
  sigmoid (:func:`multilabel_response_loss`); averaged over those heads.
- ``L_task``: the usual per-head task loss on the labels.

The teacher is frozen and runs once per (sample, augmentation view): before the first epoch every
sample is rendered in ``views`` fixed augmentations (seeded by ``(seed, index, view)``, see
:func:`edgekit.train.data.view_seed`), the teacher's outputs on them are cached, and each epoch
the student sees one of those views per sample. Epochs therefore cost about what training the
student alone costs. The cache is saved in the run folder, so ``--resume`` does not recompute it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.atomic import write_json, write_with
from edgekit.card import HeadSpec
from edgekit.config import RunConfig
from edgekit.console import progress, say
from edgekit.errors import ConfigError, either, option
from edgekit.runs import finished
from edgekit.train.data import ImageDataset, Split, make_loader, view_seed
from edgekit.train.device import resolve_device
from edgekit.train.losses import TaskLoss
from edgekit.train.metrics import compute_metrics, monitor_key, per_sound
from edgekit.train.models import count_params
from edgekit.train.teachers import Teacher, load_teacher

# -- the loss terms ------------------------------------------------------------------------------


def feature_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Distance between the projected student embedding and the teacher embedding, batch mean."""
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(student.float(), teacher.float())
    raise ValueError(f"unknown feature loss '{kind}'")


def response_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(p_teacher || p_student) * T^2`` with both distributions softened by ``T``, batch mean."""
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    p_t = F.softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * (t * t)


def multilabel_response_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                             temperature: float) -> torch.Tensor:
    """Multilabel KD: each class is its own yes/no event (a softmax would make tags compete), so per class the
    binary KL of the softened sigmoids ``q = sigmoid(t / T)``, ``p = sigmoid(s / T)``, summed over classes,
    batch mean, times ``T^2``."""
    t = temperature
    s, q = student_logits.float() / t, torch.sigmoid(teacher_logits.float() / t)
    # KL = BCE(p; q) - H(q): the entropy term does not depend on the student, but keeps the loss 0 at p = q
    bce = F.binary_cross_entropy_with_logits(s, q, reduction="none")
    entropy = F.binary_cross_entropy(q, q, reduction="none")
    return (bce - entropy).sum(dim=-1).mean() * (t * t)


# -- the teacher cache ---------------------------------------------------------------------------


class TeacherCache:
    """Teacher embedding and logits for every (sample, view): ``emb[N, K, D]``, ``logits[h][N, K, C]``."""

    def __init__(self, emb: torch.Tensor, logits: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.emb, self.logits, self.meta = emb, logits, meta

    def lookup(self, index: torch.Tensor, view: torch.Tensor, device: torch.device):
        i, v = index.cpu().long(), view.cpu().long()
        if bool((v < 0).any()):
            raise RuntimeError("distillation batches must carry a fixed view index (views >= 1)")
        return (self.emb[i, v].to(device, non_blocking=True),
                {h: t[i, v].to(device, non_blocking=True) for h, t in self.logits.items()})

    @classmethod
    @torch.no_grad()
    def build(cls, teacher: Teacher, split: Split, transform, heads: list[HeadSpec], views: int, seed: int,
              batch_size: int, workers: int, device: torch.device, logits: str, meta: dict[str, Any],
              verbose: bool = True) -> TeacherCache:
        """Run the teacher once over every (sample, view); fit probes first if it has no heads."""
        n = len(split)
        keys = [(i, v, view_seed(seed, i, v)) for i in range(n) for v in range(views)]
        loader = make_loader(ImageDataset(split, transform), batch_size, keys, workers)
        teacher.to(device)
        emb = torch.zeros(n, views, teacher.embed_dim)
        with progress(verbose, "teacher pass", len(loader)) as advance:
            for batch in loader:
                e = teacher.embed(batch["image"].to(device)).cpu()
                emb[batch["index"], batch["view"]] = e
                advance()
        cls_heads = [h for h in heads if h.kind == "classification"]
        if logits in ("auto", "probe") and any(h.name not in teacher.heads for h in cls_heads):
            flat = emb.reshape(n * views, -1).numpy()
            targets = {h.name: np.repeat(split.targets[h.name], views) for h in cls_heads}
            teacher.fit_probes(flat, targets, cls_heads)
        elif logits == "head" and not teacher.heads:
            raise ConfigError(f"teacher {teacher.name} has no heads for these labels; "
                              f"use {option('teacher_logits', 'probe')}")
        teacher_logits = {}
        for name, head in teacher.heads.items():
            head_on = head.to(device)
            flat = emb.reshape(n * views, -1)
            out = torch.cat([head_on(flat[i:i + 4096].to(device)).cpu() for i in range(0, len(flat), 4096)])
            teacher_logits[name] = out.reshape(n, views, -1)
        return cls(emb, teacher_logits, {**meta, "logits_from": teacher.logits_from})

    def save(self, path: Path) -> None:
        data = {"meta": self.meta, "emb": self.emb, "logits": self.logits}
        write_with(path, lambda fh: torch.save(data, fh))

    @classmethod
    def load(cls, path: Path, meta: dict[str, Any]) -> TeacherCache | None:
        """The cache saved at ``path`` if it was made with the same ``meta``, else ``None``."""
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a broken cache is recomputed
            return None
        saved = dict(data.get("meta", {}))
        saved.pop("logits_from", None)
        if saved != meta:
            return None
        return cls(data["emb"], data["logits"], data["meta"])


# -- the criterion -------------------------------------------------------------------------------


class DistillLoss(nn.Module):
    """The distillation criterion: ``(model, batch) -> (loss, terms, outputs)``."""

    def __init__(self, task: TaskLoss, cache: TeacherCache, student_dim: int, alpha: float = 0.5,
                 beta: float = 1.0, gamma: float = 1.0, temperature: float = 4.0,
                 feature_kind: str = "cosine") -> None:
        super().__init__()
        self.task, self.cache = task, cache
        self.proj = nn.Linear(student_dim, cache.emb.shape[-1])  # student embedding -> teacher width
        self.alpha, self.beta, self.gamma, self.temperature = alpha, beta, gamma, temperature
        self.feature_kind = feature_kind

    def forward(self, model: nn.Module, batch: dict[str, Any]):
        emb = model.forward_features(batch["image"])
        outputs = model.forward_heads(emb)
        t_emb, t_logits = self.cache.lookup(batch["index"], batch["view"], emb.device)
        l_feat = feature_loss(self.proj(emb), t_emb, self.feature_kind)
        resp = [(multilabel_response_loss if self.task.kinds.get(h) == "multilabel" else response_loss)(
            outputs[h], t_logits[h], self.temperature) for h in t_logits]
        l_resp = torch.stack(resp).mean() if resp else emb.sum() * 0.0
        l_task, task_terms = self.task(outputs, batch["targets"])
        total = self.alpha * l_feat + self.beta * l_resp + self.gamma * l_task
        return total, {"feat": l_feat, "resp": l_resp, "task": l_task, **task_terms}, outputs


# -- the recipe ----------------------------------------------------------------------------------


@dataclass
class DistillReport:
    run_dir: Path
    teacher: dict[str, Any]
    student: dict[str, Any]
    baseline: dict[str, Any] | None
    monitor: str
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "teacher": self.teacher, "student": self.student,
                "baseline": self.baseline, "monitor": self.monitor, "seconds": self.seconds,
                "compression": self.teacher["params"] / self.student["params"]}


def distill(cfg: RunConfig, *, resume: bool = False, verbose: bool = True,
            stop_after: int | None = None) -> DistillReport | None:
    """Distill ``cfg.distill.teacher`` into ``cfg.model.arch`` on ``cfg.data``; see the module doc.

    Under torchrun every rank trains; only rank 0 writes files and gets the report (others: None).
    """
    from edgekit.train.supervised import prepare, train
    from edgekit.train.trainer import fit, is_main_process

    main = is_main_process()

    d = cfg.distill
    if d is None:
        raise ConfigError("distill needs a distill: section")
    if cfg.train.mixup > 0:
        raise ConfigError(f"{option('mixup', flag='--set train.mixup')} is for edgekit train: distillation's "
                          "teacher cache holds the teacher's outputs on unmixed views")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    s = prepare(cfg)
    if d.unlabeled:
        add_unlabeled(s, cfg)
    device = resolve_device(cfg.train.device)

    weights = d.teacher_weights
    teacher_run = None
    if weights is None and d.teacher.startswith("timm:"):
        teacher_run = ensure_teacher(cfg, verbose=verbose)
        weights = str(teacher_run / "best.pt")
    seconds["teacher_train"] = time.perf_counter() - t0
    teacher = load_teacher(d.teacher, weights, s.data.heads, d.teacher_logits, prompt=d.prompt,
                           audio=s.tfs.input if s.tfs.input.audio else None)
    teacher.set_student_input(s.tfs.input.mean, s.tfs.input.std)

    t1 = time.perf_counter()
    meta = {"teacher": d.teacher, "weights": _file_id(weights), "views": d.views, "seed": cfg.train.seed,
            "n": len(s.data.train), "data": cfg.data.source, "imgsz": cfg.data.imgsz, "logits": d.teacher_logits,
            "augment": json.dumps(s.tfs.augment, sort_keys=True),
            "audio": json.dumps(cfg.data.audio.model_dump() if cfg.data.audio else None, sort_keys=True)}
    cache_path = cfg.run_dir / "teacher_cache.pt"
    cache = TeacherCache.load(cache_path, meta) if resume else None
    if cache is None:
        cache = TeacherCache.build(teacher, s.data.train, s.tfs.train, s.data.heads, d.views, cfg.train.seed,
                                   cfg.train.batch_size, cfg.data.workers, device, d.teacher_logits, meta,
                                   verbose=verbose and main)
        if main:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            cache.save(cache_path)
    else:  # the probes are part of the teacher: rebuild them from the cached embeddings
        teacher_heads_from_cache(teacher, cache, s.data)
    seconds["teacher_cache"] = time.perf_counter() - t1
    teacher_val = evaluate_teacher(teacher, s.data.val, s.tfs.eval, s.data.heads, cfg.train.batch_size,
                                   cfg.data.workers, device, aggregate=(s.tfs.input.audio or {}).get("aggregate"))

    task = TaskLoss(s.data.heads, cfg.model.heads, cfg.train.label_smoothing)
    criterion = DistillLoss(task, cache, s.model.embed_dim, d.alpha, d.beta, d.gamma, d.temperature, d.feature_loss)
    s.card.provenance.update({"teacher": d.teacher, "teacher_weights": weights,
                              "teacher_logits": cache.meta["logits_from"],
                              "alpha": d.alpha, "beta": d.beta, "gamma": d.gamma, "temperature": d.temperature,
                              "views": d.views})
    t2 = time.perf_counter()
    result = fit(s.model, criterion, s.data, s.tfs, cfg, s.card, resume=resume, views=d.views,
                 stop_after=stop_after, verbose=verbose)
    seconds["distill"] = time.perf_counter() - t2
    key, _ = monitor_key(s.data.heads, cfg.train.monitor)

    baseline = None
    if d.baseline and stop_after is None:
        t3 = time.perf_counter()
        base_cfg = baseline_config(cfg)
        base = train(base_cfg, verbose=verbose)
        seconds["baseline"] = time.perf_counter() - t3
        baseline = {"run_dir": str(base.run_dir), "val": base.best["metrics"], "best_epoch": base.best["epoch"],
                    "epoch_seconds": base.epoch_seconds}
    seconds["total"] = time.perf_counter() - t0
    report = DistillReport(
        run_dir=cfg.run_dir, monitor=key, seconds=seconds, baseline=baseline,
        teacher={"name": d.teacher, "weights": weights, "params": teacher.params, "val": teacher_val,
                 "logits_from": cache.meta["logits_from"], "embed_dim": teacher.embed_dim,
                 "trained_here": teacher_run is not None},
        student={"arch": cfg.model.arch, "params": count_params(result.model), "val": result.best["metrics"],
                 "best_epoch": result.best["epoch"], "epoch_seconds": result.epoch_seconds,
                 "run_dir": str(result.run_dir)})
    if not main:
        return None
    write_json(cfg.run_dir / "distill.json", report.to_dict())
    return report


def add_unlabeled(s, cfg: RunConfig) -> None:
    """Give the student images it sees through the teacher only (``distill.unlabeled``): the training images
    outside ``data.fraction`` (``rest``) or a folder of images, with no labels, so the task loss stays on the
    labelled share while the feature and response losses see every image. The card records both counts."""
    from edgekit.train.data import load_data
    from edgekit.train.data.split import concat_splits, missing_targets

    d, labelled = cfg.distill, s.data.train
    if d.unlabeled == "rest":
        if cfg.data.fraction is None or cfg.data.fraction >= 1.0:
            raise ConfigError(f"{option('unlabeled', 'rest')} is the training images outside the labelled share: "
                              f"set data.fraction below 1 ({either('--set data.fraction=0.1', 'data.fraction=0.1')})")
        full = load_data(cfg.data.model_copy(update={"fraction": None}), cfg.model.heads).train
        have = set(labelled.names)
        rest = full.subset(np.asarray([i for i, n in enumerate(full.names) if n not in have], dtype=np.int64))
    else:
        if s.data.frames or s.data.kind == "audio":
            raise ConfigError(f"{option('unlabeled')}: a folder of unlabelled images is for image models, not "
                              f"{'clips' if s.data.frames else 'sound'} (use 'rest' with data.fraction)")
        rest = unlabeled_folder(Path(d.unlabeled), cfg.data.skip_bad)
    rest.targets = missing_targets(rest, s.data.heads)
    s.data.train = concat_splits(labelled, rest)
    s.card.provenance.update(train_samples=len(labelled), unlabeled_samples=len(rest),
                             unlabeled=d.unlabeled)


def unlabeled_folder(folder: Path, skip_bad: bool = False) -> Split:
    """Every image under ``folder`` (recursively, hidden entries left out), checked up front like labelled ones."""
    from edgekit.train.data.labels import IMAGE_EXTENSIONS, file_split, verify_images

    if not folder.is_dir():
        raise ConfigError(f"{option('unlabeled')}: {folder} is not a folder (give 'rest' or a folder of images)")
    paths = sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not paths:
        raise ConfigError(f"{option('unlabeled')}: {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    paths, _ = verify_images(paths, [], skip_bad, [])
    return file_split(paths, {})


def baseline_config(cfg: RunConfig) -> RunConfig:
    """The same student, data, epochs and seed, trained by ``edgekit train`` without a teacher."""
    base = cfg.model_copy(deep=True)
    base.stage, base.distill = "train", None
    base.name = f"{cfg.name.removesuffix('-unl')}-nokd"  # KD with unlabelled images shares the labelled baseline
    return base


def ensure_teacher(cfg: RunConfig, verbose: bool = True) -> Path:
    """Train the ``timm:`` teacher on the same data (once: reused while its config is unchanged).

    The teacher sees the whole training split: ``data.fraction`` (the labelled share the student
    and its no-KD baseline see) is dropped, so a small-data student learns from a teacher that had
    all of it, the regime where distillation matters.
    """
    from edgekit.train.supervised import default_name, train

    d = cfg.distill
    arch = d.teacher.split(":", 1)[1]
    t_cfg = copy.deepcopy(cfg)
    t_cfg.distill, t_cfg.stage = None, "teacher"
    t_cfg.data.fraction = None  # the full split, whatever share the student gets
    t_cfg.model.arch, t_cfg.model.drop_path_rate = arch, 0.0
    # a clip teacher sees frames independently; its outputs are averaged over the clip
    t_cfg.model.temporal, t_cfg.model.cross_attention = "mean", False
    t_cfg.train.epochs = d.teacher_epochs
    t_cfg.name = None
    digest = hashlib.sha1(t_cfg.to_yaml().encode()).hexdigest()[:8]
    t_cfg.name = f"{default_name(t_cfg)}-{digest}"  # shared by every student distilled on this data
    if finished(t_cfg):
        if verbose:
            say(f"teacher: reusing {t_cfg.run_dir / 'best.pt'}")
        return t_cfg.run_dir
    if verbose:
        say(f"teacher: no {option('teacher_weights')} given, training {arch} on {cfg.data.source} first")
    train(t_cfg, verbose=verbose)
    return t_cfg.run_dir


def teacher_heads_from_cache(teacher: Teacher, cache: TeacherCache, data) -> None:
    if cache.meta.get("logits_from") == "probe":
        n, views, dim = cache.emb.shape
        cls_heads = [h for h in data.heads if h.kind == "classification"]
        targets = {h.name: np.repeat(data.train.targets[h.name], views) for h in cls_heads}
        teacher.fit_probes(cache.emb.reshape(n * views, dim).numpy(), targets, cls_heads)


@torch.no_grad()
def evaluate_teacher(teacher: Teacher, split: Split, transform, heads: list[HeadSpec], batch_size: int,
                     workers: int, device: torch.device, aggregate: str | None = None) -> dict[str, float]:
    """Val metrics of the teacher's logits (the heads it has); per sound for sound sources."""
    if not teacher.heads:
        return {}
    teacher.to(device)
    outs: dict[str, list[np.ndarray]] = {h: [] for h in teacher.heads}
    for batch in make_loader(ImageDataset(split, transform), batch_size, None, workers):
        _, logits = teacher(batch["image"].to(device))
        for h, v in logits.items():
            outs[h].append(v.cpu().numpy())
    specs = [h for h in heads if h.name in teacher.heads]
    outputs = {h: np.concatenate(v) for h, v in outs.items()}
    targets = {h.name: split.targets[h.name] for h in specs}
    if split.groups is not None:
        outputs, targets = per_sound(outputs, targets, split.groups, aggregate or "mean")
    return compute_metrics(specs, outputs, targets)


def print_report(report: DistillReport) -> None:
    """Teacher vs student: params, compression, val metric, KD vs no-KD."""
    from rich.table import Table

    key = report.monitor
    r = report.to_dict()
    table = Table(title=f"distillation: {report.teacher['name']} -> {report.student['arch']}")
    for col in ("model", "params", f"val {key}", "notes"):
        table.add_column(col, justify="right" if col != "model" else "left")
    t, s, b = report.teacher, report.student, report.baseline
    table.add_row(f"teacher {t['name']}", f"{t['params'] / 1e6:.2f} M", _fmt(t["val"].get(key)),
                  f"logits: {t['logits_from']}")
    table.add_row(f"student {s['arch']} (KD)", f"{s['params'] / 1e6:.2f} M", _fmt(s["val"].get(key)),
                  f"compression {r['compression']:.1f}x")
    if b is not None:
        delta = (s["val"].get(key) or 0.0) - (b["val"].get(key) or 0.0)
        table.add_row(f"student {s['arch']} (no KD)", f"{s['params'] / 1e6:.2f} M", _fmt(b["val"].get(key)),
                      f"KD - no KD: {delta * 100:+.2f} points")
    say(table)
    secs = report.seconds
    say("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in secs.items()) + f"  ->  {report.run_dir}")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _file_id(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}"
