"""The wheels a device installs: edgekit's own (built here from the source tree, or the released one), and for
``--offline`` every runtime dependency for the device's platform, downloaded here with ``pip download
--platform ... --only-binary=:all:`` and cached in ``~/.cache/edgekit/devices/wheels/<platform>/``.

Environment markers are evaluated for the device, not for this machine: ``pip download --platform`` checks
wheel tags for the target but evaluates markers on the host, so edgekit's own requirements are resolved here with
the device's marker environment (read over SSH) and handed to pip as plain requirements.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edgekit.devices.address import cache_dir
from edgekit.errors import RemoteDeviceError

SOURCE_SUFFIXES = (".py", ".html", ".js", ".css", ".toml")
# OpenCV without its Qt/X11/GL windows: what a board without a desktop can import (opencv-python needs
# libGL.so.1, libxcb and glib there). Both provide the same ``cv2``.
HEADLESS = {"opencv-python": "opencv-python-headless"}


def source_tree() -> Path | None:
    """edgekit's source tree (a checkout this edgekit was installed from in place), or None (an installed wheel)."""
    import edgekit

    root = Path(edgekit.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and 'name = "edgekit"' in pyproject.read_text() else None


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    folders = ["edgekit", "train", "compress", "export", "runtime", "benchmarks", "apps", "recipes", "devices"]
    for f in sorted(p for d in folders for p in (root / d).rglob("*") if p.suffix in SOURCE_SUFFIXES
                    and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    h.update((root / "pyproject.toml").read_bytes())
    return h.hexdigest()[:16]


def build_id() -> str:
    """Which edgekit this is: the source tree's content hash, or the released version. A device set up with another
    one would judge files with other code."""
    from edgekit import __version__

    root = source_tree()
    return f"{__version__}+{_tree_hash(root)}" if root is not None else __version__


def edgekit_wheel(label: str) -> Path:
    """edgekit's wheel: built from the source tree (``pip wheel --no-deps``, cached by the tree's content), or
    the released version of the installed edgekit downloaded from the index."""
    from edgekit import __version__

    root = source_tree()
    if root is None:
        folder = cache_dir() / "devices" / "wheels" / "edgekit" / __version__
        found = sorted(folder.glob("edgekit-*.whl"))
        if not found:
            _pip(["download", "--no-deps", "--only-binary=:all:", "-d", str(folder), f"edgekit=={__version__}"],
                 label, f"downloading edgekit {__version__}")
            found = sorted(folder.glob("edgekit-*.whl"))
        return found[-1]
    folder = cache_dir() / "devices" / "wheels" / "edgekit" / _tree_hash(root)
    found = sorted(folder.glob("edgekit-*.whl"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory() as tmp:
        _pip(["wheel", "--no-deps", "-w", tmp, str(root)], label, "building edgekit's wheel")
        built = sorted(Path(tmp).glob("edgekit-*.whl"))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / built[-1].name
        (folder / (target.name + ".part")).write_bytes(built[-1].read_bytes())
        (folder / (target.name + ".part")).rename(target)
    return target


def runtime_requirements(wheel: Path, environment: dict[str, str], headless: bool) -> list[str]:
    """``edgekit[runtime]``'s requirements (its own and the extra's) that apply on a device with the given PEP 508
    marker ``environment``, markers resolved; ``headless``: OpenCV without GUI."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    out = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.name == "edgekit":
            continue
        if req.marker is not None and not req.marker.evaluate({**environment, "extra": "runtime"}):
            continue  # another extra (train, web...) or another platform
        name = HEADLESS.get(req.name, req.name) if headless else req.name
        out.append(f"{name}{req.specifier}")
    return out


def platform_key(env: dict[str, str], tags: list[str]) -> str:
    plat = next((t.split("-")[2] for t in tags if t.count("-") == 2), env.get("platform_machine", "?"))
    return f"{plat}-cp{env['python_version'].replace('.', '')}"


def download(requirements: list[str], env: dict[str, str], tags: list[str], label: str) -> list[Path]:
    """Wheels of ``requirements`` and their dependencies for the device's tags (``pip debug --verbose`` there),
    from the cache when they are all there, else from the index. Returns the files to copy."""
    platforms = list(dict.fromkeys(t.split("-")[2] for t in tags if t.count("-") == 2))
    abis = list(dict.fromkeys(t.split("-")[1] for t in tags if t.count("-") == 2))
    python = env["python_version"]
    folder = cache_dir() / "devices" / "wheels" / platform_key(env, tags)
    folder.mkdir(parents=True, exist_ok=True)
    args = ["download", "--only-binary=:all:", "-d", str(folder), "--python-version", python,
            "--implementation", "cp", *(f"--platform={p}" for p in platforms), *(f"--abi={a}" for a in abis),
            *requirements]
    local = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "--find-links", str(folder)],
                           capture_output=True, text=True)
    out = local.stdout if local.returncode == 0 else _pip(args, label, "downloading the runtime's wheels")
    names = re.findall(r"(?:Saved|File was already downloaded) (\S+\.whl)", out)
    files = [Path(n) if Path(n).is_absolute() else folder / Path(n).name for n in names]
    return [folder / f.name for f in files]


def _pip(args: list[str], label: str, what: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")] or proc.stderr.splitlines() or ["?"]
        raise RemoteDeviceError(f"device {label}: {what} failed here: {_short(lines)}")
    return proc.stdout


def _short(lines: list[str]) -> str:
    text = lines[0].removeprefix("ERROR: ")
    match = re.search(r"requirement (\S+)", text)
    return (f"no wheel of {match.group(1)} for the device's platform and Python" if match and "satisfies" in text
            else text)[:300]


def marker_environment_script() -> str:
    """Python code printing the PEP 508 marker environment as JSON (run with the device's Python)."""
    return ("import json, os, platform, sys; v = sys.implementation.version; print(json.dumps({"
            "'implementation_name': sys.implementation.name, "
            "'implementation_version': '%d.%d.%d' % (v.major, v.minor, v.micro), 'os_name': os.name, "
            "'platform_machine': platform.machine(), 'platform_release': platform.release(), "
            "'platform_system': platform.system(), 'platform_version': platform.version(), "
            "'python_full_version': platform.python_version(), "
            "'platform_python_implementation': platform.python_implementation(), "
            "'python_version': '.'.join(platform.python_version_tuple()[:2]), 'sys_platform': sys.platform}))")


def parse_tags(pip_debug: str) -> list[str]:
    """The compatible tags ``pip debug --verbose`` lists (``cp311-cp311-manylinux_2_36_aarch64``...)."""
    tags, inside = [], False
    for line in pip_debug.splitlines():
        if line.startswith("Compatible tags"):
            inside = True
            continue
        if inside:
            t = line.strip()
            if not line.startswith(" ") or not t:
                break
            tags.append(t)
    return tags


def summary(files: list[Path]) -> dict[str, Any]:
    return {"wheels": len(files), "mb": round(sum(f.stat().st_size for f in files) / 1e6, 1)}
