"""Read a measurements file: times measured on the real system, for `allocation calibrate`.

docs/calibration.md describes the format. A file names the workflow and the system it
was measured on and holds one or more runs. A run places the stages as a compare entry
does (``rest`` and ``at``), and gives the mean measured time of some stages on their
devices, and the transfer times per edge or in total. Link tests give transfer times or
throughput measured on a link alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from allocation.errors import InputError
from allocation.loading import _input_error_from, read_document, resolve_comparisons
from allocation.model import Comparison, FreeText, Id, System, Workflow, _Strict

__all__ = [
    "LinkTest",
    "MeasuredRun",
    "MeasuredTransfer",
    "Measurements",
    "ResolvedRun",
    "load_measurements",
    "resolve_runs",
]

Seconds = Annotated[float, Field(gt=0, le=1e9)]


class MeasuredTransfer(_Strict):
    """The measured time of one edge's transfer between two devices."""

    source: Id = Field(alias="from")
    target: Id = Field(alias="to")
    time_s: Seconds


class MeasuredRun(_Strict):
    """One placement of the stages, run on the real system, with its measured times."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    rest: Id | None = None
    """Device of every stage that `at` does not list and that may run on several."""
    at: dict[Id, Id] = Field(default_factory=dict)
    """Stage id to device id."""
    repeats: int = Field(default=1, ge=1, le=10**9)
    """Number of runs the times are the mean of; weighs the run in the fit."""
    holdout: bool = False
    """True: predict this run but leave it out of the fit, to check the calibration."""
    stage_time_s: dict[Id, Seconds] = Field(default_factory=dict)
    """Stage id to its mean measured time on its device in this placement."""
    transfers: list[MeasuredTransfer] = Field(default_factory=list)
    transfer_total_s: Seconds | None = None
    """Sum of the transfer times of the edges that cross devices in this placement."""
    total_s: Seconds | None = None
    """Measured end-to-end time, reported beside the estimate; not fitted."""

    @model_validator(mode="after")
    def _one_kind_of_transfer(self) -> MeasuredRun:
        if self.transfers and self.transfer_total_s is not None:
            raise ValueError(
                "gives both transfers and transfer_total_s; give the per-edge transfer "
                "times or their total, not both"
            )
        return self


class LinkTest(_Strict):
    """A transfer measured on a link alone (a copy or a throughput test)."""

    between: tuple[Id, Id]
    bytes: int | None = Field(default=None, ge=1, le=2**53)
    time_s: Seconds | None = None
    throughput_mbps: float | None = Field(default=None, gt=0, le=1e9)
    repeats: int = Field(default=1, ge=1, le=10**9)

    @field_validator("between", mode="before")
    @classmethod
    def _list_as_pair(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) != 2:
                raise ValueError("must name exactly two devices, e.g. [edge, cloud]")
            return tuple(value)
        return value

    @field_validator("bytes", mode="before")
    @classmethod
    def _whole_bytes(cls, value: Any) -> Any:
        # YAML and JSON write large sizes as floats (1e+7); accept whole numbers.
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
            return int(value)
        return value

    @model_validator(mode="after")
    def _time_or_throughput(self) -> LinkTest:
        if (self.time_s is None) == (self.throughput_mbps is None):
            raise ValueError(
                "needs exactly one of time_s (with bytes) and throughput_mbps; give the "
                "time a transfer of `bytes` took, or the throughput measured"
            )
        if self.time_s is not None and self.bytes is None:
            raise ValueError("gives time_s without bytes; add the bytes transferred")
        return self


class Measurements(_Strict):
    """A measurements file: runs of one workflow on one system."""

    measurements: Id
    description: FreeText | None = None
    source: FreeText | None = None
    """Where the figures come from: who measured them, on what, when."""
    workflow: Id
    """Name of the workflow measured (its `workflow` field)."""
    system: Id
    """Name of the system measured on (its `system` field)."""
    runs: list[MeasuredRun] = Field(default_factory=list, max_length=10_000)
    link_tests: list[LinkTest] = Field(default_factory=list, max_length=100_000)


@dataclass(frozen=True)
class ResolvedRun:
    """A measured run with its placement resolved to device indices."""

    index: int
    run: MeasuredRun
    placement: tuple[int, ...]
    """Device index of every stage, in workflow order."""
    stage_times: dict[int, float]
    """Stage index to measured time in seconds."""
    transfers: dict[int, float]
    """Edge index to measured time in seconds."""
    crossing_edges: tuple[int, ...]
    """Edges whose stages run on different devices in this placement."""


def load_measurements(path: str | Path) -> Measurements:
    """Read and validate a measurements file on its own.

    Raises
    ------
    InputError
        When the file cannot be read, lacks the ``measurements`` key, or a field is
        invalid.
    """
    document = read_document(path)
    if not isinstance(document, Mapping):
        raise InputError(
            "expected a mapping with a top-level 'measurements' key (a measurements file), "
            f"found {type(document).__name__}",
            file=path,
        )
    if "measurements" not in document:
        raise InputError(
            "missing the top-level 'measurements' key of a measurements file; check the "
            "order of the arguments (workflow, system, measurements) and see "
            "docs/calibration.md",
            file=path,
        )
    try:
        measurements = Measurements.model_validate(document)
    except ValidationError as exc:
        raise _input_error_from(exc, path, Measurements) from None
    if not measurements.runs and not measurements.link_tests:
        raise InputError(
            "contains no runs and no link_tests; add at least one measured run",
            file=path,
            field="runs",
        )
    seen: dict[str, int] = {}
    for i, run in enumerate(measurements.runs):
        key = " ".join(run.name.split()).casefold()
        if key in seen:
            raise InputError(
                f"repeats the name of runs[{seen[key]}]; give every run its own name",
                file=path,
                field=f"runs[{i}].name",
                value=run.name,
                has_value=True,
            )
        seen[key] = i
    return measurements


def resolve_runs(
    measurements: Measurements,
    workflow: Workflow,
    system: System,
    *,
    file: str | Path,
) -> list[ResolvedRun]:
    """Check the measurements against the workflow and the system; resolve the runs.

    Raises
    ------
    InputError
        When the file names another workflow or system, a run places a stage on a
        device it may not run on or names an unknown stage, a transfer is not an edge
        or does not cross devices in its run, or a link test names a missing link.
    """
    for key, expected in (("workflow", workflow.workflow), ("system", system.system)):
        given = getattr(measurements, key)
        if given != expected:
            raise InputError(
                f"names {key} {given!r}, but the {key} file given is {expected!r}; pass the "
                f"{key} file that was measured, or correct the name",
                file=file,
                field=key,
            )

    stage_index = {stage.id: s for s, stage in enumerate(workflow.stages)}
    device_index = {device.id: d for d, device in enumerate(system.devices)}
    edge_index = {(edge.source, edge.target): e for e, edge in enumerate(workflow.edges)}
    placements = resolve_comparisons(
        workflow,
        system,
        # Runs are checked as compare entries; their names were checked on loading and
        # may be those of baselines ("all on edge"), so placeholders stand in for them.
        [
            Comparison(name=f"run {i}", at=run.at, rest=run.rest)
            for i, run in enumerate(measurements.runs)
        ],
        file=file,
        field="runs",
    )

    resolved = []
    for i, (run, (_, devices)) in enumerate(zip(measurements.runs, placements, strict=True)):
        placement = tuple(device_index[device_id] for device_id in devices)
        stage_times = {}
        for stage_id, time_s in run.stage_time_s.items():
            if stage_id not in stage_index:
                raise InputError(
                    f"names stage {stage_id!r}, which the workflow {workflow.workflow!r} does "
                    "not have" + _did_you_mean(stage_id, stage_index),
                    file=file,
                    field=f"runs[{i}].stage_time_s.{stage_id}",
                )
            stage_times[stage_index[stage_id]] = time_s

        crossing = tuple(
            e
            for e, edge in enumerate(workflow.edges)
            if placement[stage_index[edge.source]] != placement[stage_index[edge.target]]
        )
        transfers = {}
        for j, transfer in enumerate(run.transfers):
            where = f"runs[{i}].transfers[{j}]"
            e = edge_index.get((transfer.source, transfer.target))
            if e is None:
                raise InputError(
                    f"{transfer.source} -> {transfer.target} is not an edge of the workflow; "
                    "give the from and to of one of its edges",
                    file=file,
                    field=where,
                )
            if e not in crossing:
                raise InputError(
                    f"stages {transfer.source!r} and {transfer.target!r} run on the same "
                    "device in this run, so the edge moves no data between devices; remove "
                    "the transfer or correct the placement",
                    file=file,
                    field=where,
                )
            if e in transfers:
                raise InputError(
                    f"repeats the transfer {transfer.source} -> {transfer.target}; keep one",
                    file=file,
                    field=where,
                )
            transfers[e] = transfer.time_s
        if run.transfer_total_s is not None and not crossing:
            raise InputError(
                "every stage runs on one device in this run, so nothing is transferred; "
                "remove transfer_total_s or correct the placement",
                file=file,
                field=f"runs[{i}].transfer_total_s",
            )
        resolved.append(ResolvedRun(i, run, placement, stage_times, transfers, crossing))

    links = {frozenset(link.between) for link in system.links}
    for i, test in enumerate(measurements.link_tests):
        for j, device_id in enumerate(test.between):
            if device_id not in device_index:
                raise InputError(
                    f"names device {device_id!r}, which the system {system.system!r} does "
                    "not have" + _did_you_mean(device_id, device_index),
                    file=file,
                    field=f"link_tests[{i}].between[{j}]",
                )
        if frozenset(test.between) not in links:
            raise InputError(
                f"the system has no link between {test.between[0]!r} and "
                f"{test.between[1]!r}; name the devices of one of its links",
                file=file,
                field=f"link_tests[{i}].between",
            )
    return resolved


def _did_you_mean(name: str, candidates: Mapping[str, Any]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""
