"""Where annotated frames and records go: a video file, a window, a JSON-lines log.

The video is written to a hidden temporary file next to the target and renamed over it when
closed, so a reader never sees half a file under the final name (what was recorded before a
camera failed is still kept). Without a display, a window is a clear error that suggests
``--headless``, never a crash inside OpenCV.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgekit.errors import EdgekitError, option


class OutputError(EdgekitError):
    """An output (video file, window) that cannot be created."""


class VideoOut:
    """An mp4 (``mp4v``) of fixed size and rate; frames of another size are resized to it."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.size, self.frames = size, 0  # size: (width, height)
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self._writer.isOpened():
            raise OutputError(f"cannot write video {self.path} (mp4v at {size[0]}x{size[1]}): "
                              "check the folder and the extension (.mp4)")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; None when no frame was written."""
        if self._writer is None:
            return self.path if self.path.exists() else None
        self._writer.release()
        self._writer = None
        if self.frames == 0:
            self._tmp.unlink(missing_ok=True)
            return None
        os.replace(self._tmp, self.path)
        return self.path


def has_display() -> bool:
    """Whether a window can be shown: always on Windows/macOS, with DISPLAY or WAYLAND_DISPLAY on Linux."""
    if platform.system() != "Linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Window:
    """An OpenCV window; ``show`` returns False when the user pressed q / Esc or closed it."""

    def __init__(self, title: str) -> None:
        if not has_display():
            raise OutputError(f"no display to show a window (DISPLAY is not set): run with {option('headless', True)} "
                              f"(annotated video with {option('out')}, records with {option('log')})")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as exc:
            raise OutputError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}); "
                              f"run with {option('headless', True)}") from None

    def show(self, frame: np.ndarray) -> bool:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class JsonLines:
    """One JSON object per line, flushed as written (a log you can tail while the app runs)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding="utf-8")
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=_plain) + "\n")
        self._fh.flush()
        self.lines += 1

    def close(self) -> None:
        self._fh.close()


def _plain(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def plan_outputs(app: str, out: str | os.PathLike | None, log: str | os.PathLike | None,
                 headless: bool) -> tuple[Path | None, Path | None, Path]:
    """(annotated video, JSON-lines log, summary JSON) paths. Headless runs default to
    ``runs/demo/<app>/annotated.mp4`` with the log and summary beside it; a window run writes a
    video or a log only when asked."""
    folder = Path("runs") / "demo" / app
    video = Path(out) if out else (folder / "annotated.mp4" if headless else None)
    if video is not None and video.suffix.lower() != ".mp4":
        raise OutputError(f"{option('out')} must be an .mp4 file, got {video}")
    log_path = Path(log) if log else (video.with_suffix(".jsonl") if video is not None and headless else None)
    summary = video.with_suffix(".summary.json") if video is not None else folder / "summary.json"
    for path in (video, log_path, summary):  # before any frame is read: a run must not die at its end
        if path is not None:
            writable_folder(path)
    return video, log_path, summary


def writable_folder(path: Path) -> None:
    """Create ``path``'s folder, or an :class:`OutputError` naming why it cannot be written."""
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc} ({path.parent})") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write {path}: {path.parent} is not writable")
