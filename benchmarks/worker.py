"""One measurement in its own process: ``python -m edgekit.benchmarks.worker SPEC.json``.

A fresh process per (model, backend, batch) makes the memory figure the real peak of a process
that runs only that model: peak RSS for the CPU, ``torch.cuda.max_memory_allocated``
for CUDA; the RSS just before loading the model is reported too, so the model's own share is
visible. Peak RSS is read from ``/proc/self/status`` (``VmHWM``): ``ru_maxrss`` would report the
parent's peak, which Linux carries across fork+exec. Only the torch backend imports torch.
Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np


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


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from edgekit.benchmarks.stats import latency_stats, time_calls
    from edgekit.runtime import load

    result: dict[str, Any] = {"pid": os.getpid()}
    if spec["path"].lower().endswith((".pt", ".pth")):  # a checkpoint runs in eager torch: train opens it
        import edgekit.train.torch_backend  # noqa: F401 - registers the .pt backend
    rss_before = _status_mb("VmRSS")
    t0 = time.perf_counter()
    model = load(spec["path"], device=spec.get("device", "auto"), threads=spec.get("threads"))
    result["load_s"] = time.perf_counter() - t0
    result["device"] = model.backend.device
    result["fixed_batch"] = model.backend.batch
    batch = int(spec["batch"])
    data = np.load(spec["images"]) if spec.get("images") else None
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
    cuda = model.backend.name == "torch" and model.backend.device == "cuda"
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()

        def call():
            model.run(x)
            torch.cuda.synchronize()
    else:
        def call():
            model.run(x)

    samples = time_calls(call, min_runs=spec.get("min_runs", 50), min_seconds=spec.get("min_seconds", 1.0),
                         warmup=spec.get("warmup", 10))
    result.update(latency_stats(samples))
    result["throughput_ips"] = batch / (result["p50_ms"] / 1e3)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["rss_before_load_mb"] = rss_before
    if cuda:
        import torch

        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if data is not None and spec.get("labels") and not model.frames:  # the accuracy data are images, not clips
        result["accuracy"] = _accuracy(model, data, spec["labels"], batch)
    return result


def _accuracy(model, images: np.ndarray, labels_path: str, batch: int) -> dict[str, float]:
    """Top-1 per classification head whose classes the dataset labels use (through this backend)."""
    with open(labels_path) as fh:
        labels = json.load(fh)  # {head: [class name per image]}
    correct = {h: 0 for h in labels}
    for i in range(0, len(images), batch):
        chunk = list(images[i: i + batch])
        out = model.run(model.preprocess(chunk, color="RGB"))
        for h, names in labels.items():
            classes = model.card.head(h).classes
            pred = out[h].argmax(1)
            correct[h] += sum(classes[p] == names[i + j] for j, p in enumerate(pred))
    return {h: c / len(images) for h, c in correct.items()}


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
