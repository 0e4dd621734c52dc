"""A stream's period and throughput: the engine against the reference, and their limit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from allocation.compile import compile_problem
from allocation.estimate import METRIC_COLUMNS, evaluate_chunk, stage_times_of
from allocation.exact import exactness
from allocation.explain import recommend
from allocation.kernel import screen_chunk
from allocation.model import Requirements
from allocation.reference import reference_assignments, reference_evaluate, reference_front
from allocation.results import evaluation_table
from allocation.sweep import sweep_in_process
from tests.problems import EMPTY_CATALOG, random_problem

SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_period_matches_reference(seed: int) -> None:
    workflow, system = random_problem(seed)
    if seed % 2:
        system = system.model_copy(update={"objectives": ["latency_s", "period_s"]})
    problem = compile_problem(workflow, system, EMPTY_CATALOG, stream_metrics=True)
    if problem.space_size > 500:
        pytest.skip("space too large for the reference front")
    evaluation = evaluate_chunk(problem, 0, problem.space_size)

    expected = [
        reference_evaluate(workflow, system, problem, placement)
        for placement in reference_assignments(workflow, system)
    ]
    for name in ("period_s", "throughput_fps"):
        np.testing.assert_allclose(
            evaluation.metrics[name],
            [row[name] for row in expected],
            rtol=1e-9,
            atol=0,
            err_msg=name,
        )

    front, _ = sweep_in_process(problem, chunk_size=max(1, problem.space_size // 3))
    points = [[row[name] for name in system.objectives] for row in expected]
    pairs = sorted(
        zip(front.evaluation.pattern_index.tolist(), front.equivalent_count.tolist(), strict=True)
    )
    assert pairs == sorted(reference_front(points))


def test_period_bounded_by_times() -> None:
    workflow, system = random_problem(3)
    problem = compile_problem(workflow, system, EMPTY_CATALOG, stream_metrics=True)
    evaluation = evaluate_chunk(problem, 0, problem.space_size)
    times = stage_times_of(problem, evaluation.placements)
    period = evaluation.metrics["period_s"]
    # The busiest device takes at least its longest stage, and no device or link is busy
    # for longer than all stages and transfers together.
    assert (period >= times.max(axis=1)).all()
    assert (period <= (times.sum(axis=1) + evaluation.metrics["comm_s"]) * (1 + 1e-12)).all()
    assert (period > 0).any()


def test_columns_only_when_requested() -> None:
    workflow, system = random_problem(5)
    plain = compile_problem(workflow, system, EMPTY_CATALOG)
    table = evaluation_table(plain, evaluate_chunk(plain, 0, plain.space_size))
    assert not plain.stream_metrics
    assert "period_s" not in table.columns
    assert "throughput_fps" not in table.columns
    assert [c for c in table.columns if not c.startswith("at_")] == list(METRIC_COLUMNS)

    with_limit = system.model_copy(update={"requirements": Requirements(min_throughput_fps=2.0)})
    problem = compile_problem(workflow, with_limit, EMPTY_CATALOG)
    table = evaluation_table(problem, evaluate_chunk(problem, 0, problem.space_size))
    assert problem.stream_metrics
    assert {"period_s", "throughput_fps"} <= set(table.columns)


def test_period_objective_disables_fast_paths() -> None:
    workflow, system = random_problem(7)
    system = system.model_copy(update={"objectives": ["latency_s", "period_s"]})
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    reason = exactness(problem)
    assert reason is not None
    assert reason.startswith("period_s is an objective")
    assert screen_chunk(problem, 0, problem.space_size, sample_fraction=0.5) is None


def _candidates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["A", "B", "C"],
            "latency_s": [1.0, 2.0, 3.0],
            "cost_usd": [3.0, 2.0, 1.0],
            "period_s": [0.5, 0.25, 1.0],
            "throughput_fps": [2.0, 4.0, 1.0],
        }
    )


def test_recommend_honours_min_throughput() -> None:
    requirements = Requirements(min_throughput_fps=2.0)
    recommendation = recommend(_candidates(), requirements, ["latency_s", "cost_usd"])
    assert recommendation.label == "B"
    assert recommendation.meets["min_throughput_fps"] == [True, True, False]
    assert "the minimum throughput of 2 frames per second" in recommendation.reason


def test_recommend_throughput_shortfall() -> None:
    requirements = Requirements(min_throughput_fps=5.0)
    recommendation = recommend(_candidates(), requirements, ["latency_s", "cost_usd"])
    assert recommendation.label is None
    assert recommendation.shortfalls == [
        "No candidate meets min_throughput_fps = 5 frames/s: the candidate with the highest "
        "throughput, B, reaches 4 frames per second, 1 frames/s (20 %) under."
    ]
