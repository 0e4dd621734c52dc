"""Device memory limits: which assignments fit, and which limits can bind at all.

A stage's ``memory_mb`` is the memory it needs while it runs. A device's ``memory_mb``
is what the flow may use there. Every stage placed on a device is resident at once, as
in a stream of frames where each stage works on its own frame. An assignment therefore
fits a device when the needs of the stages placed there add up to no more than the
device's limit. An assignment that exceeds the limit of any device is *infeasible*: the sweep
neither estimates it into the front nor writes it to patterns.parquet, and counts it.

A sum within a relative 1e-9 of the limit fits, so that the order in which the needs are
added does not decide whether an assignment fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from allocation.errors import InputError
from allocation.model import System, Workflow

__all__ = [
    "MEMORY_TOLERANCE",
    "binding_limits",
    "check_forced_placements",
    "exceeds_limit",
    "left_out_sentence",
    "memory_excess",
    "no_feasible_assignment_error",
    "some_assignment_fits",
]

MEMORY_TOLERANCE = 1e-9
"""Relative amount by which the stages of a device may exceed its limit and still fit."""


def exceeds_limit(load_mb: float | np.ndarray, limit_mb: float) -> bool | np.ndarray:
    """Tell whether a device's load exceeds its limit, under `MEMORY_TOLERANCE`."""
    return load_mb > limit_mb * (1.0 + MEMORY_TOLERANCE)


def binding_limits(
    stage_memory_mb: np.ndarray, device_memory_mb: np.ndarray, allowed: Sequence[np.ndarray]
) -> tuple[int, ...]:
    """Return the devices whose memory limit some assignment exceeds.

    Placing every stage that may run on a device there is an assignment, so a limit
    binds exactly when the needs of those stages add up to more than the limit.

    Parameters
    ----------
    stage_memory_mb : ndarray, shape (n_stages,)
    device_memory_mb : ndarray, shape (n_devices,)
        Limits, ``inf`` where a device has none.
    allowed : sequence of ndarray
        Per stage, the indices of the devices it may run on.
    """
    all_stages_mb = np.zeros(len(device_memory_mb))
    for s, devices in enumerate(allowed):
        all_stages_mb[devices] += stage_memory_mb[s]
    return tuple(
        d
        for d in range(len(device_memory_mb))
        if np.isfinite(device_memory_mb[d]) and exceeds_limit(all_stages_mb[d], device_memory_mb[d])
    )


def some_assignment_fits(
    stage_memory_mb: np.ndarray,
    device_memory_mb: np.ndarray,
    allowed: Sequence[np.ndarray],
    *,
    max_steps: int = 1_000_000,
) -> bool | None:
    """Search for one assignment that fits every device's memory limit.

    Parameters
    ----------
    stage_memory_mb : ndarray, shape (n_stages,)
    device_memory_mb : ndarray, shape (n_devices,)
        Limits, ``inf`` where a device has none.
    allowed : sequence of ndarray
        Per stage, the indices of the devices it may run on.
    max_steps : int
        Maximum number of stage placements to try before giving up.

    Returns
    -------
    bool or None
        True when an assignment fits, False when none does, None when the search gave
        up after `max_steps` placements without knowing.

    Notes
    -----
    A depth-first search places the stages largest need first, so that an overfull
    device is found near the root, and drops every branch whose partial placement
    already exceeds a limit. When the limits leave room, the first branch usually fits,
    after ``n_stages`` steps. Proving that none fits can take as many steps as there
    are assignments, so `max_steps` bounds the search.
    """
    needs = [float(v) for v in stage_memory_mb]
    limits = [float(v) for v in device_memory_mb]
    order = sorted(range(len(needs)), key=lambda s: -needs[s])
    choices = [[int(d) for d in allowed[s]] for s in order]
    load_mb = [0.0] * len(limits)
    # An explicit stack, not recursion: a workflow may have 10,000 stages.
    # next_choice[k] is the index in choices[k] to try next; placed[k] the device used.
    next_choice = [0] * len(order)
    placed = [-1] * len(order)
    k = 0
    steps = 0
    while k < len(order):
        if placed[k] >= 0:
            load_mb[placed[k]] -= needs[order[k]]
            placed[k] = -1
        if next_choice[k] == len(choices[k]):
            # Every device of stage k failed: step back to the stage before.
            next_choice[k] = 0
            k -= 1
            if k < 0:
                return False
            continue
        d = choices[k][next_choice[k]]
        next_choice[k] += 1
        steps += 1
        if steps > max_steps:
            return None
        if exceeds_limit(load_mb[d] + needs[order[k]], limits[d]):
            continue
        load_mb[d] += needs[order[k]]
        placed[k] = d
        k += 1
    return True


def memory_excess(
    stage_memory_mb: np.ndarray,
    device_memory_mb: np.ndarray,
    devices: Sequence[int],
    placements: np.ndarray,
) -> np.ndarray:
    """Tell, per assignment and per device of `devices`, whether its limit is exceeded.

    Parameters
    ----------
    placements : ndarray of int, shape (n, n_stages)
        Device index of every stage.

    Returns
    -------
    ndarray of bool, shape (n, len(devices))
    """
    excess = np.zeros((placements.shape[0], len(devices)), dtype=bool)
    for k, d in enumerate(devices):
        load_mb = np.where(placements == d, stage_memory_mb, 0.0).sum(axis=1)
        excess[:, k] = exceeds_limit(load_mb, float(device_memory_mb[d]))
    return excess


def check_forced_placements(
    workflow: Workflow,
    system: System,
    allowed: Sequence[np.ndarray],
    *,
    workflow_file: str,
    system_file: str,
) -> None:
    """Reject limits that every assignment exceeds for a reason visible in the files.

    Raises
    ------
    InputError
        When a stage needs more memory than every device it may run on offers (for a
        pinned stage, its pin), or when the stages that may run on one device only
        need more than that device's limit together.
    """
    limits = [device.memory_mb for device in system.devices]

    # A stage that fits none of its devices.
    for s, stage in enumerate(workflow.stages):
        offered = [limits[d] for d in allowed[s]]
        if any(limit is None or not exceeds_limit(stage.memory_mb, limit) for limit in offered):
            continue
        names = ", ".join(
            f"{system.devices[d].id!r} ({limits[d]:g} MB)" for d in allowed[s].tolist()
        )
        where = "the device it is pinned to" if len(allowed[s]) == 1 else "every device it may use"
        raise InputError(
            f"stage {stage.id!r} needs {stage.memory_mb:g} MB, more than {where} offers: "
            f"{names}; lower the stage's memory_mb, raise the devices' memory_mb in "
            f"{system_file}, or let the stage run on another device",
            file=workflow_file,
            field=f"stages[{s}].memory_mb",
            value=stage.memory_mb,
            has_value=True,
        )

    # Stages that may run on one device only, which exceed its limit together.
    for d, device in enumerate(system.devices):
        limit = limits[d]
        if limit is None:
            continue
        forced = [
            stage
            for s, stage in enumerate(workflow.stages)
            if len(allowed[s]) == 1 and int(allowed[s][0]) == d
        ]
        need_mb = sum(stage.memory_mb for stage in forced)
        if exceeds_limit(need_mb, limit):
            names = ", ".join(f"{stage.id!r} ({stage.memory_mb:g} MB)" for stage in forced)
            raise InputError(
                f"the stages that may run only on device {device.id!r} need {need_mb:g} MB "
                f"together ({names}), more than its limit; raise the limit, or lower the "
                f"stages' memory_mb or let them run elsewhere in {workflow_file}",
                file=system_file,
                field=f"devices[{d}].memory_mb",
                value=limit,
                has_value=True,
            )


def no_feasible_assignment_error(
    workflow: Workflow,
    system: System,
    allowed: Sequence[np.ndarray],
    over_limit_count: np.ndarray | None,
    space_size: int,
    *,
    system_file: str,
) -> InputError:
    """Build the error of a sweep in which every assignment exceeds a memory limit.

    Parameters
    ----------
    over_limit_count : ndarray of int64, shape (n_devices,), or None
        Number of assignments that exceed each device's limit, when they were counted.

    Returns
    -------
    InputError
        Names the device exceeded in the most assignments (the tightest limit) and the
        stage with the largest need among those that may run there. Without counts, the
        device is the one whose limit the needs of its possible stages exceed the most.
    """
    if over_limit_count is not None:
        d = int(np.argmax(over_limit_count))
        exceeded = f", exceeded by {int(over_limit_count[d]):,} assignments"
    else:
        needs = np.array([stage.memory_mb for stage in workflow.stages])
        ratio = [
            needs[[s for s in range(len(needs)) if d in allowed[s]]].sum() / device.memory_mb
            if device.memory_mb is not None
            else 0.0
            for d, device in enumerate(system.devices)
        ]
        d = int(np.argmax(ratio))
        exceeded = ""
    device = system.devices[d]
    candidates = [stage for s, stage in enumerate(workflow.stages) if d in allowed[s]]
    largest = max(candidates, key=lambda stage: stage.memory_mb)
    return InputError(
        f"every one of the {space_size:,} assignments exceeds a device's memory limit; "
        f"the tightest is device {device.id!r} ({device.memory_mb:g} MB){exceeded}, where "
        f"stage {largest.id!r} alone needs {largest.memory_mb:g} MB; raise the limit, lower "
        "the stages' memory_mb or let them run on more devices",
        file=system_file,
        field=f"devices[{d}].memory_mb",
        value=device.memory_mb,
        has_value=True,
    )


def left_out_sentence(
    infeasible_count: int, space_size: int, over_limit: Sequence[tuple[str, float, int]]
) -> str:
    """Say how many assignments exceed a memory limit and which limits bind, in a sentence.

    Parameters
    ----------
    infeasible_count, space_size : int
    over_limit : sequence of (str, float, int)
        Per device whose limit binds: its id, its limit in MB and the number of
        assignments that exceed it.

    Returns
    -------
    str
        Plain text, empty when no assignment exceeds a limit.
    """
    if infeasible_count == 0:
        return ""
    parts = [
        f"{device_id} ({limit_mb:g} MB) in {count:,}"
        for device_id, limit_mb, count in over_limit
        if count > 0
    ]
    sentence = (
        f"{infeasible_count:,} of {space_size:,} assignments exceed a device's memory limit "
        "and are left out"
    )
    if parts:
        sentence += "; the limit is exceeded on " + ", ".join(parts)
    return sentence + "."
