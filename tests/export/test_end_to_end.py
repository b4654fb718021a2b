"""End to end on photos as users bring them: raw JPEGs of mixed sizes (some phone-style, EXIF orientation 6,
odd names) through the runtime's predict path give PyTorch's answers through training's pipeline, and an FP32
file that does not is refused with the stage that differs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea")
NAMES = ("IMG_{i:04d}.JPG", "photo {i} (copy).jpg", "été_{i}.jpeg", "{i}.jpg")


def photo_folder(root):
    """scikit-image photos cropped to mixed sizes and shapes (40-300 px, 3:4 to 4:3), every third stored sideways
    with EXIF orientation 6 as phones do; 8 training and 4 validation files per class."""
    from skimage import data

    rng = np.random.default_rng(0)
    for cls in PHOTOS:
        photo = getattr(data, cls)()
        for k in range(12):
            h = int(rng.integers(40, 300))
            w = int(np.clip(h * rng.uniform(0.75, 1.333), 32, photo.shape[1]))
            y, x = int(rng.integers(0, photo.shape[0] - h)), int(rng.integers(0, photo.shape[1] - w))
            crop = np.ascontiguousarray(photo[y: y + h, x: x + w])
            path = root / ("val" if k < 4 else "train") / cls / NAMES[k % 4].format(i=k)
            path.parent.mkdir(parents=True, exist_ok=True)
            if k % 3 == 0:
                exif = Image.Exif()
                exif[0x0112] = 6  # stored turned 90 degrees counter-clockwise: "rotate 90 CW to display"
                Image.fromarray(np.ascontiguousarray(np.rot90(crop))).save(path, "JPEG", quality=90, exif=exif)
            else:
                Image.fromarray(crop).save(path, "JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    root = tmp_path_factory.mktemp("e2e")
    photo_folder(root / "photos")
    cfg = load_config(overrides={"model.arch": "test_efficientnet", "data.source": str(root / "photos"),
                                 "data.imgsz": 32, "train.epochs": 1, "train.batch_size": 8, "train.threads": 2,
                                 "out": str(root / "runs"), "name": "photos"})
    return train(cfg, verbose=False)


@pytest.fixture(scope="module")
def photo_export(photo_run, tmp_path_factory):
    from edgekit.export.exporter import export_checkpoint

    return export_checkpoint(photo_run.run_dir / "best.pt", ["onnx", "tflite"],
                             tmp_path_factory.mktemp("e2e-export"), verbose=False)


def test_fp32_files_answer_raw_photos_as_training_does(photo_export):
    """FP32 ONNX and TFLite on the raw validation JPEGs (EXIF-rotated among them): 100% top-1 agreement and
    an FP32-level error (relative error <= 1e-4, SQNR >= 80 dB) against training's pipeline and PyTorch."""
    for name in ("model.onnx", "model.tflite"):
        entry = photo_export.by_file(name)
        e2e = entry["end_to_end"]
        s = e2e["heads"]["class"]
        assert e2e["files"] == 12 and s["top1_agreement"] == 1.0, (name, e2e)
        assert s["rel"] <= 1e-4 and (s["sqnr_db"] is None or s["sqnr_db"] >= 80), (name, s)
        assert entry["passed"] and e2e["gated"] and e2e["passed"], (name, entry.get("gate_failures"), e2e)


def _cause(photo_run, path, tmp_path, **card_changes):
    """The end-to-end verdict of a copy of ``path`` whose card says ``card_changes`` about its input."""
    import shutil

    from edgekit.export.end_to_end import check_file, raw_sample
    from edgekit.export.onnx import rewrite_card
    from edgekit.runtime.metadata import read_card
    from edgekit.train.trained import load_trained

    copy = shutil.copy(path, tmp_path / "model.onnx")
    card = read_card(copy)
    for key, value in card_changes.items():
        setattr(card.input, key, value)
    rewrite_card(copy, card)
    return check_file(copy, raw_sample(load_trained(photo_run.run_dir / "best.pt"), tmp_path / "raw"))


@pytest.mark.parametrize(("change", "stage"), [({"crop_pct": 1.0}, "resize"), ({"color": "BGR"}, "colour order"),
                                               ({"mean": [0.5, 0.5, 0.5]}, "normalization")])
def test_a_skewed_runtime_side_is_named(photo_run, photo_export, tmp_path, change, stage):
    """A file whose card asks the runtime for another crop, channel order or mean than training used: the FP32
    end-to-end gate is missed and the first stage that differs is named."""
    e2e = _cause(photo_run, photo_export.out_dir / "model.onnx", tmp_path, **change)
    assert e2e["gated"] and not e2e["passed"], e2e
    assert e2e["cause"]["stage"] == stage, e2e["cause"]


def test_training_with_another_resize_misses_the_gate(photo_run, tmp_path, monkeypatch):
    """A deliberately wrong resize on training's side (PIL's antialiased resize, what training used before it
    called the runtime's): `edgekit export` exits 2, the FP32 file is moved aside, and the cause is the resize."""
    import json

    import edgekit.train.data.transforms as transforms
    from edgekit.cli import main

    def pil_resize_crop(img, spec):  # timm's eval geometry through PIL (the old training path)
        from timm.data import create_transform

        tf = create_transform(input_size=(3, *spec.size), interpolation=spec.interpolation, crop_pct=spec.crop_pct)
        return np.asarray(tf.transforms[1](tf.transforms[0](Image.fromarray(img))))

    monkeypatch.setattr(transforms, "resize_crop", pil_resize_crop)
    out = tmp_path / "export"
    assert main(["export", str(photo_run.run_dir / "best.pt"), "--target", "onnx", "--out", str(out), "--quiet"]) == 2
    entry = json.loads((out / "parity.json").read_text())["artifacts"][0]
    assert not entry["passed"] and entry["heads"]["class"]["rel"] <= 1e-4  # the file itself matches PyTorch
    assert entry["end_to_end"]["cause"]["stage"] == "resize", entry["end_to_end"]
    assert any("end to end" in f and "cause: resize" in f for f in entry["gate_failures"])
    assert (out / "model.onnx.failed").exists() and not (out / "model.onnx").exists()
