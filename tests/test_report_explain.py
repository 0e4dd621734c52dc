"""The report's recommendation and pairwise explanations, on the shipped examples.

The figures in each comparison table must add up exactly, as printed: the differences
of the rows to the difference on the total row, and that to B's total minus A's.
"""

from __future__ import annotations

import functools
import itertools
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocation.report import _round_to_sum, render_report_md
from allocation.results import SweepSummary
from allocation.study import load_study
from allocation.summary import MAX_EXPLAINED_NEIGHBOURS, pairs_to_explain, summarise
from allocation.sweep import sweep_in_process
from tests.conftest import CATALOGS

EXAMPLES = ["object-detection", "style-transfer", "speech-sentiment"]
SYSTEM = CATALOGS / "systems" / "edge-cloud.yaml"


@functools.cache
def example_summary(workflow: str, **requirements: float) -> SweepSummary:
    study = load_study(
        CATALOGS / "workflows" / f"{workflow}.yaml", SYSTEM, requirements=requirements
    )
    front, patterns = sweep_in_process(study.problem)
    return summarise(study, front, patterns, patterns_sampled=False)


def comparison_tables(markdown: str) -> list[tuple[str, list[list[str]]]]:
    """Return (heading, rows) of every table under "How the candidates differ"."""
    section = markdown.split("## How the candidates differ", 1)[1].split("\n## ", 1)[0]
    tables = []
    heading = ""
    rows: list[list[str]] = []
    for line in [*section.splitlines(), ""]:
        if line.startswith("### "):
            heading = line[4:]
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif rows:
            tables.append((heading, rows))
            rows = []
    return tables


def number(cell: str) -> Decimal:
    return Decimal(cell.replace(",", "").replace("+", ""))


@pytest.mark.parametrize("workflow", EXAMPLES)
def test_report_names_recommendation_and_candidates(workflow: str) -> None:
    summary = example_summary(workflow)
    markdown = render_report_md(summary)
    assert summary.recommendation is not None and summary.recommendation.label is not None
    label = summary.recommendation.label
    assert f"**Recommended: candidate {label}**" in markdown
    assert f"| **{label}** (recommended) |" in markdown
    for candidate in summary.candidates["label"]:
        assert f"\n| {candidate} |" in markdown or f"| **{candidate}** (recommended) |" in markdown


@pytest.mark.parametrize("workflow", EXAMPLES)
def test_every_neighbouring_pair_is_explained(workflow: str) -> None:
    summary = example_summary(workflow)
    markdown = render_report_md(summary)
    labels = list(summary.candidates["label"])
    for a, b in itertools.pairwise(labels):
        assert f"### {b} compared with {a}" in markdown


@pytest.mark.parametrize("workflow", EXAMPLES)
def test_printed_differences_add_up_to_the_totals(workflow: str) -> None:
    summary = example_summary(workflow)
    tables = comparison_tables(render_report_md(summary))
    assert len(tables) >= 2 * (len(summary.candidates) - 1)
    for heading, rows in tables:
        body, total = rows[2:-1], rows[-1]
        assert total[0].startswith("**"), heading
        differences = [number(row[3]) for row in body]
        assert sum(differences, Decimal(0)) == number(total[3]), (heading, rows)
        for column in (1, 2):
            values = [number(row[column]) for row in body]
            assert sum(values, Decimal(0)) == number(total[column]), (heading, column, rows)
        assert number(total[2]) - number(total[1]) == number(total[3]), (heading, total)


@pytest.mark.parametrize("workflow", EXAMPLES)
def test_latency_rows_name_stages_and_transfers(workflow: str) -> None:
    summary = example_summary(workflow)
    for heading, rows in comparison_tables(render_report_md(summary)):
        if rows[0][0] != "Stage or transfer":
            continue
        for row in rows[2:-1]:
            assert row[0].startswith(("stage ", "transfer ", "unchanged ")), (heading, row)
            assert row[4], (heading, row)


def test_limits_mark_candidates_and_recommend_cheapest_within() -> None:
    summary = example_summary("object-detection", max_latency_s=4.2)
    markdown = render_report_md(summary)
    assert summary.recommendation is not None
    assert summary.recommendation.rule == "limits"
    # D (4.088 s) is the cheapest within 4.2 s; E takes 4.427 s.
    assert summary.recommendation.label == "D"
    assert "| max\\_latency\\_s | 4.2 s | A, B, C, D |" in markdown
    assert "| Equivalent assignments | Within the limits |" in markdown
    assert "| **D** (recommended) |" in markdown


def test_unmet_limit_says_by_how_much() -> None:
    summary = example_summary("object-detection", max_latency_s=1.0)
    markdown = render_report_md(summary)
    assert summary.recommendation is not None and summary.recommendation.label is None
    assert "**No recommendation.** No candidate meets the latency limit of 1 s" in markdown
    assert "over" in markdown.split("## Candidates")[0]
    assert "3.84" in markdown.split("## Candidates")[0]


def test_requested_pair_is_explained_and_unknown_label_rejected() -> None:
    summary = example_summary("object-detection")
    assert summary.recommendation is not None
    pairs, omitted = pairs_to_explain(summary.candidates, summary.recommendation, [("A", "J")])
    assert pairs[-1] == ("A", "J")
    assert omitted == 0
    from allocation.errors import InputError

    with pytest.raises(InputError, match="names candidate 'Z'"):
        pairs_to_explain(summary.candidates, summary.recommendation, [("A", "Z")])


def test_long_fronts_explain_a_window_around_the_recommendation() -> None:
    import pandas as pd

    from allocation.explain import Recommendation

    n = 50
    labels = [f"L{i:02d}" for i in range(n)]
    candidates = pd.DataFrame({"label": labels, "latency_s": [float(i) for i in range(n)]})
    recommendation = Recommendation(label="L40", rule="minimise", reason="")
    pairs, omitted = pairs_to_explain(candidates, recommendation, [])
    assert len(pairs) == MAX_EXPLAINED_NEIGHBOURS
    assert omitted == n - 1 - MAX_EXPLAINED_NEIGHBOURS
    assert ("L39", "L40") in pairs
    assert ("L40", "L41") in pairs


@given(
    st.lists(
        st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=0, max_value=9),
)
def test_round_to_sum_hits_the_total(values: list[float], decimals: int) -> None:
    step = Decimal(1).scaleb(-decimals)
    total = sum((Decimal(repr(v)) for v in values), Decimal(0)).quantize(step)
    rounded = _round_to_sum(values, total, decimals)
    assert sum(rounded, Decimal(0)) == total
    for value, shown in zip(values, rounded, strict=True):
        # Nearest rounding plus at most one step for every value.
        assert abs(shown - Decimal(repr(value))) <= step * Decimal("1.5") + step * len(values)


@pytest.mark.parametrize("workflow", EXAMPLES)
def test_sentences_quote_the_total_rows(workflow: str) -> None:
    markdown = render_report_md(example_summary(workflow))
    section = markdown.split("## How the candidates differ", 1)[1].split("\n## ", 1)[0]
    for part in section.split("\n### ")[1:]:
        sentence = part.splitlines()[2]
        totals = {
            rows[-1][0]: rows[-1]
            for _, rows in comparison_tables("## How the candidates differ\n### " + part)
        }
        latency = totals["**latency**"]
        if latency[3] != "0":
            assert f"({latency[2]} s against {latency[1]} s)" in sentence
        cost = totals["**cost per run**"]
        if cost[3] != "0":
            assert f"({cost[2]} USD against {cost[1]} USD)" in sentence
        monthly = totals.get("**monthly cost**")
        if monthly is not None and monthly[3] != "0":
            assert f"({monthly[2]} USD against {monthly[1]} USD)" in sentence
