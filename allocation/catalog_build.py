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

`import_cpu_figures` merges a user's own figures into an existing catalog by the same
rule, figure by figure, and reports every conflict.

Run as ``python -m allocation.catalog_build SOURCE_CSV OUT_PARQUET``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import io
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from allocation.catalog import Cpu, load_cpu_catalog, name_key, parse_iso_date
from allocation.errors import InputError

__all__ = [
    "CATALOG_SCHEMA",
    "CpuImportReport",
    "FigureChange",
    "FigureValue",
    "build_cpu_catalog",
    "import_cpu_figures",
    "main",
    "parse_source_date",
    "replace_cpu_catalog",
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
    return _catalog_frame(records)


def _catalog_frame(records: list[dict[str, object]]) -> pd.DataFrame:
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


# Import of a user's own figures into an existing catalog.

IMPORT_REQUIRED_COLUMNS = ("cpu", "source", "as_of")
"""Columns that a CSV of the user's own figures must have; each figure column is optional."""

SOURCE_SEPARATOR = " | "
"""Separator between the sources of one catalog row in its ``source`` column."""

_FIGURE_NAME = "|".join(FIGURES)
_PROVENANCE_PART = re.compile(
    rf"(?P<figures>(?:{_FIGURE_NAME})(?:, (?:{_FIGURE_NAME}))*): (?P<source>.+) "
    r"\(as of (?P<as_of>\d{4}-\d{2}-\d{2})\)",
    re.DOTALL,
)


@dataclass(frozen=True)
class FigureValue:
    """One figure of one CPU, with its source and date."""

    value: float | int
    source: str
    as_of: dt.date
    origin: str
    """Origin of the value, for reports: ``catalog`` or ``FILE line N``."""
    order: int
    """0 for a catalog value, else the CSV line; on equal dates the lower order wins."""

    @property
    def is_secondary(self) -> bool:
        """True when the source quotes PassMark second-hand."""
        return self.source.startswith(SECONDARY_MARK)

    def priority(self) -> tuple[dt.date, bool, int]:
        """Return the sort key of the reconciliation rule: the largest key wins."""
        return (self.as_of, not self.is_secondary, -self.order)

    def describe(self) -> str:
        """Return the value with its date and origin, for a report line."""
        return f"{_format_number(self.value)} (as of {self.as_of.isoformat()}, {self.origin})"


@dataclass(frozen=True)
class FigureChange:
    """An imported figure of one CPU, compared with the value the catalog had before."""

    cpu: str
    """Catalog name of the CPU."""
    figure: str
    old: FigureValue | None
    """The value before this row; None when the figure was missing."""
    new: FigureValue
    kept_new: bool
    """True when the imported value replaces the old one."""

    @property
    def is_conflict(self) -> bool:
        """True when the catalog and the import give different values."""
        return self.old is not None and self.old.value != self.new.value

    @property
    def reason(self) -> str:
        """Part of the reconciliation rule that chose the kept value."""
        if self.old is None:
            return "the catalog had no value"
        if self.old.as_of != self.new.as_of:
            return "newer as_of"
        if self.old.is_secondary != self.new.is_secondary:
            return f"same as_of, and the other source starts with {SECONDARY_MARK}"
        return "same as_of, and it was there first"

    def line(self) -> str:
        """Describe the change in one line of a report."""
        if self.old is None:
            return f"added: {self.cpu} {self.figure} = {self.new.describe()}"
        kept, dropped = (self.new, self.old) if self.kept_new else (self.old, self.new)
        if not self.is_conflict:
            return (
                f"same value: {self.cpu} {self.figure} = {_format_number(kept.value)}; "
                f"kept the source from {kept.origin} (as of {kept.as_of.isoformat()}), "
                f"{self.reason}"
            )
        return (
            f"conflict: {self.cpu} {self.figure}: {self.old.describe()} vs "
            f"{self.new.describe()}; kept {_format_number(kept.value)} from {kept.origin} "
            f"({self.reason}), dropped {_format_number(dropped.value)}"
        )


@dataclass(frozen=True)
class CpuImportReport:
    """Outcome of `import_cpu_figures`: notes on names, figure changes, the merged catalog."""

    csv_path: Path
    catalog_path: Path
    rows_read: int
    new_cpus: tuple[str, ...]
    notes: tuple[str, ...]
    """One line per CSV row that adds a CPU or names a catalog CPU another way."""
    changes: tuple[FigureChange, ...]
    """Every imported figure that the catalog lacked, or that it had with another
    value or another source; figures identical to the catalog's are left out."""
    frame: pd.DataFrame
    """The merged catalog, in the form `build_cpu_catalog` returns."""
    written: bool

    @property
    def conflicts(self) -> list[FigureChange]:
        """The changes where catalog and import give different values."""
        return [change for change in self.changes if change.is_conflict]

    @property
    def changed(self) -> bool:
        """True when the merged catalog differs from the catalog before the import."""
        return bool(self.new_cpus) or any(change.kept_new for change in self.changes)

    def lines(self) -> list[str]:
        """Describe the import in lines of text: notes on names, changes, a summary."""
        lines = list(self.notes)
        lines += [change.line() for change in self.changes]
        conflicts = self.conflicts
        added = sum(change.old is None for change in self.changes)
        lines.append(
            f"{self.rows_read} row(s) read from {self.csv_path}: {len(self.new_cpus)} new "
            f"CPU(s), {added} figure(s) added, {len(conflicts)} conflict(s) "
            f"({sum(change.kept_new for change in conflicts)} kept the imported value)"
        )
        if self.written:
            lines.append(f"wrote {len(self.frame)} CPUs to {self.catalog_path}")
        elif self.changed:
            lines.append(f"dry run: {self.catalog_path} left unchanged")
        else:
            lines.append(f"nothing to change in {self.catalog_path}")
        return lines


@dataclass(frozen=True)
class _ImportRow:
    line: int
    cpu: str
    figures: dict[str, float | int]
    """The figures the row gives; a figure left empty is absent."""
    source: str
    as_of: dt.date


@dataclass
class _Entry:
    """A catalog row during an import."""

    name: str
    figures: dict[str, FigureValue]
    record: dict[str, object]
    """The row as read, written back unchanged unless `changed` is set."""
    changed: bool = False


def import_cpu_figures(
    csv_path: str | Path, catalog_path: str | Path, *, dry_run: bool = False
) -> CpuImportReport:
    """Merge a CSV of the user's own PassMark figures into a `cpus.parquet` file.

    The CSV has the columns ``cpu``, ``source`` and ``as_of`` (an ISO date, not in the
    future) and any of the figure columns ``cpu_mark``, ``single_thread``,
    ``integer_math``, ``floating_point_math``, ``cores`` and ``threads``. A row names a
    CPU as a workflow file does: a catalog name, an alias or a name without clock
    suffix. Other names become new catalog rows.

    Each figure is reconciled by the rule of `build_cpu_catalog`, so the value with the
    newest date wins. On equal dates a source that does not start with ``SECONDARY``
    wins, then the value that was there first: the catalog's, then earlier CSV lines.
    A changed row's ``source`` lists every source it uses with its figures and date,
    and its ``as_of`` is the oldest of those dates. Unchanged rows, and catalog names,
    stay as they were.

    The file is replaced atomically: the merged catalog is written to a temporary file
    in the same folder, read back and checked, then moved over the old one with
    `os.replace`. With `dry_run`, or when nothing changes, nothing is written.

    Raises
    ------
    InputError
        When the CSV or the catalog is invalid; the message names the file, the line
        and the column.
    """
    csv_path = Path(csv_path)
    catalog_path = Path(catalog_path)
    catalog = load_cpu_catalog(catalog_path)
    rows = _read_import_rows(csv_path, today=dt.date.today())

    entries = {cpu.name: _catalog_entry(cpu, catalog_path) for cpu in catalog.cpus}
    new_names: dict[str, str] = {}
    notes: list[str] = []
    changes: list[FigureChange] = []
    for row in rows:
        found = catalog.find(row.cpu)
        if found is not None:
            name = found.name
            if name_key(row.cpu) != name_key(name):
                matched_by = "alias" if catalog.find_alias(row.cpu) else "name without clock suffix"
                notes.append(f"line {row.line}: {row.cpu!r} is catalog CPU {name!r} ({matched_by})")
        else:
            name = new_names.setdefault(name_key(row.cpu), row.cpu)
            if name not in entries:
                entries[name] = _Entry(name=name, figures={}, record={}, changed=True)
                notes.append(f"line {row.line}: new CPU {name!r}")
        changes += _merge_row(entries[name], row, origin=f"{csv_path.name} line {row.line}")

    records = [_entry_record(entries[name]) for name in sorted(entries, key=name_key)]
    frame = _catalog_frame(records)
    report = CpuImportReport(
        csv_path=csv_path,
        catalog_path=catalog_path,
        rows_read=len(rows),
        new_cpus=tuple(new_names.values()),
        notes=tuple(notes),
        changes=tuple(changes),
        frame=frame,
        written=False,
    )
    if dry_run or not report.changed:
        return report
    replace_cpu_catalog(frame, catalog_path)
    return dataclasses.replace(report, written=True)


def replace_cpu_catalog(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a catalog DataFrame over `path` atomically.

    The frame is written to a temporary file in the same folder, flushed to disk,
    checked with `allocation.catalog.load_cpu_catalog` and given the old file's
    permission bits, then renamed over `path` with `os.replace`. On any error the
    temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        write_cpu_catalog(frame, temporary)
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        load_cpu_catalog(temporary)
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _catalog_entry(cpu: Cpu, catalog_path: Path) -> _Entry:
    if cpu.as_of is None or not cpu.source:
        raise InputError(
            "has no source or no as_of date; an import needs both on every row. Rebuild the "
            "catalog with `python -m allocation.catalog_build`",
            file=catalog_path,
            field=f"row {cpu.name!r}",
        )

    values: dict[str, float | int | None] = {
        **{name: cpu.figure(name) for name in FLOAT_FIGURES},
        "cores": cpu.cores,
        "threads": cpu.threads,
    }
    record: dict[str, object] = {
        "cpu": cpu.name,
        **values,
        "source": cpu.source,
        "as_of": cpu.as_of,
    }
    present = {name: value for name, value in values.items() if value is not None}
    provenance = _parse_provenance(cpu.source)
    if provenance is None or set(provenance) != set(present):
        # A source text not written by this module: date every figure by the row's
        # as_of, which is the date of its oldest figure.
        provenance = {name: (cpu.source, cpu.as_of) for name in present}
    figures = {
        name: FigureValue(value, *provenance[name], origin="catalog", order=0)
        for name, value in present.items()
    }
    return _Entry(name=cpu.name, figures=figures, record=record)


def _parse_provenance(source: str) -> dict[str, tuple[str, dt.date]] | None:
    """Split a ``source`` cell into each figure's source and date.

    Returns None when the cell does not have the form ``figures: source (as of date)``,
    parts joined by `SOURCE_SEPARATOR`, that `build_cpu_catalog` writes.
    """
    provenance: dict[str, tuple[str, dt.date]] = {}
    for part in source.split(SOURCE_SEPARATOR):
        match = _PROVENANCE_PART.fullmatch(part)
        if match is None:
            return None
        try:
            as_of = dt.date.fromisoformat(match["as_of"])
        except ValueError:
            return None
        for name in match["figures"].split(", "):
            provenance[name] = (match["source"], as_of)
    return provenance


def _merge_row(entry: _Entry, row: _ImportRow, *, origin: str) -> list[FigureChange]:
    changes = []
    for name, value in row.figures.items():
        new = FigureValue(value, row.source, row.as_of, origin=origin, order=row.line)
        old = entry.figures.get(name)
        kept_new = old is None or new.priority() > old.priority()
        change = FigureChange(entry.name, name, old, new, kept_new)
        if kept_new:
            entry.figures[name] = new
            entry.changed = True
        if old is None or change.is_conflict or kept_new:
            changes.append(change)
    return changes


def _entry_record(entry: _Entry) -> dict[str, object]:
    if not entry.changed:
        return entry.record
    record: dict[str, object] = {"cpu": entry.name}
    groups: dict[tuple[str, dt.date], list[str]] = {}
    for name in FIGURES:
        figure = entry.figures.get(name)
        record[name] = None if figure is None else figure.value
        if figure is not None:
            groups.setdefault((figure.source, figure.as_of), []).append(name)
    record["source"] = SOURCE_SEPARATOR.join(
        f"{', '.join(names)}: {source} (as of {as_of.isoformat()})"
        for (source, as_of), names in groups.items()
    )
    record["as_of"] = min(as_of for _, as_of in groups)
    return record


def _read_import_rows(csv_path: Path, *, today: dt.date) -> list[_ImportRow]:
    if not csv_path.is_file():
        raise InputError("not found; give the path of a CSV file of figures", file=csv_path)
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot be read as a UTF-8 CSV file: {exc}", file=csv_path) from exc

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader, [])]
        _check_import_header(header, csv_path)
        rows = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            line = reader.line_num
            if len(cells) != len(header):
                raise InputError(
                    f"has {len(cells)} fields, but the header has {len(header)}",
                    file=csv_path,
                    field=f"line {line}",
                )
            values = {column: cell.strip() for column, cell in zip(header, cells, strict=True)}
            rows.append(_parse_import_row(values, csv_path, line, today))
    except csv.Error as exc:
        raise InputError(
            f"is not valid CSV: {exc}", file=csv_path, field=f"line {reader.line_num}"
        ) from exc
    if not rows:
        raise InputError("has no data rows below the header", file=csv_path)
    return rows


def _check_import_header(header: list[str], csv_path: Path) -> None:
    expected = (
        f"The columns are {', '.join(IMPORT_REQUIRED_COLUMNS)} and any of {', '.join(FIGURES)}"
    )
    for column in header:
        if column not in IMPORT_REQUIRED_COLUMNS and column not in FIGURES:
            raise InputError(
                f"unknown column {column!r}. {expected}", file=csv_path, field="line 1"
            )
        if header.count(column) > 1:
            raise InputError("appears twice in the header", file=csv_path, field=f"line 1.{column}")
    missing = [column for column in IMPORT_REQUIRED_COLUMNS if column not in header]
    if missing:
        raise InputError(
            f"lacks the column(s) {', '.join(missing)}. {expected}",
            file=csv_path,
            field="line 1",
        )
    if not any(column in FIGURES for column in header):
        raise InputError(f"has no figure column. {expected}", file=csv_path, field="line 1")


def _parse_import_row(
    values: dict[str, str], csv_path: Path, line: int, today: dt.date
) -> _ImportRow:
    cpu = " ".join(values["cpu"].split())
    if not cpu:
        raise InputError("missing the CPU name", file=csv_path, field=f"line {line}.cpu")

    source = values["source"]
    if not source:
        raise InputError(
            "missing the source; say where the figures come from",
            file=csv_path,
            field=f"line {line}.source",
        )
    if SOURCE_SEPARATOR in source or "\n" in source:
        raise InputError(
            f"must be one line without {SOURCE_SEPARATOR.strip()!r} between spaces, which "
            "separates the sources of a catalog row",
            file=csv_path,
            field=f"line {line}.source",
            value=source,
            has_value=True,
        )

    as_of_text = values["as_of"]
    if not as_of_text:
        raise InputError(
            "missing the date of the figures (YYYY-MM-DD)",
            file=csv_path,
            field=f"line {line}.as_of",
        )
    as_of = parse_iso_date(as_of_text)
    if as_of is None or as_of > today:
        expected = "an ISO date, YYYY-MM-DD" if as_of is None else f"a date up to {today}"
        raise InputError(
            f"must be {expected}",
            file=csv_path,
            field=f"line {line}.as_of",
            value=as_of_text,
            has_value=True,
        )

    figures: dict[str, float | int] = {}
    for name in FIGURES:
        value = _parse_figure(values.get(name, ""), name, csv_path, line)
        if value is not None:
            figures[name] = value
    if not figures:
        raise InputError(
            "gives no figure. Fill in at least one figure or drop the row",
            file=csv_path,
            field=f"line {line}",
        )
    return _ImportRow(line=line, cpu=cpu, figures=figures, source=source, as_of=as_of)


def _format_number(value: float | int) -> str:
    return f"{value:.10g}"


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
