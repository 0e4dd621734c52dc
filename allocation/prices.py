"""The price table (`prices.parquet`) that pricing providers read, and tiered prices.

The table is long: one row per price and tier, where a *price* is the group of rows that
share provider, service, dimension, region and architecture (see
`allocation.price_build` and ``catalogs/README.md``). `load_price_table` reads and
checks a file, `PriceTable.rows` finds the tiers of one price and `TieredPrice` turns
them into money for a month of usage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from allocation.errors import InputError
from allocation.loading import MAX_CATALOG_FILE_BYTES, read_input_bytes

__all__ = [
    "ALL_REGIONS",
    "ARCHITECTURES",
    "BYTES_PER_DATA_UNIT",
    "PRICE_COLUMNS",
    "PriceRow",
    "PriceTable",
    "TieredPrice",
    "load_price_table",
]

PRICE_COLUMNS = (
    "provider",
    "service",
    "region",
    "dimension",
    "architecture",
    "unit",
    "usd_per_unit",
    "tier_start",
    "tier_end",
    "free_allowance",
    "secondary",
    "source",
    "as_of",
)

ALL_REGIONS = "all"
"""Region of a price that is the same in every region."""

ARCHITECTURES = ("x86_64", "arm64")
"""Values of the ``architecture`` column besides null (the price does not depend on it)."""

BYTES_PER_DATA_UNIT = {"GB": 10**9, "GiB": 2**30}
"""Bytes in one unit of data, by the ``unit`` the table writes."""

_TEXT_COLUMNS = ("provider", "service", "region", "dimension", "unit", "source")
_NUMBER_COLUMNS = ("usd_per_unit", "tier_start", "tier_end", "free_allowance")
_REQUIRED_COLUMNS = ("provider", "service", "region", "dimension", "unit", "source")


@dataclass(frozen=True)
class PriceRow:
    """One tier of one price.

    Quantities (`tier_start`, `tier_end`, `free_allowance`) are in `unit` per month.
    """

    provider: str
    service: str
    region: str
    dimension: str
    architecture: str | None
    """``x86_64`` or ``arm64``; None when the price does not depend on the architecture."""
    unit: str
    usd_per_unit: float
    tier_start: float
    tier_end: float | None
    """None for a tier without end."""
    free_allowance: float | None
    """Monthly quantity that costs nothing, shared by all tiers of the price; None for none."""
    secondary: bool
    """True when the source quotes the price second-hand."""
    source: str
    as_of: dt.date | None
    """Latest date on which the source saw the price in force; None when undated."""

    def to_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-serialisable dict, with `as_of` as an ISO date."""
        return {
            "provider": self.provider,
            "service": self.service,
            "region": self.region,
            "dimension": self.dimension,
            "architecture": self.architecture,
            "unit": self.unit,
            "usd_per_unit": self.usd_per_unit,
            "tier_start": self.tier_start,
            "tier_end": self.tier_end,
            "free_allowance": self.free_allowance,
            "secondary": self.secondary,
            "source": self.source,
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
        }


@dataclass(frozen=True)
class PriceTable:
    """The rows of a `prices.parquet` file, for look-ups by price."""

    path: Path
    entries: tuple[PriceRow, ...]
    sha256: str
    """SHA-256 of the file's bytes, for run metadata."""

    def rows(
        self,
        provider: str,
        service: str,
        dimension: str,
        region: str,
        architecture: str | None = None,
    ) -> tuple[PriceRow, ...]:
        """Return the tiers of one price, sorted by `tier_start`.

        A row of region ``all`` applies in every region that has no row of its own for
        the price. A row without architecture applies to every architecture. With
        `architecture` given, the rows of that architecture are returned when there are
        any, else the rows without architecture.

        Raises
        ------
        InputError
            When the table has no such price. The message names the price needed and
            lists what the table has instead: the services of the provider, the
            dimensions of the service, the regions of the dimension or the architectures
            in the region.
        """
        needed = _describe_price(provider, service, dimension, region, architecture)

        of_service = [r for r in self.entries if r.provider == provider and r.service == service]
        if not of_service:
            services = {r.service for r in self.entries if r.provider == provider}
            self._missing(needed, _listing(services, f"services of {provider} in the table"))

        of_dimension = [r for r in of_service if r.dimension == dimension]
        if not of_dimension:
            dimensions = {r.dimension for r in of_service}
            self._missing(needed, _listing(dimensions, f"dimensions of {service} in the table"))

        in_region = [r for r in of_dimension if r.region == region]
        if not in_region:
            in_region = [r for r in of_dimension if r.region == ALL_REGIONS]
        if not in_region:
            regions = {r.region for r in of_dimension}
            self._missing(needed, _listing(regions, "regions with this price in the table"))

        chosen = [r for r in in_region if r.architecture == architecture]
        if not chosen and architecture is not None:
            chosen = [r for r in in_region if r.architecture is None]
        if not chosen:
            architectures = {r.architecture or "none" for r in in_region}
            self._missing(
                needed, _listing(architectures, f"architectures with this price in {region}")
            )

        return tuple(sorted(chosen, key=lambda r: r.tier_start))

    def regions(
        self, provider: str, service: str, dimension: str, architecture: str | None = None
    ) -> list[str]:
        """Return the regions with rows for a price, sorted, ``all`` included if present.

        With `architecture` given, only regions with a row for it or without
        architecture count.
        """
        return sorted(
            {
                r.region
                for r in self.entries
                if (r.provider, r.service, r.dimension) == (provider, service, dimension)
                and (architecture is None or r.architecture in (architecture, None))
            }
        )

    def _missing(self, needed: str, listed: str) -> NoReturn:
        raise InputError(f"has no price for {needed}; {listed}", file=self.path)


@dataclass(frozen=True)
class TieredPrice:
    """The tiers of one price, from `PriceTable.rows`, applied to monthly quantities.

    The tiers apply to the quantity accumulated over a month. The free allowance is
    the first units of that quantity: it covers the start of the first tiers, and the
    units after it cost the rate of the tier they fall in.
    """

    tiers: tuple[PriceRow, ...]
    path: Path | None = None
    """The price table the tiers come from, for error messages."""

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ValueError("a tiered price needs at least one tier")
        keys = {(r.provider, r.service, r.dimension, r.region, r.architecture) for r in self.tiers}
        if len(keys) > 1:
            raise ValueError("the tiers of a tiered price must come from one price")

    @property
    def unit(self) -> str:
        """Unit of the quantities and rates."""
        return self.tiers[0].unit

    @property
    def free_allowance(self) -> float:
        """Monthly quantity that costs nothing; 0 when the price has none."""
        return self.tiers[0].free_allowance or 0.0

    @property
    def first_tier_usd_per_unit(self) -> float:
        """Rate of the first tier priced above zero, or 0 when every tier is free.

        A source writes a free allowance either in the free-tier text or as a first tier
        priced at zero, so the first tier priced above zero is the first-tier rate
        without free tiers.
        """
        for row in self.tiers:
            if row.usd_per_unit > 0:
                return row.usd_per_unit
        return 0.0

    @property
    def covered_to(self) -> float:
        """Largest monthly quantity the tiers price; infinity when the last has no end."""
        end = self.tiers[-1].tier_end
        return math.inf if end is None else end

    def monthly_usd(self, quantity: np.ndarray) -> np.ndarray:
        """Price monthly quantities.

        Parameters
        ----------
        quantity : ndarray, shape (n,)
            Quantity accumulated over a month, in `unit`, >= 0.

        Returns
        -------
        ndarray, shape (n,)
            Cost in USD: for every tier, its rate times the part of the quantity that
            falls in the tier and past the free allowance.

        Raises
        ------
        InputError
            When a quantity exceeds the end of the last tier, above which the table
            gives no price.
        """
        quantity = np.asarray(quantity, dtype=np.float64)
        over = quantity > self.covered_to
        if over.any():
            first = self.tiers[0]
            name = _describe_price(
                first.provider, first.service, first.dimension, first.region, first.architecture
            )
            raise InputError(
                f"has no price above {self.covered_to:,.0f} {self.unit} per month for {name}, "
                f"but a month needs {float(quantity[over].max()):,.0f} {self.unit}; add the "
                "next tier to the price table or lower runs_per_month",
                file=self.path,
            )

        free = self.free_allowance
        cost = np.zeros(quantity.shape)
        for row in self.tiers:
            start = max(row.tier_start, free)
            end = math.inf if row.tier_end is None else row.tier_end
            if end <= start:
                continue
            cost += row.usd_per_unit * np.clip(np.minimum(quantity, end) - start, 0.0, None)
        return cost


def load_price_table(path: str | Path) -> PriceTable:
    """Read and check a `prices.parquet` file.

    Checks the columns and their types, the values of every row (rates, tier bounds
    and allowances finite and >= 0, a tier that ends after it starts, a known
    architecture) and that the tiers of every price start at 0 and follow one another
    without gap or overlap, with one free allowance.

    Raises
    ------
    InputError
        When the file is missing or not readable Parquet, lacks a column, has a column
        of the wrong type, or has a row that fails a check. The message names the file
        and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "price table not found; build it with `python -m allocation.price_build` or "
            "point the provider's `prices` option at one",
            file=path,
        )
    data = read_input_bytes(
        path, max_bytes=MAX_CATALOG_FILE_BYTES, hint="a price table is normally kilobytes"
    )
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"is not a readable Parquet file ({exc}); rebuild the table with "
            "`python -m allocation.price_build` or restore the file",
            file=path,
        ) from exc

    missing = [column for column in PRICE_COLUMNS if column not in table.column_names]
    if missing:
        raise InputError(
            f"lacks the column(s) {', '.join(missing)}; a price table has the columns "
            + ", ".join(PRICE_COLUMNS),
            file=path,
        )
    _check_types(table, path)

    entries = tuple(
        _checked_row(record, i, path)
        for i, record in enumerate(table.select(list(PRICE_COLUMNS)).to_pylist())
    )
    _check_prices(entries, path)
    return PriceTable(path=path, entries=entries, sha256=hashlib.sha256(data).hexdigest())


def _check_types(table: pa.Table, path: Path) -> None:
    def is_text(t: pa.DataType) -> bool:
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

    def is_number(t: pa.DataType) -> bool:
        return bool(pa.types.is_floating(t) or pa.types.is_integer(t))

    expected = {column: (is_text, "string") for column in (*_TEXT_COLUMNS, "architecture")}
    expected.update({column: (is_number, "a number") for column in _NUMBER_COLUMNS})
    expected["secondary"] = (pa.types.is_boolean, "bool")
    expected["as_of"] = (pa.types.is_date, "a date")
    for column, (check, wanted) in expected.items():
        column_type = table.schema.field(column).type
        if not (check(column_type) or pa.types.is_null(column_type)):
            raise InputError(
                f"column {column!r} has type {column_type}, but a price table needs {wanted}; "
                "rebuild the table with `python -m allocation.price_build`",
                file=path,
                field=column,
            )


def _checked_row(record: dict[str, Any], index: int, path: Path) -> PriceRow:
    def reject(column: str, expected: str) -> InputError:
        return InputError(
            expected,
            file=path,
            field=f"row {index}.{column}",
            value=record[column],
            has_value=True,
        )

    for column in _REQUIRED_COLUMNS:
        if not record[column]:
            raise reject(column, "must be a non-empty string")
    if record["architecture"] not in (*ARCHITECTURES, None):
        raise reject("architecture", f"must be one of {', '.join(ARCHITECTURES)} or null")
    for column in _NUMBER_COLUMNS:
        value = record[column]
        if value is None and column in ("tier_end", "free_allowance"):
            continue
        if value is None or not (math.isfinite(value) and value >= 0):
            raise reject(column, "must be a finite number >= 0")
    if record["tier_end"] is not None and record["tier_end"] <= record["tier_start"]:
        raise reject("tier_end", f"must be greater than tier_start ({record['tier_start']})")
    if record["secondary"] is None:
        raise reject("secondary", "must be true or false")

    return PriceRow(
        provider=record["provider"],
        service=record["service"],
        region=record["region"],
        dimension=record["dimension"],
        architecture=record["architecture"],
        unit=record["unit"],
        usd_per_unit=float(record["usd_per_unit"]),
        tier_start=float(record["tier_start"]),
        tier_end=None if record["tier_end"] is None else float(record["tier_end"]),
        free_allowance=(
            None if record["free_allowance"] is None else float(record["free_allowance"])
        ),
        secondary=bool(record["secondary"]),
        source=record["source"],
        as_of=record["as_of"],
    )


def _check_prices(entries: Iterable[PriceRow], path: Path) -> None:
    """Raise unless every price has contiguous tiers from 0, one unit and one allowance."""
    prices: dict[tuple[str, str, str, str, str | None], list[PriceRow]] = {}
    for row in entries:
        key = (row.provider, row.service, row.dimension, row.region, row.architecture)
        prices.setdefault(key, []).append(row)

    for key, rows in prices.items():
        name = _describe_price(*key)
        if len({r.unit for r in rows}) > 1 or len({r.free_allowance for r in rows}) > 1:
            raise InputError(
                f"the rows of {name} must share one unit and one free_allowance", file=path
            )
        expected_start = 0.0
        for row in sorted(rows, key=lambda r: r.tier_start):
            if row.tier_start != expected_start:
                raise InputError(
                    f"the tiers of {name} must start at 0 and follow one another without "
                    f"gap or overlap, but one starts at {row.tier_start:g} where "
                    f"{expected_start:g} is expected",
                    file=path,
                )
            expected_start = math.inf if row.tier_end is None else row.tier_end


def _describe_price(
    provider: str, service: str, dimension: str, region: str, architecture: str | None
) -> str:
    text = f"provider {provider}, service {service}, dimension {dimension}, region {region}"
    return text + (f", architecture {architecture}" if architecture else "")


def _listing(values: set[str], what: str) -> str:
    return f"{what}: {', '.join(sorted(values)) or 'none'}"
