"""Compile a workflow and a system into arrays, once per sweep.

`CompiledProblem` contains everything that does not depend on the assignment: the time of
every stage on every device it may run on, the transfer time of every edge between every
pair of devices, the graph in topological order and the pricing providers. It is small
and picklable, so it can be sent to worker threads, processes or cluster nodes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from allocation.catalog import Cpu, CpuCatalog
from allocation.contention import ContentionPlan, plan_contention
from allocation.errors import InputError
from allocation.loading import check_pair
from allocation.memory import binding_limits, check_forced_placements
from allocation.model import Device, InlineCpu, Requirements, Stage, System, Workflow
from allocation.pricing import PricingContext, PricingProvider, load_provider

__all__ = [
    "MAX_SCALED_TIME_S",
    "CompiledProblem",
    "PricedDevice",
    "compile_problem",
    "device_cores_of",
    "link_arrays",
    "needs_stream_metrics",
    "resolve_cpu",
    "speed_factor_of",
]

MAX_SCALED_TIME_S = 1e12
"""Largest stage or transfer time accepted once scaled, in seconds (about 31,700 years).

A larger time comes from a slip in ``time_s``, ``bytes``, ``bandwidth_mbps`` or a CPU
figure. A workflow has at most 10,000 stages and 1,000,000 edges, so the bound keeps
latencies and usage sums below 1e19 s, far from float overflow.

NOTE: a provider rate near the largest float can still make a cost infinite, which the
sweep reports as a provider error (exit status 1).
"""


@dataclass(frozen=True)
class PricedDevice:
    """A device with a pricing provider."""

    index: int
    device_id: str
    provider_name: str
    provider: PricingProvider


@dataclass(frozen=True, eq=False)
class CompiledProblem:
    """Arrays of one workflow on one system.

    Stages keep the order of the workflow file and devices the order of the system
    file. Shapes use S stages, D devices and E edges.
    """

    workflow_name: str
    system_name: str
    stage_ids: tuple[str, ...]
    device_ids: tuple[str, ...]
    stage_time_s: np.ndarray
    """(S, D) time of each stage on each device; NaN where the stage may not run."""
    allowed: tuple[np.ndarray, ...]
    """Per stage, the device indices it may run on, in system order."""
    radices: np.ndarray
    """(S,) number of allowed devices per stage; 1 for a pinned stage."""
    edge_source: np.ndarray
    edge_target: np.ndarray
    edge_bytes: np.ndarray
    """(E,) int64 bytes passed along each edge."""
    edge_transfer_s: np.ndarray
    """(E, D, D) transfer time of each edge from device a to device b; 0 when a == b."""
    topo_order: np.ndarray
    """(S,) stage indices in a topological order."""
    incoming: tuple[np.ndarray, ...]
    """Per stage, the indices of the edges that end at it."""
    undirected_forest: bool
    """True when the workflow, ignoring directions, has no cycle (chains and trees)."""
    priced: tuple[PricedDevice, ...]
    runs_per_month: int | None
    objectives: tuple[str, ...]
    cpus: dict[str, Cpu] = field(default_factory=dict)
    """The CPU of the reference PC (key ``measured_on``) and of every device, by id."""
    contention: ContentionPlan | None = None
    """Plan of the contention that depends on the assignment, or None when there is none.

    Contention that does not depend on it is folded into ``stage_time_s`` and
    ``edge_transfer_s``, which otherwise hold uncontended times.
    """
    stage_memory_mb: np.ndarray | None = None
    """(S,) memory each stage needs in MB; None when no device has a memory limit."""
    device_memory_mb: np.ndarray | None = None
    """(D,) memory limit of each device in MB, inf where it has none; None when none has one."""
    memory_bound_devices: tuple[int, ...] = ()
    """Devices whose memory limit some assignment exceeds (`allocation.memory`)."""
    stream_metrics: bool = False
    """Whether estimates include ``period_s`` and ``throughput_fps`` (a stream's metrics)."""
    concurrent_frames: int = 1
    """Frames in flight at once (the system's ``contention.concurrent_frames``, else 1)."""

    @property
    def n_stages(self) -> int:
        """Number of stages."""
        return len(self.stage_ids)

    @property
    def n_devices(self) -> int:
        """Number of devices."""
        return len(self.device_ids)

    @property
    def contention_reason(self) -> str | None:
        """Why contended times depend on the assignment, or None when they do not.

        Only the vectorised estimator applies such contention, so the compiled kernel
        and the exact method do not handle a problem with a reason.
        """
        return None if self.contention is None else self.contention.reason

    @property
    def space_size(self) -> int:
        """Number of assignments, exactly (a Python int, it may exceed 2**63)."""
        return math.prod(int(r) for r in self.radices)


def resolve_cpu(
    reference: str | InlineCpu, catalog: CpuCatalog, *, file: str | Path, field: str
) -> Cpu:
    """Return the CPU a file refers to, from the catalog or written inline."""
    if isinstance(reference, InlineCpu):
        return Cpu.from_inline(reference)
    return catalog.lookup(reference, file=file, field=field)


def compile_problem(
    workflow: Workflow,
    system: System,
    catalog: CpuCatalog,
    *,
    workflow_file: str | Path = "<workflow>",
    system_file: str | Path = "<system>",
    catalog_dir: Path | None = None,
    stream_metrics: bool | None = None,
) -> CompiledProblem:
    """Resolve CPUs and providers and precompute every per-assignment-independent array.

    `stream_metrics` sets whether estimates include ``period_s`` and ``throughput_fps``;
    by default `needs_stream_metrics` decides from the system's objectives and
    requirements.

    Raises
    ------
    InputError
        For a reference to an unknown device or CPU, a CPU lacking a figure a stage
        needs, a pair of devices without a link that some assignment needs, a stage
        time that is not finite once scaled, invalid provider options, or a memory
        limit that stages pinned to the device exceed
        (`allocation.memory.check_forced_placements`).
    """
    workflow_file = str(workflow_file)
    system_file = str(system_file)
    check_pair(workflow, system, workflow_file=workflow_file, system_file=system_file)

    stage_ids = tuple(stage.id for stage in workflow.stages)
    device_ids = tuple(device.id for device in system.devices)
    device_index = {device_id: d for d, device_id in enumerate(device_ids)}
    stage_index = {stage_id: s for s, stage_id in enumerate(stage_ids)}

    # CPUs: the reference PC and every device.
    reference = resolve_cpu(workflow.measured_on, catalog, file=workflow_file, field="measured_on")
    cpus = {"measured_on": reference}
    if reference.cores is None:
        raise InputError(
            f"the catalog does not give the core count of the reference CPU "
            f"{reference.name!r}; describe the CPU inline with its cores",
            file=workflow_file,
            field="measured_on",
        )
    # Pricing providers; a provider may also set the cores its configuration buys.
    priced = []
    for d, device in enumerate(system.devices):
        if device.pricing is None:
            continue
        context = PricingContext(
            file=system_file,
            field=f"devices[{d}].pricing",
            device_id=device.id,
            catalog_dir=catalog_dir,
            runs_per_month=system.runs_per_month,
        )
        provider = load_provider(device.pricing.provider, device.pricing.options, context)
        priced.append(PricedDevice(d, device.id, device.pricing.provider, provider))
    provider_of = {p.index: p.provider for p in priced}

    device_cores: list[float] = []
    for d, device in enumerate(system.devices):
        cpu = resolve_cpu(device.cpu, catalog, file=system_file, field=f"devices[{d}].cpu")
        cpus[device.id] = cpu
        cores = device_cores_of(device.cores, cpu, provider_of.get(d))
        if cores is None:
            raise InputError(
                f"the catalog does not give the core count of CPU {cpu.name!r}; set "
                "cores on the device",
                file=system_file,
                field=f"devices[{d}].cores",
            )
        device_cores.append(cores)

    # Allowed devices per stage, in system order.
    allowed = []
    for stage in workflow.stages:
        if stage.pin is not None:
            ids = {stage.pin}
        elif stage.allowed is not None:
            ids = set(stage.allowed)
        else:
            ids = set(device_ids)
        allowed.append(np.array(sorted(device_index[i] for i in ids), dtype=np.int64))
    radices = np.array([len(a) for a in allowed], dtype=np.int64)

    if stream_metrics is None:
        stream_metrics = needs_stream_metrics(system.objectives, system.requirements)

    # Memory limits: only those that some assignment exceeds change the sweep.
    stage_memory_mb = device_memory_mb = None
    memory_bound_devices: tuple[int, ...] = ()
    if any(device.memory_mb is not None for device in system.devices):
        check_forced_placements(
            workflow, system, allowed, workflow_file=workflow_file, system_file=system_file
        )
        stage_memory_mb = np.array([stage.memory_mb for stage in workflow.stages])
        device_memory_mb = np.array(
            [math.inf if d.memory_mb is None else d.memory_mb for d in system.devices]
        )
        memory_bound_devices = binding_limits(stage_memory_mb, device_memory_mb, allowed)

    stage_time_s = _stage_times(
        workflow,
        system,
        reference,
        cpus,
        device_cores,
        allowed,
        workflow_file=workflow_file,
        system_file=system_file,
    )

    edge_source = np.array([stage_index[e.source] for e in workflow.edges], dtype=np.int64)
    edge_target = np.array([stage_index[e.target] for e in workflow.edges], dtype=np.int64)
    edge_bytes = np.array([e.bytes for e in workflow.edges], dtype=np.int64)
    edge_transfer_s = _transfer_times(
        workflow,
        system,
        allowed,
        edge_source,
        edge_target,
        device_index,
        system_file=system_file,
    )

    topo_order = _topological_order(len(stage_ids), edge_source, edge_target)
    contention = None
    if system.contention is not None:
        link_fixed_s, link_s_per_byte, link_number = link_arrays(system, device_index)
        stage_time_s, edge_transfer_s, contention = plan_contention(
            system.contention,
            stage_ids=stage_ids,
            stage_threads=np.array([stage.threads for stage in workflow.stages]),
            stage_time_s=stage_time_s,
            allowed=allowed,
            device_ids=device_ids,
            device_cores=np.array(device_cores, dtype=np.float64),
            edge_source=edge_source,
            edge_target=edge_target,
            edge_bytes=edge_bytes,
            edge_transfer_s=edge_transfer_s,
            topo_order=topo_order,
            link_number=link_number,
            link_fixed_s=link_fixed_s,
            link_s_per_byte=link_s_per_byte,
            max_time_s=MAX_SCALED_TIME_S,
            system_file=system_file,
        )
    incoming = tuple(
        np.flatnonzero(edge_target == s).astype(np.int64) for s in range(len(stage_ids))
    )
    forest = _is_undirected_forest(len(stage_ids), edge_source, edge_target)

    return CompiledProblem(
        workflow_name=workflow.workflow,
        system_name=system.system,
        stage_ids=stage_ids,
        device_ids=device_ids,
        stage_time_s=stage_time_s,
        allowed=tuple(allowed),
        radices=radices,
        edge_source=edge_source,
        edge_target=edge_target,
        edge_bytes=edge_bytes,
        edge_transfer_s=edge_transfer_s,
        topo_order=topo_order,
        incoming=incoming,
        undirected_forest=forest,
        priced=tuple(priced),
        runs_per_month=system.runs_per_month,
        objectives=tuple(system.objectives),
        cpus=cpus,
        contention=contention,
        stage_memory_mb=stage_memory_mb,
        device_memory_mb=device_memory_mb,
        memory_bound_devices=memory_bound_devices,
        stream_metrics=stream_metrics,
        concurrent_frames=1 if system.contention is None else system.contention.concurrent_frames,
    )


def needs_stream_metrics(objectives: Sequence[str], requirements: Requirements | None) -> bool:
    """Tell whether estimates need ``period_s`` and ``throughput_fps``.

    They do when ``period_s`` is an objective, when the requirements minimise it, or
    when they set ``min_throughput_fps``.
    """
    if "period_s" in objectives:
        return True
    return requirements is not None and (
        requirements.minimise == "period_s" or requirements.min_throughput_fps is not None
    )


def device_cores_of(cores: int | None, cpu: Cpu, provider: PricingProvider | None) -> float | None:
    """Return the cores the flow may use on a device.

    The first known value wins: the device's `cores`, then the cores the provider's
    configuration buys (for a provider with a ``usable_cores()`` method, such as a
    serverless function whose CPU share follows its memory), then the CPU's cores.
    None means that none is known.
    """
    if cores is not None:
        return cores
    usable = getattr(provider, "usable_cores", None)
    if callable(usable):
        return float(usable())
    return cpu.cores


def speed_factor_of(device: Device, stage: Stage) -> float | None:
    """Return the speed factor of `device` for `stage`, or None when none is set.

    It is the device's `speed_factor` times its class speed factor for the stage's
    class; stage times on the device are divided by it.
    """
    factor = device.speed_factor
    if device.class_speed_factors is not None and stage.stage_class is not None:
        by_class = device.class_speed_factors.get(stage.stage_class)
        if by_class is not None:
            factor = by_class if factor is None else factor * by_class
    return factor


def _per_core(cpu: Cpu, figure: str) -> float | None:
    value = cpu.figure(figure)
    if value is None:
        return None
    # single_thread is measured on one core already; the others cover the whole CPU.
    if figure == "single_thread":
        return value
    return None if cpu.cores is None else value / cpu.cores


def _stage_times(
    workflow: Workflow,
    system: System,
    reference: Cpu,
    cpus: dict[str, Cpu],
    device_cores: list[float],
    allowed: list[np.ndarray],
    *,
    workflow_file: str,
    system_file: str,
) -> np.ndarray:
    n_stages, n_devices = len(workflow.stages), len(system.devices)
    reference_cores = int(reference.cores or 0)  # compile_problem rejected a missing count
    exponent = system.core_scaling_exponent
    times = np.full((n_stages, n_devices), np.nan)
    for s, stage in enumerate(workflow.stages):
        ref_per_core = _per_core(reference, stage.score)
        if ref_per_core is None:
            raise InputError(
                f"stage {stage.id!r} is scaled by {stage.score}, but the reference CPU "
                f"{reference.name!r} (measured_on) has no {stage.score} figure (or, for a "
                "whole-CPU figure, no core count); choose a figure the CPU has or describe "
                "the CPU inline",
                file=workflow_file,
                field=f"stages[{s}].score",
            )
        ref_cores_used = min(stage.threads, reference_cores)
        ref_work = ref_per_core * ref_cores_used
        for d in allowed[s]:
            device = system.devices[d]
            cpu = cpus[device.id]
            per_core = _per_core(cpu, stage.score)
            if per_core is None:
                raise InputError(
                    f"CPU {cpu.name!r} of device {device.id!r} has no {stage.score} "
                    f"figure (or, for a whole-CPU figure, no core count), which stage "
                    f"{stage.id!r} (score: {stage.score}) needs; add the figure, describe the "
                    "CPU inline, or change the stage's score",
                    file=system_file,
                    field=f"devices[{d}].cpu",
                )
            device_work = min(stage.threads, device_cores[d])
            if exponent is None:
                time_s = stage.time_s * ref_work / (per_core * device_work)
            else:
                time_s = (stage.time_s * ref_per_core * ref_cores_used**exponent) / (
                    per_core * device_work**exponent
                )
            speed = speed_factor_of(device, stage)
            if speed is not None:
                time_s /= speed
            if not time_s <= MAX_SCALED_TIME_S:  # also true for NaN
                raise InputError(
                    f"stage {stage.id!r} on device {device.id!r} scales to {time_s:.6g} s, "
                    f"more than the {MAX_SCALED_TIME_S:.0e} s accepted; check time_s here, "
                    f"the {stage.score} figure of measured_on ({reference.name!r}) and that "
                    f"of the CPU of devices[{d}] in {system_file} ({cpu.name!r})",
                    file=workflow_file,
                    field=f"stages[{s}].time_s",
                    value=stage.time_s,
                    has_value=True,
                )
            times[s, d] = time_s
    return times


def _transfer_times(
    workflow: Workflow,
    system: System,
    allowed: list[np.ndarray],
    edge_source: np.ndarray,
    edge_target: np.ndarray,
    device_index: dict[str, int],
    *,
    system_file: str,
) -> np.ndarray:
    n_devices = len(system.devices)
    latency_s, s_per_byte, link_index = link_arrays(system, device_index)

    n_edges = len(edge_source)
    transfer = np.zeros((n_edges, n_devices, n_devices))
    for e in range(n_edges):
        u, v = int(edge_source[e]), int(edge_target[e])
        for a in allowed[u]:
            for b in allowed[v]:
                if a == b:
                    continue
                if np.isnan(latency_s[a, b]):
                    edge = workflow.edges[e]
                    raise InputError(
                        f"no link between devices {system.devices[a].id!r} and "
                        f"{system.devices[b].id!r}, which an assignment needs when stage "
                        f"{edge.source!r} runs on {system.devices[a].id!r} and stage "
                        f"{edge.target!r} on {system.devices[b].id!r}; add the link, or "
                        "restrict the stages with pin or allowed",
                        file=system_file,
                        field="links",
                    )
                value = latency_s[a, b] + workflow.edges[e].bytes * s_per_byte[a, b]
                if not value <= MAX_SCALED_TIME_S:  # also true for NaN
                    edge = workflow.edges[e]
                    link_number = int(link_index[a, b])
                    raise InputError(
                        f"edge {edge.source} -> {edge.target} ({edge.bytes} bytes) takes "
                        f"{value:.6g} s over this link, more than the {MAX_SCALED_TIME_S:.0e} s "
                        "accepted; check bandwidth_mbps and latency_ms here and the bytes "
                        "of the edge",
                        file=system_file,
                        field=f"links[{link_number}]",
                    )
                transfer[e, a, b] = value
    return transfer


def link_arrays(
    system: System, device_index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the fixed seconds, seconds per byte and link number of each device pair.

    Each array has shape (D, D). A pair without a link has NaN times and link -1, and
    the diagonal has times 0 and link -1.
    """
    n_devices = len(system.devices)
    latency_s = np.full((n_devices, n_devices), np.nan)
    s_per_byte = np.full((n_devices, n_devices), np.nan)
    np.fill_diagonal(latency_s, 0.0)
    np.fill_diagonal(s_per_byte, 0.0)
    link_index = np.full((n_devices, n_devices), -1)
    for number, link in enumerate(system.links):
        a, b = (device_index[device_id] for device_id in link.between)
        for x, y in ((a, b), (b, a)):
            latency_s[x, y] = (link.latency_ms + link.overhead_ms) / 1000.0
            s_per_byte[x, y] = 8.0 / (link.bandwidth_mbps * 1e6)
            link_index[x, y] = number
    return latency_s, s_per_byte, link_index


def _topological_order(n_stages: int, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Kahn's algorithm, taking ready stages in file order; the graph is acyclic."""
    indegree = np.bincount(target, minlength=n_stages)
    successors: list[list[int]] = [[] for _ in range(n_stages)]
    for u, v in zip(source.tolist(), target.tolist(), strict=True):
        successors[u].append(v)
    ready = [s for s in range(n_stages) if indegree[s] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        s = heapq.heappop(ready)
        order.append(s)
        for t in successors[s]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, t)
    if len(order) != n_stages:
        raise ValueError("the workflow graph has a cycle")
    return np.array(order, dtype=np.int64)


def _is_undirected_forest(n_stages: int, source: np.ndarray, target: np.ndarray) -> bool:
    parent = list(range(n_stages))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in zip(source.tolist(), target.tolist(), strict=True):
        root_u, root_v = find(u), find(v)
        if root_u == root_v:
            return False
        parent[root_u] = root_v
    return True
