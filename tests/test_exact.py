"""The exact method against enumeration, and the problems it rejects.

`exact_front` must return the front of `sweep_in_process` exactly: the same assignment
numbers, equivalent counts and metrics, bit for bit, on seeded random problems small
enough to enumerate (chains, forests and DAGs, pins, allowed sets, zero times and
bytes, every provider with per-run cost terms, one to four objectives).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allocation.compile import CompiledProblem, compile_problem
from allocation.estimate import METRIC_COLUMNS
from allocation.exact import NotExactError, exact_front, exactness
from allocation.model import System, Workflow
from allocation.pricing import PerRunCostTerms, PricingContext, Usage, create_provider
from allocation.sweep import PartialFront, sweep_in_process
from tests.problems import (
    EMPTY_CATALOG,
    branching_problem,
    chain_problem,
    random_problem,
    random_problem_any_pricing,
    random_problem_mixed_pricing,
)
from tests.test_provider_conformance import KNOWN_OPTIONS, random_usage

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"

GENERATORS = {
    "flat": (random_problem, range(120)),
    "any": (random_problem_any_pricing, range(160)),
    "mixed": (random_problem_mixed_pricing, range(60)),
}
CASES = [
    pytest.param(name, seed, id=f"{name}-{seed}")
    for name, (_, seeds) in GENERATORS.items()
    for seed in seeds
]


def _compile(workflow: Workflow, system: System) -> CompiledProblem:
    return compile_problem(workflow, system, EMPTY_CATALOG, catalog_dir=CATALOGS)


def _assert_same_front(actual: PartialFront, expected: PartialFront) -> None:
    np.testing.assert_array_equal(
        actual.evaluation.pattern_index, expected.evaluation.pattern_index
    )
    np.testing.assert_array_equal(actual.equivalent_count, expected.equivalent_count)
    np.testing.assert_array_equal(actual.evaluation.placements, expected.evaluation.placements)
    for name in METRIC_COLUMNS:
        np.testing.assert_array_equal(
            actual.evaluation.metrics[name], expected.evaluation.metrics[name], err_msg=name
        )


@pytest.mark.parametrize(("generator", "seed"), CASES)
def test_exact_front_matches_sweep(generator: str, seed: int) -> None:
    make, _ = GENERATORS[generator]
    problem = _compile(*make(seed))
    reason = exactness(problem)
    if reason is not None:
        # The generators write monthly_cost_usd objectives and wide DAGs on purpose.
        assert "monthly_cost_usd" in problem.objectives or "pending at once" in reason, reason
        with pytest.raises(NotExactError):
            exact_front(problem)
        return

    expected, _ = sweep_in_process(problem, sample_fraction=0.0)

    _assert_same_front(exact_front(problem), expected)


@pytest.mark.parametrize("seed", range(4))
def test_exact_front_matches_large_sweep(seed: int) -> None:
    # Nine stages on four devices: 262,144 assignments, with flat and aws-lambda prices.
    make = chain_problem if seed % 2 else branching_problem
    problem = _compile(*make(9, seed))
    assert problem.space_size == 4**9
    assert exactness(problem) is None

    expected, _ = sweep_in_process(problem, sample_fraction=0.0)

    _assert_same_front(exact_front(problem), expected)


def test_cases_cover_objectives_and_providers() -> None:
    seen_objectives: set[str] = set()
    seen_providers: set[str] = set()
    for seed in GENERATORS["any"][1]:
        problem = _compile(*random_problem_any_pricing(seed))
        if exactness(problem) is None:
            seen_objectives.update(problem.objectives)
            seen_providers.update(p.provider_name for p in problem.priced)

    assert seen_objectives == {
        "latency_s",
        "cost_usd",
        "comm_s",
        "upload_bytes",
        "download_bytes",
    }
    assert seen_providers == {"flat", "aws-lambda", "aws-ec2", "gcp-cloud-run", "azure-functions"}


def _with_objectives(workflow: Workflow, system: System, objectives: list[str]) -> System:
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)
    document["objectives"] = objectives
    document["runs_per_month"] = 1000
    return System.model_validate(document)


def test_exactness_rejects_monthly_cost() -> None:
    workflow, system = chain_problem(5, 0)
    system = _with_objectives(workflow, system, ["latency_s", "monthly_cost_usd"])
    problem = _compile(workflow, system)

    reason = exactness(problem)

    assert reason is not None
    assert "monthly_cost_usd" in reason
    with pytest.raises(NotExactError, match="monthly totals"):
        exact_front(problem)


def test_exactness_rejects_fleet_billing() -> None:
    workflow, system = chain_problem(5, 0, lambda_device=False)
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)
    document["devices"][2]["pricing"] = {
        "provider": "aws-ec2",
        "region": "us-east-1",
        "instance_type": "t3.medium",
        "billing": "fleet",
        "runs_per_month": 1000,
    }
    problem = _compile(workflow, System.model_validate(document))

    reason = exactness(problem)

    assert reason is not None
    assert "aws-ec2" in reason
    assert "per_run_cost_terms" in reason


def test_exactness_ignores_terms_without_cost_objective() -> None:
    workflow, system = chain_problem(5, 0)
    problem = _compile(workflow, _with_objectives(workflow, system, ["latency_s", "comm_s"]))
    problem = _replace_provider(problem, _NoTermsProvider(problem.priced[0].provider))

    assert exactness(problem) is None


class _NoTermsProvider:
    """A provider that prices like another but states no per-run cost terms."""

    name = "no-terms"
    api_version = 1

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        return dict(self._inner.cost_lines_usd(usage))

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        return np.asarray(self._inner.monthly_cost_usd(usage, runs_per_month))

    def describe(self) -> dict[str, Any]:
        return {"provider": self.name}


class _WrongTermsProvider(_NoTermsProvider):
    """A provider whose terms omit its per-request fee."""

    name = "wrong-terms"

    def per_run_cost_terms(self) -> PerRunCostTerms:
        terms = self._inner.per_run_cost_terms()
        return dataclasses.replace(terms, usd_per_invocation=0.0)


class _FallingTermsProvider(_NoTermsProvider):
    """A provider whose invocation cost falls with duration, matching its own lines."""

    name = "falling-terms"

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        used = np.asarray(usage.invocation_s) > 0
        zero = np.asarray(usage.invocations) - used.sum(axis=1)
        falling = np.where(used, 1.0 / (1.0 + np.asarray(usage.invocation_s)), 0.0)
        return {"compute": falling.sum(axis=1) + zero.clip(0)}

    def per_run_cost_terms(self) -> PerRunCostTerms:
        return PerRunCostTerms(
            invocation_usd=lambda duration_s: 1.0 / (1.0 + np.asarray(duration_s)),
            usd_per_invocation=0.0,
            usd_per_byte_in=0.0,
            usd_per_byte_out=0.0,
        )


def _replace_provider(problem: CompiledProblem, provider: Any) -> CompiledProblem:
    priced = list(problem.priced)
    priced[0] = dataclasses.replace(priced[0], provider=provider, provider_name=provider.name)
    return dataclasses.replace(problem, priced=tuple(priced))


def _lambda_problem() -> CompiledProblem:
    # The lambda device alone is priced, and it charges a fee per request.
    workflow, system = chain_problem(5, 0)
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)
    document["devices"][2].pop("pricing")
    problem = _compile(workflow, System.model_validate(document))
    assert [p.provider_name for p in problem.priced] == ["aws-lambda"]
    return problem


def test_exactness_rejects_provider_without_terms() -> None:
    problem = _lambda_problem()
    problem = _replace_provider(problem, _NoTermsProvider(problem.priced[0].provider))

    reason = exactness(problem)

    assert reason is not None
    assert "'no-terms'" in reason
    assert "per_run_cost_terms" in reason


def test_exactness_rejects_terms_that_differ_from_costs() -> None:
    problem = _lambda_problem()
    problem = _replace_provider(problem, _WrongTermsProvider(problem.priced[0].provider))

    reason = exactness(problem)

    assert reason is not None
    assert "'wrong-terms'" in reason
    assert "cost_lines_usd prices at" in reason


def test_exactness_rejects_falling_invocation_cost() -> None:
    problem = _lambda_problem()
    problem = _replace_provider(problem, _FallingTermsProvider(problem.priced[0].provider))

    reason = exactness(problem)

    assert reason is not None
    assert "falls when the duration grows" in reason


def test_exactness_rejects_wide_graph() -> None:
    # One source feeds eight stages that all feed one sink: nine outputs pending at once.
    workflow, system = chain_problem(10, 0)
    document = workflow.model_dump(by_alias=True, exclude_none=True, warnings=False)
    ids = [stage["id"] for stage in document["stages"]]
    document["edges"] = [{"from": ids[0], "to": middle, "bytes": 10} for middle in ids[1:-1]] + [
        {"from": middle, "to": ids[-1], "bytes": 10} for middle in ids[1:-1]
    ]
    problem = _compile(Workflow.model_validate(document), system)

    reason = exactness(problem)

    assert reason is not None
    assert "pending at once" in reason
    with pytest.raises(NotExactError, match="at most 6"):
        exact_front(problem)


def test_exact_front_beyond_enumeration() -> None:
    # 4**30 assignments: more than the sweep can enumerate in any reasonable time.
    problem = _compile(*chain_problem(30, 0))
    assert problem.space_size == 4**30

    front = exact_front(problem)

    assert len(front) >= 1
    assert (front.equivalent_count >= 1).all()
    assert (np.diff(front.evaluation.metrics["latency_s"]) >= 0).all()
    assert (np.diff(front.evaluation.metrics["cost_usd"]) <= 0).all()


def _provider_cases() -> list[Any]:
    return [
        pytest.param(name, options, id=f"{name}-{i}")
        for name, option_sets in KNOWN_OPTIONS.items()
        for i, options in enumerate(option_sets)
    ]


@pytest.mark.parametrize(("name", "options"), _provider_cases())
def test_provider_terms_match_cost_lines(name: str, options: dict[str, Any]) -> None:
    context = PricingContext(
        file="system.yaml", field="devices[0].pricing", device_id="cloud", catalog_dir=CATALOGS
    )
    provider = create_provider(name, options, context)
    terms = provider.per_run_cost_terms()  # type: ignore[attr-defined]
    if options.get("billing") == "fleet":
        assert terms is None
        return

    for seed in range(5):
        usage = random_usage(seed)
        lines = provider.cost_lines_usd(usage)
        expected = np.sum(list(lines.values()), axis=0)
        used = np.asarray(usage.invocation_s) > 0
        zero_length = np.asarray(usage.invocations) - used.sum(axis=1)
        per_invocation = terms.invocation_usd(np.asarray(usage.invocation_s).ravel()).reshape(
            used.shape
        )
        actual = (
            np.where(used, per_invocation, 0.0).sum(axis=1)
            + zero_length * terms.invocation_usd(np.zeros(1))[0]
            + terms.usd_per_invocation * usage.invocations
            + terms.usd_per_byte_in * usage.bytes_in
            + terms.usd_per_byte_out * usage.bytes_out
        )
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0, err_msg=f"seed {seed}")
