"""Tests of the aws-lambda provider: hand calculations through the engine, rounding, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allocation.catalog import CpuCatalog
from allocation.compile import CompiledProblem, compile_problem
from allocation.errors import InputError
from allocation.estimate import evaluate_placements
from allocation.model import System, Workflow
from allocation.prices import load_price_table
from allocation.pricing import PricingContext, Usage, create_provider
from allocation_providers.aws_lambda import AwsLambdaProvider

REPO = Path(__file__).resolve().parents[1]
CATALOGS = REPO / "catalogs"
PRICES = CATALOGS / "prices.parquet"
NO_CPU_CATALOG = CpuCatalog(None, (), "")

# The reference PC and the cloud CPU have the same figures, so a stage takes its time_s
# in the cloud.
CLOUD_CPU = {"name": "Example vCPU", "single_thread": 2000.0, "cores": 2}
EDGE_CPU = {"name": "Example ARM board", "single_thread": 600.0, "cores": 4}

EDGE, CLOUD = 0, 1
PLACEMENT = np.array([[EDGE, CLOUD, EDGE, CLOUD, EDGE]])
"""Stages on edge, cloud, edge, cloud, edge: the cloud runs two invocations."""

# Rates of prices.parquet used by the hand calculations, checked against the table below.
TOKYO_ARM_USD_PER_GB_S = 0.0000133334
TOKYO_USD_PER_REQUEST = 0.0000002
TOKYO_EGRESS_USD_PER_GB = 0.114
VIRGINIA_X86_USD_PER_GB_S = (0.0000166667, 0.000015, 0.0000133334)
VIRGINIA_X86_GB_S_TIER_ENDS = (6e9, 15e9)
VIRGINIA_USD_PER_REQUEST = 0.0000002
VIRGINIA_EGRESS_USD_PER_GB = (0.0, 0.09, 0.085, 0.07, 0.05)
VIRGINIA_EGRESS_GB_TIER_ENDS = (100, 10_240, 51_200, 153_600)
FREE_GB_S = 400_000
FREE_REQUESTS = 1_000_000
FREE_EGRESS_GB = 100


def workflow(cloud_times_s: tuple[float, float], bytes_out: tuple[int, int]) -> Workflow:
    resize_s, detect_s = cloud_times_s
    return Workflow.model_validate(
        {
            "workflow": "two-invocations",
            "measured_on": CLOUD_CPU,
            "stages": [
                {"id": "capture", "time_s": 0.5, "pin": "edge"},
                {"id": "resize", "time_s": resize_s, "pin": "cloud"},
                {"id": "filter", "time_s": 0.2, "pin": "edge"},
                {"id": "detect", "time_s": detect_s, "pin": "cloud"},
                {"id": "draw", "time_s": 0.05, "pin": "edge"},
            ],
            "edges": [
                {"from": "capture", "to": "resize", "bytes": 6_220_800},
                {"from": "resize", "to": "filter", "bytes": bytes_out[0]},
                {"from": "filter", "to": "detect", "bytes": 500_000},
                {"from": "detect", "to": "draw", "bytes": bytes_out[1]},
            ],
        }
    )


def system(pricing: dict[str, Any], runs_per_month: int | None = None) -> System:
    document: dict[str, Any] = {
        "system": "edge-lambda",
        "devices": [
            {"id": "edge", "cpu": EDGE_CPU},
            {"id": "cloud", "cpu": CLOUD_CPU, "pricing": pricing},
        ],
        "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 100}],
    }
    if runs_per_month is not None:
        document["runs_per_month"] = runs_per_month
    return System.model_validate(document)


def compiled(flow: Workflow, devices: System) -> CompiledProblem:
    return compile_problem(flow, devices, NO_CPU_CATALOG, catalog_dir=CATALOGS)


def provider(**options: Any) -> AwsLambdaProvider:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", CATALOGS)
    created = create_provider("aws-lambda", options, context)
    assert isinstance(created, AwsLambdaProvider)
    return created


def one_invocation(duration_s: float) -> Usage:
    return Usage(
        compute_s=np.array([duration_s]),
        invocations=np.array([1], dtype=np.int64),
        invocation_s=np.array([[duration_s]]),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.zeros(1, dtype=np.int64),
    )


def test_table_rates_used_by_hand_calculations() -> None:
    table = load_price_table(PRICES)

    def rates(*key: Any) -> list[float]:
        return [row.usd_per_unit for row in table.rows(*key)]

    assert rates("aws", "lambda", "duration", "ap-northeast-1", "arm64") == [TOKYO_ARM_USD_PER_GB_S]
    assert rates("aws", "lambda", "requests", "ap-northeast-1", "arm64") == [TOKYO_USD_PER_REQUEST]
    assert rates("aws", "data-transfer", "egress_internet", "ap-northeast-1") == [
        TOKYO_EGRESS_USD_PER_GB
    ]
    duration = table.rows("aws", "lambda", "duration", "us-east-1", "x86_64")
    assert [r.usd_per_unit for r in duration] == list(VIRGINIA_X86_USD_PER_GB_S)
    assert [r.tier_end for r in duration[:-1]] == list(VIRGINIA_X86_GB_S_TIER_ENDS)
    assert {r.free_allowance for r in duration} == {FREE_GB_S}
    requests = table.rows("aws", "lambda", "requests", "us-east-1", "x86_64")
    assert [(r.usd_per_unit, r.free_allowance) for r in requests] == [
        (VIRGINIA_USD_PER_REQUEST, FREE_REQUESTS)
    ]
    egress = table.rows("aws", "data-transfer", "egress_internet", "us-east-1")
    assert [r.usd_per_unit for r in egress] == list(VIRGINIA_EGRESS_USD_PER_GB)
    assert [r.tier_end for r in egress[:-1]] == list(VIRGINIA_EGRESS_GB_TIER_ENDS)
    assert {r.free_allowance for r in egress} == {FREE_EGRESS_GB}


def test_cost_per_run_by_hand_tokyo_arm64() -> None:
    pricing = {
        "provider": "aws-lambda",
        "region": "ap-northeast-1",
        "architecture": "arm64",
        "memory_mb": 2048,
    }
    problem = compiled(workflow((0.1234567, 0.003), (1_000_000, 2_345)), system(pricing))

    metrics = evaluate_placements(problem, PLACEMENT).metrics

    # Invocation 1 (resize) lasts 123.4567 ms, billed 124 ms; invocation 2 (detect)
    # lasts exactly 3 ms, billed 3 ms. 2048 MB is 2 GB of a GB-second.
    gb_s = (124 + 3) / 1000 * (2048 / 1024)
    compute_usd = gb_s * TOKYO_ARM_USD_PER_GB_S
    requests_usd = 2 * TOKYO_USD_PER_REQUEST
    # The cloud sends 1,000,000 + 2,345 bytes back to the edge; a GB is 10^9 bytes.
    egress_usd = (1_000_000 + 2_345) / 1e9 * TOKYO_EGRESS_USD_PER_GB
    expected_usd = compute_usd + requests_usd + egress_usd

    assert gb_s == pytest.approx(0.254, rel=1e-15)
    assert abs(metrics["cost_usd"][0] - expected_usd) <= 1e-12
    assert metrics["download_bytes"][0] == 1_002_345
    assert metrics["upload_bytes"][0] == 6_220_800 + 500_000
    assert np.isnan(metrics["monthly_cost_usd"][0])


def test_cost_lines_by_hand_tokyo_arm64() -> None:
    lambda_provider = provider(region="ap-northeast-1", architecture="arm64", memory_mb=2048)
    usage = Usage(
        compute_s=np.array([0.1264567]),
        invocations=np.array([2], dtype=np.int64),
        invocation_s=np.array([[0.0, 0.1234567, 0.0, 0.003, 0.0]]),
        bytes_in=np.array([6_720_800], dtype=np.int64),
        bytes_out=np.array([1_002_345], dtype=np.int64),
    )

    lines = lambda_provider.cost_lines_usd(usage)

    assert set(lines) == {"compute", "requests", "egress", "ingress"}
    assert abs(lines["compute"][0] - 0.254 * TOKYO_ARM_USD_PER_GB_S) <= 1e-15
    assert abs(lines["requests"][0] - 2 * TOKYO_USD_PER_REQUEST) <= 1e-15
    assert abs(lines["egress"][0] - 0.001002345 * TOKYO_EGRESS_USD_PER_GB) <= 1e-15
    assert lines["ingress"][0] == 0.0


def test_monthly_cost_by_hand_virginia_x86_tiers() -> None:
    runs = 1_000_000_000
    pricing = {"provider": "aws-lambda", "region": "us-east-1", "memory_mb": 10240}
    flow = workflow((0.5, 0.25), (600_000, 400_000))
    problem = compiled(flow, system(pricing, runs_per_month=runs))

    metrics = evaluate_placements(problem, PLACEMENT).metrics

    # Duration: 750 ms at 10 GB is 7.5 GB-s a run, 7.5e9 GB-s a month. The free
    # 400,000 GB-s are the first units; the rest of the first tier ends at 6e9 and the
    # second tier takes the remaining 1.5e9.
    first, second, _third = VIRGINIA_X86_USD_PER_GB_S
    duration_usd = (6e9 - FREE_GB_S) * first + (7.5e9 - 6e9) * second
    # Requests: 2 a run, 2e9 a month, the first million free.
    requests_usd = (2 * runs - FREE_REQUESTS) * VIRGINIA_USD_PER_REQUEST
    # Egress: 1,000,000 bytes a run is 1e6 GB a month, through every tier; the free
    # 100 GB are the $0 tier.
    egress_usd = (
        (10_240 - 100) * 0.09
        + (51_200 - 10_240) * 0.085
        + (153_600 - 51_200) * 0.07
        + (1_000_000 - 153_600) * 0.05
    )
    expected_usd = duration_usd + requests_usd + egress_usd

    assert metrics["monthly_cost_usd"][0] == pytest.approx(expected_usd, rel=1e-12)
    assert metrics["monthly_cost_usd"][0] == pytest.approx(176_775.52, rel=1e-6)


def test_monthly_cost_within_free_allowances() -> None:
    lambda_provider = provider(region="us-east-1", memory_mb=1024)
    usage = one_invocation(0.2)

    # 100,000 runs: 20,000 GB-s and 100,000 requests, both inside the free allowances.
    assert lambda_provider.monthly_cost_usd(usage, 100_000)[0] == 0.0
    # 2,100,000 runs: 420,000 GB-s and 2,100,000 requests.
    expected = 20_000 * 0.0000166667 + 1_100_000 * 0.0000002
    assert lambda_provider.monthly_cost_usd(usage, 2_100_000)[0] == pytest.approx(
        expected, rel=1e-12
    )


def test_monthly_cost_tokyo_egress_has_no_free_allowance() -> None:
    lambda_provider = provider(region="ap-northeast-1", memory_mb=128)
    usage = Usage(
        compute_s=np.zeros(1),
        invocations=np.zeros(1, dtype=np.int64),
        invocation_s=np.zeros((1, 1)),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.array([1_000_000], dtype=np.int64),
    )
    # 1,000 runs send 1 GB, priced from the first byte.
    assert lambda_provider.monthly_cost_usd(usage, 1000)[0] == pytest.approx(0.114, rel=1e-12)


def test_monthly_cost_past_last_tier_is_an_error() -> None:
    lambda_provider = provider(region="ap-northeast-1", memory_mb=128)
    usage = Usage(
        compute_s=np.zeros(1),
        invocations=np.zeros(1, dtype=np.int64),
        invocation_s=np.zeros((1, 1)),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.array([100_000_000], dtype=np.int64),
    )
    with pytest.raises(InputError, match="no price above 10,240 GB per month"):
        lambda_provider.monthly_cost_usd(usage, 1_000_000)


@pytest.mark.parametrize(
    ("duration_s", "billed_ms"),
    [
        (0.003, 3),  # exactly 3 ms
        (0.067, 67),  # 0.067 * 1e9 / 1e6 is 67.00000000000001 in floating point
        (0.0030000001, 3),  # 3.0000001 ms: 0.1 ns over, below the nanosecond resolution
        (0.003000001, 4),  # 3.000001 ms: 1 ns over
        (0.0031, 4),
        (0.1 + 0.2, 300),  # 0.30000000000000004 s
        (0.001, 1),
        (0.0, 0),
        (1.0, 1000),
    ],
)
def test_duration_rounded_up_to_millisecond(duration_s: float, billed_ms: int) -> None:
    lambda_provider = provider(region="us-east-1", memory_mb=1024)  # 1 GB
    usage = one_invocation(duration_s)

    assert lambda_provider.billed_gb_s(usage)[0] == billed_ms / 1000
    assert lambda_provider.cost_lines_usd(usage)["compute"][0] == pytest.approx(
        billed_ms / 1000 * 0.0000166667, rel=1e-15, abs=0.0
    )


def test_duration_rounded_per_invocation() -> None:
    lambda_provider = provider(region="us-east-1", memory_mb=1024)
    usage = Usage(
        compute_s=np.array([0.0022]),
        invocations=np.array([2], dtype=np.int64),
        invocation_s=np.array([[0.0011, 0.0011]]),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.zeros(1, dtype=np.int64),
    )
    # Two invocations of 1.1 ms are billed 2 ms each, not 3 ms for their 2.2 ms sum.
    assert lambda_provider.billed_gb_s(usage)[0] == 0.004


@pytest.mark.parametrize(
    ("memory_mb", "cores"),
    [(128, 128 / 1769), (1769, 1.0), (2048, 2048 / 1769), (10240, 10240 / 1769)],
)
def test_usable_cores_proportional_to_memory(memory_mb: int, cores: float) -> None:
    assert provider(region="us-east-1", memory_mb=memory_mb).usable_cores() == cores


def test_describe_lists_rows_used_with_dates() -> None:
    lambda_provider = provider(region="ap-northeast-1", architecture="arm64", memory_mb=2048)

    description = lambda_provider.describe()

    assert json.loads(json.dumps(description)) == description
    assert description["region"] == "ap-northeast-1"
    assert description["architecture"] == "arm64"
    assert description["memory_mb"] == 2048
    assert description["prices"] == str(PRICES)
    assert description["prices_sha256"] == load_price_table(PRICES).sha256
    used = {(row["service"], row["dimension"]): row for row in description["price_rows"]}
    assert set(used) == {
        ("lambda", "duration"),
        ("lambda", "requests"),
        ("data-transfer", "egress_internet"),
        ("data-transfer", "ingress_internet"),
    }
    assert used[("lambda", "duration")]["as_of"] == "2026-09-05"
    assert used[("lambda", "duration")]["usd_per_unit"] == TOKYO_ARM_USD_PER_GB_S
    assert used[("data-transfer", "ingress_internet")]["as_of"] is None


# Options


def option_error(options: dict[str, Any], catalog_dir: Path | None = CATALOGS) -> str:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", catalog_dir)
    with pytest.raises(InputError) as info:
        create_provider("aws-lambda", options, context)
    return str(info.value)


def test_unknown_region_lists_regions() -> None:
    message = option_error({"region": "eu-west-1", "memory_mb": 1024})
    assert "system.yaml: devices[1].pricing.region" in message
    assert "'eu-west-1'" in message
    assert "regions with prices: ap-northeast-1, us-east-1" in message


def test_missing_price_names_row_needed() -> None:
    message = option_error({"region": "us-east-1", "architecture": "arm64", "memory_mb": 1024})
    assert "devices[1].pricing.region" in message
    assert "dimension requests, region us-east-1, architecture arm64" in message
    assert "architectures with this price in us-east-1: x86_64" in message


def test_unknown_option_lists_valid_options() -> None:
    message = option_error({"region": "us-east-1", "memory_mb": 1024, "memory": 1024})
    assert "devices[1].pricing.memory" in message
    assert "valid options: region, architecture, memory_mb, prices" in message


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({"memory_mb": 1024}, "region", "missing option 'region'"),
        ({"region": "us-east-1"}, "memory_mb", "missing option 'memory_mb'"),
        ({"region": "us-east-1", "memory_mb": 127}, "memory_mb", "from 128 to 10240"),
        ({"region": "us-east-1", "memory_mb": 10241}, "memory_mb", "from 128 to 10240"),
        ({"region": "us-east-1", "memory_mb": 1024.0}, "memory_mb", "whole number of MB"),
        (
            {"region": "us-east-1", "memory_mb": 1024, "architecture": "aarch64"},
            "architecture",
            "x86_64 or arm64",
        ),
    ],
)
def test_invalid_option(options: dict[str, Any], field: str, expected: str) -> None:
    message = option_error(options)
    assert f"devices[1].pricing.{field}" in message
    assert expected in message


def test_prices_option_relative_to_system_file(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "my-prices.parquet").write_bytes(PRICES.read_bytes())
    system_file = tmp_path / "system.yaml"
    system_file.write_text("system: s\n", encoding="utf-8")
    context = PricingContext(str(system_file), "devices[1].pricing", "cloud", None)

    created = create_provider(
        "aws-lambda",
        {"region": "us-east-1", "memory_mb": 1024, "prices": "tables/my-prices.parquet"},
        context,
    )

    assert created.describe()["prices"] == str(tmp_path / "tables" / "my-prices.parquet")


def test_missing_price_table_names_option(tmp_path: Path) -> None:
    message = option_error({"region": "us-east-1", "memory_mb": 1024}, catalog_dir=tmp_path)
    assert "devices[1].pricing.prices" in message
    assert "price table not found" in message


def test_no_catalog_and_no_prices_option() -> None:
    message = option_error({"region": "us-east-1", "memory_mb": 1024}, catalog_dir=None)
    assert "devices[1].pricing.prices" in message
    assert "set the `prices` option" in message
