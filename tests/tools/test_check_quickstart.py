"""CI's check of the main job's report: it fails on what the issue says it must catch."""

import copy
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("check_quickstart",
                                              Path(__file__).parents[2] / "tools" / "check_quickstart.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def _arm(values):
    return {"values": values, "mean": sum(values) / len(values), "std": 0.01}


GOOD = {
    "parity": [{"file": f, "passed": True} for f in ("model.onnx", "model.int8.onnx", "model.tflite",
                                                     "model.int8.tflite")],
    "headline": [{"what": w, "backend": b, "batch": 1, "threads": 2, "ratio": r}
                 for w, r in (("student vs teacher", 3.0), ("INT8 vs FP32", 1.4)) for b in ("ort", "tflite")],
    "kd": {"n": 3, "gain": -0.01, "exceeds_spread": False, "kd": _arm([0.6, 0.7, 0.65]),
           "with_unlabeled": {"n": 3, "gain": 0.2, "exceeds_spread": True, "kd": _arm([0.9, 0.88, 0.91])}},
    "times": {"distill": 100.0, "total": 400.0},
}


def test_a_complete_report_passes():
    assert check.problems(GOOD) == []


@pytest.mark.parametrize(("break_it", "message"), [
    (lambda r: r["parity"][1].update(passed=False, gate_failures=["class: SQNR 3 dB < 10 dB"]),
     "model.int8.onnx did not pass its gate: class: SQNR 3 dB < 10 dB"),
    (lambda r: r["headline"].pop(3), "no 'INT8 vs FP32' row on tflite"),
    (lambda r: r["headline"][0].update(threads=None), "'student vs teacher' row on ort states no thread count"),
    (lambda r: r["kd"].update(n=2), "2 seeds, fewer than 3"),
    (lambda r: r["kd"].pop("with_unlabeled"), "no arm with the unlabelled images"),
    (lambda r: r["times"].pop("total"), "stage times are missing"),
])
def test_each_missing_piece_is_named(break_it, message):
    report = copy.deepcopy(GOOD)
    break_it(report)
    assert any(message in p for p in check.problems(report))


def test_readme_claims_are_evaluated_on_the_report():
    readme = ("gain <!-- claim: kd.with_unlabeled.gain > 0.1 --> and <!-- claim: kd.with_unlabeled.exceeds_spread -->"
              " but <!-- claim: kd.gain > 0 --> and <!-- claim: pair('INT8 vs FP32', 'tflite').ratio > 1 -->"
              " <!-- claim: kd.nothing > 0 -->")
    got = dict(check.claims(readme, GOOD))
    assert got["kd.with_unlabeled.gain > 0.1"] is True and got["kd.with_unlabeled.exceeds_spread"] is True
    assert got["kd.gain > 0"] is False  # the sign flipped on this run: CI fails
    assert got["pair('INT8 vs FP32', 'tflite').ratio > 1"] is True
    assert "has no 'nothing'" in got["kd.nothing > 0"]
