"""Benchmark of the benchmark: does ``edgekit bench`` add hidden overhead, and is its memory real?

For each ONNX file: the harness's p50 at batch 1 (a worker process, through ``edgekit.runtime``)
against a bare ``onnxruntime`` loop in its own process (``session.run`` on the same input shape,
same thread count, same warm-up and timing rule), alternated ``rounds`` times; goal: within 10%.
With two files (small, large), the harness's peak RSS must order them the same way their sizes do::

    python tools/harness_check.py student.onnx teacher.onnx
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

BARE = """
import json, sys, time
import numpy as np, onnxruntime as ort
from edgekit.benchmarks.stats import latency_stats, time_calls
path, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
opts = ort.SessionOptions(); opts.intra_op_num_threads = threads; opts.inter_op_num_threads = 1
s = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
shape = [1 if not isinstance(d, int) else d for d in i.shape]
x = {i.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
names = [o.name for o in s.get_outputs()]
print(json.dumps(latency_stats(time_calls(lambda: s.run(names, x), min_seconds=seconds))))
"""


def check(files: list[Path], rounds: int = 3, threads: int = 1, seconds: float = 1.0) -> dict:
    from edgekit.benchmarks.harness import Bench, measure
    from edgekit.runtime.metadata import read_card

    work = Path(tempfile.mkdtemp(prefix="edgekit-harness-check-"))
    results = []
    for f in files:
        card = read_card(f)
        bench = Bench(name=f.name, card=card, files={"ort": f})
        harness, bare, rss = [], [], []
        for _ in range(rounds):
            row = measure(bench, "ort", 1, "cpu", threads, None, work, seconds)
            if "error" in row:
                raise typer.BadParameter(f"{f}: {row['error']}")
            harness.append(row["p50_ms"])
            rss.append(row["peak_rss_mb"])
            out = subprocess.run([sys.executable, "-c", BARE, str(f), str(threads), str(seconds)],
                                 capture_output=True, text=True, check=True)
            bare.append(json.loads(out.stdout.strip().splitlines()[-1])["p50_ms"])
        h, b = statistics.median(harness), statistics.median(bare)
        results.append({"file": str(f), "size_mb": f.stat().st_size / 1e6, "harness_p50_ms": h, "bare_p50_ms": b,
                        "ratio": h / b, "within_10pct": abs(h / b - 1) <= 0.10, "harness_runs_ms": harness,
                        "bare_runs_ms": bare, "peak_rss_mb": statistics.median(rss)})
    summary = {"threads": threads, "rounds": rounds, "files": results}
    if len(results) >= 2:
        by_size = sorted(results, key=lambda r: r["size_mb"])
        summary["memory_follows_size"] = by_size[0]["peak_rss_mb"] < by_size[-1]["peak_rss_mb"]
    return summary


def main(files: Annotated[list[Path], typer.Argument(help="ONNX files (e.g. a student and its teacher).")],
         rounds: Annotated[int, typer.Option(help="Alternating harness / bare measurements.")] = 3,
         threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads for both.")] = 1,
         seconds: Annotated[float, typer.Option(help="Minimum timed seconds per measurement.")] = 1.0) -> None:
    """Print harness vs bare-onnxruntime latency and the memory ordering."""
    s = check(files, rounds, threads, seconds)
    for r in s["files"]:
        typer.echo(f"{Path(r['file']).name}: harness p50 {r['harness_p50_ms']:.4f} ms, bare onnxruntime p50 "
                   f"{r['bare_p50_ms']:.4f} ms -> ratio {r['ratio']:.3f} "
                   f"({'within' if r['within_10pct'] else 'NOT within'} 10%); peak RSS {r['peak_rss_mb']:.0f} MB "
                   f"for a {r['size_mb']:.1f} MB file")
    if "memory_follows_size" in s:
        typer.echo(f"peak memory grows with model size: {s['memory_follows_size']}")


if __name__ == "__main__":
    typer.run(main)
