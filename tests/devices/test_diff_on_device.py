"""``edgekit diff FILE --on DEVICE`` on the localhost device (tests/devices/conftest.py: sshd on 127.0.0.1 into a
torch-free, onnx-free venv): the file's tapped run happens there, its tensors come back, and the report is the one
a diff here gives (same machine, same runtime versions), saying where each side ran; bad inputs are one line."""

from __future__ import annotations

import json
import math

import pytest

from tests.devices.conftest import edgekit


@pytest.fixture(scope="module")
def files(trained_run, tmp_path_factory):
    """The tiny model's FP32 ONNX and TFLite files (with golden inputs), and its INT8 ONNX file."""
    from edgekit.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("diff_on")
    export_checkpoint(trained_run.run_dir / "best.pt", targets=["onnx", "tflite"], out_dir=out, int8=True,
                      calib_images=32, verify=False, golden=True, verbose=False)
    return out


def _db(row):
    return math.inf if row["sqnr_db"] is None else row["sqnr_db"]


@pytest.mark.parametrize("name", ["model.int8.onnx", "model.tflite", "model.int8.tflite"])
def test_the_device_gives_the_layers_a_diff_here_gives(local_device, files, tmp_path, name):
    address, env, _ = local_device
    here = edgekit(["diff", str(files / name), "--json", "--out", str(tmp_path / "here")], env)
    there = edgekit(["diff", str(files / name), "--on", address, "--json", "--out", str(tmp_path / "there")], env)
    assert here.returncode == 0, here.stderr[-2000:]
    assert there.returncode == 0, there.stderr[-3000:]
    mine, theirs = json.loads(here.stdout), json.loads(there.stdout)
    assert theirs["file_runner"].endswith(f"on {address}") and theirs["reference_runner"] == "pytorch"
    where = theirs["ran_on"]["file"]
    assert where["machine"] == address and where["emulated"] is False and where["arch"]
    assert where["packages"]["onnxruntime"] and where["transfers"][0]["bytes"] > 0
    assert theirs["ran_on"]["reference"]["where"] == "host" and mine["ran_on"]["file"]["where"] == "host"
    # the same rows, tensors and numbers: the device is this machine with the same runtime (SQNR to 0.01 dB)
    assert len(theirs["layers"]) >= 15
    assert [(r["layer"], r["tensor"]) for r in theirs["layers"]] == [(r["layer"], r["tensor"]) for r in mine["layers"]]
    for a, b in zip(mine["layers"], theirs["layers"], strict=True):
        assert _db(a) == pytest.approx(_db(b), abs=0.01), (a["layer"], _db(a), _db(b))
    assert theirs["first_diverging"] == mine["first_diverging"]
    # the tapped run against the file's plain run, there: as here (INT8 TFLite: built-in kernels vs XNNPACK differ)
    assert theirs["taps_changed_outputs_rel"] == pytest.approx(mine["taps_changed_outputs_rel"], abs=1e-6)
    assert json.loads((tmp_path / "there" / "diff.json").read_text())["ran_on"]["file"]["machine"] == address


def test_the_printed_report_says_where_each_side_ran(local_device, files, tmp_path):
    address, env, _ = local_device
    proc = edgekit(["diff", str(files / "model.onnx"), "--on", address, "--out", str(tmp_path)],
                   {**env, "COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = " ".join((proc.stdout + proc.stderr).split())  # the console writes to stderr
    assert f"file ran on {address} (device, {address})" in text and "reference ran on" in text
    assert "(this host)" in text and "no layer is below" in text


def _one_line(proc, *causes):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    errors = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert all(c in errors[0] for c in causes), errors[0]


def test_an_unknown_device(files, tmp_path):
    import os

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    _one_line(edgekit(["diff", str(files / "model.onnx"), "--on", "nope"], env), "no device named 'nope'")
    _one_line(edgekit(["diff", str(files / "model.onnx"), "--on", "ssh://me@127.0.0.1:1/tmp/x/edgekit"], env),
              "not set up from this machine")


def test_a_device_without_the_files_runtime(local_device, tmp_path):
    """The localhost device has edgekit[runtime] only: an OpenVINO IR cannot run there (said before connecting)."""
    address, env, _ = local_device
    ir = tmp_path / "model.xml"
    ir.write_text("<net/>")
    _one_line(edgekit(["diff", str(ir), "--on", address], env), f"device {address}", "model.xml needs openvino",
              "not installed there")


def test_a_format_that_cannot_be_tapped_there(local_device, tmp_path):
    address, env, _ = local_device
    pte = tmp_path / "model.pte"
    pte.write_bytes(b"\0")
    _one_line(edgekit(["diff", str(pte), "--on", address], env), "model.pte", "ExecuTorch")
