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
NOT_TAPPED = {  # what tap_file does not run (edgekit.export.diff_formats sends each to its own way)
    ".pte": "ExecuTorch: the runtime shows an XNNPACK delegate's inputs and outputs only; edgekit diff reads the "
            "layers from the program rebuilt from its checkpoint (needs torch)",
    ".mlpackage": "CoreML: per-layer outputs need coremltools' MLModelComparator on macOS (not run here)",
    ".web": "web bundles: tap_web runs the bundle's ONNX graph with extra outputs in Chromium",
}


@dataclass
class Tap:
    """One kept tensor: the module path the file gives it (as the file writes it, wrapper prefix included),
    its name in the file, its op, and its values over the batch (float32, the file's layout)."""

    module: str
    tensor: str
    op: str
    value: np.ndarray | None = None
    # read after a QuantizeLinear whose range starts at 0 that follows no activation: negatives read as 0, the
    # ReLU onnxruntime's quantizer dropped (it lets the quantized range clip instead); see export/diff.py rows_of
    clips_at_zero: bool = False


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
    """:func:`onnx_tapped` serialized: what :func:`run_onnx_plan` runs with onnxruntime alone (as on a device, which
    has no ``onnx`` package)."""
    proto, taps, dequant, graph_outputs, unscoped = onnx_tapped(path, scopes)
    return proto.SerializeToString(), taps, dequant, graph_outputs, unscoped


def onnx_tapped(path: Path, scopes: dict[str, str] | None = None):
    """A copy of the ONNX graph in ``path`` with the last node of each module added as an output. Returns (proto,
    taps, dequant: tensor -> (scale, zero point) of taps read after their ``QuantizeLinear``, the graph's own
    output names, the count of computing nodes that name no module)."""
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
    clipping = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "Softmax"}  # already at >= 0: a range from 0 clips nothing
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
        clips = False
        if q is not None and len(q.input) >= 2 and q.input[1] in inits:  # integer kernels write the quantized tensor
            scale = numpy_helper.to_array(inits[q.input[1]]).astype(np.float32)
            raw = numpy_helper.to_array(inits[q.input[2]]) if len(q.input) > 2 and q.input[2] in inits \
                else np.zeros(1, np.uint8)
            zero = raw.astype(np.float32)
            dequant[q.output[0]] = (scale, zero)
            out = q.output[0]
            clips = (node.op_type not in clipping and np.issubdtype(raw.dtype, np.integer)
                     and bool(np.all(raw == np.iinfo(raw.dtype).min)))
        taps.append(Tap(module, out, node.op_type, clips_at_zero=clips))
    graph_outputs = [o.name for o in proto.graph.output]
    have = set(graph_outputs)
    for t in taps:
        if t.tensor not in have:
            proto.graph.output.append(onnx.ValueInfoProto(name=t.tensor))
            have.add(t.tensor)
    return proto, taps, dequant, graph_outputs, unscoped


def dequantize(values: dict[str, np.ndarray], dequant: dict[str, tuple]) -> dict[str, np.ndarray]:
    """``values`` with the taps read after a ``QuantizeLinear`` back in float (in place)."""
    for tensor, (scale, zero) in dequant.items():
        values[tensor] = (values[tensor].astype(np.float32) - zero) * scale
    return values


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
    runs = [dequantize(dict(zip(names, session.run(None, {name: x[i: i + 1]}), strict=True)), dequant)
            for i in range(len(x))]
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


# -- web bundles: the bundle's ONNX with extra outputs, run by onnxruntime-web in Chromium ---------------------------
_WEB_MODEL = "__edgekit_tapped.onnx"  # served to the page by Playwright's router: the bundle is never written
_WEB_RUN = """async ({x, model}) => {
  if (!window.__edgekitTaps) {
    const ort = await import(new URL('./ort/ort.wasm.min.mjs', location.href).href);
    const bytes = new Uint8Array(await (await fetch(model)).arrayBuffer());
    window.__edgekitTaps = {ort, session: await ort.InferenceSession.create(bytes, {executionProviders: ['wasm']})};
  }
  const {ort, session} = window.__edgekitTaps;
  const s = atob(x.b64), raw = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) raw[i] = s.charCodeAt(i);
  const T = {float32: Float32Array, uint8: Uint8Array, int8: Int8Array}[x.type];
  const out = await session.run({[session.inputNames[0]]: new ort.Tensor(x.type, new T(raw.buffer), x.dims)});
  const result = {};
  for (const [name, t] of Object.entries(out)) {
    const b = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    let text = '';
    for (let i = 0; i < b.length; i += 0x8000) text += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
    result[name] = {type: t.type, dims: Array.from(t.dims), b64: btoa(text)};
  }
  return result;
}"""
_WEB_TYPES = {"float32": np.float32, "uint8": np.uint8, "int8": np.int8, "int32": np.int32, "int64": np.int64,
              "float16": np.float16, "bool": np.bool_}


def bundle_model(bundle: Path) -> Path:
    """The ONNX file a web bundle runs (its manifest's ``model.file``), or a one-line error."""
    import json

    manifest = bundle / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(f"{bundle} is not a web bundle (no manifest.json); make one with edgekit export --target web")
    name = json.loads(manifest.read_text()).get("model", {}).get("file", "")
    if not name.endswith(".onnx") or not (bundle / name).is_file():
        raise ConfigError(f"{bundle.name} runs {name or 'no model file'}, not an ONNX file: its graph cannot be given "
                          "extra outputs (diff the ONNX file it was made from)")
    return bundle / name


def tap_web(bundle: str | Path, x: np.ndarray) -> Tapped:
    """The bundle's ONNX graph with the last node of each module as an extra output (as :func:`_onnx`), run by the
    bundle's own onnxruntime-web on WebAssembly in headless Chromium (its page, :class:`edgekit.runtime.web.WebPage`);
    ``outputs_vs_plain`` compares the heads with the page's own session on the same inputs."""
    import base64

    from edgekit.runtime.web import WebPage, bundle_card, encode

    bundle = Path(bundle)
    proto, taps, dequant, graph_outputs, unscoped = onnx_tapped(bundle_model(bundle))
    body = proto.SerializeToString()
    names = bundle_card(bundle).head_names  # the page returns the heads by name (card order), found as byHead does
    page = WebPage(bundle, "wasm")
    try:
        page.page.route(f"**/{_WEB_MODEL}", lambda route: route.fulfill(status=200, body=body,
                                                                         content_type="application/octet-stream"))
        runs, plain = [], []
        for i in range(len(x)):
            out = page.page.evaluate(_WEB_RUN, {"x": encode(x[i: i + 1]), "model": _WEB_MODEL})
            runs.append(dequantize({n: np.frombuffer(base64.b64decode(v["b64"]), _WEB_TYPES[v["type"]])
                                    .reshape(v["dims"]) for n, v in out.items()}, dequant))
            got = page.call("runTensor", encode(x[i: i + 1]))
            plain.append([np.frombuffer(base64.b64decode(got[h]["b64"]), np.float32) for h in names])
        info = page.info
    finally:
        page.close()
    _stack(runs, taps)
    order = names if all(h in graph_outputs for h in names) else graph_outputs[: len(names)]
    heads = [np.concatenate([r[o].reshape(1, -1) for r in runs]).astype(np.float32) for o in order]
    own = [np.stack([p[k] for p in plain]) for k in range(len(names))]
    tapped = Tapped(taps, "NCHW", f"{info['runtime']} on {info['backend']} ({info['threads']} thread"
                    f"{'s' if info['threads'] != 1 else ''}) in headless Chromium, with the extra outputs added to a "
                    f"copy of the bundle's {bundle_model(bundle).name}", unscoped)
    tapped.outputs_vs_plain = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
                                  for a, b in zip(heads, own, strict=True))
    return tapped
