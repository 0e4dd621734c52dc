"""Chunked sweep: estimate a chunk, keep its front, merge fronts; no orchestration.

`sweep_chunk` is a pure function of a compiled problem and an index range, so it runs
the same in a thread, a process, a cluster worker or a test. `merge_fronts` is
associative: merging partial fronts in any grouping gives the same exact front.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from allocation.compile import CompiledProblem
from allocation.errors import AllocationError
from allocation.estimate import Evaluation, evaluate_chunk
from allocation.pareto import pareto_front
from allocation.space import plan_chunks

__all__ = [
    "ChunkResult",
    "PartialFront",
    "front_of",
    "merge_fronts",
    "objective_matrix",
    "sample_mask",
    "sweep_chunk",
    "sweep_in_process",
]


@dataclass(frozen=True)
class PartialFront:
    """The front of part of the space: representatives and how many each stands for."""

    evaluation: Evaluation
    equivalent_count: np.ndarray
    """(m,) int64 number of assignments equivalent to each representative."""

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
    """Merge partial fronts into the front of their union."""
    fronts = list(fronts)
    joined = Evaluation.concat([f.evaluation for f in fronts], problem.n_stages)
    if len(joined) == 0:
        return PartialFront(joined, np.empty(0, dtype=np.int64))
    counts = np.concatenate([f.equivalent_count for f in fronts])
    return front_of(problem, joined, counts)


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
    threshold = np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))
    return z < threshold


def sweep_chunk(
    problem: CompiledProblem, start: int, stop: int, *, sample_fraction: float = 1.0
) -> ChunkResult:
    """Evaluate assignments ``start`` to ``stop - 1`` and keep their front.

    `sample_fraction` is the share of rows kept for patterns.parquet (1.0 keeps all).
    """
    evaluation = evaluate_chunk(problem, start, stop)
    front = front_of(problem, evaluation)
    if sample_fraction >= 1.0:
        patterns = evaluation
    else:
        patterns = evaluation.take(sample_mask(evaluation.pattern_index, sample_fraction))
    return ChunkResult(start=start, stop=stop, front=front, patterns=patterns)


def sweep_in_process(
    problem: CompiledProblem, *, chunk_size: int = 65_536, sample_fraction: float = 1.0
) -> tuple[PartialFront, Evaluation]:
    """Sweep the whole space in this process, chunk by chunk, without Prefect.

    Returns the front and the evaluated (or sampled) patterns.
    """
    fronts = []
    patterns = []
    for start, stop in plan_chunks(problem.space_size, chunk_size=chunk_size):
        result = sweep_chunk(problem, start, stop, sample_fraction=sample_fraction)
        fronts.append(result.front)
        patterns.append(result.patterns)
    return merge_fronts(problem, fronts), Evaluation.concat(patterns, problem.n_stages)
