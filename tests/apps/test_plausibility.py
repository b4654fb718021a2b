"""Issue 13: the kiosk never shows an impossible age; it says '?', counts it as unknown and warns."""

import csv
import json

from edgekit.apps.analytics import Votes, panel_rows, totals, visitor_record
from edgekit.apps.kiosk import face_lines, run_kiosk
from edgekit.apps.overlay import prediction_lines
from edgekit.apps.plausibility import OutputCheck, is_age, plausible, shown
from edgekit.apps.tracking import Track
from edgekit.card import HeadSpec
from edgekit.runtime.predictor import load

from .test_webcam import read_video

AGE = HeadSpec("age", "regression")
GENDER = HeadSpec("gender", "classification", ["female", "male"])


def _track(ages, head="age"):
    t = Track(id=1, box=(0, 0, 10, 10), first_time=0.0, last_time=1.0, hits=len(ages))
    t.votes = Votes([HeadSpec(head, "regression"), GENDER])
    for a in ages:
        t.votes.add({head: {"value": a}, "gender": {"label": "female", "score": 0.7}})
    return t


def test_age_heads_and_impossible_values():
    assert all(is_age(n) for n in ("age", "âge", "Age (years)", "age group", "AGE"))
    assert not any(is_age(n) for n in ("image", "page", "gender", "stage"))
    assert [plausible("âge", v) for v in (9576442, -3, float("nan"), 0, 35.5, 120)] == [False] * 3 + [True] * 3
    assert plausible("height", 9576442) and not plausible("height", float("inf"))
    assert shown("age group", 9576442) == "?" and shown("age group", 41.26, 1) == "41.3"


def test_kiosk_and_overlay_lines_show_a_question_mark():
    for bad in (9576442.0, -3.0):
        assert face_lines(4, True, {"age": {"value": bad}}, [AGE]) == ["visitor 4", "age ?"]
        assert prediction_lines({"âge": {"value": bad}}) == ["âge: ?"]
    assert face_lines(4, True, {"age": {"value": 33.4}}, [AGE]) == ["visitor 4", "age 33"]


def test_impossible_ages_are_unknown_in_the_analytics():
    bad = visitor_record(_track([9576442.0, -3.0]), [AGE, GENDER], 0.1)
    assert bad["age"] is None and bad["age_band"] == "unknown"
    mixed = visitor_record(_track([9576442.0, 34.0, 36.0]), [AGE, GENDER], 0.1)
    assert mixed["age"] == 35.0 and mixed["age_band"] == "30-44"  # impossible frames left out of the vote
    t = totals([bad, mixed], [AGE, GENDER])
    assert t["by_age_band"]["unknown"] == 1 and t["by_age_band"]["30-44"] == 1 and sum(t["by_age_band"].values()) == 2
    assert "age band: 30-44 1, unknown 1" in panel_rows(t, 0)
    head = HeadSpec("âge", "regression")  # any other name: a mean over possible values, and a count of unknown
    t = totals([visitor_record(_track([-3.0], "âge"), [head], 0.1), visitor_record(_track([30.0], "âge"), [head], 0.1)],
               [head])
    assert t["mean_âge"] == 30.0 and t["unknown_âge"] == 1 and "âge: 1 unknown" in panel_rows(t, 0)


def test_output_check_warns_once_per_kind():
    check = OutputCheck([AGE, GENDER])
    assert check.observe([{"age": {"value": 30.0}, "gender": {"label": "male", "score": 0.8}}]) == []
    new = check.observe([{"age": {"value": 9576442.0}, "gender": {"label": "male", "score": 0.9996}}])
    assert len(new) == 2 and "outside 0-120 years (e.g. 9.57644e+06)" in new[0] and "100%" in new[1]
    assert check.observe([{"age": {"value": -3.0}, "gender": {"label": "male", "score": 1.0}}]) == []  # said already
    assert check.warnings()[0].startswith("age: 2 of 3 predictions outside 0-120 years")
    assert len(check.notice()) == 2
    assert OutputCheck([GENDER], certainty=False).observe([{"gender": {"label": "m", "score": 1.0}}]) == []


class _Broken:
    """The face model, answering like the issue's briefly trained one: absurd ages, 100% genders."""

    def __init__(self, real) -> None:
        self.real, self.n = real, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def decode(self, outputs, topk=5):
        preds = self.real.decode(outputs, topk)
        for p in preds:
            p["age"] = {"value": 9576442.0 if self.n % 2 == 0 else -3.0}
            p["gender"] = {**p["gender"], "score": 1.0}
            self.n += 1
        return preds


def test_kiosk_with_a_broken_model(face_model, kiosk_video, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("edgekit.apps.kiosk.load", lambda *a, **k: _Broken(load(*a, **k)))
    summary = run_kiosk(face_model, str(kiosk_video), headless=True, out=tmp_path / "k.mp4", threads=2,
                        max_frames=12)
    err = capsys.readouterr().err
    assert err.count("warning: model.onnx: age: 1 of 1 predictions outside 0-120 years") == 1  # once, when seen
    age_warning, gender_warning = summary["warnings"]
    assert age_warning.startswith("age: 12 of 12 predictions outside 0-120 years") and "unknown" in age_warning
    assert gender_warning.startswith("gender: 12 of 12 predictions had a probability of 100%")
    assert summary["totals"]["visitors"] == 1 and summary["totals"]["by_age_band"]["unknown"] == 1
    report = json.loads((tmp_path / "k.report.json").read_text())
    assert report["warnings"] == summary["warnings"] and report["visitors"][0]["age"] is None
    row = next(csv.DictReader((tmp_path / "k.report.csv").open()))
    assert row["age"] == "" and row["age_band"] == "unknown"
    banner = read_video(tmp_path / "k.mp4")[6][-40:, :250]  # the red notice, bottom left
    assert ((banner[:, :, 2] > 150) & (banner[:, :, 0] < 100)).mean() > 0.3

