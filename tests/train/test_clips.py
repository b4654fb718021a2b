"""Clip datasets, temporal heads and clip models."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from edgekit.card import HeadSpec, clip_frame_indices
from edgekit.config import load_config
from edgekit.errors import ConfigError, DataError
from edgekit.train.data import ImageDataset, load_data
from edgekit.train.data.clips import DIRECTIONS, moving_digit_clip
from edgekit.train.models import build_student
from edgekit.train.temporal import AttentionPool, CrossTaskAttention, MeanPool, TemporalTransformer


def _digit() -> np.ndarray:
    from sklearn.datasets import load_digits

    return np.clip(load_digits().images[0] / 16.0 * 255, 0, 255).astype(np.uint8)


def test_clip_frame_indices_cover_the_span_evenly():
    assert clip_frame_indices(0, 99, 4) == [12, 37, 62, 87]
    assert clip_frame_indices(5, 5, 3) == [5, 5, 5]
    picks = clip_frame_indices(0, 79, 8, np.random.default_rng(0))
    assert all(10 * k <= p < 10 * (k + 1) for k, p in enumerate(picks))  # one random frame per segment


def test_moving_digit_left_is_right_reversed():
    """Opposite directions visit the same positions: only the order tells them apart."""
    digit = _digit()
    right = moving_digit_clip(digit, "right", 8, 32, np.random.default_rng(5))
    left = moving_digit_clip(digit, "left", 8, 32, np.random.default_rng(5))
    down = moving_digit_clip(digit, "down", 8, 32, np.random.default_rng(5))
    assert right.shape == (8, 32, 32, 3) and right.dtype == np.uint8
    np.testing.assert_array_equal(right[::-1], left)
    np.testing.assert_array_equal(right.mean(0), left.mean(0))  # a mean over frames cannot separate them
    assert not np.array_equal(right[0], right[-1])  # it does move
    cols = right[0].sum(axis=(0, 2)).nonzero()[0], right[-1].sum(axis=(0, 2)).nonzero()[0]
    assert cols[1].mean() > cols[0].mean()  # to the right
    rows = down[0].sum(axis=(1, 2)).nonzero()[0], down[-1].sum(axis=(1, 2)).nonzero()[0]
    assert rows[1].mean() > rows[0].mean()  # and down


def test_moving_digits_dataset():
    cfg = load_config(overrides={"data.source": "moving_digits", "data.frames": 6, "data.imgsz": 24})
    data = load_data(cfg.data, cfg.model.heads)
    assert data.frames == 6 and data.heads[0].classes == DIRECTIONS
    assert len(data.train) + len(data.val) == 1797
    counts = np.bincount(data.train.targets["direction"], minlength=4)
    assert counts.min() > 300  # balanced directions
    clip = data.train.load(0)
    assert len(clip) == 6 and clip[0].size == (24, 24)


def test_clip_augmentation_is_the_same_for_every_frame():
    from PIL import Image

    from edgekit.train.data import Split, Transforms, build_transforms

    cfg = load_config(overrides={"data.source": "moving_digits", "data.frames": 4})
    tfs: Transforms = build_transforms(cfg.data, "clips", {"mean": (0.5,) * 3, "std": (0.5,) * 3})
    frame = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    split = Split(names=["c"], load=lambda i: [frame] * 4, targets={"direction": np.array([0])})
    ds = ImageDataset(split, tfs.train)
    a, b = ds[(0, -1, 11)]["image"], ds[(0, -1, 12)]["image"]
    assert a.shape == (4, 3, 32, 32)
    assert all(torch.equal(a[0], a[k]) for k in range(4))  # one crop/jitter for the whole clip
    assert not torch.equal(a[0], b[0])  # another sample seed, another augmentation
    assert torch.equal(a, ds[(0, -1, 11)]["image"])  # reproducible


def test_temporal_heads_shapes_and_order():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16)
    rev = x.flip(1)
    mean, attn, tr = MeanPool(16), AttentionPool(16, 5), TemporalTransformer(16, 5, width=8).eval()
    assert mean(x).shape == (3, 16) and attn(x).shape == (3, 16) and tr(x).shape == (3, 8)
    torch.testing.assert_close(mean(x), mean(rev))  # blind to order
    assert not torch.allclose(attn(x), attn(rev))  # sees it (position embeddings)
    assert not torch.allclose(tr(x), tr(rev))
    cross = CrossTaskAttention(16, 5, width=8)
    assert cross(x).shape == (3, 16)


def test_clip_model_forward_and_cross_heads():
    heads = [HeadSpec("verb", "classification", classes=list("abc")),
             HeadSpec("noun", "classification", classes=list("wxyz"))]
    model = build_student("test_efficientnet", heads, temporal={"frames": 3, "pooling": "transformer",
                                                                 "cross": ["verb", "noun"]}).eval()
    out = model(torch.randn(2, 3, 3, 16, 16))
    assert out["verb"].shape == (2, 3) and out["noun"].shape == (2, 4)
    with pytest.raises(ConfigError, match="two of the heads"):
        build_student("test_efficientnet", heads, temporal={"frames": 3, "cross": ["verb", "other"]})


def test_clip_checkpoint_round_trip(clip_run):
    from edgekit.train.checkpoint import model_from_checkpoint

    model, card, _ = model_from_checkpoint(clip_run.run_dir / "best.pt")
    assert card.input.frames == 4 and card.temporal["pooling"] == "attention"
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["direction"], clip_run.model.eval()(x)["direction"])
    history = clip_run.history
    assert "direction/acc" in history[-1]["val"]


def _video(path, n: int, size=(32, 24)) -> None:
    """A video whose frame i is a flat grey of level 6 * i (so a frame's index can be read back)."""
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for i in range(n):
        writer.write(np.full((h, w, 3), 6 * i, np.uint8))
    writer.release()


def _clip_csv(tmp_path, rows, header=("video", "start_frame", "stop_frame", "verb_class", "noun_class")):
    path = tmp_path / "clips.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_clip_csv_epic_style(tmp_path):
    _video(tmp_path / "a.avi", 30)
    _video(tmp_path / "b.avi", 20)
    rows = [("a.avi", 0, 9, "take", "cup"), ("a.avi", 10, 19, "put", "cup"), ("a.avi", 20, 29, "take", "plate"),
            ("b.avi", 0, 9, "put", "plate"), ("b.avi", 10, 19, "take", "cup"), ("b.avi", 2, 17, "put", "plate")]
    path = _clip_csv(tmp_path, rows * 2)
    cfg = load_config(overrides={"data.source": str(path), "data.frames": 4, "data.val_fraction": 0.25})
    data = load_data(cfg.data, cfg.model.heads)
    assert [h.name for h in data.heads] == ["verb", "noun"] and data.frames == 4 and data.kind == "clips"
    assert len(data.train) == 9 and len(data.val) == 3
    frames = data.val.load(0)
    levels = [round(np.asarray(f).mean() / 6) for f in frames]
    name = data.val.names[0]
    start, stop = (int(v) for v in name[name.index("[") + 1: -1].split("-"))
    assert levels == clip_frame_indices(start, stop, 4)  # the frames asked for, decoded in order


def test_clip_csv_random_sampling_is_seeded(tmp_path):
    _video(tmp_path / "a.avi", 40)
    path = _clip_csv(tmp_path, [("a.avi", 0, 39, "x"), ("a.avi", 0, 39, "y")] * 4,
                     header=("video", "start_frame", "stop_frame", "label"))
    cfg = load_config(overrides={"data.source": str(path), "data.frames": 4, "data.sampling": "random"})
    data = load_data(cfg.data, cfg.model.heads)
    levels = [[round(np.asarray(f).mean() / 6) for f in data.train.load(0, seed)] for seed in (1, 1, 2)]
    assert levels[0] == levels[1] != levels[2]
    assert all(10 * k <= v < 10 * (k + 1) for k, v in enumerate(levels[0]))


def test_clip_csv_errors(tmp_path):
    _video(tmp_path / "a.avi", 10)
    cases = {
        "past the last frame": [("a.avi", 0, 10, "x"), ("a.avi", 0, 5, "y")] * 3,
        "file not found": [("missing.avi", 0, 5, "x"), ("a.avi", 0, 5, "y")] * 3,
        "is after stop_frame": [("a.avi", 6, 2, "x"), ("a.avi", 0, 5, "y")] * 3,
        "must be a frame number": [("a.avi", "one", 5, "x")],
    }
    for message, rows in cases.items():
        path = _clip_csv(tmp_path, rows, header=("video", "start_frame", "stop_frame", "label"))
        cfg = load_config(overrides={"data.source": str(path), "data.frames": 2})
        with pytest.raises(DataError, match=message):
            load_data(cfg.data, cfg.model.heads)
    path = _clip_csv(tmp_path, [("a.avi", 0, 10, "x"), ("a.avi", 0, 5, "y"), ("a.avi", 1, 6, "y"),
                                ("a.avi", 2, 8, "x"), ("a.avi", 0, 9, "x"), ("a.avi", 3, 9, "y")] * 2,
                     header=("video", "start_frame", "stop_frame", "label"))
    cfg = load_config(overrides={"data.source": str(path), "data.frames": 2, "data.skip_bad": True})
    data = load_data(cfg.data, cfg.model.heads)
    assert len(data.skipped) == 2 and len(data.train) + len(data.val) == 10


def test_clip_options_on_the_command_line(tmp_path, capsys):
    from edgekit.cli import main

    assert main(["train", "--data", "moving_digits", "--temporal", "lstm", "--out", str(tmp_path)]) == 2
    assert "model.temporal" in capsys.readouterr().err
    assert main(["train", "--data", "moving_digits", "--cross-attention", "--out", str(tmp_path),
                 "--set", "data.limit=8", "--epochs", "1"]) == 2
    assert "two classification heads" in capsys.readouterr().err
    cfg = load_config(overrides={"data.source": "moving_digits", "model.arch": "mobilevit_xxs"})
    from edgekit.train.supervised import default_name

    assert default_name(cfg) == "moving_digits-mobilevit_xxs-attention"


def test_epic_clips_train_with_cross_attention(tmp_path, tiny_config):
    """verb + noun clips from videos, cross-task attention: trains, and reports action accuracy."""
    from edgekit.train.supervised import train

    for name, n in (("a.avi", 30), ("b.avi", 24)):
        _video(tmp_path / name, n)
    rows = [("a.avi", s, s + 5, verb, noun) for s, verb, noun in ((0, "take", "cup"), (6, "put", "cup"),
                                                                  (12, "take", "plate"), (18, "put", "plate"))]
    rows += [("b.avi", s, s + 4, verb, noun) for s, verb, noun in ((0, "put", "cup"), (5, "take", "plate"),
                                                                   (10, "take", "cup"), (15, "put", "plate"))]
    path = _clip_csv(tmp_path, rows * 3)
    cfg = tiny_config(data__source=str(path), data__frames=3, data__sampling="random", train__epochs=1,
                      model__temporal="transformer", model__cross_attention=True)
    result = train(cfg, verbose=False)
    assert result.card.temporal == {"pooling": "transformer", "cross": ["verb", "noun"]}
    assert {"verb/acc", "noun/acc", "action/acc"} <= set(result.history[-1]["val"])
    assert cfg.name == "clips-test_efficientnet-cross"
