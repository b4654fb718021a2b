"""Each bad case of a device ends in one line naming the device and the cause, exit code 2, and keeps what was
measured before: an unreachable host, a refused key, an unknown or changed host key, no Python >= 3.10, a platform
without wheels (32-bit ARM), a full disk, a device lost in the middle of a bench."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.devices.conftest import CACHE, edgekit


def _env(home: Path, config: Path) -> dict:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(config), "EDGEKIT_CACHE": CACHE}
    env.pop("SSH_AUTH_SOCK", None)
    return env


def _one_line(proc: subprocess.CompletedProcess, device: str, *causes: str) -> str:
    """The command failed with exit 2 and one line on stderr naming the device and the cause."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    errors = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    line = errors[0]
    assert f"device {device}" in line, line
    for cause in causes:
        assert cause in line, line
    return line


def test_unreachable_host(ssh_server, tmp_path):
    from edgekit.devices.emulated import free_port

    address = f"ssh://{ssh_server.user}@127.0.0.1:{free_port()}/tmp/nowhere/edgekit"
    proc = edgekit(["device", "setup", address], _env(ssh_server.client_home(tmp_path), tmp_path / "c"), timeout=120)
    _one_line(proc, address, "unreachable", "refused")


def test_refused_key(ssh_server, tmp_path):
    env = _env(ssh_server.client_home(tmp_path, key="bad"), tmp_path / "c")
    proc = edgekit(["device", "setup", ssh_server.address()], env, timeout=120)
    _one_line(proc, ssh_server.address(), "refused our SSH keys", "never uses passwords")


def test_unknown_host_key_is_refused_unless_accepted_and_then_said(ssh_server, tmp_path):
    home = ssh_server.client_home(tmp_path, known=False)
    env = _env(home, tmp_path / "c")
    address = ssh_server.address("nothing/edgekit")
    _one_line(edgekit(["device", "clean", address], env, timeout=120), address, "not in", "--accept-new-host-key")
    assert (home / ".ssh" / "known_hosts").read_text() == ""
    proc = edgekit(["device", "clean", address, "--accept-new-host-key"], env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"accepted the new host key of [127.0.0.1]:{ssh_server.port}: ssh-ed25519 SHA256:" in proc.stderr
    assert (home / ".ssh" / "known_hosts").read_text().split()[1:] == ssh_server.host_key.split()
    assert edgekit(["device", "clean", address], env, timeout=120).returncode == 0  # known from now on


def test_changed_host_key_is_refused_even_with_the_accept_flag(ssh_server, tmp_path):
    home = ssh_server.client_home(tmp_path)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = " ".join(Path(str(other) + ".pub").read_text().split()[:2])
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{ssh_server.port} {fake}\n")
    env = _env(home, tmp_path / "c")
    for extra in ([], ["--accept-new-host-key"]):
        proc = edgekit(["device", "setup", ssh_server.address(), *extra], env, timeout=120)
        _one_line(proc, ssh_server.address(), "CHANGED", f"ssh-keygen -R '[127.0.0.1]:{ssh_server.port}'")


def test_no_python_310(ssh_server, tmp_path):
    old = tmp_path / "old" / "python3"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 3.8.10\n")
    old.chmod(0o755)
    env = _env(ssh_server.client_home(tmp_path), tmp_path / "c")
    proc = edgekit(["device", "setup", ssh_server.address("py38/edgekit"), "--python", str(old)], env, timeout=120)
    _one_line(proc, ssh_server.address("py38/edgekit"), "no Python >= 3.10", "python3 3.8.10")
    assert not (ssh_server.root / "py38").exists()  # nothing was made on the device


def test_32bit_arm_has_no_wheels(ssh_server, tmp_path):
    env = _env(ssh_server.client_home(tmp_path, key="armv7"), tmp_path / "c")
    proc = edgekit(["device", "setup", ssh_server.address("arm32/edgekit"), "--offline"], env, timeout=120)
    _one_line(proc, ssh_server.address("arm32/edgekit"), "armv7l (32-bit ARM) has no wheels", "aarch64")


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only): a device folder there runs out of space."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a small disk needs root (mount -t tmpfs)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk(ssh_server, local_device, small_disk, exported, tmp_path):
    address, env, _ = local_device
    # setup: too little room for the runtime, said before anything is copied
    full = f"ssh://{ssh_server.user}@127.0.0.1:{ssh_server.port}{small_disk}/setup/edgekit"
    _one_line(edgekit(["device", "setup", full, "--offline"], env, timeout=120), full, "disk is full", "MB free")
    # a set-up device whose disk fills up: sending a file there fails with that cause, and no partial file stays
    registry = Path(env["XDG_CONFIG_HOME"]) / "edgekit" / "devices.json"
    reg = json.loads(registry.read_text())
    record = dict(next(iter(reg["records"].values())))
    folder = small_disk / "dev" / "edgekit"
    (folder / "venv" / "bin").mkdir(parents=True)
    (folder / "venv" / "bin" / "python").symlink_to(f"{record['folder']}/venv/bin/python")
    tiny = f"ssh://{ssh_server.user}@127.0.0.1:{ssh_server.port}{folder}"
    record["folder"] = str(folder)
    reg["records"][tiny] = record
    config = tmp_path / "config"
    (config / "edgekit").mkdir(parents=True)
    (config / "edgekit" / "devices.json").write_text(json.dumps(reg))
    big = tmp_path / "model.onnx"
    shutil.copy(exported.out_dir / "model.onnx", big)
    shutil.copy(exported.out_dir / "parity.json", tmp_path / "parity.json")
    assert big.stat().st_size > 256 * 1024
    proc = edgekit(["check", str(big), "--max-size-mb", "100", "--on", tiny], {**env, "XDG_CONFIG_HOME": str(config)})
    _one_line(proc, tiny, "disk is full", "copying model.onnx", "No space left on device")
    assert not list((folder / "files").rglob("*.onnx*"))


def test_device_lost_in_the_middle_of_a_bench_keeps_what_was_measured(ssh_server, local_device, exported, tmp_path,
                                                                      monkeypatch, capsys):
    from edgekit.cli import main
    from edgekit.devices.remote import Remote

    address, env, _ = local_device
    for key in ("HOME", "XDG_CONFIG_HOME", "EDGEKIT_CACHE"):
        monkeypatch.setenv(key, env[key])
    files = tmp_path / "files"
    files.mkdir()
    for name in ("model.onnx", "model.int8.onnx", "parity.json"):
        shutil.copy(exported.out_dir / name, files / name)
    measured = Remote.worker

    def then_cut(self, spec, timeout):  # the first measurement comes back, then the device goes away
        row = measured(self, spec, timeout)
        for pid in ssh_server.sessions():  # the sshd processes serving this connection (the test's own sshd)
            os.kill(pid, signal.SIGKILL)
        return row

    monkeypatch.setattr(Remote, "worker", then_cut)
    out = tmp_path / "bench"
    rc = main(["bench", str(files / "model.onnx"), str(files / "model.int8.onnx"), "--on", address, "--batch", "1",
               "--seconds", "0.1", "--data", "none", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    line = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and f"device {address}: connection lost during" in line[0], err
    assert "the 1 measurement(s) made before are kept in" in line[0]
    kept = json.loads((out / "bench.json").read_text())
    assert len(kept["rows"]) == 1 and kept["rows"][0]["p50_ms"] > 0 and kept["rows"][0]["on"] == address
    assert any(n.startswith("stopped: device") for n in kept["notes"])
