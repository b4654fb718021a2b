"""Frame sources: camera open/reconnect with a fake capture (no real camera), videos, folders."""

import numpy as np
import pytest

from edgekit.apps import capture
from edgekit.apps.capture import CameraSource, CaptureError, FolderSource, Prefetch, open_source
from edgekit.runtime.preprocess import InputError


class FakeCapture:
    """cv2.VideoCapture stand-in: ``frames`` good reads, then failed reads (a camera that dropped)."""

    def __init__(self, opened: bool = True, frames: int = 3) -> None:
        self.opened, self.left, self.released = opened, frames, False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self):
        if self.left > 0:
            self.left -= 1
            return True, np.zeros((4, 6, 3), np.uint8)
        return False, None

    def get(self, prop) -> float:
        return 25.0

    def release(self) -> None:
        self.released = True


def camera(captures, **kw):
    """A CameraSource whose successive opens return ``captures``; sleeps are recorded, not slept."""
    sleeps, opened = [], []

    def factory(index):
        cap = captures.pop(0) if captures else FakeCapture(opened=False)
        opened.append(cap)
        return cap

    src = CameraSource(0, factory=factory, sleep=sleeps.append, say=lambda msg: None, **kw)
    return src, sleeps, opened


def test_camera_that_cannot_open_fails_after_bounded_tries():
    with pytest.raises(CaptureError, match="camera 0 cannot be opened \\(tried 3 times\\)"):
        camera([FakeCapture(opened=False)] * 3)
    _, sleeps, opened = camera([FakeCapture(opened=False), FakeCapture(frames=1)])
    assert len(opened) == 2 and sleeps == [0.5]  # the second try worked


def test_camera_that_drops_is_reconnected_with_backoff():
    src, sleeps, opened = camera([FakeCapture(frames=2), FakeCapture(opened=False), FakeCapture(frames=3)],
                                 reconnect_tries=4, backoff=0.25)
    assert src.fps == 25.0
    frames = []
    with pytest.raises(CaptureError, match="camera 0 disconnected: no frames after 4 reconnect attempts"):
        for f in src:
            frames.append(f.index)
    assert frames == [0, 1, 2, 3, 4]  # 2 frames, reconnect (2nd attempt), 3 more frames, then gone for good
    assert src.reconnects == 1
    assert sleeps == [0.25, 0.5, 0.25, 0.5, 1.0, 2.0]  # backoff doubles within each reconnection
    assert all(c.released for c in opened[:-1])


def test_sources_from_text(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="source not found: nope.mp4"):
        open_source("nope.mp4")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="is not a video"):
        open_source(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="has no images"):
        open_source(tmp_path)
    monkeypatch.setattr(capture, "CameraSource", lambda index, *a: ("camera", index))
    assert open_source(" 2 ") == ("camera", 2)


def test_folder_skips_unreadable_images(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8, 3), 7, np.uint8))
    (tmp_path / "b.png").write_bytes(b"not a png")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((8, 8, 3), 9, np.uint8))
    said = []
    frames = list(FolderSource(tmp_path, say=said.append))
    assert [f.index for f in frames] == [0, 1] and frames[1].image[0, 0, 0] == 9
    assert frames[1].time == pytest.approx(1 / 30) and "b.png" in said[0]


def test_prefetch_passes_frames_and_errors_through():
    def frames():
        yield from range(5)
        raise CaptureError("camera 0 disconnected")

    reader = Prefetch(frames(), depth=2)
    got = []
    with pytest.raises(CaptureError, match="disconnected"):
        for f in reader:
            got.append(f)
    reader.close()
    assert got == [0, 1, 2, 3, 4] and len(reader.decode_s) == 5


def test_camera_that_reopens_but_never_delivers_ends():
    """Opens succeed, reads fail: the attempts add up across reopenings instead of looping forever."""
    src, sleeps, _ = camera([FakeCapture(frames=1)] + [FakeCapture(frames=0) for _ in range(10)], reconnect_tries=3)
    frames = []
    with pytest.raises(CaptureError, match="no frames after 3 reconnect attempts"):
        for f in src:
            frames.append(f.index)
    assert frames == [0] and len(sleeps) == 3
