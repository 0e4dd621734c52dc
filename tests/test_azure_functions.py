"""Tests of the azure-functions provider: hand calculations, rounding, free grants, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from allocation.catalog import CpuCatalog
from allocation.compile import compile_problem
from allocation.errors import InputError
from allocation.estimate import evaluate_placements
from allocation.model import System, Workflow
from allocation.price_build import write_price_table
from allocation.prices import load_price_table
from allocation.pricing import PricingContext, Usage, create_provider
from allocation_providers.azure_functions import AzureFunctionsProvider

REPO = Path(__file__).resolve().parents[1]
CATALOGS = REPO / "catalogs"
PRICES = CATALOGS / "prices.parquet"
NO_CPU_CATALOG = CpuCatalog(None, (), "")

CLOUD_CPU = {"name": "Example vCPU", "single_thread": 2000.0, "cores": 2}
EDGE_CPU = {"name": "Example ARM board", "single_thread": 600.0, "cores": 4}

EDGE, CLOUD = 0, 1
PLACEMENT = np.array([[EDGE, CLOUD, EDGE, CLOUD, EDGE]])
"""Stages on edge, cloud, edge, cloud, edge: the cloud runs two executions."""

# Rates of prices.parquet used by the hand calculations, checked against the table below.
USD_PER_GB_S = 0.000016
USD_PER_EXECUTION = 0.0000002
EGRESS_USD_PER_GB = (0.0, 0.087, 0.083, 0.07, 0.05)
FREE_GB_S = 400_000
FREE_EXECUTIONS = 1_000_000
FREE_EGRESS_GB = 100


def provider(**options: Any) -> AzureFunctionsProvider:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", CATALOGS)
    created = create_provider("azure-functions", options, context)
    assert isinstance(created, AzureFunctionsProvider)
    return created


def executions(durations_s: list[float], count: int | None = None, bytes_out: int = 0) -> Usage:
    return Usage(
        compute_s=np.array([sum(durations_s)]),
        invocations=np.array([len(durations_s) if count is None else count], dtype=np.int64),
        invocation_s=np.array([durations_s]),
        bytes_in=np.zeros(1, dtype=np.int64),
        bytes_out=np.array([bytes_out], dtype=np.int64),
    )


def option_error(options: dict[str, Any]) -> str:
    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", CATALOGS)
    with pytest.raises(InputError) as info:
        create_provider("azure-functions", options, context)
    return str(info.value)


def test_table_rates_used_by_hand_calculations() -> None:
    table = load_price_table(PRICES)

    (duration,) = table.rows("azure", "functions-consumption", "duration", "eastus")
    (requests,) = table.rows("azure", "functions-consumption", "requests", "eastus")
    egress = table.rows("azure", "bandwidth", "egress_internet", "eastus")

    assert (duration.usd_per_unit, duration.free_allowance, duration.unit) == (
        USD_PER_GB_S,
        FREE_GB_S,
        "GB-second",
    )
    assert (requests.usd_per_unit, requests.free_allowance, requests.unit) == (
        USD_PER_EXECUTION,
        FREE_EXECUTIONS,
        "request",
    )
    assert [row.usd_per_unit for row in egress] == list(EGRESS_USD_PER_GB)
    assert egress[1].tier_end == 10_335
    assert {(row.free_allowance, row.unit) for row in egress} == {(FREE_EGRESS_GB, "GB")}


def test_cost_per_run_by_hand() -> None:
    flow = Workflow.model_validate(
        {
            "workflow": "two-executions",
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
    pricing = {"provider": "azure-functions", "region": "eastus", "memory_mb": 160}
    devices = System.model_validate(
        {
            "system": "edge-functions",
            "devices": [
                {"id": "edge", "cpu": EDGE_CPU},
                {"id": "cloud", "cpu": CLOUD_CPU, "cores": 2, "pricing": pricing},
            ],
            "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 100}],
        }
    )
    problem = compile_problem(flow, devices, NO_CPU_CATALOG, catalog_dir=CATALOGS)

    metrics = evaluate_placements(problem, PLACEMENT).metrics

    # Execution 1 lasts 123.4567 ms and is billed 124 ms. Execution 2 lasts 3 ms and is
    # billed the minimum 100 ms. 160 MB is billed as 256 MB, 0.25 GB.
    gb_s = (124 + 100) / 1000 * 0.25
    compute_usd = gb_s * USD_PER_GB_S
    requests_usd = 2 * USD_PER_EXECUTION
    # 1,002,345 bytes are sent back, at $0.087 per GB of 10^9 bytes (the first paid tier).
    egress_usd = 1_002_345 / 1e9 * 0.087
    assert gb_s == pytest.approx(0.056, rel=1e-15)
    assert metrics["cost_usd"][0] == pytest.approx(
        compute_usd + requests_usd + egress_usd, rel=1e-12
    )
    assert np.isnan(metrics["monthly_cost_usd"][0])


def test_cost_lines_by_hand() -> None:
    functions = provider(region="eastus", memory_mb=1024)
    lines = functions.cost_lines_usd(executions([0.5, 0.0, 0.25], count=2, bytes_out=10**9))

    assert set(lines) == {"compute", "requests", "egress"}
    assert lines["compute"][0] == pytest.approx(0.75 * USD_PER_GB_S, rel=1e-15)
    assert lines["requests"][0] == pytest.approx(2 * USD_PER_EXECUTION, rel=1e-15)
    assert lines["egress"][0] == pytest.approx(0.087, rel=1e-15)


@pytest.mark.parametrize(
    ("memory_mb", "billed_mb"),
    [(1, 128), (128, 128), (129, 256), (160, 256), (1000, 1024), (1536, 1536)],
)
def test_memory_rounded_up_to_128_mb(memory_mb: int, billed_mb: int) -> None:
    functions = provider(region="eastus", memory_mb=memory_mb)

    assert functions.billed_memory_mb == billed_mb
    # One execution of 1 s.
    assert functions.billed_gb_s(executions([1.0]))[0] == billed_mb / 1024


@pytest.mark.parametrize(
    ("duration_s", "billed_ms"),
    [
        (0.0031, 100),  # below the 100 ms minimum
        (0.1, 100),
        (0.1001, 101),
        (0.1000001, 101),  # 100 ns over
        (0.1000000001, 100),  # 0.1 ns over, below the nanosecond resolution
        (0.1 + 0.2, 300),  # 0.30000000000000004 s
        (0.067 * 3, 201),  # 0.201 s
        (1.0, 1000),
    ],
)
def test_execution_time_rounding_and_minimum(duration_s: float, billed_ms: int) -> None:
    functions = provider(region="eastus", memory_mb=1024)  # 1 GB

    assert functions.billed_gb_s(executions([duration_s]))[0] == pytest.approx(
        billed_ms / 1000, abs=1e-15
    )


def test_zero_length_executions_billed_minimum() -> None:
    functions = provider(region="eastus", memory_mb=1024)
    # Three executions, two of which last 0 s and leave no duration column.
    usage = executions([0.2, 0.0, 0.0], count=3)

    assert functions.billed_gb_s(usage)[0] == pytest.approx(0.4, abs=1e-15)


def test_no_execution_costs_nothing() -> None:
    functions = provider(region="eastus", memory_mb=1024)
    usage = executions([0.0, 0.0], count=0)

    assert functions.billed_gb_s(usage)[0] == 0.0
    assert sum(line[0] for line in functions.cost_lines_usd(usage).values()) == 0.0


def test_monthly_cost_by_hand_with_free_grants() -> None:
    functions = provider(region="eastus", memory_mb=1024)
    usage = executions([0.5], bytes_out=200_000)

    monthly = functions.monthly_cost_usd(usage, 1_000_000)[0]

    # 1,000,000 executions of 0.5 s at 1 GB use 500,000 GB-s, the first 400,000 free.
    # The executions are all inside the free grant. Of 200 GB of egress, 100 GB are free.
    expected = (500_000 - FREE_GB_S) * USD_PER_GB_S + (200 - FREE_EGRESS_GB) * 0.087
    assert monthly == pytest.approx(expected, rel=1e-12)


def test_monthly_executions_past_free_grant() -> None:
    functions = provider(region="eastus", memory_mb=128)
    usage = executions([0.0], count=1)

    # 3,000,000 executions, billed 100 ms at 128 MB each: 37,500 GB-s, inside the grant.
    assert functions.monthly_cost_usd(usage, 3_000_000)[0] == pytest.approx(
        2_000_000 * USD_PER_EXECUTION, rel=1e-12
    )


def test_describe_lists_rows_used() -> None:
    description = provider(region="eastus", memory_mb=160).describe()

    assert json.loads(json.dumps(description)) == description
    assert description["memory_mb"] == 160
    assert description["billed_memory_mb"] == 256
    assert description["min_execution_ms"] == 100
    assert description["prices_sha256"] == load_price_table(PRICES).sha256
    used = {(row["service"], row["dimension"]) for row in description["price_rows"]}
    assert used == {
        ("functions-consumption", "duration"),
        ("functions-consumption", "requests"),
        ("bandwidth", "egress_internet"),
    }


# Options


def test_unknown_region_lists_regions() -> None:
    message = option_error({"region": "westeurope", "memory_mb": 256})
    assert "devices[1].pricing.region" in message
    assert "'westeurope'" in message
    assert "regions with prices: eastus" in message


def test_missing_egress_row_names_row_needed(tmp_path: Path) -> None:
    frame = pd.read_parquet(PRICES)
    prices = tmp_path / "prices.parquet"
    write_price_table(frame[frame["service"] != "bandwidth"].reset_index(drop=True), prices)

    message = option_error({"region": "eastus", "memory_mb": 256, "prices": str(prices)})

    assert "devices[1].pricing.region" in message
    assert (
        "has no price for provider azure, service bandwidth, dimension egress_internet, "
        "region eastus" in message
    )


def test_unknown_option_lists_valid_options() -> None:
    message = option_error({"region": "eastus", "memory_mb": 256, "plan": "flex"})
    assert "devices[1].pricing.plan" in message
    assert "valid options: region, memory_mb, prices" in message


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({"memory_mb": 256}, "region", "missing option 'region'"),
        ({"region": "eastus"}, "memory_mb", "missing option 'memory_mb'"),
        ({"region": "eastus", "memory_mb": 0}, "memory_mb", "from 1 to 1536"),
        ({"region": "eastus", "memory_mb": 1537}, "memory_mb", "from 1 to 1536"),
        ({"region": "eastus", "memory_mb": 256.0}, "memory_mb", "whole number of MB"),
    ],
)
def test_invalid_option(options: dict[str, Any], field: str, expected: str) -> None:
    message = option_error(options)
    assert f"devices[1].pricing.{field}" in message
    assert expected in message
