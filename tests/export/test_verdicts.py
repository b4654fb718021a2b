"""Three verdicts, and no pass without a run: ``passed`` (a runtime ran real data and the gate held), ``failed``,
``not_run`` (CoreML on Linux, ``--no-verify``); every verdict bound to the bytes it was about."""

import json
import platform
import shutil

import numpy as np
import pytest

from edgekit import parity
from edgekit.benchmarks.recommend import proof
from edgekit.card import HeadSpec, InputSpec, ModelCard
from edgekit.cli import main
from edgekit.export.exporter import export_checkpoint
from edgekit.export.verify import compare_outputs
from edgekit.recipes.deployment import card_for_file

LINUX = platform.system() != "Darwin"


def _row(path, backend="ort", precision="fp32"):
    return {"file": str(path), "backend": backend, "p50_ms": 1.0, "precision": precision, "model": "m", "batch": 1}


@pytest.mark.skipif(not LINUX, reason="on macOS the CoreML file runs and is judged")
def test_coreml_on_linux_is_not_run_here_never_passed_never_failed(exported):
    out = exported.out_dir
    for name in ("model.mlpackage", "model.int8.mlpackage"):
        entry = exported.by_file(name)
        assert entry["verdict"] == "not_run" and entry["passed"] is False, entry
        assert entry["structure_ok"] and "CoreML prediction needs macOS" in entry["not_run"]
        assert entry in exported.not_run and entry not in exported.failed  # counted apart
        assert (out / name).exists() and not (out / f"{name}.failed").exists()  # not moved aside
        recorded, _ = parity.record(out / name)
        assert parity.verdict_of(recorded) == "not_run"
        ok, why = proof(_row(out / name, "coreml", "fp16"))
        assert not ok and why.startswith("not run at export (CoreML prediction needs macOS")
        card = card_for_file(out / name)["parity"]
        assert card["verdict"] == "not_run" and card["passed"] is False
    assert parity.not_run_line(exported.by_file("model.mlpackage")).startswith(
        "model.mlpackage: not run here (CoreML prediction needs macOS")


def test_every_verdict_is_bound_to_the_file_it_is_about(exported):
    entries = json.loads((exported.out_dir / "parity.json").read_text())["artifacts"]
    assert len(entries) == len(exported.artifacts)
    for e in entries:
        assert e["sha256"] == parity.digest(exported.out_dir / e["file"]), e["file"]
        assert e["verdict"] in parity.VERDICTS and e["passed"] is (e["verdict"] == "passed")
    assert {e["file"] for e in entries if e["verdict"] == "passed"} >= {"model.onnx", "model.tflite",
                                                                         "model.fp16.onnx", "model.int8.tflite"}


def test_a_file_changed_after_its_verdict_has_no_verdict(exported, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(exported.out_dir, folder)
    assert proof(_row(folder / "model.onnx"))[0]  # the copy is the same bytes: still proven
    other = exported.out_dir / "model.fp16.onnx"  # a file copied over it by hand, not the one that was verified
    shutil.copy(other, folder / "model.onnx")
    ok, why = proof(_row(folder / "model.onnx"))
    assert not ok and "changed after its parity record" in why
    assert card_for_file(folder / "model.onnx")["parity"] == {"verdict": None, "passed": False, "why": why}


def test_export_without_verification_replaces_the_old_verdicts(trained_run, tmp_path, capsys):
    """The issue's case: an old parity.json in the folder, then `export --no-verify` there. Before, the old
    verdicts stayed and the recommendation trusted them for the new, never-run files."""
    ckpt = trained_run.run_dir / "best.pt"
    out = tmp_path / "out"
    export_checkpoint(ckpt, ["onnx", "tflite"], out, val_images=8, verbose=False)
    assert proof(_row(out / "model.onnx"))[0] and proof(_row(out / "model.tflite", "tflite"))[0]
    assert main(["export", str(ckpt), "--target", "onnx", "--no-verify", "--out", str(out), "--imgsz", "24"]) == 0
    assert "model.onnx: not verified (exported with --no-verify)" in capsys.readouterr().err
    entry, _ = parity.record(out / "model.onnx")
    assert entry["verdict"] == "not_run" and entry["not_run"] == parity.NOT_VERIFIED and not entry["passed"]
    ok, why = proof(_row(out / "model.onnx"))
    assert not ok and why == "not run at export (exported with --no-verify): no verdict to ship on"
    # the file this export did not touch keeps its verdict (still the same bytes)
    assert proof(_row(out / "model.tflite", "tflite"))[0]


def test_export_says_not_run_here_and_does_not_fail_for_it(trained_run, tmp_path, capsys):
    if not LINUX:
        pytest.skip("on macOS the CoreML file runs and is judged")
    out = tmp_path / "coreml"
    assert main(["export", str(trained_run.run_dir / "best.pt"), "--target", "coreml", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "model.mlpackage: not run here (CoreML prediction needs macOS" in captured.err
    assert str(out / "model.mlpackage") in captured.out  # made, and kept in place


def test_regression_mae_covers_every_output_column():
    card = ModelCard("m", "a", [HeadSpec("box", "regression", outputs=2)], InputSpec([8, 8], [0.5] * 3, [0.5] * 3))
    truth = np.ones((2, 2), np.float32)
    ref = {"box": np.ones((2, 2), np.float32)}
    out = {"box": np.array([[1.0, 4.0], [1.0, 6.0]], np.float32)}  # right in the first column, off in the second
    stats = compare_outputs(card, ref, out, {"box": truth})["box"]
    assert stats["mae"] == pytest.approx(2.0) and stats["reference_mae"] == 0.0
    truth[1, 1] = np.nan  # an unlabelled value counts for nothing
    assert compare_outputs(card, ref, out, {"box": truth})["box"]["mae"] == pytest.approx(1.0)
