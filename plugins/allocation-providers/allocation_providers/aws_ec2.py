"""The `aws-ec2` pricing provider: Amazon EC2 on-demand Linux instances from the price table.

An EC2 instance is paid by the hour whether it computes or waits, so what one run costs
depends on how the instance is shared. The provider has two billing models, chosen by
the ``billing`` option:

``busy_time`` (default)
    The instance is paid for the time it is busy divided by the utilisation achieved.
    One run that keeps it busy for ``compute_s`` seconds costs
    ``compute_s / utilisation / 3600`` instance-hours at the hourly rate. With
    ``utilisation: 1.0`` the instance is never idle; with ``0.5`` every busy second
    carries one idle second. This is an estimate, not AWS's billing rule: AWS bills an
    instance for the whole time it runs, whatever its load.

``fleet``
    A fixed fleet of ``instances`` instances runs all month:
    ``instances × hourly rate × 730 h`` a month. 730 h is a convention, the average
    month of a 365-day year (8,760 h / 12). One run costs that amount divided by the
    ``runs_per_month`` option. An assignment that places no stage on the device needs
    no fleet and costs nothing, and so does a month of zero runs.

Both models add an ``egress`` line: the bytes sent to other devices times the region's
first internet-egress tier priced above zero, as the `aws-lambda` provider charges.
Data received is not billed, because AWS charges nothing for internet ingress (the
price table's ``ingress_internet`` price is 0).

A month prices the monthly totals with the table's tiers and free allowances (see
`allocation.prices.TieredPrice`); the EC2 rows have one tier and no free allowance.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from allocation.errors import InputError
from allocation.prices import ALL_REGIONS, BYTES_PER_DATA_UNIT, PriceTable, TieredPrice
from allocation.pricing import API_VERSION, PerRunCostTerms, PricingContext, Usage
from allocation_providers._common import (
    PRICES_FILE as PRICES_FILE,
)
from allocation_providers._common import (
    build_provider,
    check_unit,
    data_units,
    load_table,
    prices_path,
    validate_options,
)

__all__ = ["AwsEc2Provider"]

HOURS_PER_MONTH = 730.0
"""Hours in the month of a fleet: 8,760 h / 12, the average month of a 365-day year."""

SECONDS_PER_HOUR = 3600.0

_PROVIDER = "aws"
_DIMENSION = "instance"
_DATA_SERVICE = "data-transfer"
_NAME = "aws-ec2"


class _AwsEc2Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    region: str = Field(min_length=1)
    instance_type: str = Field(min_length=1)
    billing: Literal["busy_time", "fleet"] = "busy_time"
    utilisation: float = Field(default=1.0, gt=0, le=1)
    instances: int = Field(default=1, ge=1)
    runs_per_month: int | None = Field(default=None, ge=1)
    prices: str | None = Field(default=None, min_length=1)


_EXPECTED = {
    "region": "an AWS region id with EC2 prices in the price table, e.g. us-east-1",
    "instance_type": "an EC2 instance type with prices in the price table, e.g. t3.medium",
    "billing": "busy_time or fleet",
    "utilisation": "a number greater than 0 and at most 1",
    "instances": "a whole number of instances >= 1",
    "runs_per_month": "a whole number of runs a month >= 1",
    "prices": "the path of a price table (prices.parquet)",
}

_FLEET_ONLY = ("instances", "runs_per_month")
_BUSY_TIME_ONLY = ("utilisation",)


class AwsEc2Provider:
    """Amazon EC2 on-demand instances, billed by busy time or as a fixed fleet."""

    name: ClassVar[str] = _NAME
    api_version: ClassVar[int] = API_VERSION

    def __init__(self, options: _AwsEc2Options, table: PriceTable) -> None:
        """Look up the hourly and egress prices.

        A failed look-up raises InputError naming the price table, and `from_options`
        adds the option's field to it.
        """
        self._options = options
        self._table = table
        service = f"ec2:{options.instance_type}"

        self._hourly = TieredPrice(
            table.rows(_PROVIDER, service, _DIMENSION, options.region), table.path
        )
        self._egress = TieredPrice(
            table.rows(_PROVIDER, _DATA_SERVICE, "egress_internet", options.region), table.path
        )
        check_unit(self._hourly, ("hour",), table, _NAME)
        check_unit(self._egress, tuple(BYTES_PER_DATA_UNIT), table, _NAME)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> AwsEc2Provider:
        """Build the provider from its options and the price table.

        `region` and `instance_type` are required. `billing` is ``busy_time`` (the
        default) or ``fleet``. `utilisation` applies to busy_time: greater than 0 and at
        most 1, default 1.0. `instances` (default 1) and `runs_per_month` (default: the
        system's) apply to fleet. `prices` is the path of the price table. Without it
        the provider reads ``prices.parquet`` in the catalog folder, and a relative path
        is taken from the folder of the system file.

        Raises
        ------
        InputError
            Naming the option, for an unknown, missing or invalid option, an option of
            the other billing model, fleet billing without `runs_per_month`, an
            instance type or region without prices (the message lists those with
            prices), and a price table that cannot be read or lacks a price the
            provider needs.
        """
        parsed = validate_options(_AwsEc2Options, options, context, _NAME, _EXPECTED)
        if (
            parsed.billing == "fleet"
            and parsed.runs_per_month is None
            and context.runs_per_month is not None
        ):
            # The system's runs_per_month shares the fleet's cost unless the option is set.
            parsed = parsed.model_copy(update={"runs_per_month": context.runs_per_month})
        _check_billing_options(parsed, context)
        path = prices_path(parsed.prices, context)
        table = load_table(path, context)

        _check_instance_and_region(parsed, table, path, context)
        return build_provider(lambda: cls(parsed, table), "region or instance type", context)

    @property
    def fleet_usd_per_month(self) -> float:
        """Monthly cost of the fleet at the first-tier hourly rate, or 0 with busy_time billing."""
        if self._options.billing != "fleet":
            return 0.0
        return self._hourly.first_tier_usd_per_unit * self._fleet_hours_per_month

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return the compute and egress costs of one run, in USD.

        Every line uses the first tier priced above zero and no free allowance.
        """
        if self._options.billing == "fleet":
            # NOTE: the provider does not check that the fleet has the capacity for
            # runs_per_month runs.
            assert self._options.runs_per_month is not None  # checked by from_options
            share_usd = self.fleet_usd_per_month / self._options.runs_per_month
            compute = np.where(_uses_device(usage), share_usd, 0.0)
        else:
            compute = self._hourly.first_tier_usd_per_unit * self.busy_hours(usage)
        return {
            "compute": compute,
            "egress": self._egress.first_tier_usd_per_unit * self._data_units(usage.bytes_out),
        }

    def per_run_cost_terms(self) -> PerRunCostTerms | None:
        """Return the cost of one run split by invocation, or None with fleet billing.

        With busy_time billing an invocation costs its duration in instance-hours
        (`busy_hours`) at the hourly rate. A fleet's share is charged once for any use
        of the device, so it is not a sum over invocations.
        """
        if self._options.billing == "fleet":
            return None
        usd_per_hour = self._hourly.first_tier_usd_per_unit
        utilisation = self._options.utilisation

        def invocation_usd(duration_s: np.ndarray) -> np.ndarray:
            hours = np.asarray(duration_s, dtype=np.float64) / utilisation / SECONDS_PER_HOUR
            return usd_per_hour * hours

        return PerRunCostTerms(
            invocation_usd=invocation_usd,
            usd_per_invocation=0.0,
            usd_per_byte_in=0.0,
            usd_per_byte_out=self._egress.first_tier_usd_per_unit
            / BYTES_PER_DATA_UNIT[self._egress.unit],
        )

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the bill for `runs_per_month` runs, with tiers and free allowances.

        Busy time and egress are summed over the month and priced by their tiers. A
        fleet costs its fixed monthly amount in every assignment that places a stage on
        the device, and nothing when `runs_per_month` is 0.

        Raises
        ------
        InputError
            When a monthly quantity exceeds the last tier of the price table.
        """
        runs = float(runs_per_month)
        if self._options.billing == "fleet":
            hours = np.where(_uses_device(usage) & (runs > 0), self._fleet_hours_per_month, 0.0)
        else:
            hours = runs * self.busy_hours(usage)
        return self._hourly.monthly_usd(hours) + self._egress.monthly_usd(
            runs * self._data_units(usage.bytes_out)
        )

    def busy_hours(self, usage: Usage) -> np.ndarray:
        """Return the instance-hours that busy_time billing charges for one run, shape (n,).

        That is ``compute_s / utilisation / 3600``: the busy time, stretched by the idle
        time that a utilisation below 1 brings with it.
        """
        compute_s = np.asarray(usage.compute_s, dtype=np.float64)
        return compute_s / self._options.utilisation / SECONDS_PER_HOUR

    def describe(self) -> dict[str, Any]:
        """Return the options, the fleet's monthly cost, the price table and its rows used."""
        billing_options = _BUSY_TIME_ONLY if self._options.billing == "fleet" else _FLEET_ONLY
        description: dict[str, Any] = {
            "provider": self.name,
            **self._options.model_dump(exclude={"prices", *billing_options}),
        }
        if self._options.billing == "fleet":
            description["hours_per_month"] = HOURS_PER_MONTH
            description["fleet_usd_per_month"] = self.fleet_usd_per_month
        description["prices"] = str(self._table.path)
        description["prices_sha256"] = self._table.sha256
        description["price_rows"] = [
            row.to_dict() for price in (self._hourly, self._egress) for row in price.tiers
        ]
        return description

    @property
    def _fleet_hours_per_month(self) -> float:
        return self._options.instances * HOURS_PER_MONTH

    def _data_units(self, byte_counts: np.ndarray) -> np.ndarray:
        return data_units(byte_counts, self._egress.unit)


def _uses_device(usage: Usage) -> np.ndarray:
    """Return True where the assignment places at least one stage on the device."""
    return np.asarray(usage.invocations) > 0


def _check_billing_options(options: _AwsEc2Options, context: PricingContext) -> None:
    if options.billing == "fleet":
        if options.runs_per_month is None:
            raise InputError(
                "fleet billing needs runs_per_month: the runs a month that share the "
                "fleet's cost. Set runs_per_month in the system file or in the options",
                file=context.file,
                field=f"{context.field}.runs_per_month",
            )
        misplaced = [name for name in _BUSY_TIME_ONLY if name in options.model_fields_set]
    else:
        misplaced = [name for name in _FLEET_ONLY if name in options.model_fields_set]
    if misplaced:
        name = misplaced[0]
        other = "busy_time" if options.billing == "fleet" else "fleet"
        raise InputError(
            f"option {name!r} applies only to billing {other}, but billing is "
            f"{options.billing}; remove it or set billing to {other}",
            file=context.file,
            field=f"{context.field}.{name}",
        )


def _check_instance_and_region(
    options: _AwsEc2Options, table: PriceTable, prices_path: Path, context: PricingContext
) -> None:
    instance_types = sorted(
        {
            entry.service.removeprefix("ec2:")
            for entry in table.entries
            if entry.provider == _PROVIDER
            and entry.service.startswith("ec2:")
            and entry.dimension == _DIMENSION
        }
    )
    if options.instance_type not in instance_types:
        raise InputError(
            f"EC2 instance type {options.instance_type!r} has no prices in {prices_path}; "
            f"instance types with prices: {', '.join(instance_types) or 'none'}",
            file=context.file,
            field=f"{context.field}.instance_type",
        )

    regions = table.regions(_PROVIDER, f"ec2:{options.instance_type}", _DIMENSION)
    if options.region not in regions and ALL_REGIONS not in regions:
        raise InputError(
            f"EC2 {options.instance_type} has no prices in {options.region!r} in "
            f"{prices_path}; regions with prices: {', '.join(regions) or 'none'}",
            file=context.file,
            field=f"{context.field}.region",
        )
