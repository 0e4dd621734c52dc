"""Charts of a sweep: the trade-off, the breakdown of time and cost, and the placements.

`tradeoff_chart`, `breakdown_chart` and `placement_chart` build Altair charts;
`write_chart_html` writes a chart as a page that opens offline, and `write_chart_png`
renders it with vl-convert, without a browser.

The charts encode only metric columns and columns made here (`label`, `placement`,
`baseline`, `stage`, `device`, ...), never the `at_<stage id>` columns nor a stage id
as a field name, because stage ids may contain dots, which Vega-Lite reads as nested
field access. Text from the input files (descriptions, stage names, baseline names, CPU
names) reaches the charts only as data values and titles, which Vega draws as text.

Colours come from the Okabe–Ito palette, which stays distinguishable with the common
forms of colour blindness.
"""

from __future__ import annotations

import functools
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import altair as alt
import numpy as np
import pandas as pd
import vl_convert

from allocation.results import SweepSummary, baseline_status, placement_summary

__all__ = [
    "AXIS_TITLES",
    "MAX_BACKGROUND_POINTS",
    "OKABE_ITO",
    "SYMLOG_MIN_SPAN",
    "breakdown_chart",
    "category_styles",
    "chart_axes",
    "chart_png",
    "placement_chart",
    "tradeoff_chart",
    "warm_up",
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
    "period_s": "Period between frames (s)",
    "throughput_fps": "Throughput (frames/s)",
}
"""Axis and tooltip title of every metric, with its unit."""

_LIMIT_NAMES = {
    "latency_s": ("Latency", "s"),
    "cost_usd": ("Cost", "USD per run"),
    "comm_s": ("Communication time", "s"),
    "upload_bytes": ("Upload", "bytes"),
    "download_bytes": ("Download", "bytes"),
    "monthly_cost_usd": ("Monthly cost", "USD"),
    "period_s": ("Period", "s"),
    "throughput_fps": ("Throughput", "frames/s"),
}
"""Name and unit of every metric in the label of its limit ("Latency limit 2 s")."""

MAX_FRONT_POINTS_DRAWN = 2000
"""Front points drawn at most; a larger front is drawn with an evenly spaced subset."""

MAX_LABELS = 60
"""Candidate labels drawn at most, evenly spaced along the front."""

MAX_PLACEMENT_COLUMNS = 60
"""Candidates drawn at most as columns of the placement chart, evenly spaced."""

MAX_BACKGROUND_POINTS = 5000
"""Maximum number of patterns drawn as one point each; more are binned into grid cells.

It equals Altair's default row limit per dataset, so the embedded data stays small.
"""

SYMLOG_MIN_SPAN = 1000.0
"""Ratio of the largest to the smallest positive value past which an axis is symlog.

Past three decades, a linear axis squeezes the small values against zero.
"""

_GRID_CELLS = (80, 50)
"""Cells of the background grid along x and y: at most 4,000 rows of data."""

OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#000000",  # black
)
"""The Okabe–Ito colours, in the order categories receive them."""

_CATEGORY_OPACITIES = (1.0, 0.5, 0.25)
"""Opacity of the first, second and third round of the palette."""

_LATER_ROUND_ORDER = (7, 5, 2, 3, 0, 1, 4, 6)
"""Order of the Okabe–Ito colours (indices) in the paler rounds.

The paler rounds start with the colours whose pale versions look least like another
colour of the palette: black turns grey and vermillion salmon, while pale blue comes
close to sky blue, so it comes later.
"""

_GREY = "#999999"
_BLUE = OKABE_ITO[0]
_VERMILLION = OKABE_ITO[5]
_PURPLE = OKABE_ITO[3]
_BLACK = OKABE_ITO[7]

_ALL = "All assignments"
_FRONT = "Pareto front"
_BASELINE = "Baseline"

_MAX_DESCRIPTION_CHARS = 120
"""Maximum length, in characters, of the workflow description in a subtitle."""

_MAX_NAME_CHARS = 48
"""Maximum length, in characters, of a CPU name in the placement chart's subtitle."""

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


def category_styles(n: int) -> list[tuple[str, float]]:
    """Return a (colour, opacity) pair for each of n categories.

    The first eight categories get the Okabe–Ito colours at full opacity. The next
    eight repeat them at opacity 0.5 and the eight after at 0.25, in the order
    `_LATER_ROUND_ORDER`, so up to 24 categories differ in colour or in opacity. Past
    24 the pairs repeat.

    Notes
    -----
    A pale colour differs from the full colours by lightness only, which is harder to
    read than a change of hue. The charts that use more than eight categories also
    name each mark: the placement chart writes the device id in its cell, and the
    breakdown's tooltips name the part.
    """
    styles = []
    for i in range(n):
        round_index, position = divmod(i, len(OKABE_ITO))
        if round_index:
            position = _LATER_ROUND_ORDER[position]
        opacity = _CATEGORY_OPACITIES[round_index % len(_CATEGORY_OPACITIES)]
        styles.append((OKABE_ITO[position], opacity))
    return styles


# --- Axis scales ------------------------------------------------------------------


@dataclass(frozen=True)
class _AxisScale:
    """The scale of one position axis: its metric, domain and type."""

    metric: str
    domain: tuple[float, float]
    symlog_constant: float | None = None
    """Constant of Vega's symlog scale; None for a linear scale."""

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Map values to the space in which the axis is linear."""
        if self.symlog_constant is None:
            return values
        return _symlog(values, self.symlog_constant)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Undo `transform`."""
        if self.symlog_constant is None:
            return values
        return _symlog_inverse(values, self.symlog_constant)

    @property
    def title(self) -> str:
        """Axis title with the unit, and the scale type when it is not linear."""
        title = AXIS_TITLES[self.metric]
        if self.symlog_constant is None:
            return title
        return title.removesuffix(")") + ", symmetric log scale)"

    def scale(self) -> alt.Scale:
        """Return the Altair scale: a fixed domain, not rounded, without forced zero."""
        if self.symlog_constant is None:
            return alt.Scale(domain=list(self.domain), zero=False, nice=False)
        return alt.Scale(
            type="symlog",
            constant=self.symlog_constant,
            domain=list(self.domain),
            zero=False,
            nice=False,
        )

    def axis(self) -> Any:
        """Return the axis options: ticks at 0 and powers of ten on a symlog axis."""
        if self.symlog_constant is None:
            return alt.Undefined
        # Vega places symlog ticks as on a linear axis, which crowds them at the top,
        # so the ticks are listed here.
        ticks = _symlog_ticks(self.domain, self.symlog_constant)
        return alt.Axis(values=ticks, labelExpr=_POWER_OF_TEN_LABEL)

    def encoding(self, channel: Literal["x", "y"], field: str) -> alt.X | alt.Y:
        """Return the position encoding of a quantitative `field` on this axis."""
        encode = alt.X if channel == "x" else alt.Y
        return encode(f"{field}:Q", scale=self.scale(), title=self.title, axis=self.axis())


_POWER_OF_TEN_LABEL = (
    "datum.value === 0 || (abs(datum.value) >= 0.001 && abs(datum.value) < 1e6)"
    " ? format(datum.value, '~g') : format(datum.value, '.0e')"
)
"""Vega expression of a symlog tick label: 0, 0.001 to 100000 as is, others as 1e-7."""


def _axis_scale(metric: str, values: np.ndarray) -> _AxisScale:
    """Choose the scale of an axis that must show `values` (NaN ignored).

    The axis is symlog when the positive values span more than `SYMLOG_MIN_SPAN`, with
    the smallest positive value as the constant. The scale is then about linear from 0
    to that value and logarithmic above it, so 0 stays on the axis and the small values
    spread out. Otherwise the axis is linear.
    """
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if len(positive) == 0 or positive.max() <= SYMLOG_MIN_SPAN * positive.min():
        return _AxisScale(metric, _axis_domain(finite))

    # The domain is padded in the transformed space, where the axis is linear.
    constant = float(positive.min())
    low, high = _axis_domain(_symlog(finite, constant))
    domain = _symlog_inverse(np.array([low, high]), constant)
    return _AxisScale(metric, (float(domain[0]), float(domain[1])), symlog_constant=constant)


def _symlog(values: np.ndarray, constant: float) -> np.ndarray:
    """Return sign(v) * log1p(|v| / constant), the transform of Vega's symlog scale."""
    return np.sign(values) * np.log1p(np.abs(values) / constant)


def _symlog_inverse(values: np.ndarray, constant: float) -> np.ndarray:
    """Undo `_symlog`."""
    return np.sign(values) * np.expm1(np.abs(values)) * constant


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


def _symlog_ticks(domain: tuple[float, float], constant: float, max_ticks: int = 8) -> list[float]:
    """Return 0 and the powers of ten from `constant` up inside `domain`.

    Powers of ten below the constant sit in the near-linear part of the scale, close
    to 0, so they are left out. When more than `max_ticks` remain, every second (or
    third, ...) power is kept, counted down from the largest.
    """
    low, high = domain
    ticks = [0.0] if low <= 0 <= high else []
    if high <= 0:
        return ticks
    first = math.ceil(math.log10(max(low, constant)))
    last = math.floor(math.log10(high))
    exponents = list(range(first, last + 1))
    step = max(1, math.ceil(len(exponents) / (max_ticks - len(ticks))))
    return ticks + [10.0**k for k in exponents[::-step][::-1]]


# --- Trade-off chart --------------------------------------------------------------


def tradeoff_chart(
    summary: SweepSummary,
    *,
    limits: Mapping[str, float | None] | None = None,
    recommended: str | None = None,
    max_background_points: int = MAX_BACKGROUND_POINTS,
) -> alt.LayerChart:
    """Build the trade-off chart of a sweep.

    Parameters
    ----------
    summary : SweepSummary
        The finished sweep.
    limits : mapping of str to float, optional
        Upper limits by metric name (a key of `AXIS_TITLES`), such as
        ``{"latency_s": 2.0, "monthly_cost_usd": 50}``. A limit on an axis is drawn as
        a dashed labelled rule, and the axis extends to show it. Limits on other
        metrics are listed in the subtitle. A None value means no limit.
    recommended : str, optional
        Label of the recommended candidate. Its point gets a ring, and the legend
        names it ("Recommended: B").
    max_background_points : int, optional
        Most patterns drawn as one point each. Past this, the background is a grid of
        cells whose opacity grows with the number of patterns in the cell.

    Returns
    -------
    altair.LayerChart
        Layers, bottom to top: the patterns, the limit rules, the front as a step line,
        the baselines (open diamonds), the front points, the ring of the recommended
        candidate, the candidate labels, the baseline names and the limit labels.

    Raises
    ------
    ValueError
        When a limit names an unknown metric or is not a finite number >= 0, or when
        `recommended` is not a candidate label.

    Notes
    -----
    The axes are the first two objectives (`chart_axes`), latency_s and cost_usd by
    default. An axis whose positive values span more than `SYMLOG_MIN_SPAN` is
    symlog, which shows 0 (see `_axis_scale`), and its title states it. The binned
    background is binned in the axis's own (transformed) space, so its cells have
    equal sizes on screen.

    The step line keeps each candidate's y value until the next candidate's x value.
    With more than two objectives it joins only the candidates that no other candidate
    beats on both axes, while every candidate keeps its point and label.
    """
    x, y = chart_axes(summary.problem.objectives)
    baselines = summary.baselines if "on_front" in summary.baselines.columns else None
    if baselines is not None and len(baselines) == 0:
        baselines = None
    checked_limits = _checked_limits(limits)
    labels = summary.candidates["label"].astype(str)
    _check_label(recommended, labels, argument="recommended")
    far_limits = _far_limits(summary, baselines, (x, y), checked_limits)
    near_limits = {m: v for m, v in checked_limits.items() if m not in far_limits}
    x_axis, y_axis = _tradeoff_axes(summary, baselines, (x, y), near_limits)

    def position(field_x: str, field_y: str) -> dict[str, Any]:
        return {"x": x_axis.encoding("x", field_x), "y": y_axis.encoding("y", field_y)}

    # One legend for colour and shape, with an entry per kind of point.
    patterns_x = _float_values(summary.patterns[x])
    patterns_y = _float_values(summary.patterns[y])
    n_drawable = int((np.isfinite(patterns_x) & np.isfinite(patterns_y)).sum())
    binned = n_drawable > max_background_points
    recommended_entry = f"Recommended: {recommended}" if recommended is not None else None
    styles = {
        _ALL: (_GREY, "square" if binned else "circle"),
        _FRONT: (_BLUE, "circle"),
    }
    if baselines is not None:
        styles[_baseline_entry(baselines)] = (_VERMILLION, "diamond")
    if recommended_entry is not None:
        styles[recommended_entry] = (_PURPLE, "circle")
    colour, shape = _series_encodings(styles)

    # Layers, bottom to top.
    layers: list[alt.Chart] = []
    background = _background_layer(
        patterns_x,
        patterns_y,
        (x_axis, y_axis),
        binned=binned,
        position=position,
        colour=colour,
    )
    if background is not None:
        layers.append(background)
    drawn_limits = {m: v for m, v in near_limits.items() if m in (x, y)}
    limit_rules, limit_labels = _limit_layers(drawn_limits, x_axis, y_axis)
    layers += limit_rules

    all_front = _front_data(summary, x, y)
    front = _thin_front(all_front, recommended)
    staircase = _staircase(front, x, y)
    if len(staircase) > 1:
        layers.append(
            alt.Chart(staircase)
            .mark_line(interpolate="step-after", color=_BLUE, strokeWidth=2)
            .encode(**position(x, y))
        )
    baseline_data = None
    if baselines is not None:
        baseline_data = _baseline_data(summary, baselines, x, y)
        first = [("baseline", "Baseline")]
        if "kind" in baseline_data.columns:
            first.append(("kind", "Kind"))
        layers.append(
            alt.Chart(baseline_data)
            .mark_point(filled=False, size=220, strokeWidth=2.5)
            .encode(
                **position(x, y),
                color=colour,
                shape=shape,
                tooltip=_tooltip(summary, x, y, first=first, last="status"),
            )
        )
    if len(front):
        layers.append(
            alt.Chart(front)
            .mark_point(filled=True, size=70, opacity=1)
            .encode(
                **position(x, y),
                color=colour,
                shape=shape,
                tooltip=_tooltip(summary, x, y, first=[("label", "Candidate")], last=None),
            )
        )
    if recommended_entry is not None:
        ring = front[front["label"] == recommended].assign(series=recommended_entry)
        layers.append(
            alt.Chart(ring)
            .mark_point(filled=False, size=480, strokeWidth=3, opacity=1)
            .encode(
                **position(x, y),
                color=colour,
                shape=shape,
                tooltip=_tooltip(summary, x, y, first=[("label", "Recommended")], last=None),
            )
        )
    if len(front):
        layers += _label_layers(front, baselines, recommended, position(x, y))
    if baseline_data is not None:
        layers += _baseline_name_layers(baseline_data, (x, y), position(x, y))
    layers += limit_labels

    # The subtitle states what the chart leaves out or adds.
    subtitle = _subtitle(summary, x, y, binned=binned)
    if len(front) < len(all_front):
        subtitle.append(f"Front drawn with {len(front):,} of its {len(all_front):,} points")
    if len(front) > MAX_LABELS:
        subtitle.append(f"{MAX_LABELS} of {len(front):,} candidates labelled")
    if recommended is not None:
        placement = summary.candidates["placement"][labels == recommended].iloc[0]
        subtitle.append(f"Recommended: {recommended} ({placement})")
    hidden = [
        _limit_text(m, v)
        for m, v in checked_limits.items()
        if m not in drawn_limits and m not in far_limits
    ]
    if hidden:
        subtitle.append("Limits on other metrics: " + "; ".join(hidden))
    for metric, side in far_limits.items():
        subtitle.append(
            f"{_limit_text(metric, checked_limits[metric])}: off the chart, {side} every value"
        )
    return alt.LayerChart(
        layer=layers,
        width=640,
        height=420,
        title=alt.TitleParams(
            text=f"Trade-off of {summary.problem.workflow_name} on {summary.problem.system_name}",
            subtitle=subtitle,
            anchor="start",
        ),
    )


def _baseline_entry(baselines: pd.DataFrame) -> str:
    """Return the legend entry of the baselines, naming compared placements when there are."""
    if "kind" in baselines.columns and (baselines["kind"] == "given").any():
        return "Baseline or compared placement"
    return _BASELINE


def _drawn_values(summary: SweepSummary, baselines: pd.DataFrame | None, metric: str) -> np.ndarray:
    """Return a metric's values of the patterns, the candidates and the baselines."""
    parts = [_float_values(summary.patterns[metric]), _float_values(summary.candidates[metric])]
    if baselines is not None:
        parts.append(_float_values(baselines[metric]))
    return np.concatenate(parts)


def _far_limits(
    summary: SweepSummary,
    baselines: pd.DataFrame | None,
    metrics: tuple[str, str],
    limits: dict[str, float],
) -> dict[str, str]:
    """Return the limits on the axes that lie far outside the data, with "above" or "below".

    A limit above the values by more than their range and more than a million times
    their largest value, or below them by more than their range, is not drawn: it would
    squeeze every point against one edge of the axis. The subtitle names it instead.
    """
    far = {}
    for metric in metrics:
        if metric not in limits:
            continue
        values = _drawn_values(summary, baselines, metric)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        low, high = float(values.min()), float(values.max())
        span = high - low if high > low else max(abs(high), 1.0)
        limit = limits[metric]
        if limit > high + span and limit > SYMLOG_MIN_SPAN**2 * max(high, 0.0):
            far[metric] = "above"
        elif limit < low - span or (0 < limit < high / SYMLOG_MIN_SPAN**2):
            far[metric] = "below"
    return far


def _tradeoff_axes(
    summary: SweepSummary,
    baselines: pd.DataFrame | None,
    metrics: tuple[str, str],
    limits: dict[str, float],
) -> tuple[_AxisScale, _AxisScale]:
    """Return the x and y scales, covering patterns, candidates, baselines and limits."""
    axes = []
    for metric in metrics:
        values = _drawn_values(summary, baselines, metric)
        if metric in limits:
            values = np.append(values, limits[metric])
        axes.append(_axis_scale(metric, values))
    return axes[0], axes[1]


def _series_encodings(styles: dict[str, tuple[str, str]]) -> tuple[alt.Color, alt.Shape]:
    """Return colour and shape encodings of the `series` field, sharing one legend.

    `styles` maps each series, in legend order, to its colour and point shape.
    """
    series = list(styles)
    legend = alt.Legend(title=None, orient="bottom", symbolOpacity=1, labelLimit=400)
    colour = alt.Color(
        "series:N",
        scale=alt.Scale(domain=series, range=[styles[s][0] for s in series]),
        legend=legend,
    )
    shape = alt.Shape(
        "series:N",
        scale=alt.Scale(domain=series, range=[styles[s][1] for s in series]),
        legend=legend,
    )
    return colour, shape


def _checked_limits(limits: Mapping[str, float | None] | None) -> dict[str, float]:
    """Return the limits as floats, without the None ones; raise on invalid ones."""
    checked: dict[str, float] = {}
    for metric, value in (limits or {}).items():
        if metric not in AXIS_TITLES:
            known = ", ".join(AXIS_TITLES)
            raise ValueError(f"limits: unknown metric {metric!r}; expected one of {known}")
        if value is None:
            continue
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise ValueError(
                f"limits: the limit of {metric} must be a finite number >= 0, got {value!r}"
            )
        checked[metric] = number
    return checked


def _check_label(label: str | None, labels: pd.Series | Sequence[str], *, argument: str) -> None:
    """Raise ValueError when `label` is given and is not one of `labels`."""
    if label is None:
        return
    known = list(labels)
    if label not in known:
        examples = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
        raise ValueError(
            f"{argument}: {label!r} is not a candidate label; the labels are {examples}"
        )


def _format_number(value: float) -> str:
    """Format a number with up to 6 significant digits: 2, 0.001, 1.5e-7."""
    text = f"{value:.6g}"
    mantissa, _, exponent = text.partition("e")
    if not exponent:
        return text
    return f"{mantissa}e{int(exponent)}"


def _limit_text(metric: str, value: float) -> str:
    """Return the label of a limit, such as "Latency limit 2 s"."""
    name, unit = _LIMIT_NAMES[metric]
    number = f"{int(value):,}" if metric.endswith("_bytes") else _format_number(value)
    return f"{name} limit {number} {unit}"


def _limit_layers(
    limits: dict[str, float], x_axis: _AxisScale, y_axis: _AxisScale
) -> tuple[list[alt.Chart], list[alt.Chart]]:
    """Return the dashed rules of the limits on the axes, and their labels.

    A limit on x is a vertical rule, labelled at the top on the side with more room.
    A limit on y is a horizontal rule, labelled at the right end.
    """
    rules: list[alt.Chart] = []
    labels: list[alt.Chart] = []
    for metric, value in limits.items():
        on_x = metric == x_axis.metric
        data = pd.DataFrame(
            {
                "limit": [value],
                "limit_label": [_limit_text(metric, value)],
                # The label's position on the other axis: the top or the right end.
                "edge": [y_axis.domain[1] if on_x else x_axis.domain[1]],
            }
        )
        if on_x:
            rule_position = {"x": x_axis.encoding("x", "limit")}
            label_position = {**rule_position, "y": y_axis.encoding("y", "edge")}
            low, high, at = x_axis.transform(np.array([*x_axis.domain, value]))
            right_half = at - low > 0.5 * (high - low)
            text_mark: dict[str, Any] = {
                "align": "right" if right_half else "left",
                "baseline": "top",
                "dx": -4 if right_half else 4,
                "dy": 4,
            }
        else:
            rule_position = {"y": y_axis.encoding("y", "limit")}
            label_position = {**rule_position, "x": x_axis.encoding("x", "edge")}
            text_mark = {"align": "right", "baseline": "bottom", "dx": -4, "dy": -3}
        rules.append(
            alt.Chart(data)
            .mark_rule(color=_BLACK, strokeDash=[6, 4], strokeWidth=1.5)
            .encode(
                **rule_position,
                tooltip=[alt.Tooltip("limit_label:N", title="Limit")],
            )
        )
        labels.append(
            alt.Chart(data)
            .mark_text(color=_BLACK, fontStyle="italic", **text_mark)
            .encode(**label_position, text="limit_label:N")
        )
    return rules, labels


def _thin_front(front: pd.DataFrame, recommended: str | None) -> pd.DataFrame:
    """Keep an evenly spaced subset of a front larger than `MAX_FRONT_POINTS_DRAWN`.

    The ends and the recommended candidate are always kept. front.parquet keeps every
    point, and the subtitle states how many are drawn.
    """
    if len(front) <= MAX_FRONT_POINTS_DRAWN:
        return front
    keep = np.linspace(0, len(front) - 1, MAX_FRONT_POINTS_DRAWN).round().astype(int)
    if recommended is not None:
        keep = np.append(keep, np.flatnonzero(front["label"] == recommended))
    return front.iloc[np.unique(keep)].reset_index(drop=True)


def _label_layers(
    front: pd.DataFrame,
    baselines: pd.DataFrame | None,
    recommended: str | None,
    position: dict[str, Any],
) -> list[alt.Chart]:
    """Return the text layers of the candidate labels, above and below their points.

    Labels alternate above and below the line, so neighbours overlap less. A candidate
    that is also a baseline keeps its label above, because the baseline name goes
    below. At most `MAX_LABELS` are drawn, evenly spaced, plus the recommended one.
    """
    below = np.arange(len(front)) % 2 == 1
    if baselines is not None:
        below &= ~front["label"].isin(baselines["candidate"].dropna().astype(str))
    labelled = np.zeros(len(front), dtype=bool)
    labelled[np.unique(np.linspace(0, len(front) - 1, MAX_LABELS).round().astype(int))] = True
    if recommended is not None:
        labelled |= (front["label"] == recommended).to_numpy()
    layers = []
    for side, (baseline, dy) in enumerate(_LABEL_SIDES):
        layers.append(
            alt.Chart(front[labelled & (below if side else ~below)])
            .mark_text(align="left", baseline=baseline, dx=6, dy=dy, fontWeight="bold", color=_BLUE)
            .encode(**position, text="label:N")
        )
    return layers


_NAME_LINE_PX = 13
"""Distance between the lines of baseline names drawn at the same point, in pixels."""

_NAME_LIMIT_PX = 240
"""Width past which a baseline name is cut and ends with "…", in pixels."""


def _baseline_name_layers(
    baselines: pd.DataFrame, axes: tuple[str, str], position: dict[str, Any]
) -> list[alt.Chart]:
    """Return text layers of the baseline names, below and to the right of their points.

    Baselines at the same point (a given placement equal to an all-on-one-device one,
    for example) get one line each: the k-th name at that point goes in the k-th layer.
    """
    line = baselines.groupby(list(axes), sort=False).cumcount().to_numpy()
    return [
        alt.Chart(baselines[line == k])
        .mark_text(
            align="left",
            baseline="top",
            dx=9,
            dy=6 + _NAME_LINE_PX * k,
            color=_VERMILLION,
            limit=_NAME_LIMIT_PX,
        )
        .encode(**position, text="baseline:N")
        for k in range(int(line.max()) + 1 if len(line) else 0)
    ]


def _float_values(column: pd.Series) -> np.ndarray:
    """Return a column as float64, with NaN for nulls."""
    return pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)


def _background_layer(
    xs: np.ndarray,
    ys: np.ndarray,
    axes: tuple[_AxisScale, _AxisScale],
    *,
    binned: bool,
    position: Callable[[str, str], dict[str, Any]],
    colour: alt.Color,
) -> alt.Chart | None:
    """Return the layer of every pattern, as points or as counted grid cells."""
    x_axis, y_axis = axes
    x, y = x_axis.metric, y_axis.metric
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

    # Too many points to embed: count them per cell of a grid that is regular in the
    # axes' own space (log-like on a symlog axis), so cells line up with the ticks.
    x_range = list(x_axis.transform(np.array(x_axis.domain)))
    y_range = list(y_axis.transform(np.array(y_axis.domain)))
    counts, x_edges, y_edges = np.histogram2d(
        x_axis.transform(xs), y_axis.transform(ys), bins=list(_GRID_CELLS), range=[x_range, y_range]
    )
    x_edges, y_edges = x_axis.inverse(x_edges), y_axis.inverse(y_edges)
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
    """Metrics shown in tooltips: the axes first, the others when the sweep computed them."""
    names = [x, y] + [name for name in AXIS_TITLES if name not in (x, y)]
    if summary.problem.runs_per_month is None:
        names.remove("monthly_cost_usd")
    return [name for name in names if name in summary.candidates.columns]


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
    """Return the drawn baselines: name, kind when given, placement, metrics, status."""
    problem = summary.problem
    data = _metric_frame(baselines, _metric_columns(summary, x, y))
    data.insert(0, "baseline", baselines["baseline"].astype(str).to_numpy())
    if "kind" in baselines.columns:
        data.insert(1, "kind", baselines["kind"].astype(str).to_numpy())
    data.insert(
        2 if "kind" in data.columns else 1,
        "placement",
        [
            placement_summary(problem, [str(row[f"at_{s}"]) for s in problem.stage_ids])
            for _, row in baselines.iterrows()
        ],
    )
    data["status"] = [baseline_status(row) for _, row in baselines.iterrows()]
    data["series"] = _baseline_entry(baselines)
    return data[np.isfinite(data[x]) & np.isfinite(data[y])].reset_index(drop=True)


def _tooltip(
    summary: SweepSummary,
    x: str,
    y: str,
    *,
    first: list[tuple[str, str]],
    last: str | None,
) -> list[alt.Tooltip]:
    """Return the tooltip: the `first` (field, title) pairs, placement and metrics.

    `last` is the field of the final "Front" entry, or None for the count of
    equivalent assignments.
    """
    tooltip = [alt.Tooltip(f"{name}:N", title=title) for name, title in first]
    tooltip.append(alt.Tooltip("placement:N", title="Placement"))
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


def _short_text(text: str | None, max_chars: int) -> str:
    """Collapse white space and cut `text` to `max_chars` characters, ending with "…"."""
    words = " ".join((text or "").split())
    if len(words) > max_chars:
        return words[: max_chars - 1] + "…"
    return words


def _subtitle(summary: SweepSummary, x: str, y: str, *, binned: bool) -> list[str]:
    lines = []
    # Vega draws titles as text, so markup in the description shows as typed.
    description = _short_text(summary.workflow.description, _MAX_DESCRIPTION_CHARS)
    if description:
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


# --- Breakdown chart --------------------------------------------------------------

_NO_COST_MESSAGE = "Every candidate costs 0 USD per run: no priced device, or every price is 0."

_BAR_STEP_PX = 22
"""Height of one candidate's bar in the breakdown chart, in pixels."""

_BREAKDOWN_WIDTH_PX = 520


def breakdown_chart(
    time_table: pd.DataFrame,
    cost_table: pd.DataFrame,
    *,
    title: str,
    recommended: str | None = None,
) -> alt.VConcatChart:
    """Build the breakdown of each candidate's time and cost as stacked bars.

    Parameters
    ----------
    time_table : pandas.DataFrame
        Long table with columns `label` (candidate label), `part` (such as "compute on
        edge" or "transfer") and `time_s` (seconds per run). Rows with the same label
        and part are added up.
    cost_table : pandas.DataFrame
        Long table with columns `label`, `line` (a billing line such as "cloud:
        compute") and `cost_usd` (USD per run). Rows with the same label and line are
        added up. It may be empty.
    title : str
        Title of the whole chart; drawn as text.
    recommended : str, optional
        Label of the recommended candidate, whose bars are labelled "(recommended)"
        in bold.

    Returns
    -------
    altair.VConcatChart
        The time chart above the cost chart, one bar per candidate, ordered A, B, ...,
        Z, AA, ... When no cost is above 0, the cost chart is a line of text that states
        it instead of empty bars.

    Raises
    ------
    ValueError
        When a column is missing, a value is negative or not finite, or `recommended`
        is not a label of either table.

    Notes
    -----
    Parts and lines keep the order in which they first appear in their table, and
    take colours in that order (`category_styles`). Each bar ends with its total.
    """
    times = _breakdown_frame(time_table, "part", "time_s", name="time_table")
    costs = _breakdown_frame(cost_table, "line", "cost_usd", name="cost_table")
    labels = sorted({*times["label"], *costs["label"]}, key=lambda label: (len(label), label))
    _check_label(recommended, labels, argument="recommended")
    rows = {label: f"{label} (recommended)" if label == recommended else label for label in labels}

    time_panel = _stacked_bars(
        times,
        category="part",
        value="time_s",
        rows=rows,
        recommended=recommended,
        unit="s",
        title="Time per run by part (s)",
        axis_title="Time per run (s)",
        legend_title="Part",
    )
    if (costs["cost_usd"] > 0).any():
        cost_panel = _stacked_bars(
            costs,
            category="line",
            value="cost_usd",
            rows=rows,
            recommended=recommended,
            unit="USD",
            title="Cost per run by billing line (USD)",
            axis_title="Cost per run (USD)",
            legend_title="Billing line",
        )
    else:
        cost_panel = (
            alt.Chart(pd.DataFrame({"message": [_NO_COST_MESSAGE]}))
            .mark_text(align="left", baseline="middle", x=0, y=14, fontSize=13)
            .encode(text="message:N")
            .properties(
                width=_BREAKDOWN_WIDTH_PX,
                height=28,
                title=alt.TitleParams("Cost per run (USD)", anchor="start"),
            )
        )
    return (
        alt.vconcat(time_panel, cost_panel, spacing=28)
        .properties(title=alt.TitleParams(title, anchor="start", fontSize=15))
        .resolve_scale(color="independent", opacity="independent")
        .resolve_legend(color="independent", opacity="independent")
    )


def _breakdown_frame(table: pd.DataFrame, category: str, value: str, *, name: str) -> pd.DataFrame:
    """Return `label`, `category` and `value` of a breakdown table, one row per pair.

    Labels and categories become strings. The rows of a pair are added up, and pairs
    keep the order of their first row.
    """
    missing = [column for column in ("label", category, value) if column not in table.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {', '.join(missing)}; "
            f"expected columns label, {category} and {value}"
        )
    data = pd.DataFrame(
        {
            "label": table["label"].astype(str).to_numpy(),
            category: table[category].astype(str).to_numpy(),
            value: _float_values(table[value]),
        }
    )
    invalid = ~np.isfinite(data[value]) | (data[value] < 0)
    if invalid.any():
        row = data[invalid].iloc[0]
        raise ValueError(
            f"{name}: {value} of label {row['label']!r}, {category} {row[category]!r} "
            f"must be a finite number >= 0, got {row[value]!r}"
        )
    grouped: pd.DataFrame = data.groupby(["label", category], sort=False, as_index=False).sum()
    return grouped


def _bold_when(value: str | None) -> Any:
    """Return an axis label font weight: bold for the label `value`, normal otherwise."""
    if value is None:
        return alt.Undefined
    # json.dumps writes a valid string literal of the Vega expression language.
    return {
        "condition": {"test": f"datum.value === {json.dumps(value)}", "value": "bold"},
        "value": "normal",
    }


def _value_axis(top: float) -> alt.Axis:
    """Return the axis of bar lengths up to `top`: tick labels such as 0.5 or 2e-5.

    Below 0.001, every label but 0 is in exponent form, so that d3's "g" format does
    not switch between 0.000008 and 1e-7 on one axis.
    """
    if 0 < top < 0.001:
        return alt.Axis(
            labelExpr="datum.value === 0 ? '0' : format(datum.value, '.2~e')",
            tickCount=6,
            labelOverlap=True,
        )
    return alt.Axis(format="~g")


def _stacked_bars(
    data: pd.DataFrame,
    *,
    category: str,
    value: str,
    rows: dict[str, str],
    recommended: str | None,
    unit: str,
    title: str,
    axis_title: str,
    legend_title: str,
) -> alt.LayerChart:
    """Return one horizontal bar per label, stacked by `category`, with its total."""
    categories = list(dict.fromkeys(data[category]))
    styles = category_styles(len(categories))
    bars = data.assign(
        row=data["label"].map(rows),
        order=data[category].map({name: i for i, name in enumerate(categories)}),
    )
    totals = bars.groupby("row", sort=False, as_index=False)[value].sum()
    totals["total_text"] = [f"{_format_number(total)} {unit}" for total in totals[value]]
    top = float(totals[value].max()) if len(totals) else 0.0

    y = alt.Y(
        "row:N",
        sort=list(rows.values()),
        scale=alt.Scale(domain=list(rows.values())),
        title="Candidate",
        axis=alt.Axis(labelFontWeight=_bold_when(rows.get(recommended or ""))),
    )
    legend = alt.Legend(title=legend_title, orient="bottom", columns=3, labelLimit=260)
    encoding: dict[str, Any] = {
        "color": alt.Color(
            f"{category}:N",
            scale=alt.Scale(domain=categories, range=[colour for colour, _ in styles]),
            legend=legend,
        ),
    }
    if len(categories) > len(OKABE_ITO):
        encoding["opacity"] = alt.Opacity(
            f"{category}:N",
            scale=alt.Scale(type="ordinal", domain=categories, range=[o for _, o in styles]),
            legend=legend,
        )
    bar_layer = (
        alt.Chart(bars)
        .mark_bar(stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X(f"{value}:Q", stack="zero", title=axis_title, axis=_value_axis(top)),
            y=y,
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("label:N", title="Candidate"),
                alt.Tooltip(f"{category}:N", title=legend_title),
                alt.Tooltip(f"{value}:Q", title=axis_title, format=_NUMBER_FORMAT),
            ],
            **encoding,
        )
    )
    total_layer = (
        alt.Chart(totals)
        .mark_text(align="left", baseline="middle", dx=4)
        .encode(x=alt.X(f"{value}:Q"), y=y, text="total_text:N")
    )
    return alt.LayerChart(layer=[bar_layer, total_layer]).properties(
        width=_BREAKDOWN_WIDTH_PX,
        height=alt.Step(_BAR_STEP_PX),
        title=alt.TitleParams(title, anchor="start"),
    )


# --- Placement chart --------------------------------------------------------------

MAX_PLACEMENT_ROWS = 200
"""Stages drawn at most as rows of the placement chart; the first ones are kept."""

_MAX_DEVICES_LISTED = 8
"""Devices listed with their CPU in the placement chart's subtitle."""

_CELL_HEIGHT_PX = 24


def placement_chart(summary: SweepSummary, *, recommended: str | None = None) -> alt.LayerChart:
    """Build the matrix of where each candidate runs each stage.

    Parameters
    ----------
    summary : SweepSummary
        The finished sweep.
    recommended : str, optional
        Label of the recommended candidate, whose column is outlined and whose label
        is bold.

    Returns
    -------
    altair.LayerChart
        One row per stage in workflow file order, labelled with its number and id
        ("1 capture"), and one column per candidate (A, B, ...). Each cell is coloured
        by the device id it names, with a legend titled "Device". The tooltip adds
        the stage name and the device's CPU.

    Raises
    ------
    ValueError
        When `recommended` is not a candidate label.

    Notes
    -----
    A front of more than `MAX_PLACEMENT_COLUMNS` candidates is drawn with an evenly
    spaced subset (the ends and the recommended one included), and a workflow of more
    than `MAX_PLACEMENT_ROWS` stages with its first stages. The subtitle states both.
    Devices take the colours of `category_styles` in the order of the system file.
    """
    problem = summary.problem
    candidates = summary.candidates
    labels = candidates["label"].astype(str).tolist()
    _check_label(recommended, labels, argument="recommended")

    # Columns and rows to draw.
    n_drawn = min(len(labels), MAX_PLACEMENT_COLUMNS)
    columns = np.linspace(0, len(labels) - 1, n_drawn).round().astype(int)
    if recommended is not None:
        columns = np.append(columns, labels.index(recommended))
    columns = np.unique(columns)
    stage_ids = list(problem.stage_ids[:MAX_PLACEMENT_ROWS])
    stage_rows = [f"{i + 1} {stage_id}" for i, stage_id in enumerate(stage_ids)]
    stage_names = {stage.id: stage.name or "" for stage in summary.workflow.stages}
    column_labels = [labels[c] for c in columns]

    # Colours of the devices and a readable text colour on each.
    devices = list(problem.device_ids)
    styles = category_styles(len(devices))
    text_colours = {d: _text_colour(*style) for d, style in zip(devices, styles, strict=True)}
    cpu_names = {d: problem.cpus[d].name if d in problem.cpus else "" for d in problem.device_ids}

    # One cell per stage and candidate, stage by stage.
    placements = candidates[[f"at_{stage_id}" for stage_id in stage_ids]].astype(str)
    cells = pd.DataFrame(
        {
            "stage": np.repeat(stage_rows, len(columns)),
            "stage_name": np.repeat([stage_names.get(s, "") for s in stage_ids], len(columns)),
            "candidate": np.tile(column_labels, len(stage_ids)),
            "device": placements.to_numpy()[columns].T.ravel(),
        }
    )
    cells["cpu"] = cells["device"].map(cpu_names).fillna("")
    cells["text_colour"] = cells["device"].map(text_colours).fillna(_BLACK)

    # Cells wide enough for the longest device id, at about 7 pixels per character.
    longest = max((len(d) for d in devices), default=4)
    cell_width = int(min(max(36, 7 * longest + 12), 120))
    x = alt.X(
        "candidate:N",
        sort=column_labels,
        scale=alt.Scale(domain=column_labels),
        title="Candidate",
        axis=alt.Axis(orient="top", labelAngle=0, labelFontWeight=_bold_when(recommended)),
    )
    y = alt.Y(
        "stage:N",
        sort=stage_rows,
        scale=alt.Scale(domain=stage_rows),
        title="Stage (workflow order)",
        axis=alt.Axis(labelLimit=220),
    )
    encoding: dict[str, Any] = {
        "color": alt.Color(
            "device:N",
            scale=alt.Scale(domain=devices, range=[colour for colour, _ in styles]),
            legend=alt.Legend(title="Device", orient="bottom", columns=4, labelLimit=200),
        )
    }
    if len(devices) > len(OKABE_ITO):
        encoding["opacity"] = alt.Opacity(
            "device:N",
            scale=alt.Scale(type="ordinal", domain=devices, range=[o for _, o in styles]),
            legend=alt.Legend(title="Device", orient="bottom", columns=4, labelLimit=200),
        )
    layers: list[alt.Chart] = [
        alt.Chart(cells)
        .mark_rect(stroke="white", strokeWidth=1)
        .encode(
            x=x,
            y=y,
            tooltip=[
                alt.Tooltip("stage:N", title="Stage"),
                alt.Tooltip("stage_name:N", title="Stage name"),
                alt.Tooltip("candidate:N", title="Candidate"),
                alt.Tooltip("device:N", title="Device"),
                alt.Tooltip("cpu:N", title="CPU"),
            ],
            **encoding,
        ),
        alt.Chart(cells)
        .mark_text(baseline="middle", fontSize=11, limit=cell_width - 4)
        .encode(
            x=x,
            y=y,
            text="device:N",
            color=alt.Color("text_colour:N", scale=None, legend=None),
        ),
    ]
    if recommended is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"candidate": [recommended]}))
            .mark_rect(filled=False, stroke=_BLACK, strokeWidth=3)
            .encode(x=x)
        )
    return alt.LayerChart(
        layer=layers,
        width=alt.Step(cell_width),
        height=alt.Step(_CELL_HEIGHT_PX),
        title=alt.TitleParams(
            text=f"Placement of the stages of {problem.workflow_name} on {problem.system_name}",
            subtitle=_placement_subtitle(
                summary, n_columns=len(columns), n_rows=len(stage_ids), recommended=recommended
            ),
            anchor="start",
        ),
    )


def _text_colour(colour: str, opacity: float) -> str:
    """Return black or white, whichever contrasts more with `colour` over white paper.

    The contrast is the WCAG 2 ratio of relative luminances.
    """
    channels = []
    for k in (1, 3, 5):
        value = int(colour[k : k + 2], 16) / 255 * opacity + (1 - opacity)
        linear = value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
        channels.append(linear)
    luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    black_contrast = (luminance + 0.05) / 0.05
    white_contrast = 1.05 / (luminance + 0.05)
    return _BLACK if black_contrast >= white_contrast else "#FFFFFF"


def _placement_subtitle(
    summary: SweepSummary, *, n_columns: int, n_rows: int, recommended: str | None
) -> list[str]:
    problem = summary.problem
    lines = []
    description = _short_text(summary.workflow.description, _MAX_DESCRIPTION_CHARS)
    if description:
        lines.append(description)

    n_candidates = len(summary.candidates)
    columns = f"Columns: the {n_candidates:,} candidates of the Pareto front"
    if n_columns < n_candidates:
        columns = f"Columns: {n_columns:,} of the {n_candidates:,} candidates of the Pareto front"
    rows = "rows: the stages in workflow order"
    if n_rows < problem.n_stages:
        rows = f"rows: the first {n_rows:,} of {problem.n_stages:,} stages"
    lines.append(f"{columns}; {rows}")

    devices = []
    for device_id in problem.device_ids[:_MAX_DEVICES_LISTED]:
        cpu = problem.cpus.get(device_id)
        name = _short_text(cpu.name, _MAX_NAME_CHARS) if cpu is not None else ""
        devices.append(f"{device_id} ({name})" if name else device_id)
    more = problem.n_devices - _MAX_DEVICES_LISTED
    lines.append("Devices: " + ", ".join(devices) + (f" and {more} more" if more > 0 else ""))
    if recommended is not None:
        lines.append(f"Recommended: {recommended} (outlined)")
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
    "tooltip": True,
}
"""vega-embed options: the export menu only, no link to the online editor.

In the bundle of vl-convert 1.9, ``"tooltip": True`` makes vega-embed use vega-tooltip's
handler with its default ``sanitize`` function, which turns ``&`` and ``<`` into
entities in every key and value, so tooltip text from the input files shows as typed.
A custom handler must keep that escaping. vega-tooltip also reads the keys ``title`` and
``image`` specially (an ``image`` value becomes the source of an image), so no tooltip
here uses either as an entry title.
"""


def warm_up() -> None:
    """Load vl-convert's JavaScript engine and bundle once, ahead of the first chart.

    The first conversion in a process starts a JavaScript runtime and the first bundle
    is built from vl-convert's sources, together about two seconds. vl-convert releases
    the GIL while it works, so a thread can do this while Python code runs.
    """
    _javascript_bundle()
    spec = {
        "data": {"values": [{"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 1.0}]},
        "mark": "point",
        "encoding": {
            "x": {"field": "x", "type": "quantitative"},
            "y": {"field": "y", "type": "quantitative"},
        },
    }
    vl_convert.vegalite_to_png(spec, vl_version=_vegalite_version(), allowed_base_urls=[])


def write_chart_html(
    chart: alt.TopLevelMixin | dict[str, Any], path: str | Path, *, title: str | None = None
) -> None:
    """Write the chart as a self-contained HTML page that works offline.

    Parameters
    ----------
    chart : altair chart or dict
        Any top-level Altair chart, or its Vega-Lite specification.
    path : str or Path
        The file to write (UTF-8).
    title : str, optional
        The page title; by default the chart's title.

    Notes
    -----
    The page inlines the Vega, Vega-Lite and vega-embed scripts from vl-convert and the
    chart's specification with its data, so it loads nothing over the network. The
    title is HTML-escaped, and the specification is embedded through `_script_json`,
    so text from the input files cannot end the script element. Vega draws text marks
    and titles as SVG text, and tooltips escape their text (`_EMBED_OPTIONS`).
    """
    spec = chart if isinstance(chart, dict) else chart.to_dict()
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
    Path(path).write_bytes(chart_png(chart, scale=scale))


def chart_png(chart: alt.TopLevelMixin | dict[str, Any], *, scale: float = 2) -> bytes:
    """Return the chart (or its Vega-Lite specification) rendered as PNG bytes.

    vl-convert releases the GIL while it renders, so a thread can render while
    Python code runs; see `write_chart_png` for the parameters.
    """
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    png: bytes = vl_convert.vegalite_to_png(
        spec, vl_version=_vegalite_version(), scale=scale, allowed_base_urls=[]
    )
    return png
