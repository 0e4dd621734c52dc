"""Chunked sweep: estimate a chunk, keep its front, merge fronts; no orchestration.

`sweep_chunk` is a pure function of a compiled problem and an index range, so it runs
the same in a thread, a process, a cluster worker or a test. `merge_fronts` is
associative: merging partial fronts in any grouping gives the same exact front.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from allocation.compile import CompiledProblem
from allocation.errors import AllocationError
from allocation.estimate import Evaluation, empty_evaluation, evaluate_chunk, evaluate_placements
from allocation.kernel import Screening, sample_threshold, screen_chunk
from allocation.memory import memory_excess
from allocation.pareto import pareto_front
from allocation.space import decode_placements, plan_chunks

__all__ = [
    "ChunkResult",
    "PartialFront",
    "front_of",
    "kernel_handles",
    "merge_fronts",
    "objective_matrix",
    "sample_mask",
    "sweep_chunk",
    "sweep_in_process",
    "warm_up",
]


@dataclass(frozen=True)
class PartialFront:
    """The front of part of the space: representatives and how many each stands for."""

    evaluation: Evaluation
    equivalent_count: np.ndarray
    """(m,) int64 number of assignments equivalent to each representative."""
    infeasible_count: int = 0
    """Assignments of this part that exceed a device's memory limit (`allocation.memory`)."""
    over_limit_count: np.ndarray | None = None
    """(n_devices,) int64 assignments of this part that exceed each device's memory limit;
    None when the problem has no memory limit that binds."""

    def __len__(self) -> int:
        return len(self.evaluation)


@dataclass(frozen=True)
class ChunkResult:
    """Output of one chunk: its front and the rows kept for patterns.parquet."""

    start: int
    stop: int
    front: PartialFront
    patterns: Evaluation
    """Every row of the chunk, or the sampled ones (see `sample_mask`)."""


def objective_matrix(problem: CompiledProblem, evaluation: Evaluation) -> np.ndarray:
    """Stack the objective columns of `evaluation`: shape (n, n_objectives)."""
    return np.column_stack(
        [evaluation.metrics[name].astype(np.float64) for name in problem.objectives]
    )


def front_of(
    problem: CompiledProblem, evaluation: Evaluation, counts: np.ndarray | None = None
) -> PartialFront:
    """Return the front of the evaluated rows, sorted by the first objective."""
    values = objective_matrix(problem, evaluation)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise AllocationError(
            f"an objective is not finite for assignment #{int(evaluation.pattern_index[row])}"
            f" ({dict(zip(problem.objectives, values[row].tolist(), strict=True))})"
        )
    keep, keep_counts = pareto_front(values, evaluation.pattern_index, counts)
    return PartialFront(evaluation=evaluation.take(keep), equivalent_count=keep_counts)


def merge_fronts(problem: CompiledProblem, fronts: Iterable[PartialFront]) -> PartialFront:
    """Merge partial fronts into the front of their union; the infeasible counts add up."""
    fronts = list(fronts)
    infeasible = sum(f.infeasible_count for f in fronts)
    over_limit = [f.over_limit_count for f in fronts if f.over_limit_count is not None]
    over_limit_count = np.stack(over_limit).sum(axis=0, dtype=np.int64) if over_limit else None
    joined = Evaluation.concat([f.evaluation for f in fronts], problem.n_stages)
    if len(joined) == 0:
        return PartialFront(
            joined, np.empty(0, dtype=np.int64), infeasible, over_limit_count=over_limit_count
        )
    counts = np.concatenate([f.equivalent_count for f in fronts])
    merged = front_of(problem, joined, counts)
    return replace(merged, infeasible_count=infeasible, over_limit_count=over_limit_count)


def sample_mask(pattern_index: np.ndarray, fraction: float) -> np.ndarray:
    """Choose about `fraction` of the assignments, uniformly and deterministically.

    The choice depends on the assignment number alone (through the splitmix64 hash),
    so it does not change with chunk size, runner or worker count.
    """
    if fraction >= 1.0:
        return np.ones(len(pattern_index), dtype=bool)
    z = pattern_index.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z < sample_threshold(fraction)


def sweep_chunk(
    problem: CompiledProblem, start: int, stop: int, *, sample_fraction: float = 1.0
) -> ChunkResult:
    """Evaluate assignments ``start`` to ``stop - 1`` and keep their front.

    `sample_fraction` is the share of rows kept for patterns.parquet (1.0 keeps all).

    When every row is kept, every row is estimated by `evaluate_chunk`. Otherwise the
    compiled kernel (`allocation.kernel.screen_chunk`) picks the rows that may be on the
    front; only those and the sampled rows are estimated by `evaluate_placements`, and
    the front is the same as that of estimating every row. Problems the kernel does not
    handle are estimated by `evaluate_chunk`.

    When a device's memory limit can bind, only the assignments that fit every limit
    are estimated, and the others are counted (`PartialFront.infeasible_count`).
    """
    if problem.memory_bound_devices:
        return _sweep_chunk_with_limits(problem, start, stop, sample_fraction)
    if sample_fraction >= 1.0:
        # Every row is kept for patterns.parquet, so every row is estimated anyway and
        # the kernel would only add its compile time.
        evaluation = evaluate_chunk(problem, start, stop)
        return ChunkResult(
            start=start, stop=stop, front=front_of(problem, evaluation), patterns=evaluation
        )

    screening = screen_chunk(problem, start, stop, sample_fraction=sample_fraction)
    if screening is not None:
        candidates = _evaluate_indices(problem, screening.candidates)
        if _agrees(problem, screening, candidates):
            patterns = _evaluate_indices(problem, screening.sampled)
            return ChunkResult(
                start=start, stop=stop, front=front_of(problem, candidates), patterns=patterns
            )

    evaluation = evaluate_chunk(problem, start, stop)
    patterns = evaluation.take(sample_mask(evaluation.pattern_index, sample_fraction))
    return ChunkResult(
        start=start, stop=stop, front=front_of(problem, evaluation), patterns=patterns
    )


def _sweep_chunk_with_limits(
    problem: CompiledProblem, start: int, stop: int, sample_fraction: float
) -> ChunkResult:
    """Sweep a chunk of a problem with binding memory limits, leaving out what exceeds them."""
    assert problem.stage_memory_mb is not None and problem.device_memory_mb is not None
    indices = np.arange(start, stop, dtype=np.int64)
    placements = decode_placements(problem, indices)
    excess = memory_excess(
        problem.stage_memory_mb,
        problem.device_memory_mb,
        problem.memory_bound_devices,
        placements,
    )
    feasible = ~excess.any(axis=1)
    over_limit_count = np.zeros(problem.n_devices, dtype=np.int64)
    over_limit_count[list(problem.memory_bound_devices)] = excess.sum(axis=0)

    evaluation = _evaluate_indices(problem, indices[feasible], placements[feasible])
    if len(evaluation):
        front = front_of(problem, evaluation)
    else:
        front = PartialFront(evaluation, np.empty(0, dtype=np.int64))
    front = replace(
        front,
        infeasible_count=int(len(indices) - feasible.sum()),
        over_limit_count=over_limit_count,
    )
    patterns = evaluation.take(sample_mask(evaluation.pattern_index, sample_fraction))
    return ChunkResult(start=start, stop=stop, front=front, patterns=patterns)


def _evaluate_indices(
    problem: CompiledProblem, indices: np.ndarray, placements: np.ndarray | None = None
) -> Evaluation:
    if len(indices) == 0:
        return empty_evaluation(problem)
    if placements is None:
        placements = decode_placements(problem, indices)
    return evaluate_placements(problem, placements, indices)


def _agrees(problem: CompiledProblem, screening: Screening, candidates: Evaluation) -> bool:
    """Check the kernel's values of the candidates against `evaluate_placements`.

    A disagreement means that the kernel and the numpy estimator differ, as they would
    for a provider whose charge for a row depends on the other rows. The chunk is then
    estimated without the kernel, with a warning.
    """
    if screening.agrees_with(objective_matrix(problem, candidates)):
        return True
    warnings.warn(
        f"the compiled kernel and the numpy estimator disagree on {problem.workflow_name} "
        f"on {problem.system_name}; estimating the chunk without the kernel",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def sweep_in_process(
    problem: CompiledProblem, *, chunk_size: int = 65_536, sample_fraction: float = 1.0
) -> tuple[PartialFront, Evaluation]:
    """Sweep the whole space in this process, chunk by chunk, without Prefect.

    Returns the front, with the count of assignments that exceed a memory limit, and
    the evaluated (or sampled) patterns.
    """
    fronts = []
    patterns = []
    for start, stop in plan_chunks(problem.space_size, chunk_size=chunk_size):
        result = sweep_chunk(problem, start, stop, sample_fraction=sample_fraction)
        fronts.append(result.front)
        patterns.append(result.patterns)
    return merge_fronts(problem, fronts), Evaluation.concat(patterns, problem.n_stages)


def kernel_handles(problem: CompiledProblem, *, sample_fraction: float) -> bool:
    """Tell whether `sweep_chunk` screens this problem's chunks with the compiled kernel.

    The kernel runs only when patterns.parquet keeps a sample (`sample_fraction` below
    1) and handles the problem; screening the first assignment shows whether it does,
    and builds the price tables that the later chunks of `problem` reuse.
    """
    if sample_fraction >= 1.0 or problem.space_size == 0:
        return False
    return screen_chunk(problem, 0, 1, sample_fraction=sample_fraction) is not None


WARM_UP_ASSIGNMENTS = (1 << 15) + 1
"""Assignments `warm_up` sweeps: enough to take every branch of the front filter."""


def warm_up(problem: CompiledProblem, *, sample_fraction: float = 1.0) -> None:
    """Sweep the first assignments of `problem` once and discard the result.

    The compiled functions a sweep calls load from numba's disk cache (or compile) on
    their first call, which takes about a second. Calling this while something else
    waits, such as a server starting, keeps that second out of the sweep's own time.
    """
    sweep_chunk(
        problem, 0, min(problem.space_size, WARM_UP_ASSIGNMENTS), sample_fraction=sample_fraction
    )
