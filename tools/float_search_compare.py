"""The INT8 float-layer search by block against by layer on one model: attempts, seconds, float layers, sizes.

    python tools/float_search_compare.py CKPT.pt --target onnx [--imgsz 224] --out DIR
    python tools/float_search_compare.py --arch mobileone_s2 --target onnx --out DIR   # a coverage stand-in

``--arch`` builds the coverage matrix's stand-in (random timm weights, BatchNorm statistics and a probe head on
scikit-image's photos, fused when MobileOne-style: recipes/coverage.py). Each mode is one ``export_checkpoint``
with ``Int8(float_layers="auto")`` (``edgekit export --int8 --max-drop 1``), in this one process, block first.
Prints one JSON line per mode and writes ``DIR/compare.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def stand_in(arch: str, work: Path, imgsz: int) -> Path:
    from edgekit.compress.reparam import fuse_checkpoint, has_reparam_blocks
    from edgekit.recipes.bench import random_checkpoint
    from edgekit.recipes.photos import photo_folder
    from edgekit.recipes.probe import probe_head
    from edgekit.train.trained import load_trained

    ckpt, _ = random_checkpoint(arch, work / "random", imgsz, str(photo_folder(work / "photos")))
    ckpt = probe_head(ckpt, work / "probe")
    if has_reparam_blocks(load_trained(ckpt).model):
        ckpt = fuse_checkpoint(ckpt, work / "fused", n_images=16).path
    return ckpt


def main() -> None:
    from edgekit import formats
    from edgekit.export.exporter import export_checkpoint
    from edgekit.export.int8 import Int8
    from edgekit.train.trained import load_trained

    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt", nargs="?")
    ap.add_argument("--arch")
    ap.add_argument("--target", default="onnx")
    ap.add_argument("--imgsz", type=int)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--val", type=int)
    ap.add_argument("--modes", default="block,layer")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    ckpt = Path(a.ckpt) if a.ckpt else stand_in(a.arch, out / "model", a.imgsz or 224)
    results = []
    for mode in a.modes.split(","):
        trained = load_trained(ckpt)
        t0 = time.perf_counter()
        report = export_checkpoint(trained, a.target.split(","), out / mode, imgsz=a.imgsz, val_images=a.val,
                                   int8=Int8(float_layers="auto", calib_images=a.calib, search_by=mode),
                                   dynamic_batch=True, verbose=False, strict=False)
        wall = time.perf_counter() - t0
        s = report.int8_search
        entries = {e["file"]: e for e in report.parity}
        for target in a.target.split(","):
            fmt = formats.FORMATS[target]
            fp32, int8 = entries.get(fmt.file("fp32")), entries.get(fmt.file("int8"))
            row = {"model": a.arch or str(ckpt), "target": target, "mode": mode, "attempts": len(s["trail"][target]),
                   "search_seconds": s["seconds"][target], "export_seconds": round(wall, 1),
                   "passed": bool(int8 and int8["passed"]), "float_layers": s["float_layers"].get(target),
                   "search": s["search"].get(target), "failed": s["failed"].get(target),
                   "ratio": round(fp32["size_bytes"] / int8["size_bytes"], 2) if fp32 and int8 else None,
                   "trail": [(t["float_layers"] if len(t["float_layers"]) < 6 else len(t["float_layers"]),
                              t["passed"], t["drop_points"], t["seconds"]) for t in s["trail"][target]]}
            print(json.dumps(row), flush=True)
            results.append(row)
    (out / "compare.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
