"""ExecuTorch ``.pte`` files through ExecuTorch's Python runtime (``executorch.runtime``).

That runtime imports torch, so this backend is for development machines and benchmarks, not the
torch-free device runtime (on a phone a ``.pte`` runs in ExecuTorch's C++ / Android / iOS runtime).
executorch and torch are imported only when a ``.pte`` is opened: ``edgekit[runtime]`` never
needs them. The card is the program's constant method ``edgekit_card`` (see
:mod:`edgekit.export.executorch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import DependencyError, DeviceError, first_line, option
from edgekit.runtime.backend import Backend, ModelFileError, TensorInfo, UnsupportedModelError, run_in_chunks

CARD_METHOD = "edgekit_card"  # the constant method returning the card's JSON
_TORCH_TYPES = {0: np.uint8, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.int64, 5: np.float16, 6: np.float32,
                7: np.float64, 11: np.bool_}  # c10::ScalarType codes of ExecuTorch's tensor metadata


def executorch_runtime() -> Any:
    """``executorch.runtime``, or a :class:`DependencyError` naming the extra to install."""
    try:
        import executorch.runtime as et_runtime
    except ImportError as exc:
        raise DependencyError("a .pte file needs executorch (its Python runtime, which also needs torch): "
                              "pip install 'edgekit[executorch]'") from exc
    return et_runtime


def load_program(path: Path) -> Any:
    """The ExecuTorch ``Program`` in ``path`` (a :class:`ModelFileError` for anything else)."""
    runtime = executorch_runtime().Runtime.get()
    try:
        return runtime.load_program(Path(path))
    except Exception as exc:  # noqa: BLE001 - the pybindings raise RuntimeError / ValueError
        raise ModelFileError(f"{path} is not a valid ExecuTorch program: {first_line(exc, 200)}") from None


def pte_card(path: Path, program: Any = None) -> str | None:
    """The card JSON embedded in a ``.pte`` (``None`` when the file has no ``edgekit_card`` method)."""
    program = program if program is not None else load_program(path)
    if CARD_METHOD not in program.method_names:
        return None
    out = program.load_method(CARD_METHOD).execute([])
    return out[0] if out and isinstance(out[0], str) else None


class ExecuTorchBackend(Backend):
    """A ``.pte`` program's ``forward`` on the CPU (XNNPACK delegate plus ExecuTorch's portable kernels)."""

    name = "executorch"
    library = "executorch.runtime"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        if device not in ("auto", "cpu", None):
            raise DeviceError(f"{option('device', device)}: the ExecuTorch backend here runs on the CPU (XNNPACK) only")
        self.program = load_program(path)
        import torch  # executorch's runtime has already imported it

        self.torch = torch
        from executorch.extension.pybindings import portable_lib

        from edgekit.runtime.backend import check_threads

        wanted = check_threads(threads)
        reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)  # experimental API: optional
        count = getattr(portable_lib, "_threadpool_get_thread_count", None)
        if reset is not None:
            reset(wanted)  # one threadpool per process, shared by every program
        self.threads, self.threads_from = (int(count()), "threadpool") if count is not None else (wanted, "set")
        if "forward" not in self.program.method_names:
            raise ModelFileError(f"{path} has no 'forward' method (methods: {sorted(self.program.method_names)})")
        try:
            self.method = self.program.load_method("forward")
        except Exception as exc:  # noqa: BLE001
            raise ModelFileError(f"{path}: ExecuTorch cannot load 'forward': {first_line(exc, 200)}") from None
        meta = self.method.metadata
        self.input_shape = tuple(int(d) for d in meta.input_tensor_meta(0).sizes())
        # torch.export shapes are static: the program runs at the batch it was exported with
        self.batch = self.input_shape[0]
        # outputs are positional, in the order the exported module returned them: the card's head order
        self.output_names = [f"output_{i}" for i in range(meta.num_outputs())]

    def order_outputs(self, heads: list[str]) -> None:
        """Nothing to reorder: edgekit exports return the heads in card order."""

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if len(x) != self.batch:
            return run_in_chunks(self.run, x, self.batch)
        feed = self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        outs = self.method.execute([feed])  # copied out of the program's arenas on every call
        return [o.numpy() if o.dtype == self.torch.float32 else o.float().numpy() for o in outs]

    @classmethod
    def card_text(cls, path: Path, session: Any = None) -> str | None:
        return pte_card(path)

    def input_tensors(self, where: str = "the model") -> list[TensorInfo]:
        meta = self.method.metadata
        return [_pte_info(f"input_{i}", meta.input_tensor_meta(i), where) for i in range(meta.num_inputs())]

    def output_tensors(self) -> list[TensorInfo]:
        meta = self.method.metadata
        return [_pte_info(f"output_{i}", meta.output_tensor_meta(i), "") for i in range(meta.num_outputs())]

    def raw_runner(self, feed: dict[str, np.ndarray]):
        args = [self.torch.from_numpy(np.ascontiguousarray(feed[f"input_{i}"])) for i in range(len(feed))]
        return lambda: [o.numpy() for o in self.method.execute(args)]

    def residency(self, path: Path, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        from edgekit.runtime.residency import pte_residency

        return pte_residency(path)


def _pte_info(name: str, meta: Any, where: str) -> TensorInfo:
    code = int(meta.dtype())
    if code not in _TORCH_TYPES:
        raise UnsupportedModelError(f"{where}: {name} has scalar type {code}: edgekit can only feed numeric tensors")
    return TensorInfo(name, np.dtype(_TORCH_TYPES[code]), tuple(int(d) for d in meta.sizes()))
