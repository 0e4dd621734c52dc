"""The `allocation calibrate` and `allocation whatif` subcommands."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_calibration_commands", "join_negative_range", "run_calibrate", "run_whatif"]

_NEGATIVE_START = re.compile(r"^-(\d|\.\d)")


def add_calibration_commands(commands: Any) -> None:
    """Add the `calibrate` and `whatif` subcommands to the parser's subcommands."""
    calibrate = commands.add_parser(
        "calibrate",
        help="fit speed factors and link parameters of a system to measured runs",
        description="Fit per-device speed factors (optionally per stage class), the "
        "core-scaling exponent and per-link bandwidth and overhead to measured runs, by "
        "bounded least squares on relative errors. Writes the calibrated system file and a "
        "Markdown report beside it (same name, .md), and prints the residuals before and "
        "after. See docs/calibration.md.",
    )
    calibrate.add_argument("workflow", type=Path, help="workflow file (YAML or JSON)")
    calibrate.add_argument("system", type=Path, help="system file (YAML or JSON)")
    calibrate.add_argument(
        "measurements", type=Path, help="measurements file (YAML or JSON; docs/calibration.md)"
    )
    calibrate.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="calibrated system file to write (default: <system file name>-calibrated.yaml "
        "in the current folder); the report goes beside it with the suffix .md",
    )
    calibrate.add_argument(
        "--per-class",
        action="store_true",
        help="fit a speed factor per device and stage class (pre-processing, inference, "
        "post-processing) instead of one per device; stages without a class share the "
        "device's factor",
    )
    calibrate.add_argument(
        "--catalog", type=Path, default=None, metavar="DIR", help="catalog folder with cpus.parquet"
    )

    whatif = commands.add_parser(
        "whatif",
        help="sweep one parameter over a range and report where the candidates change",
        description="Estimate the workflow on the system for values of one parameter, "
        "find the values where the Pareto front's membership or the recommended candidate "
        "changes (refined by bisection), and write a report and charts. See docs/calibration.md.",
    )
    whatif.add_argument("workflow", type=Path, help="workflow file (YAML or JSON)")
    whatif.add_argument("system", type=Path, help="system file (YAML or JSON)")
    whatif.add_argument(
        "--param",
        required=True,
        metavar="PATH",
        help="parameter to vary: links[0].bandwidth_mbps, links[0].latency_ms, "
        "links[0].overhead_ms, edges.*.bytes (a factor on every edge's bytes), "
        "stages.*.time_s (a factor), devices[ID].speed_factor, devices[ID].cores, "
        "devices[ID].cpu.single_thread (or another figure), devices[ID].pricing.OPTION, "
        "runs_per_month; a device by index or id",
    )
    whatif.add_argument(
        "--range",
        required=True,
        metavar="LO:HI",
        help="lowest and highest value, such as 1:1000; a negative LO such as -5:10 is "
        "accepted too",
    )
    whatif.add_argument(
        "--steps",
        type=int,
        default=41,
        metavar="N",
        help="values swept, LO and HI included (default: 41)",
    )
    whatif.add_argument(
        "--log", action="store_true", help="space the values evenly on a log scale (LO > 0)"
    )
    whatif.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        metavar="REL",
        help="relative width to which each change point is refined by bisection (default: 1e-4)",
    )
    whatif.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: results/<workflow>--<system>--whatif)",
    )
    whatif.add_argument(
        "--catalog", type=Path, default=None, metavar="DIR", help="catalog folder with cpus.parquet"
    )


def join_negative_range(argv: list[str]) -> list[str]:
    """Return `argv` with ``--range -5:10`` written as ``--range=-5:10``.

    argparse reads a separate argument that starts with ``-`` and is not a plain number
    as an option, so ``-5:10`` would leave ``--range`` without its value.
    """
    joined: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--range":
            value = next(arguments, None)
            if value is not None and _NEGATIVE_START.match(value):
                joined.append(f"--range={value}")
                continue
            joined.append(argument)
            if value is not None:
                joined.append(value)
            continue
        joined.append(argument)
    return joined


def run_calibrate(args: argparse.Namespace) -> int:
    """Run `allocation calibrate`; return the exit status."""
    from allocation.calibrate import (
        calibrate,
        error_summary,
        markdown_report,
        residual_table,
        write_calibrated_system,
    )
    from allocation.loading import read_document
    from allocation.measurements import load_measurements, resolve_runs
    from allocation.outputs import check_yaml_output_file
    from allocation.study import default_catalog_dir, load_study

    catalog_dir = Path(args.catalog) if args.catalog is not None else default_catalog_dir()
    study = load_study(args.workflow, args.system, catalog_dir)
    measurements = load_measurements(args.measurements)
    runs = resolve_runs(measurements, study.workflow, study.system, file=args.measurements)
    out = args.out if args.out is not None else Path(f"{Path(args.system).stem}-calibrated.yaml")
    check_yaml_output_file(
        out,
        inputs=[args.workflow, args.system, args.measurements],
        companions=[out.with_suffix(".md")],
    )

    calibration = calibrate(
        study.workflow,
        study.system,
        read_document(args.system),
        study.catalog,
        measurements,
        runs,
        per_class=args.per_class,
        workflow_file=args.workflow,
        system_file=args.system,
        catalog_dir=catalog_dir,
    )
    title = f"{study.workflow.workflow} on {study.system.system}, {measurements.measurements}"
    report = markdown_report(calibration, measurements, title=title)
    header = [
        f"Calibrated by `allocation calibrate` from {args.system}",
        f"with the measurements {measurements.measurements} ({args.measurements}).",
        "speed_factor, class_speed_factors, core_scaling_exponent, overhead_ms and",
        "bandwidth_mbps are fitted values; the report beside this file gives the residuals.",
    ]
    report_path = write_calibrated_system(calibration, out, report, header=header)

    for warning in calibration.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("Parameters:")
    for parameter in calibration.parameters:
        state = "fitted" if parameter.identified else "kept"
        print(f"  {parameter.path}: {parameter.before:.6g} -> {parameter.after:.6g} ({state})")
    print("Residuals (error = estimate / measured - 1):")
    _print_table(residual_table(calibration))
    print("Mean absolute relative error:")
    for name, before, after, count in error_summary(calibration):
        print(f"  {name} ({count}): {before * 100:.1f} % before, {after * 100:.1f} % after")
    print(f"Wrote {out} and {report_path}")
    return 0


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def run_whatif(args: argparse.Namespace) -> int:
    """Run `allocation whatif`; return the exit status."""
    from allocation.whatif import run_whatif_command

    return run_whatif_command(args)
