"""The documentation cannot drift from the code: README.md and the manuals in docs/.

- every option of the four command lines is in its manual's ``Options`` table, and every option there exists;
- every config key (``training.config.DEFAULTS``) and every key of the ``simulation`` block
  (``training.data.simsource.PIPELINE_KEYS`` and ``STREAM_DEFAULTS``) is in docs/training.md, and nothing else is;
  the documented defaults are the code's;
- the options of the reference-network scripts (``scripts/gpu_train.py``, ``scripts/gpu_unpack.py``) are in
  docs/gpu.md;
- every relative link of README.md and docs/*.md points at an existing file (and heading, for ``#anchors``);
- README.md stays a landing page: at most 260 lines, and it describes hardware, not the project's own machines.

Tables are found by their heading: the first Markdown table after a heading whose text is exactly the given title,
before the next heading. The first cell of each row names the option (`` `--name ARG` ``, or a positional name) or
the key (`` `name` ``); the second cell is the default.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 260

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
OPTION = re.compile(r"`(--[A-Za-z0-9][A-Za-z0-9-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


# ----------------------------------------------------------------------------------------------------------------
# Reading the Markdown


def _lines_outside_code(text: str) -> list[str]:
    """The lines of a Markdown text with fenced code blocks blanked out (their headings and links are not real)."""
    out, in_code = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            out.append("")
        else:
            out.append("" if in_code else line)
    return out


def _split_row(line: str) -> list[str]:
    """Cells of a Markdown table row (``\\|`` inside a cell is not a separator)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def table_rows(path: Path, title: str) -> list[list[str]]:
    """The body rows (lists of cells) of the first table under the one heading titled ``title`` in ``path``."""
    lines = _lines_outside_code(path.read_text(encoding="utf-8"))
    starts = [i for i, line in enumerate(lines) if (m := HEADING.match(line)) and m.group(2) == title]
    assert len(starts) == 1, f"{path.name}: expected exactly one heading {title!r}, found {len(starts)}"
    rows: list[list[str]] = []
    for line in lines[starts[0] + 1 :]:
        if HEADING.match(line):
            break
        if line.lstrip().startswith("|"):
            rows.append(_split_row(line))
        elif rows:
            break  # the table ended
    assert len(rows) >= 3, f"{path.name}: no table under the heading {title!r}"
    assert all(set(cell) <= set(":- ") for cell in rows[1]), f"{path.name}: {title!r} table has no header separator"
    return rows[2:]


def _single_literal(cell: str) -> str | None:
    """The text of a cell that is exactly one code span (`` `x` ``), else None."""
    m = re.fullmatch(r"`([^`]+)`", cell.strip())
    return m.group(1) if m else None


def documented_options(path: Path, title: str = "Options") -> dict[str, list[str]]:
    """Long option (or positional name) → its table row, from the options table of a manual."""
    found: dict[str, list[str]] = {}
    for row in table_rows(path, title):
        names = OPTION.findall(row[0])
        if not names:  # a positional argument: `name`
            literal = _single_literal(row[0])
            assert literal and re.fullmatch(r"[a-z_]+", literal), (
                f"{path.name}: the first cell of each row of {title!r} must be `--option …` or `positional`, "
                f"got {row[0]!r}"
            )
            names = [literal]
        for name in names:
            assert name not in found, f"{path.name}: {name} appears twice in the {title!r} table"
            found[name] = row
    return found


def documented_keys(path: Path, title: str) -> dict[str, list[str]]:
    """Key → its table row, from a key table (first cell exactly `` `key` ``)."""
    found: dict[str, list[str]] = {}
    for row in table_rows(path, title):
        key = _single_literal(row[0])
        assert key is not None, f"{path.name}: each row of {title!r} must start with one `key`, got {row[0]!r}"
        assert key not in found, f"{path.name}: key {key!r} appears twice in the {title!r} table"
        found[key] = row
    return found


# ----------------------------------------------------------------------------------------------------------------
# The command lines


def parser_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every long option and positional argument of a parser (without -h/--help) → its action."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            out[action.dest] = action
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                out[option] = action
    return out


def _datapipe_parser() -> argparse.ArgumentParser:
    from datapipe.datapipeline import build_parser

    return build_parser()


def _training_parser() -> argparse.ArgumentParser:
    import training.main

    assert hasattr(training.main, "build_parser"), "training/main.py must expose build_parser() (the docs test uses it)"
    return training.main.build_parser()


def _evaluate_parser() -> argparse.ArgumentParser:
    import training.evaluate

    assert hasattr(training.evaluate, "build_parser"), (
        "training/evaluate.py must expose build_parser() (the docs test uses it)"
    )
    return training.evaluate.build_parser()


def _predict_parser() -> argparse.ArgumentParser:
    import training.predict

    assert hasattr(training.predict, "build_parser"), (
        "training/predict.py must expose build_parser() (the docs test uses it)"
    )
    return training.predict.build_parser()


CLIS = {
    "datapipe": (_datapipe_parser, "datapipe.md"),
    "training": (_training_parser, "training.md"),
    "evaluate": (_evaluate_parser, "evaluation.md"),
    "predict": (_predict_parser, "predict.md"),
}


@pytest.mark.parametrize("cli", CLIS)
def test_every_option_is_documented(cli):
    make_parser, manual = CLIS[cli]
    documented = documented_options(DOCS / manual)
    missing = sorted(set(parser_options(make_parser())) - set(documented))
    assert not missing, f"docs/{manual}: options missing from the 'Options' table: {missing}"


@pytest.mark.parametrize("cli", CLIS)
def test_every_documented_option_exists(cli):
    make_parser, manual = CLIS[cli]
    gone = sorted(set(documented_options(DOCS / manual)) - set(parser_options(make_parser())))
    assert not gone, f"docs/{manual}: the 'Options' table documents options the command no longer has: {gone}"


@pytest.mark.parametrize("cli", CLIS)
def test_documented_option_defaults(cli):
    """A default written as one code span (`` `16` ``) is the parser's; prose ("off", "all") is not checked."""
    make_parser, manual = CLIS[cli]
    actions = parser_options(make_parser())
    for name, row in documented_options(DOCS / manual).items():
        action = actions.get(name)
        literal = _single_literal(row[1]) if len(row) > 1 else None
        if action is None or literal is None:
            continue
        default = action.default
        if isinstance(default, bool) or not isinstance(default, int | float | str):
            continue
        assert literal == str(default), f"docs/{manual}: {name} default documented as {literal!r}, code has {default!r}"


def test_export_options_are_documented():
    """``python -m datapipe.export`` has its own table, "Export options", in docs/datapipe.md."""
    from datapipe.export import build_parser

    documented = documented_options(DOCS / "datapipe.md", "Export options")
    actual = parser_options(build_parser())
    assert sorted(set(actual) - set(documented)) == [], "docs/datapipe.md: export options missing from the table"
    assert sorted(set(documented) - set(actual)) == [], "docs/datapipe.md: the table documents gone export options"


# ----------------------------------------------------------------------------------------------------------------
# Config keys


def test_every_config_key_is_documented_with_its_default():
    from training.config import ALIASES, DEFAULTS

    documented = documented_keys(DOCS / "training.md", "Config keys")
    missing = sorted(set(DEFAULTS) - set(documented))
    assert not missing, f"docs/training.md: config keys missing from the 'Config keys' table: {missing}"
    gone = sorted(set(documented) - set(DEFAULTS) - set(ALIASES))
    assert not gone, f"docs/training.md: the 'Config keys' table documents keys the config does not accept: {gone}"
    for key, row in documented.items():
        literal = _single_literal(row[1])
        assert literal is not None, f"docs/training.md: the default of {key!r} must be one JSON code span"
        assert json.loads(literal) == DEFAULTS[key], (
            f"docs/training.md: {key!r} default documented as {literal}, code has {json.dumps(DEFAULTS[key])}"
        )


def test_every_simulation_key_is_documented():
    from datapipe.settings import SimulationSettings
    from training.data.simsource import PIPELINE_KEYS, STREAM_DEFAULTS

    valid = {*PIPELINE_KEYS, *STREAM_DEFAULTS}
    documented = documented_keys(DOCS / "training.md", "Simulation keys")
    missing = sorted(valid - set(documented))
    assert not missing, f"docs/training.md: simulation-block keys missing from the 'Simulation keys' table: {missing}"
    gone = sorted(set(documented) - valid)
    assert not gone, f"docs/training.md: the 'Simulation keys' table documents keys the block does not accept: {gone}"

    pipeline = SimulationSettings()
    expected = {**STREAM_DEFAULTS, "no_tau": not pipeline.tau, "no_lensing": not pipeline.lensing}
    for key in PIPELINE_KEYS:
        if hasattr(pipeline, key):
            expected.setdefault(key, getattr(pipeline, key))
    for key, row in documented.items():
        literal = _single_literal(row[1])
        if literal is None or expected.get(key) is None:
            continue  # prose ("all cores but one") or a default that depends on the run
        try:
            value = json.loads(literal)
        except ValueError:
            continue  # a name, e.g. `imagesize`
        assert value == expected[key], f"docs/training.md: simulation.{key} default documented as {literal}"


def test_documented_config_keys_table_exists_only_once():
    text = (DOCS / "training.md").read_text(encoding="utf-8")
    for title in ("Config keys", "Simulation keys", "Options"):
        assert sum(1 for line in _lines_outside_code(text) if (m := HEADING.match(line)) and m.group(2) == title) == 1


# ----------------------------------------------------------------------------------------------------------------
# The reference-network scripts


def _script_options(script: str) -> set[str]:
    """Long options and positional names of a script, from its ``--help`` (the scripts build their parser in main)."""
    command = [sys.executable, str(ROOT / "scripts" / script), "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)) - {"--help"}
    positional = re.search(r"^positional arguments:\n((?:  .*\n)+)", text, re.MULTILINE)
    if positional:
        options |= set(re.findall(r"^  ([a-z_]+)\b", positional.group(1), re.MULTILINE))
    return options


@pytest.mark.parametrize("script", ["gpu_train.py", "gpu_unpack.py"])
def test_gpu_script_options_are_documented(script):
    documented = set(documented_options(DOCS / "gpu.md", f"`{script}` options"))
    actual = _script_options(script)
    missing, gone = sorted(actual - documented), sorted(documented - actual)
    assert not missing, f"docs/gpu.md: {script} options missing from its table: {missing}"
    assert not gone, f"docs/gpu.md: {script} options documented but gone: {gone}"


# ----------------------------------------------------------------------------------------------------------------
# Links and the README


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    for line in _lines_outside_code(path.read_text(encoding="utf-8")):
        if m := HEADING.match(line):
            slug, n = _slug(m.group(2)), 1
            while slug in anchors:
                slug, n = f"{_slug(m.group(2))}-{n}", n + 1
            anchors.add(slug)
    return anchors


def test_docs_exist():
    for name in ("datapipe.md", "training.md", "evaluation.md", "predict.md", "scaling.md", "gpu.md", "development.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    text = "\n".join(_lines_outside_code(path.read_text(encoding="utf-8")))
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto:, …
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; keep it at most {README_MAX_LINES}"


def test_readme_speaks_of_the_users_hardware():
    text = README.read_text(encoding="utf-8")
    words = sorted({m.group(0).lower() for m in re.finditer(r"\b(lent|loans?|sessions?)\b", text, re.IGNORECASE)})
    assert not words, f"README.md speaks of the machines it was developed on ({words}); describe the hardware instead"
    phrases = re.findall(r"this project's [^.]*machine|\bon this machine\b", text, re.IGNORECASE)
    assert not phrases, f"README.md: {phrases}; say e.g. 'on a 2-core x86 CPU'"


def test_readme_links_the_manuals():
    text = README.read_text(encoding="utf-8")
    for name in ("datapipe.md", "training.md", "evaluation.md", "predict.md", "scaling.md", "gpu.md", "development.md"):
        assert f"(docs/{name})" in text, f"README.md does not link docs/{name}"
