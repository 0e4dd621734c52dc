"""The `gcp-cloud-run` pricing provider: Cloud Run services with request-based billing.

With request-based billing, Cloud Run charges the vCPUs and memory allocated to an
instance while it processes a request, a fee per request, and outbound data. Google's
pricing page (cloud.google.com/run/pricing) states that Cloud Run charges only for the
resources used, "rounded up to the nearest 100 millisecond". The provider takes every
invocation to run alone on its instance, so one run costs four billing lines:

- ``cpu``: for every invocation, its duration rounded up to a multiple of 100 ms,
  times ``vcpu``, times the region's rate per vCPU-second;
- ``memory``: the same billed seconds times ``memory_gib``, times the rate per
  GiB-second (the table writes the unit ``GB-second`` and means 1 GiB for one second);
- ``requests``: invocations times the rate per request;
- ``egress``: bytes sent to other devices, in GiB (2^30 bytes), times the rate of the
  first internet-egress tier priced above zero.

A month multiplies the per-run quantities by ``runs_per_month`` and prices the monthly
totals with the table's tiers and free allowances (see `allocation.prices.TieredPrice`).
Data received is not billed; the price table has no Cloud Run ingress price.

NOTE: request-based billing also charges an instance's start-up and shutdown, which the
usage does not contain, so a run that starts a new instance costs more than estimated.
Instances that serve several requests at once share their billed time, which the
provider does not model either, so for them it gives an upper bound.
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

__all__ = ["GcpCloudRunProvider"]

BILLING_INCREMENT_S = 0.1
"""Cloud Run rounds the billed time of an invocation up to a multiple of 100 ms."""

_PROVIDER = "gcp"
_SERVICE = "cloud-run"
_NAME = "gcp-cloud-run"
# NOTE: the price table has only the rate for data sent from North America to North
# America, so the provider prices every byte sent at that rate, whatever its
# destination.
_EGRESS_DIMENSION = "egress_internet_north_america"
_NANOSECONDS_PER_INCREMENT = 100_000_000


class _GcpCloudRunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    region: str = Field(min_length=1)
    vcpu: float = Field(default=1.0, gt=0)
    memory_gib: float = Field(gt=0)
    prices: str | None = Field(default=None, min_length=1)


_EXPECTED = {
    "region": "a GCP region id with Cloud Run prices in the price table, e.g. us-central1",
    "vcpu": "a number of vCPUs greater than 0",
    "memory_gib": "a memory size in GiB greater than 0",
    "prices": "the path of a price table (prices.parquet)",
}


class GcpCloudRunProvider:
    """Cloud Run request-based billing: vCPU-seconds, GiB-seconds, requests and egress."""

    name: ClassVar[str] = _NAME
    api_version: ClassVar[int] = API_VERSION

    def __init__(self, options: _GcpCloudRunOptions, table: PriceTable) -> None:
        """Look up the four prices.

        A failed look-up raises InputError naming the price table, and `from_options`
        adds the option's field to it.
        """
        self._options = options
        self._table = table
        region = options.region

        self._cpu = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, "cpu_request_based", region), table.path
        )
        self._memory = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, "memory_request_based", region), table.path
        )
        self._requests = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, "requests", region), table.path
        )
        self._egress = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, _EGRESS_DIMENSION, region), table.path
        )
        check_unit(self._cpu, ("vCPU-second",), table, _NAME)
        check_unit(self._memory, ("GB-second",), table, _NAME)
        check_unit(self._requests, ("request",), table, _NAME)
        check_unit(self._egress, tuple(BYTES_PER_DATA_UNIT), table, _NAME)

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], context: PricingContext
    ) -> GcpCloudRunProvider:
        """Build the provider from its options and the price table.

        The options are `region` (required), `vcpu` (vCPUs of an instance, default 1),
        `memory_gib` (memory of an instance in GiB, required) and `prices`, the path of
        the price table. Without `prices` the provider reads ``prices.parquet`` in the
        catalog folder; a relative path is taken from the folder of the system file.

        Raises
        ------
        InputError
            Naming the option, for an unknown, missing or invalid option, a region
            without Cloud Run prices (the message lists the regions that have them), and
            a price table that cannot be read or lacks a price the provider needs.
        """
        parsed = validate_options(_GcpCloudRunOptions, options, context, _NAME, _EXPECTED)
        path = prices_path(parsed.prices, context)
        table = load_table(path, context)

        regions = regions_with_prices(table, _PROVIDER, _SERVICE, "cpu_request_based")
        check_region(parsed.region, regions, "Cloud Run has no request-based prices", path, context)
        return build_provider(lambda: cls(parsed, table), "region", context)

    def usable_cores(self) -> float:
        """Return the vCPUs of an instance, the `vcpu` option."""
        return self._options.vcpu

    def billed_s(self, usage: Usage) -> np.ndarray:
        """Return the instance seconds billed for one run, shape (n,).

        Each invocation's duration is rounded up to a multiple of 100 ms. The duration is
        first rounded to the nearest nanosecond, so that floating-point error does not
        add an increment: 0.3 s stays 300 ms although ``0.1 + 0.2`` is a little above
        0.3.
        """
        nanoseconds = np.rint(np.asarray(usage.invocation_s, dtype=np.float64) * 1e9)
        increments = np.ceil(nanoseconds / _NANOSECONDS_PER_INCREMENT)
        return increments.sum(axis=1) * BILLING_INCREMENT_S

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return the cpu, memory, requests and egress costs of one run, in USD.

        Every line uses the first tier priced above zero and no free allowance.
        """
        billed_s = self.billed_s(usage)
        return {
            "cpu": self._cpu.first_tier_usd_per_unit * self._options.vcpu * billed_s,
            "memory": self._memory.first_tier_usd_per_unit * self._options.memory_gib * billed_s,
            "requests": self._requests.first_tier_usd_per_unit * as_float(usage.invocations),
            "egress": self._egress.first_tier_usd_per_unit * self._data_units(usage.bytes_out),
        }

    def per_run_cost_terms(self) -> PerRunCostTerms:
        """Return the cost of one run split by invocation, at the rates of `cost_lines_usd`.

        An invocation costs its duration rounded up to a multiple of 100 ms (after
        rounding to the nearest nanosecond, as `billed_s` does) at the vCPU and memory
        rates, plus the rate per request.
        """
        usd_per_cpu_s = self._cpu.first_tier_usd_per_unit * self._options.vcpu
        usd_per_memory_s = self._memory.first_tier_usd_per_unit * self._options.memory_gib

        def invocation_usd(duration_s: np.ndarray) -> np.ndarray:
            nanoseconds = np.rint(np.asarray(duration_s, dtype=np.float64) * 1e9)
            billed_s = np.ceil(nanoseconds / _NANOSECONDS_PER_INCREMENT) * BILLING_INCREMENT_S
            return usd_per_cpu_s * billed_s + usd_per_memory_s * billed_s

        return PerRunCostTerms(
            invocation_usd=invocation_usd,
            usd_per_invocation=self._requests.first_tier_usd_per_unit,
            usd_per_byte_in=0.0,
            usd_per_byte_out=self._egress.first_tier_usd_per_unit
            / BYTES_PER_DATA_UNIT[self._egress.unit],
        )

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the bill for `runs_per_month` runs, with tiers and free allowances.

        Each quantity (vCPU-seconds, GiB-seconds, requests and egress data) is summed
        over the month and priced by its tiers, the free allowance covering its first
        units.

        Raises
        ------
        InputError
            When a monthly quantity exceeds the last tier of the price table.
        """
        # NOTE: Google applies the free tier per billing account, so a system with
        # several Cloud Run devices gets each allowance once per device here.
        runs = float(runs_per_month)
        billed_s = runs * self.billed_s(usage)
        return (
            self._cpu.monthly_usd(self._options.vcpu * billed_s)
            + self._memory.monthly_usd(self._options.memory_gib * billed_s)
            + self._requests.monthly_usd(runs * as_float(usage.invocations))
            + self._egress.monthly_usd(runs * self._data_units(usage.bytes_out))
        )

    def describe(self) -> dict[str, Any]:
        """Return the options, the price table and every price row used, with its date."""
        prices = (self._cpu, self._memory, self._requests, self._egress)
        return {
            "provider": self.name,
            **self._options.model_dump(exclude={"prices"}),
            "billing_increment_s": BILLING_INCREMENT_S,
            "prices": str(self._table.path),
            "prices_sha256": self._table.sha256,
            "price_rows": [row.to_dict() for price in prices for row in price.tiers],
        }

    def _data_units(self, byte_counts: np.ndarray) -> np.ndarray:
        return data_units(byte_counts, self._egress.unit)
