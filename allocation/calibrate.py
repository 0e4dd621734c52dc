"""Fit speed factors, the core-scaling exponent and link parameters to measured runs.

The estimate of stage s on device d, with the calibration fields of the system, is::

    time = base(s, d) × (cores_ref / cores_d) ** alpha / speed(d, class of s)

where ``base`` is the CPU-score ratio of docs/guide.md, section 3, without the core
terms, ``cores_ref`` and ``cores_d`` are ``min(threads, cores)`` on the reference PC and
on the device, and ``speed`` is the device's ``speed_factor`` (times its class speed
factor). The logarithm of the time is linear in ``alpha`` and ``log speed``, so the fit
is a linear least-squares problem over log times: it minimises relative errors.

A transfer of ``bytes`` over a link takes ``c + k × bytes`` seconds, with
``c = (latency_ms + overhead_ms) / 1000`` and ``k = 8 / (bandwidth_mbps × 10**6)``. That is
linear in ``c`` and ``k``; each measured time is weighted by its inverse, so this fit
too minimises relative errors.

Every measured value is weighted by the square root of its ``repeats``. Bounds:
``alpha`` in [0, 1], speed factors in [0.01, 100], ``overhead_ms`` >= 0 and
``bandwidth_mbps`` in [0.001, 10**9]. A parameter that the data cannot identify keeps its
value from the system file, with a warning.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from allocation.catalog import CpuCatalog
from allocation.compile import CompiledProblem, compile_problem
from allocation.errors import InputError
from allocation.estimate import evaluate_placements
from allocation.fitting import bounded_lstsq, unidentified
from allocation.measurements import Measurements, ResolvedRun
from allocation.model import System, Workflow

__all__ = [
    "SPEED_FACTOR_BOUNDS",
    "Calibration",
    "Parameter",
    "Residual",
    "calibrate",
    "markdown_report",
    "residual_table",
    "write_calibrated_system",
]

SPEED_FACTOR_BOUNDS = (0.01, 100.0)
"""Range a fitted speed factor is kept in: a device 100 times off its score is a slip."""

BANDWIDTH_BOUNDS_MBPS = (1e-3, 1e9)
MAX_OVERHEAD_S = 1e3
SIGNIFICANT_DIGITS = 6
"""Significant digits of the fitted values written to the calibrated system."""


@dataclass(frozen=True)
class Parameter:
    """One fitted parameter: its field path in the system file, before and after."""

    path: str
    before: float
    after: float
    identified: bool
    at_bound: bool = False


@dataclass(frozen=True)
class Residual:
    """One measured value against its estimate before and after calibration."""

    run: str
    kind: str
    """``stage``, ``transfer``, ``transfer total``, ``total`` or ``link test``."""
    item: str
    where: str
    """The device or link."""
    measured_s: float
    before_s: float
    after_s: float
    fitted: bool
    """False for holdout runs and end-to-end totals, which the fit does not use."""

    @property
    def error_before(self) -> float:
        """Relative error of the estimate before calibration."""
        return self.before_s / self.measured_s - 1.0

    @property
    def error_after(self) -> float:
        """Relative error of the estimate after calibration."""
        return self.after_s / self.measured_s - 1.0


@dataclass
class Calibration:
    """The outcome of `calibrate`: the calibrated system, parameters and residuals."""

    system_document: dict[str, Any]
    system: System
    parameters: list[Parameter] = field(default_factory=list)
    residuals: list[Residual] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def calibrate(
    workflow: Workflow,
    system: System,
    system_document: dict[str, Any],
    catalog: CpuCatalog,
    measurements: Measurements,
    runs: Sequence[ResolvedRun],
    *,
    per_class: bool = False,
    workflow_file: str | Path = "<workflow>",
    system_file: str | Path = "<system>",
    catalog_dir: Path | None = None,
) -> Calibration:
    """Fit the calibration fields of `system` to the measured runs.

    Parameters
    ----------
    workflow, system
        The validated inputs; `system_document` is the system file as parsed, which the
        calibrated document copies.
    measurements, runs
        The measurements file and its runs from `allocation.measurements.resolve_runs`.
    per_class
        Fit a speed factor per device and stage class (stages without a class share the
        device's `speed_factor`) instead of one per device.

    Raises
    ------
    InputError
        When the measurements leave nothing to fit.
    """

    def compiled(candidate: System) -> CompiledProblem:
        # Measured runs are compared with uncontended estimates (see the warning below).
        return compile_problem(
            workflow,
            candidate.model_copy(update={"contention": None}),
            catalog,
            workflow_file=workflow_file,
            system_file=system_file,
            catalog_dir=catalog_dir,
        )

    fit_runs = [run for run in runs if not run.run.holdout]
    if not any(
        run.stage_times or run.transfers or run.run.transfer_total_s for run in fit_runs
    ) and (not measurements.link_tests):
        raise InputError(
            "no run outside the holdout runs measures a stage or a transfer, so there is "
            "nothing to fit; add measured times or set holdout: false on a run",
            file="<measurements>",
            field="runs",
        )
    warnings: list[str] = []
    if system.contention is not None:
        warnings.append(
            "the system's contention block is left out of the fit and the residuals: "
            "estimates are compared with the measured times without contention, so "
            "measure runs with one frame at a time and no stages running in parallel; "
            "the calibrated system keeps the block"
        )
    document = _copy(system_document)

    # Stage times: the arrays without speed factors, linear and with alpha = 0.
    stripped = _stripped(system)
    linear = compiled(stripped.model_copy(update={"core_scaling_exponent": None}))
    base = compiled(stripped.model_copy(update={"core_scaling_exponent": 0.0}))
    parameters = _fit_stages(
        workflow, system, document, fit_runs, base, linear, per_class=per_class, warnings=warnings
    )
    parameters += _fit_links(workflow, system, document, fit_runs, measurements, warnings)

    try:
        calibrated = System.model_validate(document)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise InputError(f"the calibrated system is invalid: {exc}", file=system_file) from exc
    before = compiled(system)
    after = compiled(calibrated)
    residuals = _residuals(workflow, system, calibrated, runs, measurements, before, after)
    return Calibration(document, calibrated, parameters, residuals, warnings)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _stripped(system: System) -> System:
    devices = [
        device.model_copy(update={"speed_factor": None, "class_speed_factors": None})
        for device in system.devices
    ]
    return system.model_copy(update={"devices": devices})


def _rounded(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _fit_stages(
    workflow: Workflow,
    system: System,
    document: dict[str, Any],
    runs: Sequence[ResolvedRun],
    base: CompiledProblem,
    linear: CompiledProblem,
    *,
    per_class: bool,
    warnings: list[str],
) -> list[Parameter]:
    # Parameters: alpha first, then log speed per (device, class); class None is the
    # device's own speed_factor.
    groups: list[tuple[int, str | None]] = []
    rows: list[tuple[float, int, float, float]] = []  # (log ratio, group, y, weight)
    skipped = set()
    for run in runs:
        for s, measured_s in run.stage_times.items():
            d = run.placement[s]
            base_s = float(base.stage_time_s[s, d])
            if not base_s > 0:
                skipped.add(workflow.stages[s].id)
                continue
            stage_class = workflow.stages[s].stage_class if per_class else None
            key = (d, stage_class)
            if key not in groups:
                groups.append(key)
            ratio = float(linear.stage_time_s[s, d]) / base_s
            rows.append(
                (
                    math.log(ratio),
                    groups.index(key),
                    math.log(measured_s / base_s),
                    math.sqrt(run.run.repeats),
                )
            )
    for stage_id in sorted(skipped):
        warnings.append(
            f"stage {stage_id!r} has time_s 0 in the workflow, so its measured times cannot "
            "be scaled and are left out of the fit"
        )

    exponent_before = system.core_scaling_exponent
    alpha_prior = 1.0 if exponent_before is None else exponent_before
    priors = [alpha_prior]
    for d, group_class in groups:
        device = system.devices[d]
        factor = device.speed_factor or 1.0
        if group_class is not None:
            factor *= _class_factor(device.class_speed_factors, group_class)
        priors.append(math.log(factor))
    n = 1 + len(groups)
    a = np.zeros((len(rows), n))
    y = np.zeros(len(rows))
    for i, (log_ratio, group, value, weight) in enumerate(rows):
        a[i, 0] = log_ratio * weight
        a[i, 1 + group] = -weight
        y[i] = value * weight
    lower = np.array([0.0] + [math.log(SPEED_FACTOR_BOUNDS[0])] * len(groups))
    upper = np.array([1.0] + [math.log(SPEED_FACTOR_BOUNDS[1])] * len(groups))
    # Fix unidentified parameters, alpha first and device-wide factors last.
    order = [0] + [1 + g for g, (_, c) in enumerate(groups) if c is not None]
    order += [1 + g for g, (_, c) in enumerate(groups) if c is None]
    x, fixed = _solve(a, y, np.array(priors), lower, upper, order)

    parameters = []
    alpha_identified = 0 not in fixed and len(rows) > 0
    if alpha_identified:
        document["core_scaling_exponent"] = _rounded(float(x[0]))
    elif rows:
        warnings.append(
            "core_scaling_exponent cannot be fitted: no measured stage runs on a different "
            "number of cores (min(threads, cores)) than on the reference PC, or such stages "
            "run only on devices with no other measured stage, so the exponent cannot be "
            f"told apart from their speed factor; kept at {alpha_prior:g}"
        )
    after_alpha = document.get("core_scaling_exponent", exponent_before)
    parameters.append(
        Parameter(
            "core_scaling_exponent",
            alpha_prior,
            alpha_prior if after_alpha is None else float(after_alpha),
            alpha_identified,
            alpha_identified and float(x[0]) in (0.0, 1.0),
        )
    )

    # Device-wide factors, then class factors relative to them.
    devices = document["devices"]
    for d, device in enumerate(system.devices):
        keys = [g for g, (dd, _) in enumerate(groups) if dd == d]
        if not keys:
            warnings.append(
                f"device {device.id!r}: no measured stage ran on it, so its speed factor "
                f"cannot be fitted; kept at {device.speed_factor or 1.0:g}"
            )
            continue
        own = next((g for g in keys if groups[g][1] is None), None)
        factor = device.speed_factor or 1.0
        if own is not None:
            identified = (1 + own) not in fixed
            if identified:
                factor = _rounded(math.exp(float(x[1 + own])))
                devices[d]["speed_factor"] = factor
            else:
                warnings.append(
                    f"device {device.id!r}: its speed factor cannot be told apart from the "
                    f"other parameters; kept at {factor:g}"
                )
            parameters.append(
                Parameter(
                    f"devices[{d}].speed_factor ({device.id})",
                    device.speed_factor or 1.0,
                    factor,
                    identified,
                    identified and _at_bound(float(x[1 + own])),
                )
            )
        for g in keys:
            group_class = groups[g][1]
            if group_class is None:
                continue
            before = _class_factor(device.class_speed_factors, group_class)
            identified = (1 + g) not in fixed
            after = before
            if identified:
                after = _rounded(math.exp(float(x[1 + g])) / factor)
                devices[d].setdefault("class_speed_factors", {})[group_class] = after
            else:
                warnings.append(
                    f"device {device.id!r}, class {group_class}: its speed factor cannot be "
                    f"told apart from the other parameters; kept at {before:g}"
                )
            parameters.append(
                Parameter(
                    f"devices[{d}].class_speed_factors.{group_class} ({device.id})",
                    before,
                    after,
                    identified,
                    identified and _at_bound(float(x[1 + g])),
                )
            )
    return parameters


def _class_factor(factors: Mapping[Any, float] | None, stage_class: str) -> float:
    return 1.0 if factors is None else float(factors.get(stage_class, 1.0))


def _at_bound(log_factor: float) -> bool:
    return any(math.isclose(log_factor, math.log(bound)) for bound in SPEED_FACTOR_BOUNDS)


def _solve(
    a: np.ndarray,
    y: np.ndarray,
    prior: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    order: Sequence[int],
) -> tuple[np.ndarray, set[int]]:
    """Fit with the parameters the rows cannot identify held at their prior values.

    Returns the solution and the held columns. Unidentified columns are held one at a
    time, in `order`, until the rest are identified.
    """
    fixed: set[int] = set()
    while True:
        free = [j for j in order if j not in fixed]
        missing = unidentified(a, free)
        if not missing:
            break
        fixed.add(missing[0])
    x = np.clip(prior.astype(np.float64), lower, upper)
    free_columns = [j for j in range(a.shape[1]) if j not in fixed]
    if free_columns and len(a):
        held = [j for j in range(a.shape[1]) if j in fixed]
        rhs = y - a[:, held] @ x[held]
        scale = np.linalg.norm(a[:, free_columns], axis=0)
        scale[scale == 0] = 1.0
        solution = bounded_lstsq(
            a[:, free_columns] / scale,
            rhs,
            lower[free_columns] * scale,
            upper[free_columns] * scale,
        )
        x[free_columns] = solution / scale
    return x, fixed


def _fit_links(
    workflow: Workflow,
    system: System,
    document: dict[str, Any],
    runs: Sequence[ResolvedRun],
    measurements: Measurements,
    warnings: list[str],
) -> list[Parameter]:
    link_of = {}
    for number, link in enumerate(system.links):
        link_of[frozenset(link.between)] = number
    device_ids = [device.id for device in system.devices]
    stage_index = {stage.id: s for s, stage in enumerate(workflow.stages)}
    n_links = len(system.links)

    # Columns 2l and 2l + 1 are c (s) and k (s per byte) of link l.
    rows: list[tuple[np.ndarray, float, float]] = []  # (coefficients, measured, weight)

    def transfer_row(run: ResolvedRun, edges: Sequence[int]) -> np.ndarray:
        coefficients = np.zeros(2 * n_links)
        for e in edges:
            edge = workflow.edges[e]
            a = device_ids[run.placement[stage_index[edge.source]]]
            b = device_ids[run.placement[stage_index[edge.target]]]
            number = link_of[frozenset((a, b))]
            coefficients[2 * number] += 1.0
            coefficients[2 * number + 1] += edge.bytes
        return coefficients

    for run in runs:
        weight = math.sqrt(run.run.repeats)
        for e, measured_s in run.transfers.items():
            rows.append((transfer_row(run, [e]), measured_s, weight))
        if run.run.transfer_total_s is not None:
            rows.append((transfer_row(run, run.crossing_edges), run.run.transfer_total_s, weight))
    for test in measurements.link_tests:
        number = link_of[frozenset(test.between)]
        coefficients = np.zeros(2 * n_links)
        weight = math.sqrt(test.repeats)
        if test.time_s is not None and test.bytes is not None:
            coefficients[2 * number], coefficients[2 * number + 1] = 1.0, test.bytes
            rows.append((coefficients, test.time_s, weight))
        elif test.throughput_mbps is not None and test.bytes is not None:
            coefficients[2 * number], coefficients[2 * number + 1] = 1.0, test.bytes
            rows.append((coefficients, test.bytes * 8 / (test.throughput_mbps * 1e6), weight))
        elif test.throughput_mbps is not None:
            # A throughput alone measures the slope: seconds per byte.
            coefficients[2 * number + 1] = 1.0
            rows.append((coefficients, 8 / (test.throughput_mbps * 1e6), weight))

    a = np.array([coefficients * weight / measured for coefficients, measured, weight in rows])
    a = a.reshape(len(rows), 2 * n_links)
    y = np.array([weight for _, _, weight in rows])
    prior, lower, upper = [], [], []
    for link in system.links:
        latency_s = link.latency_ms / 1000
        prior += [(link.latency_ms + link.overhead_ms) / 1000, 8 / (link.bandwidth_mbps * 1e6)]
        lower += [latency_s, 8 / (BANDWIDTH_BOUNDS_MBPS[1] * 1e6)]
        upper += [latency_s + MAX_OVERHEAD_S, 8 / (BANDWIDTH_BOUNDS_MBPS[0] * 1e6)]
    order = [2 * number for number in range(n_links)] + [
        2 * number + 1 for number in range(n_links)
    ]
    x, fixed = _solve(a, y, np.array(prior), np.array(lower), np.array(upper), order)

    parameters = []
    for number, link in enumerate(system.links):
        name = f"{link.between[0]}-{link.between[1]}"
        measured = bool(len(rows)) and bool(np.any(a[:, 2 * number + 1] != 0))
        if not measured:
            warnings.append(
                f"link {name}: no measured transfer crossed it, so its bandwidth and "
                "overhead cannot be fitted; kept as in the system file"
            )
            continue
        entry = document["links"][number]
        overhead_identified = 2 * number not in fixed
        bandwidth_identified = 2 * number + 1 not in fixed
        if not overhead_identified:
            warnings.append(
                f"link {name}: every measured transfer over it has the same bytes per "
                "transfer, so bandwidth and overhead cannot be separated; overhead_ms kept at "
                f"{link.overhead_ms:g} and bandwidth_mbps fitted as an effective bandwidth. "
                "Measure transfers of at least two sizes to fit both"
            )
        overhead_ms = link.overhead_ms
        if overhead_identified:
            overhead_ms = _rounded(max(float(x[2 * number]) * 1000 - link.latency_ms, 0.0))
            entry["overhead_ms"] = overhead_ms
        bandwidth = link.bandwidth_mbps
        if bandwidth_identified:
            bandwidth = _rounded(8 / (float(x[2 * number + 1]) * 1e6))
            entry["bandwidth_mbps"] = bandwidth
        parameters.append(
            Parameter(
                f"links[{number}].overhead_ms ({name})",
                link.overhead_ms,
                overhead_ms,
                overhead_identified,
            )
        )
        parameters.append(
            Parameter(
                f"links[{number}].bandwidth_mbps ({name})",
                link.bandwidth_mbps,
                bandwidth,
                bandwidth_identified,
            )
        )
    return parameters


def _transfer_s(problem: CompiledProblem, placement: np.ndarray, e: int) -> float:
    a = placement[problem.edge_source[e]]
    b = placement[problem.edge_target[e]]
    return float(problem.edge_transfer_s[e, a, b])


def _residuals(
    workflow: Workflow,
    system: System,
    calibrated: System,
    runs: Sequence[ResolvedRun],
    measurements: Measurements,
    before: CompiledProblem,
    after: CompiledProblem,
) -> list[Residual]:
    residuals = []
    device_ids = before.device_ids
    for run in runs:
        fitted = not run.run.holdout
        name = run.run.name
        placement = np.array(run.placement, dtype=np.int64)
        for s, measured_s in sorted(run.stage_times.items()):
            d = run.placement[s]
            residuals.append(
                Residual(
                    name,
                    "stage",
                    workflow.stages[s].id,
                    device_ids[d],
                    measured_s,
                    float(before.stage_time_s[s, d]),
                    float(after.stage_time_s[s, d]),
                    fitted,
                )
            )

        for e, measured_s in sorted(run.transfers.items()):
            edge = workflow.edges[e]
            a = device_ids[placement[before.edge_source[e]]]
            b = device_ids[placement[before.edge_target[e]]]
            residuals.append(
                Residual(
                    name,
                    "transfer",
                    f"{edge.source} -> {edge.target}",
                    f"{a} -> {b}",
                    measured_s,
                    _transfer_s(before, placement, e),
                    _transfer_s(after, placement, e),
                    fitted,
                )
            )
        if run.run.transfer_total_s is not None:
            residuals.append(
                Residual(
                    name,
                    "transfer total",
                    f"{len(run.crossing_edges)} edges",
                    "",
                    run.run.transfer_total_s,
                    sum(_transfer_s(before, placement, e) for e in run.crossing_edges),
                    sum(_transfer_s(after, placement, e) for e in run.crossing_edges),
                    fitted,
                )
            )
        if run.run.total_s is not None:
            latency = [
                float(
                    evaluate_placements(p, placement[None, :], np.zeros(1, dtype=np.int64)).metrics[
                        "latency_s"
                    ][0]
                )
                for p in (before, after)
            ]
            residuals.append(
                Residual(
                    name, "total", "latency_s", "", run.run.total_s, latency[0], latency[1], False
                )
            )

    for i, test in enumerate(measurements.link_tests):
        number = next(
            n for n, link in enumerate(system.links) if set(link.between) == set(test.between)
        )
        size = test.bytes
        measured = test.time_s if test.time_s is not None else None
        if measured is None and test.throughput_mbps is not None:
            size = size if size is not None else 10**9
            measured = size * 8 / (test.throughput_mbps * 1e6)
        assert size is not None and measured is not None  # checked by LinkTest
        estimates = []
        for model in (system, calibrated):
            link = model.links[number]
            slope = size * 8 / (link.bandwidth_mbps * 1e6)
            intercept = (
                (link.latency_ms + link.overhead_ms) / 1000 if test.bytes is not None else 0.0
            )
            estimates.append(intercept + slope)
        residuals.append(
            Residual(
                "link tests",
                "link test",
                f"link_tests[{i}] ({size:,} bytes)"
                if test.bytes is not None
                else f"link_tests[{i}] (throughput)",
                f"{test.between[0]}-{test.between[1]}",
                measured,
                estimates[0],
                estimates[1],
                True,
            )
        )
    return residuals


def _percent(value: float) -> str:
    return f"{value * 100:+.1f} %"


def residual_table(calibration: Calibration) -> list[list[str]]:
    """Return the residuals as rows of text, with a header row first."""
    rows = [
        [
            "run",
            "kind",
            "item",
            "on",
            "measured_s",
            "before_s",
            "after_s",
            "error before",
            "error after",
            "used",
        ]
    ]
    for r in calibration.residuals:
        rows.append(
            [
                r.run,
                r.kind,
                r.item,
                r.where,
                f"{r.measured_s:.4g}",
                f"{r.before_s:.4g}",
                f"{r.after_s:.4g}",
                _percent(r.error_before),
                _percent(r.error_after),
                "fit" if r.fitted else "check",
            ]
        )
    return rows


def error_summary(calibration: Calibration) -> list[tuple[str, float, float, int]]:
    """Return the mean absolute relative error before and after, per group of residuals.

    Groups: the stage and transfer values the fit used, those it did not (holdout runs),
    and the end-to-end totals. Each entry is (group, before, after, count).
    """
    groups = {
        "fitted stages and transfers": [r for r in calibration.residuals if r.fitted],
        "holdout stages and transfers": [
            r for r in calibration.residuals if not r.fitted and r.kind != "total"
        ],
        "end-to-end totals": [r for r in calibration.residuals if r.kind == "total"],
    }
    summary = []
    for name, members in groups.items():
        if members:
            summary.append(
                (
                    name,
                    float(np.mean([abs(r.error_before) for r in members])),
                    float(np.mean([abs(r.error_after) for r in members])),
                    len(members),
                )
            )
    return summary


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(calibration: Calibration, measurements: Measurements, *, title: str) -> str:
    """Return the calibration report as Markdown: parameters, warnings and residuals."""
    lines = [f"# Calibration: {_markdown_cell(title)}", ""]
    if measurements.source:
        lines += [f"Measurements: {_markdown_cell(measurements.source)}", ""]
    lines += [
        "## Parameters",
        "",
        "| parameter | before | after | identified |",
        "|---|---|---|---|",
    ]
    for p in calibration.parameters:
        note = "yes" if p.identified else "no, kept"
        if p.at_bound:
            note += " (at a bound)"
        lines.append(f"| {_markdown_cell(p.path)} | {p.before:.6g} | {p.after:.6g} | {note} |")
    lines += ["", "## Warnings", ""]
    lines += [f"- {_markdown_cell(w)}" for w in calibration.warnings] or ["None."]
    lines += [
        "",
        "## Mean absolute relative error",
        "",
        "| values | count | before | after |",
        "|---|---|---|---|",
    ]
    for name, before, after, count in error_summary(calibration):
        lines.append(f"| {name} | {count} | {before * 100:.1f} % | {after * 100:.1f} % |")
    lines += [
        "",
        "## Residuals",
        "",
        "Error is estimate / measured - 1. `fit` rows were used by the fit; `check` rows "
        "(holdout runs and end-to-end totals) were not.",
        "",
    ]
    table = residual_table(calibration)
    lines.append("| " + " | ".join(table[0]) + " |")
    lines.append("|" + "---|" * len(table[0]))
    for row in table[1:]:
        lines.append("| " + " | ".join(_markdown_cell(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def write_calibrated_system(
    calibration: Calibration, path: Path, report: str, *, header: Sequence[str]
) -> Path:
    """Write the calibrated system file and its report beside it; return the report path.

    Both are written to temporary files first and renamed, so a failure leaves no
    partial file.
    """
    report_path = path.with_suffix(".md")
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.safe_dump(
        calibration.system_document, sort_keys=False, allow_unicode=True, width=100
    )
    for target, content in ((path, text), (report_path, report)):
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(content)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return report_path
