"""The Monte Carlo of candidate robustness: the file, the draws, the engine and the outputs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from allocation.compile import compile_problem
from allocation.errors import InputError
from allocation.model import Requirements
from allocation.reference import reference_robustness
from allocation.report import render_report_md
from allocation.results import front_table
from allocation.robustness import perturbed_problem, run_monte_carlo
from allocation.study import load_study
from allocation.summary import summarise
from allocation.sweep import sweep_in_process
from allocation.uncertainty import (
    Spread,
    Uncertainty,
    UncertaintyFile,
    check_stage_overrides,
    draw_factors,
    load_uncertainty,
)
from tests.conftest import CATALOGS
from tests.problems import EMPTY_CATALOG, random_problem

WORKFLOW = """\
workflow: small.flow
measured_on: {name: Reference PC, cores: 4, single_thread: 2000}
stages:
  - {id: cam, time_s: 0.1, pin: edge}
  - {id: pre, time_s: 0.2}
  - {id: infer, time_s: 1.5, threads: 2}
  - {id: show, time_s: 0.01, pin: edge}
edges:
  - {from: cam, to: pre, bytes: 6220800}
  - {from: pre, to: infer, bytes: 1200000}
  - {from: infer, to: show, bytes: 40000}
"""

SYSTEM = """\
system: two-devices
devices:
  - id: edge
    cpu: {name: Edge CPU, cores: 4, single_thread: 600}
  - id: cloud
    cpu: {name: Cloud CPU, cores: 2, single_thread: 2500}
    pricing: {provider: flat, usd_per_compute_s: 0.0000333, usd_per_gb_out: 0.114}
links:
  - {between: [edge, cloud], bandwidth_mbps: 100, latency_ms: 5}
"""

# One free stage: 1 s on the edge (free), 0.1 s in the cloud (priced). Under a latency
# limit of 1.2 s the edge is recommended exactly when its time factor is at most 1.2.
ONE_STAGE_WORKFLOW = """\
workflow: one-stage
measured_on: {name: Reference PC, cores: 1, single_thread: 1000}
stages:
  - {id: work, time_s: 1.0}
"""

ONE_STAGE_SYSTEM = """\
system: edge-or-cloud
devices:
  - id: edge
    cpu: {name: Edge CPU, cores: 1, single_thread: 1000}
  - id: cloud
    cpu: {name: Cloud CPU, cores: 1, single_thread: 10000}
    pricing: {provider: flat, usd_per_compute_s: 0.001}
requirements: {max_latency_s: 1.2}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def _uncertainty(**fields: object) -> UncertaintyFile:
    return UncertaintyFile(spec=Uncertainty.model_validate(fields), path="<test>", sha256="")


def _study_and_candidates(tmp_path: Path, workflow: str, system: str) -> tuple[object, object]:
    study = load_study(
        _write(tmp_path, "workflow.yaml", workflow),
        _write(tmp_path, "system.yaml", system),
        CATALOGS,
    )
    front, patterns = sweep_in_process(study.problem)
    summary = summarise(study, front, patterns, patterns_sampled=False)
    return study, summary


# --- The uncertainty file ---------------------------------------------------------------


def test_uncertainty_file_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "u.yaml", "stage_time: {relative: 0.2}\n")
    loaded = load_uncertainty(path)
    assert loaded.spec.samples == 200
    assert loaded.spec.seed == 0
    assert loaded.spec.max_time_s == 600
    assert loaded.spec.stage_time == Spread(relative=0.2, distribution="uniform")
    assert len(loaded.sha256) == 64
    assert loaded.settings()["bandwidth"] is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("stage_time: {relative: 1.0}", ["stage_time.relative", "1.0", "below 1", "lognormal"]),
        ("bandwidth: {relative: -0.1}", ["bandwidth.relative", "-0.1", "greater than or equal"]),
        ("price: {relative: 0.1, distribution: normal}", ["price.distribution", "'normal'"]),
        ("samples: 0\nprice: {relative: 0.1}", ["samples", "0", "greater than or equal to 1"]),
        ("samples: 100001\nprice: {relative: 0.1}", ["samples", "less than or equal to 100000"]),
        ("sample: 10\nprice: {relative: 0.1}", ["unknown field 'sample'", "'samples'"]),
        ("stages: {infer: {relativ: 0.1}}", ["stages.infer", "'relativ'", "'relative'"]),
        ("seed: 1.5\nprice: {relative: 0.1}", ["seed", "1.5"]),
        ("samples: 10", ["sets no spread", "stage_time"]),
        ("- 1\n- 2", ["expected a mapping", "list"]),
        ("workflow: x\nstages: []", ["looks like a workflow file"]),
    ],
)
def test_uncertainty_file_invalid(tmp_path: Path, text: str, words: list[str]) -> None:
    path = _write(tmp_path, "u.yaml", text + "\n")
    with pytest.raises(InputError) as caught:
        load_uncertainty(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_stage_override_unknown(tmp_path: Path) -> None:
    loaded = load_uncertainty(_write(tmp_path, "u.yaml", "stages: {infr: {relative: 0.4}}\n"))
    with pytest.raises(InputError) as caught:
        check_stage_overrides(loaded, ("pre", "infer"), workflow="small.flow")
    message = str(caught.value)
    assert "stages.infr" in message
    assert "did you mean 'infer'" in message
    check_stage_overrides(loaded, ("infr",), workflow="other")


# --- Factors and the perturbed problem --------------------------------------------------------


def test_draw_factors_ranges_and_prefix() -> None:
    spec = Uncertainty(
        samples=50,
        seed=7,
        stage_time=Spread(relative=0.2),
        bandwidth=Spread(relative=0.3, distribution="lognormal"),
        stages={"b": Spread(relative=0.5)},
    )
    factors = draw_factors(spec, ("a", "b"), n_links=2, n_priced=1)
    assert factors.stage_time.shape == (50, 2)
    assert factors.bandwidth.shape == (50, 2)
    assert ((factors.stage_time[:, 0] >= 0.8) & (factors.stage_time[:, 0] <= 1.2)).all()
    assert ((factors.stage_time[:, 1] >= 0.5) & (factors.stage_time[:, 1] <= 1.5)).all()
    assert factors.stage_time[:, 1].max() > 1.2
    assert (factors.bandwidth > 0).all()
    assert (factors.price == 1.0).all()

    fewer = draw_factors(spec.model_copy(update={"samples": 10}), ("a", "b"), n_links=2, n_priced=1)
    assert np.array_equal(fewer.stage_time, factors.stage_time[:10])
    assert np.array_equal(fewer.bandwidth, factors.bandwidth[:10])


def test_perturbed_problem_factor_one_equal(tmp_path: Path) -> None:
    study, _ = _study_and_candidates(tmp_path, WORKFLOW, SYSTEM)
    problem = study.problem
    same = perturbed_problem(
        problem,
        study.system,
        stage_factors=np.ones(problem.n_stages),
        bandwidth_factors=np.ones(len(study.system.links)),
        price_factors=np.ones(len(problem.priced)),
    )
    assert np.array_equal(same.stage_time_s, problem.stage_time_s, equal_nan=True)
    assert np.array_equal(same.edge_transfer_s, problem.edge_transfer_s)

    slower = perturbed_problem(
        problem,
        study.system,
        stage_factors=np.ones(problem.n_stages),
        bandwidth_factors=np.array([0.5]),
        price_factors=np.array([2.0]),
    )
    # Half the bandwidth doubles the byte part of a transfer; the 5 ms latency stays.
    nominal = problem.edge_transfer_s[0, 0, 1]
    assert slower.edge_transfer_s[0, 0, 1] == pytest.approx(0.005 + 2 * (nominal - 0.005))
    placements = np.array([[0, 1, 1, 0]])
    from allocation.estimate import evaluate_placements

    cost = evaluate_placements(problem, placements).metrics["cost_usd"][0]
    assert evaluate_placements(slower, placements).metrics["cost_usd"][0] == pytest.approx(2 * cost)


# --- The Monte Carlo against the reference and known shares ---------------------------------


def _small_random_problems(count: int) -> list[int]:
    seeds = []
    seed = 0
    while len(seeds) < count:
        workflow, system = random_problem(seed)
        problem = compile_problem(workflow, system, EMPTY_CATALOG)
        if 4 <= problem.space_size <= 100:
            seeds.append(seed)
        seed += 1
    return seeds


@pytest.mark.parametrize("seed", _small_random_problems(4))
def test_monte_carlo_matches_reference(seed: int) -> None:
    workflow, system = random_problem(seed)
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    front, _ = sweep_in_process(problem)
    candidates = front_table(problem, front)
    candidates.insert(0, "label", [f"C{i}" for i in range(len(candidates))])
    median_latency_s = float(np.median(candidates["latency_s"]))
    requirements = Requirements(max_latency_s=median_latency_s)
    uncertainty = _uncertainty(
        samples=6,
        seed=seed,
        stage_time={"relative": 0.3},
        bandwidth={"relative": 0.5, "distribution": "lognormal"},
        price={"relative": 0.4},
    )

    result = run_monte_carlo(
        problem, system, candidates, uncertainty, requirements=requirements
    ).table

    factors = draw_factors(
        uncertainty.spec, problem.stage_ids, n_links=len(system.links), n_priced=len(problem.priced)
    )
    placements = [
        {stage_id: row[f"at_{stage_id}"] for stage_id in problem.stage_ids}
        for _, row in candidates.iterrows()
    ]
    expected = reference_robustness(workflow, system, problem, placements, factors, requirements)
    assert result["on_front_share"].tolist() == expected["on_front_share"]
    assert result["meets_limits_share"].tolist() == expected["meets_limits_share"]
    assert result["recommended_share"].tolist() == expected["recommended_share"]


def test_zero_uncertainty_keeps_everything(tmp_path: Path) -> None:
    study, summary = _study_and_candidates(tmp_path, WORKFLOW, SYSTEM)
    uncertainty = _uncertainty(
        samples=3, stage_time={"relative": 0}, bandwidth={"relative": 0}, price={"relative": 0}
    )
    robustness = run_monte_carlo(
        study.problem, study.system, summary.candidates, uncertainty, requirements=None
    )
    table = robustness.table
    assert (table["on_front_share"] == 1.0).all()
    assert table["meets_limits_share"].isna().all()
    recommended = summary.recommendation.label
    assert robustness.recommended_label == recommended
    shares = dict(zip(table["label"], table["recommended_share"], strict=True))
    assert shares[recommended] == 1.0
    assert sum(shares.values()) == 1.0
    for metric in ("latency_s", "cost_usd"):
        for q in (5, 50, 95):
            assert table[f"{metric}_p{q}"].tolist() == summary.candidates[metric].tolist()


def test_memory_limit_keeps_candidates_on_front(tmp_path: Path) -> None:
    """Samples leave out what exceeds a memory limit, as the nominal sweep does."""
    workflow = WORKFLOW.replace("time_s: 0.2}", "time_s: 0.2, memory_mb: 1000}").replace(
        "threads: 2}", "threads: 2, memory_mb: 3000}"
    )
    # A free cloud: the assignment that exceeds its memory would dominate the others.
    system = SYSTEM.replace(
        "cores: 2, single_thread: 2500}", "cores: 2, single_thread: 2500}\n    memory_mb: 3500"
    ).replace("usd_per_compute_s: 0.0000333, usd_per_gb_out: 0.114", "usd_per_compute_s: 0.0")
    study, summary = _study_and_candidates(tmp_path, workflow, system)
    assert study.problem.memory_bound_devices
    uncertainty = _uncertainty(samples=2, stage_time={"relative": 0})
    robustness = run_monte_carlo(
        study.problem, study.system, summary.candidates, uncertainty, requirements=None
    )
    assert (robustness.table["on_front_share"] == 1.0).all()


def test_same_seed_same_table(tmp_path: Path) -> None:
    study, summary = _study_and_candidates(tmp_path, WORKFLOW, SYSTEM)
    settings = {
        "samples": 20,
        "seed": 3,
        "stage_time": {"relative": 0.3},
        "price": {"relative": 0.5},
    }
    runs = [
        run_monte_carlo(
            study.problem,
            study.system,
            summary.candidates,
            _uncertainty(**settings),
            requirements=None,
        ).table
        for _ in range(2)
    ]
    pd.testing.assert_frame_equal(runs[0], runs[1])
    other = run_monte_carlo(
        study.problem,
        study.system,
        summary.candidates,
        _uncertainty(**{**settings, "seed": 4}),
        requirements=None,
    ).table
    assert not other["latency_s_p50"].equals(runs[0]["latency_s_p50"])


def test_exact_method_same_table(tmp_path: Path) -> None:
    study, summary = _study_and_candidates(tmp_path, WORKFLOW, SYSTEM)
    uncertainty = _uncertainty(
        samples=8,
        stage_time={"relative": 0.3},
        bandwidth={"relative": 0.3},
        price={"relative": 0.3},
    )
    tables = [
        run_monte_carlo(
            study.problem,
            study.system,
            summary.candidates,
            uncertainty,
            requirements=None,
            method=method,
        ).table
        for method in ("exhaustive", "exact")
    ]
    pd.testing.assert_frame_equal(tables[0], tables[1])


@pytest.mark.parametrize(
    ("spread", "expected"),
    [
        # P(U(0.5, 1.5) <= 1.2) = 0.7.
        ({"relative": 0.5}, 0.7),
        # P(exp(N(0, 0.2)) <= 1.2) = Phi(ln 1.2 / 0.2).
        (
            {"relative": 0.2, "distribution": "lognormal"},
            0.5 * (1 + math.erf(math.log(1.2) / 0.2 / math.sqrt(2))),
        ),
    ],
)
def test_two_candidates_known_share(
    tmp_path: Path, spread: dict[str, object], expected: float
) -> None:
    study, summary = _study_and_candidates(tmp_path, ONE_STAGE_WORKFLOW, ONE_STAGE_SYSTEM)
    assert summary.candidates["at_work"].tolist() == ["cloud", "edge"]
    samples = 500
    uncertainty = _uncertainty(samples=samples, seed=11, stage_time=spread)
    robustness = run_monte_carlo(
        study.problem,
        study.system,
        summary.candidates,
        uncertainty,
        requirements=study.requirements,
    )
    table = robustness.table.set_index("at_work")
    factors = draw_factors(uncertainty.spec, ("work",), n_links=0, n_priced=1)
    assert table.loc["edge", "recommended_share"] == np.mean(factors.stage_time[:, 0] <= 1.2)
    # Four standard errors of a share estimated from 500 samples.
    margin = 4 * math.sqrt(expected * (1 - expected) / samples)
    assert table.loc["edge", "recommended_share"] == pytest.approx(expected, abs=margin)
    assert table.loc["edge", "meets_limits_share"] == table.loc["edge", "recommended_share"]
    assert table.loc["cloud", "recommended_share"] == pytest.approx(
        1 - table.loc["edge", "recommended_share"]
    )
    assert table.loc["cloud", "meets_limits_share"] == 1.0
    assert (table["on_front_share"] == 1.0).all()
    assert table.loc["edge", "latency_s_p50"] == pytest.approx(1.0, abs=0.05)


def test_no_recommendation_share(tmp_path: Path) -> None:
    study, summary = _study_and_candidates(tmp_path, ONE_STAGE_WORKFLOW, ONE_STAGE_SYSTEM)
    uncertainty = _uncertainty(samples=40, seed=2, stage_time={"relative": 0.5})
    # The cloud's 0.1 s meets a limit of 0.105 s when the factor is at most 1.05.
    robustness = run_monte_carlo(
        study.problem,
        study.system,
        summary.candidates,
        uncertainty,
        requirements=Requirements(max_latency_s=0.105),
    )
    factors = draw_factors(uncertainty.spec, ("work",), n_links=0, n_priced=1)
    assert robustness.no_recommendation_share == np.mean(factors.stage_time[:, 0] > 1.05)
    assert 0 < robustness.no_recommendation_share < 1
    assert robustness.other_recommended_share == 0.0


def test_min_throughput_met_at_or_above(tmp_path: Path) -> None:
    system = ONE_STAGE_SYSTEM.replace("max_latency_s: 1.2", "min_throughput_fps: 0.9")
    study, summary = _study_and_candidates(tmp_path, ONE_STAGE_WORKFLOW, system)
    uncertainty = _uncertainty(samples=40, seed=3, stage_time={"relative": 0.5})
    robustness = run_monte_carlo(
        study.problem,
        study.system,
        summary.candidates,
        uncertainty,
        requirements=study.system.requirements,
    )
    # The edge's 1 s gives 1 / factor frames per second: at least 0.9 up to 1.11.
    factors = draw_factors(uncertainty.spec, ("work",), n_links=0, n_priced=1)
    shares = robustness.table.set_index("label")["meets_limits_share"]
    edge = summary.candidates.set_index("at_work").loc["edge", "label"]
    cloud = summary.candidates.set_index("at_work").loc["cloud", "label"]
    assert shares[edge] == np.mean(1.0 / factors.stage_time[:, 0] >= 0.9)
    assert 0 < shares[edge] < 1
    assert shares[cloud] == 1.0


def test_time_limit_rejects_with_fit(tmp_path: Path) -> None:
    study, summary = _study_and_candidates(tmp_path, WORKFLOW, SYSTEM)
    uncertainty = _uncertainty(samples=50, max_time_s=1e-9, stage_time={"relative": 0.1})
    with pytest.raises(InputError) as caught:
        run_monte_carlo(
            study.problem, study.system, summary.candidates, uncertainty, requirements=None
        )
    message = str(caught.value)
    assert "samples: invalid value 50" in message
    assert "Set samples to 1 or fewer" in message


# --- Outputs --------------------------------------------------------------------------------


def test_report_section_and_metadata(tmp_path: Path) -> None:
    study, summary = _study_and_candidates(tmp_path, WORKFLOW, SYSTEM)
    uncertainty = _uncertainty(
        samples=10, stage_time={"relative": 0.2}, stages={"infer": {"relative": 0.4}}
    )
    summary.robustness = run_monte_carlo(
        study.problem,
        study.system,
        summary.candidates,
        uncertainty,
        requirements=Requirements(max_latency_s=3.0),
    )
    report = render_report_md(summary)
    section = report.split("## Robustness")[1].split("\n## ")[0]
    assert "10 samples (seed 0" in section
    assert "stage times ±20 % (uniform) and stage infer ±40 % (uniform)" in section
    assert "| Within the limits |" in section
    assert summary.robustness.sentence() in section
    label = summary.robustness.recommended_label
    assert label is not None
    assert f"**{label}** (recommended)" in section

    metadata = json.loads(json.dumps(summary.robustness.metadata()))
    assert metadata["settings"]["stages"] == {"infer": {"distribution": "uniform", "relative": 0.4}}
    assert metadata["recommended"] == label
    assert set(metadata["recommended_shares"]) == {
        "on_front_share",
        "meets_limits_share",
        "recommended_share",
    }


def test_flow_writes_robustness(prefect_harness: None, tmp_path: Path) -> None:
    from flows.sweep import sweep

    workflow = _write(tmp_path, "workflow.yaml", WORKFLOW)
    system = _write(tmp_path, "system.yaml", SYSTEM)
    uncertainty = _write(tmp_path, "u.yaml", "samples: 5\nstage_time: {relative: 0.2}\n")
    out = tmp_path / "out"
    outcome = sweep(
        str(workflow), str(system), str(CATALOGS), str(out), uncertainty_path=str(uncertainty)
    )

    assert "robustness.parquet" in outcome.files
    assert outcome.robustness.startswith("The recommended candidate")
    table = pq.read_table(out / "robustness.parquet").to_pandas()
    labels = [row["label"] for row in outcome.candidates]
    assert table["label"].tolist() == labels
    front = pq.read_table(out / "front.parquet").to_pandas()
    assert table["at_infer"].tolist() == front["at_infer"].tolist()
    run = json.loads((out / "run.json").read_text())
    assert run["robustness"]["sha256"] == load_uncertainty(uncertainty).sha256
    assert run["robustness"]["samples"] == 5
    assert "robustness_s" in run["timings_s"]
    assert "## Robustness" in (out / "report.md").read_text()


def test_cli_bad_uncertainty_exit_2(tmp_path: Path) -> None:
    workflow = _write(tmp_path, "workflow.yaml", WORKFLOW)
    system = _write(tmp_path, "system.yaml", SYSTEM)
    uncertainty = _write(tmp_path, "u.yaml", "stage_time: {relative: 1.5}\n")
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "allocation.cli",
            "sweep",
            str(workflow),
            str(system),
            "--catalog",
            str(CATALOGS),
            "--out",
            str(out),
            "--uncertainty",
            str(uncertainty),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"{uncertainty}: stage_time.relative: invalid value 1.5" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
