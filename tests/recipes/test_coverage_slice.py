"""A small slice of the coverage matrix (docs/coverage.md) in the suite: three op families —
convolutions (ResNet), attention with batch-folding reshapes (MobileViT), hard-swish +
squeeze-excite (MobileNetV3) — through every target at a small input size, with each cell's
parity, SQNR, latency and size recorded."""

import pytest

from edgekit.recipes.coverage import CELLS, render, run_arch

# MobileViT's TFLite and ExecuTorch conversions take minutes on 2 cores: it runs with -m slow (its
# batch-folding reshape is covered fast by tests/runtime/test_fixed_batch.py)
SLICE = [("test_resnet", 32), pytest.param("mobilevit_xxs", 64, marks=pytest.mark.slow),
         ("mobilenetv3_small_050", 32)]


@pytest.mark.parametrize("arch, size", SLICE)
def test_every_target_for_an_op_family(arch, size, tmp_path):
    row = run_arch(arch, tmp_path, imgsz=size, calib=8, val=16, min_seconds=0.05)
    cells = row["cells"]
    assert set(cells) == {c[0] for c in CELLS}
    assert set(row["floors"]) == {"int8_input_db", "fp16_db", "tflite_pt2e_db"}  # the stand-in's own floors
    for column in ("onnx fp32", "tflite fp32"):
        cell = cells[column]
        assert cell["passed"], (column, cell)
        assert cell["max_rel"] <= 1e-4 and cell["p50_ms"] > 0 and cell["size_mb"] > 0
    assert cells["coreml"]["passed"] and cells["coreml"]["latency"] == "n/a: needs macOS"
    for column, cell in cells.items():  # every cell is a pass with numbers or a fail with a reason
        assert cell["passed"] or cell.get("reason"), (column, cell)
        if "int8" in column and "sqnr_db" in cell:
            assert cell["sqnr_db"] is None or cell["sqnr_db"] < 200
    text = render({"machine": "test", "packages": {}, "imgsz": size, "threads": 2, "rows": [row],
                   "columns": [c[0] for c in CELLS], "gates": {}})
    assert f"| {arch} |" in text and "cells pass" in text
