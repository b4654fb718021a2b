"""--max-drop: INT8 files only when each backend's file passes its gate through its own runtime."""

import json

import pytest

from edgekit.cli import main
from edgekit.export.gates import GATES


def test_gate_met_records_sensitivity_and_the_measured_drop(trained_run, tmp_path):
    from edgekit.recipes.quantize import quantize_checkpoint

    summary = quantize_checkpoint(trained_run.run_dir / "best.pt", "ptq", ["onnx"], tmp_path, calib_images=16,
                                  verbose=False)  # the default gate: 1 point
    saved = json.loads((tmp_path / "quant.json").read_text())
    assert saved["gate"]["int8_gate"] == GATES["int8"].to_dict() and saved["gate"]["failed"] == {}
    layers = [r["layer"] for r in saved["sensitivity"]]
    assert "heads.digit" in layers and all(r["sqnr_db"] is None or r["sqnr_db"] > -50 for r in saved["sensitivity"])
    assert (tmp_path / "sensitivity.png").exists() and (tmp_path / "model.int8.onnx").exists()
    parity = {e["file"]: e for e in json.loads((tmp_path / "parity.json").read_text())["artifacts"]}
    head = parity["model.int8.onnx"]["heads"]["digit"]
    measured = (head["reference_accuracy"] - head["accuracy"]) * 100
    trail = saved["gate"]["trail"]["onnx"]
    assert trail[-1]["passed"] and trail[-1]["float_layers"] == saved["gate"]["float_layers"]["onnx"]
    assert parity["model.int8.onnx"]["passed"] and measured <= GATES["int8"].max_drop_points
    drop = summary["backends"]["onnxruntime"]["heads"]["digit"]["drop_points"]
    fp32 = parity["model.onnx"]["heads"]["digit"]["accuracy"]
    assert drop == pytest.approx((fp32 - head["accuracy"]) * 100)


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_gate_that_cannot_be_met_fails_on_the_measured_drop(trained_run, tmp_path, monkeypatch, capsys,
                                                           outlier_checkpoint, target):
    """The float-layer search is the same for every INT8 target (an OpenVINO IR's float layers are NNCF's
    ignored scope) and says when nothing passes."""
    from edgekit import formats
    from edgekit.recipes import quantize

    if target == "openvino":
        pytest.importorskip("nncf")
    ckpt = outlier_checkpoint(trained_run.run_dir / "best.pt", tmp_path / "outlier.pt")  # INT8 collapses
    monkeypatch.setattr(quantize, "candidate_layers", lambda trained: ["heads.digit"])  # not enough
    argv = ["quantize", str(ckpt), "--target", target, "--calib", "16", "--max-drop", "0.5", "--out",
            str(tmp_path / "q"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: INT8 cannot pass its gate on {target}") and "\n" not in err
    assert f"Tried: {target}: none -> drop" in err
    assert not (tmp_path / "q" / formats.FORMATS[target].file("int8")).exists()
    trail = json.loads((tmp_path / "q" / "quant.json").read_text())["gate"]["trail"][target]
    assert [t["float_layers"] for t in trail] == [[], ["heads.digit"]]  # every candidate tried, most sensitive first
    assert all(not t["passed"] and t["drop_points"] > 30 for t in trail)  # measured through the target's runtime


def test_max_drop_must_be_sensible(trained_run, tmp_path, capsys):
    ckpt = str(trained_run.run_dir / "best.pt")
    assert main(["quantize", ckpt, "--max-drop", "1", "--skip-layers", "heads.digit", "--out", str(tmp_path)]) == 2
    assert "leave --skip-layers at auto" in capsys.readouterr().err
    assert main(["export", ckpt, "--max-drop", "150", "--target", "onnx", "--out", str(tmp_path)]) == 2
    assert "--max-drop is in accuracy points (0-100), got 150" in capsys.readouterr().err


@pytest.mark.parametrize("drop", [-1.0])
def test_negative_drop_is_refused(trained_run, tmp_path, drop):
    from edgekit.errors import ConfigError
    from edgekit.recipes.quantize import quantize_checkpoint

    with pytest.raises(ConfigError, match=r"in accuracy points \(0-100\)"):
        quantize_checkpoint(trained_run.run_dir / "best.pt", "ptq", ["onnx"], tmp_path, calib_images=8,
                            max_drop=drop, verbose=False)
