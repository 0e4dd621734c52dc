"""The trade-off chart of a sweep: every assignment, the Pareto front and the baselines.

`tradeoff_chart` builds an Altair chart; `write_chart_html` writes it as a page that
opens offline, and `write_chart_png` renders it with vl-convert, without a browser.

The chart encodes only metric columns and columns made here (`label`, `placement`,
`baseline`, ...), never the `at_<stage id>` columns, because stage ids may contain dots,
which Vega-Lite reads as nested field access.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any, Literal

import altair as alt
import numpy as np
import pandas as pd
import vl_convert

from allocation.results import SweepSummary, placement_summary

__all__ = [
    "AXIS_TITLES",
    "MAX_BACKGROUND_POINTS",
    "chart_axes",
    "tradeoff_chart",
    "write_chart_html",
    "write_chart_png",
]

AXIS_TITLES = {
    "latency_s": "Latency (s)",
    "cost_usd": "Cost per run (USD)",
    "comm_s": "Communication time (s)",
    "upload_bytes": "Upload to priced devices (bytes)",
    "download_bytes": "Download from priced devices (bytes)",
    "monthly_cost_usd": "Monthly cost (USD)",
}
"""Axis and tooltip title of every metric, with its unit."""

MAX_FRONT_POINTS_DRAWN = 2000
"""Front points drawn at most; a larger front is drawn with an evenly spaced subset."""

MAX_LABELS = 60
"""Candidate labels drawn at most, evenly spaced along the front."""

MAX_BACKGROUND_POINTS = 5000
"""Maximum number of patterns drawn as one point each; more are binned into grid cells.

It equals Altair's default row limit per dataset, so the embedded data stays small.
"""

_GRID_CELLS = (80, 50)
"""Cells of the background grid along x and y: at most 4,000 rows of data."""

# Okabe-Ito colours, distinguishable with the common forms of colour blindness.
_GREY = "#999999"
_BLUE = "#0072B2"
_VERMILLION = "#D55E00"

_ALL = "All assignments"
_FRONT = "Pareto front"
_BASELINE = "Baseline (all on one device)"

_MAX_DESCRIPTION_CHARS = 120
"""Maximum length, in characters, of the workflow description in the subtitle."""

_LABEL_SIDES: tuple[tuple[Literal["bottom", "top"], int], ...] = (("bottom", -4), ("top", 5))
"""Text baseline and vertical offset (pixels) of labels above and below their point."""

_NUMBER_FORMAT = ".6~g"
_BYTES_FORMAT = ",d"


def chart_axes(objectives: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """Choose the metrics of the x and y axes: the first two distinct objectives.

    With a single objective, the other axis is latency_s or cost_usd, whichever the
    objective is not.
    """
    axes: list[str] = []
    for name in [*objectives, "latency_s", "cost_usd"]:
        if name not in axes:
            axes.append(name)
    return axes[0], axes[1]


def tradeoff_chart(
    summary: SweepSummary, *, max_background_points: int = MAX_BACKGROUND_POINTS
) -> alt.LayerChart:
    """Build the trade-off chart of a sweep.

    Parameters
    ----------
    summary : SweepSummary
        The finished sweep.
    max_background_points : int, optional
        Most patterns drawn as one point each. Past this, the background is a grid of
        cells whose opacity grows with the number of patterns in the cell.

    Returns
    -------
    altair.LayerChart
        Layers, bottom to top: the patterns, the front as a step line, the baselines
        (open diamonds), the front points and their labels, and the baseline names.

    Notes
    -----
    The axes are the first two objectives (`chart_axes`), latency_s and cost_usd by
    default. The step line keeps each candidate's y value until the next candidate's x
    value. With more than two objectives it joins only the candidates that no other
    candidate beats on both axes, while every candidate keeps its point and label.
    """
    x, y = chart_axes(summary.problem.objectives)
    candidates = summary.candidates
    baselines = summary.baselines if "on_front" in summary.baselines.columns else None

    # Axis domains cover every drawn value, padded, so that zero-width ranges still draw.
    patterns_x = _float_values(summary.patterns[x])
    patterns_y = _float_values(summary.patterns[y])
    x_parts = [patterns_x, _float_values(candidates[x])]
    y_parts = [patterns_y, _float_values(candidates[y])]
    if baselines is not None:
        x_parts.append(_float_values(baselines[x]))
        y_parts.append(_float_values(baselines[y]))
    x_domain = _axis_domain(np.concatenate(x_parts))
    y_domain = _axis_domain(np.concatenate(y_parts))
    x_scale = alt.Scale(domain=list(x_domain), zero=False, nice=False)
    y_scale = alt.Scale(domain=list(y_domain), zero=False, nice=False)
    x_title, y_title = AXIS_TITLES[x], AXIS_TITLES[y]

    n_drawable = int((np.isfinite(patterns_x) & np.isfinite(patterns_y)).sum())
    binned = n_drawable > max_background_points
    series = [_ALL, _FRONT] + ([_BASELINE] if baselines is not None and len(baselines) else [])
    shapes = {_ALL: "square" if binned else "circle", _FRONT: "circle", _BASELINE: "diamond"}
    colours = {_ALL: _GREY, _FRONT: _BLUE, _BASELINE: _VERMILLION}
    colour = alt.Color(
        "series:N",
        scale=alt.Scale(domain=series, range=[colours[s] for s in series]),
        legend=alt.Legend(title=None, orient="bottom", symbolOpacity=1),
    )
    shape = alt.Shape(
        "series:N",
        scale=alt.Scale(domain=series, range=[shapes[s] for s in series]),
        legend=alt.Legend(title=None, orient="bottom", symbolOpacity=1),
    )

    def position(field_x: str, field_y: str) -> dict[str, Any]:
        return {
            "x": alt.X(f"{field_x}:Q", scale=x_scale, title=x_title),
            "y": alt.Y(f"{field_y}:Q", scale=y_scale, title=y_title),
        }

    layers: list[alt.Chart] = []
    background = _background_layer(
        patterns_x,
        patterns_y,
        x,
        y,
        (x_domain, y_domain),
        binned=binned,
        position=position,
        colour=colour,
    )
    if background is not None:
        layers.append(background)

    front = _front_data(summary, x, y)
    front_total = len(front)
    if front_total > MAX_FRONT_POINTS_DRAWN:
        # The chart draws an evenly spaced subset of a very large front (the ends
        # included); front.parquet keeps every point, and the subtitle states it.
        keep = np.unique(np.linspace(0, front_total - 1, MAX_FRONT_POINTS_DRAWN).round())
        front = front.iloc[keep.astype(int)].reset_index(drop=True)
    staircase = _staircase(front, x, y)
    if len(staircase) > 1:
        layers.append(
            alt.Chart(staircase)
            .mark_line(interpolate="step-after", color=_BLUE, strokeWidth=2)
            .encode(**position(x, y))
        )
    baseline_data = None
    if baselines is not None and len(baselines):
        baseline_data = _baseline_data(summary, baselines, x, y)
        layers.append(
            alt.Chart(baseline_data)
            .mark_point(filled=False, size=220, strokeWidth=2.5)
            .encode(
                **position(x, y),
                color=colour,
                shape=shape,
                tooltip=_tooltip(summary, x, y, first=("baseline", "Baseline"), last="status"),
            )
        )
    if len(front):
        layers.append(
            alt.Chart(front)
            .encode(**position(x, y))
            .mark_point(filled=True, size=70, opacity=1)
            .encode(
                color=colour,
                shape=shape,
                tooltip=_tooltip(summary, x, y, first=("label", "Candidate"), last=None),
            )
        )
        # Labels alternate above and below the line, so neighbours overlap less. A
        # candidate that is also a baseline keeps its label above, because the baseline
        # name goes below.
        below = np.arange(len(front)) % 2 == 1
        if baselines is not None:
            below &= ~front["label"].isin(baselines["candidate"].dropna().astype(str))
        labelled = np.zeros(len(front), dtype=bool)
        labelled[np.unique(np.linspace(0, len(front) - 1, MAX_LABELS).round().astype(int))] = True
        for side, (baseline, dy) in enumerate(_LABEL_SIDES):
            layers.append(
                alt.Chart(front[labelled & (below if side else ~below)])
                .mark_text(
                    align="left", baseline=baseline, dx=6, dy=dy, fontWeight="bold", color=_BLUE
                )
                .encode(**position(x, y), text="label:N")
            )
    if baseline_data is not None:
        layers.append(
            alt.Chart(baseline_data)
            .mark_text(align="left", baseline="top", dx=9, dy=6, color=_VERMILLION)
            .encode(**position(x, y), text="baseline:N")
        )

    return alt.LayerChart(
        layer=layers,
        width=640,
        height=420,
        title=alt.TitleParams(
            text=f"Trade-off of {summary.problem.workflow_name} on {summary.problem.system_name}",
            subtitle=_subtitle(summary, x, y, binned=binned)
            + (
                [f"Front drawn with {len(front):,} of its {front_total:,} points"]
                if len(front) < front_total
                else []
            )
            + (
                [f"{MAX_LABELS} of {len(front):,} candidates labelled"]
                if len(front) > MAX_LABELS
                else []
            ),
            anchor="start",
        ),
    )


def _float_values(column: pd.Series) -> np.ndarray:
    """Return a column as float64, with NaN for nulls."""
    return pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)


def _axis_domain(values: np.ndarray) -> tuple[float, float]:
    """Return [min, max] of the finite values, padded by 5 % of the range on each side.

    The padding leaves room for the labels of points on the edges. Ticks are about a
    tenth of the range apart, so the padding below 0 of data >= 0 rarely gets a tick.
    When every value is equal, the range is taken as that value (1 when it is 0) and
    the domain does not go below 0.
    """
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high > low:
        padding = 0.05 * (high - low)
        return low - padding, high + padding
    padding = 0.05 * (abs(high) if high != 0 else 1.0)
    return max(low - padding, 0.0) if low >= 0 else low - padding, high + padding


def _background_layer(
    xs: np.ndarray,
    ys: np.ndarray,
    x: str,
    y: str,
    domains: tuple[tuple[float, float], tuple[float, float]],
    *,
    binned: bool,
    position: Any,
    colour: alt.Color,
) -> alt.Chart | None:
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    if len(xs) == 0:
        return None
    if not binned:
        points = pd.DataFrame({x: xs, y: ys, "series": _ALL})
        return (
            alt.Chart(points)
            .mark_point(filled=True, size=16, opacity=0.35, shape="circle")
            .encode(
                **position(x, y),
                color=colour,
                tooltip=[
                    alt.Tooltip(f"{x}:Q", title=AXIS_TITLES[x], format=_NUMBER_FORMAT),
                    alt.Tooltip(f"{y}:Q", title=AXIS_TITLES[y], format=_NUMBER_FORMAT),
                ],
            )
        )

    # Too many points to embed: count them per cell of a grid over the axis domains.
    counts, x_edges, y_edges = np.histogram2d(
        xs, ys, bins=list(_GRID_CELLS), range=[list(domains[0]), list(domains[1])]
    )
    i, j = np.nonzero(counts)
    cells = pd.DataFrame(
        {
            "x_start": x_edges[i],
            "x_end": x_edges[i + 1],
            "y_start": y_edges[j],
            "y_end": y_edges[j + 1],
            "count": counts[i, j].astype(np.int64),
            "series": _ALL,
        }
    )
    return (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            **position("x_start", "y_start"),
            x2="x_end:Q",
            y2="y_end:Q",
            color=colour,
            opacity=alt.Opacity(
                "count:Q",
                scale=alt.Scale(type="log", range=[0.2, 0.9]),
                legend=alt.Legend(title="Assignments per cell", orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("count:Q", title="Assignments", format=",d"),
                alt.Tooltip("x_start:Q", title=f"{AXIS_TITLES[x]} from", format=_NUMBER_FORMAT),
                alt.Tooltip("x_end:Q", title="to", format=_NUMBER_FORMAT),
                alt.Tooltip("y_start:Q", title=f"{AXIS_TITLES[y]} from", format=_NUMBER_FORMAT),
                alt.Tooltip("y_end:Q", title="to", format=_NUMBER_FORMAT),
            ],
        )
    )


def _metric_columns(summary: SweepSummary, x: str, y: str) -> list[str]:
    """Metrics shown in tooltips: the axes first, monthly cost only when computed."""
    names = [x, y] + [name for name in AXIS_TITLES if name not in (x, y)]
    if summary.problem.runs_per_month is None:
        names.remove("monthly_cost_usd")
    return names


def _metric_frame(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for name in names:
        if name.endswith("_bytes"):
            columns[name] = pd.to_numeric(table[name]).astype(np.int64).to_numpy()
        else:
            columns[name] = _float_values(table[name])
    return pd.DataFrame(columns)


def _front_data(summary: SweepSummary, x: str, y: str) -> pd.DataFrame:
    candidates = summary.candidates
    data = _metric_frame(candidates, _metric_columns(summary, x, y))
    data.insert(0, "label", candidates["label"].astype(str).to_numpy())
    data.insert(1, "placement", candidates["placement"].astype(str).to_numpy())
    data["equivalent_count"] = pd.to_numeric(candidates["equivalent_count"]).to_numpy()
    data["series"] = _FRONT
    return data[np.isfinite(data[x]) & np.isfinite(data[y])].reset_index(drop=True)


def _staircase(front: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Keep the candidates that no other candidate beats on both axes, sorted by x."""
    ordered = front.sort_values([x, y], kind="stable")
    previous_min = ordered[y].cummin().shift(1, fill_value=np.inf)
    return ordered.loc[ordered[y] < previous_min, [x, y]].reset_index(drop=True)


def _baseline_data(summary: SweepSummary, baselines: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    problem = summary.problem
    data = _metric_frame(baselines, _metric_columns(summary, x, y))
    data.insert(0, "baseline", baselines["baseline"].astype(str).to_numpy())
    data.insert(
        1,
        "placement",
        [
            placement_summary(problem, [str(row[f"at_{s}"]) for s in problem.stage_ids])
            for _, row in baselines.iterrows()
        ],
    )
    status = []
    for _, row in baselines.iterrows():
        if bool(row["on_front"]):
            status.append(f"on the front as candidate {row['candidate']}")
        elif not pd.isna(row["dominated_by"]):
            status.append(f"dominated by candidate {row['dominated_by']}")
        else:
            status.append("not on the front")
    data["status"] = status
    data["series"] = _BASELINE
    return data[np.isfinite(data[x]) & np.isfinite(data[y])].reset_index(drop=True)


def _tooltip(
    summary: SweepSummary, x: str, y: str, *, first: tuple[str, str], last: str | None
) -> list[alt.Tooltip]:
    tooltip = [
        alt.Tooltip(f"{first[0]}:N", title=first[1]),
        alt.Tooltip("placement:N", title="Placement"),
    ]
    for name in _metric_columns(summary, x, y):
        number_format = _BYTES_FORMAT if name.endswith("_bytes") else _NUMBER_FORMAT
        tooltip.append(alt.Tooltip(f"{name}:Q", title=AXIS_TITLES[name], format=number_format))
    if last is None:
        tooltip.append(
            alt.Tooltip("equivalent_count:Q", title="Equivalent assignments", format=",d")
        )
    else:
        tooltip.append(alt.Tooltip(f"{last}:N", title="Front"))
    return tooltip


def _subtitle(summary: SweepSummary, x: str, y: str, *, binned: bool) -> list[str]:
    lines = []
    description = " ".join((summary.workflow.description or "").split())
    if description:
        # Vega draws titles as text, so markup in the description shows as typed.
        if len(description) > _MAX_DESCRIPTION_CHARS:
            description = description[: _MAX_DESCRIPTION_CHARS - 1] + "…"
        lines.append(description)

    objectives = list(summary.problem.objectives)
    if len(objectives) > 1:
        names = ", ".join(objectives[:-1]) + " and " + objectives[-1]
    else:
        names = objectives[0]
    n_front = len(summary.candidates)
    front = f"Pareto front over {names}: {n_front:,} candidate{'' if n_front == 1 else 's'}"
    if objectives[:2] != [x, y] or len(objectives) > 2:
        front += f", drawn on {x} and {y}"
    lines.append(front)

    if summary.patterns_sampled:
        background = (
            f"Background: a uniform sample of {len(summary.patterns):,} of "
            f"{summary.space_size:,} assignments"
        )
    else:
        background = f"Background: all {summary.space_size:,} assignments"
    if binned:
        background += ", counted per grid cell"
    lines.append(background)
    return lines


# --- Output files -----------------------------------------------------------------


@functools.cache
def _vegalite_version() -> str | None:
    """Return the Vega-Lite version Altair writes, when vl-convert bundles it."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vl_convert.get_vegalite_versions() else None


@functools.cache
def _javascript_bundle() -> str:
    """Return the Vega, Vega-Lite and vega-embed scripts as one inline script."""
    # Without a snippet, the bundle sets window.vegaEmbed, vega and vegaLite. The type
    # stub of vl-convert 1.9 marks the snippet as required; the function does not.
    bundle = vl_convert.javascript_bundle(vl_version=_vegalite_version())  # type: ignore[call-arg]
    if "</script" in bundle.lower():
        # The bundle is inlined verbatim, so this text would end the script element early.
        raise RuntimeError("the vl-convert JavaScript bundle contains '</script'")
    return bundle


def _script_json(value: Any) -> str:
    r"""Serialise `value` as JSON that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\u003c``, ``\u003e`` and ``\u0026``, so no string
    can close the element or open a comment. JSON and JavaScript read them back unchanged.
    """
    text = json.dumps(value, allow_nan=False, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _title_text(spec: dict[str, Any]) -> str | None:
    title = spec.get("title")
    if isinstance(title, dict):
        title = title.get("text")
    if isinstance(title, list):
        title = " ".join(str(line) for line in title)
    return str(title) if title else None


_EMBED_OPTIONS = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}
"""vega-embed options: the export menu only, no link to the online editor."""


def write_chart_html(
    chart: alt.TopLevelMixin, path: str | Path, *, title: str | None = None
) -> None:
    """Write the chart as a self-contained HTML page that works offline.

    Parameters
    ----------
    chart : altair chart
        Any top-level Altair chart.
    path : str or Path
        The file to write (UTF-8).
    title : str, optional
        The page title; by default the chart's title.

    Notes
    -----
    The page inlines the Vega, Vega-Lite and vega-embed scripts from vl-convert and the
    chart's specification with its data, so it loads nothing over the network. The
    title is HTML-escaped, and the specification is embedded through `_script_json`,
    so text from the input files cannot end the script element.
    """
    spec = chart.to_dict()
    page_title = title if title is not None else (_title_text(spec) or "Chart")
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{html.escape(page_title, quote=True)}</title>\n",
        "<style>body { font-family: sans-serif; margin: 1.5rem; }</style>\n",
        "<script>\n",
        _javascript_bundle(),
        "\n</script>\n</head>\n<body>\n",
        '<div id="chart"></div>\n',
        "<noscript>This chart needs JavaScript.</noscript>\n",
        "<script>\n",
        f"const spec = {_script_json(spec)};\n",
        f"const embedOptions = {_script_json(_EMBED_OPTIONS)};\n",
        'vegaEmbed("#chart", spec, embedOptions).catch(function (error) {\n',
        '  const message = "The chart could not be drawn: " + error;\n',
        '  document.getElementById("chart").textContent = message;\n',
        "});\n",
        "</script>\n</body>\n</html>\n",
    ]
    Path(path).write_text("".join(parts), encoding="utf-8")


def write_chart_png(chart: alt.TopLevelMixin, path: str | Path, *, scale: float = 2) -> None:
    """Render the chart to a PNG file with vl-convert, without a browser.

    Parameters
    ----------
    chart : altair chart
        Any top-level Altair chart with inline data.
    path : str or Path
        The file to write.
    scale : float, optional
        Pixels per unit of the chart's layout; 2 doubles the width and height.
    """
    png = vl_convert.vegalite_to_png(
        chart.to_dict(), vl_version=_vegalite_version(), scale=scale, allowed_base_urls=[]
    )
    Path(path).write_bytes(png)
