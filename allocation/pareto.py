"""Exact Pareto filter with a relative tolerance and an explicit duplicate rule.

Conventions: every objective is minimised. Two values x and y are equal when
``|x - y| <= 1e-9 * max(|x|, |y|)``. p dominates q when p is at least as good (smaller
or equal) in every objective and better (smaller and not equal) in one. Points
whose objective vectors are equal in every objective are *equivalent*: by default the
front keeps one representative, the one first in enumeration order, and counts the
others.

The loops are compiled with numba through `allocation.jit.compiled`, which caches them
on disk where a cache folder is writable. docs/benchmarks.md compares them with
moocore, paretoset and pymoo and with a NumPy version of the prefilter.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from allocation.jit import compiled

__all__ = ["RELATIVE_TOLERANCE", "dominated_by", "pareto_front"]

RELATIVE_TOLERANCE = 1e-9

_ONE_MINUS_TOLERANCE = 1.0 - RELATIVE_TOLERANCE

_BLOCK_ROWS = 2048

_MAX_COMPARED_CELLS = 1 << 22
"""Cells of the comparison arrays `dominated_by` builds at a time."""

_PREFILTER_MIN_ROWS = 4096
"""Below this many rows the exact filters alone are fast enough."""

_MAX_BINS = 1 << 16
"""Bins of the two-objective prefilter: their arrays (1 MB) stay in the L2 cache."""

_MAX_GRID_CELLS = 512
"""Cells per side of the three-objective prefilter's grid."""

_RADIX_SORT_MIN_ROWS = 1 << 15
"""From this many rows on, a radix sort of the bit patterns beats NumPy's argsort."""

_PIVOT_SAMPLE_ROWS = 4096
_MAX_PIVOTS = 16
_MAX_SURVIVING_SHARE = 0.5
"""The pivot prefilter runs only when the sample shows it drops at least half the rows."""


def pareto_front(
    values: np.ndarray,
    order: np.ndarray,
    counts: np.ndarray | None = None,
    *,
    duplicates: Literal["first", "all"] = "first",
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
    duplicates : {"first", "all"}, default "first"
        ``"first"`` keeps one representative per group of equivalent non-dominated
        rows: the row with the smallest `order`, with the group's counts summed.
        ``"all"`` keeps every non-dominated row with its own count.

    Returns
    -------
    keep : ndarray of intp, shape (m,)
        Rows of the representatives, sorted by the objectives (first objective first).
        With ``duplicates="all"``, rows equal in every objective follow `order`.
    keep_counts : ndarray of int64, shape (m,)
        Number of assignments each kept row stands for.

    Raises
    ------
    ValueError
        When a value is NaN, infinite or negative, or `duplicates` is not one of the
        two rules.

    Notes
    -----
    The tolerance is turned into thresholds: for non-negative x and y, "x is at least
    as good as y" is true exactly when ``x <= y / (1 - 1e-9)``, and "x is better than
    y" when ``x < y * (1 - 1e-9)``.

    With two or more objectives and many rows, a linear-time prefilter first drops rows
    that are dominated by a row that is also smaller or equal in every objective without
    the tolerance. Such a row dominates everything the dropped row dominates, so the
    dropping does not change the front, although dominance with a tolerance is not
    transitive in general. With two objectives the prefilter puts the first objective
    into up to 65,536 equal-width bins and compares each row with the smallest second
    objective of the bins before its own. With three or more it compares each row with
    up to 16 pivots taken from the front of a sample, and runs only when the sample
    shows that it drops at least half of the rows.

    The exact filter then runs on the remaining rows: with two objectives a sort by the
    first objective and a sweep with prefix minima, with three a sweep over the first
    objective with a Fenwick tree of minima keyed by the rank of the second, both
    O(n log n). With four or more, rows are compared block by block with the front
    found so far, which is fast while the front is small. Equivalent rows are grouped
    by a union-find over neighbours within the tolerance band. The inputs are not
    modified.
    """
    if duplicates not in ("first", "all"):
        raise ValueError(f"duplicates must be 'first' or 'all', got {duplicates!r}")
    values = np.ascontiguousarray(values, dtype=np.float64)
    n = values.shape[0]
    order = np.asarray(order, dtype=np.int64)
    if n == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
    problem = _first_invalid(values)
    if problem == 1:
        raise ValueError("objective values must be finite")
    if problem == 2:
        raise ValueError("objective values must not be negative")

    rows, front = _nondominated_rows(values)
    row_order = order[rows]
    ties = _sort_tied_runs(front, row_order)
    if ties is not None:
        rows, front, row_order = rows[ties], front[ties], row_order[ties]
    # Counts of the non-dominated rows only: a copy of all n would cost more than the filter.
    if counts is None:
        row_counts = np.ones(len(rows), dtype=np.int64)
    else:
        row_counts = np.asarray(counts, dtype=np.int64)[rows]

    if duplicates == "all":
        return rows.astype(np.intp), row_counts
    root = _equivalence_roots(np.ascontiguousarray(front))
    representatives, group_counts = _representatives(rows, root, row_order, row_counts)
    return representatives.astype(np.intp), group_counts


@compiled
def _first_invalid(values: np.ndarray) -> int:
    """Return 1 when a value is NaN or infinite, 2 when one is negative, else 0."""
    flat = values.ravel()
    negative = False
    for i in range(flat.shape[0]):
        x = flat[i]
        if not np.isfinite(x):
            return 1
        if x < 0:
            negative = True
    return 2 if negative else 0


def _nondominated_rows(
    values: np.ndarray, *, prefilter: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return the non-dominated rows and their values, sorted by the first objective."""
    n, k = values.shape
    if k == 1:
        rows = _nondominated_1d(values[:, 0])
    elif n < _PREFILTER_MIN_ROWS or not prefilter:
        rows = np.arange(n, dtype=np.int64)
    elif k == 2:
        n_bins = min(max(n // 16, 1), _MAX_BINS)
        rows = _prefilter_bins_2d(values, n_bins)
    elif k == 3:
        n_cells = min(max(int(np.sqrt(n / 16)), 1), _MAX_GRID_CELLS)
        rows = _prefilter_grid_3d(values, n_cells)
    else:
        rows = _prefilter_pivots(values)

    # Exact filter on what is left.
    if k == 1 or k >= 4:
        if k >= 4:
            rows = rows[_nondominated_kd(values[rows])]
        rows = rows[_argsort(values[rows, 0])]
        return rows, np.take(values, rows, axis=0)
    rows = rows[_argsort(values[rows, 0])]
    candidates = np.take(values, rows, axis=0)
    if k == 2:
        dominated = _dominated_sorted_2d(candidates)
    else:
        dominated = _dominated_sorted_3d(candidates, _argsort(candidates[:, 1]))
    return rows[~dominated], candidates[~dominated]


def _upper(x: np.ndarray) -> np.ndarray:
    # Largest value still "at least as good as" x.
    return x / _ONE_MINUS_TOLERANCE


def _lower(x: np.ndarray) -> np.ndarray:
    # Values below this are "better than" x.
    return x * _ONE_MINUS_TOLERANCE


def _nondominated_1d(f: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~(f.min() < _lower(f))).astype(np.int64)


@compiled
def _bin_of(x: float, low: float, bins_per_unit: float, n_bins: int) -> int:
    # Monotone in x: subtraction, multiplication by a positive number and truncation
    # all keep the order, so a row in an earlier bin has a smaller value.
    b = int((x - low) * bins_per_unit)
    return n_bins - 1 if b >= n_bins else b


@compiled
def _prefilter_bins_2d(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Return the rows (ascending) that no row of an earlier bin of `f0` dominates.

    A row q is dropped when some row p of an earlier bin (so ``p0 < q0``) has
    ``p1 <= q1`` and dominates q with the tolerance: p1 better than q1, or the
    largest f0 of the earlier bins better than q0.
    """
    n = values.shape[0]
    f0 = values[:, 0]
    f1 = values[:, 1]
    low = f0[0]
    high = f0[0]
    for i in range(n):
        low = min(low, f0[i])
        high = max(high, f0[i])
    bins_per_unit = n_bins / (high - low) if high > low else np.inf
    if not np.isfinite(bins_per_unit):
        return np.arange(n)

    # Smallest f1 and largest f0 in each bin.
    bin_min1 = np.full(n_bins, np.inf)
    bin_max0 = np.full(n_bins, -np.inf)
    for i in range(n):
        b = _bin_of(f0[i], low, bins_per_unit, n_bins)
        bin_min1[b] = min(bin_min1[b], f1[i])
        bin_max0[b] = max(bin_max0[b], f0[i])

    # The same over all bins before each bin.
    before_min1 = np.empty(n_bins)
    before_max0 = np.empty(n_bins)
    running_min1 = np.inf
    running_max0 = -np.inf
    for b in range(n_bins):
        before_min1[b] = running_min1
        before_max0[b] = running_max0
        running_min1 = min(running_min1, bin_min1[b])
        running_max0 = max(running_max0, bin_max0[b])

    keep = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        b = _bin_of(f0[i], low, bins_per_unit, n_bins)
        p1 = before_min1[b]
        if p1 < f1[i] * _ONE_MINUS_TOLERANCE:
            continue
        if p1 <= f1[i] and before_max0[b] < f0[i] * _ONE_MINUS_TOLERANCE:
            continue
        keep[m] = i
        m += 1
    return keep[:m].copy()


@compiled
def _prefilter_grid_3d(values: np.ndarray, n_cells: int) -> np.ndarray:
    """Return the rows (ascending) that no row of a cell below and left of theirs dominates.

    The grid has `n_cells` equal-width cells per side over f0 and f1. A row q is
    dropped when some row p of a cell earlier in both f0 and f1 (so ``p0 < q0`` and
    ``p1 < q1``) has ``p2 <= q2`` and dominates q with the tolerance: p2 better than q2,
    or the largest f0 of the earlier columns of cells better than q0.
    """
    n = values.shape[0]
    low0 = high0 = values[0, 0]
    low1 = high1 = values[0, 1]
    for i in range(n):
        low0 = min(low0, values[i, 0])
        high0 = max(high0, values[i, 0])
        low1 = min(low1, values[i, 1])
        high1 = max(high1, values[i, 1])
    per_unit0 = n_cells / (high0 - low0) if high0 > low0 else np.inf
    per_unit1 = n_cells / (high1 - low1) if high1 > low1 else np.inf
    if not (np.isfinite(per_unit0) and np.isfinite(per_unit1)):
        return np.arange(n)

    # Smallest f2 in each cell, largest f0 in each column of cells.
    cell_min2 = np.full((n_cells, n_cells), np.inf)
    column_max0 = np.full(n_cells, -np.inf)
    for i in range(n):
        a = _bin_of(values[i, 0], low0, per_unit0, n_cells)
        b = _bin_of(values[i, 1], low1, per_unit1, n_cells)
        cell_min2[a, b] = min(cell_min2[a, b], values[i, 2])
        column_max0[a] = max(column_max0[a], values[i, 0])

    # before_min2[a, b]: the smallest f2 over cells (a', b') with a' < a and b' < b.
    before_min2 = np.full((n_cells, n_cells), np.inf)
    for a in range(1, n_cells):
        running = np.inf
        for b in range(1, n_cells):
            running = min(running, cell_min2[a - 1, b - 1])
            before_min2[a, b] = min(before_min2[a - 1, b], running)
    before_max0 = np.empty(n_cells)
    running_max0 = -np.inf
    for a in range(n_cells):
        before_max0[a] = running_max0
        running_max0 = max(running_max0, column_max0[a])

    keep = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        a = _bin_of(values[i, 0], low0, per_unit0, n_cells)
        b = _bin_of(values[i, 1], low1, per_unit1, n_cells)
        p2 = before_min2[a, b]
        q2 = values[i, 2]
        if p2 < q2 * _ONE_MINUS_TOLERANCE:
            continue
        if p2 <= q2 and before_max0[a] < values[i, 0] * _ONE_MINUS_TOLERANCE:
            continue
        keep[m] = i
        m += 1
    return keep[:m].copy()


def _argsort(keys: np.ndarray) -> np.ndarray:
    """Return the permutation that sorts non-negative floats, as int64."""
    if len(keys) < _RADIX_SORT_MIN_ROWS:
        return np.argsort(keys).astype(np.int64)
    # Non-negative IEEE doubles sort as their bit patterns read as unsigned integers.
    return _radix_argsort(np.ascontiguousarray(keys).view(np.uint64))


@compiled
def _radix_argsort(keys: np.ndarray) -> np.ndarray:
    """Sort unsigned 64-bit keys stably: 11 bits per pass, passes with one digit skipped."""
    n = keys.shape[0]
    index = np.arange(n)
    scratch = np.empty(n, dtype=np.int64)
    counts = np.empty(2048, dtype=np.int64)
    for shift in range(0, 64, 11):
        counts[:] = 0
        for i in range(n):
            counts[(keys[i] >> np.uint64(shift)) & np.uint64(2047)] += 1
        if counts.max() == n:
            continue
        total = 0
        for digit in range(2048):
            count = counts[digit]
            counts[digit] = total
            total += count
        for i in range(n):
            j = index[i]
            digit = (keys[j] >> np.uint64(shift)) & np.uint64(2047)
            scratch[counts[digit]] = j
            counts[digit] += 1
        index, scratch = scratch, index
    return index


@compiled
def _safely_dominated(values: np.ndarray, pivots: np.ndarray) -> np.ndarray:
    """For each row, whether a pivot is smaller or equal everywhere and dominates it."""
    n, k = values.shape
    dropped = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        for p in range(pivots.shape[0]):
            smaller_or_equal = True
            better = False
            for j in range(k):
                if pivots[p, j] > values[i, j]:
                    smaller_or_equal = False
                    break
                if pivots[p, j] < values[i, j] * _ONE_MINUS_TOLERANCE:
                    better = True
            if smaller_or_equal and better:
                dropped[i] = True
                break
    return dropped


def _prefilter_pivots(values: np.ndarray) -> np.ndarray:
    """Drop rows safely dominated by pivots chosen from the front of a sample.

    Returns all rows when the sample shows that the pivots would keep more than half.
    """
    n = len(values)
    all_rows = np.arange(n, dtype=np.int64)
    sample = np.ascontiguousarray(values[:: max(n // _PIVOT_SAMPLE_ROWS, 1)])
    candidates = _nondominated_rows(sample, prefilter=False)[1]

    # Greedy cover: take the candidate that drops the most sample rows not yet dropped.
    covered = np.zeros(len(sample), dtype=bool)
    pivots = []
    drops = np.stack(
        [_safely_dominated(sample, candidates[c : c + 1]) for c in range(len(candidates))]
    )
    for _ in range(_MAX_PIVOTS):
        gains = (drops & ~covered).sum(axis=1)
        best = int(np.argmax(gains)) if len(gains) else 0
        if len(gains) == 0 or gains[best] * 100 < len(sample):
            break
        pivots.append(best)
        covered |= drops[best]
    if len(pivots) == 0 or (~covered).mean() > _MAX_SURVIVING_SHARE:
        return all_rows
    dropped = _safely_dominated(values, np.ascontiguousarray(candidates[pivots]))
    return all_rows[~dropped]


@compiled
def _dominated_sorted_2d(values: np.ndarray) -> np.ndarray:
    """For rows sorted by the first objective, whether some row dominates each one."""
    n = values.shape[0]
    f0 = values[:, 0]
    f1 = values[:, 1]
    # prefix_min[i] is the smallest f1 among the first i rows.
    prefix_min = np.empty(n + 1)
    prefix_min[0] = np.inf
    for i in range(n):
        prefix_min[i + 1] = min(prefix_min[i], f1[i])

    # better0 counts the rows with f0 better than row i's, at_least0 those with f0 at
    # least as good. Both thresholds grow with f0, so the counts only move forward.
    dominated = np.zeros(n, dtype=np.bool_)
    better0 = 0
    at_least0 = 0
    for i in range(n):
        lower0 = f0[i] * _ONE_MINUS_TOLERANCE
        upper0 = f0[i] / _ONE_MINUS_TOLERANCE
        while better0 < n and f0[better0] < lower0:
            better0 += 1
        while at_least0 < n and f0[at_least0] <= upper0:
            at_least0 += 1
        dominated[i] = (prefix_min[better0] <= f1[i] / _ONE_MINUS_TOLERANCE) or (
            prefix_min[at_least0] < f1[i] * _ONE_MINUS_TOLERANCE
        )
    return dominated


@compiled
def _fenwick_update(tree: np.ndarray, position: int, value: float) -> None:
    i = position + 1
    while i < tree.shape[0]:
        if value < tree[i]:
            tree[i] = value
        i += i & -i


@compiled
def _fenwick_prefix_min(tree: np.ndarray, length: int) -> float:
    result = np.inf
    i = length
    while i > 0:
        if tree[i] < result:
            result = tree[i]
        i -= i & -i
    return result


@compiled
def _dominated_sorted_3d(values: np.ndarray, by_f1: np.ndarray) -> np.ndarray:
    """For rows sorted by the first objective, whether some row dominates each one.

    p dominates q when it is better in one objective and at least as good in the other
    two. Each of the three cases is an orthant query: sweep the rows in f0 order, insert
    each into a Fenwick tree keyed by the rank of its f1 that keeps the smallest f2, and
    ask for the smallest f2 among rows with f1 below a threshold. `by_f1` sorts the
    rows by f1.
    """
    n = values.shape[0]
    f0 = values[:, 0]
    f1 = values[:, 1]
    f2 = values[:, 2]
    rank1 = np.empty(n, dtype=np.int64)
    for position in range(n):
        rank1[by_f1[position]] = position

    # For each row, how many rows have f1 at least as good as its f1 (at_least1) and
    # how many have it better (better1). Both thresholds grow with f1.
    at_least1 = np.empty(n, dtype=np.int64)
    better1 = np.empty(n, dtype=np.int64)
    a = 0
    b = 0
    for position in range(n):
        i = by_f1[position]
        while a < n and f1[by_f1[a]] <= f1[i] / _ONE_MINUS_TOLERANCE:
            a += 1
        while b < n and f1[by_f1[b]] < f1[i] * _ONE_MINUS_TOLERANCE:
            b += 1
        at_least1[i] = a
        better1[i] = b
    dominated = np.zeros(n, dtype=np.bool_)

    # Case 1: better in f0, at least as good in f1 and f2.
    tree = np.full(n + 1, np.inf)
    inserted = 0
    for i in range(n):
        lower0 = f0[i] * _ONE_MINUS_TOLERANCE
        while inserted < n and f0[inserted] < lower0:
            _fenwick_update(tree, rank1[inserted], f2[inserted])
            inserted += 1
        if _fenwick_prefix_min(tree, at_least1[i]) <= f2[i] / _ONE_MINUS_TOLERANCE:
            dominated[i] = True

    # Cases 2 and 3: at least as good in f0, better in f1 or in f2. Row i itself is in
    # the tree but cannot be better than itself.
    tree[:] = np.inf
    inserted = 0
    for i in range(n):
        upper0 = f0[i] / _ONE_MINUS_TOLERANCE
        while inserted < n and f0[inserted] <= upper0:
            _fenwick_update(tree, rank1[inserted], f2[inserted])
            inserted += 1
        if dominated[i]:
            continue
        if _fenwick_prefix_min(tree, better1[i]) <= f2[i] / _ONE_MINUS_TOLERANCE:
            dominated[i] = True
            continue
        if _fenwick_prefix_min(tree, at_least1[i]) < f2[i] * _ONE_MINUS_TOLERANCE:
            dominated[i] = True
    return dominated


def dominated_by(front: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Tell, per row of `points` (m, k), whether a row of `front` (f, k) dominates it.

    Dominance is that of `pareto_front`, with its relative tolerance. The rows are
    compared in blocks, so that the comparison arrays stay at a few million cells.
    """
    dominated = np.zeros(len(points), dtype=bool)
    block = max(1, _MAX_COMPARED_CELLS // max(1, front.size))
    for start in range(0, len(points), block):
        dominated[start : start + block] = _dominates_any(front, points[start : start + block])
    return dominated


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


def _sort_tied_runs(front: np.ndarray, row_order: np.ndarray) -> np.ndarray | None:
    """Return the permutation that sorts `front` lexicographically, or None if it is sorted.

    `front` is sorted by the first objective already; rows equal in every objective
    follow `row_order`.
    """
    f0 = front[:, 0]
    if len(f0) < 2 or not (f0[1:] == f0[:-1]).any():
        return None
    return _sort_runs(np.ascontiguousarray(front), row_order)


@compiled
def _sort_runs(front: np.ndarray, row_order: np.ndarray) -> np.ndarray:
    """Sort each run of equal first objective by the other objectives, then by order.

    Column by column, each run of rows equal in all earlier columns is sorted by the
    next column; the enumeration order is the last key.
    """
    n, k = front.shape
    permutation = np.arange(n)
    for column in range(1, k + 1):
        start = 0
        while start < n:
            stop = start + 1
            while stop < n:
                same = True
                for j in range(column):
                    if front[permutation[stop], j] != front[permutation[start], j]:
                        same = False
                        break
                if not same:
                    break
                stop += 1
            if stop - start > 1:
                run = permutation[start:stop].copy()
                if column < k:
                    keys = np.empty(stop - start)
                    for r in range(stop - start):
                        keys[r] = front[run[r], column]
                    permutation[start:stop] = run[np.argsort(keys, kind="mergesort")]
                else:
                    tie_keys = np.empty(stop - start, dtype=np.int64)
                    for r in range(stop - start):
                        tie_keys[r] = row_order[run[r]]
                    permutation[start:stop] = run[np.argsort(tie_keys, kind="mergesort")]
            start = stop
    return permutation


@compiled
def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@compiled
def _equivalence_roots(front: np.ndarray) -> np.ndarray:
    """Return, for each row, the first row (in row order) of its equivalence group.

    Rows are sorted lexicographically, so exact copies are adjacent and collapse first.
    Equivalent rows lie within the tolerance band of each other in the first objective,
    so each distinct row is compared with the distinct rows after it while they are in
    that band, and equal pairs are joined with a union-find.
    """
    m, k = front.shape
    parent = np.arange(m)

    # Exact copies join the first row of their run.
    distinct = np.empty(m, dtype=np.int64)
    n_distinct = 0
    for i in range(m):
        same = i > 0
        if same:
            for j in range(k):
                if front[i, j] != front[i - 1, j]:
                    same = False
                    break
        if same:
            parent[i] = parent[i - 1]
        else:
            distinct[n_distinct] = i
            n_distinct += 1

    # run_stop[d]: the first distinct row after d whose first objective differs exactly.
    run_stop = np.empty(n_distinct, dtype=np.int64)
    run_stop[n_distinct - 1] = n_distinct
    for d in range(n_distinct - 2, -1, -1):
        same_first = front[distinct[d + 1], 0] == front[distinct[d], 0]
        run_stop[d] = run_stop[d + 1] if same_first else d + 1

    for d in range(n_distinct):
        a = distinct[d]
        upper0 = front[a, 0] / _ONE_MINUS_TOLERANCE
        e = d + 1
        while e < n_distinct:
            b = distinct[e]
            if front[b, 0] > upper0:
                break
            # Within a run of one first objective the second grows, so once it leaves
            # the band the rest of the run does too.
            same_first = front[b, 0] == front[a, 0]
            if k > 1 and same_first and front[b, 1] > front[a, 1] / _ONE_MINUS_TOLERANCE:
                e = run_stop[e]
                continue
            equal = True
            for j in range(k):
                x = front[a, j]
                y = front[b, j]
                if abs(y - x) > RELATIVE_TOLERANCE * max(abs(x), abs(y)):
                    equal = False
                    break
            if equal:
                root_a = _find(parent, a)
                root_b = _find(parent, b)
                if root_a != root_b:
                    parent[max(root_a, root_b)] = min(root_a, root_b)
            e += 1

    root = np.empty(m, dtype=np.int64)
    for i in range(m):
        root[i] = _find(parent, i)
    return root


@compiled
def _representatives(
    rows: np.ndarray, root: np.ndarray, order: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pick the smallest order per group and sum the counts, groups in root order."""
    m = rows.shape[0]
    best = np.full(m, -1, dtype=np.int64)
    total = np.zeros(m, dtype=np.int64)
    for i in range(m):
        r = root[i]
        total[r] += counts[i]
        if best[r] < 0 or order[i] < order[best[r]]:
            best[r] = i
    n_groups = 0
    for i in range(m):
        if root[i] == i:
            n_groups += 1
    representatives = np.empty(n_groups, dtype=np.int64)
    group_counts = np.empty(n_groups, dtype=np.int64)
    g = 0
    for i in range(m):
        if root[i] == i:
            representatives[g] = rows[best[i]]
            group_counts[g] = total[i]
            g += 1
    return representatives, group_counts
