"""Latency of a web bundle in headless Chromium, and native onnxruntime beside it at the same threads.

The page times ``session.run`` itself (``performance.now()``, 5 µs resolution on a cross-origin
isolated page) on one preprocessed batch: warm-up, then until both the minimum runs and seconds
have passed, as the native worker does. So the figure is onnxruntime-web's, without the transfer
between Python and the page. The row says what ran: WebAssembly with N threads, or WebGPU / WebNN
and why it fell back. :func:`native_twin` measures the bundle's own model file with native
onnxruntime at the thread count the page ran, so the two p50s compare the runtimes, not the settings.
Memory is not measured for the browser (its processes are Chromium's); the row says n/a.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _inputs(model, batch: int, data: np.ndarray | None) -> np.ndarray:
    if data is not None and len(data):
        frames = [data[i % len(data)] for i in range(batch)]
    else:
        h, w = model.card.input.size
        frames = [np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8) for i in range(batch)]
    return model.preprocess(frames, color="RGB")


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement (the bench worker's spec): the page's p50/p90/p99, load, first run, what ran."""
    import json

    from edgekit.benchmarks.stats import latency_stats
    from edgekit.runtime import load
    from edgekit.runtime.web import encode

    batch = int(spec["batch"])
    t0 = time.perf_counter()
    model = load(spec["path"], device=spec.get("device", "auto"), threads=spec.get("threads"))
    backend = model.backend
    result: dict[str, Any] = {"load_ms": (time.perf_counter() - t0) * 1e3, "device": backend.device,
                              "threads": backend.threads, "threads_from": backend.threads_from,
                              "fixed_batch": backend.batch, "peak_rss_mb": None,
                              "browser": {k: backend.info.get(k) for k in ("backend", "threads", "runtime",
                                                                            "cross_origin_isolated")},
                              "residency": {"device": backend.describe()},
                              "fallback": "; ".join(backend.fallback) or None}
    data = np.load(spec["images"]) if spec.get("images") else None
    x = _inputs(model, batch, data)
    per_call = backend.batch or batch  # a fixed-batch file runs as chunks, timed together
    chunks = [x[i: i + per_call] for i in range(0, batch, per_call)]
    if len(chunks[-1]) < per_call:
        chunks[-1] = np.concatenate([chunks[-1], np.repeat(chunks[-1][-1:], per_call - len(chunks[-1]), axis=0)])
    timed = {**encode(chunks[0]), "repeats": len(chunks)}
    first = backend.page.call("bench", {**timed, "warmup": 0, "minRuns": 1, "minSeconds": 0, "maxRuns": 1})
    result["first_run_ms"] = first["samples_ms"][0]
    res = backend.page.call("bench", {**timed, "warmup": spec.get("warmup", 10), "minRuns": spec.get("min_runs", 50),
                                      "minSeconds": spec.get("min_seconds", 1.0)})
    result.update(latency_stats(np.asarray(res["samples_ms"]) / 1e3))
    result["throughput_ips"] = batch / (result["p50_ms"] / 1e3)
    if data is not None and spec.get("labels"):
        with open(spec["labels"]) as fh:
            labels = json.load(fh)
        result["accuracy"] = _accuracy(model, data, labels)
    backend.close()
    return result


def _accuracy(model, images: np.ndarray, labels: dict[str, list[str]]) -> dict[str, float]:
    """Top-1 per head through the page (``runTensor``), in chunks of 64 images."""
    correct = {h: 0 for h in labels}
    for i in range(0, len(images), 64):
        out = model.run(model.preprocess(list(images[i: i + 64]), color="RGB"))
        for h, names in labels.items():
            classes = model.card.head(h).classes
            correct[h] += sum(classes[p] == names[i + j] for j, p in enumerate(out[h].argmax(1)))
    return {h: c / len(images) for h, c in correct.items()}


def native_model(bundle: str | Path) -> Path:
    """The model file the bundle's page runs (``model.ort`` or ``model.onnx``), for native onnxruntime."""
    import json

    bundle = Path(bundle)
    return bundle / json.loads((bundle / "manifest.json").read_text())["model"]["file"]


def native_twin(bench, web_row: dict[str, Any], measure: Callable[[Any, int], dict[str, Any]]) -> dict[str, Any] | None:
    """Native onnxruntime on the bundle's model file at the thread count the page ran (``measure(bench,
    threads)`` measures the ``ort`` file of ``bench``); None when the page did not run."""
    if "error" in web_row or not web_row.get("threads"):
        return None
    twin = replace(bench, files={"ort": native_model(bench.files["web"])},
                   precisions={"ort": bench.precisions.get("web", "fp32")})
    row = measure(twin, int(web_row["threads"]))
    row["twin_of"] = "web"
    said = (f"native onnxruntime on the bundle's {Path(row['file']).name} at the {web_row['threads']} "
            "thread(s) the browser ran")
    row["note"] = f"{row['note']}; {said}" if row.get("note") else said
    return row
