"""The assignment space as a mixed-radix integer range, and its chunks.

Assignment number i lists, for every stage in file order, a digit in 0..radix-1 that
picks one of the stage's allowed devices (in system order). The last stage is the
fastest-changing digit, as in nested loops over the stages, so enumeration order is the
order of `itertools.product` over the stages' allowed devices. Pinned stages have radix 1.
"""

from __future__ import annotations

import numpy as np

from allocation.compile import CompiledProblem
from allocation.errors import InputError

__all__ = [
    "MAX_EXHAUSTIVE_SPACE",
    "decode_placements",
    "encode_placement",
    "plan_chunks",
]

MAX_EXHAUSTIVE_SPACE = 2**62
"""Largest space that indices in int64 can enumerate."""


def decode_placements(problem: CompiledProblem, indices: np.ndarray) -> np.ndarray:
    """Turn assignment numbers into device indices.

    Parameters
    ----------
    indices : ndarray of int64, shape (n,)

    Returns
    -------
    ndarray of int16, shape (n, n_stages)
        The device index of every stage.
    """
    remaining = np.array(indices, dtype=np.int64, copy=True)
    placements = np.empty((len(remaining), problem.n_stages), dtype=np.int16)
    for s in range(problem.n_stages - 1, -1, -1):
        radix = int(problem.radices[s])
        if radix == 1:
            placements[:, s] = problem.allowed[s][0]
            continue
        remaining, digit = np.divmod(remaining, radix)
        placements[:, s] = problem.allowed[s][digit]
    return placements


def encode_placement(problem: CompiledProblem, devices: list[int]) -> int:
    """Return the assignment number of one placement (a device index per stage).

    Raises
    ------
    ValueError
        When a stage is placed on a device it may not run on.
    """
    index = 0
    for s, device in enumerate(devices):
        positions = np.flatnonzero(problem.allowed[s] == device)
        if len(positions) == 0:
            raise ValueError(
                f"stage {problem.stage_ids[s]!r} may not run on device "
                f"{problem.device_ids[device]!r}"
            )
        index = index * int(problem.radices[s]) + int(positions[0])
    return index


def plan_chunks(space_size: int, *, chunk_size: int) -> list[tuple[int, int]]:
    """Split ``range(space_size)`` into ``[start, stop)`` chunks of `chunk_size` or fewer.

    Raises
    ------
    InputError
        When the space is too large to enumerate.
    """
    if space_size > MAX_EXHAUSTIVE_SPACE:
        raise InputError(
            f"the assignment space has {space_size} assignments, more than can be "
            f"enumerated ({MAX_EXHAUSTIVE_SPACE}); pin stages or restrict allowed devices"
        )
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return [
        (start, min(start + chunk_size, space_size)) for start in range(0, space_size, chunk_size)
    ]
