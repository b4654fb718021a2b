"""CNN vs ViT on log-mel spectrograms (the reference audio-tagging experiment), in one command.

``python -m edgekit.recipes.audio_compare`` trains a CNN and a ViT with ``edgekit train`` on the
same sound data (default: the embedded ``speech_commands``; the same recipe for both: epochs,
batch, learning rate, SpecAugment), benchmarks each run's ``best.pt`` with ``edgekit bench``
(exported to ONNX and TFLite, batch 1, the log-mel frontend timed beside the model) and writes
``edgekit report`` on the two runs: val LWLRAP, mAP and F1, params and latency side by side.
Finished runs with the same config are reused, so a second call only re-measures and re-reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgekit.console import say


def compare(out: Path = Path("runs/audio_compare"), data: str = "speech_commands", cnn: str = "resnet18",
            vit: str = "deit_tiny_patch16_224", epochs: int = 20, sets: list[str] | None = None,
            backends: tuple[str, ...] = ("ort", "tflite"), seconds: float = 1.0, verbose: bool = True
            ) -> dict[str, Path]:
    """Train (or reuse) both runs, bench them, report them; returns the report's paths."""
    from edgekit.config import load_config
    from edgekit.recipes.bench import bench
    from edgekit.recipes.report import report
    from edgekit.runs import finished
    from edgekit.train.supervised import train

    runs = []
    for arch in (cnn, vit):
        cfg = load_config(overrides={"data.source": data, "model.arch": arch, "train.epochs": epochs,
                                     "out": str(out), "name": f"{Path(data).stem}-{arch}"}, sets=sets)
        if cfg.data.audio is None:  # the config a finished run recorded has the frontend filled in
            from edgekit.config import AudioConfig

            cfg.data.audio = AudioConfig()
        if finished(cfg):
            if verbose:
                say(f"reusing {cfg.run_dir}")
        else:
            train(cfg, verbose=verbose)
        runs.append(cfg.run_dir)
    bench([str(r / "best.pt") for r in runs], list(backends), [1], data=None, out=out / "bench",
          min_seconds=seconds, verbose=verbose)
    return report(runs, out / "report", verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekit.recipes.audio_compare", description=__doc__.split("\n\n")[0],
                                 epilog="Example: python -m edgekit.recipes.audio_compare --epochs 20")
    ap.add_argument("--out", type=Path, default=Path("runs/audio_compare"), help="runs, bench and report folder")
    ap.add_argument("--data", default="speech_commands", help="sound data: speech_commands, a CSV or a folder")
    ap.add_argument("--cnn", default="resnet18", help="timm CNN (default resnet18)")
    ap.add_argument("--vit", default="deit_tiny_patch16_224", help="timm ViT (default deit_tiny_patch16_224)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override, e.g. train.lr=1e-3")
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum timed seconds per latency measurement")
    args = ap.parse_args(argv)
    from edgekit.errors import EdgekitError, cli_messages
    from edgekit.logs import quiet_native_logs

    quiet_native_logs()
    try:
        with cli_messages():
            paths = compare(args.out, args.data, args.cnn, args.vit, args.epochs, args.sets, seconds=args.seconds)
    except EdgekitError as exc:
        print(f"error: {exc}")
        return 2
    print(paths["md"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
