"""Where a file was proven: the machines a file was verified on, kept in ``parity.json`` beside it.

Each entry of an artifact's ``verified_on`` list says which machine (its CPU and features, whether emulated, OS,
Python, the runtime packages' versions), which bytes (:func:`edgekit.formats.digest`), when, and the gates there
with their numbers and verdict. ``edgekit check FILE --parity --on DEVICE`` adds two: this machine and the device,
judged on the same inputs in the same run. A newer check of the same bytes on the same machine (name, CPU and its
features) replaces the older entry. The deployment card beside the file (``FILE.report.json``) is updated with the
list, and ``edgekit bench --on DEVICE`` recommends only files that passed on that device.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

from edgekit.atomic import write_json
from edgekit.errors import ConfigError

RUNTIMES = ("onnxruntime", "ai-edge-litert", "openvino", "coremltools", "opencv-python", "opencv-python-headless",
            "numpy")


def entry(device: str, where: str, record: dict[str, Any], path: Path, gates: list[dict[str, Any]],
          command: str) -> dict[str, Any]:
    """One machine's verification of ``path``: the machine (from its record) and its parity gates."""
    from edgekit import formats

    parity = [g for g in gates if "heads" in g or g.get("not_run")]
    packages = record.get("packages") or {}
    return {"device": device, "where": where, "arch": record.get("arch"), "cpu": record.get("cpu"),
            "cpu_features": record.get("cpu_features") or [], "emulated": bool(record.get("emulated")),
            "os": record.get("os"), "python": record.get("python"), "edgekit": packages.get("edgekit"),
            "runtimes": {k: v for k, v in packages.items() if k in RUNTIMES and v},
            "digest": formats.digest(path),
            "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "passed": bool(parity) and all(g["passed"] for g in parity),
            "precision_ran": next((g["precision_ran"] for g in parity if g.get("precision_ran")), None),
            "failures": [f"{g['gate']}: {g['value']}" for g in parity if not g["passed"]],
            "gates": [{k: g[k] for k in ("gate", "limit", "value", "passed", "heads", "not_run") if k in g}
                      for g in parity]}


def host_entry(path: Path, gates: list[dict[str, Any]], command: str) -> dict[str, Any]:
    from edgekit.runtime.machine import machine_record

    return entry(platform.node() or "this machine", "host", machine_record(), path, gates, command)


def record(path: Path, entries: list[dict[str, Any]]) -> Path:
    """Add ``entries`` to the file's ``verified_on`` in ``parity.json`` (replacing older ones of the same machine
    and bytes) and to its deployment card beside it, when there is one."""
    parity = path.parent / "parity.json"
    if not parity.is_file():
        raise ConfigError(f"{path.name}: no parity.json beside it to record the verification in (a file edgekit did "
                          "not export)")
    data = json.loads(parity.read_text())
    art = next((e for e in data.get("artifacts", []) if e.get("file") == path.name), None)
    if art is None:
        raise ConfigError(f"{path.name} has no entry in {parity}")
    keep = [m for m in art.get("verified_on") or [] if not any(_same(m, e) for e in entries)]
    art["verified_on"] = keep + entries
    write_json(parity, data)
    card = path.with_name(path.name + ".report.json")
    if card.is_file():
        try:
            doc = json.loads(card.read_text())
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            doc["verified_on"] = art["verified_on"]
            write_json(card, doc)
    return parity


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same bytes checked on the same machine: a device name whose CPU changed (another board at that address,
    another emulated CPU model) is another machine."""
    return all(a.get(k) == b.get(k) for k in ("device", "digest", "cpu", "cpu_features", "arch"))


def numbers(m: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """Worst-head SQNR, lowest top-1 agreement and the accuracy of one gate (``golden`` or ``samples``) of an
    entry, or None when that gate did not run there."""
    gate = next((g for g in m.get("gates") or [] if (kind == "golden") == ("golden" in g["gate"])), None)
    if gate is None or not gate.get("heads"):
        return None
    heads = gate["heads"].values()
    sqnrs = [h["sqnr_db"] for h in heads if h.get("sqnr_db") is not None]
    agree = [h["top1_agreement"] for h in heads if "top1_agreement" in h]
    acc = [h["accuracy"] for h in heads if "accuracy" in h]
    return {"n": gate["gate"].split(" on ")[1].split(" ")[0] if " on " in gate["gate"] else "?",
            "sqnr_db": min(sqnrs) if sqnrs else None, "exact": not sqnrs,
            "agreement": min(agree) if agree else None, "accuracy": acc[0] if acc else None,
            "passed": gate["passed"]}


def machine_cell(m: dict[str, Any]) -> str:
    """``pi: Raspberry Pi 5 Model B (aarch64); ARM dot-product, ARM FP16`` (EMULATED when it was)."""
    name = f"{m['device']} (this host)" if m.get("where") == "host" else m["device"]
    emulated = ", EMULATED" if m.get("emulated") else ""
    features = ", ".join(m.get("cpu_features") or []) or "no AVX2/VNNI/dot-product features found"
    return f"{name}: {m.get('cpu')} ({m.get('arch')}{emulated}); {features}"


def _cell(n: dict[str, Any] | None) -> str:
    if n is None:
        return "n/a"
    sqnr = "exact" if n["exact"] else f"{n['sqnr_db']:.1f} dB"
    agree = "" if n["agreement"] is None else f", {n['agreement'] * 100:.1f}%"
    acc = "" if n["accuracy"] is None else f", acc {n['accuracy'] * 100:.2f}%"
    return f"{sqnr}{agree}{acc} ({n['n']})"


def table(verified: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown: one row per (file, machine): SQNR, top-1 agreement (and accuracy) on the golden inputs and on the
    validation samples, runtimes, verdict."""
    rows = ["| file | machine | runtime | golden inputs: SQNR, agreement | validation samples: SQNR, agreement, "
            "accuracy | verdict |", "|---|---|---|---|---|---|"]
    for file, m in verified:
        runtime = ", ".join(f"{k} {v}" for k, v in (m.get("runtimes") or {}).items() if k not in ("numpy",))
        verdict = ("passed" if m.get("passed") else "FAILED") + (f" ({m['precision_ran']} gate)"
                                                                if m.get("precision_ran") else "")
        rows.append(f"| {file} | {machine_cell(m)} | {runtime} | {_cell(numbers(m, 'golden'))} | "
                    f"{_cell(numbers(m, 'samples'))} | {verdict} |")
    return rows
