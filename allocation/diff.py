"""Compare two evaluations of one study: what changed in the inputs and on the front.

An evaluation is the output folder of a sweep (front.parquet, run.json and, when kept,
patterns.parquet) plus the study's fingerprint (`allocation.studies.fingerprint_study`)
saved beside them as ``inputs.json``. `diff_evaluations` reports

- the input changes: price rows (matched by price and tier start), provider options,
  CPU figures, workflow and system fields, sweep options and the tool version;
- the candidates that entered or left the front, matched by placement (the device of
  every stage), with the study's objectives and ``throughput_fps`` of each, whether a
  memory limit keeps it out, and the metric changes of those that stayed;
- a change of the recommended placement, with the comparison between the old and the
  new recommendation that flipped and the input changes that can have caused it.

An input change is traced to a candidate when it can move one of the candidate's
changed metrics and concerns a device the candidate uses (a price or CPU of that
device), or every device (a workflow field, the reference CPU). This tracing names the
possible causes of a change. It does not apportion the change between them. A price row
whose only change is its ``as_of`` date or ``source`` moves no metric, so it is listed
apart and never named as a cause. A change of a stage's or a device's ``memory_mb``
moves no metric either: it decides which assignments fit, so it is named as the cause
of a candidate that now exceeds, or no longer exceeds, that limit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allocation.errors import AllocationError
from allocation.memory import exceeds_limit
from allocation.results import candidate_labels

__all__ = [
    "FINGERPRINT_FILE",
    "CandidateChange",
    "EvaluationRecord",
    "InputChange",
    "RecommendationChange",
    "StudyDiff",
    "diff_evaluations",
    "render_diff_md",
]

FINGERPRINT_FILE = "inputs.json"
"""File of a study's output folder holding the fingerprint of its inputs."""

METRICS = (
    "latency_s",
    "cost_usd",
    "monthly_cost_usd",
    "period_s",
    "throughput_fps",
    "comm_s",
    "upload_bytes",
    "download_bytes",
)
"""Columns of front.parquet compared between evaluations, in report order."""

DEFAULT_OBJECTIVES = ("latency_s", "cost_usd")
"""Objectives of a study whose run.json and system name none."""

_COST_METRICS = ("cost_usd", "monthly_cost_usd")
_TIME_METRICS = ("latency_s", "cost_usd", "monthly_cost_usd", "period_s", "throughput_fps")
_UNITS = {
    "latency_s": "s",
    "comm_s": "s",
    "period_s": "s",
    "throughput_fps": "fps",
    "cost_usd": "USD",
    "monthly_cost_usd": "USD",
}
_MEMORY_FIELD = re.compile(r"^(stages|devices)\[([^\]]+)\]\.memory_mb$")
"""Field path of a stage's memory need or a device's memory limit in the fingerprint."""
_RELATIVE_TOLERANCE = 1e-9
"""Metric values closer than this, relative to the larger, count as equal (as on the front)."""

_PRICE_KEY = ("provider", "service", "dimension", "region", "architecture", "tier_start")


@dataclass(frozen=True)
class EvaluationRecord:
    """The outputs and input fingerprint of one evaluation of a study."""

    front: pd.DataFrame
    run: dict[str, Any]
    """Contents of run.json."""
    inputs: dict[str, Any]
    """Parts of the fingerprint (`allocation.studies.StudyFingerprint.parts`)."""
    patterns: pd.DataFrame | None = None
    """patterns.parquet, to look up placements that are not on the front; None if absent."""

    @classmethod
    def read(cls, folder: Path) -> EvaluationRecord:
        """Read an evaluation from an output folder.

        Raises
        ------
        AllocationError
            When front.parquet, run.json or inputs.json is missing or unreadable.
        """
        folder = Path(folder)
        try:
            front = pd.read_parquet(folder / "front.parquet")
            run = json.loads((folder / "run.json").read_text("utf-8"))
            inputs = json.loads((folder / FINGERPRINT_FILE).read_text("utf-8"))
            patterns_path = folder / "patterns.parquet"
            patterns = pd.read_parquet(patterns_path) if patterns_path.is_file() else None
        except (OSError, ValueError) as exc:
            raise AllocationError(
                f"cannot read the evaluation in {folder}: {exc}; run the re-evaluation "
                "again to write a complete one"
            ) from exc
        return cls(front, run, inputs, patterns)

    @property
    def stage_ids(self) -> list[str]:
        """Stage ids in file order, from the ``at_*`` columns."""
        return [str(c)[3:] for c in self.front.columns if str(c).startswith("at_")]

    @property
    def device_ids(self) -> list[str]:
        """Device ids in the order of the system file."""
        devices = self.inputs.get("system", {}).get("devices", [])
        return [str(device["id"]) for device in devices if "id" in device]

    @property
    def objectives(self) -> list[str]:
        """Objectives of the sweep, from run.json, else the system, else the default."""
        objectives = self.run.get("objectives") or self.inputs.get("system", {}).get("objectives")
        return [str(o) for o in objectives] if objectives else list(DEFAULT_OBJECTIVES)

    def memory_excess(self, placement: tuple[str, ...]) -> list[MemoryExcess]:
        """Return the devices whose memory limit `placement` exceeds under these inputs.

        The needs come from the workflow's stages and the limits from the system's
        devices, as the sweep reads them (`allocation.memory`).
        """
        stages = {
            str(stage.get("id")): float(stage.get("memory_mb") or 0.0)
            for stage in self.inputs.get("workflow", {}).get("stages", [])
        }
        need_mb: dict[str, float] = {}
        for stage_id, device in zip(self.stage_ids, placement, strict=True):
            need_mb[device] = need_mb.get(device, 0.0) + stages.get(stage_id, 0.0)
        excess = []
        for device in self.inputs.get("system", {}).get("devices", []):
            device_id, limit_mb = str(device.get("id")), device.get("memory_mb")
            if limit_mb is None or device_id not in need_mb:
                continue
            if exceeds_limit(need_mb[device_id], float(limit_mb)):
                excess.append(MemoryExcess(device_id, need_mb[device_id], float(limit_mb)))
        return excess

    def placements(self) -> list[tuple[str, ...]]:
        """Return the placement of every front row, as device ids in stage order."""
        return _placements(self.front)

    def labels(self) -> list[str]:
        """Return the candidate labels of the front rows (A, B, ... in row order)."""
        return candidate_labels(len(self.front))

    def recommended(self) -> tuple[str, tuple[str, ...]] | None:
        """Return the label and placement of the recommended candidate, or None."""
        recommendation = self.run.get("recommendation") or {}
        label = recommendation.get("label")
        labels = self.labels()
        if label not in labels:
            return None
        return label, self.placements()[labels.index(label)]

    def metrics_of(self, placement: tuple[str, ...]) -> dict[str, float] | None:
        """Return the metrics of a placement, from the front or else patterns.parquet."""
        for table in (self.front, self.patterns):
            if table is None:
                continue
            columns = [c for c in table.columns if str(c).startswith("at_")]
            if len(columns) != len(placement):
                continue
            match = np.ones(len(table), dtype=bool)
            for column, device in zip(columns, placement, strict=True):
                match &= table[column].to_numpy() == device
            rows = np.flatnonzero(match)
            if len(rows):
                found = table.iloc[int(rows[0])]
                return {m: _number(found[m]) for m in METRICS if m in table.columns}
        return None


@dataclass(frozen=True)
class InputChange:
    """One changed input, described in a sentence, and what it can affect."""

    part: str
    """Part of the fingerprint: workflow, system, cpus, pricing, options or tool."""
    text: str
    devices: tuple[str, ...] | None
    """Devices whose estimates it concerns; None for every device."""
    metrics: tuple[str, ...]
    """Metrics it can move: none for a price row that only has a new date or source, and
    none for a memory need or limit."""
    memory_of: tuple[str, str] | None = None
    """``("stage", id)`` or ``("device", id)`` for a change of that ``memory_mb``, which
    decides which assignments fit; None for other changes."""

    @property
    def numbered(self) -> bool:
        """Whether the change can move a metric or decide which assignments fit."""
        return bool(self.metrics) or self.memory_of is not None

    def concerns(self, devices: Iterable[str], metrics: Iterable[str]) -> bool:
        """Return whether this change can move one of `metrics` of a placement on `devices`."""
        device_hit = self.devices is None or bool(set(self.devices) & set(devices))
        return device_hit and bool(set(self.metrics) & set(metrics))


@dataclass(frozen=True)
class MemoryExcess:
    """A device whose memory limit a placement exceeds."""

    device: str
    need_mb: float
    """Sum of the ``memory_mb`` of the placement's stages on the device."""
    limit_mb: float


@dataclass(frozen=True)
class CandidateChange:
    """A placement on both fronts whose metrics changed."""

    placement: tuple[str, ...]
    old_label: str
    new_label: str
    metrics: dict[str, tuple[float, float]]
    """Old and new value of each metric that changed."""
    causes: tuple[InputChange, ...]


@dataclass(frozen=True)
class FrontEntry:
    """A candidate that entered or left the front."""

    label: str
    placement: tuple[str, ...]
    metrics: dict[str, float]
    other: dict[str, float] | None
    """Its metrics in the other evaluation, when patterns.parquet has the placement."""
    over_memory: tuple[MemoryExcess, ...] = ()
    """For a candidate that left: the memory limits it exceeds now. For one that
    entered: those it exceeded before."""
    causes: tuple[InputChange, ...] = ()
    """Input changes that can explain the move: the memory changes behind `over_memory`,
    else the changes that can move the metrics that differ from the other evaluation."""


@dataclass(frozen=True)
class RecommendationChange:
    """The recommended placement before and after, and why it moved."""

    old: tuple[str, tuple[str, ...]] | None
    new: tuple[str, tuple[str, ...]] | None
    rule: str | None
    reason: str
    flips: tuple[str, ...]
    """Sentences on comparisons between the two placements whose order flipped."""
    causes: tuple[InputChange, ...]
    metrics: dict[str, tuple[dict[str, float] | None, dict[str, float] | None]] = field(
        default_factory=dict
    )
    """Per role, ``old`` and ``new`` recommendation: the placement's metrics in the
    previous and in this evaluation, None where that evaluation's tables lack it."""
    over_memory: tuple[MemoryExcess, ...] = ()
    """The memory limits that the old recommendation exceeds now."""


@dataclass(frozen=True)
class StudyDiff:
    """The differences between two evaluations of a study (see the module docstring)."""

    input_changes: list[InputChange]
    entered: list[FrontEntry]
    left: list[FrontEntry]
    changed: list[CandidateChange]
    unchanged: int
    """Candidates on both fronts with equal metrics."""
    recommendation: RecommendationChange | None
    """None when the recommended placement stayed the same."""
    recommended: tuple[str, tuple[str, ...]] | None = None
    """The label and placement recommended by the new evaluation."""
    previous_label: str | None = None
    """The label of the recommended placement in the previous evaluation."""
    same_stages: bool = True
    """False when the stage ids differ, so placements cannot be matched."""
    device_order: list[str] = field(default_factory=list)
    stage_ids: list[str] = field(default_factory=list)
    old_evaluated_at: str | None = None
    new_evaluated_at: str | None = None
    objectives: list[str] = field(default_factory=lambda: list(DEFAULT_OBJECTIVES))
    """Objectives of the new evaluation, shown for every candidate that entered or left."""
    old_limits_mb: dict[str, float] = field(default_factory=dict)
    """Memory limit of each device with one in the previous evaluation."""


def diff_evaluations(
    old: EvaluationRecord,
    new: EvaluationRecord,
    *,
    old_evaluated_at: str | None = None,
    new_evaluated_at: str | None = None,
) -> StudyDiff:
    """Compare two evaluations of a study; see the module docstring."""
    input_changes = compare_inputs(old.inputs, new.inputs)
    stage_ids = new.stage_ids
    device_order = new.device_ids or old.device_ids
    if old.stage_ids != stage_ids:
        return StudyDiff(
            input_changes,
            [],
            [],
            [],
            0,
            None,
            same_stages=False,
            device_order=device_order,
            stage_ids=stage_ids,
            old_evaluated_at=old_evaluated_at,
            new_evaluated_at=new_evaluated_at,
            objectives=new.objectives,
        )

    # Match the fronts by placement.
    old_rows = _front_rows(old)
    new_rows = _front_rows(new)
    entered = [
        _front_entry(label, placement, metrics, old, input_changes)
        for placement, (label, metrics) in new_rows.items()
        if placement not in old_rows
    ]
    left = [
        _front_entry(label, placement, metrics, new, input_changes)
        for placement, (label, metrics) in old_rows.items()
        if placement not in new_rows
    ]
    changed = []
    unchanged = 0
    for placement, (new_label, new_metrics) in new_rows.items():
        if placement not in old_rows:
            continue
        old_label, old_metrics = old_rows[placement]
        moved = {
            metric: (old_metrics[metric], new_metrics[metric])
            for metric in METRICS
            if metric in old_metrics
            and metric in new_metrics
            and not _equal(old_metrics[metric], new_metrics[metric])
        }
        if not moved:
            unchanged += 1
            continue
        causes = tuple(c for c in input_changes if c.concerns(set(placement), moved))
        changed.append(CandidateChange(placement, old_label, new_label, moved, causes))

    return StudyDiff(
        input_changes,
        entered,
        left,
        changed,
        unchanged,
        _recommendation_change(old, new, input_changes),
        recommended=new.recommended(),
        previous_label=(old.recommended() or (None,))[0],
        device_order=device_order,
        stage_ids=stage_ids,
        old_evaluated_at=old_evaluated_at,
        new_evaluated_at=new_evaluated_at,
        objectives=new.objectives,
        old_limits_mb=_memory_limits(old.inputs),
    )


def _front_entry(
    label: str,
    placement: tuple[str, ...],
    metrics: dict[str, float],
    other: EvaluationRecord,
    input_changes: list[InputChange],
) -> FrontEntry:
    """Describe a candidate on one front only; `other` is the evaluation without it."""
    other_metrics = other.metrics_of(placement)
    over_memory = tuple(other.memory_excess(placement))
    if over_memory:
        causes = tuple(
            c for c in input_changes if _memory_cause(c, placement, other.stage_ids, over_memory)
        )
    elif other_metrics is not None:
        moved = {
            m for m in metrics if m in other_metrics and not _equal(metrics[m], other_metrics[m])
        }
        causes = tuple(c for c in input_changes if c.concerns(set(placement), moved))
    else:
        causes = ()
    return FrontEntry(label, placement, metrics, other_metrics, over_memory, causes)


def _memory_cause(
    change: InputChange,
    placement: tuple[str, ...],
    stage_ids: Sequence[str],
    over_memory: Sequence[MemoryExcess],
) -> bool:
    """Return whether `change` sets the limit or a need on a device `over_memory` names."""
    if change.memory_of is None:
        return False
    kind, name = change.memory_of
    devices = {excess.device for excess in over_memory}
    if kind == "device":
        return name in devices
    on_device = dict(zip(stage_ids, placement, strict=True))
    return on_device.get(name) in devices


def _memory_limits(inputs: Mapping[str, Any]) -> dict[str, float]:
    devices = inputs.get("system", {}).get("devices", [])
    return {
        str(d.get("id")): float(d["memory_mb"]) for d in devices if d.get("memory_mb") is not None
    }


def compare_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[InputChange]:
    """Return the input changes between two fingerprints, prices first."""
    changes = _price_changes(old.get("pricing", {}), new.get("pricing", {}))
    changes += _cpu_changes(old.get("cpus", {}), new.get("cpus", {}))
    changes += _field_changes(
        "workflow", old.get("workflow", {}), new.get("workflow", {}), "workflow"
    )
    changes += _field_changes("system", old.get("system", {}), new.get("system", {}), "system")
    changes += _field_changes(
        "options", old.get("options", {}), new.get("options", {}), "sweep option"
    )
    changes += _field_changes("tool", old.get("tool", {}), new.get("tool", {}), "tool")
    return changes


def _price_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[InputChange]:
    changes = []
    for device in sorted(set(old) | set(new)):
        before, after = old.get(device) or {}, new.get(device) or {}
        provider = after.get("provider") or before.get("provider") or "?"
        where = f"device {device} ({provider})"
        old_rows = {_price_key(row): row for row in before.get("price_rows", [])}
        new_rows = {_price_key(row): row for row in after.get("price_rows", [])}
        for key in [*old_rows, *(k for k in new_rows if k not in old_rows)]:
            text = _price_row_change(old_rows.get(key), new_rows.get(key))
            if text:
                moved = () if _redated_only(old_rows.get(key), new_rows.get(key)) else _COST_METRICS
                changes.append(InputChange("pricing", f"{text}, {where}", (device,), moved))

        options_before = {k: v for k, v in before.items() if k != "price_rows"}
        options_after = {k: v for k, v in after.items() if k != "price_rows"}
        for path, a, b in _flat_differences(options_before, options_after, ""):
            text = f"{where}: pricing option {path} {_transition(a, b)}"
            # An option such as usable_cores also sets the device's cores, so any metric.
            changes.append(InputChange("pricing", text, (device,), METRICS))
    return changes


def _redated_only(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Return whether a price row changed in `as_of` or `source` and in nothing else."""
    if old is None or new is None:
        return False
    provenance = ("as_of", "source")
    return {k: v for k, v in old.items() if k not in provenance} == {
        k: v for k, v in new.items() if k not in provenance
    }


def _price_row_change(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    row = new or old
    assert row is not None
    name = _price_name(row)
    if old is None:
        return f"new price row {name}: {_rate(row)}"
    if new is None:
        return f"price row {name} ({_rate(row)}) no longer used"
    parts = []
    old_rate, new_rate = float(old["usd_per_unit"]), float(new["usd_per_unit"])
    if old_rate != new_rate:
        verb = "rose" if new_rate > old_rate else "fell"
        percent = f" {abs(new_rate - old_rate) / old_rate * 100:.1f} %" if old_rate else ""
        parts.append(
            f"{name} {verb}{percent}: {_usd(old_rate)} → {_usd(new_rate)} USD per {new['unit']}"
        )
    for column in ("tier_end", "free_allowance", "unit"):
        if old.get(column) != new.get(column):
            parts.append(f"{name}: {column} {_transition(old.get(column), new.get(column))}")
    if old.get("as_of") != new.get("as_of") or old.get("source") != new.get("source"):
        dates = _transition(old.get("as_of"), new.get("as_of"))
        if not parts:
            parts.append(f"{name}: rate unchanged, source or date changed (as_of {dates})")
        else:
            parts[-1] += f" (as_of {dates})"
    return "; ".join(parts) or None


def _cpu_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[InputChange]:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key) or {}, new.get(key) or {}
        subject = "the reference CPU (measured_on)" if key == "measured_on" else f"device {key}"
        devices = None if key == "measured_on" else (key,)
        name = after.get("cpu") or before.get("cpu")
        for path, a, b in _flat_differences(before, after, ""):
            if path in ("source", "as_of"):
                continue
            if isinstance(a, int | float) and isinstance(b, int | float) and a:
                transition = f"{_transition(a, b)} ({_percent(float(a), float(b))})"
            else:
                transition = _transition(a, b)
            text = f"CPU of {subject}, {name}: {path} {transition}"
            changes.append(InputChange("cpus", text, devices, _TIME_METRICS))
    return changes


def _field_changes(part: str, old: Any, new: Any, noun: str) -> list[InputChange]:
    changes = []
    for path, a, b in _flat_differences(old, new, ""):
        if part == "system" and ".pricing" in path:
            continue  # The provider's own description reports its options and prices.
        devices: tuple[str, ...] | None = None
        if part == "system" and path.startswith("devices["):
            devices = (path[len("devices[") : path.index("]")],)
        text = f"{noun} {path} {_transition(a, b)}"
        memory = _MEMORY_FIELD.match(path) if part in ("workflow", "system") else None
        if memory is not None:
            kind = "stage" if memory.group(1) == "stages" else "device"
            changes.append(InputChange(part, text, devices, (), (kind, memory.group(2))))
        else:
            changes.append(InputChange(part, text, devices, METRICS))
    return changes


def _recommendation_change(
    old: EvaluationRecord, new: EvaluationRecord, input_changes: list[InputChange]
) -> RecommendationChange | None:
    before, after = old.recommended(), new.recommended()
    if before is not None and after is not None and before[1] == after[1]:
        return None
    if before is None and after is None:
        return None
    recommendation = new.run.get("recommendation") or {}
    metrics = {
        role: (old.metrics_of(item[1]), new.metrics_of(item[1]))
        for role, item in (("old", before), ("new", after))
        if item is not None
    }
    over_memory = () if before is None else tuple(new.memory_excess(before[1]))
    flips: list[str] = []
    flipped_metrics: set[str] = set()
    if before is not None and after is not None:
        old_label, old_placement = before
        new_label, new_placement = after
        was_old, was_new = old.metrics_of(old_placement), old.metrics_of(new_placement)
        now_old, now_new = new.metrics_of(old_placement), new.metrics_of(new_placement)
        if was_old and was_new and now_old and now_new:
            for metric in ("latency_s", "cost_usd", "monthly_cost_usd", "period_s"):
                sentence = _flip(
                    metric, old_label, new_label, (was_old, was_new), (now_old, now_new)
                )
                if sentence:
                    flips.append(sentence)
                    flipped_metrics.add(metric)
    placements = [item[1] for item in (before, after) if item is not None]
    devices = {device for placement in placements for device in placement}
    moved = flipped_metrics or set(_TIME_METRICS)
    causes = tuple(
        c
        for c in input_changes
        if c.concerns(devices, moved)
        or (before is not None and _memory_cause(c, before[1], new.stage_ids, over_memory))
    )
    return RecommendationChange(
        before,
        after,
        recommendation.get("rule"),
        str(recommendation.get("reason", "")),
        tuple(flips),
        causes,
        metrics,
        over_memory,
    )


def _flip(
    metric: str,
    old_label: str,
    new_label: str,
    was: tuple[dict[str, float], dict[str, float]],
    now: tuple[dict[str, float], dict[str, float]],
) -> str | None:
    """Describe how the order of the two placements in `metric` flipped, or None."""
    if metric not in was[0] or metric not in now[0]:
        return None
    a0, b0 = was[0][metric], was[1][metric]
    a1, b1 = now[0][metric], now[1][metric]
    if any(math.isnan(v) for v in (a0, b0, a1, b1)):
        return None
    if not (a0 < b0 and a1 > b1 and not _equal(a1, b1)):
        return None
    comparison = {
        "latency_s": "now takes longer than",
        "cost_usd": "now costs more per run than",
        "monthly_cost_usd": "now costs more per month than",
        "period_s": "now has a longer period (fewer frames per second) than",
    }[metric]
    return (
        f"{old_label} (the old recommendation) {comparison} {new_label}: "
        f"{_value(metric, a1)} against {_value(metric, b1)} "
        f"(before: {_value(metric, a0)} against {_value(metric, b0)})"
    )


def render_diff_md(diff: StudyDiff, study: str) -> str:
    """Render a `StudyDiff` as the markdown of diff.md and of the diff artifact."""
    lines = [f"# Changes in {study}", ""]
    when = []
    if diff.old_evaluated_at:
        when.append(f"previous evaluation {diff.old_evaluated_at}")
    if diff.new_evaluated_at:
        when.append(f"this evaluation {diff.new_evaluated_at}")
    if when:
        lines += [f"Compared: {', '.join(when)}.", ""]

    # Recommendation first: it is what a reader looks for.
    lines += ["## Recommendation", ""]
    lines += _recommendation_lines(diff)

    lines += ["", "## Inputs that changed", ""]
    numbered = _numbered_changes(diff)
    redated = [c for c in diff.input_changes if not c.numbered]
    if numbered:
        lines += [f"{i}. {_escape(c.text)}" for i, c in enumerate(numbered, 1)]
    elif not redated:
        lines.append("No input changed.")
    else:
        lines.append("No input that can move a metric changed.")
    if redated:
        lines += [
            "",
            "Price rows with a new date or source and unchanged prices (they move no metric):",
            "",
        ]
        lines += [f"- {_escape(c.text)}" for c in redated]

    lines += ["", "## Front", ""]
    if not diff.same_stages:
        lines.append(
            "The workflow's stages changed, so the placements of the two fronts cannot be "
            "matched; see report.md for the new front."
        )
        return "\n".join(lines) + "\n"
    lines.append(
        f"{len(diff.entered)} entered, {len(diff.left)} left, {len(diff.changed)} stayed "
        f"with changed metrics, {diff.unchanged} stayed unchanged."
    )
    if diff.entered:
        lines += ["", "### Entered the front", ""]
        lines += [_moved_line(diff, entry, left=False) for entry in diff.entered]
    if diff.left:
        lines += ["", "### Left the front", ""]
        lines += [_moved_line(diff, entry, left=True) for entry in diff.left]
    if diff.changed:
        lines += ["", "### Stayed, with changed metrics", ""]
        for change in diff.changed:
            label = (
                change.new_label
                if change.old_label == change.new_label
                else f"{change.new_label} (was {change.old_label})"
            )
            moves = "; ".join(
                f"{metric} {_value(metric, a)} → {_value(metric, b)} ({_percent(a, b)})"
                for metric, (a, b) in change.metrics.items()
            )
            causes = _cause_numbers(diff, change.causes)
            lines.append(f"- {label} ({_placement_text(diff, change.placement)}): {moves}{causes}")
    return "\n".join(lines) + "\n"


def _cause_numbers(diff: StudyDiff, causes: Sequence[InputChange]) -> str:
    """Return " (from input changes 1, 3)", numbered as listed, or "" without causes."""
    return f" (from {_numbered(diff, causes)})" if causes else ""


def _numbered_changes(diff: StudyDiff) -> list[InputChange]:
    """Return the numbered input changes (`InputChange.numbered`), in the list's order."""
    return [change for change in diff.input_changes if change.numbered]


def _numbered(diff: StudyDiff, causes: Sequence[InputChange]) -> str:
    numbered = _numbered_changes(diff)
    numbers = [str(numbered.index(cause) + 1) for cause in causes]
    noun = "input change" if len(numbers) == 1 else "input changes"
    return f"{noun} {', '.join(numbers)}"


def _recommendation_lines(diff: StudyDiff) -> list[str]:
    change = diff.recommendation
    if change is None:
        if not diff.same_stages:
            return ["The stages changed; see report.md for the recommendation."]
        if diff.recommended is None:
            return ["Neither evaluation recommends a candidate."]
        label, placement = diff.recommended
        text = f"{_candidate(diff, label, placement)} is still recommended"
        if diff.previous_label is not None and diff.previous_label != label:
            text += f" (labelled {diff.previous_label} before)"
        moved = next((c for c in diff.changed if c.placement == placement), None)
        if moved is None:
            return [text + ", with the same metrics."]
        moves = ", ".join(
            f"{metric} {_value(metric, a)} → {_value(metric, b)} ({_percent(a, b)})"
            for metric, (a, b) in moved.metrics.items()
        )
        return [f"{text}; its metrics changed: {moves}{_cause_numbers(diff, moved.causes)}."]
    old = "none" if change.old is None else _candidate(diff, *change.old)
    new = "none" if change.new is None else _candidate(diff, *change.new)
    lines = [f"The recommendation changed from {old} to {new}."]
    for role, item in (("old", change.old), ("new", change.new)):
        if item is None or role not in change.metrics:
            continue
        before, now = change.metrics[role]
        if now is not None:
            text = f"now {_metrics_text(diff, now)}" + _other_text(diff, before, "before")
        elif before is not None:
            text = f"was {_metrics_text(diff, before)}"
        else:
            continue
        lines.append(f"- {item[0]} (the {role} recommendation): {text}.")
    memory = _excess_text(diff, change.over_memory, now=True)
    if change.old is not None and memory:
        lines.append(f"- {change.old[0]} (the old recommendation) {memory}.")
    for flip in change.flips:
        lines.append(f"- {flip}.")
    if change.causes:
        lines.append(f"- It can be traced to {_numbered(diff, change.causes)} below.")
    if change.reason:
        lines += ["", f"Reason given now ({change.rule}): {_escape(change.reason)}"]
    return lines


def _candidate(diff: StudyDiff, label: str, placement: tuple[str, ...]) -> str:
    return f"{label} ({_placement_text(diff, placement)})"


def _placement_text(diff: StudyDiff, placement: Sequence[str]) -> str:
    """Describe a placement in words, as the reports do: "stages 2–8 on cloud, rest on edge"."""
    counts: dict[str, int] = {}
    for device in placement:
        counts[device] = counts.get(device, 0) + 1
    if len(counts) == 1:
        return f"all on {placement[0]}"
    order = [d for d in diff.device_order if d in counts] + [
        d for d in counts if d not in diff.device_order
    ]
    majority = max(order, key=lambda d: (counts[d], -order.index(d)))
    parts = []
    for device in order:
        if device == majority:
            continue
        numbers = [i + 1 for i, d in enumerate(placement) if d == device]
        parts.append(f"{_ranges(numbers)} on {device}")
    return ", ".join(parts) + f", rest on {majority}"


def _ranges(numbers: list[int]) -> str:
    runs: list[list[int]] = []
    for number in numbers:
        if runs and runs[-1][1] == number - 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in runs)
    return ("stage " if len(numbers) == 1 else "stages ") + text


def _metrics_text(diff: StudyDiff, metrics: Mapping[str, float]) -> str:
    """List the study's objectives, then monthly_cost_usd and throughput_fps when known."""
    listed = [m for m in diff.objectives if m in metrics]
    for extra in ("monthly_cost_usd", "throughput_fps"):
        if extra in metrics and extra not in listed and not math.isnan(metrics[extra]):
            listed.append(extra)
    return ", ".join(f"{m} {_value(m, metrics[m])}" for m in listed)


def _other_text(diff: StudyDiff, metrics: Mapping[str, float] | None, when: str) -> str:
    if metrics is None:
        return ""
    return f" ({when}: {_metrics_text(diff, metrics)})"


def _moved_line(diff: StudyDiff, entry: FrontEntry, *, left: bool) -> str:
    """Return the list line of a candidate that entered the front, or left it."""
    where = _placement_text(diff, entry.placement)
    head = (
        f"- {entry.label} of the previous front ({where}): was "
        if left
        else f"- {entry.label} ({where}): "
    )
    memory = _excess_text(diff, entry.over_memory, now=left)
    return (
        head
        + _metrics_text(diff, entry.metrics)
        + _other_text(diff, entry.other, "now" if left else "before")
        + (f"; {memory}" if memory else "")
        + _cause_numbers(diff, entry.causes)
    )


def _excess_text(diff: StudyDiff, over_memory: Sequence[MemoryExcess], *, now: bool) -> str:
    """Say which memory limits a placement exceeds (`now`) or exceeded before."""
    parts = []
    for excess in over_memory:
        limit = f"{_number_text(excess.limit_mb)} MB"
        old_limit = diff.old_limits_mb.get(excess.device)
        if now and old_limit is not None and not _equal(old_limit, excess.limit_mb):
            limit += f" (was {_number_text(old_limit)} MB)"
        parts.append(
            f"its stages on {excess.device} need {_number_text(excess.need_mb)} MB, "
            f"over the limit of {limit}"
        )
    if not parts:
        return ""
    verb = "now exceeds" if now else "exceeded"
    noun = "memory limit" if len(parts) == 1 else "memory limits"
    return f"{verb} a device's {noun}: " + "; ".join(parts)


def _front_rows(record: EvaluationRecord) -> dict[tuple[str, ...], tuple[str, dict[str, float]]]:
    """Return the label and metrics of every front row, by placement."""
    rows = zip(record.labels(), _metric_rows(record.front), strict=True)
    return dict(zip(record.placements(), rows, strict=True))


def _metric_rows(front: pd.DataFrame) -> list[dict[str, float]]:
    columns = [m for m in METRICS if m in front.columns]
    return [
        {m: _number(v) for m, v in zip(columns, values, strict=True)}
        for values in front[columns].itertuples(index=False)
    ]


def _placements(table: pd.DataFrame) -> list[tuple[str, ...]]:
    columns = [c for c in table.columns if str(c).startswith("at_")]
    return [tuple(str(v) for v in row) for row in table[columns].itertuples(index=False)]


def _number(value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return math.nan
    return float(value)


def _equal(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=_RELATIVE_TOLERANCE, abs_tol=0.0)


def _price_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(column) for column in _PRICE_KEY)


def _price_name(row: Mapping[str, Any]) -> str:
    architecture = f" {row['architecture']}" if row.get("architecture") else ""
    tier = float(row.get("tier_start") or 0.0)
    tier_text = "" if tier == 0 else f" (tier from {tier:,g} {row.get('unit')})"
    return (
        f"{row.get('provider')} {row.get('service')}{architecture} {row.get('dimension')} "
        f"price in {row.get('region')}{tier_text}"
    )


def _rate(row: Mapping[str, Any]) -> str:
    return f"{_usd(float(row['usd_per_unit']))} USD per {row.get('unit')}"


def _usd(value: float) -> str:
    """Return a rate in plain decimal notation to 12 digits: 1.66667e-05 as 0.0000166667."""
    return format(Decimal(f"{value:.12g}").normalize(), "f")


def _percent(old: float, new: float) -> str:
    if old == 0 or not math.isfinite(old) or not math.isfinite(new):
        return "new value" if old == 0 and new else "n/a"
    return f"{(new - old) / abs(old) * 100:+.1f} %"


def _number_text(value: float) -> str:
    """Return a number as a YAML file would give it: 1024.0 as 1024, 0.5 as 0.5."""
    return format(Decimal(f"{value:.12g}").normalize(), "f")


def _value(metric: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return f"{'inf' if value > 0 else '-inf'} {_UNITS.get(metric, '')}".rstrip()
    unit = _UNITS.get(metric, "bytes" if metric.endswith("_bytes") else "")
    if metric.endswith("_bytes"):
        number = f"{value:,.0f}"
    else:
        # Plain decimals to 6 significant digits: .6g would print 0.000102 but 9.5e-05.
        number = format(Decimal(f"{value:.6g}").normalize(), "f")
    return f"{number} {unit}".rstrip()


def _transition(old: Any, new: Any) -> str:
    return f"{_json(old)} → {_json(new)}"


def _json(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    text = json.dumps(_whole_numbers(value), ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


_MISSING = object()


def _whole_numbers(value: Any) -> Any:
    """Return `value` with every whole float as an int, as the input file wrote it.

    Validation turns ``memory_mb: 1024`` into 1024.0. The file's author wrote 1024, so
    the diff prints 1024.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def _flat_differences(old: Any, new: Any, path: str) -> list[tuple[str, Any, Any]]:
    """Return (field path, old, new) for every leaf that differs between two JSON values.

    Lists of mappings with an ``id`` (stages, devices), ``between`` (links) or
    ``source`` and ``target`` (edges) are matched by those, so inserting a stage
    reports that stage instead of every one after it.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(k for k in new if k not in old)]:
            child = f"{path}.{key}" if path else str(key)
            found += _flat_differences(old.get(key, _MISSING), new.get(key, _MISSING), child)
        return found
    if isinstance(old, list) and isinstance(new, list):
        old_keyed, new_keyed = _keyed(old), _keyed(new)
        if old_keyed is not None and new_keyed is not None:
            found = []
            for key in [*old_keyed, *(k for k in new_keyed if k not in old_keyed)]:
                found += _flat_differences(
                    old_keyed.get(key, _MISSING), new_keyed.get(key, _MISSING), f"{path}[{key}]"
                )
            return found
    if old == new:
        return []
    return [(path, old, new)]


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    keys = []
    for item in items:
        if "id" in item:
            keys.append(str(item["id"]))
        elif "between" in item:
            keys.append("-".join(str(d) for d in item["between"]))
        elif "source" in item and "target" in item:
            keys.append(f"{item['source']}->{item['target']}")
        else:
            return None
    if len(set(keys)) != len(keys):
        return None
    return dict(zip(keys, items, strict=True))


def _escape(text: str) -> str:
    """Escape markdown and HTML in text from input files, so it shows as text."""
    for char in ("\\", "`", "*", "[", "]", "<", ">", "|"):
        text = text.replace(char, "\\" + char)
    return text
