"""Sweeps with the opt-in model features on, as ratios to the same problem without them.

Each feature is switched on alone on the chain of `bench_engine.chain_models`, and
contention on a DAG whose parallel branches have the same number of stages. The sweeps
run through `allocation.sweep.sweep_in_process` with no patterns kept, so the compiled
kernel screens the chunks wherever it applies. The Monte Carlo runs on the 3^11 example
with the ±20 % uncertainty file, against one front of the nominal inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import BaseModel

from allocation.compile import CompiledProblem, compile_problem
from allocation.exact import choose_method
from allocation.model import System, Workflow
from allocation.results import candidate_labels, front_table
from allocation.robustness import (
    ROW_BY_ROW_UP_TO,
    front_of_space,
    perturbed_problem,
    run_monte_carlo,
)
from allocation.study import load_study
from allocation.sweep import WARM_UP_ASSIGNMENTS, kernel_handles, sweep_in_process, warm_up
from allocation.uncertainty import load_uncertainty
from bench.bench_engine import ENGINES, REPO, chain_models
from bench.common import Settings, Table, format_rate, format_seconds, median_time_s
from tests.problems import EMPTY_CATALOG

TITLE = "Features"

N_DEVICES = 4

STAGE_MEMORY_MB = 200.0
DEVICE_MEMORY_MB = {"d0": 600.0, "d1": 1000.0}
"""Memory limits of the memory case: d0 fits 3 stages at once and d1 fits 5."""

MIN_THROUGHPUT_FPS = 5.0

UNCERTAINTY_FILE = REPO / "catalogs/uncertainty/twenty-percent.yaml"
QUICK_SAMPLES = 10

# The function bench_engine times, with the chunk size the sweep flow picks.
_SWEEP = ENGINES["sweep_in_process"]

BASELINE = "1 (baseline)"


@dataclass
class _Case:
    key: str
    label: str
    problem: CompiledProblem
    baseline: str
    """Key of the case this one is compared with, which is its own key for a baseline."""


def with_changes(model: BaseModel, **changes: Any) -> Any:
    """Validate a copy of a workflow or system with some top-level fields replaced."""
    fields = model.model_dump(by_alias=True, exclude_none=True, warnings=False)
    return type(model).model_validate({**fields, **changes})


def fork_join_models(n_branches: int, branch_stages: int) -> tuple[Workflow, System]:
    """Build a source, `n_branches` parallel branches of `branch_stages` stages, and a sink.

    The stages and the devices are those of `chain_models` with the same number of
    stages. Every branch passes the data sizes of the chain's first edges.
    """
    n_stages = 2 + n_branches * branch_stages
    workflow, system = chain_models(n_stages, N_DEVICES)
    chain_bytes = [edge.bytes for edge in workflow.edges]
    sink = f"s{n_stages - 1}"
    edges = []
    for b in range(n_branches):
        branch = [f"s{1 + b * branch_stages + k}" for k in range(branch_stages)]
        for k, (u, v) in enumerate(zip(["s0", *branch], [*branch, sink], strict=True)):
            edges.append({"from": u, "to": v, "bytes": chain_bytes[k]})
    name = f"fork-join-{n_branches}x{branch_stages}"
    return with_changes(workflow, workflow=name, edges=edges), system


def _compile(workflow: Workflow, system: System) -> CompiledProblem:
    return compile_problem(workflow, system, EMPTY_CATALOG)


def chain_cases(n_stages: int) -> list[_Case]:
    """Build the chain without features and with each feature on alone."""
    workflow, system = chain_models(n_stages, N_DEVICES)
    workflow_fields = workflow.model_dump(by_alias=True, exclude_none=True, warnings=False)
    system_fields = system.model_dump(by_alias=True, exclude_none=True, warnings=False)

    stages = [{**stage, "memory_mb": STAGE_MEMORY_MB} for stage in workflow_fields["stages"]]
    devices = [
        {**device, "memory_mb": DEVICE_MEMORY_MB[device["id"]]}
        if device["id"] in DEVICE_MEMORY_MB
        else device
        for device in system_fields["devices"]
    ]
    memory = _compile(with_changes(workflow, stages=stages), with_changes(system, devices=devices))
    assert memory.memory_bound_devices, "the memory limits of the memory case must bind"

    shape = f"{n_stages}-stage chain on {N_DEVICES} devices"
    objectives = [*system.objectives, "period_s"]
    return [
        _Case("a", f"(a) {shape}, no features", _compile(workflow, system), "a"),
        _Case("b", f"(b) {shape}, memory limits that bind", memory, "a"),
        _Case(
            "c",
            f"(c) {shape}, objectives {', '.join(objectives)}",
            _compile(workflow, with_changes(system, objectives=objectives)),
            "a",
        ),
        _Case(
            "d",
            f"(d) {shape}, contention with concurrent_frames 2",
            _compile(workflow, with_changes(system, contention={"concurrent_frames": 2})),
            "a",
        ),
        _Case(
            "e",
            f"(e) {shape}, min_throughput_fps {MIN_THROUGHPUT_FPS:g}",
            _compile(
                workflow,
                with_changes(system, requirements={"min_throughput_fps": MIN_THROUGHPUT_FPS}),
            ),
            "a",
        ),
    ]


def dag_cases(n_branches: int, branch_stages: int) -> list[_Case]:
    """Build the fork-join DAG without and with contention."""
    workflow, system = fork_join_models(n_branches, branch_stages)
    n_stages = 2 + n_branches * branch_stages
    shape = (
        f"{n_stages}-stage DAG, {n_branches} parallel branches of {branch_stages} stages, "
        f"on {N_DEVICES} devices"
    )
    return [
        _Case("f", f"(f) {shape}, no contention", _compile(workflow, system), "f"),
        _Case(
            "g",
            f"(g) {shape}, contention on",
            _compile(workflow, with_changes(system, contention={})),
            "f",
        ),
    ]


def sweep_path(problem: CompiledProblem) -> str:
    """Name the path `sweep_chunk` takes with no patterns kept: kernel or vectorised."""
    return "kernel" if kernel_handles(problem, sample_fraction=0.0) else "vectorised"


def time_sweep(problem: CompiledProblem, settings: Settings) -> tuple[float, Any] | None:
    """Return the median time of a sweep and its result, or None past the time limit.

    A first call of `warm_up` loads the compiled code; a second, timed, call gives the
    rate from which the whole sweep's time is extrapolated. One untimed sweep precedes
    the timed ones, as in `bench_engine`, because a whole sweep calls compiled
    functions that the first assignments do not reach.
    """
    warm_up(problem, sample_fraction=0.0)
    probe_s, _, _ = median_time_s(lambda: warm_up(problem, sample_fraction=0.0), 1)
    probe_assignments = min(problem.space_size, WARM_UP_ASSIGNMENTS)
    if probe_s * problem.space_size / probe_assignments > settings.time_limit_s:
        return None
    _SWEEP(problem)
    median_s, _, result = median_time_s(lambda: _SWEEP(problem), settings.repeats)
    return median_s, result


def front_path(problem: CompiledProblem, method: str) -> str:
    """Name the path `front_of_space` takes: exact, kernel or vectorised."""
    if method == "exact":
        return "exact"
    if problem.space_size <= ROW_BY_ROW_UP_TO:
        return "vectorised"
    return sweep_path(problem)


def nominal_sample(problem: CompiledProblem, system: System) -> CompiledProblem:
    """Return a Monte Carlo sample's problem with every factor 1.

    Its arrays equal those of `problem`, and every provider is wrapped in a
    `ScaledProvider` as in every sample, so `kernel_handles` tests the same providers
    as in a sample.
    """
    return perturbed_problem(
        problem,
        system,
        stage_factors=np.ones(problem.n_stages),
        bandwidth_factors=np.ones(len(system.links)),
        price_factors=np.ones(len(problem.priced)),
    )


def run(settings: Settings) -> list[Table]:
    """Time sweeps with each opt-in feature against the same problem without it."""
    chain_stages = 9 if settings.quick else 11
    branch_stages = 2 if settings.quick else 3
    cases = chain_cases(chain_stages) + dag_cases(3, branch_stages)
    table = Table(
        title="Opt-in features: sweep time against the same problem without them (warm, median)",
        columns=["case", "assignments", "path", "seconds", "assignments per s", "ratio"],
    )

    # Sweeps of the chain and the DAG, each feature against its baseline.
    table.facts["chain stages"] = chain_stages
    times_s: dict[str, float] = {}
    for case in cases:
        problem = case.problem
        path = sweep_path(problem)
        timed = time_sweep(problem, settings)
        assignments = f"{problem.space_size:,}"
        if timed is None:
            table.rows.append([case.label, assignments, path, "skipped: too slow", "", ""])
            continue
        median_s, (front, _) = timed
        times_s[case.key] = median_s
        ratio = _ratio(times_s, case)
        if case.baseline == case.key:
            ratio_cell = BASELINE
        elif ratio is None:
            ratio_cell = "baseline skipped"
        else:
            ratio_cell = f"{ratio:.2f}"
        table.rows.append(
            [
                case.label,
                assignments,
                path,
                format_seconds(median_s),
                format_rate(problem.space_size / median_s),
                ratio_cell,
            ]
        )
        table.facts.update({f"{case.key} s": median_s, f"{case.key} path": path})
        if ratio is not None:
            table.facts[f"{case.key} ratio"] = ratio
        if case.key == "b":
            table.facts["b left out"] = front.infeasible_count

    _monte_carlo(table, settings)
    table.notes += _notes(table.facts, chain_stages, branch_stages)
    return [table]


def _monte_carlo(table: Table, settings: Settings) -> None:
    """Time one front of the 3^11 example and a Monte Carlo run over its candidates."""
    study = load_study(
        REPO / "catalogs/workflows/style-transfer.yaml",
        REPO / "catalogs/systems/edge-gateway-cloud.yaml",
        REPO / "catalogs",
    )
    problem, system = study.problem, study.system
    method, _ = choose_method(problem, "auto")
    front, _ = sweep_in_process(problem, sample_fraction=0.0)
    candidates = front_table(problem, front)
    candidates.insert(0, "label", candidate_labels(len(candidates)))
    uncertainty = load_uncertainty(UNCERTAINTY_FILE)

    def monte_carlo(samples: int) -> Callable[[], Any]:
        sized = replace(uncertainty, spec=uncertainty.spec.model_copy(update={"samples": samples}))
        return lambda: run_monte_carlo(
            problem, system, candidates, sized, requirements=study.requirements, method=method
        )

    # One front of the nominal inputs, which every sample computes for its own inputs.
    front_of_space(problem, method)
    front_s, _, _ = median_time_s(lambda: front_of_space(problem, method), settings.repeats)
    table.rows.append(
        [
            "(h) style-transfer on edge-gateway-cloud (3^11), one front of the nominal inputs",
            f"{problem.space_size:,}",
            front_path(problem, method),
            format_seconds(front_s),
            format_rate(problem.space_size / front_s),
            BASELINE,
        ]
    )

    # A one-sample run warms up and sets how many samples fit in the time limit.
    one_s, _, _ = median_time_s(monte_carlo(1), 1)
    file_samples = uncertainty.spec.samples
    requested = min(file_samples, QUICK_SAMPLES) if settings.quick else file_samples
    samples = max(1, min(requested, math.floor(settings.time_limit_s / one_s)))
    total_s, _, _ = median_time_s(monte_carlo(samples), settings.repeats)
    per_sample_s = total_s / samples
    sample_path = front_path(nominal_sample(problem, system), method)
    table.rows.append(
        [
            f"(i) Monte Carlo over the {len(candidates)} candidates of (h), per sample",
            f"{problem.space_size:,}",
            sample_path,
            format_seconds(per_sample_s),
            format_rate(problem.space_size / per_sample_s),
            f"{per_sample_s / front_s:.2f}",
        ]
    )
    table.facts.update(
        {
            "h s": front_s,
            "i samples": samples,
            "i file samples": file_samples,
            "i total s": total_s,
            "i s per sample": per_sample_s,
            "i samples per minute": 60.0 / per_sample_s,
            "i ratio": per_sample_s / front_s,
            "i path": sample_path,
            "i candidates": len(candidates),
        }
    )


def _ratio(times_s: dict[str, float], case: _Case) -> float | None:
    if case.baseline == case.key:
        return 1.0
    if case.baseline not in times_s:
        return None
    return times_s[case.key] / times_s[case.baseline]


def _notes(facts: dict[str, Any], chain_stages: int, branch_stages: int) -> list[str]:
    notes = [
        "Ratio: the case's time over its baseline's time, measured in the same run, so 2.00 "
        "means twice as slow. The sweeps are `sweep_in_process` with sample_fraction 0 and "
        "the chunk size the sweep flow picks. Path: `kernel` when "
        "`allocation.sweep.kernel_handles` accepts the problem, `vectorised` otherwise "
        "(`allocation.estimate` in NumPy on every assignment, or on every one within the "
        "memory limits).",
        f"(a) to (e): the {chain_stages}-stage chain of `bench_engine.chain_models`. "
        f"(b) gives every stage {STAGE_MEMORY_MB:g} MB and limits d0 to "
        f"{DEVICE_MEMORY_MB['d0']:g} MB and d1 to {DEVICE_MEMORY_MB['d1']:g} MB, so that "
        "assignments with more than 3 stages on d0 or more than 5 on d1 are left out"
        + (f" ({facts['b left out']:,} of them)." if "b left out" in facts else ".")
        + " (c) adds period_s to the objectives, which makes the front 3-D. (d) sets "
        "`contention: {concurrent_frames: 2}`. No two stages of a chain run at once, so "
        "compilation folds the factors into the time arrays. (e) sets "
        f"`requirements: {{min_throughput_fps: {MIN_THROUGHPUT_FPS:g}}}`, which adds the "
        "stream's columns to the estimated rows but no objective.",
        f"(f) and (g): a source, 3 parallel branches of {branch_stages} stages and a sink, "
        "with the stages and devices of `chain_models`. (g) adds `contention: {}` (cores "
        "and links shared, one frame): stages of different branches may share a device, "
        "so every assignment's times are computed anew.",
    ]
    if "i samples" in facts:
        samples = f"{facts['i samples']:,} samples"
        if facts["i samples"] != facts["i file samples"]:
            samples += f" (the file sets {facts['i file samples']:,})"
        notes.append(
            "(h) and (i): style-transfer on edge-gateway-cloud, by the method `--method "
            "auto` chooses. (h) is one front of the whole space (`front_of_space`). (i) is "
            f"`run_monte_carlo` with catalogs/uncertainty/twenty-percent.yaml, {samples}: "
            f"{format_seconds(facts['i total s'])} in all, "
            f"{format_seconds(facts['i s per sample'])} per sample, "
            f"{facts['i samples per minute']:,.0f} samples per minute. Each sample builds "
            "its perturbed problem, finds its front and checks every candidate against it. "
            "(h) reuses the kernel's price tables of its problem from the first call, "
            "while each sample is a new problem and builds them again."
        )
    return notes
