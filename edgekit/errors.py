"""Errors edgekit raises on purpose.

Every failure a user can cause (bad data, a missing file, a device that is not there) is an
:class:`EdgekitError`. The CLI prints its message on one line and exits with code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_UNSET = object()
_CLI: ContextVar[bool] = ContextVar("edgekit_cli", default=False)


class EdgekitError(Exception):
    """A user-facing error: the message alone must tell the user what to do."""


class DataError(EdgekitError):
    """The dataset is missing, empty, malformed or contains unreadable files."""


class ConfigError(EdgekitError):
    """A config file or a flag has a value edgekit cannot use."""


class DeviceError(EdgekitError):
    """The requested device (cuda, mps) is not available."""


class RemoteDeviceError(DeviceError):
    """A device over SSH cannot be reached or used (``edgekit device``, ``--on``): the message names the device
    and the cause. ``rows``: what was measured there before it failed (kept by the caller)."""

    rows: list | None = None


class CheckpointError(EdgekitError):
    """A file is not an edgekit checkpoint, or does not match the model it should hold."""


class CardError(EdgekitError):
    """A model card is missing or incomplete."""


class RunError(EdgekitError):
    """A run folder is missing, unfinished or corrupt (no config.yaml, history.json, card.json, best.pt)."""


class QuantizationError(EdgekitError):
    """The model (or a layer of it) cannot be quantized."""


class DependencyError(EdgekitError):
    """An optional package needed for this command is not installed."""


def option(name: str, value: object = _UNSET, flag: str | None = None) -> str:
    """How a message names a setting: ``--skip-bad`` when the CLI runs, ``skip_bad`` from Python.

    ``name`` is the Python keyword (or config field); ``flag`` the command-line flag when it is
    not ``--`` + the name with dashes. With ``value``: ``--device cuda`` / ``device='cuda'``
    (``True`` is a switch: ``--skip-bad`` / ``skip_bad=True``).
    """
    if _CLI.get():
        text = flag or "--" + name.replace("_", "-")
        return text if value is _UNSET or value is True else f"{text} {value}"
    return name if value is _UNSET else f"{name}={value!r}"


def either(cli: str, python: str) -> str:
    """A phrase with no single-option form: ``cli`` under the CLI, ``python`` otherwise."""
    return cli if _CLI.get() else python


@contextmanager
def cli_messages() -> Iterator[None]:
    """Within it, :func:`option` names command-line flags (the CLI wraps each command in it)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when the message is empty), cut to
    ``limit`` characters: third-party errors are often pages long, and edgekit errors are one line."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def require(module: str, extra: str = "all"):
    """Import an optional dependency or raise a :class:`DependencyError` saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"this needs the Python package '{module.split('.')[0]}' ({exc}); "
            f"install it with: pip install 'edgekit[{extra}]'"
        ) from exc
