"""Turn a finished sweep into the tables and explanations its outputs are made from.

`summarise` labels the front, relates the baselines and the given placements to it,
recommends a candidate and explains the pairs of candidates that the report shows.
The flow calls it once the chunks are merged; tests call it on `sweep_in_process`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from allocation.errors import InputError
from allocation.estimate import Evaluation
from allocation.explain import (
    PairExplanation,
    Recommendation,
    explain_pair,
    neighbour_pairs,
    placements_of,
    recommend,
)
from allocation.results import (
    SweepSummary,
    baseline_table,
    candidate_labels,
    evaluation_table,
    front_table,
    placement_summary,
)
from allocation.study import Study
from allocation.sweep import PartialFront

__all__ = ["CHART_FILES", "MAX_EXPLAINED_NEIGHBOURS", "pairs_to_explain", "summarise"]

MAX_EXPLAINED_NEIGHBOURS = 20
"""Neighbouring pairs explained in the report at most: those nearest the recommendation."""

CHART_FILES = {
    "chart.png": "Trade-off between the objectives",
    "breakdown.png": "Where the time and the money of each candidate go",
    "placement.png": "The device of every stage, candidate by candidate",
}
"""Charts written beside the report (as .png and .html), with their titles."""


def summarise(
    study: Study,
    front: PartialFront,
    patterns: Evaluation,
    *,
    patterns_sampled: bool,
    explain: Sequence[tuple[str, str]] = (),
    timings_s: dict[str, float] | None = None,
    method: str = "exhaustive",
    method_reason: str = "",
) -> SweepSummary:
    """Build the summary of a finished sweep.

    Parameters
    ----------
    study : Study
        The inputs, with the given placements and the requirements in force.
    front : PartialFront
        The merged front of the whole space.
    patterns : Evaluation
        The evaluated assignments kept for patterns.parquet (all, or a sample).
    patterns_sampled : bool
        Whether `patterns` is a sample.
    explain : sequence of (str, str)
        Pairs of candidate labels to explain besides the neighbouring ones.
    timings_s : dict, optional
        Wall time of each phase so far; the summary keeps the same dict.
    method, method_reason : str
        How the front was found ("exhaustive" or "exact") and why, for the report.

    Raises
    ------
    InputError
        When a pair in `explain` names a label that is not a candidate.
    """
    problem = study.problem
    candidates = front_table(problem, front)
    labels = candidate_labels(len(candidates))
    candidates.insert(0, "label", labels)
    candidates.insert(
        1,
        "placement",
        [
            placement_summary(problem, [row[f"at_{s}"] for s in problem.stage_ids])
            for _, row in candidates.iterrows()
        ],
    )
    baselines = baseline_table(problem, candidates, labels, study.comparisons)
    recommendation = recommend(candidates, study.requirements, problem.objectives)
    pairs, omitted = pairs_to_explain(candidates, recommendation, explain)
    placements = placements_of(problem, candidates)
    row_of = {label: i for i, label in enumerate(labels)}
    explanations: list[PairExplanation] = [
        explain_pair(problem, placements[row_of[a]], placements[row_of[b]], label_a=a, label_b=b)
        for a, b in pairs
    ]
    order = np.argsort(patterns.pattern_index, kind="stable")
    over_limit = []
    if front.over_limit_count is not None and problem.device_memory_mb is not None:
        limits_mb, counts = problem.device_memory_mb, front.over_limit_count
        over_limit = [
            (problem.device_ids[d], float(limits_mb[d]), int(counts[d]))
            for d in problem.memory_bound_devices
        ]
    return SweepSummary(
        workflow=study.workflow,
        system=study.system,
        problem=problem,
        candidates=candidates,
        patterns=evaluation_table(problem, patterns.take(order)),
        patterns_sampled=patterns_sampled,
        baselines=baselines,
        space_size=problem.space_size,
        timings_s=timings_s if timings_s is not None else {},
        inputs=study.inputs,
        requirements=study.requirements,
        recommendation=recommendation,
        explanations=explanations,
        explanations_omitted=omitted,
        charts=dict(CHART_FILES),
        method=method,
        method_reason=method_reason,
        infeasible_count=front.infeasible_count,
        over_limit=over_limit,
    )


def pairs_to_explain(
    candidates: pd.DataFrame,
    recommendation: Recommendation,
    requested: Sequence[tuple[str, str]],
) -> tuple[list[tuple[str, str]], int]:
    """Choose the pairs of candidates the report explains.

    The neighbouring pairs in latency order, at most `MAX_EXPLAINED_NEIGHBOURS` of them
    (a window centred on the recommended candidate, or starting at the fastest when none
    is recommended), then the requested pairs that are not among them.

    Returns
    -------
    pairs : list of (str, str)
    omitted : int
        Neighbouring pairs left out.

    Raises
    ------
    InputError
        When a requested label is not a candidate.
    """
    labels = [str(label) for label in candidates["label"]]
    neighbours = neighbour_pairs(candidates)
    omitted = max(0, len(neighbours) - MAX_EXPLAINED_NEIGHBOURS)
    if omitted:
        centre = labels.index(recommendation.label) if recommendation.label in labels else 0
        start = min(max(0, centre - MAX_EXPLAINED_NEIGHBOURS // 2), omitted)
        neighbours = neighbours[start : start + MAX_EXPLAINED_NEIGHBOURS]
    pairs = list(neighbours)
    for a, b in requested:
        for label in (a, b):
            if label not in labels:
                shown = ", ".join(labels[:30]) + (" ..." if len(labels) > 30 else "")
                raise InputError(
                    f"names candidate {label!r}, but the front has "
                    f"{len(labels)} candidates: {shown}; pick two of them",
                    file="command line",
                    field="--explain",
                    value=f"{a}:{b}",
                    has_value=True,
                )
        # A pair already explained, in either order, is not explained twice.
        if (a, b) not in pairs and (b, a) not in pairs:
            pairs.append((a, b))
    return pairs, omitted
