"""Running edgekit on a set-up device: files sent once (by content), commands run in its venv, answers read back.

:class:`Remote` is what ``--on DEVICE`` uses: ``send`` copies a model file (or an ``.mlpackage`` folder), a batch
of validation samples or a dataset to ``FOLDER/files/<hash>/`` on the device, skipping what is already there;
``edgekit`` runs ``python -m edgekit ...`` in the device's venv; ``worker`` runs one bench measurement there with
the same per-process worker as a local bench (:mod:`edgekit.benchmarks.worker`).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.devices.address import Registry
from edgekit.devices.ssh import Connection, Result
from edgekit.errors import RemoteDeviceError


class Remote:
    """A device edgekit was set up on (:mod:`edgekit.devices.setup`), connected. A context manager."""

    def __init__(self, target: str, registry: Registry | None = None, say: Callable[[str], None] = print) -> None:
        registry = registry or Registry()
        self.label, self.address, identity = registry.resolve(target)
        self.name = next((n for n, e in registry.data["devices"].items() if e["address"] == str(self.address)),
                         str(self.address))
        record = registry.record(self.address)
        if record is None:
            raise RemoteDeviceError(f"device {self.label}: not set up from this machine: run edgekit device setup "
                                    f"{target}")
        self.record: dict[str, Any] = record
        self.folder = record["folder"]
        self.python = f"{self.folder}/venv/bin/python"
        self.conn = Connection(self.address, self.label, identity, say=say)
        self._sent: dict[str, str] = {}

    def __enter__(self) -> Remote:
        self.conn.connect()
        found = self.conn.run(f"test -x {shlex.quote(self.python)} && echo ok", 60, check=False,
                              what="checking the venv")
        if found.out.strip() != "ok":
            raise self.conn.error(f"edgekit's runtime is not in {self.folder} any more (cleaned?): run edgekit device "
                                  f"setup {self.name}")
        from edgekit.devices.wheels import build_id

        here, there = build_id(), self.record.get("edgekit_build")
        if there != here:
            raise self.conn.error(f"it runs another edgekit ({there or 'unknown'}) than this machine ({here}), which "
                                  f"would judge and measure with other code: run edgekit device setup {self.name}")
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def error(self, cause: str) -> RemoteDeviceError:
        return self.conn.error(cause)

    @property
    def system(self) -> str:
        return self.record.get("system", "Linux")

    def machine(self) -> dict[str, Any]:
        """The device's record, as it is now (runtime versions may have changed since setup)."""
        out = self.run_python(["-m", "edgekit.runtime.machine"], 300, "reading the machine").out
        self.record = {**self.record, **json.loads(out.strip().splitlines()[-1])}
        return self.record

    def send(self, path: Path) -> str:
        """The path on the device of a copy of ``path`` (a file or a folder; an IR with its ``.bin``), copied unless
        already there."""
        from edgekit import formats

        path = Path(path).resolve()
        if str(path) in self._sent:
            return self._sent[str(path)]
        folder = f"{self.folder}/files/{formats.digest(path)}"
        remote = f"{folder}/{path.name}"
        there = self.conn.run(f"test -e {shlex.quote(remote)}.done && echo yes", 60, check=False,
                              what="checking files")
        if there.out.strip() != "yes":
            for f in formats.model_files(path):
                self.conn.put(f, f"{folder}/{f.name}")
            self.conn.run(f"touch {shlex.quote(remote)}.done", 60, what="marking a copy complete")
        self._sent[str(path)] = remote
        return remote

    def write(self, name: str, data: bytes) -> str:
        """A small file (a spec) written on the device under ``FOLDER/work/``; its path there."""
        remote = f"{self.folder}/work/{name}"
        self.conn.run(f"mkdir -p {shlex.quote(self.folder)}/work && cat > {shlex.quote(remote)}", 60,
                      what=f"writing {name}", stdin=data)
        return remote

    def run_python(self, args: list[str], timeout: float, what: str, check: bool = True) -> Result:
        command = " ".join(shlex.quote(a) for a in [self.python, *args])
        return self.conn.run(f"cd {shlex.quote(self.folder)} && {command}", timeout, what=what, check=check)

    def edgekit(self, args: list[str], timeout: float, what: str) -> Result:
        """``edgekit ARGS`` on the device (its exit code is the caller's to judge)."""
        return self.run_python(["-m", "edgekit", *args], timeout, what, check=False)

    def worker(self, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One bench measurement on the device: the files the spec names are sent, the worker runs there in its own
        process, its JSON row comes back."""
        remote = dict(spec)
        for key in ("path", "images", "labels"):
            if spec.get(key):
                remote[key] = self.send(Path(spec[key]))
        name = f"spec-{hashlib.sha256(json.dumps(remote, sort_keys=True).encode()).hexdigest()[:12]}.json"
        path = self.write(name, json.dumps(remote).encode())
        what = f"measuring {Path(spec['path']).name} (batch {spec['batch']})"
        result = self.run_python(["-m", "edgekit.benchmarks.worker", path], timeout, what, check=False)
        lines = [ln for ln in result.out.strip().splitlines() if ln.startswith("{")]
        if not lines:
            return {"error": f"on {self.name}: {result.last_error_line}"}
        return json.loads(lines[-1])
