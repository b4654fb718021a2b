"""End to end: raw validation files through the runtime's own ``predict`` path against the training
pipeline and PyTorch, gated for FP32 files.

Parity (:mod:`edgekit.export.verify`) feeds both sides the same tensors, so it cannot see a skew in
how each side turns a file into a tensor: decoding (EXIF orientation), resizing, cropping, colour
order, normalization. Here a sample of the validation split's files (in-memory images, like the
digits, written as lossless PNG first) goes through :meth:`Predictor.preprocess` from the file path,
as on the device, and through the training loader and eval transform into PyTorch. Per head, as the
gates measure it (:func:`~edgekit.export.compare.compare_outputs`): relative error, SQNR, cosine and
top-1 agreement; the share of samples with the same label set (multilabel).

Training calls the runtime's preprocessing, so an FP32 file gives PyTorch's answers here: one whose
end-to-end error misses the FP32 gate, or whose agreement is below
:data:`~edgekit.export.gates.END_TO_END_MIN_AGREEMENT` on a head, misses its gate, with the cause: the
first stage (decode, resize, colour order, normalization) whose output differs between the two sides.
Files of other precisions carry their figures beside their own gate, not gated here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLE = 64
STAGES = ("decode", "resize", "colour order", "normalization")


@dataclass
class RawSample:
    """Raw files, PyTorch's outputs on them through training's pipeline, and for images the training side's
    own decode of each file and its eval transform (what :func:`first_difference` compares stage by stage)."""

    files: list[str]
    reference: dict[str, np.ndarray]
    decoded: Callable[[int], Any] | None = None  # k -> training's decoded image of files[k] (PIL RGB)
    transform: Any = None  # training's eval transform (EvalTransform)


def raw_sample(trained, folder: Path, limit: int = SAMPLE) -> RawSample | None:
    """Up to ``limit`` validation files (evenly spread) and PyTorch's outputs on them through the training
    pipeline; None for clip models (a video's frames are chosen per clip, not per file)."""
    from edgekit.train.data import eval_transform

    if trained.card.input.frames:
        return None
    if trained.card.input.audio:
        from edgekit.export.end_to_end_audio import raw_sounds

        sounds = raw_sounds(trained, folder, limit)
        return None if sounds is None else RawSample(*sounds)
    trained.images("val", limit=1)  # loads the data once
    split = trained._data.val
    ids = [int(i) for i in np.unique(np.linspace(0, len(split) - 1, min(limit, len(split))).round().astype(int))]
    files = []
    for i in ids:
        name = split.names[i]
        if Path(name).is_file():
            files.append(name)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        files.append(str(folder / f"{i:05d}.png"))
        split.load(i).save(files[-1])
    tf = eval_transform(trained.card.input)
    x = torch.stack([tf(split.load(i)) for i in ids])
    with torch.no_grad():
        out = trained.model(x)
    reference = {h: out[h].float().numpy().reshape(len(ids), -1) for h in trained.card.head_names}
    return RawSample(files, reference, lambda k: split.load(ids[k]), tf)


def check_file(path: Path, sample: RawSample, precision_ran: str = "fp32",
               overrides: dict[str, float | None] | None = None) -> dict[str, Any]:
    """The file's outputs on the raw files through its runtime, compared per head with the reference and
    judged: ``gated`` (FP32: ``passed``, ``gate_failures`` and, on a miss, ``cause``) or, for other
    precisions, ``within_gate`` of the precision that ran (reported, not gated)."""
    from edgekit.export.compare import compare_outputs
    from edgekit.export.gates import END_TO_END_MIN_AGREEMENT, GATES, gate_for, judge
    from edgekit.runtime import load

    files, reference = sample.files, sample.reference
    predictor = load(path, device="cpu")
    card = predictor.card
    if card.input.audio:  # sound files: each one's windows aggregated, as edgekit predict does
        from edgekit.runtime.tagging import sound_outputs

        per = [sound_outputs(predictor, f) for f in files]
        out = {h: np.stack([o[h] for o in per]) for h in card.head_names}
    else:
        out = predictor.run(predictor.preprocess(files))
    out = {h: v.reshape(len(files), -1) for h, v in out.items()}
    heads = compare_outputs(card, reference, out)
    activated = bool(card.provenance.get("outputs_activated"))
    for head in card.heads:
        if head.kind == "multilabel":
            pa = 1 / (1 + np.exp(-reference[head.name])) >= head.threshold  # PyTorch gives logits
            b = out[head.name]
            pb = (b if activated else 1 / (1 + np.exp(-b))) >= head.threshold
            heads[head.name]["label_set_agreement"] = float((pa == pb).all(1).mean())
    entry: dict[str, Any] = {"files": len(files), "heads": heads, "precision_ran": precision_ran}
    if precision_ran != "fp32":
        verdict = judge({"heads": heads}, gate_for(precision_ran, overrides))
        entry.update(gated=False, gate=verdict["gate"], within_gate=verdict["passed"],
                     gate_failures=verdict["failures"])
        return entry
    failures = judge({"heads": heads}, GATES["fp32"])["failures"]
    for name, s in heads.items():
        for key, what in (("top1_agreement", "top-1 agreement"), ("label_set_agreement", "label-set agreement")):
            if key in s and not s[key] >= END_TO_END_MIN_AGREEMENT:
                failures.append(f"{name}: {what} {s[key] * 100:.1f}% < {END_TO_END_MIN_AGREEMENT * 100:g}%")
    entry.update(gated=True, passed=not failures, gate={**GATES["fp32"].to_dict(),
                                                        "min_agreement": END_TO_END_MIN_AGREEMENT},
                 gate_failures=failures)
    if failures:
        entry["cause"] = first_difference(sample, card.input)
    return entry


def add_end_to_end(entry: dict[str, Any], path: Path, precision: str, sample: RawSample | None,
                   overrides: dict[str, float | None] | None = None) -> None:
    """Add a verified file's end-to-end check to its parity entry; an FP32 file that misses it, or whose
    runtime cannot take the raw files, fails its gate with the reason (and the cause) in ``gate_failures``."""
    from edgekit.errors import EdgekitError, first_line

    ran = entry.get("precision_ran", precision)
    if sample is None:
        entry["end_to_end"] = {"skipped": "clip model: frames are chosen per clip, not per file (or sound windows "
                                          "without the sounds they were cut from)"}
        return
    try:
        e2e = entry["end_to_end"] = check_file(path, sample, ran, overrides)
    except Exception as exc:  # noqa: BLE001 - the runtime could not take the raw files: a failed check
        error = first_line(exc, 300) if isinstance(exc, EdgekitError) else \
            f"{type(exc).__name__}: {first_line(exc, 260)}"
        e2e = entry["end_to_end"] = {"error": error, "gated": ran == "fp32", "passed": False,
                                     "gate_failures": [f"could not run ({error})"]}
    if e2e.get("gated") and not e2e.get("passed"):
        cause = e2e.get("cause")
        failures = [f"end to end: {f}" for f in e2e["gate_failures"]]
        if cause:
            failures[-1] += f" (cause: {cause['stage']}: {cause['detail']})"
        entry["passed"] = False
        entry["verdict"] = "failed"
        entry["gate_failures"] = [*entry.get("gate_failures", []), *failures]


def first_difference(sample: RawSample, spec) -> dict[str, Any]:
    """The first stage whose output differs between training's pipeline and the runtime's on the sample's
    files: ``{"stage", "files", "detail"}``; stage ``none`` when the model's inputs are the same on both
    sides (the file's own outputs differ)."""
    from edgekit.runtime.preprocess import normalize, read_image, resize_crop, to_color

    if sample.decoded is None or sample.transform is None:
        return {"stage": "unknown", "files": len(sample.files),
                "detail": "sounds: compare the log-mel frontends (tools/audio_frontend_diff.py)"}
    tf = sample.transform
    as_torch = dataclasses.replace(spec, layout="NCHW", quant=None, dtype="float32")
    seen: dict[str, list[_Diff]] = {s: [] for s in STAGES}
    for k, f in enumerate(sample.files):
        img = sample.decoded(k)
        theirs = read_image(f)  # BGR
        crop_t, crop_r = tf.geometric(img), resize_crop(theirs, spec)
        col_t, col_r = to_color(crop_t, "RGB", tf.spec), to_color(crop_r, "BGR", spec)
        x_t = tf(img).numpy()
        x_r = normalize(np.ascontiguousarray(col_r)[None].astype(np.float32), as_torch)[0]
        for stage, a, b in (("decode", np.asarray(img.convert("RGB")), theirs[:, :, ::-1]),
                            ("resize", crop_t, crop_r[:, :, ::-1]), ("colour order", col_t, col_r),
                            ("normalization", x_t, x_r)):
            diff = _Diff.of(Path(f).name, a, b)
            if diff is not None:
                seen[stage].append(diff)
                break
    for stage in STAGES:
        rows = seen[stage]
        if not rows:
            continue
        shaped = [r for r in rows if r.shapes]
        if shaped:
            (a, b), name = shaped[0].shapes, shaped[0].file
            detail = (f"{len(shaped)} of {len(sample.files)} files differ in shape, e.g. {name}: {a[0]}x{a[1]} in "
                      f"training, {b[0]}x{b[1]} in the runtime")
        else:
            unit = "in normalized units" if stage == "normalization" else "grey levels"
            detail = (f"{len(rows)} of {len(sample.files)} files differ, by up to {max(r.max for r in rows):.3g} "
                      f"{unit} (mean {np.mean([r.mean for r in rows]):.2g}), e.g. {rows[0].file}")
        return {"stage": stage, "files": len(rows), "detail": detail}
    return {"stage": "none", "files": 0,
            "detail": "decode, resize, colour order and normalization agree: the file's own outputs differ"}


@dataclass
class _Diff:
    file: str
    max: float = 0.0
    mean: float = 0.0
    shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @classmethod
    def of(cls, file: str, a: np.ndarray, b: np.ndarray) -> _Diff | None:
        """How ``a`` (training) and ``b`` (runtime) differ; None when they are equal."""
        if a.shape != b.shape:
            return cls(file, float("inf"), float("inf"), (a.shape, b.shape))
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        return cls(file, float(d.max()), float(d.mean())) if d.max() > 0 else None


def describe(e2e: dict[str, Any]) -> str:
    """One line: ``end to end (40 raw files): class agree 100.0%, rel 1.9e-06`` (+ the cause of a miss)."""
    if "error" in e2e or "skipped" in e2e:
        return f"end to end: {e2e.get('error') or e2e.get('skipped')}"
    bits = []
    for head, s in e2e["heads"].items():
        agree = s.get("top1_agreement", s.get("label_set_agreement"))
        sqnr = "exact" if s.get("sqnr_db") is None else f"SQNR {s['sqnr_db']:.1f} dB"
        bits.append(f"{head} " + (f"agree {agree * 100:.1f}%, " if agree is not None else "") + f"rel {s['rel']:.1e}, "
                    + sqnr)
    line = f"end to end ({e2e['files']} raw files): {'; '.join(bits)}"
    if e2e.get("gated") and not e2e.get("passed"):
        cause = e2e.get("cause") or {}
        line += f" [red]MISSED[/] (cause: {cause.get('stage')}: {cause.get('detail')})"
    elif not e2e.get("gated"):
        line += f" ({e2e['precision_ran']} gate: {'within' if e2e.get('within_gate') else 'outside'}, not gated)"
    return line
