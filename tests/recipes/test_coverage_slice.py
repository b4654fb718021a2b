"""A small slice of the coverage matrix (docs/coverage.md) in the suite: three op families —
convolutions (ResNet), attention (a dynamic-size ViT, whose position embedding the exporter fixes
at the export size), hard-swish + squeeze-excite (LCNet) — through every target at a small input
size, on the matrix's own photo stand-in data, with each cell's parity, SQNR, latency and size
recorded."""

import pytest

from edgekit.recipes.coverage import CELLS, GATES, render, run_arch

SLICE = [("test_resnet", 32), ("test_vit", 32), ("lcnet_035", 32)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    pytest.importorskip("skimage")
    from edgekit.recipes.photos import photo_folder

    return photo_folder(tmp_path_factory.mktemp("slice") / "photos", train_per_class=2, val_per_class=1, size=40)


@pytest.mark.parametrize("arch, size", SLICE)
def test_every_target_for_an_op_family(arch, size, photos, tmp_path):
    row = run_arch(arch, tmp_path, imgsz=size, calib=8, val=16, min_seconds=0.05, data=str(photos))
    cells = row["cells"]
    assert set(cells) == {c[0] for c in CELLS} and row["data"] == "photos"
    floors = {"int8_input_db", "fp16_db", "fp32_rel", "tflite_pt2e_db",
              *(["bf16_db"] if "openvino fp32" in cells else [])}
    assert set(row["floors"]) == floors  # the stand-in's own floors (bf16: OpenVINO's FP32 IR on bf16 CPUs)
    for column in ("onnx fp32", "tflite fp32", "executorch fp32"):
        cell = cells[column]
        assert cell["passed"], (column, cell)
        assert cell["max_rel"] <= 1e-4 and cell["p50_ms"] > 0 and cell["size_mb"] > 0
    assert cells["coreml"]["passed"] and cells["coreml"]["latency"] == "n/a: needs macOS"
    for column, cell in cells.items():
        precision = next(c[2] for c in CELLS if c[0] == column)
        if precision not in ("fp16", "int8") or column == "coreml":  # CoreML on Linux: structure only (above)
            continue
        # every low-precision file is made and loads; its SQNR is measured, not assumed, and judged by the gate
        assert cell.get("sqnr_db") is not None and cell["sqnr_db"] < 200, (column, cell)
        floor = GATES[precision][1]
        assert cell["passed"] == (cell["sqnr_db"] >= floor), (column, cell)
        if not cell["passed"]:  # a fail says by how much, and whose it is (exporter, runtime, or the stand-in)
            assert f"misses the {precision} gate ({floor:g})" in cell["reason"] or "floor" in cell["reason"]
            assert cell["owner"] in ("numeric", "stand-in") or cell["owner"].startswith("upstream"), (column, cell)
    text = render({"machine": "test", "packages": {}, "imgsz": size, "threads": 2, "rows": [row],
                   "columns": [c[0] for c in CELLS], "gates": {}})
    assert f"| {arch} |" in text and "cells pass" in text and "crops of the 20 photos" in text
