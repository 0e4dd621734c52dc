"""The report's Calibration section: shown only when the system sets calibrated fields."""

from __future__ import annotations

import dataclasses

from allocation.report import render_report_md
from allocation.results import SweepSummary
from tests.test_charts import build_summary


def _calibrated(summary: SweepSummary) -> SweepSummary:
    system = summary.system
    first, *others = system.devices
    device = first.model_copy(
        update={"speed_factor": 1.25, "class_speed_factors": {"inference": 0.8}}
    )
    link = system.links[0].model_copy(update={"overhead_ms": 40.0})
    calibrated = system.model_copy(
        update={
            "devices": [device, *others],
            "links": [link, *system.links[1:]],
            "core_scaling_exponent": 0.6,
        }
    )
    return dataclasses.replace(summary, system=calibrated)


def test_calibration_absent_when_unset() -> None:
    report = render_report_md(build_summary())

    assert "### Calibration" not in report
    assert "allocation calibrate" not in report


def test_calibration_fields_listed() -> None:
    summary = _calibrated(build_summary())
    report = render_report_md(summary)
    section = report.split("### Calibration", 1)[1].split("\n## ", 1)[0]
    device = summary.system.devices[0].id
    a, b = summary.system.links[0].between

    assert "`allocation calibrate` fits to measured runs" in section
    assert f"- Device {device}: speed\\_factor 1.25, inference speed factor 0.8" in section
    assert "- core\\_scaling\\_exponent 0.6: a stage's time is proportional to" in section
    assert f"- Link {a} – {b}: overhead\\_ms 40, so 40 ms is added to every transfer" in section
    assert report.index("### Calibration") < report.index("## Patterns")
