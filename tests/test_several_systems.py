"""One command, several systems: one Prefect server, one folder each, and summary.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import CATALOGS, REPO
from tests.processes import processes_with_env

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEMS = [CATALOGS / "systems" / name for name in ("edge-cloud.yaml", "edge-gateway-cloud.yaml")]


def test_two_systems_share_one_server(tmp_path: Path) -> None:
    mark = str(tmp_path)
    env = {**os.environ, "ALLOCATION_TEST_MARK": mark, "PREFECT_API_URL": ""}
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "allocation.cli",
            "sweep",
            str(WORKFLOW),
            *map(str, SYSTEMS),
            "--out",
            str(out),
            "--verbose",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    # Every flow reaches the command's own server; Prefect starts none of its own.
    assert "Starting temporary server" not in result.stderr
    summary = pq.read_table(out / "summary.parquet").to_pandas()
    assert list(summary["system"]) == ["edge-cloud", "edge-gateway-cloud"]
    assert (summary["status"] == "ok").all()
    assert (out / "summary.md").is_file()
    for name in ("object-detection--edge-cloud", "object-detection--edge-gateway-cloud"):
        assert (out / name / "front.parquet").is_file(), name
    assert processes_with_env("ALLOCATION_TEST_MARK", mark) == []
