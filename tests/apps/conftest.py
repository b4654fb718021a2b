"""Fixtures for the demo apps: test videos made here with cv2.VideoWriter, and a tiny face model
trained on UTKFace-named files + a fer2013.csv built from scikit-image's astronaut (a real face) by
tools/face_data.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
W, H = 640, 480
KIOSK_FRAMES, KIOSK_FPS = 30, 15.0  # a 2 s clip
WEBCAM_FRAMES, WEBCAM_FPS = 24, 24.0


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def astronaut_face() -> np.ndarray:
    """The astronaut's face with some margin (the Haar cascade finds it at x=177, y=66, 95x95)."""
    return astronaut_bgr()[40:190, 150:300]


def write_video(path, frames, fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def face_frames(n: int = KIOSK_FRAMES) -> list[np.ndarray]:
    """The astronaut (340x340) on a plain background, drifting right by 2 px per frame."""
    person = cv2.resize(astronaut_bgr(), (340, 340), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        f = np.full((H, W, 3), 110, np.uint8)
        x = 120 + 2 * i
        f[70:410, x:x + 340] = person
        frames.append(f)
    return frames


@pytest.fixture(scope="session")
def kiosk_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("kiosk_video") / "visitor.mp4"
    write_video(path, face_frames(), KIOSK_FPS)
    return path


@pytest.fixture(scope="session")
def empty_video(tmp_path_factory):
    """No face: a moving gradient."""
    path = tmp_path_factory.mktemp("empty_video") / "empty.mp4"
    ramp = np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))
    write_video(path, [np.dstack([np.roll(ramp, 8 * i, axis=1)] * 3) for i in range(12)], KIOSK_FPS)
    return path


@pytest.fixture(scope="session")
def webcam_video(tmp_path_factory):
    """Digits-like frames: a large white digit drawn on black, changing every 8 frames."""
    path = tmp_path_factory.mktemp("webcam_video") / "digits.mp4"
    frames = []
    for i in range(WEBCAM_FRAMES):
        f = np.zeros((H, W, 3), np.uint8)
        cv2.putText(f, str(i // 8), (220, 400), cv2.FONT_HERSHEY_SIMPLEX, 14, (255, 255, 255), 40)
        frames.append(f)
    write_video(path, frames, WEBCAM_FPS)
    return path


@pytest.fixture(scope="session")
def face_data(tmp_path_factory):
    """A UTKFace folder (age_gender_race_date.jpg.chip.jpg) and a fer2013.csv, 16 files: tools/face_data.py's
    (the astronaut's face and crops of other scikit-image photos), the data a user can make too."""
    spec = importlib.util.spec_from_file_location("face_data", ROOT / "tools" / "face_data.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.make_faces(tmp_path_factory.mktemp("faces"), n=16, seed=0)


@pytest.fixture(scope="session")
def face_model(face_data, tmp_path_factory):
    """A tiny age / gender / emotion model trained on ``face_data`` and exported to ONNX."""
    from edgekit.config import load_config
    from edgekit.export.exporter import export_checkpoint
    from edgekit.train.supervised import train

    utk, fer = face_data
    out = tmp_path_factory.mktemp("face_model")
    cfg = load_config(overrides={"model.arch": "test_efficientnet", "data.imgsz": 32, "train.epochs": 2,
                                 "train.batch_size": 32, "train.save_every": 0, "train.threads": 2,
                                 "data.source": f"{utk}/+{fer}", "out": str(out / "runs"), "name": "faces"})
    run = train(cfg, verbose=False)
    report = export_checkpoint(run.run_dir / "best.pt", targets=["onnx"], out_dir=out / "export", verbose=False)
    return report.artifacts[0].path


@pytest.fixture(scope="session")
def digits_onnx(exported):
    return next(a.path for a in exported.artifacts if a.path.name == "model.onnx")
