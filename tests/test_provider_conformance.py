"""The checks every pricing provider must pass, run for every installed provider.

`ProviderConformance` runs once per provider registered in the ``allocation.pricing``
entry-point group, built-in or third-party, with the options of `KNOWN_OPTIONS` or, for
a provider not listed there, no options. A provider that needs options runs the same
checks by subclassing the class in its own tests and overriding the `provider_case`
fixture::

    class TestMyCloud(ProviderConformance):
        @pytest.fixture
        def provider_case(self) -> ProviderCase:
            return ProviderCase("my-cloud", {"region": "eu-1"}, catalog_dir=None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allocation.errors import InputError
from allocation.pricing import (
    API_VERSION,
    ENTRY_POINT_GROUP,
    PricingContext,
    PricingProvider,
    Usage,
    available_providers,
    create_provider,
)

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"

KNOWN_OPTIONS: dict[str, list[dict[str, Any]]] = {
    "flat": [
        {
            "usd_per_compute_s": 0.0000333,
            "usd_per_invocation": 0.0000002,
            "usd_per_gb_in": 0.01,
            "usd_per_gb_out": 0.114,
        }
    ],
    "aws-lambda": [
        {"region": "us-east-1", "architecture": "x86_64", "memory_mb": 1769},
        {"region": "ap-northeast-1", "architecture": "arm64", "memory_mb": 10240},
    ],
    "aws-ec2": [
        {"region": "us-east-1", "instance_type": "t3.medium"},
        {"region": "ap-northeast-1", "instance_type": "m5.xlarge", "utilisation": 0.6},
        {
            "region": "us-east-1",
            "instance_type": "c5.large",
            "billing": "fleet",
            "instances": 2,
            "runs_per_month": 100_000,
        },
    ],
    "gcp-cloud-run": [
        {"region": "us-central1", "memory_gib": 0.5},
        {"region": "us-central1", "vcpu": 4, "memory_gib": 8},
    ],
    "azure-functions": [
        {"region": "eastus", "memory_mb": 160},
        {"region": "eastus", "memory_mb": 1536},
    ],
}
"""Options of the providers this repository ships; each dict is one case."""

N_ROWS = 64
N_STAGES = 6
RUNS_PER_MONTH = (0, 1, 1000, 100_000)


@dataclass(frozen=True)
class ProviderCase:
    """A provider to check: its entry-point name, its options and the catalog folder."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    catalog_dir: Path | None = CATALOGS

    @property
    def context(self) -> PricingContext:
        """The file and field that error messages name as the options' origin."""
        return PricingContext(
            file="conformance.yaml",
            field="devices[0].pricing",
            device_id="cloud",
            catalog_dir=self.catalog_dir,
        )


def installed_cases() -> list[Any]:
    """Return one pytest parameter per installed provider and option set."""
    cases = []
    for name in sorted(available_providers()):
        for i, options in enumerate(KNOWN_OPTIONS.get(name, [{}])):
            cases.append(pytest.param(ProviderCase(name, options), id=f"{name}-{i}"))
    return cases


def random_usage(seed: int, n: int = N_ROWS) -> Usage:
    """Build a usage that keeps the contract: invocation_s sums to compute_s per row.

    Runs send and receive less than 10 MB, so that a month of the largest
    `RUNS_PER_MONTH` stays inside the egress tiers of the price table, the shortest of
    which ends at 10,240 GB.
    """
    rng = np.random.default_rng(seed)
    starts = rng.random((n, N_STAGES)) < 0.4
    invocation_s = np.where(starts, rng.uniform(0.0, 2.0, (n, N_STAGES)), 0.0)
    invocation_s[rng.random(n) < 0.1] = 0.0
    return Usage(
        compute_s=invocation_s.sum(axis=1),
        invocations=starts.sum(axis=1).astype(np.int64),
        invocation_s=invocation_s,
        bytes_in=rng.integers(0, 10**7, n, dtype=np.int64),
        bytes_out=rng.integers(0, 10**7, n, dtype=np.int64),
    )


def read_only(usage: Usage) -> Usage:
    """Return a copy of the usage whose arrays raise on any write."""
    arrays = {}
    for name in ("compute_s", "invocations", "invocation_s", "bytes_in", "bytes_out"):
        array = getattr(usage, name).copy()
        array.flags.writeable = False
        arrays[name] = array
    return Usage(**arrays)


def total_per_run(provider: PricingProvider, usage: Usage) -> np.ndarray:
    lines = provider.cost_lines_usd(usage)
    return np.sum([np.asarray(values, dtype=np.float64) for values in lines.values()], axis=0)


class ProviderConformance:
    """Checks of the pricing-provider contract, for the provider of `provider_case`."""

    __test__ = True

    @pytest.fixture(params=installed_cases())
    def provider_case(self, request: pytest.FixtureRequest) -> ProviderCase:
        case: ProviderCase = request.param
        return case

    @pytest.fixture
    def provider(self, provider_case: ProviderCase) -> PricingProvider:
        try:
            return create_provider(provider_case.name, provider_case.options, provider_case.context)
        except InputError as exc:
            if provider_case.name in KNOWN_OPTIONS:
                raise
            pytest.skip(
                f"provider {provider_case.name!r} rejects empty options ({exc}); subclass "
                "ProviderConformance and override provider_case to give it options"
            )

    def test_declares_contract_version(self, provider: PricingProvider) -> None:
        assert type(provider).api_version == API_VERSION
        assert isinstance(provider, PricingProvider)

    def test_cost_lines_shape_finite_not_negative(self, provider: PricingProvider) -> None:
        usage = random_usage(1)
        lines = provider.cost_lines_usd(usage)

        assert lines
        for line, values in lines.items():
            array = np.asarray(values, dtype=np.float64)
            assert isinstance(line, str)
            assert array.shape == (N_ROWS,), line
            assert np.isfinite(array).all(), line
            assert (array >= 0).all(), line

    def test_monthly_shape_finite_not_negative(self, provider: PricingProvider) -> None:
        usage = random_usage(2)
        for runs in RUNS_PER_MONTH:
            monthly = np.asarray(provider.monthly_cost_usd(usage, runs), dtype=np.float64)
            assert monthly.shape == (N_ROWS,), runs
            assert np.isfinite(monthly).all(), runs
            assert (monthly >= 0).all(), runs

    def test_monthly_zero_runs_costs_zero(self, provider: PricingProvider) -> None:
        monthly = provider.monthly_cost_usd(random_usage(3), 0)
        np.testing.assert_array_equal(monthly, np.zeros(N_ROWS))

    def test_zero_usage_costs_zero(self, provider: PricingProvider) -> None:
        zeros = Usage(
            compute_s=np.zeros(N_ROWS),
            invocations=np.zeros(N_ROWS, dtype=np.int64),
            invocation_s=np.zeros((N_ROWS, N_STAGES)),
            bytes_in=np.zeros(N_ROWS, dtype=np.int64),
            bytes_out=np.zeros(N_ROWS, dtype=np.int64),
        )
        np.testing.assert_array_equal(total_per_run(provider, zeros), np.zeros(N_ROWS))
        for runs in RUNS_PER_MONTH:
            np.testing.assert_array_equal(
                provider.monthly_cost_usd(zeros, runs), np.zeros(N_ROWS), err_msg=str(runs)
            )

    def test_empty_usage_gives_empty_arrays(self, provider: PricingProvider) -> None:
        usage = random_usage(4, n=0)
        for line, values in provider.cost_lines_usd(usage).items():
            assert np.asarray(values).shape == (0,), line
        assert np.asarray(provider.monthly_cost_usd(usage, 1000)).shape == (0,)

    def test_usage_arrays_not_modified(self, provider: PricingProvider) -> None:
        usage = random_usage(5)
        frozen = read_only(usage)

        provider.cost_lines_usd(frozen)
        provider.monthly_cost_usd(frozen, 1000)

        for name in ("compute_s", "invocations", "invocation_s", "bytes_in", "bytes_out"):
            np.testing.assert_array_equal(getattr(frozen, name), getattr(usage, name), name)

    def test_monotone_in_compute(self, provider: PricingProvider) -> None:
        usage = random_usage(6)
        longer = replace(
            usage,
            compute_s=usage.compute_s * 1.5,
            invocation_s=usage.invocation_s * 1.5,
        )

        assert (total_per_run(provider, longer) >= total_per_run(provider, usage)).all()
        for runs in RUNS_PER_MONTH:
            before = provider.monthly_cost_usd(usage, runs)
            after = provider.monthly_cost_usd(longer, runs)
            assert (after >= before).all(), runs

    def test_monotone_in_bytes_out(self, provider: PricingProvider) -> None:
        usage = random_usage(7)
        more = replace(usage, bytes_out=usage.bytes_out * 3 + 1_000_000)

        assert (total_per_run(provider, more) >= total_per_run(provider, usage)).all()
        for runs in RUNS_PER_MONTH:
            before = provider.monthly_cost_usd(usage, runs)
            after = provider.monthly_cost_usd(more, runs)
            assert (after >= before).all(), runs

    def test_rows_priced_independently(self, provider: PricingProvider) -> None:
        usage = random_usage(8)
        order = np.random.default_rng(8).permutation(N_ROWS)
        shuffled = Usage(
            compute_s=usage.compute_s[order],
            invocations=usage.invocations[order],
            invocation_s=usage.invocation_s[order],
            bytes_in=usage.bytes_in[order],
            bytes_out=usage.bytes_out[order],
        )

        np.testing.assert_allclose(
            total_per_run(provider, shuffled), total_per_run(provider, usage)[order], rtol=1e-15
        )
        np.testing.assert_allclose(
            provider.monthly_cost_usd(shuffled, 1000),
            provider.monthly_cost_usd(usage, 1000)[order],
            rtol=1e-15,
        )

    def test_unknown_option_lists_valid_options(self, provider_case: ProviderCase) -> None:
        options = {**provider_case.options, "no_such_option": 1}

        with pytest.raises(InputError) as info:
            create_provider(provider_case.name, options, provider_case.context)

        message = str(info.value)
        assert "no_such_option" in message
        assert provider_case.context.field in message
        for name in provider_case.options:
            assert name in message.split("no_such_option", 1)[1], name

    def test_describe_is_json(self, provider: PricingProvider) -> None:
        description = provider.describe()

        assert isinstance(description, dict)
        assert json.loads(json.dumps(description)) == description


def test_every_installed_provider_is_checked() -> None:
    checked = {param.values[0].name for param in installed_cases()}
    assert checked == set(available_providers())
    assert {"flat", "aws-lambda"} <= checked, f"entry points of {ENTRY_POINT_GROUP}"
