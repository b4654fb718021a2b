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
