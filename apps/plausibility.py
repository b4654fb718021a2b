"""What a demo shows of a model's outputs: never an impossible value.

A briefly trained or broken model can answer an age of 9,576,442 years, or a class with a
probability of exactly 100%. The apps show such an age as ``?`` and count it as unknown in the
analytics, and say once (stderr, an on-screen notice, the summary's ``warnings``) what they saw.
Probabilities that round to 100.0% get the notice too: a face attribute is never that certain,
and a model that often says so is overconfident or broken (it would also be shown as 100%).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

from edgekit.card import HeadSpec

AGE_RANGE = (0.0, 120.0)  # years a person can be
CERTAIN = 0.9995  # a probability shown as 100.0%


def is_age(name: str) -> bool:
    """A head holding an age: a word of its name is "age" (``age``, ``âge``, ``Age (years)``, ``age group``)."""
    plain = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode().lower()
    return "age" in re.split(r"[^a-z0-9]+", plain)


def plausible(name: str, value: Any) -> bool:
    """False for a value no person could have: not a finite number, or for an age outside 0-120 years."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(v):
        return False
    return AGE_RANGE[0] <= v <= AGE_RANGE[1] if is_age(name) else True


def shown(name: str, value: Any, digits: int = 0) -> str:
    """A regression value as text: ``?`` when it is not :func:`plausible`."""
    return f"{float(value):.{digits}f}" if plausible(name, value) else "?"


class OutputCheck:
    """Impossible values and 100% probabilities in a run's predictions: counts, a notice, warnings.

    ``certainty=False`` leaves probabilities alone (a digit classifier is rightly sure of a clear digit).
    """

    def __init__(self, heads: Sequence[HeadSpec], certainty: bool = True) -> None:
        self.heads, self.certainty = list(heads), certainty
        self.seen: Counter[str] = Counter()
        self.impossible: Counter[str] = Counter()
        self.certain: Counter[str] = Counter()
        self.example: dict[str, float] = {}  # the first impossible value of each head

    def observe(self, predictions: Sequence[dict[str, Any]]) -> list[str]:
        """Count ``predictions`` (decoded, one dict per image); returns the warnings that are new."""
        before = set(self.warnings_keys())
        for pred in predictions:
            for head in self.heads:
                p = pred.get(head.name)
                if p is None:
                    continue
                self.seen[head.name] += 1
                if "value" in p and not plausible(head.name, p["value"]):
                    self.impossible[head.name] += 1
                    self.example.setdefault(head.name, _number(p["value"]))
                score = p.get("score", max(p.get("scores", {}).values(), default=None))
                if self.certainty and score is not None and score >= CERTAIN:
                    self.certain[head.name] += 1
        return [self._warning(k) for k in self.warnings_keys() if k not in before]

    def warnings_keys(self) -> list[tuple[str, str]]:
        return [("impossible", h) for h in self.impossible] + [("certain", h) for h in self.certain]

    def warnings(self) -> list[str]:
        """One sentence per head with impossible values or 100% probabilities, with counts (for the summary)."""
        return [self._warning(k) for k in self.warnings_keys()]

    def notice(self) -> list[str]:
        """Short lines for the on-screen notice (empty while all is well)."""
        lines = []
        if self.impossible:
            lines.append(f"impossible {', '.join(self.impossible)} shown as ? (model undertrained?)")
        if self.certain:
            lines.append(f"{', '.join(self.certain)}: 100% probabilities (model overconfident?)")
        return lines

    def _warning(self, key: tuple[str, str]) -> str:
        kind, head = key
        n, of = (self.impossible if kind == "impossible" else self.certain)[head], self.seen[head]
        if kind == "impossible":
            what = f"outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years" if is_age(head) else "not a finite number"
            return (f"{head}: {n} of {of} predictions {what} (e.g. {self.example[head]}), shown as ? and counted "
                    "as unknown; the model is probably undertrained or broken")
        return (f"{head}: {n} of {of} predictions had a probability of 100% (>= {CERTAIN * 100:g}%); "
                "the model is overconfident or broken")


def _number(value: Any) -> str:
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return repr(value)
