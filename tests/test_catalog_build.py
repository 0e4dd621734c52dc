"""Tests of the CPU catalog build: the committed catalog, reconciliation and dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from allocation.catalog_build import (
    CATALOG_SCHEMA,
    build_cpu_catalog,
    main,
    parse_source_date,
    write_cpu_catalog,
)
from allocation.errors import InputError

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
SOURCE_CSV = CATALOGS / "sources" / "passmark-sources.csv"
COMMITTED_PARQUET = CATALOGS / "cpus.parquet"

HEADER = (
    "cpu_model,cpu_mark,single_thread,integer_math,floating_point_math,cores,threads,"
    "base_clock_ghz,source,source_date\n"
)


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def committed() -> pd.DataFrame:
    return pd.read_parquet(COMMITTED_PARQUET)


def test_rebuild_matches_committed_catalog(committed: pd.DataFrame) -> None:
    rebuilt = build_cpu_catalog(SOURCE_CSV)
    pd.testing.assert_frame_equal(rebuilt, committed)


def test_committed_catalog_schema() -> None:
    schema = pq.read_schema(COMMITTED_PARQUET)
    assert schema.remove_metadata() == CATALOG_SCHEMA


def test_rebuild_gives_identical_bytes(tmp_path: Path) -> None:
    first = tmp_path / "first.parquet"
    second = tmp_path / "second.parquet"
    write_cpu_catalog(build_cpu_catalog(SOURCE_CSV), first)
    write_cpu_catalog(build_cpu_catalog(SOURCE_CSV), second)
    assert first.read_bytes() == second.read_bytes()


def test_committed_one_row_per_cpu(committed: pd.DataFrame) -> None:
    names = committed["cpu"].str.casefold()
    assert names.is_unique
    source_names = pd.read_csv(SOURCE_CSV)["cpu_model"].str.strip().str.casefold()
    assert set(names) == set(source_names)


def test_committed_rows_have_provenance(committed: pd.DataFrame) -> None:
    assert committed["source"].notna().all()
    assert (committed["source"].str.len() > 0).all()
    assert committed["as_of"].notna().all()
    assert all(isinstance(value, dt.date) for value in committed["as_of"])


def test_committed_reference_cpus(committed: pd.DataFrame) -> None:
    rows = committed.set_index("cpu")
    bcm2711 = rows.loc["BCM2711"]
    assert bcm2711["single_thread"] == 597.0
    assert bcm2711["cpu_mark"] == 852.0  # the 2023-10-27 scrape, newer than 834 (2022)
    assert bcm2711["cores"] == 4
    assert bcm2711["as_of"] == dt.date(2022, 5, 1)
    i7 = rows.loc["Intel Core i7-10700 @ 2.90GHz"]
    assert i7["single_thread"] == 2922.0
    assert i7["cores"] == 8


def test_committed_keeps_secondary_mark(committed: pd.DataFrame) -> None:
    a72 = committed.set_index("cpu").loc["ARM Cortex-A72 4 Core 1500 MHz"]
    assert a72["integer_math"] == 6289.0
    assert "integer_math" in a72["source"]
    assert "SECONDARY: Baebel43/team5capstone" in a72["source"]


def test_reconcile_newest_figure_wins(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "cpus.csv",
        [
            "Chip X,100,50,,,4,,,old list,2021",
            "chip x ,120,,,,,,,new scrape,2023-10-27 (commit date)",
            "Chip Y,200,80,,,2,,,old list,2021",
        ],
    )
    catalog = build_cpu_catalog(csv)
    assert list(catalog["cpu"]) == ["chip x", "Chip Y"]
    chip_x = catalog.iloc[0]
    assert chip_x["cpu_mark"] == 120.0
    assert chip_x["single_thread"] == 50.0
    assert chip_x["cores"] == 4
    assert pd.isna(chip_x["threads"])
    assert pd.isna(chip_x["integer_math"])
    assert chip_x["as_of"] == dt.date(2021, 1, 1)
    assert chip_x["source"] == (
        "cpu_mark: new scrape (as of 2023-10-27) | "
        "single_thread, cores: old list (as of 2021-01-01)"
    )


def test_reconcile_as_of_oldest_figure(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "cpus.csv",
        [
            "Chip X,100,50,,,4,,,list A,May-2022",
            "Chip X,110,55,,,4,,,list B,2024-03-01",
        ],
    )
    chip_x = build_cpu_catalog(csv).iloc[0]
    assert chip_x["cpu_mark"] == 110.0
    assert chip_x["as_of"] == dt.date(2024, 3, 1)
    assert chip_x["source"] == "cpu_mark, single_thread, cores: list B (as of 2024-03-01)"


def test_reconcile_tie_prefers_primary_source(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "cpus.csv",
        [
            "Chip X,100,,,,4,,,SECONDARY: blog quoting PassMark,2023-10-27",
            "Chip X,90,,,,,,,PassMark list,2023-10-27",
            "Chip X,80,,,,,,,another PassMark list,2023-10-27",
        ],
    )
    chip_x = build_cpu_catalog(csv).iloc[0]
    assert chip_x["cpu_mark"] == 90.0
    assert chip_x["cores"] == 4
    assert chip_x["source"] == (
        "cpu_mark: PassMark list (as of 2023-10-27) | "
        "cores: SECONDARY: blog quoting PassMark (as of 2023-10-27)"
    )


def test_reconcile_output_types(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "cpus.csv", ["Chip X,100,50,,,4,8,,list,2022"])
    catalog = build_cpu_catalog(csv)
    assert list(catalog.columns) == CATALOG_SCHEMA.names
    assert catalog["cpu_mark"].dtype == "float64"
    assert catalog["cores"].dtype == "Int64"
    assert catalog["threads"].dtype == "Int64"
    assert catalog["cpu"].dtype == "string"
    assert catalog["source"].dtype == "string"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-10-27 (commit date)", dt.date(2023, 10, 27)),
        ("page accessed 2023-11-15 (per citation)", dt.date(2023, 11, 15)),
        ("post dated 2025-01-02", dt.date(2025, 1, 2)),
        (
            "file used in a May-2022 project (README); newest testDate in file is 2022",
            dt.date(2022, 5, 1),
        ),
        ("September 2021", dt.date(2021, 9, 1)),
        ("undated / 2026-01", dt.date(2026, 1, 1)),
        ("2024 (article title)", dt.date(2024, 1, 1)),
    ],
)
def test_parse_source_date(text: str, expected: dt.date) -> None:
    assert parse_source_date(text) == expected


@pytest.mark.parametrize(
    "text",
    ["undated", "page as stored (undated)", "2021-01-01 or 2022-02-02", "2023-02-30"],
)
def test_parse_source_date_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_source_date(text)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("Chip X,100,,,,4,,,list,undated", "line 2.source_date"),
        ("Chip X,-5,,,,4,,,list,2022", "line 2.cpu_mark"),
        ("Chip X,abc,,,,4,,,list,2022", "line 2.cpu_mark"),
        ("Chip X,100,,,,2.5,,,list,2022", "line 2.cores"),
        (",100,,,,4,,,list,2022", "line 2.cpu_model"),
        ("Chip X,100,,,,4,,,,2022", "line 2.source"),
        ("Chip X,,,,,,,,list,2022", "line 2"),
    ],
)
def test_build_rejects_invalid_row(tmp_path: Path, row: str, field: str) -> None:
    csv = write_csv(tmp_path / "cpus.csv", [row])
    with pytest.raises(InputError) as info:
        build_cpu_catalog(csv)
    assert info.value.field == field


def test_build_rejects_missing_column(tmp_path: Path) -> None:
    csv = tmp_path / "cpus.csv"
    csv.write_text("cpu_model,cpu_mark\nChip X,100\n", encoding="utf-8")
    with pytest.raises(InputError, match="source_date"):
        build_cpu_catalog(csv)


def test_main_writes_catalog(tmp_path: Path) -> None:
    out = tmp_path / "cpus.parquet"
    assert main([str(SOURCE_CSV), str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), build_cpu_catalog(SOURCE_CSV))


def test_main_invalid_csv_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "cpus.csv", ["Chip X,100,,,,4,,,list,undated"])
    out = tmp_path / "cpus.parquet"
    assert main([str(csv), str(out)]) == 2
    assert not out.exists()
    assert "states no date" in capsys.readouterr().err
