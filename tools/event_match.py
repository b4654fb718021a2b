"""Measure timed tags against the truth: ``python tools/event_match.py predict.json truth.json``.

``predict.json`` is ``edgekit predict MODEL SOUND --json``; ``truth.json`` a list of ``{"label", "start", "end"}``
(seconds). A true event is found when a predicted event of its label overlaps it in time; a predicted event is
right when it overlaps a true event of its label. Prints recall (found / true) and precision (right / predicted).
"""

from __future__ import annotations

import json
import sys


def match(pred: list[dict], truth: list[dict]) -> dict:
    def overlap(a: dict, b: dict) -> bool:
        return a["label"] == b["label"] and a["start"] < b["end"] and b["start"] < a["end"]

    found = sum(any(overlap(t, p) for p in pred) for t in truth)
    right = sum(any(overlap(p, t) for t in truth) for p in pred)
    return {"true_events": len(truth), "predicted_events": len(pred), "found": found, "right": right,
            "recall": found / max(1, len(truth)), "precision": right / max(1, len(pred))}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        raise SystemExit(2)
    from pathlib import Path

    result = json.loads(Path(sys.argv[1]).read_text())
    result = result[0] if isinstance(result, list) else result
    events = [e for evs in result["events"].values() for e in evs]
    print(json.dumps(match(events, json.loads(Path(sys.argv[2]).read_text())), indent=2))
