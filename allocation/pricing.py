"""The pricing-provider contract and the registry that loads providers.

A provider turns the usage of one priced device into money. It is found by name in the
entry-point group ``allocation.pricing``; the built-in providers are registered there
exactly as a third-party package would register its own::

    [project.entry-points."allocation.pricing"]
    my-cloud = "my_package.pricing:MyCloudProvider"

The entry point names a class with a ``from_options`` constructor (see
`PricingProvider`). ``API_VERSION`` fences the contract: a provider declares the version
it implements and the registry rejects any other.

A provider is code from an installed package, so the tool trusts it not to be hostile,
but not to be correct. `load_provider` wraps it in a `GuardedProvider`, through which
the engine makes every call: each call runs under a time limit (`provider_timeout_s`),
an exception becomes a `ProviderError` that names the entry point and its package, and
every returned array is checked for shape, dtype and value.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, cast, runtime_checkable

import numpy as np

from allocation.errors import AllocationError, InputError, ProviderError

__all__ = [
    "API_VERSION",
    "DEFAULT_PROVIDER_TIMEOUT_S",
    "ENTRY_POINT_GROUP",
    "PROVIDER_TIMEOUT_ENV",
    "GuardedProvider",
    "PerRunCostTerms",
    "PricingContext",
    "PricingProvider",
    "ProviderOrigin",
    "Usage",
    "available_providers",
    "create_provider",
    "load_provider",
    "provider_time_limit",
    "provider_timeout_s",
]

API_VERSION = 1
"""Version of the provider contract that this release calls."""

ENTRY_POINT_GROUP = "allocation.pricing"

PROVIDER_TIMEOUT_ENV = "ALLOCATION_PROVIDER_TIMEOUT_S"
"""Environment variable with the time limit of one provider call, in seconds."""

DEFAULT_PROVIDER_TIMEOUT_S = 60.0
"""Time limit of one provider call, in seconds, unless the user sets another.

One call prices at most one chunk of assignments (2**20 rows). The built-in providers
price that many rows in under a second, so the limit only stops a provider that hangs.
"""

_T = TypeVar("_T")


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


@dataclass(frozen=True)
class ProviderOrigin:
    """The entry point a provider is loaded from, as error messages name it.

    Attributes
    ----------
    name : str
        Entry-point name, as written under a device's ``pricing.provider``.
    target : str
        What the entry point refers to, ``module:attribute``.
    package : str
        Name and version of the installed distribution that registers the entry
        point, or the top-level module when no distribution is known.
    """

    name: str
    target: str
    package: str

    @classmethod
    def of(cls, entry_point: EntryPoint) -> ProviderOrigin:
        """Describe where `entry_point` comes from."""
        distribution = getattr(entry_point, "dist", None)
        if distribution is not None:
            package = f"{distribution.name} {distribution.version}"
        else:
            package = entry_point.value.split(":")[0].split(".")[0]
        return cls(entry_point.name, entry_point.value, package)

    def __str__(self) -> str:
        return f"pricing provider {self.name!r} ({self.target} from package {self.package})"

    def fault_hint(self) -> str:
        """Return the sentence that puts the fault on the provider, not the input files."""
        return (
            "This is a fault of the provider, not of the input files: report it to the "
            f"maintainers of {self.package}, or uninstall that package"
        )


_time_limits_s: list[float] = []


@contextmanager
def provider_time_limit(timeout_s: float) -> Iterator[None]:
    """Set the time limit of provider calls, in seconds, for the duration of the block.

    It takes precedence over ``ALLOCATION_PROVIDER_TIMEOUT_S``; 0 turns the limit off.
    The limit applies to the providers loaded inside the block.

    Raises
    ------
    ValueError
        When `timeout_s` is negative or not finite.
    """
    if not math.isfinite(timeout_s) or timeout_s < 0:
        raise ValueError(f"timeout_s must be a finite number >= 0, got {timeout_s!r}")
    _time_limits_s.append(timeout_s)
    try:
        yield
    finally:
        _time_limits_s.pop()


def provider_timeout_s() -> float | None:
    """Return the time limit of one provider call in seconds, or None for no limit.

    The innermost `provider_time_limit` block wins, then the environment variable
    ``ALLOCATION_PROVIDER_TIMEOUT_S``, then `DEFAULT_PROVIDER_TIMEOUT_S`. A limit of 0
    means no limit.

    Raises
    ------
    InputError
        When the environment variable is set to anything but a number >= 0.
    """
    if _time_limits_s:
        value = _time_limits_s[-1]
    else:
        text = os.environ.get(PROVIDER_TIMEOUT_ENV, "").strip()
        try:
            value = float(text) if text else DEFAULT_PROVIDER_TIMEOUT_S
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise InputError(
                "expected a number of seconds >= 0 (0 turns the limit off)",
                file="environment",
                field=PROVIDER_TIMEOUT_ENV,
                value=text,
                has_value=True,
            )
    return None if value == 0 else value


def create_provider(
    name: str, options: Mapping[str, Any], context: PricingContext
) -> PricingProvider:
    """Load the provider registered as `name` and build it from `options`.

    The provider is returned as its own class builds it; the engine uses
    `load_provider`, which adds the checks of `GuardedProvider`.

    Raises
    ------
    InputError
        For an unknown provider name (the message lists the installed ones) or invalid
        options.
    ProviderError
        When the provider cannot be imported, implements another API version, fails or
        times out while it is built. The message names the entry point and its package.
    """
    provider, _ = _create(name, options, context, provider_timeout_s())
    return provider


def load_provider(
    name: str, options: Mapping[str, Any], context: PricingContext
) -> PricingProvider:
    """Load and build a provider as `create_provider` does, inside a `GuardedProvider`.

    The time limit of its calls is `provider_timeout_s` at the time of loading.

    Raises
    ------
    InputError, ProviderError
        As `create_provider`.
    """
    timeout_s = provider_timeout_s()
    provider, origin = _create(name, options, context, timeout_s)
    guarded = GuardedProvider(provider, origin, device_id=context.device_id, timeout_s=timeout_s)
    return cast(PricingProvider, guarded)


def _create(
    name: str, options: Mapping[str, Any], context: PricingContext, timeout_s: float | None
) -> tuple[PricingProvider, ProviderOrigin]:
    registered = available_providers()
    if name not in registered:
        installed = ", ".join(sorted(registered)) or "none"
        raise InputError(
            f"unknown pricing provider {name!r}; installed providers: {installed}",
            file=context.file,
            field=f"{context.field}.provider",
        )
    entry_point = registered[name]
    origin = ProviderOrigin.of(entry_point)
    provider_class = _call_provider(origin, "its import", entry_point.load, timeout_s)

    version = getattr(provider_class, "api_version", None)
    if version != API_VERSION:
        raise ProviderError(
            f"{origin} implements API version {version!r}, but this release of "
            f"allocation calls version {API_VERSION}; install a matching version"
        )
    provider = _call_provider(
        origin,
        "from_options",
        lambda: provider_class.from_options(dict(options), context),
        timeout_s,
    )
    if not isinstance(provider, PricingProvider):
        raise ProviderError(f"{origin} does not implement the PricingProvider protocol")
    return provider, origin


class _ProviderTimeout(ProviderError):
    """A provider call did not return within the time limit."""


class _CallTimedOut(Exception):
    """Raised by `_run_with_time_limit`; never seen outside this module."""


def _call_provider(
    origin: ProviderOrigin, what: str, function: Callable[[], _T], timeout_s: float | None
) -> _T:
    """Call provider code under the time limit and turn its failures into ProviderError.

    The tool's own errors pass unchanged, so that a provider can still reject its
    options with `InputError`.
    """
    try:
        return _run_with_time_limit(function, timeout_s)
    except AllocationError:
        raise
    except _CallTimedOut:
        raise _ProviderTimeout(
            f"{origin} did not return from {what} within {timeout_s:g} s. If it is only "
            f"slow, raise the limit with --provider-timeout-s or {PROVIDER_TIMEOUT_ENV}; "
            f"if it hangs, report it to the maintainers of {origin.package}"
        ) from None
    except (Exception, SystemExit) as exc:
        raise ProviderError(
            f"{origin} failed in {what} with {type(exc).__name__}: {exc}. {origin.fault_hint()}"
        ) from exc


def _run_with_time_limit(function: Callable[[], _T], timeout_s: float | None) -> _T:
    """Return ``function()``, run in a daemon thread, waiting at most `timeout_s` seconds.

    Python cannot stop a thread, so a call that times out keeps running in the
    background. Its thread is a daemon, so it does not keep the process alive.

    Raises
    ------
    _CallTimedOut
        When the call has not returned in time.
    """
    if timeout_s is None:
        return function()
    call = _Call(contextvars.copy_context(), function)
    worker = _workers.take()
    worker.jobs.put(call)
    if not call.finished.wait(timeout_s):
        # The worker stays busy with the call, so it is not returned for reuse.
        raise _CallTimedOut
    _workers.give_back(worker)
    if call.error is not None:
        raise call.error
    return cast(_T, call.result)


class _Call:
    """One function call handed to a `_CallWorker`, with its outcome."""

    def __init__(self, context: contextvars.Context, function: Callable[[], Any]) -> None:
        self.context = context
        self.function = function
        self.finished = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _CallWorker:
    """A daemon thread that runs `_Call` objects one after the other.

    Workers are kept between calls, because starting a thread costs more than handing
    a call to a waiting one, and the exact method makes hundreds of calls.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="allocation-provider-call", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call = self.jobs.get()
            try:
                call.result = call.context.run(call.function)
            except BaseException as exc:
                call.error = exc
            finally:
                call.finished.set()


class _IdleWorkers:
    """The workers waiting for a call, shared by every guarded provider."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every worker, as a child process created by fork has none of the threads."""
        self._lock = threading.Lock()
        self._idle: list[_CallWorker] = []

    def take(self) -> _CallWorker:
        """Return an idle worker, or a new one."""
        with self._lock:
            return self._idle.pop() if self._idle else _CallWorker()

    def give_back(self, worker: _CallWorker) -> None:
        """Keep `worker` for the next call."""
        with self._lock:
            self._idle.append(worker)


_workers = _IdleWorkers()
os.register_at_fork(after_in_child=_workers.reset)


class GuardedProvider:
    """A loaded provider behind a time limit and checks of everything it returns.

    Each method of the contract runs the provider's own method in a daemon thread and
    waits at most `timeout_s` seconds. An exception becomes a `ProviderError` that
    names the entry point, its package and the device; the tool's own errors pass
    unchanged. The provider receives read-only views of the usage arrays, so it cannot
    change the engine's data. Costs must be arrays of shape (n,) of real numbers,
    finite and not negative.

    After a call times out, every later call fails at once with the same error: the
    timed-out call may still be running, and a sweep would otherwise wait for the
    limit again in every chunk.

    Attributes
    ----------
    provider : PricingProvider
        The provider as its class built it.
    origin : ProviderOrigin
        Its entry point and package.
    device_id : str
        The device it prices, for messages.
    timeout_s : float or None
        Time limit of one call in seconds; None for no limit.
    """

    api_version: ClassVar[int] = API_VERSION

    def __init__(
        self,
        provider: PricingProvider,
        origin: ProviderOrigin,
        *,
        device_id: str,
        timeout_s: float | None,
    ) -> None:
        self.provider = provider
        self.origin = origin
        self.name = origin.name
        self.device_id = device_id
        self.timeout_s = timeout_s
        self._timed_out: str | None = None

    def __repr__(self) -> str:
        return f"GuardedProvider({self.provider!r}, device_id={self.device_id!r})"

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return the provider's cost lines, each checked to be costs of shape (n,)."""
        what = f"cost_lines_usd for device {self.device_id!r}"
        provider = self.provider
        view = _read_only(usage)
        lines = self._call(what, lambda: provider.cost_lines_usd(view))
        if not isinstance(lines, Mapping):
            raise ProviderError(
                f"{self.origin} returned {type(lines).__name__} from {what}; expected a "
                f"dict of cost lines. {self.origin.fault_hint()}"
            )
        checked = {}
        for line, values in lines.items():
            if not isinstance(line, str):
                raise ProviderError(
                    f"{self.origin} returned a cost line named {line!r} from {what}; "
                    f"expected text. {self.origin.fault_hint()}"
                )
            checked[line] = _checked_costs(
                values,
                (len(usage),),
                source=f"{self.origin} returned cost line {line!r} from {what}",
                hint=self.origin.fault_hint(),
            )
        return checked

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the provider's monthly bill, checked to be costs of shape (n,)."""
        what = f"monthly_cost_usd for device {self.device_id!r}"
        provider = self.provider
        view = _read_only(usage)
        values = self._call(what, lambda: provider.monthly_cost_usd(view, runs_per_month))
        return _checked_costs(
            values,
            (len(usage),),
            source=f"{self.origin} returned a monthly cost from {what}",
            hint=self.origin.fault_hint(),
        )

    def describe(self) -> dict[str, Any]:
        """Return the provider's description, checked to be a JSON object."""
        what = f"describe for device {self.device_id!r}"
        description = self._call(what, self.provider.describe)
        try:
            if not isinstance(description, dict):
                raise TypeError(f"it is {type(description).__name__}, not a dict")
            json.dumps(description, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ProviderError(
                f"{self.origin} returned a description from {what} that is not a JSON "
                f"object: {exc}. {self.origin.fault_hint()}"
            ) from exc
        return description

    def __getattr__(self, attribute: str) -> Any:
        # The optional members of the contract exist when the provider has them.
        if attribute == "usable_cores":
            return partial(self._usable_cores, getattr(self.provider, attribute))
        if attribute == "per_run_cost_terms":
            return partial(self._per_run_cost_terms, getattr(self.provider, attribute))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")

    def _usable_cores(self, method: Callable[[], Any]) -> float:
        what = f"usable_cores for device {self.device_id!r}"
        cores = self._call(what, method)
        if not _is_real(cores) or not math.isfinite(cores) or cores <= 0:
            raise ProviderError(
                f"{self.origin} returned {cores!r} from {what}; expected a number of cores "
                f"> 0. {self.origin.fault_hint()}"
            )
        return float(cores)

    def _per_run_cost_terms(self, method: Callable[[], Any]) -> PerRunCostTerms | None:
        what = f"per_run_cost_terms for device {self.device_id!r}"
        terms = self._call(what, method)
        if terms is None:
            return None
        if not isinstance(terms, PerRunCostTerms):
            raise ProviderError(
                f"{self.origin} returned {type(terms).__name__} from {what}; expected "
                f"PerRunCostTerms or None. {self.origin.fault_hint()}"
            )
        for field in ("usd_per_invocation", "usd_per_byte_in", "usd_per_byte_out"):
            rate = getattr(terms, field)
            if not _is_real(rate) or not math.isfinite(rate) or rate < 0:
                raise ProviderError(
                    f"{self.origin} returned {field} = {rate!r} from {what}; expected a "
                    f"finite number >= 0. {self.origin.fault_hint()}"
                )
        return replace(terms, invocation_usd=partial(self._invocation_usd, terms.invocation_usd))

    def _invocation_usd(
        self, function: Callable[[np.ndarray], np.ndarray], duration_s: np.ndarray
    ) -> np.ndarray:
        what = f"per_run_cost_terms().invocation_usd for device {self.device_id!r}"
        view = np.asarray(duration_s).view()
        view.flags.writeable = False
        values = self._call(what, lambda: function(view))
        return _checked_costs(
            values,
            view.shape,
            source=f"{self.origin} returned invocation costs from {what}",
            hint=self.origin.fault_hint(),
        )

    def _call(self, what: str, function: Callable[[], _T]) -> _T:
        if self._timed_out is not None:
            raise ProviderError(self._timed_out)
        try:
            return _call_provider(self.origin, what, function, self.timeout_s)
        except _ProviderTimeout as exc:
            self._timed_out = str(exc)
            raise


def check_cost_array(
    values: Any, n: int, *, provider: str, device_id: str, what: str
) -> np.ndarray:
    """Check an array returned by a provider: shape (n,), real numbers, finite, not negative.

    Returns the values as float64.

    Raises
    ------
    ProviderError
        Naming the provider and the device when the array is wrong.
    """
    return _checked_costs(
        values,
        (n,),
        source=f"pricing provider {provider!r} (device {device_id!r}) returned {what}",
        hint="",
    )


def _checked_costs(values: Any, shape: tuple[int, ...], *, source: str, hint: str) -> np.ndarray:
    """Return `values` as float64 after checking shape, dtype and values.

    `source` starts the error message ("pricing provider ... returned ..."), `hint`
    ends it.
    """
    suffix = f". {hint}" if hint else ""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ProviderError(f"{source} that is not an array: {exc}{suffix}") from exc
    if array.dtype.kind not in "iuf":
        raise ProviderError(
            f"{source} of dtype {array.dtype}; expected an array of real numbers "
            f"(float or integer){suffix}"
        )
    if array.shape != shape:
        raise ProviderError(
            f"{source} of shape {array.shape}; expected {shape}, one value per row{suffix}"
        )
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ProviderError(
            f"{source} with {float(array[i])!r} in row {i}; costs must be finite and not "
            f"negative{suffix}"
        )
    return array


def _read_only(usage: Usage) -> Usage:
    """Return a `Usage` of read-only views of the same arrays."""
    views = {}
    for field in fields(Usage):
        view = np.asarray(getattr(usage, field.name)).view()
        view.flags.writeable = False
        views[field.name] = view
    return Usage(**views)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
