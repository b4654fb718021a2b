"""Certify exported files: each is run through its own runtime on the val images, compared with PyTorch,
judged by its precision's gate (:mod:`edgekit.export.gates`), and the verdicts written once, to ``parity.json``
and into each file's card.

:class:`Verifier` holds what every check of one checkpoint shares (the val images, PyTorch's outputs on them,
the raw files of the end-to-end check), so that the INT8 float-layer search (:mod:`edgekit.export.int8`) judges
its attempts with the same code and the same data as the final files, and a file judged during the search is
not judged again (its :attr:`~edgekit.export.report.Artifact.entry` is kept).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit import formats
from edgekit import parity as verdicts
from edgekit.card import ModelCard
from edgekit.console import say
from edgekit.export.report import Artifact, ExportReport, ParityError, parity_reason, reason
from edgekit.train.trained import Trained


class Verifier:
    """Checks files of one checkpoint against PyTorch on its val images (loaded once)."""

    def __init__(self, trained: Trained, out_dir: Path, val_images: int | None = None,
                 overrides: dict[str, float | None] | None = None) -> None:
        from edgekit.export.end_to_end import raw_sample
        from edgekit.export.verify import compare_outputs

        self.trained, self.out_dir, self.overrides = trained, out_dir, overrides
        self.x, self.targets = trained.images("val", limit=val_images)
        self.reference = outputs(trained.model, trained.card.head_names, self.x)
        self.checkpoint_task = compare_outputs(trained.card, self.reference, self.reference, self.targets)
        self._own: dict[int, dict[str, np.ndarray]] = {}
        self._raw_dir = out_dir / ".raw-val"
        self.raw = raw_sample(trained, self._raw_dir)

    def entry(self, art: Artifact, end_to_end: bool = True) -> dict[str, Any]:
        """The parity entry of one artifact (never raises: a runtime that refuses the file is a failed entry).
        ``end_to_end``: also send the raw val files through the file's runtime (FP32 files are gated on it)."""
        from edgekit.export.verify import verify_file

        card = self.trained.card
        try:
            if art.reference is None:
                entry = verify_file(art.path, self.reference, self.x, self.targets, card, self.overrides)
            else:
                if id(art.reference) not in self._own:
                    self._own[id(art.reference)] = outputs(art.reference, card.head_names, self.x)
                entry = _verify_against(art, self._own[id(art.reference)], self.checkpoint_task, self.x,
                                        self.targets, card, self.overrides)
        except Exception as exc:  # noqa: BLE001 - the runtime cannot run this file: a failed check
            entry = {"file": art.path.name, "format": art.format, "precision": art.precision, "verdict": "failed",
                     "passed": False, "error": f"verification failed: {reason(exc)}"}
        if end_to_end and "heads" in entry and not entry["passed"] and art.reference is None:
            self.diagnose(entry, art)
        if end_to_end and "heads" in entry:
            self.end_to_end(entry, art)
        entry.update(export_seconds=round(art.seconds, 2), size_bytes=art.size_bytes, source=self.trained.source)
        return entry

    def diagnose(self, entry: dict[str, Any], art: Artifact) -> None:
        """A file that missed its gate: the first layer where it stops agreeing with PyTorch (``edgekit diff`` on
        two of the val inputs; formats diff can tap), in ``first_diverging`` and the failure line."""
        from edgekit.export.diff import DIFFED_AT_EXPORT, first_diverging_layer

        if art.path.suffix in DIFFED_AT_EXPORT:
            entry["first_diverging"] = first_diverging_layer(art.path, self.trained.model, self.trained.card,
                                                             self.x[:2], entry.get("precision_ran", art.precision))

    def end_to_end(self, entry: dict[str, Any], art: Artifact) -> None:
        """Raw files through the runtime's own preprocessing: FP32 files are gated on it."""
        from edgekit.export.end_to_end import add_end_to_end

        add_end_to_end(entry, art.path, art.precision, self.raw, self.overrides)

    def close(self) -> None:
        shutil.rmtree(self._raw_dir, ignore_errors=True)


def verify_artifacts(trained: Trained, report: ExportReport, val_images: int | None = None, verbose: bool = True,
                     strict: bool = True, overrides: dict[str, float | None] | None = None,
                     keep_failed: bool = False, verifier: Verifier | None = None) -> None:
    """Judge every artifact of ``report`` (an artifact judged already, by the INT8 search, keeps its entry),
    write parity.json once and record each verdict in the file's card where the format can rewrite it.

    A failed file is moved aside as ``*.failed`` (``keep_failed``: left in place, its card saying it failed).
    With ``strict``, a failure raises :class:`~edgekit.export.report.ParityError`."""
    from edgekit.export.verify import describe_entry

    own = verifier is None
    verifier = verifier or Verifier(trained, report.out_dir, val_images, overrides)
    entries = []
    try:
        for art in report.artifacts:
            entry = art.entry if art.entry is not None else verifier.entry(art)
            entries.append(entry)
            if verbose:
                say(describe_entry(entry))
    finally:
        if own:
            verifier.close()
    report.parity = entries
    for art, e in zip(report.artifacts, entries, strict=True):
        e["kept"] = bool(keep_failed and verdicts.failed(e))
        if "heads" in e:
            _certify(art, e)
            e["size_bytes"] = art.size_bytes  # the card now holds the verdict
        if art.path.exists():  # the verdict holds for these bytes only (edgekit.parity.record checks them)
            e["sha256"] = verdicts.digest(art.path)
    header = {"source": trained.source, "val_images": len(verifier.x),
              "gate_overrides": {k: v for k, v in (overrides or {}).items() if v is not None}}
    if report.int8_search:
        header["int8_search"] = report.int8_search
    verdicts.write_parity(report.out_dir, header, entries, report.failures)
    failed = [e for e in entries if verdicts.failed(e)]
    for e in failed:  # never leave a file that failed its check where a deploy script would pick it up
        for path in formats.model_files(report.out_dir / e["file"]):  # with an IR's .bin
            if path.exists() and not e["kept"]:
                move_aside(path)
    if failed and strict:
        raise ParityError(f"{len(failed)} file(s) missed their gate: "
                          + "; ".join(f"{e['file']}: {parity_reason(e)}" for e in failed)
                          + f"; details in {report.out_dir / 'parity.json'}")


def outputs(model: Any, heads: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's outputs per head on ``x`` (NCHW), in batches of 128."""
    out: dict[str, list[np.ndarray]] = {h: [] for h in heads}
    with torch.no_grad():
        for i in range(0, len(x), 128):
            for h, v in model(torch.from_numpy(x[i: i + 128])).items():
                out[h].append(v.float().numpy())
    return {h: np.concatenate(v) for h, v in out.items()}


def _verify_against(art: Artifact, reference: dict[str, np.ndarray], checkpoint_task: dict[str, dict[str, Any]],
                    x: np.ndarray, targets: dict[str, np.ndarray], card: ModelCard,
                    overrides: dict[str, float | None] | None) -> dict[str, Any]:
    """Parity (SQNR, agreement, relative error) against the artifact's own PyTorch model; task-level
    numbers (accuracy drop, MAE increase, mAP drop) against the checkpoint's, then judged again."""
    from edgekit.export.verify import verdict, verify_file

    entry = verify_file(art.path, reference, x, targets, card, overrides)
    if "heads" not in entry:
        return entry
    for head, stats in entry["heads"].items():
        for key, value in checkpoint_task.get(head, {}).items():
            if key.startswith("reference_"):
                stats[f"{art.reference_name}_{key[len('reference_'):]}"] = stats.get(key)
                stats[key] = value
    entry["parity_reference"] = art.reference_name
    return {**entry, **verdict(entry, entry.get("precision_ran", art.precision), overrides)}


def move_aside(path: Path) -> None:
    """``model.int8.onnx`` -> ``model.int8.onnx.failed`` (replacing an older one)."""
    replace(path, Path(str(path) + ".failed"))


def replace(src: Path, dest: Path) -> None:
    """Move ``src`` (a file or a package folder) to ``dest``, replacing what is there."""
    if dest.is_dir():
        shutil.rmtree(dest)
    elif dest.exists():
        dest.unlink()
    shutil.move(str(src), str(dest))


def _certify(art: Artifact, entry: dict[str, Any]) -> None:
    """Write the gate's verdict into the file's own card (formats whose card can be rewritten: ONNX,
    TFLite, ...; a ``.pte`` card is part of the lowered program and keeps what export wrote)."""
    steps = formats.FORMATS[art.format].steps()
    rewrite = getattr(steps, "rewrite_card", None)
    if rewrite is None or not art.path.exists():
        return
    from edgekit.runtime.metadata import read_card

    card = read_card(art.path)
    card.provenance["gate"] = {"verdict": entry.get("verdict"), "passed": entry["passed"],
                               "precision_ran": entry.get("precision_ran"),
                               "gate": entry.get("gate"), "failures": entry.get("gate_failures", []),
                               "kept_although_failed": entry["kept"]}
    rewrite(art.path, card)
