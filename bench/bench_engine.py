"""The exhaustive engine in assignments per second, its peak memory, and a plain loop."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from allocation.catalog import CpuCatalog
from allocation.compile import CompiledProblem, compile_problem
from allocation.model import System, Workflow
from allocation.study import load_study
from allocation.sweep import sweep_in_process
from bench.common import Settings, Table, format_rate, format_seconds, median_time_s
from flows.sweep import choose_chunk_size

TITLE = "Engine"

REPO = Path(__file__).resolve().parent.parent

PUBLISHED_ASSIGNMENTS = 3**11
PUBLISHED_TIME_S = 5 * 3600.0
"""The published study of this method took about 5 hours for 3^11 = 177,147 assignments."""


def _sweep_in_process(problem: CompiledProblem) -> Any:
    # The chunk size the sweep flow picks for this space, so that the per-chunk cost
    # weighs as it does in a real sweep.
    return sweep_in_process(
        problem, chunk_size=choose_chunk_size(problem.space_size), sample_fraction=0.0
    )


ENGINES: dict[str, Callable[[CompiledProblem], Any]] = {
    "sweep_in_process": _sweep_in_process,
}
"""Name to a function that sweeps a compiled problem; add an engine with one line."""

_EMPTY_CATALOG = CpuCatalog(None, (), "")


def chain_models(n_stages: int, n_devices: int) -> tuple[Workflow, System]:
    """Build a chain of `n_stages` stages on `n_devices` devices, the last two priced flat.

    Every stage may run on every device, every pair of devices has a link, and the
    first device is an edge device with a slow CPU.
    """
    stages = [
        {"id": f"s{s}", "time_s": 0.01 * (1 + (s * 7) % 5), "threads": 1 + s % 2}
        for s in range(n_stages)
    ]
    edges = [
        {"from": f"s{s}", "to": f"s{s + 1}", "bytes": 100_000 * (1 + (s * 3) % 7)}
        for s in range(n_stages - 1)
    ]
    devices: list[dict[str, Any]] = []
    for d in range(n_devices):
        device: dict[str, Any] = {
            "id": f"d{d}",
            "cpu": {"name": f"CPU {d}", "single_thread": 600.0 * (d + 1), "cores": 4},
        }
        if d >= n_devices - 2 and d > 0:
            device["pricing"] = {
                "provider": "flat",
                "usd_per_compute_s": 0.0000166667 * (d + 1),
                "usd_per_invocation": 0.0000002,
                "usd_per_gb_in": 0.0,
                "usd_per_gb_out": 0.09,
            }
        devices.append(device)
    links = [
        {"between": [f"d{a}", f"d{b}"], "bandwidth_mbps": 100.0 * (a + 1), "latency_ms": 5.0}
        for a, b in itertools.combinations(range(n_devices), 2)
    ]
    workflow = Workflow.model_validate(
        {
            "workflow": f"chain-{n_stages}",
            "measured_on": {"name": "Reference PC", "single_thread": 2900.0, "cores": 8},
            "stages": stages,
            "edges": edges,
        }
    )
    system = System.model_validate(
        {"system": f"devices-{n_devices}", "devices": devices, "links": links}
    )
    return workflow, system


def chain_problem(n_stages: int, n_devices: int) -> CompiledProblem:
    """Compile `chain_models`."""
    workflow, system = chain_models(n_stages, n_devices)
    return compile_problem(workflow, system, _EMPTY_CATALOG)


def naive_loop(workflow: Workflow, system: System, problem: CompiledProblem) -> int:
    """Estimate every assignment of a chain one at a time in plain Python.

    This is what a hand-written script does: for each assignment, walk the stages, add
    stage and transfer times, and add up the flat cost. Returns the number of
    assignments.
    """
    device_ids = [device.id for device in system.devices]
    stage_time = problem.stage_time_s.tolist()
    links = {}
    for link in system.links:
        a, b = link.between
        links[(a, b)] = links[(b, a)] = link
    pricing = {device.id: device.pricing.options for device in system.devices if device.pricing}
    edge_bytes = [edge.bytes for edge in workflow.edges]
    n_stages = len(workflow.stages)

    count = 0
    best = (float("inf"), float("inf"))
    for placement in itertools.product(range(len(device_ids)), repeat=n_stages):
        latency_s = 0.0
        cost_usd = 0.0
        previous = None
        for s, d in enumerate(placement):
            device = device_ids[d]
            latency_s += stage_time[s][d]
            if previous is not None and previous != device:
                link = links[(previous, device)]
                size = edge_bytes[s - 1]
                latency_s += link.latency_ms / 1000 + size * 8 / (link.bandwidth_mbps * 1e6)
                if previous in pricing:
                    cost_usd += pricing[previous]["usd_per_gb_out"] * size / 1e9
                if device in pricing:
                    cost_usd += pricing[device]["usd_per_gb_in"] * size / 1e9
                    cost_usd += pricing[device]["usd_per_invocation"]
            elif previous is None and device in pricing:
                cost_usd += pricing[device]["usd_per_invocation"]
            if device in pricing:
                cost_usd += pricing[device]["usd_per_compute_s"] * stage_time[s][d]
            previous = device
        best = min(best, (latency_s, cost_usd))
        count += 1
    return count


_PEAK_RSS_CHILD = """
import sys
from bench.bench_engine import ENGINES, chain_problem
problem = chain_problem(int(sys.argv[1]), int(sys.argv[2]))
ENGINES[sys.argv[3]](problem)
"""


def peak_rss_mib(
    n_stages: int, n_devices: int, engine: str, limit_s: float
) -> tuple[float, float, bool]:
    """Sweep a chain in a child process and follow its peak RSS (VmHWM) in /proc.

    Returns the peak RSS in MiB, the wall time, and whether the sweep finished within
    `limit_s` (the child is stopped at the limit).
    """
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", _PEAK_RSS_CHILD, str(n_stages), str(n_devices), engine],
        cwd=REPO,
    )
    peak_kib = 0
    finished = True
    while child.poll() is None:
        peak_kib = max(peak_kib, _vm_hwm_kib(child.pid))
        if time.perf_counter() - started > limit_s:
            child.terminate()
            child.wait()
            finished = False
            break
        time.sleep(0.2)
    return peak_kib / 1024, time.perf_counter() - started, finished


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(settings: Settings) -> list[Table]:
    """Time every engine on the gateway example and a 4-device chain."""
    gateway = load_study(
        REPO / "catalogs/workflows/style-transfer.yaml",
        REPO / "catalogs/systems/edge-gateway-cloud.yaml",
        REPO / "catalogs",
    ).problem
    chain_stages = 9 if settings.quick else 13
    chain = chain_problem(chain_stages, 4)
    rates = Table(
        title="Engine: assignments per second (warm, median)",
        columns=["engine", "problem", "assignments", "median time", "assignments per s"],
    )
    for name, engine in ENGINES.items():
        for label, problem in (
            ("style-transfer on edge-gateway-cloud (3^11)", gateway),
            (f"{chain_stages}-stage chain on 4 devices (4^{chain_stages})", chain),
        ):
            engine(problem)
            median_s, _, _ = median_time_s(lambda e=engine, p=problem: e(p), settings.repeats)
            rate = problem.space_size / median_s
            size = f"{problem.space_size:,}"
            rates.rows.append([name, label, size, format_seconds(median_s), format_rate(rate)])
            rates.facts[f"{name} {label}"] = rate
    first_engine = next(iter(ENGINES))
    engine_rate = rates.facts[
        f"{first_engine} {chain_stages}-stage chain on 4 devices (4^{chain_stages})"
    ]
    gateway_rate = rates.facts[f"{first_engine} style-transfer on edge-gateway-cloud (3^11)"]

    # A plain Python loop and the published figure, against the engine.
    workflow, system = chain_models(9, 3)
    small = compile_problem(workflow, system, _EMPTY_CATALOG)
    loop_s, _, _ = median_time_s(lambda: naive_loop(workflow, system, small), 1)
    loop_rate = small.space_size / loop_s
    published_rate = PUBLISHED_ASSIGNMENTS / PUBLISHED_TIME_S
    baselines = Table(
        title="Plain loops against the engine",
        columns=["method", "assignments", "assignments per s", "engine is faster by"],
    )
    baselines.rows.append(
        [
            "plain Python loop per assignment, 9-stage chain on 3 devices (3^9)",
            f"{small.space_size:,}",
            format_rate(loop_rate),
            f"{engine_rate / loop_rate:,.0f}×",
        ]
    )
    baselines.rows.append(
        [
            "the published study of this method (3^11 in about 5 hours)",
            f"{PUBLISHED_ASSIGNMENTS:,}",
            format_rate(published_rate),
            f"{engine_rate / published_rate:,.0f}×",
        ]
    )
    baselines.notes.append(
        f"The engine's rate is that of {first_engine} on the {chain_stages}-stage chain "
        f"({format_rate(engine_rate)} per s); on the 3^11 example it is "
        f"{format_rate(gateway_rate)} per s."
    )
    baselines.facts.update(
        {"loop rate": loop_rate, "engine rate": engine_rate, "gateway rate": gateway_rate}
    )

    # Peak memory of a large sweep in a child process.
    memory = Table(
        title="Peak memory of a sweep (child process, VmHWM)",
        columns=["engine", "problem", "peak RSS", "wall time", "finished"],
    )
    memory_stages = 11 if settings.quick else 15
    limit_s = 60.0 if settings.quick else 300.0
    for name in ENGINES:
        peak, wall_s, finished = peak_rss_mib(memory_stages, 4, name, limit_s)
        memory.rows.append(
            [
                name,
                f"{memory_stages}-stage chain on 4 devices (4^{memory_stages})",
                f"{peak:,.0f} MiB",
                format_seconds(wall_s),
                "yes" if finished else f"no: stopped at the {limit_s:.0f} s limit",
            ]
        )
        memory.facts[f"{name} peak MiB"] = peak
    memory.notes.append(
        "The sweep keeps no pattern rows (sample_fraction=0), so memory is one chunk "
        "(the size the sweep flow picks: at most 1,048,576 assignments) and the running "
        "front. A stopped sweep reports the peak reached until the limit."
    )
    return [rates, baselines, memory]
