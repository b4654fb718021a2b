"""Tagging sounds with the runtime: timed events from window predictions, waveform input, bad input."""

import numpy as np
import pytest

from edgekit.card import HeadSpec
from edgekit.runtime import load
from edgekit.runtime.audio_io import AudioError
from edgekit.runtime.tagging import events


def test_events_merge_consecutive_windows():
    head = HeadSpec("words", "multilabel", classes=["yes", "no"], threshold=0.5)
    preds = [{"scores": {"yes": 0.9, "no": 0.1}}, {"scores": {"yes": 0.7, "no": 0.6}},
             {"scores": {"yes": 0.2, "no": 0.8}}, {"scores": {"yes": 0.95, "no": 0.0}}]
    spans = [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.2)]
    assert events(head, preds, spans) == [
        {"label": "yes", "start": 0.0, "end": 1.5, "score": 0.9},
        {"label": "no", "start": 0.5, "end": 2.0, "score": 0.8},
        {"label": "yes", "start": 1.5, "end": 2.2, "score": 0.95}]
    cls = HeadSpec("kind", "classification", classes=["a", "b"])
    top = [{"label": "a", "score": 0.6}, {"label": "a", "score": 0.8}, {"label": "b", "score": 0.7}]
    assert [(e["label"], e["start"], e["end"]) for e in events(cls, top, spans[:3])] == [("a", 0.0, 1.5),
                                                                                         ("b", 1.0, 2.0)]


def test_tag_a_waveform_like_a_file(audio_onnx, tmp_path):
    import soundfile as sf

    model = load(audio_onnx)
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal((3 * 8000, 2))).astype(np.float32)  # stereo, 8 kHz, 3 s
    sf.write(tmp_path / "x.wav", wave, 8000, subtype="FLOAT")
    from_file = model.tag(tmp_path / "x.wav")
    from_array = model.tag(wave, sample_rate=8000)
    assert from_file["windows"] == from_array["windows"] == 6  # 0, .48, .96, 1.44, 1.92 and one ending at 3.0
    np.testing.assert_allclose(from_file["predictions"]["words"]["scores"]["yes"],
                               from_array["predictions"]["words"]["scores"]["yes"], rtol=1e-6)
    assert model.tag(wave, sample_rate=8000, mode="max")["aggregate"] == "max"
    with pytest.raises(AudioError, match="sample_rate"):
        model.tag(wave)
    with pytest.raises(AudioError, match="not finite"):
        model.tag(np.full(100, np.nan, np.float32), sample_rate=8000)
