"""``--on DEVICE``: ``check``, ``predict`` and ``bench`` run on a device over SSH, results back here.

- ``check FILE --parity --on DEVICE``: the file and its validation samples (:mod:`edgekit.recipes.samples`: the
  inputs export verified it on, PyTorch's outputs, the labels) are sent; ``edgekit check --parity --samples`` runs
  there in the device's venv — the card's golden inputs and the samples, judged by the file's precision gate — and
  here on the same inputs; both verdicts go into ``parity.json`` and the deployment card
  (:mod:`edgekit.recipes.verified_on`), side by side.
- ``predict --on``: the file and the images (or video, sound files) are sent, predictions come back.
- ``bench --on``: :func:`edgekit.recipes.bench.bench` with every measurement run by the same per-process worker on
  the device (:class:`OnDevice`); threads default to the device's usable cores; accuracy on the model's own
  validation data, sent over. An emulated device's timings are marked as such.
- ``diff FILE --on``: :func:`diff_on`: the file's tapped run on the device (:class:`DeviceTaps`), PyTorch here.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from typing import Any

from edgekit import formats
from edgekit.errors import ConfigError, EdgekitError, option

CHECK_TIMEOUT_S = 3600


def connect(target: str):
    """The set-up device ``target`` (a name or an address), as a context manager that connects."""
    from rich.markup import escape

    from edgekit.console import say
    from edgekit.devices.remote import Remote

    return Remote(target, say=lambda text: say(escape(text)))


def check_on(path: Path, target: str, parity: bool, max_latency_ms: float | None, max_size_mb: float | None,
             threads: int | None, val_images: int | None = None, samples: bool = True,
             verbose: bool = True) -> dict[str, Any]:
    """The gates on the device (and parity here, on the same inputs); returns ``{"device", "gates", "host_gates",
    "notes", "table"}``. Parity results are recorded in ``parity.json`` and the deployment card. ``val_images``: the
    validation samples sent (None: as many as export verified the file on; -1: all of them; 0: none)."""
    from rich.markup import escape

    from edgekit.console import say
    from edgekit.recipes.check import check as run_check
    from edgekit.recipes.samples import build_samples
    from edgekit.recipes.verified_on import entry, host_entry, record, table

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    if not parity and max_latency_ms is None and max_size_mb is None:
        raise ConfigError(f"give a gate to run on the device: {option('parity')}, {option('max_latency_ms')} or "
                          f"{option('max_size_mb')} (accuracy on the device: edgekit bench FILE --on DEVICE)")
    notes = []
    with tempfile.TemporaryDirectory(prefix="edgekit-check-") as tmp, connect(target) as remote:
        pack = None
        if parity and samples and val_images != 0:
            pack, why = build_samples(path, Path(tmp) / f"{path.stem}.samples.npz", val_images, every=val_images == -1)
            notes.append(f"validation samples: {why}")
            if verbose:
                say(escape(f"{path.name}: validation samples: {why}"))
        host_gates = []
        if parity:  # the same inputs here, for the side-by-side (a file this machine cannot run: not run here)
            try:
                host_gates = run_check(path, parity=True, samples=pack, threads=threads)
            except EdgekitError as exc:
                notes.append(f"not run on this machine: {exc}")
        args = ["check", remote.send(path), "--json"]
        args += ["--parity"] if parity else []
        args += ["--samples", remote.send(pack)] if pack else []
        args += ["--threads", str(threads)] if threads else []
        args += ["--max-latency-ms", str(max_latency_ms)] if max_latency_ms is not None else []
        args += ["--max-size-mb", str(max_size_mb)] if max_size_mb is not None else []
        if verbose:
            say(escape(f"{path.name}: running the gates on {remote.label}"))
        result = remote.edgekit(args, CHECK_TIMEOUT_S, f"edgekit check {path.name}")
        doc = _last_json(result.out)
        if doc is None:
            raise remote.error(f"edgekit check {path.name} failed there: {result.last_error_line}")
        machine = remote.machine()
    gates = doc["gates"]
    if machine.get("emulated") and max_latency_ms is not None:
        notes.append(f"{remote.name} is EMULATED: its latency is qemu's, not the device's")
    command = f"edgekit check {path.name} --parity --on {remote.name}"
    rows = []
    if parity:
        entries = ([host_entry(path, host_gates, command)] if host_gates else []) + [
            entry(remote.name, str(remote.address), machine, path, gates, command)]
        rows = table([(path.name, m) for m in entries])
        if (path.parent / "parity.json").is_file():
            record(path, entries)
        else:
            notes.append("not recorded: no parity.json beside the file (a file edgekit did not export)")
    return {"file": str(path), "device": remote.name, "machine": machine, "gates": gates, "host_gates": host_gates,
            "passed": all(g["passed"] for g in gates), "notes": notes, "table": rows}


def print_check(result: dict[str, Any], as_json: bool = False) -> None:
    """The device's gates (one line each), then this machine and the device side by side."""
    import typer

    if as_json:
        keep = ("file", "device", "passed", "gates", "host_gates", "notes", "machine")
        typer.echo(json.dumps({k: result[k] for k in keep}))
        return
    for g in result["gates"]:
        typer.echo(f"{'PASS' if g['passed'] else 'FAIL'}  on {result['device']}: {g['gate']}: {g['value']} "
                   f"(limit {g['limit']})")
    if result["table"]:
        recorded = Path(result["file"]).parent / "parity.json"
        typer.echo("\n".join(["", *result["table"], "", *result["notes"],
                               *([f"recorded in {recorded}"] if recorded.is_file() else [])]))


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def predict_on(model: Path, source: Path, target: str, topk: int, threads: int | None, stride: int,
               device: str) -> list[dict[str, Any]]:
    """Predictions of ``model`` on ``source`` (a file or a folder), computed on the device."""
    model, source = Path(model), Path(source)
    for p in (model, source):
        if not p.exists():
            raise ConfigError(f"not found: {p}")
    if model.suffix.lower() in formats.TORCH.suffixes:
        raise ConfigError(f"{model.name}: a checkpoint runs in PyTorch, which a device's runtime has not: export it "
                          "(edgekit export) and predict with the file")
    with connect(target) as remote:
        rm, rs = remote.send(model), remote.send(source)
        args = ["predict", rm, rs, "--json", "--topk", str(topk), "--stride", str(stride), "--device", device]
        args += ["--threads", str(threads)] if threads else []
        result = remote.edgekit(args, CHECK_TIMEOUT_S, f"edgekit predict {model.name}")
        try:
            results = json.loads(result.out)
        except ValueError:
            raise remote.error(f"edgekit predict failed there: {result.last_error_line}") from None
    for r in results:
        if isinstance(r.get("source"), str) and r["source"].startswith(rs):
            r["source"] = str(source) + r["source"][len(rs):]
        r["device"] = remote.name
    return results


class OnDevice:
    """What ``bench`` needs to measure on a device: the backends it can run, its cores, the runner of the worker,
    the report's machine lines, and the device's proof for the recommendation."""

    def __init__(self, remote, backends: list[str]) -> None:
        self.remote = remote
        self.record = remote.machine()
        self.system = self.record.get("system", "Linux")
        have = self.record.get("packages") or {}
        self.notes: list[str] = []
        keep = []
        for b in backends:
            why = {"torch": "eager PyTorch is not part of a device's runtime",
                   "web": "a browser bundle is measured in this machine's Chromium",
                   "executorch": "ExecuTorch is not part of a device's runtime",
                   "openvino": None if have.get("openvino") else "openvino is not installed there",
                   "coreml": None if self.system == "Darwin" else "CoreML runs only on macOS"}.get(b)
            if why is None:
                keep.append(b)
            else:
                self.notes.append(f"{b}: not measured on {remote.name} ({why})")
        self.backends = keep
        self.threads = int(self.record.get("usable_cores") or self.record.get("cores") or 1)
        if self.record.get("emulated"):
            self.notes.append(f"{remote.name} is EMULATED ({self.record.get('emulation')}): its timings are qemu's, "
                              "not an ARM device's; the numbers through the gates are ARM's own kernels")

    def runner(self, spec: dict[str, Any], timeout: int) -> dict[str, Any]:
        return self.remote.worker(spec, timeout)

    def mark(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in rows:
            r["on"] = self.remote.name
            if self.record.get("emulated"):
                r["emulated"] = True
        return rows

    def meta(self) -> dict[str, Any]:
        r = self.record
        return {"machine": f"{self.remote.name}: {r.get('arch')}, {r.get('cpu')}, {r.get('usable_cores')} usable "
                           f"cores, {r.get('os')}" + (" — EMULATED: timings are not the device's"
                                                      if r.get("emulated") else ""),
                "on": self.remote.name, "emulated": bool(r.get("emulated")), "cpu_features": r.get("cpu_features")}

    def recommend_args(self) -> dict[str, Any]:
        return {"features": {"cpu": self.record.get("cpu"), "features": self.record.get("cpu_features") or [],
                             "source": self.record.get("features_source")},
                "device": self.remote.name, "emulated": bool(self.record.get("emulated"))}

    def card_args(self) -> dict[str, Any]:
        r = self.record
        pk = r.get("packages") or {}
        return {"machine": {"machine": self.meta()["machine"], "cpu_features": r.get("cpu_features") or [],
                            "python": r.get("python"), "packages": pk, "device": self.remote.name,
                            "emulated": bool(r.get("emulated"))}}


# -- edgekit diff FILE --on DEVICE --------------------------------------------------------------------------------
def diff_on(path: Path, target: str, against: Path | None, data: str | None, images: int,
            out: Path | None) -> dict[str, Any]:
    """``edgekit diff`` with FILE tapped on the device (:mod:`edgekit.runtime.taps_on_device`), on the inputs this
    machine preprocessed; the reference runs here and the layers are compared here
    (:func:`edgekit.export.diff.diff`). The report says where each side ran."""
    from edgekit.export.diff import diff, machine_summary
    from edgekit.runtime.taps import check_tappable

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    check_tappable(path)  # a format diff does not tap anywhere: one line before any connection
    device = connect(target)  # the name resolved and the setup's record read; nothing connects until `with`
    fmt = formats.SUFFIXES[path.suffix.lower()]
    have = device.record.get("packages") or {}
    missing = [m for m in fmt.run_packages if not have.get(m.replace("_", "-"))]
    if missing:
        raise ConfigError(f"device {device.label}: {path.name} needs {', '.join(missing)}, which is not installed "
                          f"there (it has {', '.join(sorted(have)) or 'nothing recorded'}): install "
                          f"edgekit[{fmt.extra}] there or diff the file here")
    with tempfile.TemporaryDirectory(prefix="edgekit-diff-") as tmp, device as remote:
        taps = DeviceTaps(remote, Path(tmp))
        where = {**machine_summary(remote.name, str(remote.address), remote.record), "transfers": taps.log}
        return diff(path, against, data, images, out, tap=taps, ran_on=where)


class DeviceTaps:
    """:func:`edgekit.runtime.taps.tap_file`, run on the device: the inputs (and, for ONNX, the tapped graph made
    here) are sent, ``python -m edgekit.runtime.taps_on_device`` runs in the device's venv, the kept tensors come
    back as one ``.npz``."""

    def __init__(self, remote, tmp: Path) -> None:
        self.remote, self.tmp = remote, tmp
        self.log: list[dict[str, Any]] = []

    def __call__(self, path: Path, x, scopes: dict[str, str] | None, layout: str, modules: list[str] | None):
        import hashlib
        import io

        import numpy as np

        from edgekit.export.layer_map import WRAPPERS
        from edgekit.runtime.taps import Tap, Tapped, onnx_plan

        remote, path = self.remote, Path(path)
        inputs = self.tmp / f"inputs-{len(self.log)}.npy"
        np.save(inputs, np.ascontiguousarray(x, np.float32))
        spec: dict[str, Any] = {"file": remote.send(path), "inputs": remote.send(inputs), "layout": layout,
                                "scopes": scopes, "modules": sorted(set(modules)) if modules else None,
                                "wrappers": list(WRAPPERS)}
        if path.suffix.lower() == ".onnx":  # the device has onnxruntime, not onnx: the tapped graph is made here
            graph, taps, dequant, outputs, unscoped = onnx_plan(path, scopes)
            tapped_graph = self.tmp / f"{path.stem}.tapped.onnx"
            tapped_graph.write_bytes(graph)
            spec["onnx"] = {"graph": remote.send(tapped_graph),
                            "taps": [[t.module, t.tensor, t.op, t.clips_at_zero] for t in taps],
                            "dequant": {k: [np.asarray(s).tolist(), np.asarray(z).tolist()]
                                        for k, (s, z) in dequant.items()},
                            "outputs": outputs, "unscoped": unscoped}
        name = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        spec["out"] = f"{remote.folder}/work/taps-{name}.npz"
        spec_path = remote.write(f"taps-{name}.json", json.dumps(spec).encode())
        result = remote.run_python(["-m", "edgekit.runtime.taps_on_device", spec_path], CHECK_TIMEOUT_S,
                                   f"tapping {path.name}", check=False)
        doc = _last_json(result.out)
        if doc is None or "error" in doc:
            cause = doc["error"] if doc else result.last_error_line
            raise remote.error(f"tapping {path.name} there failed: {cause}")
        try:
            arrays = np.load(io.BytesIO(remote.conn.read(spec["out"], CHECK_TIMEOUT_S)))
        finally:
            remote.conn.run(f"rm -f {shlex.quote(spec['out'])} {shlex.quote(spec_path)}", 60,
                            what="removing the tensors", check=False)
        taps = [Tap(m, t, op, arrays[key], clips) for m, t, op, key, clips in doc["taps"]]
        self.log.append({"file": path.name, "tensors": len(arrays.files), "taps": len(taps),
                         "dropped_unmapped": doc["dropped"], "bytes": doc["bytes"], "seconds_there": doc["seconds"]})
        return Tapped(taps, doc["layout"], f"{doc['runner']}, on {remote.name}", doc["unscoped"],
                      doc["outputs_vs_plain"], doc["notes"])
