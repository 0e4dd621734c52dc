"""Load the inputs of one study (a workflow on a system) and compile them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from allocation.catalog import CpuCatalog, load_cpu_catalog
from allocation.compile import CompiledProblem, compile_problem, needs_stream_metrics
from allocation.errors import InputError
from allocation.loading import (
    comparison_key,
    load_compare_file,
    load_system,
    load_workflow,
    resolve_comparisons,
)
from allocation.memory import memory_excess, no_feasible_assignment_error, some_assignment_fits
from allocation.model import Requirements, System, Workflow
from allocation.space import decode_placements

__all__ = [
    "CATALOG_ENV",
    "Study",
    "check_some_assignment_fits",
    "default_catalog_dir",
    "load_study",
]

CATALOG_ENV = "ALLOCATION_CATALOG_DIR"
"""Environment variable naming the catalog directory when --catalog is not given."""

_PACKAGED_CATALOGS = Path(__file__).resolve().parent.parent / "catalogs"


@dataclass(frozen=True)
class Study:
    """A workflow and a system, validated, with their catalog and compiled problem."""

    workflow: Workflow
    system: System
    catalog: CpuCatalog
    problem: CompiledProblem
    inputs: dict[str, Any]
    """Path and SHA-256 of every input file, for run metadata."""
    comparisons: list[tuple[str, list[str]]] = field(default_factory=list)
    """Placements to compare with the front: a name and the device id of every stage,
    from the system's ``compare`` list, then from the compare file."""
    requirements: Requirements | None = None
    """The system's ``requirements`` with the command line's limits applied over them."""


def default_catalog_dir() -> Path:
    """Return the catalog directory to use when none is given.

    In order: the directory named by ``ALLOCATION_CATALOG_DIR``; ``./catalogs`` when it
    contains a ``cpus.parquet``; the ``catalogs/`` directory of the source tree.
    """
    if os.environ.get(CATALOG_ENV):
        return Path(os.environ[CATALOG_ENV])
    local = Path("catalogs")
    if (local / "cpus.parquet").is_file():
        return local
    return _PACKAGED_CATALOGS


def load_study(
    workflow_path: str | Path,
    system_path: str | Path,
    catalog_dir: str | Path | None = None,
    *,
    compare_path: str | Path | None = None,
    requirements: Mapping[str, Any] | None = None,
) -> Study:
    """Read, validate and compile a workflow and a system.

    Parameters
    ----------
    workflow_path, system_path
        The input files.
    catalog_dir
        Folder with cpus.parquet; `default_catalog_dir` when omitted.
    compare_path
        A compare file: placements to compare with the front, after those of the system.
    requirements
        Fields of `Requirements` given on the command line; each replaces the system's.

    Raises
    ------
    InputError
        For anything wrong in the files, the catalog or the command-line requirements.
    """
    catalog_dir = Path(catalog_dir) if catalog_dir is not None else default_catalog_dir()
    workflow = load_workflow(workflow_path)
    system = load_system(system_path)
    catalog = load_cpu_catalog(catalog_dir / "cpus.parquet")
    merged = _merged_requirements(system, requirements or {})
    problem = compile_problem(
        workflow,
        system,
        catalog,
        workflow_file=workflow_path,
        system_file=system_path,
        catalog_dir=catalog_dir,
        stream_metrics=needs_stream_metrics(system.objectives, merged),
    )
    check_some_assignment_fits(workflow, system, problem, system_file=str(system_path))
    comparisons = resolve_comparisons(workflow, system, system.compare, file=system_path)
    if compare_path is not None:
        entries = load_compare_file(compare_path)
        system_names = {comparison_key(name) for name, _ in comparisons}
        for i, entry in enumerate(entries):
            if comparison_key(entry.name) in system_names:
                raise InputError(
                    "repeats the name of a placement under compare in the system file "
                    "(names are compared ignoring case and repeated spaces); give every "
                    "compared placement its own name",
                    file=compare_path,
                    field=f"compare[{i}].name",
                    value=entry.name,
                    has_value=True,
                )
        comparisons += resolve_comparisons(workflow, system, entries, file=compare_path)
    inputs = {
        "workflow": {"path": str(workflow_path), "sha256": _sha256(workflow_path)},
        "system": {"path": str(system_path), "sha256": _sha256(system_path)},
        "cpu_catalog": {"path": str(catalog.path), "sha256": catalog.sha256},
    }
    if catalog.aliases_sha256:
        inputs["cpu_aliases"] = {
            "path": str(catalog_dir / "cpu-aliases.csv"),
            "sha256": catalog.aliases_sha256,
        }
    if compare_path is not None:
        inputs["compare"] = {"path": str(compare_path), "sha256": _sha256(compare_path)}
    return Study(workflow, system, catalog, problem, inputs, comparisons, merged)


_COUNT_UP_TO = 1 << 22
"""Largest space whose assignments `check_some_assignment_fits` counts for its message."""

_COUNT_CHUNK = 65_536
"""Assignments decoded at a time while counting those over each memory limit."""


def check_some_assignment_fits(
    workflow: Workflow, system: System, problem: CompiledProblem, *, system_file: str
) -> None:
    """Reject a problem in which every assignment exceeds a device's memory limit.

    A sweep would find this only after it had estimated every chunk, so the inputs are
    checked with `allocation.memory.some_assignment_fits` before anything runs or is
    written. When that search gives up, the sweep still finds out at its end.

    Raises
    ------
    InputError
        The error of `allocation.memory.no_feasible_assignment_error`. The assignments
        over each limit are counted for its message in spaces of up to `_COUNT_UP_TO`.
        In larger ones, the device named is the one whose limit the needs of its
        possible stages exceed the most.
    """
    if not problem.memory_bound_devices:
        return
    assert problem.stage_memory_mb is not None and problem.device_memory_mb is not None
    fits = some_assignment_fits(problem.stage_memory_mb, problem.device_memory_mb, problem.allowed)
    if fits is not False:
        return
    over_limit_count: np.ndarray | None = None
    if problem.space_size <= _COUNT_UP_TO:
        devices = range(problem.n_devices)
        over_limit_count = np.zeros(problem.n_devices, dtype=np.int64)
        for start in range(0, problem.space_size, _COUNT_CHUNK):
            stop = min(start + _COUNT_CHUNK, problem.space_size)
            placements = decode_placements(problem, np.arange(start, stop, dtype=np.int64))
            excess = memory_excess(
                problem.stage_memory_mb, problem.device_memory_mb, devices, placements
            )
            over_limit_count += excess.sum(axis=0)
    raise no_feasible_assignment_error(
        workflow,
        system,
        problem.allowed,
        over_limit_count,
        problem.space_size,
        system_file=system_file,
    )


_REQUIREMENT_OPTIONS = {
    "max_latency_s": "--max-latency-s",
    "max_cost_usd": "--max-cost-usd",
    "max_monthly_cost_usd": "--max-monthly-cost-usd",
    "min_throughput_fps": "--min-throughput-fps",
    "minimise": "--minimise",
}


def _merged_requirements(system: System, overrides: Mapping[str, Any]) -> Requirements | None:
    """Apply command-line requirements over the system's; None when neither sets any."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return system.requirements
    base = (
        system.requirements.model_dump(exclude_unset=True)
        if system.requirements is not None
        else {}
    )
    try:
        merged = Requirements.model_validate({**base, **given})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        raise InputError(
            f"{_REQUIREMENT_OPTIONS.get(name, name)} is invalid: {error['msg'].lower()}; "
            "give a positive number",
            file="command line",
            field=name,
            value=given.get(name),
            has_value=name in given,
        ) from None
    if merged.minimise == "monthly_cost_usd" and system.runs_per_month is None:
        raise InputError(
            "--minimise monthly_cost_usd needs runs_per_month in the system file, which "
            f"{system.system!r} does not set; add runs_per_month or minimise another metric",
            file="command line",
            field="minimise",
            value=merged.minimise,
            has_value=True,
        )
    if merged.max_monthly_cost_usd is not None and system.runs_per_month is None:
        raise InputError(
            "--max-monthly-cost-usd needs runs_per_month in the system file, which "
            f"{system.system!r} does not set; add runs_per_month or drop the limit",
            file="command line",
            field="max_monthly_cost_usd",
            value=merged.max_monthly_cost_usd,
            has_value=True,
        )
    return merged


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
