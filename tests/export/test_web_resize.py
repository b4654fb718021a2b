"""The web page's preprocessing (export/webpage/resize.js, preprocess.js) against cv2 and edgekit's Python
runtime, run in Node.js on random images: the browser must feed the model the tensor the native runtime feeds it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

PAGE = Path(__file__).resolve().parents[2] / "export" / "webpage"
RUNNER = """
import { resize } from '%s/resize.js';
import { preprocess } from '%s/preprocess.js';
import fs from 'node:fs';
for (const j of JSON.parse(fs.readFileSync(process.argv[2]))) {
  const img = { data: new Uint8Array(fs.readFileSync(j.file)), width: j.w, height: j.h };
  const out = j.input ? preprocess([img], j.input).data : resize(img, j.dw, j.dh, j.interp).data;
  fs.writeFileSync(j.file + '.out', Buffer.from(out.buffer, out.byteOffset, out.byteLength));
}
"""
INTERP = {"bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "bicubic": cv2.INTER_CUBIC,
          "nearest": cv2.INTER_NEAREST}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("Node.js is not installed (CI installs it with npm)")
    folder = tmp_path_factory.mktemp("node")
    (folder / "run.mjs").write_text(RUNNER % (PAGE.as_posix(), PAGE.as_posix()))

    def run(jobs: list[dict]) -> None:
        (folder / "jobs.json").write_text(json.dumps(jobs))
        subprocess.run([exe, str(folder / "run.mjs"), str(folder / "jobs.json")], check=True, timeout=120)

    return run, folder


def _image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_resize_is_cv2_bit_for_bit(node):
    """bilinear (down and up, and 2x which cv2 turns into area), area (integer and fractional factors) and
    nearest give cv2's exact bytes; bicubic upscaling (only used when a frame is smaller than the model's
    resize target) is within one grey level."""
    run, folder = node
    rng = np.random.default_rng(0)
    jobs, images = [], []
    for t in range(96):
        interp = list(INTERP)[t % 4]
        h, w = (int(v) for v in rng.integers(2, 120, 2))
        if t % 8 < 4:
            dh, dw = (int(v) for v in rng.integers(1, 120, 2))
        else:  # integer factors: cv2's fast area path (2x rounds half up, others half to even)
            k = int(rng.integers(2, 5))
            h, w = h - h % k + k, w - w % k + k
            dh, dw = h // k, w // k
        img = _image(rng, h, w)
        img.tofile(folder / f"{t}.raw")
        jobs.append({"file": str(folder / f"{t}.raw"), "w": w, "h": h, "dw": dw, "dh": dh, "interp": interp})
        images.append(img)
    run(jobs)
    worst: dict[str, int] = {}
    for job, img in zip(jobs, images, strict=True):
        ref = cv2.resize(img, (job["dw"], job["dh"]), interpolation=INTERP[job["interp"]]).astype(int)
        got = np.fromfile(job["file"] + ".out", np.uint8).reshape(ref.shape).astype(int)
        worst[job["interp"]] = max(worst.get(job["interp"], 0), int(np.abs(ref - got).max()))
    assert worst == {"bilinear": 0, "area": 0, "nearest": 0, "bicubic": worst["bicubic"]}
    assert worst["bicubic"] <= 1


def test_page_tensor_equals_the_python_runtime(node):
    """Resize, crop, colour order, layout and mean/std in the page give the float32 tensor
    runtime/preprocess.py gives, bit for bit, for camera-like frames larger than the model input."""
    from edgekit.card import InputSpec
    from edgekit.runtime.preprocess import preprocess

    run, folder = node
    rng = np.random.default_rng(1)
    jobs, cases = [], []
    for t in range(24):
        h, w = (int(v) for v in rng.integers(100, 700, 2))
        size = int(rng.choice([16, 32, 96]))
        spec = {"size": [size, size], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                "color": ["RGB", "BGR"][t % 2], "layout": ["NCHW", "NHWC"][t // 2 % 2],
                "interpolation": ["bilinear", "bicubic"][t // 4 % 2], "crop_pct": float(rng.choice([1.0, 0.875, 0.95]))}
        img = _image(rng, h, w)
        img.tofile(folder / f"p{t}.raw")
        jobs.append({"file": str(folder / f"p{t}.raw"), "w": w, "h": h, "input": spec})
        cases.append((img, spec))
    run(jobs)
    for job, (img, spec) in zip(jobs, cases, strict=True):
        ref = preprocess([img], InputSpec(**spec), color="RGB")
        got = np.fromfile(job["file"] + ".out", np.float32).reshape(ref.shape)
        assert np.array_equal(ref, got), (spec, float(np.abs(ref - got).max()))
