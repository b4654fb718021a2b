"""The runtime's backend for edgekit ``.pt`` checkpoints: eager PyTorch (development machines).

It implements :class:`edgekit.runtime.backend.Backend`; the format table's ``.pt`` / ``.pth`` row names
it, and the runtime uses it once this module is imported (``edgekit.runtime`` stays a leaf that never
imports torch or train). Whoever opens a checkpoint (the CLI, the bench worker) imports this module
first, or calls :func:`load`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtime.backend import Backend, check_threads
from edgekit.train.checkpoint import model_from_checkpoint
from edgekit.train.device import resolve_device


class TorchBackend(Backend):
    """An edgekit ``.pt`` checkpoint in eager PyTorch (development machines: needs edgekit[train])."""

    name = "torch"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        import torch

        torch.set_num_threads(check_threads(threads))
        self.threads, self.threads_from = torch.get_num_threads(), "torch.get_num_threads"
        self.torch = torch
        self.dev = resolve_device(device)
        self.device = self.dev.type
        self.model, self.card, _ = model_from_checkpoint(path)
        self.model.to(self.dev)
        self.heads = self.card.head_names

    def order_outputs(self, heads: list[str]) -> None:
        self.heads = list(heads)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        with self.torch.inference_mode():
            out = self.model(self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.dev))
        return [out[h].float().cpu().numpy() for h in self.heads]

    def residency(self, path: Path, feed: dict[str, np.ndarray]) -> dict[str, str]:
        return {"device": self.device}

    def device_sync(self):
        """On CUDA: reset the peak-memory counter and return ``torch.cuda.synchronize``."""
        if self.device != "cuda":
            return None
        self.torch.cuda.reset_peak_memory_stats()
        return self.torch.cuda.synchronize

    def peak_device_mb(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.device == "cuda" else None


def load(path: str | Path, device: str = "auto", threads: int | None = None):
    """:func:`edgekit.runtime.load` for a checkpoint (or any file): a Predictor over eager PyTorch."""
    from edgekit.runtime import load as runtime_load

    return runtime_load(path, device=device, threads=threads)
