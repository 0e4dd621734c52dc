"""The markdown report of a sweep and the rows of its Prefect artifacts.

`render_report_md` writes report.md: the summary, the candidates, the baselines, the
stages, the assumptions (links, CPUs, pricing), the inputs and the timings.
`render_summary_markdown` and `candidates_artifact_rows` feed the Prefect markdown and
table artifacts.

Every string that comes from an input file (ids, free text, CPU names, sources, paths)
passes through `escape_markdown`, so it renders as text in prose and table cells.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from allocation.explain import LIMIT_METRICS, LatencyItem, PairExplanation
from allocation.memory import left_out_sentence
from allocation.model import SCORE_FIGURES
from allocation.results import SweepSummary, baseline_status

__all__ = [
    "candidates_artifact_rows",
    "escape_markdown",
    "format_significant",
    "render_report_md",
    "render_summary_markdown",
]

_METRICS = {
    # column: (table heading, unit, phrase for the baseline comparison)
    "latency_s": ("Latency", "s", "latency"),
    "cost_usd": ("Cost per run", "USD", "cost per run"),
    "monthly_cost_usd": ("Monthly cost", "USD", "monthly cost"),
    "comm_s": ("Communication", "s", "communication time"),
    "upload_bytes": ("Upload", "B", "upload"),
    "download_bytes": ("Download", "B", "download"),
    "period_s": ("Period", "s", "period"),
    "throughput_fps": ("Throughput", "frames/s", "throughput"),
}

_MARKDOWN_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "|": "&#124;",
    "`": "&#96;",
    "\\": "\\\\",
    "*": "\\*",
    "_": "\\_",
    "[": "\\[",
    "]": "\\]",
    "~": "\\~",
    "$": "\\$",
}

_MIN_DIGITS = 3
_MAX_DIGITS = 12

_PNG_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/]*={0,2}")

_MISSING = "–"

STALE_PRICE_DAYS = 180
"""Age in days past which the report flags a price row as stale."""


def escape_markdown(text: object) -> str:
    r"""Escape text so that markdown and HTML renderers show it as plain text.

    ``&``, ``<``, ``>``, ``|`` and backticks become HTML character references.
    ``\``, ``*``, ``_``, ``[``, ``]``, ``~`` and ``$`` get a backslash, and line breaks
    of every kind become spaces. The result is safe in prose and in table cells, but
    not at the start of a line, where ``#``, ``-`` or ``1.`` would still start a block.

    Examples
    --------
    >>> escape_markdown("<img src=x> | a_b")
    '&lt;img src=x&gt; &#124; a\\_b'
    """
    one_line = " ".join(str(text).splitlines())
    return "".join(_MARKDOWN_ESCAPES.get(character, character) for character in one_line)


def format_significant(value: float, digits: int, *, trailing_zeros: bool = False) -> str:
    """Format a number with `digits` significant digits, and every digit before the point.

    Digits before the point are grouped by thousands. Magnitudes below 1e-6 or from
    1e15 up use scientific notation. Trailing zeros after the point are dropped ("1.5")
    unless `trailing_zeros` is true ("1.50" with 3 digits), which aligns table columns.
    """
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e15:
        flag = "#" if trailing_zeros else ""
        return f"{value:{flag}.{digits}g}"
    integer_digits = math.floor(math.log10(magnitude)) + 1
    text = np.format_float_positional(
        value,
        precision=max(digits, integer_digits),
        unique=False,
        fractional=False,
        trim="k" if trailing_zeros else "-",
    )
    integer, _, fraction = text.partition(".")
    sign = "-" if integer.startswith("-") else ""
    grouped = f"{int(integer.lstrip('-')):,}"
    return sign + grouped + (f".{fraction}" if fraction else "")


def _distinguishing_digits(values: Iterable[float]) -> int:
    """Return the fewest significant digits (3 to 12) that keep distinct values apart.

    Values equal to 12 significant digits count as one value.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    distinct = {float(f"{v:.{_MAX_DIGITS}g}") for v in finite}
    for digits in range(_MIN_DIGITS, _MAX_DIGITS):
        if len({format_significant(v, digits) for v in distinct}) == len(distinct):
            return digits
    return _MAX_DIGITS


def _float_or_none(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _format_metric(name: str, value: Any, digits: int) -> str:
    number = _float_or_none(value)
    if number is None:
        return _MISSING
    unit = _METRICS[name][1]
    if name.endswith("_bytes"):
        return f"{int(number):,} {unit}"
    return f"{format_significant(number, digits, trailing_zeros=True)} {unit}"


def _metric_names(summary: SweepSummary) -> list[str]:
    """Metrics shown in the tables: those the sweep computed, monthly cost with runs_per_month."""
    names = [name for name in _METRICS if name in summary.candidates.columns]
    if summary.problem.runs_per_month is None:
        names.remove("monthly_cost_usd")
    return names


def _metric_digits(summary: SweepSummary) -> dict[str, int]:
    """Digits per metric that tell every candidate and baseline apart."""
    digits = {}
    for name in _metric_names(summary):
        values = [_float_or_none(v) for v in summary.candidates[name]]
        if name in summary.baselines.columns:
            values += [_float_or_none(v) for v in summary.baselines[name]]
        # A limit too, so that a value just over it never prints as the limit.
        limits = summary.requirements.limits if summary.requirements is not None else {}
        values += [value for key, value in limits.items() if LIMIT_METRICS[key] == name]
        digits[name] = _distinguishing_digits(v for v in values if v is not None)
    return digits


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool]) -> str:
    """Build a markdown table from cells that are already escaped."""
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if r else "---" for r in right) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _join_words(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


# --- Sections -----------------------------------------------------------------------


def _summary_paragraph(summary: SweepSummary) -> str:
    workflow, system = summary.workflow, summary.system
    sentences = []

    subject = f"Workflow {escape_markdown(workflow.workflow)}"
    if workflow.description:
        subject += f" ({escape_markdown(workflow.description)})"
    subject += f" on system {escape_markdown(system.system)}"
    if system.description:
        subject += f" ({escape_markdown(system.description)})"
    sentences.append(subject + ".")

    space = (
        f"The space holds {_count(summary.space_size, 'assignment')} of "
        f"{_count(len(summary.problem.stage_ids), 'stage')} to "
        f"{_count(len(summary.problem.device_ids), 'device')}"
    )
    if summary.method != "exhaustive":
        space += (
            ". The exact method built the front without enumerating them, because "
            f"{escape_markdown(summary.method_reason)}; the chart and patterns.parquet "
            f"show {_count(len(summary.patterns), 'assignment')} drawn at random."
        )
    elif summary.infeasible_count:
        space += ", and every one that fits the memory limits was evaluated."
    else:
        space += ", and every one was evaluated."
    sentences.append(space)
    left_out = left_out_sentence(summary.infeasible_count, summary.space_size, summary.over_limit)
    if left_out:
        sentences.append(escape_markdown(left_out))

    n_front = len(summary.candidates)
    objectives = _join_words([escape_markdown(o) for o in summary.problem.objectives])
    front = f"{_count(n_front, 'candidate')} form the Pareto front over {objectives}"
    if n_front == 1:
        front = f"1 candidate forms the Pareto front over {objectives}"
    equivalent = int(pd.to_numeric(summary.candidates["equivalent_count"]).sum())
    if equivalent > n_front:
        front += f" ({_count(equivalent, 'assignment')} counting equivalent ones)"
    sentences.append(front + ".")

    timings = summary.timings_s
    if "total_s" in timings:
        sentences.append(
            f"The sweep took {format_significant(timings['total_s'], 3)} s, not counting "
            "the start-up of Prefect."
        )
    elif "evaluate_s" in timings:
        sentences.append(f"The evaluation took {format_significant(timings['evaluate_s'], 3)} s.")
    return " ".join(sentences)


def _candidates_table(summary: SweepSummary) -> str:
    names = _metric_names(summary)
    digits = _metric_digits(summary)
    header = ["Label", "Placement"]
    header += [f"{_METRICS[n][0]} ({_METRICS[n][1]})" for n in names]
    header.append("Equivalent assignments")
    recommendation = summary.recommendation
    limits = summary.requirements.limits if summary.requirements is not None else {}
    if limits and recommendation is not None:
        header.append("Within the limits")
    rows = []
    for i, (_, row) in enumerate(summary.candidates.iterrows()):
        label = escape_markdown(row["label"])
        if recommendation is not None and str(row["label"]) == recommendation.label:
            label = f"**{label}** (recommended)"
        cells = [label, escape_markdown(row["placement"])]
        cells += [_format_metric(n, row[n], digits[n]) for n in names]
        cells.append(f"{int(row['equivalent_count']):,}")
        if limits and recommendation is not None:
            cells.append("yes" if recommendation.meets["all"][i] else "no")
        rows.append(cells)
    right = [False, False] + [True] * len(names) + [True] + [False] * (len(header) - len(names) - 3)
    return _table(header, rows, right)


def _comparison(
    summary: SweepSummary, baseline: pd.Series, winner: pd.Series, digits: dict[str, int]
) -> str:
    """Describe how much better `winner` is than `baseline` on every objective."""
    parts = []
    for name in summary.problem.objectives:
        winner_value = _float_or_none(winner[name])
        baseline_value = _float_or_none(baseline[name])
        if (
            winner_value is not None
            and baseline_value is not None
            and abs(winner_value - baseline_value)
            <= 1e-9 * max(abs(winner_value), abs(baseline_value))
        ):
            shown = _format_metric(name, winner_value, digits[name])
            parts.append(f"the same {_METRICS[name][2]} ({shown})")
            continue
        text = (
            f"{_METRICS[name][2]} {_format_metric(name, winner_value, digits[name])} instead of "
            f"{_format_metric(name, baseline_value, digits[name])}"
        )
        if winner_value is not None and baseline_value:
            text += f" ({(winner_value - baseline_value) / baseline_value * 100:+.3g} %)"
        parts.append(text)
    return "; ".join(parts)


def _baselines_section(summary: SweepSummary) -> str:
    baselines = summary.baselines
    if len(baselines) == 0 or "on_front" not in baselines.columns:
        return (
            "No device can run every stage that has a choice of devices, so there is no "
            "all-on-one-device baseline."
        )
    names = _metric_names(summary)
    digits = _metric_digits(summary)
    by_label = {str(row["label"]): row for _, row in summary.candidates.iterrows()}

    # One table row per baseline, and one note per dominated baseline.
    rows = []
    notes = []
    for _, row in baselines.iterrows():
        name = escape_markdown(row["baseline"])
        status = baseline_status(row, escape_markdown)
        if status.startswith("dominated"):
            label = str(row["dominated_by"])
            notes.append(
                f"- {name} is dominated by candidate {escape_markdown(label)}: "
                f"{_comparison(summary, row, by_label[label], digits)}."
            )
        rows.append([name] + [_format_metric(n, row[n], digits[n]) for n in names] + [status])

    given = "kind" in baselines.columns and (baselines["kind"] == "given").any()
    first = "Baseline or compared placement" if given else "Baseline"
    header = [first] + [f"{_METRICS[n][0]} ({_METRICS[n][1]})" for n in names] + ["Front"]
    intro = (
        "Each baseline (all on one device) puts every stage on that device, except stages "
        "that can run only on another device."
    )
    if given:
        intro += (
            " The compared placements are those listed under compare: in the system file "
            "or in the --compare file."
        )
    text = intro + "\n\n" + _table(header, rows, [False] + [True] * len(names) + [False])
    if notes:
        text += "\n\n" + "\n".join(notes)
    return text


def _stages_table(summary: SweepSummary) -> str:
    header = ["#", "Stage", "Name", "Time on reference (s)", "Threads", "Scaled by", "Devices"]
    rows = []
    for number, stage in enumerate(summary.workflow.stages, start=1):
        if stage.pin is not None:
            devices = f"{escape_markdown(stage.pin)} (pinned)"
        elif stage.allowed is not None:
            devices = ", ".join(escape_markdown(d) for d in stage.allowed)
        else:
            devices = "any"
        rows.append(
            [
                str(number),
                escape_markdown(stage.id),
                escape_markdown(stage.name) if stage.name else _MISSING,
                format_significant(stage.time_s, 6),
                str(stage.threads),
                escape_markdown(stage.score),
                devices,
            ]
        )
    return _table(header, rows, [True, False, False, True, True, False, False])


def _links_table(summary: SweepSummary) -> str:
    if not summary.system.links:
        return "The system has no links, so every assignment keeps all stages on one device."
    rows = [
        [
            f"{escape_markdown(link.between[0])} – {escape_markdown(link.between[1])}",
            f"{format_significant(link.bandwidth_mbps, 6)} Mbit/s",
            f"{format_significant(link.latency_ms, 6)} ms",
        ]
        for link in summary.system.links
    ]
    return _table(["Link", "Bandwidth", "Latency"], rows, [False, True, True])


def _cpus_table(summary: SweepSummary) -> str:
    cores_used = {d.id: d.cores for d in summary.system.devices}
    figure_names = [escape_markdown(name) for name in SCORE_FIGURES]
    header = ["Role", "CPU", "Cores", "Cores used", *figure_names, "Source", "As of"]
    rows = []
    for key, cpu in summary.problem.cpus.items():
        if key == "measured_on":
            role = "reference PC (measured\\_on)"
            used = _MISSING
        else:
            role = f"device {escape_markdown(key)}"
            used = str(cores_used.get(key) or cpu.cores)
        figures = [
            format_significant(value, 6) if value is not None else _MISSING
            for value in (cpu.figure(name) for name in SCORE_FIGURES)
        ]
        rows.append(
            [
                role,
                escape_markdown(cpu.name),
                str(cpu.cores),
                used,
                *figures,
                escape_markdown(cpu.source),
                cpu.as_of.isoformat() if cpu.as_of else _MISSING,
            ]
        )
    right = [False, False, True, True] + [True] * len(SCORE_FIGURES) + [False, False]
    return _table(header, rows, right)


def _pricing_list(summary: SweepSummary) -> str:
    lines = []
    for priced in summary.problem.priced:
        options = priced.provider.describe()
        settings = [
            f"{escape_markdown(key)} = {escape_markdown(json.dumps(value, default=str))}"
            for key, value in options.items()
            if key not in {"provider", "price_rows"}
        ]
        line = (
            f"- Device {escape_markdown(priced.device_id)}: provider "
            f"{escape_markdown(priced.provider_name)}"
        )
        if settings:
            line += "; " + ", ".join(settings)
        lines.append(line)
    if not lines:
        lines.append("- No device is priced, so every cost is 0.")
    runs = summary.system.runs_per_month
    if runs is None:
        lines.append("- runs\\_per\\_month is not set, so no monthly cost is computed.")
    else:
        lines.append(
            f"- Monthly costs are for {runs:,} runs per month, with the providers' "
            "tiers, free tiers and rounding."
        )
    return "\n".join(lines)


def _calibration_list(summary: SweepSummary) -> str:
    """Return the calibration fields the system sets as a list, or "" when it sets none."""
    system = summary.system
    lines = []
    for device in system.devices:
        factors = []
        if device.speed_factor is not None:
            factors.append(f"speed\\_factor {format_significant(device.speed_factor, 6)}")
        for stage_class, factor in (device.class_speed_factors or {}).items():
            factors.append(
                f"{escape_markdown(stage_class)} speed factor {format_significant(factor, 6)}"
            )
        if factors:
            lines.append(f"- Device {escape_markdown(device.id)}: {', '.join(factors)}")
    if system.core_scaling_exponent is not None:
        exponent = format_significant(system.core_scaling_exponent, 6)
        lines.append(
            f"- core\\_scaling\\_exponent {exponent}: a stage's time is proportional to "
            f"1 / min(threads, cores)^{exponent}"
        )
    for link in system.links:
        if link.overhead_ms:
            overhead = format_significant(link.overhead_ms, 6)
            lines.append(
                f"- Link {escape_markdown(link.between[0])} – "
                f"{escape_markdown(link.between[1])}: overhead\\_ms {overhead}, so {overhead} ms "
                "is added to every transfer over it"
            )
    if not lines:
        return ""
    intro = (
        "The system file sets these fields, which `allocation calibrate` fits to measured "
        "runs (docs/calibration.md), and the estimates above use them. A speed factor "
        "divides the stage times on its device, and a class speed factor applies on top "
        "of the device's speed\\_factor."
    )
    return "\n".join([intro, "", *lines])


def _contention_list(summary: SweepSummary) -> str:
    """Say what the system's contention block shares, or "" without one."""
    contention = summary.system.contention
    if contention is None:
        return ""
    shared = []
    if contention.cpu:
        shared.append("stages that may run at the same time on one device share its cores")
    if contention.links:
        shared.append("transfers that may run at the same time over one link share it")
    frames = contention.concurrent_frames
    lines = [f"- {text[0].upper()}{text[1:]}." for text in shared]
    lines.append(
        f"- {frames:,} frame{'s' if frames != 1 else ''} at once"
        + (", each adding the same demand." if frames != 1 else ".")
    )
    return "\n".join(
        [
            "The system file has a contention block, and the estimates above use it "
            "(docs/contention.md gives the formulas):",
            "",
            *lines,
        ]
    )


def _memory_list(summary: SweepSummary) -> str:
    """List the devices' memory limits and the stages' needs, or "" when no limit is set."""
    limits = [d for d in summary.system.devices if d.memory_mb is not None]
    if not limits:
        return ""
    lines = [
        f"- Device {escape_markdown(d.id)}: limit {format_significant(d.memory_mb, 6)} MB"
        for d in limits
        if d.memory_mb is not None
    ]
    needs = [s for s in summary.workflow.stages if s.memory_mb]
    if needs:
        lines.append(
            "- Stages: "
            + ", ".join(
                f"{escape_markdown(s.id)} {format_significant(s.memory_mb, 6)} MB" for s in needs
            )
        )
    return "\n".join(
        [
            "An assignment fits when the needs of the stages on each device add up to no "
            "more than its limit (docs/streams-and-memory.md).",
            "",
            *lines,
        ]
    )


def _inputs_list(summary: SweepSummary) -> str:
    lines = []
    for name, value in summary.inputs.items():
        if isinstance(value, dict):
            details = ", ".join(
                f"{escape_markdown(key)}: {escape_markdown(item)}" for key, item in value.items()
            )
        else:
            details = escape_markdown(value)
        lines.append(f"- {escape_markdown(name)}: {details}")
    return "\n".join(lines)


def _patterns_note(summary: SweepSummary) -> str:
    n_rows = len(summary.patterns)
    if summary.patterns_sampled:
        return (
            f"patterns.parquet holds a uniform sample of {n_rows:,} of the "
            f"{summary.space_size:,} assignments. The front and the baselines were "
            "computed over every assignment"
            + (" that fits the memory limits." if summary.infeasible_count else ".")
        )
    if summary.infeasible_count:
        return (
            f"patterns.parquet holds all {_count(n_rows, 'assignment')} that fit the memory limits."
        )
    return f"patterns.parquet holds all {_count(n_rows, 'assignment')}."


def _timings_table(summary: SweepSummary) -> str:
    rows = [
        [
            escape_markdown(phase.removesuffix("_s").replace("_", " ")),
            format_significant(seconds, 3),
        ]
        for phase, seconds in summary.timings_s.items()
    ]
    return _table(["Phase", "Time (s)"], rows, [False, True])


_ESTIMATION_NOTES = (
    "- A stage's time on a device is its time on the reference PC times the ratio of "
    "per-core benchmark figure × usable cores, reference over device, where usable "
    "cores are min(threads, cores) of each CPU.\n"
    "- A transfer between devices takes the link latency plus bytes × 8 / bandwidth; "
    "latency is the longest path through the workflow graph.\n"
    "- Cost per run is charged at the first-tier rates, without free tiers."
)


# --- Recommendation and pairwise explanations ----------------------------------------


def _recommendation_section(summary: SweepSummary) -> str:
    recommendation = summary.recommendation
    if recommendation is None:
        return ""
    parts = []
    if recommendation.label is not None:
        row = _candidate_row(summary, recommendation.label)
        placement = escape_markdown(row["placement"]) if row is not None else ""
        parts.append(
            f"**Recommended: candidate {escape_markdown(recommendation.label)}** "
            f"({placement}). {escape_markdown(recommendation.reason)}"
        )
    else:
        parts.append(f"**No recommendation.** {escape_markdown(recommendation.reason)}")
        if recommendation.shortfalls:
            parts.append("\n".join(f"- {escape_markdown(s)}" for s in recommendation.shortfalls))

    limits = summary.requirements.limits if summary.requirements is not None else {}
    if limits:
        labels = [str(label) for label in summary.candidates["label"]]
        rows = []
        for name, value in limits.items():
            metric = LIMIT_METRICS[name]
            within = [
                label for label, ok in zip(labels, recommendation.meets[name], strict=True) if ok
            ]
            rows.append(
                [
                    escape_markdown(name),
                    f"{value:.15g} {_METRICS[metric][1]}",
                    _label_list(within) if within else "none",
                ]
            )
        within_all = [
            label for label, ok in zip(labels, recommendation.meets["all"], strict=True) if ok
        ]
        rows.append(["every limit", "", _label_list(within_all) if within_all else "none"])
        parts.append(_table(["Limit", "Value", "Candidates within it"], rows, [False, True, False]))
    else:
        parts.append(
            "To recommend by limits instead, set `requirements:` in the system file "
            "(max\\_latency\\_s, max\\_cost\\_usd, max\\_monthly\\_cost\\_usd, minimise) or "
            "pass --max-latency-s, --max-cost-usd or --max-monthly-cost-usd."
        )
    return "\n\n".join(parts)


def _label_list(labels: Sequence[str], most: int = 30) -> str:
    shown = ", ".join(escape_markdown(label) for label in labels[:most])
    if len(labels) > most:
        shown += f" and {len(labels) - most:,} more"
    return shown


def _candidate_row(summary: SweepSummary, label: str) -> pd.Series | None:
    matches = summary.candidates[summary.candidates["label"].astype(str) == label]
    return None if matches.empty else matches.iloc[0]


def _charts_section(summary: SweepSummary) -> str:
    return "\n\n".join(
        f"![{escape_markdown(title)}]({file_name})" for file_name, title in summary.charts.items()
    )


def _decimals_for(values: Iterable[float], *, digits: int = 3, least: int = 0) -> int:
    """Return the decimals that show the smallest non-zero value with `digits` digits."""
    smallest = min((abs(v) for v in values if v != 0 and math.isfinite(v)), default=None)
    if smallest is None:
        return least
    decimals = digits - 1 - math.floor(math.log10(smallest))
    return int(min(max(decimals, least), 15))


def _round_to_sum(values: Sequence[float], total: Decimal, decimals: int) -> list[Decimal]:
    """Round `values` to `decimals` places so that they add up to `total` exactly.

    Each value is first rounded to the nearest step. When the rounded values miss the
    total, the missing steps go to the values that rounding moved furthest the other
    way, one step each in turn. `total` must already have `decimals` places.
    """
    step = Decimal(1).scaleb(-decimals)
    exact = [Decimal(repr(float(v))) for v in values]
    rounded = [v.quantize(step, rounding=ROUND_HALF_EVEN) for v in exact]
    missing = int((total - sum(rounded, Decimal(0))) / step)
    if missing and rounded:
        direction = 1 if missing > 0 else -1
        # The values rounded furthest against the needed direction move first.
        order = sorted(range(len(values)), key=lambda i: direction * (rounded[i] - exact[i]))
        for k in range(abs(missing)):
            i = order[k % len(order)]
            rounded[i] += direction * step
    return rounded


def _signed(value: Decimal) -> str:
    if value == 0:
        return "0"
    text = f"{abs(value):,f}"
    return ("+" if value > 0 else "-") + text


def _plain(value: Decimal) -> str:
    return f"{value:,f}"


def _quantized(value: float, decimals: int) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_EVEN)


def _latency_reason(item: LatencyItem, label_a: str, label_b: str) -> str:
    a, b = escape_markdown(label_a), escape_markdown(label_b)
    path = ""
    if item.on_path_a != item.on_path_b:
        only = a if item.on_path_a else b
        path = f"on the critical path only under {only}"
    if item.kind == "stage":
        if item.moved:
            device_a, device_b = escape_markdown(item.device_a), escape_markdown(item.device_b)
            text = f"moved from {device_a} to {device_b}"
            if item.speed_ratio is not None and item.speed_ratio > 0:
                if item.speed_ratio >= 1:
                    text += f", {format_significant(item.speed_ratio, 3)}× as fast there"
                else:
                    text += f", {format_significant(1 / item.speed_ratio, 3)}× as slow there"
            return text + (f"; {path}" if path else "")
        return path or f"stays on {escape_markdown(item.device_a)}"
    size = f"{item.bytes:,} B" if item.bytes is not None else "the data"
    if item.change == "added":
        link = item.link_b or ("?", "?")
        text = (
            f"transfer added: {size} from {escape_markdown(link[0])} to {escape_markdown(link[1])}"
        )
    elif item.change == "removed":
        link = item.link_a or ("?", "?")
        text = (
            f"transfer removed: {size} no longer sent from {escape_markdown(link[0])} to "
            f"{escape_markdown(link[1])}"
        )
    elif item.change == "changed":
        la, lb = item.link_a or ("?", "?"), item.link_b or ("?", "?")
        text = (
            f"transfer of {size} moved from {escape_markdown(la[0])}→{escape_markdown(la[1])} "
            f"to {escape_markdown(lb[0])}→{escape_markdown(lb[1])}"
        )
    else:
        text = f"same transfer of {size}"
    return text + (f"; {path}" if path else "")


@dataclass(frozen=True)
class _Column:
    """A metric of two candidates rounded for a comparison table, and its rows."""

    decimals: int
    total_a: Decimal
    total_b: Decimal
    rows: list[tuple[Decimal, Decimal, Decimal]]
    """Per changed item: its value under A, under B, and the difference."""
    rest: tuple[Decimal, Decimal]
    """Sum of the unchanged items under A and under B (equal but for rounding)."""

    @property
    def difference(self) -> Decimal:
        return self.total_b - self.total_a


def _rounded_column(
    values_a: Sequence[float],
    values_b: Sequence[float],
    total_a: float,
    total_b: float,
    *,
    least: int,
) -> _Column:
    """Round a comparison so that every column adds up to its total row, as printed.

    The differences are spread with `_round_to_sum`; the unchanged items are one row,
    the rest of each total.
    """
    deltas = [b - a for a, b in zip(values_a, values_b, strict=True)]
    decimals = _decimals_for([*deltas, total_a, total_b], least=least)
    rounded_a, rounded_b = _quantized(total_a, decimals), _quantized(total_b, decimals)
    spread = _round_to_sum(deltas, rounded_b - rounded_a, decimals)
    rows = []
    for a, delta in zip(values_a, spread, strict=True):
        shown_a = _quantized(a, decimals)
        rows.append((shown_a, shown_a + delta, delta))
    rest_a = rounded_a - sum((row[0] for row in rows), Decimal(0))
    rest_b = rounded_b - sum((row[1] for row in rows), Decimal(0))
    return _Column(decimals, rounded_a, rounded_b, rows, (rest_a, rest_b))


def _latency_column(explanation: PairExplanation) -> _Column:
    items = explanation.latency_changes
    return _rounded_column(
        [i.contribution_a_s for i in items],
        [i.contribution_b_s for i in items],
        explanation.totals_a.latency_s,
        explanation.totals_b.latency_s,
        least=3,
    )


def _cost_column(explanation: PairExplanation) -> _Column:
    items = explanation.cost_changes
    return _rounded_column(
        [i.usd_a for i in items],
        [i.usd_b for i in items],
        explanation.totals_a.cost_usd,
        explanation.totals_b.cost_usd,
        least=2,
    )


def _monthly_column(explanation: PairExplanation) -> _Column | None:
    ta, tb = explanation.totals_a.monthly_cost_usd, explanation.totals_b.monthly_cost_usd
    if ta is None or tb is None:
        return None
    items = [i for i in explanation.monthly_items if i.delta_usd != 0]
    return _rounded_column([i.usd_a for i in items], [i.usd_b for i in items], ta, tb, least=2)


def _change(column: _Column, unit: str, more: str, less: str) -> tuple[str, str]:
    """Say a difference as the tables print it: ("0.237 s longer", "(4.08 s against 3.84 s)")."""
    word = more if column.difference > 0 else less
    return (
        f"{_plain(abs(column.difference))} {unit} {word}",
        f"({_plain(column.total_b)} {unit} against {_plain(column.total_a)} {unit})",
    )


def _pair_sentence(explanation: PairExplanation, runs_per_month: int | None) -> str:
    a, b = escape_markdown(explanation.label_a), escape_markdown(explanation.label_b)
    latency = _latency_column(explanation)
    cost = _cost_column(explanation)
    if latency.difference == 0:
        first = f"{b} takes as long as {a}"
    else:
        amount, figures = _change(latency, "s", "longer", "less")
        first = f"{b} takes {amount} than {a} {figures}"
    if cost.difference == 0:
        first += " and costs the same per run."
    else:
        amount, figures = _change(cost, "USD", "more", "less")
        first += f" and costs {amount} per run {figures}."
    sentences = [first]

    monthly = _monthly_column(explanation)
    if monthly is not None and runs_per_month:
        if monthly.difference == 0:
            sentences.append(f"Over a month of {runs_per_month:,} runs, {b} costs the same.")
        else:
            amount, figures = _change(monthly, "USD", "more", "less")
            sentences.append(
                f"Over a month of {runs_per_month:,} runs, {b} costs {amount} {figures}."
            )

    if explanation.faster is not None and explanation.usd_per_s_saved is not None:
        faster = escape_markdown(explanation.faster)
        slower = b if explanation.faster == explanation.label_a else a
        rate = explanation.usd_per_s_saved
        if rate >= 0:
            text = (
                f"Each second that {faster} saves over {slower} costs "
                f"{format_significant(rate, 3)} USD per run"
            )
            if explanation.monthly_usd_per_s_saved is not None:
                text += (
                    f" ({format_significant(explanation.monthly_usd_per_s_saved, 3)} USD a month)"
                )
        else:
            text = f"{faster} is both faster and cheaper than {slower}"
        sentences.append(text + ".")

    moved = explanation.moved_stages
    if moved:
        sentences.append(
            ("Stage moved: " if len(moved) == 1 else "Stages moved: ")
            + ", ".join(escape_markdown(stage) for stage in moved)
            + "."
        )
    return " ".join(sentences)


def _rest_row(column: _Column, what: str) -> list[list[str]]:
    """Return the row of the unchanged items, or none when they add nothing."""
    rest_a, rest_b = column.rest
    if rest_a == 0 and rest_b == 0:
        return []
    return [[what, _plain(rest_a), _plain(rest_b), _signed(rest_b - rest_a)]]


def _latency_table(explanation: PairExplanation) -> str:
    column = _latency_column(explanation)
    a, b = escape_markdown(explanation.label_a), escape_markdown(explanation.label_b)
    rows = []
    for item, (shown_a, shown_b, delta) in zip(
        explanation.latency_changes, column.rows, strict=True
    ):
        kind = "stage" if item.kind == "stage" else "transfer"
        rows.append(
            [
                f"{kind} {escape_markdown(item.name)}",
                _plain(shown_a),
                _plain(shown_b),
                _signed(delta),
                _latency_reason(item, explanation.label_a, explanation.label_b),
            ]
        )
    for row in _rest_row(column, "unchanged stages and transfers"):
        rows.append([*row, "the same under both"])
    rows.append(
        [
            "**latency**",
            _plain(column.total_a),
            _plain(column.total_b),
            _signed(column.difference),
            "",
        ]
    )
    header = ["Stage or transfer", f"{a} (s)", f"{b} (s)", "Difference (s)", "What changed"]
    return _table(header, rows, [False, True, True, True, False])


def _money_table(
    explanation: PairExplanation,
    column: _Column,
    names: list[str],
    *,
    heading: str,
    unit: str,
    rest: str,
    total: str,
) -> str:
    """Build a table of money rows (billing lines or devices) that add up to `total`."""
    a, b = escape_markdown(explanation.label_a), escape_markdown(explanation.label_b)
    rows = [
        [name, _plain(shown_a), _plain(shown_b), _signed(delta)]
        for name, (shown_a, shown_b, delta) in zip(names, column.rows, strict=True)
    ]
    rows += _rest_row(column, rest)
    rows.append([total, _plain(column.total_a), _plain(column.total_b), _signed(column.difference)])
    header = [heading, f"{a} ({unit})", f"{b} ({unit})", f"Difference ({unit})"]
    return _table(header, rows, [False, True, True, True])


def _cost_table(explanation: PairExplanation) -> str:
    names = [
        f"{escape_markdown(item.device_id)}: {escape_markdown(item.line)} "
        f"({escape_markdown(item.provider)})"
        for item in explanation.cost_changes
    ]
    return _money_table(
        explanation,
        _cost_column(explanation),
        names,
        heading="Billing line",
        unit="USD",
        rest="unchanged billing lines",
        total="**cost per run**",
    )


def _monthly_table(explanation: PairExplanation) -> str:
    column = _monthly_column(explanation)
    if column is None:
        return ""
    names = [
        f"{escape_markdown(item.device_id)} ({escape_markdown(item.provider)})"
        for item in explanation.monthly_items
        if item.delta_usd != 0
    ]
    return _money_table(
        explanation,
        column,
        names,
        heading="Device",
        unit="USD a month",
        rest="unchanged devices",
        total="**monthly cost**",
    )


def _differences_section(summary: SweepSummary) -> str:
    explanations = summary.explanations
    if not explanations:
        return "There is only one candidate, so there is nothing to compare."
    parts = [
        "Each comparison splits the difference in latency into the stages and transfers on "
        "the critical paths (the longest chains of stages and transfers, which set the "
        "latency), and the difference in cost into the providers' billing lines. The "
        "differences in each table add up to its total; rounding is spread so that the "
        "rounded figures add up too."
    ]
    if summary.explanations_omitted:
        parts.append(
            f"{_count(summary.explanations_omitted, 'further neighbouring pair')} "
            "of candidates are not shown; pass --explain A:B to explain any two candidates."
        )
    runs = summary.problem.runs_per_month
    for explanation in explanations:
        a, b = escape_markdown(explanation.label_a), escape_markdown(explanation.label_b)
        parts.append(f"### {b} compared with {a}")
        parts.append(_pair_sentence(explanation, runs))
        parts.append(_latency_table(explanation))
        if explanation.cost_items:
            parts.append(_cost_table(explanation))
        monthly = _monthly_table(explanation)
        if monthly:
            parts.append(monthly)
    return "\n\n".join(parts)


# --- Robustness ----------------------------------------------------------------------

_MAX_ROBUSTNESS_ROWS = 60
"""Candidates listed in the Robustness section at most; robustness.parquet has them all."""

_SPREAD_NAMES = {
    "stage_time": "stage times",
    "bandwidth": "link bandwidths",
    "price": "prices",
}


def _spread_text(spread: dict[str, Any]) -> str:
    relative = float(spread["relative"])
    if spread["distribution"] == "uniform":
        return f"±{format_significant(100 * relative, 3)} % (uniform)"
    return f"lognormal with σ {format_significant(relative, 3)} of the logarithm"


def _robustness_section(summary: SweepSummary) -> str:
    """Render the settings, the recommended candidate's shares and the table."""
    robustness = summary.robustness
    assert robustness is not None
    settings = robustness.settings
    spreads = [
        f"{name} {_spread_text(settings[key])}"
        for key, name in _SPREAD_NAMES.items()
        if settings.get(key) is not None
    ]
    spreads += [
        f"stage {escape_markdown(stage_id)} {_spread_text(spread)}"
        for stage_id, spread in settings.get("stages", {}).items()
    ]
    intro = (
        f"A Monte Carlo of {_count(robustness.samples, 'sample')} (seed {settings['seed']}, "
        f"file {escape_markdown(robustness.path)}) multiplied the inputs by random factors: "
        f"{_join_words(spreads)}. Each sample finds the front of the space of "
        f"{_count(summary.space_size, 'assignment')} again, by the sweep's method. A "
        "candidate counts as on the "
        "front in a sample when no point of that sample's front dominates it, and as "
        "recommended when the recommendation rules, applied to that front, choose it."
    )
    sentences = [robustness.sentence()]
    elsewhere = []
    if robustness.no_recommendation_share > 0 and robustness.recommended_label is not None:
        elsewhere.append(
            f"nothing is recommended in {_share_text(robustness.no_recommendation_share)}, "
            "because no point of the sample's front meets the limits"
        )
    if robustness.other_recommended_share > 0:
        elsewhere.append(
            "the recommended point is none of these candidates in "
            f"{_share_text(robustness.other_recommended_share)}"
        )
    if elsewhere:
        sentences.append(f"Of the samples, {_join_words(elsewhere)}.")
    parts = [intro, escape_markdown(" ".join(sentences))]

    table = robustness.table
    listed = table.iloc[:_MAX_ROBUSTNESS_ROWS]
    header = ["Label", "On the front", "Recommended"]
    if robustness.limits_set:
        header.insert(2, "Within the limits")
    header += ["Latency p5 / p50 / p95 (s)", "Cost per run p5 / p50 / p95 (USD)"]
    rows = []
    for _, row in listed.iterrows():
        label = escape_markdown(row["label"])
        if row["label"] == robustness.recommended_label:
            label = f"**{label}** (recommended)"
        cells = [label, _share_text(row["on_front_share"]), _share_text(row["recommended_share"])]
        if robustness.limits_set:
            cells.insert(2, _share_text(row["meets_limits_share"]))
        for metric in ("latency_s", "cost_usd"):
            cells.append(
                " / ".join(format_significant(float(row[f"{metric}_p{q}"]), 3) for q in (5, 50, 95))
            )
        rows.append(cells)
    parts.append(_table(header, rows, [False] + [True] * (len(header) - 1)))
    if len(table) > len(listed):
        parts.append(
            f"The table lists the first {len(listed):,} of {len(table):,} candidates. "
            "robustness.parquet contains every one."
        )
    return "\n\n".join(parts)


def _share_text(share: Any) -> str:
    number = _float_or_none(share)
    if number is None:
        return _MISSING
    return f"{format_significant(100 * number, 3)} %"


# --- Public renderers ---------------------------------------------------------------


def render_report_md(summary: SweepSummary) -> str:
    """Render the full markdown report of a sweep (report.md).

    Parameters
    ----------
    summary : SweepSummary
        The finished sweep.

    Returns
    -------
    str
        Markdown with a title and the sections Candidates, Robustness (with a Monte
        Carlo), Baselines, Stages, Assumptions, Inputs (when known), Patterns and
        Timings (when measured).
    """
    title = (
        f"# Allocation of {escape_markdown(summary.problem.workflow_name)} on "
        f"{escape_markdown(summary.problem.system_name)}"
    )
    sections = [title, _summary_paragraph(summary)]
    recommendation = _recommendation_section(summary)
    if recommendation:
        sections += ["## Recommendation", recommendation]
    sections += [
        "## Candidates",
        "The candidates are ordered by latency. Stage numbers refer to the table of stages below.",
        _candidates_table(summary),
    ]
    if summary.charts:
        sections += ["## Charts", _charts_section(summary)]
    if summary.explanations or summary.recommendation is not None:
        sections += ["## How the candidates differ", _differences_section(summary)]
    if summary.robustness is not None:
        sections += ["## Robustness", _robustness_section(summary)]
    sections += [
        "## Baselines and compared placements",
        _baselines_section(summary),
        "## Stages",
        _stages_table(summary),
        "## Assumptions",
        _ESTIMATION_NOTES,
        "### Links",
        _links_table(summary),
        "### CPUs",
        _cpus_table(summary),
        "### Pricing",
        _pricing_list(summary),
    ]
    price_rows = _price_rows_section(summary)
    if price_rows:
        sections += ["### Prices used", price_rows]
    for title, part in (
        ("Calibration", _calibration_list(summary)),
        ("Contention", _contention_list(summary)),
        ("Memory", _memory_list(summary)),
    ):
        if part:
            sections += [f"### {title}", part]
    if summary.inputs:
        sections += ["## Inputs", _inputs_list(summary)]
    sections += ["## Patterns", _patterns_note(summary)]
    if summary.timings_s:
        sections += ["## Timings", _timings_table(summary)]
    return "\n\n".join(sections) + "\n"


def _price_rows_section(summary: SweepSummary, *, today: dt.date | None = None) -> str:
    """List the price rows the providers used, with their dates; flag stale ones.

    A row is stale when its `as_of` is more than `STALE_PRICE_DAYS` days before `today`
    (the day the report is written), or unknown.
    """
    today = today or dt.date.today()
    header = [
        "Device",
        "Service",
        "Region",
        "Dimension",
        "Price (USD)",
        "Unit",
        "Tier",
        "As of",
        "Source",
    ]
    rows = []
    stale = 0
    for priced in summary.problem.priced:
        for row in priced.provider.describe().get("price_rows", []):
            as_of = row.get("as_of")
            age_days = (today - dt.date.fromisoformat(as_of)).days if as_of else None
            is_stale = age_days is None or age_days > STALE_PRICE_DAYS
            stale += is_stale
            tier_end = row.get("tier_end")
            tier = f"{row.get('tier_start', 0):,.6g} to " + (
                "no limit" if tier_end is None else f"{tier_end:,.6g}"
            )
            date_text = as_of or "unknown"
            if is_stale:
                date_text += " (stale)"
            source = row.get("source", "")
            if row.get("secondary"):
                source = "second-hand: " + source
            rows.append(
                [
                    escape_markdown(priced.device_id),
                    escape_markdown(row.get("service", "")),
                    escape_markdown(row.get("region", "")),
                    escape_markdown(row.get("dimension", "")),
                    f"{row.get('usd_per_unit', 0):.10g}",
                    escape_markdown(row.get("unit", "")),
                    tier,
                    date_text,
                    escape_markdown(source),
                ]
            )
    if not rows:
        return ""
    note = (
        f"{stale} of {len(rows)} price rows are older than {STALE_PRICE_DAYS} days or "
        "undated; check them against the provider's current prices before deciding."
        if stale
        else f"Every price row is at most {STALE_PRICE_DAYS} days old."
    )
    right = [False] * 4 + [True] + [False] * 4
    return note + "\n\n" + _table(header, rows, right)


def render_summary_markdown(summary: SweepSummary, *, png_data_uri: str | None) -> str:
    """Render a short markdown summary for a Prefect markdown artifact.

    Parameters
    ----------
    summary : SweepSummary
        The finished sweep.
    png_data_uri : str or None
        The chart as ``data:image/png;base64,...``, shown as an image; None for no image.

    Raises
    ------
    ValueError
        When `png_data_uri` is not a base64 PNG data URI.
    """
    sections = [
        f"## Trade-off of {escape_markdown(summary.problem.workflow_name)} on "
        f"{escape_markdown(summary.problem.system_name)}",
        _summary_paragraph(summary),
        _candidates_table(summary),
    ]
    if png_data_uri is not None:
        if not _PNG_DATA_URI.fullmatch(png_data_uri):
            raise ValueError(
                "png_data_uri must be 'data:image/png;base64,' followed by base64 text, "
                f"got {png_data_uri[:40]!r}"
            )
        sections.append(f"![trade-off chart]({png_data_uri})")
    return "\n\n".join(sections) + "\n"


def _json_native(value: Any) -> str | int | float | bool | None:
    """Convert a table cell to a JSON-native value, with None for null, NaN and infinity."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return str(value)


def candidates_artifact_rows(summary: SweepSummary) -> list[dict[str, Any]]:
    """Return the candidates as rows for a Prefect table artifact.

    Each row maps the columns of `summary.candidates` (`label` and `placement` first,
    then the metrics, `equivalent_count` and the `at_<stage id>` columns) to str, int,
    float, bool or None. Null, NaN and infinite values become None.
    """
    table = summary.candidates
    columns = ["label", "placement"] + [c for c in table.columns if c not in ("label", "placement")]
    return [
        {column: _json_native(value) for column, value in zip(columns, row, strict=True)}
        for row in table[columns].itertuples(index=False, name=None)
    ]
