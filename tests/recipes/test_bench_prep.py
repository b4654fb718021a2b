"""Preparing models for bench (recipes.bench): checkpoints exported, timm names made realistic, then measured."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import ConfigError
from edgekit.recipes.bench import bench, random_checkpoint


def test_unknown_model_is_refused():
    with pytest.raises(ConfigError, match="neither a model file nor a timm model name"):
        bench(["not-a-model-or-file"], ["ort"], [1], out=__import__("pathlib").Path("/tmp/unused-bench"))


def test_random_init_models_are_made_realistic(tmp_path):
    import torch

    from edgekit.train.checkpoint import model_from_checkpoint
    from edgekit.train.models import build_student

    fresh = build_student("test_resnet", [])
    zero = sum(1 for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d) and bool((m.weight == 0).all()))
    assert zero > 0  # the trap exists in this architecture
    path, notes = random_checkpoint("test_resnet", tmp_path, 32, "digits")
    model, card, _ = model_from_checkpoint(path)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not any(bool((m.weight == 0).all()) for m in bns)
    assert not all(torch.equal(m.running_var, torch.ones_like(m.running_var)) for m in bns)  # real statistics
    assert f"set {zero} zero-initialized BatchNorm gamma(s) to 1" in notes[0] and "256 real images" in notes[0]
    assert card.provenance["weights"].startswith("random")



def test_random_stand_in_on_photos_keeps_its_data(tmp_path):
    """A stand-in calibrated on an ImageFolder (the coverage matrix's photos) names that folder in its
    run config, so export calibrates and verifies on the same images; its probe head has the folder's
    classes under the user-style name ``class``."""
    pytest.importorskip("skimage")
    from edgekit.recipes.coverage import probe_head
    from edgekit.recipes.photos import PHOTOS, photo_folder
    from edgekit.train.trained import load_trained

    photos = photo_folder(tmp_path / "photos", train_per_class=3, val_per_class=1, size=40)
    path, notes = random_checkpoint("test_resnet", tmp_path / "random", 32, str(photos))
    assert f"{3 * len(PHOTOS)} real images ({photos})" in notes[0]
    probed = load_trained(probe_head(path, tmp_path / "probe"))
    assert probed.run_config()[0].source == str(photos.resolve())
    x, y = probed.images("val")
    assert x.shape == (len(PHOTOS), 3, 32, 32) and len(y["class"]) == len(PHOTOS)
    assert probed.card.heads[0].name == "class" and probed.card.heads[0].classes[0] == "astronaut"

def test_bench_end_to_end(trained_run, exported, tmp_path):
    ckpt = str(trained_run.run_dir / "best.pt")
    rows, paths = bench([ckpt], ["torch", "ort"], [1, 4], "cpu", None, "digits", tmp_path, teacher=ckpt,
                        threads=1, min_seconds=0.05, verbose=False)
    assert {(r["role"], r["backend"], r["batch"]) for r in rows} == {
        (role, b, n) for role in ("teacher", "model") for b in ("torch", "ort") for n in (1, 4)}
    torch_accuracy = exported.by_file("model.onnx")["heads"]["digit"]["reference_accuracy"]  # same 360 val images
    for r in rows:
        assert "error" not in r, r
        assert r["accuracy"]["digit"] == pytest.approx(torch_accuracy)
        assert r["params"] > 0 and r["gflops"] > 0
    student = next(r for r in rows if r["role"] == "model" and r["backend"] == "torch" and r["batch"] == 1)
    assert student["compression_vs_teacher"] == pytest.approx(1.0) and student["speedup_vs_teacher_torch"] > 0
    assert {"json", "csv", "md", "png"} <= set(paths)
    assert np.isfinite([r["p99_ms"] for r in rows]).all()
    # the ONNX files bench exported from the checkpoints were verified like any export, so they are eligible
    # (before, bench exported them unverified: "not eligible: no parity record beside it")
    rec = json.loads((tmp_path / "recommendation.json").read_text())
    assert {p["backend"] for p in rec["picks"]} == {"ort"} and {p["batch"] for p in rec["picks"]} == {1, 4}
    assert all(x["backend"] == "torch" for x in rec["left_out"]), rec["left_out"]
    onnx = next(r["file"] for r in rows if r["backend"] == "ort")
    entry = json.loads((Path(onnx).parent / "parity.json").read_text())["artifacts"][0]
    assert entry["verdict"] == "passed" and entry["heads"]["digit"]["rel"] <= 1e-4
