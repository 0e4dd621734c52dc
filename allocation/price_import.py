"""Import AWS prices into the price table (`prices.parquet`) from AWS Price List offer files.

An offer file is the JSON that the AWS Price List Bulk API publishes for one service,
named by its ``offerCode``. Its ``products`` map each SKU to the product's attributes,
and ``terms.OnDemand`` maps each SKU to its on-demand term. The term's
``priceDimensions`` are the tiers, each with ``beginRange``, ``endRange`` (``"Inf"`` for
no end), ``unit`` and ``pricePerUnit.USD``. Two offers are read:

- ``AWSLambda``: duration and requests, for x86_64 and arm64;
- ``AWSDataTransfer``: data transfer from a region out to the internet, and from the
  internet into a region.

`import_aws_offer` maps each product of a known kind to a price of the table (see
`classify_product`), skips and counts the others, and replaces the table's rows of every
price it imports. ``catalogs/README.md`` describes the rules.

Run as ``python -m allocation.price_import OFFER_JSON PRICES_PARQUET [--dry-run]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from allocation.errors import InputError
from allocation.price_build import PRICE_SCHEMA, parse_region, write_price_table
from allocation.prices import PriceRow, load_price_table

__all__ = [
    "SUPPORTED_OFFERS",
    "ImportReport",
    "PriceChange",
    "PriceRefresh",
    "PriceTarget",
    "classify_product",
    "import_aws_offer",
    "main",
    "refresh_aws_prices",
    "refresh_prices",
    "refreshable_providers",
]

PROVIDER = "aws"

_SOURCE_PREFIX = "AWS Price List offer file"
"""Start of the ``source`` of every imported row, followed by offer code and version."""

REQUIRED_KEYS = ("formatVersion", "offerCode", "version", "publicationDate", "products", "terms")
"""Top-level keys of an offer file that the import reads or checks."""

_TEXT_COLUMNS = ("provider", "service", "region", "dimension", "architecture", "unit", "source")
_NUMBER_COLUMNS = ("usd_per_unit", "tier_start", "tier_end", "free_allowance")

# A usage type is an optional region prefix (`APN1-`, `USE2-`) and a name. AWS writes
# some us-east-1 usage types without the prefix. The free tiers' `Global-` has
# lower-case letters, so it is no region prefix and stays part of the name.
_USAGE_TYPE = re.compile(r"(?:[A-Z]{2,4}\d*-)?(?P<name>[A-Za-z0-9-]+)")

_DECIMAL = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")

_PriceKey = tuple[str, str, str, str, str | None]
"""Provider, service, dimension, region and architecture: the rows of one price."""


@dataclass(frozen=True)
class PriceTarget:
    """The price of the table that an offer product's tiers become.

    `offer_unit` is the unit that the offer file writes for the product, and `unit` the
    table's unit for it.
    """

    service: str
    dimension: str
    region: str
    architecture: str | None
    offer_unit: str
    unit: str


@dataclass(frozen=True)
class _LambdaRule:
    dimension: str
    architecture: str
    usage_type: str
    offer_unit: str
    unit: str


# A Lambda product is imported when its `group` is listed here and its usage type,
# without region prefix, is the one listed with it. The free tiers share the groups
# but have the usage types `Global-Lambda-GB-Second` and `Global-Request`.
_LAMBDA_RULES = {
    "AWS-Lambda-Duration": _LambdaRule(
        "duration", "x86_64", "Lambda-GB-Second", "Lambda-GB-Second", "GB-second"
    ),
    "AWS-Lambda-Duration-ARM": _LambdaRule(
        "duration", "arm64", "Lambda-GB-Second-ARM", "Lambda-GB-Second", "GB-second"
    ),
    "AWS-Lambda-Requests": _LambdaRule("requests", "x86_64", "Request", "Requests", "request"),
    "AWS-Lambda-Requests-ARM": _LambdaRule(
        "requests", "arm64", "Request-ARM", "Requests", "request"
    ),
}


@dataclass(frozen=True)
class PriceChange:
    """One row of the table that an import adds, changes or removes.

    `old` is None for an added row and `new` None for a removed one.
    """

    kind: Literal["added", "changed", "removed"]
    old: PriceRow | None
    new: PriceRow | None

    @property
    def row(self) -> PriceRow:
        """The new row, or the old one for a removed row."""
        row = self.new or self.old
        assert row is not None, "a change has an old row, a new row or both"
        return row

    def describe(self) -> str:
        """Return a sentence that names the price and tier and gives the old and new rate."""
        name = _price_name(self.row)

        if self.kind == "added":
            assert self.new is not None
            return f"Added {name}, tier {_tier(self.new)}: {_rate(self.new)}."
        if self.kind == "removed":
            assert self.old is not None
            return (
                f"Removed {name}, tier {_tier(self.old)}: {_rate(self.old)}. The offer file "
                "has no tier that starts there."
            )

        assert self.old is not None and self.new is not None
        old, new = self.old, self.new
        tier = _tier(new) if _tier(old) == _tier(new) else f"{_tier(old)} → {_tier(new)}"
        if old.usd_per_unit == new.usd_per_unit:
            rate = f"{_rate(new)} (rate unchanged)"
        else:
            rate = f"{_usd(old.usd_per_unit)} → {_rate(new)}"
        text = f"Changed {name}, tier {tier}: {rate}."
        if (old.source, old.as_of, old.secondary) != (new.source, new.as_of, new.secondary):
            text += f" It replaces {_provenance(old)}."
        return text


@dataclass(frozen=True)
class ImportReport:
    """Result of importing an offer file: the changes made, or planned with ``dry_run``.

    The counts are rows of the price table, except `skipped`, which counts the on-demand
    price dimensions of offer products that the mapping does not know.
    """

    offer_path: Path
    prices_path: Path
    offer_code: str
    version: str
    as_of: dt.date
    """Date of the offer file's ``publicationDate``, written to ``as_of``."""
    dry_run: bool
    added: int
    changed: int
    unchanged: int
    removed: int
    skipped: int
    changes: tuple[PriceChange, ...]
    """The added, changed and removed rows, in the table's row order."""

    def summary(self) -> str:
        """Return one line with the offer and the counts."""
        verb = "Would import" if self.dry_run else "Imported"
        skipped = f"{self.skipped} price dimension{'' if self.skipped == 1 else 's'}"
        return (
            f"{verb} {self.offer_code} version {self.version} into {self.prices_path}. "
            f"Rows: {self.added} added, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.removed} removed. Skipped {skipped} of products outside the mapping."
        )

    def lines(self) -> list[str]:
        """Return one sentence per added, changed or removed row."""
        return [change.describe() for change in self.changes]


def classify_product(offer_code: str, attributes: Mapping[str, Any]) -> PriceTarget | None:
    """Return the price of the table that a product's tiers become, or None to skip it.

    ``AWSLambda`` products map by their ``group`` and ``usagetype``, with the region
    from ``regionCode``:

    - ``AWS-Lambda-Duration`` and ``[XXX-]Lambda-GB-Second``: duration, x86_64;
    - ``AWS-Lambda-Duration-ARM`` and ``[XXX-]Lambda-GB-Second-ARM``: duration, arm64;
    - ``AWS-Lambda-Requests`` and ``[XXX-]Request``: requests, x86_64;
    - ``AWS-Lambda-Requests-ARM`` and ``[XXX-]Request-ARM``: requests, arm64.

    ``AWSDataTransfer`` products with ``transferType`` ``AWS Outbound``, ``toLocation``
    ``External`` and usage type ``[XXX-]DataTransfer-Out-Bytes`` are ``egress_internet``
    of the region ``fromRegionCode``. Those with ``AWS Inbound``, ``fromLocation``
    ``External`` and ``[XXX-]DataTransfer-In-Bytes`` are ``ingress_internet`` of
    ``toRegionCode``. ``XXX`` is a region prefix such as ``APN1``.

    Every other product is None, as is one without the region attribute, so free tiers
    (usage types ``Global-…``), provisioned concurrency, inter-region transfer and the
    like are skipped. The region is returned as written and checked by the caller.

    Raises
    ------
    ValueError
        For an offer code other than those of `SUPPORTED_OFFERS`.
    """
    classify = _CLASSIFIERS.get(offer_code)
    if classify is None:
        raise ValueError(
            f"offer code {offer_code!r} is not supported; supported offer codes: "
            + ", ".join(SUPPORTED_OFFERS)
        )
    return classify(attributes)


def _classify_lambda(attributes: Mapping[str, Any]) -> PriceTarget | None:
    rule = _LAMBDA_RULES.get(_text(attributes, "group"))
    region = _text(attributes, "regionCode")
    if rule is None or not region or _usage_name(attributes) != rule.usage_type:
        return None
    return PriceTarget(
        "lambda", rule.dimension, region, rule.architecture, rule.offer_unit, rule.unit
    )


def _classify_data_transfer(attributes: Mapping[str, Any]) -> PriceTarget | None:
    transfer_type = _text(attributes, "transferType")
    usage_name = _usage_name(attributes)
    if (
        transfer_type == "AWS Outbound"
        and _text(attributes, "toLocation") == "External"
        and usage_name == "DataTransfer-Out-Bytes"
    ):
        dimension, region = "egress_internet", _text(attributes, "fromRegionCode")
    elif (
        transfer_type == "AWS Inbound"
        and _text(attributes, "fromLocation") == "External"
        and usage_name == "DataTransfer-In-Bytes"
    ):
        dimension, region = "ingress_internet", _text(attributes, "toRegionCode")
    else:
        return None
    if not region:
        return None
    return PriceTarget("data-transfer", dimension, region, None, "GB", "GB")


_CLASSIFIERS: dict[str, Callable[[Mapping[str, Any]], PriceTarget | None]] = {
    "AWSDataTransfer": _classify_data_transfer,
    "AWSLambda": _classify_lambda,
}

SUPPORTED_OFFERS = tuple(sorted(_CLASSIFIERS))
"""Offer codes that `import_aws_offer` reads."""


def import_aws_offer(offer_path: Path, prices_path: Path, *, dry_run: bool = False) -> ImportReport:
    """Replace the table's rows of every price in an AWS offer file with the file's tiers.

    Reads the offer file (see the module docstring), maps its products with
    `classify_product` and turns the tiers of each mapped product's on-demand term into
    rows: ``beginRange`` and ``endRange`` become ``tier_start`` and ``tier_end``
    (``"Inf"`` becomes null) and ``pricePerUnit.USD`` becomes ``usd_per_unit``, in the
    table's units (``Lambda-GB-Second`` is ``GB-second``, ``Requests`` is ``request``,
    ``GB`` stays ``GB``). Each row gets ``source`` ``AWS Price List offer file
    <offerCode> version <version>``, ``as_of`` the date of ``publicationDate`` and
    ``secondary`` false.

    Every price that the file gives replaces all the table's rows of that price
    (provider, service, dimension, region and architecture). Other rows stay as they
    are. The regional products of an offer file state no free allowance, because AWS
    lists its free tiers as separate, account-wide products, so an imported price keeps
    the ``free_allowance`` that the table had for it, and a new price has none.

    The new table is written to a temporary file in the folder of `prices_path`, read
    back with `allocation.prices.load_price_table` and then moved over `prices_path`.
    When no row changes, nothing is written.

    Parameters
    ----------
    offer_path : Path
        The offer file (JSON), whole or for one region.
    prices_path : Path
        The price table to update.
    dry_run : bool
        Check the offer file and compute the report, but write no file. The check of
        the written file by `load_price_table` then does not run.

    Returns
    -------
    ImportReport
        The counts of added, changed, unchanged, removed and skipped rows, and each
        change.

    Raises
    ------
    InputError
        When the offer file is not JSON, lacks a key of an offer file, has an offer
        code other than those of `SUPPORTED_OFFERS`, or has an invalid value where the
        import reads one. Invalid values include a price or range that is not a decimal
        number, a unit that does not fit the price, and tiers that do not start at 0 or
        leave a gap. The message names the file and the JSON path. Also raised when
        `prices_path` is not a valid price table. In every case `prices_path` is left
        unchanged.
    """
    offer_path = Path(offer_path)
    prices_path = Path(prices_path)
    offer = _read_offer(offer_path)
    offer_code, version, as_of = _read_header(offer, offer_path)
    source = f"{_SOURCE_PREFIX} {offer_code} version {version}"
    table = load_price_table(prices_path)

    tiers, skipped = _read_prices(offer, offer_code, offer_path)
    merged, changes, unchanged = _merge(table.entries, tiers, source, as_of)

    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in _KINDS}
    if changes and not dry_run:
        _write_atomically(merged, prices_path, offer_path)

    return ImportReport(
        offer_path=offer_path,
        prices_path=prices_path,
        offer_code=offer_code,
        version=version,
        as_of=as_of,
        dry_run=dry_run,
        added=counts["added"],
        changed=counts["changed"],
        unchanged=unchanged,
        removed=counts["removed"],
        skipped=skipped,
        changes=tuple(changes),
    )


_KINDS: tuple[Literal["added", "changed", "removed"], ...] = ("added", "changed", "removed")


@dataclass(frozen=True)
class _OfferTier:
    """One price dimension of a mapped product, read and checked."""

    start: float
    end: float | None
    usd_per_unit: float


@dataclass(frozen=True)
class _OfferPrice:
    """The tiers of one mapped product, sorted by start, with the product's SKU."""

    sku: str
    target: PriceTarget
    tiers: tuple[_OfferTier, ...]


def _read_offer(offer_path: Path) -> dict[str, Any]:
    try:
        text = offer_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("offer file not found", file=offer_path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read as a UTF-8 text file: {exc}", file=offer_path) from exc
    try:
        offer = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); expected "
            "an AWS Price List offer file",
            file=offer_path,
        ) from exc
    if not isinstance(offer, dict):
        raise InputError(
            f"is JSON of type {type(offer).__name__}, but an AWS Price List offer file is an "
            "object with the keys " + ", ".join(REQUIRED_KEYS),
            file=offer_path,
        )
    return offer


def _read_header(offer: dict[str, Any], offer_path: Path) -> tuple[str, str, dt.date]:
    """Check the top-level keys and return the offer code, version and publication date."""
    missing = [key for key in REQUIRED_KEYS if key not in offer]
    if missing:
        raise InputError(
            f"is not an AWS Price List offer file: it lacks the key(s) {', '.join(missing)}; "
            "an offer file has the keys " + ", ".join(REQUIRED_KEYS),
            file=offer_path,
        )
    for key in ("formatVersion", "offerCode", "version", "publicationDate"):
        if not isinstance(offer[key], str) or not offer[key].strip():
            raise _invalid(offer_path, key, offer[key], "must be a non-empty string")
    for key in ("products", "terms"):
        _expect_object(offer[key], offer_path, key)

    offer_code = offer["offerCode"]
    if offer_code not in _CLASSIFIERS:
        raise _invalid(
            offer_path,
            "offerCode",
            offer_code,
            "is not a supported offer; supported offer codes: " + ", ".join(SUPPORTED_OFFERS),
        )

    published = offer["publicationDate"]
    try:
        as_of = dt.datetime.fromisoformat(published).date()
    except ValueError:
        raise _invalid(
            offer_path,
            "publicationDate",
            published,
            "must be an ISO 8601 date and time, e.g. 2026-09-01T08:15:42Z",
        ) from None
    return offer_code, offer["version"], as_of


def _read_prices(
    offer: dict[str, Any], offer_code: str, offer_path: Path
) -> tuple[dict[_PriceKey, _OfferPrice], int]:
    """Read the tiers of every mapped product and count the skipped price dimensions."""
    products: dict[str, Any] = offer["products"]
    on_demand = _expect_object(offer["terms"].get("OnDemand"), offer_path, "terms.OnDemand")

    for sku in on_demand:
        if sku not in products:
            raise _invalid(
                offer_path,
                f"terms.OnDemand.{sku}",
                sku,
                "has no product with this SKU under products",
            )

    prices: dict[_PriceKey, _OfferPrice] = {}
    skipped = 0
    for sku, product in products.items():
        path = f"products.{sku}"
        attributes = _expect_object(
            _expect_object(product, offer_path, path).get("attributes"),
            offer_path,
            f"{path}.attributes",
        )
        target = classify_product(offer_code, attributes)
        if target is None:
            skipped += _count_dimensions(on_demand.get(sku))
            continue

        region_field = f"{path}.attributes.{_region_attribute(target)}"
        try:
            region = parse_region(target.region)
        except ValueError as exc:
            raise InputError(str(exc), file=offer_path, field=region_field) from exc
        key = (PROVIDER, target.service, target.dimension, region, target.architecture)
        if key in prices:
            raise _invalid(
                offer_path,
                path,
                sku,
                f"gives the same price as the product {prices[key].sku} "
                f"({_describe_key(key)}); an offer file must give each price once",
            )
        tiers = _read_tiers(on_demand.get(sku), sku, target, offer_path)
        prices[key] = _OfferPrice(sku, target, tiers)
    return prices, skipped


def _read_tiers(
    terms: Any, sku: str, target: PriceTarget, offer_path: Path
) -> tuple[_OfferTier, ...]:
    """Read the one on-demand term of a mapped product into checked, contiguous tiers."""
    path = f"terms.OnDemand.{sku}"
    if terms is None:
        raise InputError(
            f"has no on-demand price for the product {sku}, which maps to "
            f"{target.service} {target.dimension}",
            file=offer_path,
            field=path,
        )
    terms = _expect_object(terms, offer_path, path)
    if len(terms) != 1:
        raise _invalid(
            offer_path, path, sorted(terms), f"must hold one on-demand term, not {len(terms)}"
        )
    [(term_code, term)] = terms.items()
    term_path = f"{path}.{term_code}"
    dimensions_path = f"{term_path}.priceDimensions"
    dimensions = _expect_object(
        _expect_object(term, offer_path, term_path).get("priceDimensions"),
        offer_path,
        dimensions_path,
    )
    if not dimensions:
        raise InputError("has no price dimension", file=offer_path, field=dimensions_path)

    tiers = [
        _read_tier(dimension, f"{dimensions_path}.{rate_code}", target, offer_path)
        for rate_code, dimension in dimensions.items()
    ]
    tiers.sort(key=lambda tier: tier.start)

    expected_start = 0.0
    for tier in tiers:
        if tier.start != expected_start:
            raise InputError(
                f"the tiers must start at 0 and follow one another without gap or overlap, "
                f"but one begins at {tier.start:g} where {expected_start:g} is expected",
                file=offer_path,
                field=dimensions_path,
            )
        expected_start = math.inf if tier.end is None else tier.end
    return tuple(tiers)


def _read_tier(dimension: Any, path: str, target: PriceTarget, offer_path: Path) -> _OfferTier:
    dimension = _expect_object(dimension, offer_path, path)

    unit = dimension.get("unit")
    if unit != target.offer_unit:
        raise _invalid(
            offer_path,
            f"{path}.unit",
            unit,
            f"must be {target.offer_unit!r} for {target.service} {target.dimension}",
        )

    start = _decimal(dimension.get("beginRange"), offer_path, f"{path}.beginRange")
    end_text = dimension.get("endRange")
    end = None if end_text == "Inf" else _decimal(end_text, offer_path, f"{path}.endRange")
    if end is not None and end <= start:
        raise _invalid(
            offer_path, f"{path}.endRange", end_text, f"must be greater than beginRange ({start:g})"
        )

    prices = _expect_object(dimension.get("pricePerUnit"), offer_path, f"{path}.pricePerUnit")
    if "USD" not in prices:
        raise InputError(
            "has no USD price; the price table is in USD",
            file=offer_path,
            field=f"{path}.pricePerUnit",
        )
    usd = _decimal(prices["USD"], offer_path, f"{path}.pricePerUnit.USD")
    return _OfferTier(start, end, usd)


def _merge(
    entries: Iterable[PriceRow],
    prices: Mapping[_PriceKey, _OfferPrice],
    source: str,
    as_of: dt.date,
) -> tuple[list[PriceRow], list[PriceChange], int]:
    """Replace the rows of every imported price; return the rows, changes and unchanged count.

    An old and a new row of a price are matched by `tier_start`.
    """
    old_by_key: dict[_PriceKey, list[PriceRow]] = {}
    for row in entries:
        key = (row.provider, row.service, row.dimension, row.region, row.architecture)
        old_by_key.setdefault(key, []).append(row)

    rows = [row for key, group in old_by_key.items() if key not in prices for row in group]
    changes: list[PriceChange] = []
    unchanged = 0
    for key, price in prices.items():
        old_rows = old_by_key.get(key, [])
        # All rows of a price share one allowance, so the first row gives it.
        allowance = old_rows[0].free_allowance if old_rows else None
        old_by_start = {row.tier_start: row for row in old_rows}

        for tier in price.tiers:
            new = PriceRow(
                provider=key[0],
                service=key[1],
                region=key[3],
                dimension=key[2],
                architecture=key[4],
                unit=price.target.unit,
                usd_per_unit=tier.usd_per_unit,
                tier_start=tier.start,
                tier_end=tier.end,
                free_allowance=allowance,
                secondary=False,
                source=source,
                as_of=as_of,
            )
            rows.append(new)
            old = old_by_start.pop(tier.start, None)
            if old is None:
                changes.append(PriceChange("added", None, new))
            elif old != new:
                changes.append(PriceChange("changed", old, new))
            else:
                unchanged += 1
        changes.extend(PriceChange("removed", old, None) for old in old_by_start.values())

    rows.sort(key=_row_order)
    changes.sort(key=lambda change: _row_order(change.row))
    return rows, changes, unchanged


def _row_order(row: PriceRow) -> tuple[str, str, str, str, str, float]:
    """Return the sort key of the table: the price, architecture null first, then start."""
    return (
        row.provider,
        row.service,
        row.dimension,
        row.region,
        row.architecture or "",
        row.tier_start,
    )


def _write_atomically(rows: list[PriceRow], prices_path: Path, offer_path: Path) -> None:
    """Write the rows to a temporary file, check it, then move it over `prices_path`."""
    frame = _frame(rows)
    descriptor, temporary_name = tempfile.mkstemp(
        prefix=f".{prices_path.name}.", suffix=".tmp", dir=prices_path.parent
    )
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        write_price_table(frame, temporary)
        try:
            load_price_table(temporary)
        except InputError as exc:
            raise InputError(
                f"importing {offer_path} would make an invalid price table: {exc.detail}",
                file=prices_path,
            ) from exc
        # mkstemp creates the file readable by its owner only; keep the table's mode.
        os.chmod(temporary, stat.S_IMODE(prices_path.stat().st_mode))
        os.replace(temporary, prices_path)
    finally:
        temporary.unlink(missing_ok=True)


def _frame(rows: list[PriceRow]) -> pd.DataFrame:
    """Return the rows as the DataFrame that `write_price_table` writes, typed as the build."""
    records = [{column: getattr(row, column) for column in PRICE_SCHEMA.names} for row in rows]
    frame = pd.DataFrame.from_records(records, columns=PRICE_SCHEMA.names)
    for column in _TEXT_COLUMNS:
        frame[column] = frame[column].astype("string")
    for column in _NUMBER_COLUMNS:
        frame[column] = frame[column].astype("float64")
    frame["secondary"] = frame["secondary"].astype("bool")
    frame["as_of"] = frame["as_of"].astype("object")
    return frame


def _count_dimensions(terms: Any) -> int:
    """Count the price dimensions of a skipped product's on-demand terms, of any shape."""
    if not isinstance(terms, dict):
        return 0
    return sum(
        len(term["priceDimensions"])
        for term in terms.values()
        if isinstance(term, dict) and isinstance(term.get("priceDimensions"), dict)
    )


def _decimal(value: Any, offer_path: Path, path: str) -> float:
    """Read a non-negative decimal number, written as a string (``"0.0000166667"``) or not."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(offer_path, path, value, 'must be a decimal number such as "0.09"')
    text = value if isinstance(value, str) else repr(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = Decimal("NaN")
    if not (_DECIMAL.fullmatch(text) and number.is_finite()):
        raise _invalid(offer_path, path, value, 'must be a decimal number >= 0 such as "0.09"')
    return float(number)


def _expect_object(value: Any, offer_path: Path, path: str) -> dict[str, Any]:
    if value is None:
        raise InputError(
            "is missing; an AWS Price List offer file has it", file=offer_path, field=path
        )
    if not isinstance(value, dict):
        raise _invalid(offer_path, path, value, "must be a JSON object")
    return value


def _invalid(offer_path: Path, path: str, value: Any, message: str) -> InputError:
    return InputError(message, file=offer_path, field=path, value=value, has_value=True)


def _text(attributes: Mapping[str, Any], name: str) -> str:
    value = attributes.get(name)
    return value if isinstance(value, str) else ""


def _usage_name(attributes: Mapping[str, Any]) -> str:
    match = _USAGE_TYPE.fullmatch(_text(attributes, "usagetype"))
    return match["name"] if match else ""


def _region_attribute(target: PriceTarget) -> str:
    if target.dimension == "egress_internet":
        return "fromRegionCode"
    if target.dimension == "ingress_internet":
        return "toRegionCode"
    return "regionCode"


def _describe_key(key: _PriceKey) -> str:
    provider, service, dimension, region, architecture = key
    text = f"{provider} {service} {dimension} in {region}"
    return f"{text} ({architecture})" if architecture else text


def _price_name(row: PriceRow) -> str:
    return _describe_key((row.provider, row.service, row.dimension, row.region, row.architecture))


def _tier(row: PriceRow) -> str:
    end = "no end" if row.tier_end is None else f"{_quantity(row.tier_end)} {row.unit}"
    return f"{_quantity(row.tier_start)} to {end}"


def _rate(row: PriceRow) -> str:
    return f"{_usd(row.usd_per_unit)} USD per {row.unit}"


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if value.is_integer() else f"{value:,g}"


def _usd(value: float) -> str:
    """Return a rate in plain decimal notation: 1.66667e-05 as 0.0000166667, 0.0 as 0."""
    return format(Decimal(repr(value)).normalize(), "f")


def _provenance(row: PriceRow) -> str:
    """Describe where a replaced row came from, short enough for one report line."""
    as_of = "undated" if row.as_of is None else f"as of {row.as_of.isoformat()}"
    if row.source.startswith(_SOURCE_PREFIX):
        return f"the price from {row.source}, {as_of}"
    kind = "a second-hand price" if row.secondary else "a price"
    return f"{kind} from another source, {as_of}"


@dataclass(frozen=True)
class PriceRefresh:
    """What a provider's ``refresh_prices`` changed in a price table, or would change.

    `lines` has one sentence per source (what it was and the counts) followed by one
    sentence per added, changed or removed row.
    """

    provider: str
    prices_path: Path
    changed_rows: int
    """Rows added, changed or removed."""
    lines: tuple[str, ...]
    dry_run: bool


SOURCE_TIMEOUT_S = 60.0
"""Time allowed to download one offer file from a URL."""

MAX_OFFER_BYTES = 1 << 30
"""Largest offer file read from a URL: 1 GiB. A whole AWSDataTransfer offer is large."""


def refresh_aws_prices(
    prices_path: Path, sources: Iterable[str | Path], *, dry_run: bool = False
) -> list[ImportReport]:
    """Import AWS Price List offer files, from paths or from URLs given explicitly, in order.

    A source that starts with ``http://`` or ``https://`` is downloaded to a temporary
    file first; every other source is a path. Nothing is downloaded unless the caller
    passes a URL, so a refresh from files works offline.

    Raises
    ------
    InputError
        For no sources, an invalid offer file (see `import_aws_offer`), or a URL that
        cannot be downloaded.
    """
    sources = list(sources)
    if not sources:
        raise InputError(
            "no offer file given; give the AWSLambda and AWSDataTransfer offer files "
            "(paths, or URLs from the AWS Price List service index)",
            file="command line",
            field="--source",
        )
    reports = []
    for source in sources:
        text = str(source)
        if text.lower().startswith(("http://", "https://")):
            with tempfile.TemporaryDirectory(prefix="allocation-offer-") as folder:
                offer = _download(text, Path(folder) / "offer.json")
                reports.append(import_aws_offer(offer, prices_path, dry_run=dry_run))
        else:
            reports.append(import_aws_offer(Path(text), prices_path, dry_run=dry_run))
    return reports


def _download(url: str, target: Path) -> Path:
    """Download `url` into `target`, stopping past `MAX_OFFER_BYTES`."""
    import urllib.error
    import urllib.request

    try:
        with (
            urllib.request.urlopen(url, timeout=SOURCE_TIMEOUT_S) as response,
            target.open("wb") as handle,
        ):
            size = 0
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_OFFER_BYTES:
                    raise InputError(
                        f"is larger than {MAX_OFFER_BYTES:,} bytes; download a regional "
                        "offer file instead",
                        file=url,
                    )
                handle.write(chunk)
    except InputError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InputError(
            f"cannot be downloaded: {exc}; check the URL, or download the file and give its path",
            file=url,
        ) from exc
    return target


def refreshable_providers() -> list[str]:
    """Return the names of the installed pricing providers that offer ``refresh_prices``."""
    from allocation.pricing import available_providers

    names = []
    for name, entry_point in sorted(available_providers().items()):
        try:
            provider_class = entry_point.load()
        except Exception:
            # A provider that cannot be loaded is reported when a system uses it.
            continue
        if callable(getattr(provider_class, "refresh_prices", None)):
            names.append(name)
    return names


def refresh_prices(
    provider: str, prices_path: Path, sources: Iterable[str | Path], *, dry_run: bool = False
) -> PriceRefresh:
    """Refresh the rows of a price table that a provider reads, with its ``refresh_prices``.

    Raises
    ------
    InputError
        When no provider of that name is installed, when it does not offer
        ``refresh_prices`` (the message lists those that do), or for invalid sources.
    """
    from allocation.pricing import available_providers

    registered = available_providers()
    if provider not in registered:
        raise InputError(
            f"unknown pricing provider; installed providers: {', '.join(sorted(registered))}",
            file="command line",
            field="PROVIDER",
            value=provider,
            has_value=True,
        )
    method = getattr(registered[provider].load(), "refresh_prices", None)
    if not callable(method):
        raise InputError(
            "cannot refresh its prices; providers that can: "
            + (", ".join(refreshable_providers()) or "none"),
            file="command line",
            field="PROVIDER",
            value=provider,
            has_value=True,
        )
    result = method(Path(prices_path), list(sources), dry_run=dry_run)
    if not isinstance(result, PriceRefresh):
        from allocation.errors import ProviderError

        raise ProviderError(
            f"pricing provider {provider!r} returned {type(result).__name__} from "
            "refresh_prices; expected allocation.price_import.PriceRefresh"
        )
    return result


def aws_price_refresh(
    provider: str, prices_path: Path, sources: Iterable[str | Path], *, dry_run: bool = False
) -> PriceRefresh:
    """Refresh from AWS offer files, for the ``refresh_prices`` of the AWS providers."""
    reports = refresh_aws_prices(prices_path, sources, dry_run=dry_run)
    lines = []
    for report in reports:
        lines.append(report.summary())
        lines += report.lines()
    changed = sum(report.added + report.changed + report.removed for report in reports)
    return PriceRefresh(provider, Path(prices_path), changed, tuple(lines), dry_run)


def main(argv: list[str] | None = None) -> int:
    """Import `OFFER_JSON` into `PRICES_PARQUET` and return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m allocation.price_import",
        description="Replace the prices of an AWS Price List offer file (AWSLambda or "
        "AWSDataTransfer) in the price table.",
    )
    parser.add_argument("offer_json", type=Path, help="AWS Price List offer file (JSON)")
    parser.add_argument("prices_parquet", type=Path, help="price table to update")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the changes without writing the table"
    )
    args = parser.parse_args(argv)

    try:
        report = import_aws_offer(args.offer_json, args.prices_parquet, dry_run=args.dry_run)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.prices_parquet}: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    for line in report.lines():
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
