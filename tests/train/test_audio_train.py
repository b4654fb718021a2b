"""Training sound models: 1-channel CNNs and a ViT at the non-square log-mel size, multilabel metrics per
sound, SpecAugment and mixup."""

import json

import numpy as np
import pytest
import torch

from edgekit.train.data.audio_transforms import spec_augment
from edgekit.train.losses import Mixup, TaskLoss


def test_audio_run_records_frontend_and_metrics(audio_run):
    card = audio_run.card
    assert card.input.audio["n_mels"] == 64 and card.input.size == [64, card.input.audio["frames"]]
    assert card.input.channels == 1 and len(card.input.mean) == 1
    history = json.loads((audio_run.run_dir / "history.json").read_text())
    assert {"words/lwlrap", "words/map", "words/f1"} <= set(history[-1]["val"])
    # the checkpoint rebuilds the 1-channel model
    from edgekit.train.checkpoint import model_from_checkpoint

    model, _, _ = model_from_checkpoint(audio_run.run_dir / "best.pt")
    assert model.backbone.conv_stem.in_channels == 1


def test_vit_at_non_square_input(tiny_config):
    from edgekit.train.supervised import train

    cfg = tiny_config(**{"data.source": "speech_commands", "data.limit": 16, "model.arch": "test_vit",
                         "train.epochs": 1})
    result = train(cfg, verbose=False)
    assert result.card.input.size == [64, 96]
    pe = result.model.backbone.patch_embed
    assert pe.proj.in_channels == 1 and tuple(pe.grid_size) == (4, 6)  # 16 px patches over 64 x 96
    assert "words/lwlrap" in result.history[-1]["val"]


def test_val_metrics_are_per_sound(audio_run):
    """Evaluation aggregates each sound's windows (the runtime's aggregation) before the metrics."""
    from edgekit.train.data import ImageDataset, eval_transform, make_loader
    from edgekit.train.losses import Supervised
    from edgekit.train.metrics import compute_metrics, per_sound
    from edgekit.train.trained import load_trained
    from edgekit.train.trainer import evaluate

    trained = load_trained(audio_run.run_dir / "best.pt")
    trained.images("val", limit=1)  # loads the data
    val = trained._data.val.subset(np.arange(48))  # 24 sounds of 2 windows
    tf = eval_transform(trained.card.input)
    x = torch.stack([tf(val.load(i)) for i in range(len(val))])
    y = val.targets
    with torch.no_grad():
        logits = trained.model(x)["words"].numpy()
    by_sound = compute_metrics(trained.card.heads, *per_sound({"words": logits}, y, val.groups, "mean"))
    loader = make_loader(ImageDataset(val, eval_transform(trained.card.input)), 8, None, 0)
    got = evaluate(trained.model, Supervised(TaskLoss(trained.card.heads)), loader, trained.card,
                   torch.device("cpu"), groups=val.groups)
    assert len(np.unique(val.groups)) < len(val)  # sounds with several windows
    assert got["words/lwlrap"] == pytest.approx(by_sound["words/lwlrap"], abs=1e-6)

    heads = audio_run.card.heads
    out = {"words": np.array([[3.0] + [0.0] * 9, [-3.0] + [0.0] * 9, [0.0] * 10], np.float32)}
    y = {"words": np.array([[1.0] + [0.0] * 9, [1.0] + [0.0] * 9, [0.0] * 9 + [1.0]], np.float32)}
    grouped, targets = per_sound(out, y, np.array([0, 0, 1]), "max")
    assert grouped["words"][0, 0] == 3.0 and len(targets["words"]) == 2
    assert compute_metrics(heads, grouped, targets)["words/lwlrap"] != compute_metrics(heads, out, y)["words/lwlrap"]


def test_spec_augment_masks_bands_and_spans():
    x = torch.ones(1, 64, 96)
    torch.manual_seed(3)
    spec_augment(x, freq_masks=2, freq_mask=8, time_masks=2, time_mask=16)
    zero = x[0] == 0
    assert zero.any()
    rows, cols = zero.all(1), zero.all(0)  # masked mel bands are zero across time, masked spans across bands
    assert rows.sum() + cols.sum() > 0 and (zero == (rows[:, None] | cols[None, :])).all()
    y = torch.ones(1, 64, 96)
    torch.manual_seed(3)
    spec_augment(y, freq_masks=2, freq_mask=8, time_masks=2, time_mask=16)
    assert torch.equal(x, y)  # seeded: reproducible


def test_mixup_mixes_inputs_and_losses(audio_run):
    torch.manual_seed(0)
    task = TaskLoss(audio_run.card.heads)
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return {"words": x.flatten(1)[:, :10]}

    x = torch.randn(4, 1, 8, 8)
    y = {"words": (torch.rand(4, 10) > 0.5).float()}
    probe = Probe().train()
    torch.manual_seed(1)
    loss, terms, out = Mixup(task, 0.4)(probe, {"image": x, "targets": y})
    torch.manual_seed(1)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    perm = torch.randperm(4)
    assert torch.allclose(seen["x"], lam * x + (1 - lam) * x[perm])
    expect = lam * task(out, y)[0] + (1 - lam) * task(out, {"words": y["words"][perm]})[0]
    assert torch.allclose(loss, expect)
