"""The webcam demo, headless on a test video, through the runtime only."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgekit.cli import main

from .conftest import WEBCAM_FRAMES, H, W


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.tflite"])
def test_headless_run_writes_annotated_video_log_and_summary(name, exported, webcam_video, tmp_path, capsys):
    model = next(a.path for a in exported.artifacts if a.path.name == name)
    out = tmp_path / "out.mp4"
    assert main(["demo", "webcam", "-m", str(model), "--source", str(webcam_video), "--headless", "--out", str(out),
                 "--every", "2", "--topk", "2", "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"webcam: {WEBCAM_FRAMES} frames in" in printed and "FPS end to end" in printed

    written = read_video(out)
    assert len(written) == WEBCAM_FRAMES and written[0].shape == (H, W, 3)
    source = read_video(webcam_video)
    # the source is black along the top: labels (top left) and FPS / latency (top right) are drawn there
    assert source[5][:60].max() < 40
    assert (written[5][:60, :200].max(axis=2) > 150).sum() > 200
    assert (written[5][:30, -250:].max(axis=2) > 150).sum() > 200

    lines = [json.loads(x) for x in out.with_suffix(".jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(0, WEBCAM_FRAMES, 2))
    pred = lines[0]["predictions"]["digit"]
    assert pred["label"] in [str(i) for i in range(10)] and len(pred["top"]) == 2 and lines[0]["latency_ms"] > 0

    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["frames"] == WEBCAM_FRAMES and summary["inferred"] == WEBCAM_FRAMES // 2
    assert summary["fps"] > 0 and summary["latency_ms"]["inference_p50"] > 0
    assert {"decode", "preprocess", "inference", "overlay", "encode"} <= set(summary["stages_ms_per_frame"])
    assert summary["frame_size"] == [W, H] and summary["backend"] in ("onnxruntime", "tflite")


def test_max_frames_and_image_folder(digits_onnx, val_pngs, tmp_path):
    from edgekit.apps.webcam import run_webcam

    summary = run_webcam(digits_onnx, str(val_pngs), headless=True, out=tmp_path / "f.mp4", max_frames=5,
                         verbose=False)
    assert summary["frames"] == 5 and len(read_video(tmp_path / "f.mp4")) == 5


def test_window_without_display_is_a_clear_error(digits_onnx, webcam_video, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("platform.system", lambda: "Linux")
    assert main(["demo", "webcam", "-m", str(digits_onnx), "--source", str(webcam_video)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no display") and "--headless" in err and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["-m", "/no/model.onnx"], "model file not found: /no/model.onnx"),
    (["--source", "/no/clip.mp4"], "source not found: /no/clip.mp4"),
    (["--source", "97"], "camera 97 cannot be opened"),
    (["--every", "0"], "at least 1"),
    (["--out", "x.avi"], "--out must be an .mp4 file"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, digits_onnx, webcam_video, tmp_path, capsys):
    args = {"-m": str(digits_onnx), "--source": str(webcam_video), "--out": str(tmp_path / "o.mp4")}
    for i in range(0, len(argv), 2):
        args[argv[i]] = argv[i + 1]
    assert main(["demo", "webcam", "--headless", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_demo_help_has_examples_and_no_torch(capsys):
    for command in ("webcam", "kiosk"):
        assert main(["demo", command, "--help"]) == 0
        assert "Examples" in capsys.readouterr().out
    code = ("import sys; from edgekit.cli import main; main(['demo', '--help']); "
            "import edgekit.apps.webcam, edgekit.apps.kiosk; sys.exit(3 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_camera_that_drops_keeps_the_recording_and_exits_2(digits_onnx, tmp_path, monkeypatch, capsys):
    """A fake camera 0: 5 frames, then nothing, and every reopen fails -> bounded retries, one-line error."""
    from edgekit.apps import capture

    class Camera:
        opens = 0

        def __init__(self, index):
            Camera.opens += 1
            self.left = 5 if Camera.opens == 1 else 0

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return self.left > 0

        def read(self):
            self.left -= 1
            return (True, np.full((H, W, 3), 40, np.uint8)) if self.left >= 0 else (False, None)

        def get(self, prop):
            return 30.0

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Camera)  # CameraSource opens cv2.VideoCapture(0)
    monkeypatch.setattr(capture.time, "sleep", lambda s: None)
    out = tmp_path / "cam.mp4"
    assert main(["demo", "webcam", "-m", str(digits_onnx), "--source", "0", "--headless", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("reconnecting in") == 5
    assert err.strip().splitlines()[-1] == "error: camera 0 disconnected: no frames after 5 reconnect attempts"
    monkeypatch.undo()  # read_video needs the real cv2.VideoCapture
    assert len(read_video(out)) == 5 and Camera.opens == 6
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["frames"] == 5 and "disconnected" in summary["error"]


def test_clip_model_classifies_a_sliding_window(clip_run, webcam_video, tmp_path):
    """A clip model (4 frames) sees the last 4 sampled frames; nothing is predicted before it has 4."""
    from edgekit.apps.webcam import run_webcam
    from edgekit.export.exporter import export_checkpoint

    model = export_checkpoint(clip_run.run_dir / "best.pt", ["onnx"], tmp_path / "clip", verify=False,
                              verbose=False).artifacts[0].path
    summary = run_webcam(model, str(webcam_video), headless=True, out=tmp_path / "c.mp4", every=2, verbose=False)
    lines = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(6, WEBCAM_FRAMES, 2))  # sampled frames 0, 2, 4, 6 fill it
    assert lines[0]["predictions"]["direction"]["label"] in ("right", "left", "down", "up")
    assert summary["bad_frames"] == 0 and summary["inferred"] == len(lines)
