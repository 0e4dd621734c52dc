"""Profile a Python pipeline stage by stage and write the workflow model it measures.

A `Pipeline` declares stages as callables and the hand-overs between them: each stage
takes the output of the stage declared before it, unless it names its inputs, which
makes the pipeline a DAG. `profile_pipeline` runs the pipeline once or more to warm up,
then times every stage over repeated runs and returns, per stage, the median wall time
and the cores it kept busy, and per hand-over the size of the data passed.
`render_workflow` turns that into the YAML of a workflow file, with the measurement
details as comments.

Example::

    pipeline = Pipeline("thumbnail", setup=lambda: open("photo.png", "rb").read())

    @pipeline.stage(name="Decode the photo")
    def decode(png: bytes) -> np.ndarray: ...

    @pipeline.stage(name="Shrink it to 160 x 120")
    def shrink(image: np.ndarray) -> np.ndarray: ...

This module imports no orchestration library; `allocation.profile_prefect` builds the
same model from the run history of a Prefect flow.
"""

from __future__ import annotations

import datetime as dt
import difflib
import gc
import json
import math
import os
import pickle
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from allocation.catalog import CpuCatalog
from allocation.errors import AllocationError, InputError
from allocation.loading import load_workflow
from allocation.model import ID_PATTERN, SCORE_FIGURES, InlineCpu

__all__ = [
    "MIN_WALL_FOR_THREADS_S",
    "DraftEdge",
    "DraftStage",
    "HandOverSize",
    "LocalCpu",
    "Pipeline",
    "PipelineError",
    "Profile",
    "SizeMeasurement",
    "StageError",
    "StageSpec",
    "StageTiming",
    "WorkflowDraft",
    "detect_local_cpu",
    "draft_from_profile",
    "measure_size",
    "profile_pipeline",
    "render_workflow",
    "resolve_measured_on",
    "write_workflow",
]

_ID = re.compile(ID_PATTERN)
_PICKLE_PROTOCOL = 5

MIN_WALL_FOR_THREADS_S = 0.005
"""Shortest total wall time of a stage's timed runs from which its threads are measured.

Reading the process CPU clock takes about 1.6 µs (measured on a 2-vCPU AMD EPYC virtual
machine), so for shorter stages CPU time over wall time is mostly noise.
"""


class PipelineError(AllocationError, ValueError):
    """A pipeline declaration is invalid: a bad or repeated stage id, or an unknown input."""


class StageError(AllocationError):
    """A stage raised an exception while the pipeline was being profiled."""


# Declaring a pipeline


@dataclass(frozen=True)
class StageSpec:
    """One declared stage: the callable, its upstream stages and what the model records."""

    id: str
    function: Callable[..., Any]
    inputs: tuple[str, ...]
    """Ids of the stages whose outputs are the positional arguments, in that order."""
    name: str | None = None
    score: str = "single_thread"
    pin: str | None = None
    allowed: tuple[str, ...] | None = None
    threads: int | None = None
    """Cores the stage keeps busy when given; None to measure them."""


class Pipeline:
    """Stages declared as callables, with the data each hands to the next.

    Parameters
    ----------
    workflow
        The workflow id written to the model, ``[A-Za-z0-9_.-]+``.
    description
        Free text for the model's ``description``.
    setup
        Called once, untimed, before the first run. Its return value is the argument of
        every stage without inputs, so that reading a file or building a test frame is
        not part of the first stage's time. Without it, such stages get no argument.

    Notes
    -----
    A stage takes the output of the stage declared just before it (a chain), unless
    `inputs` names its upstream stages. A stage can name only stages declared before it,
    so every pipeline is a DAG in declaration order. ``inputs=()`` declares another
    source stage. Stages must not modify their inputs: each run passes the same `setup`
    value again, and a stage's output goes to every stage that names it.
    """

    def __init__(
        self,
        workflow: str,
        *,
        description: str | None = None,
        setup: Callable[[], Any] | None = None,
    ) -> None:
        if not isinstance(workflow, str) or not _ID.match(workflow):
            raise PipelineError(
                f"workflow id {workflow!r} is invalid; use letters, digits, '_', '.' and '-'"
            )
        self.workflow = workflow
        self.description = description
        self.setup = setup
        self._stages: list[StageSpec] = []

    @property
    def stages(self) -> tuple[StageSpec, ...]:
        """The declared stages, in declaration order (a topological order)."""
        return tuple(self._stages)

    @property
    def hand_overs(self) -> list[tuple[str, str]]:
        """The (source, target) stage id pairs, in declaration order of the targets."""
        return [(source, spec.id) for spec in self._stages for source in spec.inputs]

    def add_stage(
        self,
        id: str,
        function: Callable[..., Any],
        *,
        inputs: Sequence[str] | None = None,
        name: str | None = None,
        score: str = "single_thread",
        pin: str | None = None,
        allowed: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> StageSpec:
        """Declare a stage; see the class notes for how `inputs` defaults.

        Raises
        ------
        PipelineError
            When the id is invalid or taken, an input is not a stage declared before, an
            input is named twice, or `score`, `pin`, `allowed` or `threads` is invalid.
        """
        if not isinstance(id, str) or not _ID.match(id):
            raise PipelineError(
                f"stage id {id!r} is invalid; use letters, digits, '_', '.' and '-'"
            )
        known = [spec.id for spec in self._stages]
        if id in known:
            raise PipelineError(f"stage id {id!r} is declared twice; give each stage its own id")
        if not callable(function):
            raise PipelineError(f"stage {id!r}: {function!r} is not callable")
        if inputs is None:
            upstream: tuple[str, ...] = (known[-1],) if known else ()
        elif isinstance(inputs, str):
            upstream = (inputs,)
        else:
            upstream = tuple(inputs)
        for source in upstream:
            if source not in known:
                close = difflib.get_close_matches(str(source), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise PipelineError(
                    f"stage {id!r} takes input from {source!r}, which is not a stage "
                    f"declared before it{hint}"
                )
        if len(set(upstream)) != len(upstream):
            raise PipelineError(f"stage {id!r} names an input twice: {list(upstream)}")
        if score not in SCORE_FIGURES:
            raise PipelineError(
                f"stage {id!r}: score {score!r} is not one of {', '.join(SCORE_FIGURES)}"
            )
        for device in [pin, *(allowed or ())]:
            if device is not None and not (isinstance(device, str) and _ID.match(device)):
                raise PipelineError(f"stage {id!r}: device id {device!r} is invalid")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise PipelineError(f"stage {id!r}: threads must be a whole number >= 1")

        spec = StageSpec(
            id=id,
            function=function,
            inputs=upstream,
            name=name,
            score=score,
            pin=pin,
            allowed=None if allowed is None else tuple(allowed),
            threads=threads,
        )
        self._stages.append(spec)
        return spec

    def stage(
        self,
        id: str | None = None,
        *,
        inputs: Sequence[str] | None = None,
        name: str | None = None,
        score: str = "single_thread",
        pin: str | None = None,
        allowed: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare the decorated function as a stage; its id defaults to the function name."""

        def declare(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_stage(
                id if id is not None else function.__name__,
                function,
                inputs=inputs,
                name=name,
                score=score,
                pin=pin,
                allowed=allowed,
                threads=threads,
            )
            return function

        return declare

    def run(self) -> dict[str, Any]:
        """Run every stage once, untimed, and return the outputs by stage id."""
        initial = self.setup() if self.setup is not None else None
        outputs: dict[str, Any] = {}
        for spec in self._stages:
            outputs[spec.id] = _call(spec, self._arguments(spec, initial, outputs))
        return outputs

    def _arguments(self, spec: StageSpec, initial: Any, outputs: Mapping[str, Any]) -> list[Any]:
        if spec.inputs:
            return [outputs[source] for source in spec.inputs]
        return [] if self.setup is None else [initial]


def _call(spec: StageSpec, arguments: list[Any]) -> Any:
    try:
        return spec.function(*arguments)
    except Exception as exc:
        raise StageError(f"stage {spec.id!r} raised {type(exc).__name__}: {exc}") from exc


# Measuring sizes


@dataclass(frozen=True)
class SizeMeasurement:
    """The size of one value handed over, and how it was measured."""

    size_bytes: int
    method: str
    """``numpy nbytes``, ``len``, ``none`` or ``pickle``."""
    detail: str
    """Description of the value, such as ``ndarray (480, 640, 3) uint8``."""


def measure_size(value: Any) -> SizeMeasurement:
    """Return the bytes a value would take on the wire.

    NumPy arrays and scalars count their ``nbytes`` (the raw buffer, as sent without a
    header), ``bytes`` and ``bytearray`` their length, a ``memoryview`` its ``nbytes``,
    and None zero bytes (an ordering-only hand-over). Anything else counts the length of
    its pickle (protocol 5), which includes pickle's framing and type information.
    """
    if isinstance(value, np.ndarray):
        return SizeMeasurement(
            int(value.nbytes), "numpy nbytes", f"ndarray {tuple(value.shape)} {value.dtype}"
        )
    if isinstance(value, np.generic):
        return SizeMeasurement(int(value.nbytes), "numpy nbytes", f"NumPy scalar {value.dtype}")
    if isinstance(value, bytes | bytearray):
        return SizeMeasurement(len(value), "len", type(value).__name__)
    if isinstance(value, memoryview):
        return SizeMeasurement(int(value.nbytes), "len", "memoryview")
    if value is None:
        return SizeMeasurement(0, "none", "None")
    try:
        size = len(pickle.dumps(value, protocol=_PICKLE_PROTOCOL))
    except Exception as exc:
        raise StageError(
            f"cannot measure a {type(value).__name__} output: pickling it failed "
            f"({type(exc).__name__}: {exc}); return a NumPy array, bytes or a picklable value"
        ) from exc
    return SizeMeasurement(size, "pickle", type(value).__name__)


# Timing a pipeline


@dataclass(frozen=True)
class StageTiming:
    """The timed runs of one stage."""

    stage: StageSpec
    wall_times_s: tuple[float, ...]
    cpu_times_s: tuple[float, ...]
    """Process CPU time (user + system, every thread) during each timed run."""

    @property
    def time_s(self) -> float:
        """Median wall time."""
        return statistics.median(self.wall_times_s)

    @property
    def busy_cores(self) -> float:
        """Process CPU time over wall time, summed over the timed runs."""
        wall_s = sum(self.wall_times_s)
        return sum(self.cpu_times_s) / wall_s if wall_s > 0 else 1.0

    @property
    def threads_measurable(self) -> bool:
        """Whether the timed runs are long enough for CPU time over wall time to mean much."""
        return sum(self.wall_times_s) >= MIN_WALL_FOR_THREADS_S

    @property
    def threads(self) -> int:
        """Cores the stage keeps busy: declared, or `busy_cores` rounded half up, at least 1.

        A measured count is at most the number of CPUs this process may use. A stage
        whose timed runs add up to less than `MIN_WALL_FOR_THREADS_S` counts as 1.
        """
        if self.stage.threads is not None:
            return self.stage.threads
        if not self.threads_measurable:
            return 1
        measured = max(1, math.floor(self.busy_cores + 0.5))
        return min(measured, _usable_cpus())


@dataclass(frozen=True)
class HandOverSize:
    """The sizes of the data one stage handed to another over the timed runs."""

    source: str
    target: str
    sizes: tuple[SizeMeasurement, ...]

    @property
    def size_bytes(self) -> int:
        """The median size (the lower middle value for an even count, an observed size)."""
        return int(statistics.median_low(m.size_bytes for m in self.sizes))

    @property
    def method(self) -> str:
        """The measuring methods used, joined by ``/`` when they changed between runs."""
        return "/".join(dict.fromkeys(m.method for m in self.sizes))


@dataclass(frozen=True)
class Profile:
    """The measurements of `profile_pipeline`, with the time and load of the machine."""

    pipeline: Pipeline
    stages: tuple[StageTiming, ...]
    hand_overs: tuple[HandOverSize, ...]
    repeat: int
    warmup: int
    started_at: dt.datetime
    """Start of the measurement, in UTC."""
    load_average: tuple[float, float, float] | None = None
    """The system's 1, 5 and 15-minute load averages at the start; None where unknown."""


def profile_pipeline(pipeline: Pipeline, *, repeat: int = 10, warmup: int = 1) -> Profile:
    """Time every stage of a pipeline over repeated runs and measure its hand-overs.

    The pipeline first runs `warmup` times untimed, so that imports, caches and lazily
    built state do not count. Each of the `repeat` timed runs then calls the stages in
    declaration order, recording around each call the wall time (`time.perf_counter`)
    and the CPU time of the whole process (`time.process_time`, which counts every
    thread, those of NumPy's BLAS included). The size of each stage's output is measured
    after its timed call, outside the timing, by `measure_size`.

    Raises
    ------
    PipelineError
        When the pipeline has no stage, or `repeat` or `warmup` is out of range.
    StageError
        When a stage raises; the message names the stage.
    """
    if not pipeline.stages:
        raise PipelineError(f"pipeline {pipeline.workflow!r} declares no stage")
    if repeat < 1:
        raise PipelineError(f"repeat must be >= 1, got {repeat}")
    if warmup < 0:
        raise PipelineError(f"warmup must be >= 0, got {warmup}")

    started_at = dt.datetime.now(dt.UTC)
    load_average = os.getloadavg() if hasattr(os, "getloadavg") else None
    initial = pipeline.setup() if pipeline.setup is not None else None
    for _ in range(warmup):
        _run_once(pipeline, initial)

    wall: dict[str, list[float]] = {spec.id: [] for spec in pipeline.stages}
    cpu: dict[str, list[float]] = {spec.id: [] for spec in pipeline.stages}
    sizes: dict[str, list[SizeMeasurement]] = {spec.id: [] for spec in pipeline.stages}
    consumed = {source for source, _ in pipeline.hand_overs}
    for _ in range(repeat):
        outputs: dict[str, Any] = {}
        for spec in pipeline.stages:
            arguments = pipeline._arguments(spec, initial, outputs)
            # The CPU interval lies inside the wall interval, so that the clock calls do
            # not count as the stage's CPU time.
            wall_start = time.perf_counter()
            cpu_start = time.process_time()
            output = _call(spec, arguments)
            cpu_end = time.process_time()
            wall_end = time.perf_counter()
            del arguments
            wall[spec.id].append(wall_end - wall_start)
            cpu[spec.id].append(cpu_end - cpu_start)
            if spec.id in consumed:
                sizes[spec.id].append(measure_size(output))
                outputs[spec.id] = output
            del output
        del outputs
        # Collect between runs, so that a run's garbage is not collected inside the next.
        gc.collect()

    timings = tuple(
        StageTiming(spec, tuple(wall[spec.id]), tuple(cpu[spec.id])) for spec in pipeline.stages
    )
    hand_overs = tuple(
        HandOverSize(source, target, tuple(sizes[source])) for source, target in pipeline.hand_overs
    )
    return Profile(pipeline, timings, hand_overs, repeat, warmup, started_at, load_average)


def _run_once(pipeline: Pipeline, initial: Any) -> None:
    outputs: dict[str, Any] = {}
    for spec in pipeline.stages:
        outputs[spec.id] = _call(spec, pipeline._arguments(spec, initial, outputs))


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# The local CPU


@dataclass(frozen=True)
class LocalCpu:
    """The CPU of this machine as the operating system names it."""

    name: str
    source: str
    """Source of the name, such as ``/proc/cpuinfo "model name"``."""
    usable_cpus: int
    platform: str

    @property
    def candidates(self) -> list[str]:
        """The name, then the name in PassMark's spelling, to look up in the catalog."""
        names = [self.name, _passmark_spelling(self.name)]
        return list(dict.fromkeys(name for name in names if name))


def detect_local_cpu() -> LocalCpu:
    """Read the CPU name from the operating system.

    On Linux, ``/proc/cpuinfo``: the first ``model name`` (x86), else ``Model`` without
    its revision (Raspberry Pi boards, such as ``Raspberry Pi 4 Model B``), else
    ``Hardware``. On macOS, ``sysctl -n machdep.cpu.brand_string``. Elsewhere, and as a
    fallback, `platform.processor`.
    """
    name, source = "", ""
    if sys.platform.startswith("linux"):
        name, source = _cpuinfo_name(Path("/proc/cpuinfo"))
    elif sys.platform == "darwin":
        try:
            name = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            source = "sysctl machdep.cpu.brand_string"
        except (OSError, subprocess.SubprocessError):
            name = ""
    if not name:
        name, source = platform.processor() or platform.machine(), "platform.processor()"
    return LocalCpu(
        name=" ".join(name.split()),
        source=source,
        usable_cpus=_usable_cpus(),
        platform=platform.platform(),
    )


def _cpuinfo_name(path: Path) -> tuple[str, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator and key.strip() not in fields and value.strip():
            fields[key.strip()] = value.strip()
    if "model name" in fields:
        return fields["model name"], f'{path} "model name"'
    if "Model" in fields:
        return re.sub(r"\s+Rev\s+[\w.]+$", "", fields["Model"]), f'{path} "Model"'
    if "Hardware" in fields:
        return fields["Hardware"], f'{path} "Hardware"'
    return "", ""


def _passmark_spelling(name: str) -> str:
    """Spell an OS CPU name as PassMark's list does.

    ``Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz`` becomes ``Intel Core i7-10700 @ 2.90GHz``
    and ``AMD Ryzen 7 5800X 8-Core Processor`` becomes ``AMD Ryzen 7 5800X``.
    """
    text = re.sub(r"\((R|TM|tm|r)\)", "", name)
    text = re.sub(r"\s+\d+-Core Processor\s*$", "", text)
    text = re.sub(r"\s+Processor\s*$", "", text)
    text = re.sub(r"\s+CPU(?=\s+@|\s*$)", "", text)
    return " ".join(text.split())


def resolve_measured_on(
    cpu: str | None, catalog: CpuCatalog, *, local: LocalCpu | None = None
) -> str | InlineCpu:
    """Return the ``measured_on`` of a profile: a catalog CPU name or an inline CPU.

    Parameters
    ----------
    cpu
        What the user named: a catalog name or alias, or an inline CPU written as a
        YAML mapping such as ``{name: My PC, cores: 8, single_thread: 2900}``. None
        looks the local CPU up in the catalog.
    catalog
        The CPU catalog with its aliases.
    local
        The local CPU; detected when None and needed.

    Raises
    ------
    InputError
        When the named or local CPU is not in the catalog (with the closest catalog names
        and how to name the CPU), or the inline CPU is invalid.
    """
    if cpu is not None and cpu.lstrip().startswith("{"):
        return _inline_cpu(cpu)
    if cpu is not None:
        return catalog.lookup(cpu, file="command line", field="--cpu").name

    local = local if local is not None else detect_local_cpu()
    for candidate in local.candidates:
        found = catalog.find(candidate)
        if found is not None:
            return found.name
    names = [c.name for c in catalog.cpus] + [alias.alias for alias in catalog.aliases]
    close = difflib.get_close_matches(local.candidates[-1], names, n=3, cutoff=0.4)
    hint = f"; closest catalog names: {', '.join(map(repr, close))}" if close else ""
    where = f"catalog {catalog.path}" if catalog.path else "the CPU catalog"
    raise InputError(
        f"this machine's CPU {local.name!r} (from {local.source}) is not in {where}{hint}. "
        "Name the CPU the times are measured on with --cpu NAME (a catalog name or alias), "
        "describe it with --cpu '{name: ..., cores: N, single_thread: ...}' (PassMark "
        "figures), or add it to the catalog with `allocation catalog import-cpus`",
        file="command line",
        field="--cpu",
    )


def _inline_cpu(text: str) -> InlineCpu:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(
            f"is not a valid YAML mapping ({str(exc).splitlines()[0]}); write it as "
            "'{name: My PC, cores: 8, single_thread: 2900}'",
            file="command line",
            field="--cpu",
            value=text,
            has_value=True,
        ) from exc
    try:
        return InlineCpu.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InputError(
            f"is not a valid inline CPU ({problems}); an inline CPU has a name, cores and "
            "the PassMark figures its stages use, such as single_thread",
            file="command line",
            field="--cpu",
            value=text,
            has_value=True,
        ) from exc


# Writing the model


@dataclass
class DraftStage:
    """A stage of a workflow model about to be written, with comment lines above it."""

    id: str
    time_s: float
    threads: int = 1
    name: str | None = None
    score: str = "single_thread"
    pin: str | None = None
    allowed: tuple[str, ...] | None = None
    comments: list[str] = field(default_factory=list)


@dataclass
class DraftEdge:
    """An edge of a workflow model about to be written, with a comment at its end."""

    source: str
    target: str
    size_bytes: int
    comment: str = ""


@dataclass
class WorkflowDraft:
    """A workflow model, with comments that record how it was measured."""

    workflow: str
    measured_on: str | InlineCpu
    stages: list[DraftStage]
    edges: list[DraftEdge]
    description: str | None = None
    header: list[str] = field(default_factory=list)
    """Comment lines at the top of the file."""
    measured_on_comment: str = ""


def draft_from_profile(
    profile: Profile,
    measured_on: str | InlineCpu,
    *,
    local: LocalCpu,
    command: str | None = None,
) -> WorkflowDraft:
    """Turn a profile into a workflow model, with the measurement details as comments."""
    pipeline = profile.pipeline
    header = [
        f"Measured by `{command}`" if command else "Measured by allocation.profile",
        f"on {profile.started_at:%Y-%m-%d %H:%M} UTC.",
        f"Machine: {local.name} ({local.source}), {local.usable_cpus} CPUs usable by the "
        f"process, {local.platform}, Python {platform.python_version()}, "
        f"NumPy {np.__version__}."
        + (
            " Load average at the start (1, 5, 15 min): "
            + ", ".join(f"{value:.2f}" for value in profile.load_average)
            + "."
            if profile.load_average is not None
            else ""
        ),
        f"time_s: the median wall time of {profile.repeat} timed runs of the whole "
        f"pipeline, after {profile.warmup} untimed warm-up run(s); each stage's comment "
        "gives the spread.",
        "threads: process CPU time (all threads) / wall time over the timed runs, rounded "
        "to the nearest whole number, at least 1." + _blas_settings(),
        "Edge bytes: numpy nbytes for arrays, len() for bytes, the pickle length "
        "(protocol 5) otherwise; each edge's comment gives the method.",
    ]
    stages = []
    for timing in profile.stages:
        spec = timing.stage
        times = timing.wall_times_s
        spread = (max(times) - min(times)) / timing.time_s if timing.time_s > 0 else 0.0
        threads_note = f"CPU/wall {timing.busy_cores:.2f}"
        if spec.threads is not None:
            threads_note = f"threads {spec.threads} as declared ({threads_note})"
        elif not timing.threads_measurable:
            threads_note += " over too short a time to count threads, so threads is 1"
        stages.append(
            DraftStage(
                id=spec.id,
                name=spec.name,
                time_s=timing.time_s,
                threads=timing.threads,
                score=spec.score,
                pin=spec.pin,
                allowed=spec.allowed,
                comments=[
                    f"median of {len(times)}: {_seconds(timing.time_s)}, min "
                    f"{_seconds(min(times))}, max {_seconds(max(times))} (spread "
                    f"{spread:.0%} of the median); {threads_note}"
                ],
            )
        )
    edges = []
    for hand_over in profile.hand_overs:
        observed = sorted({m.size_bytes for m in hand_over.sizes})
        details = "/".join(dict.fromkeys(m.detail for m in hand_over.sizes))
        varied = (
            f", median of sizes from {observed[0]:,} to {observed[-1]:,}"
            if len(observed) > 1
            else ""
        )
        edges.append(
            DraftEdge(
                source=hand_over.source,
                target=hand_over.target,
                size_bytes=hand_over.size_bytes,
                comment=f"{hand_over.method}: {details}{varied}",
            )
        )
    return WorkflowDraft(
        workflow=pipeline.workflow,
        description=pipeline.description,
        measured_on=measured_on,
        stages=stages,
        edges=edges,
        header=header,
        measured_on_comment=(
            f"this machine's CPU as {local.source} names it: {local.name}"
            if isinstance(measured_on, str)
            else "named on the command line"
        ),
    )


def _blas_settings() -> str:
    settings = [
        f"{key}={os.environ[key]}"
        for key in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")
        if key in os.environ
    ]
    return f" BLAS settings: {', '.join(settings)}." if settings else ""


def _seconds(value: float) -> str:
    return f"{value:.4g} s"


def render_workflow(draft: WorkflowDraft) -> str:
    """Return the YAML text of a workflow file, comments included."""
    lines = [_comment(text, indent="") for text in draft.header]
    lines.append(f"workflow: {_scalar(draft.workflow)}")
    if draft.description:
        lines.append(f"description: {_scalar(draft.description)}")
    lines.append(
        _with_comment(f"measured_on: {_measured_on(draft.measured_on)}", draft.measured_on_comment)
    )
    lines.append("stages:")
    for stage in draft.stages:
        lines += [_comment(text, indent="  ") for text in stage.comments]
        lines.append(f"  - id: {_scalar(stage.id)}")
        if stage.name:
            lines.append(f"    name: {_scalar(stage.name)}")
        lines.append(f"    time_s: {_number(stage.time_s)}")
        lines.append(f"    threads: {stage.threads}")
        if stage.score != "single_thread":
            lines.append(f"    score: {stage.score}")
        if stage.pin is not None:
            lines.append(f"    pin: {_scalar(stage.pin)}")
        if stage.allowed is not None:
            lines.append(f"    allowed: [{', '.join(_scalar(d) for d in stage.allowed)}]")
    if draft.edges:
        lines.append("edges:")
        for edge in draft.edges:
            text = (
                f"  - {{from: {_scalar(edge.source)}, to: {_scalar(edge.target)}, "
                f"bytes: {edge.size_bytes}}}"
            )
            lines.append(_with_comment(text, edge.comment))
    else:
        lines.append("edges: []")
    return "\n".join(lines) + "\n"


def _measured_on(cpu: str | InlineCpu) -> str:
    if isinstance(cpu, str):
        return _scalar(cpu)
    items = [f"name: {_scalar(cpu.name)}", f"cores: {cpu.cores}"]
    if cpu.threads is not None:
        items.append(f"threads: {cpu.threads}")
    for figure in SCORE_FIGURES:
        value = getattr(cpu, figure)
        if value is not None:
            items.append(f"{figure}: {_number(value)}")
    return "{" + ", ".join(items) + "}"


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\- ]*[A-Za-z0-9_.]|[A-Za-z_]")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def _scalar(text: str) -> str:
    """Write a string as a plain YAML scalar when that reads back as the same string."""
    if _PLAIN.fullmatch(text) and text.casefold() not in _YAML_WORDS and " #" not in text:
        return text
    # A JSON string is a valid double-quoted YAML scalar.
    return json.dumps(text, ensure_ascii=False)


def _number(value: float) -> str:
    """Write a float with 4 significant digits, in a form that reads back as a float."""
    return repr(float(f"{value:.4g}"))


def _comment(text: str, *, indent: str) -> str:
    return f"{indent}# {' '.join(text.split())}" if text else f"{indent}#"


def _with_comment(line: str, comment: str) -> str:
    return f"{line}  # {' '.join(comment.split())}" if comment else line


def write_workflow(
    text: str,
    out: Path | None,
    *,
    catalog: CpuCatalog,
    stream: Any = None,
) -> None:
    """Check a rendered workflow with the loader, then write it to `out` or a stream.

    The text is written to a temporary file, loaded with
    `allocation.loading.load_workflow` and its ``measured_on`` resolved against the
    catalog before anything reaches `out`. `out` is then replaced in one rename, so a
    failure leaves no partial file.

    Raises
    ------
    InputError
        When `out` is a directory.
    AllocationError
        When the rendered model does not load, which is a bug of this module.
    """
    from allocation.compile import resolve_cpu

    if out is not None and out.is_dir():
        raise InputError("is a directory; give the path of the workflow file to write", file=out)
    folder = out.parent if out is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(suffix=".yaml", prefix=".profile-", dir=folder)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            workflow = load_workflow(temporary)
            resolve_cpu(workflow.measured_on, catalog, file=temporary, field="measured_on")
        except InputError as exc:
            raise AllocationError(f"the profiled model does not validate: {exc}") from exc
        if out is None:
            (stream if stream is not None else sys.stdout).write(text)
        else:
            os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
