import json

import pytest

from edgekit.compress.kd_seeds import aggregate_seeds, kd_over_seeds
from edgekit.errors import ConfigError


def test_aggregate_seeds_by_hand():
    r = aggregate_seeds([0.90, 0.92, 0.94], [0.85, 0.86, 0.90])
    assert r["n"] == 3 and r["kd"]["values"] == [0.90, 0.92, 0.94]
    assert r["kd"]["mean"] == pytest.approx(0.92) and r["no_kd"]["mean"] == pytest.approx(0.87)
    assert r["kd"]["std"] == pytest.approx(0.02)  # ddof=1: sqrt((4 + 0 + 4) e-4 / 2)
    assert r["no_kd"]["std"] == pytest.approx((14e-4 / 2) ** 0.5)
    assert r["differences"] == pytest.approx([0.05, 0.06, 0.04])
    assert r["gain"] == pytest.approx(0.05) and r["spread"] == pytest.approx((7e-4) ** 0.5)
    assert r["exceeds_spread"] is True and "better" in r["verdict"]


def test_aggregate_seeds_within_noise_worse_and_lower_is_better():
    noisy = aggregate_seeds([0.90, 0.96], [0.92, 0.92])  # gain +0.01, KD std 0.042
    assert noisy["gain"] == pytest.approx(0.01) and noisy["exceeds_spread"] is False
    assert "within" in noisy["verdict"]
    worse = aggregate_seeds([0.80, 0.81], [0.90, 0.91])
    assert worse["gain"] == pytest.approx(-0.10) and worse["exceeds_spread"] is False and "worse" in worse["verdict"]
    mae = aggregate_seeds([2.0, 2.2], [3.0, 3.1], mode="min")  # a lower MAE with KD is a positive gain
    assert mae["differences"] == pytest.approx([1.0, 0.9]) and mae["gain"] == pytest.approx(0.95)
    assert mae["exceeds_spread"] is True


def test_aggregate_one_seed_has_no_spread_and_bad_input_is_refused():
    one = aggregate_seeds([0.9], [0.8])
    assert one["kd"]["std"] is None and one["spread"] is None and one["exceeds_spread"] is None
    assert one["gain"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="as many"):
        aggregate_seeds([0.9, 0.8], [0.8])
    with pytest.raises(ValueError, match="mode"):
        aggregate_seeds([0.9], [0.8], mode="up")


def test_kd_over_two_seeds_trains_the_teacher_once_on_the_full_split(tiny_config, monkeypatch):
    import numpy as np

    from edgekit.compress import distill as distill_module

    cfg = tiny_config("distill", name="kds", data__limit=64, train__epochs=1, distill__teacher="timm:test_efficientnet",
                      distill__teacher_epochs=1, distill__views=1)
    result = kd_over_seeds(cfg, seeds=2, fraction=0.5, verbose=False, unlabeled="rest")
    saved = json.loads((cfg.run_dir.parent / "kds-f0.5" / "seeds.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["monitor"] == "digit/acc" and saved["fraction"] == 0.5
    assert len(saved["kd"]["values"]) == 2 and len(saved["no_kd"]["values"]) == 2
    spread = max(np.std(saved["kd"]["values"], ddof=1), np.std(saved["no_kd"]["values"], ddof=1))
    assert saved["spread"] == pytest.approx(spread) and saved["exceeds_spread"] == bool(saved["gain"] > spread)
    # the third arm: KD whose student also sees the other half of the images, unlabelled
    arm = saved["with_unlabeled"]
    assert arm["unlabeled"] == "rest" and arm["unlabeled_samples"] == 32 and len(arm["kd"]["values"]) == 2
    assert arm["no_kd"]["values"] == saved["no_kd"]["values"]  # compared with the same labelled-only baseline
    unl_card = json.loads((cfg.run_dir.parent / "kds-f0.5-unl" / "card.json").read_text())
    assert unl_card["provenance"]["train_samples"] == 32 and unl_card["provenance"]["unlabeled_samples"] == 32
    import torch

    cache = torch.load(cfg.run_dir.parent / "kds-f0.5-unl" / "teacher_cache.pt", weights_only=True)
    assert cache["emb"].shape[0] == 64  # the teacher labelled every image for that student
    assert saved["gain"] == pytest.approx(result["gain"])
    assert [r["kd"].rsplit("/", 1)[-1] for r in saved["runs"]] == ["kds-f0.5", "kds-f0.5-seed1"]
    assert [r["no_kd"].rsplit("/", 1)[-1] for r in saved["runs"]] == ["kds-f0.5-nokd", "kds-f0.5-seed1-nokd"]
    runs = cfg.run_dir.parent.parent
    teachers = [p for p in (runs / "teacher").iterdir() if p.is_dir()]
    assert len(teachers) == 1 and saved["teacher"]["trained_here"]  # trained once for both seeds
    teacher_card = json.loads((teachers[0] / "card.json").read_text())
    student_card = json.loads((runs / "distill" / "kds-f0.5-seed1" / "card.json").read_text())
    assert teacher_card["provenance"]["train_samples"] == 64  # the teacher saw the full split
    assert student_card["provenance"]["train_samples"] == saved["train_samples"] == 32  # the students half
    assert student_card["provenance"]["seed"] == 1
    def no_training(*args, **kwargs):
        raise AssertionError("a finished seed was trained again")

    monkeypatch.setattr(distill_module, "distill", no_training)  # a second call reads the finished seeds back
    again = kd_over_seeds(cfg, seeds=2, fraction=0.5, verbose=False, unlabeled="rest")
    assert all(r["reused"] for r in again["runs"]) and all(r["reused"] for r in again["with_unlabeled"]["runs"])
    assert again["kd"]["values"] == saved["kd"]["values"]


def test_kd_over_seeds_needs_the_baseline(tiny_config):
    cfg = tiny_config("distill", sets=["distill.baseline=false"])
    with pytest.raises(ConfigError, match="baseline"):
        kd_over_seeds(cfg, seeds=2, verbose=False)
