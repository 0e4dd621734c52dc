"""Generate docs/cli.md, the command-line reference, from the argparse parsers.

Run ``uv run python -m allocation.cli_reference docs/cli.md`` after changing an option
of `allocation.cli` or `allocation.cli_catalog`; ``tests/test_cli_reference.py`` fails
while docs/cli.md differs from what this module renders.

The usage lines are built here rather than by argparse's formatter, whose output depends
on the terminal width and changes between Python versions, so the page is the same on
every machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from allocation.cli import build_parser

__all__ = ["main", "render_cli_reference"]

REGENERATE_COMMAND = "uv run python -m allocation.cli_reference docs/cli.md"
"""Command that rewrites docs/cli.md; quoted in the page and in the test's failure message."""

_USAGE_WIDTH = 88


def render_cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Render the reference of `parser` (default: the `allocation` parser) as markdown.

    Every command and subcommand gets a section with its description, a usage line and
    tables of its arguments and options with their defaults and help texts.
    """
    parser = parser if parser is not None else build_parser()
    lines = [
        "# Command-line reference",
        "",
        "<!-- Generated from the argparse parsers by allocation/cli_reference.py; "
        f"do not edit. Regenerate with: {REGENERATE_COMMAND} -->",
        "",
        "Every command also accepts `-h` / `--help`, which prints its options and exits.",
        "[The user guide](guide.md) explains the inputs, the numbers and the outputs.",
    ]
    for command_parser, help_text in _walk(parser, None):
        lines += ["", *_render_command(command_parser, help_text)]
    return "\n".join(lines) + "\n"


def _walk(
    parser: argparse.ArgumentParser, help_text: str | None
) -> Iterator[tuple[argparse.ArgumentParser, str | None]]:
    """Yield `parser` and then every subcommand parser below it, depth first."""
    yield parser, help_text
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                yield from _walk(subparser, helps.get(name))


def _render_command(parser: argparse.ArgumentParser, help_text: str | None) -> list[str]:
    depth = parser.prog.count(" ")
    lines = [f"{'#' * min(depth + 2, 4)} `{parser.prog}`", ""]
    summary = parser.description or help_text
    if summary:
        lines += [_escape(summary), ""]
    lines += ["```text", *_usage(parser), "```"]

    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for subparsers in subcommands:
        lines += ["", "| command | what it does |", "| --- | --- |"]
        for choice in subparsers._choices_actions:
            lines.append(f"| `{parser.prog} {choice.dest}` | {_cell(choice.help or '')} |")

    positionals = [
        a
        for a in parser._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]
    if positionals:
        lines += ["", "| argument | description |", "| --- | --- |"]
        lines += [f"| `{_positional_usage(a)}` | {_cell(_help(a))} |" for a in positionals]

    for title, actions in _option_groups(parser):
        if title is not None:
            lines += ["", f"Options for {_escape(title)}:"]
        lines += ["", "| option | default | description |", "| --- | --- | --- |"]
        for action in actions:
            flags = ", ".join(f"`{_option_usage(action, flag)}`" for flag in action.option_strings)
            lines.append(f"| {flags} | {_default(action)} | {_cell(_help(action))} |")
    return lines


def _option_groups(
    parser: argparse.ArgumentParser,
) -> list[tuple[str | None, list[argparse.Action]]]:
    """Group the options as the parser does; the first group is the untitled default."""
    groups: list[tuple[str | None, list[argparse.Action]]] = []
    for index, group in enumerate(parser._action_groups):
        actions = [
            a
            for a in group._group_actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)
        ]
        if actions:
            # argparse's first two groups are the positionals and the plain options.
            groups.append((None if index < 2 else group.title, actions))
    return groups


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    parts = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            parts.append(f"{action.metavar} ...")
        elif action.option_strings:
            parts.append(f"[{_option_usage(action, action.option_strings[-1])}]")
        else:
            parts.append(_positional_usage(action))
    # Wrap between the parts, never inside one, as argparse does.
    indent = " " * (len(parser.prog) + 1)
    lines = [parser.prog]
    for part in parts:
        if len(lines[-1]) + 1 + len(part) > _USAGE_WIDTH and lines[-1].strip():
            lines.append(indent + part)
        else:
            lines[-1] += " " + part
    return lines


def _option_usage(action: argparse.Action, flag: str) -> str:
    if action.nargs == 0:
        return flag
    return f"{flag} {_metavar(action)}"


def _positional_usage(action: argparse.Action) -> str:
    metavar = _metavar(action)
    if action.nargs == "+":
        return f"{metavar} [{metavar} ...]"
    if action.nargs == "*":
        return f"[{metavar} ...]"
    if action.nargs == "?":
        return f"[{metavar}]"
    return metavar


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    # argparse's own convention: options in capitals, positionals as their dest.
    return action.dest.upper() if action.option_strings else action.dest


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:
        text = text % {**vars(action), "default": action.default}
    choices = [str(choice) for choice in action.choices or []]
    if isinstance(action.metavar, str) and any(choice not in text for choice in choices):
        text += f" (one of: {', '.join(choices)})"
    return text


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._VersionAction):
        return ""
    if action.default is None or action.default is False or action.default == []:
        return ""
    return f"`{action.default}`"


def _escape(text: str) -> str:
    """Escape what markdown would take for HTML tags or emphasis outside `code` spans."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "\\<").replace(">", "\\>").replace("*", "\\*")
    return "`".join(parts)


def _cell(text: str) -> str:
    return _escape(" ".join(text.split())).replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> int:
    """Write the reference to the file given as the one argument, or print it."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) > 1:
        print(
            f"usage: python -m allocation.cli_reference [OUTPUT.md]; got {arguments}",
            file=sys.stderr,
        )
        return 2
    text = render_cli_reference()
    if arguments:
        Path(arguments[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
