"""The one table of model file formats: export targets, runtime backends and bench backends read it.

Like Ultralytics' ``export_formats()``, but a plain table: each row names a target (``edgekit
export --target``), the backend that runs its files (``edgekit bench --backend``; ``ort`` is kept
as the bench name of onnxruntime), the file suffix and naming per precision, the packages that
export and run it, the pip extra that brings them, and the devices its runtime can use. Adding a
target is one row here, one module in ``export/`` and one backend in ``runtime/``.

Nothing heavy is imported here: the CLI reads this table for ``--help``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from edgekit.errors import ConfigError, DependencyError, either


@dataclass(frozen=True)
class Format:
    name: str  # export target: "onnx"
    suffix: str  # ".onnx"
    bench: str  # bench backend name: "ort"
    runtime: str  # runtime backend name (Backend.name): "onnxruntime"
    precisions: tuple[str, ...]  # fp32 first; the others are variants of the FP32 file or graph
    export_packages: tuple[str, ...]  # importable modules the export needs
    run_packages: tuple[str, ...]  # importable modules the runtime needs
    extra: str  # pip extra that installs them
    devices: tuple[str, ...]  # what --device can ask of its runtime
    default: bool = True  # part of `edgekit export --target all` when installed and of the default targets
    fixed_batch: bool = False  # files always have a fixed batch (no --dynamic-batch)
    companions: tuple[str, ...] = ()  # files that travel with each model file (an OpenVINO IR's ".bin")
    export_extra: str | None = None  # pip extra for exporting, when it is not ``extra`` (which runs the files)
    bench_all: bool = False  # part of `edgekit bench --backend all` when its runtime is installed
    wraps: str | None = None  # a bundle around another target's file of the same precision (web: onnx)
    backend: str = ""  # "module:Class" of the runtime backend that opens its files (imported when one is opened)
    aliases: tuple[str, ...] = ()  # other suffixes of the same format (".mlmodel", ".pth")
    exporter: str = ""  # the module with its export steps (``build``...); default: edgekit.export.<name>
    bench_runner: str | None = None  # "module:function" that measures its files itself (web: its page times itself)
    # "module:function": the target's own checks of a file after its gates (web: its page's); named here, not
    # looked up in the export module, so that checking a file never imports the exporter (torch, on a device)
    file_checks: str | None = None

    def __post_init__(self) -> None:
        if not self.exporter:
            object.__setattr__(self, "exporter", f"edgekit.export.{self.name}")

    def steps(self):
        """The target's export module (``build``, and the optional ``rewrite_card``, ``pin_precision``,
        ``check_structure``), imported now: export-side callers only (it imports torch)."""
        import importlib

        return importlib.import_module(self.exporter)

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (self.suffix, *self.aliases)

    def file(self, precision: str = "fp32") -> str:
        """File name of a precision: ``model.onnx``, ``model.int8.onnx``, ``model.fp16.tflite``."""
        base = "model" if precision in ("fp32", self.precisions[0]) else f"model.{precision.split('-')[0]}"
        return base + self.suffix

    def missing(self, run: bool = False) -> list[str]:
        """Modules of this format (to export, or with ``run`` to run it) that are not installed."""
        mods = self.run_packages if run else self.export_packages
        return [m for m in mods if importlib.util.find_spec(m.split(".")[0]) is None]

    def require(self, run: bool = False) -> None:
        """Raise a :class:`DependencyError` naming the extra when this format's packages are missing."""
        missing = self.missing(run)
        if missing:
            what = f"{self.suffix} files need" if run else either(f"--target {self.name} needs",
                                                                  f"the {self.name} target needs")
            extra = self.extra if run else (self.export_extra or self.extra)
            raise DependencyError(f"{what} {', '.join(missing)}: pip install 'edgekit[{extra}]'")


_RUNTIME = "edgekit.runtime."
FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("onnx", ".onnx", "ort", "onnxruntime", ("fp32", "fp16", "int8"), ("onnx", "onnxscript", "onnxruntime"),
           ("onnxruntime",), "all", ("cpu", "cuda", "coreml"), backend=_RUNTIME + "backends:OnnxBackend",
           aliases=(".ort",)),  # .ort: onnxruntime's own format (what web bundles may ship)
    Format("tflite", ".tflite", "tflite", "tflite", ("fp32", "fp16", "int8"), ("litert_torch", "ai_edge_litert"),
           ("ai_edge_litert",), "all", ("cpu",), backend=_RUNTIME + "backends:TFLiteBackend"),
    Format("coreml", ".mlpackage", "coreml", "coreml", ("fp16", "int8-weights"), ("coremltools",), ("coremltools",),
           "all", ("cpu", "mps"), fixed_batch=True, backend=_RUNTIME + "coreml:CoreMLBackend", aliases=(".mlmodel",)),
    Format("executorch", ".pte", "executorch", "executorch", ("fp32", "int8"), ("executorch",), ("executorch",),
           "executorch", ("cpu",), default=False, fixed_batch=True, backend=_RUNTIME + "pte:ExecuTorchBackend"),
    Format("openvino", ".xml", "openvino", "openvino", ("fp32", "fp16", "int8"), ("openvino", "nncf", "onnx",
           "onnxscript"), ("openvino",), "openvino", ("cpu", "gpu", "npu"), default=False, companions=(".bin",),
           export_extra="openvino-export", bench_all=True, backend=_RUNTIME + "openvino:OpenVINOBackend"),
    # a folder: the ONNX file + onnxruntime-web + one page; run in Chromium (runtime/web.py)
    Format("web", ".web", "web", "web", ("fp32", "fp16", "int8"), ("onnx", "onnxscript", "onnxruntime"),
           ("playwright", "aiohttp"), "web", ("auto", "cpu", "wasm", "webgpu", "webnn"), default=False, wraps="onnx",
           backend=_RUNTIME + "web:WebBackend", bench_runner="edgekit.benchmarks.web:run",
           file_checks="edgekit.export.web:verify_more"),
)}
# the eager PyTorch checkpoint is a bench backend too, but no export target; train opens it (the runtime never
# imports train: a .pt opens once edgekit.train.torch_backend is imported)
TORCH = Format("torch", ".pt", "torch", "torch", ("fp32",), ("torch",), ("torch",), "train", ("cpu", "cuda", "mps"),
               default=False, backend="edgekit.train.torch_backend:TorchBackend", aliases=(".pth",))
SUFFIXES: dict[str, Format] = {}


def _index() -> None:
    SUFFIXES.clear()
    SUFFIXES.update({s: f for f in (*FORMATS.values(), TORCH) for s in f.suffixes})


_index()


def register(fmt: Format) -> None:
    """Add a target at run time (a plugin, a test's toy target): one row, found by every table reader."""
    if fmt.name in FORMATS or set(fmt.suffixes) & set(SUFFIXES):
        raise ConfigError(f"a format named '{fmt.name}' or with suffix {', '.join(fmt.suffixes)} is already known")
    FORMATS[fmt.name] = fmt
    _index()


def unregister(name: str) -> None:
    """Remove a target :func:`register` added."""
    FORMATS.pop(name, None)
    _index()


def int8_targets() -> tuple[str, ...]:
    """Targets with a full INT8 file whose accuracy a runtime here can measure (CoreML's INT8 weights
    need macOS to run)."""
    return tuple(n for n, f in FORMATS.items() if "int8" in f.precisions and not f.wraps)


def targets() -> tuple[str, ...]:
    return tuple(FORMATS)


def default_targets() -> tuple[str, ...]:
    """The device formats that need no optional extra."""
    return tuple(n for n, f in FORMATS.items() if f.default)


def installed_targets() -> list[str]:
    """``--target all``: every target whose export packages are installed (ExecuTorch is optional); bundles
    (web) are asked for by name."""
    return [n for n, f in FORMATS.items() if (f.default or not f.missing()) and not f.wraps]


def with_wrapped(targets) -> list[str]:
    """``targets`` with the target each bundle wraps made first: ``["web"]`` -> ``["onnx", "web"]``."""
    out: list[str] = []
    for t in targets:
        wrapped = FORMATS[t].wraps
        if wrapped and wrapped not in out:
            out.append(wrapped)
        if t not in out:
            out.append(t)
    return out


def bench_backends() -> tuple[str, ...]:
    return (TORCH.bench, *(f.bench for f in FORMATS.values()))


def all_bench_backends() -> list[str]:
    """``--backend all``: eager torch, the default formats, and the optional ones marked ``bench_all`` whose
    runtime is installed (OpenVINO; ExecuTorch is asked for by name)."""
    return [TORCH.bench, *(f.bench for f in FORMATS.values() if f.default or (f.bench_all and not f.missing(run=True)))]


def model_files(path) -> list:
    """A model file and the files that travel with it (an IR's ``.bin``), those that exist."""
    from pathlib import Path

    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    extra = [path.with_suffix(c) for c in (fmt.companions if fmt else ())]
    return [path] + [p for p in extra if p.exists()]


def size_bytes(path) -> int:
    """Bytes on disk of a model: its file (or package folder) and its companion files."""
    total = 0
    for p in model_files(path):
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return total


def digest(path) -> str:
    """SHA-256 (hex) of a model: its file and companions (an IR's ``.bin``), or every file of a package folder
    (``.mlpackage``, ``.web``), each with its relative path. What binds a ``parity.json`` entry, and a device's
    verdict, to the bytes that were judged."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    for p in model_files(path):
        files = sorted(f for f in Path(p).rglob("*") if f.is_file()) if Path(p).is_dir() else [Path(p)]
        for f in files:
            h.update(f.relative_to(Path(p).parent).as_posix().encode() + b"\0")
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def import_backend(path) -> None:
    """Import the module of the backend that opens ``path`` (the runtime opens files only with backends
    already imported or its own; the CLI and the bench worker call this, so that a ``.pt`` opens through
    train's). A missing package is a one-line error naming the extra."""
    import importlib
    from pathlib import Path

    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None or not fmt.backend:
        return
    try:
        importlib.import_module(fmt.backend.partition(":")[0])
    except ImportError:
        fmt.require(run=True)
        raise


def function(spec: str):
    """The function a row names as ``"module:function"`` (``bench_runner``, ``file_checks``), imported now."""
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def by_bench(name: str) -> Format:
    return next(f for f in (TORCH, *FORMATS.values()) if f.bench == name)


def of_file(path) -> Format:
    """The format of a model file, by suffix."""
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{path}: unknown model format '{suffix}' (expected {', '.join(sorted(SUFFIXES))})")
    return SUFFIXES[suffix]
