"""Contention, memory limits and the stream's period in one problem, against the reference.

Each feature has its own tests. These check that the features combine as in the
reference: contended times feed the period, and assignments over a memory limit stay
out of the front under contention too.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from allocation.compile import compile_problem
from allocation.errors import InputError
from allocation.model import System, Workflow
from allocation.reference import (
    reference_assignments,
    reference_evaluate,
    reference_fits,
    reference_front,
)
from allocation.sweep import PartialFront, sweep_in_process
from tests.conftest import CATALOGS
from tests.problems import EMPTY_CATALOG, random_problem_mixed_pricing

MAX_SPACE = 300


def _combined(seed: int) -> tuple[Workflow, System]:
    workflow, system = random_problem_mixed_pricing(seed)
    rng = random.Random(seed + 104_729)
    stages = [
        stage.model_copy(
            update={
                "threads": rng.choice([1, 1, 2, 4]),
                "memory_mb": rng.choice([0.0, 100.0, 300.0, rng.uniform(1, 600)]),
            }
        )
        for stage in workflow.stages
    ]
    devices = [
        device.model_copy(update={"memory_mb": rng.choice([400.0, rng.uniform(300, 1500)])})
        if rng.random() < 0.6
        else device
        for device in system.devices
    ]
    document = system.model_copy(update={"devices": devices}).model_dump(
        by_alias=True, exclude_none=True, warnings=False
    )
    document["contention"] = {"concurrent_frames": rng.choice([1, 2])}
    document["objectives"] = ["latency_s", "cost_usd", "period_s"]
    return workflow.model_copy(update={"stages": stages}), System.model_validate(document)


def _cases() -> list[int]:
    seeds = []
    for seed in range(80):
        try:
            problem = compile_problem(*_combined(seed), EMPTY_CATALOG, catalog_dir=CATALOGS)
        except InputError:
            continue
        if problem.space_size <= MAX_SPACE:
            seeds.append(seed)
    return seeds[:12]


def _pairs(front: PartialFront) -> list[tuple[int, int]]:
    return sorted(
        zip(front.evaluation.pattern_index.tolist(), front.equivalent_count.tolist(), strict=True)
    )


@pytest.mark.parametrize("seed", _cases())
def test_features_together_match_reference(seed: int) -> None:
    workflow, system = _combined(seed)
    problem = compile_problem(workflow, system, EMPTY_CATALOG, catalog_dir=CATALOGS)

    numbers, points, periods = [], [], []
    for number, placement in enumerate(reference_assignments(workflow, system)):
        if not reference_fits(workflow, system, placement):
            continue
        metrics = reference_evaluate(workflow, system, problem, placement)
        numbers.append(number)
        points.append([metrics[name] for name in system.objectives])
        periods.append(metrics["period_s"])
    expected = sorted((numbers[row], count) for row, count in reference_front(points))

    front, patterns = sweep_in_process(problem, chunk_size=max(1, problem.space_size // 3))
    assert _pairs(front) == expected
    assert front.infeasible_count == problem.space_size - len(numbers)
    order = np.argsort(patterns.pattern_index)
    np.testing.assert_allclose(
        patterns.metrics["period_s"][order], periods, rtol=1e-12, atol=0, err_msg="period_s"
    )


def test_cases_cover_each_feature() -> None:
    problems = [
        compile_problem(*_combined(seed), EMPTY_CATALOG, catalog_dir=CATALOGS) for seed in _cases()
    ]
    assert len(problems) >= 8
    assert any(p.memory_bound_devices for p in problems)
    assert any(p.contention_reason is not None for p in problems)
