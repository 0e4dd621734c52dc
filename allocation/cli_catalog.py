"""The ``allocation catalog`` commands: list the CPU catalog and import figures and prices.

``catalog cpus`` prints the CPU catalog as a table or as JSON, ``catalog import-cpus``
merges a CSV of the user's own PassMark figures into ``cpus.parquet`` and
``catalog import-prices`` merges an AWS price-list offer file into ``prices.parquet``.
Errors propagate to `allocation.cli.main`, which turns an `InputError` into exit
status 2 and other errors into 1. The catalog modules, which import pyarrow and pandas,
are imported when a command runs, so that building the parser stays fast.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from allocation.errors import AllocationError

if TYPE_CHECKING:
    from allocation.catalog import Cpu, CpuCatalog

__all__ = [
    "PRICES_UPDATED_EVENT",
    "add_catalog_commands",
    "catalog_resource",
    "run_catalog_command",
]

PRICES_UPDATED_EVENT = "allocation.prices.updated"
"""Prefect event sent by ``catalog import-prices --emit-event`` when rows changed."""

_EVENT_CHANGE_LINES = 50
"""Change sentences carried in the event's payload; the count gives the rest."""

_FIGURE_COLUMNS = ("single_thread", "cpu_mark", "integer_math", "floating_point_math")
_SOURCE_WIDTH = 60
"""Characters of the shortened source in the text table; ``--json`` gives it in full."""
_REPOSITORY_FILE = re.compile(r"(?P<prefix>SECONDARY: )?(?P<repository>[\w.-]+/[\w.-]+):\S")


def add_catalog_commands(commands: argparse._SubParsersAction) -> None:
    """Add the ``catalog`` command and its subcommands to the `allocation` parser."""
    catalog = commands.add_parser(
        "catalog",
        help="list the CPU catalog, or import your own CPU figures or AWS prices into it",
        description="List the CPU catalog, or merge your own PassMark figures or an AWS "
        "price-list offer file into a catalog folder.",
    )
    actions = catalog.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")

    cpus = actions.add_parser(
        "cpus",
        help="list the CPUs of the catalog",
        description="Print the CPU catalog as an aligned table: name, PassMark figures, "
        "cores, as_of date and a shortened source, followed by the aliases of the CPUs "
        "listed.",
    )
    cpus.add_argument(
        "--search",
        metavar="TEXT",
        default=None,
        help="list only CPUs whose name or one of whose aliases contains TEXT, ignoring case",
    )
    cpus.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of rows with every column, the full source and the aliases",
    )
    _add_catalog_option(cpus)

    import_cpus = actions.add_parser(
        "import-cpus",
        help="merge a CSV of your own PassMark figures into cpus.parquet",
        description="Merge a CSV with the columns cpu, source, as_of (YYYY-MM-DD) and any "
        "of cpu_mark, single_thread, integer_math, floating_point_math, cores, threads "
        "into cpus.parquet. For each figure the value with the newest as_of wins; every "
        "conflict is reported. The catalog is replaced atomically.",
    )
    import_cpus.add_argument("csv", type=Path, metavar="FILE.csv", help="CSV of figures")
    _add_catalog_option(import_cpus)
    import_cpus.add_argument(
        "--dry-run", action="store_true", help="report what would change and write nothing"
    )

    import_prices = actions.add_parser(
        "import-prices",
        help="merge an AWS price-list offer file into prices.parquet",
        description="Merge the Lambda and data-transfer prices of an AWS price-list offer "
        "file (JSON) into prices.parquet, and report the rows added and changed.",
    )
    import_prices.add_argument(
        "offer", type=Path, metavar="OFFER.json", help="AWS price-list offer file"
    )
    _add_catalog_option(import_prices)
    import_prices.add_argument(
        "--dry-run", action="store_true", help="report what would change and write nothing"
    )
    import_prices.add_argument(
        "--emit-event",
        action="store_true",
        help=f"after rows changed, send the Prefect event {PRICES_UPDATED_EVENT} to the server "
        "named by PREFECT_API_URL, so that a deployment trigger can re-evaluate the studies "
        "(docs/scheduling.md)",
    )

    refresh = actions.add_parser(
        "refresh-prices",
        help="update prices.parquet from a pricing provider's public price source",
        description="Update the rows of prices.parquet that a pricing provider reads, from "
        "its public price source, for providers that offer it (docs/providers.md). For "
        "aws-lambda the sources are AWS Price List offer files (AWSLambda, AWSDataTransfer). "
        "Only URLs given with --source are downloaded; paths are read offline.",
    )
    refresh.add_argument("provider", metavar="PROVIDER", help="pricing provider name")
    refresh.add_argument(
        "--source",
        action="append",
        default=[],
        required=True,
        metavar="PATH_OR_URL",
        help="a price source of the provider, as a path or an http(s) URL; repeat for more",
    )
    _add_catalog_option(refresh)
    refresh.add_argument(
        "--dry-run", action="store_true", help="report what would change and write nothing"
    )
    refresh.add_argument(
        "--emit-event",
        action="store_true",
        help=f"after rows changed, send the Prefect event {PRICES_UPDATED_EVENT} (as "
        "import-prices --emit-event does)",
    )


def _add_catalog_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        metavar="DIR",
        help="catalog folder (default: $ALLOCATION_CATALOG_DIR, ./catalogs, or the catalogs "
        "shipped with the tool)",
    )


def run_catalog_command(args: argparse.Namespace) -> int:
    """Run a ``catalog`` subcommand; return the exit status."""
    from allocation.study import default_catalog_dir

    catalog_dir = args.catalog if args.catalog is not None else default_catalog_dir()
    if args.catalog_command == "cpus":
        return _list_cpus(catalog_dir, search=args.search, as_json=args.json)
    if args.catalog_command == "import-cpus":
        return _import_cpus(args.csv, catalog_dir, dry_run=args.dry_run)
    if args.catalog_command == "refresh-prices":
        return _refresh_prices(args, catalog_dir)
    return _import_prices(
        args.offer, catalog_dir, dry_run=args.dry_run, emit=getattr(args, "emit_event", False)
    )


def _list_cpus(catalog_dir: Path, *, search: str | None, as_json: bool) -> int:
    from allocation.catalog import load_cpu_catalog

    catalog = load_cpu_catalog(catalog_dir / "cpus.parquet")
    cpus = [cpu for cpu in catalog.cpus if search is None or _matches(catalog, cpu, search)]

    if as_json:
        print(json.dumps([_json_row(catalog, cpu) for cpu in cpus], indent=2, ensure_ascii=False))
        return 0
    if not cpus:
        missing = "contains no CPU" if search is None else f"has no CPU matching {search!r}"
        print(f"{catalog.path} {missing}", file=sys.stderr)
        return 0

    print(_format_table(cpus))
    aliases = [alias for cpu in cpus for alias in catalog.aliases_of(cpu.name)]
    if aliases:
        print("\naliases (full sources with --json or in cpu-aliases.csv):")
        width = max(len(alias.alias) for alias in aliases)
        for alias in aliases:
            print(
                f"  {alias.alias.ljust(width)}  ->  {alias.cpu}  "
                f"({shorten_source(alias.source)}, as of {alias.as_of})"
            )
    return 0


def _matches(catalog: CpuCatalog, cpu: Cpu, search: str) -> bool:
    from allocation.catalog import name_key

    text = name_key(search)
    names = [cpu.name] + [alias.alias for alias in catalog.aliases_of(cpu.name)]
    return any(text in name_key(name) for name in names)


def _json_row(catalog: CpuCatalog, cpu: Cpu) -> dict[str, Any]:
    return {
        "cpu": cpu.name,
        **{figure: cpu.figure(figure) for figure in _FIGURE_COLUMNS},
        "cores": cpu.cores,
        "threads": cpu.threads,
        "as_of": None if cpu.as_of is None else cpu.as_of.isoformat(),
        "source": cpu.source,
        "aliases": [
            {"alias": alias.alias, "source": alias.source, "as_of": alias.as_of.isoformat()}
            for alias in catalog.aliases_of(cpu.name)
        ],
    }


def _format_table(cpus: list[Cpu]) -> str:
    header = ["name", *_FIGURE_COLUMNS, "cores", "as_of", "source"]
    rows = [
        [
            cpu.name,
            *(_format_number(cpu.figure(figure)) for figure in _FIGURE_COLUMNS),
            _format_number(cpu.cores),
            "-" if cpu.as_of is None else cpu.as_of.isoformat(),
            shorten_source(cpu.source),
        ]
        for cpu in cpus
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = range(1, 1 + len(_FIGURE_COLUMNS) + 1)

    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def shorten_source(source: str, width: int = _SOURCE_WIDTH) -> str:
    """Shorten a catalog ``source`` cell for a table.

    Each part ``figures: source (as of date)`` becomes its source up to the first
    bracketed remark, and a source written ``owner/repository:path@commit`` becomes
    ``owner/repository``. Repeated sources are listed once, and the result is cut to
    `width` characters with an ellipsis.
    """
    from allocation.catalog_build import FIGURES, SOURCE_SEPARATOR

    names: list[str] = []
    for part in source.split(SOURCE_SEPARATOR):
        figures, colon, rest = part.partition(": ")
        is_figure_list = all(name in FIGURES for name in figures.split(", "))
        text = rest if colon and is_figure_list else part
        text = text.split(" (")[0].strip()
        repository = _REPOSITORY_FILE.match(text)
        if repository is not None:
            text = (repository["prefix"] or "") + repository["repository"]
        if text and text not in names:
            names.append(text)
    short = SOURCE_SEPARATOR.join(names)
    return short if len(short) <= width else short[: width - 1] + "…"


def _format_number(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.10g}"


def _import_cpus(csv_path: Path, catalog_dir: Path, *, dry_run: bool) -> int:
    from allocation.catalog_build import import_cpu_figures

    try:
        report = import_cpu_figures(csv_path, catalog_dir / "cpus.parquet", dry_run=dry_run)
    except OSError as exc:
        raise AllocationError(
            f"cannot write the CPU catalog in {catalog_dir}: {exc}; it was left unchanged"
        ) from exc
    for line in report.lines():
        print(line)
    return 0


def _import_prices(offer_path: Path, catalog_dir: Path, *, dry_run: bool, emit: bool) -> int:
    if emit and not dry_run:
        _check_event_destination()
    try:
        from allocation.price_import import import_aws_offer
    except ModuleNotFoundError as exc:
        if exc.name != "allocation.price_import":
            raise
        raise AllocationError(
            "this installation of allocation has no price importer "
            "(module allocation.price_import); update the package"
        ) from exc

    try:
        report = import_aws_offer(offer_path, catalog_dir / "prices.parquet", dry_run=dry_run)
    except OSError as exc:
        raise AllocationError(
            f"importing {offer_path} into {catalog_dir / 'prices.parquet'} failed: {exc}"
        ) from exc
    for line in report.lines():
        print(line)
    if emit and not dry_run:
        if report.changes:
            event = emit_prices_updated(
                catalog_dir,
                prices_path=report.prices_path,
                source=f"{report.offer_code} version {report.version}",
                changes=report.lines(),
                changed_rows=report.added + report.changed + report.removed,
            )
            print(f"Sent the Prefect event {event.event} for {event.resource.id}")
        else:
            print("No row changed, so no Prefect event was sent")
    return 0


def _refresh_prices(args: argparse.Namespace, catalog_dir: Path) -> int:
    from allocation.price_import import refresh_prices

    emit = args.emit_event and not args.dry_run
    if emit:
        _check_event_destination()
    try:
        refresh = refresh_prices(
            args.provider, catalog_dir / "prices.parquet", args.source, dry_run=args.dry_run
        )
    except OSError as exc:
        raise AllocationError(
            f"refreshing {catalog_dir / 'prices.parquet'} failed: {exc}; it was left unchanged"
        ) from exc
    for line in refresh.lines:
        print(line)
    if emit:
        if refresh.changed_rows:
            event = emit_prices_updated(
                catalog_dir,
                prices_path=refresh.prices_path,
                source=f"{refresh.provider} refresh_prices",
                changes=list(refresh.lines),
                changed_rows=refresh.changed_rows,
            )
            print(f"Sent the Prefect event {event.event} for {event.resource.id}")
        else:
            print("No row changed, so no Prefect event was sent")
    return 0


def catalog_resource(catalog_dir: Path) -> dict[str, str]:
    """Return the Prefect resource of a catalog folder: an id stable for its absolute path.

    The id is ``allocation.catalog.`` and the first 16 hex digits of the SHA-256 of the
    path, so that a trigger can match one catalog or, with ``allocation.catalog.*``, all.
    """
    import hashlib

    path = str(Path(catalog_dir).resolve())
    digest = hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]
    return {
        "prefect.resource.id": f"allocation.catalog.{digest}",
        "prefect.resource.name": path,
    }


def emit_prices_updated(
    catalog_dir: Path, *, prices_path: Path, source: str, changes: list[str], changed_rows: int
) -> Any:
    """Send `PRICES_UPDATED_EVENT` for an update and wait until the client has sent it.

    Raises
    ------
    AllocationError
        When Prefect does not send the event (no API configured).
    """
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    event = emit_event(
        event=PRICES_UPDATED_EVENT,
        resource=catalog_resource(catalog_dir),
        payload={
            "prices_path": str(prices_path),
            "source": source,
            "changed_rows": changed_rows,
            "changes": changes[:_EVENT_CHANGE_LINES],
        },
    )
    if event is None:
        raise AllocationError(
            "Prefect did not send the event; set PREFECT_API_URL to a running Prefect server"
        )
    EventsWorker.drain_all(timeout=30)
    return event


def _check_event_destination() -> None:
    """Reject --emit-event before importing when no Prefect server is configured."""
    import os

    from allocation.errors import InputError

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.settings import PREFECT_API_URL

    if not (os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()):
        raise InputError(
            "is not set: --emit-event sends the event to a running Prefect server. Start one "
            "with `uv run prefect server start --host 127.0.0.1` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or drop --emit-event",
            file="environment",
            field="PREFECT_API_URL",
        )
