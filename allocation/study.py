"""Load the inputs of one study (a workflow on a system) and compile them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allocation.catalog import CpuCatalog, load_cpu_catalog
from allocation.compile import CompiledProblem, compile_problem
from allocation.loading import load_system, load_workflow
from allocation.model import System, Workflow

__all__ = ["CATALOG_ENV", "Study", "default_catalog_dir", "load_study"]

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
    workflow_path: str | Path, system_path: str | Path, catalog_dir: str | Path | None = None
) -> Study:
    """Read, validate and compile a workflow and a system.

    Raises
    ------
    InputError
        For anything wrong in the files or the catalog.
    """
    catalog_dir = Path(catalog_dir) if catalog_dir is not None else default_catalog_dir()
    workflow = load_workflow(workflow_path)
    system = load_system(system_path)
    catalog = load_cpu_catalog(catalog_dir / "cpus.parquet")
    problem = compile_problem(
        workflow,
        system,
        catalog,
        workflow_file=workflow_path,
        system_file=system_path,
        catalog_dir=catalog_dir,
    )
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
    return Study(workflow, system, catalog, problem, inputs)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
