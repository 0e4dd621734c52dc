"""The vectorised engine against the slow reference, on seeded random problems.

Each seed builds one problem with `problems.random_problem`. The engine must give every
metric of every assignment within a relative 1e-9 of the reference (byte counts exactly)
and the same front as (assignment number, equivalent count) pairs, whatever the chunk
size and however partial fronts are merged.
"""

from __future__ import annotations

import functools
import random
from dataclasses import fields

import numpy as np
import pytest

from allocation.compile import CompiledProblem, compile_problem
from allocation.estimate import (
    METRIC_COLUMNS,
    Evaluation,
    evaluate_chunk,
    stage_times_of,
    usage_of,
)
from allocation.model import System, Workflow
from allocation.reference import _reference_usage, reference_sweep
from allocation.sweep import PartialFront, front_of, merge_fronts, sweep_chunk, sweep_in_process
from tests.problems import EMPTY_CATALOG, random_problem

SEEDS = range(240)
PROPERTY_SEEDS = range(1000, 1030)
RELATIVE_TOLERANCE = 1e-9


@functools.cache
def _problem(seed: int) -> tuple[Workflow, System, CompiledProblem]:
    workflow, system = random_problem(seed)
    return workflow, system, compile_problem(workflow, system, EMPTY_CATALOG)


@functools.cache
def _reference(
    seed: int,
) -> tuple[list[dict[str, str]], dict[str, np.ndarray], list[tuple[int, int]]]:
    workflow, system, problem = _problem(seed)
    assignments, metrics, front = reference_sweep(workflow, system, problem)
    columns = {
        name: np.array([row[name] for row in metrics], dtype=_dtype(name))
        for name in METRIC_COLUMNS
    }
    return assignments, columns, front


def _dtype(name: str) -> type:
    return np.int64 if name.endswith("_bytes") else np.float64


def _pairs(front: PartialFront) -> list[tuple[int, int]]:
    """Return the front as sorted (assignment number, equivalent count) pairs."""
    return sorted(
        zip(front.evaluation.pattern_index.tolist(), front.equivalent_count.tolist(), strict=True)
    )


def _chunk_fronts(problem: CompiledProblem, chunk_size: int) -> list[PartialFront]:
    return [
        sweep_chunk(problem, start, min(start + chunk_size, problem.space_size)).front
        for start in range(0, problem.space_size, chunk_size)
    ]


@pytest.mark.parametrize("seed", SEEDS)
def test_metrics_match_reference(seed: int) -> None:
    _, system, problem = _problem(seed)
    assignments, expected, _ = _reference(seed)
    evaluation = evaluate_chunk(problem, 0, problem.space_size)

    assert len(evaluation) == len(assignments) == problem.space_size
    np.testing.assert_array_equal(evaluation.pattern_index, np.arange(problem.space_size))
    device_index = {device.id: d for d, device in enumerate(system.devices)}
    expected_placements = np.array(
        [[device_index[a[stage_id]] for stage_id in problem.stage_ids] for a in assignments],
        dtype=np.int64,
    ).reshape(len(assignments), problem.n_stages)
    np.testing.assert_array_equal(evaluation.placements, expected_placements)

    for name in METRIC_COLUMNS:
        actual = evaluation.metrics[name]
        if name.endswith("_bytes"):
            assert actual.dtype == np.int64, name
            np.testing.assert_array_equal(actual, expected[name], err_msg=name)
        else:
            np.testing.assert_allclose(
                actual,
                expected[name],
                rtol=RELATIVE_TOLERANCE,
                atol=0,
                equal_nan=True,
                err_msg=name,
            )


@pytest.mark.parametrize("seed", SEEDS)
def test_front_matches_reference(seed: int) -> None:
    _, _, problem = _problem(seed)
    _, _, expected_front = _reference(seed)
    rng = random.Random(seed)
    chunk_size = rng.randint(1, max(1, problem.space_size // 3))
    chunk_size = max(chunk_size, problem.space_size // 40)

    front, patterns = sweep_in_process(problem, chunk_size=chunk_size)
    whole = front_of(problem, evaluate_chunk(problem, 0, problem.space_size))

    assert _pairs(front) == sorted(expected_front)
    assert _pairs(whole) == sorted(expected_front)
    np.testing.assert_array_equal(patterns.pattern_index, np.arange(problem.space_size))


@pytest.mark.parametrize("seed", PROPERTY_SEEDS)
def test_usage_matches_reference(seed: int) -> None:
    # The flat provider ignores invocation durations, so the cost comparison above does
    # not check them. This compares the usage of every device directly.
    workflow, _, problem = _problem(seed)
    assignments, _, _ = _reference(seed)
    evaluation = evaluate_chunk(problem, 0, problem.space_size)
    times = stage_times_of(problem, evaluation.placements)

    for d, device_id in enumerate(problem.device_ids):
        usage = usage_of(problem, evaluation.placements, times, d)
        for row, assignment in enumerate(assignments):
            stage_time = dict(zip(problem.stage_ids, times[row].tolist(), strict=True))
            expected = _reference_usage(workflow, assignment, stage_time, device_id)
            where = f"device {device_id}, assignment {row}"
            assert usage.invocations[row] == expected["invocations"], where
            assert usage.bytes_in[row] == expected["bytes_in"], where
            assert usage.bytes_out[row] == expected["bytes_out"], where
            np.testing.assert_allclose(
                usage.compute_s[row], expected["compute_s"], rtol=RELATIVE_TOLERANCE, err_msg=where
            )
            np.testing.assert_allclose(
                usage.invocation_s[row],
                expected["invocation_s"],
                rtol=RELATIVE_TOLERANCE,
                atol=0,
                err_msg=where,
            )


@pytest.mark.parametrize("seed", PROPERTY_SEEDS)
def test_chunk_size_keeps_front(seed: int) -> None:
    _, _, problem = _problem(seed)
    size = problem.space_size
    chunk_sizes = [2, 7, max(1, size // 5), size, size + 3]
    if size <= 400:
        chunk_sizes.append(1)

    expected = _pairs(sweep_in_process(problem, chunk_size=size)[0])
    for chunk_size in chunk_sizes:
        front, _ = sweep_in_process(problem, chunk_size=chunk_size)
        assert _pairs(front) == expected, f"chunk_size={chunk_size}"


@pytest.mark.parametrize("seed", PROPERTY_SEEDS)
def test_merge_grouping_keeps_front(seed: int) -> None:
    _, _, problem = _problem(seed)
    rng = random.Random(seed)
    chunk_size = max(1, problem.space_size // rng.randint(2, 12))
    fronts = _chunk_fronts(problem, chunk_size)
    expected = _pairs(merge_fronts(problem, fronts))

    for trial in range(5):
        # Merge random groups of neighbours in a shuffled list until one front is left,
        # which gives a random grouping and order of the same partial fronts.
        pending = list(fronts)
        rng.shuffle(pending)
        while len(pending) > 1:
            begin = rng.randrange(len(pending) - 1)
            stop = rng.randint(begin + 2, min(len(pending), begin + 4))
            pending[begin:stop] = [merge_fronts(problem, pending[begin:stop])]
        assert _pairs(pending[0]) == expected, f"trial {trial}"


@pytest.mark.parametrize("seed", PROPERTY_SEEDS)
def test_merge_one_front_unchanged(seed: int) -> None:
    _, _, problem = _problem(seed)
    front = front_of(problem, evaluate_chunk(problem, 0, problem.space_size))

    assert _pairs(merge_fronts(problem, [front])) == _pairs(front)


def test_merge_no_fronts_empty() -> None:
    _, _, problem = _problem(0)

    merged = merge_fronts(problem, [])

    assert len(merged) == 0
    assert merged.equivalent_count.shape == (0,)


def _compiled_arrays(problem: CompiledProblem) -> dict[str, np.ndarray]:
    """Return every array the compiled problem holds, by a readable name."""
    arrays = {}
    for field in fields(problem):
        value = getattr(problem, field.name)
        if isinstance(value, np.ndarray):
            arrays[field.name] = value
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if isinstance(item, np.ndarray):
                    arrays[f"{field.name}[{i}]"] = item
    return arrays


@pytest.mark.parametrize("seed", PROPERTY_SEEDS)
def test_evaluation_keeps_compiled_arrays(seed: int) -> None:
    workflow, system = random_problem(seed)
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    arrays = _compiled_arrays(problem)
    copies = {name: array.copy() for name, array in arrays.items()}
    for array in arrays.values():
        array.flags.writeable = False

    evaluation = evaluate_chunk(problem, 0, problem.space_size)
    front, _ = sweep_in_process(problem, chunk_size=max(1, problem.space_size // 4))

    assert len(evaluation) == problem.space_size
    assert len(front) >= 1
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, copies[name], err_msg=name)


def test_seeds_cover_features() -> None:
    # The comparison with the reference is only as good as the problems it runs on.
    features = {
        "one stage": 0,
        "several sources": 0,
        "fan-in": 0,
        "fan-out": 0,
        "undirected cycle": 0,
        "stages out of topological order": 0,
        "pin": 0,
        "allowed": 0,
        "partial mesh": 0,
        "zero-byte edge": 0,
        "zero-time stage": 0,
        "link without latency_ms": 0,
        "three priced devices": 0,
        "no priced device": 0,
        "runs_per_month": 0,
        "one objective": 0,
        "three objectives": 0,
        "equivalent assignments on the front": 0,
        "space over 1000": 0,
    }
    for seed in SEEDS:
        workflow, system, problem = _problem(seed)
        n_devices = len(system.devices)
        checks = {
            "one stage": problem.n_stages == 1,
            "several sources": sum(len(edges) == 0 for edges in problem.incoming) > 1,
            "fan-in": any(len(edges) > 1 for edges in problem.incoming),
            "fan-out": len(set(problem.edge_source.tolist())) < len(problem.edge_source),
            "undirected cycle": not problem.undirected_forest,
            "stages out of topological order": problem.topo_order.tolist()
            != sorted(problem.topo_order.tolist()),
            "pin": any(stage.pin is not None for stage in workflow.stages),
            "allowed": any(stage.allowed is not None for stage in workflow.stages),
            "partial mesh": len(system.links) < n_devices * (n_devices - 1) // 2,
            "zero-byte edge": any(edge.bytes == 0 for edge in workflow.edges),
            "zero-time stage": any(stage.time_s == 0 for stage in workflow.stages),
            "link without latency_ms": any(
                "latency_ms" not in link.model_fields_set for link in system.links
            ),
            "three priced devices": len(problem.priced) == 3,
            "no priced device": len(problem.priced) == 0,
            "runs_per_month": system.runs_per_month is not None,
            "one objective": len(problem.objectives) == 1,
            "three objectives": len(problem.objectives) == 3,
            "equivalent assignments on the front": any(
                count > 1 for _, count in _reference(seed)[2]
            ),
            "space over 1000": problem.space_size > 1000,
        }
        for name, present in checks.items():
            features[name] += bool(present)

    missing = [name for name, count in features.items() if count < 3]
    assert missing == [], features


def test_evaluation_concat_empty() -> None:
    _, _, problem = _problem(0)

    empty = Evaluation.concat([], problem.n_stages)

    assert len(empty) == 0
    assert empty.placements.shape == (0, problem.n_stages)
    assert set(empty.metrics) == set(METRIC_COLUMNS)
