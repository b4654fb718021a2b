"""``edgekit demo audio``: a sound file played as a stream, headless; a microphone that is not there."""

import json

import pytest

from edgekit.apps.audio import run_audio
from edgekit.apps.capture import CaptureError
from edgekit.runtime import load


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    import soundfile as sf

    from edgekit.train.data.speech import spoken_sequence

    wave, spoken = spoken_sequence(6.0, 16000, seed=2)
    path = tmp_path_factory.mktemp("demo") / "speech.wav"
    sf.write(path, wave, 16000)
    return path


def test_headless_demo_writes_log_and_summary(audio_onnx, long_wav, tmp_path):
    log = tmp_path / "demo" / "audio.jsonl"
    summary = run_audio(audio_onnx, str(long_wav), headless=True, log=log, topk=2, verbose=False)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    tagged = load(audio_onnx).tag(long_wav, topk=2)  # the demo cuts the windows tag() cuts
    from edgekit.runtime.logmel import AudioFrontend

    n = len(AudioFrontend.from_dict(load(audio_onnx).card.input.audio).window_starts(6 * 16000))
    assert n == 12 and len(records) == summary["windows"] == tagged["windows"] == n  # the last ends at 6.0 s
    assert [r["start"] for r in records] == [w["start"] for w in tagged["timeline"]]
    assert [r["predictions"] for r in records] == [w["predictions"] for w in tagged["timeline"]]
    saved = json.loads((tmp_path / "demo" / "audio.summary.json").read_text())
    assert saved["app"] == "audio" and saved["audio_s"] == 6.0 and saved["backend"] == "onnxruntime"
    assert saved["latency_ms"]["inference_p50"] > 0 and saved["stages"]["preprocess"]["calls"] == n
    assert saved["predictions"] == tagged["predictions"] and saved["events"] == tagged["events"]


def test_max_windows_and_bad_options(audio_onnx, long_wav, tmp_path):
    summary = run_audio(audio_onnx, str(long_wav), headless=True, log=tmp_path / "a.jsonl", max_windows=3,
                        verbose=False)
    assert summary["windows"] == 3
    from edgekit.errors import ConfigError

    with pytest.raises(ConfigError):
        run_audio(audio_onnx, str(long_wav), headless=True, log=tmp_path / "b.jsonl", topk=0, verbose=False)


def test_microphone_that_is_not_there_is_one_line(audio_onnx, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as on a machine without PortAudio
    with pytest.raises(CaptureError) as err:
        run_audio(audio_onnx, "mic", headless=True, log=tmp_path / "mic.jsonl", verbose=False)
    message = str(err.value)
    assert message.startswith("no microphone") and "\n" not in message and "source" in message


def test_window_panel_draws_spectrogram_and_tags(audio_onnx):
    import numpy as np

    from edgekit.apps.sound_panel import SPEC_H, WIDTH, render
    from edgekit.runtime.tagging import frontend, sound_batch

    model = load(audio_onnx)
    batch = sound_batch(model, 0.1 * np.random.default_rng(0).standard_normal(frontend(model).window_samples))
    pred = model.decode(model.run(batch), 3)[0]
    img = render(batch, pred, ["0.00s  yes 0.90"], model.card, 1.5)
    assert img.dtype == np.uint8 and img.shape[1] == WIDTH and img.shape[2] == 3
    assert img.shape[0] > SPEC_H and img[:SPEC_H].std() > 0  # the spectrogram is drawn, not blank
