"""``parity.json``: the verdict on each file an export made, and how readers may trust it.

A verdict has three states (:data:`VERDICTS`):

- ``passed``: the file ran through its own runtime on real inputs and met its precision's gate;
- ``failed``: it ran and missed its gate, could not run, or was not made;
- ``not_run``: it was not run here, so it is neither (CoreML on Linux: prediction needs macOS; a file exported
  with ``--no-verify``); ``not_run`` in the entry says why, in words.

An entry's ``passed`` is ``True`` only for ``passed``. Each entry written by this edgekit carries ``sha256``: the
digest of the file (with an IR's ``.bin``; every file of a package folder) as the export left it. A reader
trusts an entry only while the file on disk still has that digest (:func:`record`): a file rewritten since (an
export with ``--no-verify`` into the same folder, a file copied over by hand) has no verdict.

Light (no numpy, no torch): the benchmarks, the recipes and the CLI read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VERDICTS = ("passed", "failed", "not_run")
NOT_VERIFIED = "exported with --no-verify"


def verdict_of(entry: dict[str, Any]) -> str:
    """The entry's verdict. Entries written before verdicts had three states: an error or a missed gate
    is ``failed``, a file with no measured heads (CoreML on Linux, judged on its structure) ``not_run``."""
    v = entry.get("verdict")
    if v in VERDICTS:
        return v
    if entry.get("error") or entry.get("structure_ok") is False:
        return "failed"
    if "heads" not in entry:
        return "not_run"
    return "passed" if entry.get("passed") is True else "failed"


def failed(entry: dict[str, Any]) -> bool:
    return verdict_of(entry) == "failed"


def not_run_reason(entry: dict[str, Any]) -> str:
    """Why a ``not_run`` entry was not run (``"not run here"`` when it does not say)."""
    return entry.get("not_run") or entry.get("numeric") or "not run here"


def not_run_line(entry: dict[str, Any]) -> str:
    """``model.mlpackage: not run here (CoreML prediction needs macOS, ...)``, ``model.onnx: not verified
    (exported with --no-verify)``."""
    why = not_run_reason(entry)
    return f"{entry['file']}: {'not verified' if why == NOT_VERIFIED else 'not run here'} ({why})"


def digest(path: str | Path) -> str:
    """SHA-256 of a model (:func:`edgekit.formats.digest`: the one implementation)."""
    from edgekit import formats

    return formats.digest(path)


def read(folder: str | Path) -> dict[str, Any]:
    """``folder/parity.json`` (``{}`` when there is none or it cannot be read)."""
    path = Path(folder) / "parity.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(path: str | Path) -> tuple[dict[str, Any] | None, str]:
    """The ``parity.json`` entry of ``path`` (beside it) that still describes the file on disk, or ``None``
    and one line on why there is none."""
    path = Path(path)
    entry = next((e for e in read(path.parent).get("artifacts", []) if e.get("file") == path.name), None)
    if entry is None:
        return None, "no parity record beside it (a file edgekit did not export and verify)"
    if not entry.get("sha256"):
        return None, "its parity record has no content hash (an older edgekit wrote it): export it again"
    if not path.exists():
        return None, "the file is not there"
    if digest(path) != entry["sha256"]:
        return None, "the file changed after its parity record was written (its content hash differs): export it again"
    return entry, ""


def write_parity(out_dir: str | Path, header: dict[str, Any], entries: list[dict[str, Any]],
                 failures: list[dict[str, Any]]) -> Path:
    """``out_dir/parity.json``: this export's entries and failures (``header``: its source, images, gates). The
    entries of other files an earlier export left in the folder stay, each bound to its file by ``sha256``;
    those of every file this export made or tried to make are replaced, so no verdict outlives its file."""
    from edgekit.atomic import write_json

    out_dir = Path(out_dir)
    old = read(out_dir)
    names = {e["file"] for e in entries + failures}
    keep = [e for e in old.get("artifacts", []) if e.get("file") not in names and (out_dir / e["file"]).exists()]
    keep_failures = [f for f in old.get("failures", []) if f.get("file") not in names]
    return write_json(out_dir / "parity.json", {**header, "artifacts": keep + entries,
                                                "failures": keep_failures + failures})


def reseal(out_dir: str | Path, names: list[str]) -> None:
    """Record the new content hash of files whose card a later step of the same command rewrote (``edgekit
    quantize`` writes the INT8 files' measured speed-up into them): the verdict is about the same model."""
    from edgekit.atomic import write_json

    out_dir = Path(out_dir)
    data = read(out_dir)
    for e in data.get("artifacts", []):
        if e.get("file") in names and e.get("sha256") and (out_dir / e["file"]).exists():
            e["sha256"] = digest(out_dir / e["file"])
    if data:
        write_json(out_dir / "parity.json", data)
