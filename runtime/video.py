"""Reading video files with OpenCV: every N-th frame, a frame count, or chosen frames (clips)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgekit.runtime.preprocess import InputError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def video_frames(path: str | Path, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) for every ``stride``-th frame of a video file."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {path}")
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % max(1, stride) == 0:
                yield index, frame
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise InputError(f"{path} has no readable frames")


def frame_count(path: str | Path) -> int | None:
    """Frames in a video (None when OpenCV cannot open it or it has none); counts when the container
    does not say."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
        return n or None
    finally:
        cap.release()


def read_frames(path: str | Path, indices: list[int]) -> list[np.ndarray]:
    """BGR frames ``indices`` (any order, repeats allowed) of a video, seeking once then reading on."""
    import cv2

    if not indices:
        return []
    wanted = sorted(set(indices))
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {path}")
    got: dict[int, np.ndarray] = {}
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, wanted[0])
        pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
        if pos != wanted[0]:  # a container that cannot seek: read from the start
            cap.release()
            cap, pos = cv2.VideoCapture(str(path)), 0
        while pos <= wanted[-1]:
            ok, frame = cap.read()
            if not ok:
                raise InputError(f"{path}: frame {pos} cannot be read (asked for frames up to {wanted[-1]})")
            if pos in got or pos in wanted:
                got[pos] = frame
            pos += 1
    finally:
        cap.release()
    return [got[i] for i in indices]
