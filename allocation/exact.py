"""The exact Pareto front without enumeration: dynamic programming over the stages.

`exact_front` returns the same front as the exhaustive sweep (the same representatives,
equivalent counts and metrics) for spaces far too large to enumerate. It places the
stages one at a time in topological order and keeps, for every *state*, only the
partial assignments (labels) that no other label of that state dominates. `exactness`
returns None when the method applies to a problem, and the reason otherwise.

The state after a step contains what the rest of the workflow can still see: the
device of every *open* stage (a placed stage with an edge to a stage not yet placed)
and which open stages share an invocation group. A label contains the quantities that
only grow from then on: the finish time of every open stage and the latest finish so
far (latency), the cost of the invocations already closed and the duration of every
open group (cost), the transfer time so far, the bytes sent to and received from priced
devices, the number of assignments it stands for and the smallest assignment number
among them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allocation.compile import CompiledProblem
from allocation.errors import AllocationError, InputError
from allocation.estimate import Evaluation, evaluate_placements
from allocation.jit import compiled
from allocation.pareto import RELATIVE_TOLERANCE, pareto_front
from allocation.pricing import PerRunCostTerms, Usage
from allocation.space import decode_placements, encode_placement
from allocation.sweep import PartialFront, front_of, objective_matrix

__all__ = [
    "AUTO_EXACT_FROM",
    "EXACT_SAMPLE",
    "MAX_OPEN_STAGES",
    "METHODS",
    "SUPPORTED_OBJECTIVES",
    "NotExactError",
    "choose_method",
    "exact_front",
    "exactness",
    "sample_assignments",
]

SUPPORTED_OBJECTIVES = ("latency_s", "cost_usd", "comm_s", "upload_bytes", "download_bytes")
"""Objectives that add up over the stages of one run, so that the method can track them."""

MAX_OPEN_STAGES = 6
"""Most stages whose outputs may be pending at once; the states grow as devices ** open."""

HEURISTIC_LABELS_PER_STATE = 12
"""Labels per state kept by the capped programme that finds incumbents."""

MARGIN_FACTOR = 2.0
"""A label prunes another only when better by this times 1e-9 times the objective's bound.

Twice the front's tolerance leaves room for the rounding by which the engine's sums
differ from the labels' sums, about 1e-15 of the bound.
"""

_CHECK_ROWS = 256
_MAX_INDEX = 2**63 - 1
_MAX_EXACT_BYTES = 2**53


class NotExactError(AllocationError):
    """The exact method does not apply to a problem, for the reason in the message."""


@dataclass(frozen=True)
class _Plan:
    """Schedule, bounds and cost terms of the dynamic programme for one problem."""

    order: tuple[int, ...]
    """Stages in the order they are placed (the problem's topological order)."""
    open_after: tuple[tuple[int, ...], ...]
    """Per step, the placed stages that have an edge to a stage not yet placed."""
    latest_needed: tuple[bool, ...]
    """Per step, whether a placed stage can finish after every open stage."""
    latency_strict: tuple[bool, ...]
    """Per step, whether no unplaced stage is a source (see `_prune`)."""
    track_latency: bool
    track_cost: bool
    track_comm: bool
    track_upload: bool
    track_download: bool
    terms: dict[int, PerRunCostTerms]
    """Cost terms by priced device index, when cost is an objective."""
    margins: dict[str, float]
    """Pruning margin of each tracked objective, in its unit."""
    tail_s: np.ndarray
    """(S,) longest path after each stage to a sink, with the fastest stage times and
    no transfer time: a lower bound of what follows the stage's finish."""
    unplaced_sources_s: tuple[float, ...]
    """Per step, a lower bound of the finish of the stages that descend from no placed
    stage: the longest such path from an unplaced source, as in `tail_s`."""


@dataclass
class _Labels:
    """Labels of one step, row for row; w is the number of open stages."""

    device: np.ndarray
    """(n, w) device of each open stage."""
    group: np.ndarray
    """(n, w) smallest open slot of the stage's invocation group; -1 on unpriced devices."""
    finish_s: np.ndarray
    """(n, w) finish time of each open stage."""
    group_s: np.ndarray
    """(n, w) duration so far of the group whose smallest open slot is this one, else 0."""
    latest_s: np.ndarray
    closed_usd: np.ndarray
    comm_s: np.ndarray
    upload_bytes: np.ndarray
    download_bytes: np.ndarray
    count: np.ndarray
    index: np.ndarray
    parent: np.ndarray
    """(n,) row of the label in the previous step that this one extends."""
    choice: np.ndarray
    """(n,) device of the stage placed in this step."""

    def take(self, rows: np.ndarray) -> _Labels:
        return _Labels(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})


def exactness(problem: CompiledProblem) -> str | None:
    """Return None when `exact_front` is exact for `problem`, otherwise the reason."""
    try:
        _plan(problem)
    except NotExactError as exc:
        return str(exc)
    return None


def exact_front(problem: CompiledProblem) -> PartialFront:
    """Build the Pareto front of the whole assignment space without enumerating it.

    Returns
    -------
    PartialFront
        The representatives, sorted by the objectives, with every metric computed by
        `allocation.estimate.evaluate_placements`, their assignment numbers, and how
        many assignments each stands for: the same front as the exhaustive sweep.

    Raises
    ------
    NotExactError
        When the method is not exact for the problem (see `exactness`): an objective
        that is not a sum over one run, a pricing provider without per-run cost terms
        or whose terms do not match its costs, too many open stages, a device memory
        limit that some assignment exceeds, a space whose assignment numbers exceed
        int64, or contention that depends on the assignment.

    Notes
    -----
    Stages are placed in topological order. After each step, labels of the same state
    that are equal in every tracked quantity are merged: their counts add up and the
    smaller assignment number is kept. A label is dropped when another label of the
    same state is at least as good in every tracked quantity and better in an
    objective by more than ``MARGIN_FACTOR * 1e-9`` times an upper bound of that
    objective over the whole space. Then every completion of the dropped label is
    dominated, under the front's relative tolerance, by the same completion of the
    other, and anything it dominates the other dominates too, so the dropped
    assignments are neither on the front nor equivalent to a front point. The
    surviving complete labels are evaluated by the engine and filtered with
    `allocation.pareto.pareto_front`.

    NOTE: labels sum times and costs in another order than the engine. Where that
    rounding (about 1e-15 relative) moves a value across a tolerance threshold, or a
    duration across a provider's rounding step, the result can differ from the sweep's.
    """
    plan = _plan(problem)
    incumbents = _incumbents(problem, plan)
    labels, steps = _run(problem, plan, incumbents=incumbents)

    placements = _placements(problem, plan, steps, len(labels.count))
    pattern_index = np.array(
        [encode_placement(problem, row.tolist()) for row in placements], dtype=np.int64
    )
    evaluation = evaluate_placements(problem, placements, pattern_index)
    return front_of(problem, evaluation, labels.count)


def _plan(problem: CompiledProblem) -> _Plan:
    """Check that the method applies and precompute the schedule of open stages."""
    if problem.contention_reason is not None:
        raise NotExactError(problem.contention_reason)
    objectives = problem.objectives
    if "monthly_cost_usd" in objectives:
        raise NotExactError(
            "monthly_cost_usd is an objective, and tiers and free allowances apply to "
            "monthly totals, so it is not a sum over the invocations of one run; the exact "
            "method handles " + ", ".join(SUPPORTED_OBJECTIVES)
        )
    if "period_s" in objectives:
        raise NotExactError(
            "period_s is an objective, and a stream's period is the busy time of the "
            "busiest device or link, a maximum over the whole placement that the method's "
            "states do not track"
        )
    unknown = [name for name in objectives if name not in SUPPORTED_OBJECTIVES]
    if unknown:
        raise NotExactError(
            f"objective {unknown[0]!r} is not supported by the exact method, which handles "
            + ", ".join(SUPPORTED_OBJECTIVES)
        )
    if problem.memory_bound_devices:
        names = ", ".join(repr(problem.device_ids[d]) for d in problem.memory_bound_devices)
        raise NotExactError(
            f"a device memory limit can bind (on {names}), and whether an assignment fits "
            "depends on all of a device's stages at once, which the method's states do not "
            "track"
        )
    if problem.space_size > _MAX_INDEX:
        raise NotExactError(
            f"the space has {problem.space_size} assignments, and assignment numbers past "
            f"{_MAX_INDEX} do not fit the int64 pattern_index column"
        )
    total_bytes = int(problem.edge_bytes.sum(dtype=object)) if len(problem.edge_bytes) else 0
    if total_bytes >= _MAX_EXACT_BYTES:
        raise NotExactError(
            f"the edges carry {total_bytes} bytes in all, more than float64 labels hold "
            f"exactly ({_MAX_EXACT_BYTES})"
        )

    track_cost = "cost_usd" in objectives
    terms = (
        {p.index: _checked_terms(problem, p.index) for p in problem.priced} if track_cost else {}
    )

    order = tuple(int(s) for s in problem.topo_order)
    position = {s: t for t, s in enumerate(order)}
    successors: list[list[int]] = [[] for _ in range(problem.n_stages)]
    for u, v in zip(problem.edge_source.tolist(), problem.edge_target.tolist(), strict=True):
        successors[u].append(v)
    last_use = [max((position[v] for v in successors[s]), default=-1) for s in range(len(order))]

    # reach[s]: the last step that places s or one of its descendants.
    reach = [0] * problem.n_stages
    for s in reversed(order):
        reach[s] = max([position[s], *(reach[v] for v in successors[s])])
    first_reach_end = min(reach) if reach else 0
    sources = [s for s in range(problem.n_stages) if len(problem.incoming[s]) == 0]
    last_source = max((position[s] for s in sources), default=-1)

    fastest_s = np.nanmin(problem.stage_time_s, axis=1)
    tail_s = np.zeros(problem.n_stages)
    for s in reversed(order):
        tail_s[s] = max((fastest_s[v] + tail_s[v] for v in successors[s]), default=0.0)
    unplaced_sources_s = tuple(
        max(
            (fastest_s[s] + tail_s[s] for s in sources if position[s] > t),
            default=0.0,
        )
        for t in range(len(order))
    )

    open_after = []
    for t in range(len(order)):
        open_after.append(tuple(s for s in order[: t + 1] if last_use[s] > t))
    width = max((len(stages) for stages in open_after), default=0)
    if width > MAX_OPEN_STAGES:
        raise NotExactError(
            f"the workflow graph keeps the outputs of {width} stages pending at once in "
            f"topological order; the exact method handles at most {MAX_OPEN_STAGES}"
        )

    return _Plan(
        order=order,
        open_after=tuple(open_after),
        latest_needed=tuple(first_reach_end <= t for t in range(len(order))),
        latency_strict=tuple(last_source <= t for t in range(len(order))),
        track_latency="latency_s" in objectives,
        track_cost=track_cost,
        track_comm="comm_s" in objectives,
        track_upload="upload_bytes" in objectives,
        track_download="download_bytes" in objectives,
        terms=terms,
        margins=_margins(problem, terms, total_bytes),
        tail_s=tail_s,
        unplaced_sources_s=unplaced_sources_s,
    )


def _checked_terms(problem: CompiledProblem, device: int) -> PerRunCostTerms:
    """Return a priced device's cost terms after checking them on its own costs.

    The check builds random usages, with durations made of the device's stage times
    and of whole milliseconds and tenths of a second, and requires the terms to give
    the provider's per-run cost within 1e-12 relative, and durations to cost no less
    when they grow.
    """
    priced = next(p for p in problem.priced if p.index == device)
    where = f"pricing provider {priced.provider_name!r} of device {priced.device_id!r}"
    method = getattr(priced.provider, "per_run_cost_terms", None)
    terms = method() if callable(method) else None
    if terms is None:
        raise NotExactError(
            f"{where} does not state its cost per run as a sum over invocations "
            "(per_run_cost_terms), so the exact method cannot price partial assignments"
        )

    rng = np.random.default_rng(20_240_601 + device)
    n_columns = max(problem.n_stages, 1)
    stage_s = problem.stage_time_s[:, device]
    stage_s = stage_s[np.isfinite(stage_s)]
    if len(stage_s) == 0:
        stage_s = np.array([1.0])
    subsets = rng.random((_CHECK_ROWS, n_columns, len(stage_s))) < 0.3
    candidates = np.stack(
        [
            (subsets * stage_s).sum(axis=2),
            rng.uniform(0.0, 2.0 * stage_s.max() + 1.0, (_CHECK_ROWS, n_columns)),
            rng.integers(0, 3000, (_CHECK_ROWS, n_columns)) / 1000.0,
            rng.integers(0, 30, (_CHECK_ROWS, n_columns)) / 10.0,
            np.zeros((_CHECK_ROWS, n_columns)),
        ]
    )
    kind = rng.integers(0, len(candidates), (_CHECK_ROWS, n_columns))
    durations = np.take_along_axis(candidates, kind[None], axis=0)[0]
    invocations = rng.integers(0, n_columns + 1, _CHECK_ROWS)
    used = np.arange(n_columns)[None, :] < invocations[:, None]
    invocation_s = np.where(used, durations, 0.0)
    max_bytes = max(int(problem.edge_bytes.sum()), 10**10)
    bytes_in = rng.integers(0, max_bytes, _CHECK_ROWS, dtype=np.int64)
    bytes_out = rng.integers(0, max_bytes, _CHECK_ROWS, dtype=np.int64)
    usage = Usage(
        compute_s=invocation_s.sum(axis=1),
        invocations=invocations.astype(np.int64),
        invocation_s=invocation_s,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
    )

    lines = priced.provider.cost_lines_usd(usage)
    expected = np.zeros(_CHECK_ROWS)
    for values in lines.values():
        expected += np.asarray(values, dtype=np.float64)
    per_invocation = np.asarray(terms.invocation_usd(durations.ravel()), dtype=np.float64)
    per_invocation = per_invocation.reshape(durations.shape)
    actual = (
        np.where(used, per_invocation, 0.0).sum(axis=1)
        + terms.usd_per_invocation * invocations
        + terms.usd_per_byte_in * bytes_in
        + terms.usd_per_byte_out * bytes_out
    )
    wrong = np.abs(actual - expected) > 1e-12 * np.maximum(np.abs(actual), np.abs(expected))
    if wrong.any() or not np.isfinite(actual).all():
        row = int(np.flatnonzero(wrong | ~np.isfinite(actual))[0])
        raise NotExactError(
            f"{where} states per-run cost terms that give {actual[row]!r} USD for a usage "
            f"its cost_lines_usd prices at {expected[row]!r} USD"
        )

    grid = np.sort(candidates.ravel())
    grid_usd = np.asarray(terms.invocation_usd(grid), dtype=np.float64)
    if not (np.isfinite(grid_usd).all() and (grid_usd >= 0).all()):
        raise NotExactError(f"{where} states an invocation cost that is negative or not finite")
    if (np.diff(grid_usd) < 0).any():
        raise NotExactError(f"{where} states an invocation cost that falls when the duration grows")
    return terms


def _margins(
    problem: CompiledProblem, terms: dict[int, PerRunCostTerms], total_bytes: int
) -> dict[str, float]:
    """Return each objective's pruning margin from a cheap upper bound over the space."""
    longest_stage_s = np.where(np.isfinite(problem.stage_time_s), problem.stage_time_s, 0.0)
    all_stages_s = float(longest_stage_s.max(axis=1, initial=0.0).sum())
    all_edges_s = float(problem.edge_transfer_s.max(axis=(1, 2), initial=0.0).sum())

    # A run has at most one invocation per stage, none longer than all stages together.
    cost_bound_usd = 0.0
    for device_terms in terms.values():
        longest_usd = float(np.asarray(device_terms.invocation_usd(np.array([all_stages_s])))[0])
        cost_bound_usd += problem.n_stages * (longest_usd + device_terms.usd_per_invocation)
        cost_bound_usd += total_bytes * (
            device_terms.usd_per_byte_in + device_terms.usd_per_byte_out
        )

    bounds = {
        "latency_s": all_stages_s + all_edges_s,
        "cost_usd": cost_bound_usd,
        "comm_s": all_edges_s,
        "upload_bytes": float(total_bytes),
        "download_bytes": float(total_bytes),
    }
    return {name: MARGIN_FACTOR * RELATIVE_TOLERANCE * bound for name, bound in bounds.items()}


def _incumbents(problem: CompiledProblem, plan: _Plan) -> np.ndarray:
    """Return the objective values of good assignments, found by a capped programme.

    The programme keeps at most a few labels per state (those best in a set of weighted
    sums of their lower bounds), so it is fast but not exact. Its assignments are
    evaluated by the engine and serve the exact programme as bounds.
    """
    labels, steps = _run(problem, plan, labels_per_state=HEURISTIC_LABELS_PER_STATE)
    placements = _placements(problem, plan, steps, len(labels.count))
    evaluation = evaluate_placements(problem, placements)
    values = objective_matrix(problem, evaluation)
    keep, _ = pareto_front(values, np.arange(len(values), dtype=np.int64))
    return values[keep]


def _run(
    problem: CompiledProblem,
    plan: _Plan,
    *,
    incumbents: np.ndarray | None = None,
    labels_per_state: int | None = None,
) -> tuple[_Labels, list[_Labels]]:
    """Place every stage and return the final labels and the labels of every step.

    `incumbents` are objective vectors of assignments, shape (m, n_objectives): a label
    whose lower bounds one of them dominates by the margin is dropped. With
    `labels_per_state` the programme keeps at most about that many labels per state
    and is no longer exact.
    """
    empty_int = np.zeros((1, 0), dtype=np.int64)
    empty_float = np.zeros((1, 0))
    labels = _Labels(
        device=empty_int,
        group=empty_int,
        finish_s=empty_float,
        group_s=empty_float,
        latest_s=np.zeros(1),
        closed_usd=np.zeros(1),
        comm_s=np.zeros(1),
        upload_bytes=np.zeros(1, dtype=np.int64),
        download_bytes=np.zeros(1, dtype=np.int64),
        count=np.ones(1, dtype=np.int64),
        index=np.zeros(1, dtype=np.int64),
        parent=np.full(1, -1, dtype=np.int64),
        choice=np.full(1, -1, dtype=np.int64),
    )
    weights = _digit_weights(problem)
    priced_mask = np.zeros(problem.n_devices, dtype=bool)
    usd_per_byte_in = np.zeros(problem.n_devices)
    usd_per_byte_out = np.zeros(problem.n_devices)
    for p in problem.priced:
        priced_mask[p.index] = True
    for device, device_terms in plan.terms.items():
        usd_per_byte_in[device] = device_terms.usd_per_byte_in
        usd_per_byte_out[device] = device_terms.usd_per_byte_out
    context = _StepContext(problem, plan, weights, priced_mask, usd_per_byte_in, usd_per_byte_out)

    steps = []
    previous_open: tuple[int, ...] = ()
    for t, stage in enumerate(plan.order):
        labels = _extend(context, labels, t, stage, previous_open)
        labels = _prune(context, labels, t, incumbents, labels_per_state)
        steps.append(labels)
        previous_open = plan.open_after[t]
    return labels, steps


@dataclass(frozen=True)
class _StepContext:
    problem: CompiledProblem
    plan: _Plan
    weights: np.ndarray
    priced_mask: np.ndarray
    usd_per_byte_in: np.ndarray
    usd_per_byte_out: np.ndarray


def _digit_weights(problem: CompiledProblem) -> np.ndarray:
    """Return the place value of each stage's digit in the assignment number."""
    weights = np.ones(problem.n_stages, dtype=np.int64)
    for s in range(problem.n_stages - 2, -1, -1):
        weights[s] = weights[s + 1] * int(problem.radices[s + 1])
    return weights


def _extend(
    context: _StepContext, labels: _Labels, t: int, stage: int, previous_open: tuple[int, ...]
) -> _Labels:
    """Place `stage` on each of its allowed devices, for every label."""
    problem, plan = context.problem, context.plan
    allowed = problem.allowed[stage]
    n_old, n_choices = len(labels.count), len(allowed)
    rows = np.repeat(np.arange(n_old), n_choices)
    device = np.tile(allowed, n_old)
    digit_value = np.arange(n_choices, dtype=np.int64) * context.weights[stage]
    slot_of = {s: j for j, s in enumerate(previous_open)}
    old_device = labels.device[rows]
    stage_s = problem.stage_time_s[stage, device]

    # Edges into the stage, in the engine's order, so that finish times are the engine's.
    start_s = np.zeros(len(rows))
    comm_s = labels.comm_s[rows]
    upload = labels.upload_bytes[rows]
    download = labels.download_bytes[rows]
    closed_usd = labels.closed_usd[rows]
    for e in problem.incoming[stage].tolist():
        j = slot_of[int(problem.edge_source[e])]
        source_device = old_device[:, j]
        transfer_s = problem.edge_transfer_s[e][source_device, device]
        np.maximum(start_s, labels.finish_s[rows, j] + transfer_s, out=start_s)
        comm_s = comm_s + transfer_s
        size = int(problem.edge_bytes[e])
        across = source_device != device
        upload = upload + np.where(across & context.priced_mask[device], size, 0)
        download = download + np.where(across & context.priced_mask[source_device], size, 0)
        if plan.track_cost:
            byte_usd = size * context.usd_per_byte_in[device]
            byte_usd = byte_usd + size * context.usd_per_byte_out[source_device]
            closed_usd = closed_usd + np.where(across, byte_usd, 0.0)
    finish_s = start_s + stage_s

    new_open = plan.open_after[t]
    n_new = len(rows)
    new_device = np.empty((n_new, len(new_open)), dtype=np.int64)
    new_finish = np.empty((n_new, len(new_open)))
    for i, s in enumerate(new_open):
        if s == stage:
            new_device[:, i] = device
            new_finish[:, i] = finish_s
        else:
            new_device[:, i] = old_device[:, slot_of[s]]
            new_finish[:, i] = labels.finish_s[rows, slot_of[s]]

    if plan.track_cost:
        new_group, new_group_s, closed_usd = _regroup(
            context, labels, rows, device, stage_s, stage, previous_open, new_open, closed_usd
        )
    else:
        new_group = np.full((n_new, len(new_open)), -1, dtype=np.int64)
        new_group_s = np.zeros((n_new, len(new_open)))

    return _Labels(
        device=new_device,
        group=new_group,
        finish_s=new_finish,
        group_s=new_group_s,
        latest_s=np.maximum(labels.latest_s[rows], finish_s),
        closed_usd=closed_usd,
        comm_s=comm_s,
        upload_bytes=upload,
        download_bytes=download,
        count=labels.count[rows],
        index=labels.index[rows] + np.tile(digit_value, n_old),
        parent=rows,
        choice=device,
    )


def _regroup(
    context: _StepContext,
    labels: _Labels,
    rows: np.ndarray,
    device: np.ndarray,
    stage_s: np.ndarray,
    stage: int,
    previous_open: tuple[int, ...],
    new_open: tuple[int, ...],
    closed_usd: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join the stage to its predecessors' groups on its device and close finished groups.

    Groups are named by tokens: the smallest old open slot of an old group, or
    ``len(previous_open)`` for the group of the new stage. A group closes when none of
    its stages is open any more; its invocation cost is then added to `closed_usd`.
    """
    problem = context.problem
    n_old_open = len(previous_open)
    new_token = n_old_open
    old_device = labels.device[rows]
    old_group = labels.group[rows]
    old_group_s = labels.group_s[rows]
    priced = context.priced_mask[device]
    slot_of = {s: j for j, s in enumerate(previous_open)}

    # Old groups that the stage joins: those of its predecessors on the same priced device.
    joined = np.zeros((len(rows), n_old_open), dtype=bool)
    for e in problem.incoming[stage].tolist():
        j = slot_of[int(problem.edge_source[e])]
        same = priced & (old_device[:, j] == device)
        for r in range(n_old_open):
            joined[:, r] |= same & (old_group[:, j] == r)
    group_s = np.where(priced, stage_s, 0.0)
    for r in range(n_old_open):
        group_s = group_s + np.where(joined[:, r], old_group_s[:, r], 0.0)

    token = np.full((len(rows), len(new_open)), -1, dtype=np.int64)
    for i, s in enumerate(new_open):
        if s == stage:
            token[:, i] = np.where(priced, new_token, -1)
            continue
        old = old_group[:, slot_of[s]]
        is_joined = np.zeros(len(rows), dtype=bool)
        for r in range(n_old_open):
            is_joined |= joined[:, r] & (old == r)
        token[:, i] = np.where(is_joined, new_token, old)

    # Close the groups that no open stage belongs to any more.
    for r in range(n_old_open + 1):
        still_open = (token == r).any(axis=1)
        if r == new_token:
            closing = priced & ~still_open
            closing_device, closing_s = device, group_s
        else:
            is_root = old_group[:, r] == r
            closing = is_root & ~joined[:, r] & ~still_open
            closing_device, closing_s = old_device[:, r], old_group_s[:, r]
        if closing.any():
            closed_usd = closed_usd + _invocation_usd(context, closing, closing_device, closing_s)

    # Rename each group by its smallest new open slot.
    new_group = np.full(token.shape, -1, dtype=np.int64)
    new_group_s = np.zeros(token.shape)
    for i in range(len(new_open)):
        for first in range(i + 1):
            match = (token[:, i] >= 0) & (token[:, first] == token[:, i]) & (new_group[:, i] < 0)
            new_group[:, i] = np.where(match, first, new_group[:, i])
        is_root = new_group[:, i] == i
        if not is_root.any():
            continue
        root_token = token[:, i]
        duration = np.where(root_token == new_token, group_s, 0.0)
        for r in range(n_old_open):
            duration = np.where(root_token == r, old_group_s[:, r], duration)
        new_group_s[:, i] = np.where(is_root, duration, 0.0)
    return new_group, new_group_s, closed_usd


def _invocation_usd(
    context: _StepContext, closing: np.ndarray, device: np.ndarray, duration_s: np.ndarray
) -> np.ndarray:
    """Return the cost of the invocations that close, 0 in the rows where none closes."""
    cost = np.zeros(len(closing))
    for priced_device, terms in context.plan.terms.items():
        rows = closing & (device == priced_device)
        if rows.any():
            usd = np.asarray(terms.invocation_usd(duration_s[rows]), dtype=np.float64)
            cost[rows] = usd + terms.usd_per_invocation
    return cost


def _lower_bounds(context: _StepContext, labels: _Labels, t: int) -> np.ndarray:
    """Return a lower bound of every objective over each label's completions, (n, k).

    Latency cannot end before an open stage's finish plus its tail, nor before the
    latest finish so far or the paths from unplaced sources. Cost is at least the closed
    cost plus, on each device with open groups, one invocation as long as the longest
    of them (the terms are nondecreasing). Transfer time and byte counts only grow.
    """
    plan = context.plan
    bounds = []
    for name in context.problem.objectives:
        if name == "latency_s":
            bound = np.maximum(labels.latest_s, plan.unplaced_sources_s[t])
            for i, stage in enumerate(plan.open_after[t]):
                bound = np.maximum(bound, labels.finish_s[:, i] + plan.tail_s[stage])
        elif name == "cost_usd":
            # Open groups on one device may still merge into one invocation, so only the
            # longest open group of each device counts.
            bound = labels.closed_usd
            for device in plan.terms:
                is_open = (labels.group >= 0) & (labels.device == device)
                if not is_open.any():
                    continue
                longest_s = np.where(is_open, labels.group_s, 0.0).max(axis=1)
                has_open = is_open.any(axis=1)
                bound = bound + _invocation_usd(
                    context, has_open, np.full(len(has_open), device), longest_s
                )
        elif name == "comm_s":
            bound = labels.comm_s
        elif name == "upload_bytes":
            bound = labels.upload_bytes.astype(np.float64)
        else:
            bound = labels.download_bytes.astype(np.float64)
        bounds.append(bound)
    return np.column_stack(bounds)


def _beaten_by_incumbents(
    lower: np.ndarray, incumbents: np.ndarray, margins: np.ndarray
) -> np.ndarray:
    """Return True for the labels whose lower bounds an incumbent dominates by the margin."""
    beaten = np.zeros(len(lower), dtype=bool)
    block = max(1, 2**20 // max(1, incumbents.size))
    for begin in range(0, len(lower), block):
        rows = lower[begin : begin + block, None, :]
        at_least = (incumbents[None, :, :] <= rows).all(axis=2)
        better = (incumbents[None, :, :] < rows - margins).any(axis=2)
        beaten[begin : begin + block] = (at_least & better).any(axis=1)
    return beaten


def _prune(
    context: _StepContext,
    labels: _Labels,
    t: int,
    incumbents: np.ndarray | None,
    labels_per_state: int | None,
) -> _Labels:
    """Merge equal labels of a state and drop the dominated ones.

    The latency block of columns (latest finish and open finish times) makes a label
    better only when every column of it is better by the margin, and only when no
    unplaced stage is a source: then every later finish time, and the latency, is a
    max-plus function of the open finish times without constant terms, so it keeps the
    advantage. Latest finish is tracked only when a placed stage may finish after every
    open stage. Open group durations take part as "at least as good" only, because an
    invocation's cost need not grow when its duration does.
    """
    plan = context.plan
    objective_margins = np.array([plan.margins[name] for name in context.problem.objectives])
    if incumbents is not None and len(incumbents):
        lower = _lower_bounds(context, labels, t)
        labels = labels.take(~_beaten_by_incumbents(lower, incumbents, objective_margins))

    columns: list[np.ndarray] = []
    margins: list[float] = []
    blocks: list[tuple[int, int]] = []

    def add_block(block: list[np.ndarray], margin: float, strict: bool) -> None:
        begin = len(columns)
        columns.extend(block)
        margins.extend([margin] * len(block))
        if strict and block:
            blocks.append((begin, len(columns)))

    if plan.track_latency:
        latency = [labels.finish_s[:, i] for i in range(labels.finish_s.shape[1])]
        if plan.latest_needed[t]:
            latency.insert(0, labels.latest_s)
        add_block(latency, plan.margins["latency_s"], plan.latency_strict[t])
    if plan.track_cost:
        add_block([labels.closed_usd], plan.margins["cost_usd"], True)
    if plan.track_comm:
        add_block([labels.comm_s], plan.margins["comm_s"], True)
    if plan.track_upload:
        add_block([labels.upload_bytes.astype(np.float64)], plan.margins["upload_bytes"], True)
    if plan.track_download:
        add_block([labels.download_bytes.astype(np.float64)], plan.margins["download_bytes"], True)
    if plan.track_cost:
        durations = [labels.group_s[:, i] for i in range(labels.group_s.shape[1])]
        add_block(durations, 0.0, False)

    keys = [labels.device[:, i] for i in range(labels.device.shape[1])]
    keys += [labels.group[:, i] for i in range(labels.group.shape[1])]

    # Sort by state, then by value (lexicographically), then by assignment number: a
    # label's dominators come before it within its state, and among equal labels the
    # first has the smallest number.
    order = np.lexsort([labels.index, *reversed(columns), *reversed(keys)])
    state_and_values = [*keys, *columns]
    n = len(order)
    new_run = np.ones(n, dtype=bool)
    new_state = np.ones(n, dtype=bool)
    if n > 1:
        differs = np.zeros(n - 1, dtype=bool)
        for key in keys:
            differs |= key[order[1:]] != key[order[:-1]]
        new_state[1:] = differs
        for column in state_and_values[len(keys) :]:
            differs |= column[order[1:]] != column[order[:-1]]
        new_run[1:] = differs
    first = np.flatnonzero(new_run)
    counts = np.add.reduceat(labels.count[order], first) if n else labels.count[:0]
    rows = order[first]
    state_start = np.append(np.flatnonzero(new_state[first]), len(first))

    values = (
        np.column_stack([column[rows] for column in columns])
        if columns
        else np.zeros((len(rows), 0))
    )
    keep = _undominated(
        np.ascontiguousarray(values, dtype=np.float64),
        state_start.astype(np.int64),
        np.array(margins, dtype=np.float64),
        np.array([b[0] for b in blocks], dtype=np.int64),
        np.array([b[1] for b in blocks], dtype=np.int64),
    )
    survivors = labels.take(rows[keep])
    survivors.count = counts[keep]
    if labels_per_state is not None and t < len(plan.order) - 1:
        state = np.searchsorted(state_start, np.arange(len(rows)), side="right")[keep] - 1
        survivors = _best_per_state(
            survivors,
            state,
            _lower_bounds(context, survivors, t),
            objective_margins,
            labels_per_state,
        )
    return survivors


def _best_per_state(
    labels: _Labels, state: np.ndarray, lower: np.ndarray, margins: np.ndarray, size: int
) -> _Labels:
    """Keep, in each state, the labels best in `size` weighted sums of the lower bounds.

    Also keep `size` labels evenly spaced in each state's lexicographic order, which
    reaches the unsupported parts of the front that weighted sums miss.
    """
    starts = np.flatnonzero(np.concatenate([[True], state[1:] != state[:-1]]))
    sizes = np.diff(np.append(starts, len(state)))
    rank = np.arange(len(state)) - np.repeat(starts, sizes)
    last = np.repeat(sizes - 1, sizes)
    step = np.maximum(last, 1) / max(size - 1, 1)
    keep = np.round(np.round(rank / step) * step) == rank

    scale = np.where(margins > 0, margins, 1.0)
    normalised = lower / scale
    rng = np.random.default_rng(len(labels.count))
    k = lower.shape[1]
    weights = np.vstack([np.eye(k), rng.dirichlet(np.ones(k), max(0, size - k))])
    for weight in weights:
        score = normalised @ weight
        order = np.lexsort((score, state))
        first = np.ones(len(order), dtype=bool)
        first[1:] = state[order[1:]] != state[order[:-1]]
        keep[order[first]] = True
    return labels.take(keep)


@compiled
def _undominated(
    values: np.ndarray,
    state_start: np.ndarray,
    margins: np.ndarray,
    block_begin: np.ndarray,
    block_end: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Mark the rows that no earlier row of their state dominates.

    Rows are sorted by state and then lexicographically by value, so every dominator
    of a row comes before it. Row j dominates row i when ``values[j] <= values[i]`` in
    every column and, in every column of some block, ``values[j] < values[i] - margin``.
    Dominance is transitive, so comparing with the kept rows alone is enough.
    """
    n, k = values.shape
    keep = np.ones(n, dtype=np.bool_)
    kept = np.empty(n, dtype=np.int64)
    for state in range(len(state_start) - 1):
        n_kept = 0
        for i in range(state_start[state], state_start[state + 1]):
            dominated = False
            for p in range(n_kept):
                j = kept[p]
                at_least = True
                for c in range(k):
                    if values[j, c] > values[i, c]:
                        at_least = False
                        break
                if not at_least:
                    continue
                for b in range(len(block_begin)):
                    better = True
                    for c in range(block_begin[b], block_end[b]):
                        if not values[j, c] < values[i, c] - margins[c]:
                            better = False
                            break
                    if better:
                        dominated = True
                        break
                if dominated:
                    break
            if dominated:
                keep[i] = False
            else:
                kept[n_kept] = i
                n_kept += 1
    return keep


def _placements(
    problem: CompiledProblem, plan: _Plan, steps: list[_Labels], n_final: int
) -> np.ndarray:
    """Follow the parent rows back from the final labels to their placements."""
    placements = np.empty((n_final, problem.n_stages), dtype=np.int16)
    rows = np.arange(n_final)
    for t in range(len(plan.order) - 1, -1, -1):
        placements[:, plan.order[t]] = steps[t].choice[rows]
        rows = steps[t].parent[rows]
    return placements


METHODS = ("auto", "exhaustive", "exact")
"""Values of the sweep's `method` option."""

AUTO_EXACT_FROM = 1 << 24
"""Space size from which `auto` uses the exact method, when it is exact for the problem.

Below it, enumeration takes seconds and also gives every pattern for the chart.
"""


def choose_method(problem: CompiledProblem, requested: str) -> tuple[str, str]:
    """Return the method a sweep uses ("exhaustive" or "exact") and why, in a sentence.

    Raises
    ------
    InputError
        When `requested` is not one of `METHODS`, or is "exact" for a problem where the
        exact method is not exact (the message gives the reason).
    """
    if requested not in METHODS:
        raise InputError(
            f"is not a method; choose one of {', '.join(METHODS)}",
            file="command line",
            field="--method",
            value=requested,
            has_value=True,
        )
    if requested == "exhaustive":
        return "exhaustive", "the exhaustive method was requested"
    reason = exactness(problem)
    if requested == "exact":
        if reason is not None:
            raise InputError(
                f"cannot be used for {problem.workflow_name} on {problem.system_name}: "
                f"{reason}; use --method exhaustive",
                file="command line",
                field="--method",
                value=requested,
                has_value=True,
            )
        return "exact", "the exact method was requested"
    if problem.space_size < AUTO_EXACT_FROM:
        return "exhaustive", f"the space is smaller than {AUTO_EXACT_FROM:,} assignments"
    if reason is not None:
        return "exhaustive", f"the exact method does not apply: {reason}"
    return "exact", f"the space holds {AUTO_EXACT_FROM:,} assignments or more"


EXACT_SAMPLE = 100_000
"""Assignments drawn for the chart and patterns.parquet when the exact method is used.

The chart bins anything past a few thousand points, and evaluating a long workflow's
assignments one by one costs about 15 us each, so a larger sample only adds time.
"""


def sample_assignments(problem: CompiledProblem, n: int, *, seed: int = 0) -> Evaluation:
    """Evaluate `n` assignments drawn uniformly at random (all of them when fewer).

    The exact method evaluates no pattern, so the chart's background and
    patterns.parquet come from this sample. The draw depends on `seed` alone, so a
    rerun gives the same sample.
    """
    size = problem.space_size
    if size <= n:
        indices = np.arange(size, dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        indices = np.unique(rng.integers(0, size, size=n, dtype=np.int64))
    return evaluate_placements(problem, decode_placements(problem, indices), indices)
