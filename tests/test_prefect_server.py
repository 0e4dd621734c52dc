"""The `allocation sweep` command against a real Prefect server, read back through its API.

The command runs twice in a child process with PREFECT_API_URL pointing to a server
started by `tests.prefect_server`. The tests then read the flow runs and the keyed
artifacts through the Prefect client: each key must hold one version per run, which is
the history that stable keys give in the Prefect UI. Only the artifacts listed here are
checked, so the flow may publish more.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import CATALOGS, REPO
from tests.prefect_server import client_env, prefect_server  # noqa: F401

pytestmark = pytest.mark.prefect

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEM = CATALOGS / "systems" / "edge-cloud.yaml"
SUFFIX = "object-detection--edge-cloud"
CANDIDATES_KEY = f"candidates-{SUFFIX}"
SUMMARY_KEY = f"summary-{SUFFIX}"
PROGRESS_KEY = f"progress-{SUFFIX}"
REPORT_KEY = f"report-{SUFFIX}"
LINK_KEY = f"report-link-{SUFFIX}"
N_RUNS = 2
CLI_TIMEOUT_S = 300


@dataclass(frozen=True)
class Sweeps:
    """The output folders and durations of the command-line runs against one server."""

    api_url: str
    out_dirs: list[Path]
    durations_s: list[float]


@pytest.fixture(scope="module")
def sweeps(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Sweeps:  # noqa: F811
    root = tmp_path_factory.mktemp("server-sweeps")
    env = client_env(prefect_server, root / "prefect-home")
    out_dirs = []
    durations = []
    for run in range(N_RUNS):
        out = root / f"run-{run}"
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "allocation.cli",
                "sweep",
                str(WORKFLOW),
                str(SYSTEM),
                "--out",
                str(out),
                # The last run names a shared folder, which adds a link artifact.
                *(["--share-url", str(root / "shared")] if run == N_RUNS - 1 else []),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        durations.append(time.perf_counter() - started)
        assert result.returncode == 0, f"sweep {run} failed:\n{result.stdout}\n{result.stderr}"
        out_dirs.append(out)
    return Sweeps(api_url=prefect_server, out_dirs=out_dirs, durations_s=durations)


@pytest.fixture
def client(sweeps: Sweeps) -> Iterator[Any]:
    """A synchronous Prefect client of the test server."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: sweeps.api_url}),
        get_client(sync_client=True) as prefect_client,
    ):
        yield prefect_client


def read_versions(client: Any, key: str) -> list[Any]:
    """Return every version of the artifact `key`, newest first."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    return client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
    )


def read_sweep_runs(client: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["sweep"])))


def test_server_flow_runs_completed(client: Any) -> None:
    runs = read_sweep_runs(client)

    assert len(runs) == N_RUNS
    for run in runs:
        assert run.state is not None
        assert run.state.is_completed(), run.state


def test_server_keeps_history_per_key(client: Any) -> None:
    run_ids = {run.id for run in read_sweep_runs(client)}

    for key in (CANDIDATES_KEY, SUMMARY_KEY, PROGRESS_KEY):
        versions = read_versions(client, key)
        assert len(versions) == N_RUNS, key
        assert {v.flow_run_id for v in versions} == run_ids, key


def test_server_latest_artifact_per_key(client: Any) -> None:
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    keys = [CANDIDATES_KEY, SUMMARY_KEY, PROGRESS_KEY]
    collections = client.read_latest_artifacts(
        artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=keys))
    )

    assert sorted(c.key for c in collections) == sorted(keys)
    for collection in collections:
        newest = read_versions(client, collection.key)[0]
        assert collection.latest_id == newest.id, collection.key


def test_server_candidates_table(client: Any, sweeps: Sweeps) -> None:
    versions = read_versions(client, CANDIDATES_KEY)
    front = pq.read_table(sweeps.out_dirs[-1] / "front.parquet").to_pandas()

    for version in versions:
        assert version.type == "table"
        rows = json.loads(version.data) if isinstance(version.data, str) else version.data
        assert len(rows) == len(front)
        assert len({row["label"] for row in rows}) == len(rows)
        assert {"placement", "latency_s", "cost_usd", "equivalent_count"} <= set(rows[0])
        assert [row["latency_s"] for row in rows] == pytest.approx(list(front["latency_s"]))
        assert [row["cost_usd"] for row in rows] == pytest.approx(list(front["cost_usd"]))


def test_server_summary_markdown(client: Any) -> None:
    versions = read_versions(client, SUMMARY_KEY)

    for version in versions:
        assert version.type == "markdown"
        assert "object-detection" in version.data
        assert "data:image/png;base64,iVBORw0KGgo" in version.data


def test_server_progress_reaches_100(client: Any) -> None:
    versions = read_versions(client, PROGRESS_KEY)

    for version in versions:
        assert version.type == "progress"
        assert version.data == pytest.approx(100.0)


def test_server_report_embeds_png(client: Any) -> None:
    versions = read_versions(client, REPORT_KEY)

    assert len(versions) == N_RUNS
    for version in versions:
        assert version.type == "markdown"
        assert "data:image/png;base64,iVBORw0KGgo" in version.data
        assert "](chart.png)" not in version.data
        assert "Recommended: candidate" in version.data
        assert "compared with" in version.data


def test_server_link_only_with_share_url(client: Any, sweeps: Sweeps) -> None:
    versions = read_versions(client, LINK_KEY)

    assert len(versions) == 1
    # Prefect 3 stores a link artifact as markdown: "[link text](url)".
    assert versions[0].type == "markdown"
    shared = sweeps.out_dirs[0].parent / "shared" / "report.html"
    assert shared.as_uri() in versions[0].data


def test_server_sweep_outputs(sweeps: Sweeps) -> None:
    for out in sweeps.out_dirs:
        assert (out / "front.parquet").is_file()
        assert (out / "report.md").is_file()
    print(f"sweep durations against the server: {[round(s, 1) for s in sweeps.durations_s]} s")
