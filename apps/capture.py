"""Frame sources for the demos: a camera index, a video file or a folder of images (OpenCV).

Every source yields :class:`Frame` (index, time in seconds, BGR image) and never hangs: a camera
that cannot be opened fails after ``open_tries`` attempts; a camera that stops delivering frames
is reopened with exponential backoff, ``reconnect_tries`` times, then fails with a message; video
files and folders simply end. :class:`Prefetch` decodes the next frames in a thread (OpenCV
releases the GIL while decoding), so decoding overlaps inference.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.apps.timing import Durations
from edgekit.errors import EdgekitError, option
from edgekit.runtime.preprocess import IMAGE_SUFFIXES, InputError, read_image
from edgekit.runtime.video import VIDEO_SUFFIXES, video_frames

FOLDER_FPS = 30.0  # nominal frame rate of an image folder (times, dwell, output video)


class CaptureError(EdgekitError):
    """A camera that cannot be opened or stopped delivering frames."""


@dataclass
class Frame:
    index: int
    time: float  # seconds from the start: position in a video, wall clock for a camera
    image: np.ndarray  # HxWx3 uint8 BGR


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class CameraSource:
    """A live camera (``cv2.VideoCapture(index)``), reopened with backoff when it drops."""

    live = True

    def __init__(self, index: int, open_tries: int = 3, reconnect_tries: int = 5, backoff: float = 0.5,
                 factory: Callable[[int], Any] | None = None, sleep: Callable[[float], None] | None = None,
                 say: Callable[[str], None] = _say) -> None:
        import cv2

        self.index, self.reconnect_tries, self.backoff = index, reconnect_tries, backoff
        self.name = f"camera {index}"
        self._factory = factory or cv2.VideoCapture
        self._sleep, self._say = sleep or time.sleep, say
        self.reconnects = 0
        self.cap = None
        for attempt in range(open_tries):
            cap = self._factory(index)
            if cap is not None and cap.isOpened():
                self.cap = cap
                break
            _release(cap)
            if attempt + 1 < open_tries:
                self._sleep(backoff)
        if self.cap is None:
            raise CaptureError(f"camera {index} cannot be opened (tried {open_tries} times): is it connected and "
                               f"free? Give {option('source')} a video file or an image folder instead")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0

    def __iter__(self) -> Iterator[Frame]:
        start, index = time.monotonic(), 0
        failed = 0  # reconnect attempts since the last frame: a camera that reopens but never delivers ends too
        while True:
            ok, image = self.cap.read() if self.cap is not None else (False, None)
            if not ok or image is None or image.size == 0:
                failed = self._reconnect(failed)
                continue
            failed = 0
            yield Frame(index, time.monotonic() - start, image)
            index += 1

    def _reconnect(self, failed: int = 0) -> int:
        """Reopen the camera: up to ``reconnect_tries`` attempts since the last good frame, waiting
        backoff, 2x backoff, ... (at most 8 s). Returns the attempts used so far."""
        _release(self.cap)
        self.cap = None
        for attempt in range(failed, self.reconnect_tries):
            wait = min(8.0, self.backoff * 2 ** attempt)
            self._say(f"warning: {self.name} stopped delivering frames; reconnecting in {wait:.1f} s "
                      f"(attempt {attempt + 1}/{self.reconnect_tries})")
            self._sleep(wait)
            cap = self._factory(self.index)
            if cap is not None and cap.isOpened():
                self.cap = cap
                self.reconnects += 1
                return attempt + 1
            _release(cap)
        raise CaptureError(f"{self.name} disconnected: no frames after {self.reconnect_tries} reconnect attempts")

    def close(self) -> None:
        _release(self.cap)
        self.cap = None


class VideoSource:
    """A video file, frame by frame; times come from its frame rate."""

    live = False

    def __init__(self, path: Path) -> None:
        import cv2

        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise InputError(f"cannot open video {path} (not a video, or a codec OpenCV lacks)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        cap.release()
        self.path, self.name = path, str(path)
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0

    def __iter__(self) -> Iterator[Frame]:
        for index, image in video_frames(self.path):
            yield Frame(index, index / self.fps, image)

    def close(self) -> None:
        pass


class FolderSource:
    """Images of a folder (or one image) in name order, as frames at a nominal frame rate."""

    live = False

    def __init__(self, path: Path, fps: float = FOLDER_FPS, say: Callable[[str], None] = _say) -> None:
        self.files = (sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir()
                      else [path])
        if not self.files:
            raise InputError(f"{path} has no images ({', '.join(IMAGE_SUFFIXES)})")
        self.name, self.fps, self._say = str(path), fps, say

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for f in self.files:
            try:
                image = read_image(f)
            except InputError as exc:  # one bad file in a folder: say so and go on
                self._say(f"warning: {exc}")
                continue
            yield Frame(index, index / self.fps, image)
            index += 1
        if index == 0:
            raise InputError(f"no readable image in {self.name}")

    def close(self) -> None:
        pass


Source = CameraSource | VideoSource | FolderSource


def open_source(source: str | int | Path, open_tries: int = 3, reconnect_tries: int = 5, backoff: float = 0.5,
                factory: Callable[[int], Any] | None = None) -> Source:
    """``0`` (a camera index), a video file, an image folder or one image."""
    text = str(source).strip()
    if text.isdigit():
        return CameraSource(int(text), open_tries, reconnect_tries, backoff, factory)
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"source not found: {text} (give a camera index such as 0, a video file or an image folder)")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource(path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(path)
    raise InputError(f"{path} is not a video ({', '.join(VIDEO_SUFFIXES)}), an image or a folder")


class Prefetch:
    """Iterate ``frames`` in a background thread, ``depth`` frames ahead; ``decode_s`` aggregates the
    time spent decoding each frame (it overlaps the consumer's work). Errors are re-raised here."""

    _END = object()

    def __init__(self, frames: Iterator[Frame], depth: int = 4) -> None:
        self.decode_s = Durations()
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(iter(frames),), daemon=True)
        self._thread.start()

    def _work(self, it: Iterator[Frame]) -> None:
        timed = _timed(it, self.decode_s)
        try:
            while not self._stop.is_set():
                item = next(timed, self._END)
                if item is self._END:
                    break
                self._put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
        finally:
            timed.close()  # releases the source's capture now, in this thread
            if hasattr(it, "close"):  # also when the source was never started
                it.close()
        self._put(self._END)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Direct:
    """The same interface as :class:`Prefetch`, decoding in the caller's thread."""

    def __init__(self, frames: Iterator[Frame]) -> None:
        self.decode_s = Durations()
        self._frames = frames

    def __iter__(self) -> Iterator[Frame]:
        yield from _timed(self._frames, self.decode_s)

    def close(self) -> None:
        pass


def _timed(frames: Iterator[Frame], spent: Durations) -> Iterator[Frame]:
    """``frames``, adding to ``spent`` how long each frame took to produce (its decoding); the
    source is closed when this generator is."""
    it = iter(frames)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            spent.add(time.perf_counter() - t0)
            yield item
    finally:
        if hasattr(it, "close"):
            it.close()


def _release(cap: Any) -> None:
    if cap is not None and hasattr(cap, "release"):
        cap.release()
