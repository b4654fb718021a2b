"""Model factory: any timm backbone with edgekit's named heads on top.

``build_student("mobileone_s0", heads=[...])`` reads like ``timm.create_model``. The backbone is
created with ``num_classes=0`` so it returns its pooled embedding; each head is a linear layer
(with dropout) on that embedding. ``forward`` returns ``{head name: output}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekit.card import HeadSpec
from edgekit.errors import CheckpointError, ConfigError, first_line


class NamedHeads(nn.Module):
    """A ``ModuleDict`` keyed by any string a user can give: ``"class"``, ``"age group"``, ``"3d"``,
    ``"émotion"``, ``"a.b"``.

    Head names are data (folder names, CSV columns), but module attribute names end up as Python
    code when torch.export / FX generate a graph (``self.heads.class`` is a SyntaxError). So each
    module is registered under a derived safe name (``h_class``, ``h_age_group``...), and lookups,
    iteration and ``items()`` use the user's names. State dicts written before this (keyed by the
    user's names) still load.
    """

    def __init__(self, modules: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.key_of: dict[str, str] = {}
        for name, module in (modules or {}).items():
            self[name] = module
        self._register_load_state_dict_pre_hook(self._rename_legacy_keys)

    def __setitem__(self, name: str, module: nn.Module) -> None:
        if name not in self.key_of:
            key = "h_" + re.sub(r"[^0-9A-Za-z_]", "_", str(name))
            if key in self.key_of.values():
                key = f"{key}_{len(self.key_of)}"
            self.key_of[name] = key
        self.add_module(self.key_of[name], module)

    def __getitem__(self, name: str) -> nn.Module:
        return self._modules[self.key_of[name]]

    def __contains__(self, name: object) -> bool:
        return name in self.key_of

    def __iter__(self) -> Iterator[str]:
        return iter(self.key_of)

    def __len__(self) -> int:
        return len(self.key_of)

    def keys(self) -> list[str]:
        return list(self.key_of)

    def items(self) -> list[tuple[str, nn.Module]]:
        return [(name, self._modules[key]) for name, key in self.key_of.items()]

    def _rename_legacy_keys(self, state_dict: dict, prefix: str, *args) -> None:
        for name, key in self.key_of.items():
            old, new = f"{prefix}{name}.", f"{prefix}{key}."
            for k in [k for k in state_dict if k.startswith(old) and not k.startswith(new)]:
                state_dict[new + k[len(old):]] = state_dict.pop(k)


class EdgeModel(nn.Module):
    """A timm backbone producing a pooled embedding, and one linear layer per named head.

    ``in_chans=1`` and ``img_size=(n_mels, frames)`` make a sound model: one log-mel channel, and for
    ViTs a position embedding of that (non-square) size.

    With ``temporal`` (``{"frames": T, "pooling": "mean|attention|transformer", "cross": [a, b]}``)
    it is a clip model: input ``[N, T, 3, H, W]``, the backbone runs on every frame, a temporal
    head (:mod:`edgekit.train.temporal`) turns the frame embeddings into one clip embedding. With
    ``cross``, heads ``a`` and ``b`` read their own halves of a cross-task attention embedding.
    """

    def __init__(self, arch: str, heads: list[HeadSpec], drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, temporal: dict[str, Any] | None = None, in_chans: int = 3,
                 img_size: Sequence[int] | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.head_specs = list(heads)
        self.in_chans = in_chans
        self.backbone = create_backbone(arch, drop_path_rate=drop_path_rate, in_chans=in_chans, img_size=img_size)
        self.embed_dim = self.frame_dim = embed_dim(self.backbone)
        self.temporal_spec = dict(temporal) if temporal else None
        self.cross: list[str] = []
        if temporal:
            from edgekit.train.temporal import CrossTaskAttention, temporal_pool

            frames = int(temporal["frames"])
            self.cross = list(temporal.get("cross") or [])
            if self.cross:
                names = {h.name for h in heads}
                if len(self.cross) != 2 or not set(self.cross) <= names:
                    raise ConfigError(f"cross-task attention needs two of the heads {sorted(names)}, got {self.cross}")
                self.temporal = CrossTaskAttention(self.frame_dim, frames)
            else:
                self.temporal = temporal_pool(temporal.get("pooling", "attention"), self.frame_dim, frames)
            self.embed_dim = self.temporal.out_dim
        widths = {h.name: self.embed_dim for h in heads}
        if self.cross:
            widths.update({name: self.embed_dim // 2 for name in self.cross})
        self.heads = NamedHeads({
            h.name: nn.Sequential(nn.Dropout(drop_rate), nn.Linear(widths[h.name], h.outputs)) for h in heads
        })

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding, ``[N, embed_dim]`` (for a clip model: the clip's)."""
        if self.temporal_spec is None:
            return self.backbone(x)
        n, t = x.shape[:2]
        frames = self.backbone(x.flatten(0, 1)).reshape(n, t, self.frame_dim)
        return self.temporal(frames)

    def forward_heads(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        half = self.embed_dim // 2
        for name, head in self.heads.items():
            if name in self.cross:
                out[name] = head(emb[:, :half] if name == self.cross[0] else emb[:, half:])
            else:
                out[name] = head(emb)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_heads(self.forward_features(x))


def module_path(model: nn.Module, layer: str) -> str:
    """A user's layer name (``heads.age group``) as the module path in the model and its graphs
    (``heads.h_age_group``); other names are already module paths."""
    heads = getattr(model, "heads", None)
    name = layer[len("heads."):] if layer.startswith("heads.") else None
    if isinstance(heads, NamedHeads) and name in heads:
        return "heads." + heads.key_of[name]
    return layer


def create_backbone(arch: str, drop_path_rate: float = 0.0, in_chans: int = 3,
                    img_size: Sequence[int] | None = None) -> nn.Module:
    """``timm.create_model(arch, num_classes=0)``, with clear errors for unknown names.

    ``in_chans`` other than 3 (a spectrogram's 1) goes to timm; ``img_size`` to the models that take it
    (ViTs size their position embedding with it; CNNs take any size and refuse the argument)."""
    import timm

    if not timm.is_model(arch):
        stem = arch.split("_")[0]
        close = timm.list_models(f"{stem}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ConfigError(f"unknown timm model '{arch}'{hint}")
    kwargs: dict[str, Any] = {"drop_path_rate": drop_path_rate} if drop_path_rate > 0 else {}
    if in_chans != 3:
        kwargs["in_chans"] = in_chans
    if img_size is not None:
        try:
            return timm.create_model(arch, pretrained=False, num_classes=0, img_size=tuple(img_size), **kwargs)
        except TypeError:
            pass  # a model without a size of its own (CNNs): built without it
    try:
        return timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"timm model '{arch}' does not accept {', '.join(kwargs)}: {exc}") from exc


def embed_dim(backbone: nn.Module) -> int:
    """Width of the pooled embedding (MobileNetV3/V4 add a conv head after pooling)."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def backbone_data_config(backbone: nn.Module) -> dict:
    """timm's data config (mean, std, interpolation, crop_pct) for a backbone."""
    from timm.data import resolve_data_config

    return resolve_data_config({}, model=backbone)


def build_student(arch: str, heads: list[HeadSpec], drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                  weights: str | Path | None = None, temporal: dict[str, Any] | None = None, in_chans: int = 3,
                  img_size: Sequence[int] | None = None) -> EdgeModel:
    """A student: timm ``arch`` with ``heads``; ``weights`` optionally initialises the backbone.

    ``temporal`` makes it a clip model, ``in_chans``/``img_size`` a sound model (see :class:`EdgeModel`)."""
    model = EdgeModel(arch, heads, drop_rate=drop_rate, drop_path_rate=drop_path_rate, temporal=temporal,
                      in_chans=in_chans, img_size=img_size)
    if weights:
        load_backbone_weights(model.backbone, weights)
    return model


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a timm state dict (``.safetensors`` or a torch file) into ``backbone``.

    The classifier of the file is ignored (edgekit heads replace it). Fails when fewer than half
    of the backbone's tensors are found, which means the file is for another architecture.
    """
    state = read_state_dict(path)
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < len(own) / 2:
        raise CheckpointError(f"{path} does not fit this backbone: {len(usable)} of {len(own)} tensors match")
    backbone.load_state_dict(usable, strict=False)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a torch file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a weights file"
        raise CheckpointError(f"cannot read weights from {path}: {first_line(exc)}") from exc
    if isinstance(obj, dict):
        for key in ("model_state", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: nn.Module, sample: torch.Tensor) -> float:
    """Forward GFLOPs for ``sample`` (one image ``[1, 3, H, W]`` or clip ``[1, T, 3, H, W]``), with
    ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(sample)
    return counter.get_total_flops() / 1e9


def fix_position_embeddings(model: nn.Module, size: Sequence[int]) -> int:
    """Make timm ViTs built with ``dynamic_img_size`` (e.g. ``test_vit``) fixed-size at ``size``: their
    position embedding is resampled once, here, instead of at every forward pass with antialiased
    bicubic interpolation, which LiteRT, CoreML and ExecuTorch cannot lower. The outputs at
    ``size`` are the same. Returns how many embeddings were fixed."""
    from timm.layers import Format, resample_abs_pos_embed
    from timm.models.vision_transformer import VisionTransformer

    fixed = 0
    for m in model.modules():
        if not (isinstance(m, VisionTransformer) and m.dynamic_img_size and m.pos_embed is not None):
            continue
        pe = m.patch_embed
        grid = tuple(pe.dynamic_feat_size(tuple(size)))
        with torch.no_grad():
            pos = resample_abs_pos_embed(m.pos_embed.detach(), new_size=grid, old_size=pe.grid_size,
                                         num_prefix_tokens=0 if m.no_embed_class else m.num_prefix_tokens)
        m.pos_embed = nn.Parameter(pos, requires_grad=m.pos_embed.requires_grad)
        m.dynamic_img_size = False
        pe.flatten, pe.output_fmt, pe.strict_img_size = True, Format.NCHW, True
        pe.img_size, pe.grid_size, pe.num_patches = tuple(size), grid, grid[0] * grid[1]
        fixed += 1
    return fixed


def check_input_size(model: nn.Module, size: int | Sequence[int], frames: int | None = None) -> None:
    """Refuse an input size the architecture cannot take, before anything is trained or exported.

    The last stage may run on a 1x1 map (a 16 px input to a stride-32 CNN is a fair small-input
    setting), but every earlier stage must see real pixels: below the stride of the second-to-last
    stage, the features are padding artifacts. Some models take one size only (ViTs with a fixed
    position embedding): a forward pass at ``size`` in eval mode (BatchNorm statistics untouched)
    catches those.
    """
    backbone = getattr(model, "backbone", model)
    arch = getattr(model, "arch", type(backbone).__name__)
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    shown = f"{h}" if h == w else f"{h}x{w}"
    if min(h, w) < 1:
        raise ConfigError(f"input size must be a positive number of pixels, got {shown}")
    info = getattr(backbone, "feature_info", None) or []
    strides = sorted({f.get("reduction") for f in info if isinstance(f, dict) and f.get("reduction")})
    least = strides[-2] if len(strides) > 1 else (strides[0] if strides else 1)
    if min(h, w) < least:
        raise ConfigError(f"input size {shown} px is too small for {arch} (strides {strides}): its stages before the "
                          f"last would see no real pixels; use at least {least} px")
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, getattr(model, "in_chans", 3), h, w))
    except Exception as exc:  # noqa: BLE001 - timm raises assertions, shape and runtime errors alike
        raise ConfigError(f"{arch} cannot take {shown} px input: {first_line(exc, 200)}") from None
    finally:
        backbone.train(was_training)
