"""The commands that README.md, README.ja.md and docs/guide.md show, checked and run.

The quick start of both READMEs is run for real in a fresh copy of the repository. Every
other `allocation` command the pages show is parsed in-process by the real parser, which
is cheap and catches a renamed or removed option.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from allocation.cli import build_parser
from tests.conftest import REPO
from tests.processes import processes_with_env

README = REPO / "README.md"
README_JA = REPO / "README.ja.md"
GUIDE = REPO / "docs" / "guide.md"

QUICK_START = {README: "Quick start", README_JA: "クイックスタート"}
"""Heading of the quick-start section in each README."""

COMMANDS = {README: "Commands", README_JA: "コマンド"}
"""Heading of the command synopsis in each README."""

EXAMPLES = {README: "More examples", README_JA: "その他の例"}
"""Heading of the table of example inputs in each README."""

QUICK_TEST_FILE = "tests/test_cli_reference.py"
"""The one test file that `uv run pytest` runs in the fresh copy: in-process, about 1 s."""

SWEEP_TIMEOUT_S = 600


def _section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"{path.name} has no section '## {heading}'"
    return match.group(1)


def _fenced(text: str, language: str) -> list[str]:
    """Return the lines of the fenced blocks tagged `language` ('' for untagged ones)."""
    blocks = re.findall(rf"^```{re.escape(language)}\n(.*?)^```", text, re.M | re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def _quick_start_commands(path: Path) -> list[str]:
    return _fenced(_section(path, QUICK_START[path]), "sh")


def _table_rows(text: str) -> list[list[str]]:
    """Return the cells of the body rows of every markdown table in `text`."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:] if rows else rows


def _code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:[,.^]\d+)*", text)


def _allocation_arguments(line: str) -> list[str] | None:
    """Return the arguments after `allocation` in a shell line, or None for other commands."""
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words = words[1:]  # environment assignments such as PREFECT_API_URL=...
    if words[:2] == ["uv", "run"]:
        words = words[2:]
    if not words or words[0] != "allocation":
        return None
    return words[1:]


def _parse(arguments: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(arguments)
    except SystemExit as exc:
        raise AssertionError(
            f"the parser rejects `allocation {shlex.join(arguments)}` (exit {exc.code})"
        ) from None


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    raise AssertionError(f"`{parser.prog}` has no subcommand {name!r}")


# Static checks: what the pages show, in-process.


def test_quick_starts_show_same_commands() -> None:
    english = _quick_start_commands(README)
    japanese = _quick_start_commands(README_JA)
    assert english, "README.md's quick start shows no ```sh block"
    assert japanese == english
    assert english[0].startswith("uv run allocation sweep ")
    assert english[-1] == "uv run pytest"


def test_readmes_show_same_outputs_and_examples() -> None:
    for headings in (QUICK_START, EXAMPLES):
        english = _table_rows(_section(README, headings[README]))
        japanese = _table_rows(_section(README_JA, headings[README_JA]))
        assert english, f"README.md's {headings[README]} has no table"
        assert [_code_spans(row[0]) for row in japanese] == [_code_spans(row[0]) for row in english]
        # The code of the other cells matches too; only the prose differs.
        for english_row, japanese_row in zip(english, japanese, strict=True):
            assert _code_spans(" ".join(japanese_row)) == _code_spans(" ".join(english_row))

    # The counts of assignments match.
    english = _table_rows(_section(README, EXAMPLES[README]))
    japanese = _table_rows(_section(README_JA, EXAMPLES[README_JA]))
    assert [_numbers(row[-1]) for row in japanese] == [_numbers(row[-1]) for row in english]


def test_readmes_show_same_synopsis() -> None:
    english = _fenced(_section(README, COMMANDS[README]), "")
    japanese = _fenced(_section(README_JA, COMMANDS[README_JA]), "")
    assert english
    assert japanese == english


def test_readme_synopsis_matches_parser() -> None:
    """Each subcommand and option in the synopsis exists, with the choices shown."""
    synopsis = _fenced(_section(README, COMMANDS[README]), "")
    parser = build_parser()
    commands = []
    command = parser
    for line in synopsis:
        words = line.split()
        if words[0] == "allocation":
            command = parser
            for word in words[1:]:
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                command = _subparser(command, word)
            commands.append(command.prog)
        options = {flag: action for action in command._actions for flag in action.option_strings}
        for flag, value in re.findall(r"\[(--[a-z-]+)(?: ([^\]]+))?\]", line):
            assert flag in options, f"`{command.prog}` has no option {flag} (README.md)"
            choices = options[flag].choices
            if value and "|" in value and choices is not None:
                assert value.split("|") == list(choices), f"{command.prog} {flag}"
    assert "allocation sweep" in commands
    assert "allocation validate" in commands


def test_example_table_commands_parse() -> None:
    rows = _table_rows(_section(README, EXAMPLES[README]))
    assert len(rows) >= 4
    for row in rows:
        workflow, system = (_code_spans(cell)[0] for cell in row[:2])
        assert (REPO / workflow).is_file(), workflow
        assert (REPO / system).is_file(), system
        args = _parse(["sweep", workflow, system])
        assert args.command == "sweep"


@pytest.mark.parametrize("page", [README, README_JA, GUIDE], ids=lambda p: p.name)
def test_documented_commands_parse(page: Path) -> None:
    """Every `allocation` line in a shell block of the page is valid for the parser."""
    text = page.read_text(encoding="utf-8")
    parsed = 0
    for line in _fenced(text, "sh"):
        arguments = _allocation_arguments(line)
        if arguments is None:
            continue
        _parse(arguments)
        parsed += 1
    assert parsed, f"{page.name} shows no `allocation` command in a ```sh block"


# The quick start, run for real.


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        message = "uv is not on PATH; the README's commands start with `uv run`"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return uv


def _copy_tracked_files(destination: Path) -> None:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        message = "the tests do not run from a git checkout, so the tracked files are unknown"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _fresh_environment(copy: Path) -> dict[str, str]:
    dropped = ("PYTEST_", "PREFECT_", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "ALLOCATION_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(
        {
            # A new environment inside the copy: the project's .venv stays untouched.
            "UV_PROJECT_ENVIRONMENT": str(copy / ".venv"),
            # UV_CACHE_DIR, when set, is inherited: the shared cache makes the install
            # take about a second, and offline mode keeps the run off the network.
            "UV_OFFLINE": "1",
            "PREFECT_HOME": str(copy / ".prefect"),
            # Finds the processes the commands leave behind (tests/processes.py).
            "ALLOCATION_TEST_MARK": str(copy),
        }
    )
    return env


@pytest.mark.prefect
def test_quick_start_runs_in_fresh_copy(tmp_path: Path) -> None:
    """Run the quick start of README.md in a copy of the tracked files, as a new user would.

    The commands run with the same `uv` as the suite, in a new environment inside the
    copy (UV_PROJECT_ENVIRONMENT) built offline from the shared uv cache. The sweep runs
    for real, with Prefect's embedded server (about 20 s). `uv run pytest` cannot run
    the whole suite from inside the suite: that would take the suite's full 6 minutes
    and run this test again. It runs with one fast test file appended, which still
    proves that the copy installs its test dependencies and collects and passes tests.
    """
    uv = _uv()
    copy = tmp_path / "clone"
    _copy_tracked_files(copy)
    env = _fresh_environment(copy)
    commands = _quick_start_commands(README)

    for line in commands:
        words = shlex.split(line)
        assert words[:2] == ["uv", "run"], f"the quick start runs everything with uv: {line}"
        if words[2:] == ["pytest"]:
            words = [*words, QUICK_TEST_FILE, "-q", "-p", "no:cacheprovider"]
        result = subprocess.run(
            [uv, *words[1:]],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=SWEEP_TIMEOUT_S,
        )
        assert result.returncode == 0, f"`{line}` failed:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        if words[2] == "pytest":
            assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout
            assert "failed" not in result.stdout, result.stdout
        elif words[2] == "allocation":
            assert "Pareto front" in result.stdout, result.stdout

    assert (copy / ".venv").is_dir()
    _check_quick_start_outputs(copy)
    # The temporary Prefect server the sweep started is gone with it.
    assert processes_with_env("ALLOCATION_TEST_MARK", env["ALLOCATION_TEST_MARK"]) == []


def _check_quick_start_outputs(copy: Path) -> None:
    """Check the files and numbers that README.md's quick start promises."""
    section = _section(README, QUICK_START[README])
    out_match = re.search(r"It writes `([^`]+)`", section)
    assert out_match, "README.md's quick start names no output folder"
    out = copy / out_match.group(1)
    assert out.is_dir(), out

    for row in _table_rows(section):
        for name in _code_spans(row[0]):
            assert list(out.glob(name)), f"README.md lists {name}, missing in {out}"

    count_match = re.search(r"([\d,]+) assignments of (\d+) stages", section)
    assert count_match, "README.md's quick start gives no count of assignments and stages"
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["counts"]["space_size"] == int(count_match.group(1).replace(",", ""))
    front = pq.read_table(out / "front.parquet")
    stages = [name for name in front.column_names if name.startswith("at_")]
    assert len(stages) == int(count_match.group(2))
    assert len(pq.read_table(out / "patterns.parquet")) == run["counts"]["space_size"]
    assert front.column_names[:7] == [
        "latency_s",
        "cost_usd",
        "comm_s",
        "upload_bytes",
        "download_bytes",
        "monthly_cost_usd",
        "equivalent_count",
    ]
    assert run["inputs"]["workflow"]["sha256"]
    assert run["inputs"]["cpu_catalog"]["sha256"]
    pricing = run["pricing"]["cloud"]
    assert pricing["provider"] == "aws-lambda"
    assert pricing["prices_sha256"]
    assert {row["dimension"] for row in pricing["price_rows"]} >= {"duration", "requests"}
    assert all("as_of" in row for row in pricing["price_rows"])
    assert "Prices used" in (out / "report.md").read_text(encoding="utf-8")
    # Nothing is left of the staging folder.
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
