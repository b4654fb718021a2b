"""Chromium, driven by Playwright for Python: where edgekit runs web bundles and checks their pages.

The browser is the system's Chromium (``apt-get install chromium``; another binary with
``EDGEKIT_CHROMIUM``), never a build Playwright downloads. It starts headless with a fresh profile
and no background traffic (no component updates, sync or first-run pages), so a check does the
same thing offline as online. ``camera`` plays a ``.y4m`` / ``.mjpeg`` file as the webcam;
``gpu`` leaves the GPU on (WebGPU) where the machine has one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgekit.errors import DependencyError, require

FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-default-apps", "--no-default-browser-check")
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str:
    """The Chromium binary: ``EDGEKIT_CHROMIUM``, else the first of chromium / google-chrome on PATH."""
    given = os.environ.get("EDGEKIT_CHROMIUM")
    if given:
        if not Path(given).is_file():
            raise DependencyError(f"EDGEKIT_CHROMIUM={given}: no such file")
        return given
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise DependencyError("running a web bundle needs Chromium: apt-get install chromium (or set EDGEKIT_CHROMIUM "
                          "to a Chrome/Chromium binary)")


_DRIVER: list = []  # Playwright's sync driver: one per process (a second one in the same thread is refused)


def driver():
    """Playwright's driver, started once and stopped at exit."""
    if not _DRIVER:
        import atexit

        sync_api = require("playwright.sync_api", "web")
        _DRIVER.append(sync_api.sync_playwright().start())
        atexit.register(lambda: _DRIVER and _DRIVER.pop().stop())
    return _DRIVER[0]


class Browser:
    """A headless Chromium with a fresh profile: ``page()`` opens a tab; ``close()`` ends it all."""

    def __init__(self, camera: str | Path | None = None, gpu: bool = False, headless: bool = True,
                 args: tuple[str, ...] = ()) -> None:
        flags = [f for f in FLAGS if not (gpu and f == "--disable-gpu")] + list(args)
        if gpu:
            flags += ["--enable-unsafe-webgpu", "--ignore-gpu-blocklist"]
        if camera is not None:
            if not Path(camera).is_file():
                raise DependencyError(f"fake camera file not found: {camera}")
            flags += ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                      f"--use-file-for-fake-video-capture={Path(camera).resolve()}"]
        self.executable = chromium_path()
        self._profile = tempfile.mkdtemp(prefix="edgekit-chromium-")
        try:
            self.context = driver().chromium.launch_persistent_context(
                self._profile, executable_path=self.executable, headless=headless, args=flags)
        except Exception as exc:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise DependencyError(f"could not start {self.executable}: {str(exc).strip().splitlines()[0]}") from None

    def page(self):
        return self.context.new_page()

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
