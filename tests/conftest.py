"""Shared fixtures: tiny configs and session-scoped trained runs, so the suite stays fast."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a model hub

TINY = {
    "model.arch": "test_efficientnet",
    "data.imgsz": 16,
    "data.limit": 96,
    "train.epochs": 2,
    "train.batch_size": 32,
    "train.save_every": 1,
    "train.threads": 2,
}


@pytest.fixture
def tiny_config(tmp_path):
    """``tiny_config(stage="train", **overrides)`` -> a RunConfig writing under tmp_path."""
    from edgekit.config import load_config

    def make(stage: str = "train", sets: list[str] | None = None, **overrides):
        ov = {**TINY, "out": str(tmp_path / "runs"), **{k.replace("__", "."): v for k, v in overrides.items()}}
        return load_config(overrides=ov, sets=sets, stage=stage)

    return make


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny model trained for 2 epochs on the digits (shared by every test that needs a checkpoint)."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(overrides={**TINY, "out": str(out / "runs"), "name": "tiny"})
    return train(cfg, verbose=False)


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """The tiny model exported to every target, with FP16 and INT8 variants, verified."""
    from edgekit.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("exported")
    return export_checkpoint(trained_run.run_dir / "best.pt", out_dir=out, int8=True, fp16=True, calib_images=64,
                             verbose=False)


@pytest.fixture(scope="session")
def mobileone_run(tmp_path_factory):
    """A tiny mobileone_s0 (reparameterizable) trained for one epoch."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    out = tmp_path_factory.mktemp("mobileone")
    cfg = load_config(overrides={**TINY, "model.arch": "mobileone_s0", "train.epochs": 1, "out": str(out / "runs"),
                                 "name": "m1"})
    return train(cfg, verbose=False)


@pytest.fixture(scope="session")
def val_pngs(tmp_path_factory, trained_run):
    """The tiny run's validation images as PNG files (lossless), named <index>_<label>.png."""
    from edgekit.train.data import load_data
    from edgekit.train.trained import load_trained

    trained = load_trained(trained_run.run_dir / "best.pt")
    cfg, heads = trained.run_config()
    split = load_data(cfg, heads).val
    folder = tmp_path_factory.mktemp("pngs")
    for i in range(len(split)):
        split.load(i).save(folder / f"{i:03d}_{split.targets['digit'][i]}.png")
    return folder


@pytest.fixture(scope="session")
def clip_run(tmp_path_factory):
    """A tiny clip model (4-frame moving digits, attention pooling) trained for one epoch."""
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    out = tmp_path_factory.mktemp("clips")
    cfg = load_config(overrides={**TINY, "data.source": "moving_digits", "data.frames": 4, "data.limit": 64,
                                 "train.epochs": 1, "out": str(out / "runs"), "name": "clip"})
    return train(cfg, verbose=False)
