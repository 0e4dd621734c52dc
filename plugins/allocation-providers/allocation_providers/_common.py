"""Helpers shared by the providers that price from the price table.

Every helper raises InputError with the message and field path that the providers'
tests check, so a change to a message here changes all four providers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from allocation.errors import InputError
from allocation.prices import (
    ALL_REGIONS,
    BYTES_PER_DATA_UNIT,
    PriceTable,
    TieredPrice,
    load_price_table,
)
from allocation.pricing import PricingContext

PRICES_FILE = "prices.parquet"
"""Price table looked up in the catalog folder when the `prices` option is not set."""

OptionsT = TypeVar("OptionsT", bound=BaseModel)
ProviderT = TypeVar("ProviderT")


def validate_options(
    model: type[OptionsT],
    options: Mapping[str, Any],
    context: PricingContext,
    provider_name: str,
    expected: Mapping[str, str],
) -> OptionsT:
    """Parse `options` with `model`, turning the first validation error into InputError.

    `expected` describes the valid values of each option for the messages, and must
    contain every required option.
    """
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
    name = ".".join(str(part) for part in error["loc"])
    valid = ", ".join(model.model_fields)
    if error["type"] == "extra_forbidden":
        raise InputError(
            f"unknown option {name!r} of the {provider_name} provider; valid options: {valid}",
            file=context.file,
            field=f"{context.field}.{name}",
        )
    if error["type"] == "missing":
        raise InputError(
            f"missing option {name!r} of the {provider_name} provider: {expected[name]}",
            file=context.file,
            field=f"{context.field}.{name}",
        )
    raise InputError(
        f"expected {expected.get(name, error['msg'])}",
        file=context.file,
        field=f"{context.field}.{name}",
        value=error.get("input"),
        has_value=True,
    )


def prices_path(prices: str | None, context: PricingContext) -> Path:
    """Resolve the `prices` option, or the catalog's price table when it is not set.

    A relative path is taken from the folder of the system file, or from the working
    directory when the system file is not on disk.
    """
    if prices is not None:
        path = Path(prices).expanduser()
        system_file = Path(context.file)
        if not path.is_absolute() and system_file.is_file():
            path = system_file.parent / path
        return path
    if context.catalog_dir is None:
        raise InputError(
            "no price table: set the `prices` option, or run with a catalog folder that "
            f"contains {PRICES_FILE}",
            file=context.file,
            field=f"{context.field}.prices",
        )
    return Path(context.catalog_dir) / PRICES_FILE


def load_table(path: Path, context: PricingContext) -> PriceTable:
    """Load the price table, reporting a failure on the `prices` option."""
    try:
        return load_price_table(path)
    except InputError as exc:
        raise InputError(str(exc), file=context.file, field=f"{context.field}.prices") from exc


def regions_with_prices(
    table: PriceTable, provider: str, service: str, dimension: str, architecture: str | None = None
) -> list[str]:
    """Return the regions with rows for a price, without the ``all`` region."""
    return [
        region
        for region in table.regions(provider, service, dimension, architecture)
        if region != ALL_REGIONS
    ]


def check_region(
    region: str, regions: list[str], missing: str, path: Path, context: PricingContext
) -> None:
    """Raise InputError on the `region` option when `region` is not in `regions`.

    `missing` starts the message and names what has no prices, e.g. "AWS Lambda arm64 has
    no prices".
    """
    if region not in regions:
        raise InputError(
            f"{missing} in {region!r} in "
            f"{path}; regions with prices: {', '.join(regions) or 'none'}",
            file=context.file,
            field=f"{context.field}.region",
        )


def build_provider(
    build: Callable[[], ProviderT], choices: str, context: PricingContext
) -> ProviderT:
    """Call `build`, and report a failed price look-up on the `region` option.

    `choices` names the options the user can change, e.g. "region or architecture".
    """
    try:
        return build()
    except InputError as exc:
        raise InputError(
            f"{exc}. Choose another {choices}, or add the price to the table",
            file=context.file,
            field=f"{context.field}.region",
        ) from exc


def check_unit(
    price: TieredPrice, units: tuple[str, ...], table: PriceTable, provider_name: str
) -> None:
    """Raise InputError naming the price table when `price` is not in one of `units`."""
    if price.unit not in units:
        row = price.tiers[0]
        raise InputError(
            f"has {row.service} {row.dimension} in {row.unit}, but the {provider_name} provider "
            f"needs {' or '.join(units)}",
            file=table.path,
        )


def data_units(byte_counts: np.ndarray, unit: str) -> np.ndarray:
    """Convert byte counts to the data `unit` of a price table (``GB`` or ``GiB``)."""
    return as_float(byte_counts) / BYTES_PER_DATA_UNIT[unit]


def as_float(values: np.ndarray) -> np.ndarray:
    """Return `values` as a float64 array."""
    return np.asarray(values, dtype=np.float64)
