"""Golden inputs: a few real validation inputs and PyTorch's outputs on them, stored inside the card.

``edgekit check FILE --parity`` runs them through the file's runtime after a runtime or OS upgrade
and judges the outputs with the file's gate (:mod:`edgekit.export.gates`), with no training data.
Images are stored as they reach the model's normalization: uint8 RGB at the model's input size
(resized and centre-cropped by the runtime's code, which training calls), PNG (lossless, so both sides see the same
pixels), base64. PyTorch's reference outputs are computed on exactly those pixels, normalized by
the runtime's own code, so the stored pair is exact. Clip models store each clip's frames.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch

from edgekit.runtime.golden import GOLDEN_KIND_IMAGES, golden_batch

MAX_INPUTS = 4
MAX_BYTES = 200_000  # encoded inputs per card: a 224-px photo is ~60-100 kB of PNG


def golden_inputs(trained, count: int = MAX_INPUTS, max_bytes: int = MAX_BYTES, model=None) -> dict[str, Any] | None:
    """Up to ``count`` validation inputs (evenly spread over the split, within ``max_bytes``) and the
    model's outputs on them, for :attr:`edgekit.card.ModelCard.golden`. ``None`` when the data has no
    validation images (a card without golden inputs is still a valid card). ``model``: the PyTorch model the
    file is the exported form of, when it is not the checkpoint's (QAT: the fine-tuned model; NCHW tensor ->
    {head: output})."""
    from edgekit.train.data import eval_transform

    try:
        trained.images("val", limit=1)  # loads the data once (and says clearly when it cannot)
    except Exception:  # noqa: BLE001 - no data here: golden inputs are optional
        return None
    split = trained._data.val
    if len(split) == 0:
        return None
    if trained.card.input.audio:
        return _audio(trained, split, count, max_bytes, model)
    geometric = eval_transform(trained.card.input).geometric  # the runtime's resize and crop
    picks = np.unique(np.linspace(0, len(split) - 1, min(count, len(split))).round().astype(int))
    inputs: list[Any] = []
    used = 0
    for i in picks:
        item = split.load(int(i))
        frames = item if isinstance(item, list) else [item]
        encoded = [_png(geometric(f)) for f in frames]
        size = sum(len(e) for e in encoded)
        if inputs and used + size > max_bytes:
            break
        inputs.append(encoded if isinstance(item, list) else encoded[0])
        used += size
    golden: dict[str, Any] = {"kind": GOLDEN_KIND_IMAGES, "encoding": "png-base64", "color": "RGB",
                              "source": f"val split of {trained.card.provenance.get('data', 'the training data')}",
                              "inputs": inputs}
    batch = golden_batch(golden, trained.card.input)
    with torch.no_grad():
        out = (model or trained.model)(torch.from_numpy(batch))
    golden["outputs"] = {h: out[h].float().numpy().reshape(len(batch), -1).tolist() for h in trained.card.head_names}
    return golden


def _audio(trained, split, count: int, max_bytes: int, model=None) -> dict[str, Any]:
    """Sound models: validation windows as FLAC (see :mod:`edgekit.runtime.golden_audio`), and the model's
    outputs on them as the runtime will feed them (decoded 16-bit samples, the runtime's frontend)."""
    from edgekit.runtime.golden import GOLDEN_KIND_AUDIO
    from edgekit.runtime.golden_audio import encode_window

    rate = int(trained.card.input.audio["sample_rate"])
    picks = np.unique(np.linspace(0, len(split) - 1, min(count, len(split))).round().astype(int))
    inputs: list[str] = []
    for i in picks:
        encoded = encode_window(split.load(int(i)), rate)
        if inputs and sum(map(len, inputs)) + len(encoded) > max_bytes:
            break
        inputs.append(encoded)
    golden: dict[str, Any] = {"kind": GOLDEN_KIND_AUDIO, "encoding": "flac-base64", "sample_rate": rate,
                              "source": f"val split of {trained.card.provenance.get('data', 'the training data')}",
                              "inputs": inputs}
    batch = golden_batch(golden, trained.card.input)
    with torch.no_grad():
        out = (model or trained.model)(torch.from_numpy(batch))
    golden["outputs"] = {h: out[h].float().numpy().reshape(len(batch), -1).tolist() for h in trained.card.head_names}
    return golden


def _png(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), mode="RGB").save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")
