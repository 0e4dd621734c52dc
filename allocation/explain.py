"""Explain the candidates: where the time and the money go, and which one to pick.

Every function here works on a compiled problem and on placements given as the device
index of every stage, shape ``(n_stages,)``. The numbers are the engine's own.
`critical_path` repeats the longest-path arithmetic of `allocation.estimate`, and the
cost lines are the lines that the pricing providers return for the same usage. So the
parts of a latency or a cost add up to the metric that the sweep reports.

Recommendation rules
--------------------
`recommend` picks one candidate from a table of candidates (the front), by the first
of these rules that applies. Values are compared with the relative tolerance of the
Pareto front, 1e-9: x is within a limit L when ``x <= L`` or
``|x - L| <= 1e-9 * max(|x|, |L|)``, and two values closer than that are equal.

1. **limits** -- at least one limit is set (``max_latency_s``, ``max_cost_usd``,
   ``max_monthly_cost_usd`` or ``min_throughput_fps`` under ``requirements:`` in the
   system file). A candidate meets ``min_throughput_fps`` when its ``throughput_fps`` is
   at or above it, and the other limits when its value is at or below them. The candidate
   recommended is the one with the smallest ``minimise`` metric (default ``cost_usd``)
   among the candidates within every limit. Equal values go to the lower latency, then
   to the earlier row (label order in a front table). When no candidate is within every
   limit, none is recommended, and the shortfalls say which limit fails and by how much:
   for a limit that no candidate meets, the best candidate on its metric; when every
   limit is met by some candidate but not together, for each limit the best candidate
   among those within the other limits.
2. **knee** -- no limit is set, ``minimise`` is not written in the requirements, the
   objectives are exactly two, ``latency_s`` and a cost (``cost_usd`` or
   ``monthly_cost_usd``), and there are at least three candidates. The candidates are
   taken in latency order. For each candidate with a neighbour on both sides, r_f is
   the extra cost per second saved by moving to its faster neighbour and r_s the extra
   cost per second saved by moving to it from its slower neighbour. The knee is the
   candidate with the largest r_f / r_s, where the next step towards speed costs the
   most compared with the step that reached it. Equal ratios go to the faster
   candidate. Points where either rate is not positive are skipped (they do not occur
   on a front), and so are points where r_f / r_s is not above 1: they are no bend,
   because the next second saved costs no more than the last. When no point is left,
   the next rule applies.
3. **minimise** -- otherwise, the candidate with the smallest ``minimise`` metric,
   with the same tie rule as the first.

Critical path tie rule
----------------------
`critical_path` returns one longest path. It ends at the stage with the largest
finish time, the last in topological order among equal ones, so that a trailing stage
of zero time stays on the path. Going backwards, it enters each stage through the first
incoming edge (in workflow file order) whose source finish time plus transfer time
equals the stage's start time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from allocation.compile import CompiledProblem, PricedDevice
from allocation.estimate import evaluate_placements, stage_times_of, transfer_times_of, usage_of
from allocation.model import Requirements
from allocation.pareto import RELATIVE_TOLERANCE
from allocation.pricing import check_cost_array

__all__ = [
    "LIMIT_METRICS",
    "CostItem",
    "CostLine",
    "LatencyItem",
    "MonthlyCost",
    "MonthlyItem",
    "PairExplanation",
    "Recommendation",
    "Totals",
    "breakdown_tables",
    "cost_lines",
    "critical_path",
    "explain_pair",
    "latency_parts",
    "meets_limit",
    "monthly_costs",
    "neighbour_pairs",
    "placements_of",
    "recommend",
]

TRANSFER_PART = "transfer"
"""Name of the latency part spent moving data between devices."""

LIMIT_METRICS = {
    "max_latency_s": "latency_s",
    "max_cost_usd": "cost_usd",
    "max_monthly_cost_usd": "monthly_cost_usd",
    "min_throughput_fps": "throughput_fps",
}
"""Metric that each limit of `Requirements` bounds."""
_LOWER_LIMITS = ("min_throughput_fps",)
"""Limits that a candidate meets by being at or above them; the others by being at or below."""
_COST_METRICS = ("cost_usd", "monthly_cost_usd")
_BEST = {
    "latency_s": "the fastest candidate",
    "cost_usd": "the cheapest candidate",
    "monthly_cost_usd": "the candidate with the lowest monthly cost",
    "comm_s": "the candidate with the least transfer time",
    "upload_bytes": "the candidate that uploads the fewest bytes",
    "download_bytes": "the candidate that downloads the fewest bytes",
    "period_s": "the candidate with the shortest period between frames",
    "throughput_fps": "the candidate with the highest throughput",
}
_LIMIT_NAMES = {
    "max_latency_s": "the latency limit",
    "max_cost_usd": "the cost limit",
    "max_monthly_cost_usd": "the monthly cost limit",
    "min_throughput_fps": "the minimum throughput",
}
_SETTING_UNITS = {
    "max_latency_s": "s",
    "max_cost_usd": "USD",
    "max_monthly_cost_usd": "USD",
    "min_throughput_fps": "frames/s",
}
_HOW_TO_SET_LIMITS = (
    "To choose by limits, set them under requirements: in the system file, or with "
    "--max-latency-s on the command line."
)


# ---------------------------------------------------------------------------
# Latency along the critical path


def critical_path(problem: CompiledProblem, placement: np.ndarray) -> tuple[list[int], list[int]]:
    """Find one longest path through the workflow graph of a placement.

    Parameters
    ----------
    problem : CompiledProblem
    placement : ndarray of int, shape (n_stages,)
        Device index of every stage.

    Returns
    -------
    stages : list of int
        Stage indices along the path, from its first stage to its last.
    edges : list of int
        Edge indices along the path; ``edges[k]`` joins ``stages[k]`` to
        ``stages[k + 1]``.

    Notes
    -----
    The stage times plus the transfer times of the path's edges, added in path order,
    give exactly the ``latency_s`` of `allocation.estimate.evaluate_placements`,
    because the finish times are computed with the same operations in the same order.
    The module docstring states the tie rule.
    """
    devices = _checked_placement(problem, placement)
    times, transfers = _times_of(problem, devices)
    finish = _finish_times(problem, times, transfers)

    # The last stage: largest finish time, latest in topological order among equal ones.
    latency_s = max(finish)
    last = next(int(s) for s in reversed(problem.topo_order) if finish[int(s)] == latency_s)

    # Walk back through the incoming edge that sets each stage's start time.
    stages = [last]
    edges: list[int] = []
    current = last
    while len(problem.incoming[current]):
        arrivals = [
            (int(e), finish[int(problem.edge_source[e])] + transfers[int(e)])
            for e in problem.incoming[current]
        ]
        start = max(arrival for _, arrival in arrivals)
        edge = next(e for e, arrival in arrivals if arrival == start)
        edges.append(edge)
        current = int(problem.edge_source[edge])
        stages.append(current)
    stages.reverse()
    edges.reverse()
    return stages, edges


def latency_parts(problem: CompiledProblem, placement: np.ndarray) -> dict[str, float]:
    """Split the latency of a placement along its critical path.

    Returns
    -------
    dict of str to float
        ``"compute on <device id>"`` for every device with a stage on the critical path
        (in system order), then ``"transfer"`` when the path crosses devices: seconds
        that add up to ``latency_s``.
    """
    devices = _checked_placement(problem, placement)
    times, transfers = _times_of(problem, devices)
    stages, edges = critical_path(problem, devices)

    compute: dict[int, list[float]] = {}
    for s in stages:
        compute.setdefault(int(devices[s]), []).append(times[s])
    parts = {
        f"compute on {problem.device_ids[d]}": math.fsum(compute[d])
        for d in range(problem.n_devices)
        if d in compute
    }
    crossing = [e for e in edges if _crosses(problem, devices, e)]
    if crossing:
        parts[TRANSFER_PART] = math.fsum(transfers[e] for e in crossing)
    return parts


# ---------------------------------------------------------------------------
# Cost lines


@dataclass(frozen=True)
class CostLine:
    """One billing line of one priced device, for one run."""

    device_id: str
    provider: str
    """Name of the pricing provider."""
    line: str
    """Name of the line as the provider gives it (compute, requests, egress, ...)."""
    usd: float


@dataclass(frozen=True)
class MonthlyCost:
    """The monthly bill of one priced device, with its provider's tiers and free tiers."""

    device_id: str
    provider: str
    usd: float


def cost_lines(problem: CompiledProblem, placement: np.ndarray) -> list[CostLine]:
    """Return the billing lines of one run, device by device in system order.

    The lines add up to ``cost_usd``. A system without priced devices has none.
    """
    devices = _checked_placement(problem, placement)
    return [
        CostLine(priced.device_id, priced.provider_name, line, float(values[0]))
        for priced, line, values in _cost_line_arrays(problem, devices[None, :])
    ]


def monthly_costs(problem: CompiledProblem, placement: np.ndarray) -> list[MonthlyCost] | None:
    """Return the monthly bill of every priced device, or None without runs_per_month.

    Providers price a month as a whole (tiers and free tiers apply to the month's
    totals), so the monthly cost has no lines. The devices add up to
    ``monthly_cost_usd``.
    """
    devices = _checked_placement(problem, placement)
    monthly = _monthly_arrays(problem, devices[None, :])
    if monthly is None:
        return None
    return [
        MonthlyCost(priced.device_id, priced.provider_name, float(values[0]))
        for priced, values in monthly
    ]


# ---------------------------------------------------------------------------
# Two placements side by side


@dataclass(frozen=True)
class Totals:
    """The metrics of one placement, as `allocation.estimate.evaluate_placements` gives them."""

    latency_s: float
    cost_usd: float
    monthly_cost_usd: float | None
    """None without runs_per_month."""
    comm_s: float
    upload_bytes: int
    download_bytes: int


@dataclass(frozen=True)
class LatencyItem:
    """The share of one stage or one edge in the latencies of placements A and B.

    An item contributes its time to a placement's latency when it lies on that
    placement's critical path, and nothing otherwise.

    Attributes
    ----------
    kind : {"stage", "transfer"}
        A stage, or the data passed along an edge.
    stage_id : str
        The stage; for a transfer, the stage the data comes from.
    target_id : str or None
        For a transfer, the stage the data goes to.
    device_a, device_b : str
        The stage's device; for a transfer, the device of its source stage.
    link_a, link_b : tuple of (str, str) or None
        For a transfer, the devices the data moves from and to; None when both stages
        share a device and nothing moves.
    change : {"added", "removed", "changed", "unchanged", "none"} or None
        For a transfer: it exists under B only, under A only, under both between other
        devices, under both between the same devices, or under neither.
    bytes : int or None
        For a transfer, the bytes passed along the edge.
    speed_ratio : float or None
        For a stage on different devices, its time under A divided by its time under B:
        above 1 when B's device runs it faster. None when the stage stays or takes no
        time under B.
    time_a_s, time_b_s : float
        The item's time under each placement, on the critical path or not.
    on_path_a, on_path_b : bool
        Whether the item lies on the placement's critical path.
    contribution_a_s, contribution_b_s : float
        The time the item adds to each latency: its time when on the path, else 0.
    delta_s : float
        ``contribution_b_s - contribution_a_s``.
    """

    kind: Literal["stage", "transfer"]
    stage_id: str
    target_id: str | None
    device_a: str
    device_b: str
    link_a: tuple[str, str] | None
    link_b: tuple[str, str] | None
    change: Literal["added", "removed", "changed", "unchanged", "none"] | None
    bytes: int | None
    speed_ratio: float | None
    time_a_s: float
    time_b_s: float
    on_path_a: bool
    on_path_b: bool
    contribution_a_s: float
    contribution_b_s: float
    delta_s: float

    @property
    def name(self) -> str:
        """The stage id, or ``"<source> -> <target>"`` for a transfer."""
        return self.stage_id if self.target_id is None else f"{self.stage_id} -> {self.target_id}"

    @property
    def moved(self) -> bool:
        """Whether a stage runs on different devices under A and B (False for transfers)."""
        return self.kind == "stage" and self.device_a != self.device_b


@dataclass(frozen=True)
class CostItem:
    """One billing line of one priced device under placements A and B, for one run."""

    device_id: str
    provider: str
    line: str
    usd_a: float
    usd_b: float
    delta_usd: float
    """``usd_b - usd_a``."""


@dataclass(frozen=True)
class MonthlyItem:
    """The monthly bill of one priced device under placements A and B."""

    device_id: str
    provider: str
    usd_a: float
    usd_b: float
    delta_usd: float
    """``usd_b - usd_a``."""


@dataclass(frozen=True)
class PairExplanation:
    """The differences between placement B and placement A, item by item.

    The deltas of all `latency_items` add up to ``totals_b.latency_s -
    totals_a.latency_s``, those of `cost_items` to the difference of ``cost_usd`` and
    those of `monthly_items` to the difference of ``monthly_cost_usd``, to rounding.

    Attributes
    ----------
    label_a, label_b : str
    devices_a, devices_b : tuple of str
        Device id of every stage, in workflow file order.
    path_a, path_b : tuple of str
        Stage ids along each critical path.
    totals_a, totals_b : Totals
    latency_items : tuple of LatencyItem
        Every stage and every edge, in topological order with each stage after its
        incoming edges; `latency_changes` keeps those whose contribution differs.
    cost_items : tuple of CostItem
        Every line of every priced device, in system order.
    monthly_items : tuple of MonthlyItem
        Every priced device; empty without runs_per_month.
    faster : str or None
        The label of the faster placement; None when the latencies are equal.
    usd_per_s_saved : float or None
        The cost of one run of the faster placement minus that of the slower one,
        divided by the seconds it saves. Negative when the faster one is also cheaper.
        None when the latencies are equal.
    monthly_usd_per_s_saved : float or None
        The same with the monthly costs; None also without runs_per_month.
    """

    label_a: str
    label_b: str
    devices_a: tuple[str, ...]
    devices_b: tuple[str, ...]
    path_a: tuple[str, ...]
    path_b: tuple[str, ...]
    totals_a: Totals
    totals_b: Totals
    latency_items: tuple[LatencyItem, ...]
    cost_items: tuple[CostItem, ...]
    monthly_items: tuple[MonthlyItem, ...]
    faster: str | None
    usd_per_s_saved: float | None
    monthly_usd_per_s_saved: float | None

    @property
    def latency_changes(self) -> tuple[LatencyItem, ...]:
        """The latency items whose contribution differs between A and B."""
        return tuple(item for item in self.latency_items if item.delta_s != 0.0)

    @property
    def cost_changes(self) -> tuple[CostItem, ...]:
        """The cost items whose amount differs between A and B."""
        return tuple(item for item in self.cost_items if item.delta_usd != 0.0)

    @property
    def moved_stages(self) -> tuple[str, ...]:
        """Ids of the stages that run on different devices under A and B."""
        return tuple(item.stage_id for item in self.latency_items if item.moved)


def explain_pair(
    problem: CompiledProblem,
    placement_a: np.ndarray,
    placement_b: np.ndarray,
    *,
    label_a: str,
    label_b: str,
) -> PairExplanation:
    """Explain how placement B differs from placement A in latency and cost.

    Parameters
    ----------
    problem : CompiledProblem
    placement_a, placement_b : ndarray of int, shape (n_stages,)
        Device index of every stage.
    label_a, label_b : str
        Names of the placements (candidate labels such as ``"A"``), kept for reports.

    Returns
    -------
    PairExplanation
    """
    devices_a = _checked_placement(problem, placement_a)
    devices_b = _checked_placement(problem, placement_b)
    both = np.stack([devices_a, devices_b])

    # Totals from the engine, so that they are the numbers of the sweep.
    metrics = evaluate_placements(problem, both).metrics
    totals_a, totals_b = (_totals(problem, metrics, row) for row in (0, 1))

    latency_items = _latency_items(problem, devices_a, devices_b)
    cost_items = tuple(
        CostItem(
            priced.device_id,
            priced.provider_name,
            line,
            float(values[0]),
            float(values[1]),
            float(values[1] - values[0]),
        )
        for priced, line, values in _cost_line_arrays(problem, both)
    )
    monthly = _monthly_arrays(problem, both) or []
    monthly_items = tuple(
        MonthlyItem(
            priced.device_id,
            priced.provider_name,
            float(values[0]),
            float(values[1]),
            float(values[1] - values[0]),
        )
        for priced, values in monthly
    )

    # Trade-off: extra cost of the faster placement per second it saves.
    faster = None
    usd_per_s_saved = monthly_usd_per_s_saved = None
    if not _equal(totals_a.latency_s, totals_b.latency_s):
        fast, slow = (
            (totals_a, totals_b)
            if totals_a.latency_s < totals_b.latency_s
            else (totals_b, totals_a)
        )
        faster = label_a if fast is totals_a else label_b
        saved_s = slow.latency_s - fast.latency_s
        usd_per_s_saved = (fast.cost_usd - slow.cost_usd) / saved_s
        if fast.monthly_cost_usd is not None and slow.monthly_cost_usd is not None:
            monthly_usd_per_s_saved = (fast.monthly_cost_usd - slow.monthly_cost_usd) / saved_s

    return PairExplanation(
        label_a=label_a,
        label_b=label_b,
        devices_a=tuple(problem.device_ids[d] for d in devices_a),
        devices_b=tuple(problem.device_ids[d] for d in devices_b),
        path_a=tuple(problem.stage_ids[s] for s in critical_path(problem, devices_a)[0]),
        path_b=tuple(problem.stage_ids[s] for s in critical_path(problem, devices_b)[0]),
        totals_a=totals_a,
        totals_b=totals_b,
        latency_items=latency_items,
        cost_items=cost_items,
        monthly_items=monthly_items,
        faster=faster,
        usd_per_s_saved=usd_per_s_saved,
        monthly_usd_per_s_saved=monthly_usd_per_s_saved,
    )


def neighbour_pairs(candidates: pd.DataFrame) -> list[tuple[str, str]]:
    """Return the labels of candidates next to each other in latency order.

    Parameters
    ----------
    candidates : DataFrame
        With columns ``label`` and ``latency_s``; a front table is already in latency
        order. Equal latencies keep the table's order.

    Returns
    -------
    list of (str, str)
        (faster, slower) for every two consecutive candidates: [("A", "B"), ("B", "C"), ...].
    """
    order = np.argsort(_float_column(candidates, "latency_s"), kind="stable")
    labels = [str(candidates["label"].iloc[i]) for i in order]
    return list(itertools.pairwise(labels))


def placements_of(problem: CompiledProblem, table: pd.DataFrame) -> np.ndarray:
    """Read the ``at_<stage id>`` columns of a table as device indices.

    Returns
    -------
    ndarray of int64, shape (n_rows, n_stages)

    Raises
    ------
    ValueError
        When a stage's column is missing or names a device the problem does not have.
    """
    device_index = {device_id: d for d, device_id in enumerate(problem.device_ids)}
    placements = np.empty((len(table), problem.n_stages), dtype=np.int64)
    for s, stage_id in enumerate(problem.stage_ids):
        column = f"at_{stage_id}"
        if column not in table.columns:
            raise ValueError(f"the table has no column {column!r} for stage {stage_id!r}")
        for row, device_id in enumerate(table[column]):
            if device_id not in device_index:
                raise ValueError(
                    f"column {column!r} names device {device_id!r}, which the system "
                    f"{problem.system_name!r} does not have"
                )
            placements[row, s] = device_index[device_id]
    return placements


def breakdown_tables(
    problem: CompiledProblem, candidates: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the latency and cost of every candidate split into parts, as long tables.

    Parameters
    ----------
    problem : CompiledProblem
    candidates : DataFrame
        With ``label`` and the ``at_<stage id>`` columns of a front table.

    Returns
    -------
    time : DataFrame
        Columns ``label``, ``part`` and ``time_s``: the `latency_parts` of every
        candidate, which add up to its latency. Every candidate has a row for each
        device in system order and for transfer, 0 where the part is absent.
    cost : DataFrame
        Columns ``label``, ``line`` (``"<device id>: <line>"``) and ``cost_usd``: every
        billing line of every candidate, zero ones included, which add up to its cost
        of one run. Empty for a system without priced devices.
    """
    placements = placements_of(problem, candidates)
    labels = [str(label) for label in candidates["label"]]

    time_labels: list[str] = []
    parts: list[str] = []
    times_s: list[float] = []
    # Every device in system order, then transfer, for every candidate (0 where the part
    # is absent): a chart that colours parts in order of first appearance then gives
    # each device the colour it has in the placement chart.
    part_names = [f"compute on {device_id}" for device_id in problem.device_ids]
    part_names.append(TRANSFER_PART)
    for label, placement in zip(labels, placements, strict=True):
        candidate_parts = latency_parts(problem, placement)
        for part in part_names:
            time_labels.append(label)
            parts.append(part)
            times_s.append(candidate_parts.get(part, 0.0))

    cost_labels: list[str] = []
    line_names: list[str] = []
    costs_usd: list[float] = []
    lines = _cost_line_arrays(problem, placements) if len(placements) else []
    for row, label in enumerate(labels):
        for priced, line, values in lines:
            cost_labels.append(label)
            line_names.append(f"{priced.device_id}: {line}")
            costs_usd.append(float(values[row]))

    time = pd.DataFrame(
        {
            "label": pd.array(time_labels, dtype="string"),
            "part": pd.array(parts, dtype="string"),
            "time_s": np.array(times_s, dtype=np.float64),
        }
    )
    cost = pd.DataFrame(
        {
            "label": pd.array(cost_labels, dtype="string"),
            "line": pd.array(line_names, dtype="string"),
            "cost_usd": np.array(costs_usd, dtype=np.float64),
        }
    )
    return time, cost


# ---------------------------------------------------------------------------
# Recommendation


@dataclass(frozen=True)
class Recommendation:
    """The candidate recommended by the rules of this module's docstring, and why.

    Attributes
    ----------
    label : str or None
        The recommended candidate; None when no candidate meets the limits.
    rule : {"limits", "knee", "minimise"}
        The rule that chose it.
    reason : str
        One or two plain-text sentences with numbers and units, not escaped.
    meets : dict of str to list of bool
        Per limit name (``max_latency_s``, ...), whether each candidate (row for row) is
        within it. Under ``"all"``, whether it is within every limit, which is True for
        every candidate when no limit is set.
    shortfalls : list of str
        When no candidate meets the limits, sentences saying which limit fails and by
        how much; empty otherwise.
    """

    label: str | None
    rule: Literal["limits", "knee", "minimise"]
    reason: str
    meets: dict[str, list[bool]] = field(default_factory=dict)
    shortfalls: list[str] = field(default_factory=list)


def recommend(
    candidates: pd.DataFrame, requirements: Requirements | None, objectives: Sequence[str]
) -> Recommendation:
    """Recommend one candidate, by the rules of this module's docstring.

    Parameters
    ----------
    candidates : DataFrame
        One row per candidate with ``label`` and the metric columns of a front table.
    requirements : Requirements or None
        The system's ``requirements``.
    objectives : sequence of str
        The objectives of the front.

    Returns
    -------
    Recommendation

    Raises
    ------
    ValueError
        When a column a rule needs is missing or, for a monthly limit or metric, null.
    """
    requirements = requirements if requirements is not None else Requirements()
    limits = requirements.limits
    n = len(candidates)
    labels = [str(label) for label in candidates["label"]]
    latency = _float_column(candidates, "latency_s")

    if n == 0:
        return Recommendation(
            label=None,
            rule="limits" if limits else "minimise",
            reason="There are no candidates to choose from.",
            meets={**{name: [] for name in limits}, "all": []},
        )

    # Rule 1: limits.
    if limits:
        meets = {
            name: [
                _meets(name, float(v), limit)
                for v in _float_column(candidates, LIMIT_METRICS[name])
            ]
            for name, limit in limits.items()
        }
        meets["all"] = [all(meets[name][i] for name in limits) for i in range(n)]
        rows = [i for i in range(n) if meets["all"][i]]
        if not rows:
            shortfalls = _shortfalls(candidates, labels, limits, meets)
            return Recommendation(
                label=None,
                rule="limits",
                reason="No candidate meets "
                + _joined([_limit_text(name, value) for name, value in limits.items()])
                + (" together" if len(limits) > 1 else "")
                + ", so none is recommended.",
                meets=meets,
                shortfalls=shortfalls,
            )
        metric = requirements.minimise
        best = _smallest(_float_column(candidates, metric, required=True), latency, rows)
        reason = (
            f"{labels[best]} is {_BEST[metric]} that meets "
            + _joined([_limit_text(name, value) for name, value in limits.items()])
            + f": it {_describe(candidates, best, metric, limits)}."
        )
        return Recommendation(labels[best], "limits", reason, meets, [])

    meets = {"all": [True] * n}

    # Rule 2: the knee of a latency-cost front.
    cost_metric = next((name for name in _COST_METRICS if name in objectives), None)
    if (
        "minimise" not in requirements.model_fields_set
        and len(objectives) == 2
        and "latency_s" in objectives
        and cost_metric is not None
        and n >= 3
    ):
        knee = _knee(candidates, labels, latency, cost_metric)
        if knee is not None:
            label, reason = knee
            return Recommendation(label, "knee", reason, meets, [])

    # Rule 3: the smallest `minimise` metric.
    metric = requirements.minimise
    best = _smallest(_float_column(candidates, metric, required=True), latency, list(range(n)))
    reason = (
        f"No limits are set, so {_BEST[metric]} is recommended: "
        f"{labels[best]} {_describe(candidates, best, metric, {})}. {_HOW_TO_SET_LIMITS}"
    )
    return Recommendation(labels[best], "minimise", reason, meets, [])


def _knee(
    candidates: pd.DataFrame, labels: list[str], latency: np.ndarray, cost_metric: str
) -> tuple[str, str] | None:
    """Return the knee's label and the reason, or None when no point qualifies."""
    cost = _float_column(candidates, cost_metric, required=True)
    order = [int(i) for i in np.argsort(latency, kind="stable")]
    best: tuple[float, int, float, float] | None = None  # (ratio, row, r_f, r_s)
    for k in range(1, len(order) - 1):
        faster, row, slower = order[k - 1], order[k], order[k + 1]
        gain_faster_s = latency[row] - latency[faster]
        gain_here_s = latency[slower] - latency[row]
        if gain_faster_s <= 0 or gain_here_s <= 0:
            continue
        rate_faster = (cost[faster] - cost[row]) / gain_faster_s
        rate_here = (cost[row] - cost[slower]) / gain_here_s
        if not (rate_faster > 0 and rate_here > 0):
            continue
        ratio = rate_faster / rate_here
        # A knee is a bend: past it, a second saved costs more than the one before.
        if not math.isfinite(ratio) or ratio <= 1 or _equal(ratio, 1.0):
            continue
        if best is None or (ratio > best[0] and not _equal(ratio, best[0])):
            best = (ratio, row, rate_faster, rate_here)
    if best is None:
        return None

    ratio, row, rate_faster, rate_here = best
    k = order.index(row)
    faster_label, slower_label = labels[order[k - 1]], labels[order[k + 1]]
    unit = "USD per run" if cost_metric == "cost_usd" else "USD per month"
    reason = (
        f"No limits are set, so the knee of the front is recommended: reaching {labels[row]} "
        f"from {slower_label} costs {_number(rate_here)} {unit} for each second saved, and going "
        f"on to {faster_label} would cost {_number(rate_faster)} {unit} for each second saved, "
        f"{_number(ratio)} times as much. {labels[row]} "
        f"{_describe(candidates, row, cost_metric, {})}."
    )
    return labels[row], reason


def _shortfalls(
    candidates: pd.DataFrame,
    labels: list[str],
    limits: dict[str, float],
    meets: dict[str, list[bool]],
) -> list[str]:
    """Say which limit fails and by how much, when no candidate meets them all."""
    n = len(labels)
    sentences = []

    # A limit that no candidate meets on its own: the best candidate on its metric.
    alone = [name for name in limits if not any(meets[name])]
    for name in alone:
        values = _float_column(candidates, LIMIT_METRICS[name], required=True)
        latency = _float_column(candidates, "latency_s")
        best = _smallest(_ranked(name, values), latency, list(range(n)))
        sentences.append(
            f"No candidate meets {_limit_setting(name, limits[name])}: "
            f"{_BEST[LIMIT_METRICS[name]]}, {labels[best]}, "
            f"{_value_verb(name, values[best], limits[name])}, "
            f"{_over(name, values[best], limits[name])}."
        )
    if alone:
        return sentences

    # Every limit is met by some candidate, but not together: for each limit, the best
    # candidate among those within the other limits.
    for name in limits:
        others = [other for other in limits if other != name]
        rows = [i for i in range(n) if all(meets[other][i] for other in others)]
        if not rows:
            continue
        values = _float_column(candidates, LIMIT_METRICS[name], required=True)
        best = _smallest(_ranked(name, values), _float_column(candidates, "latency_s"), rows)
        within = _joined([_limit_setting(other, limits[other]) for other in others])
        sentences.append(
            f"Among the candidates that meet {within}, {_BEST[LIMIT_METRICS[name]]}, "
            f"{labels[best]}, {_value_verb(name, values[best], limits[name])}, "
            f"{_over(name, values[best], limits[name])} {_limit_setting(name, limits[name])}."
        )
    if not sentences:
        sentences.append(
            "Each limit is met by some candidate, but no candidate meets two of them "
            f"together: {_joined([_limit_setting(other, v) for other, v in limits.items()])}."
        )
    return sentences


# ---------------------------------------------------------------------------
# Helpers


def _checked_placement(problem: CompiledProblem, placement: np.ndarray) -> np.ndarray:
    devices = np.asarray(placement)
    if devices.shape != (problem.n_stages,) or not np.issubdtype(devices.dtype, np.integer):
        raise ValueError(
            f"expected a placement of shape ({problem.n_stages},) holding device indices, "
            f"got shape {devices.shape} of {devices.dtype}"
        )
    for s, d in enumerate(devices.tolist()):
        if d not in problem.allowed[s]:
            raise ValueError(
                f"the placement puts stage {problem.stage_ids[s]!r} on device index {d}, "
                f"which is not one of its allowed devices {problem.allowed[s].tolist()}"
            )
    return devices.astype(np.int64)


def _times_of(problem: CompiledProblem, devices: np.ndarray) -> tuple[list[float], list[float]]:
    placements = devices[None, :]
    times = stage_times_of(problem, placements)[0].tolist()
    transfers = transfer_times_of(problem, placements)[0].tolist()
    return times, transfers


def _finish_times(
    problem: CompiledProblem, times: list[float], transfers: list[float]
) -> list[float]:
    # The same operations, in the same order, as evaluate_placements.
    finish = [0.0] * problem.n_stages
    for s in problem.topo_order.tolist():
        start = 0.0
        for e in problem.incoming[s].tolist():
            start = max(start, finish[int(problem.edge_source[e])] + transfers[e])
        finish[s] = start + times[s]
    return finish


def _crosses(problem: CompiledProblem, devices: np.ndarray, e: int) -> bool:
    return bool(devices[problem.edge_source[e]] != devices[problem.edge_target[e]])


def _latency_items(
    problem: CompiledProblem, devices_a: np.ndarray, devices_b: np.ndarray
) -> tuple[LatencyItem, ...]:
    times_a, transfers_a = _times_of(problem, devices_a)
    times_b, transfers_b = _times_of(problem, devices_b)
    stages_a, edges_a = (set(x) for x in critical_path(problem, devices_a))
    stages_b, edges_b = (set(x) for x in critical_path(problem, devices_b))
    ids = problem.device_ids

    items = []
    for s in problem.topo_order.tolist():
        for e in problem.incoming[s].tolist():
            u, v = int(problem.edge_source[e]), int(problem.edge_target[e])
            link_a = (
                (ids[devices_a[u]], ids[devices_a[v]]) if _crosses(problem, devices_a, e) else None
            )
            link_b = (
                (ids[devices_b[u]], ids[devices_b[v]]) if _crosses(problem, devices_b, e) else None
            )
            contribution_a = transfers_a[e] if e in edges_a else 0.0
            contribution_b = transfers_b[e] if e in edges_b else 0.0
            items.append(
                LatencyItem(
                    kind="transfer",
                    stage_id=problem.stage_ids[u],
                    target_id=problem.stage_ids[v],
                    device_a=ids[devices_a[u]],
                    device_b=ids[devices_b[u]],
                    link_a=link_a,
                    link_b=link_b,
                    change=_transfer_change(link_a, link_b),
                    bytes=int(problem.edge_bytes[e]),
                    speed_ratio=None,
                    time_a_s=transfers_a[e],
                    time_b_s=transfers_b[e],
                    on_path_a=e in edges_a,
                    on_path_b=e in edges_b,
                    contribution_a_s=contribution_a,
                    contribution_b_s=contribution_b,
                    delta_s=contribution_b - contribution_a,
                )
            )

        moved = devices_a[s] != devices_b[s]
        contribution_a = times_a[s] if s in stages_a else 0.0
        contribution_b = times_b[s] if s in stages_b else 0.0
        items.append(
            LatencyItem(
                kind="stage",
                stage_id=problem.stage_ids[s],
                target_id=None,
                device_a=ids[devices_a[s]],
                device_b=ids[devices_b[s]],
                link_a=None,
                link_b=None,
                change=None,
                bytes=None,
                speed_ratio=times_a[s] / times_b[s] if moved and times_b[s] > 0 else None,
                time_a_s=times_a[s],
                time_b_s=times_b[s],
                on_path_a=s in stages_a,
                on_path_b=s in stages_b,
                contribution_a_s=contribution_a,
                contribution_b_s=contribution_b,
                delta_s=contribution_b - contribution_a,
            )
        )
    return tuple(items)


def _transfer_change(
    link_a: tuple[str, str] | None, link_b: tuple[str, str] | None
) -> Literal["added", "removed", "changed", "unchanged", "none"]:
    if link_a is None and link_b is None:
        return "none"
    if link_a is None:
        return "added"
    if link_b is None:
        return "removed"
    return "unchanged" if link_a == link_b else "changed"


def _cost_line_arrays(
    problem: CompiledProblem, placements: np.ndarray
) -> list[tuple[PricedDevice, str, np.ndarray]]:
    """Return every priced device's billing lines for n placements, shape (n,) each."""
    times = stage_times_of(problem, placements)
    lines = []
    for priced in problem.priced:
        usage = usage_of(problem, placements, times, priced.index)
        for line, values in priced.provider.cost_lines_usd(usage).items():
            checked = check_cost_array(
                values,
                len(placements),
                provider=priced.provider_name,
                device_id=priced.device_id,
                what=f"cost line {line!r}",
            )
            lines.append((priced, line, checked))
    return lines


def _monthly_arrays(
    problem: CompiledProblem, placements: np.ndarray
) -> list[tuple[PricedDevice, np.ndarray]] | None:
    """Return every priced device's monthly bill for n placements, or None."""
    if problem.runs_per_month is None:
        return None
    times = stage_times_of(problem, placements)
    bills = []
    for priced in problem.priced:
        usage = usage_of(problem, placements, times, priced.index)
        values = priced.provider.monthly_cost_usd(usage, problem.runs_per_month)
        checked = check_cost_array(
            values,
            len(placements),
            provider=priced.provider_name,
            device_id=priced.device_id,
            what="a monthly cost",
        )
        bills.append((priced, checked))
    return bills


def _totals(problem: CompiledProblem, metrics: dict[str, np.ndarray], row: int) -> Totals:
    return Totals(
        latency_s=float(metrics["latency_s"][row]),
        cost_usd=float(metrics["cost_usd"][row]),
        monthly_cost_usd=(
            None if problem.runs_per_month is None else float(metrics["monthly_cost_usd"][row])
        ),
        comm_s=float(metrics["comm_s"][row]),
        upload_bytes=int(metrics["upload_bytes"][row]),
        download_bytes=int(metrics["download_bytes"][row]),
    )


def _equal(x: float, y: float) -> bool:
    return abs(x - y) <= RELATIVE_TOLERANCE * max(abs(x), abs(y))


def _within(value: float, limit: float) -> bool:
    return value <= limit or _equal(value, limit)


def _meets(name: str, value: float, limit: float) -> bool:
    """Tell whether a value meets a limit: at or above a lower one, at or below the others."""
    if name in _LOWER_LIMITS:
        return value >= limit or _equal(value, limit)
    return _within(value, limit)


def meets_limit(name: str, values: np.ndarray, limit: float) -> np.ndarray:
    """Tell, value by value, whether `values` meet the limit `name` of `Requirements`.

    A value meets ``min_throughput_fps`` at or above it and the other limits at or below
    them, within the front's tolerance.
    """
    return np.array([_meets(name, float(value), limit) for value in values], dtype=bool)


def _ranked(name: str, values: np.ndarray) -> np.ndarray:
    """Return values whose smallest is the best against the limit `name`."""
    return -values if name in _LOWER_LIMITS else values


def _float_column(table: pd.DataFrame, name: str, *, required: bool = False) -> np.ndarray:
    if name not in table.columns:
        raise ValueError(f"the candidates table has no column {name!r}")
    values = pd.to_numeric(table[name]).to_numpy(dtype=np.float64, na_value=np.nan)
    if required and np.isnan(values).any():
        raise ValueError(
            f"column {name!r} of the candidates table is null; a monthly cost needs the "
            "system's runs_per_month"
        )
    return values


def _smallest(values: np.ndarray, latency: np.ndarray, rows: list[int]) -> int:
    """Return the row of the smallest value; equal values go to lower latency, then order."""
    low = min(values[i] for i in rows)
    tied = [i for i in rows if _equal(values[i], low)]
    fastest = min(latency[i] for i in tied)
    return next(i for i in tied if _equal(latency[i], fastest))


def _number(value: float, digits: int = 3) -> str:
    """Format a number with `digits` significant digits, without an exponent."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _quantity(metric: str, value: float, digits: int = 3) -> str:
    """Format a metric's value with its unit."""
    if metric.endswith("_bytes"):
        return f"{round(value):,} bytes"
    return f"{_number(value, digits)} {_unit(metric)}"


def _unit(metric: str) -> str:
    units = {
        "cost_usd": "USD per run",
        "monthly_cost_usd": "USD per month",
        "throughput_fps": "frames per second",
    }
    return units.get(metric, "s")


def _as_written(value: float) -> str:
    """Format a limit with every digit it was given: 4.08815, 1e-300."""
    return f"{value:.15g}"


def _digits_apart(value: float, limit: float) -> int:
    """Return the fewest significant digits (3 to 15) that print `value` unlike `limit`."""
    for digits in range(3, 16):
        if _number(value, digits) != _number(limit, digits):
            return digits
    return 15


def _limit_text(name: str, value: float) -> str:
    """Say a limit in words: "the latency limit of 2 s"."""
    return f"{_LIMIT_NAMES[name]} of {_as_written(value)} {_unit(LIMIT_METRICS[name])}"


def _limit_setting(name: str, value: float) -> str:
    """Say a limit as it is written: "max_latency_s = 2 s"."""
    unit = _SETTING_UNITS[name]
    return f"{name} = {_as_written(value)} {unit}"


def _value_verb(name: str, value: float, limit: float | None = None) -> str:
    metric = LIMIT_METRICS[name]
    verb = {"latency_s": "takes", "throughput_fps": "reaches"}.get(metric, "costs")
    digits = 3 if limit is None else _digits_apart(value, limit)
    return f"{verb} {_quantity(metric, value, digits)}"


def _over(name: str, value: float, limit: float) -> str:
    """Say how far a value is over a limit: "0.3 s (60 %) over", or under a lower one."""
    unit = _SETTING_UNITS[name]
    gap = limit - value if name in _LOWER_LIMITS else value - limit
    text = f"{_number(gap)} {unit}"
    if limit > 0:
        text += f" ({_number(gap / limit * 100)} %)"
    return text + (" under" if name in _LOWER_LIMITS else " over")


def _describe(candidates: pd.DataFrame, row: int, metric: str, limits: dict[str, float]) -> str:
    """Say what a candidate takes and costs: "takes 1.8 s at 0.000123 USD per run"."""
    latency = _float_column(candidates, "latency_s")[row]
    cost = _float_column(candidates, "cost_usd")[row]

    def digits(name: str, value: float) -> int:
        # Beside a limit, enough digits to tell the value from it.
        return _digits_apart(value, limits[name]) if name in limits else 3

    text = (
        f"takes {_quantity('latency_s', latency, digits('max_latency_s', latency))} at "
        f"{_quantity('cost_usd', cost, digits('max_cost_usd', cost))}"
    )
    if metric == "monthly_cost_usd" or "max_monthly_cost_usd" in limits:
        monthly = _float_column(candidates, "monthly_cost_usd", required=True)[row]
        monthly_digits = digits("max_monthly_cost_usd", monthly)
        text += f" ({_quantity('monthly_cost_usd', monthly, monthly_digits)})"
    if metric == "period_s" or "min_throughput_fps" in limits:
        period_s = _float_column(candidates, "period_s")[row]
        throughput = _float_column(candidates, "throughput_fps")[row]
        text += (
            f", one frame every {_quantity('period_s', period_s)} "
            f"({_quantity('throughput_fps', throughput, digits('min_throughput_fps', throughput))})"
        )
    if metric == "comm_s":
        text += f", with {_quantity('comm_s', _float_column(candidates, metric)[row])} of transfers"
    elif metric.endswith("_bytes"):
        moved = "uploaded" if metric == "upload_bytes" else "downloaded"
        text += f", with {_quantity(metric, _float_column(candidates, metric)[row])} {moved}"
    return text


def _joined(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
