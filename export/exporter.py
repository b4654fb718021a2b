"""``edgekit export``: a checkpoint -> ONNX / TFLite / CoreML files, each verified, ``parity.json``.

One small module per target (``onnx.py``, ``tflite.py``, ``coreml.py``, ``executorch.py``), each
owning its file-level steps (FP32 export, FP16, INT8) behind one ``build(job, precision, card,
path)``; this file only reads the format table (:mod:`edgekit.formats`) for what to build, makes
each file alone (a failure is a line in ``parity.json``, not the end of the export), times it, and
runs the shared verification (``verify.py``).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekit import __version__, formats
from edgekit import parity as verdicts
from edgekit.card import ModelCard
from edgekit.console import say
from edgekit.errors import ConfigError, EdgekitError, either, first_line, option
from edgekit.export.gates import gate_failures_text
from edgekit.train.models import fix_position_embeddings, module_path
from edgekit.train.trained import Trained, load_trained

TARGETS = formats.targets()
DEFAULT_TARGETS = formats.default_targets()  # the device formats that need no optional extra


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

    @property
    def size_bytes(self) -> int:
        return formats.size_bytes(self.path)  # an IR's .bin counts


@dataclass
class ExportJob:
    """What every target's ``build(job, precision, card, path)`` reads: the traced module (heads as
    a tuple, NCHW), its sample batch, INT8 calibration, and the target's FP32 file once it exists."""

    module: torch.nn.Module
    sample: torch.Tensor
    calib: np.ndarray | None = None
    calib_method: str = "minmax"
    skip: list[str] = field(default_factory=list)  # module names kept in float with INT8
    dynamic_batch: bool = False
    fp32: Path | None = None
    scratch: dict[str, Any] = field(default_factory=dict)  # what a target's FP32 step leaves for its variants

    def like(self, card: ModelCard) -> ModelCard:
        """The card of the FP32 file (its layout, opset...) with ``card``'s precision: the FP16 / INT8
        variants of that file share its input contract."""
        from edgekit.runtime.metadata import read_card

        return read_card(self.fp32).derive(precision=card.provenance["precision"])


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

CLIP_TARGETS = "targets=['onnx', 'tflite']"  # what a clip model exports to (Python spelling)


def failure_reason(e: dict[str, Any]) -> str:
    """One line on why a failed entry of :attr:`ExportReport.failed` failed: not made (its error), or made
    and missing its gate (the gate's numbers, and where the file went)."""
    return e.get("error") or _parity_reason(e)


def _parity_reason(e: dict[str, Any]) -> str:
    where = "kept at the user's request" if e.get("kept") else f"moved aside as {e['file']}.failed"
    return f"missed its {e.get('precision_ran', e.get('precision'))} gate ({gate_failures_text(e)}), {where}"


def default_out_dir(card: ModelCard, stage: str = "export") -> Path:
    return Path("runs") / stage / (card.name + ("-fused" if card.provenance.get("fused") else ""))


def export_checkpoint(ckpt: str | Path | Trained, targets: Sequence[str] = DEFAULT_TARGETS,
                      out_dir: str | Path | None = None,
                      int8: bool = False, fp16: bool = False, batch: int = 1, dynamic_batch: bool = False,
                      imgsz: int | None = None, calib_images: int = 256, calib_method: str = "minmax",
                      skip_layers: Sequence[str] = (), verify: bool = True, val_images: int | None = None,
                      verbose: bool = True, strict: bool = True, gate_overrides: dict[str, float | None] | None = None,
                      keep_failed: bool = False, golden: bool | None = None) -> ExportReport:
    """Export ``ckpt`` to each target (FP32, plus FP16 / INT8 variants), verify, write parity.json.

    Each file succeeds or fails alone: every file that can be made is made, verified and judged by
    its precision's gate (:mod:`edgekit.export.gates`, with the user's ``gate_overrides``), and
    ``parity.json`` lists the failures with one-line reasons. A file that misses its gate is moved
    aside as ``*.failed``, or with ``keep_failed`` left in place with a card that says it failed. ``golden``
    (default: ``verify``) stores golden inputs in the cards (``edgekit check --parity``).
    With ``strict`` (the default) an :class:`ExportError` carrying the report is raised at the end
    when any requested file failed.
    """
    trained = ckpt if isinstance(ckpt, Trained) else load_trained(ckpt)
    if batch < 1:
        raise ConfigError("the export batch must be at least 1")
    if int8 and calib_images < 1:
        raise ConfigError(f"INT8 calibration needs at least one image, got {calib_images}")
    if imgsz is not None:
        from edgekit.train.models import check_input_size

        check_input_size(trained.model, imgsz, frames=trained.card.input.frames)
        trained.card.input.size = [imgsz, imgsz]
    targets = formats.with_wrapped(targets)  # a bundle (web) wraps another target's files, made first
    _check_targets_available(targets)
    fix_position_embeddings(trained.model, trained.card.input.size)  # every target gets a fixed-size graph
    if trained.card.input.frames:
        if "coreml" in targets:
            raise ConfigError("CoreML export of clip models is not supported (its image input takes one frame); "
                              f"use {either('--target onnx,tflite', CLIP_TARGETS)}")
        if int8:
            raise ConfigError("INT8 export of clip models is not supported yet; export FP32/FP16 files")
    if not trained.card.provenance.get("fused"):
        from edgekit.compress.reparam import has_reparam_blocks

        if has_reparam_blocks(trained.model):
            say(f"[yellow]note[/]: {trained.card.arch} is in its training form; `edgekit reparam {trained.path}` "
                "first gives a smaller, faster file with the same outputs")
    out = Path(out_dir) if out_dir else default_out_dir(trained.card)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option('out_dir', flag='--out')}: {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    base = trained.card.derive(source=str(trained.path), edgekit=__version__, precision="fp32",
                               exported=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    if verify if golden is None else golden:
        from edgekit.export.golden import golden_inputs

        base.golden = golden_inputs(trained)
    module, sample = trained.wrapped(), trained.sample(batch)
    calib = trained.images("train", limit=calib_images)[0] if int8 else None
    artifacts: list[Artifact] = []
    failures: list[dict[str, Any]] = []

    def build(fmt: str, precision: str, fn, needs: Path | None | bool = True) -> Path | None:
        """Make one file; a failure is recorded (one line) and the other files are still made."""
        name = formats.FORMATS[fmt].file(precision)
        if needs is None:  # the FP32 file this variant is derived from was not made
            failures.append(_failure(name, fmt, precision, "not made: the FP32 file it derives from failed"))
            if verbose:
                say(f"  [red]{name} failed[/]: {failures[-1]['error']}")
            return None
        t0 = time.perf_counter()
        if verbose:
            say(f"export {fmt} {precision} -> {out / name}")
        short = _short_of_space(out, need)
        if short:  # a converter that runs out of disk can abort the whole process (LiteRT's LLVM): refuse first
            failures.append(_failure(name, fmt, precision, short))
            if verbose:
                say(f"  [red]{name} failed[/]: {short}")
            return None
        try:
            path = fn(base.derive(precision=precision), out / name)
        except Exception as exc:  # noqa: BLE001 - converters raise anything; each file fails alone
            failures.append(_failure(name, fmt, precision, _reason(exc), time.perf_counter() - t0))
            if verbose:
                say(f"  [red]{name} failed[/]: {failures[-1]['error']}")
            return None
        artifacts.append(Artifact(path, fmt, precision, time.perf_counter() - t0))
        return path

    need = space_needed(trained.model)
    job = ExportJob(module=module, sample=sample, calib=calib, calib_method=calib_method,
                    skip=[module_path(trained.model, s) for s in skip_layers], dynamic_batch=dynamic_batch)
    for target in targets:  # the format table says which precisions each target has
        fmt = formats.FORMATS[target]
        steps = importlib.import_module(f"edgekit.export.{target}")
        job.fp32 = None
        wanted = [fmt.precisions[0]] + [p for p in fmt.precisions[1:]
                                        if (p == "fp16" and fp16) or (p.startswith("int8") and int8)]
        for precision in wanted:
            needs = job.fp32 if precision in getattr(steps, "FROM_FP32_FILE", ()) else True
            made = build(target, precision, lambda c, p, s=steps, q=precision: s.build(job, q, c, p), needs)
            if precision == fmt.precisions[0]:
                job.fp32 = made

    report = ExportReport(out_dir=out, artifacts=artifacts, failures=failures)
    if verify and artifacts:
        verify_artifacts(trained, report, val_images, verbose=verbose, strict=False, overrides=gate_overrides,
                         keep_failed=keep_failed)
    else:  # not verified: each file is "not run", and an old verdict on an older file of that name is dropped
        report.parity = [{"file": a.path.name, "format": a.format, "precision": a.precision, "verdict": "not_run",
                          "passed": False, "not_run": verdicts.NOT_VERIFIED, "source": str(trained.path),
                          "export_seconds": round(a.seconds, 2), "size_bytes": a.size_bytes,
                          "sha256": verdicts.digest(a.path)} for a in artifacts]
        verdicts.write_parity(out, {"source": str(trained.path), "verified": verify}, report.parity, failures)
        for e in report.parity if verbose else []:
            say(f"  {verdicts.not_run_line(e)}")
    if strict:
        report.raise_for_failures()
    return report


def space_needed(model: torch.nn.Module) -> int:
    """Bytes a conversion may write at once: the FP32 weights three times over (the file, a converter's
    intermediate copy, the re-packed file with its card) plus 16 MB for the rest."""
    return 3 * 4 * sum(p.numel() for p in model.parameters()) + 16 * 2**20


def _short_of_space(folder: Path, need: int) -> str | None:
    """Why there is not room for a file in ``folder`` (None: there is)."""
    free = shutil.disk_usage(folder).free
    if free >= need:
        return None
    return (f"not enough free disk space in {folder}: {free / 2**20:.1f} MB free, a conversion of this model "
            f"needs about {need / 2**20:.0f} MB (nothing was written)")


def _failure(name: str, fmt: str, precision: str, reason: str, seconds: float = 0.0) -> dict[str, Any]:
    return {"file": name, "format": fmt, "precision": precision, "verdict": "failed", "passed": False, "error": reason,
            "export_seconds": round(seconds, 2)}


def _reason(exc: BaseException) -> str:
    """One line naming the exception and its first message line (converters' messages run for pages)."""
    if isinstance(exc, EdgekitError):
        return first_line(exc, 300)
    return f"{type(exc).__name__}: {first_line(exc, 260)}"


def verify_artifacts(trained: Trained, report: ExportReport, val_images: int | None = None,
                     verbose: bool = True, strict: bool = True, overrides: dict[str, float | None] | None = None,
                     keep_failed: bool = False) -> None:
    """Check every artifact against PyTorch on real val images, judge it by its precision's gate,
    write parity.json and record the verdict in each file's card where the format can rewrite it.

    A file whose check crashes (its runtime refuses it) is a failed entry, not a crash of the whole
    verification. A failed file is moved aside as ``*.failed`` (``keep_failed``: left in place, its
    card saying it failed). With ``strict``, a failure raises :class:`ParityError`."""
    from edgekit.export.diff import DIFFED_AT_EXPORT, first_diverging_layer
    from edgekit.export.verify import compare_outputs, describe_entry, verify_file

    x, targets = trained.images("val", limit=val_images)
    reference = _outputs(trained.model, trained.card.head_names, x)
    own = {id(a.reference): _outputs(a.reference, trained.card.head_names, x) for a in report.artifacts
           if a.reference is not None}
    checkpoint_task = compare_outputs(trained.card, reference, reference, targets)  # its reference_* numbers
    from edgekit.export.end_to_end import add_end_to_end, raw_sample

    raw = raw_sample(trained, report.out_dir / ".raw-val")
    entries = []
    for art in report.artifacts:
        try:
            if art.reference is None:
                entry = verify_file(art.path, reference, x, targets, trained.card, overrides)
            else:
                entry = _verify_against(art, own[id(art.reference)], checkpoint_task, x, targets, trained.card,
                                        overrides)
        except Exception as exc:  # noqa: BLE001 - the runtime cannot run this file: a failed check
            entry = {"file": art.path.name, "format": art.format, "precision": art.precision, "verdict": "failed",
                     "passed": False, "error": f"verification failed: {_reason(exc)}"}
        if "heads" in entry and not entry["passed"] and art.path.suffix in DIFFED_AT_EXPORT and art.reference is None:
            entry["first_diverging"] = first_diverging_layer(art.path, trained.model, trained.card, x[:2],
                                                             entry.get("precision_ran", art.precision))
        if "heads" in entry:  # raw files through the runtime's own preprocessing: FP32 files are gated on it
            add_end_to_end(entry, art.path, art.precision, raw, overrides)
        entry.update(export_seconds=round(art.seconds, 2), size_bytes=art.size_bytes, source=str(trained.path))
        entries.append(entry)
        if verbose:
            say(describe_entry(entry))
    shutil.rmtree(report.out_dir / ".raw-val", ignore_errors=True)
    report.parity = entries
    for art, e in zip(report.artifacts, entries, strict=True):
        e["kept"] = bool(keep_failed and verdicts.failed(e))
        if "heads" in e:
            _certify(art, e)
            e["size_bytes"] = art.size_bytes  # the card now holds the verdict
        if art.path.exists():  # the verdict holds for these bytes only (edgekit.parity.record checks them)
            e["sha256"] = verdicts.digest(art.path)
    header = {"source": str(trained.path), "val_images": len(x),
              "gate_overrides": {k: v for k, v in (overrides or {}).items() if v is not None}}
    verdicts.write_parity(report.out_dir, header, entries, report.failures)
    failed = [e for e in entries if verdicts.failed(e)]
    for e in failed:  # never leave a file that failed its check where a deploy script would pick it up
        for path in formats.model_files(report.out_dir / e["file"]):  # with an IR's .bin
            if path.exists() and not e["kept"]:
                _move_aside(path)
    if failed and strict:
        raise ParityError(f"{len(failed)} file(s) missed their gate: "
                          + "; ".join(f"{e['file']}: {_parity_reason(e)}" for e in failed)
                          + f"; details in {report.out_dir / 'parity.json'}")


def _outputs(model: Any, heads: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
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


def _move_aside(path: Path) -> None:
    """``model.int8.onnx`` -> ``model.int8.onnx.failed`` (replacing an older one)."""
    target = Path(str(path) + ".failed")
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    shutil.move(str(path), str(target))


def _certify(art: Artifact, entry: dict[str, Any]) -> None:
    """Write the gate's verdict into the file's own card (formats whose card can be rewritten: ONNX,
    TFLite, ...; a ``.pte`` card is part of the lowered program and keeps what export wrote)."""
    steps = importlib.import_module(f"edgekit.export.{art.format}")
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


def _check_targets_available(targets: Sequence[str]) -> None:
    for t in targets:
        formats.FORMATS[t].require()
