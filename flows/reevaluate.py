"""The `reevaluate` flow: sweep each study of a studies file again when its inputs changed.

First the flow loads and compiles every study, checks that some assignment of each
fits the devices' memory limits, and fingerprints its inputs
(`allocation.studies.fingerprint_study`). Invalid input in any study stops the run here,
before anything is written. Then, for every study, it compares the fingerprint with
the one stored in ``<out>/state.json`` at the last evaluation. A study whose fingerprint
is unchanged, and whose outputs are still there, is recorded as unchanged without a
sweep. Any other study is swept by the `sweep` flow, as a subflow, into
``<out>/<study name>/``. Before that, the files of the previous
evaluation are kept in ``<out>/<study name>/previous/``, and after it the flow writes
``diff.md`` (`allocation.diff`) and publishes it as a markdown artifact.

The state file is replaced atomically (temporary file, then rename) after each study's
sweep succeeds and once more at the end of a successful run. A study whose sweep fails
keeps its old record, so the next run sweeps it again, and a study folder that the
failed sweep created is removed again while it is empty.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.runtime import flow_run

from allocation.diff import FINGERPRINT_FILE, EvaluationRecord, diff_evaluations, render_diff_md
from allocation.errors import AllocationError
from allocation.outputs import checked_output_folder
from allocation.studies import (
    StudyEntry,
    StudyFingerprint,
    artifact_slug,
    fingerprint_study,
    load_studies,
    load_study_entry,
)
from flows.sweep import sweep

__all__ = [
    "PREVIOUS_DIR",
    "STATE_FILE",
    "STATE_VERSION",
    "ReevaluationOutcome",
    "StudyStatus",
    "build_deployment",
    "diff_artifact_key",
    "read_state",
    "reevaluate",
    "sweep_reason",
]

STATE_FILE = "state.json"
"""File in the output folder that stores the fingerprint of each study's last evaluation."""

STATE_VERSION = 1

PREVIOUS_DIR = "previous"
"""Folder in a study's output folder with the files of the evaluation before the last."""

_KEPT_FILES = ("front.parquet", "patterns.parquet", "run.json", FINGERPRINT_FILE, "report.md")
"""Files of an evaluation kept in `PREVIOUS_DIR`: those the diff reads, and the report."""


@dataclass
class StudyStatus:
    """What the run did with one study."""

    name: str
    status: str
    """``first`` (no earlier evaluation), ``changed`` (swept again), ``forced`` (unchanged but
    swept again because of ``force``) or ``unchanged``."""
    out_dir: str
    changed_parts: list[str] = field(default_factory=list)
    """Fingerprint parts that differ from the last evaluation (see `StudyFingerprint`)."""
    recommended: str | None = None
    diff_path: str | None = None


@dataclass
class ReevaluationOutcome:
    """Result of a `reevaluate` run."""

    state_path: str
    sweeps_run: int
    studies: list[StudyStatus]


def diff_artifact_key(study_name: str) -> str:
    """Return the key of a study's diff artifact, stable across runs (``^[a-z0-9-]+$``)."""
    return f"diff-{artifact_slug(study_name)}"[:200].rstrip("-")


@task(name="fingerprint-study", cache_policy=NO_CACHE, persist_result=False)
def fingerprint_task(entry: StudyEntry) -> StudyFingerprint:
    """Load and check a study's inputs and fingerprint them, without sweeping.

    Raises
    ------
    InputError
        For invalid input, including a study whose every assignment exceeds a memory
        limit (`allocation.study.load_study` checks that).
    """
    study = load_study_entry(entry)
    return fingerprint_study(entry, study)


@flow(name="reevaluate", persist_result=False)
def reevaluate(
    studies_path: str, out_dir: str = "results", force: bool = False
) -> ReevaluationOutcome:
    """Sweep every study of a studies file whose inputs changed since its last evaluation.

    Parameters
    ----------
    studies_path
        The studies file (docs/scheduling.md).
    out_dir
        Folder of ``state.json`` and of one output folder per study.
    force
        Sweep every study, changed or not.
    """
    logger = get_run_logger()
    studies = load_studies(studies_path)
    out = Path(out_dir)
    state_path = out / STATE_FILE
    state = read_state(state_path)
    started_at = _now()

    # Check every study before anything is written: invalid input stops the whole run.
    fingerprints = [fingerprint_task(entry) for entry in studies.studies]

    statuses: list[StudyStatus] = []
    sweeps_run = 0
    for entry, fingerprint in zip(studies.studies, fingerprints, strict=True):
        study_out = out / entry.name
        record = state["studies"].get(entry.name)
        changed = _changed_parts(record, fingerprint, study_out)

        if not changed and not force:
            record["last_checked_at"] = started_at
            record["last_status"] = "unchanged"
            statuses.append(
                StudyStatus(
                    entry.name, "unchanged", str(study_out), recommended=record.get("recommended")
                )
            )
            logger.info(
                "%s: inputs unchanged since %s; no sweep", entry.name, record["evaluated_at"]
            )
            continue

        # Keep the current evaluation, then sweep into the study's folder.
        has_previous = _keep_previous(study_out)
        status, reason = sweep_reason(record, changed)
        logger.info("%s: %s; sweeping", entry.name, reason)
        with checked_output_folder(study_out):
            outcome = sweep(
                workflow_path=str(entry.workflow),
                system_path=str(entry.system),
                catalog_dir=None if entry.catalog is None else str(entry.catalog),
                out_dir=str(study_out),
                compare_path=None if entry.compare is None else str(entry.compare),
                **entry.sweep_parameters(),
            )
        sweeps_run += 1
        evaluated_at = _now()
        _write_json_atomically(study_out / FINGERPRINT_FILE, fingerprint.parts)

        # Diff against the kept evaluation and publish it.
        previous_at = None if record is None else record.get("evaluated_at")
        markdown = _render_diff(entry, study_out, has_previous, previous_at, evaluated_at)
        _write_text_atomically(study_out / "diff.md", markdown)
        create_markdown_artifact(
            key=diff_artifact_key(entry.name),
            markdown=markdown,
            description=f"Changes in {entry.name} since its previous evaluation",
        )

        state["studies"][entry.name] = {
            "fingerprint_sha256": fingerprint.combined_sha256,
            "parts_sha256": fingerprint.sha256,
            "evaluated_at": evaluated_at,
            "last_checked_at": evaluated_at,
            "last_status": status,
            "flow_run_id": _flow_run_id(),
            "out_dir": str(study_out),
            "recommended": outcome.recommended,
        }
        _write_state(state_path, state)
        statuses.append(
            StudyStatus(
                entry.name,
                status,
                str(study_out),
                changed_parts=changed,
                recommended=outcome.recommended,
                diff_path=str(study_out / "diff.md"),
            )
        )

    # Record the run, then summarise it in the UI.
    state["last_run"] = {
        "started_at": started_at,
        "finished_at": _now(),
        "flow_run_id": _flow_run_id(),
        "studies_file": str(studies.path),
        "sweeps_run": sweeps_run,
        "statuses": {status.name: status.status for status in statuses},
    }
    _write_state(state_path, state)
    create_table_artifact(
        key=f"reevaluation-{artifact_slug(studies.path.stem) or 'studies'}"[:200],
        table=[
            {
                "study": s.name,
                "status": s.status,
                "changed": ", ".join(s.changed_parts),
                "recommended": s.recommended,
                "outputs": s.out_dir,
            }
            for s in statuses
        ],
        description=f"Re-evaluation of {studies.path.name}: {sweeps_run} swept",
    )
    logger.info(
        "Checked %d studies; swept %d, %d unchanged",
        len(statuses),
        sweeps_run,
        sum(1 for s in statuses if s.status == "unchanged"),
    )
    return ReevaluationOutcome(str(state_path), sweeps_run, statuses)


def read_state(path: Path) -> dict[str, Any]:
    """Read the state file, or return an empty state when there is none.

    Raises
    ------
    AllocationError
        When the file exists but is not a state file of this version.
    """
    if not path.exists():
        return {"version": STATE_VERSION, "studies": {}}
    try:
        state = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise AllocationError(
            f"cannot read the re-evaluation state {path}: {exc}; delete it to evaluate every "
            "study again"
        ) from exc
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise AllocationError(
            f"{path} is not a re-evaluation state file of version {STATE_VERSION}; delete it "
            "to evaluate every study again"
        )
    state.setdefault("studies", {})
    return state


def sweep_reason(record: dict[str, Any] | None, changed: list[str]) -> tuple[str, str]:
    """Return the status of a study that is swept, and the reason for the log.

    `changed` is what `_changed_parts` returns. It is empty only when the sweep is forced.
    """
    if record is None:
        return "first", "no earlier evaluation"
    if changed:
        return "changed", f"changed: {', '.join(changed)}"
    return "forced", "inputs unchanged, sweep forced (--force)"


def _changed_parts(
    record: dict[str, Any] | None, fingerprint: StudyFingerprint, study_out: Path
) -> list[str]:
    """Return why the study needs a sweep; empty when it does not."""
    if record is None:
        return ["no earlier evaluation"]
    missing = [
        name
        for name in ("front.parquet", "run.json", FINGERPRINT_FILE)
        if not (study_out / name).is_file()
    ]
    if missing:
        return [f"outputs missing ({', '.join(missing)})"]
    if record.get("fingerprint_sha256") == fingerprint.combined_sha256:
        return []
    return fingerprint.changed_parts(record.get("parts_sha256", {}))


def _keep_previous(study_out: Path) -> bool:
    """Keep the current evaluation's files in `PREVIOUS_DIR`; return whether there was one.

    The files are hard-linked where the file system allows it, copied otherwise. The sweep
    replaces its files by renaming new ones over them, so the links keep the old content.
    """
    if not all((study_out / name).is_file() for name in ("front.parquet", "run.json")):
        return False
    if not (study_out / FINGERPRINT_FILE).is_file():
        # Written by a plain sweep, without a fingerprint: nothing to compare inputs with.
        return False
    staging = Path(tempfile.mkdtemp(prefix=".previous-", dir=study_out))
    try:
        for name in _KEPT_FILES:
            source = study_out / name
            if not source.is_file():
                continue
            try:
                os.link(source, staging / name)
            except OSError:
                shutil.copy2(source, staging / name)
        target = study_out / PREVIOUS_DIR
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".previous-old-", dir=study_out))
            os.replace(target, old / PREVIOUS_DIR)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _render_diff(
    entry: StudyEntry,
    study_out: Path,
    has_previous: bool,
    previous_at: str | None,
    evaluated_at: str,
) -> str:
    if not has_previous:
        return (
            f"# Changes in {entry.name}\n\n"
            f"First evaluation ({evaluated_at}): there is no earlier one to compare with. "
            "The next evaluation after a change of the inputs lists the changes here.\n"
        )
    diff = diff_evaluations(
        EvaluationRecord.read(study_out / PREVIOUS_DIR),
        EvaluationRecord.read(study_out),
        old_evaluated_at=previous_at,
        new_evaluated_at=evaluated_at,
    )
    return render_diff_md(diff, entry.name)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    _write_json_atomically(path, state)


def _write_json_atomically(path: Path, data: Any) -> None:
    _write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _write_text_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _flow_run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


def outcome_as_dict(outcome: ReevaluationOutcome) -> dict[str, Any]:
    """Return the outcome as JSON-serialisable data."""
    return asdict(outcome)


DEFAULT_DEPLOYMENT = "reevaluate-studies"


def build_deployment(
    studies_path: str | Path,
    *,
    cron: str,
    timezone: str = "UTC",
    out_dir: str | Path = "results",
    name: str = DEFAULT_DEPLOYMENT,
) -> RunnerDeployment:
    """Build the deployment of `reevaluate` that `allocation serve` serves.

    The paths become absolute, so that the scheduled runs read the same files whatever
    the working directory of the process that serves them.

    Raises
    ------
    pydantic.ValidationError
        For an invalid cron expression or time zone.
    """
    schedule = CronSchedule(cron=cron, timezone=timezone)
    return reevaluate.to_deployment(
        name=name,
        schedules=[schedule],
        parameters={
            "studies_path": str(Path(studies_path).resolve()),
            "out_dir": str(Path(out_dir).resolve()),
        },
        description="Sweep again the studies whose workflow, system, CPU rows or prices "
        "changed since their last evaluation, and publish what changed.",
        tags=["allocation"],
    )
