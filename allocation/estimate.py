"""Vectorised estimation of assignments.

For n assignments at once this computes every metric of docs/guide.md, section 3: latency as the
longest path through the workflow graph, communication time, bytes up to and down from
priced devices, the usage of each priced device and the cost its provider charges.
Nothing here imports Prefect; `allocation.reference` holds the slow, obviously correct
version that the tests compare this with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from allocation.compile import CompiledProblem, PricedDevice
from allocation.contention import contended_stage_times, contended_transfer_times
from allocation.errors import AllocationError
from allocation.pricing import Usage, check_cost_array
from allocation.space import decode_placements

__all__ = [
    "METRIC_COLUMNS",
    "STREAM_COLUMNS",
    "Evaluation",
    "empty_evaluation",
    "evaluate_chunk",
    "evaluate_placements",
    "metric_columns",
    "period_of",
    "stage_times_of",
    "transfer_times_of",
    "usage_of",
]

METRIC_COLUMNS = (
    "latency_s",
    "cost_usd",
    "comm_s",
    "upload_bytes",
    "download_bytes",
    "monthly_cost_usd",
)
"""Metrics computed for every assignment; monthly_cost_usd is NaN without runs_per_month."""

STREAM_COLUMNS = ("period_s", "throughput_fps")
"""Metrics of a stream of frames, computed when `CompiledProblem.stream_metrics` is set."""


def metric_columns(problem: CompiledProblem) -> tuple[str, ...]:
    """Return the metrics estimated for `problem`: `METRIC_COLUMNS`, then the stream's."""
    return METRIC_COLUMNS + STREAM_COLUMNS if problem.stream_metrics else METRIC_COLUMNS


@dataclass(frozen=True)
class Evaluation:
    """Metrics of n assignments, row for row.

    Attributes
    ----------
    pattern_index : ndarray of int64, shape (n,)
        Assignment numbers (enumeration order).
    placements : ndarray of int16, shape (n, n_stages)
        Device index of every stage.
    metrics : dict of str to ndarray, each of shape (n,)
        One array per name in `metric_columns`; byte counts are int64.
    """

    pattern_index: np.ndarray
    placements: np.ndarray
    metrics: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.pattern_index.shape[0])

    def take(self, rows: np.ndarray) -> Evaluation:
        """Return the rows `rows` (indices or a boolean mask) as a new Evaluation."""
        return Evaluation(
            pattern_index=self.pattern_index[rows],
            placements=self.placements[rows],
            metrics={name: values[rows] for name, values in self.metrics.items()},
        )

    @staticmethod
    def concat(parts: Sequence[Evaluation], n_stages: int) -> Evaluation:
        """Join evaluations row-wise; without parts, return one with `METRIC_COLUMNS`."""
        if not parts:
            return Evaluation(
                pattern_index=np.empty(0, dtype=np.int64),
                placements=np.empty((0, n_stages), dtype=np.int16),
                metrics={name: np.empty(0, dtype=_metric_dtype(name)) for name in METRIC_COLUMNS},
            )
        return Evaluation(
            pattern_index=np.concatenate([p.pattern_index for p in parts]),
            placements=np.concatenate([p.placements for p in parts]),
            metrics={
                name: np.concatenate([p.metrics[name] for p in parts]) for name in parts[0].metrics
            },
        )


def empty_evaluation(problem: CompiledProblem) -> Evaluation:
    """Return an evaluation without rows, with the metric columns of `problem`."""
    return Evaluation(
        pattern_index=np.empty(0, dtype=np.int64),
        placements=np.empty((0, problem.n_stages), dtype=np.int16),
        metrics={name: np.empty(0, dtype=_metric_dtype(name)) for name in metric_columns(problem)},
    )


def _metric_dtype(name: str) -> type:
    return np.int64 if name.endswith("_bytes") else np.float64


def evaluate_chunk(problem: CompiledProblem, start: int, stop: int) -> Evaluation:
    """Evaluate the assignments numbered ``start`` to ``stop - 1``."""
    indices = np.arange(start, stop, dtype=np.int64)
    return evaluate_placements(problem, decode_placements(problem, indices), indices)


def stage_times_of(problem: CompiledProblem, placements: np.ndarray) -> np.ndarray:
    """Return the time of every stage on its device, contended, shape (n, n_stages)."""
    stages = np.arange(problem.n_stages)
    times = problem.stage_time_s[stages[None, :], placements]
    return contended_stage_times(problem.contention, placements, times)


def transfer_times_of(problem: CompiledProblem, placements: np.ndarray) -> np.ndarray:
    """Return the transfer time of every edge, contended, shape (n, n_edges)."""
    transfer = np.empty((placements.shape[0], len(problem.edge_source)))
    for e, (u, v) in enumerate(zip(problem.edge_source, problem.edge_target, strict=True)):
        transfer[:, e] = problem.edge_transfer_s[e][placements[:, u], placements[:, v]]
    return contended_transfer_times(
        problem.contention,
        placements,
        problem.edge_source,
        problem.edge_target,
        problem.edge_bytes,
        transfer,
    )


def evaluate_placements(
    problem: CompiledProblem,
    placements: np.ndarray,
    pattern_index: np.ndarray | None = None,
) -> Evaluation:
    """Estimate every metric for the given placements.

    Parameters
    ----------
    placements : ndarray of int, shape (n, n_stages)
        Device index of every stage; each must be one of the stage's allowed devices.
    pattern_index : ndarray of int64, shape (n,), optional
        Assignment numbers to carry along (-1 when omitted).

    Raises
    ------
    AllocationError
        When a metric comes out NaN or infinite; the message names the assignment.
    ProviderError
        When a provider returns an array of the wrong shape, NaN, infinity or a
        negative cost.
    """
    placements = np.asarray(placements)
    n = placements.shape[0]
    if pattern_index is None:
        pattern_index = np.full(n, -1, dtype=np.int64)
    times = stage_times_of(problem, placements)
    transfer = transfer_times_of(problem, placements)
    comm_s = transfer.sum(axis=1)

    # Latency is the longest path: finish time of each stage in topological order.
    finish = np.zeros((n, problem.n_stages))
    for s in problem.topo_order:
        start = np.zeros(n)
        for e in problem.incoming[s]:
            np.maximum(start, finish[:, problem.edge_source[e]] + transfer[:, e], out=start)
        finish[:, s] = start + times[:, s]
    latency_s = finish.max(axis=1)

    # Bytes to and from priced devices, and what their providers charge.
    upload_bytes = np.zeros(n, dtype=np.int64)
    download_bytes = np.zeros(n, dtype=np.int64)
    cost_usd = np.zeros(n)
    monthly_cost_usd = np.zeros(n) if problem.runs_per_month is not None else np.full(n, np.nan)
    for priced in problem.priced:
        usage = usage_of(problem, placements, times, priced.index)
        upload_bytes += usage.bytes_in
        download_bytes += usage.bytes_out
        cost_usd += _cost_per_run(priced, usage)
        if problem.runs_per_month is not None:
            monthly_cost_usd += _monthly_cost(priced, usage, problem.runs_per_month)

    metrics = {
        "latency_s": latency_s,
        "cost_usd": cost_usd,
        "comm_s": comm_s,
        "upload_bytes": upload_bytes,
        "download_bytes": download_bytes,
        "monthly_cost_usd": monthly_cost_usd,
    }
    if problem.stream_metrics:
        period_s = period_of(problem, placements, times, transfer)
        metrics["period_s"] = period_s
        with np.errstate(divide="ignore"):
            metrics["throughput_fps"] = np.where(period_s > 0, 1.0 / period_s, np.inf)
    _check_finite(problem, metrics, pattern_index)
    return Evaluation(pattern_index=pattern_index, placements=placements, metrics=metrics)


def period_of(
    problem: CompiledProblem, placements: np.ndarray, times: np.ndarray, transfer: np.ndarray
) -> np.ndarray:
    """Compute the period of a stream: the busy time of its busiest device or link per frame.

    A device is busy for the sum of its stages' times, and a link for the sum of the
    transfer times of the cross-device edges it carries, in both directions. With k
    concurrent frames (`CompiledProblem.concurrent_frames`), the contended times are
    those of k frames at once, so the busy time is divided by k.

    Parameters
    ----------
    placements : ndarray of int, shape (n, n_stages)
    times : ndarray, shape (n, n_stages)
        Time of every stage on its device.
    transfer : ndarray, shape (n, n_edges)
        Transfer time of every edge; 0 where both ends share a device.

    Returns
    -------
    ndarray, shape (n,)
        Seconds between frames in the steady state; 0 only when every time is 0.
    """
    n = placements.shape[0]
    n_devices = problem.n_devices
    rows = np.repeat(np.arange(n, dtype=np.int64), placements.shape[1])
    device_keys = rows * n_devices + placements.ravel().astype(np.int64)
    device_busy = _group_max(device_keys, times.ravel(), n, n_devices)

    # A link is keyed by its unordered pair of devices, so both directions share it.
    source = placements[:, problem.edge_source].astype(np.int64)
    target = placements[:, problem.edge_target].astype(np.int64)
    crosses = (source != target).ravel()
    pair = np.minimum(source, target) * n_devices + np.maximum(source, target)
    edge_rows = np.repeat(np.arange(n, dtype=np.int64), transfer.shape[1])
    link_keys = edge_rows * n_devices**2 + pair.ravel()
    link_busy = _group_max(link_keys[crosses], transfer.ravel()[crosses], n, n_devices**2)
    return np.maximum(device_busy, link_busy) / problem.concurrent_frames


def _group_max(keys: np.ndarray, values: np.ndarray, n: int, stride: int) -> np.ndarray:
    """Sum `values` by key, then return the largest sum of each of n rows (0 for none).

    A key is ``row * stride + group`` with ``0 <= group < stride``.
    """
    result = np.zeros(n)
    if len(keys) == 0:
        return result
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sums = np.add.reduceat(values, starts)
    np.maximum.at(result, keys[starts] // stride, sums)
    return result


def usage_of(
    problem: CompiledProblem, placements: np.ndarray, times: np.ndarray, device: int
) -> Usage:
    """Compute what each assignment uses on one device (see `allocation.pricing.Usage`).

    An invocation is a connected group of the device's stages in the workflow graph,
    with edge directions ignored. Its duration is the sum of its stages' times.
    """
    n, n_stages = placements.shape
    on = placements == device
    compute_s = np.where(on, times, 0.0).sum(axis=1)

    on_source = on[:, problem.edge_source]
    on_target = on[:, problem.edge_target]
    bytes_in = ((on_target & ~on_source) * problem.edge_bytes).sum(axis=1, dtype=np.int64)
    bytes_out = ((on_source & ~on_target) * problem.edge_bytes).sum(axis=1, dtype=np.int64)

    # Label each stage on the device with the smallest stage index of its group:
    # repeat "both ends of an inner edge take the smaller label" until nothing changes.
    stage_numbers = np.arange(n_stages)
    labels = np.where(on, stage_numbers, n_stages)
    inner = on_source & on_target
    changed = bool(inner.any())
    while changed:
        changed = False
        for e, (u, v) in enumerate(zip(problem.edge_source, problem.edge_target, strict=True)):
            rows = inner[:, e]
            smaller = np.minimum(labels[:, u], labels[:, v])
            moved = rows & ((labels[:, u] != smaller) | (labels[:, v] != smaller))
            if moved.any():
                labels[moved, u] = smaller[moved]
                labels[moved, v] = smaller[moved]
                changed = True

    invocations = ((labels == stage_numbers) & on).sum(axis=1, dtype=np.int64)
    slots = np.arange(n)[:, None] * (n_stages + 1) + labels
    durations = np.bincount(slots[on], weights=times[on], minlength=n * (n_stages + 1))
    invocation_s = durations.reshape(n, n_stages + 1)[:, :n_stages]
    return Usage(
        compute_s=compute_s,
        invocations=invocations,
        invocation_s=invocation_s,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
    )


def _cost_per_run(priced: PricedDevice, usage: Usage) -> np.ndarray:
    lines = priced.provider.cost_lines_usd(usage)
    total = np.zeros(len(usage))
    for line, values in lines.items():
        total += check_cost_array(
            values,
            len(usage),
            provider=priced.provider_name,
            device_id=priced.device_id,
            what=f"cost line {line!r}",
        )
    return total


def _monthly_cost(priced: PricedDevice, usage: Usage, runs_per_month: int) -> np.ndarray:
    return check_cost_array(
        priced.provider.monthly_cost_usd(usage, runs_per_month),
        len(usage),
        provider=priced.provider_name,
        device_id=priced.device_id,
        what="a monthly cost",
    )


def _check_finite(
    problem: CompiledProblem, metrics: dict[str, np.ndarray], pattern_index: np.ndarray
) -> None:
    for name in ("latency_s", "cost_usd", "comm_s"):
        bad = ~np.isfinite(metrics[name])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise AllocationError(
                f"{name} is {metrics[name][row]} for assignment #{int(pattern_index[row])} "
                f"of {problem.workflow_name} on {problem.system_name}: the stage times or "
                "transfer times are too large to add up; check time_s, bytes and the CPU "
                "figures"
            )
