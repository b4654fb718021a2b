"""An emulated 64-bit ARM Debian to test devices on: ``python -m edgekit.devices.emulated build|start|stop|status``.

Built from Debian's own packages: ``qemu-user-static`` and ``binfmt-support`` run arm64 programs on this machine,
``mmdebstrap --arch=arm64 bookworm`` makes the root (python3, python3-venv, openssh-server). It is built once
(about 6-15 minutes) and cached in ``~/.cache/edgekit/devices/arm64-bookworm``. ``start`` runs its sshd on
127.0.0.1 only, in its own mount and PID namespaces (``unshare``, as root): its own ``/proc``, and a small fake
``/sys/devices/system/cpu/{possible,present}`` — never the host's ``/sys``, whose CPU list makes onnxruntime's
cpuinfo crash under emulation. ``stop`` ends it (and everything it started).

Under qemu-user ``/proc/cpuinfo`` is the host's; the device's record reads the emulated CPU's features from the
auxiliary vector and says it is emulated (:mod:`edgekit.runtime.machine`). Timings there are not a device's; the
numbers through the gates are ARM's own kernels — those the emulated CPU model selects. The default model is a
Cortex-A76 (Raspberry Pi 5: dot-product and FP16, no SVE/SME), a board people ship to, rather than qemu's ``max``,
which also has SVE2 and SME: with SME, XNNPACK (ai-edge-litert 2.3.0) picks other INT8 kernels, and under qemu they
gave a quickstart-like INT8 TFLite file SQNR -5 dB where a Cortex-A72, a Cortex-A76 and ``max,sme=off`` gave 23.9 dB
(docs/devices.md). ``start --cpu cortex-a72`` emulates a Raspberry Pi 4, ``--cpu max`` everything qemu has.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgekit.devices.address import cache_dir
from edgekit.errors import EdgekitError

SUITE, ARCH = "bookworm", "arm64"
CPU = "cortex-a76"  # Raspberry Pi 5's CPU (QEMU_CPU in every login: the features the device's processes see)
PACKAGES = ("python3", "python3-venv", "openssh-server", "ca-certificates", "procps")
MIRROR = "http://deb.debian.org/debian"
SSHD_CONFIG = """# edgekit's emulated device: keys only, root by key, on the address given at start
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def root_dir() -> Path:
    return cache_dir() / "devices" / f"{ARCH}-{SUITE}"


def _pidfile(root: Path) -> Path:
    return root.with_name(root.name + ".sshd.pid")


def enable_binfmt() -> None:
    """Make the kernel run arm64 programs through qemu (binfmt_misc mounted, qemu-aarch64 enabled)."""
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], check=False, capture_output=True)
    if not (misc / "qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=False, capture_output=True)
    if not (misc / "qemu-aarch64").exists():
        raise EdgekitError("arm64 programs cannot run here: install qemu-user-static and binfmt-support (as root: "
                           "apt-get install qemu-user-static binfmt-support) and enable it (update-binfmts --enable "
                           "qemu-aarch64)")


def build(root: Path | None = None, log=print) -> Path:
    """The arm64 root, built once (mmdebstrap, niced) into ``root`` via a ``.partial`` folder renamed at the end."""
    root = root or root_dir()
    if (root / "usr" / "bin" / "python3").exists():
        log(f"{root}: already built")
        return root
    for tool in ("mmdebstrap", "arch-test"):
        if shutil.which(tool) is None:
            raise EdgekitError(f"building the emulated device needs {tool} (apt-get install mmdebstrap arch-test "
                               "qemu-user-static binfmt-support)")
    enable_binfmt()
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    log(f"building {root} with mmdebstrap (several minutes)")
    cmd = ["nice", "-n", "19", "mmdebstrap", f"--arch={ARCH}", "--variant=apt", "--include=" + ",".join(PACKAGES),
           SUITE, str(partial), MIRROR]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EdgekitError(f"mmdebstrap failed ({proc.returncode}): {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    (partial / "etc" / "ssh" / "edgekit_sshd_config").write_text(SSHD_CONFIG)
    partial.rename(root)
    log(f"built {root}")
    return root


def running(root: Path | None = None) -> int | None:
    """The pid of the running emulated sshd (its ``unshare``), or None."""
    pidfile = _pidfile(root or root_dir())
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int | None = None, authorized_key: Path | None = None, root: Path | None = None,
          timeout: float = 120.0, cpu: str = CPU) -> tuple[int, int]:
    """Start the device's sshd on 127.0.0.1:``port`` (a free one by default); ``authorized_key``: a public key
    file allowed to log in as root; ``cpu``: the CPU model qemu emulates for every login (``qemu-aarch64 -cpu
    help``). Returns ``(pid, port)``."""
    root = root or root_dir()
    if not (root / "usr" / "sbin" / "sshd").exists():
        raise EdgekitError(f"no emulated device in {root}: build it first (python -m edgekit.devices.emulated build)")
    if os.geteuid() != 0:
        raise EdgekitError("starting the emulated device needs root (chroot and mount namespaces)")
    enable_binfmt()
    pid = running(root)
    if pid is not None:
        raise EdgekitError(f"the emulated device already runs (pid {pid}): stop it first")
    if authorized_key is not None:
        ssh = root / "root" / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = ssh / "authorized_keys"
        line = Path(authorized_key).read_text().strip()
        have = keys.read_text().splitlines() if keys.exists() else []
        if line not in have:
            keys.write_text("\n".join([*have, line]) + "\n")
        keys.chmod(0o600)
    config = root / "etc" / "ssh" / "edgekit_sshd_config"
    if not config.exists():
        config.write_text(SSHD_CONFIG)
    trust_host_cas(root)
    port = port or free_port()
    cores = len(os.sched_getaffinity(0))
    r = str(root)
    script = (f"set -e; mount -t proc proc {r}/proc; mount -t tmpfs -o size=1m tmpfs {r}/sys; "
              f"mkdir -p {r}/sys/devices/system/cpu; echo 0-{cores - 1} > {r}/sys/devices/system/cpu/possible; "
              f"echo 0-{cores - 1} > {r}/sys/devices/system/cpu/present; mount -t tmpfs tmpfs {r}/dev/shm; "
              f"mount -t tmpfs tmpfs {r}/tmp; mkdir -p {r}/run/sshd; "
              f"exec chroot {r} /usr/sbin/sshd -D -e -f /etc/ssh/edgekit_sshd_config -o ListenAddress=127.0.0.1:{port} "
              f"-o SetEnv=QEMU_CPU={shlex.quote(cpu)}")
    log = root.with_name(root.name + ".sshd.log").open("w")
    proc = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                             "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _pidfile(root).write_text(f"{proc.pid} {port}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _pidfile(root).unlink(missing_ok=True)
            text = root.with_name(root.name + ".sshd.log").read_text().strip().splitlines()
            raise EdgekitError(f"the emulated device's sshd exited: {text[-1] if text else proc.returncode}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc.pid, port
        time.sleep(0.5)
    stop(root)
    raise EdgekitError(f"the emulated device's sshd did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def stop(root: Path | None = None) -> bool:
    """Stop the device's sshd (and every process of its namespace). False when it was not running."""
    root = root or root_dir()
    pid = running(root)
    _pidfile(root).unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def trust_host_cas(root: Path) -> None:
    """The device trusts the certificate authorities this machine trusts (its bundle, copied; pip pointed at it):
    on a network that inspects TLS with its own CA, the device's pip reaches the package index like the host's."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        return
    target = root / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    if not target.exists() or target.read_bytes() != bundle.read_bytes():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # a link into the root's own /usr/share: replaced by the host's file
        shutil.copyfile(bundle, target)
    (root / "etc" / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")


def host_key(root: Path | None = None) -> str:
    """The device's ed25519 host key, as a ``known_hosts`` line's key part (``ssh-ed25519 AAAA...``)."""
    parts = ((root or root_dir()) / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{parts[0]} {parts[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekit.devices.emulated", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["build", "start", "stop", "status"])
    parser.add_argument("--port", type=int, help="start: the port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--authorized-key", type=Path, help="start: a public key allowed to log in as root "
                                                              "(default: ~/.ssh/id_ed25519.pub when present)")
    parser.add_argument("--root", type=Path, help=f"the root folder (default {root_dir()})")
    parser.add_argument("--cpu", default=CPU, help=f"start: the CPU model qemu emulates (default {CPU}: Raspberry Pi "
                                                   "5; cortex-a72: Pi 4; max: every feature qemu has)")
    args = parser.parse_args(argv)
    try:
        if args.action == "build":
            build(args.root)
        elif args.action == "start":
            key = args.authorized_key or Path.home() / ".ssh" / "id_ed25519.pub"
            pid, port = start(args.port, key if key.exists() else None, args.root, cpu=args.cpu)
            print(f"ssh://root@127.0.0.1:{port}  (pid {pid}; {args.cpu} CPU; host key {host_key(args.root)})")
        elif args.action == "stop":
            print("stopped" if stop(args.root) else "not running")
        else:
            pid = running(args.root)
            print(f"running (pid {pid})" if pid else "not running")
    except EdgekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
