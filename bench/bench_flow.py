"""A whole `allocation sweep` run against a trivial Prefect flow, each in a new process."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Settings, Table, format_seconds, median_time_s

TITLE = "Whole sweep against Prefect's floor"

REPO = Path(__file__).resolve().parent.parent

_TRIVIAL_FLOW = """
from allocation.cli import _configure_prefect
_configure_prefect(False)
from prefect import flow, task

@task
def one() -> int:
    return 1

@flow
def trivial() -> int:
    return one()

trivial()
"""


def _run(arguments: list[str]) -> None:
    subprocess.run(arguments, check=True, capture_output=True, cwd=REPO)


def run(settings: Settings) -> list[Table]:
    """Time both commands; the difference is what the sweep itself costs."""
    table = Table(
        title="allocation sweep on the 3^11 example against a one-task Prefect flow",
        columns=["command", "median wall time"],
    )
    with tempfile.TemporaryDirectory() as out_dir:
        sweep = [
            sys.executable,
            "-m",
            "allocation.cli",
            "sweep",
            "catalogs/workflows/style-transfer.yaml",
            "catalogs/systems/edge-gateway-cloud.yaml",
            "--out",
            str(Path(out_dir) / "out"),
        ]
        trivial = [sys.executable, "-c", _TRIVIAL_FLOW]
        _run(trivial)
        floor_s, _, _ = median_time_s(lambda: _run(trivial), settings.repeats)
        sweep_s, _, _ = median_time_s(lambda: _run(sweep), settings.repeats)
    table.rows.append(["one-task Prefect flow (python -c ...)", format_seconds(floor_s)])
    table.rows.append(
        ["allocation sweep style-transfer edge-gateway-cloud", format_seconds(sweep_s)]
    )
    table.rows.append(["difference: the sweep's own cost", format_seconds(sweep_s - floor_s)])
    table.notes.append(
        "Both run in a new process in Prefect's embedded mode with the same environment "
        "settings (telemetry off, quiet logging); the sweep also writes every output file."
    )
    table.facts.update({"floor": floor_s, "sweep": sweep_s})
    return [table]
