"""Which runtime packages have wheels for which device platform, as pip resolves them (docs/devices.md's table).

    python tools/runtime_wheels.py            # Markdown table on stdout

For each platform (OS, CPU, C library) and Python, ``pip install --dry-run --only-binary=:all: --platform ...`` with
every tag such a machine accepts (``manylinux_2_Y`` for each glibc 2.Y up to the platform's, ``macosx_X_Y`` for each
macOS version up to its) resolves each requirement exactly as edgekit's ``pyproject.toml`` states it, and, where none
matches, the package with no bound: the newest version that installs there at all. Nothing is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

# (label, pip platform tags): glibc 2.36 is Debian 12 / Raspberry Pi OS bookworm, 2.31 bullseye
PLATFORMS = {
    "Linux x86-64 (glibc 2.36)": [f"manylinux_2_{y}_x86_64" for y in range(36, 16, -1)]
    + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"],
    "Linux aarch64 (glibc 2.36: Debian 12, Pi OS bookworm)": [f"manylinux_2_{y}_aarch64" for y in range(36, 16, -1)]
    + ["manylinux2014_aarch64"],
    "Linux aarch64 (glibc 2.31: Debian 11, Pi OS bullseye)": [f"manylinux_2_{y}_aarch64" for y in range(31, 16, -1)]
    + ["manylinux2014_aarch64"],
    "Linux armv7l (32-bit ARM)": [f"manylinux_2_{y}_armv7l" for y in range(36, 16, -1)] + ["linux_armv7l"],
    "macOS arm64 (14)": [f"macosx_{v}_0_{a}" for v in range(14, 10, -1) for a in ("arm64", "universal2")],
    "macOS x86-64 (14)": [f"macosx_{v}_0_{a}" for v in range(14, 10, -1) for a in ("x86_64", "universal2")]
    + [f"macosx_10_{m}_{a}" for m in range(15, 8, -1) for a in ("x86_64", "universal2", "intel")],
    "Windows x86-64": ["win_amd64"],
}
PYTHONS = ("3.11", "3.12", "3.13")


def edgekit_requirements() -> list[str]:
    """The runtime's requirements as pyproject.toml states them (the extras runtime and openvino), markers dropped."""
    from pathlib import Path

    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = {}
    for text in [*extras["runtime"], *extras["openvino"]]:
        req = Requirement(text)
        if req.name != "edgekit":
            reqs[req.name] = f"{req.name}{req.specifier}"
    return list(reqs.values())


def resolve(requirement: str, tags: list[str], python: str) -> str | None:
    """The version pip would install for ``requirement`` on that platform, or None."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", "--ignore-installed",
               "--no-deps", "--only-binary=:all:", "--python-version", python, "--target", tmp,
               *(f"--platform={t}" for t in tags), requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)["install"][0]["metadata"]["version"]
    except (ValueError, KeyError, IndexError):
        return None


def main() -> int:
    reqs = edgekit_requirements()
    print("| platform | Python | " + " | ".join(reqs) + " |")
    print("|---|---|" + "---|" * len(reqs))
    for label, tags in PLATFORMS.items():
        for python in PYTHONS:
            cells = []
            for req in reqs:
                got = resolve(req, tags, python)
                if got is None:
                    name = req.split(">")[0].split("<")[0].split("=")[0]
                    newest = resolve(name, tags, python)
                    cells.append(f"none (newest there: {newest})" if newest else "none")
                else:
                    cells.append(got)
            print(f"| {label} | {python} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
