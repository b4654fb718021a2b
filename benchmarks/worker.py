"""One measurement in its own process: ``python -m edgekit.benchmarks.worker SPEC.json``.

A fresh process per (model, backend, batch) makes the memory figure the real peak of a process
that runs only that model: peak RSS for the CPU, ``torch.cuda.max_memory_allocated``
for CUDA; the RSS just before loading the model is reported too, so the model's own share is
visible. Peak RSS is read from ``/proc/self/status`` (``VmHWM``): ``ru_maxrss`` would report the
parent's peak, which Linux carries across fork+exec. Only the torch backend imports torch.

Besides latency it says what ran: load time (session creation, then the first inference),
``model_rss_mb`` (RSS after loading and the first inference, over the process with the backend's
library already imported), and :func:`edgekit.runtime.residency.what_ran` (nodes per execution
provider or delegate, a requested accelerator that fell back, integer vs float layers). A file
without a card runs with a card built from its graph and the stated assumptions (``assume``), or,
when it is no single-image model (``raw``), on inputs synthesized from its signature.
Prints one JSON line.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import formats


def _status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float | None:
    """Peak RSS of this process image. ``VmHWM`` restarts at exec; ``ru_maxrss`` would carry the
    parent's peak across fork+exec on Linux, so it is only the fallback (macOS reports bytes)."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def _tasks() -> int | None:
    """Threads of this process (Linux: /proc/self/task), None elsewhere."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from edgekit.benchmarks.stats import latency_stats, time_calls
    from edgekit.runtime import load
    from edgekit.runtime.backends import open_backend
    from edgekit.runtime.residency import what_ran

    result: dict[str, Any] = {"pid": os.getpid()}
    fmt = formats.SUFFIXES.get(Path(spec["path"]).suffix.lower())
    if fmt is not None and fmt.bench_runner:  # a format that times itself (a browser bundle: its page)
        return {**result, **formats.function(fmt.bench_runner)(spec)}
    path, device, batch = spec["path"], spec.get("device", "auto"), int(spec["batch"])
    formats.import_backend(path)  # the backend's module (a checkpoint runs in eager torch: train's backend opens it)
    _import_library(path)  # the baseline below is an empty process with the backend's library loaded
    rss_before = _status_mb("VmRSS")
    tasks_before = _tasks()
    t0 = time.perf_counter()
    if spec.get("raw"):  # no card and no image input: the session itself, on synthesized inputs
        model, backend = None, open_backend(Path(path), device=device, threads=spec.get("threads"))
    else:
        model = load(path, device=device, threads=spec.get("threads"), assume=spec.get("assume"))
        backend = model.backend
    result["load_ms"] = (time.perf_counter() - t0) * 1e3
    result["device"] = backend.device
    result["threads"], result["threads_from"] = backend.threads, backend.threads_from
    if getattr(backend, "execution_precision", None):  # what the runtime chose (OpenVINO: bf16 on bf16 CPUs)
        result["execution_precision"] = backend.execution_precision
    data = None
    if model is None:
        call, feed, result["fixed_batch"], result["assumed"] = _raw_call(backend, batch, spec.get("assume") or {},
                                                                        Path(path).name)
    else:
        result["fixed_batch"] = backend.batch
        data = np.load(spec["images"]) if spec.get("images") else None
        x = _inputs(model, batch, data)
        feed = backend.named_feed(x)  # what a second, profiled session runs (ONNX Runtime's residency)
        if model.assumed:
            result["assumed"] = model.assumed

        def call():
            model.run(x)

    sync = backend.device_sync()  # torch on CUDA: wait for the queued work (its peak memory counter reset)
    if sync is not None:
        run_once = call

        def call():
            run_once()
            sync()

    t0 = time.perf_counter()
    call()
    result["first_run_ms"] = (time.perf_counter() - t0) * 1e3
    if model is not None and backend.runs_at(batch) != batch:  # a TFLite graph not proven at this batch: chunks
        result["fixed_batch"] = backend.runs_at(batch)
    rss_loaded = _status_mb("VmRSS")
    if tasks_before is not None:  # what the library really started: a pool of N threads adds N - 1 workers
        result["os_threads_started"] = _tasks() - tasks_before
    samples = time_calls(call, min_runs=spec.get("min_runs", 50), min_seconds=spec.get("min_seconds", 1.0),
                         warmup=spec.get("warmup", 10))
    result.update(latency_stats(samples))
    if model is not None and model.card.input.audio:  # the log-mel frontend runs beside the model: its own cost
        windows = _windows(model, batch)
        front = latency_stats(time_calls(lambda: model.preprocess(windows), min_runs=spec.get("min_runs", 50),
                                         min_seconds=spec.get("min_seconds", 1.0), warmup=spec.get("warmup", 10)))
        result.update(frontend_p50_ms=front["p50_ms"], frontend_p90_ms=front["p90_ms"])
    result["throughput_ips"] = batch / (result["p50_ms"] / 1e3)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["rss_before_load_mb"] = rss_before
    if rss_before is not None and rss_loaded is not None:
        result["model_rss_mb"] = rss_loaded - rss_before  # session + first inference over the empty process
    peak = backend.peak_device_mb()
    if peak is not None:
        result["peak_cuda_mb"] = peak
    result.update(what_ran(path, backend, feed, device))  # after the memory figures: it opens a second session
    if data is not None and spec.get("labels") and not model.frames and not model.card.input.audio:  # images only
        result["accuracy"], metrics = _accuracy(model, data, spec["labels"], batch)
        if metrics:
            result["metrics"] = metrics
    return result


def _import_library(path: str) -> None:
    """Import the backend's library (``Backend.library``), so that the RSS before loading counts the library,
    not the model."""
    import contextlib

    from edgekit.runtime.backend import ModelFileError, backend_class

    with contextlib.suppress(ImportError, ModelFileError):  # loading the model says what to install
        module = backend_class(path).library
        if module:
            importlib.import_module(module)


def _windows(model, batch: int) -> np.ndarray:
    """``batch`` waveform windows of a sound model: seeded noise at the card's sample rate and length."""
    from edgekit.runtime.tagging import frontend

    n = frontend(model).window_samples
    return (0.1 * np.random.default_rng(0).standard_normal((batch, n))).astype(np.float32)


def _inputs(model, batch: int, data: np.ndarray | None) -> np.ndarray:
    """A preprocessed batch: dataset images when given, else random pixels at the model's input size (sound
    models: the log-mel of noise windows)."""
    if model.card.input.audio:
        return model.preprocess(_windows(model, batch))
    per_sample = model.frames or 1  # a clip model takes `batch` clips of T frames
    if data is not None and len(data) >= 1:
        frames = [data[i % len(data)] for i in range(batch * per_sample)]
    else:
        h, w = model.card.input.size
        frames = [np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
                  for i in range(batch * per_sample)]
    if model.frames:
        frames = [frames[i * per_sample: (i + 1) * per_sample] for i in range(batch)]
    x = model.preprocess(frames, color="RGB")
    if len(x) != batch:
        raise RuntimeError(f"built a batch of {len(x)} instead of {batch}")
    return x


def _raw_call(backend, batch: int, assume: dict[str, Any], where: str):
    """(call, feed, fixed batch, what was assumed) for a file measured on synthesized inputs. A file whose
    inputs all have a fixed axis 0 runs ceil(batch / fixed) times per measurement, like the runtime's chunks."""
    from edgekit.runtime.foreign import input_shapes, raw_runner, signature, synthesize

    inputs = signature(backend, where)
    shapes = input_shapes(inputs, batch, assume.get("shapes"))
    feed = synthesize(inputs, shapes)
    run_once = raw_runner(backend, feed)
    fixed = shapes[inputs[0].name][0] if inputs and all(t.shape and t.shape[0] for t in inputs) else None
    repeats = -(-batch // fixed) if fixed else 1

    def call():
        for _ in range(repeats):
            run_once()

    assumed = {"inputs": {t.name: t.describe(shapes[t.name]) for t in inputs}, "values": "random (seed 0)"}
    return call, feed, fixed, assumed


def _accuracy(model, images: np.ndarray, labels_path: str, batch: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Per head, through this backend: top-1 of classification heads whose classes the dataset labels use, and
    for the others their own metric (regression MAE; multilabel mAP, with scikit-learn where installed)."""
    from edgekit.metrics import mae, top1

    with open(labels_path) as fh:
        labels = json.load(fh)  # {head: [class name | None]} or {head: {"kind": ..., ...}}
    outs: dict[str, list[np.ndarray]] = {h: [] for h in labels}
    for i in range(0, len(images), batch):
        out = model.run(model.preprocess(list(images[i: i + batch]), color="RGB"))
        for h in labels:
            outs[h].append(out[h])
    accuracy, metrics = {}, {}
    for h, truth in labels.items():
        pred = np.concatenate(outs[h])
        if isinstance(truth, list):  # classification, labelled by class name (one the model lacks is never right)
            index = {c: i for i, c in enumerate(model.card.head(h).classes)}
            target = np.asarray([-1 if t is None else index.get(t, len(index)) for t in truth])
            valid = target >= 0
            accuracy[h] = top1(pred[valid], target[valid]) if valid.any() else 0.0
        elif truth["kind"] == "regression":
            values = np.asarray([np.nan if t is None else t for t in truth["values"]], dtype=np.float64)
            ok = ~np.isnan(values)
            metrics[h] = {"mae": mae(pred[:, 0].astype(np.float64)[ok], values[ok])} if ok.any() else {}
        else:
            metrics[h] = _map(pred, truth, model.card.head(h).classes)
    return accuracy, metrics


def _map(scores: np.ndarray, truth: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    rows = [i for i, t in enumerate(truth["labels"]) if t is not None]
    y = np.asarray([[c in truth["labels"][i] for c in classes] for i in rows], dtype=float)
    from edgekit.metrics import mean_average_precision

    try:
        value = mean_average_precision(y, scores[rows])
    except ImportError:
        return {"map": None, "note": "mAP needs scikit-learn"}
    return {} if value is None else {"map": value}


def main() -> int:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    try:
        result = run(spec)
    except Exception as exc:  # noqa: BLE001 - the parent reports it as "n/a: <reason>"
        from edgekit.errors import first_line

        result = {"error": f"{type(exc).__name__}: {first_line(exc)}"[:300], "pid": os.getpid()}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
