"""Benchmark: the cost of a distillation epoch after the first over a student-only epoch.

The teacher runs once per (sample, view) before the first distillation epoch and its outputs are
cached, so later epochs should cost about what training the student alone costs (goal <= 1.2x).
Both trainings run in this one process, on the same data, seed and batch size, so the ratio is
comparable even on a noisy machine::

    python tools/distill_epoch.py                 # mobileone_s0 <- resnet18, digits
    python tools/distill_epoch.py --epochs 5 --arch mobilevit_xxs

This benchmark trains, so it imports torch (unlike the inference harness of ``edgekit bench``).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Annotated

import typer

from edgekit.atomic import write_json


def measure(arch: str = "mobileone_s0", teacher: str = "timm:resnet18", epochs: int = 4, imgsz: int = 32,
            out: str = "runs/bench", rounds: int = 2, verbose: bool = False) -> dict:
    """Alternate ``rounds`` student-only and distillation runs; return per-epoch times and the ratio."""
    from edgekit.compress.distill import distill
    from edgekit.config import load_config
    from edgekit.train.supervised import train

    common = {"model.arch": arch, "data.imgsz": imgsz, "train.epochs": epochs, "out": out, "train.save_every": 0}
    student_epochs, kd_epochs, cache_s = [], [], []
    for r in range(rounds):
        plain = train(load_config(overrides={**common, "name": f"plain-{arch}-{r}"}), verbose=verbose)
        student_epochs += plain.epoch_seconds[1:]
        kd_cfg = load_config(overrides={**common, "name": f"kd-{arch}-{r}", "distill.teacher": teacher},
                             sets=["distill.baseline=false"], stage="distill")
        report = distill(kd_cfg, verbose=verbose)
        kd_epochs += report.student["epoch_seconds"][1:]
        cache_s.append(report.seconds["teacher_cache"])
    s, k = statistics.median(student_epochs), statistics.median(kd_epochs)
    return {"arch": arch, "teacher": teacher, "epochs": epochs, "imgsz": imgsz, "rounds": rounds,
            "student_epoch_s": student_epochs, "distill_epoch_s": kd_epochs, "teacher_cache_s": cache_s,
            "student_epoch_median_s": s, "distill_epoch_median_s": k, "ratio": k / s, "goal": 1.2}


def main(arch: Annotated[str, typer.Option(help="Student (timm name).")] = "mobileone_s0",
         teacher: Annotated[str, typer.Option(help="Teacher (trained on the data first if timm:).")] = "timm:resnet18",
         epochs: Annotated[int, typer.Option(help="Epochs per run (the first is not timed).")] = 4,
         imgsz: Annotated[int, typer.Option(help="Input size.")] = 32,
         rounds: Annotated[int, typer.Option(help="Alternating student-only / distill runs.")] = 2,
         out: Annotated[str, typer.Option(help="Folder for the runs and distill_epoch.json.")] = "runs/bench") -> None:
    """Print and save the distillation-epoch / student-epoch cost ratio."""
    result = measure(arch, teacher, epochs, imgsz, out, rounds)
    path = write_json(Path(out) / "distill_epoch.json", result)
    typer.echo(f"student-only epoch: median {result['student_epoch_median_s']:.2f}s over "
               f"{len(result['student_epoch_s'])} epochs")
    typer.echo(f"distill epoch (after the first): median {result['distill_epoch_median_s']:.2f}s over "
               f"{len(result['distill_epoch_s'])} epochs; teacher pass before epoch 1: "
               f"{statistics.mean(result['teacher_cache_s']):.1f}s")
    typer.echo(f"ratio {result['ratio']:.3f} (goal <= {result['goal']})  -> {path}")


if __name__ == "__main__":
    typer.run(main)
