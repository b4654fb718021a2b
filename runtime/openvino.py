"""OpenVINO IR files (``model.xml`` + ``model.bin``) through OpenVINO's runtime: no torch.

- Devices: ``--device cpu|gpu|npu`` (``gpu:1`` -> ``GPU.1``) name OpenVINO's plugins; ``auto`` is the
  CPU (OpenVINO's own AUTO plugin starts on the CPU and moves to an accelerator once it has compiled
  for it, so its latency depends on when one looks). A device OpenVINO does not see is a one-line
  :class:`~edgekit.errors.DeviceError`.
- Threads: ``INFERENCE_NUM_THREADS`` (default: the cores this process may use, as every backend), read
  back from the compiled model into :attr:`OpenVINOBackend.threads`.
- Pinning: off (``ENABLE_CPU_PINNING=False``). OpenVINO pins its inference threads to cores by default; when
  other processes use those cores (a camera, a UI, another model: a kiosk), a pinned thread waits for its core
  instead of moving. Measured on the 2-core AMD EPYC here under a load average of 17, the tests' tiny
  EfficientNet in INT8 at 2 threads: p50 11.4 ms pinned, 0.60 ms not (p10 0.147 and 0.145 ms: no cost when
  the cores are free).
- Precision: OpenVINO's CPU plugin runs a float IR at its ``INFERENCE_PRECISION_HINT``, which is
  bf16 by default on CPUs with bf16 instructions (AVX-512 BF16, AMX): "FP32" is then not FP32.
  :attr:`OpenVINOBackend.execution_precision` is read from the compiled graph
  (``get_runtime_model()``: each executed layer's ``runtimePrecision``), never assumed, and
  :meth:`OpenVINOBackend.residency` counts the layers per precision.
- A pinned precision: an IR whose runtime-chosen precision missed its gate at export carries the precision
  that passed as ``rt_info["runtime_options"]["INFERENCE_PRECISION_HINT"]`` (:func:`pinned`), where
  OpenVINO keeps a model's runtime options. OpenVINO 2026.4's CPU plugin applies only its KV-cache and
  dynamic-quantization options from there (measured: ``KV_CACHE_PRECISION`` and
  ``DYNAMIC_QUANTIZATION_GROUP_SIZE`` set there are read back from the compiled model,
  ``EXECUTION_MODE_HINT`` is not; its ``Config::apply_rt_info`` lists no inference precision), so this
  backend applies the pin itself when it compiles the file.
- The card: ``rt_info["edgekit"]["card"]`` of the IR (the ``<rt_info>`` of ``model.xml``), so
  copying the two files keeps it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import DeviceError, first_line, option, require
from edgekit.runtime.backend import Backend, ModelFileError, TensorInfo, check_threads

CARD_PATH = ["edgekit", "card"]  # rt_info path of the card's JSON
PIN_PATH = ["runtime_options", "INFERENCE_PRECISION_HINT"]  # rt_info path of a pinned inference precision
DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # edgekit precision -> INFERENCE_PRECISION_HINT
# runtimePrecision of a layer -> edgekit precision; the lowest precision a compute layer ran at wins
RAN = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "fp16", "f32": "fp32"}
ORDER = ("int8", "bf16", "fp16", "fp32")  # most to least rounding noise (bf16 keeps 8 significant bits, fp16 11)
NOT_RUN = {"Const", "Constant", "Input", "Parameter", "Output", "Result"}  # runtime-graph nodes that compute nothing
COMPUTE = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "ScaledDotProductAttention"}


def openvino() -> Any:
    """The ``openvino`` module, or a one-line :class:`~edgekit.errors.DependencyError` naming the extra."""
    return require("openvino", "openvino")


def ov_device(device: str | None, available: list[str]) -> str:
    """OpenVINO's device name for ``--device`` (``auto`` is the CPU); absent devices are an error."""
    device = (device or "auto").lower()
    if device in ("auto", "cpu"):
        return "CPU"
    kind, _, index = device.partition(":")
    if kind not in DEVICES:
        raise DeviceError(f"{option('device', device)}: OpenVINO runs on cpu, gpu or npu (or auto = cpu)")
    name = DEVICES[kind] + (f".{index}" if index else "")
    present = [d for d in available if d == name or (not index and d.split(".")[0] == name)]
    if not present:
        raise DeviceError(f"{option('device', device)}: OpenVINO sees no {name} on this machine (it sees "
                          f"{', '.join(available) or 'no device'}; a GPU needs Intel's GPU driver, an NPU Intel's "
                          "NPU driver)")
    return present[0]


def read_ir(path: str | Path, core: Any = None) -> Any:
    """The ``openvino.Model`` in ``path`` (its ``.bin`` beside it), or a :class:`ModelFileError`."""
    ov = openvino()
    path = Path(path)
    if not path.with_suffix(".bin").exists():
        raise ModelFileError(f"{path}: its weights file {path.with_suffix('.bin').name} is not beside it (an "
                             "OpenVINO IR is two files: copy both)")
    try:
        return (core or ov.Core()).read_model(str(path))
    except Exception as exc:  # noqa: BLE001 - openvino raises RuntimeError for anything it cannot parse
        raise ModelFileError(f"{path} is not a valid OpenVINO IR: {first_line(exc, 200)}") from None


def ir_card(path: str | Path, model: Any = None) -> str | None:
    """The card JSON in an IR's ``rt_info`` (``None`` when it has none)."""
    model = model if model is not None else read_ir(path)
    if not model.has_rt_info(CARD_PATH):
        return None
    return model.get_rt_info(CARD_PATH).astype(str)


def stored_precision(model: Any) -> str:
    """What the IR stores: ``int8`` (quantize nodes), ``fp16`` (float16 weights) or ``fp32``."""
    types = Counter(op.get_type_name() for op in model.get_ops())
    if types["FakeQuantize"] or types["FakeConvert"]:
        return "int8"
    f16 = any(op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() == "f16"
              for op in model.get_ops())
    return "fp16" if f16 else "fp32"


def pinned(model: Any) -> str | None:
    """The inference precision an IR pins (``fp32``...; None: OpenVINO's default)."""
    if not model.has_rt_info(PIN_PATH):
        return None
    hint = str(model.get_rt_info(PIN_PATH).astype(str)).lower()
    return next((p for p, h in HINTS.items() if h == hint), None)


class OpenVINOBackend(Backend):
    """An IR compiled for one OpenVINO device (latency hint, one stream), at ``precision`` (an inference
    precision hint), else at the precision the IR pins, else at OpenVINO's default."""

    name = "openvino"
    library = "openvino"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None,
                 precision: str | None = None) -> None:
        ov = openvino()
        core = ov.Core()
        target = ov_device(device, core.available_devices)
        self.path = Path(path)
        self.model = read_ir(path, core)
        self.pinned = pinned(self.model) if precision is None else None
        precision = precision or self.pinned
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if target == "CPU":
            config["INFERENCE_NUM_THREADS"] = check_threads(threads)
            config["ENABLE_CPU_PINNING"] = False  # see the module docstring: pinned threads stall on a busy machine
        if precision is not None:
            if precision not in HINTS:
                raise DeviceError(f"OpenVINO precision hint must be one of {', '.join(HINTS)}, got '{precision}'")
            config["INFERENCE_PRECISION_HINT"] = HINTS[precision]
        try:
            self.compiled = core.compile_model(self.model, target, config)
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"{path}: OpenVINO cannot compile it for {target}: {first_line(exc, 200)}") from None
        self.request = self.compiled.create_infer_request()
        self.device = target.lower()
        self.hint = precision
        if target == "CPU":
            self.threads, self.threads_from = int(self.compiled.get_property("INFERENCE_NUM_THREADS")), "compiled model"
        shape = self.model.inputs[0].get_partial_shape()
        self.batch = shape[0].get_length() if shape.rank.is_static and shape[0].is_static else None
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self._ports = list(self.compiled.outputs)
        self.input_dtype = np.dtype(np.float32)
        self.stored_precision = stored_precision(self.model)
        self.execution_precision = self._execution_precision()

    def order_outputs(self, heads: list[str]) -> None:
        if set(heads) <= set(self.output_names):
            self._ports = [self._ports[self.output_names.index(h)] for h in heads]
            self.output_names = list(heads)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        results = self.request.infer({0: np.ascontiguousarray(x)}, share_inputs=True)
        return [np.asarray(results[p], dtype=np.float32) for p in self._ports]

    def as_stored(self) -> OpenVINOBackend:
        """The same file with the float layers forced to f32 (``INFERENCE_PRECISION_HINT=f32``), so that what
        runs is what the file stores: FP32, FP16 weights, or INT8 with f32 around it."""
        return OpenVINOBackend(self.path, self.device, self.threads, precision="fp32")

    @staticmethod
    def tensors(ports) -> list[TensorInfo]:
        """Graph inputs or outputs (None in a shape for a dynamic axis)."""
        out = []
        for p in ports:
            shape = p.get_partial_shape()
            dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
            out.append(TensorInfo(p.get_any_name(), np.dtype(p.get_element_type().to_dtype()), dims))
        return out

    @classmethod
    def card_text(cls, path: Path, session: Any = None) -> str | None:
        return ir_card(path)

    def input_tensors(self, where: str = "the model") -> list[TensorInfo]:
        return self.tensors(self.model.inputs)

    def output_tensors(self) -> list[TensorInfo]:
        return self.tensors(self.compiled.outputs)

    def raw_runner(self, feed: dict[str, np.ndarray]):
        request = self.compiled.create_infer_request()
        return lambda: list(request.infer(feed).values())

    # -- what ran ---------------------------------------------------------------------------------
    def layers(self) -> list[tuple[str, str]]:
        """(layer type, runtime precision) of every layer of the compiled graph that computes something."""
        out = []
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            kind = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
            if kind not in NOT_RUN:
                out.append((kind, rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "?"))
        return out

    def _execution_precision(self) -> str:
        """The lowest precision a compute layer ran at, or the IR's own (FP16 weights) when lower."""
        ran = {RAN.get(p, "fp32") for kind, p in self.layers() if kind in COMPUTE} or {"fp32"}
        return min(ran | {self.stored_precision}, key=ORDER.index)

    def floats_lowered(self) -> str | None:
        """The precision below f32 at which compute layers that are not integer ran (OpenVINO's bf16 for the
        layers an INT8 IR keeps in float, on CPUs with bf16 instructions); None when they ran f32."""
        ran = {RAN.get(p, "fp32") for kind, p in self.layers() if kind in COMPUTE} - {"int8", "fp32"}
        return min(ran, key=ORDER.index) if ran else None

    def _property(self, name: str) -> Any:
        try:
            return self.compiled.get_property(name)
        except RuntimeError:  # a plugin without the property
            return None

    def inference_hint(self) -> str | None:
        """The ``INFERENCE_PRECISION_HINT`` the compiled model runs under (``bf16``, ``f32``...)."""
        hint = self._property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else hint

    def residency(self, path: Path | None = None, feed: dict | None = None) -> dict[str, Any]:
        """Layers of the compiled graph per runtime precision (``bf16 24 / f32 2``) and their types."""
        layers = self.layers()
        by_precision = Counter(p for _, p in layers)
        return {"device": self.device.upper(), "layers": len(layers), "precisions": dict(by_precision.most_common()),
                "hint": self.inference_hint(), "pinning": self._property("ENABLE_CPU_PINNING"),
                "execution_precision": self.execution_precision, "threads": self.threads,
                "ops": {p: dict(Counter(k for k, q in layers if q == p)) for p in by_precision}}

    def quant(self, path: Path | None = None) -> dict[str, Any] | None:
        """Compute layers that ran in integer vs float (None for a float IR), as the other backends report it."""
        kinds: dict[str, Counter] = {"integer": Counter(), "weight_only": Counter(), "float": Counter()}
        for kind, p in self.layers():
            if kind in COMPUTE:
                kinds["integer" if RAN.get(p) == "int8" else "float"][kind] += 1
        if not kinds["integer"]:
            return None
        return {k: {"layers": sum(c.values()), "ops": dict(c)} for k, c in kinds.items()}

