"""A trained checkpoint as the later stages use it: model, card, config, and real images for it.

Compression and export start here. :class:`HeadsAsTuple` is the module they trace: the model's
heads as a tuple in card order, so each head becomes one named output of an exported graph.
:class:`ChannelsLast` takes NHWC input (TFLite's layout). Real validation images (for parity and
fusion checks) and training images (for INT8 calibration) come from the data the checkpoint was
trained on, as recorded in its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgekit.card import ModelCard
from edgekit.config import DataConfig, HeadConfig, missing_paths
from edgekit.errors import CheckpointError, DataError, option
from edgekit.train.checkpoint import model_from_checkpoint


class HeadsAsTuple(nn.Module):
    """``model(x)`` as a tuple of head outputs in card order (one graph output per head)."""

    def __init__(self, model: nn.Module, heads: list[str]) -> None:
        super().__init__()
        self.model, self.heads = model, list(heads)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[h] for h in self.heads)


class ChannelsLast(nn.Module):
    """``module`` fed with NHWC input (what TFLite kernels take; the converter folds the permute).

    Clip models take ``[N, T, H, W, C]``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor):
        return self.module(x.permute(0, 3, 1, 2) if x.ndim == 4 else x.permute(0, 1, 4, 2, 3))


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """An NCHW batch (or ``[N, T, C, H, W]`` clips) in the channels-last layout :class:`ChannelsLast` takes."""
    return (x.permute(0, 2, 3, 1) if x.ndim == 4 else x.permute(0, 1, 3, 4, 2)).contiguous()


@dataclass
class Trained:
    path: Path
    model: nn.Module  # the EdgeModel, eval mode, on CPU
    card: ModelCard
    config: dict[str, Any]  # the run config; ``data.source`` already replaced by a ``data`` override
    _data: Any = field(default=None, repr=False)  # the DataBundle, loaded on first use

    @property
    def source(self) -> str:
        """The checkpoint as provenance records it: an absolute path, so that a file's reference (``check --on``,
        ``diff``, the validation samples) is found from any folder, not only the one the export ran in."""
        return str(Path(self.path).resolve())

    def at_size(self, size: int | list[int] | tuple[int, int]) -> Trained:
        """The model at input ``size`` (px), as export makes its files: the size checked against the
        architecture, the card's input size set, and a dynamic-size ViT's position embedding fixed at that
        size (every target gets a fixed-size graph). Export and ``diff`` (which rebuilds and taps a file's
        model at the file's size) both go through here."""
        from edgekit.train.models import check_input_size, fix_position_embeddings

        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if [h, w] != list(self.card.input.size):
            check_input_size(self.model, (h, w), frames=self.card.input.frames)
            self.card.input.size = [h, w]
        fix_position_embeddings(self.model, self.card.input.size)
        return self

    def wrapped(self) -> HeadsAsTuple:
        return HeadsAsTuple(self.model, self.card.head_names).eval()

    def sample(self, batch: int = 1) -> torch.Tensor:
        h, w = self.card.input.size
        frames, c = self.card.input.frames, self.card.input.channels
        return torch.zeros(batch, frames, c, h, w) if frames else torch.zeros(batch, c, h, w)

    def images(self, split: str = "val", limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, dict]:
        """Preprocessed float32 NCHW images (clips: ``[N, T, C, H, W]``) of ``split`` (the card's eval
        transform) and their targets."""
        from edgekit.train.data import eval_transform, load_data

        if self._data is None:  # decoded and verified once: calibration, fusion checks and parity all come here
            cfg, heads = self.run_config()
            cfg.limit = None
            gone = missing_paths(cfg.source) + ([cfg.val] if cfg.val and missing_paths(cfg.val) else [])
            if gone:
                raise DataError(f"{self.path} was trained on {', '.join(gone)}, which is not found here (moved, or "
                                f"another machine): give its place with {option('data')}")
            self._data = load_data(cfg, heads)
        part = getattr(self._data, split)
        ids = np.arange(len(part))
        if limit is not None and limit < len(part):
            ids = np.sort(np.random.default_rng(seed).choice(len(part), limit, replace=False))
        tf = eval_transform(self.card.input)
        x = np.stack([_tensor(tf, part.load(int(i))) for i in ids]).astype(np.float32)
        return x, {k: v[ids] for k, v in part.targets.items()}

    def run_config(self) -> tuple[DataConfig, list[HeadConfig]]:
        """The data config and head configs the checkpoint was trained with: calibration, fusion checks
        and parity use that data and nothing else. A config that cannot be read is an error naming
        what is wrong (never a silent switch to another dataset)."""
        return data_config(self.config, self.path)


def data_config(config: dict[str, Any], where: Path | str) -> tuple[DataConfig, list[HeadConfig]]:
    """``(data config, head configs)`` of a checkpoint's run config (only those sections are read, so a
    checkpoint of an older edgekit with other fields still works)."""
    from pydantic import ValidationError

    section = "data"
    try:
        data = DataConfig.model_validate(config.get("data") or {})
        section = "model.heads"
        heads = [HeadConfig.model_validate(h) for h in ((config.get("model") or {}).get("heads") or [])]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join([section, *(str(p) for p in err["loc"])])
        raise CheckpointError(f"{where}: its training config cannot be read ({loc}: {err['msg']}), so its data for "
                              f"calibration and verification is unknown; give the data with {option('data')}") \
            from None
    return data, heads


def load_trained(path: str | Path, data: str | None = None) -> Trained:
    """Load an edgekit checkpoint for export (a clear error for anything else). ``data``: the dataset it
    was trained on when it has moved since (``--data``); otherwise the one its config names."""
    model, card, ckpt = model_from_checkpoint(path)
    config = ckpt.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has no training config: cannot find its data for verification")
    if data is not None:
        from edgekit.config import resolve_source

        config = {**config, "data": {**(config.get("data") or {}), "source": resolve_source(data)}}
    data_config(config, path)  # fail now, naming what is wrong, rather than halfway through an export
    return Trained(path=Path(path), model=model.float().eval(), card=card, config=config)


def _tensor(tf, item) -> np.ndarray:
    """An image, or a clip (a list of frames), through the eval transform."""
    if isinstance(item, list):
        return np.stack([tf(frame).numpy() for frame in item])
    return tf(item).numpy()
