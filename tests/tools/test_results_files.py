"""The README's measured numbers are read from result files committed under docs/results/ (tools/check_results.py),
and the quickstart's result file is a real quickstart report: tools/check_quickstart.py accepts it and the README's
claims hold on it, so the prose, its numbers and its claims come from one run."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # check_results' dataclass looks its module up
    spec.loader.exec_module(module)
    return module


results, check_quickstart = _tool("check_results"), _tool("check_quickstart")
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "results" / "quickstart.json"


def test_the_readme_main_job_numbers_are_read_from_the_quickstart_report():
    text = README.read_text()
    assert "<!-- results: q = docs/results/quickstart.json -->" in text
    found = results.markers(text)
    read = [m for m in found if "q." in m.expr]
    assert len(read) >= 25, [m.expr for m in read]
    # the headline, the KD arms, INT8 accuracy, the 224-px rows, the wall time and the CPU are each marked
    for key in ("q.headline", "q.kd.kd", "q.kd.with_unlabeled.gain", "q.quantize.backends.tflite.heads.digit.accuracy",
                "q.deploy", "q.times.total", "q.environment.cpu_features", "q.environment.machine"):
        assert any(key in m.expr for m in read), key


def test_the_committed_quickstart_report_passes_ci_s_check_and_the_readme_s_claims():
    report = json.loads(QUICKSTART.read_text())
    assert check_quickstart.problems(report) == []
    judged = check_quickstart.claims(README.read_text(), report)
    assert len(judged) >= 6 and all(ok is True for _, ok in judged), judged


@pytest.mark.parametrize(("marked", "wrong"), [
    ("q.times.total / 60 | .1f -->", "99.9"),  # the wall time
    ("q.kd.with_unlabeled.gain * 100 | +.1f -->", "+1.0"),  # the KD gain
    ("q.environment.cpu_features) or \"none read\" -->", "AVX-512 VNNI"),  # the CPU's flags
])
def test_a_number_changed_by_hand_in_the_readme_fails(marked, wrong):
    text = README.read_text()
    assert results.check(text, README)[0] == []
    start = text.index(marked) + len(marked)
    end = text.index("<!-- /value -->", start)
    changed = text[:start] + wrong + text[end:]
    problems, rendered = results.check(changed, README)
    assert len(problems) == 1 and problems[0].startswith(f"{README}:") and f"the text says '{wrong}'" in problems[0]
    assert rendered == text  # --write puts the file's number back


def test_a_table_row_changed_by_hand_in_the_readme_fails():
    text = README.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| INT8 vs FP32 | TFLite |"))
    problems, _ = results.check(text.replace(row, row.replace("| 2 |", "| 4 |", 1)), README)
    assert len(problems) == 1 and ": block `" in problems[0]


def test_a_line_that_starts_with_a_marker_is_flagged(tmp_path):
    """Markdown reads a line that starts with ``<!--`` as an HTML block: the paragraph ends there and the rest of the
    line shows unformatted. Such a line is an error; a ``results`` marker alone on its line, or a marker after a word,
    is not."""
    (tmp_path / "r.json").write_text('{"n": 3}')
    page = tmp_path / "page.md"
    good = "<!-- results: r = r.json -->\nWe ran\nover <!-- value: r.n -->3<!-- /value --> seeds.\n"
    assert results.check(good, page)[0] == []
    for bad, lines in [("We ran\n<!-- value: r.n -->3<!-- /value --> seeds.\n", [3]),
                       ("We ran\n  <!-- claim: x > 1 -->: so\n<!-- value: r.n -->3<!-- /value -->\n", [3, 4]),
                       ("<!-- results: r = r.json --> We ran <!-- value: r.n -->3<!-- /value -->\n", [1])]:
        text = bad if bad.startswith("<!-- results") else "<!-- results: r = r.json -->\n" + bad
        problems = results.check(text, page)[0]
        assert [p.split(":")[1] for p in problems] == [str(n) for n in lines], problems
        assert all(p.startswith(str(page)) and "begin the line with a word" in p for p in problems)
