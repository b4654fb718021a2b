"""Device selection: ``auto``, ``cpu``, ``cuda[:N]``, ``mps``; a missing device is a clear error."""

from __future__ import annotations

import torch

from edgekit.errors import DeviceError, option


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """Turn a device name into a :class:`torch.device`, checking that it exists."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no NVIDIA GPU/driver is visible"
            raise DeviceError(f"{option('device', name)}: CUDA is not available ({why}); "
                              f"use {option('device', 'cpu')} or auto")
        index = int(name.split(":", 1)[1]) if ":" in name else (local_rank or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{option('device', name)}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device("cuda", index)
    if name == "mps":
        if not _mps_available():
            raise DeviceError(f"{option('device', 'mps')}: Apple MPS is not available (it needs macOS on Apple "
                              f"silicon and a torch build with MPS); use {option('device', 'cpu')} or auto")
        return torch.device("mps")
    raise DeviceError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
