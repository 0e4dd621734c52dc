"""Slow, obviously correct reference of enumeration, estimation and the Pareto front.

Everything here follows the formulas of docs/guide.md (section 3) one assignment at a time in
plain Python, reading the workflow and system models directly. Only the CPUs and the
pricing providers are taken from the compiled problem, since they are the inputs the
formulas start from. Tests compare the fast engine with these functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from allocation.compile import CompiledProblem
from allocation.explain import LIMIT_METRICS, recommend
from allocation.model import Requirements, System, Workflow
from allocation.pricing import Usage
from allocation.robustness import ScaledProvider

__all__ = [
    "reference_assignments",
    "reference_evaluate",
    "reference_fits",
    "reference_front",
    "reference_infeasible_count",
    "reference_robustness",
    "reference_sweep",
]

TOLERANCE = 1e-9


def reference_assignments(workflow: Workflow, system: System) -> Iterator[dict[str, str]]:
    """Yield every allowed assignment {stage id: device id} in enumeration order."""
    device_order = [d.id for d in system.devices]
    choices = []
    for stage in workflow.stages:
        if stage.pin is not None:
            choices.append([stage.pin])
        elif stage.allowed is not None:
            choices.append([d for d in device_order if d in stage.allowed])
        else:
            choices.append(device_order)
    ids = [stage.id for stage in workflow.stages]
    for combination in itertools.product(*choices):
        yield dict(zip(ids, combination, strict=True))


def _per_core(cpu: Any, figure: str) -> float:
    value = float(cpu.figures[figure])
    return value if figure == "single_thread" else value / cpu.cores


def reference_evaluate(
    workflow: Workflow, system: System, problem: CompiledProblem, placement: dict[str, str]
) -> dict[str, float]:
    """Estimate one assignment with plain Python arithmetic."""
    reference = problem.cpus["measured_on"]
    devices = {d.id: d for d in system.devices}

    stage_time = {}
    cores_of = {}
    reference_cores = int(reference.cores or 0)  # compile_problem rejected a missing count
    for stage in workflow.stages:
        device = devices[placement[stage.id]]
        cpu = problem.cpus[device.id]
        provider = next((p.provider for p in problem.priced if p.device_id == device.id), None)
        if device.cores is not None:
            cores = float(device.cores)
        elif callable(getattr(provider, "usable_cores", None)):
            cores = float(provider.usable_cores())  # type: ignore[union-attr]
        else:
            cores = float(cpu.cores or 0)
        cores_of[stage.id] = cores
        # Stage time ∝ 1 / min(threads, cores) ** alpha, with alpha = 1 when unset.
        alpha = system.core_scaling_exponent
        reference_used = min(stage.threads, reference_cores)
        device_used = min(stage.threads, cores)
        if alpha is None:
            time_s = (
                stage.time_s
                * (_per_core(reference, stage.score) * reference_used)
                / (_per_core(cpu, stage.score) * device_used)
            )
        else:
            time_s = (
                stage.time_s
                * (_per_core(reference, stage.score) * reference_used**alpha)
                / (_per_core(cpu, stage.score) * device_used**alpha)
            )
        speed = 1.0 if device.speed_factor is None else device.speed_factor
        if stage.stage_class is not None:
            speed *= (device.class_speed_factors or {}).get(stage.stage_class, 1.0)
        stage_time[stage.id] = time_s / speed

    links = {}
    for link in system.links:
        a, b = link.between
        links[(a, b)] = links[(b, a)] = link

    transfer = {}
    for edge in workflow.edges:
        a, b = placement[edge.source], placement[edge.target]
        if a == b:
            transfer[(edge.source, edge.target)] = 0.0
        else:
            link = links[(a, b)]
            transfer[(edge.source, edge.target)] = (
                link.latency_ms + link.overhead_ms
            ) / 1000 + edge.bytes * 8 / (link.bandwidth_mbps * 10**6)

    if system.contention is not None:
        stage_time, transfer = _reference_contention(
            workflow, system, placement, stage_time, transfer, cores_of
        )

    # Longest path by memoised recursion over predecessors.
    predecessors: dict[str, list[str]] = {stage.id: [] for stage in workflow.stages}
    for edge in workflow.edges:
        predecessors[edge.target].append(edge.source)
    finish: dict[str, float] = {}

    def finish_time(stage_id: str) -> float:
        if stage_id not in finish:
            start = max(
                (finish_time(p) + transfer[(p, stage_id)] for p in predecessors[stage_id]),
                default=0.0,
            )
            finish[stage_id] = start + stage_time[stage_id]
        return finish[stage_id]

    latency_s = max(finish_time(stage.id) for stage in workflow.stages)
    comm_s = sum(transfer.values())

    # Period of a stream: the busiest device or link; a link carries both directions.
    busy_s: dict[Any, float] = {}
    for stage in workflow.stages:
        device_id = placement[stage.id]
        busy_s[device_id] = busy_s.get(device_id, 0.0) + stage_time[stage.id]
    for edge in workflow.edges:
        a, b = placement[edge.source], placement[edge.target]
        if a != b:
            link_key = frozenset((a, b))
            busy_s[link_key] = busy_s.get(link_key, 0.0) + transfer[(edge.source, edge.target)]
    # Contended times are those of k frames at once, so k frames pass per busy time.
    frames = 1 if system.contention is None else system.contention.concurrent_frames
    period_s = max(busy_s.values()) / frames

    upload = download = 0
    cost = 0.0
    monthly = 0.0
    for priced in problem.priced:
        usage = _reference_usage(workflow, placement, stage_time, priced.device_id)
        upload += usage["bytes_in"]
        download += usage["bytes_out"]
        as_arrays = Usage(
            compute_s=np.array([usage["compute_s"]]),
            invocations=np.array([usage["invocations"]], dtype=np.int64),
            invocation_s=np.array([usage["invocation_s"]]),
            bytes_in=np.array([usage["bytes_in"]], dtype=np.int64),
            bytes_out=np.array([usage["bytes_out"]], dtype=np.int64),
        )
        lines = priced.provider.cost_lines_usd(as_arrays)
        cost += sum(float(values[0]) for values in lines.values())
        if system.runs_per_month is not None:
            monthly += float(priced.provider.monthly_cost_usd(as_arrays, system.runs_per_month)[0])

    return {
        "latency_s": latency_s,
        "cost_usd": cost,
        "comm_s": comm_s,
        "upload_bytes": upload,
        "download_bytes": download,
        "monthly_cost_usd": monthly if system.runs_per_month is not None else float("nan"),
        "period_s": period_s,
        "throughput_fps": 1.0 / period_s if period_s > 0 else float("inf"),
    }


def _reference_contention(
    workflow: Workflow,
    system: System,
    placement: dict[str, str],
    stage_time: dict[str, float],
    transfer: dict[tuple[str, str], float],
    cores_of: dict[str, float],
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Apply the contention block of `system` to uncontended stage and transfer times."""
    contention = system.contention
    assert contention is not None
    frames = contention.concurrent_frames
    successors: dict[str, list[str]] = {stage.id: [] for stage in workflow.stages}
    for edge in workflow.edges:
        successors[edge.source].append(edge.target)

    def reaches(x: str, y: str) -> bool:
        """Tell whether y is x or a descendant of x, by depth-first search."""
        stack, seen = [x], set()
        while stack:
            current = stack.pop()
            if current == y:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(successors[current])
        return False

    contended_time = dict(stage_time)
    if contention.cpu:
        threads = {stage.id: stage.threads for stage in workflow.stages}
        for s in workflow.stages:
            device = placement[s.id]
            cores = cores_of[s.id]
            demand = 0.0
            for t in workflow.stages:
                concurrent = t.id == s.id or not (reaches(s.id, t.id) or reaches(t.id, s.id))
                if concurrent and placement[t.id] == device:
                    demand += min(threads[t.id], cores)
            demand *= frames
            contended_time[s.id] = stage_time[s.id] * max(1.0, demand / cores)

    contended_transfer = dict(transfer)
    if contention.links:
        link_of = {}
        for link in system.links:
            link_of[frozenset(link.between)] = link
        for e in workflow.edges:
            if placement[e.source] == placement[e.target]:
                continue
            link = link_of[frozenset((placement[e.source], placement[e.target]))]
            shared_bytes = 0
            for f in workflow.edges:
                same_link = (
                    placement[f.source] != placement[f.target]
                    and link_of[frozenset((placement[f.source], placement[f.target]))] is link
                )
                overlap = f is e or not (reaches(e.target, f.source) or reaches(f.target, e.source))
                if same_link and overlap:
                    shared_bytes += min(e.bytes, f.bytes)
            contended_transfer[(e.source, e.target)] = (
                link.latency_ms + link.overhead_ms
            ) / 1000 + frames * 8 * shared_bytes / (link.bandwidth_mbps * 10**6)
    return contended_time, contended_transfer


def reference_fits(workflow: Workflow, system: System, placement: dict[str, str]) -> bool:
    """Tell whether an assignment fits the memory limit of every device.

    The needs of a device's stages add up; a sum within a relative 1e-9 of the limit fits.
    """
    for device in system.devices:
        if device.memory_mb is None:
            continue
        need_mb = sum(s.memory_mb for s in workflow.stages if placement[s.id] == device.id)
        if need_mb > device.memory_mb * (1 + TOLERANCE):
            return False
    return True


def reference_infeasible_count(workflow: Workflow, system: System) -> tuple[int, dict[str, int]]:
    """Count the assignments that exceed a memory limit, in all and per device."""
    total = 0
    per_device = {device.id: 0 for device in system.devices}
    for placement in reference_assignments(workflow, system):
        if reference_fits(workflow, system, placement):
            continue
        total += 1
        for device in system.devices:
            if device.memory_mb is None:
                continue
            need_mb = sum(s.memory_mb for s in workflow.stages if placement[s.id] == device.id)
            if need_mb > device.memory_mb * (1 + TOLERANCE):
                per_device[device.id] += 1
    return total, per_device


def _reference_usage(
    workflow: Workflow, placement: dict[str, str], stage_time: dict[str, float], device_id: str
) -> dict[str, Any]:
    ids = [stage.id for stage in workflow.stages]
    on = [stage_id for stage_id in ids if placement[stage_id] == device_id]
    neighbours: dict[str, set[str]] = {stage_id: set() for stage_id in on}
    bytes_in = bytes_out = 0
    for edge in workflow.edges:
        source_on = placement[edge.source] == device_id
        target_on = placement[edge.target] == device_id
        if source_on and target_on:
            neighbours[edge.source].add(edge.target)
            neighbours[edge.target].add(edge.source)
        elif target_on:
            bytes_in += edge.bytes
        elif source_on:
            bytes_out += edge.bytes

    # Connected groups by depth-first search, each keyed by its first stage in file order.
    invocation_s = [0.0] * len(ids)
    seen: set[str] = set()
    invocations = 0
    for stage_id in on:
        if stage_id in seen:
            continue
        invocations += 1
        group = []
        stack = [stage_id]
        seen.add(stage_id)
        while stack:
            current = stack.pop()
            group.append(current)
            for other in neighbours[current]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        first = min(ids.index(member) for member in group)
        invocation_s[first] = sum(stage_time[member] for member in group)

    return {
        "compute_s": sum(stage_time[stage_id] for stage_id in on),
        "invocations": invocations,
        "invocation_s": invocation_s,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
    }


def _equal(x: float, y: float) -> bool:
    return abs(x - y) <= TOLERANCE * max(abs(x), abs(y))


def _dominates(p: Sequence[float], q: Sequence[float]) -> bool:
    at_least = all(a < b or _equal(a, b) for a, b in zip(p, q, strict=True))
    better = any(a < b and not _equal(a, b) for a, b in zip(p, q, strict=True))
    return at_least and better


def reference_front(points: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """Return the front of `points` (given in enumeration order) as (row, count) pairs.

    A row is kept when no other row dominates it; rows equal in every objective form one
    front point, represented by the first of them and counted together. Rows are
    returned in enumeration order.
    """
    nondominated = [i for i, q in enumerate(points) if not any(_dominates(p, q) for p in points)]
    representatives: list[int] = []
    counts: dict[int, int] = {}
    for i in nondominated:
        for r in representatives:
            if all(_equal(a, b) for a, b in zip(points[i], points[r], strict=True)):
                counts[r] += 1
                break
        else:
            representatives.append(i)
            counts[i] = 1
    return [(r, counts[r]) for r in representatives]


def reference_sweep(
    workflow: Workflow, system: System, problem: CompiledProblem
) -> tuple[list[dict[str, str]], list[dict[str, float]], list[tuple[int, int]]]:
    """Enumerate and estimate every assignment and find the front, one at a time.

    Assignments that exceed a device's memory limit are left out
    (`reference_infeasible_count` counts them). Returns the assignments that fit, in
    enumeration order, their metrics and the front as (row, count) pairs.
    """
    assignments = [
        placement
        for placement in reference_assignments(workflow, system)
        if reference_fits(workflow, system, placement)
    ]
    metrics = [reference_evaluate(workflow, system, problem, a) for a in assignments]
    points = [[m[name] for name in system.objectives] for m in metrics]
    return assignments, metrics, reference_front(points)


def reference_robustness(
    workflow: Workflow,
    system: System,
    problem: CompiledProblem,
    candidates: Sequence[dict[str, str]],
    factors: Any,
    requirements: Requirements | None,
) -> dict[str, list[float]]:
    """Run a Monte Carlo over `candidates` one sample and one assignment at a time.

    Each sample multiplies every stage's ``time_s`` and every link's ``bandwidth_mbps``
    in copies of the models, and wraps each provider in
    `allocation.robustness.ScaledProvider`. `factors` is an
    `allocation.uncertainty.Factors`.

    Returns
    -------
    dict of str to list of float
        Per candidate, the share of samples in which no front point dominates it
        (``on_front_share``), in which it meets every limit (``meets_limits_share``) and
        in which the recommended front point has its placement (``recommended_share``).
    """
    n_samples = len(factors)
    on_front = [0] * len(candidates)
    meets = [0] * len(candidates)
    chosen = [0] * len(candidates)
    limits = requirements.limits if requirements is not None else {}
    for i in range(n_samples):
        # The sample's inputs: scaled copies of the models and the providers.
        stages = [
            stage.model_copy(update={"time_s": stage.time_s * float(factors.stage_time[i, s])})
            for s, stage in enumerate(workflow.stages)
        ]
        links = [
            link.model_copy(
                update={"bandwidth_mbps": link.bandwidth_mbps * float(factors.bandwidth[i, k])}
            )
            for k, link in enumerate(system.links)
        ]
        sample_workflow = workflow.model_copy(update={"stages": stages})
        sample_system = system.model_copy(update={"links": links})
        priced = tuple(
            replace(p, provider=ScaledProvider(p.provider, float(factors.price[i, k])))
            for k, p in enumerate(problem.priced)
        )
        sample_problem = replace(problem, priced=priced)

        # The sample's front, in front.parquet's order: latency, cost, enumeration.
        assignments, metrics, front = reference_sweep(
            sample_workflow, sample_system, sample_problem
        )
        front_points = [[metrics[r][name] for name in system.objectives] for r, _ in front]
        rows = sorted(
            (r for r, _ in front),
            key=lambda r: (metrics[r]["latency_s"], metrics[r]["cost_usd"], r),
        )
        table = pd.DataFrame([metrics[r] for r in rows])
        table.insert(0, "label", [str(k) for k in range(len(rows))])
        recommendation = recommend(table, requirements, system.objectives)
        best = (
            None if recommendation.label is None else assignments[rows[int(recommendation.label)]]
        )

        for c, candidate in enumerate(candidates):
            values = reference_evaluate(sample_workflow, sample_system, sample_problem, candidate)
            point = [values[name] for name in system.objectives]
            if not any(_dominates(p, point) for p in front_points):
                on_front[c] += 1
            if all(
                values[LIMIT_METRICS[name]] <= limit or _equal(values[LIMIT_METRICS[name]], limit)
                for name, limit in limits.items()
            ):
                meets[c] += 1
            if best == candidate:
                chosen[c] += 1
    return {
        "on_front_share": [count / n_samples for count in on_front],
        "meets_limits_share": [count / n_samples for count in meets],
        "recommended_share": [count / n_samples for count in chosen],
    }
