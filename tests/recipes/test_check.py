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
    entry = exported.by_file("model.int8.tflite")
    assert card["precision"] == "int8" and card["size_mb"] == round(entry["size_bytes"] / 1e6, 3)
    assert card["parity"]["passed"] and card["parity"]["heads"]["digit"]["rel"] == entry["heads"]["digit"]["rel"]
    row = card["bench"][0]
    assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and "load_ms" in row and row["residency"]
    # the same 360 val images at the model's size: the bench accuracy is the parity accuracy
    assert card["accuracy"]["digit"] == entry["heads"]["digit"]["accuracy"]
    assert card["environment"]["packages"]["onnxruntime"]
    md = paths["deployment"].read_text()
    assert "model.int8.tflite" in md and "model.onnx" in md and "p50 / p90 / p99" in md


def test_check_parity_reverifies_a_copied_file_from_its_golden_inputs(exported, tmp_path, capsys):
    import shutil
    import subprocess
    import sys

    from edgekit.export.onnx import rewrite_card
    from edgekit.runtime.metadata import read_card

    for name in ("model.onnx", "model.int8.tflite", "model.fp16.onnx"):
        copy = tmp_path / name  # alone: no parity.json, no training data beside it
        shutil.copy(exported.out_dir / name, copy)
        assert main(["check", str(copy), "--parity", "--json"]) == 0, name
        gate = json.loads(capsys.readouterr().out)["gates"][0]
        assert gate["passed"] and "golden inputs" in gate["gate"]
    card = read_card(tmp_path / "model.onnx")
    assert len(card.golden["inputs"]) == 4 and len(card.golden["outputs"]["digit"]) == 4
    # the check runs on a device with the runtime only: no torch is imported
    code = ("import sys; from edgekit.cli import main; rc = main(['check', sys.argv[1], '--parity']); "
            "sys.exit(rc if 'torch' not in sys.modules else 99)")
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.onnx")]).returncode == 0
    # a file whose outputs no longer match (here: the stored reference changed) fails with its numbers
    card.golden["outputs"]["digit"] = [[v * 1.01 + 0.01 for v in row] for row in card.golden["outputs"]["digit"]]
    rewrite_card(tmp_path / "model.onnx", card)
    assert main(["check", str(tmp_path / "model.onnx"), "--parity"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "relative error" in out


def test_a_file_exported_from_a_relative_path_finds_its_checkpoint_from_any_folder(trained_run, tmp_path, monkeypatch):
    """parity.json and the card record the checkpoint's absolute path: `check --samples` / `--on` rebuild the
    validation samples from another folder than the one the export ran in (a relative path gave golden inputs only)."""
    from pathlib import Path

    from edgekit.recipes.samples import build_samples
    from edgekit.runtime.metadata import read_card

    ckpt = trained_run.run_dir / "best.pt"
    monkeypatch.chdir(ckpt.parent.parent)
    assert main(["export", f"{ckpt.parent.name}/best.pt", "--target", "onnx", "--out", str(tmp_path / "e"),
                 "--quiet"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model = tmp_path / "e" / "model.onnx"
    recorded = json.loads((tmp_path / "e" / "parity.json").read_text())["source"]
    assert Path(recorded) == ckpt.resolve() and read_card(model).provenance["source"] == recorded
    samples, why = build_samples(model, tmp_path / "samples.npz")
    assert samples is not None and samples.is_file(), why
