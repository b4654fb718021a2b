"""Adding columns to an existing coverage matrix (``--only openvino``) keeps the other cells and the floors,
and the report gives a pass rate per column; an OpenVINO FP32 cell is judged at the precision that ran and,
forced to f32, at FP32."""

import json

from edgekit.recipes import coverage


def _old_row() -> dict:
    cells = {c[0]: {"passed": True, "p50_ms": 1.0, "sqnr_db": 40.0, "max_rel": 1e-6, "cosine": 1.0}
             for c in coverage.CELLS if c[1] != "openvino"}
    cells["onnx int8"] = {"passed": False, "owner": "numeric", "reason": "SQNR 9.7 dB misses the int8 gate (10)"}
    return {"arch": "a", "imgsz": 32, "data": "photos", "cells": cells, "floors": {"fp32_rel": 1e-7}}


def test_only_runs_the_new_columns_and_merges_them(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "row.json").write_text(json.dumps(_old_row()))
    assert coverage._stale(_old_row(), "photos", ["openvino"]) and not coverage._stale(_old_row(), "photos", ["onnx"])
    seen = {}

    def fake_run_arch(arch, work, imgsz, data, only=None):
        seen["only"] = only
        return {"arch": arch, "cells": {"openvino fp32": {"passed": True, "p50_ms": 0.5, "sqnr_db": 38.0,
                                                          "precision_ran": "bf16"},
                                        "openvino int8": {"passed": False, "owner": "numeric", "reason": "x"}}}

    monkeypatch.setattr(coverage, "run_arch", fake_run_arch)
    assert coverage.main(["--one", "a", "--work", str(tmp_path), "--only", "openvino", "--data", "photos"]) == 0
    row = json.loads((tmp_path / "a" / "row.json").read_text())
    assert seen["only"] == ["openvino"] and row["floors"] == {"fp32_rel": 1e-7}
    assert set(row["cells"]) == {c[0] for c in coverage.CELLS} and not row["cells"]["onnx int8"]["passed"]
    text = coverage.render({"machine": "m", "packages": {}, "imgsz": 32, "threads": 2, "rows": [row],
                            "columns": [c[0] for c in coverage.CELLS], "gates": {}})
    assert "| **pass rate** | | 1/1 | 1/1 | 0/1 | 1/1 | 1/1 | 1/1 | 1/1 | 1/1 | 1/1 | 1/1 | 0/1 |" in text
    assert "0.50 ms, bf16 38 dB" in text


def test_openvino_fp32_cell_is_judged_at_bf16_and_at_fp32_with_f32_layers(tmp_path):
    heads = {"class": {"rel": 8e-3, "cosine": 0.9999, "sqnr_db": 38.0, "top1_agreement": 1.0}}
    entry = {"size_bytes": 1000, "export_seconds": 1.0, "heads": heads, "precision_ran": "bf16",
             "as_stored": {"max_rel": 2e-6, "precision_ran": "fp32", "heads": {"class": {"rel": 2e-6}}}}
    cell = coverage._cell(tmp_path / "missing.xml", entry, "fp32", 0.01)
    assert cell["passed"] and cell["precision_ran"] == "bf16" and cell["stored_rel"] == 2e-6
    entry["as_stored"]["heads"]["class"]["rel"] = 3e-4  # the conversion itself is off: the FP32 gate catches it
    cell = coverage._cell(tmp_path / "missing.xml", entry, "fp32", 0.01)
    assert not cell["passed"] and "with the float layers forced to f32 misses the fp32 gate" in cell["reason"]
    entry["heads"]["class"]["sqnr_db"] = 20.0
    entry["as_stored"]["heads"]["class"]["rel"] = 2e-6
    cell = coverage._cell(tmp_path / "missing.xml", entry, "fp32", 0.01)
    assert not cell["passed"] and cell["reason"] == "SQNR 20 dB misses the bf16 gate (25)"
