"""How far a file's answers on raw validation files are from training's pipeline, and how far the input tensors
are: every validation file through the runtime's ``preprocess`` and the file, against training's eval transform
and PyTorch. Only ``eval_transform`` and the runtime are used, so it measures any edgekit version (the numbers
before and after training called the runtime's preprocessing, docs/runtime-answers.md)::

    python tools/end_to_end_skew.py runs/train/faces/best.pt runs/export/faces/model.onnx runs/export/faces/model.tflite

One JSON line per file and head: files, SQNR (dB), relative error, top-1 agreement, and the largest and mean
absolute difference of the input tensors (normalized units).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer


def main(ckpt: Annotated[Path, typer.Argument(help="The checkpoint the files were exported from.")],
         files: Annotated[list[Path], typer.Argument(help="Exported model files.")]) -> None:
    import torch

    from edgekit.runtime import load
    from edgekit.train.data import eval_transform
    from edgekit.train.trained import load_trained

    trained = load_trained(ckpt)
    trained.images("val", limit=1)  # loads the data
    split = trained._data.val
    if not Path(split.names[0]).is_file():
        raise typer.BadParameter(f"{ckpt} was trained on data that is not files ({split.names[0]}): nothing raw to "
                                 "compare (export's end-to-end check writes such images out itself)")
    tf = eval_transform(trained.card.input)
    x = torch.stack([tf(split.load(i)) for i in range(len(split))])
    with torch.no_grad():
        ref = {h: v.float().numpy().reshape(len(x), -1) for h, v in trained.model(x).items()}
    for path in files:
        model = load(path, device="cpu")
        feed = model.preprocess([str(n) for n in split.names])
        out = model.run(feed)
        ours = x.numpy() if model.card.input.layout == "NCHW" else x.numpy().transpose(0, 2, 3, 1)
        d = np.abs(ours - feed.astype(np.float32))
        for head, a in ref.items():
            a = a.astype(np.float64)
            b = out[head].reshape(len(x), -1).astype(np.float64)
            noise = ((a - b) ** 2).sum()
            print(json.dumps({"file": str(path), "head": head, "files": len(x),
                              "sqnr_db": None if noise == 0 else round(float(10 * np.log10((a ** 2).sum() / noise)), 2),
                              "rel": float(f"{np.abs(a - b).max() / np.abs(a).max():.3g}"),
                              "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
                              "input_max_abs": round(float(d.max()), 4), "input_mean_abs": round(float(d.mean()), 4)}))


if __name__ == "__main__":
    typer.run(main)
