"""Chunk runners: per-task overhead, scaling from 1 to 2 workers, and Prefect's task runners.

The sweep keeps Prefect on the calling process and sends the chunk function to the
runner directly. The alternative is a Prefect task per chunk on prefect-dask's
DaskTaskRunner, whose workers report every task run to a Prefect server that all of them
reach (`prefect server start` on 127.0.0.1). The last table times both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from allocation.runners import open_runner
from allocation.study import load_study
from bench.common import Settings, Table, format_seconds

TITLE = "Chunk runners"

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / "catalogs" / "workflows" / "style-transfer.yaml"
SYSTEM = REPO / "catalogs" / "systems" / "edge-gateway-cloud.yaml"
RUNNERS = ("thread", "process", "dask")

_PREFECT_TASKS = """
import sys, time
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

@task
def one(i: int) -> int:
    return i

def timed(runner, n):
    @flow(task_runner=runner)
    def many() -> None:
        one.submit(0).result()
        started = time.perf_counter()
        for future in one.map(list(range(n))):
            future.result()
        print(f"{(time.perf_counter() - started) / n:.6f}")
    many()

n = int(sys.argv[1])
timed(ThreadPoolTaskRunner(max_workers=1), n)
timed(DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1,
    "host": "127.0.0.1", "dashboard_address": None}), n)
"""


def _overhead_s(name: str, count: int) -> tuple[float, float]:
    """Return the start-up time and the wall time per one-assignment chunk on 1 worker."""
    problem = load_study(WORKFLOW, SYSTEM).problem
    started = time.perf_counter()
    with open_runner(name, workers=1) as runner:
        start_s = time.perf_counter() - started
        list(runner.map_unordered(problem, "bench", [(0, 1)] * 2, 1.0))
        mark = time.perf_counter()
        list(runner.map_unordered(problem, "bench", [(i, i + 1) for i in range(count)], 1.0))
        per_task_s = (time.perf_counter() - mark) / count
    return start_s, per_task_s


def _sweep_s(name: str, workers: int, chunk_size: int) -> float:
    """Return the wall time of evaluating the whole 3^11 space row by row."""
    problem = load_study(WORKFLOW, SYSTEM).problem
    size = problem.space_size
    chunks = [(a, min(a + chunk_size, size)) for a in range(0, size, chunk_size)]
    with open_runner(name, workers=workers) as runner:
        list(runner.map_unordered(problem, "bench", chunks[: 2 * workers], 1.0))
        started = time.perf_counter()
        list(runner.map_unordered(problem, "bench", chunks, 1.0))
        return time.perf_counter() - started


def _prefect_task_overheads_s(count: int) -> tuple[float, float] | None:
    """Time Prefect tasks on ThreadPoolTaskRunner and DaskTaskRunner against a server."""
    try:
        import prefect_dask  # noqa: F401
    except ImportError:
        return None
    sys.path.insert(0, str(REPO))
    from tests.prefect_server import _start, _stop, client_env

    with tempfile.TemporaryDirectory() as home:
        process, api_url = _start(Path(home), Path(home) / "server.log")
        try:
            result = subprocess.run(
                [sys.executable, "-c", _PREFECT_TASKS, str(count)],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
                env={**os.environ, **client_env(api_url, Path(home))},
            )
        finally:
            _stop(process)
    thread_s, dask_s = (float(line) for line in result.stdout.split())
    return thread_s, dask_s


def run(settings: Settings) -> list[Table]:
    """Measure every local runner; Ray needs a cluster and is not measured."""
    count = 50 if settings.quick else 300
    overhead = Table(
        title="Per-task overhead of each runner (one worker, one-assignment chunks)",
        columns=["runner", "start and stop", "wall time per chunk"],
    )
    for name in RUNNERS:
        start_s, per_task_s = _overhead_s(name, count)
        overhead.rows.append([name, format_seconds(start_s), format_seconds(per_task_s)])
        overhead.facts[f"{name}_per_task"] = per_task_s
    overhead.notes.append(
        f"{count} chunks of one assignment each, after two warm-up chunks; the time per "
        "chunk is submission, transfer of the problem and the result, and the merge-free "
        "loop of `ChunkRunner.map_unordered`. allocation.runners.TASK_OVERHEAD_S rounds "
        "these up for the chunk size rule."
    )

    chunk_size = 8_192
    scaling = Table(
        title="Scaling from 1 to 2 workers: the 3^11 example estimated row by row",
        columns=["runner", "1 worker", "2 workers", "speed-up"],
    )
    for name in RUNNERS:
        one_s = _sweep_s(name, 1, chunk_size)
        two_s = _sweep_s(name, 2, chunk_size)
        scaling.rows.append(
            [name, format_seconds(one_s), format_seconds(two_s), f"{one_s / two_s:.2f}×"]
        )
        scaling.facts[f"{name}_speedup"] = one_s / two_s
    scaling.notes.append(
        f"177,147 assignments in chunks of {chunk_size:,} with sample_fraction 1 (every "
        "row estimated by NumPy, the slowest path); warm runners, one run each."
    )

    design = Table(
        title="Chunk function sent to the runner against a Prefect task per chunk",
        columns=["design", "wall time per chunk"],
    )
    design.rows.append(["chunk function on a Dask LocalCluster (this sweep)", overhead.rows[2][2]])
    prefect = _prefect_task_overheads_s(count)
    if prefect is None:
        design.rows.append(["Prefect tasks (prefect-dask not installed)", "skipped"])
    else:
        design.rows.append(["Prefect task on ThreadPoolTaskRunner", format_seconds(prefect[0])])
        design.rows.append(
            [
                "Prefect task on prefect-dask DaskTaskRunner, `prefect server start`",
                format_seconds(prefect[1]),
            ]
        )
        design.facts.update({"prefect_thread_task": prefect[0], "prefect_dask_task": prefect[1]})
    design.notes.append(
        "Prefect tasks: a flow maps a task that returns its argument over "
        f"{count} items on one worker, against a separate `prefect server start` on "
        "127.0.0.1, so each task run is recorded through the server's API."
    )
    return [overhead, scaling, design]
