"""Run configuration: YAML files validated into pydantic models.

A run folder's ``config.yaml`` is the fully resolved config of that run, so
``edgekit train --config runs/train/NAME/config.yaml`` reruns it. Flags override the file, and
``--set section.key=value`` overrides anything (the value is parsed as YAML).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgekit.errors import ConfigError, first_line


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(_Strict):
    """Training augmentation, passed to ``timm.data.create_transform``.

    ``None`` means "the data source's default": no flips and no colour jitter for the embedded
    digits (a mirrored 2 is not a 2), timm-like defaults for user image folders.
    """

    enabled: bool = True
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] | None = None
    hflip: float | None = None
    vflip: float | None = None
    color_jitter: float | None = None
    auto_augment: str | None = None
    re_prob: float | None = None


class AudioConfig(_Strict):
    """Sound sources: the log-mel frontend (edgekit.runtime.logmel, recorded in the model card) and
    SpecAugment's masks (training only: ``*_masks`` masks of up to ``*_mask`` mel bands / frames each)."""

    sample_rate: int = Field(16000, ge=1000)
    window_s: float = Field(0.96, gt=0.0)  # seconds the model sees (random crops in training)
    hop_s: float = Field(0.48, gt=0.0)  # seconds between windows at evaluation and inference
    n_fft: int = Field(512, ge=16)
    win_length: int = Field(400, ge=1)
    hop_length: int = Field(160, ge=1)
    n_mels: int = Field(64, ge=1)
    fmin: float = Field(50.0, ge=0.0)
    fmax: float | None = None  # None: sample_rate / 2
    mel_scale: Literal["slaney", "htk"] = "slaney"
    log_offset: float = Field(1e-6, gt=0.0)
    aggregate: Literal["mean", "max"] = "mean"  # window logits -> one per sound
    freq_masks: int = Field(2, ge=0)
    freq_mask: int = Field(8, ge=0)
    time_masks: int = Field(2, ge=0)
    time_mask: int = Field(16, ge=0)


class DataConfig(_Strict):
    source: str = "digits"  # "digits", an ImageFolder root, or a CSV file
    val: str | None = None  # optional separate validation CSV
    imgsz: int = Field(32, ge=8, le=4096)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # CSV without a val file: stratified split
    skip_bad: bool = False
    limit: int | None = Field(None, ge=2)  # use at most this many train (and limit//4 val) samples: smoke runs
    fraction: float | None = Field(None, gt=0.0, le=1.0)  # keep this share of the train split (sample efficiency)
    frames: int = Field(8, ge=1, le=64)  # clip sources: frames per clip
    sampling: Literal["uniform", "random"] = "uniform"  # clip frames: segment centres, or random in training
    workers: int = Field(0, ge=0)
    # what the images show, for apps that care (the kiosk warns about a model not trained on faces): "faces",
    # or None to infer it (FER2013/UTKFace sources, or face heads: age, gender, emotion)
    domain: str | None = None
    mean: tuple[float, float, float] | None = None  # default: the backbone's data config
    std: tuple[float, float, float] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    audio: AudioConfig | None = None  # sound sources (filled with the defaults when the source is audio)


HeadKind = Literal["classification", "multilabel", "regression"]


class HeadConfig(_Strict):
    name: str
    kind: HeadKind = "classification"
    column: str | None = None  # CSV column holding the labels (default: the head name)
    loss: Literal["ce", "bce", "l1", "mse", "smooth_l1"] | None = None  # default from kind
    weight: float = Field(1.0, ge=0.0)
    label_smoothing: float | None = None  # default: train.label_smoothing
    threshold: float = 0.5  # multilabel decision threshold


class ModelConfig(_Strict):
    arch: str = "mobileone_s0"
    heads: list[HeadConfig] = Field(default_factory=list)  # empty: one classification head from the data
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)
    weights: str | None = None  # local file to initialise the backbone (timm state dict)
    temporal: Literal["mean", "attention", "transformer"] = "attention"  # clip models: frame embeddings -> one
    cross_attention: bool = False  # clip models with two classification heads: bidirectional cross-task attention


class TrainConfig(_Strict):
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-3, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_epochs: float = Field(1.0, ge=0.0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, ge=0.0)  # 0 disables clipping
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    amp: Literal["auto", "on", "off"] = "auto"  # auto: on for cuda/mps, off on cpu
    device: str = "auto"
    seed: int = 0
    save_every: int = Field(5, ge=0)  # write epoch_N.pt every N epochs (0: never)
    monitor: str = "auto"  # val metric choosing best.pt, e.g. "digit/acc" or "loss"
    threads: int | None = None  # torch intra-op threads on cpu
    mixup: float = Field(0.0, ge=0.0)  # alpha of mixup's Beta(alpha, alpha) (0: off); inputs and targets mixed


class DistillConfig(_Strict):
    teacher: str = "timm:resnet18"  # timm:<name> or open_clip:<arch>[:<pretrained tag>]
    teacher_weights: str | None = None  # edgekit checkpoint, timm/open_clip weights file
    teacher_logits: Literal["auto", "head", "probe", "zeroshot"] = "auto"
    teacher_epochs: int = Field(8, ge=1)  # when edgekit trains the teacher itself
    alpha: float = Field(0.5, ge=0.0)  # feature loss weight
    beta: float = Field(1.0, ge=0.0)  # response (soft label) loss weight
    gamma: float = Field(1.0, ge=0.0)  # task (hard label) loss weight
    temperature: float = Field(4.0, gt=0.0)
    feature_loss: Literal["cosine", "mse"] = "cosine"
    views: int = Field(4, ge=1)  # fixed augmentation views per sample whose teacher outputs are cached
    prompt: str = "a photo of the number {}."  # CLIP zero-shot prompt template
    baseline: bool = True  # also train the student without KD, same budget, for comparison
    # Images the student sees through the teacher only (its task loss stays on the labelled ones): "rest" = the
    # training images outside data.fraction, or a folder of unlabelled images. The no-KD baseline never sees them.
    unlabeled: str | None = None


class RunConfig(_Strict):
    name: str | None = None
    stage: Literal["train", "distill", "teacher", "qat"] = "train"
    out: str = "runs"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or "/" in v or v.startswith(".")):
            raise ValueError("name must be a plain folder name")
        return v

    # -- I/O ------------------------------------------------------------------------------------
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.stage / (self.name or "default")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None, stage: str = "train") -> RunConfig:
    """Read a YAML config (or the defaults), apply flag overrides and ``--set k=v`` items."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{p} is not a YAML text file (it is binary; a run's config is its config.yaml, "
                              "not a checkpoint)") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML: {first_line(exc)}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p} must hold a mapping of sections (data:, model:, train:, ...)")
        data = loaded or {}
    data.setdefault("stage", stage)
    if stage == "distill" and data.get("distill") is None:
        data["distill"] = {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _assign(data, key, value)
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot parse value '{raw}'") from exc
        _assign(data, key.strip(), value)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        raise ConfigError(f"config {where}: {err['msg']}") from None
    _resolve_paths(cfg)
    return cfg


# data.source names that are datasets inside edgekit, never paths
EMBEDDED_SOURCES = ("digits", "moving_digits", "speech_commands")


def resolve_source(source: str) -> str:
    """A ``data.source`` as it is stored in a run's config: a folder or file given relative to the
    current directory (``--data ../lfw``) becomes absolute, so the run's later stages (export,
    quantize, reparam) find it from any folder; embedded names and ``a+b`` parts are kept or resolved
    part by part. A path that does not exist is kept as given (loading it says it is missing)."""
    if source in EMBEDDED_SOURCES:
        return source
    path = Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    if "+" in source:
        return "+".join(resolve_source(part.strip()) if part.strip() else part for part in source.split("+"))
    return source


def missing_paths(source: str) -> list[str]:
    """The paths a ``data.source`` names that do not exist here (empty for embedded names)."""
    if source in EMBEDDED_SOURCES or Path(source).exists():
        return []
    parts = [p.strip() for p in source.split("+")] if "+" in source else [source]
    return [p for p in parts if p not in EMBEDDED_SOURCES and not Path(p).exists()]


def _resolve_paths(cfg: RunConfig) -> None:
    """Make the config's file paths absolute (see :func:`resolve_source`)."""
    cfg.data.source = resolve_source(cfg.data.source)
    if cfg.data.val:
        cfg.data.val = resolve_source(cfg.data.val)
    if cfg.model.weights:
        cfg.model.weights = resolve_source(cfg.model.weights)
    if cfg.distill is not None and cfg.distill.teacher_weights:
        cfg.distill.teacher_weights = resolve_source(cfg.distill.teacher_weights)
    if cfg.distill is not None and cfg.distill.unlabeled not in (None, "rest"):
        cfg.distill.unlabeled = resolve_source(cfg.distill.unlabeled)


def _assign(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is not a section")
        node = nxt
    node[parts[-1]] = value


def parse_choices(text: str, choices: tuple[str, ...], flag: str) -> list[str]:
    """``"all"`` or a comma list of ``choices`` (e.g. ``--target onnx,tflite``), in the order given."""
    names = list(choices) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]
    if not names or any(n not in choices for n in names):
        raise ConfigError(f"{flag} must be {', '.join(choices)}, all or a comma list of them; got '{text}'")
    return names


def parse_heads(spec: str) -> list[dict[str, Any]]:
    """Parse ``"age:regression,gender,emotion:classification"`` into head configs."""
    heads = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ConfigError(f"--heads item '{item}' must be name[:kind[:loss]]")
        head: dict[str, Any] = {"name": parts[0]}
        if len(parts) > 1:
            head["kind"] = parts[1]
        if len(parts) > 2:
            head["loss"] = parts[2]
        heads.append(head)
    if not heads:
        raise ConfigError("--heads is empty")
    return heads


def parse_assume(imgsz: int | None = None, mean: str | None = None, std: str | None = None, bgr: bool = False,
                 labels: str | Path | None = None, layout: str | None = None,
                 shapes: list[str] | None = None) -> dict[str, Any]:
    """The flags that describe a model file without a card (``edgekit predict`` / ``bench``) as the fields of
    ``edgekit.runtime.foreign.Assume``: ``--mean 0.5,0.5,0.5``, ``--shape 1,3,224,224`` (the first input)
    or ``--shape image:1,3,224,224`` (the input named ``image``; the last ``:`` splits, so ``input:0:1,3``
    names ``input:0``). The runtime checks the values against the file."""
    return {"imgsz": imgsz, "mean": _floats(mean, "--mean"), "std": _floats(std, "--std"), "bgr": bgr,
            "labels": None if labels is None else str(labels), "layout": layout, "shapes": parse_shapes(shapes)}


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be 3 comma-separated numbers (one per channel), got '{text}'") from None
    if len(values) != 3:
        raise ConfigError(f"{flag} must be 3 comma-separated numbers (one per channel), got '{text}'")
    return values


def parse_shapes(items: list[str] | None) -> dict[str, list[int]]:
    """``["1,3,224,224"]`` -> ``{"": [1, 3, 224, 224]}``; ``["image:1,3,16,16"]`` -> ``{"image": [...]}``."""
    shapes: dict[str, list[int]] = {}
    for item in items or []:
        name, _, dims = item.strip().rpartition(":")
        try:
            shape = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError:
            shape = []
        if not shape or min(shape) < 1:
            raise ConfigError(f"--shape must be [NAME:]D0,D1,... with positive integers, got '{item}'")
        if name in shapes:
            raise ConfigError(f"--shape given twice for {('input ' + repr(name)) if name else 'the first input'}")
        shapes[name] = shape
    return shapes
