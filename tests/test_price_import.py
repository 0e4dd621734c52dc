"""Tests of importing AWS Price List offer files into the price table."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from allocation import price_import
from allocation.errors import InputError
from allocation.price_build import PRICE_SCHEMA
from allocation.price_import import (
    SUPPORTED_OFFERS,
    PriceTarget,
    classify_product,
    import_aws_offer,
    main,
)
from allocation.prices import PriceRow, PriceTable, load_price_table
from allocation.pricing import PricingContext
from allocation_providers.aws_lambda import AwsLambdaProvider

REPO = Path(__file__).resolve().parents[1]
COMMITTED_PARQUET = REPO / "catalogs" / "prices.parquet"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LAMBDA_OFFER = FIXTURES / "aws-offer-lambda.json"
DATA_TRANSFER_OFFER = FIXTURES / "aws-offer-data-transfer.json"

LAMBDA_SOURCE = "AWS Price List offer file AWSLambda version 20261001080000"
DATA_TRANSFER_SOURCE = "AWS Price List offer file AWSDataTransfer version 20261001090000"
PUBLISHED = dt.date(2026, 10, 1)

TOKYO_X86_DURATION_SKU = "T4KX8Q2RNB7M3WZA"
TOKYO_X86_DURATION_TERM = (
    f"terms.OnDemand.{TOKYO_X86_DURATION_SKU}.{TOKYO_X86_DURATION_SKU}.JRTCKXETXF"
)

Key = tuple[str, str, str, str, str | None]

LAMBDA_KEYS: set[Key] = {
    ("aws", "lambda", dimension, region, architecture)
    for dimension in ("duration", "requests")
    for region in ("ap-northeast-1", "us-east-1")
    for architecture in ("x86_64", "arm64")
}
DATA_TRANSFER_KEYS: set[Key] = {
    ("aws", "data-transfer", "egress_internet", "ap-northeast-1", None),
    ("aws", "data-transfer", "egress_internet", "us-east-1", None),
    ("aws", "data-transfer", "ingress_internet", "ap-northeast-1", None),
}


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    """Copy the committed price table, so that no test writes the committed one."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    path = folder / "prices.parquet"
    shutil.copyfile(COMMITTED_PARQUET, path)
    return path


def key_of(row: PriceRow) -> Key:
    return (row.provider, row.service, row.dimension, row.region, row.architecture)


def tiers(table: PriceTable, key: Key) -> list[tuple[float, float | None, float]]:
    rows = sorted((r for r in table.entries if key_of(r) == key), key=lambda r: r.tier_start)
    return [(r.tier_start, r.tier_end, r.usd_per_unit) for r in rows]


def rows_of(table: PriceTable, key: Key) -> list[PriceRow]:
    return [r for r in table.entries if key_of(r) == key]


def edited_offer(tmp_path: Path, source: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Write a copy of an offer fixture after `edit` has changed its parsed JSON."""
    offer = json.loads(source.read_text(encoding="utf-8"))
    edit(offer)
    path = tmp_path / f"edited-{source.name}"
    path.write_text(json.dumps(offer), encoding="utf-8")
    return path


def first_dimension(offer: dict[str, Any], sku: str) -> dict[str, Any]:
    (term,) = offer["terms"]["OnDemand"][sku].values()
    return min(term["priceDimensions"].values(), key=lambda d: float(d["beginRange"]))


def first_rate_code(sku: str) -> str:
    offer = json.loads(LAMBDA_OFFER.read_text(encoding="utf-8"))
    return str(first_dimension(offer, sku)["rateCode"])


def folder_listing(path: Path) -> list[str]:
    return sorted(child.name for child in path.parent.iterdir())


# Lambda


def test_lambda_import_tiers_and_rates(prices: Path) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)
    table = load_price_table(prices)

    tokyo = ("aws", "lambda", "duration", "ap-northeast-1")
    assert tiers(table, (*tokyo, "x86_64")) == [
        (0.0, 6e9, 0.0000166667),
        (6e9, None, 0.000015),
    ]
    assert tiers(table, (*tokyo, "arm64")) == [
        (0.0, 7.5e9, 0.0000133334),
        (7.5e9, None, 0.0000120001),
    ]
    assert tiers(table, ("aws", "lambda", "duration", "us-east-1", "x86_64")) == [
        (0.0, 6e9, 0.0000166667),
        (6e9, 15e9, 0.000015),
        (15e9, None, 0.0000133334),
    ]
    assert tiers(table, ("aws", "lambda", "duration", "us-east-1", "arm64")) == [
        (0.0, 7.5e9, 0.0000133334),
        (7.5e9, None, 0.0000120001),
    ]
    for region in ("ap-northeast-1", "us-east-1"):
        for architecture in ("x86_64", "arm64"):
            key = ("aws", "lambda", "requests", region, architecture)
            assert tiers(table, key) == [(0.0, None, 0.0000002)]


def test_lambda_import_units_and_provenance(prices: Path) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)
    table = load_price_table(prices)

    for key in LAMBDA_KEYS:
        rows = rows_of(table, key)
        assert rows, key
        for row in rows:
            assert row.unit == ("GB-second" if key[2] == "duration" else "request")
            assert row.source == LAMBDA_SOURCE
            assert row.as_of == PUBLISHED
            assert row.secondary is False


def test_lambda_import_report_counts(prices: Path) -> None:
    report = import_aws_offer(LAMBDA_OFFER, prices)

    # Added: the second tiers in Tokyo and the arm64 requests of us-east-1.
    assert report.added == 3
    assert report.changed == 10
    assert report.unchanged == 0
    assert report.removed == 0
    # Skipped: provisioned concurrency and the free tier, one dimension each.
    assert report.skipped == 2
    assert report.offer_code == "AWSLambda"
    assert report.version == "20261001080000"
    assert report.as_of == PUBLISHED


def test_import_keeps_replaced_allowance(prices: Path) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)
    table = load_price_table(prices)

    x86_duration = rows_of(table, ("aws", "lambda", "duration", "us-east-1", "x86_64"))
    assert {row.free_allowance for row in x86_duration} == {400_000.0}
    x86_requests = rows_of(table, ("aws", "lambda", "requests", "us-east-1", "x86_64"))
    assert {row.free_allowance for row in x86_requests} == {1_000_000.0}
    tokyo_duration = rows_of(table, ("aws", "lambda", "duration", "ap-northeast-1", "x86_64"))
    assert {row.free_allowance for row in tokyo_duration} == {None}


def test_import_new_price_has_no_free_allowance(prices: Path) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)
    table = load_price_table(prices)

    arm_requests = rows_of(table, ("aws", "lambda", "requests", "us-east-1", "arm64"))
    assert [row.free_allowance for row in arm_requests] == [None]


@pytest.mark.parametrize(
    ("offer", "imported"),
    [(LAMBDA_OFFER, LAMBDA_KEYS), (DATA_TRANSFER_OFFER, DATA_TRANSFER_KEYS)],
)
def test_import_leaves_other_rows_untouched(prices: Path, offer: Path, imported: set[Key]) -> None:
    before = load_price_table(prices)
    import_aws_offer(offer, prices)
    after = load_price_table(prices)

    others_before = [row for row in before.entries if key_of(row) not in imported]
    others_after = [row for row in after.entries if key_of(row) not in imported]
    assert others_after == others_before
    assert len(others_before) > 0


# Data transfer


def test_data_transfer_import_egress_tiers(prices: Path) -> None:
    import_aws_offer(DATA_TRANSFER_OFFER, prices)
    table = load_price_table(prices)

    assert tiers(table, ("aws", "data-transfer", "egress_internet", "ap-northeast-1", None)) == [
        (0.0, 10_240.0, 0.114),
        (10_240.0, 51_200.0, 0.089),
        (51_200.0, None, 0.086),
    ]
    assert tiers(table, ("aws", "data-transfer", "egress_internet", "us-east-1", None)) == [
        (0.0, 10_240.0, 0.09),
        (10_240.0, 51_200.0, 0.085),
        (51_200.0, 153_600.0, 0.07),
        (153_600.0, None, 0.05),
    ]
    for key in DATA_TRANSFER_KEYS:
        for row in rows_of(table, key):
            assert row.unit == "GB"
            assert row.source == DATA_TRANSFER_SOURCE
            assert row.as_of == PUBLISHED
            assert row.secondary is False


def test_data_transfer_import_ingress(prices: Path) -> None:
    import_aws_offer(DATA_TRANSFER_OFFER, prices)
    table = load_price_table(prices)

    key = ("aws", "data-transfer", "ingress_internet", "ap-northeast-1", None)
    assert tiers(table, key) == [(0.0, None, 0.0)]
    # The row for every region stays, for the regions that the offer file does not give.
    everywhere = ("aws", "data-transfer", "ingress_internet", "all", None)
    assert tiers(table, everywhere) == [(0.0, None, 0.0)]


def test_egress_import_keeps_allowance(prices: Path) -> None:
    import_aws_offer(DATA_TRANSFER_OFFER, prices)
    table = load_price_table(prices)

    virginia = rows_of(table, ("aws", "data-transfer", "egress_internet", "us-east-1", None))
    assert {row.free_allowance for row in virginia} == {100.0}


def test_data_transfer_import_report_counts(prices: Path) -> None:
    report = import_aws_offer(DATA_TRANSFER_OFFER, prices)

    assert report.added == 3
    assert report.changed == 5
    assert report.unchanged == 0
    # us-east-1's free first tier (0 to 100 GB at $0) is not in the offer file.
    assert report.removed == 1
    assert report.skipped == 1


# Repeated import, dry run, report and written file


@pytest.mark.parametrize("offer", [LAMBDA_OFFER, DATA_TRANSFER_OFFER])
def test_second_import_changes_nothing(prices: Path, offer: Path) -> None:
    first = import_aws_offer(offer, prices)
    written = prices.read_bytes()
    second = import_aws_offer(offer, prices)

    assert second.added == 0
    assert second.changed == 0
    assert second.removed == 0
    assert second.unchanged == first.added + first.changed + first.unchanged
    assert second.skipped == first.skipped
    assert second.lines() == []
    assert prices.read_bytes() == written


def test_dry_run_writes_nothing(prices: Path) -> None:
    original = prices.read_bytes()
    listing = folder_listing(prices)

    dry = import_aws_offer(LAMBDA_OFFER, prices, dry_run=True)

    assert prices.read_bytes() == original
    assert folder_listing(prices) == listing
    assert dry.dry_run is True
    assert dry.summary().startswith("Would import AWSLambda")

    real = import_aws_offer(LAMBDA_OFFER, prices)
    assert (dry.added, dry.changed, dry.unchanged, dry.removed, dry.skipped) == (
        real.added,
        real.changed,
        real.unchanged,
        real.removed,
        real.skipped,
    )
    assert dry.lines() == real.lines()


def test_report_lines_describe_each_change(prices: Path) -> None:
    report = import_aws_offer(DATA_TRANSFER_OFFER, prices)
    lines = report.lines()

    assert len(lines) == report.added + report.changed + report.removed
    assert (
        "Added aws data-transfer egress_internet in ap-northeast-1, tier 10,240 to 51,200 GB: "
        "0.089 USD per GB." in lines
    )
    assert (
        "Changed aws data-transfer egress_internet in us-east-1, tier 0 to 100 GB → 0 to "
        "10,240 GB: 0 → 0.09 USD per GB. It replaces a price from another source, as of "
        "2026-09-23." in lines
    )
    assert (
        "Removed aws data-transfer egress_internet in us-east-1, tier 100 to 10,240 GB: "
        "0.09 USD per GB. The offer file has no tier that starts there." in lines
    )


def test_report_names_replaced_offer_version(prices: Path, tmp_path: Path) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)

    def raise_tokyo_x86_rate(offer: dict[str, Any]) -> None:
        offer["version"] = "20261101080000"
        offer["publicationDate"] = "2026-11-01T08:00:00Z"
        first_dimension(offer, TOKYO_X86_DURATION_SKU)["pricePerUnit"]["USD"] = "0.0000170000"

    newer = edited_offer(tmp_path, LAMBDA_OFFER, raise_tokyo_x86_rate)
    report = import_aws_offer(newer, prices)

    assert report.changed == 13
    assert (
        "Changed aws lambda duration in ap-northeast-1 (x86_64), tier 0 to 6,000,000,000 "
        "GB-second: 0.0000166667 → 0.000017 USD per GB-second. It replaces the price from "
        f"{LAMBDA_SOURCE}, as of 2026-10-01." in report.lines()
    )


def test_report_summary_counts(prices: Path) -> None:
    report = import_aws_offer(DATA_TRANSFER_OFFER, prices)

    assert report.summary() == (
        f"Imported AWSDataTransfer version 20261001090000 into {prices}. Rows: 3 added, "
        "5 changed, 0 unchanged, 1 removed. Skipped 1 price dimension of products outside "
        "the mapping."
    )


def test_changes_follow_table_order(prices: Path) -> None:
    report = import_aws_offer(LAMBDA_OFFER, prices)
    order = [
        (c.row.service, c.row.dimension, c.row.region, c.row.architecture or "", c.row.tier_start)
        for c in report.changes
    ]

    assert order == sorted(order)


def test_written_table_keeps_schema_and_order(prices: Path) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)
    import_aws_offer(DATA_TRANSFER_OFFER, prices)

    assert pq.read_schema(prices).remove_metadata() == PRICE_SCHEMA
    rows = load_price_table(prices).entries
    order = [
        (r.provider, r.service, r.dimension, r.region, r.architecture or "", r.tier_start)
        for r in rows
    ]
    assert order == sorted(order)


def test_written_table_keeps_file_mode(prices: Path) -> None:
    prices.chmod(0o640)
    import_aws_offer(LAMBDA_OFFER, prices)

    assert stat.S_IMODE(prices.stat().st_mode) == 0o640


def test_import_leaves_no_temporary_file(prices: Path) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)

    assert folder_listing(prices) == ["prices.parquet"]


def test_committed_table_untouched_by_tests() -> None:
    # Every test works on a copy, so the committed table still loads as built.
    table = load_price_table(COMMITTED_PARQUET)
    assert rows_of(table, ("aws", "lambda", "requests", "us-east-1", "arm64")) == []


# The aws-lambda provider on an imported table


@pytest.mark.parametrize(
    ("region", "architecture"),
    [
        ("ap-northeast-1", "x86_64"),
        ("ap-northeast-1", "arm64"),
        ("us-east-1", "x86_64"),
        ("us-east-1", "arm64"),
    ],
)
def test_provider_loads_imported_table(prices: Path, region: str, architecture: str) -> None:
    import_aws_offer(LAMBDA_OFFER, prices)
    import_aws_offer(DATA_TRANSFER_OFFER, prices)
    table = load_price_table(prices)
    assert len(table.entries) > 0

    context = PricingContext("system.yaml", "devices[1].pricing", "cloud", None)
    options = {
        "region": region,
        "architecture": architecture,
        "memory_mb": 1024,
        "prices": str(prices),
    }
    provider = AwsLambdaProvider.from_options(options, context)

    used = provider.describe()["price_rows"]
    lambda_rows = [row for row in used if row["service"] == "lambda"]
    assert {row["source"] for row in lambda_rows} == {LAMBDA_SOURCE}
    egress_rows = [row for row in used if row["dimension"] == "egress_internet"]
    assert {row["source"] for row in egress_rows} == {DATA_TRANSFER_SOURCE}
    assert provider.describe()["prices_sha256"] == table.sha256


# Errors: each leaves the table byte-identical


def set_price(text: str) -> Callable[[dict[str, Any]], None]:
    def edit(offer: dict[str, Any]) -> None:
        first_dimension(offer, TOKYO_X86_DURATION_SKU)["pricePerUnit"]["USD"] = text

    return edit


def set_dimension_field(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(offer: dict[str, Any]) -> None:
        first_dimension(offer, TOKYO_X86_DURATION_SKU)[name] = value

    return edit


def tokyo_x86_dimension(suffix: str) -> str:
    rate_code = first_rate_code(TOKYO_X86_DURATION_SKU)
    return f"{TOKYO_X86_DURATION_TERM}.priceDimensions.{rate_code}{suffix}"


def delete_key(name: str) -> Callable[[dict[str, Any]], None]:
    def edit(offer: dict[str, Any]) -> None:
        del offer[name]

    return edit


def set_key(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(offer: dict[str, Any]) -> None:
        offer[name] = value

    return edit


def open_gap(offer: dict[str, Any]) -> None:
    (term,) = offer["terms"]["OnDemand"][TOKYO_X86_DURATION_SKU].values()
    second = max(term["priceDimensions"].values(), key=lambda d: float(d["beginRange"]))
    second["beginRange"] = "7000000000"


def duplicate_product(offer: dict[str, Any]) -> None:
    copy = json.loads(json.dumps(offer["products"][TOKYO_X86_DURATION_SKU]))
    copy["sku"] = "Z9ZZ9ZZ9ZZ9ZZ9ZZ"
    offer["products"]["Z9ZZ9ZZ9ZZ9ZZ9ZZ"] = copy
    offer["terms"]["OnDemand"]["Z9ZZ9ZZ9ZZ9ZZ9ZZ"] = offer["terms"]["OnDemand"][
        TOKYO_X86_DURATION_SKU
    ]


def orphan_term(offer: dict[str, Any]) -> None:
    offer["terms"]["OnDemand"]["Q0QQ0QQ0QQ0QQ0QQ"] = {}


def drop_term(offer: dict[str, Any]) -> None:
    del offer["terms"]["OnDemand"][TOKYO_X86_DURATION_SKU]


def drop_on_demand(offer: dict[str, Any]) -> None:
    del offer["terms"]["OnDemand"]


def bad_region(offer: dict[str, Any]) -> None:
    offer["products"][TOKYO_X86_DURATION_SKU]["attributes"]["regionCode"] = "Asia Pacific (Tokyo)"


ERROR_CASES = [
    pytest.param(delete_key("terms"), None, "lacks the key(s) terms", id="missing-terms"),
    pytest.param(delete_key("offerCode"), None, "lacks the key(s) offerCode", id="missing-code"),
    pytest.param(
        set_key("offerCode", "AmazonEC2"), "offerCode", "is not a supported offer", id="offer-code"
    ),
    pytest.param(
        set_key("publicationDate", "October 2026"),
        "publicationDate",
        "ISO 8601",
        id="publication-date",
    ),
    pytest.param(set_key("products", []), "products", "JSON object", id="products-list"),
    pytest.param(drop_on_demand, "terms.OnDemand", "is missing", id="no-on-demand"),
    pytest.param(
        set_price("abc"), tokyo_x86_dimension(".pricePerUnit.USD"), "decimal", id="price-text"
    ),
    pytest.param(
        set_price("-0.1"), tokyo_x86_dimension(".pricePerUnit.USD"), "decimal", id="price-negative"
    ),
    pytest.param(
        set_price("NaN"), tokyo_x86_dimension(".pricePerUnit.USD"), "decimal", id="price-nan"
    ),
    pytest.param(
        set_price(None), tokyo_x86_dimension(".pricePerUnit.USD"), "decimal", id="price-null"
    ),
    pytest.param(
        set_dimension_field("pricePerUnit", {"CNY": "0.1"}),
        tokyo_x86_dimension(".pricePerUnit"),
        "no USD price",
        id="price-not-usd",
    ),
    pytest.param(
        set_dimension_field("endRange", "lots"),
        tokyo_x86_dimension(".endRange"),
        "decimal",
        id="end-range",
    ),
    pytest.param(
        set_dimension_field("beginRange", "5000000000"),
        f"{TOKYO_X86_DURATION_TERM}.priceDimensions",
        "start at 0",
        id="tiers-not-from-zero",
    ),
    pytest.param(
        open_gap, f"{TOKYO_X86_DURATION_TERM}.priceDimensions", "without gap", id="tier-gap"
    ),
    pytest.param(
        set_dimension_field("unit", "Hrs"),
        tokyo_x86_dimension(".unit"),
        "must be 'Lambda-GB-Second'",
        id="unit",
    ),
    pytest.param(
        duplicate_product, "products.Z9ZZ9ZZ9ZZ9ZZ9ZZ", "same price", id="duplicate-product"
    ),
    pytest.param(
        orphan_term, "terms.OnDemand.Q0QQ0QQ0QQ0QQ0QQ", "no product", id="term-without-product"
    ),
    pytest.param(
        drop_term,
        f"terms.OnDemand.{TOKYO_X86_DURATION_SKU}",
        "no on-demand price",
        id="product-without-term",
    ),
    pytest.param(
        bad_region,
        f"products.{TOKYO_X86_DURATION_SKU}.attributes.regionCode",
        "not a region id",
        id="region",
    ),
]


@pytest.mark.parametrize(("edit", "field", "message"), ERROR_CASES)
def test_invalid_offer_raises_and_keeps_table(
    prices: Path,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    field: str | None,
    message: str,
) -> None:
    offer = edited_offer(tmp_path, LAMBDA_OFFER, edit)
    original = prices.read_bytes()

    with pytest.raises(InputError) as info:
        import_aws_offer(offer, prices)

    assert info.value.file == str(offer)
    assert info.value.field == field
    assert message in str(info.value)
    assert prices.read_bytes() == original
    assert folder_listing(prices) == ["prices.parquet"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json {", "is not valid JSON"),
        ("[1, 2]", "is JSON of type list"),
        ("", "is not valid JSON"),
    ],
)
def test_non_offer_file_keeps_table(prices: Path, tmp_path: Path, text: str, message: str) -> None:
    offer = tmp_path / "offer.json"
    offer.write_text(text, encoding="utf-8")
    original = prices.read_bytes()

    with pytest.raises(InputError) as info:
        import_aws_offer(offer, prices)

    assert info.value.file == str(offer)
    assert message in str(info.value)
    assert prices.read_bytes() == original


def test_missing_offer_file_raises(prices: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="offer file not found"):
        import_aws_offer(tmp_path / "absent.json", prices)


def test_invalid_price_table_raises(tmp_path: Path) -> None:
    table = tmp_path / "prices.parquet"
    table.write_text("not parquet", encoding="utf-8")

    with pytest.raises(InputError, match="not a readable Parquet file"):
        import_aws_offer(LAMBDA_OFFER, table)
    assert table.read_text(encoding="utf-8") == "not parquet"


def test_failed_write_keeps_table(prices: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = prices.read_bytes()

    def fail(frame: object, path: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(price_import, "write_price_table", fail)
    with pytest.raises(OSError, match="disk full"):
        import_aws_offer(LAMBDA_OFFER, prices)

    assert prices.read_bytes() == original
    assert folder_listing(prices) == ["prices.parquet"]


def test_failed_check_keeps_table(prices: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = prices.read_bytes()

    def load_rejecting_temporary(path: Path) -> PriceTable:
        if Path(path) != prices:
            raise InputError("has a broken row", file=path)
        return load_price_table(path)

    monkeypatch.setattr(price_import, "load_price_table", load_rejecting_temporary)
    with pytest.raises(InputError) as info:
        import_aws_offer(LAMBDA_OFFER, prices)

    assert info.value.file == str(prices)
    assert "would make an invalid price table: has a broken row" in str(info.value)
    assert prices.read_bytes() == original
    assert folder_listing(prices) == ["prices.parquet"]


# Product mapping


LAMBDA_DURATION = {
    "group": "AWS-Lambda-Duration",
    "usagetype": "APN1-Lambda-GB-Second",
    "regionCode": "ap-northeast-1",
}
EGRESS = {
    "transferType": "AWS Outbound",
    "fromRegionCode": "us-east-1",
    "toLocation": "External",
    "usagetype": "DataTransfer-Out-Bytes",
}


@pytest.mark.parametrize(
    ("offer_code", "attributes", "expected"),
    [
        (
            "AWSLambda",
            LAMBDA_DURATION,
            PriceTarget(
                "lambda", "duration", "ap-northeast-1", "x86_64", "Lambda-GB-Second", "GB-second"
            ),
        ),
        (
            "AWSLambda",
            {
                "group": "AWS-Lambda-Requests-ARM",
                "usagetype": "Request-ARM",
                "regionCode": "us-east-1",
            },
            PriceTarget("lambda", "requests", "us-east-1", "arm64", "Requests", "request"),
        ),
        ("AWSLambda", {**LAMBDA_DURATION, "usagetype": "Global-Lambda-GB-Second"}, None),
        ("AWSLambda", {**LAMBDA_DURATION, "usagetype": "APN1-Lambda-GB-Second-ARM"}, None),
        ("AWSLambda", {**LAMBDA_DURATION, "regionCode": ""}, None),
        ("AWSLambda", {"group": "AWS-Lambda-Duration"}, None),
        ("AWSLambda", {**LAMBDA_DURATION, "group": "AWS-Lambda-Edge-Duration"}, None),
        (
            "AWSDataTransfer",
            EGRESS,
            PriceTarget("data-transfer", "egress_internet", "us-east-1", None, "GB", "GB"),
        ),
        ("AWSDataTransfer", {**EGRESS, "fromRegionCode": None}, None),
        ("AWSDataTransfer", {**EGRESS, "toLocation": "US West (Oregon)"}, None),
        ("AWSDataTransfer", {**EGRESS, "transferType": "InterRegion Outbound"}, None),
        ("AWSDataTransfer", {**EGRESS, "usagetype": "USE1-CloudFront-Out-Bytes"}, None),
        (
            "AWSDataTransfer",
            {
                "transferType": "AWS Inbound",
                "fromLocation": "External",
                "toRegionCode": "eu-west-1",
                "usagetype": "EU-DataTransfer-In-Bytes",
            },
            PriceTarget("data-transfer", "ingress_internet", "eu-west-1", None, "GB", "GB"),
        ),
    ],
)
def test_classify_product(
    offer_code: str, attributes: dict[str, Any], expected: PriceTarget | None
) -> None:
    assert classify_product(offer_code, attributes) == expected


def test_classify_product_unknown_offer() -> None:
    with pytest.raises(ValueError, match="AWSDataTransfer, AWSLambda"):
        classify_product("AmazonEC2", {})


def test_supported_offers() -> None:
    assert SUPPORTED_OFFERS == ("AWSDataTransfer", "AWSLambda")


# Command line


def test_main_imports_and_prints_changes(prices: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main([str(LAMBDA_OFFER), str(prices)])

    output = capsys.readouterr().out.splitlines()
    assert status == 0
    assert output[0].startswith("Imported AWSLambda version 20261001080000")
    assert len(output) == 1 + 13
    assert rows_of(load_price_table(prices), ("aws", "lambda", "requests", "us-east-1", "arm64"))


def test_main_dry_run_keeps_table(prices: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = prices.read_bytes()

    status = main(["--dry-run", str(DATA_TRANSFER_OFFER), str(prices)])

    assert status == 0
    assert capsys.readouterr().out.startswith("Would import AWSDataTransfer")
    assert prices.read_bytes() == original


def test_main_invalid_offer_exits_2(
    prices: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offer = tmp_path / "offer.json"
    offer.write_text("{}", encoding="utf-8")

    status = main([str(offer), str(prices)])

    assert status == 2
    assert capsys.readouterr().err.startswith(f"error: {offer}: is not an AWS Price List")
