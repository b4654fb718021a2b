"""Does a kiosk left on all day keep its memory flat? ``edgekit demo kiosk --headless`` on a long video,
its RSS sampled from /proc while it runs.

The video (made here, no download): scikit-image's astronaut, her face drifting slowly across a
320x240 frame, ``--minutes`` long at 15 fps, so one face is tracked throughout. The kiosk runs in its
own process; every ``--every`` seconds this script reads that process's RSS and how many frames the
JSON-lines log holds, then reports the RSS at the start, middle and end and the growth per frame over
the second half (a least-squares slope)::

    python tools/kiosk_memory.py --model runs/export/faces/model.onnx --minutes 20
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer


def make_video(path: Path, minutes: float, fps: int = 15, size: tuple[int, int] = (320, 240)) -> int:
    import cv2
    from skimage import data

    face = cv2.cvtColor(data.astronaut()[30:230, 130:330], cv2.COLOR_RGB2BGR)  # her head and shoulders
    face = cv2.resize(face, (120, 120), interpolation=cv2.INTER_AREA)
    frames = int(minutes * 60 * fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    w, h = size
    for i in range(frames):
        frame = np.full((h, w, 3), 90, np.uint8)
        x = int((w - 120) * (0.5 + 0.4 * np.sin(i / 600)))
        frame[60:180, x:x + 120] = face
        writer.write(frame)
    writer.release()
    return frames


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


def main(model: Annotated[Path, typer.Option(help="An exported model (.onnx, .tflite).")],
         minutes: Annotated[float, typer.Option(help="Video length at 15 fps.")] = 20.0,
         every: Annotated[float, typer.Option(help="Seconds between RSS samples.")] = 2.0,
         work: Annotated[Path | None, typer.Option(help="Folder for the video and the kiosk's outputs.")] = None,
         json_out: Annotated[Path | None, typer.Option("--json", help="Also write the samples here.")] = None) -> None:
    """Run the kiosk on a long video and report its RSS over time."""
    work = work or Path(tempfile.mkdtemp(prefix="edgekit-kiosk-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    video = work / "long.mp4"
    t0 = time.perf_counter()
    frames = make_video(video, minutes)
    typer.echo(f"video: {frames} frames ({minutes:g} min at 15 fps) in {time.perf_counter() - t0:.0f} s")
    out = work / "annotated.mp4"
    log = work / "kiosk.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "demo", "kiosk", "-m", str(model), "--source",
                             str(video), "--headless", "--out", str(out), "--log", str(log), "--quiet"])
    samples = []
    start = time.perf_counter()
    while proc.poll() is None:
        mb = rss_mb(proc.pid)
        if mb is not None:
            samples.append((time.perf_counter() - start, lines(log), mb))
        time.sleep(every)
    if proc.returncode != 0:
        raise typer.Exit(proc.returncode)
    wall = time.perf_counter() - start
    arr = np.asarray([s for s in samples if s[1] > 0], dtype=float)
    half = arr[arr[:, 1] >= arr[-1, 1] / 2]
    slope = float(np.polyfit(half[:, 1], half[:, 2], 1)[0]) * 1024  # KB per frame
    picks = {f"rss_at_{int(p * 100)}pct_mb": float(arr[min(len(arr) - 1, int(p * (len(arr) - 1))), 2])
             for p in (0.1, 0.5, 1.0)}
    summary = {"frames": frames, "wall_s": round(wall, 1), "fps": round(frames / wall, 1), "samples": len(arr),
               **picks, "growth_kb_per_frame_second_half": round(slope, 3),
               "growth_mb_per_hour_at_15fps": round(slope * 15 * 3600 / 1024, 2)}
    typer.echo(json.dumps(summary, indent=2))
    if json_out:
        json_out.write_text(json.dumps({**summary, "trace": arr.tolist()}, indent=2))


if __name__ == "__main__":
    typer.run(main)
