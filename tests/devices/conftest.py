"""Devices for the tests: an OpenSSH server on 127.0.0.1 (its own host key, config and authorized keys in a temp
folder, started and stopped here) logging into a torch-free venv that ``edgekit device setup --offline`` makes from
cached wheels; and, behind ``-m arm``, the emulated 64-bit ARM Debian (:mod:`edgekit.devices.emulated`).

The client side of each test runs with its own ``HOME`` (``~/.ssh`` keys and ``known_hosts``) and config folder
(the device registry); wheels stay in the user's cache so that only the first run downloads them.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
CACHE = os.environ.get("EDGEKIT_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                               / "edgekit")


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def _free_port() -> int:
    from edgekit.devices.emulated import free_port

    return free_port()


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read().decode() if proc.stderr else proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on {port}")


@dataclass
class SshServer:
    """An sshd on 127.0.0.1 and what a client needs to reach it."""

    port: int
    user: str
    root: Path  # the temp folder: keys, config, the device's folders
    host_key: str  # "ssh-ed25519 AAAA..."
    proc: subprocess.Popen

    def address(self, folder: str = "device/edgekit") -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{self.root / folder}"

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key}\n"

    def client_home(self, base: Path, key: str = "good", known: bool = True) -> Path:
        """A ``HOME`` with ``key`` as ``~/.ssh/id_ed25519`` and (``known``) this server in ``known_hosts``."""
        home = base / f"home-{key}-{int(known)}"
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy(self.root / key, ssh / "id_ed25519")
        shutil.copy(self.root / f"{key}.pub", ssh / "id_ed25519.pub")
        (ssh / "id_ed25519").chmod(0o600)
        (ssh / "known_hosts").write_text(self.known_hosts_line() if known else "")
        return home

    def sessions(self) -> list[int]:
        """The pids of the sshd processes serving connections now (children of the listener)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory):
    """sshd on 127.0.0.1:<free port>: key ``good`` logs in, ``bad`` is not authorized, ``armv7`` logs in with a
    PATH whose ``uname -m`` says armv7l (a 32-bit ARM board)."""
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    _keygen(root / "hostkey")
    for name in ("good", "bad", "armv7"):
        _keygen(root / name)
    armv7 = root / "armv7-bin"
    armv7.mkdir()
    (armv7 / "uname").write_text('#!/bin/sh\n[ "$1" = "-m" ] && { echo armv7l; exit 0; }\nexec /bin/uname "$@"\n')
    (armv7 / "uname").chmod(0o755)
    (root / "authorized_keys").write_text(
        (root / "good.pub").read_text()
        + f'environment="PATH={armv7}:/usr/local/bin:/usr/bin:/bin" ' + (root / "armv7.pub").read_text())
    port = _free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'hostkey'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitUserEnvironment yes\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n")
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stderr=subprocess.PIPE)
    try:
        _wait_port(port, proc)
    except RuntimeError as exc:
        proc.kill()
        pytest.skip(f"cannot start sshd here: {exc}")
    host_key = " ".join((root / "hostkey.pub").read_text().split()[:2])
    yield SshServer(port, getpass.getuser(), root, host_key, proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture
def client(ssh_server, tmp_path, monkeypatch):
    """This test's client side: HOME with the ``good`` key and the server known; its own device registry."""
    home = ssh_server.client_home(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("EDGEKIT_CACHE", CACHE)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture(scope="session")
def local_device(ssh_server, tmp_path_factory):
    """The localhost device, set up once: ``edgekit device setup ADDRESS --offline`` into its own venv (torch-free).
    Returns ``(address, env)``: the environment a client process needs (HOME, config folder, cache)."""
    base = tmp_path_factory.mktemp("client")
    home = ssh_server.client_home(base)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(base / "config"), "EDGEKIT_CACHE": CACHE}
    env.pop("SSH_AUTH_SOCK", None)
    address = ssh_server.address()
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgekit", "device", "setup", address, "--offline"], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return address, env, proc.stderr


def edgekit(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m edgekit ARGS`` in a fresh process with ``env``."""
    import sys

    return subprocess.run([sys.executable, "-m", "edgekit", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
