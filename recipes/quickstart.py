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

from edgekit.atomic import write_json, write_text
from edgekit.console import say
from edgekit.recipes import deploy_size
from edgekit.recipes.deploy_size import backend_name, deployment_lines, deployment_table, find_row

KD_SEEDS = 3
KD_FRACTION = 0.1  # the small-data regime where a teacher that saw all the data has something to give
# On 144 labelled images mobileone_s0 does not learn in the default 12 epochs (3 steps each: both arms
# stayed near chance, ~15%), so the seeds compare KD on a student that does: six runs of it cost
# less than one full-data mobileone_s0 run.
KD_STUDENT = "mobilenetv3_small_050"


def quickstart(out: str = "runs", fresh: bool = False, batches: tuple[int, ...] = (1, 8, 32),
               bench_seconds: float = 1.0, verbose: bool = True) -> Path:
    from edgekit.compress.distill import distill
    from edgekit.compress.reparam import fuse_checkpoint
    from edgekit.config import load_config
    from edgekit.export.quantize import quantize_checkpoint
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
    stage("1/5 train the teacher and distill the student (KD vs no KD: over seeds, further down)")
    cfg = load_config(overrides={"out": out}, stage="distill")
    cfg.name = default_name(cfg)
    cfg.distill.baseline = False  # one seed on the full data cannot show KD's value: the seeds below do
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
    times["distill (teacher, KD student)"] = time.perf_counter() - t

    stage(f"1b/5 KD vs no KD over {KD_SEEDS} seeds: {KD_STUDENT} students with {KD_FRACTION:.0%} of the labels, "
          "and KD that also sees the other images unlabelled")
    from edgekit.compress.kd_seeds import kd_over_seeds, print_seeds

    t = time.perf_counter()
    seeds = kd_over_seeds(load_config(overrides={"out": out, "model.arch": KD_STUDENT}, stage="distill"), KD_SEEDS,
                          KD_FRACTION, verbose=verbose, unlabeled="rest")
    print_seeds(seeds)
    times[f"KD vs no KD ({KD_SEEDS} seeds x 3 runs, {KD_FRACTION:.0%} labels)"] = time.perf_counter() - t

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
    size = deploy_size.IMGSZ
    stage(f"4b/5 the same models at a deployment size ({size} px), FP32 and INT8, batch "
          f"{' and '.join(map(str, deploy_size.BATCHES))}")
    t = time.perf_counter()
    deploy, deploy_notes = deployment_table({"teacher": Path(teacher_ckpt), "student": fused.path},
                                            report_dir / f"deploy-{size}", verbose=verbose)
    times[f"deployment table ({size} px)"] = time.perf_counter() - t

    stage("5/5 write the report")
    times["total"] = time.perf_counter() - t_all
    curves = training_curves(cfg.run_dir / "history.json", Path(kd["baseline"]["run_dir"]) / "history.json"
                             if kd.get("baseline") else None, report_dir / "training.png")
    path = write_report(report_dir, kd, rp, quant, parity, rows, times, curves,
                        deployment_lines(deploy, size) + [f"- {n}" for n in deploy_notes], seeds_lines(seeds))
    write_json(report_dir / "report.json", report_data(kd, quant, parity, rows, deploy, seeds, times))
    say(f"\n[bold green]done[/] in {times['total'] / 60:.1f} min -> {path}")
    return path


def report_data(kd: dict[str, Any], quant: dict[str, Any], parity: dict[str, Any], rows: list[dict[str, Any]],
                deploy: list[dict[str, Any]], seeds: dict[str, Any] | None, times: dict[str, float]) -> dict[str, Any]:
    """What ``report.md`` says, as data (``report.json``): what CI checks, and what the README's claims are
    evaluated against (``tools/check_quickstart.py``)."""
    from edgekit.parity import verdict_of
    from edgekit.recipes.deployment import environment

    key = kd["monitor"]
    return {
        "environment": environment(), "monitor": key,
        "distill": {"teacher": kd["teacher"]["val"].get(key), "student": kd["student"]["val"].get(key)},
        "kd": seeds, "headline": headline_pairs(rows),
        "parity": [{**{k: e.get(k) for k in ("file", "precision", "precision_ran", "passed", "gate", "gate_failures",
                                              "max_rel", "end_to_end", "error", "not_run")}, "verdict": verdict_of(e)}
                   for e in parity["artifacts"]]
        + [{"file": f["file"], "verdict": "failed", "passed": False, "error": f["error"]}
           for f in parity.get("failures", [])],
        "quantize": {"gate": quant.get("gate", {}).get("int8_gate"), "backends": quant["backends"]},
        "deploy": [{k: r.get(k) for k in ("role", "backend", "precision", "batch", "threads", "p50_ms", "size_mb",
                                          "certified", "error")} for r in deploy],
        "bench": [{k: r.get(k) for k in ("role", "model", "backend", "precision", "batch", "threads", "p50_ms",
                                         "accuracy", "error")} for r in rows],
        "times": times}


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


def _float_layers(layers: list[str] | dict[str, list[str]]) -> str:
    if isinstance(layers, dict):
        return "; ".join(f"{b}: {', '.join(v) or 'none'}" for b, v in layers.items()) or "none"
    return ", ".join(layers) or "none"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}%"


def write_report(folder: Path, kd: dict[str, Any], rp: dict[str, Any], quant: dict[str, Any],
                 parity: dict[str, Any], rows: list[dict[str, Any]], times: dict[str, float],
                 curves: Path | None, deploy: list[str] | None = None, seeds: list[str] | None = None) -> Path:
    from edgekit.benchmarks.report import markdown_table

    key = kd["monitor"]
    t, s, b = kd["teacher"], kd["student"], kd.get("baseline")
    lines = ["# edgekit quickstart report", "",
             "The whole deployment path on the embedded digits (scikit-learn, 1,437 train / 360 val images), "
             f"measured on this machine ({machine_line()}). Regenerate: `edgekit quickstart`.", ""]
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
    lines += [""] + (seeds or [])
    if curves:
        lines += ["", f"![training curves]({curves.name})"]
    lines += ["", "## Reparameterization", "",
              f"params {rp['params_before'] / 1e6:.2f} M -> {rp['params_after'] / 1e6:.2f} M, GFLOPs per image "
              f"{rp['gflops_before']:.4f} -> {rp['gflops_after']:.4f}, eager torch latency (batch 1) "
              f"{rp['eager_ms_before']:.2f} -> {rp['eager_ms_after']:.2f} ms, max relative output error "
              f"{rp['max_rel']:.1e} on {rp['images']} val images.", ""]
    lines += ["## Quantization (PTQ, INT8)", "",
              f"Float layers (accuracy gate, {quant.get('gate', {}).get('max_drop_points', 'n/a')} points): "
              f"{_float_layers(quant['float_layers'])}.", "",
              "| backend | FP32 accuracy | INT8 accuracy | drop (points) | INT8 / FP32 agreement | threads | FP32 ms "
              "| INT8 ms | speed-up | size FP32 -> INT8 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, info in quant["backends"].items():
        h = next(iter(info["heads"].values()))
        used = "/".join(str(t) for t in sorted(set((info.get("threads") or {}).values())))
        lines.append(f"| {name} | {_pct(h.get('fp32_accuracy'))} | {_pct(h.get('accuracy'))} | "
                     f"{h.get('drop_points', 0):+.2f} | {_pct(h.get('top1_agreement'))} | {used or 'n/a'} | "
                     f"{info['fp32']['latency_ms']:.3f} | {info['int8']['latency_ms']:.3f} | "
                     f"{info['speedup']:.2f}x | {info['fp32']['size_bytes'] / 1e6:.2f} -> "
                     f"{info['int8']['size_bytes'] / 1e6:.2f} MB |")
    lines += [""] + (deploy or [])
    lines += ["", "## Exported files and parity with PyTorch", "",
              f"Each file run by the edgekit runtime on the {parity['val_images']} val images.", "",
              "| file | precision | size | export s | max rel. error | SQNR | top-1 agreement | accuracy | gate |",
              "|---|---|---|---|---|---|---|---|---|"]
    from edgekit.export.gates import describe

    for e in parity["artifacts"]:
        if "heads" in e:
            h = next(iter(e["heads"].values()))
            sqnr = "exact" if h.get("sqnr_db") is None else f"{h['sqnr_db']:.1f} dB"
            gate = f"{'pass' if e['passed'] else 'FAIL'} ({e.get('precision_ran')}: {describe(e.get('gate') or {})})"
            lines.append(f"| {e['file']} | {e['precision']} | {e['size_bytes'] / 1e6:.2f} MB | {e['export_seconds']} | "
                         f"{h['rel']:.1e} | {sqnr} | {_pct(h.get('top1_agreement'))} | {_pct(h.get('accuracy'))} | "
                         f"{gate} |")
        else:  # not run here (CoreML on Linux), or failed on its structure
            from edgekit.parity import not_run_reason, verdict_of

            what = (f"not run here ({not_run_reason(e)})" if verdict_of(e) == "not_run" else
                    "FAIL (" + "; ".join(e.get("gate_failures") or [e.get("error") or "not run"]) + ")")
            lines.append(f"| {e['file']} | {e['precision']} | {e['size_bytes'] / 1e6:.2f} MB | {e['export_seconds']} | "
                         f"- | - | - | - | {what} |")
    lines += ["", "## Benchmark (teacher vs student, every backend)", "", markdown_table(rows),
              "Latency p50/p90/p99 over repeated calls after warm-up, each measurement in its own process; peak RSS "
              "is that process's peak resident memory. \"x teacher\" is the teacher's eager-torch latency at the same "
              "batch divided by this row's.", "", "![latency vs accuracy](bench/pareto.png)", "",
              "## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in times.items()]
    lines.append("")
    return write_text(folder / "report.md", "\n".join(lines))


def seeds_lines(result: dict[str, Any] | None) -> list[str]:
    """KD vs no KD over seeds: per-seed values, mean ± std, the gain and whether it exceeds the spread."""
    if not result:
        return []
    key = result["monitor"]
    frac = result.get("fraction")
    lines = [f"### KD vs no KD over {result['n']} seeds ({result.get('train_samples') or '?'} labelled training "
             f"images{f', a {frac:.0%} stratified share' if frac not in (None, 1.0) else ''}; the teacher saw all "
             "of them)", "", "| arm | " + " | ".join(f"seed {s}" for s in result["seeds"]) + " | mean ± std |",
             "|---|" + "---|" * (len(result["seeds"]) + 1)]
    extra = result.get("with_unlabeled")
    arms = [("KD (labelled images only)", result["kd"]), ("no KD", result["no_kd"])]
    if extra:
        arms.insert(1, (f"KD + {extra.get('unlabeled_samples') or '?'} unlabelled images", extra["kd"]))
    for name, arm in arms:
        std = "n/a" if arm["std"] is None else f"{arm['std'] * 100:.2f}"
        lines.append(f"| {name} | " + " | ".join(f"{v * 100:.2f}%" for v in arm["values"])
                     + f" | {arm['mean'] * 100:.2f}% ± {std} |")
    lines.append("")
    for label, r in [("KD on the same labelled images", result)] + ([("KD with the unlabelled images added", extra)]
                                                                    if extra else []):
        spread = "n/a" if r["spread"] is None else f"{r['spread'] * 100:.2f}"
        lines.append(f"- {label}: val {key} KD − no KD = **{r['gain'] * 100:+.2f} points**, spread {spread} points: "
                     f"exceeds the spread = **{r['exceeds_spread']}** ({r['verdict']}).")
    lines += ["", f"Rule: {result['rule']}. The unlabelled images are the training images outside the labelled share "
              "(`--unlabeled rest`): the student sees them through the teacher only; its label loss and the no-KD "
              "baseline see the labelled share alone."]
    return lines


def machine_line() -> str:
    from edgekit.recipes.coverage import machine

    return machine()


def headline_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The like-for-like comparisons of the headline: student vs teacher (FP32) and INT8 vs FP32 (student), each
    on one backend at batch 1, both rows measured at the same thread count (a pair that is not is left out)."""
    pairs = []
    for what, (a_role, a_prec), (b_role, b_prec) in (("student vs teacher", ("model", "fp32"), ("teacher", "fp32")),
                                                      ("INT8 vs FP32", ("model", "int8"), ("model", "fp32"))):
        for backend in ("ort", "tflite"):
            a, b = find_row(rows, a_role, backend, a_prec), find_row(rows, b_role, backend, b_prec)
            if a and b and a.get("threads") == b.get("threads"):
                pairs.append({"what": what, "backend": backend, "batch": 1, "threads": a.get("threads"),
                              "precisions": [a_prec, b_prec], "ms": [a["p50_ms"], b["p50_ms"]],
                              "ratio": b["p50_ms"] / a["p50_ms"], "size_ratio": b["size_mb"] / a["size_mb"]})
    return pairs


def _headline(rows: list[dict[str, Any]]) -> list[str]:
    """Like with like: student vs teacher on the same backend, precision and thread count, INT8 vs FP32 on the
    same backend; the eager-torch ratio (mostly PyTorch's per-call overhead) only as a labelled extra."""
    lines = []
    pairs = headline_pairs(rows)
    vs = [p for p in pairs if p["what"] == "student vs teacher"]
    if vs:
        lines.append("- **Student vs teacher, same backend, FP32, batch 1:** " + "; ".join(
            f"{backend_name(p['backend'])} {p['ms'][0]:.3f} vs {p['ms'][1]:.3f} ms (**{p['ratio']:.1f}x**, "
            f"{p['threads']} threads)" for p in vs) + ".")
    q = [p for p in pairs if p["what"] == "INT8 vs FP32"]
    if q:
        lines.append("- **INT8 vs FP32 student, same backend, batch 1:** " + "; ".join(
            f"{backend_name(p['backend'])} {p['ms'][0]:.3f} vs {p['ms'][1]:.3f} ms (**{p['ratio']:.2f}x**, "
            f"{p['threads']} threads, file {p['size_ratio']:.1f}x smaller)" for p in q) + ".")
    slow = [p for p in q if p["ratio"] < 1.1]
    if slow:
        lines.append(f"- INT8 does not pay for speed on {', '.join(backend_name(p['backend']) for p in slow)} here: "
                     f"{cpu_note(max(p['ms'][1] for p in slow))} INT8's size gain holds everywhere; keep INT8 for "
                     "size and for ARM (dot-product) or VNNI targets.")
    teacher = find_row(rows, "teacher", "torch", "fp32")
    int8 = [r for r in rows if r["role"] != "teacher" and r["precision"] == "int8" and r["batch"] == 1
            and "p50_ms" in r]
    if teacher and int8:
        best = min(int8, key=lambda r: r["p50_ms"])
        ratio = teacher["p50_ms"] / best["p50_ms"]
        lines.append(f"- Extra, not like for like: INT8 student ({backend_name(best['backend'])}, "
                     f"{best.get('threads')} threads) {best['p50_ms']:.3f} ms vs FP32 teacher in eager PyTorch "
                     f"({teacher.get('threads')} threads) {teacher['p50_ms']:.3f} ms ({ratio:.1f}x); at this input "
                     "size the ratio mostly measures eager PyTorch's per-call overhead.")
    return lines or ["(the headline comparison could not be measured; see the benchmark table)"]


def cpu_note(fp32_ms: float | None = None) -> str:
    """Why INT8 may not be faster here: which integer dot-product instructions this CPU has, or, on a
    CPU that has them, calls so short (``fp32_ms``) that fixed per-call costs decide."""
    import platform

    flags = ""
    info = Path("/proc/cpuinfo")
    if info.exists():
        flags = next((ln for ln in info.read_text().splitlines() if ln.startswith(("flags", "Features"))), "")
    have = [f for f in ("avx512_vnni", "avx_vnni", "asimddp", "i8mm") if f" {f}" in f" {flags.split(':')[-1]} "]
    if have and fp32_ms is not None and fp32_ms < 0.5:
        return (f"this CPU has {', '.join(have)}, but a call takes {fp32_ms:.3f} ms at this input size, so fixed "
                "per-call costs (quantizing the input, dequantizing the output, dispatch) decide; the "
                f"{deploy_size.IMGSZ}-px table shows INT8 where the convolutions dominate.")
    if have:
        return (f"this CPU has {', '.join(have)}, so the integer kernels should be fast; check the "
                f"{deploy_size.IMGSZ}-px table.")
    return (f"this {platform.machine()} CPU has no VNNI (x86) or dot-product (ARM) instructions, so INT8 "
            "convolutions run on widened 16-bit arithmetic and barely beat (or lose to) FP32 kernels.")
