"""Exceptions raised by allocation.

Hierarchy::

    AllocationError            base of every error the tool raises on purpose
    ├── InputError             an input file is invalid (CLI exit status 2)
    └── ProviderError          a pricing provider failed or returned bad data (exit 1)

`InputError` also inherits `ValueError`, so plain Python callers can catch it as one.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

__all__ = ["AllocationError", "InputError", "ProviderError", "format_value"]


class AllocationError(Exception):
    """Base class of the errors raised by allocation."""


class InputError(AllocationError, ValueError):
    """An input file is invalid.

    The message names the file, the path to the field (``stages[3].time_s``), the value
    found and what is expected, so that the user can fix the file without a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        value: Any = None,
        has_value: bool = False,
    ) -> None:
        self.file = None if file is None else str(file)
        self.field = field
        self.value = value
        self.has_value = has_value
        self.detail = message
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = self.file or "<input>"
        if self.field:
            where += f": {self.field}"
        text = f"{where}: "
        if self.has_value:
            text += f"invalid value {format_value(self.value)}: "
        return text + self.detail


class ProviderError(AllocationError):
    """A pricing provider failed, or returned arrays of the wrong shape or value."""


def format_value(value: Any, *, limit: int = 80) -> str:
    """Return a short, single-line representation of a value for an error message."""
    if value is None or isinstance(value, bool):
        # Input files are YAML or JSON, so their spelling: null, true, false.
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, PurePath):
        # A path is shown whole: a shortened one would not say which folder is meant.
        return repr(str(value)).replace("\n", "\\n")
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("\n", "\\n")
