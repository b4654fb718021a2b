"""The kiosk demo, headless on a test video of a real face (scikit-image's astronaut)."""

import csv
import json

import numpy as np
import pytest

from edgekit.apps.analytics import age_band
from edgekit.apps.kiosk import KioskOptions, run_kiosk
from edgekit.apps.tracking import IoUTracker
from edgekit.cli import main
from edgekit.errors import ConfigError

from .conftest import KIOSK_FPS, KIOSK_FRAMES, H, W, face_frames
from .test_webcam import read_video

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def images_under(folder):
    return [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]


@pytest.fixture(scope="module")
def kiosk_run(face_model, kiosk_video, tmp_path_factory):
    out = tmp_path_factory.mktemp("kiosk_run")
    summary = run_kiosk(face_model, str(kiosk_video), headless=True, out=out / "k.mp4", threads=2, verbose=False)
    return out, summary


def test_face_found_tracked_and_counted_once(kiosk_run):
    out, summary = kiosk_run
    lines = [json.loads(x) for x in (out / "k.jsonl").read_text().splitlines()]
    assert len(lines) == KIOSK_FRAMES
    assert all(len(r["faces"]) == 1 for r in lines)  # the astronaut's face, in every frame
    assert {r["faces"][0]["track"] for r in lines} == {1}
    x, y, w, h = lines[0]["faces"][0]["box"]
    assert 200 <= x <= 280 and 80 <= y <= 150 and 45 <= w <= 90  # where the face is (astronaut at x=120)
    p = lines[0]["faces"][0]["predictions"]
    assert set(p) == {"age", "gender", "emotion"} and p["gender"]["label"] in ("male", "female")

    report = json.loads((out / "k.report.json").read_text())
    t = report["totals"]
    assert t["visitors"] == 1 and sum(t["by_gender"].values()) == 1 and sum(t["by_emotion"].values()) == 1
    assert sum(t["by_age_band"].values()) == 1
    assert t["mean_dwell_s"] == pytest.approx(KIOSK_FRAMES / KIOSK_FPS, abs=0.15)  # the clip is 2 s long
    assert report["trained_on_faces"] and report["notice"] is None and report["frames"] == KIOSK_FRAMES
    rows = list(csv.DictReader((out / "k.report.csv").open()))
    assert len(rows) == 1 and rows[0]["visitor"] == "1" and float(rows[0]["dwell_s"]) == pytest.approx(2.0, abs=0.15)
    assert rows[0]["age_band"] == age_band(float(rows[0]["age"])) and rows[0]["gender"] in ("male", "female")
    assert summary["face_detections"] == KIOSK_FRAMES and summary["fps"] > 0
    assert summary["latency_ms"]["inference_p50"] > 0
    # full scans every 5th frame, between them a search around the tracked face only
    assert report["full_scans"] == KIOSK_FRAMES // 5 and {"detect", "detect_near"} <= set(summary["stages"])
    assert summary["stages"]["detect_near"]["calls"] == KIOSK_FRAMES - KIOSK_FRAMES // 5


def test_annotated_video_overlays_and_privacy(kiosk_run):
    out, _ = kiosk_run
    written = read_video(out / "k.mp4")
    assert len(written) == KIOSK_FRAMES and written[0].shape == (H, W, 3)
    source = face_frames()
    diff = np.abs(written[10].astype(int) - source[10].astype(int)).max(axis=2)
    assert (diff[-120:, -220:] > 60).mean() > 0.3  # the analytics panel, bottom right
    assert (diff[:30, -250:] > 60).mean() > 0.2  # FPS / latency, top right
    # faces are pixelated in the written video: the face changed far more than an unannotated region
    x, y, w, h = json.loads((out / "k.jsonl").read_text().splitlines()[10])["faces"][0]["box"]
    face = diff[y + 4:y + h - 4, x + 4:x + w - 4].mean()
    assert face > 3 * diff[300:400, 150:250].mean() and face > 15
    assert images_under(out) == []  # privacy: no face image written without --save-crops


def test_save_crops_and_show_faces(face_model, kiosk_video, tmp_path):
    crops = tmp_path / "crops"
    assert main(["demo", "kiosk", "-m", str(face_model), "--source", str(kiosk_video), "--headless", "--out",
                 str(tmp_path / "o" / "k.mp4"), "--save-crops", str(crops), "--show-faces", "--every", "3",
                 "--max-frames", "12", "--quiet"]) == 0
    saved = sorted(p.name for p in images_under(tmp_path))
    assert saved == [f"visitor0001_frame{i:06d}.jpg" for i in (0, 3, 6, 9)]
    assert all(p.parent == crops for p in images_under(tmp_path))
    report = json.loads((tmp_path / "o" / "k.report.json").read_text())
    assert report["processed_frames"] == 4 and report["crops_saved"] == 4 and report["totals"]["visitors"] == 1


def test_model_not_trained_on_faces_says_so(digits_onnx, kiosk_video, tmp_path, capsys):
    report = tmp_path / "r" / "day1"
    assert main(["demo", "kiosk", "-m", str(digits_onnx), "--source", str(kiosk_video), "--headless", "--out",
                 str(tmp_path / "k.mp4"), "--report", str(report), "--max-frames", "6"]) == 0
    assert "notice: model.onnx: model not trained on faces" in capsys.readouterr().err
    data = json.loads((tmp_path / "r" / "day1.json").read_text())
    assert not data["trained_on_faces"] and "not trained on faces" in data["notice"]
    assert data["heads"] == ["digit"] and "by_digit" in data["totals"]
    frame = read_video(tmp_path / "k.mp4")[3]
    banner = frame[-40:, :250]  # the red notice banner, bottom left
    assert ((banner[:, :, 2] > 150) & (banner[:, :, 0] < 100)).mean() > 0.3


def test_no_face_no_visitor(face_model, empty_video, tmp_path):
    summary = run_kiosk(face_model, str(empty_video), headless=True, out=tmp_path / "e.mp4", verbose=False)
    assert summary["face_detections"] == 0 and summary["totals"]["visitors"] == 0
    assert summary["latency_ms"]["inference_p50"] is None
    assert list(csv.reader((tmp_path / "e.report.csv").open())) == [["visitor", "first_s", "last_s", "dwell_s",
                                                                      "detections"]]


@pytest.mark.parametrize("argv, message", [
    (["-m", "/no/faces.onnx"], "model file not found"),
    (["--source", "/no/store.mp4"], "source not found"),
    (["--source", "98"], "camera 98 cannot be opened"),
    (["--detector", "/no/yunet.onnx"], "face detector file not found: /no/yunet.onnx"),
    (["--scan-every", "0"], "--scan-every must be at least 1, got --scan-every 0"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, face_model, kiosk_video, tmp_path, capsys):
    args = {"-m": str(face_model), "--source": str(kiosk_video), "--out": str(tmp_path / "o.mp4"), **dict([argv])}
    assert main(["demo", "kiosk", "--headless", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_options_object_and_keyword_overrides(face_model, kiosk_video, tmp_path):
    """Python users pass one KioskOptions (reusable across sources); keywords override single fields."""
    opts = KioskOptions(headless=True, out=tmp_path / "k.mp4", every=2, verbose=False)
    summary = run_kiosk(face_model, str(kiosk_video), opts, max_frames=6, margin=0.0)
    assert summary["frames"] == 6 and summary["processed"] == 3 and summary["every"] == 2
    with pytest.raises(ConfigError, match="kiosk: every, min_hits must be at least 1, got every=0, min_hits=0"):
        KioskOptions(every=0, min_hits=0)
    with pytest.raises(ConfigError, match="margin must be 0 or more"):
        run_kiosk(face_model, str(kiosk_video), opts, margin=-0.1)


def test_tracker_ids_min_hits_and_expiry():
    tr = IoUTracker(min_hits=2, max_missed=1)
    a, b = (10, 10, 50, 50), (300, 10, 50, 50)
    t1 = tr.update([a], 0.0)[0]
    assert not tr.is_visitor(t1) and tr.visitors() == []
    t1b, t2 = tr.update([(12, 10, 50, 50), b], 0.1)
    assert t1b is t1 and t2.id == 2 and tr.is_visitor(t1)
    tr.update([], 0.2)
    tr.update([], 0.3)  # a missed twice: ended; b (one hit) is dropped, never a visitor
    assert tr.active == [] and [t.id for t in tr.visitors()] == [1]
    assert tr.update([a], 0.4)[0].id == 3  # a new visitor, not the old track


def test_age_bands():
    assert [age_band(a) for a in (-3, 5, 17.4, 18, 29, 30, 44, 45, 59.6, 60, 90)] == [
        "0-17", "0-17", "0-17", "18-29", "18-29", "30-44", "30-44", "45-59", "60+", "60+", "60+"]
