"""The SSH transport: OpenSSH's protocol through paramiko, keys only, ``known_hosts`` honoured.

- A host key is checked against ``~/.ssh/known_hosts`` (and ``/etc/ssh/ssh_known_hosts``). An unknown key is
  refused unless the caller accepts it explicitly (``--accept-new-host-key``): it is then appended to
  ``~/.ssh/known_hosts`` and the acceptance is printed with the key's fingerprint. A key that changed is always
  refused.
- Logging in uses the identity file given, the SSH agent and the default keys (``~/.ssh/id_*``); never a
  password (none is asked for, and none is stored).
- Every remote command has a timeout: on the device (``timeout`` from coreutils, where present) and here (the
  channel is closed when the deadline passes). Files travel through the same channel (``cat``/``tar`` on the
  device): nothing listens on the device besides its own sshd.

Every failure is a :class:`~edgekit.errors.RemoteDeviceError` of one line naming the device and the cause.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shlex
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.devices.address import Address
from edgekit.errors import RemoteDeviceError, require

GRACE_S = 15  # seconds the host waits past a command's own timeout before it gives up on the channel
EOF_WAIT_S = 10  # seconds the host waits for the rest of a command's output once its exit status came


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def last_error_line(self) -> str:
        lines = [ln.strip() for ln in (self.err or self.out).strip().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else f"exit code {self.rc}"


def fingerprint(key) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_path() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


class Connection:
    """One SSH login to a device (a context manager). ``label`` names the device in every message."""

    def __init__(self, address: Address, label: str | None = None, identity: str | None = None,
                 accept_new_host_key: bool = False, connect_timeout: float = 20.0, say=print) -> None:
        self.address, self.label = address, label or str(address)
        self.identity, self.accept_new = identity, accept_new_host_key
        self.connect_timeout, self.say = connect_timeout, say
        self.client = None

    # -- errors ---------------------------------------------------------------------------------------------
    def error(self, cause: str) -> RemoteDeviceError:
        return RemoteDeviceError(f"device {self.label}: {cause}")

    # -- connecting -------------------------------------------------------------------------------------------
    def __enter__(self) -> Connection:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        paramiko = require("paramiko", "devices")
        client = paramiko.SSHClient()
        system = Path("/etc/ssh/ssh_known_hosts")
        for path in (system, known_hosts_path()):
            if path.is_file():
                try:
                    client.load_system_host_keys(str(path))
                except (OSError, paramiko.SSHException) as exc:
                    raise self.error(f"cannot read {path}: {exc}") from None
        client.set_missing_host_key_policy(_AcceptNew(self) if self.accept_new else _Refuse(self))
        if self.identity and not Path(self.identity).expanduser().is_file():
            raise self.error(f"identity file {self.identity} not found")
        try:
            client.connect(self.address.host, port=self.address.port, username=self.address.user,
                           key_filename=str(Path(self.identity).expanduser()) if self.identity else None,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout, allow_agent=True, look_for_keys=True, password=None)
        except paramiko.BadHostKeyException as exc:
            raise self.error(
                f"its host key has CHANGED ({exc.key.get_name()} {fingerprint(exc.key)}; {known_hosts_path()} has "
                f"{fingerprint(exc.expected_key)}): the device was reinstalled, or someone is in between. If you know "
                f"why, remove the old key with: ssh-keygen -R '{self.address.known_hosts_name}'") from None
        except RemoteDeviceError:
            raise
        except paramiko.AuthenticationException:
            tried = self.identity or "the SSH agent and ~/.ssh/id_*"
            who = self.address.user or "the default user"
            raise self.error(f"the device refused our SSH keys for {who} (tried {tried}); copy your public key "
                             f"there (ssh-copy-id -p {self.address.port} {who}@{self.address.host}) — edgekit never "
                             "uses passwords") from None
        except socket.gaierror as exc:
            raise self.error(f"unreachable: host '{self.address.host}' not found ({exc.strerror})") from None
        except TimeoutError:
            raise self.error(f"unreachable: no answer from {self.address.host}:{self.address.port} within "
                             f"{self.connect_timeout:.0f}s") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            why = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
            raise self.error(f"unreachable: {self.address.host}:{self.address.port}: {why}") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self.error(f"unreachable: {exc or type(exc).__name__}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(10)
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    # -- commands ---------------------------------------------------------------------------------------------
    def run(self, command: str, timeout: float, what: str | None = None, stdin: bytes | io.IOBase | None = None,
            check: bool = True) -> Result:
        """Run a POSIX shell command on the device, with a timeout there and here. ``check``: a non-zero exit is
        an error naming ``what`` and the command's last line of stderr."""
        if self.client is None:
            self.connect()
        what = what or command.split()[0]
        limit = max(1, int(timeout))
        script = (f"command -v timeout >/dev/null 2>&1 && exec timeout -k 5 {limit} sh -c {shlex.quote(command)}; "
                  f"exec sh -c {shlex.quote(command)}")
        out, err = bytearray(), bytearray()
        try:
            channel = self.client.get_transport().open_session(timeout=self.connect_timeout)
            channel.settimeout(1.0)
            channel.exec_command("sh -c " + shlex.quote(script))
            if stdin is not None:
                self._feed(channel, stdin)
            deadline = time.monotonic() + limit + GRACE_S
            quiet = time.monotonic()
            while True:
                got = False
                while channel.recv_ready():
                    out += channel.recv(65536)
                    got = True
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    got = True
                quiet = time.monotonic() if got else quiet
                # sshd may send the exit status before the last of the output (seen under qemu: a base64 read of a file
                # came back cut): done at the end of the output, or when nothing more came for EOF_WAIT_S after it
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready() \
                        and (channel.eof_received or time.monotonic() - quiet > EOF_WAIT_S):
                    break
                if channel.closed and not got:
                    break
                if time.monotonic() > deadline:
                    channel.close()
                    raise self.error(f"{what} did not finish within {limit}s (stopped)")
                if not got:
                    time.sleep(0.02)
            rc = channel.recv_exit_status() if channel.exit_status_ready() else -1
            channel.close()
        except RemoteDeviceError:
            raise
        except (OSError, EOFError, AttributeError) as exc:
            self.client = None
            raise self.error(f"connection lost during {what} ({exc or type(exc).__name__})") from None
        except Exception as exc:  # noqa: BLE001 - paramiko.SSHException and its kin: the session is gone
            self.client = None
            raise self.error(f"connection lost during {what} ({type(exc).__name__}: {exc})") from None
        result = Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if rc == -1:
            self.client = None
            raise self.error(f"connection lost during {what} (the command ended without an exit status)")
        if rc == 124 and limit:
            raise self.error(f"{what} did not finish within {limit}s on the device (stopped)")
        if check and rc != 0:
            raise self.error(f"{what} failed: {result.last_error_line}")
        return result

    @staticmethod
    def _feed(channel, stdin: bytes | io.IOBase) -> None:
        """Send ``stdin`` to the command. When the command stops reading (it failed: a full disk), sending stops
        and its exit status and stderr say why."""
        stream = io.BytesIO(stdin) if isinstance(stdin, bytes | bytearray) else stdin
        channel.settimeout(60.0)
        try:
            while chunk := stream.read(1 << 16):
                if channel.exit_status_ready():
                    break
                channel.sendall(chunk)
            channel.shutdown_write()
        except (OSError, EOFError):
            pass  # the channel closed under us: the loop that follows tells an exit from a lost connection
        channel.settimeout(1.0)

    # -- files ------------------------------------------------------------------------------------------------
    def put(self, local: Path, remote: str, timeout: float = 600) -> None:
        """Copy a file or a folder (``.mlpackage``) to ``remote`` (an absolute path), atomically: a partial copy
        never takes the final name. A full disk on the device is said as such."""
        local = Path(local)
        parent, tmp = shlex.quote(remote.rsplit("/", 1)[0] or "/"), shlex.quote(remote + ".part")
        final = shlex.quote(remote)
        if local.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(str(local), arcname=".")
            buf.seek(0)
            command = f"mkdir -p {parent} && rm -rf {tmp} && mkdir -p {tmp} && tar -C {tmp} -xf - && " \
                      f"rm -rf {final} && mv {tmp} {final}"
            data: io.IOBase = buf
        else:
            command = f"mkdir -p {parent} && cat > {tmp} && mv -f {tmp} {final}"
            data = local.open("rb")
        try:
            result = self.run(command, timeout, what=f"copying {local.name}", stdin=data, check=False)
        finally:
            data.close()
        if result.rc != 0:
            self.run(f"rm -rf {tmp}", 30, check=False)
            if "No space left" in result.err or "Disk quota" in result.err:
                raise self.error(f"its disk is full: copying {local.name} ({_size(local)}) to "
                                 f"{remote.rsplit('/', 1)[0]} failed ({result.last_error_line})")
            raise self.error(f"copying {local.name} failed: {result.last_error_line}")

    def read(self, remote: str, timeout: float = 120) -> bytes:
        """The bytes of a file on the device."""
        import binascii

        result = self.run(f"base64 < {shlex.quote(remote)}", timeout, what=f"reading {remote}")
        try:
            return base64.b64decode(result.out)
        except binascii.Error as exc:
            raise self.error(f"reading {remote} came back incomplete ({len(result.out)} characters: {exc})") from None


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return f"{total / 1e6:.1f} MB"


class _Refuse:
    """Unknown host key: refused, with what to do."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def missing_host_key(self, client, hostname, key) -> None:
        raise self.conn.error(
            f"its host key is not in {known_hosts_path()} ({key.get_name()} {fingerprint(key)}): check the fingerprint "
            "on the device (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and accept it with "
            "--accept-new-host-key, or log in once with ssh")


class _AcceptNew:
    """Unknown host key, accepted on the user's explicit request: saved to known_hosts and said."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def missing_host_key(self, client, hostname, key) -> None:
        path = known_hosts_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = self.conn.address.known_hosts_name
        with path.open("a") as fh:
            fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(name, key.get_name(), key)
        self.conn.say(f"accepted the new host key of {name}: {key.get_name()} {fingerprint(key)} "
                      f"(saved in {path})")
