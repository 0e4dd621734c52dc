"""Studies files: the workflow and system pairs that a scheduled re-evaluation sweeps.

A studies file (YAML or JSON) lists studies; docs/scheduling.md describes the format::

    studies:
      - name: detection-tokyo              # optional, default <workflow>--<system>
        workflow: workflows/object-detection.yaml
        system: systems/edge-cloud.yaml
        catalog: .                         # optional folder with cpus.parquet, prices.parquet
        compare: current-design.yaml       # optional compare file
        sweep:                             # optional options of the sweep flow
          method: auto
          max_patterns: 1000000
          chunk_size: 65536
          requirements: {max_latency_s: 5}
          explain: ["A:C"]

Relative paths are taken from the folder of the studies file, so a deployment that
runs in another working directory reads the same files.

`fingerprint_study` reduces everything a study's results depend on to plain JSON and a
SHA-256 per part: the workflow and system as validated (comments and formatting do not
count), the catalog rows of the CPUs they use, the options and price rows of each
pricing provider, the sweep options and the version of allocation. Two evaluations with
equal fingerprints give the same outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from allocation.errors import InputError
from allocation.loading import _field_path, _fields_at, read_document
from allocation.model import Requirements
from allocation.study import Study, load_study

__all__ = [
    "STUDY_NAME_PATTERN",
    "StudiesFile",
    "StudyEntry",
    "StudyFingerprint",
    "artifact_slug",
    "fingerprint_study",
    "load_studies",
    "load_study_entry",
]

STUDY_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
"""Study names: safe as folder names."""

_PAIR = re.compile(r"^\s*[A-Za-z]+\s*:\s*[A-Za-z]+\s*$")

PROVIDER_PATH_KEYS = ("prices", "prices_sha256")
"""Keys of a provider's `describe()` left out of the fingerprint: the table's path and
the hash of the whole table. The price rows that the provider uses are kept, so a change
to a row it does not use, or a move of the catalog folder, does not count as a change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SweepOptions(_Strict):
    """Options passed to the sweep flow for one study (see `flows.sweep.sweep`)."""

    method: Literal["auto", "exhaustive", "exact"] = "auto"
    max_patterns: int = Field(default=1_000_000, ge=1)
    chunk_size: int | None = Field(default=None, ge=1)
    requirements: Requirements | None = None
    explain: list[str] = Field(default_factory=list)


class _EntryModel(_Strict):
    name: str | None = Field(default=None, pattern=STUDY_NAME_PATTERN, max_length=100)
    workflow: str = Field(min_length=1)
    system: str = Field(min_length=1)
    catalog: str | None = Field(default=None, min_length=1)
    compare: str | None = Field(default=None, min_length=1)
    sweep: SweepOptions = Field(default_factory=SweepOptions)


class _FileModel(_Strict):
    studies: list[_EntryModel] = Field(min_length=1)


@dataclass(frozen=True)
class StudyEntry:
    """One study of a studies file, with its paths resolved."""

    name: str
    """Folder name of the study's outputs, unique in the file."""
    workflow: Path
    system: Path
    catalog: Path | None
    """None: `allocation.study.default_catalog_dir` at evaluation time."""
    compare: Path | None
    sweep: SweepOptions
    field: str
    """Field path of the entry in the studies file, such as ``studies[2]``."""

    def sweep_parameters(self) -> dict[str, Any]:
        """Return the keyword arguments of the sweep flow, without the paths and output."""
        requirements = self.sweep.requirements
        return {
            "chunk_size": self.sweep.chunk_size,
            "max_patterns": self.sweep.max_patterns,
            "method": self.sweep.method,
            "requirements": (
                None if requirements is None else requirements.model_dump(exclude_unset=True)
            ),
            "explain": [text.replace(" ", "").upper() for text in self.sweep.explain],
        }


@dataclass(frozen=True)
class StudiesFile:
    """A validated studies file."""

    path: Path
    studies: tuple[StudyEntry, ...]


def load_studies(path: str | Path) -> StudiesFile:
    """Read and validate a studies file, and give every study a unique name.

    Checks the fields, that every named file and folder exists and that the names are
    unique; each study's workflow and system are read too, for the default names and
    so that a broken input stops the run before anything is swept.

    Raises
    ------
    InputError
        Naming the studies file (or the workflow or system file) and the field path,
        such as ``studies[1].sweep.method``, with the value and the fix.
    """
    path = Path(path)
    document = read_document(path)
    if not isinstance(document, dict) or "studies" not in document:
        raise InputError(
            "expected a mapping with a top-level 'studies' list (a studies file; see "
            "docs/scheduling.md)",
            file=path,
        )
    try:
        model = _FileModel.model_validate(document)
    except ValidationError as exc:
        raise _input_error(exc, path) from None

    base = path.resolve().parent
    entries = []
    seen: dict[str, str] = {}
    for i, item in enumerate(model.studies):
        where = f"studies[{i}]"
        workflow = _existing(base, item.workflow, path, f"{where}.workflow", folder=False)
        system = _existing(base, item.system, path, f"{where}.system", folder=False)
        catalog = None
        if item.catalog is not None:
            catalog = _existing(base, item.catalog, path, f"{where}.catalog", folder=True)
        compare = None
        if item.compare is not None:
            compare = _existing(base, item.compare, path, f"{where}.compare", folder=False)
        for j, text in enumerate(item.sweep.explain):
            if not _PAIR.match(text):
                raise InputError(
                    "expected two candidate labels separated by a colon, such as A:C",
                    file=path,
                    field=f"{where}.sweep.explain[{j}]",
                    value=text,
                    has_value=True,
                )

        name = item.name or _default_name(workflow, system)
        slug = artifact_slug(name)
        if slug in seen:
            raise InputError(
                f"gives the study the same name as {seen[slug]} (names are compared "
                "ignoring case and punctuation, because they become artifact keys); "
                "give each study its own `name`",
                file=path,
                field=f"{where}.name",
                value=name,
                has_value=True,
            )
        seen[slug] = where
        entries.append(
            StudyEntry(name, workflow, system, catalog, compare, item.sweep, field=where)
        )
    return StudiesFile(path, tuple(entries))


def load_study_entry(entry: StudyEntry) -> Study:
    """Load and compile the workflow and system of a study, as the sweep flow does."""
    requirements = entry.sweep.requirements
    return load_study(
        entry.workflow,
        entry.system,
        entry.catalog,
        compare_path=entry.compare,
        requirements=None if requirements is None else requirements.model_dump(exclude_unset=True),
    )


def artifact_slug(name: str) -> str:
    """Return `name` lower-cased with every run of other characters than a-z, 0-9 as '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class StudyFingerprint:
    """What the results of a study depend on, as JSON, and a SHA-256 per part.

    Parts: ``workflow``, ``system``, ``cpus`` (the catalog or inline rows of the
    reference CPU and of every device), ``pricing`` (each priced device's provider
    options and price rows), ``options`` (the sweep options and the compare file) and
    ``tool`` (the version of allocation).
    """

    parts: dict[str, Any]
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def combined_sha256(self) -> str:
        """SHA-256 over the parts' hashes; equal fingerprints have equal values."""
        return _sha256_json(self.sha256)

    def changed_parts(self, previous_sha256: dict[str, str]) -> list[str]:
        """Return the parts whose hash differs from `previous_sha256`, in part order."""
        names = list(self.sha256) + [n for n in previous_sha256 if n not in self.sha256]
        return [n for n in names if self.sha256.get(n) != previous_sha256.get(n)]


def fingerprint_study(entry: StudyEntry, study: Study) -> StudyFingerprint:
    """Reduce the inputs of a loaded study to a `StudyFingerprint`."""
    problem = study.problem
    cpus = {
        key: {
            "cpu": cpu.name,
            "cores": cpu.cores,
            "threads": cpu.threads,
            **cpu.figures,
            "source": cpu.source,
            "as_of": None if cpu.as_of is None else cpu.as_of.isoformat(),
        }
        for key, cpu in problem.cpus.items()
    }
    pricing = {}
    for priced in problem.priced:
        described = priced.provider.describe()
        pricing[priced.device_id] = {
            key: value for key, value in described.items() if key not in PROVIDER_PATH_KEYS
        }
    options: dict[str, Any] = {"sweep": entry.sweep_parameters()}
    if entry.compare is not None:
        options["compare_sha256"] = hashlib.sha256(entry.compare.read_bytes()).hexdigest()
    parts = {
        # warnings=False: an inline CPU in place of a CPU name is valid, but pydantic
        # warns while dumping it.
        "workflow": study.workflow.model_dump(mode="json", warnings=False),
        "system": study.system.model_dump(mode="json", warnings=False),
        "cpus": cpus,
        "pricing": pricing,
        "options": options,
        "tool": {"allocation": version("allocation")},
    }
    # A round trip through JSON makes dates, tuples and numpy scalars plain values.
    parts = json.loads(json.dumps(parts, default=str))
    return StudyFingerprint(parts, {name: _sha256_json(value) for name, value in parts.items()})


def _sha256_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _existing(base: Path, text: str, file: Path, field_path: str, *, folder: bool) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = base / path
    kind = "folder" if folder else "file"
    if not path.exists():
        raise InputError(
            f"{kind} not found at {path}; check the path (a relative path is taken from the "
            "folder of the studies file)",
            file=file,
            field=field_path,
            value=text,
            has_value=True,
        )
    if folder != path.is_dir():
        expected = "a folder" if folder else "a file"
        raise InputError(
            f"{path} is not {expected}; give {expected}",
            file=file,
            field=field_path,
            value=text,
            has_value=True,
        )
    return path


def _default_name(workflow: Path, system: Path) -> str:
    from allocation.loading import load_system, load_workflow

    return f"{load_workflow(workflow).workflow}--{load_system(system).system}"


_EXPECTED = {
    "name": "a name made of letters, digits, '_', '.' and '-' (at most 100 characters)",
    "method": "auto, exhaustive or exact",
    "max_patterns": "a whole number >= 1",
    "chunk_size": "a whole number >= 1",
    "studies": "a non-empty list of studies, each a mapping with workflow and system",
}


def _input_error(exc: ValidationError, path: Path) -> InputError:
    """Turn the first pydantic error into an InputError with the field path."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    loc = list(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return InputError(
            f"missing required field {loc[-1]!r}; add it (see docs/scheduling.md)",
            file=path,
            field=_field_path(loc[:-1]) or None,
        )
    if kind == "extra_forbidden":
        valid = ", ".join(_fields_at(_FileModel, loc[:-1]) or _FileModel.model_fields)
        return InputError(
            f"unknown field {loc[-1]!r}; valid fields here: {valid}",
            file=path,
            field=_field_path(loc[:-1]) or None,
        )
    name = next((str(part) for part in reversed(loc) if isinstance(part, str)), "")
    expected = _EXPECTED.get(name)
    message = f"expected {expected}" if expected else error["msg"][0].lower() + error["msg"][1:]
    return InputError(
        message + " (see docs/scheduling.md)",
        file=path,
        field=_field_path(loc) or None,
        value=error.get("input"),
        has_value=True,
    )
