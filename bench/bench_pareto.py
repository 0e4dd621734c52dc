"""The Pareto filter against moocore, paretoset and pymoo on the same points."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from allocation.pareto import pareto_front
from bench.common import Settings, Table, format_seconds, median_time_s

TITLE = "Pareto filter"

SHAPES = ("uniform", "half on the front", "ties and duplicates")


def make_points(shape: str, n: int, k: int, seed: int = 0) -> np.ndarray:
    """Return n points of k objectives of one data shape, rows shuffled.

    "uniform" draws from [0, 1)^k. "half on the front" puts n/2 distinct integer points
    on the plane where the coordinates sum to a constant and moves each other point up
    from one of them by 1 to 49 in every objective. "ties and duplicates" draws integer
    grid points whose last objective is the constant minus the others plus 0, 1 or 2,
    so the front is a staircase of points with thousands of copies each.
    """
    rng = np.random.default_rng([seed, n, k, SHAPES.index(shape)])
    if shape == "uniform":
        return rng.random((n, k))
    if shape == "half on the front":
        m = n // 2
        front = _plane_points(rng, m, k)
        moved = front[rng.integers(0, m, n - m)] + rng.integers(1, 50, size=(n - m, k))
        points = np.vstack([front, moved])
        return points[rng.permutation(n)]
    side = 1000 if k == 2 else 300
    points = rng.integers(0, side, size=(n, k)).astype(np.float64)
    points[:, -1] = side * (k - 1) - points[:, :-1].sum(axis=1) + rng.integers(0, 3, n)
    return points


def _plane_points(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    """Return m distinct non-negative integer points of k (2 or 3) coordinates, equal sum."""
    if k == 2:
        first = rng.permutation(m).astype(np.float64)
        return np.column_stack([first, m - 1 - first])
    # Triangle i + j <= side: row i has side + 1 - i points.
    side = math.ceil(math.sqrt(2 * m)) + 1
    row_sizes = side + 1 - np.arange(side + 1)
    row_starts = np.concatenate([[0], np.cumsum(row_sizes)])
    picked = rng.choice(int(row_starts[-1]), size=m, replace=False)
    i = np.searchsorted(row_starts, picked, side="right") - 1
    j = picked - row_starts[i]
    return np.column_stack([i, j, side - i - j]).astype(np.float64)


def _ours(points: np.ndarray) -> np.ndarray:
    keep, _ = pareto_front(points, np.arange(len(points)))
    return keep


def _moocore(points: np.ndarray) -> np.ndarray:
    import moocore

    return np.flatnonzero(moocore.is_nondominated(points))


def _paretoset(points: np.ndarray) -> np.ndarray:
    from paretoset import paretoset

    return np.flatnonzero(paretoset(points, sense=["min"] * points.shape[1], distinct=True))


def _pymoo(points: np.ndarray) -> np.ndarray:
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    return np.asarray(NonDominatedSorting().do(points, only_non_dominated_front=True))


FILTERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "allocation": _ours,
    "moocore": _moocore,
    "paretoset": _paretoset,
    "pymoo": _pymoo,
}
"""Name to a function returning the rows of the front; add a library with one line."""


def same_front(points: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> bool:
    """Check whether two fronts contain the same objective vectors, copies counted once."""
    a = np.unique(points[rows_a], axis=0)
    b = np.unique(points[rows_b], axis=0)
    return a.shape == b.shape and bool((a == b).all())


def run(settings: Settings) -> list[Table]:
    """Time every filter on every shape and size, two and three objectives."""
    sizes = [10**4, 10**5] if settings.quick else [10**4, 10**5, 10**6, 10**7]
    _warm_up()
    tables = []
    for k in (2, 3):
        table = Table(
            title=f"Pareto filter, {k} objectives: median wall time",
            columns=["data", "points", "front", *FILTERS, "moocore / allocation", "same front"],
        )
        for shape in SHAPES:
            last_time_s: dict[str, list[float]] = {name: [] for name in FILTERS}
            for n in sizes:
                table.rows.append(_measure(table, settings, shape, n, k, last_time_s))
        tables.append(table)
    tables[0].notes.append(
        "Times are medians of the repeats in this run; a ratio above 1 means allocation "
        'is faster. "same front" compares the distinct objective vectors of every '
        "library that ran with those of allocation."
    )
    return tables


def _warm_up() -> None:
    # Compile numba kernels (ours and paretoset's) on every path before timing.
    for k in (2, 3):
        for shape in SHAPES:
            points = make_points(shape, 5000, k, seed=1)
            for function in FILTERS.values():
                function(points)


def _measure(
    table: Table,
    settings: Settings,
    shape: str,
    n: int,
    k: int,
    history: dict[str, list[float]],
) -> list[object]:
    points = make_points(shape, n, k)
    times: dict[str, float | None] = {}
    fronts: dict[str, np.ndarray] = {}
    cells: list[object] = [shape, f"{n:.0e}".replace("e+0", "e")]
    for name, function in FILTERS.items():
        predicted_s = _predicted_time_s(history[name])
        if predicted_s > settings.time_limit_s:
            times[name] = None
            continue
        repeats = settings.repeats if predicted_s < settings.time_limit_s / 4 else 1
        median_s, _, rows = median_time_s(lambda f=function: f(points), repeats)
        times[name] = median_s
        fronts[name] = rows
        history[name].append(median_s)
    ours = fronts["allocation"]
    cells.append(len(ours))
    for name in FILTERS:
        value = times[name]
        cells.append("skipped: too slow" if value is None else format_seconds(value))
    moocore_s, ours_s = times.get("moocore"), times["allocation"]
    ratio = None if moocore_s is None or ours_s is None else moocore_s / ours_s
    cells.append("-" if ratio is None else f"{ratio:.2f}")
    agree = all(same_front(points, ours, rows) for rows in fronts.values())
    cells.append("yes" if agree else "NO")
    if ours_s is not None:
        table.facts[f"allocation {k}-D {shape} {n}"] = ours_s
    if ratio is not None:
        table.facts[f"moocore ratio {k}-D {shape} {n}"] = ratio
    if not agree:
        table.facts["disagreement"] = True
    return cells


def _predicted_time_s(history: list[float]) -> float:
    """Extrapolate the time at the next size (10 times larger) from the last sizes."""
    if not history:
        return 0.0
    if len(history) == 1 or history[-2] <= 0:
        return history[-1] * 10
    growth = max(history[-1] / history[-2], 10.0)
    return history[-1] * growth
