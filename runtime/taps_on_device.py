"""The device side of ``edgekit diff FILE --on DEVICE``: the file's tapped run (:mod:`edgekit.runtime.taps`) on the
device, in its own venv (``edgekit[runtime]``: no torch, no ``onnx``), on inputs the host preprocessed and sent.

``python -m edgekit.runtime.taps_on_device SPEC.json`` reads a spec the host wrote:

- ``file``, ``inputs`` (an ``.npy`` batch in the file's layout), ``layout``, ``out`` (the ``.npz`` to write);
- ``scopes``: an OpenVINO IR's op name -> module map when the IR carries none (the host exported it);
- ``onnx``: for an ONNX file, the tapped graph the host made (``onnx`` is not part of the runtime) and its taps,
  dequantization scales and graph outputs (:func:`edgekit.runtime.taps.onnx_plan`);
- ``modules`` and ``wrappers``: the reference's module names and the export wrappers' prefixes. Only the tensors
  of modules the reference has (or of their submodules) are written: the others map to nothing.

It writes ``out`` (one float32 array per distinct tensor, uncompressed: zlib under an emulator costs more than the
bytes it saves) atomically, and prints one JSON line: the taps (module, tensor, op, array key), the runner, the
count of unscoped nodes, the tapped run's outputs against the plain run's, the bytes written. A failure the user
can act on prints ``{"error": ...}`` and exits 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.runtime.taps import ONNX_RUNNER, Tap, Tapped, run_onnx_plan, tap_file, versus_plain


def kept(taps: list[Tap], modules: list[str] | None, wrappers: list[str]) -> list[Tap]:
    """The taps whose module (without a wrapper prefix) is one of ``modules`` or inside one: the others have no
    counterpart in the reference. ``modules=None`` keeps every tap."""
    if modules is None:
        return taps
    names = set(modules)

    def known(module: str) -> bool:
        for w in wrappers:
            if module.startswith(w):
                parts = module[len(w):].split(".")
                if any(".".join(parts[:k]) in names for k in range(1, len(parts) + 1)):
                    return True
        return False

    return [t for t in taps if known(t.module)]


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Tap ``spec['file']`` on ``spec['inputs']``, write the kept tensors to ``spec['out']``; the manifest."""
    from edgekit.atomic import write_with

    t0 = time.perf_counter()
    path, x = Path(spec["file"]), np.load(spec["inputs"])
    plan = spec.get("onnx")
    if plan:
        taps = [Tap(m, t, op, clips_at_zero=clips) for m, t, op, clips in plan["taps"]]
        dequant = {k: (np.asarray(s, np.float32), np.asarray(z, np.float32)) for k, (s, z) in plan["dequant"].items()}
        heads = run_onnx_plan(plan["graph"], taps, dequant, plan["outputs"], x)
        tapped = Tapped(taps, spec["layout"], ONNX_RUNNER, int(plan["unscoped"]))
        tapped.outputs_vs_plain = versus_plain(path, x, heads)
    else:
        tapped = tap_file(path, x, spec.get("scopes"), spec["layout"])
    keys: dict[str, str] = {}
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for t in kept(tapped.taps, spec.get("modules"), spec.get("wrappers") or [""]):
        key = keys.setdefault(t.tensor, f"t{len(keys)}")
        arrays[key] = np.ascontiguousarray(t.value, np.float32)
        rows.append([t.module, t.tensor, t.op, key, t.clips_at_zero])
    out = write_with(spec["out"], lambda fh: np.savez(fh, **arrays))
    return {"taps": rows, "runner": tapped.runner, "layout": tapped.layout, "unscoped": tapped.unscoped,
            "outputs_vs_plain": tapped.outputs_vs_plain, "notes": tapped.notes, "dropped": len(tapped.taps) - len(rows),
            "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str] | None = None) -> int:
    from edgekit.errors import EdgekitError, first_line

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edgekit.runtime.taps_on_device SPEC.json", file=sys.stderr)
        return 2
    try:
        doc = run(json.loads(Path(args[0]).read_text()))
    except EdgekitError as exc:
        print(json.dumps({"error": first_line(exc, 300)}))
        return 2
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
