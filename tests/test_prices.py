"""Tests of the price table: the build rules, the committed table, loading and look-ups."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from allocation.errors import InputError
from allocation.price_build import (
    PRICE_SCHEMA,
    TierText,
    build_price_table,
    main,
    parse_as_of,
    parse_free_allowance,
    parse_region,
    parse_service,
    parse_tier,
    parse_unit,
    write_price_table,
)
from allocation.prices import PRICE_COLUMNS, PriceTable, TieredPrice, load_price_table

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
SOURCE_CSV = CATALOGS / "sources" / "prices-sources.csv"
COMMITTED_PARQUET = CATALOGS / "prices.parquet"

HEADER = "provider,service,region,unit,usd_per_unit,free_tier,tier,source,source_date\n"


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def duration_row(tier: str, usd: str = "0.0000166667", free_tier: str = "") -> str:
    return (
        f'aws,lambda-duration x86,us-east-1,GB-second,{usd},"{free_tier}","{tier}",src,2026-09-24'
    )


@pytest.fixture(scope="module")
def committed() -> pd.DataFrame:
    return pd.read_parquet(COMMITTED_PARQUET)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_price_table(COMMITTED_PARQUET)


# The committed table


def test_rebuild_matches_committed_table(committed: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(build_price_table(SOURCE_CSV), committed)


def test_committed_table_schema() -> None:
    assert pq.read_schema(COMMITTED_PARQUET).remove_metadata() == PRICE_SCHEMA
    assert tuple(PRICE_SCHEMA.names) == PRICE_COLUMNS


def test_rebuild_gives_identical_bytes(tmp_path: Path) -> None:
    first = tmp_path / "first.parquet"
    second = tmp_path / "second.parquet"
    write_price_table(build_price_table(SOURCE_CSV), first)
    write_price_table(build_price_table(SOURCE_CSV), second)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() == COMMITTED_PARQUET.read_bytes()


def test_committed_rows_have_provenance(committed: pd.DataFrame) -> None:
    assert (committed["source"].str.len() > 0).all()
    secondary = committed["source"].str.startswith("SECONDARY")
    assert (committed["secondary"] == secondary).all()
    dated = committed["as_of"].dropna()
    assert all(isinstance(value, dt.date) for value in dated)


def test_committed_bundle_row_left_out(committed: pd.DataFrame) -> None:
    source_rows = pd.read_csv(SOURCE_CSV)
    assert len(committed) == len(source_rows) - 1
    assert "bundle" not in set(committed["unit"])
    assert "free_tier" not in set(committed["dimension"])


def test_committed_lambda_us_east_1_x86_tiers(table: PriceTable) -> None:
    rows = table.rows("aws", "lambda", "duration", "us-east-1", "x86_64")

    assert [(r.tier_start, r.tier_end) for r in rows] == [
        (0.0, 6e9),
        (6e9, 15e9),
        (15e9, None),
    ]
    assert [r.usd_per_unit for r in rows] == [0.0000166667, 0.000015, 0.0000133334]
    assert {r.free_allowance for r in rows} == {400_000.0}
    assert {r.unit for r in rows} == {"GB-second"}


def test_committed_first_tier_ends_at_next_tier(table: PriceTable) -> None:
    rows = table.rows("aws", "lambda", "duration", "us-east-1", "arm64")

    assert [(r.tier_start, r.tier_end) for r in rows] == [(0.0, 7.5e9), (7.5e9, 18.75e9)]
    assert [r.secondary for r in rows] == [False, True]
    assert rows[1].as_of == dt.date(2024, 1, 1)


def test_committed_egress_tiers_in_gb(table: PriceTable) -> None:
    rows = table.rows("aws", "data-transfer", "egress_internet", "us-east-1")

    assert [(r.tier_start, r.tier_end, r.usd_per_unit) for r in rows] == [
        (0.0, 100.0, 0.0),
        (100.0, 10_240.0, 0.09),
        (10_240.0, 51_200.0, 0.085),
        (51_200.0, 153_600.0, 0.07),
        (153_600.0, None, 0.05),
    ]
    assert {r.free_allowance for r in rows} == {100.0}


def test_committed_tokyo_egress_has_no_free_allowance(table: PriceTable) -> None:
    (row,) = table.rows("aws", "data-transfer", "egress_internet", "ap-northeast-1")

    assert row.free_allowance is None
    assert (row.tier_start, row.tier_end, row.usd_per_unit) == (0.0, 10_240.0, 0.114)
    assert row.secondary


def test_committed_gcp_egress_in_gib(table: PriceTable) -> None:
    rows = table.rows("gcp", "cloud-run", "egress_internet_north_america", "us-central1")

    assert {r.unit for r in rows} == {"GiB"}
    assert [(r.tier_start, r.tier_end) for r in rows] == [
        (0.0, 1.0),
        (1.0, 10_240.0),
        (10_240.0, 153_600.0),
        (153_600.0, None),
    ]


def test_committed_undated_row_has_null_as_of(table: PriceTable) -> None:
    (row,) = table.rows("aws", "data-transfer", "ingress_internet", "ap-northeast-1")
    assert row.region == "all"
    assert row.as_of is None
    assert row.usd_per_unit == 0.0


# Build rules, cell by cell


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lambda-requests (x86)", ("lambda", "requests", "x86_64")),
        ("lambda-requests (arm64)", ("lambda", "requests", "arm64")),
        ("lambda-duration x86", ("lambda", "duration", "x86_64")),
        ("Lambda-Duration  ARM64", ("lambda", "duration", "arm64")),
        ("data-transfer-out (internet)", ("data-transfer", "egress_internet", None)),
        ("data-transfer-in (internet)", ("data-transfer", "ingress_internet", None)),
        ("ec2 c5.large (Linux, on-demand)", ("ec2:c5.large", "instance", None)),
        (
            "ec2 t3.medium (Linux, on-demand, shared tenancy)",
            ("ec2:t3.medium", "instance", None),
        ),
        (
            "cloud-run services CPU (request-based billing, Tier 1)",
            ("cloud-run", "cpu_request_based", None),
        ),
        (
            "cloud-run-functions (1st gen) memory Tier 2",
            ("cloud-run-functions-1st-gen", "memory", None),
        ),
    ],
)
def test_parse_service(text: str, expected: tuple[str, str, str | None]) -> None:
    assert parse_service(text) == expected


def test_parse_service_unknown_text() -> None:
    with pytest.raises(ValueError, match="not a known service text"):
        parse_service("ec2 c5.large (Windows, on-demand)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("request", "request"),
        ("Requests", "request"),
        ("execution", "request"),
        ("invocation", "request"),
        ("GiB-second", "GB-second"),
        ("GB-second", "GB-second"),
        ("GB", "GB"),
        ("GiB", "GiB"),
        ("instance-hour", "hour"),
    ],
)
def test_parse_unit(text: str, expected: str) -> None:
    assert parse_unit(text) == expected


def test_parse_unit_unknown() -> None:
    with pytest.raises(ValueError, match="not a known unit"):
        parse_unit("GB-month")


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("", "hour", TierText(0.0, None)),
        ("all", "request", TierText(0.0, None)),
        ("all (charged each direction)", "GB", TierText(0.0, None)),
        ("above free grant", "request", TierText(0.0, None)),
        ("beyond free tier", "GB-second", TierText(0.0, None)),
        ("Tier 2", "GHz-second", TierText(0.0, None)),
        ("0-6,000,000,000 GB-s/month", "GB-second", TierText(0.0, 6e9)),
        ("6e9-15e9 GB-s/month", "GB-second", TierText(6e9, 15e9)),
        (">15e9 GB-s/month", "GB-second", TierText(15e9, None)),
        ("first tier", "GB-second", TierText(0.0, None, ends_at_next_tier=True)),
        (
            "first tier (fixture lists a single tier 0-Inf)",
            "GB-second",
            TierText(0.0, None, ends_at_next_tier=True),
        ),
        (
            "first tier only (upper tiers not found)",
            "message",
            TierText(0.0, None, ends_at_next_tier=True),
        ),
        ("next 11.25e9 GB-s/month (7.5e9-18.75e9)", "GB-second", TierText(7.5e9, 18.75e9)),
        ("0-100 GB/month", "GB", TierText(0.0, 100.0)),
        ("0-100 GB", "GB", TierText(0.0, 100.0)),
        ("100 GB-10 TB/month", "GB", TierText(100.0, 10_240.0)),
        ("next 40 TB/month (10-50 TB)", "GB", TierText(10_240.0, 51_200.0)),
        (">150 TB/month", "GB", TierText(153_600.0, None)),
        ("first paid tier (to 10 TB/month)", "GB", TierText(0.0, 10_240.0)),
        ("100-10,335 GB/month", "GB", TierText(100.0, 10_335.0)),
        ("1 GiB-10 TiB/month", "GiB", TierText(1.0, 10_240.0)),
        ("10-150 TiB/month", "GiB", TierText(10_240.0, 153_600.0)),
    ],
)
def test_parse_tier(text: str, unit: str, expected: TierText) -> None:
    assert parse_tier(text, unit) == expected


def test_parse_tier_next_width_must_match_bounds() -> None:
    with pytest.raises(ValueError, match="next 40960 GB but its bounds span 20480"):
        parse_tier("next 40 TB/month (10-30 TB)", "GB")


def test_parse_tier_unit_must_fit_row() -> None:
    with pytest.raises(ValueError, match="quantity in gib, but the row's unit is GB"):
        parse_tier("0-1 GiB", "GB")


def test_parse_tier_end_before_start() -> None:
    with pytest.raises(ValueError, match="ends at or before its start"):
        parse_tier("100-10 GB/month", "GB")


def test_parse_tier_unknown_form() -> None:
    with pytest.raises(ValueError, match="not a known tier form"):
        parse_tier("up to 10 TB", "GB")


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("", "request", None),
        ("1,000,000 requests/month (always free)", "request", 1_000_000.0),
        ("400,000 GB-s/month (always free, shared x86+Arm)", "GB-second", 400_000.0),
        ("1,000,000 executions/month", "request", 1_000_000.0),
        ("2,000,000 invocations/month", "request", 2_000_000.0),
        ("360,000 GiB-s/month", "GB-second", 360_000.0),
        ("180,000 vCPU-s/month (billing account)", "vCPU-second", 180_000.0),
        ("100 GB/month free, summed across account", "GB", 100.0),
        ("first 100 GB/month", "GB", 100.0),
        ("1 GiB/month", "GiB", 1.0),
        ("100 GB/month account-wide free tier (not applied in source)", "GB", None),
        ("(different free tier; not captured)", "vCPU-second", None),
        ("see free tier row", "message", None),
        ("512 MB per function included", "GB-second", None),
        ("12 months: 500,000 messages per month", "message", None),
    ],
)
def test_parse_free_allowance(text: str, unit: str, expected: float | None) -> None:
    assert parse_free_allowance(text, unit) == expected


def test_parse_free_allowance_unknown_form() -> None:
    with pytest.raises(ValueError, match="not a known free-tier form"):
        parse_free_allowance("generous", "request")


def test_parse_free_allowance_unit_must_fit_row() -> None:
    with pytest.raises(ValueError, match="quantity in gb, but the row's unit is request"):
        parse_free_allowance("100 GB/month", "request")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-24", dt.date(2026, 9, 24)),
        ("effective_date 2026-09-23", dt.date(2026, 9, 23)),
        ("generated at 2026-01-19T13:23:24Z (file header)", dt.date(2026, 1, 19)),
        ("retail price effectiveStartDate 2017-01-01; fetched ~2026-09", dt.date(2026, 9, 1)),
        ("undated / 2026-01", dt.date(2026, 1, 1)),
        ("2024 (article title)", dt.date(2024, 1, 1)),
        ("page undated; API slice 2026-09-24", dt.date(2026, 9, 24)),
        ("page as stored (undated)", None),
        ("undated seed row", None),
    ],
)
def test_parse_as_of(text: str, expected: dt.date | None) -> None:
    assert parse_as_of(text) == expected


def test_parse_as_of_without_date_or_undated() -> None:
    with pytest.raises(ValueError, match="states no date"):
        parse_as_of("recently")


def test_parse_as_of_impossible_date() -> None:
    with pytest.raises(ValueError, match="impossible date 2026-02-30"):
        parse_as_of("2026-02-30")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("us-east-1", "us-east-1"), ("eastus", "eastus"), ("all", "all"), ("global", "all")],
)
def test_parse_region(text: str, expected: str) -> None:
    assert parse_region(text) == expected


def test_parse_region_rejects_free_text() -> None:
    with pytest.raises(ValueError, match="not a region id"):
        parse_region("all (except GovCloud)")


# Build rules across rows


def test_build_first_tier_without_next_is_unbounded(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", [duration_row("first tier")])
    frame = build_price_table(csv)
    assert frame.loc[0, "tier_start"] == 0.0
    assert math.isnan(frame.loc[0, "tier_end"])


def test_build_shares_free_allowance_across_tiers(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "p.csv",
        [
            duration_row(">6e9 GB-s/month", "0.000015"),
            duration_row("0-6e9 GB-s/month", free_tier="400,000 GB-s/month"),
        ],
    )
    frame = build_price_table(csv)
    assert list(frame["tier_start"]) == [0.0, 6e9]
    assert list(frame["free_allowance"]) == [400_000.0, 400_000.0]


def test_build_rejects_gap_between_tiers(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "p.csv",
        [duration_row("0-6e9 GB-s/month"), duration_row(">7e9 GB-s/month", "0.000015")],
    )
    with pytest.raises(InputError) as info:
        build_price_table(csv)
    message = str(info.value)
    assert "line 3.tier" in message
    assert "starts at 7e+09 GB-second where 6e+09 is expected" in message


def test_build_rejects_overlapping_tiers(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", [duration_row("all"), duration_row("all", "0.000015")])
    with pytest.raises(InputError, match=r"line 3\.tier"):
        build_price_table(csv)


def test_build_rejects_tiers_not_from_zero(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", [duration_row(">6e9 GB-s/month")])
    with pytest.raises(InputError, match="must start at 0"):
        build_price_table(csv)


def test_build_rejects_two_free_allowances(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "p.csv",
        [
            duration_row("0-6e9 GB-s/month", free_tier="400,000 GB-s/month"),
            duration_row(">6e9 GB-s/month", "0.000015", free_tier="300,000 GB-s/month"),
        ],
    )
    with pytest.raises(InputError, match="different free allowances: 300000, 400000"):
        build_price_table(csv)


def test_build_names_line_of_bad_cell(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "p.csv",
        [duration_row("all"), "aws,lambda-requests (x86),us-east-1,request,-1,,all,src,2026-09-24"],
    )
    with pytest.raises(InputError) as info:
        build_price_table(csv)
    assert "line 3.usd_per_unit" in str(info.value)
    assert "finite number of USD >= 0" in str(info.value)


def test_build_names_line_of_unknown_service(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", ["aws,lambda-snapstart,us-east-1,request,1,,all,src,2026"])
    with pytest.raises(InputError) as info:
        build_price_table(csv)
    assert "line 2.service" in str(info.value)
    assert "'lambda-snapstart'" in str(info.value)


def test_build_drops_bundle_row(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "p.csv",
        [duration_row("all"), 'aws,iot-core free tier,all,bundle,0,"12 months: 1 GB",,src,undated'],
    )
    assert len(build_price_table(csv)) == 1


def test_build_rejects_priced_bundle(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "p.csv", ["aws,iot-core free tier,all,bundle,5,,,src,undated"])
    with pytest.raises(InputError, match=r"line 2\.usd_per_unit"):
        build_price_table(csv)


def test_build_missing_column(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("provider,service\naws,lambda-duration x86\n", encoding="utf-8")
    with pytest.raises(InputError, match="lacks the column"):
        build_price_table(csv)


def test_build_command_writes_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prices.parquet"
    assert main([str(SOURCE_CSV), str(out)]) == 0
    assert out.read_bytes() == COMMITTED_PARQUET.read_bytes()
    assert "Wrote 57 price rows" in capsys.readouterr().out


def test_build_command_reports_bad_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(tmp_path / "p.csv", [duration_row("sometimes")])
    assert main([str(csv), str(tmp_path / "out.parquet")]) == 2
    assert "line 2.tier" in capsys.readouterr().err
    assert not (tmp_path / "out.parquet").exists()


# Loading


def committed_arrow() -> pa.Table:
    return pq.read_table(COMMITTED_PARQUET)


def test_load_committed_table(table: PriceTable) -> None:
    assert len(table.entries) == 57
    assert table.sha256 == hashlib.sha256(COMMITTED_PARQUET.read_bytes()).hexdigest()


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="price table not found"):
        load_price_table(tmp_path / "prices.parquet")


def test_load_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    path.write_text("provider,service\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        load_price_table(path)


def test_load_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "prices.parquet"
    pq.write_table(committed_arrow().drop_columns(["tier_end"]), path)
    with pytest.raises(InputError, match=r"lacks the column\(s\) tier_end"):
        load_price_table(path)


def test_load_wrong_column_type(tmp_path: Path) -> None:
    arrow = committed_arrow()
    index = arrow.schema.get_field_index("usd_per_unit")
    as_text = pa.array([str(value) for value in arrow.column("usd_per_unit").to_pylist()])
    path = tmp_path / "prices.parquet"
    pq.write_table(arrow.set_column(index, "usd_per_unit", as_text), path)

    with pytest.raises(InputError) as info:
        load_price_table(path)
    assert "column 'usd_per_unit' has type string" in str(info.value)
    assert "needs a number" in str(info.value)


def replaced_cell(column: str, row: int, value: object) -> pa.Table:
    arrow = committed_arrow()
    values = arrow.column(column).to_pylist()
    values[row] = value
    index = arrow.schema.get_field_index(column)
    return arrow.set_column(index, column, pa.array(values, type=arrow.schema.field(column).type))


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("usd_per_unit", -0.1, "finite number >= 0"),
        ("usd_per_unit", math.inf, "finite number >= 0"),
        ("architecture", "mips", "must be one of x86_64, arm64 or null"),
        ("tier_end", 0.0, "greater than tier_start"),
        ("region", "", "non-empty string"),
    ],
)
def test_load_rejects_bad_cell(tmp_path: Path, column: str, value: object, expected: str) -> None:
    path = tmp_path / "prices.parquet"
    pq.write_table(replaced_cell(column, 3, value), path)
    with pytest.raises(InputError) as info:
        load_price_table(path)
    assert f"row 3.{column}" in str(info.value)
    assert expected in str(info.value)


def test_load_rejects_gap_between_tiers(tmp_path: Path) -> None:
    # Row 2 is the us-east-1 egress tier from 100 GB; starting it at 200 GB leaves a gap.
    path = tmp_path / "prices.parquet"
    pq.write_table(replaced_cell("tier_start", 2, 200.0), path)
    with pytest.raises(InputError, match="egress_internet, region us-east-1 must start at 0"):
        load_price_table(path)


# Look-ups


def test_rows_fall_back_to_all_regions(table: PriceTable) -> None:
    (row,) = table.rows("gcp", "cloud-run", "requests", "us-central1")
    assert row.region == "all"


def test_rows_without_architecture_serve_every_architecture(table: PriceTable) -> None:
    rows = table.rows("aws", "data-transfer", "egress_internet", "us-east-1", "arm64")
    assert len(rows) == 5
    assert {r.architecture for r in rows} == {None}


def test_rows_unknown_region_lists_regions(table: PriceTable) -> None:
    with pytest.raises(InputError) as info:
        table.rows("aws", "lambda", "duration", "eu-west-1", "x86_64")
    message = str(info.value)
    assert "prices.parquet" in message
    assert "dimension duration, region eu-west-1, architecture x86_64" in message
    assert "regions with this price in the table: ap-northeast-1, us-east-1" in message


def test_rows_missing_architecture_lists_architectures(table: PriceTable) -> None:
    with pytest.raises(InputError) as info:
        table.rows("aws", "lambda", "requests", "us-east-1", "arm64")
    message = str(info.value)
    assert "dimension requests, region us-east-1, architecture arm64" in message
    assert "architectures with this price in us-east-1: x86_64" in message


def test_rows_unknown_dimension_lists_dimensions(table: PriceTable) -> None:
    with pytest.raises(InputError, match="dimensions of lambda in the table: duration, "):
        table.rows("aws", "lambda", "cpu", "us-east-1")


def test_rows_unknown_service_lists_services(table: PriceTable) -> None:
    with pytest.raises(InputError, match="services of azure in the table: bandwidth, "):
        table.rows("azure", "lambda", "duration", "eastus")


def test_regions_of_price(table: PriceTable) -> None:
    assert table.regions("aws", "lambda", "duration", "arm64") == ["ap-northeast-1", "us-east-1"]
    assert table.regions("aws", "lambda", "provisioned_concurrency", "arm64") == []


# Tiered prices


def test_tiered_price_us_east_1_egress(table: PriceTable) -> None:
    price = TieredPrice(table.rows("aws", "data-transfer", "egress_internet", "us-east-1"))
    monthly_gb = np.array([0.0, 50.0, 100.0, 1_000.0, 60_000.0, 1_000_000.0])

    expected = [
        0.0,
        0.0,
        0.0,
        900 * 0.09,
        10_140 * 0.09 + 40_960 * 0.085 + 8_800 * 0.07,
        10_140 * 0.09 + 40_960 * 0.085 + 102_400 * 0.07 + 846_400 * 0.05,
    ]
    np.testing.assert_allclose(price.monthly_usd(monthly_gb), expected, rtol=1e-12)
    assert price.first_tier_usd_per_unit == 0.09
    assert price.free_allowance == 100.0


def test_tiered_price_free_allowance_covers_first_units(table: PriceTable) -> None:
    price = TieredPrice(table.rows("aws", "lambda", "duration", "us-east-1", "x86_64"))
    monthly_gb_s = np.array([400_000.0, 500_000.0, 6e9 + 1e6])

    expected = [
        0.0,
        100_000 * 0.0000166667,
        (6e9 - 400_000) * 0.0000166667 + 1e6 * 0.000015,
    ]
    np.testing.assert_allclose(price.monthly_usd(monthly_gb_s), expected, rtol=1e-12)


def test_tiered_price_beyond_last_tier(table: PriceTable) -> None:
    price = TieredPrice(table.rows("aws", "lambda", "duration", "us-east-1", "arm64"), table.path)
    with pytest.raises(InputError) as info:
        price.monthly_usd(np.array([1e9, 2e10]))
    message = str(info.value)
    assert "prices.parquet" in message
    assert "no price above 18,750,000,000 GB-second per month" in message
    assert "a month needs 20,000,000,000 GB-second" in message


def test_tiered_price_rejects_mixed_prices(table: PriceTable) -> None:
    x86 = table.rows("aws", "lambda", "duration", "us-east-1", "x86_64")
    arm = table.rows("aws", "lambda", "duration", "us-east-1", "arm64")
    with pytest.raises(ValueError, match="from one price"):
        TieredPrice(x86 + arm)


def test_price_row_to_dict_is_plain_json(table: PriceTable) -> None:
    (row,) = table.rows("aws", "lambda", "duration", "ap-northeast-1", "arm64")
    data = row.to_dict()
    assert data["as_of"] == "2026-09-05"
    assert data["tier_end"] is None
    assert data["secondary"] is True
