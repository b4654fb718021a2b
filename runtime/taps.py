"""Activation taps: a model file run with its intermediate tensors kept, each tensor named by the PyTorch module
the file says it came from (``edgekit diff``, :mod:`edgekit.export.diff`, compares them with PyTorch's).

Torch-free: the file runs through its own runtime, as on a device.

- ONNX: a copy of the graph with extra outputs (the last node of each module); the dynamo exporter records the
  module path of every node (``pkg.torch.onnx.name_scopes``). In a QDQ (INT8) graph a node whose output is
  quantized is read after its ``QuantizeLinear`` (the uint8 tensor the fused integer kernel writes, dequantized
  here), so that tapping does not stop onnxruntime from fusing it.
- TFLite: LiteRT's interpreter with ``experimental_preserve_all_tensors=True``, on its built-in kernels (a tensor
  inside an XNNPACK partition is never written); a tensor's name lists the modules converted into it, the first
  one being the module whose output it is; integer tensors are dequantized with their own scale and zero point.
- OpenVINO: ``model.add_outputs`` on the ops whose friendly names are the ONNX nodes the IR was converted from;
  the IR keeps no module paths, so ``scopes`` (ONNX node name -> module, from the exporter) is needed.

Every tapped run is checked against the file's plain run on the same inputs: ``outputs_vs_plain`` is the max
relative difference of the heads (0 when the taps changed nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import ConfigError

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
TAPPABLE = (".onnx", ".tflite", ".xml")
NOT_TAPPED = {
    ".pte": "ExecuTorch: per-layer outputs need an ETDump-enabled runtime build and its Inspector (not run here)",
    ".mlpackage": "CoreML: per-layer outputs need coremltools' MLModelComparator on macOS (not run here)",
    ".web": "web bundles: diff its ONNX file (bundle/model.onnx); the page itself is not tapped in Chromium here",
}


@dataclass
class Tap:
    """One kept tensor: the module path the file gives it (as the file writes it, wrapper prefix included),
    its name in the file, its op, and its values over the batch (float32, the file's layout)."""

    module: str
    tensor: str
    op: str
    value: np.ndarray | None = None


@dataclass
class Tapped:
    taps: list[Tap]  # in execution order
    layout: str  # of the file's 4-D activations: NCHW or NHWC
    runner: str  # what ran them, in words
    unscoped: int = 0  # computing nodes that name no module
    outputs_vs_plain: float | None = None
    notes: list[str] = field(default_factory=list)


def tap_file(path: str | Path, x: np.ndarray, scopes: dict[str, str] | None = None, layout: str = "NCHW") -> Tapped:
    """Run ``path`` on ``x`` (one input at a time: a file exported at batch 1 runs as exported) with its
    intermediate tensors kept; ``x`` is already in the file's layout."""
    path = check_tappable(path)
    suffix = path.suffix.lower()
    run = {".onnx": _onnx, ".tflite": _tflite, ".xml": _openvino}[suffix]
    tapped, heads = run(path, x, scopes)
    tapped.layout = layout
    tapped.outputs_vs_plain = versus_plain(path, x, heads)
    return tapped


def versus_plain(path: Path, x: np.ndarray, heads: list[np.ndarray]) -> float:
    """The max relative difference between the tapped run's heads and the file's plain run on ``x``."""
    from edgekit.runtime.backends import open_backend

    plain = open_backend(path, "cpu", None)
    outs = [np.concatenate([plain.run(x[i: i + 1])[k] for i in range(len(x))]) for k in range(len(heads))]
    return max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in zip(heads, outs, strict=True))


def check_tappable(path: str | Path) -> Path:
    """``path``, or a one-line error saying why its format's layers are not tapped here."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in NOT_TAPPED:
        raise ConfigError(f"{path.name}: {NOT_TAPPED[suffix]}")
    if suffix not in TAPPABLE:
        raise ConfigError(f"{path.name}: diff taps .onnx, .tflite and .xml files, not '{suffix}'")
    return path


def _stack(runs: list[dict[str, np.ndarray]], taps: list[Tap]) -> None:
    for t in taps:
        t.value = np.concatenate([r[t.tensor] for r in runs]).astype(np.float32)


# -- ONNX ---------------------------------------------------------------------------------------------------------
def onnx_scopes(proto) -> dict[str, str]:
    """ONNX node name (and its first output's name) -> the deepest module the exporter attributed it to
    (``model.backbone.stem``). OpenVINO renames an op that feeds a graph output after that output (the last Linear
    becomes ``digit``); its tensor keeps the ONNX output's name, so tensor names map too."""
    found, outputs = {}, {}
    for node in proto.graph.node:
        raw = next((p.value for p in node.metadata_props if p.key == SCOPES_KEY), None)
        if raw:
            names = [s.strip().strip("'\"") for s in raw.strip("[]").split(",")]
            if len(names) >= 2 and names[-2]:
                found[node.name] = names[-2]
                if node.output:
                    outputs[node.output[0]] = names[-2]
    return {**outputs, **found}


IR_SCOPES = ["edgekit", "scopes"]  # rt_info path of an IR's op name -> module map (JSON), written at export


def ir_scopes(path: str | Path) -> dict[str, str] | None:
    """The op name -> module map an IR carries (edgekit's export writes it), or ``None``."""
    import json

    from edgekit.runtime.openvino import read_ir

    model = read_ir(path)
    return json.loads(str(model.get_rt_info(IR_SCOPES).astype(str))) if model.has_rt_info(IR_SCOPES) else None


ONNX_RUNNER = "onnxruntime (CPU) with the extra outputs added to a copy of the graph"


def _onnx(path: Path, x: np.ndarray, scopes: dict[str, str] | None) -> tuple[Tapped, list[np.ndarray]]:
    graph, taps, dequant, graph_outputs, unscoped = onnx_plan(path, scopes)
    heads = run_onnx_plan(graph, taps, dequant, graph_outputs, x)
    return Tapped(taps, "NCHW", ONNX_RUNNER, unscoped), heads


def onnx_plan(path: Path, scopes: dict[str, str] | None
              ) -> tuple[bytes, list[Tap], dict[str, tuple[np.ndarray, np.ndarray]], list[str], int]:
    """The tapped copy of an ONNX graph (needs the ``onnx`` package: on the host), its taps in execution order,
    the tensors to dequantize (name -> scale, zero point), the graph's own outputs and the count of unscoped
    nodes. :func:`run_onnx_plan` runs it with onnxruntime alone (as on a device)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    scopes = {**(scopes or {}), **onnx_scopes(proto)}
    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    inits = {i.name: i for i in proto.graph.initializer}
    skip = {"QuantizeLinear", "DequantizeLinear", "Constant", "Shape", "Cast"}
    last: dict[str, tuple[int, Any]] = {}
    unscoped = 0
    for k, node in enumerate(proto.graph.node):
        if node.op_type in skip:
            continue
        module = scopes.get(node.name)
        if module is None:
            unscoped += 1
        else:
            last[module] = (k, node)
    taps, dequant = [], {}
    for module, (_, node) in sorted(last.items(), key=lambda kv: kv[1][0]):
        out = node.output[0]
        q = next((c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"), None)
        if q is not None and len(q.input) >= 2 and q.input[1] in inits:  # integer kernels write the quantized tensor
            scale = numpy_helper.to_array(inits[q.input[1]]).astype(np.float32)
            zero = numpy_helper.to_array(inits[q.input[2]]).astype(np.float32) if len(q.input) > 2 else 0.0
            dequant[q.output[0]] = (scale, zero)
            out = q.output[0]
        taps.append(Tap(module, out, node.op_type))
    graph_outputs = [o.name for o in proto.graph.output]
    have = set(graph_outputs)
    for t in taps:
        if t.tensor not in have:
            proto.graph.output.append(onnx.ValueInfoProto(name=t.tensor))
            have.add(t.tensor)
    return proto.SerializeToString(), taps, dequant, graph_outputs, unscoped


def run_onnx_plan(graph: bytes | str, taps: list[Tap], dequant: dict[str, tuple[np.ndarray, np.ndarray]],
                  graph_outputs: list[str], x: np.ndarray) -> list[np.ndarray]:
    """Run a tapped graph (:func:`onnx_plan`; bytes or a path) on ``x`` one input at a time: fills each tap's
    value and returns the graph's own outputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    runs = []
    for i in range(len(x)):
        values = dict(zip(names, session.run(None, {name: x[i: i + 1]}), strict=True))
        for tensor, (scale, zero) in dequant.items():
            values[tensor] = (values[tensor].astype(np.float32) - zero) * scale
        runs.append(values)
    _stack(runs, taps)
    return [np.concatenate([r[o] for r in runs]).astype(np.float32) for o in graph_outputs]


# -- TFLite -------------------------------------------------------------------------------------------------------
_SUFFIX = re.compile(r";\d*$")


def tflite_module(name: str) -> str | None:
    """The module path in a LiteRT tensor name: its first location (``Cls_attr/Cls_attr/...``, the classes
    qualified), without the numbering suffix; ``None`` for tensors that name no module."""
    first = _SUFFIX.sub("", name.split(";;")[0])
    parts = []
    for seg in first.split("/"):
        cls, sep, attr = seg.rpartition(".")[2].partition("_")
        if not sep or not cls[:1].isupper():
            if parts or "." not in seg:
                return None if not parts else ".".join(parts)
            continue  # the root class (``edgekit.train.trained.ChannelsLast``)
        parts.append(attr)
    return ".".join(parts) or None


def _tflite(path: Path, x: np.ndarray, scopes: dict[str, str] | None) -> tuple[Tapped, list[np.ndarray]]:
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LiteRT warns that preserving all tensors is for debugging: it is
        interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    last: dict[str, tuple[int, Tap]] = {}
    unscoped = 0
    for k, op in enumerate(interp._get_ops_details()):  # noqa: SLF001 - the one API listing ops in order
        for index in op["outputs"]:
            d = details.get(int(index))
            module = tflite_module(d["name"]) if d is not None else None
            if module is None:
                unscoped += 1
                continue
            last[module] = (k, Tap(module, str(int(index)), op["op_name"]))
    taps = [t for _, t in sorted(last.values(), key=lambda kv: kv[0])]
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    runs = []
    for i in range(len(x)):
        feed = x[i: i + 1]
        scale, zero = inp["quantization"]
        if scale:
            feed = np.clip(np.round(feed / scale + zero), *_limits(inp["dtype"])).astype(inp["dtype"])
        interp.set_tensor(inp["index"], feed.astype(inp["dtype"]))
        interp.invoke()
        values = {}
        for t in taps + [Tap("", str(o["index"]), "output") for o in outs]:
            d = details[int(t.tensor)]
            v = interp.get_tensor(int(t.tensor))
            s, z = d["quantization"]
            values[t.tensor] = (v.astype(np.float32) - z) * s if s else v.astype(np.float32)
        runs.append(values)
    _stack(runs, taps)
    from edgekit.runtime.backends import tflite_output_position

    heads = [np.concatenate([r[str(o["index"])] for r in runs]) for o in sorted(outs, key=tflite_output_position)]
    return Tapped(taps, "NHWC", "LiteRT's built-in kernels (no XNNPACK) with every tensor preserved",
                  unscoped), heads


def _limits(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return info.min, info.max


# -- OpenVINO -----------------------------------------------------------------------------------------------------
def _openvino(path: Path, x: np.ndarray, scopes: dict[str, str] | None) -> tuple[Tapped, list[np.ndarray]]:
    from edgekit.runtime.openvino import HINTS, openvino, pinned, read_ir

    scopes = scopes or ir_scopes(path)
    if not scopes:
        raise ConfigError(f"{path.name}: an OpenVINO IR keeps no PyTorch module names; diff finds them by exporting "
                          "the reference checkpoint to ONNX (give --against CHECKPOINT)")
    ov = openvino()
    core = ov.Core()
    model = read_ir(path, core)
    heads_n = len(model.outputs)
    last: dict[str, tuple[int, Any]] = {}
    unscoped = 0
    for k, op in enumerate(model.get_ordered_ops()):
        if op.get_type_name() in ("Constant", "Parameter", "Result", "Convert", "FakeQuantize"):
            continue
        names = sorted(op.output(0).get_names()) if op.get_output_size() else []
        module = scopes.get(op.get_friendly_name()) or next((scopes[n] for n in names if n in scopes), None)
        if module is None:
            unscoped += 1
        else:
            last[module] = (k, op)
    ordered = sorted(last.items(), key=lambda kv: kv[1][0])
    model.add_outputs([op.output(0) for _, (_, op) in ordered])  # an op already feeding a Result adds none
    sources = [r.input_value(0) for r in model.get_results()]  # each Result's producer, in the outputs' order
    where = {(v.get_node().get_friendly_name(), v.get_index()): k for k, v in enumerate(sources)}
    slots = [where[(op.get_friendly_name(), 0)] for _, (_, op) in ordered]
    taps = [Tap(module, op.get_friendly_name(), op.get_type_name()) for module, (_, op) in ordered]
    hint = pinned(model)
    config: dict[str, Any] = {"INFERENCE_NUM_THREADS": 1}
    if hint:
        config["INFERENCE_PRECISION_HINT"] = HINTS[hint]
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    runs = []
    for i in range(len(x)):
        res = request.infer({0: np.ascontiguousarray(x[i: i + 1])})
        values = {t.tensor: np.asarray(res[compiled.outputs[k]], np.float32) for k, t in zip(slots, taps, strict=True)}
        values.update({f"__head{j}": np.asarray(res[compiled.outputs[j]], np.float32) for j in range(heads_n)})
        runs.append(values)
    _stack(runs, taps)
    heads = [np.concatenate([r[f"__head{j}"] for r in runs]) for j in range(heads_n)]
    ran = hint or "OpenVINO's default precision"
    return Tapped(taps, "NCHW", f"OpenVINO (CPU, {ran}) with extra outputs added to the IR", unscoped), heads
