"""Outputs of `allocation whatif`: report.md, chart.html, chart.png and curves.parquet."""

from __future__ import annotations

from pathlib import Path

import altair as alt

from allocation.charts import chart_png, write_chart_html
from allocation.whatif import WhatIf, describe_change, placement_text, whole_number_note

__all__ = ["report_markdown", "what_if_chart", "write_outputs"]


def what_if_chart(result: WhatIf, *, log: bool) -> alt.VConcatChart:
    """Chart each candidate's latency and cost against the parameter, with the changes."""
    data = result.curves
    scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
    x = alt.X("value:Q", title=result.parameter, scale=scale)
    rules = alt.Chart(
        {
            "values": [
                {"value": c.value, "kind": c.kind}
                for c in result.changes
                if c.kind == "recommended"
            ]
        }
    ).mark_rule(strokeDash=[4, 3], color="grey")
    panels = []
    for metric, title in (("latency_s", "latency (s)"), ("cost_usd", "cost per run (USD)")):
        lines = (
            alt.Chart(data)
            .mark_line(point=True)
            .encode(
                x=x,
                y=alt.Y(f"{metric}:Q", title=title),
                color=alt.Color(
                    "candidate:N", title="candidate", legend=alt.Legend(labelLimit=400)
                ),
                tooltip=["candidate:N", "value:Q", f"{metric}:Q", "on_front:N", "recommended:N"],
            )
            .properties(width=640, height=260)
        )
        panels.append(lines + rules.encode(x=alt.X("value:Q", scale=scale)))
    return alt.vconcat(*panels).properties(
        title=f"What if {result.parameter} changes: candidates' latency and cost "
        "(dashed: the recommendation changes)"
    )


def report_markdown(result: WhatIf) -> str:
    """Return report.md: the changes and the front and recommendation at each value."""
    low, high = result.grid[0].value, result.grid[-1].value
    if result.whole_numbers:
        grid_text = whole_number_note(result)
    else:
        grid_text = (
            f"{len(result.grid)} values from {low:g} to {high:g}; each change is bracketed by "
            "bisection between two values no further apart than the tolerance."
        )
    lines = [f"# What if {result.parameter} changes", "", grid_text, "", "## Changes", ""]
    if result.changes:
        lines += ["| value | below | above | change |", "|---|---|---|---|"]
        for change in result.changes:
            text = describe_change(change, result).split(": ", 1)[1].replace("|", "\\|")
            # A whole-number parameter has no value between the two ends.
            value = "–" if result.whole_numbers else f"{change.value:.6g}"
            lines.append(
                f"| {value} | {change.below.value:.6g} | {change.above.value:.6g} | {text} |"
            )
    else:
        lines.append("The front and the recommendation are the same over the whole range.")
    lines += ["", "## Front and recommendation at each value", ""]
    lines += ["| value | front size | recommended candidate |", "|---|---|---|"]
    for point in result.grid:
        recommended = (
            "none"
            if point.recommended is None
            else placement_text(point.recommended, result.stage_ids, result.device_ids)
        )
        lines.append(f"| {point.value:.6g} | {len(point.front)} | {recommended} |")
    lines += [
        "",
        "chart.html and chart.png plot each candidate's latency and cost; curves.parquet "
        "contains the values.",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(result: WhatIf, out_dir: Path, *, log: bool) -> list[Path]:
    """Write the report, the chart and the curves into `out_dir`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = what_if_chart(result, log=log)
    paths = [out_dir / name for name in ("report.md", "chart.html", "chart.png", "curves.parquet")]
    paths[0].write_text(report_markdown(result), encoding="utf-8")
    write_chart_html(chart, paths[1])
    paths[2].write_bytes(chart_png(chart))
    result.curves.to_parquet(paths[3], index=False)
    return paths
