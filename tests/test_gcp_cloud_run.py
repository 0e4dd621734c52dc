"""Tests of the gcp-cloud-run provider: hand calculations, 100 ms rounding, free tier, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allocation.catalog import CpuCatalog
from allocation.compile import compile_problem
from allocation.errors import InputError
from allocation.estimate import evaluate_placements
from allocation.model import System, Workflow
from allocation.prices import load_price_table
from allocation.pricing import PricingContext, Usage, create_provider
from allocation_providers.gcp_cloud_run import GcpCloudRunProvider

REPO = Path(__file__).resolve().parents[1]
CATALOGS = REPO / "catalogs"
PRICES = CATALOGS / "prices.parquet"
NO_CPU_CATALOG = CpuCatalog(None, (), "")

CLOUD_CPU = {"name": "Example vCPU", "single_thread": 2000.0, "cores": 2}
EDGE_CPU = {"name": "Example ARM board", "single_thread": 600.0, "cores": 4}

EDGE, CLOUD = 0, 1
PLACEMENT = np.array([[EDGE, CLOUD, EDGE, CLOUD, EDGE]])
"""Stages on edge, cloud, edge, cloud, edge: the cloud runs two invocations."""

# Rates of prices.parquet used by the hand calculations, checked against the table below.
IOWA_USD_PER_VCPU_S = 0.000024
IOWA_USD_PER_GIB_S = 0.0000025
USD_PER_REQUEST = 0.0000004
IOWA_EGRESS_USD_PER_GIB = (0.0, 0.105, 0.08, 0.06)
IOWA_EGRESS_GIB_TIER_ENDS = (1, 10_240, 153_600)
FREE_VCPU_S = 180_000
FREE_GIB_S = 360_000
FREE_REQUESTS = 2_000_000
FREE_EGRESS_GIB = 1
GIB = 2**30


def provider(**options: Any) -> GcpCloudRunProvider:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", CATALOGS)
    created = create_provider("gcp-cloud-run", options, context)
    assert isinstance(created, GcpCloudRunProvider)
    return created


def one_invocation(duration_s: float, bytes_out: int = 0) -> Usage:
    return Usage(
        compute_s=np.array([duration_s]),
        invocations=np.array([1], dtype=np.int64),
        invocation_s=np.array([[duration_s]]),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.array([bytes_out], dtype=np.int64),
    )


def option_error(options: dict[str, Any]) -> str:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", CATALOGS)
    with pytest.raises(InputError) as info:
        create_provider("gcp-cloud-run", options, context)
    return str(info.value)


def test_table_rates_used_by_hand_calculations() -> None:
    table = load_price_table(PRICES)

    def single(dimension: str) -> tuple[float, float | None, str]:
        (row,) = table.rows("gcp", "cloud-run", dimension, "us-central1")
        return row.usd_per_unit, row.free_allowance, row.unit

    assert single("cpu_request_based") == (IOWA_USD_PER_VCPU_S, FREE_VCPU_S, "vCPU-second")
    assert single("memory_request_based") == (IOWA_USD_PER_GIB_S, FREE_GIB_S, "GB-second")
    assert single("requests") == (USD_PER_REQUEST, FREE_REQUESTS, "request")
    egress = table.rows("gcp", "cloud-run", "egress_internet_north_america", "us-central1")
    assert [row.usd_per_unit for row in egress] == list(IOWA_EGRESS_USD_PER_GIB)
    assert [row.tier_end for row in egress[:-1]] == list(IOWA_EGRESS_GIB_TIER_ENDS)
    assert {(row.free_allowance, row.unit) for row in egress} == {(FREE_EGRESS_GIB, "GiB")}


def test_cost_per_run_by_hand() -> None:
    flow = Workflow.model_validate(
        {
            "workflow": "two-invocations",
            "measured_on": CLOUD_CPU,
            "stages": [
                {"id": "capture", "time_s": 0.5, "pin": "edge"},
                {"id": "resize", "time_s": 0.1234567, "pin": "cloud"},
                {"id": "filter", "time_s": 0.2, "pin": "edge"},
                {"id": "detect", "time_s": 0.003, "pin": "cloud"},
                {"id": "draw", "time_s": 0.05, "pin": "edge"},
            ],
            "edges": [
                {"from": "capture", "to": "resize", "bytes": 6_220_800},
                {"from": "resize", "to": "filter", "bytes": 1_000_000},
                {"from": "filter", "to": "detect", "bytes": 500_000},
                {"from": "detect", "to": "draw", "bytes": 2_345},
            ],
        }
    )
    pricing = {"provider": "gcp-cloud-run", "region": "us-central1", "vcpu": 2, "memory_gib": 1}
    devices = System.model_validate(
        {
            "system": "edge-cloud-run",
            "devices": [
                {"id": "edge", "cpu": EDGE_CPU},
                {"id": "cloud", "cpu": CLOUD_CPU, "cores": 2, "pricing": pricing},
            ],
            "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 100}],
        }
    )
    problem = compile_problem(flow, devices, NO_CPU_CATALOG, catalog_dir=CATALOGS)

    metrics = evaluate_placements(problem, PLACEMENT).metrics

    # Invocation 1 lasts 123.4567 ms and is billed 200 ms. Invocation 2 lasts 3 ms and
    # is billed 100 ms. That is 0.3 s at 2 vCPUs and 1 GiB.
    cpu_usd = 0.3 * 2 * IOWA_USD_PER_VCPU_S
    memory_usd = 0.3 * 1 * IOWA_USD_PER_GIB_S
    requests_usd = 2 * USD_PER_REQUEST
    # 1,002,345 bytes sent back, in GiB, at the first tier priced above zero.
    egress_usd = 1_002_345 / GIB * 0.105
    expected_usd = cpu_usd + memory_usd + requests_usd + egress_usd

    assert metrics["cost_usd"][0] == pytest.approx(expected_usd, rel=1e-12)
    assert np.isnan(metrics["monthly_cost_usd"][0])


def test_cost_lines_by_hand() -> None:
    cloud_run = provider(region="us-central1", vcpu=4, memory_gib=8)
    usage = Usage(
        compute_s=np.array([1.25]),
        invocations=np.array([2], dtype=np.int64),
        invocation_s=np.array([[1.0, 0.0, 0.25]]),
        bytes_in=np.array([5_000_000], dtype=np.int64),
        bytes_out=np.array([GIB // 4], dtype=np.int64),
    )

    lines = cloud_run.cost_lines_usd(usage)

    # 1.0 s and 0.25 s are billed 1.0 s and 0.3 s.
    assert set(lines) == {"cpu", "memory", "requests", "egress"}
    assert lines["cpu"][0] == pytest.approx(1.3 * 4 * IOWA_USD_PER_VCPU_S, rel=1e-15)
    assert lines["memory"][0] == pytest.approx(1.3 * 8 * IOWA_USD_PER_GIB_S, rel=1e-15)
    assert lines["requests"][0] == pytest.approx(2 * USD_PER_REQUEST, rel=1e-15)
    assert lines["egress"][0] == pytest.approx(0.25 * 0.105, rel=1e-15)


@pytest.mark.parametrize(
    ("duration_s", "billed_s"),
    [
        (0.1, 0.1),  # exactly one increment
        (0.1 + 0.2, 0.3),  # 0.30000000000000004 s
        (0.1000001, 0.2),  # 100 ns over
        (0.1000000001, 0.1),  # 0.1 ns over, below the nanosecond resolution
        (0.001, 0.1),
        (0.0, 0.0),
        (1.05, 1.1),
        (2.0, 2.0),
    ],
)
def test_duration_rounded_up_to_100_ms(duration_s: float, billed_s: float) -> None:
    cloud_run = provider(region="us-central1", memory_gib=1)

    assert cloud_run.billed_s(one_invocation(duration_s))[0] == pytest.approx(billed_s, abs=1e-12)


def test_duration_rounded_per_invocation() -> None:
    cloud_run = provider(region="us-central1", memory_gib=1)
    usage = Usage(
        compute_s=np.array([0.1]),
        invocations=np.array([2], dtype=np.int64),
        invocation_s=np.array([[0.05, 0.05]]),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.zeros(1, dtype=np.int64),
    )
    # Two invocations of 50 ms are billed 100 ms each.
    assert cloud_run.billed_s(usage)[0] == pytest.approx(0.2, abs=1e-12)


def test_monthly_cost_by_hand_with_free_tier() -> None:
    cloud_run = provider(region="us-central1", memory_gib=0.5)  # 1 vCPU
    usage = one_invocation(1.0, bytes_out=2**20)

    monthly = cloud_run.monthly_cost_usd(usage, 1_000_000)[0]

    # A million runs of 1 s use 1e6 vCPU-s and 5e5 GiB-s. The free tier covers the first
    # 180,000 vCPU-s, 360,000 GiB-s and 2,000,000 requests. 1 MiB a run is 976.5625 GiB
    # a month, the first GiB free.
    cpu_usd = (1_000_000 - FREE_VCPU_S) * IOWA_USD_PER_VCPU_S
    memory_usd = (500_000 - FREE_GIB_S) * IOWA_USD_PER_GIB_S
    egress_usd = (976.5625 - FREE_EGRESS_GIB) * 0.105
    assert monthly == pytest.approx(cpu_usd + memory_usd + egress_usd, rel=1e-12)


def test_monthly_cost_within_free_tier() -> None:
    cloud_run = provider(region="us-central1", memory_gib=1)
    # 100,000 runs of 1 s: 100,000 vCPU-s, 100,000 GiB-s and 100,000 requests.
    assert cloud_run.monthly_cost_usd(one_invocation(1.0), 100_000)[0] == 0.0


def test_monthly_requests_past_free_tier() -> None:
    cloud_run = provider(region="us-central1", memory_gib=1)
    usage = Usage(
        compute_s=np.zeros(1),
        invocations=np.array([3], dtype=np.int64),
        invocation_s=np.zeros((1, 3)),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.zeros(1, dtype=np.int64),
    )
    # 1,000,000 runs of 3 requests: 3,000,000 requests, 1,000,000 past the free tier.
    assert cloud_run.monthly_cost_usd(usage, 1_000_000)[0] == pytest.approx(
        1_000_000 * USD_PER_REQUEST, rel=1e-12
    )


def test_usable_cores_is_vcpu() -> None:
    assert provider(region="us-central1", vcpu=4, memory_gib=2).usable_cores() == 4
    assert provider(region="us-central1", memory_gib=2).usable_cores() == 1


def test_describe_lists_rows_used() -> None:
    description = provider(region="us-central1", vcpu=2, memory_gib=4).describe()

    assert json.loads(json.dumps(description)) == description
    assert description["region"] == "us-central1"
    assert description["vcpu"] == 2
    assert description["memory_gib"] == 4
    assert description["billing_increment_s"] == 0.1
    assert description["prices_sha256"] == load_price_table(PRICES).sha256
    used = {row["dimension"] for row in description["price_rows"]}
    assert used == {
        "cpu_request_based",
        "memory_request_based",
        "requests",
        "egress_internet_north_america",
    }


# Options


def test_region_without_egress_row_names_row_needed() -> None:
    # The table has request-based prices for southamerica-east1 but no egress price.
    message = option_error({"region": "southamerica-east1", "memory_gib": 1})
    assert "devices[1].pricing.region" in message
    assert (
        "has no price for provider gcp, service cloud-run, dimension "
        "egress_internet_north_america, region southamerica-east1" in message
    )
    assert "regions with this price in the table: us-central1" in message


def test_unknown_region_lists_regions() -> None:
    message = option_error({"region": "europe-west1", "memory_gib": 1})
    assert "devices[1].pricing.region" in message
    assert "'europe-west1'" in message
    assert "regions with prices: southamerica-east1, us-central1" in message


def test_unknown_option_lists_valid_options() -> None:
    message = option_error({"region": "us-central1", "memory_gib": 1, "concurrency": 80})
    assert "devices[1].pricing.concurrency" in message
    assert "valid options: region, vcpu, memory_gib, prices" in message


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({"memory_gib": 1}, "region", "missing option 'region'"),
        ({"region": "us-central1"}, "memory_gib", "missing option 'memory_gib'"),
        ({"region": "us-central1", "memory_gib": 0}, "memory_gib", "greater than 0"),
        ({"region": "us-central1", "memory_gib": 1, "vcpu": 0}, "vcpu", "greater than 0"),
        ({"region": "us-central1", "memory_gib": 1, "vcpu": "2"}, "vcpu", "number of vCPUs"),
        (
            {"region": "us-central1", "memory_gib": float("nan")},
            "memory_gib",
            "memory size in GiB",
        ),
    ],
)
def test_invalid_option(options: dict[str, Any], field: str, expected: str) -> None:
    message = option_error(options)
    assert f"devices[1].pricing.{field}" in message
    assert expected in message
