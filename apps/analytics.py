"""Kiosk session analytics: one record per visitor, totals per attribute, the report files.

A visitor's attributes are votes over the frames its face was seen: the majority label of a
classification head (gender, emotion), the mean of a regression head (age, also given as an age
band). An impossible value (an age of 9,576,442 or -3 years, see :mod:`edgekit.apps.plausibility`)
is left out of the vote; a visitor with no possible value is counted as unknown. Dwell time is
``last seen - first seen + one processed-frame interval``, so a face present in every frame of a
2 s clip dwells 2 s. Totals count visitors per label / band.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.apps.plausibility import plausible
from edgekit.apps.tracking import Track
from edgekit.atomic import write_json, write_text
from edgekit.card import HeadSpec

AGE_BANDS = ((0, 17, "0-17"), (18, 29, "18-29"), (30, 44, "30-44"), (45, 59, "45-59"), (60, None, "60+"))
UNKNOWN = "unknown"  # the age band of a visitor whose model gave no possible age


def age_band(age: float) -> str:
    years = int(round(age))
    for lo, hi, name in AGE_BANDS:
        if years >= lo and (hi is None or years <= hi):
            return name
    return AGE_BANDS[0][2]  # negative regression output: the youngest band


class Votes:
    """A track's running vote per head, in bounded memory however long the face stays: per head the
    frames it was predicted on, label counts (classification, multilabel labels on) or the sum and
    count of possible values (regression) — never the per-frame predictions themselves."""

    def __init__(self, heads: list[HeadSpec]) -> None:
        self.heads = heads
        self.frames = {h.name: 0 for h in heads}
        self.labels: dict[str, Counter] = {h.name: Counter() for h in heads if h.kind != "regression"}
        self.sums = {h.name: 0.0 for h in heads if h.kind == "regression"}
        self.possible = {h.name: 0 for h in heads if h.kind == "regression"}

    def add(self, pred: dict[str, Any]) -> None:
        for head in self.heads:
            p = pred.get(head.name)
            if p is None:
                continue
            self.frames[head.name] += 1
            if head.kind == "regression":
                if plausible(head.name, p["value"]):
                    self.sums[head.name] += float(p["value"])
                    self.possible[head.name] += 1
            elif head.kind == "classification":
                self.labels[head.name][p["label"]] += 1
            else:
                self.labels[head.name].update(p["labels"])


def visitor_record(track: Track, heads: list[HeadSpec], frame_dt: float) -> dict[str, Any]:
    """The per-visitor row: times, detections and the vote of each head over the track's faces
    (``track.votes``, a :class:`Votes`)."""
    rec: dict[str, Any] = {"visitor": track.id, "first_s": round(track.first_time, 3),
                           "last_s": round(track.last_time, 3),
                           "dwell_s": round(track.last_time - track.first_time + frame_dt, 3),
                           "detections": track.hits}
    votes = track.votes if track.votes is not None else Votes(heads)
    for head in heads:
        seen = votes.frames.get(head.name, 0)
        if head.kind == "regression":
            n = votes.possible[head.name]
            rec[head.name] = round(votes.sums[head.name] / n, 2) if n else None
            if head.name == "age":
                rec["age_band"] = (age_band(rec["age"]) if n else UNKNOWN) if seen else None
        elif head.kind == "classification":
            rec[head.name] = votes.labels[head.name].most_common(1)[0][0] if seen else None
        else:  # multilabel: labels on in at least half of the frames
            counts = votes.labels[head.name]
            rec[head.name] = "|".join(c for c in head.classes if counts[c] * 2 >= max(1, seen))
    return rec


def totals(records: list[dict[str, Any]], heads: list[HeadSpec]) -> dict[str, Any]:
    """Visitors per label of each classification head, per age band (and unknown), mean of other
    regressions (with ``unknown_<head>``: visitors without a possible value)."""
    out: dict[str, Any] = {"visitors": len(records)}
    for head in heads:
        values = [r[head.name] for r in records if r.get(head.name) is not None]
        if head.kind == "classification":
            counts = Counter(values)
            out[f"by_{head.name}"] = {c: counts.get(c, 0) for c in head.classes}
        elif head.kind == "multilabel":
            out[f"by_{head.name}"] = {c: sum(c in v.split("|") for v in values) for c in head.classes}
        elif head.name == "age":
            counts = Counter(r["age_band"] for r in records if r.get("age_band"))
            out["by_age_band"] = {name: counts.get(name, 0) for name in [*(b[2] for b in AGE_BANDS), UNKNOWN]}
        else:
            out[f"mean_{head.name}"] = round(float(np.mean(values)), 3) if values else None
            out[f"unknown_{head.name}"] = sum(head.name in r and r[head.name] is None for r in records)
    dwell = [r["dwell_s"] for r in records]
    out["mean_dwell_s"] = round(float(np.mean(dwell)), 3) if dwell else None
    return out


def panel_rows(summary: dict[str, Any], live: int) -> list[str]:
    """The on-frame analytics panel: visitor count, non-zero counts per attribute, mean dwell."""
    rows = [f"visitors {summary['visitors']}  (in view {live})"]
    for key, value in summary.items():
        if key.startswith("by_"):
            nonzero = [f"{k} {v}" for k, v in value.items() if v]
            rows.append(f"{key[3:].replace('_', ' ')}: {', '.join(nonzero) if nonzero else '-'}")
        elif key.startswith("unknown_") and value:
            rows.append(f"{key[8:]}: {value} unknown")
        elif key.startswith("mean_") and value is not None:
            unit = " s" if key == "mean_dwell_s" else ""
            rows.append(f"{key[5:].replace('_s', '').replace('_', ' ')} (mean): {value:.1f}{unit}")
    return rows


def report_paths(report: str | os.PathLike) -> tuple[Path, Path]:
    """``x/report`` (or ``x/report.json`` / ``.csv``) -> (x/report.json, x/report.csv)."""
    base = Path(report)
    if base.suffix.lower() in (".json", ".csv"):
        base = base.with_suffix("")
    return base.parent / f"{base.name}.json", base.parent / f"{base.name}.csv"


def write_report(report: str | os.PathLike, session: dict[str, Any], records: list[dict[str, Any]]) -> tuple[Path,
                                                                                                          Path]:
    """The session JSON (totals, settings, every visitor) and a CSV of one row per visitor, atomically."""
    json_path, csv_path = report_paths(report)
    write_json(json_path, {**session, "visitors": records})
    columns = list(records[0]) if records else ["visitor", "first_s", "last_s", "dwell_s", "detections"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(csv_path, buf.getvalue())
    return json_path, csv_path
