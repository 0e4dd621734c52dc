"""docs/cli.md against the parsers it is generated from."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from allocation.cli import build_parser
from allocation.cli_reference import REGENERATE_COMMAND, main, render_cli_reference

REPO = Path(__file__).resolve().parent.parent
CLI_MD = REPO / "docs" / "cli.md"


def _parsers(
    parser: argparse.ArgumentParser,
) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found += _parsers(subparser)
    return found


def test_cli_md_up_to_date() -> None:
    expected = render_cli_reference()
    actual = CLI_MD.read_text(encoding="utf-8") if CLI_MD.exists() else ""
    assert actual == expected, (
        "docs/cli.md is out of date with the parsers in allocation/cli.py and "
        f"allocation/cli_catalog.py; regenerate it with: {REGENERATE_COMMAND}"
    )


def test_reference_lists_every_command_and_option() -> None:
    text = render_cli_reference()
    parsers = _parsers(build_parser())
    assert {p.prog for p in parsers} >= {
        "allocation",
        "allocation sweep",
        "allocation validate",
        "allocation catalog",
        "allocation catalog cpus",
        "allocation catalog import-cpus",
        "allocation catalog import-prices",
    }
    for parser in parsers:
        assert f"`{parser.prog}`" in text, parser.prog
        section = text.split(f"`{parser.prog}`\n", 1)[1]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}" in section, f"{parser.prog} {flag}"


def test_reference_shows_defaults_and_help() -> None:
    text = render_cli_reference()
    assert "| `--max-patterns N` | `1000000` |" in text
    assert "| `--method {auto,exhaustive,exact}` | `auto` |" in text
    assert (
        "check workflow, system, studies, measurements and uncertainty files without sweeping"
        in text
    )
    assert "Options for explaining the candidates:" in text


def test_reference_escapes_markdown_outside_code() -> None:
    text = render_cli_reference()
    # "<workflow>" would be read as an HTML tag and vanish from the rendered page.
    assert "results/\\<workflow\\>--\\<system\\>" in text
    assert "top-level `compare:` list" in text


def test_reference_ignores_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    wide = render_cli_reference()
    monkeypatch.setenv("COLUMNS", "40")
    assert render_cli_reference() == wide


def test_main_writes_file_or_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.md"
    assert main([str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_cli_reference()
    assert capsys.readouterr().out == ""

    assert main([]) == 0
    assert capsys.readouterr().out == render_cli_reference()

    assert main(["a.md", "b.md"]) == 2
    assert "usage: python -m allocation.cli_reference" in capsys.readouterr().err
