"""The CPU catalog (`cpus.parquet`), its aliases and the resolution of CPU references.

A CPU named in a workflow or system file is looked up case-insensitively, in this order:

1. a catalog name;
2. an alias from ``cpu-aliases.csv`` beside the catalog, such as
   ``Raspberry Pi 4 Model B`` for ``BCM2711`` (runs of spaces count as one space);
3. a catalog name that differs only by a clock suffix (``" @ 2.90GHz"``) or by spacing,
   as long as exactly one catalog row does.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from allocation.errors import InputError
from allocation.loading import MAX_CATALOG_FILE_BYTES, read_input_bytes
from allocation.model import SCORE_FIGURES, InlineCpu

__all__ = [
    "ALIASES_FILE",
    "ALIAS_COLUMNS",
    "CPU_COLUMNS",
    "Cpu",
    "CpuAlias",
    "CpuCatalog",
    "load_cpu_aliases",
    "load_cpu_catalog",
    "name_key",
    "parse_iso_date",
]

CPU_COLUMNS = (
    "cpu",
    "cpu_mark",
    "single_thread",
    "integer_math",
    "floating_point_math",
    "cores",
    "threads",
    "source",
    "as_of",
)

ALIASES_FILE = "cpu-aliases.csv"
"""File name of the aliases that `load_cpu_catalog` reads beside ``cpus.parquet``."""

ALIAS_COLUMNS = ("alias", "cpu", "source", "as_of")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK_SUFFIX = re.compile(r"\s*@\s*[0-9.]+\s*[gm]hz\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Cpu:
    """A CPU with its benchmark figures; a missing figure is None."""

    name: str
    cores: int | None
    """Physical cores; None when the catalog does not know them."""
    figures: dict[str, float | None]
    source: str
    as_of: dt.date | None
    threads: int | None = None
    """Hardware threads; None when the catalog does not know them."""

    def figure(self, name: str) -> float | None:
        """Return the PassMark figure `name`, or None when it is missing."""
        return self.figures.get(name)

    @classmethod
    def from_inline(cls, cpu: InlineCpu) -> Cpu:
        """Build a Cpu from a CPU written inline in an input file."""
        return cls(
            name=cpu.name,
            cores=cpu.cores,
            figures={figure: getattr(cpu, figure) for figure in SCORE_FIGURES},
            source="inline in the input file",
            as_of=None,
            threads=cpu.threads,
        )


@dataclass(frozen=True)
class CpuAlias:
    """A name that users know for a catalog CPU, with the source that states the mapping."""

    alias: str
    cpu: str
    """Catalog name of the CPU, spelled as in `cpus.parquet`."""
    source: str
    as_of: dt.date
    """Date on which the source was read and stated the mapping."""


@dataclass(frozen=True)
class CpuCatalog:
    """The rows of a `cpus.parquet` file, indexed for lookup by name."""

    path: Path | None
    cpus: tuple[Cpu, ...]
    sha256: str
    aliases: tuple[CpuAlias, ...] = ()
    aliases_sha256: str | None = None
    """SHA-256 of ``cpu-aliases.csv``; None when the catalog has no alias file."""

    def find_alias(self, name: str) -> CpuAlias | None:
        """Return the alias that `name` spells, ignoring case and runs of spaces, or None."""
        key = name_key(name)
        for alias in self.aliases:
            if name_key(alias.alias) == key:
                return alias
        return None

    def aliases_of(self, cpu_name: str) -> list[CpuAlias]:
        """Return the aliases of the catalog CPU `cpu_name`, in file order."""
        return [alias for alias in self.aliases if alias.cpu == cpu_name]

    def find(self, name: str) -> Cpu | None:
        """Find a CPU by catalog name, alias or name without clock suffix, in that order.

        Returns None when no row matches, or when the name without clock suffix matches
        several rows.
        """
        requested = name.strip().casefold()
        exact = [cpu for cpu in self.cpus if cpu.name.casefold() == requested]
        if exact:
            return exact[0]
        alias = self.find_alias(name)
        aliased = [cpu for cpu in self.cpus if alias is not None and cpu.name == alias.cpu]
        if aliased:
            return aliased[0]
        key = _loose_key(name)
        loose = [cpu for cpu in self.cpus if _loose_key(cpu.name) == key]
        if len(loose) == 1:
            return loose[0]
        return None

    def lookup(self, name: str, *, file: str | Path, field: str) -> Cpu:
        """Find a CPU by catalog name, alias or name without clock suffix.

        Raises
        ------
        InputError
            When no row matches, with the closest catalog names and aliases as
            suggestions.
        """
        found = self.find(name)
        if found is not None:
            return found

        key = _loose_key(name)
        loose = [cpu for cpu in self.cpus if _loose_key(cpu.name) == key]
        names = [cpu.name for cpu in self.cpus] + [alias.alias for alias in self.aliases]
        if loose:
            hint = "; it matches several rows: " + ", ".join(repr(c.name) for c in loose)
        else:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
            if not close:
                close = [n for n in names if key.split(" ")[-1] in _loose_key(n)][:3]
            hint = (
                ("; closest catalog names: " + ", ".join(repr(c) for c in close)) if close else ""
            )
        where = f"catalog {self.path}" if self.path else "the CPU catalog"
        raise InputError(
            f"CPU {name!r} is not in {where}{hint}; use a catalog name or describe the "
            "CPU inline as {name, cores, single_thread, ...}",
            file=file,
            field=field,
        )


def load_cpu_catalog(path: str | Path) -> CpuCatalog:
    """Read and check a `cpus.parquet` file and the aliases beside it.

    The aliases are read from ``cpu-aliases.csv`` in the same folder when that file
    exists (see `load_cpu_aliases`).

    Raises
    ------
    InputError
        When the file is missing, is not Parquet, or lacks a column or has one of the
        wrong type, or when the alias file is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "CPU catalog not found; pass --catalog DIR with a cpus.parquet in it", file=path
        )
    data = read_input_bytes(
        path, max_bytes=MAX_CATALOG_FILE_BYTES, hint="a CPU catalog is normally kilobytes"
    )
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"is not a readable Parquet file ({exc}); rebuild the catalog with "
            "`python -m allocation.catalog_build` or restore the file",
            file=path,
        ) from exc

    missing = [column for column in CPU_COLUMNS if column not in table.column_names]
    if missing:
        raise InputError(
            f"lacks the column(s) {', '.join(missing)}; a CPU catalog has the columns "
            + ", ".join(CPU_COLUMNS),
            file=path,
        )
    _check_types(table, path)

    rows = table.select(list(CPU_COLUMNS)).to_pylist()
    cpus = []
    for i, row in enumerate(rows):
        cores = row["cores"]
        threads = row["threads"]
        if (
            row["cpu"] is None
            or (cores is not None and cores < 1)
            or (threads is not None and threads < 1)
        ):
            raise InputError(
                "every row needs a CPU name, and cores and threads must be >= 1 or null",
                file=path,
                field=f"row {i}",
            )
        figures = {}
        for figure in SCORE_FIGURES:
            value = row[figure]
            if value is not None and not (value > 0 and value < float("inf")):
                raise InputError(
                    f"{figure} must be a positive finite number or null",
                    file=path,
                    field=f"row {i} ({row['cpu']}).{figure}",
                    value=value,
                    has_value=True,
                )
            figures[figure] = value
        cpus.append(
            Cpu(
                name=row["cpu"],
                cores=None if cores is None else int(cores),
                figures=figures,
                source=row["source"] or "",
                as_of=row["as_of"],
                threads=None if threads is None else int(threads),
            )
        )

    aliases: tuple[CpuAlias, ...] = ()
    aliases_sha256 = None
    aliases_path = path.parent / ALIASES_FILE
    if aliases_path.is_file():
        aliases, aliases_sha256 = load_cpu_aliases(aliases_path, [cpu.name for cpu in cpus])
    return CpuCatalog(
        path=path,
        cpus=tuple(cpus),
        sha256=hashlib.sha256(data).hexdigest(),
        aliases=aliases,
        aliases_sha256=aliases_sha256,
    )


def load_cpu_aliases(path: str | Path, cpu_names: list[str]) -> tuple[tuple[CpuAlias, ...], str]:
    """Read and check a ``cpu-aliases.csv`` file against the names of a catalog.

    The file has the columns ``alias``, ``cpu``, ``source`` and ``as_of`` (an ISO date,
    ``YYYY-MM-DD``). Names are compared ignoring case and runs of spaces.

    Returns
    -------
    aliases : tuple of CpuAlias
        In file order, each with `cpu` spelled as the catalog spells it.
    sha256 : str
        SHA-256 of the file's bytes.

    Raises
    ------
    InputError
        When a column is missing or unknown, a cell is empty or a date is not ISO. Also
        when an alias names a CPU that is not in the catalog, is already a catalog name,
        or appears twice. The message names the line and column.
    """
    path = Path(path)
    data = read_input_bytes(
        path, max_bytes=MAX_CATALOG_FILE_BYTES, hint="an alias file is normally kilobytes"
    )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"is not valid UTF-8 (byte {exc.start}); save the file as UTF-8", file=path
        ) from exc

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader, [])]
        unknown = [column for column in header if column not in ALIAS_COLUMNS]
        missing = [column for column in ALIAS_COLUMNS if column not in header]
        if unknown or missing:
            problems = [f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []
            problems += [f"missing column(s) {', '.join(missing)}"] if missing else []
            raise InputError(
                f"{'; '.join(problems)}. An alias file has the columns " + ", ".join(ALIAS_COLUMNS),
                file=path,
                field="line 1",
            )

        catalog_names = {name_key(name): name for name in cpu_names}
        first_line: dict[str, int] = {}
        aliases = []
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise InputError(
                    f"has {len(cells)} fields, but the header has {len(header)}",
                    file=path,
                    field=f"line {line}",
                )
            values = {column: cell.strip() for column, cell in zip(header, cells, strict=True)}
            aliases.append(_parse_alias(values, catalog_names, first_line, path, line))
    except csv.Error as exc:
        raise InputError(
            f"is not valid CSV: {exc}", file=path, field=f"line {reader.line_num}"
        ) from exc
    return tuple(aliases), hashlib.sha256(data).hexdigest()


def _parse_alias(
    values: dict[str, str],
    catalog_names: dict[str, str],
    first_line: dict[str, int],
    path: Path,
    line: int,
) -> CpuAlias:
    for column in ALIAS_COLUMNS:
        if not values[column]:
            raise InputError(
                "is empty; every alias row needs an alias, a cpu, a source and an as_of date",
                file=path,
                field=f"line {line}.{column}",
            )

    alias = values["alias"]
    key = name_key(alias)
    if key in catalog_names:
        raise InputError(
            f"is already the name of the catalog CPU {catalog_names[key]!r}; an alias must "
            "differ from every catalog name",
            file=path,
            field=f"line {line}.alias",
            value=alias,
            has_value=True,
        )
    if key in first_line:
        raise InputError(
            f"repeats the alias of line {first_line[key]}; give each alias once",
            file=path,
            field=f"line {line}.alias",
            value=alias,
            has_value=True,
        )
    first_line[key] = line

    cpu = catalog_names.get(name_key(values["cpu"]))
    if cpu is None:
        close = difflib.get_close_matches(values["cpu"], list(catalog_names.values()), n=3)
        hint = f"; closest catalog names: {', '.join(map(repr, close))}" if close else ""
        raise InputError(
            f"names a CPU that is not in the catalog{hint}; write a `cpu` value of cpus.parquet",
            file=path,
            field=f"line {line}.cpu",
            value=values["cpu"],
            has_value=True,
        )

    as_of = parse_iso_date(values["as_of"])
    if as_of is None:
        raise InputError(
            "must be an ISO date, YYYY-MM-DD",
            file=path,
            field=f"line {line}.as_of",
            value=values["as_of"],
            has_value=True,
        )
    return CpuAlias(alias=alias, cpu=cpu, source=values["source"], as_of=as_of)


def parse_iso_date(text: str) -> dt.date | None:
    """Parse a ``YYYY-MM-DD`` date; return None for any other text or an impossible date."""
    if not _ISO_DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def name_key(name: str) -> str:
    """Return a CPU name or alias in the form used to compare names.

    The form is case-folded, with runs of whitespace collapsed to one space.
    """
    return " ".join(name.casefold().split())


def _is_text(arrow_type: pa.DataType) -> bool:
    # pandas writes strings as large_string; both read the same.
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _check_types(table: pa.Table, path: Path) -> None:
    expected = {
        "cpu": _is_text,
        "source": _is_text,
        "as_of": pa.types.is_date,
        "cores": pa.types.is_integer,
        "threads": pa.types.is_integer,
    }
    for figure in SCORE_FIGURES:
        expected[figure] = lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)
    for column, check in expected.items():
        column_type = table.schema.field(column).type
        if not (check(column_type) or pa.types.is_null(column_type)):
            raise InputError(
                f"column {column!r} has type {column_type}, which a CPU catalog does not "
                "accept; rebuild the catalog with `python -m allocation.catalog_build`",
                file=path,
                field=column,
            )


def _loose_key(name: str) -> str:
    return " ".join(_CLOCK_SUFFIX.sub("", name).casefold().split())
