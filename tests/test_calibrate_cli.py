"""`allocation calibrate` through the command line, on the published measurements."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocation.cli import main
from allocation.loading import load_system

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "catalogs/workflows/object-detection.yaml"
SYSTEM = ROOT / "catalogs/systems/edge-cloud.yaml"
PUBLISHED = ROOT / "catalogs/measurements/object-detection-published.yaml"


def _run(tmp_path: Path, measurements: Path, *extra: str) -> int:
    out = tmp_path / "calibrated.yaml"
    return main(
        ["calibrate", str(WORKFLOW), str(SYSTEM), str(measurements), "--out", str(out), *extra]
    )


def test_published_calibration_writes_system_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, PUBLISHED) == 0
    output = capsys.readouterr()

    calibrated = load_system(tmp_path / "calibrated.yaml")
    report = (tmp_path / "calibrated.md").read_text(encoding="utf-8")
    assert calibrated.devices[1].speed_factor is not None
    # Pattern 1's transfers have one size, so only an effective bandwidth is fitted.
    assert calibrated.links[0].bandwidth_mbps == pytest.approx(4_950_000 * 8 / 3.51 / 1e6, rel=1e-5)
    assert "bandwidth and overhead cannot be separated" in output.err
    assert "| pattern 2, all on the edge device | stage | detect | edge | 12.5 |" in report
    assert "transfer total" in output.out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "measurements: m\nworkflow: other\nsystem: edge-cloud\nruns: [{name: a, rest: edge}]\n",
            ": workflow: names workflow 'other'",
        ),
        (
            "measurements: m\nworkflow: object-detection\nsystem: edge-cloud\n"
            "runs: [{name: a, rest: edge, stage_time_s: {detect: -1}}]\n",
            "runs[0].stage_time_s.detect: invalid value -1",
        ),
        (
            "measurements: m\nworkflow: object-detection\nsystem: edge-cloud\n"
            "runs: [{name: a, rest: edge, stage_time_s: {detekt: 1}}]\n",
            "did you mean 'detect'",
        ),
        (
            "measurements: m\nworkflow: object-detection\nsystem: edge-cloud\n"
            "runs: [{name: a, rest: edge, transfer_total_s: 1}]\n",
            "runs[0].transfer_total_s: every stage runs on one device",
        ),
        (
            "measurements: m\nworkflow: object-detection\nsystem: edge-cloud\n"
            "runs: [{name: a, rest: cloud, transfers: [{from: resize, to: to_rgb, time_s: 1}]}]\n",
            "runs[0].transfers[0]: stages 'resize' and 'to_rgb' run on the same device",
        ),
        (
            "measurements: m\nworkflow: object-detection\nsystem: edge-cloud\n"
            "runs: [{name: a, rest: mars}]\n",
            "runs[0].rest: names device 'mars'",
        ),
        (
            "measurements: m\nworkflow: object-detection\nsystem: edge-cloud\n"
            "link_tests: [{between: [edge, cloud], time_s: 1}]\n",
            "gives time_s without bytes",
        ),
        (
            "workflow: object-detection\nsystem: edge-cloud\n",
            "missing the top-level 'measurements' key",
        ),
    ],
    ids=[
        "other-workflow",
        "negative-time",
        "unknown-stage",
        "total-without-crossing",
        "transfer-not-crossing",
        "unknown-device",
        "time-without-bytes",
        "not-measurements",
    ],
)
def test_invalid_measurements_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "measurements.yaml"
    path.write_text(text, encoding="utf-8")

    assert _run(tmp_path, path) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert str(path) in error
    assert "Traceback" not in error
    assert not (tmp_path / "calibrated.yaml").exists()
    assert not (tmp_path / "calibrated.md").exists()


def test_out_in_missing_folder_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "missing" / "calibrated.yaml"
    code = main(["calibrate", str(WORKFLOW), str(SYSTEM), str(PUBLISHED), "--out", str(out)])

    assert code == 2
    assert "--out" in capsys.readouterr().err
    assert not out.parent.exists()
