"""``edgekit quickstart``: the whole deployment path on the embedded digits, in one command.

train teacher -> distill student (and a no-KD baseline) -> reparameterize -> quantize (PTQ) ->
export ONNX + TFLite + CoreML -> verify parity -> bench teacher vs student across backends ->
``runs/quickstart/report.md`` with the tables and plots. Stages whose results already exist
with the same config are reused (the teacher, a finished distillation); ``--fresh`` redoes them.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from edgekit.atomic import write_text
from edgekit.console import say


def quickstart(out: str = "runs", fresh: bool = False, batches: tuple[int, ...] = (1, 8, 32),
               bench_seconds: float = 1.0, verbose: bool = True) -> Path:
    from edgekit.compress.distill import distill
    from edgekit.compress.reparam import fuse_checkpoint
    from edgekit.config import load_config
    from edgekit.recipes.quantize import quantize_checkpoint
    from edgekit.runs import finished
    from edgekit.train.supervised import default_name

    times: dict[str, float] = {}
    t_all = time.perf_counter()
    report_dir = Path(out) / "quickstart"
    if fresh:
        shutil.rmtree(Path(out), ignore_errors=True)

    def stage(name: str) -> None:
        say(f"\n[bold cyan]== {name}[/] ({time.perf_counter() - t_all:.0f}s so far)")

    # 1-2. teacher + distillation (+ no-KD baseline)
    stage("1/5 train the teacher, distill the student, train the no-KD baseline")
    cfg = load_config(overrides={"out": out}, stage="distill")
    cfg.name = default_name(cfg)
    t = time.perf_counter()
    summary_path = cfg.run_dir / "distill.json"
    if finished(cfg) and summary_path.is_file():
        say(f"reusing the finished distillation in {cfg.run_dir}")
        kd = json.loads(summary_path.read_text())
    else:
        from edgekit.compress.distill import print_report

        report = distill(cfg, verbose=verbose)
        print_report(report)
        kd = report.to_dict()
    times["distill (teacher, KD, baseline)"] = time.perf_counter() - t

    # 3. reparameterize
    stage("2/5 reparameterize (fuse MobileOne branches)")
    t = time.perf_counter()
    fused = fuse_checkpoint(cfg.run_dir / "best.pt", Path(out) / "reparam" / cfg.name)
    times["reparameterize"] = time.perf_counter() - t
    rp = fused.stats
    say(f"params {rp['params_before'] / 1e6:.2f} M -> {rp['params_after'] / 1e6:.2f} M, GFLOPs "
        f"{rp['gflops_before']:.4f} -> {rp['gflops_after']:.4f}, max relative error {rp['max_rel']:.1e}")

    # 4. quantize + export + parity
    stage("3/5 quantize (PTQ) and export ONNX, TFLite, CoreML, verifying each file")
    t = time.perf_counter()
    qdir = Path(out) / "quantize" / f"{cfg.name}-fused" / "ptq"
    quant = quantize_checkpoint(fused.path, "ptq", ("onnx", "tflite", "coreml"), qdir, verbose=verbose)
    times["quantize + export + parity"] = time.perf_counter() - t
    parity = json.loads((qdir / "parity.json").read_text())

    # 5. bench
    stage("4/5 benchmark teacher vs student across backends")
    from edgekit.recipes.bench import bench

    t = time.perf_counter()
    teacher_ckpt = kd["teacher"]["weights"]
    # the fused checkpoint brings its own FP32 torch / ONNX / TFLite; the INT8 files come from step 3
    students = [str(fused.path), str(qdir / "model.int8.onnx"), str(qdir / "model.int8.tflite")]
    rows, paths = bench(students, ["torch", "ort", "tflite"], list(batches), "cpu", None, "digits",
                        report_dir / "bench", teacher=teacher_ckpt, min_seconds=bench_seconds, verbose=verbose)
    times["bench"] = time.perf_counter() - t

    stage("5/5 write the report")
    times["total"] = time.perf_counter() - t_all
    curves = training_curves(cfg.run_dir / "history.json", Path(kd["baseline"]["run_dir"]) / "history.json"
                             if kd.get("baseline") else None, report_dir / "training.png")
    path = write_report(report_dir, kd, rp, quant, parity, rows, times, curves)
    say(f"\n[bold green]done[/] in {times['total'] / 60:.1f} min -> {path}")
    return path


def training_curves(kd_history: Path, base_history: Path | None, out: Path) -> Path | None:
    """Val accuracy per epoch, KD vs no-KD (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekit.atomic import write_with

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for label, hist in (("student with KD", kd_history), ("student without KD", base_history)):
        if hist is None or not hist.is_file():
            continue
        records = json.loads(hist.read_text())
        key = records[0]["monitor"]
        ax.plot([r["epoch"] for r in records], [(r["val"].get(key) or 0) * 100 for r in records], marker="o",
                ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_with(out, lambda fh: fh.write(buf.getvalue()))


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}%"


def write_report(folder: Path, kd: dict[str, Any], rp: dict[str, Any], quant: dict[str, Any],
                 parity: dict[str, Any], rows: list[dict[str, Any]], times: dict[str, float],
                 curves: Path | None) -> Path:
    from edgekit.benchmarks.report import markdown_table

    key = kd["monitor"]
    t, s, b = kd["teacher"], kd["student"], kd.get("baseline")
    lines = ["# edgekit quickstart report", "",
             "The whole deployment path on the embedded digits (scikit-learn, 1,437 train / 360 val images), "
             "measured on this machine.", ""]
    lines += ["## Headline", ""]
    lines += _headline(rows)
    lines += ["", "## Distillation", "", "| model | params | val accuracy | notes |", "|---|---|---|---|",
              f"| teacher {t['name']} | {t['params'] / 1e6:.2f} M | {_pct(t['val'].get(key))} | logits: "
              f"{t['logits_from']} |",
              f"| student {s['arch']} (KD) | {s['params'] / 1e6:.2f} M | {_pct(s['val'].get(key))} | compression "
              f"{kd['compression']:.1f}x |"]
    if b:
        delta = ((s["val"].get(key) or 0) - (b["val"].get(key) or 0)) * 100
        lines.append(f"| student {s['arch']} (no KD, same epochs and seed) | {s['params'] / 1e6:.2f} M | "
                     f"{_pct(b['val'].get(key))} | KD - no KD: {delta:+.2f} points |")
    if curves:
        lines += ["", f"![training curves]({curves.name})"]
    lines += ["", "## Reparameterization", "",
              f"params {rp['params_before'] / 1e6:.2f} M -> {rp['params_after'] / 1e6:.2f} M, GFLOPs per image "
              f"{rp['gflops_before']:.4f} -> {rp['gflops_after']:.4f}, eager torch latency (batch 1) "
              f"{rp['eager_ms_before']:.2f} -> {rp['eager_ms_after']:.2f} ms, max relative output error "
              f"{rp['max_rel']:.1e} on {rp['images']} val images.", ""]
    lines += ["## Quantization (PTQ, INT8)", "",
              f"Float layers (chosen on held-out training images): {', '.join(quant['float_layers']) or 'none'}.", "",
              "| backend | FP32 accuracy | INT8 accuracy | drop (points) | INT8 / FP32 agreement | FP32 ms | INT8 ms "
              "| speed-up | size FP32 -> INT8 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, info in quant["backends"].items():
        h = next(iter(info["heads"].values()))
        lines.append(f"| {name} | {_pct(h.get('fp32_accuracy'))} | {_pct(h.get('accuracy'))} | "
                     f"{h.get('drop_points', 0):+.2f} | {_pct(h.get('top1_agreement'))} | "
                     f"{info['fp32']['latency_ms']:.3f} | {info['int8']['latency_ms']:.3f} | "
                     f"{info['speedup']:.2f}x | {info['fp32']['size_bytes'] / 1e6:.2f} -> "
                     f"{info['int8']['size_bytes'] / 1e6:.2f} MB |")
    lines += ["", "## Exported files and parity with PyTorch", "",
              f"Each file run by the edgekit runtime on the {parity['val_images']} val images.", "",
              "| file | precision | size | export s | max rel. error | top-1 agreement | accuracy | check |",
              "|---|---|---|---|---|---|---|---|"]
    for e in parity["artifacts"]:
        if "heads" in e:
            h = next(iter(e["heads"].values()))
            lines.append(f"| {e['file']} | {e['precision']} | {e['size_bytes'] / 1e6:.2f} MB | {e['export_seconds']} | "
                         f"{h['rel']:.1e} | {_pct(h.get('top1_agreement'))} | {_pct(h.get('accuracy'))} | "
                         f"{'pass' if e['passed'] else 'FAIL'} |")
        else:
            lines.append(f"| {e['file']} | {e['precision']} | {e['size_bytes'] / 1e6:.2f} MB | {e['export_seconds']} | "
                         f"- | - | - | structure {'ok' if e.get('structure_ok') else 'BAD'}; {e.get('numeric')} |")
    lines += ["", "## Benchmark (teacher vs student, every backend)", "", markdown_table(rows),
              "Latency p50/p90/p99 over repeated calls after warm-up, each measurement in its own process; peak RSS "
              "is that process's peak resident memory. \"x teacher\" is the teacher's eager-torch latency at the same "
              "batch divided by this row's.", "", "![latency vs accuracy](bench/pareto.png)", "",
              "## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in times.items()]
    lines.append("")
    return write_text(folder / "report.md", "\n".join(lines))


def _headline(rows: list[dict[str, Any]]) -> list[str]:
    teacher = next((r for r in rows if r["role"] == "teacher" and r["backend"] == "torch" and r["batch"] == 1
                    and "p50_ms" in r), None)
    int8 = [r for r in rows if r["role"] != "teacher" and r["precision"] == "int8" and r["batch"] == 1
            and "p50_ms" in r]
    if not teacher or not int8:
        return ["(the headline comparison could not be measured; see the benchmark table)"]
    best = min(int8, key=lambda r: r["p50_ms"])
    acc_t = next(iter((teacher.get("accuracy") or {}).values()), None)
    acc_s = next(iter((best.get("accuracy") or {}).values()), None)
    return [f"INT8 student ({best['backend']}) at batch 1: **{best['p50_ms']:.3f} ms** p50 vs FP32 teacher in eager "
            f"torch **{teacher['p50_ms']:.3f} ms**: **{teacher['p50_ms'] / best['p50_ms']:.1f}x faster**, "
            f"{(teacher.get('params') or 0) / max(best.get('params') or 1, 1):.1f}x fewer parameters, "
            f"{teacher['size_mb'] / best['size_mb']:.0f}x smaller file; val accuracy {_pct(acc_s)} vs {_pct(acc_t)}."]
