"""The gates: one table of thresholds per precision, and the judgement of a verified file against it.

Every file edgekit writes is run through its own runtime on real validation inputs
(:mod:`edgekit.export.verify`) and judged here with the gate of the precision that actually ran:

| precision | gate |
|---|---|
| fp32 | max relative error of every head ≤ 1e-4 |
| fp16, bf16, int8 | output SQNR of every head ≥ a floor, and per head kind: classification: top-1 agreement
  with PyTorch ≥ a floor and accuracy drop ≤ ``max_drop_points``; multilabel: mAP and LWLRAP drop ≤
  ``max_drop_points``; regression: relative increase of the MAE ≤ ``max_mae_increase`` |

An FP32 file is also judged end to end (raw validation files through the runtime's own preprocessing
against training's pipeline): the FP32 gate, and top-1 (label-set) agreement >= 99% per head.

The drops are against PyTorch's own accuracy / mAP / MAE on the same inputs, so a file is judged by
what it changed, not by how good the model is. A criterion whose statistic was not measured (no
labels: golden inputs, ``edgekit check --parity``) is not judged, but a head with nothing measured
fails, and so does a file with no head compared. The user overrides thresholds (``--max-drop``,
``--min-sqnr``, ``--max-mae-increase``) for every low-precision file; ``parity.json`` records the
gate each file was judged with.

Pure Python (no torch): ``edgekit check --parity`` judges deployed files on a device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from edgekit.errors import ConfigError, option


@dataclass(frozen=True)
class Gate:
    """Thresholds for one precision (``None``: not gated)."""

    precision: str
    max_rel: float | None = None  # max |file - torch| / max |torch|, per head
    min_sqnr_db: float | None = None  # output signal-to-quantization-noise ratio, per head
    min_agreement: float | None = None  # classification: share of inputs with the same top-1 as PyTorch
    max_drop_points: float | None = None  # classification accuracy, multilabel mAP / LWLRAP: points below PyTorch
    max_mae_increase: float | None = None  # regression: (MAE file - MAE torch) / MAE torch

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


GATES: dict[str, Gate] = {g.precision: g for g in (
    Gate("fp32", max_rel=1e-4),
    # FP16 keeps 11 significant bits: trained and random-weight models alike sit at 37-80 dB (docs/coverage.md)
    Gate("fp16", min_sqnr_db=30.0, min_agreement=0.98, max_drop_points=0.5, max_mae_increase=0.02),
    # bf16 (OpenVINO's default on AMX CPUs) keeps 8 bits: about 9 dB less than FP16 per rounding
    Gate("bf16", min_sqnr_db=25.0, min_agreement=0.98, max_drop_points=0.5, max_mae_increase=0.02),
    Gate("int8", min_sqnr_db=10.0, min_agreement=0.90, max_drop_points=1.0, max_mae_increase=0.10),
)}
OVERRIDABLE = ("max_drop_points", "min_sqnr_db", "max_mae_increase")
# End to end (raw files through the runtime's preprocessing vs training's pipeline, export/end_to_end.py): an
# FP32 file must also meet the FP32 gate there, and agree with PyTorch on this share of the files per head
END_TO_END_MIN_AGREEMENT = 0.99


def gate_for(precision: str, overrides: dict[str, float | None] | None = None) -> Gate:
    """The gate of ``precision`` (``int8-weights`` and other variants: their base precision), with the
    user's ``overrides`` of :data:`OVERRIDABLE` applied to every precision but FP32."""
    base = precision.split("-")[0]
    if base not in GATES:
        raise ConfigError(f"no gate for precision '{precision}' (known: {', '.join(GATES)})")
    gate = GATES[base]
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(given) - set(OVERRIDABLE)
    if unknown:
        raise ConfigError(f"gate overrides must be {', '.join(OVERRIDABLE)}, got {', '.join(sorted(unknown))}")
    if gate.precision == "fp32" or not given:
        return gate
    return replace(gate, **given)


def check_overrides(max_drop: float | None = None, min_sqnr: float | None = None,
                    max_mae_increase: float | None = None) -> dict[str, float | None]:
    """The user's gate overrides, validated: ``{field: value}`` for :func:`gate_for`."""
    if max_drop is not None and not 0 <= max_drop <= 100:
        raise ConfigError(f"{option('max_drop')} is in accuracy points (0-100), got {max_drop}")
    if min_sqnr is not None and not -100 <= min_sqnr <= 200:
        raise ConfigError(f"{option('min_sqnr')} is an output SQNR floor in dB (-100 to 200), got {min_sqnr}")
    if max_mae_increase is not None and max_mae_increase < 0:
        raise ConfigError(f"{option('max_mae_increase')} is a relative increase (0.1 = 10%) and cannot be negative, "
                          f"got {max_mae_increase}")
    return {"max_drop_points": max_drop, "min_sqnr_db": min_sqnr, "max_mae_increase": max_mae_increase}


def judge(entry: dict[str, Any], gate: Gate) -> dict[str, Any]:
    """Judge a verified file's per-head statistics (``entry["heads"]``, see
    :func:`edgekit.export.compare.compare_outputs`) against ``gate``.

    Nothing measured is no pass: an entry without heads, or a head with none of the statistics ``gate``
    judges, fails. Returns ``{"passed", "failures": [one line per missed threshold], "gate": thresholds}``."""
    heads = entry.get("heads") or {}
    failures: list[str] = [] if heads else ["nothing was measured: no head was compared"]
    for head, s in heads.items():
        missed, judged = _head_failures(s or {}, gate)
        failures += [f"{head}: {why}" for why in missed]
        if not judged:
            failures.append(f"{head}: nothing was measured that the {gate.precision} gate judges")
    return {"passed": not failures, "failures": failures, "gate": gate.to_dict()}


def _head_failures(s: dict[str, Any], g: Gate) -> tuple[list[str], int]:
    """The thresholds of ``g`` that ``s`` misses, and how many of ``g``'s criteria were measured at all."""
    out = []
    judged = 0
    if g.max_rel is not None and s.get("rel") is not None:
        judged += 1
        if not s["rel"] <= g.max_rel:
            out.append(f"relative error {s['rel']:.1e} > {g.max_rel:.0e}")
    if g.min_sqnr_db is not None and "sqnr_db" in s:
        judged += 1
        sqnr = s["sqnr_db"]  # None: identical outputs, infinitely far from any floor
        if sqnr is not None and not sqnr >= g.min_sqnr_db:
            out.append(f"SQNR {sqnr:.1f} dB < {g.min_sqnr_db:g} dB")
    agree = s.get("top1_agreement")
    if g.min_agreement is not None and agree is not None:
        judged += 1
        if not agree >= g.min_agreement:
            out.append(f"top-1 agreement {agree * 100:.1f}% < {g.min_agreement * 100:g}%")
    if g.max_drop_points is not None:
        for key, what in (("accuracy", "accuracy"), ("map", "mAP"), ("lwlrap", "LWLRAP")):
            mine, ref = s.get(key), s.get(f"reference_{key}")
            if mine is not None and ref is not None:
                judged += 1
                if not (ref - mine) * 100 <= g.max_drop_points + 1e-9:
                    out.append(f"{what} {mine * 100:.2f}% vs {ref * 100:.2f}% in PyTorch: drop "
                               f"{(ref - mine) * 100:.2f} > {g.max_drop_points:g} points")
    mae, ref_mae = s.get("mae"), s.get("reference_mae")
    if g.max_mae_increase is not None and mae is not None and ref_mae is not None:
        judged += 1
        increase = (mae - ref_mae) / max(ref_mae, 1e-12)
        if not increase <= g.max_mae_increase + 1e-12:
            out.append(f"MAE {mae:.4g} vs {ref_mae:.4g} in PyTorch: +{increase * 100:.1f}% > "
                       f"{g.max_mae_increase * 100:g}%")
    return out, judged


def describe(gate: dict[str, Any]) -> str:
    """A gate's thresholds in words: ``SQNR >= 10 dB, agreement >= 90%, drop <= 1 point, MAE +10% at most``."""
    words = {"max_rel": lambda v: f"relative error <= {v:.0e}", "min_sqnr_db": lambda v: f"SQNR >= {v:g} dB",
             "min_agreement": lambda v: f"top-1 agreement >= {v * 100:g}%",
             "max_drop_points": lambda v: f"accuracy/mAP drop <= {v:g} points",
             "max_mae_increase": lambda v: f"MAE increase <= {v * 100:g}%"}
    return ", ".join(words[k](v) for k, v in gate.items() if k in words and v is not None)


def table_rows() -> list[dict[str, Any]]:
    """The gate table for reports and the README: one dict per precision."""
    return [{f.name: getattr(g, f.name) for f in fields(g)} for g in GATES.values()]


def gate_failures_text(e: dict[str, Any]) -> str:
    """The thresholds a verified file missed, as one line (``"failed its check"`` when none is recorded)."""
    text = "; ".join(e.get("gate_failures") or []) or "failed its check"
    if e.get("first_diverging"):  # export/diff.py, on the failing path only
        hint = describe_first(e["first_diverging"])
        text += f"; {hint}" if hint else ""
    return text


def describe_first(found: dict[str, Any] | None) -> str:
    """``"first diverging layer: backbone.stages.2.0 (SQNR 3.1 dB)"`` for a gate failure's line, or ``""``."""
    if not found or found.get("error"):
        return ""
    if found.get("layer") is None:
        return f"no single layer diverges (edgekit diff FILE: {found.get('layers', 0)} layers compared)"
    sqnr = found["sqnr_db"]
    text = "non-finite values" if sqnr == -math.inf else f"SQNR {sqnr:.1f} dB"
    return f"first diverging layer: {found['layer']} ({text}; edgekit diff FILE for every layer)"
