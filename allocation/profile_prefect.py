"""Build a workflow model from the run history of a Prefect flow.

`read_flow_history` reads the most recent completed runs of a flow through the Prefect
client: each run's task runs, their durations, their data dependencies
(``task_run.task_inputs``, which name the upstream task runs) and, where a task's result
was persisted, the size of that result in result storage. `draft_from_history` turns
that into a `allocation.profile.WorkflowDraft`: one stage per task of the flow, one edge
per data dependency, stage times as medians over the runs.

The hand-over size of a task is the length of its serialized result as stored: the
pickle bytes for Prefect's pickle serializer (the stored record contains them in base64,
which is decoded first) or the JSON text for the JSON serializer. That is what another
process would receive; for a NumPy array it is ``nbytes`` plus pickle's framing, about
150 bytes. The result is never unpickled, so reading a history runs no code from it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import difflib
import inspect
import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from allocation.errors import InputError
from allocation.model import ID_PATTERN, InlineCpu
from allocation.profile import DraftEdge, DraftStage, WorkflowDraft

__all__ = [
    "FlowHistory",
    "ResultSize",
    "TaskRecord",
    "draft_from_history",
    "read_flow_history",
]

_ID = re.compile(ID_PATTERN)
_TASK_KEY_HASH = re.compile(r"-[0-9a-f]{8}$")
_PAGE = 200
"""Task runs read per request; Prefect's server caps a page at 200 by default."""
_DATA_INPUTS = "data"
_ORDER_INPUTS = "wait_for"
_SKIPPED_INPUT_KEYS = {"__parents__"}
"""Inputs that are not data: ``__parents__`` names the task run that called this one."""


@dataclass(frozen=True)
class ResultSize:
    """The stored size of one task run's result, or why it is unknown."""

    size_bytes: int | None
    method: str
    """Method of reading the size, or the reason it is unknown (None `size_bytes`)."""


@dataclass
class TaskRecord:
    """One task of the flow, identified across runs by its task key and call order."""

    key: tuple[str, int]
    """The task key and the 0-based index of the call among the run's calls of it."""
    name: str
    """The task's name, from the task run name without its run suffix."""
    durations_s: list[float] = field(default_factory=list)
    sizes: list[ResultSize] = field(default_factory=list)
    first_start_s: float = float("inf")
    """Seconds from the start of the most recent run that has the task to the task's start."""


@dataclass
class FlowHistory:
    """The tasks, dependencies and result sizes read from the runs of a flow."""

    flow_name: str
    flow_run_names: list[str]
    """Names of the runs read, the most recent first."""
    tasks: dict[tuple[str, int], TaskRecord]
    edges: dict[tuple[tuple[str, int], tuple[str, int]], str]
    """Dependencies between tasks: `_DATA_INPUTS` when a result is passed, or
    `_ORDER_INPUTS` for a ``wait_for`` dependency that passes no data."""
    skipped: list[str] = field(default_factory=list)
    """Notes on task runs and inputs that were left out."""
    first_run_at: dt.datetime | None = None
    last_run_at: dt.datetime | None = None


async def read_flow_history(flow_name: str, *, runs: int = 10) -> FlowHistory:
    """Read the `runs` most recent completed runs of a flow and their task runs.

    The Prefect client is the one configured for this process (``PREFECT_API_URL``, or
    Prefect's temporary local server on its own database).

    Raises
    ------
    InputError
        When no flow has that name (with the closest names), or the flow has no
        completed run.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterId,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        flows = await client.read_flows(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name]))
        )
        if not flows:
            known = sorted({flow.name for flow in await client.read_flows(limit=_PAGE)})
            close = difflib.get_close_matches(flow_name, known, n=3, cutoff=0.4)
            hint = f"; closest flow names: {', '.join(map(repr, close))}" if close else ""
            listed = f" (the server knows {len(known)} flows)" if known else " (it has no flows)"
            raise InputError(
                f"no flow named {flow_name!r} on the Prefect server{listed}{hint}; give the "
                "name in @flow(name=...) or the function name, and check PREFECT_API_URL",
                file="command line",
                field="--from-prefect",
            )
        flow_runs = await client.read_flow_runs(
            flow_filter=FlowFilter(id=FlowFilterId(any_=[flow.id for flow in flows])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=runs,
        )
        if not flow_runs:
            raise InputError(
                f"flow {flow_name!r} has no completed run on the Prefect server; run it "
                "to completion at least once, then profile it",
                file="command line",
                field="--from-prefect",
            )

        history = FlowHistory(
            flow_name=flow_name,
            flow_run_names=[run.name for run in flow_runs],
            tasks={},
            edges={},
            first_run_at=flow_runs[-1].start_time,
            last_run_at=flow_runs[0].start_time,
        )
        storages: dict[UUID | None, Any] = {}
        for flow_run in flow_runs:
            task_runs = await _read_task_runs(client, flow_run.id)
            await _add_flow_run(history, flow_run, task_runs, client, storages)
    return history


async def _read_task_runs(client: Any, flow_run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.client.schemas.sorting import TaskRunSort

    task_runs: list[Any] = []
    while True:
        page = await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=_PAGE,
            offset=len(task_runs),
        )
        task_runs += page
        if len(page) < _PAGE:
            return task_runs


async def _add_flow_run(
    history: FlowHistory,
    flow_run: Any,
    task_runs: list[Any],
    client: Any,
    storages: dict[UUID | None, Any],
) -> None:
    """Add one flow run's completed task runs and their dependencies to `history`."""
    from prefect.client.schemas.objects import StateType

    completed = [run for run in task_runs if run.state_type == StateType.COMPLETED]
    for run in task_runs:
        if run.state_type != StateType.COMPLETED:
            history.skipped.append(
                f"task run {run.name!r} of flow run {flow_run.name!r} ended "
                f"{run.state_name or run.state_type}, so it is left out"
            )

    # Identify each task run as the n-th call of its task in this flow run.
    completed.sort(key=lambda run: (_start(run), run.name))
    calls: dict[str, int] = defaultdict(int)
    key_of: dict[UUID, tuple[str, int]] = {}
    for run in completed:
        key = (run.task_key, calls[run.task_key])
        calls[run.task_key] += 1
        key_of[run.id] = key
        record = history.tasks.get(key)
        if record is None:
            record = history.tasks[key] = TaskRecord(key=key, name=_task_name(run))
        if flow_run.start_time is not None and record.first_start_s == float("inf"):
            record.first_start_s = (_start(run) - flow_run.start_time).total_seconds()
        if run.state_name != "Cached":
            record.durations_s.append(_duration_s(run))
        record.sizes.append(await _result_size(run, client, storages))

    for run in completed:
        for argument, inputs in (run.task_inputs or {}).items():
            if argument in _SKIPPED_INPUT_KEYS:
                continue
            kind = _ORDER_INPUTS if argument == _ORDER_INPUTS else _DATA_INPUTS
            for run_input in inputs:
                upstream = getattr(run_input, "id", None)
                if getattr(run_input, "input_type", None) != "task_run":
                    continue
                if upstream not in key_of:
                    history.skipped.append(
                        f"input {argument!r} of task run {run.name!r} comes from a task run "
                        "of another flow run or one that did not complete; no edge is drawn"
                    )
                    continue
                edge = (key_of[upstream], key_of[run.id])
                if edge[0] == edge[1]:
                    continue
                # A data input wins over a wait_for on the same pair.
                if history.edges.get(edge) != _DATA_INPUTS:
                    history.edges[edge] = kind


def _start(run: Any) -> dt.datetime:
    moment = run.start_time or run.expected_start_time
    return moment if moment is not None else dt.datetime.max.replace(tzinfo=dt.UTC)


def _duration_s(run: Any) -> float:
    """Return the time the task run spent running, retries included."""
    if run.total_run_time:
        return float(run.total_run_time.total_seconds())
    if run.start_time is not None and run.end_time is not None:
        return float((run.end_time - run.start_time).total_seconds())
    return 0.0


def _task_name(run: Any) -> str:
    """Return the task's name: the task run name without the suffix Prefect adds."""
    dynamic_key = str(run.dynamic_key or "")
    for suffix in (dynamic_key, dynamic_key[:3]):
        if suffix and run.name.endswith(f"-{suffix}"):
            return run.name[: -len(suffix) - 1]
    return _TASK_KEY_HASH.sub("", run.task_key)


async def _result_size(run: Any, client: Any, storages: dict[UUID | None, Any]) -> ResultSize:
    """Read the stored size of a task run's result, without deserializing it."""
    from prefect._internal.result_records import ResultRecordMetadata

    metadata = getattr(run.state, "data", None) if run.state is not None else None
    if not isinstance(metadata, ResultRecordMetadata) or not metadata.storage_key:
        return ResultSize(None, "result not persisted")

    try:
        storage = storages.get(metadata.storage_block_id)
        if storage is None:
            storage = storages[metadata.storage_block_id] = await _storage(
                metadata.storage_block_id
            )
        read = getattr(storage, "aread_path", None) or storage.read_path
        content = read(metadata.storage_key)
        if inspect.isawaitable(content):
            content = await content
    except Exception as exc:
        # Any failure of the storage backend means the same thing here: no size.
        return ResultSize(None, f"persisted result not readable ({type(exc).__name__}: {exc})")
    return _stored_size(bytes(content), metadata.serializer.type)


async def _storage(block_id: UUID | None) -> Any:
    from prefect.blocks.core import Block
    from prefect.results import aget_default_result_storage

    if block_id is None:
        # NOTE: results written to the default local storage are read from the path that
        # is configured now (PREFECT_LOCAL_STORAGE_PATH), which may differ from the
        # path configured when the flow ran.
        return await aget_default_result_storage()
    return await Block.aload_from_ref(block_id)


def _stored_size(content: bytes, serializer: str) -> ResultSize:
    """Return the serialized result's length from the bytes of a stored result record."""
    try:
        record = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not (isinstance(record, dict) and isinstance(record.get("result"), str)):
        # With separate metadata storage, the result storage holds the serialized bytes.
        return ResultSize(len(content), f"stored result, {serializer} serializer")
    payload = record["result"]
    serializer = (record.get("metadata") or {}).get("serializer", {}).get("type", serializer)
    if serializer in ("pickle", "compressed/pickle"):
        try:
            return ResultSize(
                len(base64.b64decode(payload, validate=False)),
                f"stored result, {serializer} serializer, base64-decoded",
            )
        except (binascii.Error, ValueError):
            pass
    return ResultSize(len(payload.encode()), f"stored result, {serializer} serializer")


def draft_from_history(
    history: FlowHistory,
    measured_on: str | InlineCpu,
    *,
    default_bytes: int | None = None,
    command: str | None = None,
    measured_on_comment: str = "",
) -> tuple[WorkflowDraft, list[str]]:
    """Turn a flow's history into a workflow model and the warnings to show.

    Stage times are the median of the task's running times over the runs (cached task
    runs do not count). An edge's bytes are the median stored size of the upstream
    task's result; a ``wait_for`` dependency is an edge of 0 bytes.

    Raises
    ------
    InputError
        When a task with a data dependency has no persisted result in any run and
        `default_bytes` is None; the message lists those tasks.
    """
    records = sorted(history.tasks.values(), key=lambda r: (r.first_start_s, r.key))
    ids = _stage_ids(records)
    warnings: list[str] = []

    unknown = []
    sizes: dict[tuple[str, int], tuple[int, str]] = {}
    for record in records:
        known = [size.size_bytes for size in record.sizes if size.size_bytes is not None]
        methods = list(dict.fromkeys(size.method for size in record.sizes))
        if known:
            sizes[record.key] = (
                int(statistics.median_low(known)),
                f"{'; '.join(methods)}; median of {len(known)} run(s)",
            )
        elif any(
            kind == _DATA_INPUTS and edge[0] == record.key for edge, kind in history.edges.items()
        ):
            unknown.append((record, methods))
    if unknown and default_bytes is None:
        listed = ", ".join(
            f"{ids[record.key]} ({'; '.join(methods)})" for record, methods in unknown
        )
        raise InputError(
            f"the size of the data handed over by {listed} is unknown because no run "
            "persisted a readable result; run the flow with persist_result=True on those "
            "tasks and result storage this machine can read, or pass --default-bytes N to "
            "assume N bytes",
            file="command line",
            field="--from-prefect",
        )
    for record, methods in unknown:
        assert default_bytes is not None
        sizes[record.key] = (default_bytes, f"ASSUMED --default-bytes: {'; '.join(methods)}")
        warnings.append(
            f"warning: task {ids[record.key]}: {'; '.join(methods)}; its hand-overs are "
            f"assumed to be {default_bytes:,} bytes (--default-bytes)"
        )

    stages = []
    for record in records:
        durations = record.durations_s or [0.0]
        comments = [
            f"task {record.name!r} (task key {record.key[0]}"
            + (f", call {record.key[1] + 1}" if record.key[1] else "")
            + f"): median of {len(record.durations_s)} run(s), min {min(durations):.4g} s, "
            f"max {max(durations):.4g} s; threads not recorded by Prefect, set by hand"
        ]
        if not record.durations_s:
            comments.append("every run of this task was cached, so time_s is 0")
            warnings.append(f"warning: task {ids[record.key]}: only cached runs; time_s is 0")
        stages.append(
            DraftStage(
                id=ids[record.key],
                name=record.name if record.name != ids[record.key] else None,
                time_s=statistics.median(durations),
                comments=comments,
            )
        )

    edges = []
    for (source, target), kind in sorted(
        history.edges.items(), key=lambda item: (ids[item[0][0]], ids[item[0][1]])
    ):
        if kind == _ORDER_INPUTS:
            edges.append(DraftEdge(ids[source], ids[target], 0, "wait_for: ordering, no data"))
            continue
        size_bytes, method = sizes[source]
        edges.append(DraftEdge(ids[source], ids[target], size_bytes, method))

    header = [
        f"Built by `{command}`" if command else "Built by allocation.profile_prefect",
        f"from {len(history.flow_run_names)} completed run(s) of the Prefect flow "
        f"{history.flow_name!r}, started from {_when(history.first_run_at)} to "
        f"{_when(history.last_run_at)}.",
        "Stages are the flow's tasks and edges follow the task inputs (task_run.task_inputs).",
        "time_s: the median running time of the task over the runs, as Prefect recorded it "
        "(total_run_time), on the machine that ran them; measured_on assumes that machine.",
        "Edge bytes: the length of the upstream task's serialized result in result "
        "storage; each edge's comment gives the method.",
        *(f"Left out: {note}" for note in history.skipped[:20]),
    ]
    draft = WorkflowDraft(
        workflow=_identifier(history.flow_name),
        description=f"Tasks of the Prefect flow {history.flow_name}",
        measured_on=measured_on,
        stages=stages,
        edges=edges,
        header=header,
        measured_on_comment=measured_on_comment,
    )
    return draft, warnings


def _stage_ids(records: Iterable[TaskRecord]) -> dict[tuple[str, int], str]:
    """Give every task a unique stage id from its name, adding the call number when needed."""
    records = list(records)
    calls: dict[str, int] = defaultdict(int)
    for record in records:
        calls[record.key[0]] += 1
    ids: dict[tuple[str, int], str] = {}
    taken: set[str] = set()
    for record in records:
        base = _identifier(record.name)
        if calls[record.key[0]] > 1:
            base = f"{base}-{record.key[1] + 1}"
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}.{n}", n + 1
        taken.add(candidate)
        ids[record.key] = candidate
    return ids


def _identifier(text: str) -> str:
    """Return `text` with every character outside ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:128]
    return cleaned if _ID.match(cleaned) else "task"


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
