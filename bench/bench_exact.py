"""The exact method on spaces far past enumeration: 30-stage chains and DAGs on 4 devices.

The problems are those of the exact method's tests (`tests.problems.chain_problem` and
`branching_problem`): an edge device, a gateway, a cloud device billed by `flat` and one
billed by `aws-lambda`. A DAG keeps at most 3 branches open at once. Each seed is timed
warm (numba compiled), as the median of the repeats.
"""

from __future__ import annotations

from pathlib import Path

from allocation.catalog import CpuCatalog
from allocation.compile import compile_problem
from allocation.exact import exact_front
from bench.common import Settings, Table, format_seconds, median_time_s
from tests.problems import EMPTY_CATALOG, branching_problem, chain_problem

REPO = Path(__file__).resolve().parent.parent

N_STAGES = 30
SEEDS = range(10)


def _problem(shape: str, n_stages: int, seed: int):
    build = chain_problem if shape == "chain" else branching_problem
    workflow, system = build(n_stages, seed)
    catalog: CpuCatalog = EMPTY_CATALOG
    return compile_problem(workflow, system, catalog, catalog_dir=REPO / "catalogs")


def run(settings: Settings) -> list[Table]:
    """Time the exact method on every seed of a 30-stage chain and a 30-stage DAG."""
    n_stages = 12 if settings.quick else N_STAGES
    seeds = range(2) if settings.quick else SEEDS
    table = Table(
        title=f"Exact method: {n_stages}-stage workflows on 4 devices (warm, median)",
        columns=["workflow", "seed", "assignments", "front points", "median time"],
    )
    for shape, label in (("chain", "chain"), ("dag", "DAG, at most 3 branches open")):
        times = []
        for seed in seeds:
            problem = _problem(shape, n_stages, seed)
            exact_front(problem)  # compile, and warm the caches
            median_s, _, front = median_time_s(lambda p=problem: exact_front(p), settings.repeats)
            times.append(median_s)
            table.rows.append(
                [label, seed, f"{problem.space_size:.3g}", len(front), format_seconds(median_s)]
            )
        table.facts[f"{shape} worst s"] = max(times)
        table.notes.append(
            f"{label}: slowest seed {format_seconds(max(times))}, "
            f"fastest {format_seconds(min(times))}."
        )
    return [table]
