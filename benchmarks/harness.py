"""``edgekit bench``'s harness: files x backends x batch sizes, each measured in its own process.

It measures files only, through :mod:`edgekit.runtime` (a worker process per measurement, see
:mod:`edgekit.benchmarks.worker`); turning checkpoints and timm names into files, and preparing the
accuracy images, is the recipe :mod:`edgekit.recipes.bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit import formats
from edgekit.card import ModelCard
from edgekit.console import say
from edgekit.errors import EdgekitError, RemoteDeviceError, option

Runner = Callable[[dict[str, Any], int], dict[str, Any]]  # (worker spec, timeout s) -> the worker's JSON row
BACKENDS = formats.bench_backends()  # torch, ort, tflite, coreml, executorch (edgekit/formats.py)


@dataclass
class Bench:
    """A model ready to measure: one file per backend, and what is known about it."""

    name: str
    card: ModelCard | None  # None when the model could not be prepared (see ``errors``)
    files: dict[str, Path]
    precisions: dict[str, str] = field(default_factory=dict)  # per backend; fp32 when not given
    params: int | None = None
    gflops: float | None = None
    role: str = "model"
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # backend -> why it has no file ("*": the whole model)
    # a file without a card: what the user stated (runtime.foreign.Assume fields; the worker builds the card
    # from them) and whether it is measured on synthesized inputs only (no single image input)
    assume: dict[str, Any] | None = None
    raw: bool = False
    source: Path | None = None  # the checkpoint the files were exported from (a run's best.pt: bench notes it there)


def check_device(device: str, backends: list[str]) -> None:
    """A device that is not there is an error naming what is missing, before any work."""
    import importlib.util

    if device in ("auto", "cpu"):
        return
    if device.startswith("cuda"):
        have_torch_cuda = False
        if importlib.util.find_spec("torch") is not None:
            import torch

            have_torch_cuda = torch.cuda.is_available()
        ort_cuda = False
        if importlib.util.find_spec("onnxruntime") is not None:
            import onnxruntime as ort

            ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if "torch" in backends and not have_torch_cuda:
            raise EdgekitError(f"{option('device', 'cuda')}: torch sees no CUDA device "
                               "(no NVIDIA GPU/driver, or a CPU build)")
        if "ort" in backends and not ort_cuda:
            raise EdgekitError(f"{option('device', 'cuda')}: onnxruntime has no CUDAExecutionProvider "
                               "(pip install onnxruntime-gpu)")
    elif device.split(":")[0] in ("gpu", "npu"):  # OpenVINO's devices
        if "openvino" not in backends:
            raise EdgekitError(f"{option('device', device)} is an OpenVINO device: add {option('backend', 'openvino')}")
        from edgekit.runtime.openvino import openvino, ov_device

        ov_device(device, openvino().Core().available_devices)
    elif device == "mps":
        import platform

        if platform.system() != "Darwin":
            raise EdgekitError(f"{option('device', 'mps')}: Apple MPS needs macOS on Apple silicon; "
                               f"use {option('device', 'cpu')}")
    else:
        raise EdgekitError(f"unknown device '{device}' (use auto, cpu, cuda, mps, or gpu / npu with OpenVINO)")


def measure(bench: Bench, backend: str, batch: int, device: str, threads: int | None,
            dataset: tuple[Path, Path] | None, work: Path, min_seconds: float, timeout: int = 900,
            runner: Runner | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh process and return its row. ``runner``: where the worker runs (a device
    over SSH, :meth:`edgekit.devices.remote.Remote.worker`); default: a process on this machine."""
    path = bench.files[backend]
    spec: dict[str, Any] = {"path": str(path), "batch": batch, "device": device, "threads": threads,
                            "min_seconds": min_seconds}
    if dataset:
        spec["images"], spec["labels"] = str(dataset[0]), str(dataset[1])
    if bench.assume is not None:
        spec["assume"], spec["raw"] = bench.assume, bench.raw
    result = runner(spec, timeout) if runner is not None else _run_here(spec, work, timeout)
    if result.get("fixed_batch") and result["fixed_batch"] != batch:
        result["note"] = f"file has a fixed batch of {result['fixed_batch']}: run as chunks"
    if threads is not None and result.get("threads") not in (None, threads):
        result["note"] = (result.get("note", "") + "; " if result.get("note") else "") + (
            f"asked for {threads} threads, the backend reports {result['threads']}")
    precision = bench.precisions.get(backend, "fp32")
    if precision == "unknown" and isinstance(result.get("quant"), dict):  # a file without a card: what its graph says
        precision = "int8" if result["quant"]["integer"]["layers"] else "float"
    elif precision == "unknown" and "error" not in result:
        precision = "float"
    size = formats.size_bytes(path) if path.exists() else 0  # an IR's .bin counts
    return {"model": bench.name, "role": bench.role, "backend": backend, "precision": precision, "batch": batch,
            "file": str(path), "size_mb": size / 1e6, "params": bench.params, "gflops": bench.gflops, **result}


def _run_here(spec: dict[str, Any], work: Path, timeout: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=work, delete=False) as fh:
        json.dump(spec, fh)
    try:
        proc = subprocess.run([sys.executable, "-m", "edgekit.benchmarks.worker", fh.name], capture_output=True,
                              text=True, timeout=timeout)
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout}s"}
    finally:
        Path(fh.name).unlink(missing_ok=True)


def run_all(benches: list[Bench], backends: list[str], batches: list[int], device: str = "auto",
            threads: int | None = None, data: str | None = None, work: Path | None = None,
            min_seconds: float = 1.0, verbose: bool = True,
            dataset_of: Callable[[Bench], tuple[Path, Path] | None] | None = None,
            runner: Runner | None = None) -> list[dict[str, Any]]:
    """Measure every (model, backend, batch). ``dataset_of(bench)`` gives the accuracy images (``.npy``) and
    labels (``.json``) of the dataset named ``data`` for that model, or None when its heads do not match them;
    without both, accuracy is not measured. ``runner``: run the workers on a device (see :func:`measure`); when it
    is lost, the :class:`~edgekit.errors.RemoteDeviceError` carries the rows measured before (``exc.rows``)."""
    from edgekit.runtime.backends import check_threads

    threads = check_threads(threads)  # every backend gets the same explicit count
    rows = []
    work = work or Path(tempfile.mkdtemp(prefix="edgekit-bench-"))
    for bench in benches:
        if "*" in bench.errors:  # the model could not be prepared at all: one n/a row per backend
            for backend in backends:
                rows.append(_failed_row(bench, backend, bench.errors["*"]))
                if verbose:
                    say(_line(rows[-1]))
            continue
        try:
            dataset = dataset_of(bench) if data and dataset_of else None
        except Exception as exc:  # noqa: BLE001 - accuracy is lost for this model, latency is still measured
            dataset = None
            bench.notes.append(f"{bench.name}: accuracy n/a ({failure_reason(exc)})")
        else:
            if data and dataset_of and dataset is None:
                bench.notes.append(f"{bench.name}: accuracy n/a (its heads do not match the labels of '{data}')")
        for backend in backends:
            if backend in bench.errors:
                rows.append(_failed_row(bench, backend, bench.errors[backend]))
                if verbose:
                    say(_line(rows[-1]))
                continue
            if backend not in bench.files:
                continue
            for batch in batches:
                if backend == "coreml" and batch != 1:
                    continue  # the CoreML file has a fixed batch of 1
                try:
                    row = measure(bench, backend, batch, device, threads, dataset, work, min_seconds, runner=runner)
                except RemoteDeviceError as exc:
                    exc.rows = rows
                    raise
                rows.append(row)
                if verbose:
                    say(_line(row))
                if backend == "web":  # native onnxruntime beside the browser, at the thread count the page ran
                    from edgekit.benchmarks.web import native_twin

                    twin = native_twin(bench, row, lambda b, t, n=batch, d=dataset: measure(b, "ort", n, "cpu", t, d,
                                                                                            work, min_seconds))
                    if twin:
                        rows.append(twin)
                        if verbose:
                            say(_line(twin))
    add_ratios(rows)
    return rows


def _failed_row(bench: Bench, backend: str, reason: str) -> dict[str, Any]:
    return {"model": bench.name, "role": bench.role, "backend": backend,
            "precision": bench.precisions.get(backend, "fp32"), "batch": None, "file": None, "size_mb": None,
            "params": bench.params, "gflops": bench.gflops, "error": reason}


def failure_reason(exc: BaseException) -> str:
    """One line saying why a model or a measurement failed (the type name too for errors not edgekit's)."""
    from edgekit.errors import first_line

    return first_line(exc, 240) if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {first_line(exc, 200)}"


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Teacher vs the others: latency ratio (teacher torch time / this time) and compression."""
    teacher = {r["batch"]: r for r in rows if r["role"] == "teacher" and r["backend"] == "torch" and "p50_ms" in r}
    params = next((r["params"] for r in rows if r["role"] == "teacher" and r.get("params")), None)
    for r in rows:
        if r["role"] == "teacher" or "p50_ms" not in r:
            continue
        ref = teacher.get(r["batch"])
        if ref:
            r["speedup_vs_teacher_torch"] = ref["p50_ms"] / r["p50_ms"]
        if params and r.get("params"):
            r["compression_vs_teacher"] = params / r["params"]


def _line(r: dict[str, Any]) -> str:
    from rich.markup import escape

    what = escape(f"{r['model']} [{r['backend']} {r['precision']}] batch {r['batch']}")
    if "error" in r:
        return f"  {what}: n/a ({r['error']})"
    acc = ", ".join(f"{h} {v * 100:.2f}%" for h, v in (r.get("accuracy") or {}).items())
    from edgekit.benchmarks.report import cell

    ran = f", {r['threads']} threads" if r.get("threads") else ""
    ran += f", load {r['load_ms']:.0f} ms + 1st run {r['first_run_ms']:.0f} ms" if "load_ms" in r else ""
    ran += f", {cell(r, 'residency')}" if r.get("residency") else ""
    ran += f", [red]fell back: {escape(r['fallback'])}[/]" if r.get("fallback") else ""
    return (f"  {what}: p50 {r['p50_ms']:.3f} ms (p99 {r['p99_ms']:.3f}, spread {r['spread_pct']:.0f}%), "
            f"{r['throughput_ips']:.0f} img/s, peak RSS {cell(r, 'peak_rss_mb')} MB"
            f"{', acc ' + acc if acc else ''}{ran}")
