"""End to end: raw validation files through the runtime's own ``predict`` path against the training
pipeline and PyTorch.

Parity (:mod:`edgekit.export.verify`) feeds both sides the same tensors, so it cannot see a skew in
how each side turns a file into a tensor: decoding (EXIF orientation), resizing, cropping, colour
order, normalization. Here a sample of the validation split's files (in-memory images, like the
digits, written as lossless PNG first) goes through :meth:`Predictor.preprocess` from the file path,
as on the device, and through the training loader and eval transform into PyTorch. Per head:
top-1 agreement (classification), the share of samples with the same label set (multilabel), the
mean absolute difference relative to the mean |value| (regression). Reported in ``parity.json``,
not gated: a decode or resize difference shows up as a number, and FP32 files should read 100%.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLE = 64


def raw_sample(trained, folder: Path, limit: int = SAMPLE) -> tuple[list[str], dict[str, np.ndarray]] | None:
    """Up to ``limit`` validation files (evenly spread) and PyTorch's outputs on them through the training
    pipeline; None for clip models (a video's frames are chosen per clip, not per file)."""
    from edgekit.train.data import eval_transform

    if trained.card.input.frames:
        return None
    if trained.card.input.audio:
        from edgekit.export.end_to_end_audio import raw_sounds

        return raw_sounds(trained, folder, limit)
    trained.images("val", limit=1)  # loads the data once
    split = trained._data.val
    ids = np.unique(np.linspace(0, len(split) - 1, min(limit, len(split))).round().astype(int))
    files = []
    for i in ids:
        name = split.names[i]
        if Path(name).is_file():
            files.append(name)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        files.append(str(folder / f"{int(i):05d}.png"))
        split.load(int(i)).save(files[-1])
    tf = eval_transform(trained.card.input)
    x = torch.stack([tf(split.load(int(i))) for i in ids])
    with torch.no_grad():
        out = trained.model(x)
    return files, {h: out[h].float().numpy().reshape(len(ids), -1) for h in trained.card.head_names}


def check_file(path: Path, files: list[str], reference: dict[str, np.ndarray]) -> dict[str, Any]:
    """The file's outputs on the raw ``files`` through its runtime, compared per head with ``reference``."""
    from edgekit.runtime import load

    predictor = load(path, device="cpu")
    if predictor.card.input.audio:  # sound files: each one's windows aggregated, as edgekit predict does
        from edgekit.runtime.tagging import sound_outputs

        per = [sound_outputs(predictor, f) for f in files]
        out = {h: np.stack([o[h] for o in per]) for h in predictor.card.head_names}
    else:
        out = predictor.run(predictor.preprocess(files))
    activated = bool(predictor.card.provenance.get("outputs_activated"))
    heads: dict[str, Any] = {}
    for head in predictor.card.heads:
        a, b = reference[head.name], out[head.name].reshape(len(files), -1)
        if head.kind == "classification":
            heads[head.name] = {"top1_agreement": float((a.argmax(1) == b.argmax(1)).mean())}
        elif head.kind == "multilabel":
            pa = 1 / (1 + np.exp(-a)) >= head.threshold  # PyTorch gives logits
            pb = (b if activated else 1 / (1 + np.exp(-b))) >= head.threshold
            heads[head.name] = {"label_set_agreement": float((pa == pb).all(1).mean())}
        else:
            scale = max(float(np.abs(a).mean()), 1e-12)
            heads[head.name] = {"mean_abs_diff": float(np.abs(a - b).mean()),
                                "relative_mean_abs_diff": float(np.abs(a - b).mean() / scale)}
    return {"files": len(files), "heads": heads}
