"""Make the files a user would make by hand from edgekit's FP32 ONNX (and FP32 .tflite), each with its
tool's documented default recipe, so that ``edgekit bench`` can measure edgekit's own files against them:

- ``ov.xml``: OpenVINO IR, ``openvino.convert_model(model.onnx)`` + ``save_model`` (FP32 weights);
- ``nncf.int8.xml``: NNCF INT8, ``nncf.quantize`` on that IR with its defaults (``subset_size`` = the images);
- ``ort.int8.onnx``: onnxruntime ``quant_pre_process`` + ``quantize_static`` with its defaults (QDQ);
- ``aeq.int8.tflite``: ai-edge-quantizer's ``static_wi8_ai8`` recipe on the FP32 .tflite (``--tflite``).

Calibration: ``--calib`` training images of ``--data`` (the model's own data by default, as its card names it),
preprocessed by the edgekit runtime from the card. Each file gets the source's card with its own precision
and how it was made, so bench preprocesses it the same way; none of them has a parity record, so the
recommendation never picks them.

    python tools/handmade.py runs/export/x/model.onnx --tflite runs/export/x/model.tflite --out handmade/x
    python tools/handmade.py --compare runs/bench/ov/bench.json [more bench.json: the median of each file]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def calibration(onnx_path: Path, data: str | None, n: int, layout: str = "NCHW") -> np.ndarray:
    """``n`` preprocessed training images of ``data`` (default: the data the card names), as the runtime does."""
    from edgekit.config import DataConfig
    from edgekit.runtime import load
    from edgekit.train.data import load_data

    model = load(onnx_path, device="cpu")
    card = model.card
    source = data or card.provenance.get("data") or "digits"
    bundle = load_data(DataConfig(source=source, imgsz=card.input.size[0]), [])
    ids = np.random.default_rng(0).choice(len(bundle.train), min(n, len(bundle.train)), replace=False)
    images = [np.asarray(bundle.train.load(int(i)).convert("RGB")) for i in sorted(ids)]
    x = model.preprocess(images, color="RGB")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


def label(src: Path, dst: Path, precision: str, fmt: str, how: str) -> None:
    """Give ``dst`` the source's card with its own precision and recipe (``provenance.handmade``), embedded as
    edgekit embeds cards, so bench preprocesses it as the source: the quantizers copy the source's metadata
    (an FP32 card) into their output, which would otherwise say FP32."""
    import importlib

    from edgekit.runtime.metadata import read_card

    card = read_card(src).derive(precision=precision, format=fmt, handmade=how)
    for key in ("gate", "quantization"):  # the source's verdict and record are not this file's
        card.provenance.pop(key, None)
    importlib.import_module(f"edgekit.export.{fmt}").rewrite_card(dst, card)


def make(onnx_path: Path, out: Path, tflite: Path | None, data: str | None, n: int) -> list[Path]:
    import openvino as ov

    out.mkdir(parents=True, exist_ok=True)
    made = []
    x = calibration(onnx_path, data, n)
    batch = 1  # edgekit's files are exported at batch 1 unless asked otherwise; calibrate as they run
    t0 = time.perf_counter()
    ir = ov.convert_model(str(onnx_path))
    ov.save_model(ir, str(out / "ov.xml"), compress_to_fp16=False)
    label(onnx_path, out / "ov.xml", "fp32", "openvino", "openvino.convert_model(onnx) + save_model(fp32)")
    made.append(out / "ov.xml")
    print(f"ov.xml ({time.perf_counter() - t0:.1f}s)", flush=True)

    import nncf

    t0 = time.perf_counter()
    items = [x[i: i + batch] for i in range(0, len(x), batch)]
    q = nncf.quantize(ov.Core().read_model(str(out / "ov.xml")), nncf.Dataset(items), subset_size=len(items))
    ov.save_model(q, str(out / "nncf.int8.xml"), compress_to_fp16=False)
    label(onnx_path, out / "nncf.int8.xml", "int8", "openvino", f"nncf.quantize defaults, {len(items)} images")
    made.append(out / "nncf.int8.xml")
    print(f"nncf.int8.xml ({time.perf_counter() - t0:.1f}s)", flush=True)

    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.it = iter([{name: item} for item in items])

        def get_next(self):
            return next(self.it, None)

    import onnxruntime as ort

    t0 = time.perf_counter()
    name = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    pre = out / ".pre.onnx"
    quant_pre_process(str(onnx_path), str(pre))
    quantize_static(str(pre), str(out / "ort.int8.onnx"), Reader(name))
    pre.unlink()
    label(onnx_path, out / "ort.int8.onnx", "int8", "onnx", "quant_pre_process + quantize_static defaults (QDQ)")
    made.append(out / "ort.int8.onnx")
    print(f"ort.int8.onnx ({time.perf_counter() - t0:.1f}s)", flush=True)

    if tflite is not None:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer, recipe

        t0 = time.perf_counter()
        key = Interpreter(model_path=str(tflite)).get_signature_list()
        signature = next(iter(key))
        input_name = key[signature]["inputs"][0]
        xs = calibration(onnx_path, data, n, layout="NHWC")
        qt = quantizer.Quantizer(str(tflite), recipe.static_wi8_ai8())
        result = qt.calibrate({signature: [{input_name: xs[i: i + 1]} for i in range(len(xs))]})
        qt.quantize(result).export_model(str(out / "aeq.int8.tflite"), overwrite=True)
        label(tflite, out / "aeq.int8.tflite", "int8", "tflite", "ai-edge-quantizer static_wi8_ai8 (min/max)")
        made.append(out / "aeq.int8.tflite")
        print(f"aeq.int8.tflite ({time.perf_counter() - t0:.1f}s)", flush=True)
    return made


def compare(benches: list[Path], handmade_marker: str = "handmade") -> list[str]:
    """Per model and batch: edgekit's fastest file that passed its gates vs the fastest hand-made file (a path
    containing ``handmade_marker``), each the median p50 over the given bench runs."""
    p50: dict[tuple[str, str, int], list[float]] = {}
    info: dict[tuple[str, str, int], dict] = {}
    for bench in benches:
        for r in json.loads(bench.read_text())["rows"]:
            if r.get("p50_ms") is None or r.get("backend") == "torch":
                continue
            key = (r["model"], r["file"], r["batch"])
            p50.setdefault(key, []).append(r["p50_ms"])
            info[key] = r
    from edgekit.benchmarks.recommend import proof

    out = []
    for model, batch in sorted({(m, b) for m, _, b in p50}):
        mine = {f: statistics.median(v) for (m, f, b), v in p50.items() if (m, b) == (model, batch)}
        made = {f: t for f, t in mine.items() if handmade_marker in f}
        ours = {f: t for f, t in mine.items() if handmade_marker not in f and proof(info[(model, f, batch)])[0]}
        if not made or not ours:
            continue
        fo, fm = min(ours, key=ours.get), min(made, key=made.get)
        out.append(f"{model} batch {batch}: edgekit {Path(fo).name} [{info[(model, fo, batch)]['backend']}] "
                   f"{ours[fo]:.3f} ms vs hand-made {Path(fm).name} [{info[(model, fm, batch)]['backend']}] "
                   f"{made[fm]:.3f} ms: x{ours[fo] / made[fm]:.2f} (median of {len(p50[(model, fo, batch)])} runs)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Example: python tools/handmade.py model.onnx --tflite model.tflite --out hm/")
    ap.add_argument("onnx", type=Path, nargs="?", help="edgekit's FP32 .onnx")
    ap.add_argument("--tflite", type=Path, help="edgekit's FP32 .tflite (ai-edge-quantizer INT8 from it)")
    ap.add_argument("--out", type=Path, default=Path("handmade"))
    ap.add_argument("--data", help="calibration data (default: the model's own, as its card names it)")
    ap.add_argument("--calib", type=int, default=256, help="calibration images (edgekit export's default)")
    ap.add_argument("--compare", type=Path, nargs="+", help="bench.json files: edgekit's fastest vs hand-made")
    args = ap.parse_args()
    if args.compare:
        print("\n".join(compare(args.compare)) or "no model has both edgekit and hand-made rows")
        return 0
    if args.onnx is None:
        ap.error("give the FP32 .onnx (or --compare bench.json)")
    for path in make(args.onnx, args.out, args.tflite, args.data, args.calib):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
