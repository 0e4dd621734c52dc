"""Property test: the exact method equals enumeration on problems hypothesis builds.

The strategy draws each part of a problem separately: devices and their CPUs, the
pricing of each device from every built-in provider with per-run cost terms, stages
with pins and allowed sets, a DAG given by which pairs of stages have an edge, links
and objectives. A failure then shrinks to a small problem with few stages, few edges
and simple numbers. Every problem has at most 4^5 = 1,024 assignments.

Prices are normal floats. A subnormal rate (below about 2.2e-308 USD) keeps too few
digits for the per-run cost terms to match the billed cost, and the exact method then
refuses the problem, as it should.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation.compile import CompiledProblem, compile_problem
from allocation.estimate import METRIC_COLUMNS
from allocation.exact import NotExactError, exact_front, exactness
from allocation.model import System, Workflow
from allocation.sweep import sweep_in_process
from tests.problems import _TERM_PRICINGS, EMPTY_CATALOG

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"

_TIMES_S = st.one_of(
    st.sampled_from([0.0, 0.001, 0.25, 1.0, 2.5]),
    st.floats(min_value=1e-4, max_value=5.0, allow_nan=False),
)
_BYTES = st.one_of(
    st.sampled_from([0, 1, 1_500, 1_000_000, 300_000_000]),
    st.integers(min_value=0, max_value=10**9),
)
_SCORES = st.one_of(
    st.sampled_from([500.0, 1_000.0, 3_000.0]),
    st.floats(min_value=100.0, max_value=40_000.0, allow_nan=False),
)
_FLAT = st.fixed_dictionaries(
    {"provider": st.just("flat")},
    optional={
        "usd_per_compute_s": st.floats(0.0, 1e-4, allow_subnormal=False),
        "usd_per_invocation": st.floats(0.0, 1e-6, allow_subnormal=False),
        "usd_per_gb_in": st.floats(0.0, 0.05, allow_subnormal=False),
        "usd_per_gb_out": st.floats(0.0, 0.2, allow_subnormal=False),
    },
)
_PRICING = st.one_of(st.none(), _FLAT, st.sampled_from(_TERM_PRICINGS).map(dict))
_OBJECTIVES = st.sampled_from(
    [
        ["latency_s", "cost_usd"],
        ["cost_usd", "latency_s"],
        ["latency_s"],
        ["cost_usd"],
        ["comm_s"],
        ["latency_s", "cost_usd", "comm_s"],
        ["latency_s", "cost_usd", "upload_bytes"],
        ["cost_usd", "download_bytes"],
        ["latency_s", "cost_usd", "comm_s", "upload_bytes"],
    ]
)


@st.composite
def problems(draw: st.DrawFn) -> tuple[Workflow, System]:
    """Draw a workflow and a system small enough to enumerate."""
    n_devices = draw(st.integers(min_value=2, max_value=4))
    device_ids = [f"d{d}" for d in range(n_devices)]
    n_stages = draw(st.integers(min_value=1, max_value=5))
    stage_ids = [f"s{s}" for s in range(n_stages)]

    stages = []
    for stage_id in stage_ids:
        stage: dict[str, Any] = {
            "id": stage_id,
            "time_s": draw(_TIMES_S),
            "threads": draw(st.integers(min_value=1, max_value=4)),
        }
        placement = draw(st.sampled_from(["any", "pin", "allowed"]))
        if placement == "pin":
            stage["pin"] = draw(st.sampled_from(device_ids))
        elif placement == "allowed":
            stage["allowed"] = draw(
                st.lists(st.sampled_from(device_ids), min_size=1, max_size=n_devices, unique=True)
            )
        stages.append(stage)

    # Edges point from a lower to a higher stage number, so the graph is acyclic. The
    # drawn pairs make a chain, a tree, a DAG with joins, or no edges at all.
    pairs = [(i, j) for i in range(n_stages) for j in range(i + 1, n_stages)]
    chosen = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    edges = [
        {"from": stage_ids[i], "to": stage_ids[j], "bytes": draw(_BYTES)}
        for (i, j), keep in zip(pairs, chosen, strict=True)
        if keep
    ]

    devices = []
    for device_id in device_ids:
        device: dict[str, Any] = {
            "id": device_id,
            "cpu": {
                "name": f"CPU of {device_id}",
                "single_thread": draw(_SCORES),
                "cores": draw(st.sampled_from([1, 2, 4, 8])),
            },
        }
        pricing = draw(_PRICING)
        if pricing is not None:
            device["pricing"] = pricing
        devices.append(device)
    links = [
        {
            "between": [a, b],
            "bandwidth_mbps": draw(st.sampled_from([1.0, 10.0, 100.0, 1000.0])),
            "latency_ms": draw(st.sampled_from([0.0, 2.0, 30.0])),
        }
        for k, a in enumerate(device_ids)
        for b in device_ids[k + 1 :]
    ]

    workflow = Workflow.model_validate(
        {
            "workflow": "drawn",
            "measured_on": {"name": "Reference PC", "single_thread": 2_900.0, "cores": 8},
            "stages": stages,
            "edges": edges,
        }
    )
    system: dict[str, Any] = {
        "system": "drawn",
        "devices": devices,
        "links": links,
        "objectives": draw(_OBJECTIVES),
    }
    if draw(st.booleans()):
        system["runs_per_month"] = 1
    return workflow, System.model_validate(system)


def _compile(workflow: Workflow, system: System) -> CompiledProblem:
    return compile_problem(workflow, system, EMPTY_CATALOG, catalog_dir=CATALOGS)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(problems())
def test_exact_front_equals_enumeration(models: tuple[Workflow, System]) -> None:
    problem = _compile(*models)
    reason = exactness(problem)
    if reason is not None:
        # Additive objectives and graphs of at most five stages are always exact.
        raise AssertionError(f"refused a problem it should solve: {reason}")
    try:
        actual = exact_front(problem)
    except NotExactError as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(str(exc)) from exc
    expected, _ = sweep_in_process(problem, sample_fraction=0.0)

    np.testing.assert_array_equal(
        actual.evaluation.pattern_index, expected.evaluation.pattern_index
    )
    np.testing.assert_array_equal(actual.equivalent_count, expected.equivalent_count)
    for name in METRIC_COLUMNS:
        np.testing.assert_array_equal(
            actual.evaluation.metrics[name], expected.evaluation.metrics[name], err_msg=name
        )
