"""CI's check of the main job: the report ``edgekit quickstart`` just wrote, and the README's claims against it.

The report (``OUT/quickstart/report.json``, what ``report.md`` says as data) must show:

- every file it made passed its gate (parity.json's verdicts), and the INT8 files of both backends exist; a file
  not run here (CoreML on Linux) is listed apart, neither passed nor failed;
- every row of the deployment-size table (224 px) comes from a file that passed its gate there (a row marked
  ``certified: false`` was timed on a file that missed it);
- the headline compares like with like: student vs teacher (FP32) and INT8 vs FP32, each on one backend, at
  batch 1, both rows at one stated thread count, for onnxruntime and TFLite;
- the KD section: KD vs no KD over at least 3 seeds, and the arm with the unlabelled images;
- the time of every stage.

Then every qualitative claim the README makes about these numbers, written beside the prose as
``<!-- claim: EXPRESSION -->`` (a Python expression over the report: ``kd.with_unlabeled.gain > 0.1``,
``kd.with_unlabeled.exceeds_spread``, ``pair("INT8 vs FP32", "tflite").ratio > 1``), must hold on this run.
A contradicted claim fails CI: the README must not say what the machine that just ran it did not see. A claim is
strict: it must evaluate to ``True`` or ``False`` (not a number: ``kd.gain`` alone is an error), ``all``/``any``
over nothing is an error, and every ``<!-- claim`` written must be read (one over two lines is read whole; one
that is not closed, or misspelt, is an error)::

    python tools/check_quickstart.py runs/quickstart/report.json --readme README.md

``--readme`` also reads every Markdown page under the ``docs/`` folder beside the README: a claim moved into a page
is judged there too (code in a page, fenced or inline, holds examples, not claims).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

CLAIM = re.compile(r"<!--\s*claim:\s*(.+?)\s*-->", re.S)
OPENED = re.compile(r"<!--\s*claim\b", re.I)
CODE = re.compile(r"^[ \t]*```.*?^[ \t]*```[^\n]*$|`[^`\n]+`", re.S | re.M)
MIN_SEEDS = 3


class View:
    """Attribute access over the report's dicts (``kd.with_unlabeled.gain``); lists and numbers as they are."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name not in self._data:
            raise AttributeError(f"the report has no '{name}' (it has {', '.join(self._data)})")
        return wrap(self._data[name])

    def __getitem__(self, name: str) -> Any:
        return wrap(self._data[name])


def wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return View(value)
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def problems(report: dict[str, Any]) -> list[str]:
    """What is wrong with a quickstart report (empty: nothing)."""
    out = []
    parity = report.get("parity") or []
    if not parity:
        out.append("no exported file was verified")
    out += [f"{e['file']} did not pass its gate: {'; '.join(e.get('gate_failures') or []) or e.get('error')}"
            for e in parity if verdict(e) == "failed"]
    out += [f"the {r.get('role')}'s {r.get('backend')} {r.get('precision')} row at batch {r.get('batch')} of the "
            "deployment-size table was timed on a file that missed its gate (certified: false)"
            for r in report.get("deploy") or [] if r.get("certified") is False]
    files = {e["file"] for e in parity}
    out += [f"{f} is missing" for f in ("model.int8.onnx", "model.int8.tflite") if f not in files]
    pairs = report.get("headline") or []
    for what in ("student vs teacher", "INT8 vs FP32"):
        for backend in ("ort", "tflite"):
            p = [x for x in pairs if x["what"] == what and x["backend"] == backend]
            if not p:
                out.append(f"the headline has no '{what}' row on {backend} at one thread count")
            elif not (isinstance(p[0].get("threads"), int) and p[0]["threads"] >= 1 and p[0]["batch"] == 1):
                out.append(f"the headline's '{what}' row on {backend} states no thread count")
    kd = report.get("kd") or {}
    if kd.get("n", 0) < MIN_SEEDS:
        out.append(f"the KD section has {kd.get('n', 0)} seeds, fewer than {MIN_SEEDS}")
    if not (kd.get("with_unlabeled") or {}).get("n", 0) >= MIN_SEEDS:
        out.append("the KD section has no arm with the unlabelled images over the same seeds")
    times = report.get("times") or {}
    if "total" not in times or any(not v > 0 for v in times.values()):
        out.append(f"stage times are missing or zero: {times}")
    return out


def verdict(entry: dict[str, Any]) -> str:
    """``passed``, ``failed`` or ``not_run`` (see edgekit.parity; reports before verdicts: CoreML without heads
    was structure-checked only, so not run)."""
    if entry.get("verdict") in ("passed", "failed", "not_run"):
        return entry["verdict"]
    if entry.get("error"):
        return "failed"
    return "passed" if entry.get("passed") is True else "failed"


def not_run(report: dict[str, Any]) -> list[str]:
    """The files of the report not run here, each with why (never passed, never failed)."""
    return [f"{e['file']} ({e.get('not_run') or 'not run here'})" for e in report.get("parity") or []
            if verdict(e) == "not_run"]


def _some(name: str, fn: Any) -> Any:
    def strict(items: Any) -> bool:
        items = list(items)
        if not items:
            raise ValueError(f"{name}() over nothing proves nothing")
        return fn(items)

    return strict


def claims(readme: str, report: dict[str, Any]) -> list[tuple[str, bool | str]]:
    """Every ``<!-- claim: ... -->`` of the README, evaluated on the report: (claim, True/False/error). A claim
    that is not a bool is an error, and so is a ``<!-- claim`` that cannot be read."""
    pairs = report.get("headline") or []

    def pair(what: str, backend: str) -> Any:
        found = [p for p in pairs if p["what"] == what and p["backend"] == backend]
        if not found:
            raise LookupError(f"no headline pair '{what}' on {backend}")
        return wrap(found[0])

    names = {k: wrap(v) for k, v in report.items()}
    names.update(pair=pair, abs=abs, min=min, max=max, all=_some("all", all), any=_some("any", any), len=len)
    results: list[tuple[str, bool | str]] = []
    found = [" ".join(e.split()) for e in CLAIM.findall(readme)]  # a claim over two lines is one expression
    for expr in found:
        try:
            value = eval(expr, {"__builtins__": {}, **names})  # noqa: S307 - our README
        except Exception as exc:  # noqa: BLE001 - a claim that cannot be evaluated is a failed claim
            results.append((expr, f"cannot be evaluated: {exc}"))
            continue
        results.append((expr, value if isinstance(value, bool) else
                        f"is {value!r} ({type(value).__name__}), not True or False: write the comparison"))
    written = len(OPENED.findall(readme))
    if written != len(found):
        results.append((f"{written} claims written", f"only {len(found)} can be read: each is "
                        "<!-- claim: EXPRESSION --> (closed, and spelt so)"))
    return results


def pages(readme: Path) -> list[Path]:
    """The README and every Markdown page under the docs/ folder beside it."""
    return [readme, *sorted((readme.parent / "docs").rglob("*.md"))]


def main(report: Annotated[Path, typer.Argument(help="The quickstart's report.json.")],
         readme: Annotated[Path | None, typer.Option(
             help="README whose <!-- claim: ... --> must hold (and the docs/ pages beside it).")] = None,
         expect_fail: Annotated[list[str] | None, typer.Option(
             "--expect-fail", help="A known failure (text in its line, with the issue that fixes it): printed as "
                                   "EXPECTED FAIL instead of failing the run; the run fails if it no longer happens.")]
         = None) -> None:
    """Exit 1 when the report misses what the main job must show, or the README claims what this run contradicts."""
    data = json.loads(report.read_text())
    found_problems = problems(data)
    expected = [p for p in found_problems if any(x in p for x in expect_fail or [])]
    bad = [p for p in found_problems if p not in expected]
    for p in found_problems:
        typer.echo(f"{'EXPECTED FAIL' if p in expected else 'FAIL'} report: {p}")
    for x in expect_fail or []:
        if not any(x in p for p in expected):
            bad.append(f"expected failure '{x}' did not happen")
            typer.echo(f"FAIL report: the expected failure '{x}' did not happen: drop --expect-fail '{x}'")
    if readme is not None:
        found = [(page, *c) for page in pages(readme) for c in claims(CODE.sub("", page.read_text()), data)]
        if not found:
            bad.append("the README states no claim to check")
            typer.echo("FAIL readme: no <!-- claim: ... --> found")
        for page, expr, ok in found:
            why = "" if isinstance(ok, bool) else f" ({ok})"
            where = "" if page == readme else f" ({page.relative_to(readme.parent)})"
            typer.echo(f"{'ok  ' if ok is True else 'FAIL'} claim{where}: {expr}{why}")
            if ok is not True:
                bad.append(expr)
    here = not_run(data)
    for line in here:
        typer.echo(f"not run here: {line}")
    if bad:
        raise typer.Exit(1)
    typer.echo(f"quickstart report ok: {len(data['parity']) - len(here)} files passed their gates"
               + (f", {len(here)} not run here" if here else "")
               + (f", {len(expected)} expected failure(s)" if expected else "")
               + f", {len(data['headline'])} like-for-like headline pairs, KD over {data['kd']['n']} seeds")

if __name__ == "__main__":
    typer.run(main)
