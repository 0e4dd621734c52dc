"""The ``allocation profile`` command: write a workflow model from measurement.

``allocation profile MODULE:PIPELINE`` times a pipeline declared with
`allocation.profile.Pipeline`; ``allocation profile --from-prefect FLOW`` reads the run
history of a Prefect flow (`allocation.profile_prefect`). Errors propagate to
`allocation.cli.main`, which turns an `InputError` into exit status 2 and other errors
into 1. NumPy, the catalog and Prefect are imported when the command runs, so that
building the parser stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from allocation.errors import AllocationError, InputError

if TYPE_CHECKING:
    from allocation.catalog import CpuCatalog
    from allocation.profile import Pipeline, WorkflowDraft

__all__ = ["add_profile_command", "run_profile_command"]

EXIT_OK = 0

_IDLE_BLAS_THREADS = {
    "OPENBLAS_THREAD_TIMEOUT": "4",
    "OMP_WAIT_POLICY": "PASSIVE",
}
"""Settings that make BLAS worker threads sleep soon after a call instead of spinning.

A spinning worker counts as CPU time of the stages that follow a BLAS call: with NumPy
2.4's OpenBLAS on a 2-CPU machine, stages after a matrix product measured a CPU/wall
ratio of 1.5 to 2.1 by default and 0.95 to 1.0 with OPENBLAS_THREAD_TIMEOUT=4.
OMP_WAIT_POLICY does the same for OpenMP builds of BLAS. They take effect only when set
before NumPy loads, and a value the user set is kept.
"""

_REPEAT = 10
_WARMUP = 1
_RUNS = 10


def add_profile_command(commands: argparse._SubParsersAction) -> None:
    """Add the ``profile`` command to the `allocation` parser."""
    profile = commands.add_parser(
        "profile",
        help="measure a Python pipeline, or read a Prefect flow's runs, and write a workflow",
        description="Write a workflow model from measurement. With MODULE:PIPELINE, import "
        "the allocation.profile.Pipeline named there, run it --warmup times, then time each "
        "stage over --repeat runs (median wall time; threads from process CPU time / wall "
        "time) and measure each hand-over (numpy nbytes, len of bytes, else pickle length). "
        "With --from-prefect FLOW, read the flow's recent completed runs from the Prefect "
        "server instead: stages are its tasks, edges follow the task inputs and sizes are "
        "the persisted results' sizes. measured_on is this machine's CPU, looked up in the "
        "CPU catalog, unless --cpu names it. The model is checked with the workflow loader "
        "before it is written; docs/profiling.md has examples.",
    )
    profile.add_argument(
        "pipeline",
        nargs="?",
        default=None,
        metavar="MODULE:PIPELINE",
        help="the pipeline to profile, e.g. examples.detection_pipeline:PIPELINE; MODULE is "
        "imported with the current folder on the import path",
    )
    profile.add_argument(
        "--from-prefect",
        default=None,
        metavar="FLOW",
        help="build the model from the runs of the Prefect flow named FLOW instead",
    )
    profile.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="workflow file to write (default: print the YAML to standard output)",
    )
    profile.add_argument(
        "--cpu",
        default=None,
        metavar="CPU",
        help="the CPU the times are measured on: a catalog name or alias, or an inline CPU "
        "such as '{name: My PC, cores: 8, single_thread: 2900}' (default: this machine's "
        "CPU as the operating system names it, looked up in the catalog)",
    )
    profile.add_argument(
        "--catalog", type=Path, default=None, metavar="DIR", help="catalog folder with cpus.parquet"
    )
    measured = profile.add_argument_group("profiling a pipeline")
    measured.add_argument(
        "--repeat",
        type=_positive,
        default=None,
        metavar="N",
        help=f"timed runs of the whole pipeline; time_s is the median (default: {_REPEAT})",
    )
    measured.add_argument(
        "--warmup",
        type=_count,
        default=None,
        metavar="N",
        help=f"untimed runs before the timed ones (default: {_WARMUP})",
    )
    history = profile.add_argument_group("reading a Prefect flow's runs")
    history.add_argument(
        "--runs",
        type=_positive,
        default=None,
        metavar="N",
        help=f"most recent completed flow runs to read; time_s is the median (default: {_RUNS})",
    )
    history.add_argument(
        "--default-bytes",
        type=_count,
        default=None,
        metavar="N",
        help="size in bytes to assume, with a warning, for a task whose result is not "
        "persisted (default: such a task is an error)",
    )
    profile.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Prefect's logs and tracebacks of unexpected errors",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def run_profile_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``allocation profile`` with parsed arguments; return the exit status."""
    if args.pipeline is not None and "numpy" not in sys.modules:
        for key, value in _IDLE_BLAS_THREADS.items():
            os.environ.setdefault(key, value)
    from allocation.catalog import load_cpu_catalog
    from allocation.outputs import check_yaml_output_file
    from allocation.profile import detect_local_cpu, render_workflow, write_workflow
    from allocation.study import default_catalog_dir

    # Check the arguments and the CPU before anything runs: bad input writes nothing.
    if (args.pipeline is None) == (args.from_prefect is None):
        raise InputError(
            "give either MODULE:PIPELINE or --from-prefect FLOW, not both and not neither",
            file="command line",
        )
    _check_mode_options(args)
    if args.out is not None:
        check_yaml_output_file(args.out)
    catalog_dir = args.catalog if args.catalog is not None else default_catalog_dir()
    catalog = load_cpu_catalog(Path(catalog_dir) / "cpus.parquet")
    local = detect_local_cpu()
    command = shlex.join(["allocation", *argv])

    if args.pipeline is not None:
        draft = _profile_pipeline(args, catalog, local, command)
        warnings: list[str] = []
    else:
        draft, warnings = _profile_prefect_flow(args, catalog, local, command)

    text = render_workflow(draft)
    write_workflow(text, args.out, catalog=catalog)
    for warning in warnings:
        print(warning, file=sys.stderr)
    _print_summary(draft, args.out)
    return EXIT_OK


def _check_mode_options(args: argparse.Namespace) -> None:
    """Reject options of the other mode, then fill in the defaults of this one."""
    if args.pipeline is not None:
        given, other = ["--runs", "--default-bytes"], (args.runs, args.default_bytes)
    else:
        given, other = ["--repeat", "--warmup"], (args.repeat, args.warmup)
    for option, value in zip(given, other, strict=True):
        if value is not None:
            mode = "--from-prefect" if args.pipeline is None else "MODULE:PIPELINE"
            raise InputError(
                f"{option} does not apply with {mode}; leave it out", file="command line"
            )
    args.repeat = _REPEAT if args.repeat is None else args.repeat
    args.warmup = _WARMUP if args.warmup is None else args.warmup
    args.runs = _RUNS if args.runs is None else args.runs


def _profile_pipeline(
    args: argparse.Namespace, catalog: CpuCatalog, local: Any, command: str
) -> WorkflowDraft:
    from allocation.profile import draft_from_profile, profile_pipeline, resolve_measured_on

    pipeline = _load_pipeline(args.pipeline)
    measured_on = resolve_measured_on(args.cpu, catalog, local=local)
    print(
        f"Profiling {pipeline.workflow}: {len(pipeline.stages)} stages, {args.warmup} "
        f"warm-up and {args.repeat} timed runs",
        file=sys.stderr,
    )
    profile = profile_pipeline(pipeline, repeat=args.repeat, warmup=args.warmup)
    return draft_from_profile(profile, measured_on, local=local, command=command)


def _load_pipeline(reference: str) -> Pipeline:
    """Import ``MODULE:ATTRIBUTE`` and return the `Pipeline` it names."""
    from allocation.profile import Pipeline, PipelineError

    module_name, separator, attribute = reference.partition(":")
    if not separator or not module_name or not attribute:
        raise InputError(
            "expected MODULE:PIPELINE, such as examples.detection_pipeline:PIPELINE",
            file="command line",
            field="MODULE:PIPELINE",
            value=reference,
            has_value=True,
        )
    # Like `python -m`, import from the current folder first.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise AllocationError(f"importing {module_name} failed: {exc}") from exc
        raise InputError(
            f"module {exc.name!r} not found; run from the folder that contains it, or install it",
            file="command line",
            field="MODULE:PIPELINE",
            value=reference,
            has_value=True,
        ) from exc
    except PipelineError as exc:
        raise InputError(
            f"declares an invalid pipeline: {exc}", file=module_name, field=attribute
        ) from exc
    except Exception as exc:
        raise AllocationError(
            f"importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc

    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise InputError(
                f"module {module_name} has no attribute {attribute!r}",
                file="command line",
                field="MODULE:PIPELINE",
                value=reference,
                has_value=True,
            )
        found = getattr(found, part)
    if not isinstance(found, Pipeline):
        raise InputError(
            f"is a {type(found).__name__}, not an allocation.profile.Pipeline",
            file="command line",
            field="MODULE:PIPELINE",
            value=reference,
            has_value=True,
        )
    return found


def _profile_prefect_flow(
    args: argparse.Namespace, catalog: CpuCatalog, local: Any, command: str
) -> tuple[WorkflowDraft, list[str]]:
    from allocation.cli import _configure_prefect
    from allocation.local_server import start_unless_configured
    from allocation.profile import resolve_measured_on
    from allocation.profile_prefect import draft_from_history, read_flow_history

    measured_on = resolve_measured_on(args.cpu, catalog, local=local)
    measured_on_comment = (
        "named on the command line"
        if args.cpu is not None
        else f"this machine's CPU ({local.source}: {local.name}), assumed to have run the flow"
    )
    _configure_prefect(args.verbose)
    server = start_unless_configured()
    try:
        settings: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if server is not None:
            server.wait_until_ready()
            settings = server.settings()
        with settings:
            history = asyncio.run(read_flow_history(args.from_prefect, runs=args.runs))
    finally:
        if server is not None:
            server.close()
    return draft_from_history(
        history,
        measured_on,
        default_bytes=args.default_bytes,
        command=command,
        measured_on_comment=measured_on_comment,
    )


def _print_summary(draft: WorkflowDraft, out: Path | None) -> None:
    stream = sys.stderr if out is None else sys.stdout
    sizes: dict[str, int] = {}
    for edge in draft.edges:
        sizes[edge.source] = max(sizes.get(edge.source, 0), edge.size_bytes)
    print(f"  {'stage':<20} {'time_s':>10} {'threads':>7} {'output bytes':>14}", file=stream)
    for stage in draft.stages:
        out_bytes = f"{sizes[stage.id]:,}" if stage.id in sizes else "-"
        print(
            f"  {stage.id:<20} {stage.time_s:10.4g} {stage.threads:>7} {out_bytes:>14}",
            file=stream,
        )
    where = "standard output" if out is None else str(out)
    print(
        f"Wrote workflow {draft.workflow!r} to {where}: {len(draft.stages)} stages, "
        f"{len(draft.edges)} edges, measured_on checked against the catalog",
        file=stream,
    )
