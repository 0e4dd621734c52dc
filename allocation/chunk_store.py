"""Keep finished chunk results on disk, so that an interrupted sweep resumes.

The store of an output folder is ``<out>/.chunks/<problem key>/``, one file
``<start>-<stop>.npz`` per finished chunk. The problem key (`problem_key`) is a
SHA-256 over everything that changes a chunk's numbers, so a changed input never meets
the chunks of the old one. A file is written under a temporary name and renamed, so a
killed sweep leaves only whole files.

The store contains the chunks of one problem: opening it for a problem removes the
folders of other problems, and the sweep removes the whole store once its outputs are
written. Its size is therefore at most the results of one sweep's chunks: their fronts
and the rows kept for patterns.parquet.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from allocation import __version__
from allocation.compile import CompiledProblem
from allocation.estimate import Evaluation
from allocation.sweep import ChunkResult, PartialFront

__all__ = [
    "STORE_DIR_NAME",
    "ChunkStore",
    "has_finished_chunks",
    "plan_resumed_chunks",
    "problem_key",
]

STORE_DIR_NAME = ".chunks"

_FORMAT_VERSION = 2
"""Version of the file layout; part of the problem key."""

_CHUNK_FILE = re.compile(r"^(\d+)-(\d+)\.npz$")


def problem_key(
    problem: CompiledProblem,
    *,
    sample_fraction: float,
    inputs: Mapping[str, Any] | None = None,
) -> str:
    """Return a SHA-256 (hex) of everything that changes the results of a chunk.

    It covers the compiled arrays (stage times, transfer times, bytes, allowed devices,
    graph, memory needs and limits), the ids, the objectives, ``runs_per_month``, every
    provider's `describe()` (options, price table hash and rows), `sample_fraction`,
    the ``sha256`` of every input file in `inputs` (as in
    `allocation.study.Study.inputs`), the version of allocation and the store's file
    layout.

    NOTE: a third-party provider whose `describe()` leaves out data that changes its
    prices (such as a table it reads) is covered only through the input files' hashes.
    """
    digest = hashlib.sha256()
    header = {
        "format": _FORMAT_VERSION,
        "allocation": __version__,
        "workflow": problem.workflow_name,
        "system": problem.system_name,
        "stages": list(problem.stage_ids),
        "devices": list(problem.device_ids),
        "objectives": list(problem.objectives),
        "runs_per_month": problem.runs_per_month,
        "undirected_forest": problem.undirected_forest,
        "memory_bound_devices": list(problem.memory_bound_devices),
        "stream_metrics": problem.stream_metrics,
        "pricing": [
            {"device": p.device_id, "provider": p.provider_name, **p.provider.describe()}
            for p in problem.priced
        ],
        "sample_fraction": float(sample_fraction).hex(),
        "inputs": {name: entry.get("sha256") for name, entry in sorted((inputs or {}).items())},
    }
    if problem.contention is not None:
        header["contention"] = problem.contention.describe()
    digest.update(json.dumps(header, sort_keys=True, default=str).encode("utf-8"))
    arrays = [
        problem.stage_time_s,
        problem.radices,
        problem.edge_source,
        problem.edge_target,
        problem.edge_bytes,
        problem.edge_transfer_s,
        problem.topo_order,
        *problem.allowed,
        *problem.incoming,
    ]
    if problem.stage_memory_mb is not None and problem.device_memory_mb is not None:
        arrays += [problem.stage_memory_mb, problem.device_memory_mb]
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def has_finished_chunks(out_dir: Path) -> bool:
    """Return whether the chunk store under `out_dir` contains a finished chunk."""
    root = Path(out_dir) / STORE_DIR_NAME
    if not root.is_dir():
        return False
    return any(
        _CHUNK_FILE.match(entry.name)
        for folder in root.iterdir()
        if folder.is_dir()
        for entry in folder.iterdir()
    )


class ChunkStore:
    """The finished chunks of one problem under an output folder.

    Parameters
    ----------
    out_dir
        The sweep's output folder.
    key
        The problem key (`problem_key`).
    """

    def __init__(self, out_dir: Path, key: str) -> None:
        self.root = Path(out_dir) / STORE_DIR_NAME
        self.key = key
        self.path = self.root / key

    def open(self) -> None:
        """Create the folder and remove the chunks of other problems."""
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name != self.key:
                    _remove(entry)
        self.path.mkdir(parents=True, exist_ok=True)

    def finished(self) -> list[tuple[int, int]]:
        """Return the ``(start, stop)`` ranges of the stored chunks, sorted."""
        if not self.path.is_dir():
            return []
        ranges = []
        for entry in self.path.iterdir():
            match = _CHUNK_FILE.match(entry.name)
            if match:
                ranges.append((int(match.group(1)), int(match.group(2))))
        return sorted(ranges)

    def load(self, start: int, stop: int, n_stages: int) -> ChunkResult | None:
        """Read a stored chunk; None when it is missing or cannot be read."""
        path = self.path / f"{start}-{stop}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, KeyError, EOFError):
            return None
        try:
            front = _evaluation(arrays, "front", n_stages)
            patterns = _evaluation(arrays, "patterns", n_stages)
            counts = arrays["front.equivalent_count"]
            infeasible_count = int(arrays["front.infeasible_count"])
            over_limit_count = arrays.get("front.over_limit_count")
        except KeyError:
            return None
        return ChunkResult(
            start=start,
            stop=stop,
            front=PartialFront(
                evaluation=front,
                equivalent_count=counts,
                infeasible_count=infeasible_count,
                over_limit_count=over_limit_count,
            ),
            patterns=patterns,
        )

    def save(self, result: ChunkResult) -> None:
        """Write a chunk result under a temporary name, then rename it into place."""
        arrays: dict[str, np.ndarray] = {
            "front.equivalent_count": result.front.equivalent_count,
            "front.infeasible_count": np.array(result.front.infeasible_count, dtype=np.int64),
        }
        if result.front.over_limit_count is not None:
            arrays["front.over_limit_count"] = result.front.over_limit_count
        for prefix, evaluation in (
            ("front", result.front.evaluation),
            ("patterns", result.patterns),
        ):
            arrays[f"{prefix}.pattern_index"] = evaluation.pattern_index
            arrays[f"{prefix}.placements"] = evaluation.placements
            for name, values in evaluation.metrics.items():
                arrays[f"{prefix}.metric.{name}"] = values
        handle, temporary = tempfile.mkstemp(suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, allow_pickle=False, **arrays)
            os.replace(temporary, self.path / f"{result.start}-{result.stop}.npz")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        """Remove the whole store of the output folder."""
        _remove(self.root)


def _evaluation(arrays: dict[str, np.ndarray], prefix: str, n_stages: int) -> Evaluation:
    marker = f"{prefix}.metric."
    metrics = {
        name[len(marker) :]: values for name, values in arrays.items() if name.startswith(marker)
    }
    placements = arrays[f"{prefix}.placements"]
    if placements.ndim != 2 or placements.shape[1] != n_stages:
        raise KeyError(f"{prefix}.placements")
    return Evaluation(
        pattern_index=arrays[f"{prefix}.pattern_index"], placements=placements, metrics=metrics
    )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def plan_resumed_chunks(
    space_size: int, chunk_size: int, finished: list[tuple[int, int]]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split the space into stored chunks to reuse and new chunks to evaluate.

    Stored chunks are reused when they lie within the space and do not overlap a chunk
    already chosen (in order of start). The gaps between them are cut into chunks of
    at most `chunk_size`, so a sweep resumes from chunks of any earlier chunk size.

    Returns
    -------
    reused, todo : list of (start, stop)
    """
    reused: list[tuple[int, int]] = []
    covered_to = 0
    for start, stop in sorted(finished):
        if start >= covered_to and start < stop <= space_size:
            reused.append((start, stop))
            covered_to = stop
    todo: list[tuple[int, int]] = []
    position = 0
    for start, stop in [*reused, (space_size, space_size)]:
        for begin in range(position, start, chunk_size):
            todo.append((begin, min(begin + chunk_size, start)))
        position = stop
    return reused, todo
