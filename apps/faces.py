"""Face detection for the kiosk: OpenCV's bundled Haar cascade, or a YuNet ``.onnx`` the user gives.

The Haar cascade runs on a grey copy of the frame scaled to ``detect_width`` pixels wide (640x480
at full size costs ~70 ms on one core, at 320 wide ~15-30 ms) and boxes are scaled back. Between
full scans the kiosk searches only around the faces it tracks (``detect(frame, near=boxes)``).
YuNet goes through ``cv2.FaceDetectorYN`` (no extra package). Boxes are ``(x, y, w, h)`` ints in
frame pixels, with a score (1.0 for Haar, which has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgekit.apps.tracking import iou
from edgekit.errors import EdgekitError, option

HAAR_FILE = "haarcascade_frontalface_default.xml"


class DetectorError(EdgekitError):
    """A face detector that cannot be loaded."""


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    score: float = 1.0


class HaarDetector:
    name = "haar"
    searches_near = True  # detect(frame, near=boxes) is supported

    def __init__(self, detect_width: int = 320, scale_factor: float = 1.1, min_neighbors: int = 4,
                 min_size: int = 24) -> None:
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise DetectorError("this OpenCV has no Haar cascades (opencv-python 5 dropped them): "
                                f"pip install 'opencv-python>=4.10,<5', or pass {option('detector', 'yunet.onnx')}")
        path = Path(cv2.data.haarcascades) / HAAR_FILE
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise DetectorError(f"cannot load OpenCV's Haar cascade {path}")
        self.detect_width, self.scale_factor = detect_width, scale_factor
        self.min_neighbors, self.min_size = min_neighbors, min_size

    def detect(self, frame: np.ndarray, near: list[tuple[int, int, int, int]] | None = None) -> list[Face]:
        """Faces in the whole frame, or with ``near`` only around those boxes (faces seen in the last
        frame) at sizes close to theirs: a few ms instead of a full scan's tens of ms."""
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if near is not None:
            return _dedupe([f for box in near for f in self._detect_near(grey, box)])
        return self._scan(grey, 0, 0, self.detect_width, self.min_size, None)

    def _scan(self, grey: np.ndarray, x0: int, y0: int, width: int, min_size: int,
              max_size: int | None) -> list[Face]:
        scale = min(1.0, width / grey.shape[1])
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self.cascade.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(min_size, min_size),
                                              maxSize=(max_size, max_size) if max_size else (0, 0))
        return [Face((x0 + int(round(x / scale)), y0 + int(round(y / scale)), int(round(w / scale)),
                      int(round(h / scale)))) for x, y, w, h in (found if len(found) else [])]

    def _detect_near(self, grey: np.ndarray, box: tuple[int, int, int, int]) -> list[Face]:
        x, y, w, h = box
        pad = max(w, h) // 2
        x0, y0 = max(0, x - pad), max(0, y - pad)
        roi = grey[y0:min(grey.shape[0], y + h + pad), x0:min(grey.shape[1], x + w + pad)]
        # scale the region so the face is ~2x the cascade's smallest window, search sizes 0.7x-1.4x
        scale = min(1.0, 2 * self.min_size / max(1, w))
        size = max(w, h) * scale
        return self._scan(roi, x0, y0, int(roi.shape[1] * scale), max(self.min_size, int(0.7 * size)),
                          int(1.4 * size) + 1)


class YuNetDetector:
    name = "yunet"
    searches_near = False

    def __init__(self, path: str | Path, score_threshold: float = 0.7) -> None:
        path = Path(path)
        if not path.is_file():
            raise DetectorError(f"face detector file not found: {path}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorError("this OpenCV has no cv2.FaceDetectorYN (needs opencv-python>=4.5.4)")
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold)
        except cv2.error as exc:
            raise DetectorError(f"{path} is not a YuNet face detector OpenCV can load "
                                f"({str(exc).strip().splitlines()[-1]})") from None
        self._size: tuple[int, int] | None = None
        self.name = f"yunet:{path.name}"

    def detect(self, frame: np.ndarray) -> list[Face]:
        size = (frame.shape[1], frame.shape[0])
        if size != self._size:
            self.net.setInputSize(size)
            self._size = size
        _, found = self.net.detect(frame)
        if found is None:
            return []
        return [Face((int(f[0]), int(f[1]), int(f[2]), int(f[3])), float(f[-1])) for f in found]


def _dedupe(faces: list[Face], overlap: float = 0.5) -> list[Face]:
    """One face per place when the regions of two nearby boxes found the same face."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.box[2] * f.box[3]):
        if all(iou(f.box, k.box) < overlap for k in kept):
            kept.append(f)
    return kept


def make_detector(path: str | Path | None = None) -> HaarDetector | YuNetDetector:
    """The Haar cascade (default) or a YuNet model file."""
    return HaarDetector() if path is None else YuNetDetector(path)


def crop(frame: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.2) -> np.ndarray:
    """A square crop around ``box`` grown by ``margin`` of its size per side, clipped to the frame."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(frame.shape[1], cx + side / 2)), int(min(frame.shape[0], cy + side / 2))
    return frame[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
