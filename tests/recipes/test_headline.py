"""The quickstart headline compares like with like (issue: INT8 TFLite student vs eager-torch teacher)."""

from pathlib import Path

from edgekit.recipes.quickstart import _headline, deployment_lines


def _r(role, backend, precision, ms, batch=1, size=1.0, threads=2):
    return {"role": role, "backend": backend, "precision": precision, "batch": batch, "p50_ms": ms, "size_mb": size,
            "model": role, "threads": threads}


ROWS = [_r("teacher", "torch", "fp32", 8.3, size=44.0), _r("teacher", "ort", "fp32", 1.115, size=44.0),
        _r("teacher", "tflite", "fp32", 1.2, size=44.0), _r("model", "ort", "fp32", 0.30, size=4.5),
        _r("model", "ort", "int8", 0.20, size=1.4), _r("model", "tflite", "fp32", 0.204, size=4.4),
        _r("model", "tflite", "int8", 0.200, size=1.4), _r("model", "torch", "fp32", 2.0, size=4.5)]


def test_headline_pairs_rows_on_the_same_backend_and_precision():
    text = "\n".join(_headline(ROWS))
    assert "onnxruntime 0.300 vs 1.115 ms (**3.7x**, 2 threads)" in text  # student vs teacher, both ORT FP32
    assert "TFLite (XNNPACK) 0.204 vs 1.200 ms (**5.9x**, 2 threads)" in text
    assert "onnxruntime 0.200 vs 0.300 ms (**1.50x**, 2 threads" in text  # INT8 vs FP32, both ORT
    assert "TFLite (XNNPACK) 0.200 vs 0.204 ms (**1.02x**, 2 threads" in text
    assert "INT8 does not pay for speed on TFLite (XNNPACK)" in text  # 1.02x < 1.1x: said, with the reason
    extra = [ln for ln in text.splitlines() if "eager PyTorch" in ln]
    assert len(extra) == 1 and extra[0].startswith("- Extra, not like for like") and "41.5x" in extra[0]


def test_int8_reason_names_the_cpu_and_the_call_length(monkeypatch, tmp_path):
    from edgekit.recipes import quickstart

    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(quickstart, "Path", lambda p: info if p == "/proc/cpuinfo" else Path(p))
    info.write_text("flags\t\t: fpu sse avx2 fma\n")
    assert "has no VNNI (x86) or dot-product (ARM) instructions" in quickstart.cpu_note(3.0)
    info.write_text("flags\t\t: fpu sse avx2 avx512_vnni\n")
    assert "avx512_vnni, but a call takes 0.093 ms" in quickstart.cpu_note(0.093)  # 32 px: overhead decides
    assert "should be fast; check the 224-px table" in quickstart.cpu_note(3.0)


def test_headline_never_pairs_rows_measured_at_other_thread_counts():
    rows = [dict(r) for r in ROWS]
    next(r for r in rows if r["role"] == "teacher" and r["backend"] == "tflite")["threads"] = 1  # the case
    text = "\n".join(_headline(rows))
    assert "TFLite (XNNPACK) 0.204 vs 1.200" not in text and "onnxruntime 0.300 vs 1.115" in text


def test_headline_without_measurements_says_so():
    assert "could not be measured" in _headline([])[0]


def test_deployment_table_pairs_fp32_and_int8_per_backend_and_batch():
    rows = [_r("student", "ort", "fp32", 4.0), _r("student", "ort", "int8", 2.5),
            _r("student", "ort", "fp32", 20.0, batch=8), _r("student", "ort", "int8", 16.0, batch=8)]
    text = "\n".join(deployment_lines(rows, 224))
    assert "| student | onnxruntime | 1 | 2 | 4.000 | 2.500 | 1.60x |" in text
    assert "every backend ran with 2 threads" in text
    assert "| student | onnxruntime | 8 | 2 | 20.000 | 16.000 | 1.25x |" in text


def test_deployment_table_int8_comes_from_the_float_layer_search(trained_run, tmp_path, outlier_checkpoint):
    """CI failed here: at 224 px the digits student's fully INT8 files miss their gate on some runs and pass on
    others. The deployment table's INT8 files come from the float-layer search: fully INT8 when that passes,
    else the fewest blocks in float that pass; such a file is certified, its latency marked '†' and a note
    names its float blocks and why the fully INT8 file missed. Real export, verification and bench, on a
    checkpoint whose fully INT8 files must fail."""
    import json

    from edgekit.recipes import quickstart

    ckpt = outlier_checkpoint(trained_run.run_dir / "best.pt", tmp_path / "outlier.pt")
    out = tmp_path / "deploy"
    rows, notes = quickstart.deployment_table({"student": ckpt}, out, imgsz=16, batches=(1,), seconds=0.05,
                                              verbose=False)
    by = {(r["backend"], r["precision"]): r for r in rows}
    assert by[("ort", "int8")]["certified"] is True and by[("ort", "int8")]["float_blocks"] is True
    assert by[("ort", "fp32")]["certified"] is True and not by[("ort", "fp32")]["float_blocks"]
    parity = json.loads((out / "student" / "parity.json").read_text())
    entry = next(e for e in parity["artifacts"] if e["file"] == "model.int8.onnx")
    floats = parity["int8_search"]["float_layers"]["onnx"]
    assert entry["verdict"] == "passed" and floats and entry["float_layers"] == floats
    assert not parity["int8_search"]["trail"]["onnx"][0]["passed"]  # the fully INT8 file was tried, and missed
    note = next(n for n in notes if n.startswith("student: the fully INT8 model.int8.onnx missed its gate at 16 px ("))
    assert f"keeps {', '.join(floats)} in float" in note and note.endswith("and passes (†)")
    table = "\n".join(quickstart.deployment_lines(rows, 16))
    line = next(ln for ln in table.splitlines() if ln.startswith("| student | onnxruntime | 1 |"))
    assert line.split(" | ")[5].endswith(" †") and not line.split(" | ")[4].endswith(("†", "*"))


def test_deployment_table_says_when_no_int8_file_passes(trained_run, tmp_path, outlier_checkpoint, monkeypatch):
    """With no block that may go to float, the search writes no INT8 file: no INT8 row, and a note says why."""
    from edgekit.export import int8
    from edgekit.recipes import quickstart

    ckpt = outlier_checkpoint(trained_run.run_dir / "best.pt", tmp_path / "outlier.pt")
    monkeypatch.setattr(int8, "candidate_layers", lambda trained: [])
    out = tmp_path / "deploy"
    rows, notes = quickstart.deployment_table({"student": ckpt}, out, imgsz=16, batches=(1,), seconds=0.05,
                                              verbose=False)
    assert not [r for r in rows if r["precision"] == "int8"] and all(r["certified"] for r in rows)
    assert not (out / "student" / "model.int8.onnx").exists()
    assert any(n.startswith("student: model.int8.onnx failed at 16 px: INT8 cannot pass its gate on onnx")
               for n in notes)


def test_deployment_table_marks_a_file_that_missed_its_gate():
    rows = [_r("student", "ort", "fp32", 4.0), {**_r("student", "ort", "int8", 2.5), "certified": False}]
    line = deployment_lines(rows, 224)[-2]
    assert line.split(" | ")[5] == "2.500 *" and line.split(" | ")[4] == "4.000"
