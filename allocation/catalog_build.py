"""Build the CPU catalog (`cpus.parquet`) from the CSV of PassMark figures and sources.

The CSV has one row per CPU and source, so a CPU may appear several times. The catalog
has one row per CPU, reconciled figure by figure:

- CPU names are compared case-insensitively after collapsing runs of spaces. The catalog
  keeps the spelling of the row with the newest date.
- Each figure comes from the row with the newest date that gives it. On equal dates a
  row whose source does not start with ``SECONDARY`` wins, then the earlier row.
- ``source`` names, for every source used, the figures taken from it and its date.
- ``as_of`` is the date of the oldest figure used in the row.

Dates are read from the free-text ``source_date`` column by `parse_source_date`.

Run as ``python -m allocation.catalog_build SOURCE_CSV OUT_PARQUET``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from allocation.errors import InputError

__all__ = [
    "CATALOG_SCHEMA",
    "build_cpu_catalog",
    "main",
    "parse_source_date",
    "write_cpu_catalog",
]

FLOAT_FIGURES = ("cpu_mark", "single_thread", "integer_math", "floating_point_math")
COUNT_FIGURES = ("cores", "threads")
FIGURES = FLOAT_FIGURES + COUNT_FIGURES
SOURCE_COLUMNS = ("cpu_model", *FIGURES, "source", "source_date")

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("cpu", pa.string(), nullable=False),
        pa.field("cpu_mark", pa.float64()),
        pa.field("single_thread", pa.float64()),
        pa.field("integer_math", pa.float64()),
        pa.field("floating_point_math", pa.float64()),
        pa.field("cores", pa.int64()),
        pa.field("threads", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("as_of", pa.date32(), nullable=False),
    ]
)
"""Column names and types of `cpus.parquet`."""

SECONDARY_MARK = "SECONDARY"
"""Prefix of a source that quotes PassMark figures second-hand."""

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_DAY_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_NUMERIC_MONTH = re.compile(r"(?<!\d)(\d{4})-(\d{2})(?![\d-])")
_NAMED_MONTH = re.compile(r"\b([A-Za-z]+)[-\s](\d{4})(?!\d)")
_YEAR = re.compile(r"(?<![\d-])((?:19|20)\d{2})(?![\d-])")


def parse_source_date(text: str) -> dt.date:
    """Parse a free-text source date into a date.

    The most precise statement in the text wins: a full date (``2023-10-27``), else a
    month (``May-2022``, ``May 2022`` or ``2022-05``) as its first day, else a year
    (``2022``) as 1 January. Words around the date are ignored, so
    ``"file used in a May-2022 project; newest testDate in file is 2022"`` gives
    2022-05-01.

    Raises
    ------
    ValueError
        When the text states no date, or two different dates at its most precise level.
    """
    days = {_date(m.group(1), m.group(2), m.group(3), text) for m in _DAY_DATE.finditer(text)}
    if days:
        return _single(days, text)

    # Full dates are gone, so a "YYYY-MM" match is a month and not the start of a day.
    months = {_date(m.group(1), m.group(2), "01", text) for m in _NUMERIC_MONTH.finditer(text)}
    for match in _NAMED_MONTH.finditer(text):
        month = _MONTHS.get(match.group(1).casefold())
        if month is not None:
            months.add(dt.date(int(match.group(2)), month, 1))
    if months:
        return _single(months, text)

    years = {dt.date(int(m.group(1)), 1, 1) for m in _YEAR.finditer(text)}
    if years:
        return _single(years, text)
    raise ValueError(f"states no date (expected e.g. 2023-10-27, May-2022 or 2022): {text!r}")


def _date(year: str, month: str, day: str, text: str) -> dt.date:
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError as exc:
        raise ValueError(f"contains the impossible date {year}-{month}-{day}: {text!r}") from exc


def _single(dates: set[dt.date], text: str) -> dt.date:
    if len(dates) > 1:
        listed = ", ".join(sorted(d.isoformat() for d in dates))
        raise ValueError(f"states several dates ({listed}), expected one: {text!r}")
    return next(iter(dates))


@dataclass(frozen=True)
class _SourceRow:
    """A parsed CSV row, with `line` its line number in the file."""

    line: int
    cpu: str
    figures: dict[str, float | int | None]
    source: str
    date: dt.date

    @property
    def is_secondary(self) -> bool:
        return self.source.startswith(SECONDARY_MARK)


def build_cpu_catalog(csv_path: str | Path) -> pd.DataFrame:
    """Reconcile the CSV of PassMark figures into one row per CPU.

    Parameters
    ----------
    csv_path : str or Path
        CSV with the columns ``cpu_model``, ``cpu_mark``, ``single_thread``,
        ``integer_math``, ``floating_point_math``, ``cores``, ``threads``, ``source`` and
        ``source_date``; other columns are ignored.

    Returns
    -------
    pandas.DataFrame
        The columns of `CATALOG_SCHEMA`, sorted by CPU name (case-insensitively). The four
        benchmark figures are float64, ``cores`` and ``threads`` Int64, ``cpu`` and
        ``source`` string, ``as_of`` ``datetime.date`` objects. A missing figure is null.

    Raises
    ------
    InputError
        When a column is missing, or a row has no CPU name, no source, an unreadable date,
        a figure that is not a positive number, or no figure at all.
    """
    csv_path = Path(csv_path)
    rows = _read_source_rows(csv_path)

    groups: dict[str, list[_SourceRow]] = {}
    for row in rows:
        groups.setdefault(row.cpu.casefold(), []).append(row)

    records = [_reconcile(groups[key]) for key in sorted(groups)]

    frame = pd.DataFrame.from_records(records, columns=CATALOG_SCHEMA.names)
    for column in FLOAT_FIGURES:
        frame[column] = frame[column].astype("float64")
    for column in COUNT_FIGURES:
        frame[column] = frame[column].astype("Int64")
    for column in ("cpu", "source"):
        frame[column] = frame[column].astype("string")
    frame["as_of"] = frame["as_of"].astype("object")
    return frame


def _read_source_rows(csv_path: Path) -> list[_SourceRow]:
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot be read as a UTF-8 CSV file: {exc}", file=csv_path) from exc

    missing = [column for column in SOURCE_COLUMNS if column not in raw.columns]
    if missing:
        raise InputError(
            f"lacks the column(s) {', '.join(missing)}. The source CSV needs the columns "
            + ", ".join(SOURCE_COLUMNS),
            file=csv_path,
        )

    rows = []
    for index, values in enumerate(raw.to_dict("records")):
        line = index + 2  # line 1 is the header
        cpu = " ".join(values["cpu_model"].split())
        source = values["source"].strip()
        if not cpu:
            raise InputError("missing the CPU name", file=csv_path, field=f"line {line}.cpu_model")
        if not source:
            raise InputError("missing the source", file=csv_path, field=f"line {line}.source")
        try:
            date = parse_source_date(values["source_date"])
        except ValueError as exc:
            raise InputError(str(exc), file=csv_path, field=f"line {line}.source_date") from exc

        figures = {name: _parse_figure(values[name], name, csv_path, line) for name in FIGURES}
        if all(value is None for value in figures.values()):
            raise InputError(
                "gives no figure. Fill in at least one figure or drop the row",
                file=csv_path,
                field=f"line {line}",
            )
        rows.append(_SourceRow(line=line, cpu=cpu, figures=figures, source=source, date=date))
    return rows


def _parse_figure(text: str, name: str, csv_path: Path, line: int) -> float | int | None:
    text = text.strip()
    if not text:
        return None
    field = f"line {line}.{name}"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(
            "must be a positive number or empty",
            file=csv_path,
            field=field,
            value=text,
            has_value=True,
        )
    if name in COUNT_FIGURES:
        if not value.is_integer():
            raise InputError(
                "must be a whole number", file=csv_path, field=field, value=text, has_value=True
            )
        return int(value)
    return value


def _reconcile(group: list[_SourceRow]) -> dict[str, object]:
    """Merge the rows of one CPU: each figure from the newest row that gives it."""

    def priority(row: _SourceRow) -> tuple[dt.date, bool, int]:
        return (row.date, not row.is_secondary, -row.line)

    newest = max(group, key=priority)
    record: dict[str, object] = {"cpu": newest.cpu}
    chosen: dict[str, _SourceRow] = {}
    for name in FIGURES:
        giving = [row for row in group if row.figures[name] is not None]
        if giving:
            chosen[name] = max(giving, key=priority)
        record[name] = chosen[name].figures[name] if giving else None

    # List each source once, with its figures in column order and sources in the order
    # of their first figure.
    by_source: dict[int, list[str]] = {}
    for name, row in chosen.items():
        by_source.setdefault(row.line, []).append(name)
    rows_by_line = {row.line: row for row in group}
    record["source"] = " | ".join(
        f"{', '.join(names)}: {rows_by_line[line].source} "
        f"(as of {rows_by_line[line].date.isoformat()})"
        for line, names in by_source.items()
    )
    record["as_of"] = min(row.date for row in chosen.values())
    return record


def write_cpu_catalog(frame: pd.DataFrame, out_path: str | Path) -> None:
    """Write a catalog DataFrame as Parquet with `CATALOG_SCHEMA`.

    The same frame written with the same versions of pandas and pyarrow gives the same
    bytes, because the schema, row order, compression and metadata are all fixed.
    """
    table = pa.Table.from_pandas(frame, schema=CATALOG_SCHEMA, preserve_index=False)
    pq.write_table(table, out_path, compression="zstd", compression_level=9)


def main(argv: list[str] | None = None) -> int:
    """Build `OUT_PARQUET` from `SOURCE_CSV` and return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m allocation.catalog_build",
        description="Build the CPU catalog (cpus.parquet) from the CSV of PassMark "
        "figures and their sources.",
    )
    parser.add_argument("source_csv", type=Path, help="CSV of figures, one row per CPU and source")
    parser.add_argument("out_parquet", type=Path, help="Parquet file to write")
    args = parser.parse_args(argv)

    try:
        frame = build_cpu_catalog(args.source_csv)
        write_cpu_catalog(frame, args.out_parquet)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out_parquet}: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {len(frame)} CPUs to {args.out_parquet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
