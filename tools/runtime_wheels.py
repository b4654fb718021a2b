"""Which runtime packages have wheels for which device platform, as pip resolves them (docs/devices.md's table).

    python tools/runtime_wheels.py                                        # Markdown table on stdout
    python tools/runtime_wheels.py --json docs/results/runtime_wheels.json  # and the result file beside it

The JSON (the README's and docs/devices.md's tables are read from it by tools/check_results.py) holds pip's version,
the date, the requirements as stated, and per platform and Python each requirement's version (``null``: none within
edgekit's bounds) and, where none fits, ``newest``: the newest version that installs there at all (``null``: none).

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


def pip_version() -> str:
    from importlib.metadata import version

    return version("pip")


def pip_config() -> list[str]:
    """pip's settings as ``pip config list`` gives them (the indexes it asked: PyPI, and any others set here)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    return [line for line in proc.stdout.splitlines() if "cert" not in line]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the result file (atomically) to PATH")
    args = parser.parse_args(argv)
    reqs = edgekit_requirements()
    rows = []
    print("| platform | Python | " + " | ".join(reqs) + " |")
    print("|---|---|" + "---|" * len(reqs))
    for label, tags in PLATFORMS.items():
        for python in PYTHONS:
            cells, found = [], {}
            for req in reqs:
                got = resolve(req, tags, python)
                if got is None:
                    name = req.split(">")[0].split("<")[0].split("=")[0]
                    newest = resolve(name, tags, python)
                    cells.append(f"none (newest there: {newest})" if newest else "none")
                    found[req] = {"version": None, "newest": newest}
                else:
                    cells.append(got)
                    found[req] = {"version": got}
            rows.append({"platform": label, "python": python, "tags": tags, "resolved": found})
            print(f"| {label} | {python} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        from datetime import date

        from edgekit.atomic import write_json

        write_json(args.json, {"command": "python tools/runtime_wheels.py", "pip": pip_version(),
                               "date": date.today().isoformat(), "index": "PyPI", "pip_config": pip_config(),
                               "pythons": list(PYTHONS),
                               "requirements": reqs, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
