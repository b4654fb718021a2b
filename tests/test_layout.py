"""The house rules of ../shared/DESIGN.md, enforced on the source (AST), not by convention."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"edgekit": "edgekit", "train": "edgekit.train", "compress": "edgekit.compress",
           "export": "edgekit.export", "runtime": "edgekit.runtime", "benchmarks": "edgekit.benchmarks",
           "apps": "edgekit.apps", "recipes": "edgekit.recipes", "devices": "edgekit.devices"}
# what each stage must never import (any edgekit.<stage>...), lazily or not. devices (the host side of SSH devices)
# uses the ground floor, runtime and benchmarks; recipes and the CLI call it; nothing that runs on a device does.
BANNED = {"runtime": {"train", "compress", "export", "recipes", "benchmarks", "apps", "devices"},
          "apps": {"train", "compress", "export", "recipes", "benchmarks", "devices"},
          "benchmarks": {"train", "compress", "export", "recipes", "devices"},
          "compress": {"export", "recipes", "devices"}, "export": {"recipes", "devices"},
          "train": {"compress", "export", "recipes", "devices"},
          "devices": {"train", "compress", "export", "recipes", "apps"}}
# a .pt checkpoint is opened through train's backend, in the bench worker process only (DESIGN.md)
ALLOWED = {("benchmarks/worker.py", "edgekit.train.torch_backend")}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for f in (ROOT / folder).rglob("*.py"):
            rel = f.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = f
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = module.split(".")[: -node.level] if path.name != "__init__.py" else module.split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return [(n, name) for n, name in found if name.startswith("edgekit")]


def test_imports_flow_one_way():
    breaches = []
    for module, path in _modules().items():
        folder = path.relative_to(ROOT).parts[0]
        for line, name in _imports(path, module, top_level_only=False):
            parts = name.split(".")
            rel = path.relative_to(ROOT).as_posix()
            if len(parts) > 1 and parts[1] in BANNED.get(folder, ()) and (rel, name) not in ALLOWED \
                    and not any(name.startswith(a + ".") or name == a for r, a in ALLOWED if r == rel):
                breaches.append(f"{rel}:{line} imports {name}")
    assert not breaches, "\n".join(breaches)


def test_no_import_cycles_between_files():
    """Import-time (module-level) edges: a cycle there means a file cannot be imported on its own."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        for _, name in _imports(path, module, top_level_only=True):
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                if not (nxt.count(".") < node.count(".") and node.startswith(nxt + ".")):  # a package's own __init__
                    cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("package", ["edgekit.runtime", "edgekit.apps", "edgekit.runtime.predictor",
                                     "edgekit.apps.kiosk", "edgekit.apps.webcam", "edgekit.benchmarks.harness",
                                     "edgekit.apps.audio", "edgekit.runtime.tagging", "edgekit.runtime.golden_audio",
                                     # what a device runs (edgekit[runtime] only): --on check, predict, bench, setup
                                     "edgekit.runtime.machine", "edgekit.benchmarks.worker", "edgekit.recipes.check",
                                     "edgekit.recipes.samples", "edgekit.export.verify", "edgekit.cli"])
def test_runtime_and_apps_import_without_torch(package):
    code = ("import sys; sys.modules['torch'] = None; sys.modules['edgekit.train'] = None; "
            f"import {package}; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_files_stay_small():
    """One concept per file: past ~400 lines a concept wants its own file (the CLI's option blocks
    and the trainer's loop are argued exceptions in the README's Layout section)."""
    exceptions = {"edgekit/cli.py": 700, "train/trainer.py": 480}
    big = []
    for path in _modules().values():
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > exceptions.get(rel, 420):
            big.append(f"{rel}: {n} lines")
    assert not big, "\n".join(big)
