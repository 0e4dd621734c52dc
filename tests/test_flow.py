"""The Prefect flow `sweep`, run for real against a temporary Prefect server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from allocation.study import load_study
from allocation.sweep import sweep_in_process
from flows.sweep import artifact_key, choose_chunk_size, sweep
from tests.conftest import CATALOGS

WORKFLOW = """\
workflow: small.flow
measured_on: {name: "Reference <b>PC</b>", cores: 4, single_thread: 2000}
stages:
  - {id: cam, time_s: 0.1, pin: edge}
  - {id: pre.process, time_s: 0.2}
  - {id: infer.v2, name: "infer[0] <i>net</i>", time_s: 1.5, threads: 2}
  - {id: post, time_s: 0.05}
  - {id: show, time_s: 0.01, pin: edge}
edges:
  - {from: cam, to: pre.process, bytes: 6220800}
  - {from: pre.process, to: infer.v2, bytes: 1200000}
  - {from: infer.v2, to: post, bytes: 40000}
  - {from: post, to: show, bytes: 0}
"""

SYSTEM = """\
system: two-devices
runs_per_month: 1000
devices:
  - id: edge
    cpu: {name: Edge CPU, cores: 4, single_thread: 600}
  - id: gateway
    cpu: {name: Gateway CPU, cores: 4, single_thread: 1200}
  - id: cloud
    cpu: {name: Cloud CPU, cores: 2, single_thread: 2500}
    pricing:
      provider: flat
      usd_per_compute_s: 0.0000333
      usd_per_invocation: 0.0000002
      usd_per_gb_out: 0.114
links:
  - {between: [edge, cloud], bandwidth_mbps: 100}
  - {between: [edge, gateway], bandwidth_mbps: 1000, latency_ms: 1}
  - {between: [gateway, cloud], bandwidth_mbps: 100, latency_ms: 20}
"""


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    workflow = tmp_path / "workflow.yaml"
    system = tmp_path / "system.yaml"
    workflow.write_text(WORKFLOW)
    system.write_text(SYSTEM)
    return workflow, system


def test_flow_front_matches_engine(
    prefect_harness: None, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    workflow, system = inputs
    out = tmp_path / "out"
    outcome = sweep(str(workflow), str(system), str(CATALOGS), str(out), chunk_size=5)

    study = load_study(workflow, system, CATALOGS)
    expected, _ = sweep_in_process(study.problem)
    front = pq.read_table(out / "front.parquet").to_pandas()
    assert outcome.space_size == 27
    assert len(front) == len(expected)
    assert sorted(front["latency_s"]) == pytest.approx(
        sorted(expected.evaluation.metrics["latency_s"])
    )
    assert front["equivalent_count"].sum() == expected.equivalent_count.sum()
    assert "at_infer.v2" in front.columns
    assert np.isfinite(front["monthly_cost_usd"]).all()

    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["chunks"] == 6
    assert set(run["timings_s"]) >= {
        "load_compile_s",
        "evaluate_s",
        "merge_s",
        "charts_s",
        "total_s",
    }


def test_flow_chunk_size_keeps_front_bytes(
    prefect_harness: None, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    workflow, system = inputs
    sweep(str(workflow), str(system), str(CATALOGS), str(tmp_path / "a"), chunk_size=1)
    sweep(str(workflow), str(system), str(CATALOGS), str(tmp_path / "b"), chunk_size=1000)
    assert (tmp_path / "a" / "front.parquet").read_bytes() == (
        tmp_path / "b" / "front.parquet"
    ).read_bytes()
    assert (tmp_path / "a" / "patterns.parquet").read_bytes() == (
        tmp_path / "b" / "patterns.parquet"
    ).read_bytes()


def test_flow_publishes_artifacts(
    prefect_harness: None, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    workflow, system = inputs
    sweep(str(workflow), str(system), str(CATALOGS), str(tmp_path / "out"))

    async def read(key: str):
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )

    table_key = artifact_key("candidates", "small.flow", "two-devices")
    summary_key = artifact_key("summary", "small.flow", "two-devices")
    assert table_key == "candidates-small-flow--two-devices"
    tables = asyncio.run(read(table_key))
    summaries = asyncio.run(read(summary_key))
    assert tables and tables[0].type == "table"
    assert summaries and summaries[0].type == "markdown"
    assert "data:image/png;base64," in summaries[0].data
    assert "<b>PC</b>" not in summaries[0].data
    progress = asyncio.run(read(artifact_key("progress", "small.flow", "two-devices")))
    assert progress and progress[0].type == "progress"
    assert progress[0].data == 100.0


def test_flow_samples_patterns_past_limit(
    prefect_harness: None, inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    workflow, system = inputs
    sweep(str(workflow), str(system), str(CATALOGS), str(tmp_path / "out"), max_patterns=10)
    patterns = pq.read_table(tmp_path / "out" / "patterns.parquet")
    assert 0 < len(patterns) < 27
    assert "sample" in (tmp_path / "out" / "report.md").read_text()


def test_chunk_size_bounds() -> None:
    assert choose_chunk_size(10) == 65_536
    assert choose_chunk_size(177_147) == 65_536
    assert choose_chunk_size(4**15) == 1 << 20


def chain_files(folder: Path, n_stages: int) -> tuple[Path, Path]:
    """Write a chain of n stages on edge, gateway and cloud with flat pricing."""
    stages = "\n".join(
        f"  - {{id: s{i}, time_s: {0.05 + 0.01 * (i % 7)}, threads: {1 + i % 3}"
        + (", pin: edge}" if i in (0, n_stages - 1) else "}")
        for i in range(n_stages)
    )
    edges = "\n".join(
        f"  - {{from: s{i}, to: s{i + 1}, bytes: {100_000 * (1 + i % 5)}}}"
        for i in range(n_stages - 1)
    )
    workflow = folder / "chain.yaml"
    workflow.write_text(
        "workflow: chain\nmeasured_on: {name: ref, cores: 4, single_thread: 2000}\n"
        f"stages:\n{stages}\nedges:\n{edges}\n"
    )
    system = folder / "system.yaml"
    system.write_text(SYSTEM.replace("runs_per_month: 1000\n", ""))
    return workflow, system


def test_flow_exact_method_matches_exhaustive_bytes(prefect_harness: None, tmp_path: Path) -> None:
    workflow, system = chain_files(tmp_path, 10)
    exhaustive = sweep(
        str(workflow), str(system), str(CATALOGS), str(tmp_path / "a"), method="exhaustive"
    )
    exact = sweep(str(workflow), str(system), str(CATALOGS), str(tmp_path / "b"), method="exact")

    assert exhaustive.space_size == exact.space_size == 3**8
    assert (tmp_path / "a" / "front.parquet").read_bytes() == (
        tmp_path / "b" / "front.parquet"
    ).read_bytes()
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["method"]["name"] == "exact"
    assert "exact method built the front" in (tmp_path / "b" / "report.md").read_text()


def test_flow_auto_uses_exact_past_enumeration(prefect_harness: None, tmp_path: Path) -> None:
    workflow, system = chain_files(tmp_path, 40)
    outcome = sweep(str(workflow), str(system), str(CATALOGS), str(tmp_path / "out"))

    assert outcome.space_size == 3**38
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["method"]["name"] == "exact"
    assert run["counts"]["evaluated"] == len(pq.read_table(tmp_path / "out" / "patterns.parquet"))
    assert outcome.recommended is not None
