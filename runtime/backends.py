"""Inference backends, one per file format, behind one small interface.

``backend.run(x)`` takes a float32 batch in the model's layout (NCHW or NHWC, from the card) and
returns one float32 array per head, in card order. Integer (INT8) inputs and outputs are
(de)quantized here with the tensor's own scale and zero point. Only the backend's own package is
imported: onnxruntime or ai-edge-litert (CoreML: :mod:`.coreml`). Which backend opens a file is the format table's
(:mod:`edgekit.formats`, :func:`~edgekit.runtime.backend.backend_class`); ``.pt`` checkpoints are opened by
:mod:`edgekit.train.torch_backend`. Each backend also says what its files hold and what ran (the card,
the graph's tensors, residency, integer layers: :class:`~edgekit.runtime.backend.Backend`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgekit.card import ModelCard
from edgekit.errors import DeviceError, first_line, option, require
from edgekit.runtime.backend import (  # noqa: F401 - re-exported: the interface and what backends share
    Backend,
    ModelFileError,
    TensorInfo,
    UnsupportedModelError,
    backend_class,
    check_threads,
    default_threads,
    run_in_chunks,
)

_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
               "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
               "tensor(bool)": np.bool_}

# -- ONNX ----------------------------------------------------------------------------------------


class OnnxBackend(Backend):
    name = "onnxruntime"
    library = "onnxruntime"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        ort = require("onnxruntime", "runtime")
        available = ort.get_available_providers()
        providers = _onnx_providers(device, available)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = check_threads(threads)
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelFileError(f"{path} is not a valid ONNX model: {first_line(exc, 200)}") from None
        self.threads, self.threads_from = self.session.get_session_options().intra_op_num_threads, "session options"
        self.providers = providers  # what was asked for; the session may have dropped one that failed to load
        running = self.session.get_providers()[0]
        self.device = "cuda" if running.startswith("CUDA") else ("coreml" if running.startswith("CoreML") else "cpu")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtype = _onnx_dtype(inp.type)

    def order_outputs(self, heads: list[str]) -> None:
        if set(heads) <= set(self.output_names):
            self.output_names = list(heads)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        outs = self.session.run(self.output_names, {self.input_name: x})
        return [o if o.dtype == np.float32 else o.astype(np.float32) for o in outs]

    @classmethod
    def card_text(cls, path: Path, session=None) -> str | None:
        """``metadata_props["edgekit.card"]`` (``.ort`` files keep it too)."""
        from edgekit.card import CARD_KEY

        if session is None:
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.get_modelmeta().custom_metadata_map.get(CARD_KEY)

    def input_tensors(self, where: str = "the model") -> list[TensorInfo]:
        out = []
        for i in self.session.get_inputs():
            if i.type not in _ONNX_TYPES:
                raise UnsupportedModelError(f"{where}: input '{i.name}' is {i.type}: edgekit can only feed numeric "
                                            "tensors")
            out.append(TensorInfo(i.name, np.dtype(_ONNX_TYPES[i.type]), _dims(i.shape)))
        return out

    def output_tensors(self) -> list[TensorInfo]:
        by_name = {o.name: o for o in self.session.get_outputs()}
        return [TensorInfo(n, np.dtype(_ONNX_TYPES.get(by_name[n].type, np.float32)), _dims(by_name[n].shape))
                for n in self.output_names]

    def raw_runner(self, feed: dict[str, np.ndarray]):
        session = self.session
        return lambda: session.run(None, feed)

    def named_feed(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {self.input_name: x.astype(self.input_dtype, copy=False)}

    def residency(self, path: Path, feed: dict[str, np.ndarray]):
        from edgekit.runtime.residency import onnx_residency

        return onnx_residency(path, self, feed)

    def quant(self, path: Path):
        from edgekit.runtime.residency import onnx_quant

        return onnx_quant(path)

    def fallback(self, requested: str, residency) -> str | None:
        from edgekit.runtime.residency import onnx_fallback

        return onnx_fallback(self, residency)


def _dims(shape) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _onnx_providers(device: str, available: list[str]) -> list[str]:
    device = (device or "auto").lower()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise DeviceError(f"{option('device', 'cuda')}: this onnxruntime has no CUDAExecutionProvider "
                              "(install onnxruntime-gpu and an NVIDIA driver)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device in ("mps", "coreml"):
        if "CoreMLExecutionProvider" not in available:
            raise DeviceError(f"{option('device', device)}: onnxruntime's CoreMLExecutionProvider is not available "
                              "(it needs macOS)")
        return ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise DeviceError(f"unknown device '{device}' (use auto, cpu, cuda or mps)")
    for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider"):
        if p in available:
            return [p, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _onnx_dtype(t: str) -> np.dtype:
    return np.dtype({"tensor(float16)": np.float16, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(
        t, np.float32))


# -- TFLite --------------------------------------------------------------------------------------


class TFLiteBackend(Backend):
    """A ``.tflite`` through the LiteRT interpreter (XNNPACK). The graph is resized only to a batch proven
    to give its exported batch's answers (:mod:`edgekit.runtime.tflite_batches`); any other batch runs in
    chunks of the exported batch."""

    name = "tflite"
    library = "ai_edge_litert.interpreter"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        interp_mod = require("ai_edge_litert.interpreter", "runtime")
        if device not in ("auto", "cpu", None):
            raise DeviceError(f"{option('device', device)}: the TFLite backend here runs on the CPU (XNNPACK) only")
        self.threads = check_threads(threads)  # the interpreter has no getter: bench counts its worker threads
        try:
            self.interp = interp_mod.Interpreter(model_path=str(path), num_threads=self.threads)
            self.interp.allocate_tensors()
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"{path} is not a valid TFLite model: {first_line(exc, 200)}") from None
        self.path = Path(path)
        inp = self.interp.get_input_details()[0]
        self.input_index = inp["index"]
        self.input_shape = self.exported_shape = tuple(int(d) for d in inp["shape"])
        self._plan = None
        self.input_dtype = np.dtype(inp["dtype"])
        self.input_quant = inp["quantization"]  # (scale, zero_point); scale 0 means float
        # the batch dimension is resized where proven, except for clip models ([N, T, H, W, C]): their
        # graphs fold N * T into constant reshapes, so they run at the batch they were exported with
        self.batch = None if len(self.input_shape) == 4 else self.input_shape[0]
        self.outputs = sorted(self.interp.get_output_details(), key=tflite_output_position)
        self.card: ModelCard | None = None  # set by the Predictor: its golden inputs prove a resize
        self.verdicts: dict[int, dict] = {}  # batch -> {"proven", "max_rel", "inputs"[, "error"]}
        self._key: str | None = None

    def set_card(self, card: ModelCard) -> None:
        self.card = card

    def _resize(self, shape: tuple[int, ...]) -> None:
        self.interp.resize_tensor_input(self.input_index, list(shape), strict=False)
        self.interp.allocate_tensors()
        self.input_shape = tuple(shape)
        self.outputs = _reorder_like(self.outputs, self.interp.get_output_details())
        self._plan = None

    def order_outputs(self, heads: list[str]) -> None:
        names = [o["name"] for o in self.outputs]
        if set(heads) <= set(names):
            self.outputs = [self.outputs[names.index(h)] for h in heads]
        # else: litert-torch's output_<i> names follow the order the model returned (card order)

    def runs_at(self, n: int) -> int:
        """The batch a call with ``n`` inputs runs at: ``n``, or the exported batch (chunks) where the graph
        is not proven at ``n``."""
        if self.batch is not None:
            return self.batch
        return n if n == self.exported_shape[0] or self.proven(n) else self.exported_shape[0]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if self.batch is not None and len(x) != self.batch:
            return run_in_chunks(self.run, x, self.batch)
        if x.shape != self.input_shape:
            if len(x) != self.exported_shape[0] and not self.proven(len(x)):
                return run_in_chunks(self.run, x, self.batch or self.exported_shape[0])
            self._resize(x.shape)
        return self._invoke(x)

    def _invoke(self, x: np.ndarray) -> list[np.ndarray]:
        if self._plan is None:  # per output: (tensor index, dequantization table or None), once
            self._plan = [(o["index"], _dequant_table(o)) for o in self.outputs]
        if x.dtype != self.input_dtype:
            x = _quantize(x, self.input_dtype, self.input_quant)
        self.interp.set_tensor(self.input_index, x)
        self.interp.invoke()
        get = self.interp.get_tensor
        return [get(i) if lut is None else lut[get(i).view(np.uint8)] for i, lut in self._plan]

    def proven(self, n: int) -> bool:
        """Whether batch ``n`` gives the exported batch's answers (proven once per file, batch and machine)."""
        if n not in self.verdicts:
            self.verdicts[n] = self._prove(n)
        return bool(self.verdicts[n]["proven"])

    def _prove(self, n: int) -> dict:
        from edgekit.runtime import tflite_batches as tb

        if self._key is None:
            self._key = tb.file_key(self.path)
        known = tb.cached(self._key, n)
        if known is not None and "proven" in known:
            if known.get("error"):  # this graph cannot be resized at all here
                self.batch = self.exported_shape[0]
            return known
        x, source = tb.probe_inputs(self.card, self.exported_shape, self.input_dtype, n)
        fixed = self.exported_shape[0]
        if self.input_shape != self.exported_shape:
            self._resize(self.exported_shape)
        chunked = run_in_chunks(self._invoke, x, fixed)
        try:
            self._resize((n, *self.exported_shape[1:]))
            rel = tb.compare(chunked, self._invoke(x))
            verdict = {"proven": rel <= tb.TOLERANCE, "max_rel": rel if np.isfinite(rel) else None, "inputs": source}
        except RuntimeError as exc:
            # Some graphs fold the batch into constant reshapes (MobileViT, LeViT, ConvNeXt's layer norms...):
            # XNNPACK then fails to prepare any other batch. Such a file runs at its exported batch, in chunks.
            verdict = {"proven": False, "max_rel": None, "inputs": source,
                       "error": f"the interpreter cannot resize it: {first_line(exc, 160)}"}
            self.batch = fixed
        if not verdict["proven"]:
            self._resize(self.exported_shape)
        tb.remember(self._key, n, verdict)
        return verdict

    @classmethod
    def card_text(cls, path: Path, session=None) -> str | None:
        """A ``Model.metadata`` entry named ``edgekit.card`` (a buffer of UTF-8 JSON)."""
        from edgekit.card import CARD_KEY
        from edgekit.runtime.metadata import tflite_metadata

        return tflite_metadata(Path(path).read_bytes(), CARD_KEY)

    def input_tensors(self, where: str = "the model") -> list[TensorInfo]:
        return [_tflite_info(d, where) for d in self.interp.get_input_details()]

    def output_tensors(self) -> list[TensorInfo]:
        return [_tflite_info(d, "") for d in sorted(self.interp.get_output_details(), key=tflite_output_position)]

    def raw_runner(self, feed: dict[str, np.ndarray]):
        interp = self.interp
        details = interp.get_input_details()
        if any(tuple(d["shape"]) != feed[d["name"]].shape for d in details):
            for d in details:
                interp.resize_tensor_input(d["index"], list(feed[d["name"]].shape), strict=False)
            interp.allocate_tensors()
        pairs = [(d["index"], feed[d["name"]]) for d in details]
        outs = [o["index"] for o in interp.get_output_details()]

        def run_tflite() -> list[np.ndarray]:
            for index, x in pairs:
                interp.set_tensor(index, x)
            interp.invoke()
            return [interp.get_tensor(i) for i in outs]

        return run_tflite

    def residency(self, path: Path, feed: dict[str, np.ndarray]):
        from edgekit.runtime.residency import tflite_residency

        return tflite_residency(self.interp)

    def quant(self, path: Path):
        from edgekit.runtime.residency import tflite_quant

        return tflite_quant(self.interp)


def _tflite_info(d: dict, where: str) -> TensorInfo:
    dtype = np.dtype(d["dtype"])
    if dtype.kind not in "fiub":
        raise UnsupportedModelError(f"{where}: input '{d['name']}' is {dtype}: edgekit can only feed numeric tensors")
    scale, zero = d["quantization"]
    sig = d.get("shape_signature")
    shape = tuple(int(x) for x in (sig if sig is not None and len(sig) else d["shape"]))
    return TensorInfo(d["name"], dtype, _dims(shape), (float(scale), int(zero)) if scale else None)


def tflite_output_position(detail: dict) -> int:
    """litert-torch names outputs ``..._output_<i>...`` in the order the module returned them."""
    m = re.search(r"output_(\d+)", detail["name"])
    return int(m.group(1)) if m else int(detail["index"])


def _reorder_like(old: list[dict], new: list[dict]) -> list[dict]:
    by_index = {o["index"]: o for o in new}
    return [by_index[o["index"]] for o in old]


def _dequant_table(detail: dict) -> np.ndarray | None:
    """A 256-entry float table for an 8-bit output (one lookup instead of subtract and multiply)."""
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not scale or dtype.itemsize != 1:
        return None
    codes = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
    return (codes - np.float32(zero)) * np.float32(scale)


def _quantize(x: np.ndarray, dtype, quant: tuple[float, int]) -> np.ndarray:
    from edgekit.runtime.preprocess import quantize

    scale, zero = quant
    if np.issubdtype(dtype, np.floating) or not scale:
        return x.astype(dtype, copy=False)
    return quantize(x, dtype, scale, zero)


# -- dispatch ------------------------------------------------------------------------------------


def open_backend(path: Path, device: str = "auto", threads: int | None = None) -> Backend:
    """The backend the format table names for ``path``'s suffix, opened on it."""
    return backend_class(path)(Path(path), device=device, threads=threads)


def check_card_matches(card: ModelCard, backend: Backend, path: Path) -> None:
    """Catch a card that does not describe the file it is in (e.g. a copied sidecar)."""
    n_out = len(getattr(backend, "output_names", getattr(backend, "outputs", card.heads)))
    if n_out < len(card.heads):
        raise ModelFileError(f"{path} has {n_out} output(s) but its card lists {len(card.heads)} heads")
