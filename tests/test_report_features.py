"""The report and the baseline table under contention and memory limits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from allocation.cli import main
from allocation.report import render_report_md
from allocation.results import baseline_status
from allocation.study import load_study
from allocation.summary import summarise
from allocation.sweep import sweep_in_process
from tests.conftest import CATALOGS

WORKFLOW = """\
workflow: small.flow
measured_on: {name: Reference PC, cores: 4, single_thread: 2000}
stages:
  - {id: cam, time_s: 0.1, pin: edge, memory_mb: 50}
  - {id: pre, time_s: 0.2, memory_mb: 200}
  - {id: infer, time_s: 1.5, threads: 2, memory_mb: 700}
  - {id: show, time_s: 0.01, pin: edge}
edges:
  - {from: cam, to: pre, bytes: 6220800}
  - {from: pre, to: infer, bytes: 1200000}
  - {from: infer, to: show, bytes: 40000}
"""

SYSTEM = """\
system: two-devices
devices:
  - id: edge
    cpu: {name: Edge CPU, cores: 4, single_thread: 600}
    memory_mb: 512
  - id: cloud
    cpu: {name: Cloud CPU, cores: 2, single_thread: 2500}
    pricing: {provider: flat, usd_per_compute_s: 0.0000333, usd_per_gb_out: 0.114}
links:
  - {between: [edge, cloud], bandwidth_mbps: 100, latency_ms: 5}
contention: {concurrent_frames: 2, links: false}
compare:
  - {name: infer on edge, at: {infer: edge}, rest: cloud}
"""


def _summary(tmp_path: Path) -> object:
    (tmp_path / "w.yaml").write_text(WORKFLOW, "utf-8")
    (tmp_path / "s.yaml").write_text(SYSTEM, "utf-8")
    study = load_study(tmp_path / "w.yaml", tmp_path / "s.yaml", CATALOGS)
    front, patterns = sweep_in_process(study.problem)
    return summarise(study, front, patterns, patterns_sampled=False)


def test_baselines_over_memory_are_no_alternative(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    baselines = summary.baselines.set_index("baseline")

    for name in ("all on edge", "infer on edge"):
        row = baselines.loc[name]
        assert row["over_memory"] == "edge"
        assert not row["on_front"]
        assert baseline_status(row) == "exceeds the memory limit of edge"
    assert pd.isna(baselines.loc["all on cloud", "over_memory"])


def test_report_names_contention_and_memory(tmp_path: Path) -> None:
    report = render_report_md(_summary(tmp_path))

    assert "| all on edge |" in report
    assert "exceeds the memory limit of edge" in report
    contention = report.split("### Contention", 1)[1].split("###", 1)[0]
    assert "share its cores" in contention
    assert "over one link" not in contention
    assert "2 frames at once" in contention
    memory = report.split("### Memory", 1)[1].split("##", 1)[0]
    assert "Device edge: limit 512 MB" in memory
    assert "infer 700 MB" in memory


def test_minimise_period_computes_stream_columns(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(WORKFLOW, "utf-8")
    (tmp_path / "s.yaml").write_text(SYSTEM, "utf-8")
    study = load_study(
        tmp_path / "w.yaml", tmp_path / "s.yaml", CATALOGS, requirements={"minimise": "period_s"}
    )
    front, patterns = sweep_in_process(study.problem)
    summary = summarise(study, front, patterns, patterns_sampled=False)

    assert "period_s" not in study.problem.objectives
    assert "throughput_fps" in summary.candidates.columns
    assert summary.recommendation.label is not None
    assert summary.recommendation.rule == "minimise"


def test_validate_rejects_when_nothing_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pre fits the edge only without infer, and both together exceed the cloud's 800 MB.
    workflow = WORKFLOW.replace("memory_mb: 200", "memory_mb: 480")
    system = SYSTEM.replace("    pricing:", "    memory_mb: 800\n    pricing:")
    (tmp_path / "w.yaml").write_text(workflow, "utf-8")
    (tmp_path / "s.yaml").write_text(system, "utf-8")

    code = main(["validate", str(tmp_path / "w.yaml"), str(tmp_path / "s.yaml")])

    error = capsys.readouterr().err
    assert code == 2
    assert "every one of the 4 assignments exceeds a device's memory limit" in error
