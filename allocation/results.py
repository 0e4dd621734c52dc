"""Tables of a finished sweep: the front, the patterns, the candidates and baselines.

Column names follow docs/guide.md, section 4: the metric columns, `equivalent_count` on the front,
and one `at_<stage id>` column per stage holding the device id.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from allocation.compile import CompiledProblem
from allocation.estimate import METRIC_COLUMNS, Evaluation, evaluate_placements, metric_columns
from allocation.explain import PairExplanation, Recommendation
from allocation.memory import memory_excess
from allocation.model import Requirements, System, Workflow
from allocation.pareto import RELATIVE_TOLERANCE
from allocation.space import encode_placement
from allocation.sweep import PartialFront, objective_matrix

if TYPE_CHECKING:
    from allocation.robustness import Robustness

__all__ = [
    "BASELINE_KINDS",
    "FRONT_METRIC_COLUMNS",
    "SweepSummary",
    "baseline_status",
    "baseline_table",
    "candidate_labels",
    "evaluation_table",
    "front_table",
    "placement_summary",
]

FRONT_METRIC_COLUMNS = METRIC_COLUMNS


def evaluation_table(problem: CompiledProblem, evaluation: Evaluation) -> pd.DataFrame:
    """Return metrics and placement columns (`at_<stage id>`) of evaluated rows."""
    columns: dict[str, Any] = {}
    for name in metric_columns(problem):
        values = evaluation.metrics[name]
        if name == "monthly_cost_usd" and problem.runs_per_month is None:
            columns[name] = pd.array([None] * len(values), dtype="Float64")
        else:
            columns[name] = values
    # Arrow-backed strings built from the device codes: a few milliseconds for a
    # million rows, where converting Python strings one by one takes a second.
    devices = pa.array(problem.device_ids, type=pa.string())
    for s, stage_id in enumerate(problem.stage_ids):
        codes = pa.array(evaluation.placements[:, s].astype(np.int32, copy=False))
        names = pa.DictionaryArray.from_arrays(codes, devices).cast(pa.string())
        columns[f"at_{stage_id}"] = pd.arrays.ArrowStringArray(names)
    return pd.DataFrame(columns)


def front_table(problem: CompiledProblem, front: PartialFront) -> pd.DataFrame:
    """Return front.parquet's table: one row per front point, sorted by the objectives.

    Rows are ordered by latency, then cost, then enumeration order, so the order (and
    the candidate labels derived from it) is stable.
    """
    table = evaluation_table(problem, front.evaluation)
    table.insert(
        len(metric_columns(problem)), "equivalent_count", front.equivalent_count.astype(np.int64)
    )
    order = np.lexsort(
        (
            front.evaluation.pattern_index,
            front.evaluation.metrics["cost_usd"],
            front.evaluation.metrics["latency_s"],
        )
    )
    return table.iloc[order].reset_index(drop=True)


def candidate_labels(n: int) -> list[str]:
    """Return short stable labels A, B, ..., Z, AA, AB, ... for n candidates."""
    letters = string.ascii_uppercase
    labels = []
    for i in range(n):
        label = ""
        k = i
        while True:
            label = letters[k % 26] + label
            k = k // 26 - 1
            if k < 0:
                break
        labels.append(label)
    return labels


def placement_summary(problem: CompiledProblem, devices: list[str]) -> str:
    """Describe a placement in words, e.g. "stages 2–8 on cloud, rest on edge".

    Stages are numbered from 1 in file order; the device with the most stages is "rest".
    """
    counts: dict[str, int] = {}
    for device in devices:
        counts[device] = counts.get(device, 0) + 1
    if len(counts) == 1:
        return f"all on {devices[0]}"
    majority = max(counts, key=lambda d: (counts[d], -problem.device_ids.index(d)))
    parts = []
    for device in problem.device_ids:
        if device == majority or device not in counts:
            continue
        numbers = [i + 1 for i, d in enumerate(devices) if d == device]
        parts.append(f"{_ranges(numbers)} on {device}")
    return ", ".join(parts) + f", rest on {majority}"


def _ranges(numbers: list[int]) -> str:
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and runs[-1][1] == number - 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs)
    return ("stage " if len(numbers) == 1 else "stages ") + text


BASELINE_KINDS = ("all on one device", "given")
"""Values of the `kind` column of the baseline table."""


def baseline_table(
    problem: CompiledProblem,
    front: pd.DataFrame,
    labels: list[str],
    comparisons: Sequence[tuple[str, Sequence[str]]] = (),
) -> pd.DataFrame:
    """Evaluate the baselines and the given placements and relate them to the front.

    For every device, the baseline "all on <device id>" puts every stage that may run
    there on it and leaves pinned stages on their pins. A device that some free stage
    may not use has no baseline. The given placements (`comparisons`) follow, in their
    order.

    Parameters
    ----------
    problem : CompiledProblem
    front : DataFrame
        The front table, one row per candidate, with the objective columns.
    labels : list of str
        The candidates' labels, row for row.
    comparisons : sequence of (str, sequence of str)
        Named placements as `allocation.loading.resolve_comparisons` returns them: a
        name and the device id of every stage in workflow file order.

    Returns
    -------
    DataFrame
        One row per baseline, then per given placement. Columns: `baseline` (the name),
        `kind` ("all on one device" or "given"), the metric and placement columns,
        `on_front` (equivalent to a front point), `candidate` (that point's label),
        `dominated_by` (a candidate that dominates the row), `over_memory` (the devices
        whose memory limit the row exceeds, comma-separated; null when it fits; such a
        row is neither on the front nor dominated) and, per objective,
        `better_by_<objective>`: the row's value minus the dominating candidate's, which
        is how much better that candidate is (null when the row is not dominated).

    Raises
    ------
    ValueError
        When a given placement has the wrong length, names an unknown device or puts a
        stage on a device it may not run on.

    Notes
    -----
    Of the candidates that dominate a row, `dominated_by` names the one closest to it
    in latency, the earlier row among equally close ones, so that a report compares the
    row with the nearest candidate that beats it.
    """
    rows: list[list[int]] = []
    names: list[str] = []
    kinds: list[str] = []
    for d, device_id in enumerate(problem.device_ids):
        placement = []
        for s in range(problem.n_stages):
            allowed = problem.allowed[s]
            if d in allowed:
                placement.append(d)
            elif len(allowed) == 1:
                placement.append(int(allowed[0]))
            else:
                placement = []
                break
        if placement:
            rows.append(placement)
            names.append(f"all on {device_id}")
            kinds.append(BASELINE_KINDS[0])
    for name, devices in comparisons:
        rows.append(_device_indices(problem, name, devices))
        names.append(name)
        kinds.append(BASELINE_KINDS[1])
    if not rows:
        return pd.DataFrame(columns=["baseline", "kind", *metric_columns(problem)])

    placements = np.array(rows, dtype=np.int16)
    indices = np.array([encode_placement(problem, list(r)) for r in rows], dtype=np.int64)
    evaluation = evaluate_placements(problem, placements, indices)
    table = evaluation_table(problem, evaluation)
    table.insert(0, "baseline", names)
    table.insert(1, "kind", kinds)

    # Relate each row to the front: equal to a candidate, or dominated by one.
    points = objective_matrix(problem, evaluation)
    front_points = front[list(problem.objectives)].to_numpy(dtype=np.float64)
    front_latency_s = front["latency_s"].to_numpy(dtype=np.float64)
    on_front: list[bool] = []
    candidate: list[str | None] = []
    dominated_by: list[str | None] = []
    better_by = np.full((len(points), len(problem.objectives)), np.nan)
    over_memory = _over_memory(problem, placements)
    for i, point in enumerate(points):
        if over_memory[i] is not None:
            # A placement that does not fit is no alternative to the candidates.
            on_front.append(False)
            candidate.append(None)
            dominated_by.append(None)
            continue
        equal = _equal(front_points, point).all(axis=1)
        at_least = (front_points <= point / (1 - RELATIVE_TOLERANCE)).all(axis=1)
        better = (front_points < point * (1 - RELATIVE_TOLERANCE)).any(axis=1)
        dominating = np.flatnonzero(at_least & better)
        match = np.flatnonzero(equal)
        on_front.append(bool(len(match)))
        candidate.append(labels[int(match[0])] if len(match) else None)
        if len(dominating):
            distance_s = np.abs(front_latency_s[dominating] - evaluation.metrics["latency_s"][i])
            winner = int(dominating[np.argmin(distance_s)])
            dominated_by.append(labels[winner])
            better_by[i] = point - front_points[winner]
        else:
            dominated_by.append(None)
    table["on_front"] = on_front
    table["candidate"] = pd.array(candidate, dtype="string")
    table["dominated_by"] = pd.array(dominated_by, dtype="string")
    table["over_memory"] = pd.array(over_memory, dtype="string")
    for k, objective in enumerate(problem.objectives):
        column = better_by[:, k]
        table[f"better_by_{objective}"] = pd.array(
            [None if np.isnan(v) else float(v) for v in column], dtype="Float64"
        )
    return table


def baseline_status(row: Any, text: Callable[[str], str] = str) -> str:
    """Say how a row of `baseline_table` relates to the front, in a few words.

    `text` turns each id or label into the output's text (escaping it for Markdown,
    for example).
    """
    over_memory = row.get("over_memory")
    if isinstance(over_memory, str):
        return f"exceeds the memory limit of {text(over_memory)}"
    if bool(row["on_front"]):
        return f"on the front as candidate {text(str(row['candidate']))}"
    if not pd.isna(row["dominated_by"]):
        return f"dominated by candidate {text(str(row['dominated_by']))}"
    return "not on the front"


def _over_memory(problem: CompiledProblem, placements: np.ndarray) -> list[str | None]:
    """Name, per placement, the devices whose memory limit it exceeds; None when it fits."""
    if not problem.memory_bound_devices:
        return [None] * len(placements)
    assert problem.stage_memory_mb is not None and problem.device_memory_mb is not None
    bound = problem.memory_bound_devices
    excess = memory_excess(problem.stage_memory_mb, problem.device_memory_mb, bound, placements)
    return [
        ", ".join(problem.device_ids[bound[k]] for k in np.flatnonzero(row)) or None
        for row in excess
    ]


def _device_indices(problem: CompiledProblem, name: str, devices: Sequence[str]) -> list[int]:
    """Return the device index of every stage of a named placement."""
    if len(devices) != problem.n_stages:
        raise ValueError(
            f"placement {name!r} gives {len(devices)} devices for {problem.n_stages} stages"
        )
    indices = []
    for s, device_id in enumerate(devices):
        if device_id not in problem.device_ids:
            raise ValueError(f"placement {name!r} names unknown device {device_id!r}")
        d = problem.device_ids.index(device_id)
        if d not in problem.allowed[s]:
            raise ValueError(
                f"placement {name!r} puts stage {problem.stage_ids[s]!r} on {device_id!r}, "
                "which it may not run on"
            )
        indices.append(d)
    return indices


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) <= RELATIVE_TOLERANCE * np.maximum(np.abs(a), np.abs(b))


@dataclass
class SweepSummary:
    """Everything the report, the charts and the artifacts are made from."""

    workflow: Workflow
    system: System
    problem: CompiledProblem
    candidates: pd.DataFrame
    """front.parquet's columns plus `label` (A, B, ...) and `placement` (in words)."""
    patterns: pd.DataFrame
    """Every evaluated assignment, or a uniform sample (see `patterns_sampled`)."""
    patterns_sampled: bool
    baselines: pd.DataFrame
    space_size: int
    timings_s: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    """Paths and content hashes of the input files and catalogs."""
    requirements: Requirements | None = None
    """The requirements in force: the system's, or limits given on the command line."""
    recommendation: Recommendation | None = None
    explanations: list[PairExplanation] = field(default_factory=list)
    """Explained pairs of candidates, such as neighbours in latency order."""
    explanations_omitted: int = 0
    """Number of pairs left unexplained, for example past a limit on the report's length."""
    charts: dict[str, str] = field(default_factory=dict)
    """File name to title of every chart written beside the report."""
    method: str = "exhaustive"
    """Method that found the front: "exhaustive" (every assignment) or "exact" (none)."""
    method_reason: str = ""
    """Reason for that method, as a clause ("the space is smaller than ...")."""
    infeasible_count: int = 0
    """Assignments left out because they exceed a device's memory limit."""
    over_limit: list[tuple[str, float, int]] = field(default_factory=list)
    """Per device whose memory limit binds: its id, the limit in MB and the number of
    assignments that exceed it."""
    robustness: Robustness | None = None
    """The Monte Carlo over the candidates, when an uncertainty file is given."""
