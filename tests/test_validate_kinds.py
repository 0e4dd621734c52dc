"""`allocation validate` on studies, measurements and uncertainty files, called in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocation.cli import main
from tests.conftest import CATALOGS

STUDIES = CATALOGS / "studies.yaml"
MEASUREMENTS = CATALOGS / "measurements" / "object-detection-published.yaml"


def test_studies_and_measurements_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(STUDIES), str(MEASUREMENTS)])
    output = capsys.readouterr()

    assert code == 0
    assert f"ok: {STUDIES}: studies file, 2 studies" in output.out
    assert f"ok: {MEASUREMENTS}: measurements 'object-detection-published'" in output.out
    assert "allocation calibrate" in output.out
    assert output.err == ""


def test_measurements_checked_by_own_loader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "measured.yaml"
    bad.write_text(
        "measurements: m\nworkflow: w\nsystem: s\nruns: []\n",
        encoding="utf-8",
    )
    code = main(["validate", str(bad)])
    error = capsys.readouterr().err

    assert code == 2
    assert f"{bad}: runs: contains no runs and no link_tests" in error
    assert "requirements" not in error


def test_studies_checked_by_own_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "studies.yaml"
    bad.write_text("studies:\n  - workflow: missing.yaml\n    system: missing.yaml\n")
    code = main(["validate", str(bad)])
    error = capsys.readouterr().err

    assert code == 2
    assert f"{bad}: studies[0].workflow" in error
    assert "top-level 'workflow' key" not in error


def test_uncertainty_file_ok(capsys: pytest.CaptureFixture[str]) -> None:
    path = CATALOGS / "uncertainty" / "twenty-percent.yaml"
    code = main(["validate", str(path)])
    output = capsys.readouterr()

    assert code == 0
    assert f"ok: {path}: uncertainty file, 200 samples" in output.out
    assert "--uncertainty" in output.out


def test_uncertainty_checked_by_own_loader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "spread.yaml"
    bad.write_text("samples: 0\nprice: {relative: 0.1}\n", encoding="utf-8")
    code = main(["validate", str(bad)])
    error = capsys.readouterr().err

    assert code == 2
    assert f"{bad}: samples: invalid value 0" in error
    assert "top-level 'workflow' key" not in error
