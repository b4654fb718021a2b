"""The README and docs/ stay true to the tree: every internal link resolves (files and #anchors as GitHub renders
them), and every ``edgekit ...`` command shown in a fenced code block parses (its verb exists and ``edgekit VERB
--help`` accepts each flag it uses: click's own parser, nothing is run)."""

import functools
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

spec = importlib.util.spec_from_file_location("check_results", ROOT / "tools" / "check_results.py")
results = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = results
spec.loader.exec_module(results)
masked = results.masked  # the Markdown with code blanked out, offsets kept: a link shown in code is no link

LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML = re.compile(r"<(?:a|img)\b[^>]*\b(?:href|src)\s*=\s*\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^([ \t]*)(```+|~~~+)[ \t]*([\w+-]*)[^\n]*\n(.*?)^\1\2[ \t]*$", re.S | re.M)
SHELLS = {"", "bash", "sh", "shell", "console", "zsh"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: str) -> set[str]:
    """Every anchor a Markdown file has on GitHub: its headings' slugs (a repeated one gets -1, -2, ...) and
    explicit ``id``/``name`` attributes."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    code = masked(doc)
    for m in HEADING.finditer(code):  # headings found where no code is, their text read from the source
        base = slug(doc[m.start(2):m.end(2)])
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    found.update(re.findall(r"<[^>]+\b(?:id|name)\s*=\s*\"([^\"]+)\"", code))
    return found


def links(doc: str) -> list[tuple[int, str]]:
    """(line, target) of every link and image in a Markdown file, outside code."""
    code = masked(doc)
    found = sorted((m.start(1), m.group(1)) for pattern in (LINK, REFERENCE, HTML) for m in pattern.finditer(code))
    return [(code.count("\n", 0, at) + 1, target) for at, target in found]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """One line per internal link of ``path`` that does not resolve: a file or folder missing from the tree, a
    path that leaves the repository, or an #anchor its Markdown target does not have."""
    bad = []
    for line, target in links(path.read_text(encoding="utf-8")):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # http(s), mailto: not ours to check offline
        rel, _, anchor = target.partition("#")
        dest = (path.parent / rel).resolve() if rel else path
        where = f"{path.relative_to(root)}:{line}: {target}"
        if not dest.is_relative_to(root.resolve()):
            bad.append(f"{where}: leaves the repository")
        elif not dest.exists():
            bad.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{where}: {dest.name} has no heading with the anchor #{anchor}")
    return bad


def shell_lines(doc: str) -> list[tuple[int, str]]:
    """(line, command line) of every fenced shell block (bash, sh, console or no language), continuation lines
    joined and a console's ``$ `` prompt dropped."""
    found = []
    for m in FENCE.finditer(doc):
        if m.group(3).lower() not in SHELLS:
            continue
        first = doc.count("\n", 0, m.start(4)) + 1
        lines = m.group(4).split("\n")
        i = 0
        while i < len(lines):
            start, text = i, lines[i]
            while text.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i]
            text = re.sub(r"^\s*\$\s+", "", text)
            if text.strip():
                found.append((first + start, text))
            i += 1
    return found


def edgekit_commands(line: str) -> list[list[str]]:
    """The arguments after ``edgekit`` of each edgekit command on a shell line (``edgekit ...``, ``python -m
    edgekit ...``, ``torchrun ... -m edgekit ...``, ``sudo edgekit ...``; pipelines and ``&&`` split)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    commands, current = [], []
    for token in [*lex, ";"]:
        if token and set(token) <= set("();<>|&"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    found = []
    for words in commands:
        for i, word in enumerate(words):
            if word == "edgekit" and (i == 0 or words[i - 1] in ("-m", "sudo", "exec", "time")):
                found.append(words[i + 1:])
                break
    return found


@functools.cache
def _cli():
    import typer

    from edgekit.cli import app

    return typer.main.get_command(app)


def parse_problem(args: list[str], positional: bool = True) -> str | None:
    """Why ``edgekit ARGS`` would not parse (an unknown verb, a flag its command does not take, a flag without its
    value, a positional argument too many or missing: ``positional=False`` leaves these two out), or None. The
    CLI's own parser (typer's click): nothing runs."""
    import typer

    cmd = _cli()
    name = "edgekit"
    while getattr(cmd, "commands", None) and args and not args[0].startswith("-"):
        verb, args = args[0], args[1:]
        if verb not in cmd.commands:
            return f"'{name}' has no command '{verb}' (it has {', '.join(cmd.commands)})"
        cmd, name = cmd.commands[verb], f"{name} {verb}"
    ctx = typer.Context(cmd, info_name=name)
    try:
        opts, extra, _ = cmd.make_parser(ctx).parse_args(args=list(args))
    except typer.TyperException as exc:  # typer's click: NoSuchOption, BadOptionUsage, ...
        return f"'{name}': {exc.format_message()}"
    if not positional or getattr(cmd, "commands", None) or any(o in opts for o in ("help", "version")):
        return None
    if extra and not ctx.allow_extra_args:
        return f"'{name}': unexpected extra argument(s) {' '.join(extra)}"
    missing = [p.name for p in cmd.params
               if p.param_type_name == "argument" and p.required and opts.get(p.name) in (None, ())]
    return f"'{name}': missing argument(s) {', '.join(missing)}" if missing else None


def wrong_commands(path: Path, root: Path = ROOT) -> list[str]:
    bad = []
    for line, text in shell_lines(path.read_text(encoding="utf-8")):
        for args in edgekit_commands(text):
            problem = parse_problem(args)
            if problem:
                bad.append(f"{path.relative_to(root)}:{line}: edgekit {' '.join(args)}: {problem}")
    return bad


def wrong_flags_in_prose(path: Path, root: Path = ROOT) -> list[str]:
    """The commands prose names in inline code (`edgekit check FILE --parity`): their verbs and flags must exist;
    positional arguments are left out (prose elides them), and so are elisions (``...``, ``[--fp16]``)."""
    bad = []
    doc = re.sub(FENCE, lambda m: re.sub(r"[^\n]", " ", m.group(0)), path.read_text(encoding="utf-8"))
    for m in re.finditer(r"`(edgekit [^`\n]+)`", doc):
        for args in edgekit_commands(m.group(1)):
            problem = parse_problem([a for a in args if not re.search(r"\[|\]|\.\.\.|…", a)], positional=False)
            if problem:
                bad.append(f"{path.relative_to(root)}:{doc.count(chr(10), 0, m.start()) + 1}: {m.group(1)}: {problem}")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_internal_link_resolves(doc):
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_edgekit_command_shown_parses(doc):
    assert wrong_commands(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_edgekit_flag_named_in_prose_exists(doc):
    assert wrong_flags_in_prose(doc) == []


def test_the_commands_are_found():
    """The check sees the commands: every verb of the CLI is shown at least once in the README's examples."""
    readme = ROOT / "README.md"
    shown = {args[0] for _, text in shell_lines(readme.read_text()) for args in edgekit_commands(text) if args}
    assert set(_cli().commands) <= shown, set(_cli().commands) - shown


def test_the_readme_is_a_front_page():
    """What the issue asked for: at most 250 lines, every stage's page linked, the screenshots shown."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    targets = {t for _, t in links(readme)}
    pages = {f"docs/{p.relative_to(ROOT / 'docs').as_posix()}" for p in DOCS[1:] if p.name != "coverage.md"}
    assert pages | {"docs/coverage.md", "docs/img/web-page.png", "docs/img/kiosk-dashboard.png"} <= targets


def test_github_anchors():
    doc = ("# Run it on the device (no torch)\n\n## What `device setup` does\n\n```bash\n# not a heading\n```\n"
           "## Notes\n## Notes\n### In the browser: web bundles & the [kiosk](x.md) dashboard\n")
    assert anchors(doc) == {"run-it-on-the-device-no-torch", "what-device-setup-does", "notes", "notes-1",
                            "in-the-browser-web-bundles--the-kiosk-dashboard"}


def test_a_broken_link_or_anchor_fails(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Every file is gated\n")
    readme = tmp_path / "README.md"
    readme.write_text("[ok](docs/page.md#every-file-is-gated) [ok](#top) ![img](docs/page.md) "
                      "[web](https://example.com/x.md#nope)\n\n# Top\n\n`[code](nowhere.md)`\n\n"
                      "```\n[x](gone.md)\n```\n")
    assert broken_links(readme, tmp_path) == []
    readme.write_text("# Top\n\n[a](docs/pages.md) [b](docs/page.md#every-file-gated) [c](#nope)\n\n"
                      "[d]: ../../outside.md\n<img src=\"docs/img/none.png\">\n")
    problems = broken_links(readme, tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "docs/pages.md: no such file", "docs/page.md#every-file-gated: page.md has no heading with the anchor "
        "#every-file-gated", "#nope: README.md has no heading with the anchor #nope",
        "../../outside.md: leaves the repository", "docs/img/none.png: no such file"]


@pytest.mark.parametrize(("line", "why"), [
    ("edgekit export best.pt --target onnx --in8", "No such option: --in8"),
    ("edgekit exports best.pt", "has no command 'exports'"),
    ("edgekit demo webcams -m model.onnx", "'edgekit demo' has no command 'webcams'"),
    ("edgekit check model.onnx --max-latency-ms", "Option '--max-latency-ms' requires an argument"),
    ("edgekit predict model.onnx a.jpg b.jpg", "unexpected extra argument(s) b.jpg"),
    ("edgekit predict", "missing argument(s)"),
    ("nice -n 10 python -m edgekit train --epochs 2 --epoch 3 | tee log", "No such option: --epoch"),
])
def test_a_wrong_command_fails(tmp_path, line, why):
    page = tmp_path / "page.md"
    page.write_text(f"```bash\nedgekit train --epochs 2\n{line}   # a comment --not-a-flag\n```\n")
    problems = wrong_commands(page, tmp_path)
    assert len(problems) == 1 and why in problems[0] and problems[0].startswith("page.md:3: "), problems


def test_commands_are_read_as_the_shell_reads_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nedgekit --nope\n```\n\n```console\n$ edgekit export best.pt \\\n"
                    "    --target onnx,tflite --int8 && edgekit check model.int8.onnx --parity\n"
                    "torchrun --nproc_per_node 2 -m edgekit train --device cpu\n"
                    "pip install \"edgekit[runtime]\"\n```\n")
    found = [args for _, text in shell_lines(page.read_text()) for args in edgekit_commands(text)]
    assert found == [["export", "best.pt", "--target", "onnx,tflite", "--int8"],
                     ["check", "model.int8.onnx", "--parity"], ["train", "--device", "cpu"]]
    assert wrong_commands(page, tmp_path) == []


def test_a_wrong_flag_in_prose_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Run `edgekit check FILE --parity`, then `edgekit export ... --target web [--skip-layers ...]`;\n"
                    "not `edgekit check FILE --parities` nor `edgekit exprt best.pt`.\n\n"
                    "```bash\n# `edgekit nope`\n```\n")
    problems = wrong_flags_in_prose(page, tmp_path)
    assert len(problems) == 2 and "No such option: --parities" in problems[0] and "no command 'exprt'" in problems[1]
    assert all(p.startswith("page.md:2: ") for p in problems), problems


def _table(doc: str, title: str) -> list[list[str]]:
    """The rows of the first Markdown table under the heading ``title`` (cells stripped, header included)."""
    section = doc.split(f"\n{title}\n", 1)[1]
    lines = [x for x in section.split("\n\n|", 1)[1].split("\n\n", 1)[0].split("\n")]
    rows = [[c.strip() for c in ("|" + x if not x.startswith("|") else x).strip("|").split("|")] for x in lines]
    return [r for r in rows if not all(set(c) <= set("-: ") for c in r)]


def test_the_readme_runtimes_table_says_what_devices_md_measured():
    """The README's runtimes per platform are docs/devices.md's table (tools/runtime_wheels.py) folded over the
    Python versions: a cell is the version every Python got, or 'none' where none got one within edgekit's
    bounds."""
    readme = _table((ROOT / "README.md").read_text(), "## Runtimes per platform")
    full = _table((ROOT / "docs" / "devices.md").read_text(), "## Which runtimes exist for which platform")
    names = {"opencv-python": "opencv-python<5,>=4.10", "onnxruntime": "onnxruntime>=1.18",
             "ai-edge-litert (TFLite)": "ai-edge-litert>=2.3", "openvino": "openvino>=2026.0"}
    header, rows = readme[0], readme[1:]
    assert header[0] == "platform" and set(header[1:]) == set(names)
    columns = [full[0].index(names[h]) for h in header[1:]]
    assert {r[0] for r in rows} == {r[0] for r in full[1:]}
    for row in rows:
        measured = [r for r in full[1:] if r[0] == row[0]]
        for cell, col in zip(row[1:], columns, strict=True):
            got = {r[col] for r in measured}
            assert got == {cell} or (cell == "none" and all(g.startswith("none") for g in got)), (row[0], cell, got)


def test_the_gate_table_in_the_docs_is_the_code_s():
    """docs/export.md's gate table says what export/gates.py judges with: each row's numbers, in the order the
    columns give them (FP32: relative error; then SQNR, agreement, accuracy drop, mAP/LWLRAP drop, MAE increase)."""
    from edgekit.export.gates import table_rows

    rows = _table((ROOT / "docs" / "export.md").read_text(), "## Every file is gated")
    number = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)?")
    written = {r[0].split()[0].lower(): [float(x) for x in number.findall(" ".join(r[1:]).replace("top-1", "top"))]
               for r in rows[1:]}
    code = {}
    for g in table_rows():
        pct = [None if g[k] is None else round(g[k] * 100, 6) for k in ("min_agreement", "max_mae_increase")]
        values = [g["max_rel"], g["min_sqnr_db"], pct[0], g["max_drop_points"], g["max_drop_points"], pct[1]]
        code[g["precision"]] = [v for v in values if v is not None]
    assert written == code


def test_every_script_and_module_shown_exists():
    """`python tools/NAME.py` and `python -m edgekit.MODULE` in the README and docs/ name files that are there
    (a renamed tool or module would leave a command nobody can run)."""
    import importlib.util

    missing = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for script in re.findall(r"\bpython3? (tools/[a-z_][a-z0-9_]*\.py)", text):  # tools/NAME.py: a placeholder
            if not (ROOT / script).is_file():
                missing.append(f"{doc.relative_to(ROOT)}: {script}")
        for module in re.findall(r"\bpython3? -m (edgekit(?:\.\w+)*)", text):
            if importlib.util.find_spec(module) is None:
                missing.append(f"{doc.relative_to(ROOT)}: python -m {module}")
    assert missing == []


def test_ci_runs_the_readme_s_setup_and_test_commands():
    """.ci/run runs exactly the README's "Set up and test" commands (with the fresh machine's python3) and its
    main job, so what the README tells a newcomer is what CI proves."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Set up and test (fresh machine)\n", 1)[1].split("\n## ", 1)[0]
    shown = [text.strip() for _, text in shell_lines(section)]
    assert shown == ['pip install -e ".[dev]"', "python -m pytest"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command in shown:
        assert re.sub(r"^(pip|python) ", lambda m: "python3 -m pip " if m[1] == "pip" else "python3 ", command) in ci
    assert "edgekit quickstart" in ci and "python3 tools/check_quickstart.py runs/quickstart/report.json --readme " \
                                            "README.md" in ci


def test_the_layout_page_names_every_stage_folder():
    """docs/design.md has a line for every folder pyproject maps to an edgekit package (a new stage is described)."""
    import tomllib

    folders = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    design = (ROOT / "docs" / "design.md").read_text()
    assert {f for f in folders if f"\n- `{f}/` — " not in design} == set()


def _leaves(cmd, path=()):
    subs = getattr(cmd, "commands", None)
    if not subs:
        return [path]
    return [leaf for name, sub in subs.items() for leaf in _leaves(sub, (*path, name))]


def test_every_verb_s_help_renders_with_examples():
    """`edgekit VERB --help` is where the README sends a reader for a verb's options: each one renders (exit 0,
    no traceback) and shows examples. `device add/setup/clean --help` crashed on the address's `[/folder]`, which
    rich read as a closing markup tag."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    runner = CliRunner()
    for path in _leaves(_cli()):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output[-500:], result.exception)
        assert "Examples" in result.output, path
