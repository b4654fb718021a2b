"""--max-drop: INT8 files only when each backend meets the accuracy gate through its own runtime."""

import json

import pytest

from edgekit.cli import main


def test_gate_met_records_sensitivity_and_float_layers(trained_run, tmp_path):
    from edgekit.recipes.quantize import quantize_checkpoint

    summary = quantize_checkpoint(trained_run.run_dir / "best.pt", "ptq", ["onnx"], tmp_path, calib_images=16,
                                  max_drop=100.0, verbose=False)
    saved = json.loads((tmp_path / "quant.json").read_text())
    assert saved["gate"]["float_layers"] == {"onnx": []} and saved["gate"]["failed"] == {}
    layers = [r["layer"] for r in saved["sensitivity"]]
    assert "heads.digit" in layers and all(r["sqnr_db"] is None or r["sqnr_db"] > -50 for r in saved["sensitivity"])
    assert (tmp_path / "sensitivity.png").exists() and (tmp_path / "model.int8.onnx").exists()
    assert summary["backends"]["onnxruntime"]["heads"]["digit"]["drop_points"] <= 100.0


def test_gate_that_cannot_be_met_fails_and_writes_no_int8_file(trained_run, tmp_path, monkeypatch, capsys):
    from edgekit.recipes import accuracy_gate, quantize

    monkeypatch.setattr(accuracy_gate, "_drop", lambda report, backend: 7.5)  # INT8 never good enough
    monkeypatch.setattr(quantize, "candidate_layers", lambda trained: ["heads.digit"])
    argv = ["quantize", str(trained_run.run_dir / "best.pt"), "--target", "onnx", "--calib", "16",
            "--max-drop", "0.5", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: INT8 cannot meet --max-drop 0.5 on onnx") and "\n" not in err
    assert "Tried: onnx: none -> 7.50" in err
    assert not (tmp_path / "model.int8.onnx").exists()
    trail = json.loads((tmp_path / "quant.json").read_text())["gate"]["trail"]["onnx"]
    assert [t["float_layers"] for t in trail] == [[], ["heads.digit"]]  # every candidate tried, most sensitive first


def test_max_drop_must_be_sensible(trained_run, tmp_path, capsys):
    ckpt = str(trained_run.run_dir / "best.pt")
    assert main(["quantize", ckpt, "--max-drop", "1", "--skip-layers", "heads.digit", "--out", str(tmp_path)]) == 2
    assert "leave --skip-layers at auto" in capsys.readouterr().err
    assert main(["export", ckpt, "--max-drop", "1", "--target", "onnx", "--out", str(tmp_path)]) == 2
    assert "add --int8" in capsys.readouterr().err


@pytest.mark.parametrize("drop", [-1.0])
def test_negative_drop_is_refused(trained_run, tmp_path, drop):
    from edgekit.errors import ConfigError
    from edgekit.recipes.quantize import quantize_checkpoint

    with pytest.raises(ConfigError, match="cannot be negative"):
        quantize_checkpoint(trained_run.run_dir / "best.pt", "ptq", ["onnx"], tmp_path, calib_images=8,
                            max_drop=drop, verbose=False)
