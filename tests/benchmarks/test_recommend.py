"""The recommendation: the fastest file that passed its gates, per model and batch, on this machine."""

import json

from edgekit.benchmarks.recommend import cpu_features, lines, recommend


def _files(tmp_path, entries: dict[str, dict]) -> dict[str, str]:
    """Model files (a few bytes: the recommendation reads parity.json, and the file's hash) and their parity.json,
    each entry bound to its file's content as export binds it."""
    from edgekit.parity import digest

    out = {}
    for name in entries:
        (tmp_path / name).write_bytes(name.encode())
        out[name] = str(tmp_path / name)
    artifacts = [{"file": n, "sha256": digest(tmp_path / n), "verdict": "passed" if e.get("passed") else "failed", **e}
                 for n, e in entries.items() if e is not None]
    (tmp_path / "parity.json").write_text(json.dumps({"artifacts": artifacts}))
    return out


def _row(file: str, backend: str, p50: float, batch: int = 1, precision: str = "fp32", **kw) -> dict:
    return {"model": "student", "backend": backend, "precision": precision, "batch": batch, "file": file,
            "p50_ms": p50, "threads": 2, **kw}


FEATURES = {"cpu": "test CPU", "features": ["AVX2"], "source": "test"}


def test_the_fastest_passing_file_wins_and_a_faster_failing_one_does_not(tmp_path):
    f = _files(tmp_path, {"model.int8.onnx": {"passed": True, "precision": "int8", "precision_ran": "int8"},
                          "model.int8.xml": {"passed": False, "precision": "int8", "precision_ran": "int8",
                                             "gate_failures": ["class: SQNR 4.1 dB < 10 dB"]},
                          "model.xml": {"passed": True, "precision": "fp32", "precision_ran": "bf16"},
                          "model.int8.tflite": None})  # made by another tool: no parity record
    rows = [_row(f["model.int8.onnx"], "ort", 1.44, precision="int8"),
            _row(f["model.int8.xml"], "openvino", 1.02, precision="int8", execution_precision="int8"),
            _row(f["model.xml"], "openvino", 1.16, execution_precision="bf16"),
            _row(f["model.int8.tflite"], "tflite", 0.90, precision="int8"),
            _row("best.pt", "torch", 0.5),
            _row(f["model.int8.onnx"], "ort", 5.0, batch=8, precision="int8"),
            _row(f["model.xml"], "openvino", 4.0, batch=8, execution_precision="bf16"),
            {**_row(f["model.int8.xml"], "openvino", None, batch=8), "error": "RuntimeError: boom"}]
    rec = recommend(rows, FEATURES)
    picks = {p["batch"]: p for p in rec["picks"]}
    assert picks[1]["file"] == f["model.xml"] and picks[1]["precision"] == "bf16" and picks[1]["p50_ms"] == 1.16
    assert picks[1]["runtime"].startswith("openvino") and picks[1]["runner_up"]["file"] == f["model.int8.onnx"]
    assert picks[8]["file"] == f["model.xml"] and picks[8]["candidates"] == 2
    why = {(x["file"], x["batch"]): x["why"] for x in rec["left_out"]}
    assert why[(f["model.int8.xml"], 1)].startswith("missed its gate: class: SQNR 4.1 dB")
    assert "no parity record" in why[(f["model.int8.tflite"], 1)]
    assert "eager PyTorch" in why[("best.pt", 1)]
    assert why[(f["model.int8.xml"], 8)].startswith("not measured: RuntimeError")
    text = "\n".join(lines(rec))
    assert "test CPU; AVX2" in text and "student, batch 1:" in text and "not eligible: model.int8.xml" in text


def test_a_file_proven_at_fp32_is_not_recommended_where_it_runs_bf16(tmp_path):
    f = _files(tmp_path, {"model.xml": {"passed": True, "precision": "fp32", "precision_ran": "fp32"}})
    rec = recommend([_row(f["model.xml"], "openvino", 1.0, execution_precision="bf16")], FEATURES)
    assert rec["picks"] == [] and "proven at fp32 but ran bf16 here" in rec["left_out"][0]["why"]
    assert "none: no measured file" in "\n".join(lines(rec))


def test_cpu_features_are_read_not_assumed():
    x86 = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8\n"
    got = cpu_features(cpuinfo=x86)
    assert got["cpu"] == "Intel Xeon" and got["features"] == ["AVX2", "AVX-512", "AVX-512 VNNI", "AMX", "AMX-INT8"]
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU implementer\t: 0x41\n"
    assert cpu_features(cpuinfo=arm)["features"] == ["ARM dot-product", "ARM I8MM"]
    mac = "machdep.cpu.brand_string: Apple M2\nhw.optional.arm.FEAT_DotProd: 1\nhw.optional.arm.FEAT_I8MM: 0\n"
    assert cpu_features(sysctl=mac) == {"cpu": "Apple M2", "features": ["ARM dot-product"], "source": "sysctl"}
    assert cpu_features()["source"] in ("/proc/cpuinfo", "AT_HWCAP", "sysctl", "not readable here")  # this machine


def test_a_file_not_run_at_export_is_never_recommended(tmp_path):
    """CoreML on Linux (structure checked, prediction needs macOS) and files exported with --no-verify: not run,
    so never passed, even as the fastest row; a record without a content hash (an older edgekit) is not trusted."""
    f = _files(tmp_path, {"model.onnx": {"verdict": "passed", "passed": True, "precision": "fp32"},
                          "model.mlpackage": {"verdict": "not_run", "passed": False, "precision": "fp16",
                                              "not_run": "CoreML prediction needs macOS"},
                          "model.tflite": {"verdict": "not_run", "passed": False, "precision": "fp32",
                                           "not_run": "exported with --no-verify"},
                          "model.int8.onnx": {"passed": True, "precision": "int8", "sha256": None}})
    rows = [_row(f["model.onnx"], "ort", 2.0), _row(f["model.mlpackage"], "coreml", 0.1, precision="fp16"),
            _row(f["model.tflite"], "tflite", 0.2), _row(f["model.int8.onnx"], "ort", 0.3, precision="int8")]
    rec = recommend(rows, FEATURES)
    assert [p["file"] for p in rec["picks"]] == [f["model.onnx"]]
    why = {x["file"]: x["why"] for x in rec["left_out"]}
    assert why[f["model.mlpackage"]] == "not run at export (CoreML prediction needs macOS): no verdict to ship on"
    assert why[f["model.tflite"]].startswith("not run at export (exported with --no-verify)")
    assert "no content hash" in why[f["model.int8.onnx"]]
    (tmp_path / "model.onnx").write_bytes(b"another model")  # replaced after its verdict: no longer proven
    assert recommend(rows, FEATURES)["picks"] == []
