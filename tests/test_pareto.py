"""The fast Pareto filter against the pure-Python reference, and its properties.

Every objective is minimised, values within a relative 1e-9 of each other are equal,
and equivalent front points collapse into one representative (the smallest order) that
carries the sum of their counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from allocation.pareto import pareto_front
from allocation.reference import reference_front

KINDS = ("uniform", "duplicates", "tie_first", "within_tolerance", "zeros")
DIMENSIONS = (1, 2, 3, 4)
SEEDS = range(10)


def _random_points(rng: np.random.Generator, kind: str, n: int, k: int) -> np.ndarray:
    """Return n points of k objectives that stress one case of the filter."""
    if kind == "uniform":
        return rng.uniform(0.0, 100.0, size=(n, k))
    if kind == "duplicates":
        # A coarse grid: many rows equal in every objective.
        return rng.integers(0, 4, size=(n, k)).astype(np.float64) * 2.5
    if kind == "tie_first":
        points = rng.uniform(1.0, 10.0, size=(n, k))
        points[:, 0] = rng.choice([1.0, 3.0, 7.0], size=n)
        return points
    if kind == "within_tolerance":
        # Grid points with each coordinate moved by at most 1e-11 relative, far inside
        # the 1e-9 tolerance. Distinct grid points differ by at least 7 %.
        grid = rng.integers(10, 14, size=(n, k)).astype(np.float64)
        return grid * (1.0 + rng.uniform(-1e-11, 1e-11, size=(n, k)))
    if kind == "zeros":
        points = rng.integers(0, 3, size=(n, k)).astype(np.float64)
        points[rng.random(size=(n, k)) < 0.3] = 0.0
        return points * rng.choice([1.0, 1e-300, 1e300])
    raise ValueError(f"unknown kind {kind!r}")


def _as_pairs(order: np.ndarray, keep: np.ndarray, counts: np.ndarray) -> list[tuple[int, int]]:
    return sorted(zip(order[keep].tolist(), counts.tolist(), strict=True))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", DIMENSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_front_matches_reference(kind: str, k: int, seed: int) -> None:
    rng = np.random.default_rng([seed, k, KINDS.index(kind)])
    n = int(rng.integers(1, 160))
    values = _random_points(rng, kind, n, k)
    order = np.arange(n, dtype=np.int64)

    keep, counts = pareto_front(values, order)

    assert _as_pairs(order, keep, counts) == reference_front(values.tolist())
    assert counts.sum() <= n


@pytest.mark.parametrize("k", [2, 3, 4])
def test_large_front_matches_reference(k: int) -> None:
    # More rows than one block of the k-D filter. The points are exact grid points, so
    # the reference can run on the distinct rows with their multiplicities as counts.
    rng = np.random.default_rng(k)
    values = rng.integers(0, 6, size=(6000, k)).astype(np.float64)
    values += rng.integers(0, 6, size=(6000, 1))
    order = np.arange(len(values), dtype=np.int64)

    keep, counts = pareto_front(values, order)
    distinct, first, multiplicity = np.unique(values, axis=0, return_index=True, return_counts=True)
    by_first = np.argsort(first)
    expected = [
        (int(first[by_first[row]]), int(multiplicity[by_first[row]]))
        for row, _ in reference_front(distinct[by_first].tolist())
    ]

    assert _as_pairs(order, keep, counts) == sorted(expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", DIMENSIONS)
def test_row_permutation_keeps_front(k: int, seed: int) -> None:
    rng = np.random.default_rng([seed, k, 99])
    values = _random_points(rng, "duplicates", 300, k)
    order = rng.permutation(10 * len(values))[: len(values)].astype(np.int64)
    expected = _as_pairs(order, *pareto_front(values, order))

    for _ in range(3):
        rows = rng.permutation(len(values))
        permuted = _as_pairs(order[rows], *pareto_front(values[rows], order[rows]))
        assert permuted == expected


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", DIMENSIONS)
def test_representative_smallest_order(k: int, seed: int) -> None:
    rng = np.random.default_rng([seed, k, 7])
    values = _random_points(rng, "duplicates", 120, k)
    order = rng.permutation(1000)[: len(values)].astype(np.int64)

    keep, counts = pareto_front(values, order)
    # The reference takes the first row in enumeration order: give it the rows that way.
    by_order = np.argsort(order)
    expected = [
        (int(order[by_order[row]]), count)
        for row, count in reference_front(values[by_order].tolist())
    ]

    assert _as_pairs(order, keep, counts) == sorted(expected)


def test_representative_of_equal_rows() -> None:
    values = np.array([[2.0, 1.0], [1.0, 3.0], [2.0, 1.0], [2.0, 1.0 + 1e-12]])
    order = np.array([8, 4, 3, 5], dtype=np.int64)

    keep, counts = pareto_front(values, order)

    assert _as_pairs(order, keep, counts) == [(3, 3), (4, 1)]


def test_counts_are_summed() -> None:
    values = np.array([[1.0, 5.0], [1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [2.0, 2.0]])
    order = np.array([0, 1, 2, 3, 4], dtype=np.int64)
    counts = np.array([4, 6, 1, 100, 10], dtype=np.int64)

    keep, keep_counts = pareto_front(values, order, counts)

    assert _as_pairs(order, keep, keep_counts) == [(0, 10), (2, 11)]


@pytest.mark.parametrize("k", DIMENSIONS)
def test_counts_match_repeated_rows(k: int) -> None:
    rng = np.random.default_rng(k)
    values = _random_points(rng, "duplicates", 80, k)
    counts = rng.integers(1, 5, size=len(values))
    repeated = np.repeat(values, counts, axis=0)

    keep, keep_counts = pareto_front(values, np.arange(len(values)), counts)
    keep_repeated, counts_repeated = pareto_front(repeated, np.arange(len(repeated)))

    assert sorted(keep_counts.tolist()) == sorted(counts_repeated.tolist())
    assert keep_counts.sum() == counts_repeated.sum()
    # Row i of `values` is the first of its copies in `repeated`.
    first_copy = np.concatenate([[0], np.cumsum(counts)[:-1]])
    assert sorted(first_copy[keep].tolist()) == sorted(keep_repeated.tolist())


@pytest.mark.parametrize("k", DIMENSIONS)
def test_inputs_unchanged(k: int) -> None:
    rng = np.random.default_rng(k)
    values = _random_points(rng, "duplicates", 500, k)
    order = rng.permutation(len(values)).astype(np.int64)
    counts = rng.integers(1, 4, size=len(values)).astype(np.int64)
    copies = (values.copy(), order.copy(), counts.copy())
    for array in (values, order, counts):
        array.flags.writeable = False

    pareto_front(values, order, counts)
    pareto_front(values, order)

    np.testing.assert_array_equal(values, copies[0])
    np.testing.assert_array_equal(order, copies[1])
    np.testing.assert_array_equal(counts, copies[2])


@pytest.mark.parametrize("k", DIMENSIONS)
def test_output_sorted_by_objectives(k: int) -> None:
    rng = np.random.default_rng(k)
    values = rng.uniform(0.0, 1.0, size=(400, k))

    keep, counts = pareto_front(values, np.arange(len(values)))

    assert keep.dtype == np.intp
    assert counts.dtype == np.int64
    front = values[keep]
    assert np.array_equal(np.lexsort(front.T[::-1]), np.arange(len(keep)))


def test_empty_input() -> None:
    keep, counts = pareto_front(np.empty((0, 2)), np.empty(0, dtype=np.int64))

    assert keep.shape == (0,)
    assert counts.shape == (0,)


def test_tolerance_makes_values_equal() -> None:
    # 1 + 1e-10 equals 1 within the tolerance. The second row is therefore at least as
    # good in the first objective and better in the second, so it dominates the first.
    values = np.array([[1.0, 2.0], [1.0 + 1e-10, 1.0]])

    keep, _ = pareto_front(values, np.arange(2))

    assert keep.tolist() == [1]


def test_tolerance_keeps_distinct_values() -> None:
    # 1 + 1e-8 is worse than 1 beyond the tolerance, so neither row dominates the other.
    values = np.array([[1.0, 2.0], [1.0 + 1e-8, 1.0]])

    keep, counts = pareto_front(values, np.arange(2))

    assert sorted(keep.tolist()) == [0, 1]
    assert counts.tolist() == [1, 1]


def test_zero_better_than_tiny() -> None:
    values = np.array([[0.0, 1.0], [1e-300, 1.0], [0.0, 1.0]])

    keep, counts = pareto_front(values, np.arange(3))

    assert keep.tolist() == [0]
    assert counts.tolist() == [2]


def test_equivalents_split_by_other_point() -> None:
    # Rows 0 and 2 are equal within the tolerance. Row 1 is also on the front and sorts
    # between them by the first objective, but rows 0 and 2 still form one front point.
    values = np.array([[1.0, 1.0, 1.0], [1.0 + 1e-12, 0.5, 2.0], [1.0 + 2e-12, 1.0, 1.0]])

    keep, counts = pareto_front(values, np.arange(3))

    assert _as_pairs(np.arange(3), keep, counts) == [(0, 2), (1, 1)]
    assert reference_front(values.tolist()) == [(0, 2), (1, 1)]


@pytest.mark.parametrize(
    "bad", [np.nan, np.inf, -np.inf, -1.0, -1e-300], ids=["nan", "inf", "-inf", "-1", "-tiny"]
)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_invalid_values_raise(bad: float, k: int) -> None:
    values = np.ones((4, k))
    values[2, k - 1] = bad

    with pytest.raises(ValueError):
        pareto_front(values, np.arange(4))


def _brute_force_front(values: np.ndarray) -> list[tuple[int, int]]:
    """Compare every pair with the reference's equality rule, block by block (O(n^2)).

    Rows that no row dominates are grouped as `reference_front` groups them: each joins
    the first earlier representative equal to it in every objective.
    """
    n = len(values)
    dominated = np.zeros(n, dtype=bool)
    for begin in range(0, n, 256):
        q = values[begin : begin + 256][None, :, :]
        p = values[:, None, :]
        equal = np.abs(p - q) <= 1e-9 * np.maximum(np.abs(p), np.abs(q))
        at_least = ((p < q) | equal).all(axis=2)
        better = ((p < q) & ~equal).any(axis=2)
        dominated[begin : begin + 256] = (at_least & better).any(axis=0)
    representatives: list[int] = []
    counts: list[int] = []
    for i in np.flatnonzero(~dominated).tolist():
        if representatives:
            p = values[representatives]
            q = values[i]
            equal = (np.abs(p - q) <= 1e-9 * np.maximum(np.abs(p), np.abs(q))).all(axis=1)
            if equal.any():
                counts[int(np.argmax(equal))] += 1
                continue
        representatives.append(i)
        counts.append(1)
    return list(zip(representatives, counts, strict=True))


def _large_points(rng: np.random.Generator, kind: str, n: int, k: int) -> np.ndarray:
    """Return n points of k objectives, enough rows for the prefilters to run."""
    if kind == "uniform":
        return rng.uniform(0.0, 100.0, size=(n, k))
    if kind == "half_front":
        # Half the rows on the plane sum = 1, half moved up from one of them.
        front = rng.dirichlet(np.ones(k), size=n // 2)
        moved = front[rng.integers(0, len(front), n - n // 2)]
        return np.vstack([front, moved + rng.uniform(0.0, 0.3, size=moved.shape)])
    if kind == "grid":
        points = rng.integers(0, 12, size=(n, k)).astype(np.float64)
        points[:, -1] = 12 * (k - 1) - points[:, :-1].sum(axis=1) + rng.integers(0, 3, n)
        return points
    if kind == "near_tolerance":
        grid = rng.integers(1, 30, size=(n, k)).astype(np.float64)
        points = grid * (1.0 + rng.choice([0.0, 5e-10, 1e-9, 1.5e-9, 3e-9], size=(n, k)))
        points[rng.random(n) < 0.1] = 0.0
        return points
    raise ValueError(f"unknown kind {kind!r}")


LARGE_KINDS = ("uniform", "half_front", "grid", "near_tolerance")


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("kind", LARGE_KINDS)
def test_prefiltered_front_matches_brute_force(kind: str, k: int, seed: int) -> None:
    rng = np.random.default_rng([seed, k, LARGE_KINDS.index(kind), 5])
    n = int(rng.integers(4500, 6000))
    values = _large_points(rng, kind, n, k)
    values = values[rng.permutation(n)]
    order = np.arange(n, dtype=np.int64)

    keep, counts = pareto_front(values, order)

    assert _as_pairs(order, keep, counts) == _brute_force_front(values)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_duplicates_all_keeps_copies(k: int) -> None:
    rng = np.random.default_rng(k)
    values = _random_points(rng, "duplicates", 300, k)
    order = rng.permutation(len(values)).astype(np.int64)
    counts = rng.integers(1, 4, size=len(values)).astype(np.int64)

    keep_all, counts_all = pareto_front(values, order, counts, duplicates="all")
    keep_first, counts_first = pareto_front(values, order, counts, duplicates="first")

    # Every copy of a front point is kept, with its own count.
    assert np.array_equal(counts_all, counts[keep_all])
    assert counts_all.sum() == counts_first.sum()
    assert set(keep_first.tolist()) <= set(keep_all.tolist())
    front_vectors = {tuple(v) for v in values[keep_first].tolist()}
    copies = [i for i in range(len(values)) if tuple(values[i].tolist()) in front_vectors]
    assert sorted(keep_all.tolist()) == sorted(copies)


def test_duplicates_all_orders_copies() -> None:
    values = np.array([[2.0, 1.0], [1.0, 3.0], [2.0, 1.0], [2.0, 1.0], [3.0, 3.0]])
    order = np.array([8, 4, 3, 5, 0], dtype=np.int64)

    keep, counts = pareto_front(values, order, duplicates="all")

    # Sorted by the objectives; the copies of (2, 1) by enumeration order 3, 5, 8.
    assert keep.tolist() == [1, 2, 3, 0]
    assert counts.tolist() == [1, 1, 1, 1]


def test_duplicates_first_is_default() -> None:
    values = np.array([[1.0, 1.0], [1.0, 1.0], [0.5, 2.0]])

    keep, counts = pareto_front(values, np.arange(3))
    keep_first, counts_first = pareto_front(values, np.arange(3), duplicates="first")

    assert keep.tolist() == keep_first.tolist() == [2, 0]
    assert counts.tolist() == counts_first.tolist() == [1, 2]


def test_unknown_duplicate_rule_raises() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        pareto_front(np.ones((2, 2)), np.arange(2), duplicates="last")  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [2, 3])
def test_large_input_permutation_keeps_front(k: int) -> None:
    rng = np.random.default_rng([k, 41])
    values = _large_points(rng, "grid", 20_000, k)
    order = rng.permutation(len(values)).astype(np.int64)
    expected = _as_pairs(order, *pareto_front(values, order))

    rows = rng.permutation(len(values))

    assert _as_pairs(order[rows], *pareto_front(values[rows], order[rows])) == expected


def test_filter_without_disk_cache() -> None:
    # With no writable cache location numba raises when a cached function is defined;
    # allocation.jit then compiles in memory, and importing the whole engine still works.
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import numpy as np\n"
        "import allocation.exact, allocation.sweep\n"
        "from allocation.pareto import pareto_front\n"
        "values = np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0]])\n"
        "keep, counts = pareto_front(values, np.arange(4))\n"
        "print(keep.tolist(), counts.tolist())\n"
    )
    environment = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "IPythonCacheLocator"}
    environment.pop("NUMBA_CACHE_DIR", None)
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[0, 1] [2, 1]"
