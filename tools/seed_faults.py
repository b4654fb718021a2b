"""Seeded faults for ``edgekit diff`` (issue 32, Done-when 1): files that each carry one fault put in on purpose,
and how often diff names the faulty layer first, with its seconds per file.

    python tools/seed_faults.py CHECKPOINT.pt --out /tmp/faults [--formats onnx,tflite,openvino,executorch,web]
        [--imgsz 224]   (the files at another size than the checkpoint's, as ``edgekit export --imgsz``)

The faults (each in one layer, chosen at a fraction of the depth among the 3x3 convolutions):
- ``scaled``: the layer's weights times 4 (in the PyTorch model, then exported: ONNX, TFLite, OpenVINO, ExecuTorch,
  web bundles), at 20%, 50% and 80% of the depth;
- ``transposed``: the layer's kernel transposed (kh <-> kw, a layout mix-up; the same formats), at 50%;
- ``int8-scale``: one weight's dequantization scale times 4 in the INT8 ONNX file, at 8 depths from 5% to 95%;
- ``fp16-overflow`` (``--fp16``, not counted: no runtime here keeps an FP16 intermediate): in the FP16 ONNX file
  one conv computes 2^k times its value and a multiplication by 2^-k follows, 2^k the largest power of 2 that keeps
  its weights below 30000. On a GPU its outputs above 65504 / 2^k overflow; onnxruntime's CPU provider has no
  FP16 Conv, runs it in f32 between inserted casts and drops the cast pair between Conv and Mul, so nothing
  overflows (measured: the layer stays at 40 dB, as without the fault); OpenVINO and LiteRT compute FP16 files in
  f32 here.

Each file is diffed against the ORIGINAL checkpoint; diff is right when the row it names is the faulty module, one
of its submodules, or its parent (a conv fused with its norm is reported as the ConvNormAct holding both).
Writes ``faults.json`` (one record per file) and prints the summary with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

SCALE = 4.0
FP16_ROOM = 30000.0  # the gained weights stay below this (FP16 max: 65504)


def _pick(state: dict, fractions=(0.2, 0.5, 0.8)) -> list[str]:
    keys = [k for k, v in state.items() if k.startswith("backbone.") and k.endswith(".weight") and v.ndim == 4
            and v.shape[-1] == 3 and v.shape[-2] == 3]
    return [keys[min(len(keys) - 1, int(f * len(keys)))] for f in fractions]


def _variant(src: Path, dst: Path, key: str, kind: str) -> Path:
    import torch

    from edgekit.train.checkpoint import save_checkpoint

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    w = ckpt["model_state"][key]
    ckpt["model_state"][key] = w * SCALE if kind == "scaled" else w.transpose(-1, -2).contiguous()
    return save_checkpoint(dst, ckpt)


def _export(ckpt: Path, out: Path, formats: list[str], **kw) -> Path:
    from edgekit.export.exporter import export_checkpoint

    export_checkpoint(ckpt, targets=formats, out_dir=out, verify=False, golden=True, verbose=False, strict=False,
                      **kw)
    return out


def _int8_scale(src: Path, dst: Path, module: str) -> None:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    inits = {i.name: i for i in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear"
                and n.input[0] == f"model.{module}.weight_quantized")  # not the bias's (weight_bias_quantized)
    scale = inits[node.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(SCALE), scale.name))
    onnx.save(proto, str(dst))


def _fp16_overflow(src: Path, dst: Path, module: str) -> None:
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(src))
    inits = {i.name: i for i in proto.graph.initializer}
    nodes = list(proto.graph.node)
    k, conv = next((k, n) for k, n in enumerate(nodes) if n.op_type == "Conv" and n.input[1].startswith(
        f"model.{module}.weight"))
    largest = max(float(np.abs(numpy_helper.to_array(inits[n]).astype(np.float32)).max()) for n in conv.input[1:])
    factor = 2.0 ** np.floor(np.log2(FP16_ROOM / largest))  # the largest power of 2 that keeps the weights finite
    for name in conv.input[1:]:
        arr = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array((arr.astype(np.float32) * factor).astype(arr.dtype), name))
    out = conv.output[0]
    conv.output[0] = f"{out}_gained"
    gain = numpy_helper.from_array(np.array(1 / factor, np.float16), f"{out}_ungain")
    proto.graph.initializer.append(gain)
    mul = helper.make_node("Mul", [conv.output[0], gain.name], [out], name=f"{conv.name}_ungain")
    mul.metadata_props.extend(conv.metadata_props)  # the same module: its output is read after the Mul
    proto.graph.node.insert(k + 1, mul)
    onnx.save(proto, str(dst))


def _right(first: dict | None, module: str) -> bool:
    if first is None:
        return False
    parent = module.rsplit(".", 1)[0]
    return any(n in (module, parent) or n.startswith(module + ".") for n in [first["layer"], *first["also"]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--formats", default="onnx,tflite,openvino")
    ap.add_argument("--fp16", action="store_true", help="also the FP16 overflow files (see above: not counted)")
    ap.add_argument("--imgsz", type=int, help="export the files at this size (default: the checkpoint's)")
    args = ap.parse_args()
    import torch

    from edgekit.export.diff import diff

    formats = args.formats.split(",")
    suffix = {"onnx": "model.onnx", "tflite": "model.tflite", "openvino": "model.xml", "executorch": "model.pte",
              "web": "model.web"}
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)["model_state"]
    keys = _pick(state)
    edits = _pick(state, (0.05, 0.18, 0.31, 0.44, 0.57, 0.70, 0.83, 0.95))
    args.out.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, str, Path]] = []  # (fault, module, file)
    for kind in ("scaled", "transposed"):
        for key in keys if kind == "scaled" else keys[1:2]:
            folder = args.out / f"{kind}-{key}"
            if not (folder / "done").exists():
                ckpt = _variant(args.ckpt, folder.with_suffix(".pt"), key, kind)
                _export(ckpt, folder, formats, imgsz=args.imgsz)
                (folder / "done").write_text("")
            cases += [(kind, key.rsplit(".", 1)[0], folder / suffix[f]) for f in formats
                      if (folder / suffix[f]).exists()]
    if "onnx" in formats:
        base = args.out / "original"
        if not (base / "done").exists():
            _export(args.ckpt, base, ["onnx"], int8=True, fp16=args.fp16, calib_images=64, imgsz=args.imgsz)
            (base / "done").write_text("")
        kinds = [("int8-scale", "model.int8.onnx", _int8_scale)]
        kinds += [("fp16-overflow", "model.fp16.onnx", _fp16_overflow)] if args.fp16 else []
        for key in edits:
            module = key.rsplit(".", 1)[0]
            for kind, src, fn in kinds:
                path = base / src if (base / src).exists() else base / f"{src}.failed"
                dst = args.out / f"{kind}-{module}.onnx"
                fn(path, dst, module)
                cases.append((kind, module, dst))
    records = []
    for kind, module, path in cases:
        t0 = time.perf_counter()
        report = diff(path, against=args.ckpt, out_dir=path.parent / f"{path.name}.diff")
        seconds = time.perf_counter() - t0
        first = report["first_diverging"]
        records.append({"fault": kind, "module": module, "file": str(path), "named": first and first["layer"],
                        "also": first and first["also"], "right": _right(first, module), "seconds": round(seconds, 1),
                        "load_average": os.getloadavg()[0]})
        print(f"{'OK  ' if records[-1]['right'] else 'MISS'} {kind:14s} {path.suffix:7s} {module:45s} -> "
              f"{records[-1]['named']}  ({seconds:.1f}s, load {records[-1]['load_average']:.1f})", flush=True)
    counted = [r for r in records if r["fault"] != "fp16-overflow"]
    right = sum(r["right"] for r in counted)
    secs = [r["seconds"] for r in records]
    summary = {"files": len(counted), "named_first": right, "share": right / max(len(counted), 1),
               "seconds_mean": float(np.mean(secs)), "seconds_max": float(np.max(secs)),
               "load_average_range": [min(r["load_average"] for r in records),
                                      max(r["load_average"] for r in records)],
               "cpus": os.cpu_count()}
    (args.out / "faults.json").write_text(json.dumps({"summary": summary, "records": records}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
