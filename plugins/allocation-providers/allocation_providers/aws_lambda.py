"""The `aws-lambda` pricing provider: AWS Lambda on-demand prices from the price table.

One run of the flow on a Lambda device costs four billing lines:

- ``compute``: for every invocation, its duration rounded up to a whole millisecond,
  times the configured memory in GB (``memory_mb / 1024``, as AWS bills GB-seconds),
  times the first-tier rate per GB-second of the region and architecture;
- ``requests``: invocations times the rate per request;
- ``egress``: bytes sent to other devices, in the table's data unit, times the rate of
  the region's first internet-egress tier priced above zero (a first tier at $0 is a
  free allowance);
- ``ingress``: bytes received, times the rate of internet ingress (0 in the shipped
  table).

A month multiplies the per-run quantities by ``runs_per_month`` and prices the monthly
totals with the table's tiers and free allowances (see `allocation.prices.TieredPrice`).
Rates and tiers come from ``prices.parquet`` (`allocation.prices`), so every figure has
a source and a date.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from allocation.price_import import PriceRefresh, aws_price_refresh
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

__all__ = ["AwsLambdaProvider"]

MB_PER_GB = 1024
"""Megabytes of configured memory in one GB of a GB-second, as AWS Lambda bills it."""

MB_PER_VCPU = 1769
"""Configured memory that buys the equivalent of one vCPU."""

_PROVIDER = "aws"
_SERVICE = "lambda"
_NAME = "aws-lambda"
_DATA_SERVICE = "data-transfer"


class _AwsLambdaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    region: str = Field(min_length=1)
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    memory_mb: int = Field(ge=128, le=10240)
    prices: str | None = Field(default=None, min_length=1)


_EXPECTED = {
    "region": "an AWS region id with Lambda prices in the price table, e.g. us-east-1",
    "architecture": "x86_64 or arm64",
    "memory_mb": "a whole number of MB from 128 to 10240",
    "prices": "the path of a price table (prices.parquet)",
}


class AwsLambdaProvider:
    """AWS Lambda on-demand: per-millisecond duration by memory, requests and egress."""

    name: ClassVar[str] = "aws-lambda"
    api_version: ClassVar[int] = API_VERSION

    def __init__(self, options: _AwsLambdaOptions, table: PriceTable) -> None:
        """Look up the four prices.

        A failed look-up raises InputError naming the price table, and `from_options`
        adds the option's field to it.
        """
        self._options = options
        self._table = table
        region, architecture = options.region, options.architecture

        self._duration = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, "duration", region, architecture), table.path
        )
        self._requests = TieredPrice(
            table.rows(_PROVIDER, _SERVICE, "requests", region, architecture), table.path
        )
        self._egress = TieredPrice(
            table.rows(_PROVIDER, _DATA_SERVICE, "egress_internet", region), table.path
        )
        self._ingress = TieredPrice(
            table.rows(_PROVIDER, _DATA_SERVICE, "ingress_internet", region), table.path
        )
        self._check_units()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> AwsLambdaProvider:
        """Build the provider from its options and the price table.

        The options are `region` (required), `architecture` (``x86_64`` or ``arm64``,
        default ``x86_64``), `memory_mb` (required, 128 to 10240) and `prices`, the path
        of the price table. Without `prices` the provider reads ``prices.parquet`` in the
        catalog folder. A relative `prices` path is taken from the folder of the system
        file, or from the working directory when the system file is not on disk.

        Raises
        ------
        InputError
            Naming the option, for an unknown or missing option or a value out of range.
            Also for a region without Lambda prices, where the message lists the regions
            that have them, and for a price table that cannot be read or lacks a price
            the provider needs.
        """
        parsed = validate_options(_AwsLambdaOptions, options, context, _NAME, _EXPECTED)
        path = prices_path(parsed.prices, context)
        table = load_table(path, context)

        regions = regions_with_prices(table, _PROVIDER, _SERVICE, "duration", parsed.architecture)
        check_region(
            parsed.region,
            regions,
            f"AWS Lambda {parsed.architecture} has no prices",
            path,
            context,
        )
        return build_provider(lambda: cls(parsed, table), "region or architecture", context)

    @classmethod
    def refresh_prices(
        cls, prices_path: Path, sources: Sequence[str | Path], *, dry_run: bool = False
    ) -> PriceRefresh:
        """Replace the table's Lambda and data-transfer prices with those of AWS offer files.

        `sources` are AWSLambda and AWSDataTransfer offer files of the AWS Price List, as
        paths or as http(s) URLs; only a URL given here is downloaded.
        `allocation.price_import.import_aws_offer` maps and checks the rows.
        """
        return aws_price_refresh(cls.name, prices_path, sources, dry_run=dry_run)

    @property
    def memory_gb(self) -> float:
        """Configured memory in the GB of a GB-second (1024 MB)."""
        return self._options.memory_mb / MB_PER_GB

    def usable_cores(self) -> float:
        """Return the vCPUs that the memory setting buys: ``memory_mb / 1769``.

        AWS Lambda allocates CPU power in proportion to the configured memory, and a
        function with 1,769 MB has the equivalent of one vCPU, that is one vCPU-second
        of credit per second (AWS Lambda Developer Guide, "Configuring Lambda function
        memory", docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). The
        result is that CPU time, not the count of vCPUs the function's operating system
        shows: 1.16 at 2,048 MB and 5.79 at the maximum of 10,240 MB.
        """
        return self._options.memory_mb / MB_PER_VCPU

    def billed_gb_s(self, usage: Usage) -> np.ndarray:
        """Return the GB-seconds billed for one run, shape (n,).

        Each invocation's duration is rounded up to a whole millisecond. The duration is
        first rounded to the nearest nanosecond, so that floating-point error does not
        add a millisecond: 0.067 s stays 67 ms although ``0.067 * 1e9 / 1e6`` is a little
        above 67. So 3.000001 ms becomes 4 ms, but 3.0000001 ms, less than half a
        nanosecond over, stays 3 ms.
        """
        nanoseconds = np.rint(np.asarray(usage.invocation_s, dtype=np.float64) * 1e9)
        billed_ms = np.ceil(nanoseconds / 1e6)
        return billed_ms.sum(axis=1) / 1000.0 * self.memory_gb

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return the compute, requests, egress and ingress costs of one run, in USD.

        Every line uses the first tier priced above zero and no free allowance.
        """
        return {
            "compute": self._duration.first_tier_usd_per_unit * self.billed_gb_s(usage),
            "requests": self._requests.first_tier_usd_per_unit * as_float(usage.invocations),
            "egress": self._egress.first_tier_usd_per_unit * self._data_units(usage.bytes_out),
            "ingress": self._ingress.first_tier_usd_per_unit * self._data_units(usage.bytes_in),
        }

    def per_run_cost_terms(self) -> PerRunCostTerms:
        """Return the cost of one run split by invocation, at the rates of `cost_lines_usd`.

        An invocation costs its duration rounded up to a whole millisecond (after
        rounding to the nearest nanosecond, as `billed_gb_s` does) times the memory in GB
        and the rate per GB-second, plus the rate per request.
        """
        usd_per_gb_s = self._duration.first_tier_usd_per_unit
        memory_gb = self.memory_gb

        def invocation_usd(duration_s: np.ndarray) -> np.ndarray:
            nanoseconds = np.rint(np.asarray(duration_s, dtype=np.float64) * 1e9)
            return usd_per_gb_s * (np.ceil(nanoseconds / 1e6) / 1000.0 * memory_gb)

        bytes_per_unit = BYTES_PER_DATA_UNIT[self._egress.unit]
        return PerRunCostTerms(
            invocation_usd=invocation_usd,
            usd_per_invocation=self._requests.first_tier_usd_per_unit,
            usd_per_byte_in=self._ingress.first_tier_usd_per_unit / bytes_per_unit,
            usd_per_byte_out=self._egress.first_tier_usd_per_unit / bytes_per_unit,
        )

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the bill for `runs_per_month` runs, with tiers and free allowances.

        Each quantity (GB-seconds, requests, egress and ingress data) is summed over the
        month and priced by its tiers, the free allowance covering its first units.

        Raises
        ------
        InputError
            When a monthly quantity exceeds the last tier of the price table.
        """
        # NOTE: AWS applies the free allowances and the tiers per account (duration per
        # architecture and region, the free tiers across them), so a system with several
        # Lambda devices gets each allowance once per device here.
        runs = float(runs_per_month)
        return (
            self._duration.monthly_usd(runs * self.billed_gb_s(usage))
            + self._requests.monthly_usd(runs * as_float(usage.invocations))
            + self._egress.monthly_usd(runs * self._data_units(usage.bytes_out))
            + self._ingress.monthly_usd(runs * self._data_units(usage.bytes_in))
        )

    def describe(self) -> dict[str, Any]:
        """Return the options, the price table and every price row used, with its date."""
        prices = (self._duration, self._requests, self._egress, self._ingress)
        return {
            "provider": self.name,
            **self._options.model_dump(exclude={"prices"}),
            "usable_cores": self.usable_cores(),
            "prices": str(self._table.path),
            "prices_sha256": self._table.sha256,
            "price_rows": [row.to_dict() for price in prices for row in price.tiers],
        }

    def _data_units(self, byte_counts: np.ndarray) -> np.ndarray:
        return data_units(byte_counts, self._egress.unit)

    def _check_units(self) -> None:
        expected = (
            (self._duration, ("GB-second",)),
            (self._requests, ("request",)),
            (self._egress, tuple(BYTES_PER_DATA_UNIT)),
            (self._ingress, (self._egress.unit,)),
        )
        for price, units in expected:
            check_unit(price, units, self._table, _NAME)
