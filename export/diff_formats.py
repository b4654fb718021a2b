"""``edgekit diff`` for the formats whose layers a plain run does not show: ExecuTorch ``.pte`` files, web bundles
(``.web``) and CoreML (``.mlpackage``, not run here). ONNX, TFLite and OpenVINO are tapped by
:func:`edgekit.runtime.taps.tap_file`; :func:`tap_any` sends each file to its own way.

ExecuTorch. edgekit lowers the whole model to XNNPACK, and a delegate is one opaque blob to ExecuTorch's runtime: run
with an ETDump (``_load_for_executorch(..., enable_etdump=True, debug_buffer_size=...)``, read by the Inspector),
the file shows the delegate's profiling events (XNNPACK operator names, no debug handles, no tensors) and, for the
``DELEGATE_CALL`` event, its input and its outputs (the heads) only (:func:`etdump_shows`, measured on every diff
and recorded in ``diff.json``). So the layers come from the program rebuilt from the checkpoint the file's card
names, lowered as :mod:`edgekit.export.executorch` lowers it (``torch.export`` -> XNNPACK partitioner), with the last
node of each module (its ``nn_module_stack``) as an extra program output
(``executorch.devtools.intermediate_output_tap``: the outputs leave the delegate, which still runs them), run by
ExecuTorch's runtime. The rebuild stands for the file only if it computes what the file computes: its heads are
compared with the file's own run on the same inputs, and diff refuses (one line) when they differ by more than
:data:`FAITHFUL_REL` (a file edited after export, or made from another checkpoint).

Web bundles: the bundle's ONNX graph with extra outputs, run by the bundle's own onnxruntime-web (WebAssembly) in
headless Chromium (:func:`edgekit.runtime.taps.tap_web`).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import CardError, ConfigError
from edgekit.runtime.taps import Tap, Tapped, check_tappable, tap_file, tap_web

NOT_RUN = {".mlpackage": "CoreML: per-layer outputs need coremltools' MLModelComparator, which runs CoreML models "
                         "on macOS only; this machine is Linux (not run here)"}
# How well the rebuilt program's heads must agree with the file's (max relative difference). They are not bit-equal:
# a tapped conv's output leaves the delegate, so XNNPACK cannot fold the BatchNorm after it as in the file (measured on
# four 224-px mobileone_s0 files: 3.3e-5 to 2.0e-4); a file made from other weights differs by far more (0.3 in the
# tests).
FAITHFUL_REL = 1e-3
ETDUMP_BUFFER = 64 << 20  # bytes for the tensors an ETDump keeps (the delegate's inputs and outputs)


def check_format(path: Path) -> Path:
    """``path`` when diff can read its layers, else a one-line error saying why."""
    suffix = path.suffix.lower()
    if suffix in NOT_RUN:
        raise ConfigError(f"{path.name}: {NOT_RUN[suffix]}")
    if suffix == ".web":
        from edgekit.runtime.taps import bundle_model

        bundle_model(path)
        return path
    if suffix == ".pte":  # a file that is no program: one line (ExecuTorch's loader also logs its own on stderr)
        from edgekit.logs import quiet
        from edgekit.runtime.metadata import NoCardError, read_card

        with quiet(stderr=True), contextlib.suppress(NoCardError):
            read_card(path)
        return path
    return check_tappable(path)


def tap_any(path: Path, x: np.ndarray, scopes: dict[str, str] | None, layout: str, card) -> Tapped:
    """``path``'s per-module tensors on ``x`` (in the file's layout), each format its own way."""
    suffix = path.suffix.lower()
    if suffix == ".pte":
        return tap_pte(path, card, x)
    if suffix == ".web":
        return tap_web(path, x)
    return tap_file(path, x, scopes, layout)


# -- ExecuTorch ---------------------------------------------------------------------------------------------------
def tap_pte(path: Path, card, x: np.ndarray) -> Tapped:
    """The layers of ``path`` (a ``.pte`` edgekit lowered to XNNPACK), read from its program rebuilt from the
    checkpoint its card names, with each module's last tensor as an extra output (see the module's docstring)."""
    import torch

    from edgekit.export.executorch import check_available

    check_available()
    if card is None:
        raise CardError(f"{path.name} carries no edgekit card: the checkpoint its program was lowered from is unknown, "
                        "and ExecuTorch's runtime shows only the XNNPACK delegate's inputs and outputs")
    source = card.provenance.get("source")
    if not source or not Path(source).exists():
        raise CardError(f"{path.name}: ExecuTorch's runtime shows only the XNNPACK delegate's inputs and outputs, so "
                        f"diff rebuilds the program from the checkpoint the card names ({source or 'none'}), which is "
                        "not found here")
    precision = card.provenance.get("precision", "fp32")
    if precision != "fp32":
        raise ConfigError(f"{path.name}: diff rebuilds an ExecuTorch program to read its layers, and rebuilds FP32 "
                          f"programs only (this one is {precision}: its calibration is not in the file); diff the "
                          "INT8 ONNX or TFLite file of the same checkpoint")
    from edgekit.train.trained import load_trained

    trained = load_trained(source).at_size(card.input.size)  # rebuilt at the file's size (export --imgsz)
    batch = int(card.provenance.get("batch", 1))
    program, specs = _tapped_program(trained.wrapped(), trained.sample(batch))
    from executorch.extension.pybindings.portable_lib import _load_for_executorch_from_buffer

    from edgekit.logs import quiet

    heads_n = len(card.head_names)
    runs: list[list[np.ndarray]] = []
    with quiet(stdout=True, stderr=True):  # ExecuTorch's runtime logs its threadpool size on stderr
        module = _load_for_executorch_from_buffer(program)
        for i in range(0, len(x), batch):
            chunk = x[i: i + batch]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)]) if len(chunk) < batch \
                else chunk
            outs = module.forward([torch.from_numpy(np.ascontiguousarray(padded))])
            runs.append([np.asarray(o)[: len(chunk)] for o in outs])
    values = [np.concatenate([r[k] for r in runs]).astype(np.float32) for k in range(len(runs[0]))]
    taps = [Tap(spec.module_path, f"output {spec.output_index}", spec.op_target.split(".")[-2]
                if spec.op_target.count(".") >= 2 else spec.op_target, values[spec.output_index]) for spec in specs]
    from edgekit.runtime.backends import open_backend

    with quiet(stdout=True, stderr=True):
        plain = open_backend(path, "cpu", None).run(x)
    rel = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
              for a, b in zip(values[:heads_n], plain, strict=True))
    if rel > FAITHFUL_REL:
        raise ConfigError(f"{path.name}: its program rebuilt from {Path(source).name} gives other outputs than the "
                          f"file (max relative difference {rel:.2g} > {FAITHFUL_REL:g}): the file was changed after "
                          "export or made from another checkpoint, and its own run shows no layer")
    import executorch.version

    shows = etdump_shows(path, x[:batch] if len(x) >= batch else np.repeat(x[:1], batch, 0))
    tapped = Tapped(taps, "NCHW", f"ExecuTorch {executorch.version.__version__} (XNNPACK) running the program rebuilt "
                    f"from {Path(source).name} with each module's last tensor as an extra output (the file's own "
                    f"run shows {shows['text']}; the rebuild's heads match the file's to {rel:.1g})", 0)
    tapped.outputs_vs_plain = rel
    tapped.notes.append(shows["text"])
    return tapped


def _tapped_program(module, sample) -> tuple[bytes, list]:
    """``module`` lowered to XNNPACK as :func:`edgekit.export.executorch.export_executorch` lowers it, with the last
    node of every module as an extra output: (the program's bytes, the taps' specs in execution order)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.intermediate_output_tap import FULL_TENSOR, strip_taps_, tap_intermediate_outputs_
    from executorch.exir import to_edge_transform_and_lower

    from edgekit.errors import first_line
    from edgekit.export.executorch import ExecuTorchExportError
    from edgekit.logs import quiet

    with quiet(stdout=True, python_warnings=True):  # torch.export and exir warn and log on every call
        try:
            program = torch.export.export(module.eval(), (sample,))
            last: dict[str, Any] = {}
            for node in program.graph_module.graph.nodes:
                stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
                if stack:
                    last[list(stack.values())[-1][0]] = node  # a later node of the same module replaces it
            keep = {id(n) for n in last.values()}
            program, specs = tap_intermediate_outputs_(program, [(lambda n: id(n) in keep, FULL_TENSOR)])
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            strip_taps_(edge)
            return edge.to_executorch().buffer, specs
        except Exception as exc:  # noqa: BLE001 - torch.export / exir errors are pages long
            raise ExecuTorchExportError(f"ExecuTorch could not rebuild the program with its layers as outputs: "
                                        f"{first_line(exc)}") from None


def etdump_shows(path: Path, x: np.ndarray) -> dict[str, Any]:
    """What the file's own run gives per operator: one run with an ETDump and a debug buffer, read by the Inspector.
    Counts the events of the run, the delegated operators profiled, and the tensors kept (each event's name and
    shapes); ``text`` says it in words."""
    import torch
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    from edgekit.logs import quiet

    try:
        with tempfile.TemporaryDirectory() as tmp, quiet(stdout=True, stderr=True, python_warnings=True):
            from executorch.devtools import Inspector

            module = _load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=ETDUMP_BUFFER)
            module.forward([torch.from_numpy(np.ascontiguousarray(x))])
            module.write_etdump_result_to_file(f"{tmp}/run.etdp", f"{tmp}/run.debug")
            inspector = Inspector(etdump_path=f"{tmp}/run.etdp", debug_buffer_path=f"{tmp}/run.debug")
            events = [e for b in inspector.event_blocks if b.name == "Execute" for e in b.events]
    except Exception as exc:  # noqa: BLE001 - a description of the file, never a reason to fail the diff
        from edgekit.errors import first_line

        return {"error": first_line(exc, 160), "text": f"no ETDump ({first_line(exc, 80)})"}
    kept = [(e.name, [list(d.shape) for d in e.debug_data if hasattr(d, "shape")]) for e in events
            if isinstance(e.debug_data, list) and e.debug_data]
    profiled = sum(1 for e in events if e.is_delegated_op)
    calls = sum(1 for e in events if e.name == "DELEGATE_CALL")
    per_op = sum(len(shapes) for name, shapes in kept if name != "DELEGATE_CALL")
    tensors = sum(len(shapes) for _, shapes in kept)
    text = (f"in its ETDump {calls} delegate call{'s' if calls != 1 else ''} keeping {tensors - per_op} tensors (its "
            f"inputs and outputs), {profiled} delegated operators timed with no tensor, {per_op} tensors of single "
            "operators")
    return {"delegate_calls": calls, "delegated_ops_profiled": profiled, "tensors": tensors,
            "per_operator_tensors": per_op, "kept": kept, "text": text}
