"""Screenshots of the two browser pages for the README, in headless Chromium (what a person sees).

- the model page of a web bundle on a fake webcam: a clip made here from scikit-image's photos (or the
  digits), played by Chromium as the camera (``--use-file-for-fake-video-capture``);
- the kiosk dashboard during a kiosk run on a video made here (scikit-image's astronaut walking in,
  staying and leaving, twice), with a face model of yours::

    python tools/web_screenshots.py page runs/export/photos-m0/model.int8.web docs/img/web-page.png
    python tools/web_screenshots.py dashboard faces.onnx docs/img/kiosk-dashboard.png
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)
W, H = 640, 480


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """RGB frames as a 4:2:0 YUV4MPEG2 file (Chromium's fake camera format)."""
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{W} H{H} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for f in frames:
            fh.write(b"FRAME\n" + cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def photo_frames() -> list[np.ndarray]:
    from skimage import data

    frames = []
    for name in ("chelsea", "astronaut", "coffee", "rocket"):
        img = getattr(data, name)()
        img = np.dstack([img] * 3) if img.ndim == 2 else img[:, :, :3]
        scale = max(W / img.shape[1], H / img.shape[0])
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        y, x = (img.shape[0] - H) // 2, (img.shape[1] - W) // 2
        frames += [np.ascontiguousarray(img[y:y + H, x:x + W])] * 20
    return frames


@app.command()
def page(bundle: Path, out: Path, seconds: Annotated[float, typer.Option(help="Camera time before the shot.")] = 6.0,
         backend: str = "wasm") -> None:
    """The model page of ``bundle`` on a fake camera (scikit-image photos), after ``seconds``."""
    from edgekit.runtime.browser import Browser
    from edgekit.runtime.web import WebPage

    clip = write_y4m(out.with_suffix(".y4m"), photo_frames())
    with Browser(camera=clip) as browser:
        page = WebPage(bundle, backend, None, query="source=camera", browser=browser)
        page.page.set_viewport_size({"width": 1180, "height": 640})
        page.page.wait_for_function("window.edgekitState.frames >= 10", timeout=120000)
        time.sleep(seconds)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(out))
        state = page.page.evaluate("({frames: window.edgekitState.frames, last: window.edgekitState.last, "
                                   "info: window.edgekitState.info})")
        page.close()
    clip.unlink()
    typer.echo(f"{out}: {state['frames']} frames, {state['info']['backend']} {state['info']['threads']} threads, "
               f"last {state['last']}")


def visitor_video(path: Path, fps: float = 15.0) -> Path:
    """The astronaut walks in, stays about 3 s and leaves; an empty scene; again (two visitors)."""
    from skimage import data

    person = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (300, 300), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    for visit in range(2):
        for i in range(75):
            f = np.full((H, W, 3), 120 + 20 * visit, np.uint8)
            x = -300 + min(i, 25) * 16 + max(0, i - 50) * 16 + 60 * visit
            if -300 < x < W:
                a, b = max(0, x), min(W, x + 300)
                f[90:390, a:b] = person[:, a - x:b - x]
            writer.write(f)
        for _ in range(20):
            writer.write(np.full((H, W, 3), 120, np.uint8))
    writer.release()
    return path


@app.command()
def dashboard(model: Path, out: Path, at: Annotated[int, typer.Option(help="Dashboard updates before the shot.")]
              = 6) -> None:
    """The kiosk dashboard while the kiosk runs ``model`` on a made-up visitor video."""
    import tempfile

    from edgekit.apps.dashboard import Dashboard
    from edgekit.apps.kiosk import run_kiosk
    from edgekit.runtime.browser import Browser

    work = Path(tempfile.mkdtemp(prefix="edgekit-dashboard-"))
    video = visitor_video(work / "visitors.mp4")
    board = Dashboard(0)
    url = board.start()
    result: dict = {}

    def kiosk() -> None:
        def slow(state: dict) -> None:  # at the video's own pace, so the page can be seen mid-run
            board.publish(state)
            time.sleep(0.15)

        result["summary"] = run_kiosk(model, str(video), headless=True, out=work / "annotated.mp4",
                                      report=work / "report", verbose=False, publish=slow)

    with Browser() as browser:
        page = browser.page()
        page.set_viewport_size({"width": 1180, "height": 560})
        page.goto(url)
        thread = threading.Thread(target=kiosk)
        thread.start()
        page.wait_for_function(f"window.dashboard.updates >= {at} && window.dashboard.state.visitors_now > 0",
                               timeout=300000)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        shown = page.evaluate("window.dashboard.state")
        thread.join()
        board.stop()
        page.close()
    typer.echo(f"{out}: shown {shown['totals']}, in view {shown['visitors_now']}; final {result['summary']['totals']} "
               f"(report: {work / 'report.json'})")


if __name__ == "__main__":
    app()
