"""The CPU catalog (`cpus.parquet`) and the resolution of CPU references.

A CPU named in a workflow or system file is looked up case-insensitively. When no name
matches exactly, a name that differs only by a clock suffix (``" @ 2.90GHz"``) or by
spacing matches too, as long as exactly one catalog row does.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from allocation.errors import InputError
from allocation.model import SCORE_FIGURES, InlineCpu

__all__ = ["CPU_COLUMNS", "Cpu", "CpuCatalog", "load_cpu_catalog"]

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
        )


@dataclass(frozen=True)
class CpuCatalog:
    """The rows of a `cpus.parquet` file, indexed for lookup by name."""

    path: Path | None
    cpus: tuple[Cpu, ...]
    sha256: str

    def lookup(self, name: str, *, file: str | Path, field: str) -> Cpu:
        """Find a CPU by name.

        Raises
        ------
        InputError
            When no row matches, with the closest catalog names as suggestions.
        """
        wanted = name.strip().casefold()
        exact = [cpu for cpu in self.cpus if cpu.name.casefold() == wanted]
        if exact:
            return exact[0]
        key = _loose_key(name)
        loose = [cpu for cpu in self.cpus if _loose_key(cpu.name) == key]
        if len(loose) == 1:
            return loose[0]

        names = [cpu.name for cpu in self.cpus]
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
    """Read and check a `cpus.parquet` file.

    Raises
    ------
    InputError
        When the file is missing, is not Parquet, or lacks a column or has one of the
        wrong type.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "CPU catalog not found; pass --catalog DIR with a cpus.parquet in it", file=path
        )
    try:
        data = path.read_bytes()
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"is not a readable Parquet file: {exc}", file=path) from exc

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
        if row["cpu"] is None or (cores is not None and cores < 1):
            raise InputError(
                "every row needs a CPU name, and cores must be >= 1 or null",
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
            )
        )
    return CpuCatalog(path=path, cpus=tuple(cpus), sha256=hashlib.sha256(data).hexdigest())


def _check_types(table: pa.Table, path: Path) -> None:
    expected = {
        "cpu": pa.types.is_string,
        "source": pa.types.is_string,
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
