import pytest

from edgekit.config import load_config, parse_heads
from edgekit.errors import ConfigError


def test_defaults_overrides_and_sets():
    cfg = load_config(overrides={"train.epochs": 3, "model.arch": "resnet18"}, sets=["train.lr=0.01", "data.imgsz=48"])
    assert (cfg.train.epochs, cfg.model.arch, cfg.train.lr, cfg.data.imgsz) == (3, "resnet18", 0.01, 48)
    assert cfg.data.source == "digits" and cfg.distill is None


def test_yaml_round_trip(tmp_path):
    cfg = load_config(overrides={"name": "x", "model.heads": parse_heads("age:regression:mse,gender")}, stage="distill")
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path, stage="distill")
    assert again == cfg
    assert again.model.heads[0].loss == "mse" and again.model.heads[1].kind == "classification"
    assert again.distill.temperature == cfg.distill.temperature


@pytest.mark.parametrize("kwargs, message", [
    ({"sets": ["train.epochs=0"]}, "train.epochs"),
    ({"sets": ["train.nope=1"]}, "train.nope"),
    ({"sets": ["noequals"]}, "section.key=value"),
    ({"sets": ["train.epochs=3", "train.epochs.x=1"]}, "not a section"),
    ({"overrides": {"name": "a/b"}}, "plain folder name"),
])
def test_bad_values_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_config(**kwargs)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_parse_heads_errors():
    with pytest.raises(ConfigError):
        parse_heads(" , ")
    with pytest.raises(ConfigError):
        parse_heads("a:b:c:d")
