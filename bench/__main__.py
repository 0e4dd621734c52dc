"""Run every benchmark module and write docs/benchmarks.md.

Usage: ``uv run --group bench python -m bench [--quick] [--only NAME ...] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path
from types import ModuleType

import bench
from bench.common import Settings, Table, machine, versions
from bench.summary import render_page

REPO = Path(__file__).resolve().parent.parent


def discover() -> list[ModuleType]:
    """Import every ``bench/bench_*.py`` module, in name order."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(bench.__path__) if info.name.startswith("bench_")
    )
    return [importlib.import_module(f"bench.{name}") for name in names]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the page; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these modules (e.g. bench_pareto)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="page to write"
    )
    args = parser.parse_args(argv)
    settings = (
        Settings(quick=True, repeats=1, time_limit_s=5.0)
        if args.quick
        else Settings(quick=False, repeats=3, time_limit_s=60.0)
    )

    results: dict[str, list[Table]] = {}
    started = time.perf_counter()
    for module in discover():
        name = module.__name__.rsplit(".", 1)[1]
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module_started = time.perf_counter()
        results[name] = module.run(settings)
        print(f"  {name}: {time.perf_counter() - module_started:.1f} s", file=sys.stderr)

    command = "uv run --group bench python -m bench" + (" --quick" if args.quick else "")
    if args.only:
        command += " --only " + " ".join(args.only)
    page = render_page(
        results,
        command=command,
        machine=machine(),
        versions=versions(),
        settings=settings,
        total_s=time.perf_counter() - started,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
