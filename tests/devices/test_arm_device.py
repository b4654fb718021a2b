"""The emulated 64-bit ARM Debian (``-m arm``; :mod:`edgekit.devices.emulated`): set up offline, the gates through
ARM's own kernels, bench marked as emulated, and ``pip install "edgekit[runtime]"`` there from the index and from
this machine's wheels. Its sshd is started and stopped here; the root is built once and cached."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.devices.conftest import CACHE, edgekit

pytestmark = pytest.mark.arm
FOLDER = "/root/edgekit-tests"  # in the cached root: the user's own ~/.edgekit there is left alone


@pytest.fixture(scope="session")
def arm(tmp_path_factory):
    """``(address, env)`` of the emulated device, with edgekit set up offline in FOLDER (fresh each session)."""
    from edgekit.devices import emulated

    if os.geteuid() != 0:
        pytest.skip("the emulated device needs root (chroot, mount namespaces)")
    emulated.build()
    base = tmp_path_factory.mktemp("arm-client")
    ssh = base / "home" / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-tests", "-f",
                    str(ssh / "id_ed25519")], check=True)
    was_running = emulated.running()
    if was_running:
        emulated.stop()
    pid, port = emulated.start(authorized_key=ssh / "id_ed25519.pub")
    (ssh / "known_hosts").write_text(f"[127.0.0.1]:{port} {emulated.host_key()}\n")
    env = {**os.environ, "HOME": str(base / "home"), "XDG_CONFIG_HOME": str(base / "config"), "EDGEKIT_CACHE": CACHE}
    env.pop("SSH_AUTH_SOCK", None)
    address = f"ssh://root@127.0.0.1:{port}{FOLDER}"
    edgekit(["device", "clean", address], env, timeout=300)
    setup = edgekit(["device", "setup", address, "--offline"], env, timeout=3600)
    assert setup.returncode == 0, setup.stderr[-3000:]
    yield address, env, setup.stderr
    emulated.stop()
    keys = emulated.root_dir() / "root" / ".ssh" / "authorized_keys"
    mine = (ssh / "id_ed25519.pub").read_text().strip()
    keys.write_text("".join(f"{ln}\n" for ln in keys.read_text().splitlines() if ln.strip() != mine))


def _device_run(env: dict, address: str, command: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    """A shell command on the device over the same SSH transport edgekit uses."""
    code = ("import sys; from edgekit.devices.address import parse_address; from edgekit.devices.ssh import "
            "Connection; c = Connection(parse_address(sys.argv[1])); r = c.run(sys.argv[2], float(sys.argv[3]), "
            "check=False); print(r.out); print(r.err, file=sys.stderr); sys.exit(r.rc)")
    return subprocess.run([sys.executable, "-c", code, address, command, str(timeout)], env=env, capture_output=True,
                          text=True, timeout=timeout + 60)


def test_offline_setup_records_an_emulated_arm64_machine(arm):
    address, env, log = arm
    record = json.loads(edgekit(["device", "list", "--json"], env).stdout)["records"][address]
    assert record["arch"] == "aarch64" and record["emulated"] is True and record["install"] == "offline"
    assert record["features_source"] == "AT_HWCAP" and "ARM dot-product" in record["cpu_features"]
    assert "CPU features: ARM dot-product" in log and "EMULATED" in log
    assert record["packages"]["onnxruntime"] and record["packages"]["ai-edge-litert"]


def test_the_gates_pass_on_arm_for_fp32_and_int8_onnx_and_tflite(arm, exported, tmp_path):
    address, env, _ = arm
    files = tmp_path / "files"
    files.mkdir()
    names = ["model.onnx", "model.int8.onnx", "model.tflite", "model.int8.tflite"]
    for name in [*names, "parity.json"]:
        shutil.copy(exported.out_dir / name, files / name)
    for name in names:
        proc = edgekit(["check", str(files / name), "--parity", "--on", address], env, timeout=3600)
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr[-3000:])
    parity = json.loads((files / "parity.json").read_text())
    for e in (e for e in parity["artifacts"] if e["file"] in names):
        host, device = e["verified_on"]
        assert host["arch"] != "aarch64" or host["emulated"] is False
        assert device["arch"] == "aarch64" and device["emulated"] is True and device["passed"], device
        samples = next(g for g in device["gates"] if "validation samples" in g["gate"])
        assert samples["passed"] and samples["heads"]["digit"]["top1_agreement"] >= 0.9


def test_bench_on_arm_marks_its_timings_as_emulated(arm, exported, tmp_path):
    address, env, _ = arm
    files = tmp_path / "files"
    files.mkdir()
    for name in ("model.int8.tflite", "parity.json"):
        shutil.copy(exported.out_dir / name, files / name)
    out = tmp_path / "bench"
    proc = edgekit(["bench", str(files / "model.int8.tflite"), "--on", address, "--batch", "1", "--seconds", "0.2",
                    "--out", str(out)], env, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    assert report["meta"]["emulated"] is True and "EMULATED" in report["meta"]["machine"]
    assert all(r["emulated"] is True and r["threads"] == report["meta"]["threads"] for r in report["rows"])
    assert "EMULATED" in (out / "bench.md").read_text()
    assert report["rows"][0]["accuracy"]["digit"] > 0.5  # its own validation data, sent over


def test_pip_install_edgekit_runtime_on_arm_from_the_index_and_offline(arm, tmp_path):
    """The user's own command on the device, from the package index and offline from this machine's wheels."""
    from edgekit.devices.wheels import download, edgekit_wheel, runtime_requirements

    address, env, _ = arm
    wheel = edgekit_wheel("arm")
    record = json.loads(edgekit(["device", "list", "--json"], env).stdout)["records"][address]
    py = record["python_path"]
    scratch = "/root/edgekit-pip-check"
    from edgekit.devices.wheels import marker_environment_script, parse_tags

    got = _device_run(env, address, f"{shlex.quote(py)} -c {shlex.quote(marker_environment_script())}", 120)
    device_env = json.loads(got.stdout.strip().splitlines()[-1])
    tags = parse_tags(_device_run(env, address, f"{FOLDER}/venv/bin/python -m pip debug --verbose 2>/dev/null",
                                  300).stdout)
    files = download(runtime_requirements(wheel, device_env, headless=False), device_env, tags, "arm")
    upload = ("import sys; from pathlib import Path; from edgekit.devices.address import parse_address; "
              "from edgekit.devices.ssh import Connection; c = Connection(parse_address(sys.argv[1])); "
              "[c.put(Path(f), sys.argv[2] + '/' + Path(f).name) for f in sys.argv[3:]]")
    subprocess.run([sys.executable, "-c", upload, address, f"{scratch}/wheels", str(wheel), *map(str, files)],
                   env=env, check=True, timeout=1800)
    target = f"{scratch}/wheels/{wheel.name}[runtime]"
    for mode, source in (("index", ""), ("offline", f"--no-index --find-links {scratch}/wheels")):
        venv = f"{scratch}/{mode}"
        proc = _device_run(env, address, f"{py} -m venv {venv} && {venv}/bin/pip install --disable-pip-version-check "
                                         f"{source} {shlex.quote(target)} && {venv}/bin/python -c 'import onnxruntime, "
                                         "ai_edge_litert.interpreter; print(onnxruntime.__version__)'")
        assert proc.returncode == 0, (mode, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Successfully installed" in proc.stdout and "opencv-python-" in proc.stdout
    _device_run(env, address, f"rm -rf {scratch}", 300)


def test_diff_on_arm_taps_the_file_with_arm_s_kernels(arm, exported, tmp_path):
    """edgekit diff FILE --on: the INT8 files' layers computed on the ARM device, compared here with PyTorch; the
    report names the emulated aarch64 machine, and its rows are those of the same diff run here."""
    address, env, _ = arm
    for name in ("model.int8.onnx", "model.int8.tflite"):
        here = edgekit(["diff", str(exported.out_dir / name), "--json", "--out", str(tmp_path / f"here-{name}")], env)
        there = edgekit(["diff", str(exported.out_dir / name), "--on", address, "--json", "--out",
                         str(tmp_path / f"arm-{name}")], env, timeout=3600)
        assert here.returncode == 0 and there.returncode == 0, (name, there.stderr[-3000:])
        mine, theirs = json.loads(here.stdout), json.loads(there.stdout)
        where = theirs["ran_on"]["file"]
        assert where["arch"] == "aarch64" and where["emulated"] is True and "ARM dot-product" in where["cpu_features"]
        assert theirs["ran_on"]["reference"]["where"] == "host" and theirs["file_runner"].endswith(f"on {address}")
        assert [r["layer"] for r in theirs["layers"]] == [r["layer"] for r in mine["layers"]]
        assert len(theirs["layers"]) >= 15 and where["transfers"][0]["bytes"] > 0
        last = theirs["layers"][-1]
        assert last["sqnr_db"] is not None and last["sqnr_db"] > theirs["threshold_db"], last  # passes its gate there


def test_clean_removes_edgekit_from_the_device_and_only_what_it_made(arm):
    """Last: it removes the session's setup."""
    address, env, _ = arm
    other = address.replace(FOLDER, "/root/not-edgekit")
    _device_run(env, address, "mkdir -p /root/not-edgekit && touch /root/not-edgekit/keep", 60)
    proc = edgekit(["device", "clean", other], env, timeout=300)
    assert proc.returncode == 2 and "not a folder edgekit made" in proc.stderr
    assert _device_run(env, address, "test -e /root/not-edgekit/keep", 60).returncode == 0
    _device_run(env, address, "rm -rf /root/not-edgekit", 60)
    proc = edgekit(["device", "clean", address], env, timeout=600)
    assert proc.returncode == 0 and f"removed {FOLDER}" in proc.stderr
    assert _device_run(env, address, f"test -e {FOLDER}", 60).returncode == 1
    assert address not in json.loads(edgekit(["device", "list", "--json"], env).stdout)["records"]
