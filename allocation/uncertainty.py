"""Read an uncertainty file and draw the factors of a Monte Carlo run from it.

An uncertainty file states how far the stage times, the link bandwidths and the prices
of a sweep may be off, as the spread of a factor that multiplies them.
docs/robustness.md describes the format; `allocation.robustness` runs the Monte Carlo.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from allocation.errors import InputError
from allocation.loading import _input_error_from, read_document
from allocation.model import Id, _Strict

__all__ = [
    "DEFAULT_MAX_TIME_S",
    "Factors",
    "Spread",
    "Uncertainty",
    "UncertaintyFile",
    "check_stage_overrides",
    "draw_factors",
    "load_uncertainty",
]

DEFAULT_MAX_TIME_S = 600.0
"""Default maximum Monte Carlo run time, in seconds, projected from its first sample."""


class Spread(_Strict):
    """The spread of the factor that multiplies one kind of input.

    With ``uniform``, the factor is drawn from U(1 - relative, 1 + relative). With
    ``lognormal``, it is exp(N(0, relative)): its median is 1 and `relative` is the
    standard deviation of its logarithm.
    """

    # Declared before `relative`, so that the check of `relative` can read it.
    distribution: Literal["uniform", "lognormal"] = "uniform"
    relative: float = Field(ge=0, le=10)

    @field_validator("relative")
    @classmethod
    def _uniform_below_one(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("distribution", "uniform") == "uniform" and value >= 1:
            raise ValueError(
                "must be below 1 for a uniform factor U(1 - relative, 1 + relative), which "
                "must stay positive; lower it or set distribution: lognormal"
            )
        return value


class Uncertainty(_Strict):
    """The contents of an uncertainty file."""

    samples: int = Field(default=200, ge=1, le=100_000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    max_time_s: float = Field(default=DEFAULT_MAX_TIME_S, gt=0, le=1e7)
    """Maximum run time accepted, in seconds, projected from the time of the first sample."""
    stage_time: Spread | None = None
    """Spread of each stage's time, one factor per stage applied on every device."""
    bandwidth: Spread | None = None
    """Spread of each link's bandwidth_mbps, one factor per link."""
    price: Spread | None = None
    """Spread of each priced device's charges (every cost line and the monthly bill)."""
    stages: dict[Id, Spread] = Field(default_factory=dict)
    """Stage id to its own spread, in place of `stage_time`."""

    def spread_of_stage(self, stage_id: str) -> Spread | None:
        """Return the spread of one stage's time: its own, else `stage_time`."""
        return self.stages.get(stage_id, self.stage_time)


@dataclass(frozen=True)
class UncertaintyFile:
    """A validated uncertainty file with its path and content hash."""

    spec: Uncertainty
    path: str
    sha256: str

    def settings(self) -> dict[str, Any]:
        """Return every setting in force, defaults included, JSON-serialisable."""
        return self.spec.model_dump(mode="json")


@dataclass(frozen=True)
class Factors:
    """The factors of every sample, row for row.

    Attributes
    ----------
    stage_time : ndarray, shape (n_samples, n_stages)
        Factor of each stage's time.
    bandwidth : ndarray, shape (n_samples, n_links)
        Factor of each link's bandwidth, in the order of the system's links.
    price : ndarray, shape (n_samples, n_priced)
        Factor of each priced device's charges, in system order.
    """

    stage_time: np.ndarray
    bandwidth: np.ndarray
    price: np.ndarray

    def __len__(self) -> int:
        return int(self.stage_time.shape[0])


def load_uncertainty(path: str | Path) -> UncertaintyFile:
    """Read and validate an uncertainty file on its own.

    `check_stage_overrides` checks the stage ids of ``stages`` against a workflow.

    Raises
    ------
    InputError
        When the file cannot be read, is not a mapping, has an invalid or unknown field,
        or sets no spread at all.
    """
    document = read_document(path)
    if not isinstance(document, Mapping):
        raise InputError(
            "expected a mapping of settings such as {samples: 200, stage_time: "
            f"{{relative: 0.2}}}} (an uncertainty file), found {type(document).__name__}",
            file=path,
        )
    for kind in ("workflow", "system"):
        if kind in document:
            raise InputError(
                f"has a top-level {kind!r} key, so it looks like a {kind} file; give "
                "--uncertainty an uncertainty file (docs/robustness.md)",
                file=path,
            )
    try:
        spec = Uncertainty.model_validate(document)
    except ValidationError as exc:
        raise _input_error_from(exc, path, Uncertainty) from None
    if (
        spec.stage_time is None
        and spec.bandwidth is None
        and spec.price is None
        and not spec.stages
    ):
        raise InputError(
            "sets no spread; add stage_time, bandwidth, price or stages, such as "
            "stage_time: {relative: 0.2}",
            file=path,
        )
    sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return UncertaintyFile(spec=spec, path=str(path), sha256=sha256)


def check_stage_overrides(
    uncertainty: UncertaintyFile, stage_ids: Sequence[str], *, workflow: str
) -> None:
    """Check that every stage under ``stages`` is a stage of the workflow.

    Raises
    ------
    InputError
        Naming the first unknown stage, the known ones and the closest match.
    """
    for stage_id in uncertainty.spec.stages:
        if stage_id in stage_ids:
            continue
        matches = difflib.get_close_matches(stage_id, list(stage_ids), n=1, cutoff=0.6)
        hint = f"; did you mean {matches[0]!r}?" if matches else ""
        listed = ", ".join(stage_ids[:30]) + (" ..." if len(stage_ids) > 30 else "")
        raise InputError(
            f"names stage {stage_id!r}, which the workflow {workflow!r} does not have; "
            f"known stages: {listed}{hint}",
            file=uncertainty.path,
            field=f"stages.{stage_id}",
        )


def draw_factors(
    spec: Uncertainty, stage_ids: Sequence[str], *, n_links: int, n_priced: int
) -> Factors:
    """Draw the factors of every sample from the spreads of `spec`.

    Parameters
    ----------
    spec : Uncertainty
        The spreads, the number of samples and the seed.
    stage_ids : sequence of str
        The workflow's stage ids in file order.
    n_links, n_priced : int
        The number of links of the system and of its priced devices.

    Returns
    -------
    Factors
        A factor of exactly 1 where no spread is set.

    Notes
    -----
    Sample by sample, a generator seeded with ``spec.seed`` (NumPy's ``default_rng``)
    draws one uniform and one standard normal number per stage, link and priced
    device, in that order, whatever the spreads. So a run of n samples repeats the
    first n samples of a longer run with the same seed, and changing one spread
    changes no other factor.
    """
    stage_spreads = [spec.spread_of_stage(stage_id) for stage_id in stage_ids]
    spreads = stage_spreads + [spec.bandwidth] * n_links + [spec.price] * n_priced
    n_columns = len(spreads)
    rng = np.random.default_rng(spec.seed)
    uniform = np.empty((spec.samples, n_columns))
    normal = np.empty((spec.samples, n_columns))
    for i in range(spec.samples):
        uniform[i] = rng.random(n_columns)
        normal[i] = rng.standard_normal(n_columns)

    factors = np.ones((spec.samples, n_columns))
    for column, spread in enumerate(spreads):
        if spread is None:
            continue
        if spread.distribution == "uniform":
            factors[:, column] = 1.0 - spread.relative + 2.0 * spread.relative * uniform[:, column]
        else:
            factors[:, column] = np.exp(spread.relative * normal[:, column])
    n_stages = len(stage_ids)
    return Factors(
        stage_time=factors[:, :n_stages],
        bandwidth=factors[:, n_stages : n_stages + n_links],
        price=factors[:, n_stages + n_links :],
    )
