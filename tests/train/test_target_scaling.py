"""Issue 13: a briefly trained model must answer in eval mode what it learned, and in years.

A few steps from scratch used to leave BatchNorm statistics that made eval-mode ages of tens of
thousands of years; regression heads trained on raw years made it worse. Heads here have the
names users give (``âge``, ``humeur``): names are data.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.card import HeadSpec, ModelCard
from edgekit.errors import CardError
from edgekit.train.checkpoint import load_checkpoint, model_from_checkpoint
from edgekit.train.target_scaling import fold_, folded_state, target_stats, unfold_

AGE, MOOD = "âge", "humeur"


def write_faces_csv(folder, n=48):
    """Images whose brightness sets the age (30..90 years) and the mood; every 7th age is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = [f"path,{AGE},{MOOD}"]
    for i in range(n):
        b = i / (n - 1)
        img = np.clip(rng.normal(40 + 180 * b, 30, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"f{i:02d}.png")
        age = "" if i % 7 == 3 else f"{30 + 60 * b:.1f}"
        lines.append(f"f{i:02d}.png,{age},{'gai' if b > 0.5 else 'triste'}")
    (folder / "faces.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "faces.csv"


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    """A tiny two-head model trained from scratch for 2 epochs of 5 steps at a high learning rate: the
    issue's situation. Before the fix its eval-mode ages reached 857 years (1568 with standardized
    targets alone) and its logits 63 (250); without standardized targets the ages stayed below 21."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    tmp = tmp_path_factory.mktemp("scaled")
    csv = write_faces_csv(tmp / "faces")
    cfg = load_config(overrides={"model.arch": "test_efficientnet", "data.imgsz": 32, "data.source": str(csv),
                                 "model.heads": [{"name": AGE, "kind": "regression"}, {"name": MOOD}],
                                 "train.epochs": 2, "train.batch_size": 8, "train.lr": 3e-2,
                                 "train.save_every": 0, "train.threads": 2, "out": str(tmp / "runs"), "name": "faces"})
    return train(cfg, verbose=False)


def _train_images(run):
    from edgekit.train.trained import load_trained

    trained = load_trained(run.run_dir / "best.pt")
    x, y = trained.images("train")
    return trained, torch.from_numpy(x), y


def test_eval_outputs_stay_in_the_range_of_training(faces_run):
    trained, x, y = _train_images(faces_run)
    with torch.no_grad():
        out = trained.model(x)  # eval mode, as every exported file runs
    ages = y[AGE][~np.isnan(y[AGE])]
    lo, hi = ages.min(), ages.max()
    pred = out[AGE].numpy().ravel()
    assert np.isfinite(pred).all()
    assert (pred > lo - (hi - lo)).all() and (pred < hi + (hi - lo)).all(), (pred.min(), pred.max())
    assert lo <= np.median(pred) <= hi  # years, not standardized values nor what an untrained head gives
    assert out[MOOD].abs().max() < 20  # logits, not 1e5
    card = json.loads((faces_run.run_dir / "card.json").read_text())
    # BatchNorm statistics from 32 of the 38 training images: whole batches of 4 x the training batch
    assert card["provenance"]["bn_stats"] == {"images": 32, "transform": "eval", "split": "train"}
    # the reported val MAE is in years and is the MAE of the checkpoint's own eval-mode outputs
    xv, yv = trained.images("val")
    with torch.no_grad():
        pv = trained.model(torch.from_numpy(xv))[AGE].numpy().ravel()
    valid = ~np.isnan(yv[AGE])
    assert card["metrics"]["val"][f"{AGE}/mae"] == pytest.approx(np.abs(pv[valid] - yv[AGE][valid]).mean(), rel=1e-4)


def test_card_records_the_scaling_and_checkpoints_answer_in_years(faces_run):
    ckpt = load_checkpoint(faces_run.run_dir / "last.pt")
    head = ModelCard.from_dict(ckpt["card"]).head(AGE)
    from edgekit.train.data import load_data
    from edgekit.train.trained import load_trained

    cfg, heads = load_trained(faces_run.run_dir / "last.pt").run_config()
    train_ages = load_data(cfg, heads).train.targets[AGE]
    assert head.target_mean == pytest.approx(np.nanmean(train_ages), rel=1e-5)  # NaN (missing) left out
    assert head.target_std == pytest.approx(np.nanstd(train_ages), rel=1e-4)
    assert ModelCard.from_dict(ckpt["card"]).head(MOOD).target_mean is None
    # last.pt keeps the standardized head for an exact resume; its model_state is folded
    raw = ckpt["train_state"]["raw_heads"][AGE]
    model, _, _ = model_from_checkpoint(ckpt)
    lin = model.heads[AGE][-1]
    assert torch.allclose(lin.weight, raw["weight"] * head.target_std)
    assert torch.allclose(lin.bias, raw["bias"] * head.target_std + head.target_mean)
    # the model fit returns is the folded one too
    assert torch.equal(faces_run.model.heads[AGE][-1].bias, lin.bias)


def test_exported_files_and_runtime_answer_in_years(faces_run, tmp_path):
    from edgekit.export.exporter import export_checkpoint
    from edgekit.runtime import load

    report = export_checkpoint(faces_run.run_dir / "best.pt", ["onnx", "tflite"], tmp_path, verbose=False)
    assert sorted(a.path.name for a in report.artifacts) == ["model.onnx", "model.tflite"]
    trained, x, y = _train_images(faces_run)
    with torch.no_grad():
        ref = trained.model(x[:4])[AGE].numpy().ravel()
    img = np.asarray(Image.open(faces_run.run_dir.parent.parent.parent / "faces" / "f40.png"))[:, :, ::-1]
    for art in report.artifacts:
        predictor = load(art.path, device="cpu")
        assert predictor.card.head(AGE).target_std is not None
        age = predictor.predict(img.copy())[0][AGE]["value"]
        assert 10 < age < 150, (art.path.name, age)  # years: a standardized output would be about -2..2
        batch = x[:4].numpy()
        if predictor.card.input.layout == "NHWC":
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        np.testing.assert_allclose(predictor.run(batch)[AGE].ravel(), ref, rtol=1e-3, atol=1e-2)
    assert not report.failed and {p["file"] for p in report.parity} == {"model.onnx", "model.tflite"}


def test_resume_with_a_standardized_head_equals_uninterrupted(tmp_path):
    from edgekit.config import load_config
    from edgekit.train.supervised import resume_config, train

    csv = write_faces_csv(tmp_path / "faces", n=24)

    def cfg(name):
        return load_config(overrides={"model.arch": "test_efficientnet", "data.imgsz": 16, "data.source": str(csv),
                                      "model.heads": [{"name": AGE, "kind": "regression"}], "train.epochs": 2,
                                      "train.batch_size": 8, "train.save_every": 0, "train.threads": 2,
                                      "out": str(tmp_path / "runs"), "name": name})

    full = train(cfg("full"), verbose=False)
    train(cfg("part"), verbose=False, stop_after=1)
    resumed = train(resume_config(cfg("part").run_dir, "train"), resume=True, verbose=False)
    a = load_checkpoint(full.run_dir / "last.pt")
    b = load_checkpoint(resumed.run_dir / "last.pt")
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    assert a["card"]["heads"] == b["card"]["heads"] and a["card"]["heads"][0]["target_std"] > 1
    assert full.history[-1]["val"] == resumed.history[-1]["val"]


# -- units ---------------------------------------------------------------------------------------


def test_target_stats_ignore_missing_labels_and_never_divide_by_zero():
    assert target_stats(np.array([20.0, np.nan, 40.0])) == pytest.approx((30.0, 10.0))
    assert target_stats(np.array([7.0, 7.0])) == (7.0, 1.0)
    assert target_stats(np.array([np.nan])) == (0.0, 1.0)


def test_fold_unfold_round_trip_and_folded_state():
    from edgekit.train.models import build_student

    model = build_student("test_efficientnet", [HeadSpec("age group", "regression"), HeadSpec("x", "classification",
                                                                                               ["a", "b"])])
    scaling = {"age group": (42.0, 17.0)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = folded_state(model, scaling)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    fold_(model, scaling)
    assert all(torch.allclose(state[k], v) for k, v in model.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        years = model(x)["age group"]
        unfold_(model, scaling)
        z = model(x)["age group"]
    torch.testing.assert_close(years, z * 17.0 + 42.0)
    assert all(torch.allclose(before[k], v, atol=1e-6) for k, v in model.state_dict().items())


def test_card_target_scaling_fields():
    old = {"name": "m", "arch": "a", "input": {"size": 32, "mean": [0, 0, 0], "std": [1, 1, 1]},
           "heads": [{"name": "âge", "kind": "regression", "outputs": 1, "classes": None, "threshold": 0.5}]}
    assert ModelCard.from_dict(old).head("âge").target_mean is None  # cards from before still load
    new = json.loads(json.dumps(old))
    new["heads"][0].update(target_mean=35.5, target_std=12.0)
    card = ModelCard.from_json(ModelCard.from_dict(new).to_json())
    assert (card.head("âge").target_mean, card.head("âge").target_std) == (35.5, 12.0)
    with pytest.raises(CardError, match="positive"):
        HeadSpec("âge", "regression", target_mean=1.0, target_std=0.0)
    with pytest.raises(CardError, match="together"):
        HeadSpec("âge", "regression", target_mean=1.0)
    with pytest.raises(CardError, match="regression"):
        HeadSpec("mood", "classification", ["a", "b"], target_mean=1.0, target_std=1.0)
