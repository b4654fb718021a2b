"""Bench rows of files edgekit did not write: latency on synthesized inputs, load time, model memory,
residency, INT8 placement and the assumptions, in the rows and in the report."""

from edgekit.benchmarks.harness import Bench, measure
from edgekit.benchmarks.report import cell, ran_notes, write_reports


def test_rows_say_what_ran(foreign_models, tmp_path):
    raw = Bench(name="two", card=None, files={"ort": foreign_models / "two.onnx"}, precisions={"ort": "unknown"},
                assume={"shapes": {"image": [1, 3, 16, 16]}}, raw=True)
    row = measure(raw, "ort", 4, "cpu", 1, None, tmp_path, 0.05)
    assert "error" not in row, row.get("error")
    assert row["p50_ms"] > 0 and row["load_ms"] > 0 and row["first_run_ms"] > 0 and row["model_rss_mb"] > 0
    assert row["assumed"]["inputs"] == {"image": "float32[4, 3, 16, 16]", "extra": "float32[4, 2]"}
    assert row["residency"]["providers"] == {"CPUExecutionProvider": row["residency"]["nodes"]}
    assert row["precision"] == "float" and row["fixed_batch"] is None and row["fallback"] is None

    int8 = Bench(name="two-int8", card=None, files={"tflite": foreign_models / "two.int8.tflite"},
                 precisions={"tflite": "unknown"}, assume={})
    row8 = measure(int8, "tflite", 2, "cpu", 1, None, tmp_path, 0.05)
    assert "error" not in row8, row8.get("error")
    assert row8["precision"] == "int8" and row8["assumed"]["normalization"] == "raw pixel codes (integer input)"
    assert row8["residency"]["not_delegated"] == {"CUMSUM": 1} and row8["quant"]["float"]["ops"] == {"CUMSUM": 1}
    assert row8["fixed_batch"] is None  # the interpreter resizes its batch axis

    assert cell(row, "residency").startswith("CPU ") and cell(row, "quant") == "-"
    assert cell(row8, "residency") == f"XNNPACK {row8['residency']['ops'] - 1}/{row8['residency']['ops']}"
    assert cell(row8, "quant") == f"{row8['quant']['integer']['layers']} int, 1 float"
    notes = "\n".join(ran_notes([row, row8]))
    assert "synthesized" in notes and "TFLite's own kernels ran CUMSUM x1" in notes
    assert "INT8 file with float layers: CUMSUM x1" in notes
    md = write_reports([row, row8], tmp_path / "report", [], {"machine": "test"})["md"].read_text()
    assert "| residency | int8 layers |" in md and "XNNPACK" in md and "load ms" in md


def test_failed_rows_say_na_for_what_ran():
    failed = {"model": "m", "backend": "ort", "precision": "fp32", "batch": 1, "error": "boom"}
    assert cell(failed, "residency") == cell(failed, "load_ms") == cell(failed, "model_rss_mb") == "n/a"
    assert cell({"residency": "n/a: needs macOS"}, "residency") == "n/a"
    assert cell({"residency": {"device": "cuda"}}, "residency") == "cuda"
    assert cell({"quant": "n/a: needs the onnx package"}, "quant") == "n/a" and ran_notes([failed]) == []
