"""The contention model: hand-computed numbers, the reference, the kernel and the exact method.

A small DAG checks the formulas with numbers. Two 2-thread stages that may run at the
same time on a 2-core device take twice as long. Transfers of 1 MB and 3 MB that start
together over one link wait for 2 MB and 4 MB. Random problems with a contention
block must match the slow reference. Chains fold the contention into the compiled
arrays, so the compiled kernel and the exact method still apply to them.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allocation.calibrate import calibrate
from allocation.catalog import load_cpu_catalog
from allocation.chunk_store import problem_key
from allocation.compile import CompiledProblem, compile_problem
from allocation.errors import InputError
from allocation.estimate import METRIC_COLUMNS, evaluate_chunk, evaluate_placements
from allocation.exact import choose_method, exact_front, exactness
from allocation.kernel import screen_chunk
from allocation.loading import read_document
from allocation.measurements import resolve_runs
from allocation.model import System, Workflow
from allocation.reference import reference_evaluate, reference_sweep
from allocation.robustness import perturbed_problem
from allocation.sweep import PartialFront, sweep_in_process
from allocation.whatif import run_what_if
from tests import test_calibrate_fit
from tests.problems import (
    EMPTY_CATALOG,
    branching_problem,
    chain_problem,
    random_problem_mixed_pricing,
)

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
RELATIVE_TOLERANCE = 1e-9

# src on `edge` feeds a and b, which may run at the same time, on the 2-core `box`.
PARALLEL_WORKFLOW: dict[str, Any] = {
    "workflow": "parallel",
    "measured_on": {"name": "Reference PC", "cores": 2, "single_thread": 1000},
    "stages": [
        {"id": "src", "time_s": 0.5, "pin": "edge"},
        {"id": "a", "time_s": 1.0, "threads": 2, "pin": "box"},
        {"id": "b", "time_s": 1.0, "threads": 2, "pin": "box"},
    ],
    "edges": [
        {"from": "src", "to": "a", "bytes": 1_000_000},
        {"from": "src", "to": "b", "bytes": 3_000_000},
    ],
}


def _parallel_system(contention: dict[str, Any] | None) -> System:
    document: dict[str, Any] = {
        "system": "edge-box",
        "devices": [
            {"id": "edge", "cpu": {"name": "Edge", "cores": 1, "single_thread": 1000}},
            {
                "id": "box",
                "cpu": {"name": "Box", "cores": 2, "single_thread": 1000},
                "pricing": {"provider": "flat", "usd_per_compute_s": 1.0},
            },
        ],
        # 8 Mbit/s moves 1 MB a second.
        "links": [{"between": ["edge", "box"], "bandwidth_mbps": 8, "latency_ms": 10}],
    }
    if contention is not None:
        document["contention"] = contention
    return System.model_validate(document)


def _parallel_metrics(contention: dict[str, Any] | None) -> dict[str, float]:
    workflow = Workflow.model_validate(PARALLEL_WORKFLOW)
    system = _parallel_system(contention)
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    metrics = evaluate_chunk(problem, 0, 1).metrics
    reference = reference_evaluate(
        workflow, system, problem, {"src": "edge", "a": "box", "b": "box"}
    )
    for name in ("latency_s", "comm_s", "cost_usd"):
        assert float(metrics[name][0]) == pytest.approx(reference[name], rel=1e-12), name
    return {name: float(values[0]) for name, values in metrics.items()}


def test_parallel_dag_without_contention() -> None:
    metrics = _parallel_metrics(None)

    # src 0.5 s, then 3 MB over the link (0.01 + 3 s), then b's 1 s.
    assert metrics["latency_s"] == pytest.approx(4.51, rel=1e-12)
    assert metrics["comm_s"] == pytest.approx(1.01 + 3.01, rel=1e-12)
    assert metrics["cost_usd"] == pytest.approx(2.0, rel=1e-12)


def test_parallel_dag_shares_cores_and_link() -> None:
    metrics = _parallel_metrics({})

    # a and b demand 2 + 2 cores of 2: each takes 2 s. The 1 MB transfer waits for
    # 1 + 1 MB (2.01 s), the 3 MB one for 3 + 1 MB (4.01 s).
    assert metrics["comm_s"] == pytest.approx(2.01 + 4.01, rel=1e-12)
    assert metrics["latency_s"] == pytest.approx(0.5 + 4.01 + 2.0, rel=1e-12)
    assert metrics["cost_usd"] == pytest.approx(4.0, rel=1e-12)


def test_parallel_dag_two_frames() -> None:
    metrics = _parallel_metrics({"concurrent_frames": 2})

    # Twice the demand: src 2 × 1 core of 1 (1 s), a and b 2 × 4 cores of 2 (4 s each),
    # transfers 0.01 + 2 × 2 s and 0.01 + 2 × 4 s.
    assert metrics["comm_s"] == pytest.approx(4.01 + 8.01, rel=1e-12)
    assert metrics["latency_s"] == pytest.approx(1.0 + 8.01 + 4.0, rel=1e-12)
    assert metrics["cost_usd"] == pytest.approx(8.0, rel=1e-12)


def test_parallel_dag_switches() -> None:
    cpu_only = _parallel_metrics({"links": False})
    links_only = _parallel_metrics({"cpu": False})

    assert cpu_only["comm_s"] == pytest.approx(1.01 + 3.01, rel=1e-12)
    assert cpu_only["cost_usd"] == pytest.approx(4.0, rel=1e-12)
    assert links_only["comm_s"] == pytest.approx(2.01 + 4.01, rel=1e-12)
    assert links_only["cost_usd"] == pytest.approx(2.0, rel=1e-12)


def test_parallel_dag_not_exact() -> None:
    workflow = Workflow.model_validate(PARALLEL_WORKFLOW)
    problem = compile_problem(workflow, _parallel_system({}), EMPTY_CATALOG)

    reason = exactness(problem)
    assert reason is not None
    assert reason.startswith("contention between stages that may run at the same time")
    assert "'a' and 'b' may share device 'box'" in reason
    assert "contention between transfers" in reason
    assert screen_chunk(problem, 0, 1, sample_fraction=0.5) is None


def test_absent_block_keeps_arrays() -> None:
    workflow = Workflow.model_validate(PARALLEL_WORKFLOW)
    plain = compile_problem(workflow, _parallel_system(None), EMPTY_CATALOG)
    switched_off = compile_problem(
        workflow, _parallel_system({"cpu": False, "links": False}), EMPTY_CATALOG
    )

    assert plain.contention is None
    assert switched_off.contention is None
    np.testing.assert_array_equal(plain.stage_time_s, switched_off.stage_time_s)
    np.testing.assert_array_equal(plain.edge_transfer_s, switched_off.edge_transfer_s)


def test_contention_changes_problem_key() -> None:
    workflow = Workflow.model_validate(PARALLEL_WORKFLOW)
    plain = compile_problem(workflow, _parallel_system(None), EMPTY_CATALOG)
    one_frame = compile_problem(workflow, _parallel_system({}), EMPTY_CATALOG)
    two_frames = compile_problem(
        workflow, _parallel_system({"concurrent_frames": 2}), EMPTY_CATALOG
    )

    keys = {problem_key(p, sample_fraction=1.0) for p in (plain, one_frame, two_frames)}
    assert len(keys) == 3


@pytest.mark.parametrize("frames", [0, 10_001, 1.5, "2"])
def test_concurrent_frames_invalid(frames: object) -> None:
    with pytest.raises(ValueError, match="concurrent_frames"):
        _parallel_system({"concurrent_frames": frames})


def _with_contention(system: System, rng: random.Random) -> System:
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)
    document["contention"] = {
        "cpu": rng.random() < 0.8,
        "links": rng.random() < 0.8,
        "concurrent_frames": rng.choice([1, 1, 2, 3]),
    }
    return System.model_validate(document)


def _threaded(workflow: Workflow, rng: random.Random) -> Workflow:
    stages = [
        stage.model_copy(update={"threads": rng.choice([1, 1, 2, 4, 8])})
        for stage in workflow.stages
    ]
    return workflow.model_copy(update={"stages": stages})


@functools.cache
def _random_contended(seed: int) -> tuple[Workflow, System, CompiledProblem]:
    workflow, system = random_problem_mixed_pricing(seed)
    rng = random.Random(seed + 31)
    workflow = _threaded(workflow, rng)
    system = _with_contention(system, rng)
    return workflow, system, compile_problem(workflow, system, EMPTY_CATALOG, catalog_dir=CATALOGS)


def _small_seeds() -> list[int]:
    seeds = []
    for seed in range(60):
        if _random_contended(seed)[2].space_size <= 300:
            seeds.append(seed)
    return seeds[:30]


@pytest.mark.parametrize("seed", _small_seeds())
def test_random_matches_reference(seed: int) -> None:
    workflow, system, problem = _random_contended(seed)
    _, expected, front = reference_sweep(workflow, system, problem)
    evaluation = evaluate_chunk(problem, 0, problem.space_size)

    for name in METRIC_COLUMNS:
        values = np.array([row[name] for row in expected], dtype=float)
        np.testing.assert_allclose(
            evaluation.metrics[name].astype(float),
            values,
            rtol=RELATIVE_TOLERANCE,
            atol=0,
            equal_nan=True,
            err_msg=name,
        )
    swept, _ = sweep_in_process(problem, chunk_size=max(1, problem.space_size // 3))
    assert _pairs(swept) == sorted(front)


def test_random_seeds_cover_both_paths() -> None:
    problems = [_random_contended(seed)[2] for seed in _small_seeds()]

    assert any(p.contention_reason is not None for p in problems)
    assert any(p.contention_reason is None for p in problems)


def _pairs(front: PartialFront) -> list[tuple[int, int]]:
    return sorted(
        zip(front.evaluation.pattern_index.tolist(), front.equivalent_count.tolist(), strict=True)
    )


@functools.cache
def _contended_chain(seed: int) -> tuple[Workflow, System, CompiledProblem]:
    workflow, system = chain_problem(5, seed, n_devices=3, lambda_device=False)
    rng = random.Random(seed)
    workflow = _threaded(workflow, rng)
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)
    document["contention"] = {"concurrent_frames": rng.choice([2, 3, 6])}
    system = System.model_validate(document)
    return workflow, system, compile_problem(workflow, system, EMPTY_CATALOG)


@pytest.mark.parametrize("seed", range(6))
def test_chain_folds_concurrent_frames(seed: int) -> None:
    workflow, system, problem = _contended_chain(seed)
    plain = compile_problem(workflow, system.model_copy(update={"contention": None}), EMPTY_CATALOG)

    assert problem.contention is None
    assert exactness(problem) is None
    assert np.all(problem.edge_transfer_s >= plain.edge_transfer_s)
    assert np.any(problem.edge_transfer_s > plain.edge_transfer_s)


@pytest.mark.parametrize("seed", range(6))
def test_chain_kernel_and_exact_match_reference(seed: int) -> None:
    workflow, system, problem = _contended_chain(seed)
    _, expected, front = reference_sweep(workflow, system, problem)

    assert screen_chunk(problem, 0, problem.space_size, sample_fraction=0.5) is not None
    screened, _ = sweep_in_process(problem, chunk_size=100, sample_fraction=0.5)
    exact = exact_front(problem)
    assert _pairs(screened) == sorted(front)
    assert _pairs(exact) == sorted(front)

    for row in exact.evaluation.pattern_index.tolist():
        for name in problem.objectives:
            assert exact.evaluation.metrics[name][
                exact.evaluation.pattern_index.tolist().index(row)
            ] == pytest.approx(expected[row][name], rel=RELATIVE_TOLERANCE)


def test_branching_rejects_exact_method() -> None:
    workflow, system = branching_problem(8, 3, lambda_device=False)
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)
    document["contention"] = {}
    problem = compile_problem(workflow, System.model_validate(document), EMPTY_CATALOG)

    assert problem.contention_reason is not None
    with pytest.raises(InputError, match="contention between"):
        choose_method(problem, "exact")
    method, _ = choose_method(problem, "auto")
    assert method == "exhaustive"
    placements = np.zeros((1, problem.n_stages), dtype=np.int64)
    assert np.isfinite(evaluate_placements(problem, placements).metrics["latency_s"]).all()


def test_calibrate_keeps_contention_block() -> None:
    workflow = Workflow.model_validate(test_calibrate_fit.WORKFLOW)
    document = test_calibrate_fit._system(False)
    document["contention"] = {"concurrent_frames": 2}
    system = System.model_validate(document)
    measurements = test_calibrate_fit._measurements(1)
    runs = resolve_runs(measurements, workflow, system, file="synthetic.yaml")

    result = calibrate(workflow, system, document, EMPTY_CATALOG, measurements, runs)

    assert result.system.contention == system.contention
    assert result.system_document["contention"] == {"concurrent_frames": 2}
    assert any("contention block" in warning for warning in result.warnings)
    fitted = result.system
    assert fitted.core_scaling_exponent == pytest.approx(
        test_calibrate_fit.HIDDEN["alpha"], rel=0.05
    )


def test_whatif_loads_contention() -> None:
    system_document = read_document(CATALOGS / "systems/edge-cloud.yaml")
    system_document["contention"] = {"concurrent_frames": 2}

    result = run_what_if(
        read_document(CATALOGS / "workflows/object-detection.yaml"),
        system_document,
        load_cpu_catalog(CATALOGS / "cpus.parquet"),
        "links[0].bandwidth_mbps",
        10.0,
        100.0,
        steps=3,
        log=True,
        tolerance=1e-2,
        catalog_dir=CATALOGS,
    )

    assert len(result.grid) >= 3
    assert result.curves["latency_s"].notna().all()


@pytest.mark.parametrize("seed", [*_small_seeds()[:8], "chain"])
def test_bandwidth_perturbation_keeps_contention(seed: int | str) -> None:
    """Scaling bandwidth in a compiled problem equals compiling the scaled system."""
    if seed == "chain":
        workflow, system, problem = _contended_chain(0)
    else:
        workflow, system, problem = _random_contended(int(seed))
    factors = np.linspace(0.5, 1.7, len(system.links))
    scaled_links = [
        link.model_copy(update={"bandwidth_mbps": link.bandwidth_mbps * float(factor)})
        for link, factor in zip(system.links, factors, strict=True)
    ]
    scaled = compile_problem(
        workflow,
        system.model_copy(update={"links": scaled_links}),
        EMPTY_CATALOG,
        catalog_dir=CATALOGS,
    )
    perturbed = perturbed_problem(
        problem,
        system,
        stage_factors=np.ones(problem.n_stages),
        bandwidth_factors=factors,
        price_factors=np.ones(len(problem.priced)),
    )
    stop = min(problem.space_size, 500)
    expected = evaluate_chunk(scaled, 0, stop)
    actual = evaluate_chunk(perturbed, 0, stop)
    for name in ("latency_s", "comm_s", "cost_usd"):
        np.testing.assert_allclose(
            actual.metrics[name], expected.metrics[name], rtol=1e-12, atol=0, err_msg=name
        )
