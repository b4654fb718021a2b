"""Benchmark of the benchmark: does ``edgekit bench`` add hidden overhead, and is its memory real?

For each file (``.onnx``, ``.tflite`` or ``.pte``): the harness's p50 at batch 1 (a worker process,
through ``edgekit.runtime``) against a bare loop of the backend's own API in its own process
(``session.run``; ``Interpreter.invoke``; ``Method.execute``) on the same input shape and dtype,
with the same thread count (set explicitly on both sides, the machine's usable cores by default),
warm-up and timing rule, alternated ``rounds`` times; goal: within 10%. The harness row reports
the thread count the backend read back and how many threads the library started, so a mismatch
shows. With two files of one backend (small, large), the harness's peak RSS must order them as their sizes
do (compared per backend: ExecuTorch's Python runtime imports torch, which outweighs any model)::

    python tools/harness_check.py student.onnx student.tflite student.pte teacher.onnx
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

COMMON = """
import json, os, sys, time
import numpy as np
from edgekit.benchmarks.stats import latency_stats, time_calls
path, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def report(call):
    before = len(os.listdir("/proc/self/task"))
    call()
    started = len(os.listdir("/proc/self/task")) - before
    print(json.dumps({**latency_stats(time_calls(call, min_seconds=seconds)), "threads_started": started}))
"""
BARE = {
    ".onnx": COMMON + """
import onnxruntime as ort
opts = ort.SessionOptions(); opts.intra_op_num_threads = threads; opts.inter_op_num_threads = 1
s = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
shape = [1 if not isinstance(d, int) else d for d in i.shape]
kind = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float16)": np.float16}.get(i.type, np.float32)
x = {i.name: np.random.default_rng(0).standard_normal(shape).astype(kind)}
names = [o.name for o in s.get_outputs()]
report(lambda: s.run(names, x))
""",
    ".tflite": COMMON + """
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=path, num_threads=threads)
d = it.get_input_details()[0]
shape = [int(v) for v in d["shape"]]
if shape[0] != 1:
    it.resize_tensor_input(d["index"], [1, *shape[1:]], strict=False)
it.allocate_tensors()
x = np.random.default_rng(0).integers(-100, 100, [1, *shape[1:]]).astype(d["dtype"])
def call():
    it.set_tensor(d["index"], x)
    it.invoke()
    for o in it.get_output_details():
        it.get_tensor(o["index"])
report(call)
""",
    ".pte": COMMON + """
import torch
from executorch.extension.pybindings import portable_lib
from executorch.runtime import Runtime
portable_lib._unsafe_reset_threadpool(threads)
m = Runtime.get().load_program(path).load_method("forward")
shape = list(m.metadata.input_tensor_meta(0).sizes())
x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
report(lambda: [o.numpy() for o in m.execute([x])])
""",
}
BACKEND = {".onnx": "ort", ".tflite": "tflite", ".pte": "executorch"}


def check(files: list[Path], rounds: int = 3, threads: int | None = None, seconds: float = 1.0) -> dict:
    from edgekit.benchmarks.harness import Bench, measure
    from edgekit.runtime.backends import check_threads
    from edgekit.runtime.metadata import read_card

    threads = check_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="edgekit-harness-check-"))
    results = []
    for f in files:
        suffix = f.suffix.lower()
        if suffix not in BARE:
            raise typer.BadParameter(f"{f}: harness_check compares {', '.join(BARE)} files")
        backend = BACKEND[suffix]
        bench = Bench(name=f.name, card=read_card(f), files={backend: f})
        harness, bare, rss, rows, bare_rows = [], [], [], [], []
        for _ in range(rounds):
            row = measure(bench, backend, 1, "cpu", threads, None, work, seconds)
            if "error" in row:
                raise typer.BadParameter(f"{f}: {row['error']}")
            harness.append(row["p50_ms"])
            rss.append(row["peak_rss_mb"])
            rows.append(row)
            out = subprocess.run([sys.executable, "-c", BARE[suffix], str(f), str(threads), str(seconds)],
                                 capture_output=True, text=True, check=True)
            bare_rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            bare.append(bare_rows[-1]["p50_ms"])
        h, b = statistics.median(harness), statistics.median(bare)
        results.append({"file": str(f), "backend": backend, "size_mb": f.stat().st_size / 1e6,
                        "harness_p50_ms": h, "bare_p50_ms": b, "ratio": h / b, "within_10pct": abs(h / b - 1) <= 0.10,
                        "harness_runs_ms": harness, "bare_runs_ms": bare, "peak_rss_mb": statistics.median(rss),
                        "harness_threads": rows[-1].get("threads"),
                        "harness_threads_from": rows[-1].get("threads_from"),
                        "harness_threads_started": rows[-1].get("os_threads_started"),
                        "bare_threads_started": bare_rows[-1]["threads_started"]})
    summary = {"threads": threads, "rounds": rounds, "files": results}
    per_backend: dict[str, list[dict]] = {}
    for r in results:  # a backend's own library (torch under ExecuTorch's runtime) outweighs any model
        per_backend.setdefault(r["backend"], []).append(r)
    follows = {}
    for b, rs in per_backend.items():
        small, large = min(rs, key=lambda r: r["size_mb"]), max(rs, key=lambda r: r["size_mb"])
        if large["size_mb"] > small["size_mb"]:
            follows[b] = small["peak_rss_mb"] < large["peak_rss_mb"]
    if follows:
        summary["memory_follows_size"] = all(follows.values())
        summary["memory_follows_size_per_backend"] = follows
    return summary


def main(files: Annotated[list[Path], typer.Argument(help=".onnx, .tflite or .pte files (e.g. a student and its "
                                                          "teacher).")],
         rounds: Annotated[int, typer.Option(help="Alternating harness / bare measurements.")] = 3,
         threads: Annotated[int | None, typer.Option(help="CPU threads for both (default: the usable cores).")]
         = None,
         seconds: Annotated[float, typer.Option(help="Minimum timed seconds per measurement.")] = 1.0,
         json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None) -> None:
    """Print harness vs bare-backend latency at the same thread count, and the memory ordering."""
    s = check(files, rounds, threads, seconds)
    for r in s["files"]:
        typer.echo(f"{Path(r['file']).name} [{r['backend']}, {s['threads']} threads; harness read back "
                   f"{r['harness_threads']} ({r['harness_threads_from']}), started {r['harness_threads_started']} "
                   f"OS threads, bare started {r['bare_threads_started']}]: harness p50 {r['harness_p50_ms']:.4f} ms, "
                   f"bare p50 {r['bare_p50_ms']:.4f} ms -> ratio {r['ratio']:.3f} "
                   f"({'within' if r['within_10pct'] else 'NOT within'} 10%); peak RSS {r['peak_rss_mb']:.0f} MB "
                   f"for a {r['size_mb']:.1f} MB file")
    if "memory_follows_size" in s:
        typer.echo(f"peak memory grows with model size (per backend): {s['memory_follows_size']} "
                   f"({', '.join(f'{b}: {ok}' for b, ok in s['memory_follows_size_per_backend'].items())})")
    if json_out:
        json_out.write_text(json.dumps(s, indent=2))


if __name__ == "__main__":
    typer.run(main)
