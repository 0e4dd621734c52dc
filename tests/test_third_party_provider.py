"""A third-party provider installed from its own package, as a user would install one.

The package in ``tests/fixtures/thirdparty-provider`` is built and installed into a
temporary folder, never into the project's environment. Subprocesses that put that
folder on ``PYTHONPATH`` then find its entry point: a sweep prices a device with it,
and the shared conformance suite checks it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import CATALOGS, REPO

FIXTURE = REPO / "tests" / "fixtures" / "thirdparty-provider"
PROVIDER = "example-thirdparty"
FEE_USD = 0.0025
RUNS_PER_MONTH = 1000

WORKFLOW = """\
workflow: third-party
measured_on: {name: Reference PC, single_thread: 2000, cores: 4}
stages:
  - {id: capture, time_s: 0.2, pin: edge}
  - {id: resize, time_s: 0.3, pin: cloud}
  - {id: detect, time_s: 0.4}
  - {id: publish, time_s: 0.1, pin: cloud}
edges:
  - {from: capture, to: resize, bytes: 1000}
  - {from: resize, to: detect, bytes: 1000}
  - {from: detect, to: publish, bytes: 1000}
"""

SYSTEM = f"""\
system: edge-thirdparty
runs_per_month: {RUNS_PER_MONTH}
devices:
  - id: edge
    cpu: {{name: Edge board, single_thread: 500, cores: 4}}
  - id: cloud
    cpu: {{name: Cloud vCPU, single_thread: 2000, cores: 2}}
    pricing:
      provider: {PROVIDER}
      usd_per_invocation: {FEE_USD}
links:
  - {{between: [edge, cloud], bandwidth_mbps: 100}}
"""


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build a wheel of the fixture package and install it into a temporary folder.

    Both steps run offline: uv builds with hatchling from uv's cache, where ``uv sync``
    put it when it built this project. Building a fresh wheel each time, instead of
    installing the folder, keeps uv from reusing a wheel built from older sources.
    """
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed; it builds and installs the fixture package")
    work = tmp_path_factory.mktemp("thirdparty")
    dist, site = work / "dist", work / "site"

    build = subprocess.run(
        [uv, "build", "--wheel", "--offline", "--out-dir", str(dist), str(FIXTURE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("*.whl")

    install = subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--offline",
            "--no-deps",
            "--python",
            sys.executable,
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    assert (site / "example_thirdparty_provider" / "__init__.py").is_file()
    return site


@pytest.fixture
def prefect_api_url(prefect_harness: None) -> str:
    """Return the URL of the session's Prefect test server, for a sweep in a subprocess.

    The subprocess's sweep connects to it instead of starting a server of its own.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url
    return str(url)


def environment(site_dir: Path, **extra: str) -> dict[str, str]:
    """Return the environment of a subprocess, with the installed package on PYTHONPATH."""
    paths = [str(site_dir), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def test_project_environment_lacks_provider() -> None:
    from allocation.pricing import available_providers

    assert PROVIDER not in available_providers()


def test_sweep_prices_with_third_party_provider(
    site_dir: Path, prefect_api_url: str, tmp_path: Path
) -> None:
    workflow_file = tmp_path / "workflow.yaml"
    system_file = tmp_path / "system.yaml"
    workflow_file.write_text(WORKFLOW, encoding="utf-8")
    system_file.write_text(SYSTEM, encoding="utf-8")
    out = tmp_path / "out"
    env = environment(
        site_dir,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=prefect_api_url,
    )

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "allocation.cli",
            "sweep",
            str(workflow_file),
            str(system_file),
            "--catalog",
            str(CATALOGS),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    # With detect in the cloud, resize-detect-publish is one invocation. With detect on
    # the edge, resize and publish are two.
    patterns = pq.read_table(out / "patterns.parquet").to_pandas()
    assert sorted(patterns["at_detect"]) == ["cloud", "edge"]
    front = pq.read_table(out / "front.parquet").to_pandas()
    assert len(front) >= 1
    for table in (patterns, front):
        for row in table.itertuples():
            invocations = 1 if row.at_detect == "cloud" else 2
            assert row.cost_usd == pytest.approx(FEE_USD * invocations, rel=1e-12)
            assert row.monthly_cost_usd == pytest.approx(
                FEE_USD * invocations * RUNS_PER_MONTH, rel=1e-12
            )


def test_third_party_passes_conformance_suite(site_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_provider_conformance.py",
            "-k",
            PROVIDER,
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=REPO,
        env=environment(site_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    assert int(passed.group(1)) >= 10, summary
    assert "skipped" not in summary
    assert "failed" not in summary
