"""The `flat` pricing provider: constant rates, no tiers, no free allowance.

It prices one run as::

    usd_per_compute_s * compute_s + usd_per_invocation * invocations
        + usd_per_gb_in * bytes_in / 1e9 + usd_per_gb_out * bytes_out / 1e9

and a month as that times `runs_per_month`. GB here is 10^9 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from allocation.errors import InputError
from allocation.pricing import API_VERSION, PerRunCostTerms, PricingContext, Usage

__all__ = ["FlatProvider"]

_BYTES_PER_GB = 1e9


class _FlatOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    usd_per_compute_s: float = Field(default=0.0, ge=0)
    usd_per_invocation: float = Field(default=0.0, ge=0)
    usd_per_gb_in: float = Field(default=0.0, ge=0)
    usd_per_gb_out: float = Field(default=0.0, ge=0)


class FlatProvider:
    """Constant per-second, per-invocation and per-GB rates; for quick what-ifs."""

    name: ClassVar[str] = "flat"
    api_version: ClassVar[int] = API_VERSION

    def __init__(self, options: _FlatOptions) -> None:
        self._options = options

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> FlatProvider:
        """Build the provider from its rates.

        The options are `usd_per_compute_s`, `usd_per_invocation`, `usd_per_gb_in` and
        `usd_per_gb_out`, each >= 0 and 0 when omitted.
        """
        try:
            return cls(_FlatOptions.model_validate(dict(options)))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                valid = ", ".join(_FlatOptions.model_fields)
                raise InputError(
                    f"unknown option {name!r} of the flat provider; valid options: {valid}",
                    file=context.file,
                    field=f"{context.field}.{name}",
                ) from None
            raise InputError(
                "expected a finite number >= 0 (USD)",
                file=context.file,
                field=f"{context.field}.{name}",
                value=error.get("input"),
                has_value=True,
            ) from None

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return compute, requests, ingress and egress costs of one run, in USD."""
        o = self._options
        return {
            "compute": o.usd_per_compute_s * usage.compute_s,
            "requests": o.usd_per_invocation * usage.invocations,
            "data_in": o.usd_per_gb_in * (usage.bytes_in / _BYTES_PER_GB),
            "data_out": o.usd_per_gb_out * (usage.bytes_out / _BYTES_PER_GB),
        }

    def per_run_cost_terms(self) -> PerRunCostTerms:
        """Return the cost of one run split by invocation: linear in its duration."""
        o = self._options
        return PerRunCostTerms(
            invocation_usd=lambda duration_s: o.usd_per_compute_s * np.asarray(duration_s),
            usd_per_invocation=o.usd_per_invocation,
            usd_per_byte_in=o.usd_per_gb_in / _BYTES_PER_GB,
            usd_per_byte_out=o.usd_per_gb_out / _BYTES_PER_GB,
        )

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the cost of one run times `runs_per_month` (flat rates have no tiers)."""
        lines = self.cost_lines_usd(usage)
        return runs_per_month * sum(lines.values(), np.zeros(len(usage)))

    def describe(self) -> dict[str, Any]:
        """Return the rates in force."""
        return {"provider": self.name, **self._options.model_dump()}
