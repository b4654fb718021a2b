"""End to end for sound models: validation sound files through ``edgekit predict``'s path (decode, resample,
windows, log-mel, the file, aggregation) against the training pipeline's windows through PyTorch, aggregated
the same way. Sounds that live in memory (the embedded speech_commands) are written as 32-bit float WAV first,
which keeps every sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def raw_sounds(trained, folder: Path, limit: int) -> tuple[list[str], dict[str, np.ndarray]] | None:
    """Up to ``limit`` validation sounds (evenly spread) as files, and PyTorch's per-sound outputs on the
    validation windows training cut from them."""
    from edgekit.errors import require
    from edgekit.runtime.logmel import aggregate
    from edgekit.train.data import eval_transform

    trained.images("val", limit=1)  # loads the data once
    split = trained._data.val
    if split.groups is None:
        return None
    groups = np.unique(split.groups)
    picks = groups[np.unique(np.linspace(0, len(groups) - 1, min(limit, len(groups))).round().astype(int))]
    tf, mode = eval_transform(trained.card.input), trained.card.input.audio.get("aggregate", "mean")
    rate = int(trained.card.input.audio["sample_rate"])
    files, outs = [], {h: [] for h in trained.card.head_names}
    for g in picks:
        rows = np.flatnonzero(split.groups == g)
        name = split.names[rows[0]].rsplit("@", 1)[0]
        if not Path(name).is_file():
            sf = require("soundfile", "audio")
            folder.mkdir(parents=True, exist_ok=True)
            name = str(folder / f"{int(g):05d}.wav")
            sf.write(name, _whole(split, rows, rate), rate, subtype="FLOAT")
        files.append(name)
        with torch.no_grad():
            out = trained.model(torch.stack([tf(split.load(int(i))) for i in rows]))
        for h in outs:
            outs[h].append(aggregate(out[h].float().numpy(), mode))
    return files, {h: np.stack(v) for h, v in outs.items()}


def _whole(split, rows: np.ndarray, rate: int) -> np.ndarray:
    """The sound a group of validation windows was cut from, put back together from the windows (their
    names carry the start times; the last window ends at the sound's last sample)."""
    starts = split.starts[rows] if getattr(split, "starts", None) is not None else \
        [int(round(float(split.names[i].rsplit("@", 1)[1].rstrip("s")) * rate)) for i in rows]
    windows = [split.load(int(i)) for i in rows]
    wave = np.zeros(max(s + len(w) for s, w in zip(starts, windows, strict=True)), np.float32)
    for s, w in zip(starts, windows, strict=True):
        wave[s: s + len(w)] = w
    return wave
