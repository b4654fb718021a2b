"""Distilling sound models: the multilabel response loss, and `edgekit distill` on sound data."""

import json

import pytest
import torch

from edgekit.compress.distill import multilabel_response_loss


def test_multilabel_response_loss_is_a_per_class_binary_kl():
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    temp = 2.0
    p, q = torch.sigmoid(s / temp), torch.sigmoid(t / temp)
    kl = q * torch.log(q / p) + (1 - q) * torch.log((1 - q) / (1 - p))
    assert torch.allclose(multilabel_response_loss(s, t, temp), kl.sum(1).mean() * temp ** 2, atol=1e-5)
    assert multilabel_response_loss(t, t, temp).abs() < 1e-6  # zero when the student agrees
    # every tag is its own yes/no: raising one logit does not push the others (a softmax KL would)
    s2 = t.clone().requires_grad_(True)
    multilabel_response_loss(s2 + torch.eye(4)[0] * 3, t, temp).backward()
    assert s2.grad[:, 1:].abs().max() < 1e-7 and s2.grad[:, 0].abs().min() > 0


def test_distill_a_sound_student(audio_run, tiny_config):
    """With the response loss alone (no feature or task loss), the student learns the teacher's answers: its KD
    loss on the training clips falls to under half its first epoch's. Without the response loss nothing trains
    and it stays where the untrained student starts (about 0.27 here, measured)."""
    from edgekit.compress.distill import distill

    cfg = tiny_config(stage="distill", **{"data.source": "speech_commands", "data.limit": 32, "train.epochs": 4,
                                          "train.batch_size": 8, "distill.alpha": 0.0, "distill.gamma": 0.0,
                                          "distill.teacher": "timm:test_efficientnet", "distill.views": 1,
                                          "distill.teacher_weights": str(audio_run.run_dir / "best.pt"),
                                          "distill.baseline": False})
    report = distill(cfg, verbose=False)
    history = json.loads((report.run_dir / "history.json").read_text())
    assert report.teacher["logits_from"] == "head" and "words/lwlrap" in report.teacher["val"]
    assert "words/lwlrap" in history[-1]["val"]
    resp = [epoch["losses"]["resp"] for epoch in history]
    assert resp[-1] < 0.5 * resp[0], f"the KD loss did not fall: {resp}"


def test_distill_refuses_mixup_and_image_teachers(audio_run, trained_run, tiny_config):
    from edgekit.compress.distill import distill
    from edgekit.errors import ConfigError

    base = {"data.source": "speech_commands", "data.limit": 16, "train.epochs": 1, "distill.baseline": False,
            "distill.teacher": "timm:test_efficientnet"}
    with pytest.raises(ConfigError, match="mixup"):
        distill(tiny_config(stage="distill", **base, **{"train.mixup": 0.4,
                                                        "distill.teacher_weights": str(audio_run.run_dir / "best.pt")}),
                verbose=False)
    with pytest.raises(ConfigError, match="image model"):
        distill(tiny_config(stage="distill", **base,
                            **{"distill.teacher_weights": str(trained_run.run_dir / "best.pt")}), verbose=False)
