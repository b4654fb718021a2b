"""Exporting sound models: every target verified on real windows, INT8 judged by the multilabel gate, golden
sound inputs in the card, and the runtime's frontend equal to training's."""

import numpy as np
import pytest

from edgekit.export.exporter import export_checkpoint
from edgekit.runtime import load


def test_files_are_judged_by_their_gates(audio_export):
    """FP32 files pass; the INT8 file is judged by the multilabel gate (mAP / LWLRAP drop, SQNR) and kept or
    moved aside by that verdict."""
    from edgekit.export.gates import gate_for, judge

    parity = {e["file"]: e for e in audio_export.parity}
    for name in ("model.onnx", "model.tflite"):
        assert parity[name]["passed"], (name, parity[name].get("gate_failures"), parity[name].get("error"))
        e2e = parity[name]["end_to_end"]  # raw sound files through predict's path vs training's windows
        assert e2e["files"] > 1 and e2e["heads"]["words"]["label_set_agreement"] == 1.0, e2e
    int8 = parity["model.int8.onnx"]
    assert int8["precision_ran"] == "int8"
    words = int8["heads"]["words"]
    assert {"map", "reference_map", "lwlrap", "reference_lwlrap"} <= set(words)
    # the verdict follows the INT8 gate as written (SQNR >= 10 dB, mAP and LWLRAP within 1 point of PyTorch),
    # recomputed here from the measured numbers, not by the code under test
    expected = (words["sqnr_db"] is None or words["sqnr_db"] >= 10.0) and all(
        (words[f"reference_{k}"] - words[k]) * 100 <= 1.0 + 1e-9 for k in ("map", "lwlrap"))
    assert int8["passed"] is expected and int8["verdict"] == ("passed" if expected else "failed"), int8
    kept = (audio_export.out_dir / "model.int8.onnx").exists()
    assert kept == expected and (audio_export.out_dir / "model.int8.onnx.failed").exists() != kept
    # and the multilabel criteria do judge: the same numbers with mAP, then LWLRAP, 1.5 points lower fail
    for key, what in (("map", "mAP"), ("lwlrap", "LWLRAP")):
        good = {**words, "sqnr_db": 30.0, "map": words["reference_map"], "lwlrap": words["reference_lwlrap"]}
        assert judge({"heads": {"words": good}}, gate_for("int8"))["failures"] == []
        worse = {"heads": {"words": {**good, key: words[f"reference_{key}"] - 0.015}}}
        failures = judge(worse, gate_for("int8"))["failures"]
        assert failures and all(f.startswith(f"words: {what} ") for f in failures), failures


def test_golden_sound_inputs_recheck_the_file(audio_export):
    from edgekit.recipes.check import parity_gate

    model = load(audio_export.out_dir / "model.onnx")
    golden = model.card.golden
    assert golden["kind"] == "audio" and golden["encoding"] == "flac-base64" and golden["inputs"]
    gate = parity_gate(model)
    assert gate["passed"], gate
    from edgekit.recipes.check import check

    # the latency gate on a sound model (its input is the log-mel of a noise window): measured, and judged
    # against the limit both ways (60 s, as before, could not fail)
    tight = check(audio_export.out_dir / "model.onnx", max_latency_ms=1e-6, seconds=0.1)[0]
    assert tight["gate"].startswith("latency") and tight["passed"] is False and tight["value"] > 1e-6
    loose = check(audio_export.out_dir / "model.onnx", max_latency_ms=tight["value"] * 100, seconds=0.1)[0]
    assert loose["passed"] is True and 0 < loose["value"] <= tight["value"] * 100


def test_runtime_frontend_equals_training(audio_run, audio_export, tmp_path, sound_files):
    """The same sound file through training's pipeline (CSV -> validation windows -> eval transform) and the
    runtime's (decode -> windows -> log-mel in the exported model's layout): identical inputs."""
    from edgekit.config import load_config
    from edgekit.runtime.audio_io import read_audio
    from edgekit.runtime.tagging import frontend, sound_batch
    from edgekit.train.data import eval_transform, load_data

    csv = sound_files(tmp_path)
    cfg = load_config(overrides={"data.source": str(csv), "data.val_fraction": 0.5})
    val = load_data(cfg.data, []).val
    tf = eval_transform(audio_run.card.input)  # the trained model's frontend and normalization
    model = load(audio_export.out_dir / "model.tflite")  # NHWC: the runtime lays it out itself
    checked = 0
    for name in sorted({n.split("@")[0] for n in val.names}):
        rows = [i for i, n in enumerate(val.names) if n.split("@")[0] == name]
        train_x = np.stack([tf(val.load(i)).numpy() for i in rows])  # [W, 1, n_mels, frames]
        windows, _ = frontend(model).windows(read_audio(name, model.card.input.audio["sample_rate"]))
        runtime_x = sound_batch(model, windows).transpose(0, 3, 1, 2)
        assert runtime_x.shape == train_x.shape
        assert np.abs(runtime_x - train_x).max() == 0.0
        checked += len(rows)
    assert checked == len(val)


def test_predict_tags_long_files(audio_export, tmp_path):
    import soundfile as sf

    from edgekit.runtime.logmel import AudioFrontend
    from edgekit.runtime.predict_files import run_on_source

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "long.wav", (0.1 * rng.standard_normal((5 * 22050, 2))).astype(np.float32), 22050)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt ")
    results = run_on_source(audio_export.out_dir / "model.onnx", tmp_path, topk=3)
    assert [r.get("error", "") != "" for r in results] == [True, False]  # broken.wav, long.wav (sorted)
    assert "broken.wav" in results[0]["error"]
    long = results[1]
    fe = AudioFrontend.from_dict(load(audio_export.out_dir / "model.onnx").card.input.audio)
    assert long["duration_s"] == 5.0 and long["windows"] == len(fe.window_starts(5 * 16000))
    assert [w["start"] for w in long["timeline"]] == [round(s / 16000, 3) for s in fe.window_starts(5 * 16000)]
    assert set(long["predictions"]["words"]["scores"]) == set(load(audio_export.out_dir / "model.onnx").card.head(
        "words").classes)


def test_end_to_end_sound_files_match_training(audio_run, audio_export, tmp_path):
    """Validation sounds written as files, through predict's path (decode, windows, frontend, ONNX, aggregate),
    give PyTorch's per-sound outputs on training's windows."""
    from edgekit.export.end_to_end_audio import raw_sounds
    from edgekit.runtime.tagging import sound_outputs
    from edgekit.train.trained import load_trained

    files, reference = raw_sounds(load_trained(audio_run.run_dir / "best.pt"), tmp_path, 6)
    model = load(audio_export.out_dir / "model.onnx")
    got = np.stack([sound_outputs(model, f)["words"] for f in files])
    assert len(files) == 6 and np.abs(got - reference["words"]).max() < 1e-4


@pytest.mark.slow
def test_executorch_and_coreml(audio_run, tmp_path):
    report = export_checkpoint(audio_run.run_dir / "best.pt", ["executorch", "coreml"], tmp_path, int8=True,
                               calib_images=32, val_images=96, verbose=False, strict=False)
    parity = {e["file"]: e for e in report.parity}
    assert parity["model.pte"]["passed"], (parity["model.pte"].get("gate_failures"), parity["model.pte"].get("error"))
    int8 = parity["model.int8.pte"]  # judged by the multilabel INT8 gate (a 1-epoch model sits near its limits)
    assert int8["precision_ran"] == "int8" and "lwlrap" in int8["heads"]["words"] and "error" not in int8
    for name in ("model.mlpackage", "model.int8.mlpackage"):  # on Linux: not run here, never passed
        assert parity[name]["structure_ok"], parity[name].get("problems")
        assert parity[name]["verdict"] == ("not_run" if __import__("platform").system() != "Darwin" else "passed")
