"""Which file to ship on this machine: the fastest one that passed its gates, per model and batch size.

``edgekit bench FILES... --backend all`` ends with it (:func:`recommend` on the bench rows). A row is a
candidate when it was measured without error and its file carries proof: an entry in the
``parity.json`` beside it (written by ``edgekit export``, which runs every file through its own runtime and
judges it by the gate of the precision that ran) that passed, at the precision that ran here, and that still
describes the file (its content hash matches: :func:`edgekit.parity.record`). A file judged at FP32 that
runs in bf16 here (an OpenVINO IR on a CPU with bf16 instructions) was not proven for what this machine
runs, and is left out with that reason; so are files without a record (made by another tool), files that
missed their gate, files not run at export (CoreML on Linux, ``--no-verify``: never passed), and eager
PyTorch checkpoints (the reference, not a deployable file).

The CPU features that decide which kernels run (AVX2, AVX-512 VNNI, AVX-512 BF16, AMX; on ARM the dot-product
and int8 matrix instructions) are read from the machine (``/proc/cpuinfo``, or ``sysctl`` on macOS) and
recorded with the choice: a recommendation holds for the machine it was made on.

On a device (``edgekit bench FILES --on DEVICE``) the proof must come from that device: an entry of the file's
``verified_on`` list in ``parity.json`` (``edgekit check FILE --parity --on DEVICE``) for the same bytes, that
passed there. A file proven only on the host is left out with what to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.runtime.machine import cpu_features

__all__ = ["cpu_features", "lines", "proof", "recommend"]


def proof(row: dict[str, Any], device: str | None = None) -> tuple[bool, str]:
    """Whether a bench row may be recommended, and why not (one line). ``device``: the name of the device the row
    was measured on, where the file must have been verified."""
    if "error" in row or row.get("p50_ms") is None:
        return False, f"not measured: {row.get('error', 'no latency')}"
    if row.get("backend") == "torch":
        return False, "eager PyTorch: the reference, not a deployable file"
    from edgekit import parity

    entry, why = parity.record(row["file"])
    if entry is None:
        return False, why
    if device is not None:
        return _device_proof(entry, Path(row["file"]), device)
    verdict = parity.verdict_of(entry)
    if verdict == "not_run":
        return False, f"not run at export ({parity.not_run_reason(entry)}): no verdict to ship on"
    if verdict != "passed":
        why = "; ".join(entry.get("gate_failures") or []) or entry.get("error") or "failed"
        return False, f"missed its gate: {why}"
    proven = entry.get("precision_ran") or entry.get("precision")
    ran = row.get("execution_precision") or row.get("precision")
    if ran in ("bf16", "fp16", "fp32", "int8") and proven and ran != proven:
        return False, f"proven at {proven} but ran {ran} here: export it again on this machine"
    return True, f"passed its {proven} gate"


def _device_proof(entry: dict[str, Any], path: Path, device: str) -> tuple[bool, str]:
    from edgekit import formats

    digest = formats.digest(path)
    mine = [m for m in entry.get("verified_on") or [] if m.get("device") == device and m.get("digest") == digest]
    if not mine:
        return False, f"not verified on {device}: run edgekit check {path.name} --parity --on {device}"
    last = mine[-1]
    if not last.get("passed"):
        return False, f"missed its gate on {device}: {'; '.join(last.get('failures') or []) or 'failed'}"
    return True, f"passed its {last.get('precision_ran') or entry.get('precision')} gate on {device}"


def runtime_of(row: dict[str, Any]) -> str:
    """The package (and version) a file needs on the device: ``openvino 2026.4.1``."""
    from importlib import metadata

    from edgekit import formats

    try:
        module = formats.of_file(row["file"]).run_packages[0].split(".")[0]
    except Exception:  # noqa: BLE001 - an unknown suffix: name the backend
        return str(row.get("backend"))
    dist = next(iter(metadata.packages_distributions().get(module, [module])))
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return dist


def recommend(rows: list[dict[str, Any]], features: dict[str, Any] | None = None, device: str | None = None,
              emulated: bool = False) -> dict[str, Any]:
    """``{"machine": cpu features, "picks": [one per (model, batch)], "left_out": [rows not eligible]}``; on a
    ``device`` (rows measured there, ``features`` its CPU's), files proven there."""
    picks, left_out = [], []
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        ok, why = proof(r, device)
        if not ok:
            left_out.append({"model": r.get("model"), "file": r.get("file"), "backend": r.get("backend"),
                             "batch": r.get("batch"), "why": why})
            continue
        groups.setdefault((r["model"], r["batch"]), []).append(r)
    for (model, batch), candidates in groups.items():
        ranked = sorted(candidates, key=lambda r: r["p50_ms"])
        best = ranked[0]
        pick = {"model": model, "batch": batch, "file": best["file"], "backend": best["backend"],
                "runtime": runtime_of(best), "precision": best.get("execution_precision") or best.get("precision"),
                "p50_ms": best["p50_ms"], "threads": best.get("threads"), "device": best.get("device"),
                "candidates": len(ranked)}
        if len(ranked) > 1:
            nxt = ranked[1]
            pick["runner_up"] = {"file": nxt["file"], "backend": nxt["backend"], "p50_ms": nxt["p50_ms"],
                                 "ratio": nxt["p50_ms"] / best["p50_ms"]}
        picks.append(pick)
    rec = {"machine": features if features is not None else cpu_features(), "picks": picks, "left_out": left_out}
    if device is not None:
        rec.update(device=device, emulated=emulated)
    return rec


def lines(rec: dict[str, Any]) -> list[str]:
    """The recommendation in plain lines (bench's console output and bench.md)."""
    m = rec["machine"]
    where = f"on {rec['device']}" if rec.get("device") else "on this machine"
    out = [f"Fastest file that passed its gates, {where} ({m['cpu']}; "
           f"{', '.join(m['features']) or 'no AVX2/VNNI/AMX/dot-product features found'}):"]
    if rec.get("emulated"):
        out.append("- EMULATED device (qemu-user): the gates ran ARM's own kernels, but these timings are the "
                   "emulator's, not the device's speed; the ranking does not hold for real hardware")
    for p in rec["picks"]:
        alt = (f"; next {Path(p['runner_up']['file']).name} [{p['runner_up']['backend']}] "
               f"{p['runner_up']['p50_ms']:.3f} ms (x{p['runner_up']['ratio']:.2f})") if "runner_up" in p else ""
        out.append(f"- {p['model']}, batch {p['batch']}: {p['file']} — {p['p50_ms']:.3f} ms p50, {p['precision']}, "
                   f"needs {p['runtime']} ({p['threads']} threads){alt}")
    if not rec["picks"]:
        out.append("- none: no measured file has a passing parity record " + (
            f"from {rec['device']} (verify each there: edgekit check FILE --parity --on {rec['device']})"
            if rec.get("device") else "(export files with `edgekit export`, which verifies each one, and bench those)"))
    for x in rec["left_out"]:
        if x.get("file") and x.get("backend") != "torch":
            out.append(f"- not eligible: {Path(x['file']).name} [{x['backend']}] batch {x['batch']}: {x['why']}")
    return out


def write_recommendation(rec: dict[str, Any], out: Path) -> dict[str, Path]:
    """``recommendation.json``, and the same lines appended to ``bench.md`` when it is there."""
    from edgekit.atomic import write_json, write_text

    paths = {"recommendation": write_json(out / "recommendation.json", rec)}
    md = out / "bench.md"
    if md.exists():
        where = f"on {rec['device']}" if rec.get("device") else "on this machine"
        write_text(md, md.read_text() + f"\n## Recommended {where}\n\n" + "\n".join(lines(rec)) + "\n")
    return paths
