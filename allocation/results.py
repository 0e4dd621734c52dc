"""Tables of a finished sweep: the front, the patterns, the candidates and baselines.

Column names follow docs/guide.md, section 4: the metric columns, `equivalent_count` on the front,
and one `at_<stage id>` column per stage holding the device id.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from allocation.compile import CompiledProblem
from allocation.estimate import METRIC_COLUMNS, Evaluation, evaluate_placements
from allocation.model import System, Workflow
from allocation.pareto import RELATIVE_TOLERANCE
from allocation.space import encode_placement
from allocation.sweep import PartialFront, objective_matrix

__all__ = [
    "FRONT_METRIC_COLUMNS",
    "SweepSummary",
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
    for name in METRIC_COLUMNS:
        values = evaluation.metrics[name]
        if name == "monthly_cost_usd" and problem.runs_per_month is None:
            columns[name] = pd.array([None] * len(values), dtype="Float64")
        else:
            columns[name] = values
    devices = np.array(problem.device_ids, dtype=object)
    for s, stage_id in enumerate(problem.stage_ids):
        columns[f"at_{stage_id}"] = pd.array(devices[evaluation.placements[:, s]], dtype="string")
    return pd.DataFrame(columns)


def front_table(problem: CompiledProblem, front: PartialFront) -> pd.DataFrame:
    """Return front.parquet's table: one row per front point, sorted by the objectives.

    Rows are ordered by latency, then cost, then enumeration order, so the order (and
    the candidate labels derived from it) is stable.
    """
    table = evaluation_table(problem, front.evaluation)
    table.insert(len(METRIC_COLUMNS), "equivalent_count", front.equivalent_count.astype(np.int64))
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


def baseline_table(
    problem: CompiledProblem, front: pd.DataFrame, labels: list[str]
) -> pd.DataFrame:
    """Evaluate the all-on-one-device baselines and relate them to the front.

    For every device, the baseline puts every stage that may run there on it and leaves
    pinned stages on their pins; a device that some free stage may not use has no
    baseline. Columns: `baseline`, the metric and placement columns, `on_front`
    (equivalent to a front point), `candidate` (that point's label) and `dominated_by`
    (the label of the first front point that dominates it).
    """
    rows = []
    names = []
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
    if not rows:
        return pd.DataFrame(columns=["baseline", *METRIC_COLUMNS])

    placements = np.array(rows, dtype=np.int16)
    indices = np.array([encode_placement(problem, list(r)) for r in rows], dtype=np.int64)
    evaluation = evaluate_placements(problem, placements, indices)
    table = evaluation_table(problem, evaluation)
    table.insert(0, "baseline", names)

    points = objective_matrix(problem, evaluation)
    front_points = front[list(problem.objectives)].to_numpy(dtype=np.float64)
    on_front, candidate, dominated_by = [], [], []
    for point in points:
        equal = _equal(front_points, point).all(axis=1)
        at_least = (front_points <= point / (1 - RELATIVE_TOLERANCE)).all(axis=1)
        better = (front_points < point * (1 - RELATIVE_TOLERANCE)).any(axis=1)
        dominating = np.flatnonzero(at_least & better)
        match = np.flatnonzero(equal)
        on_front.append(bool(len(match)))
        candidate.append(labels[int(match[0])] if len(match) else None)
        dominated_by.append(labels[int(dominating[0])] if len(dominating) else None)
    table["on_front"] = on_front
    table["candidate"] = pd.array(candidate, dtype="string")
    table["dominated_by"] = pd.array(dominated_by, dtype="string")
    return table


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
