"""What-if sweeps: vary one parameter and find where the candidates change.

For each value of the parameter the workflow and the system are rebuilt with that
value, compiled and swept in this process (`allocation.sweep.sweep_in_process`), and
the recommendation is made by `allocation.explain.recommend`. Between two values
where the front's members or the recommended candidate differ, the value is bisected
until the bracket is narrower than the tolerance. docs/calibration.md describes the
command.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import re
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allocation.catalog import CpuCatalog
from allocation.compile import CompiledProblem, compile_problem, resolve_cpu
from allocation.errors import InputError
from allocation.estimate import evaluate_placements
from allocation.explain import recommend
from allocation.loading import parse_system, parse_workflow
from allocation.model import SCORE_FIGURES, System
from allocation.sweep import sweep_in_process

__all__ = [
    "Change",
    "Point",
    "WhatIf",
    "apply_parameter",
    "is_whole_number_parameter",
    "placement_text",
    "run_what_if",
]

_INDEXED = re.compile(r"^(links|devices|edges|stages)\[([^\]]+)\]\.(.+)$")
_ALL = re.compile(r"^(edges|stages)\.\*\.(bytes|time_s)$")
_PATHS_HELP = (
    "links[I].bandwidth_mbps, links[I].latency_ms, links[I].overhead_ms, edges.*.bytes, "
    "edges[I].bytes, stages.*.time_s, stages[ID].time_s, devices[ID].speed_factor, "
    "devices[ID].cores, devices[ID].cpu.<figure>, devices[ID].pricing.<option>, "
    "runs_per_month"
)


@dataclass(frozen=True)
class Point:
    """The front and the recommendation at one value of the parameter."""

    value: float
    front: frozenset[tuple[int, ...]]
    """Placements (device index per stage) of the front's representatives."""
    recommended: tuple[int, ...] | None
    metrics: dict[tuple[int, ...], tuple[float, float]]
    """Latency in seconds and cost in USD of each front placement."""


@dataclass(frozen=True)
class Change:
    """A change between two values no wider apart than the tolerance."""

    kind: str
    """``front`` or ``recommended``."""
    below: Point
    above: Point

    @property
    def value(self) -> float:
        """Middle of the bracket: the crossover estimate."""
        return (self.below.value + self.above.value) / 2


@dataclass
class WhatIf:
    """Outcome of a what-if sweep."""

    parameter: str
    grid: list[Point]
    changes: list[Change]
    stage_ids: tuple[str, ...]
    device_ids: tuple[str, ...]
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Per grid value and candidate: ``value``, ``candidate``, ``latency_s``, ``cost_usd``.

    The other objectives follow, and ``throughput_fps`` when the stream's metrics are
    estimated.
    """
    whole_numbers: bool = False
    """Whether the parameter takes whole numbers only, so that only whole values were evaluated."""


def placement_text(
    placement: tuple[int, ...], stage_ids: tuple[str, ...], device_ids: tuple[str, ...]
) -> str:
    """Return a placement as runs of consecutive stages: ``edge[capture] cloud[resize–draw]``."""
    if len(set(placement)) == 1:
        return f"all on {device_ids[placement[0]]}"
    parts = []
    start = 0
    for s in range(1, len(placement) + 1):
        if s == len(placement) or placement[s] != placement[start]:
            span = stage_ids[start] if s - 1 == start else f"{stage_ids[start]}–{stage_ids[s - 1]}"
            parts.append(f"{device_ids[placement[start]]}[{span}]")
            start = s
    return " ".join(parts)


def apply_parameter(
    workflow_document: dict[str, Any],
    system_document: dict[str, Any],
    path: str,
    value: float,
    catalog: CpuCatalog,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return copies of the documents with the parameter at `path` set to `value`.

    ``edges.*.bytes`` and ``stages.*.time_s`` multiply every edge's bytes (rounded to whole
    bytes) or every stage's time by `value`; the other paths set the field.

    Raises
    ------
    InputError
        For a path that names no supported field, or a value that is not a whole number
        for a parameter that takes whole numbers (`is_whole_number_parameter`).
    """
    workflow = copy.deepcopy(workflow_document)
    system = copy.deepcopy(system_document)
    every = _ALL.match(path)
    if every:
        section, name = every.groups()
        expected = "bytes" if section == "edges" else "time_s"
        if name != expected:
            raise _path_error(path)
        for item in workflow.get(section, []):
            scaled = item[name] * value
            item[name] = round(scaled) if name == "bytes" else scaled
        return workflow, system
    if path == "runs_per_month":
        system["runs_per_month"] = _whole(value, path)
        return workflow, system

    indexed = _INDEXED.match(path)
    if not indexed:
        raise _path_error(path)
    section, key, rest = indexed.groups()
    document = workflow if section in ("edges", "stages") else system
    items = document.get(section, [])
    item = _find_item(items, key, path)
    if section == "links" and rest in ("bandwidth_mbps", "latency_ms", "overhead_ms"):
        item[rest] = value
    elif section == "edges" and rest == "bytes":
        item["bytes"] = _whole(value, path)
    elif section == "stages" and rest == "time_s":
        item["time_s"] = value
    elif section == "devices" and rest in ("speed_factor", "cores"):
        item[rest] = _whole(value, path) if rest == "cores" else value
    elif section == "devices" and rest.startswith("cpu.") and rest[4:] in SCORE_FIGURES:
        item["cpu"] = _inline_cpu(item, catalog, path)
        item["cpu"][rest[4:]] = value
    elif (
        section == "devices"
        and rest.startswith("pricing.")
        and isinstance(item.get("pricing"), dict)
    ):
        option = rest[len("pricing.") :]
        if option == "provider" or option not in item["pricing"]:
            raise InputError(
                f"names pricing option {option!r}, which the device's pricing does not set; "
                f"options set: {', '.join(k for k in item['pricing'] if k != 'provider')}",
                file="command line",
                field="--param",
                value=path,
                has_value=True,
            )
        item["pricing"][option] = (
            _whole(value, path) if _is_whole(item["pricing"][option]) else value
        )
    else:
        raise _path_error(path)
    return workflow, system


def is_whole_number_parameter(
    workflow_document: dict[str, Any], system_document: dict[str, Any], path: str
) -> bool:
    """Return True when the parameter at `path` takes whole numbers only.

    These are ``runs_per_month``, ``devices[ID].cores``, ``edges[I].bytes`` and a pricing
    option that the system file writes as a whole number (``memory_mb: 5120``). A pricing
    option written with a decimal point (``usd_per_gb_in: 0.0``) takes any number.
    """
    if path == "runs_per_month":
        return True
    indexed = _INDEXED.match(path)
    if not indexed:
        return False
    section, key, rest = indexed.groups()
    if (section, rest) in (("devices", "cores"), ("edges", "bytes")):
        return True
    if section != "devices" or not rest.startswith("pricing."):
        return False
    device = _find_item(system_document.get("devices", []), key, path)
    pricing = device.get("pricing")
    return isinstance(pricing, dict) and _is_whole(pricing.get(rest[len("pricing.") :]))


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _whole(value: float, path: str) -> int:
    if not float(value).is_integer():
        raise InputError(
            f"{path} takes whole numbers only",
            file="command line",
            field="--range",
            value=value,
            has_value=True,
        )
    return int(value)


def _path_error(path: str) -> InputError:
    return InputError(
        f"is not a parameter whatif can vary; use one of {_PATHS_HELP}",
        file="command line",
        field="--param",
        value=path,
        has_value=True,
    )


def _find_item(items: list[Any], key: str, path: str) -> dict[str, Any]:
    if key.isdigit() and int(key) < len(items):
        found = items[int(key)]
    else:
        found = next(
            (item for item in items if isinstance(item, dict) and item.get("id") == key), None
        )
    if not isinstance(found, dict):
        known = [str(item.get("id")) for item in items if isinstance(item, dict) and "id" in item]
        raise InputError(
            f"names {key!r}, which is neither an index below {len(items)} nor a known id"
            + (f" ({', '.join(known)})" if known else ""),
            file="command line",
            field="--param",
            value=path,
            has_value=True,
        )
    return found


def _inline_cpu(device: dict[str, Any], catalog: CpuCatalog, path: str) -> dict[str, Any]:
    cpu = device.get("cpu")
    if isinstance(cpu, dict):
        return dict(cpu)
    resolved = resolve_cpu(str(cpu), catalog, file="command line", field="--param")
    if resolved.cores is None:
        raise InputError(
            f"the catalog gives no core count for CPU {resolved.name!r}, so its figures "
            "cannot be varied; describe the CPU inline in the system file",
            file="command line",
            field="--param",
            value=path,
            has_value=True,
        )
    inline: dict[str, Any] = {"name": resolved.name, "cores": resolved.cores}
    inline.update({name: value for name, value in resolved.figures.items() if value is not None})
    return inline


def run_what_if(
    workflow_document: dict[str, Any],
    system_document: dict[str, Any],
    catalog: CpuCatalog,
    parameter: str,
    low: float,
    high: float,
    *,
    steps: int = 41,
    log: bool = False,
    tolerance: float = 1e-4,
    catalog_dir: Path | None = None,
    workflow_file: str | Path = "workflow file",
    system_file: str | Path = "system file",
) -> WhatIf:
    """Sweep `parameter` from `low` to `high` and find where the candidates change.

    Parameters
    ----------
    workflow_document, system_document
        The input files as parsed.
    parameter
        A path accepted by `apply_parameter`.
    low, high, steps, log
        The grid: `steps` values from `low` to `high`, evenly spaced, on a log scale when
        `log` is True. For a parameter that takes whole numbers, `low` and `high` must be
        whole and the grid's values are rounded to whole numbers, so it may have fewer
        than `steps` values.
    tolerance
        Relative width to which each change is bracketed.
    workflow_file, system_file
        Names of the input files, for error messages.

    Returns
    -------
    WhatIf
        The grid, the changes in increasing order of value, and the latency and cost of
        every placement that is on the front anywhere on the grid.

    Raises
    ------
    InputError
        For a parameter the command cannot vary, or a range with a value that the input
        rules or the pricing provider reject (the message names the field and the rule).

    Notes
    -----
    Between two neighbouring values with a different front (or recommendation) the
    interval is halved (geometrically when `log`) while both halves' ends differ,
    until it is narrower than ``tolerance × value``, or, for whole numbers, until the
    ends are neighbouring whole numbers. A change and its reversal that both fall
    between two grid values leave the ends equal and are not found; more steps find
    them.
    """
    whole_numbers = is_whole_number_parameter(workflow_document, system_document, parameter)
    if whole_numbers and not (float(low).is_integer() and float(high).is_integer()):
        raise InputError(
            f"{parameter} takes whole numbers only, so LO and HI must be whole numbers, "
            "such as 1:8",
            file="command line",
            field="--range",
            value=f"{low:g}:{high:g}",
            has_value=True,
        )
    cache: dict[float, Point] = {}
    problems: dict[float, CompiledProblem] = {}

    def evaluate(value: float) -> Point:
        if value not in cache:
            problem = _compiled(
                workflow_document,
                system_document,
                catalog,
                parameter,
                value,
                (low, high),
                (workflow_file, system_file),
                catalog_dir,
            )
            problems[value] = problem
            cache[value] = _point(problem, system_document, value)
        return cache[value]

    values = (np.geomspace(low, high, steps) if log else np.linspace(low, high, steps)).tolist()
    values[0], values[-1] = low, high
    if whole_numbers:
        values = sorted({float(round(value)) for value in values})
    # Evaluate both ends first, so that a range the input rules reject fails early.
    evaluate(values[0])
    evaluate(values[-1])
    grid = [evaluate(value) for value in values]
    changes = []
    for kind, key in (
        ("front", lambda p: p.front),
        ("recommended", lambda p: p.recommended),
    ):
        for below, above in itertools.pairwise(grid):
            changes += _bisect(evaluate, below, above, key, kind, tolerance, log, whole_numbers)
    changes.sort(key=lambda change: (change.value, change.kind))

    first = next(iter(problems.values()))
    candidates = sorted({placement for point in grid for placement in point.front})
    rows = []
    placements = np.array(candidates, dtype=np.int64).reshape(len(candidates), first.n_stages)
    for point in grid:
        metrics = evaluate_placements(
            problems[point.value], placements, np.arange(len(candidates), dtype=np.int64)
        ).metrics
        names = _curve_metrics(first, metrics)
        for i, placement in enumerate(candidates):
            rows.append(
                {
                    "value": point.value,
                    "candidate": placement_text(placement, first.stage_ids, first.device_ids),
                    **{name: float(metrics[name][i]) for name in names},
                    "on_front": placement in point.front,
                    "recommended": placement == point.recommended,
                }
            )
    return WhatIf(
        parameter,
        grid,
        changes,
        first.stage_ids,
        first.device_ids,
        pd.DataFrame(rows),
        whole_numbers,
    )


def _compiled(
    workflow_document: dict[str, Any],
    system_document: dict[str, Any],
    catalog: CpuCatalog,
    parameter: str,
    value: float,
    bounds: tuple[float, float],
    files: tuple[str | Path, str | Path],
    catalog_dir: Path | None,
) -> CompiledProblem:
    """Apply the value, validate both documents as their loaders do, and compile them.

    The pricing providers check their own options while the problem is compiled.
    """
    workflow_doc, system_doc = apply_parameter(
        workflow_document, system_document, parameter, value, catalog
    )
    try:
        workflow = parse_workflow(workflow_doc, files[0])
        system = parse_system(system_doc, files[1])
        return compile_problem(
            workflow,
            system,
            catalog,
            workflow_file=files[0],
            system_file=files[1],
            catalog_dir=catalog_dir,
        )
    except InputError as exc:
        where = f"{exc.field} in {exc.file}" if exc.field else str(exc.file)
        raise InputError(
            f"with {parameter} = {value:g}, {where} is invalid: {exc.detail}; "
            "give a range inside the field's limits",
            file="command line",
            field="--range",
            value=f"{bounds[0]:g}:{bounds[1]:g}",
            has_value=True,
        ) from None


def _curve_metrics(problem: CompiledProblem, metrics: dict[str, np.ndarray]) -> list[str]:
    """Return latency_s, cost_usd, the other objectives and throughput_fps when estimated."""
    names = ["latency_s", "cost_usd"]
    names += [name for name in problem.objectives if name not in names]
    if "throughput_fps" in metrics:
        names.append("throughput_fps")
    return names


def _point(problem: CompiledProblem, system_document: dict[str, Any], value: float) -> Point:
    front, _ = sweep_in_process(problem)
    evaluation = front.evaluation
    placements = [tuple(int(d) for d in row) for row in evaluation.placements]
    latency = evaluation.metrics["latency_s"].astype(float)
    cost = evaluation.metrics["cost_usd"].astype(float)
    table = pd.DataFrame(
        {
            "label": [str(i) for i in range(len(placements))],
            **{name: evaluation.metrics[name].astype(float) for name in evaluation.metrics},
        }
    )
    requirements = System.model_validate(system_document).requirements
    recommendation = recommend(table, requirements, problem.objectives)
    recommended = None if recommendation.label is None else placements[int(recommendation.label)]
    metrics = {p: (float(latency[i]), float(cost[i])) for i, p in enumerate(placements)}
    return Point(value, frozenset(placements), recommended, metrics)


def _bisect(
    evaluate: Callable[[float], Point],
    below: Point,
    above: Point,
    key: Callable[[Point], Hashable],
    kind: str,
    tolerance: float,
    log: bool,
    whole_numbers: bool,
) -> list[Change]:
    changes = []
    stack = [(below, above)]
    while stack:
        low, high = stack.pop()
        if key(low) == key(high):
            continue
        width = high.value - low.value
        if width <= tolerance * max(abs(low.value), abs(high.value)) or (
            whole_numbers and width <= 1
        ):
            changes.append(Change(kind, low, high))
            continue
        middle = math.sqrt(low.value * high.value) if log else (low.value + high.value) / 2
        if whole_numbers:
            middle = float(min(max(round(middle), low.value + 1), high.value - 1))
        point = evaluate(middle)
        stack += [(point, high), (low, point)]
    return changes


def run_whatif_command(args: argparse.Namespace) -> int:
    """Run `allocation whatif` from parsed arguments; return the exit status."""
    from allocation.catalog import load_cpu_catalog
    from allocation.loading import read_document
    from allocation.study import default_catalog_dir, load_study
    from allocation.whatif_report import write_outputs

    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(
            "names an existing file; give a folder for the outputs",
            file="command line",
            field="--out",
            value=str(args.out),
            has_value=True,
        )
    low, high = _parse_range(args.range, log=args.log)
    if args.steps < 2:
        raise InputError(
            "expected at least 2 steps",
            file="command line",
            field="--steps",
            value=args.steps,
            has_value=True,
        )
    if not 0 < args.tolerance < 1:
        raise InputError(
            "expected a relative tolerance between 0 and 1, such as 1e-4",
            file="command line",
            field="--tolerance",
            value=args.tolerance,
            has_value=True,
        )
    catalog_dir = Path(args.catalog) if args.catalog is not None else default_catalog_dir()
    study = load_study(args.workflow, args.system, catalog_dir)
    catalog = load_cpu_catalog(catalog_dir / "cpus.parquet")
    result = run_what_if(
        read_document(args.workflow),
        read_document(args.system),
        catalog,
        args.param,
        low,
        high,
        steps=args.steps,
        log=args.log,
        tolerance=args.tolerance,
        catalog_dir=catalog_dir,
        workflow_file=args.workflow,
        system_file=args.system,
    )
    out = args.out
    if out is None:
        out = Path("results") / f"{study.workflow.workflow}--{study.system.system}--whatif"
    files = write_outputs(result, Path(out), log=args.log)
    if result.whole_numbers:
        print(whole_number_note(result))
    for change in result.changes:
        print(describe_change(change, result))
    if not result.changes:
        print(
            f"No change of the front or the recommendation for {args.param} in [{low:g}, {high:g}]."
        )
    print(f"Wrote {', '.join(str(path) for path in files)}", file=sys.stderr)
    return 0


def whole_number_note(result: WhatIf) -> str:
    """Return the sentence stating that only whole values were evaluated."""
    return (
        f"{result.parameter} takes whole numbers only, so {len(result.grid)} whole values "
        f"from {result.grid[0].value:g} to {result.grid[-1].value:g} were evaluated, and "
        "each change lies between two whole values."
    )


def describe_change(change: Change, result: WhatIf) -> str:
    """Describe one change in a sentence with its bracket."""

    def name(placement: tuple[int, ...] | None) -> str:
        return (
            "none"
            if placement is None
            else placement_text(placement, result.stage_ids, result.device_ids)
        )

    if result.whole_numbers:
        where = f"{result.parameter} between {change.below.value:.6g} and {change.above.value:.6g}"
    else:
        where = (
            f"{result.parameter} = {change.value:.6g} "
            f"(between {change.below.value:.6g} and {change.above.value:.6g})"
        )
    if change.kind == "recommended":
        before, after = name(change.below.recommended), name(change.above.recommended)
        return f"{where}: the recommended candidate changes from {before} to {after}"
    entered = sorted(change.above.front - change.below.front)
    left = sorted(change.below.front - change.above.front)
    parts = []
    if entered:
        parts.append("enters the front: " + "; ".join(name(p) for p in entered))
    if left:
        parts.append("leaves the front: " + "; ".join(name(p) for p in left))
    return f"{where}: " + ", ".join(parts)


def _parse_range(text: str, *, log: bool) -> tuple[float, float]:
    low_text, separator, high_text = text.partition(":")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low = high = math.nan
    if not separator or not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise InputError(
            "expected LO:HI with finite numbers and LO < HI, such as 1:1000",
            file="command line",
            field="--range",
            value=text,
            has_value=True,
        )
    if log and low <= 0:
        raise InputError(
            "with --log the range must be positive; give LO > 0",
            file="command line",
            field="--range",
            value=text,
            has_value=True,
        )
    return low, high
