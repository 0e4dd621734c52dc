"""Differences between two evaluations of a study, without Prefect."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from allocation.diff import EvaluationRecord, compare_inputs, diff_evaluations, render_diff_md

PRICE_ROW = {
    "provider": "aws",
    "service": "lambda",
    "region": "ap-northeast-1",
    "dimension": "duration",
    "architecture": "arm64",
    "unit": "GB-second",
    "usd_per_unit": 0.0000133334,
    "tier_start": 0.0,
    "tier_end": None,
    "free_allowance": None,
    "secondary": True,
    "source": "review record",
    "as_of": "2026-09-05",
}

INPUTS: dict[str, Any] = {
    "workflow": {"workflow": "two", "stages": [{"id": "s1", "time_s": 0.5}, {"id": "s2"}]},
    "system": {"system": "three", "devices": [{"id": "edge"}, {"id": "lam"}, {"id": "run"}]},
    "cpus": {"edge": {"cpu": "BCM2711", "single_thread": 597.0, "cores": 4}},
    "pricing": {
        "lam": {"provider": "aws-lambda", "memory_mb": 1024, "price_rows": [PRICE_ROW]},
        "run": {"provider": "flat", "usd_per_compute_s": 0.001},
    },
    "options": {"sweep": {"method": "auto"}},
    "tool": {"allocation": "0.1.0"},
}

# Every placement with its latency and cost, before and after the price rise.
PLACEMENTS = {
    ("lam", "lam"): (1.0, 0.0100, 0.0112),
    ("edge", "lam"): (1.5, 0.0050, 0.0056),
    ("edge", "run"): (1.6, 0.0052, 0.0052),
    ("edge", "edge"): (3.0, 0.0, 0.0),
}


def _table(rows: list[tuple[str, str]], column: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "latency_s": [PLACEMENTS[p][0] for p in rows],
            "cost_usd": [PLACEMENTS[p][column] for p in rows],
            "comm_s": [0.1] * len(rows),
            "equivalent_count": [1] * len(rows),
            "at_s1": [p[0] for p in rows],
            "at_s2": [p[1] for p in rows],
        }
    )


def _record(front: list[tuple[str, str]], column: int, recommended: str, inputs: Any) -> Any:
    run = {"recommendation": {"label": recommended, "rule": "limits", "reason": "cheapest"}}
    return EvaluationRecord(_table(front, column), run, inputs, _table(list(PLACEMENTS), column))


@pytest.fixture
def price_rise() -> tuple[EvaluationRecord, EvaluationRecord]:
    new_inputs = copy.deepcopy(INPUTS)
    new_inputs["pricing"]["lam"]["price_rows"][0]["usd_per_unit"] = 0.0000149334
    new_inputs["pricing"]["lam"]["price_rows"][0]["as_of"] = "2026-10-01"
    old = _record([("lam", "lam"), ("edge", "lam"), ("edge", "edge")], 1, "B", INPUTS)
    new = _record(
        [("lam", "lam"), ("edge", "lam"), ("edge", "run"), ("edge", "edge")], 2, "C", new_inputs
    )
    return old, new


def test_price_change_named(price_rise: tuple[EvaluationRecord, EvaluationRecord]) -> None:
    diff = diff_evaluations(*price_rise)
    assert len(diff.input_changes) == 1
    text = diff.input_changes[0].text
    assert "aws lambda arm64 duration price in ap-northeast-1 rose 12.0 %" in text
    assert "0.0000133334 → 0.0000149334 USD per GB-second" in text
    assert '"2026-09-05" → "2026-10-01"' in text
    assert diff.input_changes[0].devices == ("lam",)


def test_front_entered_and_changed(
    price_rise: tuple[EvaluationRecord, EvaluationRecord],
) -> None:
    diff = diff_evaluations(*price_rise)
    assert [e.placement for e in diff.entered] == [("edge", "run")]
    assert diff.left == []
    assert [c.placement for c in diff.changed] == [("lam", "lam"), ("edge", "lam")]
    assert diff.changed[1].metrics["cost_usd"] == pytest.approx((0.0050, 0.0056))
    assert diff.changed[1].causes == (diff.input_changes[0],)
    assert diff.unchanged == 1


def test_recommendation_flip_traced(
    price_rise: tuple[EvaluationRecord, EvaluationRecord],
) -> None:
    diff = diff_evaluations(*price_rise)
    change = diff.recommendation
    assert change is not None
    assert change.old == ("B", ("edge", "lam"))
    assert change.new == ("C", ("edge", "run"))
    assert change.flips == (
        "B (the old recommendation) now costs more per run than C: 0.0056 USD against "
        "0.0052 USD (before: 0.005 USD against 0.0052 USD)",
    )
    assert change.causes == (diff.input_changes[0],)


def test_markdown_tells_the_story(
    price_rise: tuple[EvaluationRecord, EvaluationRecord],
) -> None:
    text = render_diff_md(diff_evaluations(*price_rise), "two--three")
    assert text.startswith("# Changes in two--three\n")
    assert (
        "The recommendation changed from B (stage 2 on lam, rest on edge) to "
        "C (stage 2 on run, rest on edge)." in text
    )
    assert "B (the old recommendation) now costs more per run than C" in text
    assert "It can be traced to input change 1 below." in text
    assert "1. aws lambda arm64 duration price in ap-northeast-1 rose 12.0 %" in text
    assert "1 entered, 0 left, 2 stayed with changed metrics, 1 stayed unchanged." in text
    assert "- C (stage 2 on run, rest on edge): latency_s 1.6 s, cost_usd 0.0052 USD" in text
    assert "(before: latency_s 1.6 s, cost_usd 0.0052 USD)" in text
    assert "cost_usd 0.005 USD → 0.0056 USD (+12.0 %) (from input change 1)" in text


def test_left_front_and_unchanged_recommendation() -> None:
    old = _record([("lam", "lam"), ("edge", "lam"), ("edge", "edge")], 1, "C", INPUTS)
    new = _record([("lam", "lam"), ("edge", "edge")], 1, "B", INPUTS)
    diff = diff_evaluations(old, new)
    text = render_diff_md(diff, "s")
    assert diff.recommendation is None
    expected = "B (all on edge) is still recommended (labelled C before), with the same metrics."
    assert expected in text
    assert "No input changed." in text
    assert [e.placement for e in diff.left] == [("edge", "lam")]
    assert "- B of the previous front (stage 2 on lam, rest on edge): was latency_s 1.5 s" in text


def test_changed_stages_not_matched() -> None:
    old = _record([("lam", "lam")], 1, "A", INPUTS)
    new_inputs = copy.deepcopy(INPUTS)
    new_inputs["workflow"]["stages"].append({"id": "s3"})
    front = _table([("lam", "lam")], 1).assign(at_s3="edge")
    new = EvaluationRecord(front, old.run, new_inputs)
    diff = diff_evaluations(old, new)
    assert not diff.same_stages
    assert diff.input_changes[0].text == 'workflow stages[s3] (absent) → {"id": "s3"}'
    text = render_diff_md(diff, "s")
    # Brackets from input files are escaped, so they cannot form a markdown link.
    assert "1. workflow stages\\[s3\\] (absent)" in text
    assert "placements of the two fronts cannot be matched" in text


def test_cpu_and_option_changes_described() -> None:
    new_inputs = copy.deepcopy(INPUTS)
    new_inputs["cpus"]["edge"]["single_thread"] = 620.0
    new_inputs["pricing"]["lam"]["memory_mb"] = 2048
    new_inputs["options"]["sweep"]["method"] = "exact"
    texts = [change.text for change in compare_inputs(INPUTS, new_inputs)]
    assert texts == [
        "device lam (aws-lambda): pricing option memory_mb 1024 → 2048",
        "CPU of device edge, BCM2711: single_thread 597 → 620 (+3.9 %)",
        'sweep option sweep.method "auto" → "exact"',
    ]


def test_record_read_reports_missing_files(tmp_path: Path) -> None:
    from allocation.errors import AllocationError

    with pytest.raises(AllocationError, match="cannot read the evaluation"):
        EvaluationRecord.read(tmp_path)


def test_redated_price_row_not_a_cause(
    price_rise: tuple[EvaluationRecord, EvaluationRecord],
) -> None:
    old, new = price_rise
    old_inputs = copy.deepcopy(old.inputs)
    redated = {**PRICE_ROW, "dimension": "requests", "unit": "request", "usd_per_unit": 2e-7}
    old_inputs["pricing"]["lam"]["price_rows"].append(redated)
    new.inputs["pricing"]["lam"]["price_rows"].append(
        {**redated, "as_of": "2026-10-01", "source": "price list of October"}
    )
    diff = diff_evaluations(EvaluationRecord(old.front, old.run, old_inputs, old.patterns), new)
    redated_change = next(c for c in diff.input_changes if "requests" in c.text)
    markdown = render_diff_md(diff, "two--three")

    assert redated_change.metrics == ()
    assert all(redated_change not in change.causes for change in diff.changed)
    assert diff.recommendation is not None
    assert redated_change not in diff.recommendation.causes
    assert "Price rows with a new date or source and unchanged prices" in markdown
    assert "- aws lambda arm64 requests price in ap-northeast-1: rate unchanged" in markdown
    assert "(from input change 1)" in markdown


def test_metric_numbers_in_plain_decimals() -> None:
    front = [("lam", "lam"), ("edge", "lam")]
    old = EvaluationRecord(
        _table(front, 1).assign(cost_usd=[0.000102, 0.0000950]), {}, INPUTS, None
    )
    new = EvaluationRecord(
        _table(front, 1).assign(cost_usd=[0.0000950, 0.000102]), {}, INPUTS, None
    )
    markdown = render_diff_md(diff_evaluations(old, new), "two--three")

    assert "e-05" not in markdown
    assert "cost_usd 0.000102 USD → 0.000095 USD" in markdown


def _stream_record(
    rows: list[tuple[tuple[str, str], float, float]], recommended: str | None, inputs: Any
) -> EvaluationRecord:
    """Build an evaluation whose front has the period and throughput columns."""
    table = pd.DataFrame(
        {
            "latency_s": [2.0] * len(rows),
            "cost_usd": [cost for _, cost, _ in rows],
            "comm_s": [0.1] * len(rows),
            "period_s": [period for _, _, period in rows],
            "throughput_fps": [1.0 / period for _, _, period in rows],
            "equivalent_count": [1] * len(rows),
            "at_s1": [p[0] for p, _, _ in rows],
            "at_s2": [p[1] for p, _, _ in rows],
        }
    )
    run = {
        "objectives": ["latency_s", "cost_usd", "period_s"],
        "recommendation": {"label": recommended, "rule": "limits", "reason": "fastest"},
    }
    return EvaluationRecord(table, run, inputs, table)


def test_period_and_throughput_in_diff() -> None:
    new_inputs = copy.deepcopy(INPUTS)
    new_inputs["system"]["contention"] = {"concurrent_frames": 3}
    old = _stream_record([(("edge", "lam"), 0.005, 1.6), (("edge", "edge"), 0.0, 4.0)], "A", INPUTS)
    new = _stream_record(
        [(("edge", "lam"), 0.005, 2.4), (("edge", "edge"), 0.0, 4.0)], None, new_inputs
    )
    diff = diff_evaluations(old, new)
    text = render_diff_md(diff, "stream")

    assert diff.changed[0].metrics["period_s"] == pytest.approx((1.6, 2.4))
    assert "period_s 1.6 s → 2.4 s (+50.0 %)" in text
    assert "throughput_fps 0.625 fps → 0.416667 fps (-33.3 %)" in text
    assert "The recommendation changed from A (stage 2 on lam, rest on edge) to none." in text
    assert (
        "- A (the old recommendation): now latency_s 2 s, cost_usd 0.005 USD, period_s 2.4 s, "
        "throughput_fps 0.416667 fps (before: latency_s 2 s, cost_usd 0.005 USD, "
        "period_s 1.6 s, throughput_fps 0.625 fps)." in text
    )


def test_left_front_lists_objectives_and_throughput() -> None:
    old = _stream_record([(("edge", "lam"), 0.005, 1.6), (("edge", "edge"), 0.0, 4.0)], "B", INPUTS)
    new = _stream_record([(("edge", "edge"), 0.0, 4.0)], "A", INPUTS)
    text = render_diff_md(diff_evaluations(old, new), "stream")

    assert (
        "- A of the previous front (stage 2 on lam, rest on edge): was latency_s 2 s, "
        "cost_usd 0.005 USD, period_s 1.6 s, throughput_fps 0.625 fps" in text
    )


def _memory_inputs(gateway_limit_mb: float) -> dict[str, Any]:
    inputs = copy.deepcopy(INPUTS)
    inputs["workflow"]["stages"] = [
        {"id": "s1", "time_s": 0.5, "memory_mb": 500.0},
        {"id": "s2", "time_s": 0.5, "memory_mb": 450.0},
    ]
    inputs["system"]["devices"] = [
        {"id": "edge", "memory_mb": None},
        {"id": "lam", "memory_mb": gateway_limit_mb},
    ]
    return inputs


def test_tighter_memory_limit_explains_left_candidate() -> None:
    front = [(("lam", "lam"), 0.01, 1.0), (("edge", "edge"), 0.0, 4.0)]
    old = _stream_record(front, "A", _memory_inputs(1024.0))
    new_table = old.front.iloc[[1]].reset_index(drop=True)
    new = EvaluationRecord(new_table, old.run, _memory_inputs(900.0), new_table)
    diff = diff_evaluations(old, new)
    text = render_diff_md(diff, "memory")

    assert [c.text for c in diff.input_changes] == ["system devices[lam].memory_mb 1024 → 900"]
    assert diff.input_changes[0].metrics == ()
    assert "1. system devices\\[lam\\].memory_mb 1024 → 900" in text
    assert [e.placement for e in diff.left] == [("lam", "lam")]
    assert diff.left[0].causes == (diff.input_changes[0],)
    assert (
        "now exceeds a device's memory limit: its stages on lam need 950 MB, over the limit "
        "of 900 MB (was 1024 MB) (from input change 1)" in text
    )
    # The old recommendation no longer fits, and the limit is named as the cause.
    assert "- A (the old recommendation) now exceeds a device's memory limit" in text
    assert "- It can be traced to input change 1 below." in text
