"""What an export hands back: the files it wrote (:class:`Artifact`), their verdicts and failures
(:class:`ExportReport`), and the errors it raises. Shared by the exporter, the INT8 policy and the certification
(:mod:`edgekit.export.exporter`, :mod:`edgekit.export.int8`, :mod:`edgekit.export.certify`), below all three."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit import formats
from edgekit import parity as verdicts
from edgekit.errors import EdgekitError, first_line
from edgekit.export.gates import gate_failures_text


@dataclass
class Artifact:
    """One written file. ``reference``: the PyTorch model this file is the exported form of, when it
    is not the checkpoint (QAT: the fine-tuned model; NCHW tensor -> {head: output}), with a name
    for reports. Its outputs are then the parity reference, while the task-level gates (accuracy
    drop, MAE, mAP) still compare against the checkpoint's own numbers."""
    path: Path
    format: str
    precision: str
    seconds: float
    reference: Any = None
    reference_name: str = ""
    entry: dict[str, Any] | None = None  # its parity entry, when judged already (the INT8 search's kept attempt)

    @property
    def size_bytes(self) -> int:
        return formats.size_bytes(self.path)  # an IR's .bin counts


class ExportError(EdgekitError):
    """Some requested files could not be made or failed verification; ``report`` holds the rest."""

    def __init__(self, message: str, report: ExportReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class ParityError(ExportError):
    """An FP32 export does not reproduce the PyTorch model within tolerance."""


@dataclass
class ExportReport:
    out_dir: Path
    artifacts: list[Artifact]
    parity: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # files not made: {file, error, ...}
    int8_search: dict[str, Any] | None = None  # the float-layer search's record (export/int8.py)

    def by_file(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.parity if p["file"] == name), None)

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Files not made, and files made but failing their check (a file not run here is neither)."""
        return self.failures + [p for p in self.parity if verdicts.failed(p)]

    @property
    def not_run(self) -> list[dict[str, Any]]:
        """Files made but not run here (CoreML on Linux, ``verify=False``): never passed, never failed."""
        return [p for p in self.parity if verdicts.verdict_of(p) == "not_run"]

    def raise_for_failures(self) -> None:
        failed = self.failed
        if not failed:
            return
        made = len(self.artifacts) - sum(1 for p in self.parity if verdicts.failed(p))
        why = "; ".join(f"{e['file']}: {failure_reason(e)}" for e in failed)
        error = ExportError if self.failures else ParityError  # only files that exist but disagree: parity
        raise error(f"{len(failed)} of {made + len(failed)} requested file(s) failed ({why}); "
                          f"details in {self.out_dir / 'parity.json'}", self)

def failure_reason(e: dict[str, Any]) -> str:
    """One line on why a failed entry of :attr:`ExportReport.failed` failed: not made (its error), or made
    and missing its gate (the gate's numbers, and where the file went)."""
    return e.get("error") or parity_reason(e)


def parity_reason(e: dict[str, Any]) -> str:
    where = "kept at the user's request" if e.get("kept") else f"moved aside as {e['file']}.failed"
    return f"missed its {e.get('precision_ran', e.get('precision'))} gate ({gate_failures_text(e)}), {where}"


def failure_entry(name: str, fmt: str, precision: str, reason: str, seconds: float = 0.0) -> dict[str, Any]:
    return {"file": name, "format": fmt, "precision": precision, "verdict": "failed", "passed": False, "error": reason,
            "export_seconds": round(seconds, 2)}


def reason(exc: BaseException) -> str:
    """One line naming the exception and its first message line (converters' messages run for pages)."""
    if isinstance(exc, EdgekitError):
        return first_line(exc, 300)
    return f"{type(exc).__name__}: {first_line(exc, 260)}"
