"""Tests of the aws-ec2 provider: busy-time and fleet billing by hand, egress, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from allocation.catalog import CpuCatalog
from allocation.compile import CompiledProblem, compile_problem
from allocation.errors import InputError
from allocation.estimate import evaluate_placements
from allocation.model import System, Workflow
from allocation.price_build import write_price_table
from allocation.prices import load_price_table
from allocation.pricing import PricingContext, Usage, create_provider
from allocation_providers.aws_ec2 import HOURS_PER_MONTH, AwsEc2Provider

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
VIRGINIA_T3_MEDIUM_USD_PER_HOUR = 0.0416
VIRGINIA_C5_LARGE_USD_PER_HOUR = 0.085
TOKYO_M5_XLARGE_USD_PER_HOUR = 0.248
VIRGINIA_EGRESS_USD_PER_GB = (0.0, 0.09, 0.085, 0.07, 0.05)
VIRGINIA_FREE_EGRESS_GB = 100
TOKYO_EGRESS_USD_PER_GB = 0.114


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
        "system": "edge-ec2",
        "devices": [
            {"id": "edge", "cpu": EDGE_CPU},
            {"id": "cloud", "cpu": CLOUD_CPU, "cores": 2, "pricing": pricing},
        ],
        "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 100}],
    }
    if runs_per_month is not None:
        document["runs_per_month"] = runs_per_month
    return System.model_validate(document)


def compiled(flow: Workflow, devices: System) -> CompiledProblem:
    return compile_problem(flow, devices, NO_CPU_CATALOG, catalog_dir=CATALOGS)


def provider(**options: Any) -> AwsEc2Provider:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", CATALOGS)
    created = create_provider("aws-ec2", options, context)
    assert isinstance(created, AwsEc2Provider)
    return created


def usage(compute_s: float, invocations: int, bytes_out: int = 0) -> Usage:
    return Usage(
        compute_s=np.array([compute_s]),
        invocations=np.array([invocations], dtype=np.int64),
        invocation_s=np.array([[compute_s]]),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.array([bytes_out], dtype=np.int64),
    )


def option_error(options: dict[str, Any], catalog_dir: Path | None = CATALOGS) -> str:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", catalog_dir)
    with pytest.raises(InputError) as info:
        create_provider("aws-ec2", options, context)
    return str(info.value)


def test_table_rates_used_by_hand_calculations() -> None:
    table = load_price_table(PRICES)

    def rates(*key: Any) -> list[float]:
        return [row.usd_per_unit for row in table.rows(*key)]

    assert rates("aws", "ec2:t3.medium", "instance", "us-east-1") == [
        VIRGINIA_T3_MEDIUM_USD_PER_HOUR
    ]
    assert rates("aws", "ec2:c5.large", "instance", "us-east-1") == [VIRGINIA_C5_LARGE_USD_PER_HOUR]
    assert rates("aws", "ec2:m5.xlarge", "instance", "ap-northeast-1") == [
        TOKYO_M5_XLARGE_USD_PER_HOUR
    ]
    assert rates("aws", "data-transfer", "egress_internet", "us-east-1") == list(
        VIRGINIA_EGRESS_USD_PER_GB
    )
    egress = table.rows("aws", "data-transfer", "egress_internet", "us-east-1")
    assert {row.free_allowance for row in egress} == {VIRGINIA_FREE_EGRESS_GB}
    assert rates("aws", "data-transfer", "egress_internet", "ap-northeast-1") == [
        TOKYO_EGRESS_USD_PER_GB
    ]
    for row in table.rows("aws", "ec2:t3.medium", "instance", "us-east-1"):
        assert (row.unit, row.free_allowance) == ("hour", None)


# Busy-time billing


def test_busy_time_cost_per_run_by_hand() -> None:
    pricing = {
        "provider": "aws-ec2",
        "region": "us-east-1",
        "instance_type": "t3.medium",
        "utilisation": 0.5,
    }
    problem = compiled(workflow((0.9, 0.45), (1_000_000, 2_345)), system(pricing))

    metrics = evaluate_placements(problem, PLACEMENT).metrics

    # The cloud is busy 0.9 + 0.45 = 1.35 s; at 50 % utilisation the instance is paid
    # for 2.7 s, that is 0.00075 h.
    compute_usd = 2.7 / 3600 * VIRGINIA_T3_MEDIUM_USD_PER_HOUR
    # The cloud sends 1,002,345 bytes back, at $0.09/GB (the first tier priced above 0).
    egress_usd = 1_002_345 / 1e9 * 0.09
    assert compute_usd == pytest.approx(3.12e-5, rel=1e-12)
    assert metrics["cost_usd"][0] == pytest.approx(compute_usd + egress_usd, rel=1e-12)
    assert np.isnan(metrics["monthly_cost_usd"][0])


def test_busy_time_lines_and_hours() -> None:
    ec2 = provider(region="us-east-1", instance_type="t3.medium")  # utilisation 1.0
    run = usage(compute_s=36.0, invocations=1, bytes_out=2_000_000)

    lines = ec2.cost_lines_usd(run)

    assert set(lines) == {"compute", "egress"}
    assert ec2.busy_hours(run)[0] == 0.01
    assert lines["compute"][0] == pytest.approx(0.01 * VIRGINIA_T3_MEDIUM_USD_PER_HOUR, rel=1e-15)
    assert lines["egress"][0] == pytest.approx(0.002 * 0.09, rel=1e-15)


@pytest.mark.parametrize("utilisation", [1.0, 0.8, 0.25])
def test_busy_time_divides_by_utilisation(utilisation: float) -> None:
    ec2 = provider(region="us-east-1", instance_type="t3.medium", utilisation=utilisation)
    run = usage(compute_s=7.2, invocations=1)

    expected = 7.2 / utilisation / 3600 * VIRGINIA_T3_MEDIUM_USD_PER_HOUR
    assert ec2.cost_lines_usd(run)["compute"][0] == pytest.approx(expected, rel=1e-15)


def test_busy_time_monthly_by_hand_tokyo() -> None:
    ec2 = provider(region="ap-northeast-1", instance_type="m5.xlarge", utilisation=0.6)
    run = usage(compute_s=1.8, invocations=2, bytes_out=500_000)

    # 200,000 runs keep the instance busy 360,000 s, paid as 600,000 s = 166.67 h.
    # They send 100 GB, priced from the first byte in ap-northeast-1 (no free allowance).
    expected = 600_000 / 3600 * TOKYO_M5_XLARGE_USD_PER_HOUR + 100 * TOKYO_EGRESS_USD_PER_GB
    assert ec2.monthly_cost_usd(run, 200_000)[0] == pytest.approx(expected, rel=1e-12)


def test_busy_time_monthly_egress_free_allowance() -> None:
    ec2 = provider(region="us-east-1", instance_type="t3.medium")
    run = usage(compute_s=0.0, invocations=1, bytes_out=1_000_000)

    # 100,000 runs send 100 GB, all inside the free 100 GB. 150,000 runs send 150 GB.
    assert ec2.monthly_cost_usd(run, 100_000)[0] == 0.0
    assert ec2.monthly_cost_usd(run, 150_000)[0] == pytest.approx(50 * 0.09, rel=1e-12)


# Fleet billing


def fleet(**options: Any) -> AwsEc2Provider:
    defaults = {
        "region": "us-east-1",
        "instance_type": "c5.large",
        "billing": "fleet",
        "instances": 3,
        "runs_per_month": 100_000,
    }
    return provider(**{**defaults, **options})


def test_fleet_monthly_cost_by_hand() -> None:
    ec2 = fleet()
    # 3 instances × $0.085/h × 730 h.
    assert HOURS_PER_MONTH == 730
    assert ec2.fleet_usd_per_month == pytest.approx(186.15, rel=1e-12)


def test_fleet_cost_per_run_through_engine() -> None:
    pricing = {
        "provider": "aws-ec2",
        "region": "us-east-1",
        "instance_type": "c5.large",
        "billing": "fleet",
        "instances": 3,
        "runs_per_month": 100_000,
    }
    flow = workflow((0.9, 0.45), (1_000_000, 2_345))
    problem = compiled(flow, system(pricing, runs_per_month=100_000))

    metrics = evaluate_placements(problem, PLACEMENT).metrics

    # The fleet's $186.15 a month shared by 100,000 runs, plus the egress of one run.
    fleet_share_usd = 186.15 / 100_000
    egress_usd = 1_002_345 / 1e9 * 0.09
    assert metrics["cost_usd"][0] == pytest.approx(fleet_share_usd + egress_usd, rel=1e-12)
    # A month: the fleet, and 100.2345 GB of egress of which the first 100 GB are free.
    monthly_usd = 186.15 + 0.2345 * 0.09
    assert metrics["monthly_cost_usd"][0] == pytest.approx(monthly_usd, rel=1e-12)


def test_fleet_lines_independent_of_compute() -> None:
    ec2 = fleet(instances=1, runs_per_month=1000)
    short, long = usage(0.01, 1), usage(100.0, 3)

    share_usd = VIRGINIA_C5_LARGE_USD_PER_HOUR * 730 / 1000
    assert ec2.cost_lines_usd(short)["compute"][0] == pytest.approx(share_usd, rel=1e-15)
    assert ec2.cost_lines_usd(long)["compute"][0] == pytest.approx(share_usd, rel=1e-15)


def test_fleet_unused_device_costs_nothing() -> None:
    ec2 = fleet()
    unused = usage(0.0, 0)

    assert ec2.cost_lines_usd(unused)["compute"][0] == 0.0
    assert ec2.monthly_cost_usd(unused, 100_000)[0] == 0.0


def test_fleet_monthly_fixed_whatever_the_runs() -> None:
    ec2 = fleet()
    run = usage(2.0, 1)

    for runs in (1, 1000, 100_000, 10_000_000):
        assert ec2.monthly_cost_usd(run, runs)[0] == pytest.approx(186.15, rel=1e-12), runs
    assert ec2.monthly_cost_usd(run, 0)[0] == 0.0


def test_fleet_without_runs_per_month_is_an_error() -> None:
    message = option_error({"region": "us-east-1", "instance_type": "c5.large", "billing": "fleet"})
    assert "devices[1].pricing.runs_per_month" in message
    assert "fleet billing needs runs_per_month" in message


def test_fleet_takes_system_runs_per_month() -> None:
    context = PricingContext(
        "system.yaml", "devices[1].pricing", "cloud", CATALOGS, runs_per_month=1000
    )
    options = {"region": "us-east-1", "instance_type": "c5.large", "billing": "fleet"}
    ec2 = create_provider("aws-ec2", options, context)
    run = usage(1.0, 1)
    assert ec2.cost_lines_usd(run)["compute"][0] == pytest.approx(0.085 * 730 / 1000, rel=1e-12)


def test_fleet_instances_default_to_one() -> None:
    ec2 = provider(region="us-east-1", instance_type="c5.large", billing="fleet", runs_per_month=10)
    assert ec2.fleet_usd_per_month == pytest.approx(0.085 * 730, rel=1e-15)


def test_describe_fleet_lists_rows_used() -> None:
    description = fleet().describe()

    assert json.loads(json.dumps(description)) == description
    assert description["billing"] == "fleet"
    assert description["instances"] == 3
    assert description["runs_per_month"] == 100_000
    assert "utilisation" not in description
    assert description["hours_per_month"] == 730
    assert description["fleet_usd_per_month"] == pytest.approx(186.15, rel=1e-12)
    assert description["prices_sha256"] == load_price_table(PRICES).sha256
    used = {(row["service"], row["dimension"]) for row in description["price_rows"]}
    assert used == {("ec2:c5.large", "instance"), ("data-transfer", "egress_internet")}


def test_describe_busy_time_omits_fleet_options() -> None:
    description = provider(region="us-east-1", instance_type="t3.medium").describe()

    assert description["billing"] == "busy_time"
    assert description["utilisation"] == 1.0
    assert "instances" not in description
    assert "runs_per_month" not in description
    assert "fleet_usd_per_month" not in description


# Options


def test_unknown_instance_type_lists_types() -> None:
    message = option_error({"region": "us-east-1", "instance_type": "t3.nano"})
    assert "devices[1].pricing.instance_type" in message
    assert "'t3.nano'" in message
    assert "c5.large, c6g.large, g4dn.xlarge, m5.xlarge, t3.medium" in message


def test_region_without_instance_type_lists_regions() -> None:
    message = option_error({"region": "ap-northeast-1", "instance_type": "c6g.large"})
    assert "devices[1].pricing.region" in message
    assert "regions with prices: us-east-1" in message


def test_missing_egress_row_names_row_needed(tmp_path: Path) -> None:
    frame = pd.read_parquet(PRICES)
    no_tokyo_egress = (frame["dimension"] == "egress_internet") & (
        frame["region"] == "ap-northeast-1"
    )
    prices = tmp_path / "prices.parquet"
    write_price_table(frame[~no_tokyo_egress].reset_index(drop=True), prices)

    message = option_error(
        {"region": "ap-northeast-1", "instance_type": "t3.medium", "prices": str(prices)}
    )

    assert "devices[1].pricing.region" in message
    assert (
        "has no price for provider aws, service data-transfer, dimension egress_internet, "
        "region ap-northeast-1" in message
    )
    assert "regions with this price in the table: us-east-1" in message


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({"billing": "reserved"}, "billing", "busy_time or fleet"),
        ({"utilisation": 0}, "utilisation", "greater than 0 and at most 1"),
        ({"utilisation": 1.5}, "utilisation", "greater than 0 and at most 1"),
        (
            {"billing": "fleet", "instances": 0, "runs_per_month": 10},
            "instances",
            "whole number of instances",
        ),
        ({"billing": "fleet", "runs_per_month": 0}, "runs_per_month", "runs a month >= 1"),
        (
            {"instances": 2},
            "instances",
            "option 'instances' applies only to billing fleet",
        ),
        (
            {"runs_per_month": 1000},
            "runs_per_month",
            "option 'runs_per_month' applies only to billing fleet",
        ),
        (
            {"billing": "fleet", "runs_per_month": 1000, "utilisation": 0.5},
            "utilisation",
            "option 'utilisation' applies only to billing busy_time",
        ),
    ],
)
def test_invalid_option(options: dict[str, Any], field: str, expected: str) -> None:
    message = option_error({"region": "us-east-1", "instance_type": "t3.medium", **options})
    assert f"devices[1].pricing.{field}" in message
    assert expected in message


@pytest.mark.parametrize("name", ["region", "instance_type"])
def test_missing_required_option(name: str) -> None:
    options = {"region": "us-east-1", "instance_type": "t3.medium"}
    del options[name]

    message = option_error(options)

    assert f"devices[1].pricing.{name}" in message
    assert f"missing option {name!r} of the aws-ec2 provider" in message


def test_unknown_option_lists_valid_options() -> None:
    message = option_error({"region": "us-east-1", "instance_type": "t3.medium", "size": 1})
    assert "devices[1].pricing.size" in message
    assert (
        "valid options: region, instance_type, billing, utilisation, instances, "
        "runs_per_month, prices" in message
    )


def test_no_catalog_and_no_prices_option() -> None:
    message = option_error({"region": "us-east-1", "instance_type": "t3.medium"}, catalog_dir=None)
    assert "devices[1].pricing.prices" in message
    assert "set the `prices` option" in message
