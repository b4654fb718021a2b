"""What really ran: which execution provider or delegate took each node, and which layers are integer.

A latency figure means little without it: an ONNX Runtime session asked for CUDA may run part of
the graph (or all of it, when the provider fails to load) on the CPU, and TFLite's XNNPACK
delegate leaves the ops it does not support to TFLite's built-in kernels, silently.

- ONNX Runtime: a second session with ``SessionOptions.enable_profiling`` runs the input once;
  each ``"cat": "Node"`` event of the profile JSON names the node's ``args.provider`` and
  ``args.op_name`` (the kernels that ran after graph optimization: ``QLinearConv`` for a fused
  QDQ group). Placement is static, so one run tells it.
- TFLite: after ``allocate_tensors()`` the interpreter's node list (``_get_ops_details()``) holds
  the model's ops plus one ``DELEGATE`` node per partition XNNPACK took; the ops between a
  delegate node's inputs and outputs are the ones it replaced, the others stay on TFLite's kernels.
- ExecuTorch: the program's instruction list (``deserialize_pte_binary``) has one ``DelegateCall``
  per partition a backend (XNNPACK) took and one ``KernelCall`` per op left to ExecuTorch's portable
  kernels; how many graph ops each partition holds is known only when lowering, so it comes from
  the card (``provenance.delegation``) when the file has one.
- OpenVINO: the compiled graph (``get_runtime_model()``) names each executed layer's
  ``runtimePrecision``: layers per precision (``bf16 24 / f32 2``: what the CPU plugin chose under its
  inference-precision hint) and, for an INT8 IR, the compute layers that ran in u8/i8.
- Quantization placement (INT8 files): ONNX from the graph (``onnx``; a compute node whose inputs
  come from ``DequantizeLinear`` is QDQ-wrapped, i.e. integer), TFLite from each op's tensor types.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import first_line

ONNX_COMPUTE = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
ONNX_INTEGER = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "MatMulIntegerToFloat",
                "DynamicQuantizeMatMul", "MatMulNBits", "QAttention"}
_CODES = {np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16)}


def what_ran(path: str | Path, backend, feed: dict[str, np.ndarray] | None = None,
             requested: str = "auto") -> dict[str, Any]:
    """``residency`` (placement of the nodes), ``fallback`` (a requested accelerator that did not run
    everything, or None) and ``quant`` (integer vs float layers; None for a float file) of an opened file.
    ``feed``: one input per graph input (ONNX Runtime's profiled run). Each part is "n/a: why" on failure."""
    path = Path(path)
    out: dict[str, Any] = {"residency": None, "fallback": None, "quant": None}
    try:  # each backend knows where its nodes ran (Backend.residency)
        out["residency"] = backend.residency(path, feed or {})
    except Exception as exc:  # noqa: BLE001 - placement is a report, never a reason to lose the latency
        out["residency"] = f"n/a: {type(exc).__name__}: {first_line(exc, 160)}"
    out["fallback"] = fallback(requested, backend, out["residency"])
    try:
        out["quant"] = backend.quant(path)
    except Exception as exc:  # noqa: BLE001
        out["quant"] = f"n/a: {type(exc).__name__}: {first_line(exc, 160)}"
    return out


# -- ONNX Runtime ---------------------------------------------------------------------------------


def onnx_residency(path: Path, backend, feed: dict[str, np.ndarray]) -> dict[str, Any]:
    """Nodes per execution provider, and the kernels each ran, from one profiled run."""
    import onnxruntime as ort

    providers = backend.session.get_providers()
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            args = e.get("args", {})
            nodes[e["name"]] = (args.get("provider", "?"), args.get("op_name", "?"))
    by_provider = Counter(p for p, _ in nodes.values())
    return {"nodes": len(nodes), "providers": dict(by_provider), "session_providers": providers,
            "ops": {p: dict(Counter(op for q, op in nodes.values() if q == p)) for p in by_provider}}


def onnx_quant(path: Path) -> dict[str, Any] | None:
    """Compute nodes of the graph that are integer (QDQ-wrapped or integer ops), weight-only or float."""
    try:
        import onnx
    except ImportError:
        return "n/a: needs the onnx package"
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    kinds: dict[str, Counter] = {"integer": Counter(), "weight_only": Counter(), "float": Counter()}
    for node in graph.node:
        if node.op_type in ONNX_INTEGER:
            kinds["integer"][node.op_type] += 1
        elif node.op_type in ONNX_COMPUTE:
            dq = [producer.get(i) == "DequantizeLinear" for i in node.input[:2]]
            kind = "integer" if all(dq) else "weight_only" if any(dq[1:]) else "float"
            kinds[kind][node.op_type] += 1
    return _quant_summary(kinds)


# -- TFLite ---------------------------------------------------------------------------------------


def _tflite_ops(interp) -> tuple[list[dict], list[dict]]:
    """(the model's ops, the delegate nodes) of an allocated interpreter."""
    ops = interp._get_ops_details()  # noqa: SLF001 - the interpreter's only per-node view
    return [o for o in ops if o["op_name"] != "DELEGATE"], [o for o in ops if o["op_name"] == "DELEGATE"]


def tflite_residency(interp) -> dict[str, Any]:
    """How many of the model's ops the XNNPACK delegate took, and which stayed on TFLite's kernels."""
    model_ops, delegates = _tflite_ops(interp)
    by_index = {o["index"]: o for o in model_ops}
    producer = {int(t): o["index"] for o in model_ops for t in o["outputs"]}
    taken: set[int] = set()
    for d in delegates:  # a partition: the ops between the delegate node's inputs and its outputs
        stop = {int(t) for t in d["inputs"]}
        stack = [int(t) for t in d["outputs"]]
        while stack:
            t = stack.pop()
            i = producer.get(t)
            if t in stop or i is None or i in taken:
                continue
            taken.add(i)
            stack.extend(int(x) for x in by_index[i]["inputs"] if x >= 0)
    left = Counter(o["op_name"] for o in model_ops if o["index"] not in taken)
    return {"delegate": "XNNPACK" if delegates else None, "ops": len(model_ops), "delegated": len(taken),
            "partitions": len(delegates), "share": len(taken) / len(model_ops) if model_ops else None,
            "not_delegated": dict(left)}


def tflite_quant(interp) -> dict[str, Any] | None:
    """Op types by the type of their data input: integer (int8/uint8/int16), weight-only (float in, 8-bit
    weights), float; QUANTIZE/DEQUANTIZE of 8-bit tensors counted as conversions."""
    model_ops, _ = _tflite_ops(interp)
    kinds: dict[str, Counter] = {"integer": Counter(), "weight_only": Counter(), "float": Counter()}
    converts: Counter = Counter()
    for o in model_ops:
        types = [np.dtype(t) for t in o.get("operand_types", [])]
        if not types:
            continue
        if o["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            if set(types) & _CODES or set(np.dtype(t) for t in o.get("result_types", [])) & _CODES:
                converts[o["op_name"]] += 1
        elif types[0] in _CODES:
            kinds["integer"][o["op_name"]] += 1
        elif types[0].kind == "f":
            kinds["weight_only" if set(types[1:]) & {np.dtype(np.int8), np.dtype(np.uint8)} else "float"][
                o["op_name"]] += 1
    summary = _quant_summary(kinds)
    if summary is not None:
        summary["conversions"] = dict(converts)
    return summary


def _quant_summary(kinds: dict[str, Counter]) -> dict[str, Any] | None:
    """None for a float file; else per kind the number of layers and their op types."""
    if not kinds["integer"] and not kinds["weight_only"]:
        return None
    return {k: {"layers": sum(c.values()), "ops": dict(c)} for k, c in kinds.items()}


# -- ExecuTorch -----------------------------------------------------------------------------------


def pte_residency(path: Path) -> dict[str, Any]:
    """Partitions per delegate and the ops left to the portable kernels, read from the program
    itself (so a ``.pte`` edgekit did not write is covered too); op counts inside the partitions
    from the card's ``provenance.delegation`` when there is one."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(Path(path).read_bytes())
    program = getattr(pte, "program", pte)
    plan = next((p for p in program.execution_plan if p.name == "forward"), program.execution_plan[0])
    partitions: Counter = Counter()
    kernels: Counter = Counter()
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            kind = type(args).__name__
            if kind == "DelegateCall":
                partitions[plan.delegates[args.delegate_index].id] += 1
            elif kind == "KernelCall":
                op = plan.operators[args.op_index]
                kernels[op.name.split("::")[-1] + (f".{op.overload}" if op.overload else "")] += 1
    delegate = ", ".join(b.replace("Backend", "").upper() for b in partitions) or None
    out = {"delegate": delegate, "partitions": sum(partitions.values()), "not_delegated": dict(kernels),
           "ops": None, "delegated": None, "share": None}
    from edgekit.runtime.metadata import read_card

    try:
        lowered = read_card(path).provenance.get("delegation") or {}
    except Exception:  # noqa: BLE001 - a file without a card: the program's own counts only
        lowered = {}
    if "delegated_ops" in lowered:  # ops as the graph had them before lowering (getitem plumbing excluded)
        total = lowered["delegated_ops"] + lowered.get("non_delegated_ops", 0)
        out.update(ops=total, delegated=lowered["delegated_ops"],
                   share=lowered["delegated_ops"] / total if total else None)
    return out


# -- fallback -------------------------------------------------------------------------------------


def fallback(requested: str, backend, residency: Any) -> str | None:
    """A requested accelerator that did not run everything, in one line (None when all ran where asked)."""
    return backend.fallback(requested, residency)


def onnx_fallback(backend, residency: Any) -> str | None:
    """ONNX Runtime's: the first provider asked for that the session dropped, or nodes it left to another."""
    wanted = (getattr(backend, "providers", None) or ["CPUExecutionProvider"])[0]
    if wanted == "CPUExecutionProvider":
        return None
    running = backend.session.get_providers()
    if wanted not in running:
        return f"asked for {wanted}; the session has only {', '.join(running)}: everything ran there"
    if isinstance(residency, dict) and residency.get("nodes"):
        other = {p: n for p, n in residency["providers"].items() if p != wanted}
        if other:
            ops = sorted({op for p in other for op in residency["ops"][p]})
            return (f"{sum(other.values())} of {residency['nodes']} nodes ran on "
                    f"{', '.join(other)} instead of {wanted} ({', '.join(ops[:8])})")
    return None
