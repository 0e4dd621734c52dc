"""Critical paths, latency and cost breakdowns, and pairwise explanations of placements.

A hand-calculated chain of three stages on two devices checks the numbers themselves.
Seeded random problems (chains and DAGs, pins, `flat` and `aws-lambda` devices side by
side) and the three example workflows on the edge-cloud system check the identities.
The parts of a latency or a cost add up to the engine's metric, and the deltas of a
pairwise explanation add up to the difference of the totals.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from allocation.compile import CompiledProblem, compile_problem
from allocation.estimate import evaluate_placements
from allocation.explain import (
    breakdown_tables,
    cost_lines,
    critical_path,
    explain_pair,
    latency_parts,
    monthly_costs,
    neighbour_pairs,
    placements_of,
)
from allocation.model import System, Workflow
from allocation.results import candidate_labels, front_table
from allocation.space import decode_placements
from allocation.study import load_study
from allocation.sweep import sweep_in_process
from tests.conftest import CATALOGS
from tests.problems import EMPTY_CATALOG, random_problem_mixed_pricing

RELATIVE = 1e-12
ABSOLUTE = 1e-15
"""Tolerance of the sum identities: relative, with a floor for sums near zero."""

SEEDS = range(160)
EXAMPLES = ("object-detection", "speech-sentiment", "style-transfer")

# The hand-calculated chain: capture (pinned to edge) -> detect -> draw.
# The reference PC scores 1000; edge scores 500 (times x 2) and cloud 2000 (times x 0.5).
# The link moves 1 MB per second (8 Mbit/s) after 10 ms of latency.
CHAIN_WORKFLOW: dict[str, Any] = {
    "workflow": "chain",
    "measured_on": {"name": "Reference PC", "cores": 4, "single_thread": 1000.0},
    "stages": [
        {"id": "capture", "time_s": 1.0, "pin": "edge"},
        {"id": "detect", "time_s": 2.0},
        {"id": "draw", "time_s": 0.5},
    ],
    "edges": [
        {"from": "capture", "to": "detect", "bytes": 1_000_000},
        {"from": "detect", "to": "draw", "bytes": 250_000},
    ],
}
CHAIN_SYSTEM: dict[str, Any] = {
    "system": "edge-cloud",
    "runs_per_month": 1000,
    "devices": [
        {"id": "edge", "cpu": {"name": "Board", "cores": 4, "single_thread": 500.0}},
        {
            "id": "cloud",
            "cpu": {"name": "vCPU", "cores": 4, "single_thread": 2000.0},
            "pricing": {
                "provider": "flat",
                "usd_per_compute_s": 0.0001,
                "usd_per_invocation": 0.000002,
                "usd_per_gb_in": 0.01,
                "usd_per_gb_out": 0.1,
            },
        },
    ],
    "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 8.0, "latency_ms": 10.0}],
}
EDGE, CLOUD = 0, 1
ALL_EDGE = np.array([EDGE, EDGE, EDGE])
CLOUD_MIDDLE = np.array([EDGE, CLOUD, EDGE])
CLOUD_TAIL = np.array([EDGE, CLOUD, CLOUD])


def close(actual: float, expected: float) -> bool:
    return abs(actual - expected) <= RELATIVE * max(abs(actual), abs(expected)) + ABSOLUTE


def close_difference(actual: float, a: float, b: float) -> bool:
    """Compare a sum of deltas with ``b - a``, relative to the totals a and b.

    Each total carries the rounding of its own sum, so a small difference of two large
    totals is only as exact as the totals are.
    """
    return abs(actual - (b - a)) <= RELATIVE * max(abs(a), abs(b)) + ABSOLUTE


@pytest.fixture(scope="module")
def chain() -> CompiledProblem:
    return compile_problem(
        Workflow.model_validate(CHAIN_WORKFLOW),
        System.model_validate(CHAIN_SYSTEM),
        EMPTY_CATALOG,
    )


@functools.cache
def random_compiled(seed: int) -> CompiledProblem:
    workflow, system = random_problem_mixed_pricing(seed)
    return compile_problem(workflow, system, EMPTY_CATALOG, catalog_dir=CATALOGS)


@functools.cache
def example(name: str) -> CompiledProblem:
    study = load_study(
        CATALOGS / "workflows" / f"{name}.yaml", CATALOGS / "systems" / "edge-cloud.yaml", CATALOGS
    )
    return study.problem


def sample_placements(problem: CompiledProblem, rng: random.Random, limit: int) -> np.ndarray:
    """Return every placement of a small space, or `limit` random ones of a larger one."""
    if problem.space_size <= limit:
        indices = np.arange(problem.space_size, dtype=np.int64)
    else:
        indices = np.array(
            [rng.randrange(problem.space_size) for _ in range(limit)], dtype=np.int64
        )
    return decode_placements(problem, indices).astype(np.int64)


def longest_path_s(problem: CompiledProblem, placement: np.ndarray) -> float:
    """Return the longest path by trying every path from every stage (small graphs only)."""
    times = problem.stage_time_s[np.arange(problem.n_stages), placement]
    outgoing: dict[int, list[int]] = {s: [] for s in range(problem.n_stages)}
    for e, u in enumerate(problem.edge_source.tolist()):
        outgoing[u].append(e)

    def longest_from(s: int) -> float:
        best = 0.0
        for e in outgoing[s]:
            v = int(problem.edge_target[e])
            transfer = problem.edge_transfer_s[e, placement[s], placement[v]]
            best = max(best, transfer + longest_from(v))
        return float(times[s]) + best

    return max(longest_from(s) for s in range(problem.n_stages))


def path_length_s(problem: CompiledProblem, placement: np.ndarray) -> float:
    stages, edges = critical_path(problem, placement)
    total = 0.0
    for k, s in enumerate(stages):
        total += float(problem.stage_time_s[s, placement[s]])
        if k < len(edges):
            e = edges[k]
            u, v = int(problem.edge_source[e]), int(problem.edge_target[e])
            total += float(problem.edge_transfer_s[e, placement[u], placement[v]])
    return total


# ---------------------------------------------------------------------------
# The hand-calculated chain


def test_chain_stage_times(chain: CompiledProblem) -> None:
    np.testing.assert_allclose(chain.stage_time_s[:, EDGE], [2.0, 4.0, 1.0])
    np.testing.assert_allclose(chain.stage_time_s[1:, CLOUD], [1.0, 0.25])


def test_chain_critical_path_cloud_middle(chain: CompiledProblem) -> None:
    stages, edges = critical_path(chain, CLOUD_MIDDLE)

    assert stages == [0, 1, 2]
    assert edges == [0, 1]


def test_chain_latency_parts_cloud_middle(chain: CompiledProblem) -> None:
    parts = latency_parts(chain, CLOUD_MIDDLE)

    # capture 2 s + draw 1 s on edge, detect 1 s in the cloud, transfers 1.01 s + 0.26 s.
    assert list(parts) == ["compute on edge", "compute on cloud", "transfer"]
    assert parts["compute on edge"] == pytest.approx(3.0)
    assert parts["compute on cloud"] == pytest.approx(1.0)
    assert parts["transfer"] == pytest.approx(1.27)


def test_chain_latency_parts_all_edge(chain: CompiledProblem) -> None:
    assert latency_parts(chain, ALL_EDGE) == {"compute on edge": pytest.approx(7.0)}


def test_chain_cost_lines_cloud_middle(chain: CompiledProblem) -> None:
    lines = {line.line: line for line in cost_lines(chain, CLOUD_MIDDLE)}

    assert set(lines) == {"compute", "requests", "data_in", "data_out"}
    assert {line.device_id for line in lines.values()} == {"cloud"}
    assert {line.provider for line in lines.values()} == {"flat"}
    assert lines["compute"].usd == pytest.approx(0.0001)  # 1 s at 0.0001 USD/s
    assert lines["requests"].usd == pytest.approx(0.000002)  # one invocation
    assert lines["data_in"].usd == pytest.approx(0.00001)  # 0.001 GB at 0.01 USD/GB
    assert lines["data_out"].usd == pytest.approx(0.000025)  # 0.00025 GB at 0.1 USD/GB


def test_chain_monthly_costs(chain: CompiledProblem) -> None:
    monthly = monthly_costs(chain, CLOUD_MIDDLE)

    assert monthly is not None
    assert [(m.device_id, m.provider) for m in monthly] == [("cloud", "flat")]
    assert monthly[0].usd == pytest.approx(1000 * 0.000137)


def test_chain_pair_latency_items(chain: CompiledProblem) -> None:
    pair = explain_pair(chain, ALL_EDGE, CLOUD_TAIL, label_a="J", label_b="C")
    items = {item.name: item for item in pair.latency_items}

    assert list(items) == ["capture", "capture -> detect", "detect", "detect -> draw", "draw"]
    assert items["capture"].delta_s == 0.0
    assert items["capture -> detect"].change == "added"
    assert items["capture -> detect"].link_b == ("edge", "cloud")
    assert items["capture -> detect"].bytes == 1_000_000
    assert items["capture -> detect"].delta_s == pytest.approx(1.01)
    assert items["detect"].moved
    assert items["detect"].speed_ratio == pytest.approx(4.0)
    assert items["detect"].delta_s == pytest.approx(-3.0)
    assert items["detect -> draw"].change == "none"
    assert items["draw"].delta_s == pytest.approx(-0.75)
    assert [item.name for item in pair.latency_changes] == [
        "capture -> detect",
        "detect",
        "draw",
    ]
    assert pair.moved_stages == ("detect", "draw")


def test_chain_pair_totals_and_rate(chain: CompiledProblem) -> None:
    pair = explain_pair(chain, ALL_EDGE, CLOUD_TAIL, label_a="J", label_b="C")

    assert pair.totals_a.latency_s == pytest.approx(7.0)
    assert pair.totals_b.latency_s == pytest.approx(4.26)
    assert pair.totals_a.cost_usd == 0.0
    # 1.25 s of compute, one invocation and 1 MB in; nothing leaves the cloud.
    assert pair.totals_b.cost_usd == pytest.approx(0.000125 + 0.000002 + 0.00001)
    assert pair.totals_b.upload_bytes == 1_000_000
    assert pair.totals_b.download_bytes == 0
    assert pair.faster == "C"
    assert pair.usd_per_s_saved == pytest.approx(0.000137 / 2.74)
    assert pair.monthly_usd_per_s_saved == pytest.approx(0.137 / 2.74)


def test_chain_pair_cost_items(chain: CompiledProblem) -> None:
    pair = explain_pair(chain, CLOUD_MIDDLE, CLOUD_TAIL, label_a="B", label_b="C")
    items = {item.line: item for item in pair.cost_items}

    assert items["compute"].delta_usd == pytest.approx(0.000025)
    assert items["requests"].delta_usd == 0.0
    assert items["data_out"].delta_usd == pytest.approx(-0.000025)
    assert [item.line for item in pair.cost_changes] == ["compute", "data_out"]
    assert pair.monthly_items[0].delta_usd == pytest.approx(0.0, abs=1e-15)


def test_equal_latency_has_no_rate(chain: CompiledProblem) -> None:
    pair = explain_pair(chain, CLOUD_TAIL, CLOUD_TAIL, label_a="A", label_b="B")

    assert pair.faster is None
    assert pair.usd_per_s_saved is None
    assert pair.monthly_usd_per_s_saved is None
    assert pair.latency_changes == ()
    assert pair.cost_changes == ()


def test_placement_off_allowed_rejected(chain: CompiledProblem) -> None:
    with pytest.raises(ValueError, match="capture"):
        critical_path(chain, np.array([CLOUD, CLOUD, CLOUD]))


def test_placement_of_wrong_shape_rejected(chain: CompiledProblem) -> None:
    with pytest.raises(ValueError, match="shape"):
        latency_parts(chain, np.array([EDGE, EDGE]))


# ---------------------------------------------------------------------------
# A diamond: which branch the critical path takes


def diamond(slow_branch_s: float) -> CompiledProblem:
    workflow = Workflow.model_validate(
        {
            "workflow": "diamond",
            "measured_on": {"name": "PC", "cores": 1, "single_thread": 100.0},
            "stages": [
                {"id": "split", "time_s": 1.0},
                {"id": "left", "time_s": 2.0},
                {"id": "right", "time_s": slow_branch_s},
                {"id": "join", "time_s": 0.0},
            ],
            "edges": [
                {"from": "split", "to": "left", "bytes": 0},
                {"from": "split", "to": "right", "bytes": 0},
                {"from": "left", "to": "join", "bytes": 0},
                {"from": "right", "to": "join", "bytes": 0},
            ],
        }
    )
    system = System.model_validate(
        {
            "system": "one",
            "devices": [{"id": "pc", "cpu": {"name": "PC", "cores": 1, "single_thread": 100.0}}],
        }
    )
    return compile_problem(workflow, system, EMPTY_CATALOG)


def test_diamond_takes_slower_branch() -> None:
    problem = diamond(3.0)
    stages, edges = critical_path(problem, np.zeros(4, dtype=np.int64))

    # The zero-time join stays on the path, entered from the slower branch.
    assert stages == [0, 2, 3]
    assert edges == [1, 3]


def test_diamond_tie_takes_first_edge() -> None:
    problem = diamond(2.0)
    stages, edges = critical_path(problem, np.zeros(4, dtype=np.int64))

    assert stages == [0, 1, 3]
    assert edges == [0, 2]


# ---------------------------------------------------------------------------
# Identities on random problems and the examples


def check_placement(problem: CompiledProblem, placement: np.ndarray, metrics: dict) -> None:
    latency_s = float(metrics["latency_s"])
    cost_usd = float(metrics["cost_usd"])

    # The same additions in the same order as the engine: equal to the last bit.
    assert path_length_s(problem, placement) == latency_s
    assert close(math.fsum(latency_parts(problem, placement).values()), latency_s)
    assert close(math.fsum(line.usd for line in cost_lines(problem, placement)), cost_usd)
    monthly = monthly_costs(problem, placement)
    if problem.runs_per_month is None:
        assert monthly is None
    else:
        assert monthly is not None
        assert close(math.fsum(m.usd for m in monthly), float(metrics["monthly_cost_usd"]))


def check_pair(problem: CompiledProblem, a: np.ndarray, b: np.ndarray) -> None:
    pair = explain_pair(problem, a, b, label_a="A", label_b="B")
    metrics = evaluate_placements(problem, np.stack([a, b])).metrics
    for totals, row in ((pair.totals_a, 0), (pair.totals_b, 1)):
        assert close(totals.latency_s, float(metrics["latency_s"][row]))
        assert close(totals.cost_usd, float(metrics["cost_usd"][row]))
        assert close(totals.comm_s, float(metrics["comm_s"][row]))
        assert totals.upload_bytes == int(metrics["upload_bytes"][row])
        assert totals.download_bytes == int(metrics["download_bytes"][row])

    a, b = pair.totals_a, pair.totals_b
    assert len(pair.latency_items) == problem.n_stages + len(problem.edge_source)
    latency_deltas = [item.delta_s for item in pair.latency_items]
    change_deltas = [item.delta_s for item in pair.latency_changes]
    cost_deltas = [item.delta_usd for item in pair.cost_items]
    assert close_difference(math.fsum(latency_deltas), a.latency_s, b.latency_s)
    assert close_difference(math.fsum(change_deltas), a.latency_s, b.latency_s)
    assert close_difference(math.fsum(cost_deltas), a.cost_usd, b.cost_usd)
    if problem.runs_per_month is not None:
        assert a.monthly_cost_usd is not None
        assert b.monthly_cost_usd is not None
        monthly_deltas = [item.delta_usd for item in pair.monthly_items]
        assert close_difference(math.fsum(monthly_deltas), a.monthly_cost_usd, b.monthly_cost_usd)
    else:
        assert pair.monthly_items == ()
        assert pair.totals_a.monthly_cost_usd is None


@pytest.mark.parametrize("seed", SEEDS)
def test_random_paths_are_longest(seed: int) -> None:
    problem = random_compiled(seed)
    placements = sample_placements(problem, random.Random(seed), limit=40)

    for placement in placements:
        stages, edges = critical_path(problem, placement)
        for k, e in enumerate(edges):
            assert int(problem.edge_source[e]) == stages[k]
            assert int(problem.edge_target[e]) == stages[k + 1]
        assert close(path_length_s(problem, placement), longest_path_s(problem, placement))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_parts_add_up(seed: int) -> None:
    problem = random_compiled(seed)
    placements = sample_placements(problem, random.Random(seed), limit=40)
    metrics = evaluate_placements(problem, placements).metrics

    for row, placement in enumerate(placements):
        check_placement(problem, placement, {name: v[row] for name, v in metrics.items()})


@pytest.mark.parametrize("seed", SEEDS)
def test_random_pairs_add_up(seed: int) -> None:
    problem = random_compiled(seed)
    rng = random.Random(seed + 1)
    placements = sample_placements(problem, rng, limit=12)

    for a, b in itertools.combinations(range(len(placements)), 2):
        if rng.random() < 0.3:
            check_pair(problem, placements[a], placements[b])
    check_pair(problem, placements[0], placements[-1])


def test_random_problems_mix_providers() -> None:
    providers = {
        (seed, priced.provider_name) for seed in SEEDS for priced in random_compiled(seed).priced
    }
    both = {seed for seed, _ in providers if (seed, "flat") in providers} & {
        seed for seed, _ in providers if (seed, "aws-lambda") in providers
    }

    assert len(both) >= 20
    assert any(random_compiled(seed).runs_per_month for seed in both)
    assert any(
        len(random_compiled(seed).edge_source) > random_compiled(seed).n_stages for seed in SEEDS
    )


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_add_up(name: str) -> None:
    problem = example(name)
    placements = sample_placements(problem, random.Random(0), limit=problem.space_size)
    metrics = evaluate_placements(problem, placements).metrics

    for row, placement in enumerate(placements):
        check_placement(problem, placement, {n: v[row] for n, v in metrics.items()})
    rng = random.Random(1)
    for _ in range(60):
        a, b = rng.randrange(len(placements)), rng.randrange(len(placements))
        check_pair(problem, placements[a], placements[b])


def candidates_of(problem: CompiledProblem) -> pd.DataFrame:
    front, _ = sweep_in_process(problem)
    table = front_table(problem, front)
    table.insert(0, "label", candidate_labels(len(table)))
    return table


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_neighbours_add_up(name: str) -> None:
    problem = example(name)
    candidates = candidates_of(problem)
    placements = dict(zip(candidates["label"], placements_of(problem, candidates), strict=True))

    pairs = neighbour_pairs(candidates)

    assert len(pairs) == len(candidates) - 1
    for faster, slower in pairs:
        check_pair(problem, placements[faster], placements[slower])


def test_object_detection_edges_cross_once() -> None:
    # All-cloud for the free stages: capture -> resize goes up and draw_boxes -> display
    # comes down, 4,950,000 bytes at 100 Mbit/s = 0.396 s together.
    problem = example("object-detection")
    all_cloud = np.array([0, 1, 1, 1, 1, 1, 1, 1, 0])

    parts = latency_parts(problem, all_cloud)

    assert parts["transfer"] == pytest.approx(0.396)
    assert parts["compute on cloud"] == pytest.approx(
        float(problem.stage_time_s[1:8, 1].sum()), rel=1e-12
    )


# ---------------------------------------------------------------------------
# Tables for the charts


def test_neighbour_pairs_in_latency_order() -> None:
    table = pd.DataFrame({"label": ["A", "C", "B"], "latency_s": [1.0, 3.0, 2.0]})

    assert neighbour_pairs(table) == [("A", "B"), ("B", "C")]
    assert neighbour_pairs(table.iloc[:1]) == []


def test_breakdown_tables_add_up() -> None:
    problem = example("object-detection")
    candidates = candidates_of(problem)

    time, cost = breakdown_tables(problem, candidates)

    assert list(time.columns) == ["label", "part", "time_s"]
    assert list(cost.columns) == ["label", "line", "cost_usd"]
    assert set(cost["line"]) == {
        "cloud: compute",
        "cloud: requests",
        "cloud: egress",
        "cloud: ingress",
    }
    time_sums = time.groupby("label")["time_s"].sum()
    cost_sums = cost.groupby("label")["cost_usd"].sum()
    for _, row in candidates.iterrows():
        assert time_sums[row["label"]] == pytest.approx(row["latency_s"], rel=1e-12)
        assert cost_sums[row["label"]] == pytest.approx(row["cost_usd"], rel=1e-12, abs=1e-18)


def test_breakdown_tables_chain(chain: CompiledProblem) -> None:
    candidates = pd.DataFrame(
        {
            "label": ["A", "B"],
            "at_capture": ["edge", "edge"],
            "at_detect": ["cloud", "edge"],
            "at_draw": ["cloud", "edge"],
        }
    )

    time, cost = breakdown_tables(chain, candidates)

    rows = {(r.label, r.part): r.time_s for r in time.itertuples()}
    assert rows == {
        ("A", "compute on edge"): pytest.approx(2.0),
        ("A", "compute on cloud"): pytest.approx(1.25),
        ("A", "transfer"): pytest.approx(1.01),
        ("B", "compute on edge"): pytest.approx(7.0),
        ("B", "compute on cloud"): 0.0,
        ("B", "transfer"): 0.0,
    }
    # Devices in system order, then transfer, so charts colour devices consistently.
    assert list(time["part"][time["label"] == "B"]) == [
        "compute on edge",
        "compute on cloud",
        "transfer",
    ]
    b_costs = cost[cost["label"] == "B"]
    assert list(b_costs["line"]) == [
        "cloud: compute",
        "cloud: requests",
        "cloud: data_in",
        "cloud: data_out",
    ]
    assert (b_costs["cost_usd"] == 0.0).all()


def test_placements_of_unknown_device(chain: CompiledProblem) -> None:
    candidates = pd.DataFrame(
        {"label": ["A"], "at_capture": ["edge"], "at_detect": ["moon"], "at_draw": ["edge"]}
    )

    with pytest.raises(ValueError, match="moon"):
        placements_of(chain, candidates)


def test_inputs_not_modified(chain: CompiledProblem) -> None:
    placement = CLOUD_MIDDLE.copy()
    placement.setflags(write=False)
    explain_pair(chain, placement, ALL_EDGE, label_a="A", label_b="B")
    latency_parts(chain, placement)

    np.testing.assert_array_equal(placement, CLOUD_MIDDLE)
