"""CPU aliases: the shipped alias file, its checks, and lookups through aliases."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from allocation.catalog import ALIAS_COLUMNS, ALIASES_FILE, CpuCatalog, load_cpu_catalog
from allocation.errors import InputError
from tests.conftest import CATALOGS

HEADER = ",".join(ALIAS_COLUMNS) + "\n"


@pytest.fixture(scope="module")
def shipped() -> CpuCatalog:
    return load_cpu_catalog(CATALOGS / "cpus.parquet")


def catalog_with_aliases(folder: Path, rows: list[str], header: str = HEADER) -> Path:
    """Copy the shipped cpus.parquet into `folder` beside an alias file of `rows`."""
    folder.mkdir(exist_ok=True)
    shutil.copyfile(CATALOGS / "cpus.parquet", folder / "cpus.parquet")
    (folder / ALIASES_FILE).write_text(header + "".join(row + "\n" for row in rows))
    return folder / "cpus.parquet"


def test_shipped_aliases_load(shipped: CpuCatalog) -> None:
    assert len(shipped.aliases) >= 1
    assert shipped.aliases_sha256 is not None
    names = {cpu.name for cpu in shipped.cpus}
    for alias in shipped.aliases:
        assert alias.cpu in names, alias
        assert alias.source.strip(), alias
        assert isinstance(alias.as_of, dt.date), alias


def test_shipped_raspberry_pi_4_is_bcm2711(shipped: CpuCatalog) -> None:
    alias = shipped.find_alias("Raspberry Pi 4 Model B")
    assert alias is not None
    assert alias.cpu == "BCM2711"
    assert "raspberrypi/documentation" in alias.source
    assert "bcm2711" in alias.source


@pytest.mark.parametrize(
    "name", ["Raspberry Pi 4 Model B", "raspberry pi 4 model b", "  RASPBERRY  PI 4   Model B "]
)
def test_lookup_alias_ignores_case_and_spaces(shipped: CpuCatalog, name: str) -> None:
    cpu = shipped.lookup(name, file="system.yaml", field="devices[0].cpu")
    assert cpu.name == "BCM2711"
    assert cpu.figure("single_thread") == 597.0


def test_lookup_catalog_name_still_works(shipped: CpuCatalog) -> None:
    assert shipped.lookup("bcm2711", file="f", field="x").name == "BCM2711"
    assert shipped.lookup("Intel Core i7-10700", file="f", field="x").name == (
        "Intel Core i7-10700 @ 2.90GHz"
    )


def test_unknown_name_suggests_alias(shipped: CpuCatalog) -> None:
    with pytest.raises(InputError) as info:
        shipped.lookup("Raspberry Pi 4 Model C", file="system.yaml", field="devices[0].cpu")
    assert "Raspberry Pi 4 Model B" in str(info.value)
    assert info.value.field == "devices[0].cpu"


def test_find_unknown_returns_none(shipped: CpuCatalog) -> None:
    assert shipped.find("No Such Board") is None
    assert shipped.find_alias("BCM2711") is None


def test_aliases_of_lists_in_file_order(shipped: CpuCatalog) -> None:
    aliases = [alias.alias for alias in shipped.aliases_of("BCM2711")]
    assert aliases[0] == "Raspberry Pi 4 Model B"
    assert "Raspberry Pi 400" in aliases


def test_alias_file_read_from_catalog_folder(tmp_path: Path) -> None:
    parquet = catalog_with_aliases(
        tmp_path / "cat", ["Lab Board,intel n100,our purchase record,2026-01-15"]
    )
    catalog = load_cpu_catalog(parquet)
    assert [alias.alias for alias in catalog.aliases] == ["Lab Board"]
    assert catalog.aliases[0].cpu == "Intel N100"  # the catalog's spelling
    assert catalog.aliases[0].as_of == dt.date(2026, 1, 15)
    assert catalog.lookup("lab board", file="f", field="x").name == "Intel N100"


def test_no_alias_file_gives_no_aliases(tmp_path: Path) -> None:
    shutil.copyfile(CATALOGS / "cpus.parquet", tmp_path / "cpus.parquet")
    catalog = load_cpu_catalog(tmp_path / "cpus.parquet")
    assert catalog.aliases == ()
    assert catalog.aliases_sha256 is None
    with pytest.raises(InputError):
        catalog.lookup("Raspberry Pi 4 Model B", file="f", field="x")


def test_header_only_alias_file(tmp_path: Path) -> None:
    catalog = load_cpu_catalog(catalog_with_aliases(tmp_path / "cat", []))
    assert catalog.aliases == ()
    assert catalog.aliases_sha256 is not None


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("Board,No Such CPU,src,2026-01-01", "line 2.cpu", "not in the catalog"),
        ("BCM2711,BCM2711,src,2026-01-01", "line 2.alias", "already the name"),
        ("bcm2711 ,Intel N100,src,2026-01-01", "line 2.alias", "already the name"),
        ("Board,BCM2711,src,01/01/2026", "line 2.as_of", "ISO date"),
        ("Board,BCM2711,src,2026-02-30", "line 2.as_of", "ISO date"),
        ("Board,BCM2711,,2026-01-01", "line 2.source", "is empty"),
        (",BCM2711,src,2026-01-01", "line 2.alias", "is empty"),
        ("Board,BCM2711,src", "line 2", "3 fields"),
    ],
)
def test_invalid_alias_row(tmp_path: Path, row: str, field: str, message: str) -> None:
    parquet = catalog_with_aliases(tmp_path / "cat", [row])
    with pytest.raises(InputError, match=message) as info:
        load_cpu_catalog(parquet)
    assert info.value.field == field
    assert info.value.file is not None
    assert info.value.file.endswith(ALIASES_FILE)


def test_alias_to_missing_cpu_suggests_names(tmp_path: Path) -> None:
    parquet = catalog_with_aliases(tmp_path / "cat", ["Board,BCM2712,src,2026-01-01"])
    with pytest.raises(InputError, match="BCM2711"):
        load_cpu_catalog(parquet)


def test_duplicate_alias_names_first_line(tmp_path: Path) -> None:
    parquet = catalog_with_aliases(
        tmp_path / "cat",
        ["Board,BCM2711,src,2026-01-01", "board,Intel N100,src,2026-01-01"],
    )
    with pytest.raises(InputError, match="line 2") as info:
        load_cpu_catalog(parquet)
    assert info.value.field == "line 3.alias"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("alias,cpu,source\n", "missing column"),
        ("alias,cpu,source,as_of,note\n", "unknown column"),
    ],
)
def test_invalid_alias_header(tmp_path: Path, header: str, message: str) -> None:
    parquet = catalog_with_aliases(tmp_path / "cat", [], header=header)
    with pytest.raises(InputError, match=message) as info:
        load_cpu_catalog(parquet)
    assert info.value.field == "line 1"
