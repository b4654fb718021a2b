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


def clip_frames(path: str | Path, count: int) -> tuple[list[np.ndarray], int]:
    """``count`` frames spread over a whole video (the centre of each of ``count`` equal segments, as training
    forms clips) and the number of frames it has. Containers often report more frames than they hold: when a
    frame past the real end cannot be read, the frames are counted by reading and the clip is taken again."""
    from edgekit.card import clip_frame_indices

    n = frame_count(path)
    if n is None:
        raise InputError(f"cannot read video {path}")
    try:
        return read_frames(path, clip_frame_indices(0, n - 1, count)), n
    except InputError:
        real = count_frames(path)
        if not real or real >= n:
            raise
        return read_frames(path, clip_frame_indices(0, real - 1, count)), real


def count_frames(path: str | Path) -> int:
    """Frames a video really holds, by reading them (slow, exact)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.isOpened() and cap.grab():
            n += 1
    finally:
        cap.release()
    return n


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
