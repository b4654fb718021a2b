"""The walk a checkpoint takes through edgekit's source during one command (issue 30): which files it enters,
in order, how often a call climbs back to a higher stage, and how often it re-enters a file it had left.

Runs the command in this process under ``sys.setprofile`` and records every call into a function defined in
the stages the export corridor runs through (``--stages``, default the CLI, recipes, export and compress; the
ground floor, runtime and train are entered per image and per file and would drown the walk):

- a *stop* is the walk moving into another file, by a call or by a return to the caller (consecutive moves
  within a file are one);
- a *climb back* is a stop in a higher stage than the one before it (stages, low to high: the ground floor
  ``edgekit/*`` except the CLI, runtime, train, compress, export, benchmarks, devices, apps, recipes, the CLI):
  control coming back up, by a return or by a lower stage calling a higher one;
- a *re-entry* is a stop into a file the walk had been in and left before.

It also counts how many times each exported file was verified (``export.verify.verify_file`` by file name).
Run it on the same checkpoint at two commits to compare:

    python tools/export_walk.py -- export CKPT --target onnx --int8 --max-drop 1 --calib 16 --out OUT --quiet
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"edgekit": 0, "runtime": 1, "train": 2, "compress": 3, "export": 4, "benchmarks": 5, "devices": 6,
        "apps": 7, "recipes": 8, "cli": 9}


def stage(rel: str) -> int:
    top = rel.split("/")[0]
    return RANK["cli"] if rel == "edgekit/cli.py" else RANK.get(top, 0)


def walk(argv: list[str], stages: tuple[str, ...] = ("cli", "recipes", "export", "compress")) -> dict:
    from edgekit.cli import main

    stops: list[str] = []
    climbs: list[tuple[str, str]] = []
    verified: Counter = Counter()

    def rel_of(code) -> str | None:
        f = code.co_filename
        if not f.startswith(str(ROOT)) or "/tests/" in f or "/.venv/" in f or "/tools/" in f:
            return None
        rel = Path(f).relative_to(ROOT).as_posix()
        return rel if ("cli" if rel == "edgekit/cli.py" else rel.split("/")[0]) in stages else None

    def tracked(frame):
        while frame is not None and rel_of(frame.f_code) is None:
            frame = frame.f_back
        return frame

    def move(to: str | None) -> None:
        if to is None or (stops and stops[-1] == to):
            return
        if stops and stage(to) > stage(stops[-1]):
            climbs.append((stops[-1], to))
        stops.append(to)

    def profile(frame, event, arg):
        if event not in ("call", "return"):
            return
        here = rel_of(frame.f_code)
        if here is None:
            return
        if event == "call" and frame.f_code.co_name == "verify_file" and here == "export/verify.py":
            verified[Path(str(frame.f_locals.get("path"))).name] += 1
        if event == "call":
            move(here)
        else:  # back in the innermost tracked caller
            caller = tracked(frame.f_back)
            move(rel_of(caller.f_code) if caller is not None else None)

    sys.setprofile(profile)
    try:
        code = main(argv)
    finally:
        sys.setprofile(None)
    seen: set[str] = set()
    reentries = 0
    for f in stops:
        reentries += f in seen
        seen.add(f)
    return {"command": ["edgekit", *argv], "exit_code": code, "stops": len(stops), "files": len(seen),
            "climbs_back": len(climbs), "climbs": sorted(Counter(f"{a} -> {b}" for a, b in climbs).items()),
            "re_entries": reentries, "verifications_per_file": dict(verified),
            "most_entered": Counter(stops).most_common(8)}


if __name__ == "__main__":
    if "--" not in sys.argv:
        sys.exit("usage: python tools/export_walk.py [--stages cli,recipes,export,compress] -- EDGEKIT ARGS...")
    cut = sys.argv.index("--")
    opts = sys.argv[1:cut]
    chosen = tuple(opts[opts.index("--stages") + 1].split(",")) if "--stages" in opts else \
        ("cli", "recipes", "export", "compress")
    result = walk(sys.argv[cut + 1:], chosen)
    print(json.dumps(result, indent=1))
