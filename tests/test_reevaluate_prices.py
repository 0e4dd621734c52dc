"""Price refresh as a provider capability, and the Prefect event after a price update."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from allocation.cli import main
from allocation.errors import InputError
from allocation.price_import import PriceRefresh, refresh_prices, refreshable_providers
from tests.conftest import CATALOGS

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OFFERS = [str(FIXTURES / "aws-offer-lambda.json"), str(FIXTURES / "aws-offer-data-transfer.json")]


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog"
    folder.mkdir()
    shutil.copy(CATALOGS / "prices.parquet", folder / "prices.parquet")
    return folder


def test_aws_lambda_refreshes_from_offer_files(catalog: Path) -> None:
    prices = catalog / "prices.parquet"
    result = refresh_prices("aws-lambda", prices, OFFERS)
    assert isinstance(result, PriceRefresh)
    assert result.changed_rows > 0
    assert result.lines[0].startswith("Imported AWSLambda version 20261001080000")
    assert any(line.startswith("Imported AWSDataTransfer") for line in result.lines)

    again = refresh_prices("aws-lambda", prices, OFFERS)
    assert again.changed_rows == 0


def test_refresh_dry_run_writes_nothing(catalog: Path) -> None:
    prices = catalog / "prices.parquet"
    before = prices.read_bytes()
    result = refresh_prices("aws-lambda", prices, OFFERS, dry_run=True)
    assert result.dry_run
    assert result.changed_rows > 0
    assert prices.read_bytes() == before


def test_provider_without_refresh_is_named(catalog: Path) -> None:
    assert "aws-lambda" in refreshable_providers()
    assert "flat" not in refreshable_providers()
    with pytest.raises(InputError, match="cannot refresh its prices; providers that can: "):
        refresh_prices("flat", catalog / "prices.parquet", OFFERS)


def test_refresh_needs_a_source(catalog: Path) -> None:
    with pytest.raises(InputError, match="no offer file given"):
        refresh_prices("aws-lambda", catalog / "prices.parquet", [])


def test_cli_refresh_prices(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["catalog", "refresh-prices", "aws-lambda", "--catalog", str(catalog)]
    for offer in OFFERS:
        args += ["--source", offer]
    assert main(args) == 0
    assert "Imported AWSLambda" in capsys.readouterr().out


def test_emit_event_without_server_exits_2(
    catalog: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    before = (catalog / "prices.parquet").read_bytes()
    with temporary_settings(updates={PREFECT_API_URL: None}):
        code = main(
            ["catalog", "import-prices", OFFERS[0], "--catalog", str(catalog), "--emit-event"]
        )
    assert code == 2
    assert "PREFECT_API_URL" in capsys.readouterr().err
    assert (catalog / "prices.parquet").read_bytes() == before


@pytest.mark.prefect
def test_import_prices_emits_event(
    prefect_harness: None, catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from allocation.cli_catalog import catalog_resource

    code = main(["catalog", "import-prices", OFFERS[0], "--catalog", str(catalog), "--emit-event"])
    assert code == 0
    resource = catalog_resource(catalog)["prefect.resource.id"]
    assert f"Sent the Prefect event allocation.prices.updated for {resource}" in (
        capsys.readouterr().out
    )

    # A second import changes no row, so it sends nothing.
    code = main(["catalog", "import-prices", OFFERS[0], "--catalog", str(catalog), "--emit-event"])
    assert code == 0
    assert "no Prefect event was sent" in capsys.readouterr().out
