"""The `azure-functions` pricing provider: Azure Functions on the Consumption plan.

The Consumption plan bills executions and resource consumption in GB-seconds: the
memory a function uses times its execution time. Microsoft documents the rounding in
the note of the "Functions - Compute" meter (Azure Stack usage API FAQ,
MicrosoftDocs/azure-docs, articles/azure-stack/azure-stack-usage-related-faq.md, dated
2018-09-27). The Azure Functions pricing page
(azure.microsoft.com/pricing/details/functions) states the first two rules in the same
words:

- memory is rounded up to the nearest 128 MB, up to the maximum of 1,536 MB;
- execution time is rounded up to the nearest 1 ms;
- one execution is billed at least 100 ms and 128 MB.

A GB here is 1,024 MB: "Estimating Consumption plan costs" (MicrosoftDocs/azure-docs,
articles/azure-functions/functions-consumption-costs.md) converts MB-milliseconds to
GB-seconds by dividing by 1,024,000.

One run costs three billing lines:

- ``compute``: for every execution, its billed time times the billed memory in GB,
  times the first-tier rate per GB-second;
- ``requests``: executions times the rate per execution;
- ``egress``: bytes sent to other devices, in the table's data unit, times the rate of
  the region's first internet-egress tier priced above zero.

A month multiplies the per-run quantities by ``runs_per_month`` and prices the monthly
totals with the table's tiers and free grants (see `allocation.prices.TieredPrice`).
Data received is not billed; the price table has no Azure ingress price.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from allocation.prices import BYTES_PER_DATA_UNIT, PriceTable, TieredPrice
from allocation.pricing import API_VERSION, PerRunCostTerms, PricingContext, Usage
from allocation_providers._common import (
    PRICES_FILE as PRICES_FILE,
)
from allocation_providers._common import (
    as_float,
    build_provider,
    check_region,
    check_unit,
    data_units,
    load_table,
    prices_path,
    regions_with_prices,
    validate_options,
)

__all__ = ["AzureFunctionsProvider"]

MEMORY_INCREMENT_MB = 128
"""Memory is billed in whole multiples of 128 MB, rounded up."""

MAX_MEMORY_MB = 1536
"""Largest memory the Consumption plan bills for one execution."""

MIN_EXECUTION_MS = 100
"""Shortest execution time billed."""

MB_PER_GB = 1024
"""Megabytes in the GB of a GB-second."""

_PROVIDER = "azure"
_SERVICE = "functions-consumption"
_DATA_SERVICE = "bandwidth"
_NAME = "azure-functions"


class _AzureFunctionsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    region: str = Field(min_length=1)
    memory_mb: int = Field(ge=1, le=MAX_MEMORY_MB)
    prices: str | None = Field(default=None, min_length=1)


_EXPECTED = {
    "region": "an Azure region id with Functions prices in the price table, e.g. eastus",
    "memory_mb": f"a whole number of MB from 1 to {MAX_MEMORY_MB}, the memory an execution uses",
    "prices": "the path of a price table (prices.parquet)",
}


class AzureFunctionsProvider:
    """Azure Functions Consumption plan: GB-seconds, executions and egress."""

    name: ClassVar[str] = _NAME
    api_version: ClassVar[int] = API_VERSION

    def __init__(self, options: _AzureFunctionsOptions, table: PriceTable) -> None:
        """Look up the three prices.

        A failed look-up raises InputError naming the price table, and `from_options`
        adds the option's field to it.
        """
        self._options = options
        self._table = table
        region = options.region

        self._duration = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, "duration", region), table.path
        )
        self._requests = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, "requests", region), table.path
        )
        self._egress = TieredPrice(
            table.rows(_PROVIDER, _DATA_SERVICE, "egress_internet", region), table.path
        )
        check_unit(self._duration, ("GB-second",), table, _NAME)
        check_unit(self._requests, ("request",), table, _NAME)
        check_unit(self._egress, tuple(BYTES_PER_DATA_UNIT), table, _NAME)

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], context: PricingContext
    ) -> AzureFunctionsProvider:
        """Build the provider from its options and the price table.

        The options are `region` (required), `memory_mb` (required: the memory one
        execution uses, 1 to 1536 MB) and `prices`, the path of the price table. Without
        `prices` the provider reads ``prices.parquet`` in the catalog folder; a relative
        path is taken from the folder of the system file.

        Raises
        ------
        InputError
            Naming the option, for an unknown, missing or invalid option, a region
            without Consumption plan prices (the message lists the regions that have
            them), and a price table that cannot be read or lacks a price the provider
            needs.
        """
        parsed = validate_options(_AzureFunctionsOptions, options, context, _NAME, _EXPECTED)
        path = prices_path(parsed.prices, context)
        table = load_table(path, context)

        regions = regions_with_prices(table, _PROVIDER, _SERVICE, "duration")
        check_region(
            parsed.region, regions, "Azure Functions Consumption has no prices", path, context
        )
        return build_provider(lambda: cls(parsed, table), "region", context)

    @property
    def billed_memory_mb(self) -> int:
        """Memory billed for one execution: `memory_mb` rounded up to a multiple of 128 MB."""
        increments = -(-self._options.memory_mb // MEMORY_INCREMENT_MB)
        return increments * MEMORY_INCREMENT_MB

    def billed_gb_s(self, usage: Usage) -> np.ndarray:
        """Return the GB-seconds billed for one run, shape (n,).

        Each execution's time is rounded up to a whole millisecond and billed at least
        100 ms. The time is first rounded to the nearest nanosecond, so that
        floating-point error does not add a millisecond. An execution of zero seconds
        leaves no column in `usage.invocation_s`, so the executions that `invocations`
        counts beyond the non-zero columns are billed 100 ms each.
        """
        invocation_s = np.asarray(usage.invocation_s, dtype=np.float64)
        nanoseconds = np.rint(invocation_s * 1e9)
        billed_ms = np.where(
            nanoseconds > 0, np.maximum(np.ceil(nanoseconds / 1e6), MIN_EXECUTION_MS), 0.0
        ).sum(axis=1)
        zero_length = np.asarray(usage.invocations) - (nanoseconds > 0).sum(axis=1)
        billed_ms += np.clip(zero_length, 0, None) * MIN_EXECUTION_MS
        return billed_ms / 1000.0 * self.billed_memory_mb / MB_PER_GB

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return the compute, requests and egress costs of one run, in USD.

        Every line uses the first tier priced above zero and no free grant.
        """
        return {
            "compute": self._duration.first_tier_usd_per_unit * self.billed_gb_s(usage),
            "requests": self._requests.first_tier_usd_per_unit * as_float(usage.invocations),
            "egress": self._egress.first_tier_usd_per_unit * self._data_units(usage.bytes_out),
        }

    def per_run_cost_terms(self) -> PerRunCostTerms:
        """Return the cost of one run split by execution, at the rates of `cost_lines_usd`.

        An execution costs its time rounded up to a whole millisecond and to at least
        100 ms (an execution of zero seconds too, as `billed_gb_s` bills it) times the
        billed memory and the rate per GB-second, plus the rate per execution.
        """
        usd_per_gb_s = self._duration.first_tier_usd_per_unit
        billed_gb = self.billed_memory_mb / MB_PER_GB

        def invocation_usd(duration_s: np.ndarray) -> np.ndarray:
            nanoseconds = np.rint(np.asarray(duration_s, dtype=np.float64) * 1e9)
            billed_ms = np.maximum(np.ceil(nanoseconds / 1e6), MIN_EXECUTION_MS)
            return usd_per_gb_s * (billed_ms / 1000.0 * billed_gb)

        return PerRunCostTerms(
            invocation_usd=invocation_usd,
            usd_per_invocation=self._requests.first_tier_usd_per_unit,
            usd_per_byte_in=0.0,
            usd_per_byte_out=self._egress.first_tier_usd_per_unit
            / BYTES_PER_DATA_UNIT[self._egress.unit],
        )

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the bill for `runs_per_month` runs, with tiers and free grants.

        Each quantity (GB-seconds, executions and egress data) is summed over the month
        and priced by its tiers, the free grant covering its first units.

        Raises
        ------
        InputError
            When a monthly quantity exceeds the last tier of the price table.
        """
        # NOTE: Azure applies the free grants per subscription, across all function
        # apps, so a system with several Functions devices gets each grant once per
        # device here.
        runs = float(runs_per_month)
        return (
            self._duration.monthly_usd(runs * self.billed_gb_s(usage))
            + self._requests.monthly_usd(runs * as_float(usage.invocations))
            + self._egress.monthly_usd(runs * self._data_units(usage.bytes_out))
        )

    def describe(self) -> dict[str, Any]:
        """Return the options, the billed memory, the price table and its rows used."""
        prices = (self._duration, self._requests, self._egress)
        return {
            "provider": self.name,
            **self._options.model_dump(exclude={"prices"}),
            "billed_memory_mb": self.billed_memory_mb,
            "min_execution_ms": MIN_EXECUTION_MS,
            "prices": str(self._table.path),
            "prices_sha256": self._table.sha256,
            "price_rows": [row.to_dict() for price in prices for row in price.tiers],
        }

    def _data_units(self, byte_counts: np.ndarray) -> np.ndarray:
        return data_units(byte_counts, self._egress.unit)
