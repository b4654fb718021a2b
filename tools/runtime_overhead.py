"""Benchmark: what the edgekit runtime adds on top of the bare backend call.

For each model file: the bare call — the least a hand-written app must do with the same file and
the same prepared input tensor: onnxruntime ``session.run``, or TFLite ``set_tensor, invoke,
get_tensor`` plus dequantizing integer outputs (reported without it too, as "invoke only") —
against ``Predictor.run`` on that tensor (checks, chunking, per-head dict), and preprocessing of a
640x480 BGR frame (resize, crop, normalize, layout, quantize). Interleaved, medians::

    python tools/runtime_overhead.py runs/quantize/.../model.int8.tflite model.int8.onnx

Goals (issue 5): overhead <= 5% of the backend call at batch 1; preprocessing <= 0.5 ms.
No torch is imported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer


def _median_us(fn, runs: int) -> float:
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return float(np.median(times) * 1e6)


def measure(path: str | Path, runs: int = 2000, threads: int = 1, rounds: int = 5) -> dict:
    from edgekit.runtime import load
    from edgekit.runtime.backends import OnnxBackend, TFLiteBackend, _quantize

    model = load(path, device="cpu", threads=threads)
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    x = model.preprocess(frame)
    backend = model.backend
    if isinstance(backend, TFLiteBackend):
        interp, index = backend.interp, backend.input_index
        model.run(x)  # the interpreter is sized for this batch now
        ready = _quantize(x, backend.input_dtype, backend.input_quant)
        outs = [(o["index"], *o["quantization"]) for o in backend.outputs]

        def raw():
            interp.set_tensor(index, ready)
            interp.invoke()
            return [interp.get_tensor(i) for i, _, _ in outs]

        def bare():  # what any app must do: integer outputs are useless until dequantized
            interp.set_tensor(index, ready)
            interp.invoke()
            return [(interp.get_tensor(i).astype(np.float32) - z) * s if s else interp.get_tensor(i)
                    for i, s, z in outs]
    elif isinstance(backend, OnnxBackend):
        session, feed, names = backend.session, {backend.input_name: x}, backend.output_names

        def bare():
            return session.run(names, feed)

        raw = bare
    else:
        raise typer.BadParameter(f"{path}: only .onnx and .tflite files are measured here")
    for _ in range(200):
        bare()
        model.run(x)
    raw_us, bare_us, run_us, pre_us = [], [], [], []
    for _ in range(rounds):  # alternate blocks so drift in machine load hits all of them
        raw_us.append(_median_us(raw, runs // rounds))
        bare_us.append(_median_us(bare, runs // rounds))
        run_us.append(_median_us(lambda: model.run(x), runs // rounds))
        pre_us.append(_median_us(lambda: model.preprocess(frame), runs // rounds))
    w, b, r, p = (float(np.median(v)) for v in (raw_us, bare_us, run_us, pre_us))
    return {"file": str(path), "backend": backend.name, "threads": threads, "input": list(x.shape),
            "raw_invoke_us": w, "bare_call_us": b, "predictor_run_us": r, "overhead_us": r - b,
            "overhead_pct": (r - b) / b * 100, "overhead_vs_raw_pct": (r - w) / w * 100,
            "preprocess_640x480_us": p, "goals": {"overhead_pct": 5.0, "preprocess_us": 500.0}}


def main(models: Annotated[list[Path], typer.Argument(help=".onnx / .tflite files")],
         runs: Annotated[int, typer.Option(help="Calls per measurement.")] = 2000,
         threads: Annotated[int, typer.Option(help="Backend threads.")] = 1,
         out: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None) -> None:
    """Print the runtime's overhead over the bare backend call, and the preprocessing time."""
    results = [measure(m, runs, threads) for m in models]
    for r in results:
        typer.echo(f"{Path(r['file']).name} ({r['backend']}, {r['threads']} thread): bare {r['bare_call_us']:.1f} us "
                   f"(invoke only {r['raw_invoke_us']:.1f}), Predictor.run {r['predictor_run_us']:.1f} us -> "
                   f"overhead {r['overhead_us']:.1f} us = {r['overhead_pct']:.1f}% (goal <= 5%; "
                   f"{r['overhead_vs_raw_pct']:.1f}% over invoke only); "
                   f"preprocess 640x480 {r['preprocess_640x480_us']:.0f} us (goal <= 500)")
    if out:
        from edgekit.atomic import write_json

        write_json(out, results)
        typer.echo(json.dumps({"written": str(out)}))


if __name__ == "__main__":
    typer.run(main)
