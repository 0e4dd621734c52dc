"""Exact Pareto filter with a relative tolerance and an explicit duplicate rule.

Conventions: every objective is minimised. Two values x and y are equal when
``|x - y| <= 1e-9 * max(|x|, |y|)``. p dominates q when p is at least as good (smaller
or equal) in every objective and better (smaller and not equal) in one. Points
whose objective vectors are equal in every objective are *equivalent*: the front keeps
one representative, the one first in enumeration order, and counts the others.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RELATIVE_TOLERANCE", "pareto_front"]

RELATIVE_TOLERANCE = 1e-9

_BLOCK_ROWS = 2048


def pareto_front(
    values: np.ndarray,
    order: np.ndarray,
    counts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the non-dominated rows of `values` and merge equivalent ones.

    Parameters
    ----------
    values : ndarray, shape (n, k)
        Objective values, finite and not negative.
    order : ndarray of int64, shape (n,)
        Enumeration order of each row; the smallest wins among equivalent rows.
    counts : ndarray of int64, shape (n,), optional
        How many assignments each row already stands for (1 when omitted).

    Returns
    -------
    keep : ndarray of intp, shape (m,)
        Rows of the representatives, sorted by the objectives (first objective first).
    keep_counts : ndarray of int64, shape (m,)
        Number of assignments each representative stands for: the sum of the counts
        of the equivalent non-dominated rows.

    Notes
    -----
    With two objectives the filter sorts once and sweeps: O(n log n). The tolerance is
    turned into thresholds: for non-negative x and y, "x is at least as good as y"
    is true exactly when ``x <= y / (1 - 1e-9)``, and "x is better than y" when
    ``x < y * (1 - 1e-9)``. With more objectives rows are compared block by block with
    the front found so far, which is fast while the front is small. The inputs are not
    modified.
    """
    values = np.asarray(values, dtype=np.float64)
    n, k = values.shape
    order = np.asarray(order, dtype=np.int64)
    counts = np.ones(n, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    if n == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
    if not np.isfinite(values).all():
        raise ValueError("objective values must be finite")
    if (values < 0).any():
        raise ValueError("objective values must not be negative")

    if k == 1:
        nondominated = _nondominated_1d(values[:, 0])
    elif k == 2:
        nondominated = _nondominated_2d(values)
    else:
        nondominated = _nondominated_kd(values)
    return _merge_equivalent(values, order, counts, nondominated)


def _upper(x: np.ndarray) -> np.ndarray:
    # Largest value still "at least as good as" x.
    return x / (1.0 - RELATIVE_TOLERANCE)


def _lower(x: np.ndarray) -> np.ndarray:
    # Values below this are "better than" x.
    return x * (1.0 - RELATIVE_TOLERANCE)


def _nondominated_1d(f: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~(f.min() < _lower(f)))


def _nondominated_2d(values: np.ndarray) -> np.ndarray:
    f0 = values[:, 0]
    f1 = values[:, 1]
    sort = np.lexsort((f1, f0))
    f0_sorted = f0[sort]
    # prefix_min[i] is the smallest f1 among the first i rows in f0 order.
    prefix_min = np.empty(len(f0) + 1)
    prefix_min[0] = np.inf
    np.minimum.accumulate(f1[sort], out=prefix_min[1:])

    # Rows with f0 better than q's (case A) or at least as good (case B).
    better0 = np.searchsorted(f0_sorted, _lower(f0), side="left")
    at_least0 = np.searchsorted(f0_sorted, _upper(f0), side="right")
    dominated = (prefix_min[better0] <= _upper(f1)) | (prefix_min[at_least0] < _lower(f1))
    return np.flatnonzero(~dominated)


def _dominates_any(front: np.ndarray, block: np.ndarray) -> np.ndarray:
    """For each row of `block`, whether some row of `front` dominates it."""
    if len(front) == 0:
        return np.zeros(len(block), dtype=bool)
    p = front[:, None, :]
    q = block[None, :, :]
    at_least = (p <= _upper(q)).all(axis=2)
    better = (p < _lower(q)).any(axis=2)
    return np.asarray((at_least & better).any(axis=0))


def _nondominated_kd(values: np.ndarray) -> np.ndarray:
    sort = np.lexsort(values.T[::-1])
    front_rows = np.empty(0, dtype=np.intp)
    for begin in range(0, len(sort), _BLOCK_ROWS):
        rows = sort[begin : begin + _BLOCK_ROWS]
        rows = rows[~_dominates_any(values[front_rows], values[rows])]
        if len(rows) == 0:
            continue
        candidates = np.concatenate([front_rows, rows])
        # Within the block and the front so far, drop what the union dominates; a later
        # row can dominate an earlier one only within the tolerance band, so this check
        # also repairs the front.
        survivors = ~_dominates_any(values[candidates], values[candidates])
        front_rows = candidates[survivors]
    return np.sort(front_rows)


def _merge_equivalent(
    values: np.ndarray, order: np.ndarray, counts: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    front = values[rows]
    sort = np.lexsort(front.T[::-1])
    rows = rows[sort]
    front = front[sort]
    m = len(rows)

    # Equivalent rows lie within the tolerance band of each other in the first
    # objective, so compare each row with the rows after it while they are in that band
    # (usually none or one), and join equal pairs with a union-find.
    parent = np.arange(m)
    offset = 1
    while offset < m:
        in_band = front[offset:, 0] <= _upper(front[:-offset, 0])
        if not in_band.any():
            break
        a, b = front[:-offset], front[offset:]
        scale = np.maximum(np.abs(a), np.abs(b))
        same = in_band & (np.abs(b - a) <= RELATIVE_TOLERANCE * scale).all(axis=1)
        for i in np.flatnonzero(same).tolist():
            _union(parent, i, i + offset)
        offset += 1
    roots = np.array([_find(parent, i) for i in range(m)], dtype=np.intp)
    _, group = np.unique(roots, return_inverse=True)

    n_groups = int(group.max()) + 1
    group_counts = np.zeros(n_groups, dtype=np.int64)
    np.add.at(group_counts, group, counts[rows])
    # Representative: the smallest enumeration order within each group.
    by_order = np.lexsort((order[rows], group))
    first = np.flatnonzero(np.concatenate([[True], group[by_order][1:] != group[by_order][:-1]]))
    representatives = rows[by_order[first]]
    return representatives, group_counts


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = int(parent[i])
    return i


def _union(parent: np.ndarray, i: int, j: int) -> None:
    root_i, root_j = _find(parent, i), _find(parent, j)
    if root_i != root_j:
        parent[max(root_i, root_j)] = min(root_i, root_j)
