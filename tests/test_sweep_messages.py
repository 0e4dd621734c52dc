"""Messages of sweep and reevaluate that depend on state: interrupts, --out, --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocation.chunk_store import STORE_DIR_NAME
from allocation.cli import _interrupted_message, main
from flows.reevaluate import sweep_reason
from tests.conftest import CATALOGS

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEMS = [
    CATALOGS / "systems" / "edge-cloud.yaml",
    CATALOGS / "systems" / "edge-gateway-cloud.yaml",
]


def test_interrupt_without_chunks(tmp_path: Path) -> None:
    (tmp_path / "a" / STORE_DIR_NAME / "key").mkdir(parents=True)
    message = _interrupted_message([tmp_path / "a", tmp_path / "b"])

    assert "before any chunk finished" in message
    assert "kept in" not in message


def test_interrupt_names_only_stores_with_chunks(tmp_path: Path) -> None:
    store = tmp_path / "a" / STORE_DIR_NAME / "key"
    store.mkdir(parents=True)
    (store / "0-64.npz").write_bytes(b"")
    (tmp_path / "b" / STORE_DIR_NAME / "key").mkdir(parents=True)
    message = _interrupted_message([tmp_path / "a", tmp_path / "b"])

    assert f"kept in {tmp_path / 'a' / STORE_DIR_NAME};" in message
    assert str(tmp_path / "b") not in message


def test_several_systems_out_is_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    out.write_text("not a folder\n", encoding="utf-8")
    code = main(["sweep", str(WORKFLOW), *map(str, SYSTEMS), "--out", str(out)])
    error = capsys.readouterr().err

    assert code == 2
    assert "--out: invalid value" in error
    assert "names an existing file; with several systems --out is the folder" in error
    assert "ENOTDIR" not in error


def test_sweep_reason_of_forced_study() -> None:
    assert sweep_reason(None, ["no earlier evaluation"]) == ("first", "no earlier evaluation")
    assert sweep_reason({}, ["pricing", "cpus"]) == ("changed", "changed: pricing, cpus")
    assert sweep_reason({}, []) == ("forced", "inputs unchanged, sweep forced (--force)")
