"""``edgekit train``: a student (or teacher) trained on labels alone."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import torch

from edgekit import __version__
from edgekit.card import ModelCard
from edgekit.config import RunConfig, load_config
from edgekit.errors import ConfigError
from edgekit.train.data import DataBundle, Transforms, build_transforms, is_clip_source, load_data, warn_skipped
from edgekit.train.data.audio import frontend_of
from edgekit.train.data.labels import CLASS_ORDER
from edgekit.train.data.speech import SPEECH_COMMANDS
from edgekit.train.losses import Mixup, Supervised, TaskLoss
from edgekit.train.models import EdgeModel, backbone_data_config, build_student, check_input_size
from edgekit.train.trainer import FitResult, fit

EMBEDDED_ORDER = {SPEECH_COMMANDS: "the embedded word list's (Google Speech Commands' core words)"}


@dataclass
class Setup:
    """What every training recipe starts from: data, transforms, a freshly seeded model, its card."""

    data: DataBundle
    tfs: Transforms
    model: EdgeModel
    card: ModelCard


def default_name(cfg: RunConfig) -> str:
    source = cfg.data.source
    tag = source if source == "digits" else "+".join(Path(s.rstrip("/")).stem for s in source.split("+")) or "data"
    name = f"{tag}-{cfg.model.arch}"
    if is_clip_source(source):  # runs that differ only in their temporal head must not share a folder
        name += "-cross" if cfg.model.cross_attention else f"-{cfg.model.temporal}"
    return name


def clip_temporal(cfg: RunConfig, data: DataBundle) -> dict | None:
    """The temporal head a clip dataset asks for (None for images)."""
    if not data.frames:
        return None
    cross = None
    if cfg.model.cross_attention:
        cross = [h.name for h in data.heads if h.kind == "classification"][:2]
        if len(cross) != 2:
            raise ConfigError("model.cross_attention needs two classification heads (e.g. verb and noun)")
    return {"frames": data.frames, "pooling": cfg.model.temporal, "cross": cross}


FACE_HEADS = ("age", "gender", "emotion")


def domain_of(cfg: RunConfig, data: DataBundle) -> dict[str, str]:
    """What the images show, and how edgekit knows: declared (``data.domain``), from face heads (age, gender,
    emotion: a face model trained from the user's own CSV), or from the kind of data source."""
    if cfg.data.domain:
        return {"domain": cfg.data.domain, "domain_from": "declared (data.domain)"}
    if data.kind == "faces":
        return {"domain": "faces", "domain_from": "data source (FER2013 / UTKFace)"}
    face = [h.name for h in data.heads if h.name.lower() in FACE_HEADS]
    if face:
        return {"domain": "faces", "domain_from": f"face heads ({', '.join(face)})"}
    return {"domain": data.kind, "domain_from": "data source"}


def prepare(cfg: RunConfig) -> Setup:
    """Load data, build the seeded model and its transforms, and start its model card."""
    if cfg.name is None:
        cfg.name = default_name(cfg)
    data = load_data(cfg.data, cfg.model.heads)
    warn_skipped(data)
    torch.manual_seed(cfg.train.seed)
    temporal = clip_temporal(cfg, data)
    audio = data.kind == "audio"
    size = frontend_of(cfg.data).size if audio else None  # sound: [n_mels, frames], one channel
    model = build_student(cfg.model.arch, data.heads, drop_rate=cfg.model.drop_rate,
                          drop_path_rate=cfg.model.drop_path_rate, weights=cfg.model.weights, temporal=temporal,
                          in_chans=1 if audio else 3, img_size=size)
    if audio:
        from edgekit.train.data.audio_transforms import audio_transforms

        tfs = audio_transforms(cfg.data, data)
    else:
        tfs = build_transforms(cfg.data, data.kind, backbone_data_config(model.backbone))
    check_input_size(model, tfs.input.size if audio else tfs.input.size[0])
    card = ModelCard(name=cfg.name, arch=cfg.model.arch, heads=data.heads, input=tfs.input,
                     provenance={"stage": cfg.stage, "edgekit": __version__, "data": cfg.data.source,
                                 # how its val split was drawn: parity, bench and check measure on that split
                                 # (whole: data.limit is a smoke-run knob, verification takes every val image)
                                 "data_split": {"val": cfg.data.val, "val_fraction": cfg.data.val_fraction},
                                 **domain_of(cfg, data),  # the kiosk warns when a model was not trained on faces
                                 "class_order": EMBEDDED_ORDER.get(cfg.data.source, CLASS_ORDER),
                                 "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                 "seed": cfg.train.seed, "augment": tfs.augment,
                                 "train_samples": len(data.train), "val_samples": len(data.val)})
    if temporal:
        card.input.frames = temporal["frames"]
        card.temporal = {"pooling": temporal["pooling"], "cross": temporal["cross"]}
    return Setup(data=data, tfs=tfs, model=model, card=card)


def train(cfg: RunConfig, *, resume: bool = False, verbose: bool = True, stop_after: int | None = None) -> FitResult:
    """Train ``cfg.model`` on ``cfg.data`` with the task loss; writes ``cfg.run_dir``."""
    s = prepare(cfg)
    task = TaskLoss(s.data.heads, cfg.model.heads, cfg.train.label_smoothing)
    criterion = Mixup(task, cfg.train.mixup) if cfg.train.mixup > 0 else Supervised(task)
    return fit(s.model, criterion, s.data, s.tfs, cfg, s.card, resume=resume, stop_after=stop_after,
               verbose=verbose)


def resume_config(run: str | Path, stage: str) -> RunConfig:
    """The config of a run folder (or of the folder holding ``last.pt``) to resume it."""
    path = Path(run)
    run_dir = path.parent if path.is_file() else path
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise ConfigError(f"cannot resume {run}: {cfg_file} does not exist")
    cfg = load_config(cfg_file, stage=stage)
    if cfg.run_dir.resolve() != run_dir.resolve():  # the folder was moved: write where it is now
        cfg.out = str(run_dir.parent.parent)
        cfg.name = run_dir.name
    return cfg
