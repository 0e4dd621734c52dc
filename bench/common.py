"""Shared pieces of the benchmarks: result tables, timing, machine and version facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

VERSIONED_PACKAGES = ("numpy", "numba", "prefect", "moocore", "paretoset", "pymoo")


@dataclass
class Table:
    """One table of results: a title, column names, rows of cells and notes under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """Figures the page's text quotes, by name (medians in seconds, ratios)."""


@dataclass(frozen=True)
class Settings:
    """Sizes, repeats and time limit of one run: quick smoke sizes or the full ones."""

    quick: bool
    repeats: int
    time_limit_s: float
    """A baseline that took longer than this at one size is skipped at larger sizes."""


def median_time_s(function: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Call `function` `repeats` times; return the median wall time, all times and a result."""
    times = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, result


def machine() -> dict[str, str]:
    """Describe the CPU model, the cores and the memory of this machine."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": model,
        "cores available": str(cores),
        "memory": memory,
        "system": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    """Return the versions of Python and of the packages the benchmarks compare."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def format_seconds(seconds: float) -> str:
    """Format a duration with three significant digits and a unit."""
    if seconds < 0:
        return "-" + format_seconds(-seconds)
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_rate(per_s: float) -> str:
    """Format a rate such as assignments per second."""
    return f"{per_s:,.0f}" if per_s < 1e5 else f"{per_s:.3g}"
