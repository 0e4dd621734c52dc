"""Device memory limits: the engine against the reference, chunking, resume and errors.

Each seed takes a problem of `problems.random_problem`, gives its stages memory needs
and some devices limits, and compares the sweep's front and infeasible counts with the
slow reference, for several chunk sizes and sample fractions.
"""

from __future__ import annotations

import functools
import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from allocation.chunk_store import ChunkStore, problem_key
from allocation.compile import CompiledProblem, compile_problem
from allocation.errors import InputError
from allocation.exact import exactness
from allocation.kernel import screen_chunk
from allocation.memory import (
    left_out_sentence,
    memory_excess,
    no_feasible_assignment_error,
    some_assignment_fits,
)
from allocation.model import System, Workflow
from allocation.reference import (
    reference_assignments,
    reference_evaluate,
    reference_fits,
    reference_front,
    reference_infeasible_count,
)
from allocation.runners import open_runner
from allocation.study import load_study
from allocation.sweep import PartialFront, merge_fronts, sweep_chunk, sweep_in_process
from flows.sweep import _estimate_chunks
from tests.conftest import CATALOGS
from tests.problems import EMPTY_CATALOG, random_problem

SEEDS = range(60)
MAX_SPACE = 400


def _with_limits(seed: int) -> tuple[Workflow, System] | None:
    """Add memory needs and limits to a random problem.

    Returns None when the space is too large for the reference or when compiling
    rejects a limit that no assignment fits.
    """
    workflow, system = random_problem(seed)
    rng = random.Random(seed + 7919)
    stages = [
        stage.model_copy(
            update={"memory_mb": rng.choice([0.0, 0.1, 0.2, 100.0, 250.0, rng.uniform(1, 900)])}
        )
        for stage in workflow.stages
    ]
    devices = [
        device.model_copy(
            update={"memory_mb": rng.choice([0.3, 300.0, 350.0, rng.uniform(200, 2000)])}
        )
        if rng.random() < 0.7
        else device
        for device in system.devices
    ]
    workflow = workflow.model_copy(update={"stages": stages})
    system = system.model_copy(update={"devices": devices})
    try:
        problem = compile_problem(workflow, system, EMPTY_CATALOG)
    except InputError:
        return None
    if problem.space_size > MAX_SPACE:
        return None
    return workflow, system


@functools.cache
def _case(seed: int) -> tuple[Workflow, System, CompiledProblem] | None:
    pair = _with_limits(seed)
    if pair is None:
        return None
    workflow, system = pair
    return workflow, system, compile_problem(workflow, system, EMPTY_CATALOG)


def _reference_front(workflow: Workflow, system: System) -> list[tuple[int, int]]:
    """Return the reference front as (assignment number, count) pairs over fitting rows."""
    numbers = []
    points = []
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    for number, placement in enumerate(reference_assignments(workflow, system)):
        if reference_fits(workflow, system, placement):
            metrics = reference_evaluate(workflow, system, problem, placement)
            numbers.append(number)
            points.append([metrics[name] for name in system.objectives])
    return sorted((numbers[row], count) for row, count in reference_front(points))


def _pairs(front: PartialFront) -> list[tuple[int, int]]:
    return sorted(
        zip(front.evaluation.pattern_index.tolist(), front.equivalent_count.tolist(), strict=True)
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_limits_match_reference(seed: int) -> None:
    case = _case(seed)
    if case is None:
        pytest.skip("space too large for the reference, or a limit no assignment fits")
    workflow, system, problem = case
    expected_total, expected_by_device = reference_infeasible_count(workflow, system)
    expected_front = _reference_front(workflow, system)

    rng = random.Random(seed)
    for chunk_size in (problem.space_size, max(1, problem.space_size // 7), rng.randint(1, 50)):
        for fraction in (1.0, 0.5):
            front, patterns = sweep_in_process(
                problem, chunk_size=chunk_size, sample_fraction=fraction
            )
            where = f"chunk size {chunk_size}, sample fraction {fraction}"
            assert front.infeasible_count == expected_total, where
            assert _pairs(front) == expected_front, where
            if problem.memory_bound_devices:
                assert front.over_limit_count is not None
                by_device = dict(
                    zip(problem.device_ids, front.over_limit_count.tolist(), strict=True)
                )
                assert by_device == expected_by_device, where
            else:
                assert expected_total == 0
            fits = [
                reference_fits(workflow, system, placement)
                for placement in reference_assignments(workflow, system)
            ]
            assert all(fits[i] for i in patterns.pattern_index.tolist()), where
            if fraction == 1.0:
                assert len(patterns) == problem.space_size - expected_total, where


def test_seeds_cover_binding_limits() -> None:
    cases = [_case(seed) for seed in SEEDS]
    compiled = [case for case in cases if case is not None]
    binding = [case for case in compiled if case[2].memory_bound_devices]
    assert len(compiled) >= 30
    assert len(binding) >= 10


def _two_stage_problem(
    limit_mb: float, needs_mb: tuple[float, float], *, pin: str | None = None
) -> tuple[Workflow, System]:
    workflow = Workflow.model_validate(
        {
            "workflow": "pair",
            "measured_on": {"name": "Reference", "cores": 4, "single_thread": 1000.0},
            "stages": [
                {
                    "id": "a",
                    "time_s": 1.0,
                    "memory_mb": needs_mb[0],
                    **({"pin": pin} if pin else {}),
                },
                {"id": "b", "time_s": 2.0, "memory_mb": needs_mb[1]},
            ],
            "edges": [{"from": "a", "to": "b", "bytes": 1000}],
        }
    )
    cpu = {"name": "Device CPU", "cores": 4, "single_thread": 1000.0}
    system = System.model_validate(
        {
            "system": "pair-system",
            "devices": [
                {"id": "edge", "cpu": cpu, "memory_mb": limit_mb},
                {"id": "gateway", "cpu": cpu, "memory_mb": limit_mb},
            ],
            "links": [{"between": ["edge", "gateway"], "bandwidth_mbps": 100.0}],
        }
    )
    return workflow, system


def test_pinned_stage_over_limit_rejected() -> None:
    workflow, system = _two_stage_problem(100.0, (150.0, 10.0), pin="edge")
    with pytest.raises(InputError) as caught:
        compile_problem(workflow, system, EMPTY_CATALOG, workflow_file="flow.yaml")
    assert caught.value.field == "stages[0].memory_mb"
    assert "pinned" in str(caught.value)


def test_all_infeasible_names_tightest() -> None:
    # Each stage (60 MB) fits edge (100 MB) alone, but not both together, and neither
    # fits gateway (50 MB), so no assignment fits.
    workflow, system = _two_stage_problem(100.0, (60.0, 60.0))
    workflow = workflow.model_copy(update={"edges": []})
    gateway = system.devices[1].model_copy(update={"memory_mb": 50.0})
    system = system.model_copy(update={"devices": [system.devices[0], gateway], "links": []})
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    front, patterns = sweep_in_process(problem)

    assert len(front) == 0
    assert len(patterns) == 0
    assert front.infeasible_count == problem.space_size == 4
    assert front.over_limit_count is not None
    error = no_feasible_assignment_error(
        workflow,
        system,
        problem.allowed,
        front.over_limit_count,
        problem.space_size,
        system_file="system.yaml",
    )
    assert isinstance(error, InputError)
    assert error.field == "devices[1].memory_mb"
    assert "every one of the 4 assignments" in str(error)


def test_loose_limits_change_nothing() -> None:
    workflow, system = _two_stage_problem(1000.0, (60.0, 60.0))
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    assert problem.memory_bound_devices == ()
    assert exactness(problem) is None
    assert screen_chunk(problem, 0, problem.space_size, sample_fraction=0.5) is not None
    front, _ = sweep_in_process(problem)
    assert front.infeasible_count == 0
    assert front.over_limit_count is None


def test_binding_limit_disables_fast_paths() -> None:
    workflow, system = _two_stage_problem(100.0, (60.0, 60.0))
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    assert problem.memory_bound_devices == (0, 1)
    reason = exactness(problem)
    assert reason is not None
    assert reason.startswith("a device memory limit can bind")
    assert screen_chunk(problem, 0, problem.space_size, sample_fraction=0.5) is None


def test_sum_within_tolerance_fits() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floating point; it still fits 0.3 MB.
    workflow, system = _two_stage_problem(0.3, (0.1, 0.2))
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    front, _ = sweep_in_process(problem)
    assert front.infeasible_count == 0


def test_counts_survive_store_and_resume(tmp_path: Path) -> None:
    case = next(
        case
        for case in map(_case, SEEDS)
        if case is not None and case[2].memory_bound_devices and case[2].space_size >= 20
    )
    _, _, problem = case
    expected, _ = sweep_in_process(problem)
    assert expected.infeasible_count > 0

    store = ChunkStore(tmp_path, problem_key(problem, sample_fraction=1.0))
    store.open()
    third = problem.space_size // 3
    store.save(sweep_chunk(problem, 0, third))
    with open_runner("thread", workers=1) as runner:
        front, _, _, counts, _ = _estimate_chunks(
            problem, runner, store, max(1, third // 2), 1.0, None, show_progress=False
        )
    assert counts["reused"] == 1
    assert front.infeasible_count == expected.infeasible_count
    assert front.over_limit_count is not None and expected.over_limit_count is not None
    np.testing.assert_array_equal(front.over_limit_count, expected.over_limit_count)
    assert _pairs(front) == _pairs(expected)

    loaded = store.load(0, third, problem.n_stages)
    assert loaded is not None
    merged = merge_fronts(problem, [loaded.front])
    assert merged.infeasible_count == sweep_chunk(problem, 0, third).front.infeasible_count


def test_left_out_sentence() -> None:
    assert left_out_sentence(0, 10, []) == ""
    assert left_out_sentence(3, 10, [("edge", 1024.0, 3), ("gateway", 512.0, 0)]) == (
        "3 of 10 assignments exceed a device's memory limit and are left out; the limit "
        "is exceeded on edge (1024 MB) in 3."
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_fit_search_matches_reference(seed: int) -> None:
    case = _case(seed)
    if case is None or not case[2].memory_bound_devices:
        pytest.skip("space too large for the reference, or no limit binds")
    workflow, system, problem = case
    assert problem.stage_memory_mb is not None and problem.device_memory_mb is not None
    expected = any(
        reference_fits(workflow, system, placement)
        for placement in reference_assignments(workflow, system)
    )
    found = some_assignment_fits(problem.stage_memory_mb, problem.device_memory_mb, problem.allowed)
    assert found is expected


def test_fit_search_gives_up_after_max_steps() -> None:
    # Three stages of 60 MB, two devices of 100 MB: every assignment puts two stages,
    # 120 MB, on one device.
    needs = np.array([60.0, 60.0, 60.0])
    limits = np.array([100.0, 100.0])
    allowed = [np.array([0, 1])] * 3
    assert some_assignment_fits(needs, limits, allowed) is False
    assert some_assignment_fits(needs, limits, allowed, max_steps=3) is None
    assert some_assignment_fits(needs, np.array([100.0, 130.0]), allowed) is True


def test_fit_search_matches_enumeration() -> None:
    rng = random.Random(5)
    for _ in range(300):
        n_stages, n_devices = rng.randint(1, 5), rng.randint(1, 3)
        needs = np.array(
            [rng.choice([0.0, 100.0, 250.0, rng.uniform(1, 500)]) for _ in range(n_stages)]
        )
        limits = np.array(
            [rng.choice([np.inf, 300.0, rng.uniform(100, 900)]) for _ in range(n_devices)]
        )
        allowed = [
            np.array(sorted(rng.sample(range(n_devices), rng.randint(1, n_devices))))
            for _ in range(n_stages)
        ]
        placements = np.array(list(itertools.product(*allowed)), dtype=np.int64)
        excess = memory_excess(needs, limits, tuple(range(n_devices)), placements)
        assert some_assignment_fits(needs, limits, allowed) == bool((~excess.any(axis=1)).any())


def test_fit_search_long_workflow() -> None:
    """Ten thousand stages, the most a workflow may have, need no deep recursion."""
    n = 10_000
    two_devices = [np.array([0, 1])] * n
    assert some_assignment_fits(np.ones(n), np.array([n / 2, n / 2]), two_devices) is True
    assert some_assignment_fits(np.ones(n), np.array([float(n - 1)]), [np.array([0])] * n) is False


def test_large_space_nothing_fits_rejected_at_load(tmp_path: Path) -> None:
    """A space too large to count is still rejected before the sweep, without counts."""
    stages = "".join(f"  - {{id: s{i}, time_s: 0.1, memory_mb: 60}}\n" for i in range(12))
    edges = "".join(f"  - {{from: s{i}, to: s{i + 1}, bytes: 1000}}\n" for i in range(11))
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(
        "workflow: w\nmeasured_on: {name: PC, cores: 1, single_thread: 1000}\n"
        f"stages:\n{stages}edges:\n{edges}",
        "utf-8",
    )
    devices = "".join(
        f"  - {{id: d{d}, cpu: {{name: C, cores: 1, single_thread: 1000}}, memory_mb: 100}}\n"
        for d in range(4)
    )
    links = "".join(
        f"  - {{between: [d{a}, d{b}], bandwidth_mbps: 100}}\n"
        for a in range(4)
        for b in range(a + 1, 4)
    )
    system = tmp_path / "system.yaml"
    system.write_text(f"system: s\ndevices:\n{devices}links:\n{links}", "utf-8")

    with pytest.raises(InputError) as caught:
        load_study(workflow, system, CATALOGS)

    message = str(caught.value)
    assert "every one of the 16,777,216 assignments exceeds a device's memory limit" in message
    assert "exceeded by" not in message
    assert caught.value.field == "devices[0].memory_mb"
