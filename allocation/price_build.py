"""Build the price table (`prices.parquet`) from the CSV of cloud prices and their sources.

The CSV has one row per price and tier. Its ``service``, ``unit``, ``tier``,
``free_tier`` and ``source_date`` columns are free text. The build reads them by the
rules of `parse_service`, `parse_unit`, `parse_tier`, `parse_free_allowance` and
`parse_as_of` into the long table described by `PRICE_SCHEMA`. A *price* is the group
of rows that share provider, service, dimension, region and architecture: one row per
tier. The build checks that the tiers of every price start at 0 and follow one another
without a gap or an overlap, and gives every row of a price the free allowance that one
of its rows states.

``catalogs/README.md`` lists every rule with examples.

Run as ``python -m allocation.price_build SOURCE_CSV OUT_PARQUET``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from allocation.errors import InputError
from allocation.prices import ALL_REGIONS

__all__ = [
    "PRICE_SCHEMA",
    "SOURCE_COLUMNS",
    "TierText",
    "build_price_table",
    "main",
    "parse_as_of",
    "parse_free_allowance",
    "parse_region",
    "parse_service",
    "parse_tier",
    "parse_unit",
    "write_price_table",
]

SOURCE_COLUMNS = (
    "provider",
    "service",
    "region",
    "unit",
    "usd_per_unit",
    "free_tier",
    "tier",
    "source",
    "source_date",
)

PRICE_SCHEMA = pa.schema(
    [
        pa.field("provider", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("dimension", pa.string(), nullable=False),
        pa.field("architecture", pa.string()),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("usd_per_unit", pa.float64(), nullable=False),
        pa.field("tier_start", pa.float64(), nullable=False),
        pa.field("tier_end", pa.float64()),
        pa.field("free_allowance", pa.float64()),
        pa.field("secondary", pa.bool_(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("as_of", pa.date32()),
    ]
)
"""Column names and types of `prices.parquet`."""

_T = TypeVar("_T")

SECONDARY_MARK = "SECONDARY"
"""Prefix of a source that quotes the price second-hand."""

# Row units as the CSV writes them, and the unit the table stores. Memory-time is
# GB-second with GB = 1024 MB, as AWS Lambda bills it, so GCP's GiB-second is the
# same unit. Data keeps its own unit: GB is 10^9 bytes and GiB 2^30 bytes.
_UNITS = {
    "request": "request",
    "requests": "request",
    "execution": "request",
    "invocation": "request",
    "gb-second": "GB-second",
    "gib-second": "GB-second",
    "vcpu-second": "vCPU-second",
    "ghz-second": "GHz-second",
    "gb": "GB",
    "gib": "GiB",
    "instance-hour": "hour",
    "message": "message",
    "connection-minute": "connection-minute",
    "action": "action",
    "operation": "operation",
    "bundle": "bundle",
}

BUNDLE_UNIT = "bundle"
"""Unit of a row that lists free allowances of several dimensions and has no price."""

# Quantity units written in the tier and free-tier texts: the table unit they denote
# and the factor to it. A TB is 1,024 GB and a TiB 1,024 GiB.
_QUANTITY_UNITS = {
    "gb-s": ("GB-second", 1.0),
    "gib-s": ("GB-second", 1.0),
    "vcpu-s": ("vCPU-second", 1.0),
    "gb": ("GB", 1.0),
    "tb": ("GB", 1024.0),
    "gib": ("GiB", 1.0),
    "tib": ("GiB", 1024.0),
    "requests": ("request", 1.0),
    "executions": ("request", 1.0),
    "invocations": ("request", 1.0),
}

_NUMBER = r"\d[\d,]*(?:\.\d+)?(?:e\d+)?"
_QUANTITY_UNIT = r"gib-s|gb-s|vcpu-s|gib|tib|gb|tb|requests|executions|invocations"
_PER_MONTH = r"(?:\s*(?:/|per\s+)\s*month)?"

_RANGE = re.compile(
    rf"(?P<start>{_NUMBER})\s*(?P<start_unit>{_QUANTITY_UNIT})?\s*-\s*"
    rf"(?P<end>{_NUMBER})\s*(?P<end_unit>{_QUANTITY_UNIT})?{_PER_MONTH}"
)
_ABOVE = re.compile(rf">\s*(?P<start>{_NUMBER})\s*(?P<start_unit>{_QUANTITY_UNIT})?{_PER_MONTH}")
_NEXT = re.compile(
    rf"next\s+(?P<width>{_NUMBER})\s*(?P<width_unit>{_QUANTITY_UNIT})?{_PER_MONTH}\s*"
    rf"\((?P<start>{_NUMBER})\s*(?P<start_unit>{_QUANTITY_UNIT})?\s*-\s*"
    rf"(?P<end>{_NUMBER})\s*(?P<end_unit>{_QUANTITY_UNIT})?\)"
)
_FIRST_PAID = re.compile(
    rf"first paid tier\s*\(to\s+(?P<end>{_NUMBER})\s*(?P<end_unit>{_QUANTITY_UNIT})?"
    rf"{_PER_MONTH}\)"
)
_FIRST = re.compile(r"first tier(?: only)?(?:\s*\(.*\))?")
_WHOLE_RANGE = re.compile(r"(?:all|above free grant|beyond free tier|tier \d+)(?:\s*\(.*\))?")
_MONTHLY_QUANTITY = re.compile(
    rf"(?:first\s+)?(?P<amount>{_NUMBER})\s*(?P<unit>{_QUANTITY_UNIT})\s*(?:/|per\s+)\s*month\b"
)
# Free-tier texts that give no allowance. `parse_free_allowance` gives the reason for each.
_NO_ALLOWANCE = tuple(
    re.compile(pattern)
    for pattern in (
        r"\bnot applied\b",
        r"\bnot captured\b",
        r"^see\b",
        r"\bper function\b",
        r"^\d+\s+months?\s*:",
    )
)

_ARCHITECTURES = (
    (re.compile(r"\bx86(?:_64)?\b"), "x86_64"),
    (re.compile(r"\b(?:arm64|arm)\b"), "arm64"),
)


@dataclass(frozen=True)
class _ServiceRule:
    pattern: re.Pattern[str]
    service: str
    dimension: str


def _rule(pattern: str, service: str, dimension: str) -> _ServiceRule:
    return _ServiceRule(re.compile(pattern), service, dimension)


# Every service text of the CSV matches exactly one rule, after case folding and
# collapsing runs of spaces. A text that matches none is an error: a new kind of price
# needs a new rule, not a guess.
_SERVICE_RULES = (
    _rule(r"lambda-requests \((?:x86|arm64)\)", "lambda", "requests"),
    _rule(r"lambda-duration (?:x86|arm64)", "lambda", "duration"),
    _rule(r"lambda-provisioned-concurrency (?:x86|arm64)", "lambda", "provisioned_concurrency"),
    _rule(r"lambda-ephemeral-storage \(above 512 mb\)", "lambda", "ephemeral_storage_above_512mb"),
    _rule(r"data-transfer-in \(internet\)", "data-transfer", "ingress_internet"),
    _rule(r"data-transfer-out \(internet\)", "data-transfer", "egress_internet"),
    _rule(r"data-transfer-inter-az", "data-transfer", "inter_az"),
    _rule(
        r"ec2 (?P<instance_type>[a-z0-9-]+\.[a-z0-9]+) \(linux, on-demand(?:, shared tenancy)?\)",
        "ec2:{instance_type}",
        "instance",
    ),
    _rule(r"iot-core messaging \(mqtt/http, metered per 5 kb\)", "iot-core", "messages"),
    _rule(r"iot-core connectivity", "iot-core", "connection_minutes"),
    _rule(r"iot-core rules engine actions", "iot-core", "rule_actions"),
    _rule(r"iot-core device shadow", "iot-core", "shadow_operations"),
    _rule(r"functions consumption executions", "functions-consumption", "requests"),
    _rule(r"functions consumption execution time", "functions-consumption", "duration"),
    _rule(
        r"functions flex consumption executions \(on demand\)",
        "functions-flex-consumption",
        "requests",
    ),
    _rule(
        r"functions flex consumption execution time \(on demand\)",
        "functions-flex-consumption",
        "duration",
    ),
    _rule(
        r"bandwidth internet egress \(microsoft global network\)", "bandwidth", "egress_internet"
    ),
    _rule(
        r"cloud-run services cpu \(request-based(?: billing)?, tier \d+\)",
        "cloud-run",
        "cpu_request_based",
    ),
    _rule(
        r"cloud-run services memory \(request-based(?: billing)?, tier \d+\)",
        "cloud-run",
        "memory_request_based",
    ),
    _rule(
        r"cloud-run services cpu \(instance-based / cpu always allocated, tier \d+\)",
        "cloud-run",
        "cpu_instance_based",
    ),
    _rule(r"cloud-run requests", "cloud-run", "requests"),
    _rule(
        r"cloud-run internet egress north america->north america",
        "cloud-run",
        "egress_internet_north_america",
    ),
    _rule(
        r"cloud-run-functions \(1st gen\) invocations", "cloud-run-functions-1st-gen", "requests"
    ),
    _rule(
        r"cloud-run-functions \(1st gen\) cpu(?: tier \d+)?", "cloud-run-functions-1st-gen", "cpu"
    ),
    _rule(
        r"cloud-run-functions \(1st gen\) memory(?: tier \d+)?",
        "cloud-run-functions-1st-gen",
        "memory",
    ),
)

_REGION = re.compile(r"[a-z]+[a-z0-9]*(?:-[a-z0-9]+)*")
_PROVIDER = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

_DAY_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_NUMERIC_MONTH = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?![\d-])")
_YEAR = re.compile(r"(?<![\d-])((?:19|20)\d{2})(?![\d-])")


@dataclass(frozen=True)
class TierText:
    """A tier read from its text: bounds in the row's unit, per month.

    Attributes
    ----------
    start : float
        Where the tier starts.
    end : float or None
        Where it ends; None for no end, or when `ends_at_next_tier` is set.
    ends_at_next_tier : bool
        True for a first tier whose text gives no end: it ends where the next tier of
        the same price starts, and has no end when there is no next tier.
    """

    start: float
    end: float | None
    ends_at_next_tier: bool = False


@dataclass(frozen=True)
class _PriceRow:
    """A CSV row read into table columns, with `line` its line number in the file."""

    line: int
    provider: str
    service: str
    region: str
    dimension: str
    architecture: str | None
    unit: str
    usd_per_unit: float
    tier: TierText
    free_allowance: float | None
    source: str
    as_of: dt.date | None

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """Provider, service, dimension, region and architecture ('' for none)."""
        return (
            self.provider,
            self.service,
            self.dimension,
            self.region,
            self.architecture or "",
        )


def parse_service(text: str) -> tuple[str, str, str | None]:
    """Read a service text into (service, dimension, architecture).

    The text is case-folded and runs of spaces collapsed, then matched against a fixed
    list of rules, for example ``lambda-duration arm64`` gives
    ``("lambda", "duration", "arm64")`` and ``ec2 c5.large (Linux, on-demand)`` gives
    ``("ec2:c5.large", "instance", None)``. The architecture is ``x86_64`` when the text
    contains ``x86``, ``arm64`` when it contains ``arm64`` or ``Arm``, and None otherwise.

    Raises
    ------
    ValueError
        When no rule matches, or the text names two architectures.
    """
    normal = " ".join(text.casefold().split())
    for rule in _SERVICE_RULES:
        match = rule.pattern.fullmatch(normal)
        if match is not None:
            service = rule.service.format(**match.groupdict())
            break
    else:
        raise ValueError(
            f"is not a known service text: {text!r}. Add a rule for it to "
            "allocation.price_build and catalogs/README.md"
        )

    found = {name for pattern, name in _ARCHITECTURES if pattern.search(normal)}
    if len(found) > 1:
        raise ValueError(f"names more than one architecture: {text!r}")
    architecture = found.pop() if found else None
    return service, rule.dimension, architecture


def parse_unit(text: str) -> str:
    """Normalise a row unit: ``Requests`` to ``request``, ``GiB-second`` to ``GB-second``.

    Executions and invocations are requests, an instance-hour is an ``hour``, and
    ``GiB-second`` is ``GB-second`` because the table's GB-second is 1024 MB of memory
    for one second. Data units stay apart: ``GB`` (10^9 bytes) and ``GiB`` (2^30 bytes).

    Raises
    ------
    ValueError
        For a unit outside that list.
    """
    unit = _UNITS.get(text.strip().casefold())
    if unit is None:
        known = ", ".join(sorted(set(_UNITS)))
        raise ValueError(f"is not a known unit: {text!r}; known units: {known}")
    return unit


def parse_tier(text: str, unit: str) -> TierText:
    """Read a tier text into bounds in `unit` per month.

    The forms, tried in this order:

    - empty, ``all``, ``above free grant``, ``beyond free tier`` or ``Tier N`` (a
      regional price tier), each with an optional remark in brackets: the whole range,
      0 to no end;
    - ``first paid tier (to Q U/month)``: 0 to Q;
    - ``first tier``, ``first tier only``, with an optional remark in brackets: from 0
      to the start of the next tier of the same price (`TierText.ends_at_next_tier`);
    - ``next W U/month (A-B U)``: A to B, where B - A must equal W;
    - ``>A U/month``: A to no end;
    - ``A-B U/month`` or ``A U-B U/month``: A to B. A bound without a unit takes the
      other bound's unit, or `unit` when neither has one.

    A quantity unit must denote `unit`: ``GB-s`` for GB-second, ``GB`` or ``TB`` for GB,
    ``GiB`` or ``TiB`` for GiB, with 1 TB = 1,024 GB and 1 TiB = 1,024 GiB. Numbers may
    have thousands separators (``6,000,000,000``) or an exponent (``6e9``).

    Raises
    ------
    ValueError
        For a text of no listed form, a unit that does not fit, a tier that ends before
        it starts, or a ``next`` tier whose width does not match its bounds.
    """
    normal = " ".join(text.casefold().split())
    if not normal or _WHOLE_RANGE.fullmatch(normal):
        return TierText(0.0, None)

    match = _FIRST_PAID.fullmatch(normal)
    if match:
        return _checked(TierText(0.0, _quantity(match["end"], match["end_unit"], unit)), text)
    if _FIRST.fullmatch(normal):
        return TierText(0.0, None, ends_at_next_tier=True)

    match = _NEXT.fullmatch(normal)
    if match:
        width_unit = match["width_unit"]
        start_unit = match["start_unit"] or match["end_unit"] or width_unit
        end_unit = match["end_unit"] or start_unit
        width = _quantity(match["width"], width_unit, unit)
        start = _quantity(match["start"], start_unit, unit)
        end = _quantity(match["end"], end_unit, unit)
        if not math.isclose(end - start, width, rel_tol=1e-9):
            raise ValueError(
                f"gives the next {width:g} {unit} but its bounds span {end - start:g} "
                f"{unit}: {text!r}"
            )
        return _checked(TierText(start, end), text)

    match = _ABOVE.fullmatch(normal)
    if match:
        return TierText(_quantity(match["start"], match["start_unit"], unit), None)

    match = _RANGE.fullmatch(normal)
    if match:
        start_unit = match["start_unit"] or match["end_unit"]
        end_unit = match["end_unit"] or start_unit
        tier = TierText(
            _quantity(match["start"], start_unit, unit), _quantity(match["end"], end_unit, unit)
        )
        return _checked(tier, text)

    raise ValueError(
        f"is not a known tier form: {text!r}. Expected e.g. 'all', 'first tier', "
        "'0-100 GB/month', '>150 TB/month' or 'next 40 TB/month (10-50 TB)'"
    )


def parse_free_allowance(text: str, unit: str) -> float | None:
    """Read a free-tier text into a monthly allowance in `unit`, or None.

    The text states an allowance when it starts with a monthly quantity such as
    ``1,000,000 requests/month`` or ``first 100 GB/month``; remarks after it are
    ignored. The quantity unit must denote `unit` (see `parse_tier`). These texts give
    no allowance (None): an empty text, one that contains ``not applied`` (the source's
    price does not include it) or ``not captured``, one that starts with ``see`` (a
    reference to another row), one that contains ``per function`` (not a monthly
    quantity) and one that starts with ``N months:`` (an offer for an account's first
    months).

    Raises
    ------
    ValueError
        For a text of no listed form, or a quantity unit that does not fit.
    """
    normal = " ".join(text.casefold().split())
    if not normal:
        return None
    if any(pattern.search(normal) for pattern in _NO_ALLOWANCE):
        return None
    match = _MONTHLY_QUANTITY.match(normal)
    if match is None:
        raise ValueError(
            f"is not a known free-tier form: {text!r}. Expected a monthly quantity such "
            "as '400,000 GB-s/month', or a text that says why there is none"
        )
    return _quantity(match["amount"], match["unit"], unit)


def parse_region(text: str) -> str:
    """Normalise a region: ``all`` and ``global`` become ``all``, others stay as written.

    Raises
    ------
    ValueError
        For a region that is not a lower-case id such as ``ap-northeast-1``.
    """
    region = text.strip()
    if region.casefold() in ("all", "global"):
        return ALL_REGIONS
    if not _REGION.fullmatch(region):
        raise ValueError(
            f"is not a region id: {text!r}. Expected e.g. 'us-east-1', 'eastus' or 'all'"
        )
    return region


def parse_as_of(text: str) -> dt.date | None:
    """Read the date of a price from a free-text source date: the latest date it states.

    A full date (``2026-09-24``, also inside ``2026-01-19T13:23:24Z``) counts as that
    day, a month (``2026-09``) as its first day and a lone year (``2024``) as 1 January.
    Every date these texts give is one on which the price was in force (an effective
    date, a fetch date, a file date), so the latest shows how recent the price is:
    ``effectiveStartDate 2017-01-01; fetched ~2026-09`` gives 2026-09-01. A text that
    states no date gives None, as long as it contains ``undated``.

    Raises
    ------
    ValueError
        For an impossible date, or a text with no date that does not contain ``undated``.
    """
    dates = [_date(m[1], m[2], m[3], text) for m in _DAY_DATE.finditer(text)]
    dates += [_date(m[1], m[2], "01", text) for m in _NUMERIC_MONTH.finditer(text)]
    dates += [dt.date(int(m[1]), 1, 1) for m in _YEAR.finditer(text)]
    if dates:
        return max(dates)
    if "undated" in text.casefold():
        return None
    raise ValueError(
        f"states no date and does not contain 'undated': {text!r}. Expected e.g. "
        "'2026-09-24', 'fetched ~2026-09' or 'page as stored (undated)'"
    )


def build_price_table(csv_path: str | Path) -> pd.DataFrame:
    """Read the CSV of prices into the long price table.

    Parameters
    ----------
    csv_path : str or Path
        CSV with the columns of `SOURCE_COLUMNS`; other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        The columns of `PRICE_SCHEMA`, one row per price and tier, sorted by provider,
        service, dimension, region, architecture (none first) and tier start. Text
        columns are ``string`` (``architecture`` is null when the price does not depend
        on it), numbers float64 with NaN for null, ``secondary`` bool and ``as_of``
        ``datetime.date`` objects or None.

    Raises
    ------
    InputError
        When the file cannot be read, a column is missing, or a cell does not follow the
        rules of this module. Also when the tiers of a price overlap, leave a gap or do
        not start at 0, or when they state two different free allowances. The message
        names the CSV line.
    """
    csv_path = Path(csv_path)
    rows = _read_source_rows(csv_path)
    rows = _resolve_tiers(rows, csv_path)
    rows.sort(key=lambda row: (*row.key, row.tier.start))

    records = [
        {
            "provider": row.provider,
            "service": row.service,
            "region": row.region,
            "dimension": row.dimension,
            "architecture": row.architecture,
            "unit": row.unit,
            "usd_per_unit": row.usd_per_unit,
            "tier_start": row.tier.start,
            "tier_end": row.tier.end,
            "free_allowance": row.free_allowance,
            "secondary": row.source.startswith(SECONDARY_MARK),
            "source": row.source,
            "as_of": row.as_of,
        }
        for row in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=PRICE_SCHEMA.names)
    for column in ("provider", "service", "region", "dimension", "architecture", "unit", "source"):
        frame[column] = frame[column].astype("string")
    for column in ("usd_per_unit", "tier_start", "tier_end", "free_allowance"):
        frame[column] = frame[column].astype("float64")
    frame["secondary"] = frame["secondary"].astype("bool")
    frame["as_of"] = frame["as_of"].astype("object")
    return frame


def write_price_table(frame: pd.DataFrame, out_path: str | Path) -> None:
    """Write a price-table DataFrame as Parquet with `PRICE_SCHEMA`.

    The same frame written with the same versions of pandas and pyarrow gives the same
    bytes, because the schema, row order, compression and metadata are all fixed.
    """
    table = pa.Table.from_pandas(frame, schema=PRICE_SCHEMA, preserve_index=False)
    pq.write_table(table, out_path, compression="zstd", compression_level=9)


def _read_source_rows(csv_path: Path) -> list[_PriceRow]:
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot be read as a UTF-8 CSV file: {exc}", file=csv_path) from exc

    missing = [column for column in SOURCE_COLUMNS if column not in raw.columns]
    if missing:
        raise InputError(
            f"lacks the column(s) {', '.join(missing)}. The price CSV needs the columns "
            + ", ".join(SOURCE_COLUMNS),
            file=csv_path,
        )

    rows = []
    for index, values in enumerate(raw.to_dict("records")):
        line = index + 2  # line 1 is the header
        row = _read_row(values, line, csv_path)
        if row is not None:
            rows.append(row)
    return rows


def _read_row(values: Mapping[Hashable, str], line: int, csv_path: Path) -> _PriceRow | None:
    """Read one CSV row, or return None for a bundle of free allowances."""

    def field(name: str) -> str:
        return f"line {line}.{name}"

    def parsed(name: str, parse: Callable[[str], _T]) -> _T:
        try:
            return parse(values[name])
        except ValueError as exc:
            raise InputError(str(exc), file=csv_path, field=field(name)) from exc

    unit = parsed("unit", parse_unit)
    usd_per_unit = parsed("usd_per_unit", _parse_usd)
    if unit == BUNDLE_UNIT:
        # A bundle lists free allowances of several dimensions and has no price of its
        # own, so it has no place in a table of prices.
        if usd_per_unit != 0:
            raise InputError(
                "is a bundle of free allowances but has a price; a bundle row must cost 0",
                file=csv_path,
                field=field("usd_per_unit"),
            )
        return None

    provider = values["provider"].strip().casefold()
    if not _PROVIDER.fullmatch(provider):
        raise InputError(
            "must be a provider id such as 'aws'",
            file=csv_path,
            field=field("provider"),
            value=values["provider"],
            has_value=True,
        )
    source = values["source"].strip()
    if not source:
        raise InputError("missing the source", file=csv_path, field=field("source"))

    service, dimension, architecture = parsed("service", parse_service)
    return _PriceRow(
        line=line,
        provider=provider,
        service=service,
        region=parsed("region", parse_region),
        dimension=dimension,
        architecture=architecture,
        unit=unit,
        usd_per_unit=usd_per_unit,
        tier=parsed("tier", lambda text: parse_tier(text, unit)),
        free_allowance=parsed("free_tier", lambda text: parse_free_allowance(text, unit)),
        source=source,
        as_of=parsed("source_date", parse_as_of),
    )


def _resolve_tiers(rows: list[_PriceRow], csv_path: Path) -> list[_PriceRow]:
    """End each open first tier at the next tier, share free allowances, check the tiers."""
    groups: dict[tuple[str, ...], list[_PriceRow]] = {}
    for row in rows:
        groups.setdefault(row.key, []).append(row)

    resolved = []
    for key, group in groups.items():
        group.sort(key=lambda row: row.tier.start)

        starts = [row.tier.start for row in group if row.tier.start > 0]
        next_start = min(starts) if starts else None
        group = [
            replace(row, tier=TierText(row.tier.start, next_start))
            if row.tier.ends_at_next_tier
            else row
            for row in group
        ]

        allowances = {row.free_allowance for row in group if row.free_allowance is not None}
        if len(allowances) > 1:
            lines = ", ".join(str(row.line) for row in group)
            raise InputError(
                f"the rows of {_describe_key(key)} (lines {lines}) state different free "
                f"allowances: {', '.join(f'{a:g}' for a in sorted(allowances))}",
                file=csv_path,
            )
        allowance = allowances.pop() if allowances else None
        group = [replace(row, free_allowance=allowance) for row in group]

        _check_contiguous(key, group, csv_path)
        resolved.extend(group)
    return resolved


def _check_contiguous(key: tuple[str, ...], group: list[_PriceRow], csv_path: Path) -> None:
    """Raise unless the tiers, sorted by start, start at 0 and each starts where one ends."""
    expected_start = 0.0
    for row in group:
        if row.tier.start != expected_start:
            raise InputError(
                f"the tiers of {_describe_key(key)} must start at 0 and follow one another "
                f"without gap or overlap, but this tier starts at {row.tier.start:g} {row.unit} "
                f"where {expected_start:g} is expected",
                file=csv_path,
                field=f"line {row.line}.tier",
            )
        expected_start = row.tier.end if row.tier.end is not None else math.inf


def _describe_key(key: tuple[str, ...]) -> str:
    provider, service, dimension, region, architecture = key
    text = f"{provider} {service} {dimension} in {region}"
    return f"{text} ({architecture})" if architecture else text


def _quantity(amount: str, quantity_unit: str | None, unit: str) -> float:
    value = float(amount.replace(",", ""))
    if quantity_unit is None:
        return value
    denoted, factor = _QUANTITY_UNITS[quantity_unit]
    if denoted != unit:
        raise ValueError(f"gives a quantity in {quantity_unit}, but the row's unit is {unit}")
    return value * factor


def _checked(tier: TierText, text: str) -> TierText:
    if tier.end is not None and tier.end <= tier.start:
        raise ValueError(f"ends at or before its start: {text!r}")
    return tier


def _parse_usd(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be a finite number of USD >= 0: {text!r}")
    return value


def _date(year: str, month: str, day: str, text: str) -> dt.date:
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError as exc:
        raise ValueError(f"contains the impossible date {year}-{month}-{day}: {text!r}") from exc


def main(argv: list[str] | None = None) -> int:
    """Build `OUT_PARQUET` from `SOURCE_CSV` and return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m allocation.price_build",
        description="Build the price table (prices.parquet) from the CSV of cloud prices "
        "and their sources.",
    )
    parser.add_argument("source_csv", type=Path, help="CSV of prices, one row per price and tier")
    parser.add_argument("out_parquet", type=Path, help="Parquet file to write")
    args = parser.parse_args(argv)

    try:
        frame = build_price_table(args.source_csv)
        write_price_table(frame, args.out_parquet)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out_parquet}: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {len(frame)} price rows to {args.out_parquet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
