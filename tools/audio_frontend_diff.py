"""Measure: does the device compute the spectrogram training computed? Training's features vs the runtime's.

Training's side: the checkpoint's validation windows through its eval transform (the torch Dataset
path that fed the model while it trained). The runtime's side: the same windows through an
exported file's :class:`~edgekit.runtime.Predictor` (``predictor.preprocess``: frontend, normalization
and the file's layout), and, with ``--files``, whole sound files decoded and cut by the training data
loader vs by ``edgekit.runtime.tagging``. Prints the max and mean absolute difference::

    python tools/audio_frontend_diff.py runs/distill/NAME/best.pt runs/export/NAME/model.onnx
    python tools/audio_frontend_diff.py best.pt model.tflite --files a.wav b.flac
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _nchw(x: np.ndarray, layout: str) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if layout == "NHWC" else x


def measure(ckpt: str, model_file: str, files: list[str] | None = None, limit: int | None = None) -> dict:
    from edgekit.runtime import load
    from edgekit.runtime.audio_io import read_audio
    from edgekit.runtime.tagging import frontend, sound_batch
    from edgekit.train.data import eval_transform
    from edgekit.train.data.audio import Sounds, window_split
    from edgekit.train.trained import load_trained

    trained = load_trained(ckpt)
    predictor = load(model_file, device="cpu")
    if predictor.card.input.quant:
        raise SystemExit(f"{model_file} takes integer input: compare with a float file")
    train_x, _ = trained.images("val", limit=limit)
    val = trained._data.val
    ids = np.arange(len(val)) if limit is None or limit >= len(val) else \
        np.sort(np.random.default_rng(0).choice(len(val), limit, replace=False))  # as Trained.images picks them
    runtime_x = _nchw(predictor.preprocess(np.stack([val.load(int(i)) for i in ids])), predictor.card.input.layout)
    diff = np.abs(runtime_x.astype(np.float64) - train_x)
    result = {"windows": int(len(ids)), "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
              "feature_range": [float(train_x.min()), float(train_x.max())]}
    if files:
        fe, tf = frontend(predictor), eval_transform(trained.card.input)
        worst, n = 0.0, 0
        for f in files:
            wave = read_audio(f, fe.sample_rate)  # what the training loader decodes
            split = window_split(Sounds([f], [len(wave)], [wave], fe.sample_rate), {}, fe)
            ours = np.stack([tf(split.load(j)).numpy() for j in range(len(split))])
            theirs = _nchw(sound_batch(predictor, fe.windows(read_audio(f, fe.sample_rate))[0]),
                           predictor.card.input.layout)
            worst, n = max(worst, float(np.abs(ours - theirs).max())), n + len(split)
        result["files"] = {"files": len(files), "windows": n, "max_abs": worst}
    return result


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if len(sys.argv) > 1 else 2)
    args = sys.argv[1:]
    extra = args[args.index("--files") + 1:] if "--files" in args else None
    print(json.dumps(measure(args[0], args[1], extra), indent=2))
