"""edgekit checkpoints: one ``torch.save`` dict, written atomically, read with ``weights_only``.

Layout: ``{"format": "edgekit-checkpoint", "version": 1, "card": <model card dict>,
"config": <run config dict>, "model_state": <EdgeModel state dict>, "epoch": int, ...}`` plus the
training state (optimizer, scheduler, scaler, extra trainable modules, history) in ``last.pt``
and ``epoch_N.pt``. Only plain containers and tensors go in, so ``weights_only=True`` loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgekit.atomic import write_with
from edgekit.card import ModelCard
from edgekit.errors import CardError, CheckpointError, first_line

FORMAT = "edgekit-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format marker) atomically: temp file, fsync, rename."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    return write_with(path, lambda fh: torch.save(data, fh))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an edgekit checkpoint, or raise a one-line :class:`CheckpointError` saying why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and unpickler errors all mean the same here
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({first_line(exc, 160)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an edgekit checkpoint (no '{FORMAT}' marker); "
                              "train one with `edgekit train` or `edgekit distill`")
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path} was written by a newer edgekit (checkpoint version {data['version']})")
    for key in ("card", "model_state"):
        if key not in data:
            raise CheckpointError(f"{path} is incomplete: no '{key}'")
    return data


def card_of(ckpt: dict[str, Any]) -> ModelCard:
    try:
        return ModelCard.from_dict(ckpt["card"])
    except CardError as exc:
        raise CheckpointError(f"checkpoint has a broken model card: {exc}") from exc


def model_from_checkpoint(path_or_ckpt: str | Path | dict[str, Any]):
    """Rebuild the :class:`~edgekit.train.models.EdgeModel` a checkpoint holds, in eval mode.

    Returns ``(model, card, ckpt)``. A fused (reparameterized) model is rebuilt, fused, then loaded.
    """
    from edgekit.train.models import EdgeModel

    ckpt = load_checkpoint(path_or_ckpt) if not isinstance(path_or_ckpt, dict) else path_or_ckpt
    card = card_of(ckpt)
    model = EdgeModel(card.arch, card.heads, temporal=card.temporal_spec, in_chans=card.input.channels,
                      img_size=card.input.size if card.input.audio else None)
    if card.provenance.get("fused"):
        from timm.utils import reparameterize_model

        model = reparameterize_model(model)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not match {card.arch} with heads "
                              f"{card.head_names}: {first_line(exc)}") from None
    return model.eval(), card, ckpt
