"""Compiled screening of a chunk of assignments: the few that may be on its front.

`screen_chunk` walks the assignments ``start`` to ``stop - 1`` in enumeration order in
a numba kernel and returns the assignment numbers that may be on the chunk's Pareto
front, and optionally the sampled ones. `allocation.sweep.sweep_chunk` estimates those
rows again with `allocation.estimate.evaluate_placements` and keeps their exact front
with `allocation.pareto.pareto_front`. The front, its metrics and its equivalent
counts are therefore those of estimating the whole chunk, and only the time differs.

Notes
-----
Walk. Assignment numbers are mixed-radix numbers with the last stage fastest, so
consecutive assignments share their leading digits. For every digit position the walk
keeps the state of the stages placed so far: finish times, their running maximum, the
communication time, the bytes to and from priced devices and, per priced device, the
set of its stages as a bit mask. When digit j changes, only the stages whose finish
time depends on a stage at position j or later are computed again. For a chain of
radix-4 stages in file order that is 4/3 stages per assignment on average.

Prices. The usage of a priced device, and so its provider's charge, depends only on
which stages run on it. Before the first chunk, each provider prices every set of its
device's free stages in one vectorised call, and the walk looks the charge up by bit
mask. The rows of these tables are computed by `allocation.estimate.usage_of` and the
providers exactly as for a chunk, and the per-device charges are added in the same
order, so ``cost_usd`` and ``monthly_cost_usd`` are bit for bit those of
`evaluate_placements`. ``latency_s`` is too, because the walk repeats its additions
and maxima in the same order. The byte counts are integers. ``comm_s`` is summed in
another order and is known only within a relative ``(n_edges + 1) * 2**-50``.

Screening. Let p *surely dominate* q when p is not larger than q in any objective and
smaller than ``q * (1 - SCREEN_MARGIN)`` in one. Where a value is not exact, the
comparison is made between bounds (an upper bound of p, a lower bound of q), so it
holds for the values `evaluate_placements` computes. The kernel drops only
assignments that some assignment of the chunk surely dominates. This keeps the front:

- If p surely dominates q, p dominates q under the rule of `allocation.pareto`
  (relative tolerance 1e-9), so no front point and no point equivalent to one is
  dropped.
- Surely dominating is transitive and irreflexive, so every dropped point is surely
  dominated by a kept one. If p surely dominates r and r dominates q, then p dominates
  q, because ``SCREEN_MARGIN`` is far wider than the tolerance. So every point that is
  dominated in the chunk is still dominated among the kept ones.

`pareto_front` keeps the points that no other point dominates, so the front of the
kept points is the front of the chunk, with the same representatives and counts.

The kernel keeps the front of the (upper bounds of the) points seen so far, without
tolerance, and tests each assignment against it: by binary search with two
objectives, by a scan with more. A second pass tests the kept assignments against the
final front.

Pruning. Once the stages up to position j are placed, the walk bounds every objective
of the assignments that share these digits from below: latency by the largest finish
time so far, comm_s and the byte counts by their sums so far, and each cost by the
smallest table value over the bits still free (`_bound_tables`). All additions are of
non-negative numbers, so the bounds hold in floating point too. When a point of the
front surely dominates the bounds, it surely dominates every such assignment, and the
walk skips them, hashing their numbers when a sample is requested.

Limits. Problems outside these limits return None and the caller uses the vectorised
path: a priced device with more than `MAX_TABLE_BITS` free stages, sums that could
overflow, a monthly objective without ``runs_per_month``, ``period_s`` as an objective,
a device memory limit that some assignment exceeds, contention that depends on the
assignment (`CompiledProblem.contention_reason`), which makes a stage's time depend on
where other stages run, and providers that raise while the tables are built. The price
tables assume that a provider prices each row of a `Usage` independently of the other
rows, as the provider contract describes. With ``min_throughput_fps`` alone,
``period_s`` is no objective: the kernel screens as usual, and `evaluate_placements`
adds the stream's columns to the rows it keeps.

NOTE: The tables are kept per `CompiledProblem` object. A worker that receives a
pickled copy of the problem for every chunk (a process pool) builds them for every
chunk, at the price of estimating 2**f rows for a priced device with f free stages.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numba
import numpy as np

from allocation.compile import CompiledProblem
from allocation.errors import AllocationError
from allocation.estimate import METRIC_COLUMNS, _cost_per_run, _monthly_cost, usage_of

__all__ = [
    "MAX_TABLE_BITS",
    "SCREEN_MARGIN",
    "Screening",
    "sample_threshold",
    "screen_chunk",
]

MAX_TABLE_BITS = 20
"""Largest number of free stages a priced device may have (its price table has 2**bits rows)."""

SCREEN_MARGIN = 1e-7
"""Relative margin by which a point must be smaller in one objective to drop another.

It is wider than the front's tolerance (1e-9) by far more than rounding can matter,
which the argument in the module notes needs.
"""

_TABLE_BLOCK_ROWS = 65_536
_OVERFLOW_BOUND = 1e300
_F = TypeVar("_F", bound=Callable[..., Any])

# Codes of the metrics in the kernel, in the order of METRIC_COLUMNS.
_LATENCY, _COST, _COMM, _UPLOAD, _DOWNLOAD, _MONTHLY = range(6)
assert METRIC_COLUMNS == (
    "latency_s",
    "cost_usd",
    "comm_s",
    "upload_bytes",
    "download_bytes",
    "monthly_cost_usd",
)

# splitmix64 constants of `allocation.sweep.sample_mask`.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SHIFT_1 = np.uint64(30)
_SHIFT_2 = np.uint64(27)
_SHIFT_3 = np.uint64(31)


def _jit(function: _F) -> _F:
    """Compile `function` with numba, cached on disk when a cache folder is writable.

    numba raises at decoration when it finds no writable cache location, as in a
    read-only install without a writable ``NUMBA_CACHE_DIR`` or home folder. The
    function is then compiled in memory on its first call.
    """
    try:
        return cast(_F, numba.njit(cache=True, nogil=True)(function))
    except RuntimeError:
        return cast(_F, numba.njit(cache=False, nogil=True)(function))


def sample_threshold(fraction: float) -> np.uint64:
    """Return the hash value below which an assignment is sampled (see `sweep.sample_mask`)."""
    return np.uint64(min(int(max(fraction, 0.0) * 2.0**64), 2**64 - 1))


@dataclass(frozen=True)
class Screening:
    """Assignments of a chunk kept by the kernel.

    Attributes
    ----------
    candidates : ndarray of int64, shape (m,)
        Assignment numbers, ascending, that may be on the chunk's front; they include
        every front point and every point equivalent to one.
    objective_values : ndarray of float64, shape (m, n_objectives)
        The kernel's objective values of the candidates.
    objective_slack : ndarray of float64, shape (n_objectives,)
        Relative error bound of each objective against `evaluate_placements`; 0 where
        the kernel's value is exact.
    sampled : ndarray of int64, shape (s,)
        Assignment numbers chosen by `allocation.sweep.sample_mask`, ascending; empty
        unless a sample fraction below 1 was requested.
    """

    candidates: np.ndarray
    objective_values: np.ndarray
    objective_slack: np.ndarray
    sampled: np.ndarray

    def agrees_with(self, values: np.ndarray) -> bool:
        """Tell whether `values`, shape (m, n_objectives), match the kernel's values.

        Exact objectives must be equal bit for bit and the others within their slack.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.shape != self.objective_values.shape:
            return False
        allowed = self.objective_slack * np.abs(self.objective_values)
        return bool((np.abs(values - self.objective_values) <= allowed).all())


@dataclass(frozen=True)
class _Plan:
    """Arrays of one problem in the layout the kernel reads.

    Stages are in file order (the digit order); devices, edges and priced devices keep
    the problem's order. R is the largest radix and P the number of priced devices.
    """

    radices: np.ndarray
    """(S,) int64 radix of each digit."""
    digit_devices: np.ndarray
    """(S, R) int64 device of each digit value."""
    group_start: np.ndarray
    """(S + 1,) int64 offsets into `group_stages` by digit position."""
    group_stages: np.ndarray
    """(S,) int64 stages in topological order, grouped by the last digit position their
    finish time depends on."""
    incoming_start: np.ndarray
    """(S + 1,) int64 offsets into `incoming_edges` by stage."""
    incoming_edges: np.ndarray
    """(E,) int64 edges ending at each stage, in `CompiledProblem.incoming` order."""
    edge_source: np.ndarray
    edge_target: np.ndarray
    depth_start: np.ndarray
    """(S + 1,) int64 offsets into `depth_edges` by digit position."""
    depth_edges: np.ndarray
    """(E,) int64 edges grouped by the later digit position of their two stages."""
    edge_bytes: np.ndarray
    stage_time_s: np.ndarray
    edge_transfer_s: np.ndarray
    device_priced: np.ndarray
    """(D,) bool, whether each device is priced."""
    stage_bits: np.ndarray
    """(S, R, P) int64 bit that each digit value adds to each priced device's mask."""
    table_start: np.ndarray
    """(P,) int64 offset of each priced device's rows in the price tables."""
    cost_table_usd: np.ndarray
    """(T,) cost of one run on a priced device, by device and bit mask."""
    monthly_table_usd: np.ndarray
    """(T,) monthly cost on a priced device, by device and bit mask (zeros without
    runs_per_month)."""
    bound_start: np.ndarray
    """(S, P) int64 offset, per digit position and priced device, of the rows of
    `cost_bound_usd` and `monthly_bound_usd` indexed by the bits known once the stages
    up to that position are placed."""
    cost_bound_usd: np.ndarray
    """Smallest cost per run on a priced device over every completion of known bits."""
    monthly_bound_usd: np.ndarray
    """Smallest monthly cost on a priced device over every completion of known bits."""
    subtree_rows: np.ndarray
    """(S,) int64 number of assignments that share the digits up to each position."""
    objective_codes: np.ndarray
    """(k,) int64 metric code of each objective."""
    objective_slack: np.ndarray
    """(k,) relative error bound of each objective; 0 where exact."""


_plans: weakref.WeakKeyDictionary[CompiledProblem, _Plan | None] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


def screen_chunk(
    problem: CompiledProblem, start: int, stop: int, *, sample_fraction: float = 0.0
) -> Screening | None:
    """Screen the assignments ``start`` to ``stop - 1`` for the chunk's front.

    Parameters
    ----------
    problem
        The compiled problem.
    start, stop
        The chunk, ``0 <= start < stop <= problem.space_size``.
    sample_fraction
        With a value in (0, 1), also return the assignments that
        ``sweep.sample_mask(indices, sample_fraction)`` chooses.

    Returns
    -------
    Screening or None
        None when the kernel does not handle this problem (see the module notes); the
        caller then estimates the chunk with `allocation.estimate.evaluate_chunk`.

    Notes
    -----
    The price tables are built on the first call for a problem and kept for later
    chunks of the same `CompiledProblem` object. Memory is bounded by the candidates,
    the sample and the tables, never by the space.
    """
    if not 0 <= start < stop <= problem.space_size:
        raise ValueError(
            f"expected 0 <= start < stop <= {problem.space_size}; got start={start}, stop={stop}"
        )
    plan = _plan_of(problem)
    if plan is None:
        return None
    sample = 0.0 < sample_fraction < 1.0
    threshold = sample_threshold(sample_fraction) if sample else np.uint64(0)
    candidates, values, sampled = _screen(
        start,
        stop - start,
        plan.radices,
        plan.digit_devices,
        plan.group_start,
        plan.group_stages,
        plan.incoming_start,
        plan.incoming_edges,
        plan.edge_source,
        plan.edge_target,
        plan.depth_start,
        plan.depth_edges,
        plan.edge_bytes,
        plan.stage_time_s,
        plan.edge_transfer_s,
        plan.device_priced,
        plan.stage_bits,
        plan.table_start,
        plan.cost_table_usd,
        plan.monthly_table_usd,
        plan.bound_start,
        plan.cost_bound_usd,
        plan.monthly_bound_usd,
        plan.subtree_rows,
        plan.objective_codes,
        plan.objective_slack,
        SCREEN_MARGIN,
        threshold,
        sample,
    )
    return Screening(
        candidates=candidates,
        objective_values=values,
        objective_slack=plan.objective_slack,
        sampled=sampled,
    )


def _plan_of(problem: CompiledProblem) -> _Plan | None:
    with _plans_lock:
        if problem in _plans:
            return _plans[problem]
        plan = _build_plan(problem)
        _plans[problem] = plan
        return plan


def _build_plan(problem: CompiledProblem) -> _Plan | None:
    if "monthly_cost_usd" in problem.objectives and problem.runs_per_month is None:
        return None
    if (
        problem.contention_reason is not None
        or problem.memory_bound_devices
        or "period_s" in problem.objectives
    ):
        return None
    n_stages = problem.n_stages
    n_edges = len(problem.edge_source)
    radices = problem.radices.astype(np.int64)
    max_radix = int(radices.max())

    digit_devices = np.zeros((n_stages, max_radix), dtype=np.int64)
    for s, devices in enumerate(problem.allowed):
        digit_devices[s, : len(devices)] = devices

    # A stage's finish time depends on the digits of its ancestors and itself, so it is
    # computed when the last of them is placed.
    last_digit = np.arange(n_stages, dtype=np.int64)
    for s in problem.topo_order.tolist():
        for e in problem.incoming[s].tolist():
            last_digit[s] = max(last_digit[s], last_digit[problem.edge_source[e]])
    topo_rank = np.empty(n_stages, dtype=np.int64)
    topo_rank[problem.topo_order] = np.arange(n_stages)
    group_stages = np.lexsort((topo_rank, last_digit)).astype(np.int64)
    group_start = np.searchsorted(last_digit[group_stages], np.arange(n_stages + 1)).astype(
        np.int64
    )

    incoming_edges = (
        np.concatenate(problem.incoming).astype(np.int64)
        if n_edges
        else np.empty(0, dtype=np.int64)
    )
    incoming_start = np.zeros(n_stages + 1, dtype=np.int64)
    incoming_start[1:] = np.cumsum([len(edges) for edges in problem.incoming])

    edge_depth = np.maximum(problem.edge_source, problem.edge_target).astype(np.int64)
    depth_edges = np.argsort(edge_depth, kind="stable").astype(np.int64)
    depth_start = np.searchsorted(edge_depth[depth_edges], np.arange(n_stages + 1)).astype(np.int64)

    tables = _price_tables(problem, digit_devices)
    if tables is None:
        return None
    stage_bits, table_start, cost_table_usd, monthly_table_usd = tables
    bound_start, cost_bound_usd, monthly_bound_usd = _bound_tables(
        problem, stage_bits, table_start, cost_table_usd, monthly_table_usd
    )
    subtree_rows = np.ones(n_stages, dtype=np.int64)
    for s in range(n_stages - 2, -1, -1):
        subtree_rows[s] = subtree_rows[s + 1] * radices[s + 1]

    codes = np.array([METRIC_COLUMNS.index(name) for name in problem.objectives], dtype=np.int64)
    slack = np.where(codes == _COMM, (n_edges + 1) * 2.0**-50, 0.0)

    # Sums that could reach infinity are left to the vectorised path, which reports them.
    stage_time_s = np.nan_to_num(problem.stage_time_s, nan=0.0)
    transfer_bound = float(problem.edge_transfer_s.max(axis=(1, 2)).sum()) if n_edges else 0.0
    latency_bound = float(stage_time_s.max(axis=1).sum()) + transfer_bound
    cost_bound = 0.0
    for p in range(len(problem.priced)):
        rows = slice(table_start[p], table_start[p + 1] if p + 1 < len(table_start) else None)
        cost_bound += float(cost_table_usd[rows].max()) + float(monthly_table_usd[rows].max())
    if not max(latency_bound, cost_bound) < _OVERFLOW_BOUND:
        return None

    device_priced = np.zeros(problem.n_devices, dtype=np.bool_)
    for priced in problem.priced:
        device_priced[priced.index] = True
    return _Plan(
        radices=radices,
        digit_devices=digit_devices,
        group_start=group_start,
        group_stages=group_stages,
        incoming_start=incoming_start,
        incoming_edges=incoming_edges,
        edge_source=problem.edge_source.astype(np.int64),
        edge_target=problem.edge_target.astype(np.int64),
        depth_start=depth_start,
        depth_edges=depth_edges,
        edge_bytes=problem.edge_bytes.astype(np.int64),
        stage_time_s=stage_time_s,
        edge_transfer_s=np.ascontiguousarray(problem.edge_transfer_s, dtype=np.float64),
        device_priced=device_priced,
        stage_bits=stage_bits,
        table_start=table_start,
        cost_table_usd=cost_table_usd,
        monthly_table_usd=monthly_table_usd,
        bound_start=bound_start,
        cost_bound_usd=cost_bound_usd,
        monthly_bound_usd=monthly_bound_usd,
        subtree_rows=subtree_rows,
        objective_codes=codes,
        objective_slack=slack,
    )


def _price_tables(
    problem: CompiledProblem, digit_devices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Price every set of free stages on every priced device.

    Returns the bits of each digit value, the offset of each device's rows and the
    tables of cost per run and monthly cost. Returns None when a table would be too
    large or a provider raises, so that the vectorised path raises for the chunks
    concerned.
    """
    n_stages = problem.n_stages
    n_priced = len(problem.priced)
    stage_bits = np.zeros((n_stages, digit_devices.shape[1], max(n_priced, 1)), dtype=np.int64)
    table_start = np.zeros(n_priced, dtype=np.int64)
    cost_parts: list[np.ndarray] = []
    monthly_parts: list[np.ndarray] = []
    offset = 0
    for p, priced in enumerate(problem.priced):
        device = priced.index
        # Free stages may run on the device or elsewhere; pinned ones are always there.
        free = [
            s
            for s in range(n_stages)
            if problem.radices[s] > 1 and device in problem.allowed[s].tolist()
        ]
        pinned = np.array(
            [problem.radices[s] == 1 and problem.allowed[s][0] == device for s in range(n_stages)]
        )
        if len(free) > MAX_TABLE_BITS:
            return None
        for bit, s in enumerate(free):
            digit = problem.allowed[s].tolist().index(device)
            stage_bits[s, digit, p] = 1 << bit

        n_rows = 1 << len(free)
        cost = np.empty(n_rows)
        monthly = np.zeros(n_rows)
        for begin in range(0, n_rows, _TABLE_BLOCK_ROWS):
            masks = np.arange(begin, min(begin + _TABLE_BLOCK_ROWS, n_rows), dtype=np.int64)
            on = np.tile(pinned, (len(masks), 1))
            for bit, s in enumerate(free):
                on[:, s] = (masks >> bit) & 1 == 1
            # Stages off the device get -1: usage_of only compares placements with it.
            placements = np.where(on, device, -1).astype(np.int16)
            times = np.where(on, problem.stage_time_s[:, device][None, :], 0.0)
            usage = usage_of(problem, placements, times, device)
            try:
                cost[masks] = _cost_per_run(priced, usage)
                if problem.runs_per_month is not None:
                    monthly[masks] = _monthly_cost(priced, usage, problem.runs_per_month)
            except AllocationError:
                return None
        table_start[p] = offset
        offset += n_rows
        cost_parts.append(cost)
        monthly_parts.append(monthly)

    cost_table = np.concatenate(cost_parts) if cost_parts else np.zeros(1)
    monthly_table = np.concatenate(monthly_parts) if monthly_parts else np.zeros(1)
    return stage_bits, table_start, cost_table, monthly_table


def _bound_tables(
    problem: CompiledProblem,
    stage_bits: np.ndarray,
    table_start: np.ndarray,
    cost_table_usd: np.ndarray,
    monthly_table_usd: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build the smallest charge of each priced device given the bits known so far.

    A device's free stages take its mask bits in file order, so once the stages up to
    position j are placed the low bits are known and the high bits are free. Row x of
    level b is the smallest table value whose b low bits are x. Level b is built from
    level b + 1 by taking the smaller of the two values of its next bit.
    """
    n_stages = problem.n_stages
    n_priced = len(problem.priced)
    ends = [*table_start[1:].tolist(), len(cost_table_usd)]
    bound_start = np.zeros((n_stages, max(n_priced, 1)), dtype=np.int64)
    cost_parts: list[np.ndarray] = []
    monthly_parts: list[np.ndarray] = []
    offset = 0
    for p in range(n_priced):
        cost = cost_table_usd[table_start[p] : ends[p]]
        monthly = monthly_table_usd[table_start[p] : ends[p]]
        n_bits = int(cost.shape[0]).bit_length() - 1
        levels_cost = [cost]
        levels_monthly = [monthly]
        for b in range(n_bits - 1, -1, -1):
            half = 1 << b
            levels_cost.append(np.minimum(levels_cost[-1][:half], levels_cost[-1][half:]))
            levels_monthly.append(np.minimum(levels_monthly[-1][:half], levels_monthly[-1][half:]))
        # levels_*[n_bits - b] has 2**b rows: the bound with b known bits.
        level_start = {}
        for b in range(n_bits + 1):
            level_start[b] = offset
            cost_parts.append(levels_cost[n_bits - b])
            monthly_parts.append(levels_monthly[n_bits - b])
            offset += 1 << b
        known = 0
        for s in range(n_stages):
            known += int(stage_bits[s, :, p].any())
            bound_start[s, p] = level_start[known]
    cost_bound = np.concatenate(cost_parts) if cost_parts else np.zeros(1)
    monthly_bound = np.concatenate(monthly_parts) if monthly_parts else np.zeros(1)
    return bound_start, cost_bound, monthly_bound


@_jit
def _last_at_most(keys: np.ndarray, n: int, x: float) -> int:
    """Return the last position in sorted ``keys[:n]`` with a key <= x, or -1."""
    low, high = 0, n
    while low < high:
        middle = (low + high) >> 1
        if keys[middle] <= x:
            low = middle + 1
        else:
            high = middle
    return low - 1


@_jit
def _last_below(keys: np.ndarray, n: int, x: float) -> int:
    """Return the last position in sorted ``keys[:n]`` with a key < x, or -1."""
    low, high = 0, n
    while low < high:
        middle = (low + high) >> 1
        if keys[middle] < x:
            low = middle + 1
        else:
            high = middle
    return low - 1


@_jit
def _dominated_2d(
    front_0: np.ndarray,
    front_1: np.ndarray,
    n: int,
    hint: int,
    a_0: float,
    a_1: float,
    margin: float,
) -> int:
    """Return a staircase point that surely dominates the lower bounds (a_0, a_1), or -1.

    The staircase is sorted by its first value, ascending, with the second strictly
    descending, so the smallest second value among the points up to a threshold in the
    first is that of the last such point. Point `hint`, which dominated the previous
    assignment, is tried first.
    """
    if hint < n:
        p_0 = front_0[hint]
        p_1 = front_1[hint]
        if p_0 <= a_0 and p_1 <= a_1 and (p_0 < a_0 * margin or p_1 < a_1 * margin):
            return hint
    at_most = _last_at_most(front_0, n, a_0)
    if at_most < 0 or front_1[at_most] > a_1:
        return -1
    if front_1[at_most] < a_1 * margin:
        return at_most
    below = _last_below(front_0, n, a_0 * margin)
    if below >= 0 and front_1[below] <= a_1:
        return below
    return -1


@_jit
def _insert_2d(front_0: np.ndarray, front_1: np.ndarray, n: int, h_0: float, h_1: float) -> int:
    """Insert (h_0, h_1) into the staircase unless a point is at most it in both values.

    Removes the points that the new one is at most in both values and returns the new
    length. The arrays must have room for one more point.
    """
    at_most = _last_at_most(front_0, n, h_0)
    if at_most >= 0 and front_1[at_most] <= h_1:
        return n
    first = at_most + 1
    if at_most >= 0 and front_0[at_most] == h_0:
        first = at_most
    last = first
    while last < n and front_1[last] >= h_1:
        last += 1
    removed = last - first
    if removed == 0:
        for i in range(n, first, -1):
            front_0[i] = front_0[i - 1]
            front_1[i] = front_1[i - 1]
    else:
        for i in range(last, n):
            front_0[i - removed + 1] = front_0[i]
            front_1[i - removed + 1] = front_1[i]
    front_0[first] = h_0
    front_1[first] = h_1
    return n + 1 - removed


@_jit
def _dominated_kd(front: np.ndarray, n: int, lower: np.ndarray, margin: float) -> bool:
    """Test whether a row of ``front[:n]`` surely dominates the lower bounds `lower`."""
    k = lower.shape[0]
    for p in range(n):
        at_most = True
        smaller = False
        for i in range(k):
            if front[p, i] > lower[i]:
                at_most = False
                break
            if front[p, i] < lower[i] * margin:
                smaller = True
        if at_most and smaller:
            return True
    return False


@_jit
def _insert_kd(front: np.ndarray, n: int, upper: np.ndarray) -> int:
    """Add `upper` to the minimal set ``front[:n]`` unless a row is at most it everywhere.

    Returns the new length. The array must have room for one more row.
    """
    k = upper.shape[0]
    for p in range(n):
        covered = True
        for i in range(k):
            if front[p, i] > upper[i]:
                covered = False
                break
        if covered:
            return n
    kept = 0
    for p in range(n):
        covers = True
        for i in range(k):
            if upper[i] > front[p, i]:
                covers = False
                break
        if not covers:
            for i in range(k):
                front[kept, i] = front[p, i]
            kept += 1
    for i in range(k):
        front[kept, i] = upper[i]
    return kept + 1


@_jit
def _grow_1d(array: np.ndarray) -> np.ndarray:
    grown = np.empty(2 * array.shape[0], dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


@_jit
def _grow_2d(array: np.ndarray) -> np.ndarray:
    grown = np.empty((2 * array.shape[0], array.shape[1]), dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


@_jit
def _is_sampled(index: int, threshold: np.uint64) -> bool:
    z = np.uint64(index) + _GOLDEN
    z = (z ^ (z >> _SHIFT_1)) * _MIX_1
    z = (z ^ (z >> _SHIFT_2)) * _MIX_2
    z = z ^ (z >> _SHIFT_3)
    return bool(z < threshold)


# Positions in the walk's counters, and the reasons it returns.
_ROW, _LEVEL, _CANDIDATES, _FRONT, _SAMPLED, _HINT = range(6)
_FINISHED, _CANDIDATES_FULL, _FRONT_FULL, _SAMPLED_FULL = range(4)


@_jit
def _walk(
    count: int,
    start: int,
    radices: np.ndarray,
    digit_devices: np.ndarray,
    group_start: np.ndarray,
    group_stages: np.ndarray,
    incoming_start: np.ndarray,
    incoming_edges: np.ndarray,
    edge_source: np.ndarray,
    edge_target: np.ndarray,
    depth_start: np.ndarray,
    depth_edges: np.ndarray,
    edge_bytes: np.ndarray,
    stage_time_s: np.ndarray,
    edge_transfer_s: np.ndarray,
    device_priced: np.ndarray,
    stage_bits: np.ndarray,
    table_start: np.ndarray,
    cost_table_usd: np.ndarray,
    monthly_table_usd: np.ndarray,
    bound_start: np.ndarray,
    cost_bound_usd: np.ndarray,
    monthly_bound_usd: np.ndarray,
    subtree_rows: np.ndarray,
    objective_codes: np.ndarray,
    lower_factor: np.ndarray,
    upper_factor: np.ndarray,
    keep_factor: float,
    threshold: np.uint64,
    sample: bool,
    digits: np.ndarray,
    placed: np.ndarray,
    finish_s: np.ndarray,
    latency_s: np.ndarray,
    comm_s: np.ndarray,
    upload_bytes: np.ndarray,
    download_bytes: np.ndarray,
    masks: np.ndarray,
    values: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    front_0: np.ndarray,
    front_1: np.ndarray,
    front: np.ndarray,
    candidates: np.ndarray,
    candidate_values: np.ndarray,
    sampled: np.ndarray,
    counters: np.ndarray,
) -> int:
    """Walk the chunk from ``counters[_ROW]`` until it ends or a buffer is full.

    The walk's state lives in the arrays, so that the caller can grow a full buffer
    and call again. No array is reassigned inside the loop, because numba would then
    count references on every assignment.
    """
    n_stages = radices.shape[0]
    n_priced = table_start.shape[0]
    k = objective_codes.shape[0]
    need_cost = False
    need_comm_or_bytes = False
    need_monthly = False
    for o in range(k):
        code = objective_codes[o]
        need_cost |= code == _COST
        need_comm_or_bytes |= code in (_COMM, _UPLOAD, _DOWNLOAD)
        need_monthly |= code == _MONTHLY

    row = counters[_ROW]
    level = counters[_LEVEL]
    n_candidates = counters[_CANDIDATES]
    n_front = counters[_FRONT]
    n_sampled = counters[_SAMPLED]
    hint = counters[_HINT]
    status = _FINISHED
    while row < count:
        if n_candidates == candidates.shape[0]:
            status = _CANDIDATES_FULL
            break
        if n_front == front_0.shape[0] or n_front == front.shape[0]:
            status = _FRONT_FULL
            break
        if sample and n_sampled == sampled.shape[0]:
            status = _SAMPLED_FULL
            break

        # Place the digits from `level` on; the earlier ones did not change.
        skipped_rows = False
        for j in range(level, n_stages):
            placed[j] = digit_devices[j, digits[j]]
            latest = latency_s[j]
            for g in range(group_start[j], group_start[j + 1]):
                s = group_stages[g]
                begin_s = 0.0
                for x in range(incoming_start[s], incoming_start[s + 1]):
                    e = incoming_edges[x]
                    u = edge_source[e]
                    arrival_s = finish_s[u] + edge_transfer_s[e, placed[u], placed[s]]
                    if arrival_s > begin_s:
                        begin_s = arrival_s
                end_s = begin_s + stage_time_s[s, placed[s]]
                finish_s[s] = end_s
                if end_s > latest:
                    latest = end_s
            latency_s[j + 1] = latest
            if need_comm_or_bytes:
                comm = comm_s[j]
                up = upload_bytes[j]
                down = download_bytes[j]
                for x in range(depth_start[j], depth_start[j + 1]):
                    e = depth_edges[x]
                    a = placed[edge_source[e]]
                    b = placed[edge_target[e]]
                    if a != b:
                        comm += edge_transfer_s[e, a, b]
                        if device_priced[b]:
                            up += edge_bytes[e]
                        if device_priced[a]:
                            down += edge_bytes[e]
                comm_s[j + 1] = comm
                upload_bytes[j + 1] = up
                download_bytes[j + 1] = down
            for p in range(n_priced):
                masks[j + 1, p] = masks[j, p] | stage_bits[j, digits[j], p]
            if j == n_stages - 1:
                break

            # Skip the assignments that share digits 0 .. j when a point seen so far
            # surely dominates a lower bound of all of them.
            for o in range(k):
                code = objective_codes[o]
                if code == _LATENCY:
                    bound = float(latency_s[j + 1])
                elif code == _COST:
                    bound = 0.0
                    for p in range(n_priced):
                        bound += cost_bound_usd[bound_start[j, p] + masks[j + 1, p]]
                elif code == _MONTHLY:
                    bound = 0.0
                    for p in range(n_priced):
                        bound += monthly_bound_usd[bound_start[j, p] + masks[j + 1, p]]
                elif code == _COMM:
                    bound = float(comm_s[j + 1])
                elif code == _UPLOAD:
                    bound = float(upload_bytes[j + 1])
                else:
                    bound = float(download_bytes[j + 1])
                lower[o] = bound * lower_factor[o]
            if k == 2:
                witness = _dominated_2d(
                    front_0, front_1, n_front, hint, lower[0], lower[1], keep_factor
                )
                if witness < 0:
                    continue
                hint = witness
            elif not _dominated_kd(front, n_front, lower, keep_factor):
                continue

            done = 0
            for i in range(j + 1, n_stages):
                done += digits[i] * subtree_rows[i]
            skipped = min(subtree_rows[j] - done, count - row)
            if sample and sampled.shape[0] - n_sampled < skipped:
                # Resume at this position once the caller has grown the sample.
                level = j
                status = _SAMPLED_FULL
                break
            if sample:
                for index in range(start + row, start + row + skipped):
                    if _is_sampled(index, threshold):
                        sampled[n_sampled] = index
                        n_sampled += 1
            row += skipped
            for i in range(j + 1, n_stages):
                digits[i] = 0
            level = j
            while level > 0:
                digits[level] += 1
                if digits[level] < radices[level]:
                    break
                digits[level] = 0
                level -= 1
            if level == 0:
                digits[0] += 1
            skipped_rows = True
            break
        if status != _FINISHED:
            break
        if skipped_rows:
            continue

        # The objectives; costs add up in the priced devices' order, as in estimate.py.
        cost_usd = 0.0
        monthly_cost_usd = 0.0
        if need_cost:
            for p in range(n_priced):
                cost_usd += cost_table_usd[table_start[p] + masks[n_stages, p]]
        if need_monthly:
            for p in range(n_priced):
                monthly_cost_usd += monthly_table_usd[table_start[p] + masks[n_stages, p]]
        for o in range(k):
            code = objective_codes[o]
            if code == _LATENCY:
                value = float(latency_s[n_stages])
            elif code == _COST:
                value = cost_usd
            elif code == _COMM:
                value = float(comm_s[n_stages])
            elif code == _UPLOAD:
                value = float(upload_bytes[n_stages])
            elif code == _DOWNLOAD:
                value = float(download_bytes[n_stages])
            else:
                value = monthly_cost_usd
            values[o] = value
            lower[o] = value * lower_factor[o]
            upper[o] = value * upper_factor[o]

        # Keep the assignment unless a point seen so far surely dominates it.
        if k == 2:
            witness = _dominated_2d(
                front_0, front_1, n_front, hint, lower[0], lower[1], keep_factor
            )
            dominated = witness >= 0
            if dominated:
                hint = witness
        else:
            dominated = _dominated_kd(front, n_front, lower, keep_factor)
        index = start + row
        if not dominated:
            candidates[n_candidates] = index
            for o in range(k):
                candidate_values[n_candidates, o] = values[o]
            n_candidates += 1
            if k == 2:
                n_front = _insert_2d(front_0, front_1, n_front, upper[0], upper[1])
            else:
                n_front = _insert_kd(front, n_front, upper)

        if sample and _is_sampled(index, threshold):
            sampled[n_sampled] = index
            n_sampled += 1

        # Advance the odometer: the lowest changed position is where the walk resumes.
        row += 1
        level = n_stages - 1
        while level > 0:
            digits[level] += 1
            if digits[level] < radices[level]:
                break
            digits[level] = 0
            level -= 1
        if level == 0:
            digits[0] += 1

    counters[_ROW] = row
    counters[_LEVEL] = level
    counters[_CANDIDATES] = n_candidates
    counters[_FRONT] = n_front
    counters[_SAMPLED] = n_sampled
    counters[_HINT] = hint
    return status


@_jit
def _screen(
    start: int,
    count: int,
    radices: np.ndarray,
    digit_devices: np.ndarray,
    group_start: np.ndarray,
    group_stages: np.ndarray,
    incoming_start: np.ndarray,
    incoming_edges: np.ndarray,
    edge_source: np.ndarray,
    edge_target: np.ndarray,
    depth_start: np.ndarray,
    depth_edges: np.ndarray,
    edge_bytes: np.ndarray,
    stage_time_s: np.ndarray,
    edge_transfer_s: np.ndarray,
    device_priced: np.ndarray,
    stage_bits: np.ndarray,
    table_start: np.ndarray,
    cost_table_usd: np.ndarray,
    monthly_table_usd: np.ndarray,
    bound_start: np.ndarray,
    cost_bound_usd: np.ndarray,
    monthly_bound_usd: np.ndarray,
    subtree_rows: np.ndarray,
    objective_codes: np.ndarray,
    objective_slack: np.ndarray,
    margin: float,
    threshold: np.uint64,
    sample: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk the chunk and return the candidates, their objective values and the sample."""
    n_stages = radices.shape[0]
    k = objective_codes.shape[0]
    keep_factor = 1.0 - margin
    lower_factor = 1.0 - objective_slack
    upper_factor = 1.0 + objective_slack

    # The digits of `start`, last stage fastest.
    digits = np.zeros(n_stages, dtype=np.int64)
    rest = start
    for s in range(n_stages - 1, -1, -1):
        digits[s] = rest % radices[s]
        rest //= radices[s]

    # State after placing the stages at positions 0 .. j - 1, indexed by j.
    placed = np.zeros(n_stages, dtype=np.int64)
    finish_s = np.zeros(n_stages)
    latency_s = np.zeros(n_stages + 1)
    comm_s = np.zeros(n_stages + 1)
    upload_bytes = np.zeros(n_stages + 1, dtype=np.int64)
    download_bytes = np.zeros(n_stages + 1, dtype=np.int64)
    masks = np.zeros((n_stages + 1, max(table_start.shape[0], 1)), dtype=np.int64)
    values = np.empty(k)
    lower = np.empty(k)
    upper = np.empty(k)

    front_0 = np.empty(64)
    front_1 = np.empty(64)
    front = np.empty((64, k))
    candidates = np.empty(256, dtype=np.int64)
    candidate_values = np.empty((256, k))
    sampled = np.empty(256 if sample else 0, dtype=np.int64)
    counters = np.zeros(6, dtype=np.int64)

    while True:
        status = _walk(
            count,
            start,
            radices,
            digit_devices,
            group_start,
            group_stages,
            incoming_start,
            incoming_edges,
            edge_source,
            edge_target,
            depth_start,
            depth_edges,
            edge_bytes,
            stage_time_s,
            edge_transfer_s,
            device_priced,
            stage_bits,
            table_start,
            cost_table_usd,
            monthly_table_usd,
            bound_start,
            cost_bound_usd,
            monthly_bound_usd,
            subtree_rows,
            objective_codes,
            lower_factor,
            upper_factor,
            keep_factor,
            threshold,
            sample,
            digits,
            placed,
            finish_s,
            latency_s,
            comm_s,
            upload_bytes,
            download_bytes,
            masks,
            values,
            lower,
            upper,
            front_0,
            front_1,
            front,
            candidates,
            candidate_values,
            sampled,
            counters,
        )
        if status == _FINISHED:
            break
        if status == _CANDIDATES_FULL:
            candidates = _grow_1d(candidates)
            candidate_values = _grow_2d(candidate_values)
        elif status == _FRONT_FULL:
            front_0 = _grow_1d(front_0)
            front_1 = _grow_1d(front_1)
            front = _grow_2d(front)
        else:
            sampled = _grow_1d(sampled)

    # Second pass: test the candidates against the front of the whole chunk.
    n_front = counters[_FRONT]
    kept = 0
    for c in range(counters[_CANDIDATES]):
        for o in range(k):
            lower[o] = candidate_values[c, o] * lower_factor[o]
        if k == 2:
            dominated = (
                _dominated_2d(front_0, front_1, n_front, n_front, lower[0], lower[1], keep_factor)
                >= 0
            )
        else:
            dominated = _dominated_kd(front, n_front, lower, keep_factor)
        if not dominated:
            candidates[kept] = candidates[c]
            candidate_values[kept] = candidate_values[c]
            kept += 1
    return (
        candidates[:kept].copy(),
        candidate_values[:kept].copy(),
        sampled[: counters[_SAMPLED]].copy(),
    )
