"""A new user's path, as they would walk it: their own ImageFolder (the head is named `class`, a
Python keyword), a model that learns it, quantize through the default gate, every target with INT8
and FP16 (each file gated), predict, bench with a broken file among the models, and the webcam demo.
Plus CSV heads with names no identifier allows. (Fusion is covered by tests/compress/test_reparam.py:
a one-epoch MobileOne is at chance on this data, and its INT8 files rightly miss their gate.)"""

import json
import sys

import cv2
import numpy as np
import pytest

from edgekit.cli import main

CLASSES = ["cat", "dög", "my class"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """An ImageFolder with user-style class names: train/<class>/, val/<class>/ (32 px JPEGs)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    colours = [(0, 0, 220), (0, 200, 0), (220, 0, 0)]
    for split, n in (("train", 24), ("val", 6)):
        for cls, colour in zip(CLASSES, colours, strict=True):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
                img[8:30, 8:30] = colour
                cv2.imwrite(str(root / split / cls / f"{i}.jpg"), img)
    return root


def test_imagefolder_model_goes_through_every_stage(photos, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--data", str(photos), "--model", "test_efficientnet", "--imgsz", "32", "--epochs", "3",
                 "--batch-size", "16", "--out", str(out), "--name", "pets", "--quiet"]) == 0
    fused = out / "train" / "pets" / "best.pt"
    assert main(["quantize", str(fused), "--target", "onnx", "--calib", "16", "--out", str(out / "quant"),
                 "--quiet"]) == 0  # the default gate
    capsys.readouterr()
    assert main(["export", str(fused), "--target", "all", "--int8", "--fp16", "--calib", "16", "--out",
                 str(out / "export"), "--quiet"]) == 0
    files = [out / "export" / line for line in
             [p.split("/")[-1] for p in capsys.readouterr().out.split()]]
    assert {f.name for f in files} >= {"model.onnx", "model.int8.onnx", "model.tflite", "model.int8.tflite",
                                       "model.mlpackage"}
    parity = json.loads((out / "export" / "parity.json").read_text())
    assert parity["failures"] == []  # every file that ran passed; CoreML on Linux is not run here (apart)
    assert all(e["verdict"] == ("not_run" if e["format"] == "coreml" and sys.platform != "darwin" else "passed")
               for e in parity["artifacts"]), [(e["file"], e["verdict"]) for e in parity["artifacts"]]
    for e in parity["artifacts"]:  # the raw JPEGs through the runtime's predict() agree with training's pipeline
        if e["precision"] == "fp32" and "end_to_end" in e:
            assert e["end_to_end"]["heads"]["class"]["top1_agreement"] == 1.0, e["end_to_end"]

    from edgekit.runtime import load

    image = next((photos / "val" / "dög").iterdir())
    for f in files:
        if f.suffix == ".mlpackage":
            continue
        model = load(f)
        assert model.card.heads[0].name == "class" and model.card.heads[0].classes == sorted(CLASSES)
        result = model.predict(str(image))[0]
        assert list(result) == ["class"] and result["class"]["label"] in CLASSES

    # bench: a broken file and a bad name among good models; the others are measured, the report written
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    from edgekit.recipes.bench import bench

    rows, paths = bench([str(out / "export" / "model.onnx"), str(broken), "no-such-model",
                         str(out / "export" / "model.int8.tflite")], ["ort", "tflite"], [1, 3], "cpu",
                        None, "none", tmp_path / "bench", threads=1, min_seconds=0.05, verbose=False)
    good = [r for r in rows if "error" not in r]
    assert {(r["backend"], r["batch"]) for r in good} == {("ort", 1), ("ort", 3), ("tflite", 1), ("tflite", 3)}
    bad = {r["model"] for r in rows if "error" in r}
    assert bad == {"broken.onnx", "no-such-model"}
    assert "broken.onnx" in paths["md"].read_text() and "n/a" in paths["md"].read_text()

    from edgekit.apps.webcam import run_webcam

    summary = run_webcam(out / "export" / "model.int8.onnx", str(photos / "val" / "cat"), headless=True,
                         out=tmp_path / "demo.mp4", max_frames=3, verbose=False)
    assert summary["frames"] == 3


def test_csv_heads_with_any_names_train_export_and_come_back(tmp_path):
    from edgekit.config import load_config
    from edgekit.export.exporter import export_checkpoint
    from edgekit.runtime import load
    from edgekit.train.supervised import train

    rng = np.random.default_rng(1)
    rows = ["path,import,3d,age group,émotion"]
    (tmp_path / "img").mkdir()
    for i in range(24):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
        rows.append(f"img/{i}.png,{'yes' if i % 2 else 'no'},{'a|b' if i % 3 else 'c'},{20 + i},"
                    f"{['joie', 'colère'][i % 2]}")
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    heads = [{"name": "import"}, {"name": "3d", "kind": "multilabel"}, {"name": "age group", "kind": "regression"},
             {"name": "émotion"}]
    cfg = load_config(overrides={"model.arch": "test_efficientnet", "data.imgsz": 16, "train.epochs": 1,
                                 "data.source": str(tmp_path / "faces.csv"), "model.heads": heads,
                                 "out": str(tmp_path / "runs"), "name": "odd", "train.threads": 2})
    run = train(cfg, verbose=False)
    names = ["import", "3d", "age group", "émotion"]
    assert run.card.head_names == names
    report = export_checkpoint(run.run_dir / "best.pt", ["onnx", "tflite"], tmp_path / "export", verbose=False)
    for art in report.artifacts:
        model = load(art.path)
        assert model.card.head_names == names
        out = model.predict(str(tmp_path / "img" / "0.png"))[0]
        assert list(out) == names and "value" in out["age group"] and out["émotion"]["label"] in ("joie", "colère")
