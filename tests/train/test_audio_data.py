"""Sound sources on user-style input: a Freesound CSV with quoted multi-labels and odd names, mixed sample
rates, a stereo file, a file shorter than the window, a truncated file, a folder per class, and the embedded
speech_commands."""

import numpy as np
import pytest
import soundfile as sf

from edgekit.config import load_config
from edgekit.errors import DataError
from edgekit.runtime.audio_io import read_audio
from edgekit.runtime.logmel import AudioFrontend
from edgekit.train.data import load_data


def _load(source, **overrides):
    cfg = load_config(overrides={"data.source": str(source), **overrides})
    return load_data(cfg.data, cfg.model.heads), cfg


def test_freesound_csv(tmp_path, sound_files):
    csv = sound_files(tmp_path)
    bundle, cfg = _load(csv, **{"data.val_fraction": 0.34})
    (head,) = bundle.heads
    assert head.name == "labels" and head.kind == "multilabel"
    assert head.classes == sorted(['Bark', 'Café "noise"', 'Chink_and_clink', 'Crowd (indoor)', 'Walk_and_footsteps'])
    assert bundle.kind == "audio" and cfg.data.audio is not None  # the frontend is recorded in the run's config
    sounds = bundle.train.names + [n.split("@")[0] for n in bundle.val.names]
    targets = np.concatenate([bundle.train.targets["labels"], bundle.val.targets["labels"]])
    assert len(set(sounds)) == 12  # every row is used
    y = targets[sounds.index(str(tmp_path / "clip 9.flac"))]  # "Café ""noise"",Walk_and_footsteps"
    assert [head.classes[i] for i in np.flatnonzero(y)] == ['Café "noise"', "Walk_and_footsteps"]
    fe = AudioFrontend()
    w = bundle.train.load(0, 123)
    assert w.shape == (fe.window_samples,) and w.dtype == np.float32
    # validation: every sound cut into the runtime's windows, grouped by sound
    groups = bundle.val.groups
    assert len(groups) == len(bundle.val) and len(np.unique(groups)) == 12 - len(bundle.train) == 5


def test_rates_stereo_and_short_files(tmp_path, sound_files):
    sound_files(tmp_path)
    fe = AudioFrontend()
    stereo, rate = sf.read(tmp_path / "clip 1.flac", dtype="float32")
    assert stereo.ndim == 2 and rate == 44100
    mono = read_audio(tmp_path / "clip 1.flac", 16000)
    assert len(mono) == round(len(stereo) * 16000 / 44100)  # resampled
    import soxr

    np.testing.assert_allclose(mono, soxr.resample(stereo.mean(1), 44100, 16000, quality="HQ"), atol=1e-6)
    short = read_audio(tmp_path / "clip 2.ogg", 16000)  # 0.5 s at 8 kHz: shorter than the 0.96 s window
    assert len(short) == 8000 and fe.window_starts(len(short)) == [0]
    window = fe.cut(short, 0)
    assert len(window) == fe.window_samples and (window[8000:] == 0).all()


def test_truncated_and_empty_files(tmp_path, sound_files):
    csv = sound_files(tmp_path)
    data = (tmp_path / "clip 0.wav").read_bytes()
    (tmp_path / "clip 0.wav").write_bytes(data[: len(data) // 2])  # the data chunk claims more than is there
    (tmp_path / "clip 4.wav").write_bytes(b"")
    with pytest.raises(DataError, match=r"clip 0\.wav: truncated WAV|clip 4\.wav: empty file") as err:
        _load(csv)
    assert "skip_bad" in str(err.value) and "\n" not in str(err.value)
    bundle, _ = _load(csv, **{"data.skip_bad": True})
    assert sorted(bundle.skipped) == [str(tmp_path / "clip 0.wav"), str(tmp_path / "clip 4.wav")]
    assert len(bundle.train) + len(np.unique(bundle.val.groups)) == 10


def test_kaggle_layout_and_path_label_csv(tmp_path, sound_files):
    folder = tmp_path / "train_curated"
    folder.mkdir()
    sound_files(folder)
    (tmp_path / "train_curated.csv").write_text((folder / "labels.csv").read_text(encoding="utf-8"), encoding="utf-8")
    bundle, _ = _load(tmp_path / "train_curated.csv")
    assert str(folder / "clip 0.wav") in bundle.train.names + [n.split("@")[0] for n in bundle.val.names]
    rows = ["path,label"] + [f"train_curated/clip {i}.wav,{'dog' if i % 2 else 'cat'}" for i in (0, 3, 4, 7, 8, 11)]
    (tmp_path / "single.csv").write_text("\n".join(rows) + "\n")
    bundle, _ = _load(tmp_path / "single.csv")
    assert bundle.heads[0].kind == "classification" and bundle.heads[0].classes == ["cat", "dog"]


def test_folder_per_class(tmp_path):
    for c, f in (("bird", 900), ("engine", 120)):
        (tmp_path / c).mkdir()
        for i in range(4):
            t = np.arange(16000) / 16000
            sf.write(tmp_path / c / f"{i}.wav", (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32), 16000)
    bundle, _ = _load(tmp_path)
    assert bundle.heads[0].name == "class" and bundle.heads[0].classes == ["bird", "engine"]
    assert len(bundle.train) + len(np.unique(bundle.val.groups)) == 8


def test_speech_commands_is_deterministic_and_split_by_voice():
    from edgekit.train.data.speech import WORDS, speech_clips, utterances

    a = speech_clips(16000, {"train": 6, "val": 3})
    b = speech_clips(16000, {"train": 6, "val": 3})
    for split in ("train", "val"):
        assert np.array_equal(a[split][0], b[split][0]) and np.array_equal(a[split][1], b[split][1])
    y = a["train"][1]
    assert y.shape == (6, len(WORDS)) and set(y.sum(1).tolist()) <= {1.0, 2.0, 3.0}
    audio, variants = utterances(16000)
    assert not set(variants["train"]) & set(variants["val"])  # no voice/speed/pitch in both splits
    assert len(audio) == len(WORDS) and all(len(u) > 1600 for row in audio for u in row)  # > 0.1 s of speech
