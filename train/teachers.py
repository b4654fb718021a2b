"""Frozen teachers: ``timm:<name>`` and ``open_clip:<arch>[:<pretrained tag>]``.

A :class:`Teacher` maps the *student's* input batch to ``(embedding, {head: logits})``. It
un-normalizes the batch, resizes it to the teacher's input size and normalizes it with the
teacher's mean/std, so teacher and student always see the same augmented view.

Class logits come from, in order of preference for ``teacher_logits="auto"``:
- ``head``: the heads of an edgekit checkpoint (a teacher trained with ``edgekit train``);
- ``probe``: a logistic-regression probe (scikit-learn) fitted on frozen embeddings;
- ``zeroshot``: CLIP only, text-tower embeddings of prompts built from the class names.

There is no network: weights come from a local file (``--teacher-weights``) or, for open_clip
pretrained tags, from a file already in the local open_clip / Hugging Face cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.card import HeadSpec
from edgekit.errors import CheckpointError, ConfigError, DependencyError, first_line, option
from edgekit.train.models import NamedHeads


class ProbeHead(nn.Module):
    """Standardize the embedding, then a linear layer (weights from a fitted logistic regression)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear((emb - self.mean) / self.std)


class ZeroShotHead(nn.Module):
    """CLIP zero-shot classifier: ``scale * normalize(image_emb) @ normalize(text_emb).T``."""

    def __init__(self, text_emb: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("text", F.normalize(text_emb.float(), dim=-1))
        self.scale = float(scale)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(emb.float(), dim=-1) @ self.text.T


class Teacher(nn.Module):
    """A frozen image encoder with optional class heads, fed with the student's input batch.

    Clips (``[N, T, C, H, W]``) go through the encoder frame by frame; ``pool`` (an edgekit clip
    model's own temporal head) or a plain mean turns the frame embeddings into one per clip."""

    def __init__(self, name: str, encoder: nn.Module, embed_dim: int, size: int, mean, std,
                 heads: dict[str, nn.Module] | None = None, logits_from: str = "none", source: str = "",
                 pool: nn.Module | None = None) -> None:
        super().__init__()
        self.name, self.encoder, self.embed_dim = name, encoder, embed_dim
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))  # (height, width)
        self.pool = pool
        self.source = source  # the weights file, for provenance
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))  # 3 or 1 channel
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.heads = NamedHeads(heads or {})
        self.logits_from = logits_from
        self.student_mean = self.student_std = None
        self.params = sum(p.numel() for p in encoder.parameters())
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:  # a teacher is always in eval mode
        return super().train(False)

    def set_student_input(self, mean, std) -> None:
        """Tell the teacher how the student's batches are normalized."""
        self.student_mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.student_std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Student-normalized batch -> teacher-normalized batch at the teacher's size."""
        if self.student_mean is None:
            raise RuntimeError("call set_student_input(mean, std) before using the teacher")
        pix = x * self.student_std.to(x.device) + self.student_mean.to(x.device)
        if tuple(pix.shape[-2:]) != self.size:
            pix = F.interpolate(pix, size=self.size, mode="bilinear", align_corners=False,
                                antialias=pix.shape[-1] > self.size[1])
        return (pix - self.mean) / self.std

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's embedding of a batch; of clips ``[N, T, C, H, W]``, each frame's, averaged
        over the clip (the teacher sees frames independently)."""
        if x.ndim == 5:
            n, t = x.shape[:2]
            frames = self.encoder(self.adapt(x.flatten(0, 1))).float().reshape(n, t, -1)
            return self.pool(frames).float() if self.pool is not None else frames.mean(dim=1)
        return self.encoder(self.adapt(x)).float()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emb = self.embed(x)
        return emb, {name: head(emb).float() for name, head in self.heads.items()}

    # -- logits from probes ---------------------------------------------------------------------
    def fit_probes(self, emb: np.ndarray, targets: dict[str, np.ndarray], heads: list[HeadSpec]) -> None:
        """Fit a logistic-regression probe per classification head on frozen embeddings."""
        from sklearn.linear_model import LogisticRegression

        mean, std = emb.mean(0), emb.std(0) + 1e-6
        z = (emb - mean) / std
        for spec in heads:
            if spec.kind != "classification":
                continue
            y = targets[spec.name]
            valid = y >= 0
            present = np.unique(y[valid])
            clf = LogisticRegression(max_iter=2000, C=1.0)
            clf.fit(z[valid], y[valid])
            w = np.zeros((spec.outputs, emb.shape[1]), np.float32)
            b = np.full((spec.outputs,), -30.0, np.float32)  # classes never seen: ~zero probability
            if len(present) == 2:  # sklearn's binary form: one weight vector for the second class
                w[present[1]], b[present[1]] = clf.coef_[0], clf.intercept_[0]
                b[present[0]] = 0.0
            else:
                w[present], b[present] = clf.coef_, clf.intercept_
            self.heads[spec.name] = ProbeHead(torch.from_numpy(mean), torch.from_numpy(std),
                                              torch.from_numpy(w), torch.from_numpy(b))
        self.logits_from = "probe"
        self.requires_grad_(False)


def load_teacher(spec: str, weights: str | None, heads: list[HeadSpec], logits: str = "auto",
                 size: int | None = None, prompt: str = "a photo of the number {}.", audio=None) -> Teacher:
    """Build a frozen :class:`Teacher` from ``timm:<name>`` or ``open_clip:<arch>[:<tag>]``.

    ``audio`` (the student's :class:`~edgekit.card.InputSpec` when it is a sound model): a plain timm
    weights file is then a 1-channel backbone at the student's spectrogram size."""
    kind, _, name = spec.partition(":")
    if audio is not None and kind != "timm":
        raise ConfigError(f"a sound model's teacher must be a timm:<name> model on spectrograms, not {spec}")
    if kind == "timm" and name:
        return _timm_teacher(name, weights, heads, logits, size, audio)
    if kind == "open_clip" and name:
        return _clip_teacher(name, weights, heads, logits, size, prompt)
    raise ConfigError(f"teacher '{spec}' must be timm:<model name> or open_clip:<arch>[:<pretrained tag>]")


def _timm_teacher(arch: str, weights: str | None, heads: list[HeadSpec], logits: str,
                  size: int | None, audio=None) -> Teacher:
    from edgekit.train.checkpoint import FORMAT, model_from_checkpoint
    from edgekit.train.models import backbone_data_config, create_backbone, embed_dim, load_backbone_weights

    if logits == "zeroshot":
        raise ConfigError("zero-shot logits need a CLIP teacher (open_clip:<arch>)")
    if not weights:
        raise ConfigError(f"teacher timm:{arch} needs weights: pass {option('teacher_weights', 'PATH')} "
                          "(an edgekit checkpoint or a timm state dict), or leave "
                          f"{option('teacher_weights')} out on the embedded data to train one")
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"teacher weights not found: {path}")
    ckpt = None
    if path.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - zip, pickle and unpickler errors all mean "not a weights file"
            raise CheckpointError(f"cannot read teacher weights {path}: {first_line(exc, 160)}") from None
        ckpt = obj if isinstance(obj, dict) and obj.get("format") == FORMAT else None
    if ckpt is not None:  # an edgekit checkpoint: its heads are the teacher's logits
        model, card, _ = model_from_checkpoint(ckpt)
        if card.arch != arch:
            raise ConfigError(f"{option('teacher', 'timm:' + arch)} but {path} holds a {card.arch}")
        if bool(card.input.audio) != (audio is not None):
            what = ("a sound model" if card.input.audio else "an image model", "a sound" if audio else "an image")
            raise ConfigError(f"{path} is {what[0]}: it cannot teach {what[1]} student")
        if logits == "probe" or model.cross:  # cross-task heads read halves of a joint embedding: probe instead
            t_heads, src = {}, "none"
        else:
            t_heads = {h: model.heads[h] for h in model.heads if h in {s.name for s in heads}}
            src = "head" if t_heads else "none"
        if size is not None and list(size if isinstance(size, (list, tuple)) else [size, size]) != card.input.size:
            raise ConfigError(f"{path} was trained at {card.input.size} px; it cannot be used at {size}")
        pool = model.temporal if card.temporal_spec else None  # a clip model pools its frames its own way
        # a sound model's input is its log-mel [n_mels, frames]: the teacher gets the student's own size
        t_size = card.input.size if card.input.audio else card.input.size[0]
        return Teacher(f"timm:{arch}", model.backbone, model.embed_dim, t_size, card.input.mean,
                       card.input.std, heads=t_heads, logits_from=src, source=str(path), pool=pool)
    if audio is not None:  # user weights of a 1-channel sound backbone, at the student's spectrogram size
        backbone = create_backbone(arch, in_chans=1, img_size=audio.size)
        load_backbone_weights(backbone, path)
        return Teacher(f"timm:{arch}", backbone.eval(), embed_dim(backbone), audio.size, audio.mean, audio.std,
                       source=str(path))
    backbone = create_backbone(arch)
    load_backbone_weights(backbone, path)
    cfg = backbone_data_config(backbone)
    return Teacher(f"timm:{arch}", backbone.eval(), embed_dim(backbone), size or cfg["input_size"][-1],
                   cfg["mean"], cfg["std"], source=str(path))


def _clip_teacher(name: str, weights: str | None, heads: list[HeadSpec], logits: str, size: int | None,
                  prompt: str) -> Teacher:
    try:
        import open_clip
    except ImportError as exc:
        raise DependencyError("CLIP teachers need open_clip: pip install 'edgekit[train]'") from exc
    arch, _, tag = name.partition(":")
    if arch not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip architecture '{arch}' (e.g. ViT-B-32; see open_clip.list_models())")
    if size is not None:
        raise ConfigError("a CLIP teacher runs at its own input size; leave the teacher size unset")
    path = Path(weights) if weights else _clip_cached_weights(arch, tag)
    if not path.is_file():
        raise CheckpointError(f"CLIP weights not found: {path}")
    try:
        model = open_clip.create_model(arch, pretrained=str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - open_clip raises several types for a bad file
        raise CheckpointError(f"cannot load {path} as open_clip {arch}: {first_line(exc, 200)}") from None
    visual = model.visual
    image_size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    pp = getattr(visual, "preprocess_cfg", {}) or {}
    mean = pp.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = pp.get("std", open_clip.OPENAI_DATASET_STD)
    encoder = _ClipImageEncoder(model)
    dim = int(model.text_projection.shape[1]) if getattr(model, "text_projection", None) is not None else \
        int(encoder(torch.zeros(1, 3, image_size, image_size)).shape[-1])
    t_heads: dict[str, nn.Module] = {}
    src = "none"
    if logits == "zeroshot":
        tokenizer = open_clip.get_tokenizer(arch)
        for spec in heads:
            if spec.kind != "classification":
                continue
            with torch.no_grad():
                text = model.encode_text(tokenizer([prompt.format(c) for c in spec.classes]))
            t_heads[spec.name] = ZeroShotHead(text, float(model.logit_scale.detach().exp()))
        src = "zeroshot"
    return Teacher(f"open_clip:{arch}", encoder, dim, image_size, mean, std, heads=t_heads, logits_from=src,
                   source=str(path))


class _ClipImageEncoder(nn.Module):
    """The image tower only (the text tower is dropped after building zero-shot heads)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.visual = model.visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _clip_cached_weights(arch: str, tag: str) -> Path:
    """Find an open_clip pretrained tag's file in the local caches without touching the network."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    hint = (f"pass {option('teacher_weights', 'PATH')} (an open_clip checkpoint for {arch}, e.g. "
            "open_clip_pytorch_model.bin or .safetensors)")
    if not tag:
        raise CheckpointError(f"no CLIP weights given for {arch}: {hint}, or name a pretrained tag "
                              f"already in your cache (open_clip:{arch}:<tag>)")
    cfg = get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ConfigError(f"open_clip has no pretrained tag '{tag}' for {arch} (tags: {tags})")
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        for fname in [f for f in (filename, "open_clip_model.safetensors", "open_clip_pytorch_model.bin") if f]:
            found = try_to_load_from_cache(repo, fname)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url", "")
    if url:
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if local.is_file():
            return local
    raise CheckpointError(f"CLIP weights for {arch}:{tag} are not in the local cache and there is no network: {hint}")
