"""The SSH transport reads a command's whole output even when sshd sends the exit status before the last of it
(seen with the emulated ARM64's sshd: a base64 read of a tapped run's tensors came back cut)."""

from __future__ import annotations

import base64

from edgekit.devices.address import Address
from edgekit.devices.ssh import Connection


class _LateChannel:
    """A channel whose exit status is ready before its last output chunk arrives (then EOF)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.arrived, self.closed, self.eof_received, self.polls = chunks, [], False, False, 0

    def settimeout(self, _t) -> None:
        pass

    def exec_command(self, _cmd) -> None:
        self.arrived.append(self.chunks.pop(0))  # the first chunk, then the exit status

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return 0

    def recv_ready(self) -> bool:
        self.polls += 1
        if not self.arrived and self.chunks and self.polls > 3:  # the rest arrives a little later
            self.arrived.append(self.chunks.pop(0))
            self.eof_received = not self.chunks
        return bool(self.arrived)

    def recv(self, _n) -> bytes:
        return self.arrived.pop(0)

    def recv_stderr_ready(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class _Client:
    def __init__(self, channel) -> None:
        self.channel = channel

    def get_transport(self):
        return self

    def open_session(self, timeout=None):
        return self.channel


def test_output_after_the_exit_status_is_read():
    data = bytes(range(256)) * 40
    text = base64.encodebytes(data)
    conn = Connection(Address("127.0.0.1"), "dev")
    conn.client = _Client(_LateChannel([text[:1000], text[1000:]]))
    assert conn.read("/x") == data
