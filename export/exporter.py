"""``edgekit export``: a checkpoint -> ONNX / TFLite / CoreML files, each verified, ``parity.json``.

One small module per target (``onnx.py``, ``tflite.py``, ``coreml.py``, ``executorch.py``), each
owning its file-level steps (FP32 export, FP16, INT8) behind one ``build(job, precision, card,
path)``; this file only reads the format table (:mod:`edgekit.formats`) for what to build, makes
each file alone (a failure is a line in ``parity.json``, not the end of the export), times it, and
runs the shared verification (``verify.py``).
"""

from __future__ import annotations

import datetime as _dt
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgekit import __version__, formats
from edgekit import parity as verdicts
from edgekit.card import ModelCard
from edgekit.console import say
from edgekit.errors import ConfigError, either, option
from edgekit.export.certify import verify_artifacts
from edgekit.export.report import Artifact, ExportReport, failure_entry, reason
from edgekit.train.models import module_path
from edgekit.train.trained import Trained, load_trained

if TYPE_CHECKING:
    from edgekit.export.int8 import Int8

TARGETS = formats.targets()
DEFAULT_TARGETS = formats.default_targets()  # the device formats that need no optional extra


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


CLIP_TARGETS = "targets=['onnx', 'tflite']"  # what a clip model exports to (Python spelling)


def default_out_dir(card: ModelCard, stage: str = "export") -> Path:
    return Path("runs") / stage / (card.name + ("-fused" if card.provenance.get("fused") else ""))


def export_checkpoint(ckpt: str | Path | Trained, targets: Sequence[str] = DEFAULT_TARGETS,
                      out_dir: str | Path | None = None,
                      int8: bool | Int8 = False, fp16: bool = False, batch: int = 1, dynamic_batch: bool = False,
                      imgsz: int | None = None, calib_images: int = 256, calib_method: str = "minmax",
                      skip_layers: Sequence[str] = (), verify: bool = True, val_images: int | None = None,
                      verbose: bool = True, strict: bool = True, gate_overrides: dict[str, float | None] | None = None,
                      keep_failed: bool = False, golden: bool | None = None) -> ExportReport:
    """Export ``ckpt`` to each target (FP32, plus FP16 / INT8 variants), verify, write parity.json.

    ``int8``: ``True`` for PTQ INT8 files with ``skip_layers`` in float, or an :class:`~edgekit.export.int8.Int8`
    policy (QAT, or the float-layer search: ``Int8(float_layers="auto")``).

    Each file succeeds or fails alone: every file that can be made is made, verified and judged by
    its precision's gate (:mod:`edgekit.export.gates`, with the user's ``gate_overrides``), and
    ``parity.json`` lists the failures with one-line reasons. A file that misses its gate is moved
    aside as ``*.failed``, or with ``keep_failed`` left in place with a card that says it failed. ``golden``
    (default: ``verify``) stores golden inputs in the cards (``edgekit check --parity``).
    With ``strict`` (the default) an :class:`ExportError` carrying the report is raised at the end
    when any requested file failed.
    """
    from edgekit.export import int8 as int8_policy

    trained = ckpt if isinstance(ckpt, Trained) else load_trained(ckpt)
    if batch < 1:
        raise ConfigError("the export batch must be at least 1")
    q = int8_policy.policy(int8, skip_layers, calib_images, calib_method)
    if q and q.search and not verify:
        raise ConfigError("the INT8 float-layer search judges every attempt through its runtime: it cannot run "
                          "without verification")
    trained.at_size(imgsz if imgsz is not None else trained.card.input.size)  # every target: a fixed-size graph
    targets = formats.with_wrapped(targets)  # a bundle (web) wraps another target's files, made first
    _check_targets_available(targets)
    if trained.card.input.frames:
        if "coreml" in targets:
            raise ConfigError("CoreML export of clip models is not supported (its image input takes one frame); "
                              f"use {either('--target onnx,tflite', CLIP_TARGETS)}")
        if q:
            raise ConfigError("INT8 export of clip models is not supported yet; export FP32/FP16 files")
    out = Path(out_dir) if out_dir else default_out_dir(trained.card)
    if q and (q.search if q.fuse is None else q.fuse):
        int8_policy.fuse_if_possible(trained, verbose)  # the inference form is what gets quantized
    if not trained.card.provenance.get("fused"):
        from edgekit.compress.reparam import has_reparam_blocks

        if has_reparam_blocks(trained.model):
            say(f"[yellow]note[/]: {trained.card.arch} is in its training form; `edgekit reparam {trained.path}` "
                "first gives a smaller, faster file with the same outputs")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option('out_dir', flag='--out')}: {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    base = trained.card.derive(source=trained.source, edgekit=__version__, precision="fp32",
                               exported=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    if verify if golden is None else golden:
        from edgekit.export.golden import golden_inputs

        base.golden = golden_inputs(trained)
    module, sample = trained.wrapped(), trained.sample(batch)
    calib = trained.images("train", limit=q.calib_images)[0] if q and q.method == "ptq" else None
    artifacts: list[Artifact] = []
    failures: list[dict[str, Any]] = []

    def build(fmt: str, precision: str, fn, needs: Path | None | bool = True) -> Path | None:
        """Make one file; a failure is recorded (one line) and the other files are still made."""
        name = formats.FORMATS[fmt].file(precision)
        if needs is None:  # the FP32 file this variant is derived from was not made
            failures.append(failure_entry(name, fmt, precision, "not made: the FP32 file it derives from failed"))
            if verbose:
                say(f"  [red]{name} failed[/]: {failures[-1]['error']}")
            return None
        t0 = time.perf_counter()
        if verbose:
            say(f"export {fmt} {precision} -> {out / name}")
        short = _short_of_space(out, need)
        if short:  # a converter that runs out of disk can abort the whole process (LiteRT's LLVM): refuse first
            failures.append(failure_entry(name, fmt, precision, short))
            if verbose:
                say(f"  [red]{name} failed[/]: {short}")
            return None
        try:
            path = fn(base.derive(precision=precision), out / name)
        except Exception as exc:  # noqa: BLE001 - converters raise anything; each file fails alone
            failures.append(failure_entry(name, fmt, precision, reason(exc), time.perf_counter() - t0))
            if verbose:
                say(f"  [red]{name} failed[/]: {failures[-1]['error']}")
            return None
        artifacts.append(Artifact(path, fmt, precision, time.perf_counter() - t0))
        return path

    need = space_needed(trained.model)
    job = ExportJob(module=module, sample=sample, calib=calib, calib_method=q.calib_method if q else calib_method,
                    skip=[module_path(trained.model, s) for s in (q.named_float_layers if q else ())],
                    dynamic_batch=dynamic_batch)
    verifier, search = None, None
    if q and q.search:
        from edgekit.export.certify import Verifier

        verifier = Verifier(trained, out, val_images, gate_overrides)
        search = int8_policy.Search(trained, out, gate_overrides, q.calib_images, q.calib_method, verbose,
                                    rank_always=q.rank_always, by=q.search_by, max_float=q.max_float)
    try:
        for target in targets:  # the format table says which precisions each target has
            fmt = formats.FORMATS[target]
            steps = fmt.steps()
            job.fp32 = None
            wanted = [fmt.precisions[0]] + [p for p in fmt.precisions[1:]
                                            if (p == "fp16" and fp16) or (p.startswith("int8") and q)]
            for precision in wanted:
                how = q.makes(target) if q and precision == "int8" else "build"
                if how == "qat":
                    continue  # one fine-tuned graph for every target, below
                needs = job.fp32 if precision in getattr(steps, "FROM_FP32_FILE", ()) or how == "search" else True
                if how == "search" and needs is not None:
                    art = search.run(target, steps, job, base.derive(precision="int8"), verifier)
                    if art is None:
                        failures.append(failure_entry(fmt.file("int8"), target, "int8", search.failure(target)))
                    else:
                        artifacts.append(art)
                    continue
                made = build(target, precision, lambda c, p, s=steps, r=precision: s.build(job, r, c, p), needs)
                if precision == fmt.precisions[0]:
                    job.fp32 = made
        if q and q.method == "qat":
            artifacts += int8_policy.qat_artifacts(trained, out, q.named_float_layers, q.epochs, q.lr, verbose,
                                                   [t for t in targets if t in int8_policy.QAT_TARGETS])
        report = ExportReport(out_dir=out, artifacts=artifacts, failures=failures,
                              int8_search=search.record() if search else None)
        if verify and artifacts:
            verify_artifacts(trained, report, val_images, verbose=verbose, strict=False, overrides=gate_overrides,
                             keep_failed=keep_failed, verifier=verifier)
    finally:
        if verifier is not None:
            verifier.close()
        shutil.rmtree(out / ".int8-search", ignore_errors=True)
    if not (verify and artifacts):
        # not verified: each file is "not run", and an old verdict on an older file of that name is dropped
        report.parity = [{"file": a.path.name, "format": a.format, "precision": a.precision, "verdict": "not_run",
                          "passed": False, "not_run": verdicts.NOT_VERIFIED, "source": trained.source,
                          "export_seconds": round(a.seconds, 2), "size_bytes": a.size_bytes,
                          "sha256": verdicts.digest(a.path)} for a in artifacts]
        verdicts.write_parity(out, {"source": trained.source, "verified": verify}, report.parity, failures)
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


def _check_targets_available(targets: Sequence[str]) -> None:
    for t in targets:
        formats.FORMATS[t].require()
