"""Bounded linear least squares and a check of which parameters data can identify.

NumPy has no bounded solver and SciPy is not a dependency of the tool, so
`bounded_lstsq` is a small active-set method for box constraints. The problems it
solves in calibration have a handful of parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bounded_lstsq", "unidentified"]


def bounded_lstsq(
    a: np.ndarray,
    b: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    max_iterations: int | None = None,
) -> np.ndarray:
    """Minimise ``||a @ x - b||`` subject to ``lower <= x <= upper``.

    Parameters
    ----------
    a : ndarray, shape (m, n)
    b : ndarray, shape (m,)
    lower, upper : ndarray, shape (n,)
        Finite bounds with ``lower <= upper``.

    Returns
    -------
    ndarray, shape (n,)

    Notes
    -----
    A primal active-set method: each step solves the least-squares problem over the free
    variables with the others held at their bounds, moves towards that solution as far as
    the bounds allow and holds the variable that stops it. At a feasible subspace
    minimum, the held variable whose gradient points most into the box is released; none
    left means the Karush-Kuhn-Tucker conditions hold and the solution is optimal, since
    the problem is convex. A rank-deficient problem gets NumPy's minimum-norm solution
    over the free variables.
    """
    n = a.shape[1]
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    x = np.clip(np.linalg.lstsq(a, b, rcond=None)[0], lower, upper)
    # -1 held at the lower bound, +1 at the upper bound, 0 free.
    state = np.where(x <= lower, -1, np.where(x >= upper, 1, 0))
    x = np.where(state < 0, lower, np.where(state > 0, upper, x))
    scale = max(float(np.abs(a).max(initial=0.0)) * float(np.abs(b).max(initial=0.0)), 1e-300)
    limit = max_iterations if max_iterations is not None else 20 * n + 20

    for _ in range(limit):
        free = state == 0
        target = x.copy()
        if free.any():
            rhs = b - a[:, ~free] @ x[~free]
            target[free] = np.linalg.lstsq(a[:, free], rhs, rcond=None)[0]
        outside = free & ((target < lower) | (target > upper))

        if not outside.any():
            x = target
            gradient = a.T @ (a @ x - b)
            inward = np.where(state < 0, -gradient, np.where(state > 0, gradient, 0.0))
            j = int(np.argmax(inward))
            if inward[j] <= 1e-12 * scale:
                return x
            state[j] = 0
            continue

        # Move towards the subspace minimum until the first free variable meets a bound.
        step = target - x
        with np.errstate(divide="ignore", invalid="ignore"):
            to_bound = np.where(
                target < lower,
                (lower - x) / step,
                np.where(target > upper, (upper - x) / step, 1.0),
            )
        to_bound = np.where(outside, to_bound, np.inf)
        j = int(np.argmin(to_bound))
        x = np.clip(x + max(float(to_bound[j]), 0.0) * step, lower, upper)
        state[j] = -1 if target[j] < lower[j] else 1
        x[j] = lower[j] if state[j] < 0 else upper[j]
    return x


def unidentified(a: np.ndarray, columns: Sequence[int] | None = None) -> list[int]:
    """Return the columns of `a` whose coefficient the rows do not determine.

    A coefficient is undetermined when some direction in the null space of `a` moves it:
    a column of zeros, or a column that is a combination of others (two parameters that
    appear only as their sum or ratio). Columns are scaled to unit norm first, so units
    do not matter. `columns` limits the check to some columns, in their order.
    """
    columns = list(range(a.shape[1])) if columns is None else list(columns)
    if not columns:
        return []
    sub = a[:, columns]
    norms = np.linalg.norm(sub, axis=0)
    result = [columns[i] for i in np.flatnonzero(norms == 0)]
    nonzero = np.flatnonzero(norms > 0)
    if len(nonzero) == 0:
        return result
    scaled = sub[:, nonzero] / norms[nonzero]
    _, singular, vt = np.linalg.svd(scaled, full_matrices=True)
    rank = int(np.sum(singular > 1e-9 * max(singular.max(initial=0.0), 1.0)))
    null_space = vt[rank:]
    if len(null_space):
        moved = np.abs(null_space).max(axis=0) > 1e-6
        result += [columns[int(nonzero[i])] for i in np.flatnonzero(moved)]
    return sorted(result, key=columns.index)
