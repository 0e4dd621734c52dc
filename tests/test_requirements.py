"""Requirements in the system file, and the candidate `recommend` picks by them.

The candidate tables are small and written by hand, so every recommended label and
every number in a reason or a shortfall is checked against a hand calculation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from allocation.errors import InputError
from allocation.explain import recommend
from allocation.loading import load_system
from allocation.model import Requirements

LATENCY_COST = ("latency_s", "cost_usd")

SYSTEM: dict[str, Any] = {
    "system": "edge-cloud",
    "devices": [
        {"id": "edge", "cpu": {"name": "Board", "cores": 4, "single_thread": 500.0}},
        {"id": "cloud", "cpu": {"name": "vCPU", "cores": 2, "single_thread": 2000.0}},
    ],
    "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 100.0}],
}


def front(latency_s: list[float], cost_usd: list[float], **more: list[float]) -> pd.DataFrame:
    """Return a candidates table labelled A, B, ... in the given (latency) order."""
    labels = [chr(ord("A") + i) for i in range(len(latency_s))]
    return pd.DataFrame({"label": labels, "latency_s": latency_s, "cost_usd": cost_usd, **more})


# Four candidates: each second saved costs more than the one before.
FOUR = front([1.0, 2.0, 3.0, 4.0], [0.004, 0.002, 0.001, 0.0005])


def write_system(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "system.yaml"
    path.write_text(yaml.safe_dump({**SYSTEM, **changes}, sort_keys=False))
    return path


# ---------------------------------------------------------------------------
# Loading


def test_requirements_load(tmp_path: Path) -> None:
    path = write_system(
        tmp_path, requirements={"max_latency_s": 2, "max_cost_usd": 0.001, "minimise": "latency_s"}
    )

    requirements = load_system(path).requirements

    assert requirements is not None
    assert requirements.limits == {"max_latency_s": 2.0, "max_cost_usd": 0.001}
    assert requirements.minimise == "latency_s"


def test_requirements_default_minimise(tmp_path: Path) -> None:
    requirements = load_system(write_system(tmp_path, requirements={})).requirements

    assert requirements is not None
    assert requirements.limits == {}
    assert requirements.minimise == "cost_usd"


@pytest.mark.parametrize(
    ("requirements", "field"),
    [
        ({"max_latency_s": 0}, "requirements.max_latency_s"),
        ({"max_latency_s": -1.5}, "requirements.max_latency_s"),
        ({"max_cost_usd": -0.01}, "requirements.max_cost_usd"),
        ({"max_latency_s": "2 s"}, "requirements.max_latency_s"),
        ({"minimise": "price"}, "requirements.minimise"),
    ],
)
def test_requirements_invalid_value(tmp_path: Path, requirements: dict, field: str) -> None:
    with pytest.raises(InputError) as info:
        load_system(write_system(tmp_path, requirements=requirements))

    assert f"system.yaml: {field}: invalid value" in str(info.value)


def test_requirements_misspelt_field(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_system(write_system(tmp_path, requirements={"max_latency": 2}))

    message = str(info.value)
    assert "requirements: unknown field 'max_latency'" in message
    assert "did you mean 'max_latency_s'?" in message


def test_monthly_limit_needs_runs(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_system(write_system(tmp_path, requirements={"max_monthly_cost_usd": 50}))

    message = str(info.value)
    assert "requirements.max_monthly_cost_usd" in message
    assert "runs_per_month" in message


def test_monthly_minimise_needs_runs(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_system(write_system(tmp_path, requirements={"minimise": "monthly_cost_usd"}))

    assert "requirements.minimise" in str(info.value)


def test_monthly_limit_with_runs(tmp_path: Path) -> None:
    path = write_system(tmp_path, runs_per_month=1000, requirements={"max_monthly_cost_usd": 50})

    requirements = load_system(path).requirements

    assert requirements is not None
    assert requirements.limits == {"max_monthly_cost_usd": 50.0}


# ---------------------------------------------------------------------------
# Rule 1: limits


def test_limits_cheapest_within_latency() -> None:
    result = recommend(FOUR, Requirements(max_latency_s=2.5), LATENCY_COST)

    assert result.label == "B"
    assert result.rule == "limits"
    assert result.reason == (
        "B is the cheapest candidate that meets the latency limit of 2.5 s: "
        "it takes 2 s at 0.002 USD per run."
    )
    assert result.meets == {
        "max_latency_s": [True, True, False, False],
        "all": [True, True, False, False],
    }
    assert result.shortfalls == []


def test_limits_minimise_latency() -> None:
    requirements = Requirements(max_cost_usd=0.0025, minimise="latency_s")

    result = recommend(FOUR, requirements, LATENCY_COST)

    assert result.label == "B"
    assert result.reason == (
        "B is the fastest candidate that meets the cost limit of 0.0025 USD per run: "
        "it takes 2 s at 0.002 USD per run."
    )


def test_limits_both() -> None:
    requirements = Requirements(max_latency_s=3.5, max_cost_usd=0.003)

    result = recommend(FOUR, requirements, LATENCY_COST)

    assert result.label == "C"
    assert result.meets["max_cost_usd"] == [False, True, True, True]
    assert result.meets["all"] == [False, True, True, False]
    assert "the latency limit of 3.5 s and the cost limit of 0.003 USD per run" in result.reason


def test_limit_met_within_tolerance() -> None:
    result = recommend(FOUR, Requirements(max_latency_s=2.0 * (1 - 1e-10)), LATENCY_COST)

    assert result.label == "B"
    assert result.meets["max_latency_s"] == [True, True, False, False]


def test_limit_missed_beyond_tolerance() -> None:
    result = recommend(FOUR, Requirements(max_latency_s=2.0 * (1 - 1e-8)), LATENCY_COST)

    assert result.label == "A"


def test_limits_tie_goes_to_lower_latency() -> None:
    table = front([1.0, 2.0, 3.0], [0.002, 0.001, 0.001 * (1 - 1e-12)])

    result = recommend(table, Requirements(max_latency_s=10), LATENCY_COST)

    assert result.label == "B"


def test_limits_tie_goes_to_label_order() -> None:
    table = front([2.0, 2.0, 3.0], [0.001, 0.001, 0.0005])

    result = recommend(table, Requirements(max_latency_s=2.5), LATENCY_COST)

    assert result.label == "A"


def test_limits_monthly() -> None:
    table = front([1.0, 2.0, 3.0], [0.004, 0.002, 0.001], monthly_cost_usd=[40.0, 20.0, 10.0])

    result = recommend(
        table, Requirements(max_monthly_cost_usd=25, minimise="latency_s"), LATENCY_COST
    )

    assert result.label == "B"
    assert result.reason == (
        "B is the fastest candidate that meets the monthly cost limit of 25 USD per month: "
        "it takes 2 s at 0.002 USD per run (20 USD per month)."
    )


def test_monthly_limit_without_monthly_column() -> None:
    table = FOUR.assign(monthly_cost_usd=pd.array([None] * 4, dtype="Float64"))

    with pytest.raises(ValueError, match="runs_per_month"):
        recommend(table, Requirements(max_monthly_cost_usd=25), LATENCY_COST)


# ---------------------------------------------------------------------------
# No candidate within the limits


def test_no_candidate_fast_enough() -> None:
    result = recommend(FOUR, Requirements(max_latency_s=0.5), LATENCY_COST)

    assert result.label is None
    assert result.rule == "limits"
    assert result.reason == "No candidate meets the latency limit of 0.5 s, so none is recommended."
    assert result.shortfalls == [
        "No candidate meets max_latency_s = 0.5 s: the fastest candidate, A, takes 1 s, "
        "0.5 s (100 %) over."
    ]


def test_no_candidate_cheap_enough() -> None:
    result = recommend(FOUR, Requirements(max_cost_usd=0.0004), LATENCY_COST)

    assert result.shortfalls == [
        "No candidate meets max_cost_usd = 0.0004 USD: the cheapest candidate, D, costs "
        "0.0005 USD per run, 0.0001 USD (25 %) over."
    ]


def test_zero_cost_limit_has_no_percentage() -> None:
    result = recommend(FOUR, Requirements(max_cost_usd=0), LATENCY_COST)

    assert result.shortfalls == [
        "No candidate meets max_cost_usd = 0 USD: the cheapest candidate, D, costs "
        "0.0005 USD per run, 0.0005 USD over."
    ]


def test_limits_met_alone_not_together() -> None:
    # A and B are fast enough, C and D cheap enough, none both.
    requirements = Requirements(max_latency_s=2.0, max_cost_usd=0.001)

    result = recommend(FOUR, requirements, LATENCY_COST)

    assert result.label is None
    assert result.meets["max_latency_s"] == [True, True, False, False]
    assert result.meets["max_cost_usd"] == [False, False, True, True]
    assert result.reason.endswith("together, so none is recommended.")
    assert result.shortfalls == [
        "Among the candidates that meet max_cost_usd = 0.001 USD, the fastest candidate, C, "
        "takes 3 s, 1 s (50 %) over max_latency_s = 2 s.",
        "Among the candidates that meet max_latency_s = 2 s, the cheapest candidate, B, "
        "costs 0.002 USD per run, 0.001 USD (100 %) over max_cost_usd = 0.001 USD.",
    ]


def test_one_limit_unmet_reports_only_it() -> None:
    requirements = Requirements(max_latency_s=0.5, max_cost_usd=0.01)

    result = recommend(FOUR, requirements, LATENCY_COST)

    assert len(result.shortfalls) == 1
    assert result.shortfalls[0].startswith("No candidate meets max_latency_s = 0.5 s")


# ---------------------------------------------------------------------------
# Rule 2: the knee


def test_knee_hand_calculated() -> None:
    # B: 6 USD per second saved to reach A, 1 USD per second saved from C: ratio 6.
    # C: 1 USD per second to reach B, 0.5 USD per second from D: ratio 2.
    table = front([1.0, 2.0, 3.0, 4.0], [10.0, 4.0, 3.0, 2.5])

    result = recommend(table, None, LATENCY_COST)

    assert result.label == "B"
    assert result.rule == "knee"
    assert result.reason == (
        "No limits are set, so the knee of the front is recommended: reaching B from C "
        "costs 1 USD per run for each second saved, and going on to A would cost 6 USD per "
        "run for each second saved, 6 times as much. B takes 2 s at 4 USD per run."
    )
    assert result.meets == {"all": [True, True, True, True]}


def test_knee_with_objectives_reversed() -> None:
    table = front([1.0, 2.0, 3.0, 4.0], [10.0, 9.0, 3.0, 2.5])

    # B: (10-9)/1 = 1 over (9-3)/1 = 6, ratio 1/6; C: 6 over 0.5, ratio 12.
    assert recommend(table, None, ("cost_usd", "latency_s")).label == "C"


def test_knee_monthly_cost() -> None:
    table = front([1.0, 2.0, 3.0], [0.3, 0.2, 0.1], monthly_cost_usd=[100.0, 20.0, 10.0])

    result = recommend(table, Requirements(), ("latency_s", "monthly_cost_usd"))

    assert result.rule == "knee"
    assert result.label == "B"
    assert "80 USD per month for each second saved" in result.reason


def test_knee_needs_three_candidates() -> None:
    result = recommend(FOUR.iloc[:2], None, LATENCY_COST)

    assert result.rule == "minimise"
    assert result.label == "B"


def test_knee_needs_a_bend() -> None:
    # From C to B a second saved costs 0.002 USD; from B to A only 0.001 USD.
    table = front([1.0, 2.0, 3.0], [0.005, 0.004, 0.002])

    result = recommend(table, None, LATENCY_COST)

    assert result.rule == "minimise"
    assert result.label == "C"


def test_knee_skips_straight_segments() -> None:
    # Equal rates around B (no bend), a bend at C.
    table = front([1.0, 2.0, 3.0, 4.0], [0.006, 0.004, 0.002, 0.0015])

    result = recommend(table, None, LATENCY_COST)

    assert result.rule == "knee"
    assert result.label == "C"


def test_knee_not_with_three_objectives() -> None:
    table = FOUR.assign(comm_s=[0.1, 0.2, 0.3, 0.4])

    result = recommend(table, None, ("latency_s", "cost_usd", "comm_s"))

    assert result.rule == "minimise"
    assert result.label == "D"


def test_written_minimise_overrides_knee() -> None:
    result = recommend(FOUR, Requirements(minimise="latency_s"), LATENCY_COST)

    assert result.rule == "minimise"
    assert result.label == "A"


# ---------------------------------------------------------------------------
# Rule 3: minimise


def test_minimise_reason_says_how_to_set_limits() -> None:
    result = recommend(FOUR.iloc[:2], None, LATENCY_COST)

    assert result.reason == (
        "No limits are set, so the cheapest candidate is recommended: B takes 2 s at "
        "0.002 USD per run. To choose by limits, set them under requirements: in the "
        "system file, or with --max-latency-s on the command line."
    )


def test_minimise_upload_bytes() -> None:
    table = FOUR.assign(upload_bytes=[4000, 3000, 1000, 2000])

    result = recommend(table, Requirements(minimise="upload_bytes"), ("latency_s",))

    assert result.label == "C"
    assert "1,000 bytes uploaded" in result.reason


def test_no_candidates() -> None:
    result = recommend(FOUR.iloc[:0], Requirements(max_latency_s=1), LATENCY_COST)

    assert result.label is None
    assert result.meets == {"max_latency_s": [], "all": []}


def test_reason_keeps_markup_unescaped() -> None:
    table = FOUR.assign(label=["<b>A</b>", "B", "C", "D"])

    result = recommend(table, Requirements(max_latency_s=1), LATENCY_COST)

    assert result.label == "<b>A</b>"
    assert result.reason.startswith("<b>A</b> is the cheapest candidate")
