"""The compiled screening kernel against the numpy estimator.

The kernel may keep more assignments than the front, but the front of those it keeps
must be the front of the whole chunk bit for bit: the same assignments, equivalent
counts, placements and metrics. Problems are seeded random ones (chains, DAGs with
fan-in and fan-out, forests, pins, allowed sets, 2 to 4 devices, one to three
objectives, ``flat`` and ``aws-lambda`` pricing, with and without runs_per_month) and
a few larger chains and DAGs built here.
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allocation import kernel
from allocation.compile import CompiledProblem, compile_problem
from allocation.errors import AllocationError
from allocation.estimate import METRIC_COLUMNS, Evaluation, evaluate_chunk
from allocation.kernel import screen_chunk
from allocation.model import System, Workflow
from allocation.sweep import (
    ChunkResult,
    PartialFront,
    front_of,
    merge_fronts,
    objective_matrix,
    sample_mask,
    sweep_chunk,
)
from tests.problems import EMPTY_CATALOG, random_problem, random_problem_mixed_pricing

CATALOGS = Path(__file__).resolve().parent.parent / "catalogs"
SEEDS = range(160)


@functools.cache
def _random(seed: int, mixed: bool) -> CompiledProblem:
    build = random_problem_mixed_pricing if mixed else random_problem
    workflow, system = build(seed)
    return compile_problem(workflow, system, EMPTY_CATALOG, catalog_dir=CATALOGS)


def _chunks(problem: CompiledProblem, seed: int) -> list[tuple[int, int]]:
    """Return the whole space and one random chunk of it."""
    rng = random.Random(seed)
    start = rng.randrange(problem.space_size)
    stop = rng.randrange(start, problem.space_size) + 1
    return [(0, problem.space_size), (start, stop)]


def _assert_same_evaluation(actual: Evaluation, expected: Evaluation) -> None:
    np.testing.assert_array_equal(actual.pattern_index, expected.pattern_index)
    np.testing.assert_array_equal(actual.placements, expected.placements)
    assert actual.placements.dtype == expected.placements.dtype
    for name in METRIC_COLUMNS:
        # Bit for bit, NaN (monthly cost without runs_per_month) equal to NaN.
        np.testing.assert_array_equal(actual.metrics[name], expected.metrics[name], name)
        assert actual.metrics[name].dtype == expected.metrics[name].dtype, name


def _assert_same_front(actual: PartialFront, expected: PartialFront) -> None:
    _assert_same_evaluation(actual.evaluation, expected.evaluation)
    np.testing.assert_array_equal(actual.equivalent_count, expected.equivalent_count)


def _numpy_chunk(
    problem: CompiledProblem, start: int, stop: int, sample_fraction: float
) -> ChunkResult:
    """Return the chunk as the numpy estimator alone computes it."""
    evaluation = evaluate_chunk(problem, start, stop)
    if sample_fraction >= 1.0:
        patterns = evaluation
    else:
        patterns = evaluation.take(sample_mask(evaluation.pattern_index, sample_fraction))
    return ChunkResult(start, stop, front_of(problem, evaluation), patterns)


@pytest.mark.parametrize("mixed", [False, True], ids=["flat", "mixed-pricing"])
@pytest.mark.parametrize("seed", SEEDS)
def test_kernel_front_matches_numpy(seed: int, mixed: bool) -> None:
    problem = _random(seed, mixed)
    for start, stop in _chunks(problem, seed):
        try:
            evaluation = evaluate_chunk(problem, start, stop)
            expected = front_of(problem, evaluation)
        except AllocationError:
            continue  # a provider rejects the month; test_kernel_errors_unchanged covers it
        screening = screen_chunk(problem, start, stop)
        assert screening is not None

        candidates = evaluation.take(screening.candidates - start)
        assert np.all(np.diff(screening.candidates) > 0)
        assert set(expected.evaluation.pattern_index.tolist()) <= set(screening.candidates.tolist())
        _assert_same_front(front_of(problem, candidates), expected)


@pytest.mark.parametrize("mixed", [False, True], ids=["flat", "mixed-pricing"])
@pytest.mark.parametrize("seed", range(0, 160, 4))
def test_kernel_values_exact(seed: int, mixed: bool) -> None:
    problem = _random(seed, mixed)
    try:
        evaluation = evaluate_chunk(problem, 0, problem.space_size)
    except AllocationError:
        return
    screening = screen_chunk(problem, 0, problem.space_size)
    assert screening is not None
    expected = objective_matrix(problem, evaluation.take(screening.candidates))

    for o, name in enumerate(problem.objectives):
        if name == "comm_s":
            np.testing.assert_allclose(
                screening.objective_values[:, o], expected[:, o], rtol=1e-13, atol=0
            )
        else:
            np.testing.assert_array_equal(screening.objective_values[:, o], expected[:, o], name)
    assert screening.agrees_with(expected)


@pytest.mark.parametrize("seed", range(0, 160, 8))
def test_kernel_sample_matches_sample_mask(seed: int) -> None:
    problem = _random(seed, False)
    rng = random.Random(seed)
    for fraction in (0.0, rng.random(), 0.999):
        for start, stop in _chunks(problem, seed):
            screening = screen_chunk(problem, start, stop, sample_fraction=fraction)
            assert screening is not None
            indices = np.arange(start, stop, dtype=np.int64)
            np.testing.assert_array_equal(
                screening.sampled, indices[sample_mask(indices, fraction)], f"{fraction}"
            )


@pytest.mark.parametrize("mixed", [False, True], ids=["flat", "mixed-pricing"])
@pytest.mark.parametrize("seed", range(0, 160, 5))
def test_sweep_chunk_matches_numpy(seed: int, mixed: bool) -> None:
    problem = _random(seed, mixed)
    for start, stop in _chunks(problem, seed):
        for fraction in (1.0, 0.3):
            try:
                expected = _numpy_chunk(problem, start, stop, fraction)
            except AllocationError:
                continue
            actual = sweep_chunk(problem, start, stop, sample_fraction=fraction)
            _assert_same_front(actual.front, expected.front)
            _assert_same_evaluation(actual.patterns, expected.patterns)


@pytest.mark.parametrize("mixed", [False, True], ids=["flat", "mixed-pricing"])
@pytest.mark.parametrize("seed", range(1, 160, 6))
def test_merged_front_matches_numpy(seed: int, mixed: bool) -> None:
    problem = _random(seed, mixed)
    size = problem.space_size
    chunk_size = max(1, size // random.Random(seed).randint(1, 7))
    chunks = [(start, min(start + chunk_size, size)) for start in range(0, size, chunk_size)]
    try:
        expected = merge_fronts(problem, [_numpy_chunk(problem, *c, 0.5).front for c in chunks])
    except AllocationError:
        return

    actual = merge_fronts(
        problem, [sweep_chunk(problem, *c, sample_fraction=0.5).front for c in chunks]
    )
    _assert_same_front(actual, expected)


def _device(device_id: str, single_thread: float, cores: int) -> dict[str, Any]:
    return {
        "id": device_id,
        "cpu": {"name": f"CPU of {device_id}", "single_thread": single_thread, "cores": cores},
        "cores": cores,
    }


def _larger_problem(
    shape: str, *, objectives: list[str] | None = None, runs: bool = True, runs_per_month: int = 100
) -> CompiledProblem:
    """Build a chain of 9 stages or a DAG of 8 on four devices, two of them priced."""
    rng = random.Random(shape)
    n_stages = 9 if shape == "chain" else 8
    stages: list[dict[str, Any]] = [
        {"id": f"s{i}", "time_s": rng.uniform(0.001, 1.0), "threads": rng.choice([1, 2, 4])}
        for i in range(n_stages)
    ]
    if shape == "chain":
        pairs = [(i, i + 1) for i in range(n_stages - 1)]
    else:
        # Fan-out from s0, fan-in at s5 and s7, and stages listed out of topological order.
        pairs = [(0, 1), (0, 2), (0, 3), (1, 5), (2, 5), (3, 4), (4, 7), (5, 7), (6, 7), (2, 6)]
    edges = [
        {"from": f"s{u}", "to": f"s{v}", "bytes": rng.choice([0, rng.randint(1_000, 10**7)])}
        for u, v in pairs
    ]
    stages[0]["pin"] = "edge"
    stages[2]["allowed"] = ["edge", "gateway", "lambda"]
    devices = [
        _device("edge", 600.0, 4),
        _device("gateway", 1200.0, 4),
        _device("cloud", 2500.0, 8),
        _device("lambda", 2200.0, 3),
    ]
    devices[2]["pricing"] = {
        "provider": "flat",
        "usd_per_compute_s": 3e-5,
        "usd_per_invocation": 2e-7,
        "usd_per_gb_out": 0.09,
    }
    devices[3]["pricing"] = {
        "provider": "aws-lambda",
        "region": "ap-northeast-1",
        "memory_mb": 2048,
    }
    ids = [device["id"] for device in devices]
    links = [
        {"between": [a, b], "bandwidth_mbps": rng.choice([50.0, 100.0, 1000.0]), "latency_ms": 5}
        for i, a in enumerate(ids)
        for b in ids[i + 1 :]
    ]
    system: dict[str, Any] = {"system": f"four-{shape}", "devices": devices, "links": links}
    if runs:
        system["runs_per_month"] = runs_per_month
    if objectives is not None:
        system["objectives"] = objectives
    workflow = {
        "workflow": shape,
        "measured_on": {"name": "Reference PC", "single_thread": 2000.0, "cores": 8},
        "stages": stages,
        "edges": edges,
    }
    return compile_problem(
        Workflow.model_validate(workflow),
        System.model_validate(system),
        EMPTY_CATALOG,
        catalog_dir=CATALOGS,
    )


LARGER_CASES = [
    ("chain", None, True),
    ("chain", ["cost_usd", "latency_s"], False),
    ("chain", ["latency_s", "monthly_cost_usd", "comm_s"], True),
    ("dag", None, True),
    ("dag", ["latency_s", "cost_usd", "upload_bytes"], False),
    ("dag", ["comm_s"], True),
    ("dag", ["download_bytes", "latency_s"], True),
]


@pytest.mark.parametrize(("shape", "objectives", "runs"), LARGER_CASES)
def test_kernel_larger_problems(shape: str, objectives: list[str] | None, runs: bool) -> None:
    problem = _larger_problem(shape, objectives=objectives, runs=runs)
    size = problem.space_size
    assert size > 10_000
    for start, stop in [(0, size), (size // 3 + 7, 2 * size // 3 - 5)]:
        expected = _numpy_chunk(problem, start, stop, 0.01)
        actual = sweep_chunk(problem, start, stop, sample_fraction=0.01)
        _assert_same_front(actual.front, expected.front)
        _assert_same_evaluation(actual.patterns, expected.patterns)


def test_kernel_monthly_without_runs_unsupported() -> None:
    problem = _larger_problem("chain", objectives=["monthly_cost_usd"], runs=False)

    assert screen_chunk(problem, 0, 100) is None
    with pytest.raises(AllocationError, match="not finite"):
        sweep_chunk(problem, 0, 100)


def test_kernel_large_table_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _larger_problem("dag")
    monkeypatch.setattr(kernel, "MAX_TABLE_BITS", 2)
    expected = _numpy_chunk(problem, 0, 5000, 0.5)

    assert screen_chunk(problem, 0, 5000) is None
    actual = sweep_chunk(problem, 0, 5000, sample_fraction=0.5)
    _assert_same_front(actual.front, expected.front)
    _assert_same_evaluation(actual.patterns, expected.patterns)


@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_kernel_disagreement_falls_back(fraction: float) -> None:
    problem = _larger_problem("chain")
    plan = kernel._plan_of(problem)
    assert plan is not None
    # Corrupt the kernel's prices, as a provider that prices rows differently in the
    # tables would. The sweep must notice and estimate the chunk without the kernel.
    plan.cost_table_usd[:] = plan.cost_table_usd * 0.5
    expected = _numpy_chunk(problem, 0, 20_000, fraction)

    with pytest.warns(RuntimeWarning, match="disagree"):
        actual = sweep_chunk(problem, 0, 20_000, sample_fraction=fraction)
    _assert_same_front(actual.front, expected.front)
    _assert_same_evaluation(actual.patterns, expected.patterns)


def test_kernel_errors_unchanged() -> None:
    # A Lambda month past the price table's last egress tier raises in the numpy
    # estimator. The kernel must leave that error to it, neither dropping nor changing it.
    problem = _larger_problem("chain", runs_per_month=10**12)
    with pytest.raises(AllocationError) as expected:
        evaluate_chunk(problem, 0, problem.space_size)

    assert screen_chunk(problem, 0, problem.space_size) is None
    with pytest.raises(type(expected.value), match="has no price above"):
        sweep_chunk(problem, 0, problem.space_size, sample_fraction=0.5)


def test_kernel_rejects_bad_chunk() -> None:
    problem = _random(0, False)
    with pytest.raises(ValueError, match="start"):
        screen_chunk(problem, 0, problem.space_size + 1)
    with pytest.raises(ValueError, match="start"):
        screen_chunk(problem, 3, 3)


def test_kernel_without_disk_cache(tmp_path: Path) -> None:
    # With no writable cache location numba raises when a cached function is defined;
    # the kernel must then compile in memory and give the same result. The script
    # imports only the kernel and what it needs.
    seed = next(s for s in SEEDS if _random(s, True).space_size > 1000)
    problem = _random(seed, True)
    screening = screen_chunk(problem, 0, problem.space_size)
    assert screening is not None
    script = tmp_path / "screen.py"
    script.write_text(
        "import json, sys\n"
        "from pathlib import Path\n"
        "from allocation.compile import compile_problem\n"
        "from allocation.kernel import screen_chunk\n"
        "from tests.problems import EMPTY_CATALOG, random_problem_mixed_pricing\n"
        "workflow, system = random_problem_mixed_pricing(int(sys.argv[1]))\n"
        "catalog_dir = Path(sys.argv[2])\n"
        "problem = compile_problem(workflow, system, EMPTY_CATALOG, catalog_dir=catalog_dir)\n"
        "screening = screen_chunk(problem, 0, problem.space_size)\n"
        "print(json.dumps(screening.candidates.tolist()))\n"
    )
    environment = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "IPythonCacheLocator"}
    environment.pop("NUMBA_CACHE_DIR", None)
    completed = subprocess.run(
        [sys.executable, str(script), str(seed), str(CATALOGS)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == screening.candidates.tolist()


def test_kernel_agreement_no_warning() -> None:
    problem = _larger_problem("chain")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sweep_chunk(problem, 0, 4096, sample_fraction=0.5)
