"""Numbers in Markdown that come from result files: every marked number and table must match its file.

A measured number or table in the README or a page under docs/ is written from a result file committed
beside it (JSON written by the command that measured it, e.g. ``docs/coverage.json`` by
``python -m edgekit.recipes.coverage``), and marked in the Markdown source with where it comes from:

- ``<!-- results: cov = docs/coverage.json -->`` names a file (path relative to the Markdown file) once;
- ``<!-- value: cov.summary.passed -->177<!-- /value -->`` is a number in the text: the expression over the
  named files (attribute or ``["key"]`` access, ``sum``/``min``/``max``/``len``/``round``/``abs``/``sorted``,
  ``pick(items, key=value)`` for the one item that matches, ``unique(items)`` in order, ``sci(x)`` for
  ``1.7e-4``), then ``| FORMAT`` (a
  Python format spec: ``<!-- value: cov.summary.pass_pct | .0f -->``) when given;
- ``<!-- block: EXPR -->`` ... ``<!-- /block -->`` holds whole lines (a table): ``EXPR`` gives a string or a
  list of lines; ``table(header, rows)`` writes a Markdown table.

The comments do not show on GitHub; the text between them is what the reader sees. ``--check`` (the default)
fails on any marked text that differs from what its file gives now, on a marker that cannot be read, and on a
count of markers opened that differs from those read (a marker is never dropped in silence); ``--write``
rewrites the marked text from the files. tests/tools/test_check_results.py runs the check on README.md and
docs/**/*.md in the suite. See docs/results/README.md::

    python tools/check_results.py                                    # check README.md and docs/**/*.md
    python tools/check_results.py docs/export.md --write             # after re-measuring: update the text
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

SOURCE = re.compile(r"<!--\s*results:\s*([A-Za-z_]\w*)\s*=\s*(\S+?)\s*-->")
VALUE = re.compile(r"<!--\s*value:(.*?)-->(.*?)<!--\s*/value\s*-->", re.S)
BLOCK = re.compile(r"<!--\s*block:(.*?)-->[ \t]*\n(.*?)^[ \t]*<!--\s*/block\s*-->", re.S | re.M)
OPENERS = {"value": re.compile(r"<!--\s*value\b"), "block": re.compile(r"<!--\s*block\b"),
           "results": re.compile(r"<!--\s*results\b")}


class Data:
    """A result file's JSON with attribute access (``cov.summary.passed``) and item access
    (``cov.summary.by_column["onnx fp32"]``); a missing key is an error naming the keys there are."""

    def __init__(self, value: dict[str, Any], where: str) -> None:
        self._value, self._where = value, where

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, key: str) -> Any:
        if key not in self._value:
            raise KeyError(f"{self._where} has no '{key}' (it has {', '.join(map(str, self._value)) or 'nothing'})")
        return _wrap(self._value[key], f"{self._where}.{key}")

    def keys(self):
        return self._value.keys()

    def values(self):
        return [self[k] for k in self._value]

    def items(self):
        return [(k, self[k]) for k in self._value]


def _wrap(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return Data(value, where)
    if isinstance(value, list):
        return [_wrap(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table: a header row, its rule, and one row per list (cells as ``str``)."""
    out = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def pick(items: list[Any], **match: Any) -> Any:
    """The one item of ``items`` whose fields equal ``match``: ``pick(cov.rows, arch="levit_128s")``."""
    found = [i for i in items if all(getattr(i, k) == v for k, v in match.items())]
    if len(found) != 1:
        raise LookupError(f"{len(found)} items match {match}, not one")
    return found[0]


def unique(items: list[Any]) -> list[Any]:
    """``items`` without repeats, in the order first seen: ``unique([r.platform for r in w.rows])``."""
    out: list[Any] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def sci(value: float, digits: int = 1) -> str:
    """Scientific notation as the prose writes it: ``sci(0.000171)`` -> ``1.7e-4``."""
    mantissa, exp = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exp)}"


HELPERS = {"sum": sum, "min": min, "max": max, "len": len, "round": round, "abs": abs, "sorted": sorted,
           "any": any, "all": all, "str": str, "zip": zip, "enumerate": enumerate, "table": table, "pick": pick,
           "unique": unique, "sci": sci}


@dataclass
class Marker:
    kind: str  # "value" or "block"
    expr: str
    fmt: str
    text: str
    start: int  # offsets of the marked text in the document
    end: int
    line: int


def masked(doc: str) -> str:
    """``doc`` with code (fenced blocks, inline spans) blanked out, offsets kept: a marker shown as an example
    in code is not a marker."""
    def blank(m: re.Match) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    doc = re.sub(r"^[ \t]*```.*?^[ \t]*```[^\n]*$", blank, doc, flags=re.S | re.M)
    return re.sub(r"`[^`\n]+`", blank, doc)


def sources(doc: str, where: Path) -> dict[str, Any]:
    """The result files a document names, loaded (``{alias: Data}``)."""
    names: dict[str, Any] = {}
    for alias, rel in SOURCE.findall(masked(doc)):
        path = (where.parent / rel).resolve()
        if alias in names:
            raise ValueError(f"{where}: '{alias}' names two result files")
        try:
            names[alias] = _wrap(json.loads(path.read_text()), rel)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where}: result file {rel} cannot be read: {exc}") from None
    return names


def markers(doc: str) -> list[Marker]:
    found = []
    code = masked(doc)
    for kind, pattern in (("value", VALUE), ("block", BLOCK)):
        for m in pattern.finditer(code):
            head = doc[m.start(1):m.end(1)]  # found in the masked text, read from the text: `code` in an expression
            expr, _, fmt = head.rpartition("|") if "|" in head and kind == "value" else (head, "", "")
            start, end = m.span(2)
            found.append(Marker(kind, " ".join(expr.split()), fmt.strip(), doc[start:end], start, end,
                                doc.count("\n", 0, m.start()) + 1))
    return sorted(found, key=lambda x: x.start)


def render(marker: Marker, names: dict[str, Any]) -> str:
    """The text a marker's expression gives now."""
    value = eval(marker.expr, {"__builtins__": {}, **HELPERS, **names})  # noqa: S307 - our own Markdown
    if marker.kind == "block":
        lines = value.splitlines() if isinstance(value, str) else [str(v) for v in value]
        return "".join(line + "\n" for line in lines)
    if isinstance(value, Data):
        raise TypeError("gives an object, not a number or text")
    return format(value, marker.fmt) if marker.fmt else str(value)


def check(doc: str, where: Path) -> tuple[list[str], str]:
    """Problems with a document's marked numbers (one line each) and the document with every marked text
    rendered from its files."""
    problems = []
    try:
        names = sources(doc, where)
    except ValueError as exc:
        return [str(exc)], doc
    found = markers(doc)
    code = masked(doc)
    for kind, opener in OPENERS.items():
        written = len(opener.findall(code))
        read = len(SOURCE.findall(code)) if kind == "results" else sum(m.kind == kind for m in found)
        if written != read:
            problems.append(f"{where}: {written} '{kind}' marker(s) written, {read} read: each needs the form "
                            f"shown in tools/check_results.py (a closing marker, a name = path)")
    problems += [f"{where}:{n}: {why}" for n, why in line_starts(code)]
    out, last = [], 0
    for m in found:
        try:
            now = render(m, names)
        except Exception as exc:  # noqa: BLE001 - a marker that cannot be rendered is a failed check
            problems.append(f"{where}:{m.line}: {m.kind} `{m.expr}` cannot be evaluated: {exc}")
            now = m.text
        if now != m.text:
            problems.append(f"{where}:{m.line}: {m.kind} `{m.expr}` is {now.strip()!r} in its result file, the text "
                            f"says {m.text.strip()!r}")
        out += [doc[last:m.start], now]
        last = m.end
    return problems, "".join(out) + doc[last:]


INLINE_START = re.compile(r"^[ \t]*(?:<!--\s*(?:value|claim)\b|<!--\s*results:[^\n]*?-->[ \t]*\S)", re.M)


def line_starts(code: str) -> list[tuple[int, str]]:
    """Lines that start with a marker followed by text: Markdown reads a line that starts with ``<!--`` as an HTML
    block, which ends the paragraph there and shows the rest of the line unformatted. Start such a line with a
    word (a ``results`` marker may stand alone on its line)."""
    return [(code.count("\n", 0, m.start()) + 1, "a line starts with a marker and text goes on after it: on GitHub "
             "that breaks the paragraph there (begin the line with a word)") for m in INLINE_START.finditer(code)]


def pages(root: Path = Path(".")) -> list[Path]:
    """Every Markdown file that may hold marked numbers: the README and the pages under docs/."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def main(docs: Annotated[list[Path] | None, typer.Argument(
             help="Markdown files whose marked numbers to check (default: README.md and docs/**/*.md).")] = None,
         write: Annotated[bool, typer.Option("--write", help="Rewrite the marked text from the result files.")]
         = False) -> None:
    """Exit 1 when a marked number or table differs from its result file (or a marker cannot be read)."""
    from edgekit.atomic import write_text

    bad = 0
    for path in docs or pages():
        doc = path.read_text()
        problems, rendered = check(doc, path)
        if write and rendered != doc:
            write_text(path, rendered)
            problems = [p for p in problems if " the text says " not in p]
            typer.echo(f"rewrote {path}")
        for p in problems:
            typer.echo(f"FAIL {p}")
        bad += len(problems)
        typer.echo(f"{path}: {len(markers(doc))} marked number(s) and table(s), {len(problems)} problem(s)")
    if bad:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
