import json
import platform

import numpy as np
import pytest
import torch

from edgekit.card import CARD_KEY
from edgekit.cli import parse_targets
from edgekit.errors import CheckpointError, ConfigError
from edgekit.export.exporter import export_checkpoint
from edgekit.export.report import ParityError
from edgekit.runtime import load
from edgekit.runtime.metadata import read_card, tflite_metadata


def test_all_targets_written_verified_and_self_describing(exported, trained_run):
    names = sorted(a.path.name for a in exported.artifacts)
    assert names == sorted(["model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.tflite", "model.fp16.tflite",
                            "model.int8.tflite", "model.mlpackage", "model.int8.mlpackage"])
    parity = json.loads((exported.out_dir / "parity.json").read_text())
    assert parity["val_images"] == 360
    by_name = {e["file"]: e for e in parity["artifacts"]}
    for fp32 in ("model.onnx", "model.tflite"):
        head = by_name[fp32]["heads"]["digit"]
        assert by_name[fp32]["passed"] and head["rel"] <= 1e-4
        assert head["top1_agreement"] == 1.0
        assert head["accuracy"] == head["reference_accuracy"]  # FP32 reproduces PyTorch's accuracy exactly
    from edgekit.export.gates import gate_for

    for q in ("model.int8.onnx", "model.int8.tflite", "model.fp16.onnx", "model.fp16.tflite"):
        entry, head = by_name[q], by_name[q]["heads"]["digit"]
        gate = gate_for(entry["precision_ran"])  # the table's thresholds, re-applied here to the measured numbers
        assert entry["passed"] and entry["gate"] == gate.to_dict() and gate.precision == q.split(".")[1]
        assert head["top1_agreement"] >= gate.min_agreement and head["sqnr_db"] >= gate.min_sqnr_db
        assert (head["reference_accuracy"] - head["accuracy"]) * 100 <= gate.max_drop_points
    assert by_name["model.mlpackage"]["structure_ok"] and "macOS" in by_name["model.mlpackage"]["numeric"]
    for art in exported.artifacts:  # each file carries its card: no other file needed
        card = read_card(art.path)
        assert card.heads[0].classes == [str(i) for i in range(10)]
        assert card.provenance["precision"] == art.precision and card.provenance["format"] == art.format
    tfl = read_card(exported.out_dir / "model.int8.tflite")
    assert tfl.input.layout == "NHWC" and tfl.input.dtype == "int8" and tfl.input.quant["scale"] > 0
    assert tfl.output_quant["digit"]["scale"] > 0
    onnx_card = read_card(exported.out_dir / "model.onnx")
    assert onnx_card.input.size == [16, 16] and onnx_card.input.mean == trained_run.card.input.mean
    coreml = read_card(exported.out_dir / "model.mlpackage")
    assert coreml.input.dtype == "image" and coreml.provenance["outputs_activated"]


def test_tflite_card_is_in_the_flatbuffer(exported):
    data = (exported.out_dir / "model.fp16.tflite").read_bytes()  # ai-edge-quantizer output, re-packed
    assert json.loads(tflite_metadata(data, CARD_KEY))["arch"] == "test_efficientnet"
    assert not list(exported.out_dir.glob("*.card.json"))


def test_multi_head_export_has_one_named_output_per_head(tiny_config, tmp_path, age_mood_csv):
    from edgekit.config import parse_heads
    from edgekit.train.supervised import train

    cfg = tiny_config(name="mh", data__source=str(age_mood_csv(tmp_path)), model__heads=parse_heads(
        "age:regression,mood"), data__limit=None, train__epochs=1)
    run = train(cfg, verbose=False)
    report = export_checkpoint(run.run_dir / "best.pt", ["onnx", "tflite", "coreml"], tmp_path / "out",
                               dynamic_batch=True, verbose=False)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(report.out_dir / "model.onnx"))
    assert [o.name for o in sess.get_outputs()] == ["age", "mood"]
    assert sess.get_inputs()[0].shape[0] == "batch"  # dynamic batch
    for art in report.artifacts:  # every file that ran here passed; CoreML on Linux is not run here (apart)
        entry = report.by_file(art.path.name)
        assert entry["verdict"] == ("not_run" if art.format == "coreml" and platform.system() != "Darwin"
                                    else "passed"), entry
    assert set(report.by_file("model.tflite")["heads"]) == {"age", "mood"}
    assert "mae" in report.by_file("model.onnx")["heads"]["age"]
    pred = load(report.out_dir / "model.tflite").predict(np.zeros((20, 20, 3), np.uint8))[0]
    assert set(pred) == {"age", "mood"} and "value" in pred["age"] and pred["mood"]["label"] in {"calm", "happy", "sad"}
    coreml = report.by_file("model.mlpackage")
    assert coreml["structure_ok"] and coreml["outputs"] == ["age", "mood"]


def test_fixed_batch_export_runs_any_batch(trained_run, tmp_path):
    report = export_checkpoint(trained_run.run_dir / "best.pt", ["onnx"], tmp_path, batch=2, val_images=5,
                               verbose=False)
    model = load(report.out_dir / "model.onnx")
    assert model.backend.batch == 2
    out = model.run(np.zeros((5, 3, 16, 16), np.float32))["digit"]
    assert out.shape == (5, 10)


def test_parity_failure_is_loud_and_moves_the_file_aside(trained_run, tmp_path, monkeypatch):
    from edgekit.export import verify

    real = verify.compare_outputs

    def broken(card, ref, out, targets=None):
        return real(card, ref, {k: v + 1.0 for k, v in out.items()}, targets)

    monkeypatch.setattr(verify, "compare_outputs", broken)
    with pytest.raises(ParityError, match="relative error"):
        export_checkpoint(trained_run.run_dir / "best.pt", ["onnx"], tmp_path, val_images=8, verbose=False)
    assert (tmp_path / "model.onnx.failed").exists() and not (tmp_path / "model.onnx").exists()
    assert json.loads((tmp_path / "parity.json").read_text())["artifacts"][0]["passed"] is False


def test_bad_inputs(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"nope")
    with pytest.raises(CheckpointError):
        export_checkpoint(tmp_path / "x.pt", ["onnx"], tmp_path)
    torch.save({"a": 1}, tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="not an edgekit checkpoint"):
        export_checkpoint(tmp_path / "y.pt", ["onnx"], tmp_path)
    with pytest.raises(ConfigError, match="--target"):
        parse_targets("onnx,tensorrt")
    assert parse_targets("all")[:3] == ["onnx", "tflite", "coreml"]  # + executorch where its extra is installed


def test_heads_of_different_widths_keep_their_outputs_in_every_format(tiny_config, tmp_path, age_mood_csv):
    """TFLite names outputs output_N and ExecuTorch returns them by position: the mapping to heads is checked by
    value (parity per head) on heads of widths 1, 3 and 2, so a swap cannot pass."""
    from edgekit.config import parse_heads
    from edgekit.runtime import load
    from edgekit.train.supervised import train

    cfg = tiny_config(name="widths", data__source=str(age_mood_csv(tmp_path, n=48, gender=True)), data__limit=None,
                      model__heads=parse_heads("age:regression,mood,gender"), train__epochs=1)
    run = train(cfg, verbose=False)
    report = export_checkpoint(run.run_dir / "best.pt", ["tflite", "executorch"], tmp_path / "out", int8=True,
                               calib_images=16, verbose=False, strict=False)
    widths = {"age": 1, "mood": 3, "gender": 2}
    for name in ("model.tflite", "model.pte"):
        entry = report.by_file(name)
        assert entry["passed"] and entry["max_rel"] <= 1e-4, entry
        model = load(tmp_path / "out" / name)
        out = model.run(model.preprocess([np.zeros((20, 20, 3), np.uint8)] * 2))
        assert {h: v.shape[1] for h, v in out.items()} == widths
    for name in ("model.int8.tflite", "model.int8.pte"):  # every head is judged by the INT8 gate
        assert set(report.by_file(name)["heads"]) == set(widths) and "gate" in report.by_file(name)
