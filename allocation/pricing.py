"""The pricing-provider contract and the registry that loads providers.

A provider turns the usage of one priced device into money. It is found by name in the
entry-point group ``allocation.pricing``; the built-in providers are registered there
exactly as a third-party package would register its own::

    [project.entry-points."allocation.pricing"]
    my-cloud = "my_package.pricing:MyCloudProvider"

The entry point names a class with a ``from_options`` constructor (see
`PricingProvider`). ``API_VERSION`` fences the contract: a provider declares the version
it implements and the registry rejects any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from allocation.errors import InputError, ProviderError

__all__ = [
    "API_VERSION",
    "ENTRY_POINT_GROUP",
    "PerRunCostTerms",
    "PricingContext",
    "PricingProvider",
    "Usage",
    "available_providers",
    "create_provider",
]

API_VERSION = 1
"""Version of the provider contract that this release calls."""

ENTRY_POINT_GROUP = "allocation.pricing"


@dataclass(frozen=True)
class Usage:
    """What one run of the flow uses on one priced device, for n assignments at once.

    Attributes
    ----------
    compute_s : ndarray, shape (n,)
        Sum of the times of the stages placed on the device, in seconds.
    invocations : ndarray of int64, shape (n,)
        Number of connected groups the device's stages form in the workflow graph.
    invocation_s : ndarray, shape (n, n_stages)
        Duration of each invocation in seconds. Column k contains the duration of the
        group whose first stage (in file order) is stage k, and zero where stage k
        starts no group on this device; each row sums to `compute_s`.
    bytes_in, bytes_out : ndarray of int64, shape (n,)
        Bytes received from and sent to other devices.
    """

    compute_s: np.ndarray
    invocations: np.ndarray
    invocation_s: np.ndarray
    bytes_in: np.ndarray
    bytes_out: np.ndarray

    def __len__(self) -> int:
        return int(self.compute_s.shape[0])


@dataclass(frozen=True)
class PricingContext:
    """Location of a provider's configuration, for error messages and catalog look-ups."""

    file: str
    field: str
    device_id: str
    catalog_dir: Path | None
    runs_per_month: int | None = None
    """The system's runs_per_month, for providers whose cost per run depends on it."""


@dataclass(frozen=True)
class PerRunCostTerms:
    """The cost of one run as a sum of per-invocation and per-byte terms.

    A provider whose `cost_lines_usd` adds up to ::

        sum(invocation_usd(d) + usd_per_invocation for d in invocation durations)
            + usd_per_byte_in * bytes_in + usd_per_byte_out * bytes_out

    can state these terms through an optional ``per_run_cost_terms()`` method. Methods
    that build the front without enumerating (`allocation.exact`) price partial
    assignments with them, after checking them against `cost_lines_usd`.

    Attributes
    ----------
    invocation_usd : callable
        Maps durations in seconds, ndarray of shape (n,), to the duration-dependent
        cost of one invocation each, shape (n,). It must be nondecreasing, and it
        includes any rounding of the billed time (up to 1 ms, a minimum, ...).
    usd_per_invocation : float
        Fixed cost of one invocation, whatever its duration.
    usd_per_byte_in, usd_per_byte_out : float
        Cost of one byte received from or sent to another device.
    """

    invocation_usd: Callable[[np.ndarray], np.ndarray]
    usd_per_invocation: float
    usd_per_byte_in: float
    usd_per_byte_out: float


@runtime_checkable
class PricingProvider(Protocol):
    """The contract every pricing provider implements.

    All array methods are vectorised over assignments, take a `Usage` of n rows and
    return arrays of shape (n,) in USD. They must not modify the usage arrays.
    """

    name: ClassVar[str]
    api_version: ClassVar[int]

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> PricingProvider:
        """Build the provider from the options written under a device's `pricing`.

        Raises `InputError` naming ``context.field`` for an invalid or unknown option.
        """
        ...

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return the cost of one run, split into billing lines (compute, requests, ...).

        The lines add up to the cost of one run at the first-tier rates, without free
        tiers.
        """
        ...

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the monthly bill for `runs_per_month` runs, with tiers and free tiers."""
        ...

    def describe(self) -> dict[str, Any]:
        """Return the options in force, JSON-serialisable, for run metadata and reports."""
        ...

    # Optional members, looked up with getattr: usable_cores() -> float, the cores a
    # device without `cores` gets, and per_run_cost_terms() -> PerRunCostTerms | None,
    # the cost of one run split by invocation (None when it does not split that way).
    # A class method refresh_prices(prices_path, sources, *, dry_run) ->
    # allocation.price_import.PriceRefresh updates the price table from the provider's
    # public source (see allocation.price_import.refresh_prices).


def available_providers() -> dict[str, Any]:
    """Return the registered providers by name (entry points, not yet loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def create_provider(
    name: str, options: Mapping[str, Any], context: PricingContext
) -> PricingProvider:
    """Load the provider registered as `name` and build it from `options`.

    Raises
    ------
    InputError
        For an unknown provider name (the message lists the installed ones) or invalid
        options.
    ProviderError
        When the provider cannot be imported or implements another API version.
    """
    registered = available_providers()
    if name not in registered:
        installed = ", ".join(sorted(registered)) or "none"
        raise InputError(
            f"unknown pricing provider {name!r}; installed providers: {installed}",
            file=context.file,
            field=f"{context.field}.provider",
        )
    try:
        provider_class = registered[name].load()
    except Exception as exc:
        raise ProviderError(
            f"pricing provider {name!r} could not be loaded from {registered[name].value}: {exc}"
        ) from exc

    version = getattr(provider_class, "api_version", None)
    if version != API_VERSION:
        raise ProviderError(
            f"pricing provider {name!r} implements API version {version!r}, but this "
            f"release of allocation calls version {API_VERSION}; install a matching version"
        )
    provider = provider_class.from_options(dict(options), context)
    if not isinstance(provider, PricingProvider):
        raise ProviderError(
            f"pricing provider {name!r} does not implement the PricingProvider protocol"
        )
    return provider


def check_cost_array(
    values: Any, n: int, *, provider: str, device_id: str, what: str
) -> np.ndarray:
    """Check an array returned by a provider: shape (n,), finite, not negative.

    Raises
    ------
    ProviderError
        Naming the provider and the device when the array is wrong.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProviderError(
            f"pricing provider {provider!r} (device {device_id!r}) returned {what} that is "
            f"not numeric: {exc}"
        ) from exc
    if array.shape != (n,):
        raise ProviderError(
            f"pricing provider {provider!r} (device {device_id!r}) returned {what} of shape "
            f"{array.shape}; expected ({n},)"
        )
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ProviderError(
            f"pricing provider {provider!r} (device {device_id!r}) returned {what} "
            f"{array[i]!r} for row {i}; costs must be finite and not negative"
        )
    return array
