"""Tests of the markdown report, the summary artifact and the candidates artifact rows."""

from __future__ import annotations

import base64
import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest

from allocation.report import (
    candidates_artifact_rows,
    escape_markdown,
    format_significant,
    render_report_md,
    render_summary_markdown,
)
from allocation.results import SweepSummary
from tests.test_charts import IMG_MARKUP, SCRIPT_BREAK, build_summary

HOSTILE_TEXT = f"{IMG_MARKUP} {SCRIPT_BREAK} a|b *bold* _it_ `code` [link](x)\nsecond line"
ESCAPED_IMG = "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture(scope="module")
def summary() -> SweepSummary:
    return build_summary()


@pytest.fixture(scope="module")
def hostile_summary() -> SweepSummary:
    return build_summary(text=HOSTILE_TEXT)


def table_rows(markdown: str, first_heading_cell: str) -> list[list[str]]:
    """Return the cells of the table whose header starts with `first_heading_cell`.

    Cells are split at unescaped pipes, as a GitHub-flavoured markdown renderer does.
    """
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_heading_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip() for cell in cells])
    return rows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<b>", "&lt;b&gt;"),
        ("a & b", "a &amp; b"),
        ("a|b", "a&#124;b"),
        ("`x`", "&#96;x&#96;"),
        ("*x*", "\\*x\\*"),
        ("_x_", "\\_x\\_"),
        ("[x](y)", "\\[x\\](y)"),
        ("~~x~~", "\\~\\~x\\~\\~"),
        ("$x$", "\\$x\\$"),
        ("a\\*", "a\\\\\\*"),
        ("one\ntwo\r\nthree\u2028four", "one two three four"),
        ("&lt;", "&amp;lt;"),
        ("Bildverarbeitung für Kameras", "Bildverarbeitung für Kameras"),
    ],
)
def test_escape_markdown_cases(text: str, expected: str) -> None:
    assert escape_markdown(text) == expected


def test_escape_markdown_leaves_no_markup() -> None:
    escaped = escape_markdown(HOSTILE_TEXT)

    for character in "<>`\n":
        assert character not in escaped
    assert not re.search(r"(?<!\\)[|*_\[\]]", escaped.replace("&#124;", ""))


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (2.52083, 3, "2.52"),
        (0.0000333, 3, "0.0000333"),
        (123456.7, 3, "123,457"),
        (7.4, 3, "7.4"),
        (0.0, 3, "0"),
        (3.3e-7, 3, "3.3e-07"),
        (-2.5, 3, "-2.5"),
    ],
)
def test_format_significant_cases(value: float, digits: int, expected: str) -> None:
    assert format_significant(value, digits) == expected


def test_format_significant_trailing_zeros() -> None:
    assert format_significant(7.4, 3, trailing_zeros=True) == "7.40"
    assert format_significant(11.0, 3, trailing_zeros=True) == "11.0"


def test_report_sections(summary: SweepSummary) -> None:
    report = render_report_md(summary)

    assert report.startswith("# Allocation of detect-objects on pi-gateway-cloud\n")
    for heading in (
        "## Candidates",
        "## Baselines and compared placements",
        "## Stages",
        "## Assumptions",
        "### Links",
        "### CPUs",
        "### Pricing",
        "## Patterns",
        "## Timings",
    ):
        assert f"\n{heading}\n" in report
    assert "27 assignments of 5 stages to 3 devices" in report
    assert "The sweep took 1.5 s, not counting the start-up of Prefect." in report


def test_report_candidates_table(summary: SweepSummary) -> None:
    rows = table_rows(render_report_md(summary), "Label")
    header, body = rows[0], rows[2:]

    assert header[:4] == ["Label", "Placement", "Latency (s)", "Cost per run (USD)"]
    assert "Monthly cost (USD)" not in header
    assert summary.recommendation is not None
    recommended = summary.recommendation.label
    expected = [
        f"**{label}** (recommended)" if label == recommended else label
        for label in summary.candidates["label"]
    ]
    assert [row[0] for row in body] == expected
    assert [row[1] for row in body] == list(summary.candidates["placement"])
    assert all(row[2].endswith(" s") for row in body)
    assert all(row[3].endswith(" USD") for row in body)
    assert len({row[2] for row in body}) == len(body)


def test_report_monthly_cost_column() -> None:
    summary = build_summary(runs_per_month=1_000_000)
    report = render_report_md(summary)
    header = table_rows(report, "Label")[0]

    assert "Monthly cost (USD)" in header
    assert "1,000,000 runs per month" in report


def test_report_digits_tell_candidates_apart(summary: SweepSummary) -> None:
    candidates = summary.candidates.copy()
    candidates.loc[0, "latency_s"] = 1.000001
    candidates.loc[1, "latency_s"] = 1.000002
    close = dataclasses.replace(summary, candidates=candidates)

    body = table_rows(render_report_md(close), "Label")[2:]

    assert body[0][2] != body[1][2]
    assert body[0][2] == "1.000001 s"


def test_report_baselines(summary: SweepSummary) -> None:
    report = render_report_md(summary)
    rows = {row[0]: row for row in table_rows(report, "Baseline")[2:]}
    gateway = summary.baselines.set_index("baseline").loc["all on gateway"]
    winner = str(gateway["dominated_by"])

    assert set(rows) == set(summary.baselines["baseline"])
    assert rows["all on gateway"][-1] == f"dominated by candidate {winner}"
    assert rows["all on cloud"][-1].startswith("on the front as candidate ")
    assert f"- all on gateway is dominated by candidate {winner}: latency " in report
    note = next(line for line in report.splitlines() if line.startswith("- all on gateway"))
    assert note.count(" %)") == 2


def test_report_assumptions(summary: SweepSummary) -> None:
    report = render_report_md(summary)
    links = table_rows(report, "Link")[2:]
    cpus = table_rows(report, "Role")[2:]

    assert ["edge – gateway", "300 Mbit/s", "1 ms"] in links
    assert [row[0] for row in cpus] == [
        "reference PC (measured\\_on)",
        "device edge",
        "device gateway",
        "device cloud",
    ]
    assert "inline in the input file" in cpus[0]
    assert "- Device cloud: provider flat; usd\\_per\\_compute\\_s = 1.7e-05" in report
    assert "runs\\_per\\_month is not set" in report


def test_report_stage_numbers(summary: SweepSummary) -> None:
    rows = table_rows(render_report_md(summary), "#")[2:]

    assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
    assert [row[1] for row in rows] == [s.replace("_", "\\_") for s in summary.problem.stage_ids]
    assert rows[0][-1] == "edge (pinned)"


def test_report_sampled_patterns() -> None:
    sampled = build_summary(n_free_stages=6, sample_fraction=0.25)
    report = render_report_md(sampled)

    assert (
        f"patterns.parquet holds a uniform sample of {len(sampled.patterns):,} of the "
        f"{sampled.space_size:,} assignments" in report
    )


def test_report_all_patterns(summary: SweepSummary) -> None:
    assert "patterns.parquet holds all 27 assignments." in render_report_md(summary)


def test_report_escapes_input_text(hostile_summary: SweepSummary) -> None:
    report = render_report_md(hostile_summary)

    assert IMG_MARKUP not in report
    assert SCRIPT_BREAK not in report
    assert "second line" in report
    assert "\nsecond line" not in report
    # Two descriptions, five stage names and three CPU names carry the text.
    assert report.count(ESCAPED_IMG) >= 2 + 5 + 3
    for heading in ("#", "Role"):
        rows = table_rows(report, heading)
        assert {len(row) for row in rows} == {len(rows[0])}


def test_report_renders_input_text_as_text(hostile_summary: SweepSummary) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    page = (
        markdown_it.MarkdownIt("commonmark")
        .enable("table")
        .render(render_report_md(hostile_summary))
    )
    tags = set(re.findall(r"</?([a-z0-9]+)", page))

    # The report's own markup: headings, lists, tables, bold labels, code for option
    # names and the chart images. Nothing else may come from the input text.
    allowed = {"h1", "h2", "h3", "p", "ul", "li", "table", "thead", "tbody", "tr", "th", "td"}
    assert tags <= allowed | {"strong", "code", "img"}
    images = re.findall(r"<img [^>]*>", page)
    assert {re.search(r'src="([^"]*)"', tag).group(1) for tag in images} <= {  # type: ignore[union-attr]
        "chart.png",
        "breakdown.png",
        "placement.png",
    }
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "a|b *bold* _it_ `code` [link](x) second line" in page


def test_summary_markdown_with_chart(summary: SweepSummary) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    markdown = render_summary_markdown(summary, png_data_uri=data_uri)

    assert markdown.startswith("## Trade-off of detect-objects on pi-gateway-cloud\n")
    assert f"![trade-off chart]({data_uri})" in markdown
    assert table_rows(markdown, "Label")[0][0] == "Label"
    assert "## Baselines" not in markdown


def test_summary_markdown_without_chart(summary: SweepSummary) -> None:
    assert "![" not in render_summary_markdown(summary, png_data_uri=None)


@pytest.mark.parametrize(
    "data_uri",
    [
        "javascript:alert(1)",
        "data:image/svg+xml;base64,PHN2Zz4=",
        "data:image/png;base64,AAAA) ![x](http://example.invalid/x.png",
    ],
)
def test_summary_markdown_rejects_other_uris(summary: SweepSummary, data_uri: str) -> None:
    with pytest.raises(ValueError, match="png_data_uri"):
        render_summary_markdown(summary, png_data_uri=data_uri)


def test_summary_markdown_escapes_input_text(hostile_summary: SweepSummary) -> None:
    markdown = render_summary_markdown(hostile_summary, png_data_uri=None)

    assert IMG_MARKUP not in markdown
    assert SCRIPT_BREAK not in markdown
    assert ESCAPED_IMG in markdown


def test_artifact_rows_json_native(summary: SweepSummary) -> None:
    rows = candidates_artifact_rows(summary)

    json.dumps(rows, allow_nan=False)
    assert [row["label"] for row in rows] == list(summary.candidates["label"])
    assert list(rows[0])[:2] == ["label", "placement"]
    assert set(rows[0]) == set(summary.candidates.columns)
    for row in rows:
        assert row["monthly_cost_usd"] is None
        for value in row.values():
            assert value is None or type(value) in (str, int, float, bool)
        assert type(row["equivalent_count"]) is int
        assert type(row["upload_bytes"]) is int


def test_artifact_rows_nan_as_none(summary: SweepSummary) -> None:
    candidates = summary.candidates.copy()
    candidates["latency_s"] = candidates["latency_s"].astype("float64")
    candidates.loc[0, "latency_s"] = np.nan
    candidates.loc[1, "latency_s"] = np.inf
    candidates["monthly_cost_usd"] = pd.array([1.5] + [None] * (len(candidates) - 1), "Float64")
    rows = candidates_artifact_rows(dataclasses.replace(summary, candidates=candidates))

    json.dumps(rows, allow_nan=False)
    assert rows[0]["latency_s"] is None
    assert rows[1]["latency_s"] is None
    assert rows[0]["monthly_cost_usd"] == 1.5
    assert rows[1]["monthly_cost_usd"] is None


def test_artifact_rows_dotted_stage_ids() -> None:
    summary = build_summary(stage_ids=["in.frame", "a.b", "c.d.e", "out.boxes"])
    rows = candidates_artifact_rows(summary)

    json.dumps(rows, allow_nan=False)
    assert {"at_in.frame", "at_a.b", "at_c.d.e", "at_out.boxes"} <= set(rows[0])
