"""The demo loop both apps share: frames in, an app's ``step`` annotates each, frames out.

The loop owns reading (prefetched in a thread), the annotated video, the window, live FPS, the
per-stage clock and the stop conditions (source ended, ``max_frames``, q/Esc, a camera that is
gone, Ctrl-C). A camera that fails mid-run does not lose the run: outputs are closed and the summary
written first, then the error is raised (the CLI prints it on one line).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.apps.capture import CaptureError, Direct, Frame, Prefetch, Source
from edgekit.apps.output import VideoOut, Window
from edgekit.apps.timing import FpsMeter, StageClock


@dataclass
class LoopResult:
    frames: int
    wall_s: float
    clock: StageClock
    video: Path | None = None
    error: CaptureError | None = None
    stopped_by_user: bool = False
    size: tuple[int, int] | None = None  # (width, height) of the frames
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def run_frames(source: Source, step: Callable[[Frame, float], None], clock: StageClock, *,
               video: Path | None = None, window: Window | None = None, max_frames: int | None = None,
               prefetch: bool = True) -> LoopResult:
    """Call ``step(frame, live_fps)`` on each frame (it draws on ``frame.image``), then write/show it."""
    reader = Prefetch(iter(source)) if prefetch else Direct(iter(source))
    writer: VideoOut | None = None
    frames, error, stopped, size = 0, None, False, None
    meter = FpsMeter()
    frames_iter = iter(reader)
    t0 = time.perf_counter()
    try:
        while max_frames is None or frames < max_frames:
            t_read = time.perf_counter()
            frame = next(frames_iter, None)
            clock.add("read", time.perf_counter() - t_read)
            if frame is None:
                break
            size = (frame.image.shape[1], frame.image.shape[0])
            step(frame, meter.tick())
            if video is not None:
                with clock("encode"):
                    if writer is None:
                        writer = VideoOut(video, source.fps, size)
                    writer.write(frame.image)
            frames += 1
            if window is not None:
                with clock("display"):
                    if not window.show(frame.image):
                        stopped = True
                        break
    except CaptureError as exc:  # the camera is gone: keep what was recorded, report, then fail
        error = exc
    except KeyboardInterrupt:  # Ctrl-C ends a camera run like q / Esc: outputs and summary are kept
        stopped = True
    finally:
        wall = time.perf_counter() - t0
        reader.close()
        source.close()
        written = writer.close() if writer is not None else None
        if window is not None:
            window.close()
    clock.stages["decode"] = reader.decode_s
    return LoopResult(frames=frames, wall_s=wall, clock=clock, video=written, error=error, stopped_by_user=stopped,
                      size=size)


def loop_summary(app: str, predictor: Any, source: Source, result: LoopResult, prefetch: bool) -> dict[str, Any]:
    """The numbers every demo reports: end-to-end FPS, model latency, where the time went."""
    clock = result.clock
    stages = clock.breakdown(result.frames)
    return {
        "app": app,
        "model": str(predictor.path),
        "backend": predictor.backend.name,
        "source": source.name,
        "source_fps": round(source.fps, 3),
        "frame_size": list(result.size) if result.size else None,
        "frames": result.frames,
        "wall_s": round(result.wall_s, 3),
        "fps": round(result.fps, 2),
        "latency_ms": {"inference_p50": clock.percentile_ms("inference", 50),
                       "inference_p90": clock.percentile_ms("inference", 90),
                       "preprocess_p50": clock.percentile_ms("preprocess", 50)},
        "stages_ms_per_frame": {k: v["ms_per_frame"] for k, v in stages.items()},
        "stages": stages,
        "decode_overlapped": prefetch,  # decoding ran in a reader thread, alongside the loop
        "video": str(result.video) if result.video else None,
        "stopped_by_user": result.stopped_by_user,
        "error": str(result.error) if result.error else None,
    }


def summary_line(summary: dict[str, Any]) -> str:
    """``webcam: 300 frames in 8.1 s = 37.0 FPS end to end; inference p50 2.1 ms; per frame: ...``."""
    lat = summary["latency_ms"]["inference_p50"]
    stages = " | ".join(f"{k} {v:.2f}" for k, v in summary["stages_ms_per_frame"].items())
    return (f"{summary['app']}: {summary['frames']} frames in {summary['wall_s']:.2f} s = {summary['fps']:.1f} FPS "
            f"end to end; inference p50 {lat if lat is not None else float('nan'):.2f} ms "
            f"({summary['backend']}); ms per frame: {stages}")
