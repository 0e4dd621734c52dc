"""Read workflow, system and compare files (YAML or JSON) into validated models.

Every problem with a file becomes an `InputError` that names the file, the field path
(``stages[3].time_s``), the value and what is expected.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from allocation.errors import InputError
from allocation.model import (
    CompareFile,
    Comparison,
    Device,
    Edge,
    InlineCpu,
    Link,
    Pricing,
    Requirements,
    Stage,
    System,
    Workflow,
)

__all__ = [
    "MAX_CATALOG_FILE_BYTES",
    "MAX_FILE_BYTES",
    "check_pair",
    "load_compare_file",
    "load_system",
    "load_workflow",
    "parse_system",
    "parse_workflow",
    "read_document",
    "read_input_bytes",
    "resolve_comparisons",
]

MAX_FILE_BYTES = 20 * 1024 * 1024
"""Largest workflow, system or compare file read; real models are a few kilobytes."""

MAX_CATALOG_FILE_BYTES = 64 * 1024 * 1024
"""Largest catalog file read (``cpus.parquet``, a price table, ``cpu-aliases.csv``).

The shipped catalog files are under 32 KB each, so the limit leaves room for catalogs of
many thousand rows and still stops a wrong file from being read into memory whole.
"""

_MAX_VALUES = 2_000_000
"""Largest number of values a document may expand to (YAML aliases can multiply them)."""

_MAX_DEPTH = 100
"""Deepest nesting of lists and mappings read; the file formats need fewer than ten."""

_UNION_TAGS = {"cpu-name", "cpu-inline"}

_KNOWN_FIELDS = sorted(
    {
        name if info.alias is None else info.alias
        for model in (
            Workflow,
            Stage,
            Edge,
            System,
            Device,
            Link,
            InlineCpu,
            Pricing,
            Requirements,
            Comparison,
        )
        for name, info in model.model_fields.items()
    }
)

ModelT = TypeVar("ModelT", bound=BaseModel)


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-3`` and ``6e6`` as numbers.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent, so
    ``1e-3`` would be read as a string; YAML 1.2 and JSON read it as a number.

    It also rejects nesting deeper than `_MAX_DEPTH`: PyYAML builds nodes recursively, and
    thousands of nested brackets would otherwise exhaust Python's stack.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, counting how deep it is nested."""
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"lists and mappings nest deeper than {_MAX_DEPTH} levels; check the brackets",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_unique_mapping(loader: _SafeLoader, node: yaml.MappingNode) -> Any:
    # A repeated key would silently replace the earlier value (a second `stages:`
    # block, say), so it is an error. Keys brought in by a merge (`<<`) may be
    # overridden, as YAML intends; only keys written in the mapping itself are compared.
    seen: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key_node.value!r}; keep one", key_node.start_mark
            )
        seen.add(key)
    yield from loader.construct_yaml_map(node)


_SafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)

# Only true and false are booleans, as in YAML 1.2: YAML 1.1 would read an id such as
# `no` or `on` as a boolean.
_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file into plain Python values.

    YAML is read with the safe loader, so no object is constructed from tags.

    Raises
    ------
    InputError
        When the file is missing, is a directory, is too large, is not UTF-8 or does not
        parse.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found; check the path", file=path)
    if path.is_dir():
        raise InputError("is a directory; expected a YAML or JSON file", file=path)
    raw = read_input_bytes(
        path,
        max_bytes=MAX_FILE_BYTES,
        hint="a workflow, system or compare file is normally a few kilobytes",
    )

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"is not valid UTF-8 (byte {exc.start}); save the file as UTF-8", file=path
        ) from exc
    if not text.strip():
        raise InputError("file is empty; expected a YAML or JSON document", file=path)

    try:
        if path.suffix.lower() == ".json":
            document = json.loads(text, parse_constant=_reject_constant)
        else:
            document = yaml.load(text, Loader=_SafeLoader)
    except RecursionError as exc:
        # Only the JSON decoder gets here: the YAML loader stops at _MAX_DEPTH levels.
        raise InputError(
            "is not valid JSON: lists and mappings nest too deeply to be read; check the brackets",
            file=path,
        ) from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file=path
        ) from exc
    except ValueError as exc:
        raise InputError(f"is not valid JSON: {exc}", file=path) from exc
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1} column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"is not valid YAML: {problem}{where}", file=path) from exc

    if document is None:
        raise InputError(
            "contains no data (only comments, blank lines or null); expected a YAML or "
            "JSON document",
            file=path,
        )
    _check_size(document, path)
    return document


def read_input_bytes(path: str | Path, *, max_bytes: int, hint: str) -> bytes:
    """Read an input file whole, after checking its size against `max_bytes`.

    The size is checked before reading, so an oversized file costs no memory. `hint`
    ends the message with what size the file is expected to have.

    Raises
    ------
    InputError
        When the file is larger than `max_bytes` or cannot be read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(
                f"file is {size:,} bytes, larger than the {max_bytes:,} bytes "
                f"({max_bytes / 2**20:g} MiB) accepted; check that this is the right file, "
                f"because {hint}",
                file=path,
            )
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", file=path) from exc


def load_workflow(path: str | Path) -> Workflow:
    """Read and validate a workflow file; docs/guide.md describes the format."""
    return parse_workflow(read_document(path), path)


def parse_workflow(document: Any, path: str | Path) -> Workflow:
    """Validate a parsed workflow document; errors name `path` as the file."""
    workflow = _validate(Workflow, document, path, kind="workflow", key="workflow")
    _check_workflow_graph(workflow, path)
    return workflow


def load_system(path: str | Path) -> System:
    """Read and validate a system file; docs/guide.md describes the format."""
    return parse_system(read_document(path), path)


def parse_system(document: Any, path: str | Path) -> System:
    """Validate a parsed system document; errors name `path` as the file."""
    system = _validate(System, document, path, kind="system", key="system")
    _check_system(system, path)
    return system


def load_compare_file(path: str | Path) -> list[Comparison]:
    """Read and validate a compare file: placements to estimate beside the candidates.

    The file has a top-level ``compare:`` list whose entries are written as under
    ``compare:`` in a system file, and an optional ``description``. Stages and devices
    are checked against a workflow and a system later, by `resolve_comparisons`.

    Raises
    ------
    InputError
        When the file cannot be read, has no ``compare`` key, or an entry is invalid.
    """
    document = read_document(path)
    if not isinstance(document, Mapping):
        raise InputError(
            "expected a mapping with a top-level 'compare' key (a compare file), "
            f"found {type(document).__name__}",
            file=path,
        )
    if "compare" not in document:
        hint = next(
            (
                f"; this looks like a {kind} file, check the order of the arguments"
                for kind in ("system", "workflow")
                if kind in document
            ),
            "",
        )
        raise InputError(
            "missing the top-level 'compare' key of a compare file, a list of named "
            "placements such as compare: [{name: current design, rest: edge}]" + hint,
            file=path,
        )
    try:
        return CompareFile.model_validate(document).compare
    except ValidationError as exc:
        raise _input_error_from(exc, path, CompareFile) from None


def resolve_comparisons(
    workflow: Workflow,
    system: System,
    comparisons: Iterable[Comparison],
    *,
    file: str | Path,
    field: str = "compare",
) -> list[tuple[str, list[str]]]:
    """Turn comparison placements into the device id of every stage.

    A stage listed in ``at`` runs on the device given there. A stage that may run on one
    device only (pinned, or a single allowed device) stays there when ``at`` does not
    list it. Every other stage runs on ``rest``.

    Parameters
    ----------
    workflow, system
        The models the placements refer to; `check_pair` has checked their pins.
    comparisons
        The entries, from a system's ``compare`` or from `load_compare_file`.
    file, field
        The file the entries come from and the field path of the list, for messages.

    Returns
    -------
    list of (str, list of str)
        Per entry, its name and the device id of every stage in workflow file order.

    Raises
    ------
    InputError
        For a repeated name, an unknown stage or device, or a device a stage may not run
        on (a pinned stage elsewhere than its pin included). Also for a stage that neither
        ``at`` nor ``rest`` places, and a ``rest`` device that a remaining stage may not
        run on.
    """
    comparisons = list(comparisons)
    device_ids = [device.id for device in system.devices]
    _check_comparisons(comparisons, system, file=file, field=field)
    stages = {stage.id: stage for stage in workflow.stages}
    devices_of = {stage.id: _devices_of(stage, device_ids) for stage in workflow.stages}

    resolved = []
    for i, comparison in enumerate(comparisons):
        where = f"{field}[{i}]"

        # Entries of `at`: a known stage, on a device it may run on.
        for stage_id, device_id in comparison.at.items():
            if stage_id not in stages:
                raise InputError(
                    f"names stage {stage_id!r}, which the workflow {workflow.workflow!r} does "
                    f"not have; known stages: {_listed(stages)}" + _did_you_mean(stage_id, stages),
                    file=file,
                    field=f"{where}.at.{stage_id}",
                )
            pin = stages[stage_id].pin
            if pin is not None and device_id != pin:
                raise InputError(
                    f"places stage {stage_id!r} on {device_id!r}, but the workflow pins it "
                    f"to {pin!r}; place it on {pin!r} or leave it out of at",
                    file=file,
                    field=f"{where}.at.{stage_id}",
                )
            if device_id not in devices_of[stage_id]:
                raise InputError(
                    f"places stage {stage_id!r} on {device_id!r}, which the stage may not "
                    f"run on; its allowed devices: {_listed(devices_of[stage_id])}",
                    file=file,
                    field=f"{where}.at.{stage_id}",
                )

        # Every other stage: its only device, or `rest`.
        placement = []
        missing = []
        for stage in workflow.stages:
            allowed = devices_of[stage.id]
            if stage.id in comparison.at:
                placement.append(comparison.at[stage.id])
            elif len(allowed) == 1:
                placement.append(allowed[0])
            elif comparison.rest is None:
                missing.append(stage.id)
            elif comparison.rest not in allowed:
                raise InputError(
                    f"puts stage {stage.id!r} on {comparison.rest!r}, which the stage may "
                    f"not run on (allowed: {_listed(allowed)}); list {stage.id!r} under at "
                    "with one of its allowed devices",
                    file=file,
                    field=f"{where}.rest",
                )
            else:
                placement.append(comparison.rest)
        if missing:
            noun = "stage" if len(missing) == 1 else "stages"
            raise InputError(
                f"does not place {noun} {_listed(missing)}; list them under at, or set rest "
                "to the device of every stage not listed",
                file=file,
                field=where,
            )
        resolved.append((comparison.name, placement))
    return resolved


def check_pair(
    workflow: Workflow,
    system: System,
    *,
    workflow_file: str | Path,
    system_file: str | Path = "<system>",
) -> None:
    """Check the references from a workflow to the devices of a system.

    Also checks the system's ``compare`` placements against the workflow (see
    `resolve_comparisons`).

    Raises
    ------
    InputError
        For a pin or an allowed device that the system does not have, or a ``compare``
        entry that does not place every stage on a device it may run on.
    """
    device_ids = [device.id for device in system.devices]
    known = set(device_ids)
    for i, stage in enumerate(workflow.stages):
        if stage.pin is not None and stage.pin not in known:
            raise InputError(
                f"pins the stage to device {stage.pin!r}, which the system "
                f"{system.system!r} does not have; known devices: {', '.join(device_ids)}"
                + _did_you_mean(stage.pin, device_ids),
                file=workflow_file,
                field=f"stages[{i}].pin",
            )
        for j, device_id in enumerate(stage.allowed or []):
            if device_id not in known:
                raise InputError(
                    f"allows device {device_id!r}, which the system {system.system!r} "
                    f"does not have; known devices: {', '.join(device_ids)}"
                    + _did_you_mean(device_id, device_ids),
                    file=workflow_file,
                    field=f"stages[{i}].allowed[{j}]",
                )
    resolve_comparisons(workflow, system, system.compare, file=system_file, field="compare")


def _devices_of(stage: Stage, device_ids: list[str]) -> list[str]:
    """Return the devices a stage may run on, in system order."""
    if stage.pin is not None:
        return [stage.pin]
    if stage.allowed is not None:
        return [device_id for device_id in device_ids if device_id in stage.allowed]
    return list(device_ids)


def _listed(names: Iterable[str], *, limit: int = 20) -> str:
    names = list(names)
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f" and {len(names) - limit} more"
    return text


def comparison_key(name: str) -> str:
    """Return the form in which two compared placements' names must differ.

    Case and repeated spaces are ignored, because names that differ only so would read
    as one in a report.
    """
    return " ".join(name.split()).casefold()


def _check_comparisons(
    comparisons: list[Comparison], system: System, *, file: str | Path, field: str
) -> None:
    """Check what a list of comparisons needs of the system alone: names and devices.

    Names are compared ignoring case and repeated spaces, because two rows that differ
    only so would read as one in a report. A name may not be that of a baseline, "all on
    <device id>", which the tool adds itself.
    """
    device_ids = [device.id for device in system.devices]
    known = set(device_ids)
    seen: dict[str, int] = {}
    baselines = {f"all on {device_id}".casefold() for device_id in device_ids}
    for i, comparison in enumerate(comparisons):
        where = f"{field}[{i}]"
        key = comparison_key(comparison.name)
        if key in seen:
            raise InputError(
                f"repeats the name of {field}[{seen[key]}] (names are compared ignoring case "
                "and repeated spaces); give every compared placement its own name",
                file=file,
                field=f"{where}.name",
                value=comparison.name,
                has_value=True,
            )
        if key in baselines:
            raise InputError(
                "is the name of a baseline that the tool adds itself; choose another name",
                file=file,
                field=f"{where}.name",
                value=comparison.name,
                has_value=True,
            )
        seen[key] = i

        named = [
            (f"{where}.at.{stage_id}", device_id) for stage_id, device_id in comparison.at.items()
        ]
        if comparison.rest is not None:
            named.append((f"{where}.rest", comparison.rest))
        for path, device_id in named:
            if device_id not in known:
                raise InputError(
                    f"names device {device_id!r}, which the system {system.system!r} does not "
                    f"have; known devices: {_listed(device_ids)}"
                    + _did_you_mean(device_id, device_ids),
                    file=file,
                    field=path,
                )


def _validate(
    model: type[ModelT], document: Any, path: str | Path, *, kind: str, key: str
) -> ModelT:
    if not isinstance(document, Mapping):
        raise InputError(
            f"expected a mapping with a top-level {key!r} key (a {kind} file), "
            f"found {type(document).__name__}",
            file=path,
        )
    if key not in document:
        other = "system" if key == "workflow" else "workflow"
        hint = (
            f"; this looks like a {other} file, check the order of the arguments"
            if other in document
            else ""
        )
        raise InputError(f"missing the top-level {key!r} key of a {kind} file{hint}", file=path)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise _input_error_from(exc, path, model) from None


def _input_error_from(
    exc: ValidationError, path: str | Path, model: type[BaseModel] | None = None
) -> InputError:
    """Turn the first pydantic error into an InputError with a readable field path.

    With the `model` that was validated, an unknown field is matched against the fields
    of the mapping it sits in, and those fields are listed.
    """
    errors = exc.errors(include_url=False)
    # An unknown field is often a misspelt required one: report it first, with a hint.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    error = errors[0]
    loc = [part for part in error["loc"] if part not in _UNION_TAGS]
    kind = error["type"]
    # An invalid mapping key (a stage id under compare[i].at) comes as [..., key, "[key]"].
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc = loc[:-2]
    field = _field_path(loc)

    if kind == "missing":
        parent = _field_path(loc[:-1])
        return InputError(
            f"missing required field {loc[-1]!r}; add it (see docs/guide.md, section 2)",
            file=path,
            field=parent or None,
        )
    if kind == "extra_forbidden":
        name = str(loc[-1])
        siblings = _fields_at(model, loc[:-1]) if model is not None else None
        hint = _did_you_mean(name, siblings or _KNOWN_FIELDS, style="brackets")
        listed = "" if siblings is None else f"; the fields here are {', '.join(siblings)}"
        return InputError(
            f"unknown field {name!r}{hint}; remove it or correct its name{listed}",
            file=path,
            field=_field_path(loc[:-1]) or None,
        )

    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "finite_number":
        message = "expected a finite number (not NaN or infinity)"
    elif kind == "string_pattern_mismatch":
        message = (
            "expected an id made of letters, digits, '_', '.' and '-' only, so that it is "
            "safe in file names, column names and charts"
        )
    return InputError(
        ("as a key, " if is_key else "") + _expected(message),
        file=path,
        field=field or None,
        value=error.get("input"),
        has_value=True,
    )


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """Return the field names of the mapping at `loc` inside `model`, or None if unknown.

    List indexes and mapping keys in `loc` step into the list's or mapping's values.
    """
    current: Any = model
    for part in loc:
        current = _plain(current)
        if _is_model(current):
            by_name = {
                (info.alias or name): info.annotation for name, info in current.model_fields.items()
            }
            if part not in by_name:
                return None
            current = by_name[part]
        elif get_origin(current) in (list, tuple, dict):
            current = _plain(get_args(current)[-1])
        else:
            return None
    current = _plain(current)
    if not _is_model(current):
        return None
    return [info.alias or name for name, info in current.model_fields.items()]


def _plain(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``| None`` from an annotation, and pick a union's one model."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            others = [a for a in get_args(annotation) if a is not type(None)]
            models = [a for a in others if _is_model(_plain(a))]
            if len(others) == 1:
                annotation = others[0]
            elif len(models) == 1:
                # A model or a scalar, such as an inline CPU or a catalog name.
                annotation = models[0]
            else:
                return annotation
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _expected(message: str) -> str:
    # Pydantic names the model class of a nested mapping; users write a mapping.
    message = re.sub(
        r"valid dictionary or instance of \w+", "mapping of keys to values, such as {a: 1}", message
    )
    lowered = message[0].lower() + message[1:]
    if lowered.startswith("input should be "):
        return "expected a value that is " + lowered[len("input should be ") :]
    return lowered


def _field_path(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _did_you_mean(name: str, candidates: Iterable[str], *, style: str = "clause") -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not matches:
        return ""
    if style == "brackets":
        return f" (did you mean {matches[0]!r}?)"
    return f"; did you mean {matches[0]!r}?"


def _check_size(document: Any, path: str | Path) -> None:
    """Raise unless the document expands to at most `_MAX_VALUES` values.

    Values are counted as a walk would visit them, so a subtree that aliases repeat is
    counted every time it appears (the expansion a validator would have to do). The count
    of each shared subtree is computed once, so a "billion laughs" document is rejected
    in time proportional to its size on disk, not to its expansion.
    """
    too_many = (
        f"expands to more than {_MAX_VALUES} values (through YAML anchors and aliases, or "
        "sheer size); a workflow or system has far fewer, so remove the repeated aliases"
    )
    counts: dict[int, int] = {}
    open_containers: set[int] = set()
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        item, children_counted = stack.pop()
        if not isinstance(item, Mapping | list) or id(item) in counts:
            continue
        children = list(item.values()) if isinstance(item, Mapping) else item
        if not children_counted:
            if id(item) in open_containers:
                # An alias inside the value it names: the expansion has no end.
                raise InputError(too_many, file=path)
            open_containers.add(id(item))
            stack.append((item, True))
            stack.extend((child, False) for child in children)
            continue
        total = 1 + sum(counts.get(id(child), 1) for child in children)
        if total > _MAX_VALUES:
            raise InputError(too_many, file=path)
        counts[id(item)] = total
        open_containers.discard(id(item))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows; write a finite number")


def _check_workflow_graph(workflow: Workflow, path: str | Path) -> None:
    index: dict[str, int] = {}
    for i, stage in enumerate(workflow.stages):
        if stage.pin is not None and stage.allowed is not None and stage.pin not in stage.allowed:
            raise InputError(
                f"does not contain the pinned device {stage.pin!r}; add it to allowed or "
                "drop pin or allowed",
                file=path,
                field=f"stages[{i}].allowed",
                value=stage.allowed,
                has_value=True,
            )
        if stage.id in index:
            raise InputError(
                f"duplicate stage id {stage.id!r} (also stages[{index[stage.id]}]); "
                "give every stage a unique id",
                file=path,
                field=f"stages[{i}].id",
            )
        index[stage.id] = i

    seen: dict[tuple[str, str], int] = {}
    for i, edge in enumerate(workflow.edges):
        for end, stage_id in (("from", edge.source), ("to", edge.target)):
            if stage_id not in index:
                raise InputError(
                    f"refers to stage {stage_id!r}, which is not defined"
                    + _did_you_mean(stage_id, index),
                    file=path,
                    field=f"edges[{i}].{end}",
                )
        if edge.source == edge.target:
            raise InputError(
                f"is a self-loop on stage {edge.source!r}; an edge joins two stages",
                file=path,
                field=f"edges[{i}]",
            )
        pair = (edge.source, edge.target)
        if pair in seen:
            raise InputError(
                f"repeats the edge {edge.source} -> {edge.target} (also edges[{seen[pair]}]); "
                "keep one edge per ordered pair and add the bytes",
                file=path,
                field=f"edges[{i}]",
            )
        seen[pair] = i

    cycle = _find_cycle(
        [s.id for s in workflow.stages], [(e.source, e.target) for e in workflow.edges]
    )
    if cycle:
        raise InputError(
            "the edges form a cycle: "
            + " -> ".join(cycle)
            + "; a workflow must be a directed acyclic graph",
            file=path,
            field="edges",
        )


def _find_cycle(nodes: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """Return one cycle as a closed list of node ids, or an empty list."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in edges:
        successors[source].append(target)
    state = dict.fromkeys(nodes, 0)  # 0 new, 1 on the stack, 2 done
    for root in nodes:
        if state[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(successors[node]):
                stack[-1] = (node, i + 1)
                child = successors[node][i]
                if state[child] == 1:
                    return [*path[path.index(child) :], child]
                if state[child] == 0:
                    state[child] = 1
                    stack.append((child, 0))
                    path.append(child)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return []


def _check_system(system: System, path: str | Path) -> None:
    if "monthly_cost_usd" in system.objectives and system.runs_per_month is None:
        raise InputError(
            "objective monthly_cost_usd needs runs_per_month; set runs_per_month",
            file=path,
            field=f"objectives[{system.objectives.index('monthly_cost_usd')}]",
        )
    requirements = system.requirements
    if requirements is not None and system.runs_per_month is None:
        if requirements.max_monthly_cost_usd is not None:
            raise InputError(
                "a monthly cost limit needs runs_per_month; set runs_per_month, or use "
                "max_cost_usd to limit the cost of one run",
                file=path,
                field="requirements.max_monthly_cost_usd",
            )
        if requirements.minimise == "monthly_cost_usd":
            raise InputError(
                "minimising monthly_cost_usd needs runs_per_month; set runs_per_month, or "
                "minimise cost_usd",
                file=path,
                field="requirements.minimise",
            )
    index: dict[str, int] = {}
    for i, device in enumerate(system.devices):
        if device.id in index:
            raise InputError(
                f"duplicate device id {device.id!r} (also devices[{index[device.id]}]); "
                "give every device a unique id",
                file=path,
                field=f"devices[{i}].id",
            )
        index[device.id] = i

    seen: dict[frozenset[str], int] = {}
    for i, link in enumerate(system.links):
        for j, device_id in enumerate(link.between):
            if device_id not in index:
                raise InputError(
                    f"refers to device {device_id!r}, which is not defined"
                    + _did_you_mean(device_id, index),
                    file=path,
                    field=f"links[{i}].between[{j}]",
                )
        pair = frozenset(link.between)
        if pair in seen:
            raise InputError(
                f"repeats the link between {link.between[0]} and {link.between[1]} "
                f"(also links[{seen[pair]}]); links are undirected, keep one",
                file=path,
                field=f"links[{i}]",
            )
        seen[pair] = i

    _check_comparisons(system.compare, system, file=path, field="compare")
