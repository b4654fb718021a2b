"""``edgekit device setup|clean``: prepare a device over SSH, or remove edgekit from it.

Setup reads the device (OS, architecture, C library, Python, free disk), makes edgekit's folder there (its own
venv), installs edgekit's runtime in it — from the device's own pip and the package index, or ``--offline`` from
wheels this machine downloads for the device's platform and copies over — checks that the runtime's libraries
load, and records the machine (:func:`edgekit.runtime.machine.machine_record`, read there) in the registry and in
``FOLDER/device.json`` on the device. Each failure is one line naming the device and the cause.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.devices.address import Address, Registry
from edgekit.devices.ssh import Connection
from edgekit.devices.wheels import (
    build_id,
    download,
    edgekit_wheel,
    marker_environment_script,
    parse_tags,
    runtime_requirements,
    summary,
)

MIN_PYTHON = (3, 10)
PYTHONS = ("python3", "python3.13", "python3.12", "python3.11", "python3.10")
# where edgekit's runtime has wheels (onnxruntime, ai-edge-litert, numpy, OpenCV): docs/devices.md's table
PLATFORMS = {("Linux", "x86_64"), ("Linux", "aarch64"), ("Darwin", "arm64"), ("Darwin", "x86_64")}
NEED_MB = 600  # free disk edgekit's folder needs: measured 331 MB venv + 94 MB wheels on aarch64, and pip's unpacking
# A Mac runs CoreML files too: coremltools predicts there (no torch needed), PIL feeds image inputs (the versions of
# edgekit[train], which has them for export)
MAC_EXTRA = ("coremltools>=8", "pillow>=10")
MARKER = "device.json"


@dataclass
class Probe:
    """What setup reads from the device before installing anything."""

    system: str
    arch: str
    home: str
    glibc: str | None
    pythons: list[tuple[str, str]] = field(default_factory=list)  # (path, version) of each candidate found
    free_mb: int | None = None
    libgl: bool = False

    def python(self) -> tuple[str, str] | None:
        ok = [(p, v) for p, v in self.pythons if tuple(int(x) for x in v.split(".")[:2]) >= MIN_PYTHON]
        return ok[0] if ok else None


def folder_of(address: Address, home: str) -> str:
    return home + address.folder[1:] if address.folder.startswith("~") else address.folder


def probe(conn: Connection, address: Address, python: str | None = None) -> Probe:
    """The device's OS, architecture, C library, Pythons (``python`` first when given) and free disk."""
    candidates = " ".join(shlex.quote(p) for p in ([python] if python else list(PYTHONS)))
    script = (
        'echo "system=$(uname -s)"; echo "arch=$(uname -m)"; echo "home=$HOME"; '
        'echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d" " -f2)"; '
        f'for py in {candidates}; do p=$(command -v "$py" 2>/dev/null) || continue; '
        'v=$("$p" -c "import sys; print(\'%d.%d.%d\' % sys.version_info[:3])" 2>/dev/null) || continue; '
        'echo "python=$p $v"; done; '
        '(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) | grep -q "libGL.so.1" && echo "libgl=1"; true')
    out = conn.run(script, 120, what="reading the device").out
    values: dict[str, str] = {}
    pythons = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key == "python" and " " in value:
            path, version = value.rsplit(" ", 1)
            if (path, version) not in pythons:
                pythons.append((path, version))
        elif key:
            values[key] = value.strip()
    found = Probe(system=values.get("system", "?"), arch=values.get("arch", "?"), home=values.get("home", ""),
                  glibc=values.get("glibc") or None, pythons=pythons, libgl=values.get("libgl") == "1")
    folder = shlex.quote(folder_of(address, found.home))
    df = conn.run(f'd={folder}; while [ ! -d "$d" ]; do d=$(dirname "$d"); done; df -Pk "$d" | tail -1', 60,
                  what="reading free disk space", check=False)
    try:
        found.free_mb = int(df.out.split()[3]) // 1024
    except (IndexError, ValueError):
        found.free_mb = None
    return found


def check_probe(conn: Connection, found: Probe, python: str | None) -> tuple[str, str]:
    """The Python to use; an unsupported platform, no Python >= 3.10 or too little disk is a one-line error."""
    if (found.system, found.arch) not in PLATFORMS:
        bits = " (32-bit ARM)" if found.arch.startswith(("armv", "arm6", "arm7")) else ""
        raise conn.error(f"{found.system} {found.arch}{bits} has no wheels of edgekit's runtime (onnxruntime, "
                         "ai-edge-litert): it needs Linux on x86-64 or 64-bit ARM (aarch64: install a 64-bit OS), or "
                         "macOS")
    chosen = found.python()
    if chosen is None:
        seen = ", ".join(f"{Path(p).name} {v}" for p, v in found.pythons) or "none"
        where = f"'{python}'" if python else "python3"
        raise conn.error(f"no Python >= {'.'.join(map(str, MIN_PYTHON))} (found: {seen}; looked for {where}): install "
                         "one (e.g. apt install python3.11 python3.11-venv) or give its path with --python")
    if found.free_mb is not None and found.free_mb < NEED_MB:
        raise conn.error(f"its disk is full: {found.free_mb} MB free where edgekit's folder goes, the runtime needs "
                         f"about {NEED_MB} MB")
    return chosen


def setup(target: str, offline: bool = False, python: str | None = None, accept_new_host_key: bool = False,
          identity: str | None = None, say: Callable[[str], None] = print, registry: Registry | None = None
          ) -> dict[str, Any]:
    """Prepare the device and return its machine record (also saved in the registry)."""
    registry = registry or Registry()
    label, address, known_identity = registry.resolve(target)
    identity = identity or known_identity
    with Connection(address, label, identity, accept_new_host_key, say=say) as conn:
        found = probe(conn, address, python)
        py, version = check_probe(conn, found, python)
        folder = folder_of(address, found.home)
        q = shlex.quote
        say(f"{label}: {found.system} {found.arch}, glibc {found.glibc or 'n/a'}, Python {version} ({py}), "
            f"{found.free_mb if found.free_mb is not None else '?'} MB free")
        venv = f"{folder}/venv"
        same = f"import platform; assert platform.python_version() == {version!r}"  # a venv of that Python, kept
        conn.run(f"mkdir -p {q(folder)}/wheels {q(folder)}/files && "
                 f"( {q(venv)}/bin/python -c {q(same)} 2>/dev/null || {q(py)} -m venv --clear {q(venv)} )", 600,
                 what=f"making the venv ({py} -m venv)")
        vpy = f"{venv}/bin/python"
        env = json.loads(conn.run(f"{q(vpy)} -c {q(marker_environment_script())}", 120, what="reading Python").out)
        wheel = edgekit_wheel(label)
        reqs = runtime_requirements(wheel, env, headless=found.system == "Linux" and not found.libgl)
        reqs += list(MAC_EXTRA) if found.system == "Darwin" else []
        remote_wheel = f"{folder}/wheels/{wheel.name}"
        if offline:
            tags = parse_tags(conn.run(f"{q(vpy)} -m pip debug --verbose 2>/dev/null", 300,
                                       what="reading pip's platform tags").out)
            files = download(reqs, env, tags, label)
            got = summary(files)
            say(f"{label}: copying {got['wheels']} wheels ({got['mb']} MB) for {tags[0] if tags else '?'}")
            present = set(conn.run(f"ls {q(folder)}/wheels", 60, check=False).out.split())
            for f in files:
                if f.name not in present:
                    conn.put(f, f"{folder}/wheels/{f.name}")
            conn.put(wheel, remote_wheel)
            source = f"--no-index --find-links {q(folder)}/wheels"
        else:
            conn.put(wheel, remote_wheel)
            source = ""
        say(f"{label}: installing edgekit's runtime ({', '.join(reqs)}) "
            f"{'from the copied wheels' if offline else 'from the package index'}")
        pip = f"{q(vpy)} -m pip install --disable-pip-version-check --no-input {source}"
        # edgekit's own wheel again even at the same version (a source tree's build changes without one)
        install = (f"{pip} {' '.join(q(r) for r in reqs)} && {pip} --no-deps --force-reinstall {q(remote_wheel)}")
        result = conn.run(install, 3600, what="pip install on the device", check=False)
        if result.rc != 0:
            text = result.err + result.out
            if "No space left" in text:
                raise conn.error("its disk is full: pip install stopped (No space left on device)")
            lines = [ln for ln in text.splitlines() if ln.startswith("ERROR")] or [result.last_error_line]
            raise conn.error(f"pip install failed there: {lines[0].removeprefix('ERROR: ')[:300]}")
        modules = ["numpy", "cv2", "onnxruntime"] + [m for r, m in (("ai-edge-litert", "ai_edge_litert.interpreter"),
                                                                    ("coremltools", "coremltools"))
                                                    if any(x.startswith(r) for x in reqs)]
        conn.run(f"{q(vpy)} -c {q('import ' + ', '.join(modules))}", 600,
                 what=f"importing the runtime ({', '.join(modules)})")
        record = json.loads(conn.run(f"{q(vpy)} -m edgekit.runtime.machine", 300, what="reading the machine").out)
        record.update(address=str(address), folder=folder, python_path=py, install="offline" if offline else "index",
                      edgekit_build=build_id(),
                      opencv="headless" if any(r.startswith(HEADLESS_NAME) for r in reqs) else "gui")
        import datetime as dt

        record["setup_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        conn.run(f"cat > {q(folder)}/{MARKER}", 60, what="writing device.json", stdin=json.dumps(record).encode())
    registry.set_record(address, record)
    say(describe(label, record))
    return record


HEADLESS_NAME = "opencv-python-headless"


def describe(label: str, record: dict[str, Any]) -> str:
    """The record in two lines: the machine, then its CPU features and runtime versions."""
    pk = record.get("packages") or {}
    runtimes = ", ".join(f"{k} {v}" for k, v in pk.items() if k != "edgekit")
    emulated = f"; EMULATED ({record['emulation']})" if record.get("emulated") else ""
    return (f"{label}: {record.get('os')}, {record.get('arch')}, {record.get('cpu')}, {record.get('usable_cores')} "
            f"cores, {record.get('memory_mb')} MB, Python {record.get('python')}{emulated}\n"
            f"  CPU features: {', '.join(record.get('cpu_features') or []) or 'none found'} "
            f"(from {record.get('features_source')}); runtime: {runtimes}")


def clean(target: str, accept_new_host_key: bool = False, identity: str | None = None,
          say: Callable[[str], None] = print, registry: Registry | None = None) -> bool:
    """Remove edgekit's folder from the device (only a folder edgekit made: it holds ``device.json`` or the venv).
    False when there was nothing to remove."""
    registry = registry or Registry()
    label, address, known_identity = registry.resolve(target)
    with Connection(address, label, identity or known_identity, accept_new_host_key, say=say) as conn:
        home = conn.run('echo "$HOME"', 60, what="reading $HOME").out.strip()
        folder = shlex.quote(folder_of(address, home))
        state = conn.run(f"if [ ! -e {folder} ]; then echo absent; elif [ -f {folder}/{MARKER} ] || "
                         f"[ -x {folder}/venv/bin/python ]; then echo ours; else echo other; fi", 60).out.strip()
        if state == "other":
            raise conn.error(f"{folder_of(address, home)} is not a folder edgekit made (no {MARKER}, no venv): "
                             "left as it is")
        if state == "ours":
            conn.run(f"rm -rf {folder}", 600, what=f"removing {folder_of(address, home)}")
    registry.set_record(address, None)
    say(f"{label}: {'removed ' + folder_of(address, home) if state == 'ours' else 'nothing to remove'}")
    return state == "ours"
