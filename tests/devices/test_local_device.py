"""A device over SSH on 127.0.0.1 (tests/devices/conftest.py): setup into a torch-free venv, then check, predict and
bench on it, with the results back here."""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

from tests.devices.conftest import edgekit


def _files(exported, tmp_path, names=("model.onnx", "model.int8.onnx", "model.int8.tflite")):
    """Copies of the shared export's files and its parity.json (these tests write into them)."""
    out = tmp_path / "files"
    out.mkdir()
    for name in [*names, "parity.json"]:
        shutil.copy(exported.out_dir / name, out / name)
    return out


def test_setup_makes_a_torch_free_venv_and_records_the_machine(local_device, ssh_server):
    address, env, log = local_device
    registry = json.loads(edgekit(["device", "list", "--json"], env).stdout)
    record = next(iter(registry["records"].values()))
    assert record["arch"] == platform.machine()
    assert record["emulated"] is False
    assert record["packages"]["onnxruntime"] and record["packages"]["ai-edge-litert"]
    assert record["install"] == "offline" and "CPU features:" in log
    folder = record["folder"]
    assert (ssh_server.root / "device" / "edgekit" / "device.json").is_file() and folder.endswith("device/edgekit")
    venv_python = f"{folder}/venv/bin/python"
    import subprocess

    torch = subprocess.run([venv_python, "-c", "import torch"], capture_output=True, text=True)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr  # the device runs without torch


def test_check_parity_on_the_device_records_both_machines(local_device, exported, tmp_path):
    address, env, _ = local_device
    files = _files(exported, tmp_path)
    target = files / "model.int8.onnx"
    proc = edgekit(["check", str(target), "--parity", "--on", address], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PASS  on" in proc.stdout and "validation samples" in proc.stdout
    entry = next(e for e in json.loads((files / "parity.json").read_text())["artifacts"]
                 if e["file"] == target.name)
    machines = entry["verified_on"]
    assert [m["where"] for m in machines] == ["host", address]
    assert machines[0]["digest"] == machines[1]["digest"]
    for m in machines:
        assert m["passed"] and m["runtimes"]["onnxruntime"]
        samples = next(g for g in m["gates"] if "validation samples" in g["gate"])
        assert samples["heads"]["digit"]["sqnr_db"] > 10  # the INT8 gate's floor, on the samples export used
    # the same bytes on the same machines: a second check replaces, never appends (here on 5 samples)
    again = edgekit(["check", str(target), "--parity", "--on", address, "--val-images", "5", "--json"], env)
    gates = json.loads(again.stdout)["gates"]
    assert "parity on 5 validation samples" in gates[1]["gate"], again.stderr[-2000:]
    assert again.returncode == (0 if all(g["passed"] for g in gates) else 1)  # 5 samples: a noisy accuracy drop
    entry = next(e for e in json.loads((files / "parity.json").read_text())["artifacts"] if e["file"] == target.name)
    assert len(entry["verified_on"]) == 2
    assert all("5 validation samples" in m["gates"][1]["gate"] for m in entry["verified_on"])


def test_bench_on_the_device_measures_there_and_recommends_what_passed_there(local_device, exported, tmp_path):
    address, env, _ = local_device
    files = _files(exported, tmp_path, ("model.onnx", "model.int8.onnx"))
    out = tmp_path / "bench"
    # only the INT8 file was verified on the device: the FP32 one, faster or not, is not recommended there
    assert edgekit(["check", str(files / "model.int8.onnx"), "--parity", "--on", address], env).returncode == 0
    proc = edgekit(["bench", str(files / "model.onnx"), str(files / "model.int8.onnx"), "--on", address, "--batch",
                    "1", "--seconds", "0.2", "--out", str(out), "--threads", "1"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    rows = report["rows"]
    assert {r["backend"] for r in rows} == {"ort"} and all(r["on"] == address for r in rows)
    assert all(r["threads"] == 1 and r["p50_ms"] > 0 and r["accuracy"]["digit"] > 0.5 for r in rows)
    assert report["meta"]["on"] == address and "torch: not measured on" in " ".join(report["notes"])
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["device"] == address and [p["file"] for p in rec["picks"]] == [str(files / "model.int8.onnx")]
    left = {r["file"]: r["why"] for r in rec["left_out"] if r["file"]}
    assert left[str(files / "model.onnx")].startswith("not verified on")
    card = json.loads((out / "model.int8.onnx.report.json").read_text())  # in the report folder, not beside the file
    assert card["environment"]["device"] == address and len(card["verified_on"]) == 2
    assert not (files / "model.onnx.report.json").exists()


def test_predict_on_the_device_gives_the_answers_it_gives_here(local_device, exported, val_pngs, tmp_path):
    address, env, _ = local_device
    model = _files(exported, tmp_path, ("model.int8.tflite",)) / "model.int8.tflite"
    here = edgekit(["predict", str(model), str(val_pngs), "--json"], env)
    there = edgekit(["predict", str(model), str(val_pngs), "--json", "--on", address], env)
    assert here.returncode == 0 and there.returncode == 0, there.stderr[-2000:]
    mine, theirs = json.loads(here.stdout), json.loads(there.stdout)
    assert [r["source"] for r in mine] == [r["source"] for r in theirs]  # paths read as the user gave them
    assert [r["predictions"] for r in mine] == [r["predictions"] for r in theirs]
    assert all(r["device"] == address for r in theirs)


def test_a_device_set_up_with_another_edgekit_is_refused(local_device, tmp_path):
    """Host and device must judge with the same code: a device set up from another build says so, before any work."""
    address, env, _ = local_device
    registry = json.loads((Path(env["XDG_CONFIG_HOME"]) / "edgekit" / "devices.json").read_text())
    registry["records"][address]["edgekit_build"] = "0.0.1+another"
    config = tmp_path / "config" / "edgekit"
    config.mkdir(parents=True)
    (config / "devices.json").write_text(json.dumps(registry))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not run")
    proc = edgekit(["check", str(model), "--parity", "--on", address], {**env, "XDG_CONFIG_HOME": str(config.parent)})
    assert proc.returncode == 2 and f"device {address}: it runs another edgekit (0.0.1+another)" in proc.stderr
    assert "run edgekit device setup" in proc.stderr
