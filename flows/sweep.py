"""The `sweep` flow: load, compile, plan chunks, map a chunk task, merge, publish.

The flow is thin: every step calls a plain function of `allocation`. Chunks run on the
runner of `allocation.runners` (threads, processes, Dask or Ray), which receives the
engine's chunk function, index bounds and the compiled problem (a few kilobytes), never
pattern arrays. Prefect stays on this process, so workers need no Prefect API server.
Finished chunks are kept in the output folder's chunk store (`allocation.chunk_store`)
until the outputs are written, so the same command resumes an interrupted sweep.
"""

from __future__ import annotations

import base64
import math
import os
import platform
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from allocation.charts import (
    breakdown_chart,
    chart_png,
    placement_chart,
    tradeoff_chart,
    write_chart_html,
)
from allocation.chunk_store import ChunkStore, plan_resumed_chunks, problem_key
from allocation.compile import CompiledProblem
from allocation.estimate import Evaluation
from allocation.exact import EXACT_SAMPLE, choose_method, exact_front, sample_assignments
from allocation.explain import (
    LIMIT_METRICS,
    breakdown_tables,
)
from allocation.memory import left_out_sentence, no_feasible_assignment_error
from allocation.outputs import share_link, staged_output, write_json, write_parquet
from allocation.progress import ProgressLine
from allocation.report import (
    candidates_artifact_rows,
    render_report_md,
    render_summary_markdown,
)
from allocation.report_html import ChartEmbed, embed_pngs_in_markdown, render_report_html
from allocation.results import (
    SweepSummary,
)
from allocation.robustness import Robustness, run_monte_carlo
from allocation.runners import DEFAULT_RUNNER, ChunkRunner, open_runner
from allocation.study import load_study
from allocation.summary import summarise
from allocation.sweep import PartialFront, kernel_handles, merge_fronts
from allocation.uncertainty import check_stage_overrides, load_uncertainty

__all__ = ["SweepOutcome", "artifact_key", "choose_chunk_size", "sweep", "use_shared_runner"]

MIN_CHUNK = 65_536
"""Smallest chunk: a finer split only adds per-chunk work (merging, the chunk store)."""

MAX_CHUNK = 1 << 20
"""Largest chunk estimated row by row: bounds the memory of one task to a few hundred MB.
Chunks screened by the compiled kernel need memory for their candidates only, and may be
larger when the runner's overhead asks for it."""

TARGET_TASKS = 64

MAX_OVERHEAD_SHARE = 0.05
"""Largest share of a chunk's wall time that the runner's per-task overhead may take."""

ESTIMATED_RATE_PER_S = {"kernel": 1e8, "numpy": 1e6}
"""Assignments one worker estimates per second, screened by the compiled kernel or
estimated row by row: the larger figures measured on the examples (2 cores, see
docs/benchmarks.md), so that chunk sizes err on the large side."""


@dataclass
class SweepOutcome:
    """Result of a sweep flow run, which the CLI prints."""

    out_dir: Path
    files: list[str]
    space_size: int
    candidates: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    timings_s: dict[str, float] = field(default_factory=dict)
    patterns_written: int = 0
    patterns_sampled: bool = False
    recommended: str | None = None
    recommendation: str = ""
    memory_note: str = ""
    """How many assignments exceed a memory limit and are left out; empty when none."""
    robustness: str = ""
    """One sentence on the recommended candidate's Monte Carlo shares; empty without one."""


def choose_chunk_size(
    space_size: int, *, task_overhead_s: float = 0.0, rate_per_s: float = 1e6
) -> int:
    """Split the space into about `TARGET_TASKS` chunks within the chunk limits.

    A chunk is also large enough that a runner's per-task overhead (`task_overhead_s`)
    stays under `MAX_OVERHEAD_SHARE` of its time, for a worker that estimates
    `rate_per_s` assignments per second; this bound wins over `MAX_CHUNK`.
    """
    balanced = min(MAX_CHUNK, max(MIN_CHUNK, math.ceil(space_size / TARGET_TASKS)))
    keep_share = (1.0 - MAX_OVERHEAD_SHARE) / MAX_OVERHEAD_SHARE
    overhead_bound = math.ceil(task_overhead_s * rate_per_s * keep_share)
    return int(max(balanced, overhead_bound))


def artifact_key(kind: str, workflow: str, system: str) -> str:
    """Return a Prefect artifact key (``^[a-z0-9-]+$``), stable per workflow and system."""
    text = f"{kind}-{workflow}--{system}".lower()
    return re.sub(r"[^a-z0-9-]+", "-", text).strip("-")[:200]


@task(name="exact-front", cache_policy=NO_CACHE, persist_result=False)
def exact_front_task(problem: CompiledProblem) -> PartialFront:
    """Build the front with the exact method, without enumerating the assignments."""
    return exact_front(problem)


@task(name="monte-carlo", cache_policy=NO_CACHE, persist_result=False)
def monte_carlo_task(summary: SweepSummary, uncertainty_path: str, method: str) -> Robustness:
    """Check the front's candidates against the fronts of perturbed inputs."""
    logger = get_run_logger()
    problem = summary.problem
    uncertainty = load_uncertainty(uncertainty_path)
    check_stage_overrides(uncertainty, problem.stage_ids, workflow=problem.workflow_name)
    samples = uncertainty.spec.samples
    logger.info(
        "Monte Carlo: %d samples, each the front of %d assignments by the %s method; seed %d",
        samples,
        problem.space_size,
        method,
        uncertainty.spec.seed,
    )
    last_logged_s = 0.0

    def log_progress(done: int, elapsed_s: float) -> None:
        nonlocal last_logged_s
        # At most one line every 10 s, and always the last.
        if done == samples or elapsed_s - last_logged_s >= 10.0:
            logger.info("Monte Carlo: %d of %d samples in %.1f s", done, samples, elapsed_s)
            last_logged_s = elapsed_s

    robustness = run_monte_carlo(
        problem,
        summary.system,
        summary.candidates,
        uncertainty,
        requirements=summary.requirements,
        method=method,
        progress=log_progress,
    )
    logger.info("Monte Carlo: %s", robustness.sentence())
    return robustness


def _remove_chunk_store(flow: Any, flow_run: Any, state: Any) -> None:
    """Remove the chunk store of a sweep that failed with an error.

    An error would recur on a rerun, and a failed sweep leaves its output folder as it
    was. A sweep that is killed or interrupted (a crash to Prefect) keeps its chunks.
    """
    store = _stores_by_flow_run.pop(str(flow_run.id), None)
    if store is not None:
        store.remove()


_stores_by_flow_run: dict[str, ChunkStore] = {}


@flow(
    name="sweep",
    persist_result=False,
    # The exact method's task runs here; chunks run on a runner of allocation.runners.
    task_runner=ThreadPoolTaskRunner(max_workers=os.cpu_count() or 1),
    on_failure=[_remove_chunk_store],
)
def sweep(
    workflow_path: str,
    system_path: str,
    catalog_dir: str | None = None,
    out_dir: str | None = None,
    chunk_size: int | None = None,
    max_patterns: int = 1_000_000,
    show_progress: bool = False,
    compare_path: str | None = None,
    requirements: dict[str, Any] | None = None,
    explain: list[str] | None = None,
    share_url: str | None = None,
    method: str = "auto",
    runner: str = DEFAULT_RUNNER,
    workers: int | None = None,
    runner_address: str | None = None,
    uncertainty_path: str | None = None,
) -> SweepOutcome:
    """Find the exact Pareto front of a workflow on a system and write the outputs.

    Parameters
    ----------
    workflow_path, system_path
        The input files (YAML or JSON).
    catalog_dir
        Folder with cpus.parquet; see `allocation.study.default_catalog_dir`.
    out_dir
        Output folder; default ``results/<workflow>--<system>``.
    chunk_size
        Assignments per task; chosen from the space size when omitted.
    max_patterns
        Rows of patterns.parquet; a larger space is sampled uniformly.
    show_progress
        Draw a progress line on the terminal.
    compare_path
        A compare file: placements to compare with the front (docs/guide.md).
    requirements
        Limits and the metric to minimise (the fields of the system's `requirements`),
        each replacing the system's own.
    explain
        Extra pairs of candidate labels to explain, such as ``["A:D"]``; neighbouring
        candidates are always explained.
    share_url
        Where the output folder is shared (a URL or a path); a link artifact then
        points to report.html there.
    method
        "exhaustive" enumerates every assignment; "exact" builds the front without
        enumerating where that is exact; "auto" picks by space size
        (`allocation.exact.choose_method`).
    runner, workers, runner_address
        Where chunks run: a name of `allocation.runners.RUNNER_NAMES`, the workers of
        a pool or cluster started here, and a Dask or Ray cluster to join instead
        (`allocation.runners.open_runner`). Ignored while `use_shared_runner` is active.
    uncertainty_path
        An uncertainty file (docs/robustness.md): run a Monte Carlo over the front's
        candidates and write robustness.parquet and the report's Robustness section.
    """
    logger = get_run_logger()
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # Load and compile.
    study = load_study(
        workflow_path,
        system_path,
        catalog_dir,
        compare_path=compare_path,
        requirements=requirements,
    )
    report_link = share_link(share_url, "report.html")
    problem = study.problem
    timings["load_compile_s"] = time.perf_counter() - started
    space_size = problem.space_size
    target = (
        Path(out_dir)
        if out_dir
        else Path("results") / f"{problem.workflow_name}--{problem.system_name}"
    )

    # Plan.
    mark = time.perf_counter()
    chosen_method, method_reason = choose_method(problem, method)
    kept = max_patterns if chosen_method == "exhaustive" else min(max_patterns, EXACT_SAMPLE)
    sample_fraction = 1.0 if space_size <= kept else kept / space_size
    timings["plan_s"] = time.perf_counter() - mark
    logger.info("Method: %s, because %s", chosen_method, method_reason)
    chunks: list[tuple[int, int]] = []
    size = 0
    chunk_counts = {"reused": 0, "computed": 0}
    runner_settings: dict[str, Any] = {}

    # Estimate: chunks in parallel, fronts merged as they finish; or the exact method.
    mark = time.perf_counter()
    progress_id = create_progress_artifact(
        0.0,
        key=artifact_key("progress", problem.workflow_name, problem.system_name),
        description=f"Share of the {space_size:,} assignments estimated",
    )
    if chosen_method == "exact":
        front = exact_front_task(problem)
        pattern_parts = [sample_assignments(problem, min(max_patterns, EXACT_SAMPLE))]
        update_progress_artifact(progress_id, 100.0)
    else:
        store = ChunkStore(
            target, problem_key(problem, sample_fraction=sample_fraction, inputs=study.inputs)
        )
        _stores_by_flow_run[str(flow_run.id)] = store
        with _runner_for(runner, workers, runner_address) as chunk_runner:
            rate = ESTIMATED_RATE_PER_S[
                "kernel" if kernel_handles(problem, sample_fraction=sample_fraction) else "numpy"
            ]
            size = chunk_size or choose_chunk_size(
                space_size, task_overhead_s=chunk_runner.task_overhead_s, rate_per_s=rate
            )
            runner_settings = chunk_runner.describe()
            estimate = _estimate_chunks(
                problem,
                chunk_runner,
                store,
                size,
                sample_fraction,
                progress_id,
                show_progress=show_progress,
            )
        front, pattern_parts, chunks, chunk_counts, timings["merge_s"] = estimate
        if len(front) == 0 and front.over_limit_count is not None:
            store.remove()
            raise no_feasible_assignment_error(
                study.workflow,
                study.system,
                problem.allowed,
                front.over_limit_count,
                space_size,
                system_file=system_path,
            )
        logger.info(
            "Chunks on the %s runner (%d workers): %d computed, %d reused from %s",
            runner_settings["name"],
            runner_settings["workers"],
            chunk_counts["computed"],
            chunk_counts["reused"],
            store.path,
        )
    timings["evaluate_s"] = time.perf_counter() - mark
    if front.infeasible_count:
        logger.info(
            "%d of %d assignments exceed a device's memory limit and are left out",
            front.infeasible_count,
            space_size,
        )
    logger.info(
        "Estimated %d assignments in %.3f s (%s method, %d chunks); %d on the Pareto front",
        space_size,
        timings["evaluate_s"],
        chosen_method,
        len(chunks),
        len(front),
    )

    # Tables: candidates, baselines, recommendation, explained pairs, patterns.
    mark = time.perf_counter()
    pairs = []
    for text in explain or []:
        first, _, second = text.partition(":")
        pairs.append((first, second))
    summary = summarise(
        study,
        front,
        Evaluation.concat(pattern_parts, problem.n_stages),
        patterns_sampled=sample_fraction < 1.0,
        explain=pairs,
        timings_s=timings,
        method=chosen_method,
        method_reason=method_reason,
    )
    candidates = summary.candidates
    patterns_table = summary.patterns
    recommendation = summary.recommendation
    assert recommendation is not None
    timings["tables_s"] = time.perf_counter() - mark

    # Monte Carlo over the candidates, before anything is written: a run that would be
    # too long stops the sweep with invalid input.
    if uncertainty_path is not None:
        mark = time.perf_counter()
        summary.robustness = monte_carlo_task(summary, uncertainty_path, chosen_method)
        timings["robustness_s"] = time.perf_counter() - mark

    # Write everything into a staging folder; publish; move into place.
    with (
        staged_output(target) as path_for,
        # vl-convert and Parquet's encoder release the GIL: threads render the PNGs and
        # write the tables while this one writes the chart pages and publishes.
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="outputs") as pool,
    ):
        mark = time.perf_counter()
        # Altair validated these specifications in the tests; skip it here.
        specs = {
            name: chart.to_dict(validate=False) for name, chart in _build_charts(summary).items()
        }
        pngs = {name: pool.submit(chart_png, spec) for name, spec in specs.items()}
        front_columns = [c for c in candidates.columns if c not in ("label", "placement")]
        tables = {
            path_for("front.parquet"): candidates[front_columns],
            path_for("patterns.parquet"): patterns_table,
        }
        if summary.robustness is not None:
            tables[path_for("robustness.parquet")] = summary.robustness.table
        tables_written = pool.submit(_write_tables, tables)
        for png_name, spec in specs.items():
            write_chart_html(spec, path_for(png_name.removesuffix(".png") + ".html"))
        charts_s = time.perf_counter() - mark

        mark = time.perf_counter()
        workflow, system = problem.workflow_name, problem.system_name
        create_table_artifact(
            key=artifact_key("candidates", workflow, system),
            table=candidates_artifact_rows(summary),
            description=f"Pareto-front candidates of {workflow} on {system}",
        )
        artifacts_s = time.perf_counter() - mark

        mark = time.perf_counter()
        embeds = []
        for png_name, spec in specs.items():
            png = pngs[png_name].result()
            path_for(png_name).write_bytes(png)
            embeds.append(
                ChartEmbed(file_name=png_name, spec=spec, png=png, alt=summary.charts[png_name])
            )
        timings["charts_s"] = charts_s + time.perf_counter() - mark
        timings["write_parquet_s"] = tables_written.result()

        timings["total_s"] = time.perf_counter() - started
        report_md = render_report_md(summary)
        path_for("report.md").write_text(report_md, "utf-8")
        title = f"Allocation of {workflow} on {system}"
        path_for("report.html").write_text(
            render_report_html(report_md, title=title, charts=embeds), "utf-8"
        )

        mark = time.perf_counter()
        _publish_reports(summary, report_md, embeds, report_link)
        timings["artifacts_s"] = artifacts_s + time.perf_counter() - mark

        metadata = _run_metadata(study, summary, chunks, size, timings)
        metadata["counts"]["chunks_reused"] = chunk_counts["reused"]
        metadata["counts"]["chunks_computed"] = chunk_counts["computed"]
        metadata["runner"] = runner_settings or None
        if summary.robustness is not None:
            metadata["robustness"] = summary.robustness.metadata()
        write_json(metadata, path_for("run.json"))
        files = [
            "front.parquet",
            "patterns.parquet",
            "report.md",
            "report.html",
            *(
                name.removesuffix(".png") + ext
                for name in summary.charts
                for ext in (".html", ".png")
            ),
            "run.json",
        ]
        if summary.robustness is not None:
            files.insert(2, "robustness.parquet")

    if chosen_method == "exhaustive":
        store.remove()
        _stores_by_flow_run.pop(str(flow_run.id), None)
    logger.info("Wrote %s", target)
    return SweepOutcome(
        out_dir=target,
        files=files,
        space_size=space_size,
        candidates=candidates_artifact_rows(summary),
        baselines=_json_rows(summary.baselines),
        timings_s=timings,
        patterns_written=len(patterns_table),
        patterns_sampled=sample_fraction < 1.0,
        recommended=recommendation.label,
        recommendation=recommendation.reason,
        memory_note=left_out_sentence(summary.infeasible_count, space_size, summary.over_limit),
        robustness="" if summary.robustness is None else summary.robustness.sentence(),
    )


def _estimate_chunks(
    problem: CompiledProblem,
    runner: ChunkRunner,
    store: ChunkStore,
    chunk_size: int,
    sample_fraction: float,
    progress_id: Any,
    *,
    show_progress: bool,
) -> tuple[PartialFront, list[Evaluation], list[tuple[int, int]], dict[str, int], float]:
    """Evaluate the chunks not in the store on `runner` and merge all their fronts.

    Every chunk computed is saved in `store` as it finishes. `progress_id` is the
    Prefect progress artifact to update, or None outside a flow run. Returns the front, the kept
    patterns in enumeration order, the chunks, the counts of reused and computed chunks
    and the time spent merging.
    """
    space_size = problem.space_size
    store.open()
    reused_ranges, todo = plan_resumed_chunks(space_size, chunk_size, store.finished())
    results = []
    for start, stop in reused_ranges:
        stored = store.load(start, stop, problem.n_stages)
        if stored is None:
            todo.append((start, stop))
        else:
            results.append(stored)
    counts = {"reused": len(results), "computed": len(todo)}

    progress = ProgressLine(space_size, label="Estimating") if show_progress else None
    merge_s = 0.0
    front: PartialFront | None = None
    done = 0
    last_reported = time.perf_counter()

    def take(result: Any) -> None:
        nonlocal front, done, merge_s
        merge_mark = time.perf_counter()
        parts = [result.front] if front is None else [front, result.front]
        front = merge_fronts(problem, parts)
        merge_s += time.perf_counter() - merge_mark
        done += result.stop - result.start
        if progress:
            progress.update(done)

    for result in results:
        take(result)
    problem_id = store.key
    computed = runner.map_unordered(problem, problem_id, sorted(todo), sample_fraction)
    try:
        for result in computed:
            store.save(result)
            results.append(result)
            take(result)
            # At most one update a second, and always the last, to keep API calls few.
            due = done == space_size or time.perf_counter() - last_reported >= 1.0
            if progress_id is not None and due:
                update_progress_artifact(progress_id, 100.0 * done / space_size)
                last_reported = time.perf_counter()
    finally:
        computed.close()
        if progress:
            progress.close()
    if progress_id is not None and counts["computed"] == 0:
        update_progress_artifact(progress_id, 100.0)
    assert front is not None
    results.sort(key=lambda result: result.start)
    chunks = [(result.start, result.stop) for result in results]
    return front, [result.patterns for result in results], chunks, counts, merge_s


_shared_runner: ChunkRunner | None = None


@contextmanager
def use_shared_runner(runner: ChunkRunner) -> Iterator[None]:
    """Run the chunks of every sweep started in this block on `runner`.

    Several sweeps running at the same time (one per system) then share one pool or
    cluster instead of starting one each.
    """
    global _shared_runner
    previous, _shared_runner = _shared_runner, runner
    try:
        yield
    finally:
        _shared_runner = previous


@contextmanager
def _runner_for(name: str, workers: int | None, address: str | None) -> Iterator[ChunkRunner]:
    if _shared_runner is not None:
        yield _shared_runner
        return
    with open_runner(name, workers=workers, address=address) as runner:
        yield runner


def _write_tables(tables: dict[Path, Any]) -> float:
    """Write each table to its Parquet file; return the time taken."""
    started = time.perf_counter()
    for path, table in tables.items():
        write_parquet(table, path)
    return time.perf_counter() - started


def _build_charts(summary: SweepSummary) -> dict[str, Any]:
    """Build the charts of `allocation.summary.CHART_FILES`, by PNG file name."""
    recommended = summary.recommendation.label if summary.recommendation else None
    limits = {}
    if summary.requirements is not None:
        for key, value in summary.requirements.limits.items():
            # A minimum throughput is drawn as the largest period it allows.
            if key == "min_throughput_fps":
                limits["period_s"] = 1.0 / value
            else:
                limits[LIMIT_METRICS[key]] = value
    time_table, cost_table = breakdown_tables(summary.problem, summary.candidates)
    workflow, system = summary.problem.workflow_name, summary.problem.system_name
    return {
        "chart.png": tradeoff_chart(summary, limits=limits, recommended=recommended),
        "breakdown.png": breakdown_chart(
            time_table,
            cost_table,
            title=f"Latency and cost of each candidate of {workflow} on {system}",
            recommended=recommended,
        ),
        "placement.png": placement_chart(summary, recommended=recommended),
    }


def _publish_reports(
    summary: SweepSummary, report_md: str, embeds: list[ChartEmbed], report_link: str | None
) -> None:
    """Publish the summary, the report and the link artifacts (the candidates go first)."""
    workflow, system = summary.problem.workflow_name, summary.problem.system_name
    trade_off = next(embed for embed in embeds if embed.file_name == "chart.png")
    data_uri = "data:image/png;base64," + base64.b64encode(trade_off.png).decode("ascii")
    create_markdown_artifact(
        key=artifact_key("summary", workflow, system),
        markdown=render_summary_markdown(summary, png_data_uri=data_uri),
        description=f"Sweep summary of {workflow} on {system}",
    )
    create_markdown_artifact(
        key=artifact_key("report", workflow, system),
        markdown=embed_pngs_in_markdown(report_md, embeds),
        description=f"Full report of {workflow} on {system}, with its charts",
    )
    if report_link is not None:
        create_link_artifact(
            key=artifact_key("report-link", workflow, system),
            link=report_link,
            link_text=f"report.html of {workflow} on {system}",
            description="The report in the shared output folder",
        )


def _json_rows(table: Any) -> list[dict[str, Any]]:
    rows = []
    for record in table.to_dict(orient="records"):
        rows.append({key: _json_value(value) for key, value in record.items()})
    return rows


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _run_metadata(
    study: Any,
    summary: SweepSummary,
    chunks: list[tuple[int, int]],
    chunk_size: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    problem = summary.problem
    cpus = {
        key: {
            "cpu": cpu.name,
            "source": cpu.source,
            "as_of": cpu.as_of.isoformat() if cpu.as_of else None,
        }
        for key, cpu in problem.cpus.items()
    }
    return {
        "workflow": problem.workflow_name,
        "system": problem.system_name,
        "objectives": list(problem.objectives),
        "inputs": study.inputs,
        "catalog_rows": cpus,
        "pricing": {p.device_id: p.provider.describe() for p in problem.priced},
        "requirements": (
            summary.requirements.model_dump(exclude_none=True)
            if summary.requirements is not None
            else None
        ),
        "recommendation": (
            {
                "label": summary.recommendation.label,
                "rule": summary.recommendation.rule,
                "reason": summary.recommendation.reason,
            }
            if summary.recommendation is not None
            else None
        ),
        "compared_placements": [name for name, _ in study.comparisons],
        "explained_pairs": [[e.label_a, e.label_b] for e in summary.explanations],
        "method": {"name": summary.method, "reason": summary.method_reason},
        "counts": {
            "space_size": summary.space_size,
            "evaluated": (
                summary.space_size - summary.infeasible_count
                if summary.method == "exhaustive"
                else len(summary.patterns)
            ),
            "infeasible_count": summary.infeasible_count,
            "over_memory_limit": {device_id: count for device_id, _, count in summary.over_limit},
            "front_points": len(summary.candidates),
            "chunks": len(chunks),
            "chunk_size": chunk_size,
            "patterns_written": len(summary.patterns),
            "patterns_sampled": summary.patterns_sampled,
        },
        "timings_s": {key: round(value, 6) for key, value in timings.items()},
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "versions": {
            "python": platform.python_version(),
            **{
                name: version(name)
                for name in ("allocation", "prefect", "numpy", "pandas", "pyarrow", "altair")
            },
        },
    }
