"""Which way into OpenVINO converts more architectures: ``openvino.convert_model`` on the PyTorch module
(TorchScript tracing) or on edgekit's ONNX file (the dynamo exporter)?

For each timm architecture (random weights, seed 0, edgekit heads, 1 x 3 x SIZE x SIZE) both paths are
tried; a path passes when it converts, compiles on the CPU with ``INFERENCE_PRECISION_HINT=f32`` and
reproduces PyTorch within 1e-4 relative error on one random input. Prints one line per architecture and
a JSON summary (``--json PATH`` writes it).

    python tools/openvino_paths.py --archs mobileone_s0,resnet18 --imgsz 224
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ARCHS = ("mobileone_s0", "resnet18", "mobilenetv3_small_100", "mobilevit_xxs", "mobilevitv2_050", "efficientvit_m0",
         "fastvit_t8", "levit_128s", "deit_tiny_patch16_224", "edgenext_xx_small", "mobilenetv4_hybrid_medium",
         "convnext_atto")


def _rel(ref, out) -> float:
    import numpy as np

    return float(np.abs(ref - out).max() / max(np.abs(ref).max(), 1e-12))


def one(arch: str, imgsz: int, work: Path) -> dict:
    import openvino as ov
    import torch

    from edgekit.card import HeadSpec, InputSpec, ModelCard
    from edgekit.export.onnx import export_onnx
    from edgekit.train.models import build_student
    from edgekit.train.trained import HeadsAsTuple

    torch.manual_seed(0)
    model = build_student(arch, [HeadSpec("class", "classification", [str(i) for i in range(10)]),
                                 HeadSpec("age", "regression")]).eval()
    wrapped = HeadsAsTuple(model, ["class", "age"]).eval()
    x = torch.rand(1, 3, imgsz, imgsz)
    with torch.no_grad():
        ref = [o.numpy() for o in wrapped(x)]
    core = ov.Core()
    row: dict = {"arch": arch}

    def check(make) -> dict:
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ov_model = make()
            compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            outs = compiled(x.numpy())
            got = [outs[compiled.output(i)] for i in range(len(ref))]
            rel = max(_rel(r, g.reshape(r.shape)) for r, g in zip(ref, got, strict=True))
            return {"passed": rel <= 1e-4, "max_rel": rel, "seconds": round(time.perf_counter() - t0, 1)}
        except Exception as exc:  # noqa: BLE001 - a converter error is the measurement
            line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            return {"passed": False, "error": f"{type(exc).__name__}: {line}",
                    "seconds": round(time.perf_counter() - t0, 1),
                    "where": traceback.extract_tb(exc.__traceback__)[-1].name}

    row["module"] = check(lambda: ov.convert_model(wrapped, example_input=x, input=[list(x.shape)]))
    card = ModelCard(name=arch, arch=arch, heads=model.head_specs,
                     input=InputSpec([imgsz, imgsz], [0.5] * 3, [0.5] * 3))
    onnx_path = work / f"{arch}.onnx"
    row["onnx"] = check(lambda: ov.convert_model(str(export_onnx(wrapped, card, onnx_path, x))))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--imgsz", type=int, default=224)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in [a for a in args.archs.split(",") if a]:
            row = one(arch, args.imgsz, Path(tmp))
            rows.append(row)

            def say(r: dict) -> str:
                return (f"ok (rel {r['max_rel']:.1e}, {r['seconds']}s)" if r["passed"] else
                        f"FAIL {r.get('error') or format(r['max_rel'], '.1e')}")
            print(f"{arch}: module {say(row['module'])} | onnx {say(row['onnx'])}", flush=True)
    summary = {"imgsz": args.imgsz, "module_passed": sum(r["module"]["passed"] for r in rows),
               "onnx_passed": sum(r["onnx"]["passed"] for r in rows), "archs": len(rows), "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
