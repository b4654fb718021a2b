"""edgekit check: CI gates pass and fail on the right limits; bench writes a deployment card per file."""

import json

from edgekit.cli import main


def test_gates_pass_and_fail_on_the_right_limits(exported, capsys):
    onnx = str(exported.out_dir / "model.int8.onnx")
    accuracy = exported.by_file("model.int8.onnx")["heads"]["digit"]["accuracy"] * 100
    assert main(["check", onnx, "--max-size-mb", "100", "--max-latency-ms", "1000",
                 "--min-accuracy", f"{accuracy - 0.5:.2f}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and {g["gate"].split(" ")[0] for g in result["gates"]} == {"size", "latency", "top-1"}
    measured = next(g for g in result["gates"] if g["gate"].startswith("top-1"))["value"]
    assert abs(measured - accuracy) < 0.01  # the same 360 val images as parity (reported to 2 decimals)
    for argv in (["--max-size-mb", "0.0001"], ["--max-latency-ms", "0.000001"], ["--min-accuracy", "100.1"]):
        code = main(["check", onnx, *argv])
        out = capsys.readouterr()
        if argv[0] == "--min-accuracy":  # over 100 % is bad input, not a failed gate
            assert code == 2 and "percentage" in out.err
        else:
            assert code == 1 and out.out.startswith("FAIL")


def test_check_bad_input(tmp_path, capsys):
    assert main(["check", str(tmp_path / "none.onnx"), "--max-size-mb", "1"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert main(["check", str(tmp_path / "m.onnx")]) == 2
    assert "at least one gate" in capsys.readouterr().err


def test_bench_writes_a_deployment_card_beside_each_file(exported, tmp_path):
    from edgekit.recipes.bench import bench

    files = [str(exported.out_dir / "model.onnx"), str(exported.out_dir / "model.int8.tflite")]
    _, paths = bench(files, ["ort", "tflite"], [1], "cpu", None, "digits", tmp_path, threads=1, min_seconds=0.05,
                     verbose=False)
    card = json.loads((exported.out_dir / "model.int8.tflite.report.json").read_text())
    assert card["precision"] == "int8" and card["size_mb"] > 0 and card["parity"]["heads"]["digit"]["rel"] >= 0
    row = card["bench"][0]
    assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and "load_ms" in row and row["residency"]
    assert 0 <= card["accuracy"]["digit"] <= 1 and card["environment"]["packages"]["onnxruntime"]
    md = paths["deployment"].read_text()
    assert "model.int8.tflite" in md and "model.onnx" in md and "p50 / p90 / p99" in md
