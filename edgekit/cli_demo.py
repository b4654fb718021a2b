"""``edgekit demo ...``: the apps, on exported models through edgekit.runtime (no torch).

Registered on the main app by :mod:`edgekit.cli`; like it, this imports only typer at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
demo_app = typer.Typer(help="Demos on exported models (no torch): a webcam classifier, a retail-kiosk "
                            "face analyzer, a sound tagger and the browser page of a web bundle.", no_args_is_help=True)

DemoModel = Annotated[Path, typer.Option("--model", "-m", help="Exported model: .onnx, .tflite, .xml (or .mlpackage).")]
DemoSource = Annotated[str, typer.Option(help="Camera index (0), a video file or a folder of images.")]
Headless = Annotated[bool, typer.Option("--headless", help="No window: write the annotated video, log and summary.")]
DemoOut = Annotated[Path | None, typer.Option(
    help="Annotated video (.mp4); default with --headless: runs/demo/APP/annotated.mp4.")]
DemoLog = Annotated[Path | None, typer.Option(help="JSON-lines log, one record per inference "
                                                   "(default with --headless: next to the video).")]
Every = Annotated[int, typer.Option(help="Run the model on every N-th frame (others reuse the last result).")]
Threads = Annotated[int | None, typer.Option(
    help="CPU threads of the backend (default: this machine's usable cores).")]
MaxFrames = Annotated[int | None, typer.Option(help="Stop after this many frames.")]
DemoDevice = Annotated[str, typer.Option(help="auto, cpu, cuda, mps; gpu or npu for OpenVINO.")]
Host = Annotated[str, typer.Option(help="Address to bind; another than 127.0.0.1 serves the network (said at start).")]


@demo_app.command(epilog="Examples:\n\n"
                  "  edgekit demo webcam --model model.int8.tflite                 # camera 0, in a window\n\n"
                  "  edgekit demo webcam -m model.int8.onnx --source clip.mp4 --headless --out out.mp4\n\n"
                  "  edgekit demo webcam -m model.onnx --source photos/ --headless --every 2 --topk 1")
def webcam(model: DemoModel, source: DemoSource = "0", headless: Headless = False, out: DemoOut = None,
           log: DemoLog = None, every: Every = 1,
           topk: Annotated[int, typer.Option(help="Labels shown per classification head.")] = 3,
           threads: Threads = None, device: DemoDevice = "auto", max_frames: MaxFrames = None,
           quiet: Quiet = False) -> None:
    """Classify camera / video / folder frames live: top-k labels, confidence, FPS and latency on each frame."""
    from edgekit.apps.webcam import run_webcam

    run_webcam(model, source, headless=headless, out=out, log=log, every=every, topk=topk, threads=threads,
               device=device, max_frames=max_frames, verbose=not quiet)


@demo_app.command(epilog="Examples:\n\n"
                  "  edgekit demo kiosk --model faces.onnx                          # camera 0, Haar cascade\n\n"
                  "  edgekit demo kiosk -m faces.int8.onnx --source store.mp4 --headless --report runs/kiosk/day1\n\n"
                  "  edgekit demo kiosk -m faces.onnx --detector face_detection_yunet_2023mar.onnx "
                  "--save-crops crops/")
def kiosk(model: DemoModel, source: DemoSource = "0", headless: Headless = False, out: DemoOut = None,
          log: DemoLog = None,
          report: Annotated[Path | None, typer.Option(
              help="Analytics report base path: writes PATH.json (totals, visitors) and PATH.csv (one row per "
                   "visitor); default next to the video.")] = None,
          detector: Annotated[Path | None, typer.Option(
              help="YuNet face detector .onnx (cv2.FaceDetectorYN); default: OpenCV's Haar cascade.")] = None,
          save_crops: Annotated[Path | None, typer.Option(
              help="Save each face crop here (off by default: no face image is written).")] = None,
          show_faces: Annotated[bool, typer.Option(
              "--show-faces", help="Do not pixelate faces in the written video.")] = False,
          every: Every = 1,
          scan_every: Annotated[int, typer.Option(
              help="Haar: scan the whole frame every N-th processed frame (new faces); in between, search only "
                   "around tracked faces.")] = 5,
          threads: Threads = None, device: DemoDevice = "auto", max_frames: MaxFrames = None,
          min_hits: Annotated[int, typer.Option(help="Detections before a tracked face counts as a visitor.")] = 3,
          dashboard: Annotated[int | None, typer.Option(help="Serve a live dashboard on this port (visitors, age "
                                                            "bands, gender, emotion, dwell, FPS, notices).")] = None,
          dashboard_host: Host = "127.0.0.1", quiet: Quiet = False) -> None:
    """Detect faces, estimate age / gender / emotion per face, count visitors and dwell time (report + panel)."""
    from edgekit.apps.dashboard import live_dashboard
    from edgekit.apps.kiosk import KioskOptions, run_kiosk

    with live_dashboard(dashboard, dashboard_host, lambda line: typer.echo(line, err=True)) as publish:
        run_kiosk(model, source, KioskOptions(
            headless=headless, out=out, log=log, report=report, detector=detector, save_crops=save_crops,
            show_faces=show_faces, every=every, scan_every=scan_every, min_hits=min_hits, threads=threads,
            device=device, max_frames=max_frames, verbose=not quiet, publish=publish))


@demo_app.command(epilog="Examples:\n\n  edgekit demo web -m model.web   # serve a bundle\n\n"
                  "  edgekit demo web -m model.int8.onnx --port 9000   # bundle it (model.int8.web), serve it\n\n"
                  "In the page: Camera, a video file or images; ?backend=wasm|webgpu|webnn&threads=N in the address; "
                  "?source=camera starts the camera at once (a kiosk window).")
def web(model: Annotated[Path, typer.Option("--model", "-m", help="A .web bundle or an edgekit .onnx file.")],
        port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8000, host: Host = "127.0.0.1",
        out: Annotated[Path | None, typer.Option(help="Bundle of an .onnx file (default: beside it, .web).")]
        = None) -> None:
    """Serve a model's web page locally (cross-origin isolated for WebAssembly threads) and print its address."""
    from edgekit.export.web import bundle_for
    from edgekit.runtime.webserve import reach, serve_bundle

    bundle = bundle_for(model, out)
    serve_bundle(bundle, host, port, on_start=lambda url: typer.echo(
        f"serving {bundle} at {url} (bound to {host}: {reach(host)}); Ctrl-C to stop"))


@demo_app.command(epilog="Examples:\n\n  edgekit demo audio --model sound.onnx --source mic:2 --hop 0.25\n\n"
                  "  edgekit demo audio -m sound.int8.tflite --source street.wav --headless   # log + summary")
def audio(model: DemoModel, source: Annotated[str, typer.Option(
              help="'mic' (the default input), 'mic:N' (a device), or a sound file played as a stream.")] = "mic",
          headless: Annotated[bool, typer.Option("--headless", help="No window: write the log and summary.")] = False,
          log: Annotated[Path | None, typer.Option(
              help="JSON-lines log, one record per window (--headless: runs/demo/audio/audio.jsonl).")] = None,
          hop: Annotated[float | None, typer.Option(help="Seconds between windows (default: the card's).")] = None,
          topk: Annotated[int, typer.Option(help="Tags shown per window.")] = 3,
          realtime: Annotated[bool | None, typer.Option("--realtime/--fast", help="A file at its own pace, or as "
                                                        "fast as it is processed (default: fast if --headless).")]
          = None, threads: Threads = None, device: DemoDevice = "auto",
          max_windows: Annotated[int | None, typer.Option(help="Stop after this many windows.")] = None,
          quiet: Quiet = False) -> None:
    """Tag sound live: a rolling window of the top tags and scores (log-mel frontend + model, no torch)."""
    from edgekit.apps.audio import run_audio

    run_audio(model, source, headless=headless, log=log, hop_s=hop, topk=topk, threads=threads, device=device,
              max_windows=max_windows, realtime=realtime, verbose=not quiet)
