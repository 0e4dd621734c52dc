"""Typed input models: the workflow and the system files (docs/guide.md, section 2).

Every number is checked where it is read: finite, in range and of the right type. Checks
that involve both files (a pin to a device of the system, or a stage named in a
comparison placement, for example) and the CPU catalog happen in `allocation.loading` and
`allocation.compile`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

__all__ = [
    "ID_PATTERN",
    "OBJECTIVES",
    "SCORE_FIGURES",
    "STAGE_CLASSES",
    "CompareFile",
    "Comparison",
    "Contention",
    "Device",
    "Edge",
    "InlineCpu",
    "Link",
    "Pricing",
    "Requirements",
    "Stage",
    "System",
    "Workflow",
]

ID_PATTERN = r"^[A-Za-z0-9_.-]+$"
"""Ids and names that end up in file names, column names and chart fields."""

SCORE_FIGURES = ("single_thread", "cpu_mark", "integer_math", "floating_point_math")
"""PassMark figures a stage time can be scaled by."""

OBJECTIVES = (
    "latency_s",
    "cost_usd",
    "comm_s",
    "upload_bytes",
    "download_bytes",
    "monthly_cost_usd",
    "period_s",
)
"""Metrics a front can be computed over; every one is minimised.

``period_s`` is the time between frames of a stream (docs/streams-and-memory.md), so
minimising it maximises the frames per second.
"""

STAGE_CLASSES = ("pre-processing", "inference", "post-processing")
"""Classes a stage may carry; a device may run each class at its own speed factor."""

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=128)]
StageClass = Literal["pre-processing", "inference", "post-processing"]
SpeedFactor = Annotated[float, Field(gt=0, le=1e6)]
ScoreFigure = Literal["single_thread", "cpu_mark", "integer_math", "floating_point_math"]
Objective = Literal[
    "latency_s",
    "cost_usd",
    "comm_s",
    "upload_bytes",
    "download_bytes",
    "monthly_cost_usd",
    "period_s",
]
FreeText = Annotated[str, Field(max_length=10_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True, populate_by_name=True
    )


class InlineCpu(_Strict):
    """A CPU described in the input file instead of the catalog."""

    name: FreeText
    cores: int = Field(ge=1, le=100_000)
    threads: int | None = Field(default=None, ge=1, le=1_000_000)
    single_thread: float | None = Field(default=None, gt=0)
    cpu_mark: float | None = Field(default=None, gt=0)
    integer_math: float | None = Field(default=None, gt=0)
    floating_point_math: float | None = Field(default=None, gt=0)


def _cpu_kind(value: Any) -> str:
    return "cpu-inline" if isinstance(value, dict) else "cpu-name"


CpuRef = Annotated[
    Annotated[FreeText, Tag("cpu-name")] | Annotated[InlineCpu, Tag("cpu-inline")],
    Discriminator(_cpu_kind),
]
"""A catalog CPU name, or an inline CPU."""


class Stage(_Strict):
    """One processing stage, timed on the reference PC (`measured_on`)."""

    id: Id
    name: FreeText | None = None
    time_s: float = Field(ge=0, le=1e9)  # 1e9 s is 31 years: anything larger is a unit slip
    threads: int = Field(default=1, ge=1, le=100_000)
    score: ScoreFigure = "single_thread"
    pin: Id | None = None
    allowed: list[Id] | None = Field(default=None, min_length=1)
    stage_class: StageClass | None = Field(default=None, alias="class")
    """Pre-processing, inference or post-processing; selects a device's class speed factor."""
    memory_mb: float = Field(default=0.0, ge=0, le=1e9)
    """Memory the stage needs while it runs, in MB; checked against a device's memory_mb."""

    @field_validator("allowed")
    @classmethod
    def _allowed_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("lists a device more than once; list each device once")
        return value


class Edge(_Strict):
    """Data handed from one stage to another, in bytes."""

    source: Id = Field(alias="from")
    target: Id = Field(alias="to")
    bytes: int = Field(ge=0, le=2**53)

    @field_validator("bytes", mode="before")
    @classmethod
    def _whole_bytes(cls, value: Any) -> Any:
        # YAML and JSON write large sizes as floats (6.2e+6); accept whole numbers.
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
            return int(value)
        return value


class Workflow(_Strict):
    """The workflow model: stages and the data passed between them."""

    workflow: Id
    description: FreeText | None = None
    measured_on: CpuRef
    stages: list[Stage] = Field(min_length=1, max_length=10_000)
    edges: list[Edge] = Field(default_factory=list, max_length=1_000_000)


class Pricing(BaseModel):
    """The pricing of a device: a provider name and the provider's own options."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)

    provider: Annotated[str, Field(min_length=1, max_length=128)]

    @property
    def options(self) -> dict[str, Any]:
        """Options other than `provider`, passed to the provider as they were written."""
        return dict(self.model_extra or {})


class Device(_Strict):
    """A device stages can run on; priced when it has `pricing`."""

    id: Id
    cpu: CpuRef
    cores: int | None = Field(default=None, ge=1, le=100_000)
    pricing: Pricing | None = None
    speed_factor: SpeedFactor | None = None
    """How much faster the device runs than its CPU scores predict (2 halves stage times).

    Absent means 1. `allocation calibrate` fits it from measured runs.
    """
    class_speed_factors: dict[StageClass, SpeedFactor] | None = None
    """Further speed factor per stage class, applied on top of `speed_factor`."""
    memory_mb: float | None = Field(default=None, gt=0)
    """Memory available to the flow's stages, in MB; absent means no limit.

    Every stage placed on the device counts against it at once, as in a stream of frames.
    """


class Link(_Strict):
    """An undirected network link between two devices."""

    between: tuple[Id, Id]
    bandwidth_mbps: float = Field(gt=0)
    latency_ms: float = Field(default=0.0, ge=0)
    overhead_ms: float = Field(default=0.0, ge=0, le=1e12)
    """Fixed cost of every transfer over the link (connection set-up, serialisation).

    It adds to `latency_ms`; `allocation calibrate` fits it from measured transfers.
    """

    @field_validator("between", mode="before")
    @classmethod
    def _list_as_pair(cls, value: Any) -> Any:
        # YAML gives a list; a strict tuple field would reject it.
        if isinstance(value, list):
            if len(value) != 2:
                raise ValueError("must name exactly two devices, e.g. [edge, cloud]")
            return tuple(value)
        return value

    @field_validator("between")
    @classmethod
    def _two_devices(cls, value: tuple[str, str]) -> tuple[str, str]:
        if value[0] == value[1]:
            raise ValueError("names the same device twice; a link joins two devices")
        return value


class Requirements(_Strict):
    """Limits a recommended candidate must meet, and the metric minimised among those that do.

    `allocation.explain.recommend` describes how a candidate is chosen from them.
    """

    max_latency_s: float | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    """Largest cost of one run, in USD."""
    max_monthly_cost_usd: float | None = Field(default=None, ge=0)
    """Largest monthly bill in USD. It needs the system's runs_per_month."""
    min_throughput_fps: float | None = Field(default=None, gt=0)
    """Smallest throughput of a stream in frames per second (``throughput_fps``)."""
    minimise: Objective = "cost_usd"

    @property
    def limits(self) -> dict[str, float]:
        """Limits that are set, by field name (``max_latency_s``, ...), in field order.

        ``min_throughput_fps`` is a lower limit; the others are upper limits.
        """
        values = {
            "max_latency_s": self.max_latency_s,
            "max_cost_usd": self.max_cost_usd,
            "max_monthly_cost_usd": self.max_monthly_cost_usd,
            "min_throughput_fps": self.min_throughput_fps,
        }
        return {name: value for name, value in values.items() if value is not None}


class Comparison(_Strict):
    """A placement given by the user, estimated beside the candidates (such as a current design).

    Stages named in `at` run on the device given there. A stage that may run on one
    device only (pinned, or a single allowed device) stays there unless `at` names it.
    Every other stage runs on `rest`.
    """

    name: Annotated[str, Field(min_length=1, max_length=200)]
    at: dict[Id, Id] = Field(default_factory=dict)
    """Stage id to device id."""
    rest: Id | None = None
    """Device of every stage not listed in `at`."""

    @field_validator("name")
    @classmethod
    def _name_visible(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank; give the placement a name such as 'current design'")
        return value


class CompareFile(_Strict):
    """A compare file: placements to estimate beside the candidates of a sweep."""

    description: FreeText | None = None
    compare: list[Comparison] = Field(min_length=1, max_length=1000)


class Contention(_Strict):
    """Sharing of cores and links between work that may run at the same time.

    Without the block in a system, nothing is shared. docs/contention.md gives the formulas.
    """

    cpu: bool = True
    """Stages that may run at the same time on one device share its cores."""
    links: bool = True
    """Transfers that may run at the same time over one link share its bandwidth."""
    concurrent_frames: int = Field(default=1, ge=1, le=10_000)
    """Frames processed at once. Each one multiplies the demand on cores and links."""


def _default_objectives() -> list[Objective]:
    return ["latency_s", "cost_usd"]


class System(_Strict):
    """Devices, links, pricing and the objectives of a sweep."""

    system: Id
    description: FreeText | None = None
    runs_per_month: int | None = Field(default=None, ge=0, le=10**15)
    devices: list[Device] = Field(min_length=1, max_length=255)
    links: list[Link] = Field(default_factory=list)
    objectives: list[Objective] = Field(default_factory=_default_objectives, min_length=1)
    requirements: Requirements | None = None
    compare: list[Comparison] = Field(default_factory=list, max_length=1000)
    """Placements to estimate beside the candidates and the baselines."""
    core_scaling_exponent: float | None = Field(default=None, ge=0, le=1)
    """Exponent alpha of the core scaling: stage time is proportional to
    1 / min(threads, cores) ** alpha. Absent means 1 (linear scaling)."""
    contention: Contention | None = None
    """Sharing of cores and links between concurrent stages, transfers and frames."""

    @field_validator("objectives")
    @classmethod
    def _objectives_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an objective more than once")
        return value
