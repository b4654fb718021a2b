import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from edgekit.errors import CheckpointError, DeviceError
from edgekit.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edgekit.train.device import resolve_device
from edgekit.train.supervised import resume_config, train


def test_run_folder(trained_run):
    run = trained_run.run_dir
    for f in ("config.yaml", "history.json", "best.pt", "last.pt", "epoch_1.pt", "epoch_2.pt", "card.json"):
        assert (run / f).is_file(), f
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    rec = history[-1]
    for key in ("lr", "seconds", "train_loss", "losses", "train", "val", "overfit_gap", "steps"):
        assert key in rec
    assert "task/digit" in rec["losses"] and "digit/acc" in rec["val"] and "loss" in rec["val"]
    card = json.loads((run / "card.json").read_text())
    assert card["arch"] == "test_efficientnet" and card["input"]["size"] == [16, 16]
    assert card["heads"][0]["classes"] == [str(i) for i in range(10)] and card["metrics"]["val"]
    model, card, ckpt = model_from_checkpoint(run / "best.pt")
    assert "train_state" not in ckpt and "train_state" in load_checkpoint(run / "last.pt")
    assert model(torch.zeros(1, 3, 16, 16))["digit"].shape == (1, 10)
    cfg = resume_config(run, "train")  # config.yaml is enough to rerun
    assert cfg.model.arch == "test_efficientnet" and cfg.data.limit == 96


def test_resume_equals_uninterrupted(tiny_config):
    sets = ["model.drop_rate=0.2"]  # dropout makes the RNG handling matter
    full = train(tiny_config(name="full", sets=sets), verbose=False)
    part_cfg = tiny_config(name="part", sets=sets)
    first = train(part_cfg, verbose=False, stop_after=1)
    assert len(first.history) == 1
    resumed = train(resume_config(part_cfg.run_dir, "train"), resume=True, verbose=False)
    a = load_checkpoint(full.run_dir / "last.pt")["model_state"]
    b = load_checkpoint(resumed.run_dir / "last.pt")["model_state"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]


_SAVER = """
import sys, torch
from edgekit.train.checkpoint import save_checkpoint
i = 0
while True:
    save_checkpoint(sys.argv[1], {"card": {}, "model_state": {"w": torch.full((4_000_000,), float(i))}, "epoch": i})
    print(i, flush=True)
    i += 1
"""


def test_kill_during_save_leaves_last_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "0"
        deadline = time.time() + 30
        while not list(tmp_path.glob(".last.pt.tmp-*")) and time.time() < deadline:
            pass
        os.kill(proc.pid, signal.SIGKILL)  # while the next checkpoint is half written
        assert list(tmp_path.glob(".last.pt.tmp-*")), "the kill did not land during a save"
    finally:
        proc.kill()
        proc.wait()
    ckpt = load_checkpoint(path)
    assert torch.all(ckpt["model_state"]["w"] == float(ckpt["epoch"]))
    save_checkpoint(path, {"card": {}, "model_state": {}, "epoch": -1})  # the next save cleans up
    assert not list(tmp_path.glob(".last.pt.tmp-*"))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an edgekit checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_missing_devices_are_clear_errors():
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    if not (torch.backends.mps.is_available()):
        with pytest.raises(DeviceError, match="MPS is not available"):
            resolve_device("mps")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"


def test_ddp_with_two_cpu_processes(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "edgekit",
           "train", "--device", "cpu", "--model", "test_efficientnet", "--imgsz", "16", "--epochs", "1",
           "--batch-size", "16", "--out", str(out), "--name", "ddp", "--set", "data.limit=64", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = json.loads((out / "train" / "ddp" / "history.json").read_text())
    assert history[0]["world_size"] == 2
    assert history[0]["steps"] == 2  # 64 samples / 2 ranks / batch 16: each rank saw half the epoch
    model, _, _ = model_from_checkpoint(out / "train" / "ddp" / "best.pt")
    assert model(torch.zeros(1, 3, 16, 16))["digit"].shape == (1, 10)
