"""A progress line on the terminal for long sweeps; silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressLine"]


class ProgressLine:
    """Redraw one line on `stream` with the share done, the rate and the time left."""

    def __init__(self, total: int, *, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def update(self, done: int) -> None:
        """Redraw the line at most ten times a second, and always at the end."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < self.total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        share = done / self.total if self.total else 1.0
        text = (
            f"\r{self.label}: {done:,}/{self.total:,} assignments ({share:6.1%}), "
            f"{rate:,.0f}/s, {left:,.1f} s left"
        )
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        """End the line so that later output starts on a new one."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
