"""Monte Carlo robustness of the front's candidates under uncertain inputs.

Each sample multiplies the stage times, the link bandwidths and the providers' charges
by factors drawn from an uncertainty file (`allocation.uncertainty`). The engine then
finds the front of the whole space under those inputs. Every nominal candidate is
checked against it: whether it stays on the front, meets the limits and is the
recommended candidate. docs/robustness.md describes the numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from allocation.compile import CompiledProblem, link_arrays
from allocation.errors import InputError
from allocation.estimate import Evaluation, evaluate_chunk, evaluate_placements
from allocation.exact import exact_front
from allocation.explain import LIMIT_METRICS, meets_limit, placements_of, recommend
from allocation.model import Requirements, System
from allocation.pareto import dominated_by
from allocation.pricing import PerRunCostTerms, PricingContext, PricingProvider, Usage
from allocation.results import front_table
from allocation.space import encode_placement
from allocation.sweep import PartialFront, front_of, objective_matrix, sweep_in_process, warm_up
from allocation.uncertainty import UncertaintyFile, draw_factors

__all__ = [
    "PERCENTILES",
    "Robustness",
    "SampleOutcome",
    "ScaledProvider",
    "evaluate_sample",
    "front_of_space",
    "perturbed_problem",
    "run_monte_carlo",
]

PERCENTILES = (5, 50, 95)
"""Percentiles of latency_s and cost_usd reported per candidate."""

ROW_BY_ROW_UP_TO = 4096
"""Largest space whose samples are estimated row by row instead of by the kernel.

On the shipped examples (2 cores), 128 assignments take 0.8 ms row by row and 4 ms
with the kernel, and 177,147 take 250 ms row by row and 6 ms with the kernel."""

SHARE_COLUMNS = ("on_front_share", "meets_limits_share", "recommended_share")
"""Columns of robustness.parquet with a share of the samples, from 0 to 1."""


class ScaledProvider:
    """A pricing provider whose every charge is multiplied by a factor.

    The cost lines, the monthly bill and the per-run cost terms are scaled; every other
    attribute (``usable_cores``, for example) is the wrapped provider's.
    """

    name: ClassVar[str] = "scaled"
    api_version: ClassVar[int] = 1

    def __init__(self, provider: PricingProvider, factor: float) -> None:
        self.provider = provider
        self.factor = float(factor)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> PricingProvider:
        """Reject construction from a system file: the Monte Carlo builds it in code."""
        raise NotImplementedError("ScaledProvider wraps a loaded provider; it has no options")

    def cost_lines_usd(self, usage: Usage) -> dict[str, np.ndarray]:
        """Return the wrapped provider's cost lines times the factor."""
        lines = self.provider.cost_lines_usd(usage)
        return {line: np.asarray(values) * self.factor for line, values in lines.items()}

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> np.ndarray:
        """Return the wrapped provider's monthly bill times the factor."""
        return np.asarray(self.provider.monthly_cost_usd(usage, runs_per_month)) * self.factor

    def describe(self) -> dict[str, Any]:
        """Return the wrapped provider's description with the factor."""
        return {**self.provider.describe(), "price_factor": self.factor}

    def per_run_cost_terms(self) -> PerRunCostTerms | None:
        """Return the wrapped provider's per-run cost terms times the factor, or None."""
        method = getattr(self.provider, "per_run_cost_terms", None)
        terms = method() if callable(method) else None
        if terms is None:
            return None
        factor = self.factor
        invocation_usd = terms.invocation_usd
        return PerRunCostTerms(
            invocation_usd=lambda duration_s: np.asarray(invocation_usd(duration_s)) * factor,
            usd_per_invocation=terms.usd_per_invocation * factor,
            usd_per_byte_in=terms.usd_per_byte_in * factor,
            usd_per_byte_out=terms.usd_per_byte_out * factor,
        )

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for attributes this class lacks, such as usable_cores.
        return getattr(self.provider, attribute)


def perturbed_problem(
    problem: CompiledProblem,
    system: System,
    *,
    stage_factors: np.ndarray,
    bandwidth_factors: np.ndarray,
    price_factors: np.ndarray,
) -> CompiledProblem:
    """Return a copy of `problem` with its inputs multiplied by factors.

    Parameters
    ----------
    problem : CompiledProblem
        The compiled problem of `system`.
    system : System
        The system, for the latency and bandwidth of its links.
    stage_factors : ndarray, shape (n_stages,)
        Multiplies the time of each stage on every device.
    bandwidth_factors : ndarray, shape (n_links,)
        Multiplies each link's ``bandwidth_mbps``; ``latency_ms`` and ``overhead_ms``
        stay as they are.
    price_factors : ndarray, shape (n_priced,)
        Multiplies every charge of each priced device's provider.

    Notes
    -----
    Only the bandwidth part of a transfer time changes, so what `allocation.compile`
    folded into it (such as concurrent frames) stays. Factors of exactly 1 give arrays
    equal bit for bit to those of `problem`.
    """
    stage_time_s = problem.stage_time_s * np.asarray(stage_factors, dtype=np.float64)[:, None]

    # Transfers: the part of each transfer time that depends on the bandwidth grows by
    # 1 / factor; the fixed part (latency and overhead) stays. Working on the compiled
    # times keeps what compile folded into them, such as concurrent frames.
    device_index = {device_id: d for d, device_id in enumerate(problem.device_ids)}
    fixed_s, _, link_number = link_arrays(system, device_index)
    slower = np.ones(link_number.shape)
    linked = link_number >= 0
    slower[linked] = 1.0 / np.asarray(bandwidth_factors, dtype=np.float64)[link_number[linked]]
    # Cells no assignment uses hold 0 and stay 0.
    changed = (slower != 1.0) & (problem.edge_transfer_s != 0.0)
    transfer = np.where(
        changed,
        fixed_s + (problem.edge_transfer_s - fixed_s) * slower,
        problem.edge_transfer_s,
    )
    contention = problem.contention
    if contention is not None:
        contention = replace(contention, link_s_per_byte=contention.link_s_per_byte * slower)

    priced = tuple(
        replace(device, provider=ScaledProvider(device.provider, float(price_factors[p])))
        for p, device in enumerate(problem.priced)
    )
    return replace(
        problem,
        stage_time_s=stage_time_s,
        edge_transfer_s=transfer,
        priced=priced,
        contention=contention,
    )


def front_of_space(problem: CompiledProblem, method: str) -> PartialFront:
    """Return the front of the whole space by `method` ("exact" or "exhaustive")."""
    if method == "exact":
        return exact_front(problem)
    # Keeping no pattern lets the compiled kernel screen the chunks where it applies.
    # A small space is estimated row by row: that is faster than building the
    # kernel's price tables, which happens once per problem and so once per sample.
    fraction = 1.0 if problem.space_size <= ROW_BY_ROW_UP_TO else 0.0
    front, _ = sweep_in_process(problem, sample_fraction=fraction)
    return front


def _front_and_rows(
    problem: CompiledProblem, placements: np.ndarray, method: str
) -> tuple[PartialFront, Evaluation]:
    """Return the front of the space and the estimates of `placements`."""
    # With a binding memory limit, the sweep leaves out what does not fit.
    if method == "exact" or problem.space_size > ROW_BY_ROW_UP_TO or problem.memory_bound_devices:
        return front_of_space(problem, method), evaluate_placements(problem, placements)
    # One estimate of every assignment gives the front and the candidates' rows with
    # one call to each provider instead of two.
    every = evaluate_chunk(problem, 0, problem.space_size)
    rows = np.array([encode_placement(problem, list(row)) for row in placements], dtype=np.int64)
    return front_of(problem, every), every.take(rows)


@dataclass(frozen=True)
class SampleOutcome:
    """The outcome of the nominal candidates in one sample, row for row.

    Attributes
    ----------
    on_front : ndarray of bool, shape (m,)
        No point of the sample's front dominates the candidate.
    meets_limits : ndarray of bool, shape (m,)
        The candidate is within every limit (True for all when no limit is set).
    recommended : int or None
        Row of the candidate recommended among the sample's front, or None when the
        recommended point is no nominal candidate or nothing is recommended.
    anything_recommended : bool
        Whether the recommendation chose any point of the sample's front.
    latency_s, cost_usd : ndarray, shape (m,)
        The candidates' metrics under the sample's inputs.
    """

    on_front: np.ndarray
    meets_limits: np.ndarray
    recommended: int | None
    anything_recommended: bool
    latency_s: np.ndarray
    cost_usd: np.ndarray


def evaluate_sample(
    problem: CompiledProblem,
    placements: np.ndarray,
    requirements: Requirements | None,
    *,
    method: str = "exhaustive",
) -> SampleOutcome:
    """Check candidates against the front of `problem` (one sample's inputs).

    Parameters
    ----------
    problem : CompiledProblem
        The problem under the sample's inputs (`perturbed_problem`).
    placements : ndarray of int, shape (m, n_stages)
        The nominal candidates' placements.
    requirements : Requirements or None
        The limits and the metric the recommendation minimises.
    method : {"exhaustive", "exact"}
        How the front of the sample is found.

    Notes
    -----
    Dominance follows `allocation.pareto`: values within 1e-9 relative are equal. The
    recommended point is chosen by `allocation.explain.recommend` among the sample's
    front, ordered and represented as front.parquet would be, and matched to a
    candidate by placement.
    """
    placements = np.asarray(placements)
    front, evaluation = _front_and_rows(problem, placements, method)
    points = objective_matrix(problem, evaluation)
    front_points = objective_matrix(problem, front.evaluation)
    on_front = ~dominated_by(front_points, points)

    limits = requirements.limits if requirements is not None else {}
    meets = np.ones(len(placements), dtype=bool)
    for name, limit in limits.items():
        values = evaluation.metrics[LIMIT_METRICS[name]]
        meets &= meets_limit(name, values, limit)

    table = front_table(problem, front)
    table.insert(0, "label", [str(i) for i in range(len(table))])
    choice = recommend(table, requirements, problem.objectives)
    recommended = None
    if choice.label is not None:
        chosen = tuple(placements_of(problem, table)[int(choice.label)].tolist())
        rows = {tuple(row): i for i, row in enumerate(placements.tolist())}
        recommended = rows.get(chosen)
    return SampleOutcome(
        on_front=on_front,
        meets_limits=meets,
        recommended=recommended,
        anything_recommended=choice.label is not None,
        latency_s=evaluation.metrics["latency_s"].astype(np.float64),
        cost_usd=evaluation.metrics["cost_usd"].astype(np.float64),
    )


@dataclass
class Robustness:
    """Outcome of a Monte Carlo run over the nominal candidates."""

    table: pd.DataFrame
    """robustness.parquet: ``label``, ``at_<stage id>``, the shares of `SHARE_COLUMNS`
    (``meets_limits_share`` is null when no limit is set) and ``latency_s_p5`` to
    ``cost_usd_p95``."""
    settings: dict[str, Any]
    """The uncertainty file's settings, defaults included."""
    path: str
    sha256: str
    samples: int
    no_recommendation_share: float
    """Share of samples in which nothing is recommended (no point meets the limits)."""
    other_recommended_share: float
    """Share of samples whose recommended point is not one of the nominal candidates."""
    elapsed_s: float
    recommended_label: str | None
    """The candidate recommended under the nominal inputs."""
    limits_set: bool

    def metadata(self) -> dict[str, Any]:
        """Return the run.json entry: the file, its settings and the headline figures."""
        row = self.recommended_row()
        return {
            "path": self.path,
            "sha256": self.sha256,
            "settings": self.settings,
            "samples": self.samples,
            "elapsed_s": round(self.elapsed_s, 6),
            "recommended": self.recommended_label,
            "recommended_shares": None
            if row is None
            else {column: _share_or_none(row[column]) for column in SHARE_COLUMNS},
            "no_recommendation_share": self.no_recommendation_share,
            "other_recommended_share": self.other_recommended_share,
        }

    def recommended_row(self) -> pd.Series | None:
        """Return the row of the nominally recommended candidate, or None."""
        if self.recommended_label is None:
            return None
        rows = self.table[self.table["label"] == self.recommended_label]
        return None if rows.empty else rows.iloc[0]

    def sentence(self) -> str:
        """Describe the recommended candidate's shares in one plain sentence."""
        row = self.recommended_row()
        samples = f"{self.samples:,} sample{'s' if self.samples != 1 else ''}"
        if row is None:
            return (
                "No candidate is recommended under the nominal inputs; in "
                f"{_percent(self.no_recommendation_share)} of the {samples} nothing is "
                "recommended either."
            )
        limits = (
            f", meets the limits in {_percent(row['meets_limits_share'])}"
            if self.limits_set
            else ""
        )
        return (
            f"The recommended candidate {row['label']} stays on the front in "
            f"{_percent(row['on_front_share'])} of the {samples}{limits} and is "
            f"recommended in {_percent(row['recommended_share'])} of them."
        )


def run_monte_carlo(
    problem: CompiledProblem,
    system: System,
    candidates: pd.DataFrame,
    uncertainty: UncertaintyFile,
    *,
    requirements: Requirements | None,
    method: str = "exhaustive",
    progress: Callable[[int, float], None] | None = None,
) -> Robustness:
    """Run the Monte Carlo of `uncertainty` over the nominal candidates.

    Parameters
    ----------
    problem : CompiledProblem
        The nominal problem.
    system : System
        Its system, for the links.
    candidates : DataFrame
        The nominal front: ``label`` and the ``at_<stage id>`` columns.
    uncertainty : UncertaintyFile
        The spreads, the number of samples, the seed and the time limit.
    requirements : Requirements or None
        The requirements in force.
    method : {"exhaustive", "exact"}
        How each sample's front is found; the nominal sweep's method.
    progress : callable, optional
        Called after every sample with the samples done and the seconds elapsed.

    Returns
    -------
    Robustness

    Raises
    ------
    InputError
        When the first sample shows that all of them would take longer than
        ``max_time_s``; the message gives the number of samples that would fit.
    """
    spec = uncertainty.spec
    started = time.perf_counter()
    if method != "exact" and problem.space_size > ROW_BY_ROW_UP_TO:
        # Load the kernel before the first sample, whose time projects the run's.
        warm_up(problem, sample_fraction=0.0)
    factors = draw_factors(
        spec, problem.stage_ids, n_links=len(system.links), n_priced=len(problem.priced)
    )
    placements = placements_of(problem, candidates)
    n, m = spec.samples, len(candidates)
    on_front = np.zeros((n, m), dtype=bool)
    meets = np.zeros((n, m), dtype=bool)
    recommended = np.zeros((n, m), dtype=bool)
    anything_recommended = np.zeros(n, dtype=bool)
    latency_s = np.empty((n, m))
    cost_usd = np.empty((n, m))
    sampling_started = time.perf_counter()

    for i in range(n):
        sample_problem = perturbed_problem(
            problem,
            system,
            stage_factors=factors.stage_time[i],
            bandwidth_factors=factors.bandwidth[i],
            price_factors=factors.price[i],
        )
        outcome = evaluate_sample(sample_problem, placements, requirements, method=method)
        on_front[i] = outcome.on_front
        meets[i] = outcome.meets_limits
        if outcome.recommended is not None:
            recommended[i, outcome.recommended] = True
        anything_recommended[i] = outcome.anything_recommended
        latency_s[i] = outcome.latency_s
        cost_usd[i] = outcome.cost_usd
        elapsed_s = time.perf_counter() - started
        if i == 0:
            _check_time(uncertainty, time.perf_counter() - sampling_started)
        if progress is not None:
            progress(i + 1, elapsed_s)

    limits_set = bool(requirements is not None and requirements.limits)
    table = candidates[["label", *(f"at_{s}" for s in problem.stage_ids)]].reset_index(drop=True)
    table["on_front_share"] = on_front.mean(axis=0)
    table["meets_limits_share"] = pd.array(
        meets.mean(axis=0) if limits_set else [None] * m, dtype="Float64"
    )
    table["recommended_share"] = recommended.mean(axis=0)
    for metric, values in (("latency_s", latency_s), ("cost_usd", cost_usd)):
        for q, column in zip(PERCENTILES, np.percentile(values, PERCENTILES, axis=0), strict=True):
            table[f"{metric}_p{q}"] = column

    nominal = recommend(candidates, requirements, problem.objectives).label
    return Robustness(
        table=table,
        settings=uncertainty.settings(),
        path=uncertainty.path,
        sha256=uncertainty.sha256,
        samples=n,
        no_recommendation_share=float((~anything_recommended).mean()),
        other_recommended_share=float((anything_recommended & ~recommended.any(axis=1)).mean()),
        elapsed_s=time.perf_counter() - started,
        recommended_label=nominal,
        limits_set=limits_set,
    )


def _check_time(uncertainty: UncertaintyFile, first_s: float) -> None:
    """Reject a run whose samples would take longer than ``max_time_s`` altogether."""
    spec = uncertainty.spec
    projected_s = first_s * spec.samples
    if spec.samples == 1 or projected_s <= spec.max_time_s:
        return
    fit = max(1, math.floor(spec.max_time_s / first_s))
    projected = f"{projected_s:,.0f}" if projected_s >= 10 else f"{projected_s:.3g}"
    raise InputError(
        f"would take about {projected} s: the first sample took {first_s:.3g} s, "
        f"and max_time_s is {spec.max_time_s:g} s. Set samples to {fit:,} or fewer, or "
        "raise max_time_s",
        file=uncertainty.path,
        field="samples",
        value=spec.samples,
        has_value=True,
    )


def _percent(share: Any) -> str:
    value = 100.0 * float(share)
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} %"


def _share_or_none(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return None if math.isnan(number) else number
