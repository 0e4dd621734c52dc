"""The ``allocation catalog`` commands, and the CPU import behind ``import-cpus``.

Command-line cases run the CLI as a subprocess on real files, as a user runs it.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from allocation import catalog_build
from allocation.catalog import ALIASES_FILE, load_cpu_catalog
from allocation.catalog_build import import_cpu_figures
from allocation.cli import main
from allocation.errors import InputError
from tests.conftest import CATALOGS
from tests.test_cli import run_cli

IMPORT_HEADER = "cpu,single_thread,cpu_mark,cores,threads,source,as_of\n"


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    """A copy of the shipped catalog folder's CPU files."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    shutil.copyfile(CATALOGS / "cpus.parquet", folder / "cpus.parquet")
    shutil.copyfile(CATALOGS / ALIASES_FILE, folder / ALIASES_FILE)
    return folder


def write_import(path: Path, rows: list[str], header: str = IMPORT_HEADER) -> Path:
    path.write_text(header + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def catalog_rows(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "cpus.parquet").set_index("cpu")


# Listing


def test_cpus_lists_every_row(tmp_path: Path) -> None:
    result = run_cli("catalog", "cpus", "--catalog", str(CATALOGS), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    for column in ("name", "single_thread", "cpu_mark", "integer_math", "cores", "as_of"):
        assert column in header
    names = pd.read_parquet(CATALOGS / "cpus.parquet")["cpu"]
    table = lines[1 : 1 + len(names)]
    for name in names:
        assert any(line.startswith(name + " ") for line in table), name

    # Aligned: every row has its as_of date where the header has the as_of column.
    as_of_at = header.index("as_of")
    for line in table:
        dt.date.fromisoformat(line[as_of_at : as_of_at + 10])


def test_cpus_shortens_source(tmp_path: Path) -> None:
    result = run_cli("catalog", "cpus", "--catalog", str(CATALOGS), cwd=tmp_path)
    bcm = next(line for line in result.stdout.splitlines() if line.startswith("BCM2711 "))
    assert bcm.endswith("lainbo/cpu-mark | KushalVenugopal/Machine-Learning")


def test_cpus_search_by_name(tmp_path: Path) -> None:
    result = run_cli(
        "catalog", "cpus", "--search", "I7-10700", "--catalog", str(CATALOGS), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == 1
    assert rows[0].startswith("Intel Core i7-10700 @ 2.90GHz")
    assert "2922" in rows[0]


def test_cpus_search_by_alias(tmp_path: Path) -> None:
    result = run_cli(
        "catalog", "cpus", "--search", "pi 4 MODEL", "--catalog", str(CATALOGS), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("BCM2711 ")
    assert lines[2] == ""
    assert lines[3].startswith("aliases")
    assert any("Raspberry Pi 4 Model B" in line and "BCM2711" in line for line in lines[4:])


def test_cpus_json_rows(tmp_path: Path) -> None:
    result = run_cli(
        "catalog", "cpus", "--search", "bcm2711", "--json", "--catalog", str(CATALOGS), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert row["cpu"] == "BCM2711"
    assert row["single_thread"] == 597.0
    assert row["cores"] == 4
    assert row["as_of"] == "2022-05-01"
    assert "KushalVenugopal/Machine-Learning" in row["source"]
    aliases = {alias["alias"]: alias for alias in row["aliases"]}
    assert "Raspberry Pi 4 Model B" in aliases
    assert aliases["Raspberry Pi 4 Model B"]["as_of"]
    assert "raspberrypi/documentation" in aliases["Raspberry Pi 4 Model B"]["source"]


def test_cpus_search_without_match(tmp_path: Path) -> None:
    result = run_cli(
        "catalog", "cpus", "--search", "no such chip", "--catalog", str(CATALOGS), cwd=tmp_path
    )
    assert result.returncode == 0
    assert result.stdout == ""
    assert "no such chip" in result.stderr

    as_json = run_cli(
        "catalog",
        "cpus",
        "--search",
        "no such chip",
        "--json",
        "--catalog",
        str(CATALOGS),
        cwd=tmp_path,
    )
    assert json.loads(as_json.stdout) == []


def test_cpus_missing_catalog_exit_2(tmp_path: Path) -> None:
    result = run_cli("catalog", "cpus", "--catalog", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2
    assert "CPU catalog not found" in result.stderr
    assert "Traceback" not in result.stderr


# Importing CPU figures through the command line


def test_import_cpus_reports_conflicts(tmp_path: Path, catalog_dir: Path) -> None:
    csv = write_import(
        tmp_path / "bench.csv",
        [
            # Newer than the catalog's 597 (2022-05-01), named by an alias: this one wins.
            "Raspberry Pi 4 Model B,640,,,4,our bench (PerformanceTest 11),2024-03-01",
            # Older than the catalog's 2922 (2022-05-01): the catalog keeps its value.
            "Intel Core i7-10700 @ 2.90GHz,2900,,,,old notes,2020-01-01",
            # A CPU the catalog lacks.
            "Lab SoC X1,321,1234,4,,lab measurement,2025-06-30",
        ],
    )
    result = run_cli(
        "catalog", "import-cpus", str(csv), "--catalog", str(catalog_dir), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout

    bcm_conflict = next(line for line in out.splitlines() if line.startswith("conflict: BCM2711"))
    assert "single_thread" in bcm_conflict
    assert "597 (as of 2022-05-01, catalog)" in bcm_conflict
    assert "640 (as of 2024-03-01, bench.csv line 2)" in bcm_conflict
    assert "kept 640 from bench.csv line 2" in bcm_conflict

    i7_conflict = next(line for line in out.splitlines() if line.startswith("conflict: Intel"))
    assert "2922 (as of 2022-05-01, catalog)" in i7_conflict
    assert "2900 (as of 2020-01-01, bench.csv line 3)" in i7_conflict
    assert "kept 2922 from catalog" in i7_conflict

    assert "'Raspberry Pi 4 Model B' is catalog CPU 'BCM2711' (alias)" in out
    assert "new CPU 'Lab SoC X1'" in out
    assert "added: BCM2711 threads = 4" in out
    assert "2 conflict(s) (1 kept the imported value)" in out
    assert "wrote 33 CPUs" in out

    rows = catalog_rows(catalog_dir)
    assert rows.loc["BCM2711", "single_thread"] == 640.0
    assert rows.loc["BCM2711", "threads"] == 4
    assert rows.loc["BCM2711", "cpu_mark"] == 852.0
    assert (
        "single_thread, threads: our bench (PerformanceTest 11) (as of 2024-03-01)"
        in (rows.loc["BCM2711", "source"])
    )
    assert rows.loc["BCM2711", "as_of"] == dt.date(2022, 5, 1)  # oldest figure: cores
    assert rows.loc["Intel Core i7-10700 @ 2.90GHz", "single_thread"] == 2922.0

    new = rows.loc["Lab SoC X1"]
    assert new["single_thread"] == 321.0
    assert new["cpu_mark"] == 1234.0
    assert new["cores"] == 4
    assert new["source"] == "cpu_mark, single_thread, cores: lab measurement (as of 2025-06-30)"
    assert new["as_of"] == dt.date(2025, 6, 30)

    listed = run_cli(
        "catalog", "cpus", "--search", "lab soc", "--catalog", str(catalog_dir), cwd=tmp_path
    )
    assert listed.stdout.splitlines()[1].startswith("Lab SoC X1")


BAD_IMPORTS = [
    (IMPORT_HEADER, "BCM2711,-5,,,,bench,2024-03-01", "line 2.single_thread"),
    (IMPORT_HEADER, "BCM2711,fast,,,,bench,2024-03-01", "line 2.single_thread"),
    (IMPORT_HEADER, "BCM2711,nan,,,,bench,2024-03-01", "line 2.single_thread"),
    (IMPORT_HEADER, "BCM2711,,inf,,,bench,2024-03-01", "line 2.cpu_mark"),
    (IMPORT_HEADER, "BCM2711,,,2.5,,bench,2024-03-01", "line 2.cores"),
    (IMPORT_HEADER, "BCM2711,,,,0,bench,2024-03-01", "line 2.threads"),
    (IMPORT_HEADER, "BCM2711,700,,,,,2024-03-01", "line 2.source"),
    (IMPORT_HEADER, "BCM2711,700,,,,bench,", "line 2.as_of"),
    (IMPORT_HEADER, "BCM2711,700,,,,bench,03/01/2024", "line 2.as_of"),
    (IMPORT_HEADER, "BCM2711,700,,,,bench,2999-01-01", "line 2.as_of"),
    (IMPORT_HEADER, "BCM2711,,,,,bench,2024-03-01", "line 2: gives no figure"),
    (IMPORT_HEADER, ",700,,,,bench,2024-03-01", "line 2.cpu"),
    (IMPORT_HEADER, "BCM2711,700,bench,2024-03-01", "line 2: has 4 fields"),
    ("cpu,single_thread,speed_ghz,source,as_of\n", "BCM2711,700,1.5,b,2024-03-01", "line 1"),
    ("cpu,single_thread,as_of\n", "BCM2711,700,2024-03-01", "lacks the column(s) source"),
    ("cpu,single_thread,source\n", "BCM2711,700,bench", "lacks the column(s) as_of"),
    ("cpu,source,as_of\n", "BCM2711,bench,2024-03-01", "has no figure column"),
]


@pytest.mark.parametrize(("header", "row", "message"), [BAD_IMPORTS[0], BAD_IMPORTS[-4]])
def test_import_cpus_bad_csv_exit_2(
    tmp_path: Path, catalog_dir: Path, header: str, row: str, message: str
) -> None:
    before = (catalog_dir / "cpus.parquet").read_bytes()
    csv = write_import(tmp_path / "bad.csv", [row], header=header)
    result = run_cli(
        "catalog", "import-cpus", str(csv), "--catalog", str(catalog_dir), cwd=tmp_path
    )
    assert result.returncode == 2, result.stdout
    assert "bad.csv" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert (catalog_dir / "cpus.parquet").read_bytes() == before
    assert sorted(p.name for p in catalog_dir.iterdir()) == [ALIASES_FILE, "cpus.parquet"]


@pytest.mark.parametrize(("header", "row", "message"), BAD_IMPORTS)
def test_import_cpus_bad_csv_in_process(
    tmp_path: Path,
    catalog_dir: Path,
    capsys: pytest.CaptureFixture[str],
    header: str,
    row: str,
    message: str,
) -> None:
    """Every schema check, through `main` in this process to save interpreter start-ups."""
    before = (catalog_dir / "cpus.parquet").read_bytes()
    csv = write_import(tmp_path / "bad.csv", [row], header=header)
    status = main(["catalog", "import-cpus", str(csv), "--catalog", str(catalog_dir)])
    assert status == 2
    err = capsys.readouterr().err
    assert f"{csv}: " in err
    assert message in err
    assert (catalog_dir / "cpus.parquet").read_bytes() == before
    assert sorted(p.name for p in catalog_dir.iterdir()) == [ALIASES_FILE, "cpus.parquet"]


def test_import_cpus_dry_run_writes_nothing(tmp_path: Path, catalog_dir: Path) -> None:
    before = (catalog_dir / "cpus.parquet").read_bytes()
    csv = write_import(
        tmp_path / "bench.csv",
        ["BCM2711,640,,,,our bench,2024-03-01", "Lab SoC X1,321,,,,lab,2025-06-30"],
    )
    result = run_cli(
        "catalog", "import-cpus", str(csv), "--dry-run", "--catalog", str(catalog_dir), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "conflict: BCM2711 single_thread" in result.stdout
    assert "new CPU 'Lab SoC X1'" in result.stdout
    assert "dry run" in result.stdout
    assert (catalog_dir / "cpus.parquet").read_bytes() == before
    assert sorted(p.name for p in catalog_dir.iterdir()) == [ALIASES_FILE, "cpus.parquet"]


# The import itself, in process


def test_import_keeps_untouched_rows(tmp_path: Path, catalog_dir: Path) -> None:
    before = catalog_rows(catalog_dir)
    csv = write_import(tmp_path / "bench.csv", ["BCM2711,640,,,,our bench,2024-03-01"])
    import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    after = catalog_rows(catalog_dir)
    others = before.index != "BCM2711"
    pd.testing.assert_frame_equal(after[others], before[others])


def test_import_same_file_twice_changes_nothing(tmp_path: Path, catalog_dir: Path) -> None:
    csv = write_import(tmp_path / "bench.csv", ["BCM2711,640,,,,our bench,2024-03-01"])
    first = import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    assert first.written
    written = (catalog_dir / "cpus.parquet").read_bytes()

    second = import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    assert not second.written
    assert not second.changed
    assert second.changes == ()
    assert "nothing to change" in second.lines()[-1]
    assert (catalog_dir / "cpus.parquet").read_bytes() == written


def test_import_equal_dates_prefers_primary_source(tmp_path: Path, catalog_dir: Path) -> None:
    # The catalog's integer_math of this CPU comes from a SECONDARY source dated
    # 2023-11-15; a primary source of the same date replaces it.
    csv = write_import(
        tmp_path / "bench.csv",
        ["ARM Cortex-A72 4 Core 1500 MHz,6300,vendor sheet,2023-11-15"],
        header="cpu,integer_math,source,as_of\n",
    )
    report = import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    (conflict,) = report.conflicts
    assert conflict.kept_new
    assert "SECONDARY" in conflict.reason
    assert catalog_rows(catalog_dir).loc["ARM Cortex-A72 4 Core 1500 MHz", "integer_math"] == 6300


def test_import_equal_dates_keeps_first_value(tmp_path: Path, catalog_dir: Path) -> None:
    csv = write_import(
        tmp_path / "bench.csv",
        ["Lab SoC X1,300,,,,lab A,2025-01-01", "lab soc x1,310,,,,lab B,2025-01-01"],
    )
    report = import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    (conflict,) = report.conflicts
    assert not conflict.kept_new
    assert conflict.old is not None
    assert conflict.old.origin == "bench.csv line 2"
    rows = catalog_rows(catalog_dir)
    assert rows.loc["Lab SoC X1", "single_thread"] == 300.0
    assert "lab soc x1" not in rows.index


def test_import_matches_name_without_clock_suffix(tmp_path: Path, catalog_dir: Path) -> None:
    csv = write_import(tmp_path / "bench.csv", ["Intel Core i7-10700,,,,16,spec sheet,2024-01-01"])
    report = import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    assert report.new_cpus == ()
    rows = catalog_rows(catalog_dir)
    assert rows.loc["Intel Core i7-10700 @ 2.90GHz", "threads"] == 16
    assert "Intel Core i7-10700" not in rows.index


def test_import_result_loads_with_aliases(tmp_path: Path, catalog_dir: Path) -> None:
    csv = write_import(tmp_path / "bench.csv", ["Lab SoC X1,321,,,,lab,2025-06-30"])
    import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    catalog = load_cpu_catalog(catalog_dir / "cpus.parquet")
    assert catalog.lookup("Raspberry Pi 4 Model B", file="f", field="x").name == "BCM2711"
    assert catalog.lookup("lab soc x1", file="f", field="x").figure("single_thread") == 321.0


def test_import_write_failure_leaves_catalog(
    tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (catalog_dir / "cpus.parquet").read_bytes()

    def fail_midway(frame: pd.DataFrame, out_path: str | Path) -> None:
        Path(out_path).write_bytes(b"PAR1 partly written")
        raise OSError("No space left on device")

    monkeypatch.setattr(catalog_build, "write_cpu_catalog", fail_midway)
    csv = write_import(tmp_path / "bench.csv", ["BCM2711,640,,,,our bench,2024-03-01"])
    with pytest.raises(OSError, match="No space left"):
        import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    assert (catalog_dir / "cpus.parquet").read_bytes() == before
    assert sorted(p.name for p in catalog_dir.iterdir()) == [ALIASES_FILE, "cpus.parquet"]


def test_import_write_failure_exit_1(
    tmp_path: Path,
    catalog_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail(frame: pd.DataFrame, out_path: str | Path) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(catalog_build, "write_cpu_catalog", fail)
    csv = write_import(tmp_path / "bench.csv", ["BCM2711,640,,,,our bench,2024-03-01"])
    status = main(["catalog", "import-cpus", str(csv), "--catalog", str(catalog_dir)])
    assert status == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert "left unchanged" in err


def test_import_rejects_source_separator(tmp_path: Path, catalog_dir: Path) -> None:
    csv = write_import(tmp_path / "bench.csv", ["BCM2711,640,,,,bench | notes,2024-03-01"])
    with pytest.raises(InputError) as info:
        import_cpu_figures(csv, catalog_dir / "cpus.parquet")
    assert info.value.field == "line 2.source"


def test_import_rejects_empty_file(tmp_path: Path, catalog_dir: Path) -> None:
    csv = write_import(tmp_path / "bench.csv", [])
    with pytest.raises(InputError, match="no data rows"):
        import_cpu_figures(csv, catalog_dir / "cpus.parquet")


# Importing prices


class FakeReport:
    def lines(self) -> list[str]:
        return ["added: aws lambda duration us-east-1", "1 row added"]


def test_import_prices_calls_importer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def import_aws_offer(offer_path: Path, prices_path: Path, *, dry_run: bool) -> FakeReport:
        calls.append((offer_path, prices_path, dry_run))
        return FakeReport()

    fake = types.ModuleType("allocation.price_import")
    fake.import_aws_offer = import_aws_offer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "allocation.price_import", fake)

    offer = tmp_path / "offer.json"
    status = main(["catalog", "import-prices", str(offer), "--catalog", str(tmp_path), "--dry-run"])
    assert status == 0
    assert calls == [(offer, tmp_path / "prices.parquet", True)]
    assert capsys.readouterr().out.splitlines() == FakeReport().lines()


def test_import_prices_without_importer_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "allocation.price_import", None)
    status = main(["catalog", "import-prices", str(tmp_path / "offer.json")])
    assert status == 1
    assert "allocation.price_import" in capsys.readouterr().err


# CPU names given by alias in workflow and system files

ALIAS_WORKFLOW = """\
workflow: two-step
measured_on: Raspberry Pi 4 Model B
stages:
  - {id: decode, time_s: 0.5, pin: edge}
  - {id: infer, time_s: 2.0}
edges:
  - {from: decode, to: infer, bytes: 1000000}
"""

ALIAS_SYSTEM = """\
system: pi-and-cloud
devices:
  - id: edge
    cpu: raspberry pi 4 model b
  - id: gateway
    cpu: Lab Gateway Board
  - id: cloud
    cpu: {name: Example vCPU, single_thread: 2500, cores: 2}
    pricing: {provider: flat, usd_per_compute_s: 0.00001, usd_per_gb_out: 0.1}
links:
  - {between: [edge, gateway], bandwidth_mbps: 1000}
  - {between: [edge, cloud], bandwidth_mbps: 100}
"""


@pytest.fixture
def alias_inputs(tmp_path: Path, catalog_dir: Path) -> tuple[Path, Path]:
    with (catalog_dir / ALIASES_FILE).open("a", encoding="utf-8") as aliases:
        aliases.write("Lab Gateway Board,Intel Celeron J4125 @ 2.00GHz,our inventory,2026-01-15\n")
    workflow = tmp_path / "workflow.yaml"
    system = tmp_path / "system.yaml"
    workflow.write_text(ALIAS_WORKFLOW)
    system.write_text(ALIAS_SYSTEM)
    return workflow, system


def test_validate_accepts_alias(
    tmp_path: Path, catalog_dir: Path, alias_inputs: tuple[Path, Path]
) -> None:
    workflow, system = alias_inputs
    result = run_cli(
        "validate", str(workflow), str(system), "--catalog", str(catalog_dir), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "two-step on pi-and-cloud: 3 assignments" in result.stdout


def test_validate_unknown_alias_exit_2(
    tmp_path: Path, catalog_dir: Path, alias_inputs: tuple[Path, Path]
) -> None:
    workflow, system = alias_inputs
    system.write_text(ALIAS_SYSTEM.replace("Lab Gateway Board", "Lab Gateway Bored"))
    result = run_cli(
        "validate", str(workflow), str(system), "--catalog", str(catalog_dir), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "devices[1].cpu" in result.stderr
    assert "Lab Gateway Board" in result.stderr


def test_sweep_accepts_alias(
    prefect_harness: None, tmp_path: Path, catalog_dir: Path, alias_inputs: tuple[Path, Path]
) -> None:
    from flows.sweep import sweep

    workflow, system = alias_inputs
    out = tmp_path / "out"
    outcome = sweep(str(workflow), str(system), str(catalog_dir), str(out))
    assert outcome.space_size == 3
    front = pd.read_parquet(out / "front.parquet")
    assert set(front["at_infer"]) <= {"edge", "gateway", "cloud"}

    # The edge CPU is the aliased catalog row: infer all on the edge keeps its 2.0 s.
    patterns = pd.read_parquet(out / "patterns.parquet")
    all_edge = patterns[patterns["at_infer"] == "edge"]
    assert all_edge["latency_s"].iloc[0] == pytest.approx(2.5)
    report = (out / "report.md").read_text()
    assert "BCM2711" in report
    assert "Intel Celeron J4125" in report


@pytest.mark.parametrize(
    "args",
    [["catalog", "--help"], ["catalog", "cpus", "--help"], ["catalog", "import-cpus", "--help"]],
)
def test_catalog_help_exits_zero(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0
    assert "usage" in result.stdout
