"""The `allocation` command line.

Exit status: 0 on success, 2 for invalid input (the message names the file, the field,
the value and what is expected), 1 for any other failure, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from allocation import __version__
from allocation.cli_calibrate import (
    add_calibration_commands,
    join_negative_range,
    run_calibrate,
    run_whatif,
)
from allocation.cli_catalog import add_catalog_commands, run_catalog_command
from allocation.cli_profile import add_profile_command, run_profile_command
from allocation.errors import AllocationError, InputError
from allocation.local_server import LocalServer, configured_api_url, start_unless_configured
from allocation.model import OBJECTIVES
from allocation.runners import DEFAULT_RUNNER, RUNNER_NAMES

if TYPE_CHECKING:
    from flows.reevaluate import StudyStatus

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID_INPUT = 2
EXIT_INTERRUPTED = 130

_MAX_PRINTED_CANDIDATES = 20

# Prefect settings applied unless the user set them: no telemetry and no log lines from
# the client or the temporary server, so the terminal shows the tool's own output. Errors
# still reach the user: they propagate out of the flow and the CLI prints them.
_NO_TELEMETRY = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}
# Prefect waits 20 s by default for its temporary server, and a loaded 2-core machine
# can take longer. A slow start is better than a failed sweep.
_PREFECT_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
_QUIET_PREFECT = {
    "PREFECT_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `allocation` command."""
    parser = argparse.ArgumentParser(
        prog="allocation",
        description=(
            "Estimate latency, data moved and cloud cost for every assignment of an "
            "inference flow's stages to devices, and find the Pareto front."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sweep = commands.add_parser(
        "sweep",
        help="run the sweep flow on a workflow and a system and write the outputs",
        description="Run the Prefect flow `sweep`: estimate every allowed assignment, "
        "find the exact Pareto front, recommend a candidate and write front.parquet, "
        "patterns.parquet, report.md, report.html, chart.html, chart.png, "
        "breakdown.html, breakdown.png, placement.html, placement.png and run.json; "
        "with --uncertainty, also robustness.parquet.",
    )
    sweep.add_argument("workflow", type=Path, help="workflow file (YAML or JSON)")
    sweep.add_argument(
        "system",
        type=Path,
        nargs="+",
        help="system file (YAML or JSON); with several, the sweeps run at the same time and "
        "--out is the folder that gets one output folder per system and summary.md",
    )
    sweep.add_argument(
        "--catalog",
        type=Path,
        default=None,
        metavar="DIR",
        help="catalog folder with cpus.parquet (default: $ALLOCATION_CATALOG_DIR, "
        "./catalogs, or the catalogs shipped with the tool)",
    )
    sweep.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: results/<workflow>--<system>); the files of an "
        "earlier run there are replaced only once every new file is written",
    )
    sweep.add_argument(
        "--provider-timeout-s",
        type=_seconds,
        default=None,
        metavar="S",
        # The default is allocation.pricing's; that module is not imported here, because
        # it loads NumPy and the help should come up fast.
        help="time limit of one call to a pricing provider, in seconds; a provider that "
        "takes longer fails the sweep with exit status 1 (default: "
        "$ALLOCATION_PROVIDER_TIMEOUT_S or 60; 0 turns the limit off)",
    )
    sweep.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="assignments per Prefect task (default: chosen from the space size)",
    )
    sweep.add_argument(
        "--max-patterns",
        type=_positive_int,
        default=1_000_000,
        metavar="N",
        help="rows kept in patterns.parquet; larger spaces are sampled uniformly "
        "(default: 1000000)",
    )
    explain = sweep.add_argument_group("explaining the candidates")
    explain.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="FILE",
        help="placements to compare with the front, e.g. the current design (a YAML or "
        "JSON file with a top-level `compare:` list; see docs/guide.md)",
    )
    explain.add_argument(
        "--max-latency-s",
        type=_limit,
        default=None,
        metavar="S",
        help="latency limit in seconds; overrides requirements.max_latency_s of the system",
    )
    explain.add_argument(
        "--max-cost-usd",
        type=_limit,
        default=None,
        metavar="USD",
        help="limit on the cost of one run in USD; overrides requirements.max_cost_usd",
    )
    explain.add_argument(
        "--max-monthly-cost-usd",
        type=_limit,
        default=None,
        metavar="USD",
        help="limit on the monthly bill in USD (needs runs_per_month); overrides "
        "requirements.max_monthly_cost_usd",
    )
    explain.add_argument(
        "--min-throughput-fps",
        type=_limit,
        default=None,
        metavar="FPS",
        help="smallest throughput of a stream in frames per second; adds the period_s and "
        "throughput_fps columns; overrides requirements.min_throughput_fps",
    )
    explain.add_argument(
        "--minimise",
        choices=list(OBJECTIVES),
        default=None,
        metavar="METRIC",
        help="metric the recommendation minimises among the candidates that meet the "
        f"limits: {', '.join(OBJECTIVES)} (default: cost_usd; with no limits and no "
        "--minimise, the knee of a latency-cost front is recommended)",
    )
    explain.add_argument(
        "--explain",
        action="append",
        type=_pair,
        default=[],
        metavar="A:B",
        help="also explain how candidate B differs from candidate A (labels as in the "
        "report); repeat for more pairs. The report explains neighbouring candidates "
        "anyway, up to 20 pairs nearest the recommended one",
    )
    explain.add_argument(
        "--share-url",
        default=None,
        metavar="URL",
        help="where the output folder is shared (a URL or path); in a flow run, a "
        "Prefect link artifact then points to report.html there",
    )
    sweep.add_argument(
        "--method",
        choices=["auto", "exhaustive", "exact"],
        default="auto",
        help="exhaustive: estimate every assignment; exact: build the front without "
        "enumerating, where that is provably exact (latency and per-run costs that add up "
        "along the workflow); auto (default): exact from 16,777,216 assignments when it "
        "applies, else exhaustive",
    )
    sweep.add_argument(
        "--uncertainty",
        type=Path,
        default=None,
        metavar="FILE",
        help="uncertainty file (YAML or JSON) with the spread of stage times, bandwidths "
        "and prices: run a Monte Carlo over the front's candidates and write "
        "robustness.parquet and a Robustness section in the report (docs/robustness.md)",
    )
    runners = sweep.add_argument_group("where the chunks run (docs/distributed.md)")
    runners.add_argument(
        "--runner",
        choices=list(RUNNER_NAMES),
        default=DEFAULT_RUNNER,
        help="thread (default), process, dask or ray; dask starts a local cluster on "
        "127.0.0.1 unless --dask-address is given, ray needs --ray-address",
    )
    runners.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="chunks at a time: the size of the pool or local cluster (default: the cores "
        "of this machine; on a cluster at an address, its CPUs)",
    )
    runners.add_argument(
        "--dask-address",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler to run the chunks on, such as tcp://10.0.0.5:8786",
    )
    runners.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="Ray cluster to run the chunks on, such as ray://10.0.0.5:10001 or auto",
    )
    sweep.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Prefect's logs and tracebacks of unexpected errors",
    )

    validate = commands.add_parser(
        "validate",
        help="check workflow, system, studies, measurements and uncertainty files without sweeping",
        description="Check workflow and system files. With a workflow and a system "
        "together, also check that pins, allowed devices, CPUs, links and pricing fit. A "
        "studies file (top-level 'studies') and a measurements file (top-level "
        "'measurements') are recognised by their keys and checked on their own, and so is "
        "an uncertainty file (top-level 'samples', 'stage_time', 'bandwidth', 'price', or "
        "'stages' as a mapping).",
    )
    validate.add_argument(
        "files",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="workflow, system, studies, measurements or uncertainty files to check",
    )
    validate.add_argument(
        "--catalog", type=Path, default=None, metavar="DIR", help="catalog folder with cpus.parquet"
    )
    add_catalog_commands(commands)
    _add_schedule_commands(commands)
    add_profile_command(commands)
    add_calibration_commands(commands)
    return parser


def _add_schedule_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``reevaluate`` and ``serve``, which sweep the studies of a studies file."""
    reevaluate = commands.add_parser(
        "reevaluate",
        help="sweep again the studies of a studies file whose inputs changed",
        description="Run the Prefect flow `reevaluate` once: for every study of the studies "
        "file, compare the hashes of its inputs (workflow, system, the CPU rows and price "
        "rows it uses, the provider and sweep options) with those of its last evaluation "
        "in OUT/state.json; sweep the changed studies into OUT/<study>/ and write diff.md "
        "there. See docs/scheduling.md.",
    )
    reevaluate.add_argument("studies", type=Path, help="studies file (YAML or JSON)")
    _add_out_option(reevaluate)
    reevaluate.add_argument(
        "--force", action="store_true", help="sweep every study, changed or not"
    )
    reevaluate.add_argument(
        "-v", "--verbose", action="store_true", help="show Prefect's logs and tracebacks"
    )

    serve = commands.add_parser(
        "serve",
        help="serve the reevaluate flow on a schedule (needs a Prefect server)",
        description="Create a deployment of the flow `reevaluate` for a studies file with a "
        "cron schedule, and run its scheduled runs in this process until interrupted "
        "(Prefect's flow.serve). PREFECT_API_URL must name a running Prefect server, such as "
        "http://127.0.0.1:4200/api. See docs/scheduling.md.",
    )
    serve.add_argument("studies", type=Path, help="studies file (YAML or JSON)")
    serve.add_argument(
        "--cron",
        required=True,
        metavar="EXPR",
        help='cron expression of the schedule, five fields, such as "0 6 * * *" (06:00 daily)',
    )
    serve.add_argument(
        "--timezone",
        default="UTC",
        metavar="TZ",
        help="IANA time zone of the cron expression, such as Asia/Tokyo (default: UTC)",
    )
    serve.add_argument(
        "--name",
        default="reevaluate-studies",
        metavar="NAME",
        help="deployment name (default: reevaluate-studies)",
    )
    _add_out_option(serve)
    serve.add_argument(
        "-v", "--verbose", action="store_true", help="show Prefect's logs and tracebacks"
    )


def _add_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="folder of state.json and of one output folder per study (default: results)",
    )


def _limit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _pair(text: str) -> tuple[str, str]:
    first, separator, second = text.partition(":")
    labels = (first.strip().upper(), second.strip().upper())
    if not separator or not all(label.isalpha() and label.isascii() for label in labels):
        raise argparse.ArgumentTypeError(
            f"expected two candidate labels separated by a colon, such as A:C, got {text!r}"
        )
    if labels[0] == labels[1]:
        raise argparse.ArgumentTypeError(f"names candidate {labels[0]} twice; name two")
    return labels


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["whatif"]:
        argv = join_negative_range(argv)
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    try:
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "profile":
            return run_profile_command(args, argv)
        if args.command == "catalog":
            return run_catalog_command(args)
        if args.command == "reevaluate":
            return _reevaluate(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "calibrate":
            return run_calibrate(args)
        if args.command == "whatif":
            return run_whatif(args)
        return _validate(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AllocationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        if verbose:
            raise
        hint = "run again with --verbose for details"
        if "ephemeral Prefect API server" in str(exc):
            hint = (
                "Prefect's temporary server did not start in time; raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (now "
                f"{os.environ.get('PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS')} s), "
                "or start a server and set PREFECT_API_URL (docs/guide.md, section 5)"
            )
        print(f"error: {type(exc).__name__}: {exc} ({hint})", file=sys.stderr)
        return EXIT_FAILURE


def _sweep(args: argparse.Namespace) -> int:
    from allocation.pricing import provider_time_limit

    # The limit applies to the providers loaded inside the block: here and in the flow.
    if args.provider_timeout_s is None:
        return _sweep_within_limits(args)
    with provider_time_limit(args.provider_timeout_s):
        return _sweep_within_limits(args)


def _sweep_within_limits(args: argparse.Namespace) -> int:
    from allocation.exact import choose_method
    from allocation.outputs import checked_output_folder, share_link
    from allocation.runners import check_runner
    from allocation.study import load_study

    # Validate before starting Prefect: bad input fails in milliseconds, writes nothing.
    address = _runner_address(args)
    check_runner(args.runner, workers=args.workers, address=address)
    requirements = {
        "max_latency_s": args.max_latency_s,
        "max_cost_usd": args.max_cost_usd,
        "max_monthly_cost_usd": args.max_monthly_cost_usd,
        "min_throughput_fps": args.min_throughput_fps,
        "minimise": args.minimise,
    }
    studies = [
        load_study(
            args.workflow,
            system,
            args.catalog,
            compare_path=args.compare,
            requirements=requirements,
        )
        for system in args.system
    ]
    share_link(args.share_url, "report.html")
    uncertainty = None
    if args.uncertainty is not None:
        from allocation.uncertainty import check_stage_overrides, load_uncertainty

        uncertainty = load_uncertainty(args.uncertainty)
        for study in studies:
            problem = study.problem
            check_stage_overrides(uncertainty, problem.stage_ids, workflow=problem.workflow_name)
    out_dirs = _output_folders(args, studies)
    methods = []
    for study in studies:
        method, method_reason = choose_method(study.problem, args.method)
        methods.append(method)
        print(
            f"{study.problem.workflow_name} on {study.problem.system_name}: "
            f"{study.problem.space_size:,} assignments, {method} method ({method_reason}); "
            "starting the Prefect flow",
            file=sys.stderr,
        )
        if uncertainty is not None:
            samples = uncertainty.spec.samples
            print(
                f"  then a Monte Carlo of {_count(samples, 'sample')}, each the front of "
                f"{study.problem.space_size:,} assignments; the first sample's time must "
                f"project the run within max_time_s ({uncertainty.spec.max_time_s:g} s)",
                file=sys.stderr,
            )

    with contextlib.ExitStack() as folders:
        for out_dir in out_dirs:
            folders.enter_context(checked_output_folder(out_dir, given=args.out is not None))
        _configure_prefect(args.verbose)
        server = start_unless_configured()
        try:
            return _run_sweep_flows(args, studies, methods, out_dirs, address, server)
        finally:
            if server is not None:
                server.close()


def _reevaluate(args: argparse.Namespace) -> int:
    from allocation.studies import load_studies

    # Validate before starting Prefect: bad input fails fast and writes nothing.
    studies = load_studies(args.studies)
    _check_out_folder(args.out)
    print(
        f"{args.studies}: {_count(len(studies.studies), 'study', 'studies')}; "
        "starting the Prefect flow",
        file=sys.stderr,
    )
    _configure_prefect(args.verbose)
    server = start_unless_configured()
    try:
        from flows.reevaluate import reevaluate

        settings: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if server is not None:
            server.wait_until_ready()
            settings = server.settings()
        message = (
            f"interrupted: {args.out}/state.json keeps the studies evaluated so far; run the "
            "same command again to go on"
        )
        previous = signal.signal(signal.SIGINT, lambda signum, frame: _stop_sweep(message, server))
        try:
            with settings:
                outcome = reevaluate(str(args.studies), str(args.out), force=args.force)
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        if server is not None:
            server.close()
    for status in outcome.studies:
        print(_status_line(status))
    print(f"Swept {_count(outcome.sweeps_run, 'study', 'studies')}; state in {outcome.state_path}")
    return EXIT_OK


def _status_line(status: StudyStatus) -> str:
    """Return the line that `reevaluate` prints for a study (a `StudyStatus`).

    A study without a recommended candidate reads "recommended none", as in diff.md.
    """
    recommended = status.recommended if status.recommended is not None else "none"
    diff = f"; changes in {status.diff_path}" if status.diff_path else ""
    return f"{status.name}: {status.status}, recommended {recommended}{diff}"


def _serve(args: argparse.Namespace) -> int:
    deployment = build_served_deployment(args)
    from prefect import serve

    print(
        f"Serving deployment reevaluate/{deployment.name}: cron {args.cron!r} "
        f"({args.timezone}), studies {args.studies}; press Ctrl+C to stop",
        file=sys.stderr,
    )
    serve(deployment)
    return EXIT_OK


def build_served_deployment(args: argparse.Namespace) -> Any:
    """Check the arguments of ``allocation serve`` and build its deployment, unserved.

    Raises
    ------
    InputError
        For an invalid studies file, cron expression or time zone, or when no Prefect
        server is configured.
    """
    from pydantic import ValidationError

    from allocation.studies import load_studies

    load_studies(args.studies)
    _check_out_folder(args.out)
    if not args.name.strip():
        raise InputError("is empty; give a deployment name", file="command line", field="--name")
    _configure_prefect(args.verbose)
    from flows.reevaluate import build_deployment

    try:
        deployment = build_deployment(
            args.studies, cron=args.cron, timezone=args.timezone, out_dir=args.out, name=args.name
        )
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        option = "--timezone" if "timezone" in error["loc"] else "--cron"
        expected = (
            "an IANA time zone such as UTC or Asia/Tokyo"
            if option == "--timezone"
            else "a cron expression of five fields (minute hour day month weekday), such as "
            '"0 6 * * *" for 06:00 every day'
        )
        raise InputError(
            f"expected {expected}",
            file="command line",
            field=option,
            value=args.timezone if option == "--timezone" else args.cron,
            has_value=True,
        ) from None
    if not (os.environ.get("PREFECT_API_URL") or configured_api_url()):
        raise InputError(
            "is not set: serving a schedule needs a running Prefect server. Start one with "
            "`uv run prefect server start --host 127.0.0.1` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (docs/scheduling.md)",
            file="environment",
            field="PREFECT_API_URL",
        )
    return deployment


def _check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("--out names an existing file; give a folder for the outputs", file=out)


def _warm_up(args: argparse.Namespace, studies: list[Any], methods: list[str]) -> None:
    """Load the flow's modules, vl-convert and the compiled engine before the flow runs.

    This runs while the temporary Prefect server boots (`allocation.local_server`).
    """
    from allocation.charts import warm_up as warm_up_charts

    # vl-convert releases the GIL, so its start overlaps the imports and the engine's.
    charts_ready = threading.Thread(target=warm_up_charts, name="warm-up-charts", daemon=True)
    charts_ready.start()
    from allocation.exact import EXACT_SAMPLE
    from allocation.sweep import warm_up
    from flows.sweep import sweep  # noqa: F401  (the import itself is the warm-up)

    for study, method in zip(studies, methods, strict=True):
        kept_rows = (
            args.max_patterns if method == "exhaustive" else min(args.max_patterns, EXACT_SAMPLE)
        )
        space_size = study.problem.space_size
        warm_up(
            study.problem,
            sample_fraction=1.0 if space_size <= kept_rows else kept_rows / space_size,
        )
    charts_ready.join()


def _run_sweep_flows(
    args: argparse.Namespace,
    studies: list[Any],
    methods: list[str],
    out_dirs: list[Path],
    address: str | None,
    server: LocalServer | None,
) -> int:
    """Warm up while the server starts, then run the sweep flow of every system."""
    _warm_up(args, studies, methods)
    from flows.sweep import sweep

    if server is not None:
        server.wait_until_ready()

    def settings() -> contextlib.AbstractContextManager[Any]:
        # Each sweep thread enters its own settings, so that every flow reaches this
        # server rather than starting one of Prefect's.
        return contextlib.nullcontext() if server is None else server.settings()

    def run_one(system: Path, out_dir: Path, show_progress: bool) -> Any:
        with settings():
            return _sweep_one(system, out_dir, show_progress)

    def _sweep_one(system: Path, out_dir: Path, show_progress: bool) -> Any:
        return sweep(
            workflow_path=str(args.workflow),
            system_path=str(system),
            catalog_dir=None if args.catalog is None else str(args.catalog),
            out_dir=str(out_dir),
            chunk_size=args.chunk_size,
            max_patterns=args.max_patterns,
            show_progress=show_progress,
            compare_path=None if args.compare is None else str(args.compare),
            requirements={
                key: value
                for key, value in {
                    "max_latency_s": args.max_latency_s,
                    "max_cost_usd": args.max_cost_usd,
                    "max_monthly_cost_usd": args.max_monthly_cost_usd,
                    "min_throughput_fps": args.min_throughput_fps,
                    "minimise": args.minimise,
                }.items()
                if value is not None
            },
            explain=[f"{a}:{b}" for a, b in args.explain],
            share_url=args.share_url,
            method=args.method,
            runner=args.runner,
            workers=args.workers,
            runner_address=address,
            uncertainty_path=None if args.uncertainty is None else str(args.uncertainty),
        )

    previous = signal.signal(
        signal.SIGINT,
        lambda signum, frame: _stop_sweep(_interrupted_message(out_dirs), server),
    )
    started = time.perf_counter()
    try:
        if len(studies) == 1:
            outcome = run_one(args.system[0], out_dirs[0], True)
            _print_summary(outcome, studies[0], time.perf_counter() - started)
            return EXIT_OK
        return _sweep_systems(args, studies, out_dirs, address, run_one, started)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_message(out_dirs: Sequence[Path]) -> str:
    """Return the message of a sweep interrupted now, naming the stores with finished chunks."""
    from allocation.chunk_store import STORE_DIR_NAME, has_finished_chunks

    stores = [str(out_dir / STORE_DIR_NAME) for out_dir in out_dirs if has_finished_chunks(out_dir)]
    if not stores:
        return (
            "interrupted before any chunk finished, so nothing is kept; the same command "
            "starts again from the beginning"
        )
    return (
        f"interrupted: the finished chunks are kept in {', '.join(stores)}; run the same command "
        "again to resume"
    )


def _stop_sweep(message: str, server: LocalServer | None) -> None:
    """Stop a sweep on Ctrl-C: shut down the runners and Prefect's server, exit 130.

    Every chunk file in the store is whole (written, then renamed), so the process
    exits at once instead of unwinding. Unwinding would let Prefect report the crash to
    a server that may already be gone, and retry for a minute.
    """
    from allocation.runners import close_open_runners

    close_open_runners()
    if server is not None:
        server.stop()
    # A temporary server that Prefect started itself (when this process imported its
    # server code) is kept by port; stop every one.
    prefect_servers: Any = sys.modules.get("prefect.server.api.server")
    try:
        for prefect_server in list(prefect_servers.SubprocessASGIServer._instances.values()):
            prefect_server.stop()
    except Exception:
        pass  # The process exits anyway, and the server may already be gone.
    print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _runner_address(args: argparse.Namespace) -> str | None:
    for option, runner, address in (
        ("--dask-address", "dask", args.dask_address),
        ("--ray-address", "ray", args.ray_address),
    ):
        if address is not None and args.runner != runner:
            raise InputError(
                f"is for --runner {runner}; add --runner {runner} or drop {option}",
                file="command line",
                field=option,
                value=address,
                has_value=True,
            )
    return args.dask_address if args.runner == "dask" else args.ray_address


def _output_folders(args: argparse.Namespace, studies: list[Any]) -> list[Path]:
    """Return the output folder of every study; several share the parent --out."""
    from allocation.outputs import default_out_dir

    # default_out_dir rejects names that cannot be one folder name.
    defaults = [default_out_dir(s.problem.workflow_name, s.problem.system_name) for s in studies]
    names = [default.name for default in defaults]
    if len(studies) == 1:
        return [args.out if args.out is not None else defaults[0]]
    seen: dict[str, Path] = {}
    for name, system in zip(names, args.system, strict=True):
        if name in seen:
            raise InputError(
                f"names the same system as {seen[name]}; each system of one sweep needs "
                "its own system name, which names its output folder",
                file=system,
                field="system",
            )
        seen[name] = system
    parent = args.out if args.out is not None else Path("results")
    if parent.exists() and not parent.is_dir():
        raise InputError(
            "names an existing file; with several systems --out is the folder that "
            f"contains one output folder per system ({parent}/{names[0]}, ...), so give a "
            "folder",
            file="command line",
            field="--out",
            value=str(parent),
            has_value=True,
        )
    return [parent / name for name in names]


def _sweep_systems(
    args: argparse.Namespace,
    studies: list[Any],
    out_dirs: list[Path],
    address: str | None,
    run_one: Any,
    started: float,
) -> int:
    """Sweep several systems at the same time on one runner and write summary.md."""
    from concurrent.futures import ThreadPoolExecutor

    from allocation.runners import open_runner
    from flows.sweep import use_shared_runner

    outcomes: list[Any] = []
    errors: list[str | None] = []
    with (
        open_runner(args.runner, workers=args.workers, address=address) as runner,
        use_shared_runner(runner),
        ThreadPoolExecutor(len(studies), thread_name_prefix="sweep") as pool,
    ):
        futures = [
            pool.submit(run_one, system, out_dir, False)
            for system, out_dir in zip(args.system, out_dirs, strict=True)
        ]
        for future in futures:
            try:
                outcomes.append(future.result())
                errors.append(None)
            except Exception as exc:
                # One system's failure is reported in summary.md; the others still count.
                outcomes.append(None)
                errors.append(f"{type(exc).__name__}: {exc}")
    for outcome, study, error in zip(outcomes, studies, errors, strict=True):
        if outcome is not None:
            _print_summary(outcome, study, time.perf_counter() - started)
        else:
            print(
                f"error: {study.problem.workflow_name} on {study.problem.system_name}: {error}",
                file=sys.stderr,
            )
    parent = out_dirs[0].parent
    _write_systems_summary(parent, studies, outcomes, errors)
    print(f"Summary of {_count(len(studies), 'system')} in {parent}/summary.md")
    return EXIT_FAILURE if any(errors) else EXIT_OK


def _write_systems_summary(
    parent: Path, studies: list[Any], outcomes: list[Any], errors: list[str | None]
) -> None:
    import pandas as pd

    from allocation.outputs import write_parquet

    rows = []
    for study, outcome, error in zip(studies, outcomes, errors, strict=True):
        recommended = None
        if outcome is not None and outcome.recommended is not None:
            recommended = next(
                (row for row in outcome.candidates if row["label"] == outcome.recommended), None
            )
        rows.append(
            {
                "workflow": study.problem.workflow_name,
                "system": study.problem.system_name,
                "status": "ok" if error is None else f"failed: {error}",
                "space_size": study.problem.space_size,
                "front_points": None if outcome is None else len(outcome.candidates),
                "recommended": None if outcome is None else outcome.recommended,
                "latency_s": None if recommended is None else recommended["latency_s"],
                "cost_usd": None if recommended is None else recommended["cost_usd"],
                "out_dir": None if outcome is None else str(outcome.out_dir),
            }
        )
    table = pd.DataFrame(rows)
    parent.mkdir(parents=True, exist_ok=True)
    write_parquet(table, parent / "summary.parquet")
    lines = [
        f"# Sweep summary of {_count(len(rows), 'system')}",
        "",
        "| workflow | system | front points | recommended | latency_s | cost_usd | status |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for row in rows:
        cells = [
            row["workflow"],
            row["system"],
            "" if row["front_points"] is None else f"{row['front_points']:,}",
            row["recommended"] or "",
            "" if row["latency_s"] is None else f"{row['latency_s']:.6g}",
            "" if row["cost_usd"] is None else f"{row['cost_usd']:.6g}",
            row["status"].replace("|", "\\|").replace("\n", " "),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    (parent / "summary.md").write_text("\n".join(lines) + "\n", "utf-8")


def _configure_prefect(verbose: bool) -> None:
    # No usage data leaves the machine: the tool promises no network at run time.
    for key, value in {**_NO_TELEMETRY, **_PREFECT_DEFAULTS}.items():
        os.environ.setdefault(key, value)
    if verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
        return
    for key, value in _QUIET_PREFECT.items():
        os.environ.setdefault(key, value)
    # Prefect's temporary server logs shutdown noise through these loggers.
    for name in ("prefect", "uvicorn", "docket", "prefect.server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _print_summary(outcome: Any, study: Any, elapsed_s: float) -> None:
    from allocation.results import baseline_status

    problem = study.problem
    objectives = ", ".join(problem.objectives)
    estimate_s = outcome.timings_s.get("evaluate_s", float("nan"))
    print(
        f"{problem.workflow_name} on {problem.system_name}: estimated "
        f"{_count(outcome.space_size, 'assignment')} in {estimate_s:.3f} s "
        f"(flow run {elapsed_s:.1f} s including Prefect start-up)"
    )
    if outcome.memory_note:
        print(outcome.memory_note)

    # Candidates, at most _MAX_PRINTED_CANDIDATES of them.
    print(f"Pareto front over {objectives}: {_count(len(outcome.candidates), 'candidate')}")
    stream = bool(outcome.candidates) and "throughput_fps" in outcome.candidates[0]
    fps_header = f" {'fps':>8}" if stream else ""
    print(
        f"  {'':3} {'latency_s':>12} {'cost_usd':>14} {'monthly_usd':>12} {'comm_s':>10}"
        f"{fps_header}  placement"
    )
    printed_rows = outcome.candidates[:_MAX_PRINTED_CANDIDATES]
    for row in printed_rows:
        monthly = row.get("monthly_cost_usd")
        monthly_text = f"{monthly:12.2f}" if monthly is not None else f"{'-':>12}"
        fps_text = f" {row['throughput_fps']:8.4g}" if stream else ""
        print(
            f"  {row['label']:3} {row['latency_s']:12.6g} {row['cost_usd']:14.6g} "
            f"{monthly_text} {row['comm_s']:10.4g}{fps_text}  {row['placement']}"
        )
    if len(outcome.candidates) > len(printed_rows):
        print(f"  ... and {len(outcome.candidates) - len(printed_rows):,} more in front.parquet")

    # Baselines and where the outputs are.
    for baseline in outcome.baselines:
        relation = baseline_status(baseline)
        what = "compared placement" if baseline.get("kind") == "given" else "baseline"
        print(
            f"  {what} {baseline['baseline']}: latency {baseline['latency_s']:.6g} s, "
            f"cost {baseline['cost_usd']:.6g} USD, {relation}"
        )
    if outcome.recommended is not None:
        print(f"Recommended: {outcome.recommended}. {outcome.recommendation}")
    else:
        print(f"No recommendation. {outcome.recommendation}")
    if outcome.robustness:
        print(f"Robustness: {outcome.robustness}")
    sampled = " (a uniform sample)" if outcome.patterns_sampled else ""
    print(
        f"Outputs in {outcome.out_dir}/: {', '.join(outcome.files)}; patterns.parquet "
        f"contains {_count(outcome.patterns_written, 'row')}{sampled}"
    )


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


_UNCERTAINTY_KEYS = {"samples", "stage_time", "bandwidth", "price"}
"""Top-level keys that mark an uncertainty file (docs/robustness.md).

Its ``stages`` is a mapping, where a workflow's is a list, so that marks one too.
"""


def _validate_other_kind(path: Path, document: Any) -> bool:
    """Check a studies, measurements or uncertainty file with its own loader.

    Return False for other kinds. The top-level key ``studies`` or ``measurements``
    identifies the first two; a measurements file also has ``workflow`` and ``system``
    keys, so this check runs first. An uncertainty file has neither key, and one of
    `_UNCERTAINTY_KEYS` or a mapping under ``stages``.
    """
    from allocation.measurements import load_measurements
    from allocation.studies import load_studies
    from allocation.uncertainty import load_uncertainty

    if not isinstance(document, dict):
        return False
    if "studies" in document:
        studies = load_studies(path)
        print(
            f"ok: {path}: studies file, {_count(len(studies.studies), 'study', 'studies')} "
            "(allocation reevaluate and allocation serve sweep them)"
        )
        return True
    if "measurements" in document:
        measurements = load_measurements(path)
        print(
            f"ok: {path}: measurements {measurements.measurements!r} of workflow "
            f"{measurements.workflow!r} on system {measurements.system!r}, "
            f"{_count(len(measurements.runs), 'run')}, "
            f"{_count(len(measurements.link_tests), 'link test')} "
            "(allocation calibrate WORKFLOW SYSTEM MEASUREMENTS fits a system to them)"
        )
        return True
    spread_per_stage = isinstance(document.get("stages"), dict)
    if not {"workflow", "system"} & document.keys() and (
        _UNCERTAINTY_KEYS & document.keys() or spread_per_stage
    ):
        uncertainty = load_uncertainty(path)
        print(
            f"ok: {path}: uncertainty file, {_count(uncertainty.spec.samples, 'sample')} "
            "(allocation sweep --uncertainty FILE runs a Monte Carlo with it)"
        )
        return True
    return False


def _validate(args: argparse.Namespace) -> int:
    from allocation.catalog import load_cpu_catalog
    from allocation.compile import compile_problem, resolve_cpu
    from allocation.loading import load_system, load_workflow, read_document
    from allocation.study import check_some_assignment_fits, default_catalog_dir

    catalog_dir = args.catalog if args.catalog is not None else default_catalog_dir()
    catalog = None
    workflows = []
    systems = []
    failed = False
    for path in args.files:
        try:
            document = read_document(path)
            if _validate_other_kind(path, document):
                continue
            is_system = (
                isinstance(document, dict) and "system" in document and "workflow" not in document
            )
            if catalog is None:
                catalog = load_cpu_catalog(Path(catalog_dir) / "cpus.parquet")
            if is_system:
                system = load_system(path)
                for d, device in enumerate(system.devices):
                    resolve_cpu(device.cpu, catalog, file=path, field=f"devices[{d}].cpu")
                systems.append((path, system))
                print(
                    f"ok: {path}: system {system.system!r}, "
                    f"{_count(len(system.devices), 'device')}, "
                    f"{_count(len(system.links), 'link')}"
                )
            else:
                workflow = load_workflow(path)
                resolve_cpu(workflow.measured_on, catalog, file=path, field="measured_on")
                workflows.append((path, workflow))
                print(
                    f"ok: {path}: workflow {workflow.workflow!r}, "
                    f"{_count(len(workflow.stages), 'stage')}, "
                    f"{_count(len(workflow.edges), 'edge')}"
                )
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True

    if not failed and catalog is not None:
        for workflow_path, workflow in workflows:
            for system_path, system in systems:
                try:
                    problem = compile_problem(
                        workflow,
                        system,
                        catalog,
                        workflow_file=workflow_path,
                        system_file=system_path,
                        catalog_dir=Path(catalog_dir),
                    )
                    check_some_assignment_fits(
                        workflow, system, problem, system_file=str(system_path)
                    )
                except InputError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    failed = True
                    continue
                print(
                    f"ok: {workflow.workflow} on {system.system}: "
                    f"{problem.space_size:,} assignments"
                )
    return EXIT_INVALID_INPUT if failed else EXIT_OK


def run() -> None:
    """Run the command line as the `allocation` console script and exit."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if "prefect" not in sys.modules:
        # Skip interpreter shutdown when Prefect (and its atexit clean-up of the
        # temporary server) never started: after an early error, pyarrow's shutdown can
        # abort the process (status 134) and hide the exit status.
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
