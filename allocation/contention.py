"""Sharing of cores and links between work that may run at the same time.

A system's optional ``contention`` block (`allocation.model.Contention`) turns on two
sharing rules, described with their assumptions in docs/contention.md:

- CPU. Stage s on device d with c cores, k concurrent frames, has the demand
  ``k × Σ min(threads_t, c)`` over s and the stages on d that may run at the same time
  as s. Its time is multiplied by ``max(1, demand / c)``.
- Links. A cross-device edge e over link L takes ``fixed + k × 8 × Σ min(bytes_e,
  bytes_f) / (bandwidth_mbps × 10**6)`` seconds, the sum over e and the edges over L that
  may overlap with e.

Two stages may run at the same time when neither is reachable from the other. Edges
u -> v and x -> y may overlap unless v reaches x (v == x included) or y reaches u.

`plan_contention` runs at compile time. Where no two stages (or edges) may run at the
same time on a shared device (or link) under any allowed assignment, the factors do
not depend on the assignment and it folds them into the compiled time arrays. Otherwise
it returns a `ContentionPlan`, and `contended_stage_times` and
`contended_transfer_times` apply the rules to each assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from allocation.errors import InputError
from allocation.model import Contention

__all__ = [
    "MAX_CONTENTION_PAIRS",
    "ContentionPlan",
    "contended_stage_times",
    "contended_transfer_times",
    "plan_contention",
]

MAX_CONTENTION_PAIRS = 5_000_000
"""Largest number of (stage, stage) or (edge, edge) pairs the contention model tracks.

Each assignment costs time in proportion to the pairs, and the pairs are stored with
the compiled problem, so a workflow with more parallel work than this is rejected.
"""


@dataclass(frozen=True, eq=False)
class ContentionPlan:
    """Data that contended times need beyond the uncontended arrays of a compiled problem.

    A plan exists only when some contended time depends on the assignment. Shapes use
    S stages, D devices and E edges.
    """

    reason: str
    """Sentence fragment naming two stages or edges that may share a device or link."""
    concurrent_frames: int
    stage_partners: tuple[np.ndarray, ...] | None
    """Per stage, the stages that may run at the same time on a device they may share.

    None when CPU contention is off or already folded into ``stage_time_s``.
    """
    stage_cores_used: np.ndarray
    """(S, D) ``min(threads, cores)`` of each stage on each device."""
    device_cores: np.ndarray
    """(D,) cores the flow may use on each device."""
    edge_partners: tuple[np.ndarray, ...] | None
    """Per edge, the edges that may overlap with it on a link both may cross.

    None when link contention is off or already folded into ``edge_transfer_s``.
    """
    link_number: np.ndarray
    """(D, D) index of the link between two devices, -1 for none and on the diagonal."""
    link_fixed_s: np.ndarray
    """(D, D) ``(latency_ms + overhead_ms) / 1000`` of the link between two devices."""
    link_s_per_byte: np.ndarray
    """(D, D) ``8 / (bandwidth_mbps × 10**6)`` of the link between two devices."""

    def describe(self) -> dict[str, object]:
        """Return the frames and the pairs, for keys that identify a problem."""
        return {
            "concurrent_frames": self.concurrent_frames,
            "stage_pairs": None
            if self.stage_partners is None
            else [p.tolist() for p in self.stage_partners],
            "edge_pairs": None
            if self.edge_partners is None
            else [p.tolist() for p in self.edge_partners],
        }


def plan_contention(
    contention: Contention,
    *,
    stage_ids: Sequence[str],
    stage_threads: np.ndarray,
    stage_time_s: np.ndarray,
    allowed: Sequence[np.ndarray],
    device_ids: Sequence[str],
    device_cores: np.ndarray,
    edge_source: np.ndarray,
    edge_target: np.ndarray,
    edge_bytes: np.ndarray,
    edge_transfer_s: np.ndarray,
    topo_order: np.ndarray,
    link_number: np.ndarray,
    link_fixed_s: np.ndarray,
    link_s_per_byte: np.ndarray,
    max_time_s: float,
    system_file: str,
) -> tuple[np.ndarray, np.ndarray, ContentionPlan | None]:
    """Fold assignment-independent contention into the time arrays, or plan the rest.

    Parameters
    ----------
    stage_threads : ndarray, shape (S,)
        Threads of each stage.
    stage_time_s, edge_transfer_s : ndarray, shapes (S, D) and (E, D, D)
        Uncontended times, as `allocation.compile` builds them; not modified.
    link_number, link_fixed_s, link_s_per_byte : ndarray, shape (D, D)
        The links between devices (see `ContentionPlan`).
    max_time_s
        Largest folded time accepted.

    Returns
    -------
    stage_time_s, edge_transfer_s, plan
        The time arrays with every factor that does not depend on the assignment folded
        in, and a plan for the rest (None when nothing depends on the assignment).

    Raises
    ------
    InputError
        When a folded time exceeds `max_time_s`, or the workflow has more than
        `MAX_CONTENTION_PAIRS` pairs of stages or edges to track.
    """
    n_stages, n_devices = stage_time_s.shape
    frames = contention.concurrent_frames
    descendants, ancestors = _reachability(n_stages, edge_source, edge_target, topo_order)
    stage_cores_used = np.minimum(stage_threads[:, None].astype(np.float64), device_cores[None, :])

    reasons = []
    stage_partners = None
    if contention.cpu:
        stage_partners = _stage_partners(
            n_stages, n_devices, allowed, descendants, ancestors, system_file
        )
        pair = _first_pair(stage_partners)
        if pair is None:
            stage_partners = None
            stage_time_s = _fold_stage_times(
                stage_time_s, stage_cores_used, device_cores, frames, max_time_s, system_file
            )
        else:
            s, t = pair
            shared = sorted(set(allowed[s].tolist()) & set(allowed[t].tolist()))
            reasons.append(
                f"contention between stages that may run at the same time ({stage_ids[s]!r} "
                f"and {stage_ids[t]!r} may share device {device_ids[shared[0]]!r})"
            )

    edge_partners = None
    if contention.links:
        edge_partners = _edge_partners(
            allowed, edge_source, edge_target, link_number, descendants, ancestors, system_file
        )
        pair = _first_pair(edge_partners)
        if pair is None:
            edge_partners = None
            edge_transfer_s = _fold_transfer_times(
                edge_transfer_s,
                edge_bytes,
                link_fixed_s,
                link_s_per_byte,
                frames,
                max_time_s,
                system_file,
            )
        else:
            e, f = pair
            names = [f"{stage_ids[edge_source[i]]} -> {stage_ids[edge_target[i]]}" for i in (e, f)]
            reasons.append(
                f"contention between transfers that may run at the same time ({names[0]!r} "
                f"and {names[1]!r} may share a link)"
            )

    if not reasons:
        return stage_time_s, edge_transfer_s, None
    plan = ContentionPlan(
        reason="; ".join(reasons),
        concurrent_frames=frames,
        stage_partners=stage_partners,
        stage_cores_used=stage_cores_used,
        device_cores=np.asarray(device_cores, dtype=np.float64),
        edge_partners=edge_partners,
        link_number=link_number,
        link_fixed_s=link_fixed_s,
        link_s_per_byte=link_s_per_byte,
    )
    return stage_time_s, edge_transfer_s, plan


def contended_stage_times(
    plan: ContentionPlan | None, placements: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """Apply CPU contention to the stage times of n assignments.

    Parameters
    ----------
    placements : ndarray of int, shape (n, S)
        Device index of every stage.
    times : ndarray, shape (n, S)
        Uncontended time of every stage on its device.

    Returns
    -------
    ndarray, shape (n, S)
        `times` itself when the plan tracks no stage pairs, otherwise a new array.
    """
    if plan is None or plan.stage_partners is None:
        return times
    stages = np.arange(placements.shape[1])
    used = plan.stage_cores_used[stages[None, :], placements]
    demand = used.copy()
    for s, partners in enumerate(plan.stage_partners):
        if len(partners) == 0:
            continue
        same = placements[:, partners] == placements[:, s, None]
        demand[:, s] += np.where(same, used[:, partners], 0.0).sum(axis=1)
    cores = plan.device_cores[placements]
    return times * np.maximum(1.0, plan.concurrent_frames * demand / cores)


def contended_transfer_times(
    plan: ContentionPlan | None,
    placements: np.ndarray,
    edge_source: np.ndarray,
    edge_target: np.ndarray,
    edge_bytes: np.ndarray,
    transfer: np.ndarray,
) -> np.ndarray:
    """Apply link contention to the transfer times of n assignments.

    Parameters
    ----------
    placements : ndarray of int, shape (n, S)
        Device index of every stage.
    transfer : ndarray, shape (n, E)
        Uncontended time of every edge; 0 for an edge within one device.

    Returns
    -------
    ndarray, shape (n, E)
        `transfer` itself when the plan tracks no edge pairs, otherwise a new array.
    """
    if plan is None or plan.edge_partners is None:
        return transfer
    source = placements[:, edge_source]
    target = placements[:, edge_target]
    link = plan.link_number[source, target]
    size = edge_bytes.astype(np.float64)

    # Bytes each edge waits for: its own and, per overlapping edge on the same link,
    # the smaller of the two sizes (fair sharing of transfers that start together).
    shared = np.broadcast_to(size, link.shape).copy()
    for e, partners in enumerate(plan.edge_partners):
        if len(partners) == 0:
            continue
        same = link[:, partners] == link[:, e, None]
        shared[:, e] += np.where(same, np.minimum(size[partners], size[e]), 0.0).sum(axis=1)

    crossing = link >= 0
    fixed_s = np.where(crossing, plan.link_fixed_s[source, target], 0.0)
    s_per_byte = np.where(crossing, plan.link_s_per_byte[source, target], 0.0)
    return np.where(crossing, fixed_s + (plan.concurrent_frames * shared) * s_per_byte, 0.0)


def _reachability(
    n_stages: int, edge_source: np.ndarray, edge_target: np.ndarray, topo_order: np.ndarray
) -> tuple[list[int], list[int]]:
    """Return each stage's descendants and ancestors as bit sets, the stage included."""
    successors: list[list[int]] = [[] for _ in range(n_stages)]
    predecessors: list[list[int]] = [[] for _ in range(n_stages)]
    for u, v in zip(edge_source.tolist(), edge_target.tolist(), strict=True):
        successors[u].append(v)
        predecessors[v].append(u)
    order = topo_order.tolist()
    descendants = [1 << s for s in range(n_stages)]
    for s in reversed(order):
        for v in successors[s]:
            descendants[s] |= descendants[v]
    ancestors = [1 << s for s in range(n_stages)]
    for s in order:
        for u in predecessors[s]:
            ancestors[s] |= ancestors[u]
    return descendants, ancestors


def _members(bits: int, n: int) -> np.ndarray:
    """Return the indices of the set bits of `bits`, below `n`, ascending."""
    if bits == 0:
        return np.empty(0, dtype=np.int64)
    raw = np.frombuffer(bits.to_bytes((n + 7) // 8, "little"), dtype=np.uint8)
    return np.flatnonzero(np.unpackbits(raw, bitorder="little")[:n]).astype(np.int64)


def _stage_partners(
    n_stages: int,
    n_devices: int,
    allowed: Sequence[np.ndarray],
    descendants: list[int],
    ancestors: list[int],
    system_file: str,
) -> tuple[np.ndarray, ...]:
    on_device = [0] * n_devices
    for s, devices in enumerate(allowed):
        for d in devices.tolist():
            on_device[d] |= 1 << s
    everyone = (1 << n_stages) - 1

    partners = []
    total = 0
    for s in range(n_stages):
        may_share = 0
        for d in allowed[s].tolist():
            may_share |= on_device[d]
        concurrent = everyone & ~(descendants[s] | ancestors[s]) & may_share
        members = _members(concurrent, n_stages)
        total += len(members)
        _check_pairs(total, "stages", "cpu", system_file)
        partners.append(members)
    return tuple(partners)


def _edge_partners(
    allowed: Sequence[np.ndarray],
    edge_source: np.ndarray,
    edge_target: np.ndarray,
    link_number: np.ndarray,
    descendants: list[int],
    ancestors: list[int],
    system_file: str,
) -> tuple[np.ndarray, ...]:
    n_stages = len(allowed)
    n_edges = len(edge_source)

    # The links each edge may cross, as a bit set over link numbers.
    links_of = []
    for u, v in zip(edge_source.tolist(), edge_target.tolist(), strict=True):
        bits = 0
        for a in allowed[u].tolist():
            for b in allowed[v].tolist():
                if a != b:
                    bits |= 1 << int(link_number[a, b])
        links_of.append(bits)
    crossing = np.array([e for e in range(n_edges) if links_of[e]], dtype=np.int64)
    crossing_source = edge_source[crossing]
    crossing_target = edge_target[crossing]

    partners = [np.empty(0, dtype=np.int64) for _ in range(n_edges)]
    total = 0
    for e in crossing.tolist():
        u, v = int(edge_source[e]), int(edge_target[e])
        # f = x -> y does not overlap e = u -> v when v reaches x or y reaches u.
        v_reaches = np.zeros(n_stages, dtype=bool)
        v_reaches[_members(descendants[v], n_stages)] = True
        reaches_u = np.zeros(n_stages, dtype=bool)
        reaches_u[_members(ancestors[u], n_stages)] = True
        overlapping = ~(v_reaches[crossing_source] | reaches_u[crossing_target])
        overlapping &= crossing != e
        members = [f for f in crossing[overlapping].tolist() if links_of[f] & links_of[e]]
        total += len(members)
        _check_pairs(total, "edges", "links", system_file)
        partners[e] = np.array(members, dtype=np.int64)
    return tuple(partners)


def _check_pairs(total: int, kind: str, switch: str, system_file: str) -> None:
    if total > MAX_CONTENTION_PAIRS:
        raise InputError(
            f"the workflow has more than {MAX_CONTENTION_PAIRS:,} pairs of {kind} that may "
            f"run at the same time on a shared device or link, more than the contention "
            f"model tracks; set contention.{switch} to false, or restrict the stages with "
            "pin or allowed",
            file=system_file,
            field=f"contention.{switch}",
        )


def _first_pair(partners: tuple[np.ndarray, ...]) -> tuple[int, int] | None:
    for i, members in enumerate(partners):
        if len(members):
            return i, int(members[0])
    return None


def _fold_stage_times(
    stage_time_s: np.ndarray,
    stage_cores_used: np.ndarray,
    device_cores: np.ndarray,
    frames: int,
    max_time_s: float,
    system_file: str,
) -> np.ndarray:
    if frames == 1:
        return stage_time_s  # max(1, min(threads, c) / c) is 1
    folded = stage_time_s * np.maximum(1.0, frames * stage_cores_used / device_cores[None, :])
    _check_folded(folded, frames, max_time_s, system_file)
    return folded


def _fold_transfer_times(
    edge_transfer_s: np.ndarray,
    edge_bytes: np.ndarray,
    link_fixed_s: np.ndarray,
    link_s_per_byte: np.ndarray,
    frames: int,
    max_time_s: float,
    system_file: str,
) -> np.ndarray:
    if frames == 1:
        return edge_transfer_s
    folded = np.zeros_like(edge_transfer_s)
    used = edge_transfer_s != 0.0
    for e in range(len(edge_bytes)):
        times = link_fixed_s + (frames * float(edge_bytes[e])) * link_s_per_byte
        folded[e][used[e]] = times[used[e]]
    _check_folded(folded, frames, max_time_s, system_file)
    return folded


def _check_folded(times: np.ndarray, frames: int, max_time_s: float, system_file: str) -> None:
    if np.any(times > max_time_s):
        raise InputError(
            f"with {frames} concurrent frames a stage or transfer takes "
            f"{np.nanmax(times):.6g} s, more than the {max_time_s:.0e} s accepted; lower "
            "concurrent_frames or check the stage times and links",
            file=system_file,
            field="contention.concurrent_frames",
        )
