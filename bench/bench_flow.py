"""A whole `allocation sweep` run against a trivial Prefect flow, each in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.bench_engine import chain_models
from bench.common import Settings, Table, format_rate, format_seconds

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

_TRIVIAL_FLOW_EARLY_SERVER = """
from allocation.cli import _configure_prefect
from allocation.local_server import start_unless_configured
_configure_prefect(False)
server = start_unless_configured()
from prefect import flow, task

@task
def one() -> int:
    return 1

@flow
def trivial() -> int:
    return one()

server.wait_until_ready()
with server.settings():
    trivial()
server.close()
"""


def _run(arguments: list[str]) -> None:
    subprocess.run(arguments, check=True, capture_output=True, cwd=REPO)


def _write_chain(folder: Path, n_stages: int, n_devices: int) -> tuple[Path, Path]:
    """Write `chain_models` as workflow and system files; return their paths."""
    workflow, system = chain_models(n_stages, n_devices)
    paths = folder / "workflow.yaml", folder / "system.yaml"
    for path, model in zip(paths, (workflow, system), strict=True):
        document = model.model_dump(by_alias=True, exclude_none=True, warnings=False)
        path.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
    return paths


def flow_rate(settings: Settings) -> Table:
    """Sweep a 4-device chain with the command and read the estimation time from run.json."""
    n_stages = 9 if settings.quick else 13
    table = Table(
        title=f"A {n_stages}-stage chain on 4 devices in a real sweep flow",
        columns=["assignments", "chunks", "estimation time (run.json)", "assignments per s"],
    )
    with tempfile.TemporaryDirectory() as folder:
        workflow, system = _write_chain(Path(folder), n_stages, 4)
        out = Path(folder) / "out"
        command = [
            sys.executable,
            "-m",
            "allocation.cli",
            "sweep",
            str(workflow),
            str(system),
            "--method",
            "exhaustive",
            "--max-patterns",
            "1000",
            "--out",
            str(out),
        ]
        estimation_s = []
        for _ in range(settings.repeats):
            _run(command)
            run = json.loads((out / "run.json").read_text("utf-8"))
            estimation_s.append(run["timings_s"]["evaluate_s"])
        median_s = sorted(estimation_s)[len(estimation_s) // 2]
        counts = run["counts"]
    rate = counts["space_size"] / median_s
    table.rows.append(
        [
            f"{counts['space_size']:,}",
            str(counts["chunks"]),
            format_seconds(median_s),
            format_rate(rate),
        ]
    )
    table.notes.append(
        f"`allocation sweep --method exhaustive --max-patterns 1000` in a new process on "
        f"{os.cpu_count()} cores, median of {settings.repeats}; the estimation time runs "
        "from the submission of the first chunk to the runner (threads, the default) to "
        "the merged front, with the progress artifact's updates."
    )
    table.facts.update({"rate": rate, "estimation": median_s})
    return table


def run(settings: Settings) -> list[Table]:
    """Time the commands in turn; the difference is what the sweep itself costs."""
    table = Table(
        title="allocation sweep on the 3^11 example against a one-task Prefect flow",
        columns=["command", "median wall time"],
    )
    with tempfile.TemporaryDirectory() as out_dir:
        out = Path(out_dir) / "out"
        commands = {
            "trivial": [sys.executable, "-c", _TRIVIAL_FLOW],
            "trivial, early server": [sys.executable, "-c", _TRIVIAL_FLOW_EARLY_SERVER],
            "sweep": [
                sys.executable,
                "-m",
                "allocation.cli",
                "sweep",
                "catalogs/workflows/style-transfer.yaml",
                "catalogs/systems/edge-gateway-cloud.yaml",
                "--out",
                str(out),
            ],
        }
        for command in commands.values():
            _run(command)
        # In turns, so that a change in the machine's load reaches every command alike.
        times_s: dict[str, list[float]] = {name: [] for name in commands}
        in_flow_s = []
        for _ in range(settings.repeats):
            for name, command in commands.items():
                started = time.perf_counter()
                _run(command)
                times_s[name].append(time.perf_counter() - started)
            timings = json.loads((out / "run.json").read_text("utf-8"))["timings_s"]
            in_flow_s.append(timings["total_s"] + timings["artifacts_s"])
    floor_s, early_s, sweep_s = (_median(times_s[name]) for name in commands)
    table.rows.append(["one-task Prefect flow (python -c ...)", format_seconds(floor_s)])
    table.rows.append(
        ["the same flow, its server started first as the sweep does", format_seconds(early_s)]
    )
    table.rows.append(
        ["allocation sweep style-transfer edge-gateway-cloud", format_seconds(sweep_s)]
    )
    table.rows.append(["difference: the sweep's own cost", format_seconds(sweep_s - floor_s)])
    table.rows.append(
        [
            "the sweep's work inside its flow run (run.json: total_s + artifacts_s)",
            format_seconds(_median(in_flow_s)),
        ]
    )
    table.notes.append(
        "Each command runs in a new process in Prefect's embedded mode with the same "
        "environment settings (telemetry off, quiet logging), the three in turn, "
        f"{settings.repeats} times; the sweep writes every output file. The sweep starts "
        "Prefect's server in a child process before it imports its own modules, and loads "
        "them, vl-convert and the compiled engine while the server boots "
        "(allocation/local_server.py); the second row times that start alone."
    )
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        table.notes.append(
            "PYTHONDONTWRITEBYTECODE is set here, so modules without a .pyc from the "
            "install are compiled anew in every process, in each command alike."
        )
    table.facts.update(
        {"floor": floor_s, "early": early_s, "sweep": sweep_s, "in_flow": _median(in_flow_s)}
    )
    return [table, flow_rate(settings)]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
