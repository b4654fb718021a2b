"""A small slice of the coverage matrix (docs/coverage.md) in the suite: three op families —
convolutions (ResNet), attention (a dynamic-size ViT, whose position embedding the exporter fixes
at the export size), hard-swish + squeeze-excite (LCNet) — through every target at a small input
size, on the matrix's own photo stand-in data, with each cell's parity, SQNR, latency and size
recorded."""

import pytest

from edgekit.recipes.coverage import CELLS, GATES, _cell, render, run_arch, summarize

SLICE = [("test_resnet", 32), ("test_vit", 32), ("lcnet_035", 32)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    pytest.importorskip("skimage")
    from edgekit.recipes.photos import photo_folder

    return photo_folder(tmp_path_factory.mktemp("slice") / "photos", train_per_class=2, val_per_class=1, size=40)


# The gates as the README and docs/coverage.md write them: the code's table must say the same
WRITTEN = {"fp32": ("rel", 1e-4), "fp16": ("sqnr_db", 30.0), "bf16": ("sqnr_db", 25.0), "int8": ("sqnr_db", 10.0)}


def test_the_matrix_judges_by_the_written_gates():
    assert GATES == WRITTEN


def _entry(cell, precision):
    """The parity entry a cell was made from (what export's parity.json held), rebuilt from the cell."""
    stats = {"rel": cell["max_rel"], "cosine": cell["cosine"], "sqnr_db": cell["sqnr_db"],
             "top1_agreement": cell.get("top1_agreement")}
    return {"size_bytes": 1000, "export_seconds": 1.0, "heads": {"class": stats}, "precision_ran": precision}


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
        assert cell["verdict"] == "passed" and cell["passed"], (column, cell)
        assert cell["max_rel"] <= 1e-4 and cell["p50_ms"] > 0 and cell["size_mb"] > 0
    for column in ("onnx fp16", "tflite fp16"):  # FP16 keeps 11 bits: every op family here stays above 30 dB
        assert cells[column]["verdict"] == "passed" and cells[column]["sqnr_db"] >= 30.0, (column, cells[column])
    coreml = cells["coreml"]  # CoreML on Linux: made and structure-checked, not run, so never a pass
    assert coreml["verdict"] == "not_run" and coreml["passed"] is False and coreml["structure"] == "ok"
    assert coreml["latency"] == "n/a: needs macOS" and "macOS" in coreml["not_run"]
    for column, cell in cells.items():
        precision = next(c[2] for c in CELLS if c[0] == column)
        if precision not in ("fp16", "int8") or column == "coreml":
            continue
        # every low-precision file is made and loads; its SQNR is measured, not assumed, and judged by the gate
        # as written: the verdict follows the number on the real cell, and on the same cell moved to either
        # side of the written floor
        floor = WRITTEN[precision][1]
        assert cell.get("sqnr_db") is not None and cell["sqnr_db"] < 200, (column, cell)
        assert cell["passed"] == (cell["sqnr_db"] >= floor), (column, cell)
        for sqnr, passes in ((floor - 0.05, False), (floor + 0.05, True)):
            moved = _cell(tmp_path / "missing", _entry({**cell, "sqnr_db": sqnr}, precision), precision, 0.01)
            assert moved["verdict"] == ("passed" if passes else "failed"), (column, sqnr, moved)
        if not cell["passed"]:  # a fail says by how much, and whose it is (exporter, runtime, or the stand-in)
            assert f"misses the {precision} gate ({floor:g})" in cell["reason"] or "floor" in cell["reason"]
            assert cell["owner"] in ("numeric", "stand-in") or cell["owner"].startswith("upstream"), (column, cell)
    if arch == "test_resnet":  # one cell measured again outside edgekit: plain onnxruntime against PyTorch
        _remeasure(tmp_path / arch, cells["onnx fp16"]["sqnr_db"])
    result = {"machine": "test", "packages": {}, "imgsz": size, "threads": 2, "rows": [row],
              "columns": [c[0] for c in CELLS], "gates": {}}
    text = render(result)
    ran = sum(c["verdict"] in ("passed", "failed") for c in cells.values())
    passed = sum(c["verdict"] == "passed" for c in cells.values())
    assert f"**{passed} of {ran} cells that ran pass" in text and "1 cells not run here" in text
    assert summarize(result)["not_run"] == 1 and f"| {arch} |" in text and "crops of the 20 photos" in text


def _remeasure(folder, reported_db):
    """The ONNX FP16 cell's SQNR, computed here from the file in onnxruntime and the checkpoint in PyTorch."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from edgekit.train.trained import load_trained

    trained = load_trained(folder / "probe" / "model.pt")
    x, _ = trained.images("val", limit=16)
    with torch.no_grad():
        ref = trained.model(torch.from_numpy(x))["class"].numpy().astype(np.float64)
    sess = ort.InferenceSession(str(folder / "files" / "model.fp16.onnx"))
    feed = x.astype(np.float16) if sess.get_inputs()[0].type == "tensor(float16)" else x
    name = sess.get_inputs()[0].name  # the matrix exports a batch of 1
    out = np.concatenate([np.asarray(sess.run(None, {name: feed[i: i + 1]})[0], np.float64) for i in range(len(x))])
    db = 10 * np.log10((ref ** 2).sum() / ((out - ref) ** 2).sum())
    assert abs(db - reported_db) < 0.05, (db, reported_db)
