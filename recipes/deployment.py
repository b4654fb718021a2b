"""One deployment card per artifact: ``FILE.report.json`` next to each file, and ``deployment.md``.

A card answers, for one file: what it is (size, params/FLOPs, precision, float layers), whether it
gives the right answers (parity against PyTorch from ``parity.json`` beside it, accuracy through
its runtime), how fast and heavy it is (latency p50/p90/p99 per batch, load time, peak memory,
residency), and where that was measured (machine and package versions). ``edgekit bench`` and
``edgekit export`` write them; ``edgekit check`` gates on them for CI. After a bench, each card also
records which file was the fastest that passed its gates per batch size, and the CPU features that
choice was made on (:mod:`edgekit.benchmarks.recommend`). Where the file was verified on other machines
(``edgekit check FILE --parity --on DEVICE``), the card lists each of them: ``verified_on``, from ``parity.json``.
A bench on a device writes its cards into the report folder (the file's own card stays the host's).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from edgekit.atomic import write_json, write_text

PACKAGES = ("edgekit", "onnxruntime", "ai-edge-litert", "coremltools", "executorch", "openvino", "torch", "numpy")


def environment(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """The machine and the versions of ``packages`` (None where one is not installed)."""
    import os
    from importlib import metadata

    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    from edgekit.benchmarks.recommend import cpu_features

    return {"machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
            "cpu_features": cpu_features()["features"], "python": platform.python_version(), "packages": versions}


def card_for_file(path: Path, rows: list[dict[str, Any]] | None = None, machine: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The deployment card of ``path``: file facts, its model card's facts, parity (and every machine it was verified
    on), and bench rows; ``machine``: where the rows were measured (default: this machine)."""
    from edgekit import formats

    size = formats.size_bytes(path)  # an IR's .bin counts
    card: dict[str, Any] = {"file": path.name, "size_mb": round(size / 1e6, 3)}
    try:
        from edgekit.runtime.metadata import read_card

        mc = read_card(path)
        prov = mc.provenance
        quant = prov.get("quantization") or {}
        card.update(model=mc.name, arch=mc.arch, heads=mc.head_names, params=mc.params,
                    input=list(mc.input.size), format=prov.get("format"), precision=prov.get("precision"),
                    float_layers=quant.get("float_layers"), delegation=prov.get("delegation"))
    except Exception as exc:  # noqa: BLE001 - a file edgekit did not write: its card says so
        card["model_card"] = f"n/a: {str(exc).splitlines()[0][:200]}"
    from edgekit import parity

    entry, why = parity.record(path)
    if entry is None:  # no verdict stands for these bytes: the card says so instead of showing an old one
        card["parity"] = {"verdict": None, "passed": False, "why": why}
    else:
        card["parity"] = {k: entry.get(k) for k in ("passed", "precision_ran", "gate", "gate_failures", "kept",
                                                     "max_rel", "heads", "end_to_end", "structure_ok", "not_run",
                                                     "error", "export_seconds", "sha256") if k in entry}
        card["parity"]["verdict"] = parity.verdict_of(entry)
        if entry.get("verified_on"):
            card["verified_on"] = entry["verified_on"]
    measured = []
    for r in rows or []:
        if "error" in r:
            measured.append({"backend": r["backend"], "batch": r.get("batch"), "error": r["error"]})
            continue
        measured.append({k: r.get(k) for k in ("backend", "batch", "threads", "threads_from", "device",
                                               "execution_precision", "p50_ms",
                                               "p90_ms", "p99_ms", "throughput_ips", "load_ms", "first_run_ms",
                                               "peak_rss_mb", "model_rss_mb", "accuracy", "metrics", "residency",
                                               "fallback", "quant", "gflops", "params") if k in r})
    if measured:
        card["bench"] = measured
        accs = [m["accuracy"] for m in measured if m.get("accuracy")]
        if accs:
            card["accuracy"] = accs[0]
        other = [m["metrics"] for m in measured if m.get("metrics")]
        if other:
            card["metrics"] = other[0]  # per head: regression MAE, multilabel mAP
    card["environment"] = machine or environment()
    return card


def write_cards(rows: list[dict[str, Any]], out: Path, recommendation: dict[str, Any] | None = None,
                machine: dict[str, Any] | None = None) -> list[Path]:
    """``FILE.report.json`` beside every measured file, and ``out/deployment.md`` over all of them; with a
    ``recommendation`` (:func:`edgekit.benchmarks.recommend.recommend`), each card records the choice for its
    model and the CPU features it was made on. ``machine``: the device the rows come from (its environment); the
    cards then go into ``out``, not beside the files."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("file"):
            by_file.setdefault(r["file"], []).append(r)
    from edgekit import formats

    cards, written = [], []
    for file, mine in by_file.items():
        path = Path(file)
        if not path.exists() or path.suffix.lower() in formats.TORCH.suffixes:  # a checkpoint, not a deployed file
            continue
        card = card_for_file(path, mine, machine)
        if recommendation is not None:
            model = mine[0].get("model")
            keys = ("batch", "file", "backend", "runtime", "precision", "p50_ms", "threads")
            card["recommendation"] = {
                "machine": recommendation["machine"],
                "picks": [{**{k: p[k] for k in keys}, "this_file": p["file"] == file}
                          for p in recommendation["picks"] if p["model"] == model]}
        folder = path.parent if machine is None else out
        written.append(write_json(folder / (path.name + ".report.json"), card))
        cards.append(card)
    if cards:
        written.append(write_text(out / "deployment.md", markdown(cards, recommendation)))
    return written


def markdown(cards: list[dict[str, Any]], recommendation: dict[str, Any] | None = None) -> str:
    env = cards[0]["environment"]
    lines = ["# Deployment cards", "", f"Machine: {env['machine']} ({', '.join(env.get('cpu_features') or [])}); "
             f"Python {env['python']}; "
             + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v), "",
             "| file | precision | size MB | float layers | parity (verdict, max rel) | accuracy | batch | "
             "p50 / p90 / p99 ms "
             "| load ms | peak RSS MB | residency |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cards:
        parity = c.get("parity") or {}
        rel, verdict = parity.get("max_rel"), (parity.get("verdict") or "no record").replace("not_run", "not run here")
        acc = ", ".join(f"{h} {v * 100:.2f}%" for h, v in (c.get("accuracy") or {}).items()) or "n/a"
        for m in c.get("bench") or [{}]:
            lat = (f"{m['p50_ms']:.3f} / {m['p90_ms']:.3f} / {m['p99_ms']:.3f}" if m.get("p50_ms") is not None
                   else f"n/a: {m.get('error', 'not measured')}")
            lines.append(f"| {c['file']} | {c.get('precision') or '?'} | {c['size_mb']} | "
                         f"{', '.join(c.get('float_layers') or []) or 'none'} | "
                         f"{verdict}{'' if rel is None else f', {rel:.1e}'} | {acc} | {m.get('batch', '-')} | {lat} | "
                         f"{_num(m.get('load_ms'))} | {_num(m.get('peak_rss_mb'))} | "
                         f"{_residency(m.get('residency'))} |")
    verified = [(c["file"], m) for c in cards for m in c.get("verified_on") or []]
    if verified:
        from edgekit.recipes.verified_on import table

        lines += ["", "## Verified on", ""] + table(verified)
    if recommendation is not None:
        from edgekit.benchmarks.recommend import lines as recommendation_lines

        where = f"on {recommendation['device']}" if recommendation.get("device") else "on this machine"
        lines += ["", f"## Recommended {where}", ""] + recommendation_lines(recommendation)
    return "\n".join(lines) + "\n"


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _residency(r: Any) -> str:
    from edgekit.benchmarks.report import residency_cell

    return "n/a" if r is None else residency_cell(r)
