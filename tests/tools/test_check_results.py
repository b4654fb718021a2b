"""Numbers in the README and docs/ come from committed result files, and the text matches them
(tools/check_results.py; docs/results/README.md says how to mark a number)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location("check_results", ROOT / "tools" / "check_results.py")
results = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = results  # its dataclass looks its module up
spec.loader.exec_module(results)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_marked_numbers_match_their_result_files(doc):
    problems, _ = results.check(doc.read_text(), doc)
    assert problems == []


def test_the_coverage_numbers_are_marked():
    """The coverage paragraph's numbers (docs/export.md, moved there from the README) are read from
    docs/coverage.json, not typed."""
    text = (ROOT / "docs" / "export.md").read_text()
    found = results.markers(text)
    assert "<!-- results: cov = coverage.json -->" in text and len(found) >= 30
    assert any(m.expr == "cov.summary.passed" for m in found)


def test_a_wrong_number_in_a_docs_page_fails(tmp_path, capsys):
    """A page under docs/ is checked like the README: its paths resolve from the page's own folder, and one
    number changed by hand fails the check (in the suite and on the command line) with the page and line."""
    import typer

    page = ROOT / "docs" / "export.md"
    text = page.read_text()
    assert results.check(text, page)[0] == []
    wrong = text.replace("-->177<!-- /value -->", "-->178<!-- /value -->", 1)
    assert wrong != text
    problems, _ = results.check(wrong, page)
    assert len(problems) == 1 and problems[0].startswith(f"{page}:")
    assert problems[0].endswith("value `cov.summary.passed` is '177' in its result file, the text says '178'")
    copy = tmp_path / "docs" / "export.md"  # the command line, on a copy beside its result file
    copy.parent.mkdir()
    copy.write_text(wrong)
    (tmp_path / "docs" / "coverage.json").write_text((ROOT / "docs" / "coverage.json").read_text())
    with pytest.raises(typer.Exit):
        results.main([copy])
    assert f"FAIL {copy}:" in capsys.readouterr().out


def test_without_arguments_it_checks_the_readme_and_every_docs_page(tmp_path, monkeypatch, capsys):
    (tmp_path / "docs" / "deep").mkdir(parents=True)
    (tmp_path / "README.md").write_text("no numbers\n")
    (tmp_path / "docs" / "deep" / "r.json").write_text('{"n": 3}')
    (tmp_path / "docs" / "deep" / "page.md").write_text(
        "<!-- results: r = r.json -->\n<!-- value: r.n -->4<!-- /value -->\n")
    monkeypatch.chdir(tmp_path)
    import typer

    with pytest.raises(typer.Exit):
        results.main([])
    out = capsys.readouterr().out
    assert "README.md: 0 marked" in out and "FAIL docs/deep/page.md:2: value `r.n` is '3'" in out


@pytest.mark.parametrize("folder", ["docs", "docs/coverage-outside"])
def test_docs_coverage_md_is_rendered_from_its_json(folder):
    """The matrix, and the 8 architectures outside it (issue 32), each as the recipe wrote it from its JSON."""
    from edgekit.recipes.coverage_report import render

    data = json.loads((ROOT / folder / "coverage.json").read_text())
    assert render(data) == (ROOT / folder / "coverage.md").read_text()


@pytest.fixture
def doc(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"summary": {"passed": 177, "judged": 200, "pct": 88.5},
                                                 "rows": [{"arch": "a", "db": -5.348}, {"arch": "b", "db": 9.7}]}))
    page = tmp_path / "page.md"
    page.write_text("<!-- results: r = r.json -->\n"
                    "**<!-- value: r.summary.passed -->177<!-- /value --> of <!-- value: r.summary.judged -->200"
                    "<!-- /value --> (<!-- value: r.summary.pct | .0f -->88<!-- /value -->%)**, worst "
                    "<!-- value: pick(r.rows, arch=\"a\").db\n  | .1f -->-5.3<!-- /value --> dB.\n\n"
                    "<!-- block: table([\"arch\", \"dB\"], [[x.arch, f\"{x.db:.1f}\"] for x in r.rows]) -->\n"
                    "| arch | dB |\n|---|---|\n| a | -5.3 |\n| b | 9.7 |\n<!-- /block -->\n\n"
                    "Example, not a marker: `<!-- value: r.nothing -->1<!-- /value -->`\n")
    return page


def test_a_page_that_matches_passes_and_a_drifted_number_is_named(doc):
    problems, rendered = results.check(doc.read_text(), doc)
    assert problems == [] and rendered == doc.read_text()
    doc.write_text(doc.read_text().replace("-->-5.3<", "-->-5.4<").replace("| b | 9.7 |", "| b | 9.6 |"))
    problems, rendered = results.check(doc.read_text(), doc)
    assert len(problems) == 2
    assert problems[0].endswith("value `pick(r.rows, arch=\"a\").db` is '-5.3' in its result file, "
                                "the text says '-5.4'")
    assert ":2:" in problems[0] and ":5: block" in problems[1]
    assert "-->-5.3<" in rendered and "| b | 9.7 |" in rendered  # --write puts the file's numbers back


@pytest.mark.parametrize(("change", "why"), [
    (lambda t: t.replace("<!-- /value --> of", " of", 1), "4 'value' marker(s) written, 3 read"),  # unclosed
    (lambda t: t.replace("<!-- value: r.summary.judged", "<!-- value r.summary.judged"), "'value' marker(s) written"),
    (lambda t: t.replace("r.summary.passed", "r.summary.pased"), "has no 'pased' (it has passed, judged, pct)"),
    (lambda t: t.replace("r = r.json", "r = gone.json"), "result file gone.json cannot be read"),
    (lambda t: t.replace("<!-- /block -->", ""), "1 'block' marker(s) written, 0 read"),
    (lambda t: t.replace("r.summary.passed", "r.summary"), "gives an object, not a number or text"),
])
def test_a_marker_that_cannot_be_read_is_an_error_never_skipped(doc, change, why):
    problems, _ = results.check(change(doc.read_text()), doc)
    assert any(why in p for p in problems), problems


def test_the_command_line_checks_and_writes(doc, capsys):
    import typer

    doc.write_text(doc.read_text().replace("-->177<", "-->197<"))
    with pytest.raises(typer.Exit):
        results.main([doc])
    assert "FAIL" in capsys.readouterr().out
    results.main([doc], write=True)
    assert "-->177<" in doc.read_text()
    results.main([doc])  # now it matches
