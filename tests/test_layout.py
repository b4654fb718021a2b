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
# (file, module) exceptions to BANNED: none. A .pt checkpoint is opened through train's backend, which the format
# table's torch row names by string (test_format_rows_name_backends_inside_the_runtime) and the bench worker and
# the CLI import with formats.import_backend
ALLOWED: set[tuple[str, str]] = set()


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


def test_format_rows_name_backends_inside_the_runtime():
    """The format table names each row's backend class by module (imported when one of its files is opened, so
    the import above is not seen): every target's is in the runtime; only the checkpoint row names train's, which
    the runtime uses only once something else imported it."""
    from edgekit import formats

    assert {n: f.backend for n, f in formats.FORMATS.items() if not f.backend.startswith("edgekit.runtime.")} == {}
    assert formats.TORCH.backend.startswith("edgekit.train.")


def _import_graph() -> dict[str, set[str]]:
    """File -> the edgekit files it imports, at module level or inside functions (a lazy import still runs)."""
    modules = _modules()
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        for _, name in _imports(path, module, top_level_only=False):
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # a file inside a package reaching that package's own __init__ is how Python loads it, not a circle
            if target and target != module and not module.startswith(target + "."):
                graph[module].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one file (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_files():
    """Every import counts, module-level or inside a function: a lazy import delays a circle, it does not
    remove it. Lazy imports of optional third-party packages are fine (they are not edgekit files)."""
    graph = _import_graph()
    circles = [" <-> ".join(c) + "\n" + "\n".join(f"    {a} -> {', '.join(sorted(graph[a] & set(c)))}" for a in c)
               for c in _circles(graph)]
    assert not circles, "\n".join(circles)


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
