"""Invalid workflow and system files, and errors that name the file, field and value.

Each case writes a real file under tmp_path, changes one thing in a valid document and
checks the `InputError` message. Checks that need both files and the devices' CPUs run
through `compile_problem`.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from allocation.compile import compile_problem
from allocation.errors import InputError
from allocation.loading import load_system, load_workflow
from allocation.model import System, Workflow
from tests.conftest import CATALOGS
from tests.problems import EMPTY_CATALOG

DELETE = object()
"""Value for `_edited` that removes the key instead of setting it."""

WORKFLOW: dict[str, Any] = {
    "workflow": "object-detection",
    "measured_on": {
        "name": "Reference PC",
        "cores": 8,
        "single_thread": 2800.0,
        "cpu_mark": 17000.0,
    },
    "stages": [
        {"id": "decode", "time_s": 0.95},
        {"id": "detect", "time_s": 2.5, "threads": 4, "score": "cpu_mark"},
        {"id": "draw", "time_s": 0.1},
    ],
    "edges": [
        {"from": "decode", "to": "detect", "bytes": 6220800},
        {"from": "detect", "to": "draw", "bytes": 2048},
    ],
}

SYSTEM: dict[str, Any] = {
    "system": "pi4-cloud",
    "devices": [
        {
            "id": "edge",
            "cpu": {
                "name": "Broadcom BCM2711",
                "cores": 4,
                "single_thread": 480.0,
                "cpu_mark": 1300.0,
            },
        },
        {
            "id": "cloud",
            "cpu": {"name": "Cloud vCPU", "cores": 2, "single_thread": 2500.0, "cpu_mark": 5000.0},
            "pricing": {"provider": "flat", "usd_per_compute_s": 3.3e-5, "usd_per_gb_out": 0.09},
        },
    ],
    "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 100.0, "latency_ms": 20.0}],
}


def _edited(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """Return a deep copy of `document` with the item at `path` set to `value`."""
    result = copy.deepcopy(document)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return result


def _write(directory: Path, name: str, document: Any) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _load_error(loader: Any, path: Path) -> str:
    with pytest.raises(InputError) as caught:
        loader(path)
    message = str(caught.value)
    assert path.name in message
    return message


@pytest.mark.parametrize(
    ("path", "value", "field", "shown"),
    [
        (("stages", 1, "time_s"), -0.5, "stages[1].time_s", "-0.5"),
        (("stages", 1, "time_s"), math.nan, "stages[1].time_s", "nan"),
        (("stages", 1, "time_s"), math.inf, "stages[1].time_s", "inf"),
        (("stages", 1, "time_s"), "fast", "stages[1].time_s", "'fast'"),
        (("stages", 1, "threads"), 0, "stages[1].threads", "0"),
        (("stages", 2, "score"), "cpu_mrk", "stages[2].score", "'cpu_mrk'"),
        (("stages", 0, "id"), "de code", "stages[0].id", "'de code'"),
        (("edges", 0, "bytes"), "6220800", "edges[0].bytes", "'6220800'"),
        (("edges", 1, "bytes"), -1, "edges[1].bytes", "-1"),
        (("edges", 1, "bytes"), 1.5, "edges[1].bytes", "1.5"),
    ],
    ids=[
        "negative_time",
        "nan_time",
        "infinite_time",
        "string_time",
        "zero_threads",
        "unknown_score",
        "id_with_space",
        "string_bytes",
        "negative_bytes",
        "fractional_bytes",
    ],
)
def test_workflow_invalid_value(
    tmp_path: Path, path: tuple[Any, ...], value: Any, field: str, shown: str
) -> None:
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, path, value))

    message = _load_error(load_workflow, file)

    assert f"{field}: " in message
    assert shown in message


@pytest.mark.parametrize(
    ("path", "value", "field", "shown"),
    [
        (("devices", 0, "cores"), 0, "devices[0].cores", "0"),
        (("links", 0, "bandwidth_mbps"), 0.0, "links[0].bandwidth_mbps", "0.0"),
        (("links", 0, "latency_ms"), -3.0, "links[0].latency_ms", "-3.0"),
        (("runs_per_month",), -10, "runs_per_month", "-10"),
        (("devices", 1, "cpu", "single_thread"), math.nan, "devices[1].cpu.single_thread", "nan"),
        (("objectives",), ["latency", "cost_usd"], "objectives[0]", "'latency'"),
    ],
    ids=[
        "zero_cores",
        "zero_bandwidth",
        "negative_latency",
        "negative_runs",
        "nan_cpu_figure",
        "unknown_objective",
    ],
)
def test_system_invalid_value(
    tmp_path: Path, path: tuple[Any, ...], value: Any, field: str, shown: str
) -> None:
    file = _write(tmp_path, "system.yaml", _edited(SYSTEM, path, value))

    message = _load_error(load_system, file)

    assert f"{field}: " in message
    assert shown in message


def test_unknown_field_suggests_name(tmp_path: Path) -> None:
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("stages", 1, "thread"), 4))

    message = _load_error(load_workflow, file)

    assert "stages[1]" in message
    assert "'thread'" in message
    assert "did you mean 'threads'" in message


def test_unknown_system_field_suggests_name(tmp_path: Path) -> None:
    file = _write(tmp_path, "system.yaml", _edited(SYSTEM, ("links", 0, "bandwidth"), 10.0))

    message = _load_error(load_system, file)

    assert "links[0]" in message
    assert "'bandwidth'" in message
    assert "did you mean 'bandwidth_mbps'" in message


def test_missing_field(tmp_path: Path) -> None:
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("stages", 1, "time_s"), DELETE))

    message = _load_error(load_workflow, file)

    assert "stages[1]" in message
    assert "'time_s'" in message
    assert "missing" in message


def test_missing_top_level_key(tmp_path: Path) -> None:
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("workflow",), DELETE))

    message = _load_error(load_workflow, file)

    assert "'workflow'" in message


def test_system_given_as_workflow(tmp_path: Path) -> None:
    file = _write(tmp_path, "system.yaml", SYSTEM)

    message = _load_error(load_workflow, file)

    assert "system file" in message


def test_duplicate_stage_id(tmp_path: Path) -> None:
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("stages", 2, "id"), "decode"))

    message = _load_error(load_workflow, file)

    assert "stages[2].id" in message
    assert "'decode'" in message
    assert "stages[0]" in message


def test_cycle(tmp_path: Path) -> None:
    edges = [*WORKFLOW["edges"], {"from": "draw", "to": "decode", "bytes": 1}]
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("edges",), edges))

    message = _load_error(load_workflow, file)

    assert "edges" in message
    assert "cycle" in message
    for stage_id in ("decode", "detect", "draw"):
        assert stage_id in message


def test_self_loop(tmp_path: Path) -> None:
    edges = [*WORKFLOW["edges"], {"from": "detect", "to": "detect", "bytes": 1}]
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("edges",), edges))

    message = _load_error(load_workflow, file)

    assert "edges[2]" in message
    assert "'detect'" in message
    assert "self-loop" in message


def test_repeated_edge(tmp_path: Path) -> None:
    edges = [*WORKFLOW["edges"], {"from": "decode", "to": "detect", "bytes": 1}]
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("edges",), edges))

    message = _load_error(load_workflow, file)

    assert "edges[2]" in message
    assert "edges[0]" in message


def test_edge_to_unknown_stage(tmp_path: Path) -> None:
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("edges", 1, "to"), "drawing"))

    message = _load_error(load_workflow, file)

    assert "edges[1].to" in message
    assert "'drawing'" in message
    assert "did you mean 'draw'" in message


def test_duplicate_device_id(tmp_path: Path) -> None:
    file = _write(tmp_path, "system.yaml", _edited(SYSTEM, ("devices", 1, "id"), "edge"))

    message = _load_error(load_system, file)

    assert "devices[1].id" in message
    assert "'edge'" in message
    assert "devices[0]" in message


def test_link_to_unknown_device(tmp_path: Path) -> None:
    file = _write(
        tmp_path, "system.yaml", _edited(SYSTEM, ("links", 0, "between"), ["edge", "clod"])
    )

    message = _load_error(load_system, file)

    assert "links[0].between[1]" in message
    assert "'clod'" in message
    assert "did you mean 'cloud'" in message


def test_link_to_same_device(tmp_path: Path) -> None:
    file = _write(
        tmp_path, "system.yaml", _edited(SYSTEM, ("links", 0, "between"), ["edge", "edge"])
    )

    message = _load_error(load_system, file)

    assert "links[0].between" in message
    assert "'edge'" in message


def test_empty_file(tmp_path: Path) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text("  \n", encoding="utf-8")

    message = _load_error(load_workflow, file)

    assert "empty" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    file = tmp_path / "flow.yaml"
    file.write_bytes(b"workflow: d\xe9mo\n")

    message = _load_error(load_workflow, file)

    assert "UTF-8" in message


def test_directory(tmp_path: Path) -> None:
    directory = tmp_path / "flow.yaml"
    directory.mkdir()

    message = _load_error(load_workflow, directory)

    assert "directory" in message


def test_missing_file(tmp_path: Path) -> None:
    message = _load_error(load_workflow, tmp_path / "absent.yaml")

    assert "not found" in message


def test_top_level_list(tmp_path: Path) -> None:
    file = _write(tmp_path, "flow.yaml", [WORKFLOW])

    message = _load_error(load_workflow, file)

    assert "mapping" in message


def test_yaml_syntax_error(tmp_path: Path) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text("workflow: demo\nstages: [\n", encoding="utf-8")

    message = _load_error(load_workflow, file)

    assert "YAML" in message
    assert "line" in message


def test_alias_expansion_rejected(tmp_path: Path) -> None:
    # Nine levels of lists, each repeating the level below nine times. A few hundred
    # bytes of YAML expand to 9**9 (about 387 million) values.
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines.append("workflow: [*l8]")
    file = tmp_path / "flow.yaml"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    message = _load_error(load_workflow, file)

    assert "expands" in message


def test_recursive_alias_rejected(tmp_path: Path) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text("workflow: &loop [*loop]\n", encoding="utf-8")

    message = _load_error(load_workflow, file)

    assert "expands" in message


def test_whole_float_bytes_accepted(tmp_path: Path) -> None:
    file = _write(tmp_path, "flow.yaml", _edited(WORKFLOW, ("edges", 0, "bytes"), 6.2208e6))

    workflow = load_workflow(file)

    assert workflow.edges[0].bytes == 6220800


def test_exponent_without_dot_is_number(tmp_path: Path) -> None:
    # YAML 1.2 and JSON read 1e-3 and 6e6 as numbers. PyYAML's YAML 1.1 resolver needs
    # a dot in the mantissa and would hand the validator the strings "1e-3" and "6e6".
    text = yaml.safe_dump(WORKFLOW, sort_keys=False)
    text = text.replace("time_s: 0.1", "time_s: 1e-3").replace("bytes: 2048", "bytes: 6e6")
    file = tmp_path / "flow.yaml"
    file.write_text(text, encoding="utf-8")

    workflow = load_workflow(file)

    assert workflow.stages[2].time_s == 0.001
    assert workflow.edges[1].bytes == 6_000_000


def test_json_accepted(tmp_path: Path) -> None:
    json_file = tmp_path / "flow.json"
    json_file.write_text(json.dumps(WORKFLOW), encoding="utf-8")
    system_file = tmp_path / "system.json"
    system_file.write_text(json.dumps(SYSTEM), encoding="utf-8")

    workflow = load_workflow(json_file)
    system = load_system(system_file)

    assert workflow == Workflow.model_validate(WORKFLOW)
    assert system == System.model_validate(SYSTEM)


def test_json_nan_rejected(tmp_path: Path) -> None:
    file = tmp_path / "flow.json"
    file.write_text(
        json.dumps(_edited(WORKFLOW, ("stages", 0, "time_s"), math.nan)), encoding="utf-8"
    )

    message = _load_error(load_workflow, file)

    assert "NaN" in message


def test_json_invalid_value(tmp_path: Path) -> None:
    file = tmp_path / "flow.json"
    file.write_text(json.dumps(_edited(WORKFLOW, ("stages", 2, "time_s"), -2)), encoding="utf-8")

    message = _load_error(load_workflow, file)

    assert "stages[2].time_s" in message
    assert "-2" in message


def _compile_error(tmp_path: Path, workflow: dict[str, Any], system: dict[str, Any]) -> str:
    workflow_file = _write(tmp_path, "flow.yaml", workflow)
    system_file = _write(tmp_path, "system.yaml", system)
    with pytest.raises(InputError) as caught:
        compile_problem(
            load_workflow(workflow_file),
            load_system(system_file),
            EMPTY_CATALOG,
            workflow_file=workflow_file,
            system_file=system_file,
        )
    return str(caught.value)


def test_valid_pair_compiles(tmp_path: Path) -> None:
    workflow_file = _write(tmp_path, "flow.yaml", WORKFLOW)
    system_file = _write(tmp_path, "system.yaml", SYSTEM)

    problem = compile_problem(load_workflow(workflow_file), load_system(system_file), EMPTY_CATALOG)

    assert problem.space_size == 8


def test_pin_to_unknown_device(tmp_path: Path) -> None:
    workflow = _edited(WORKFLOW, ("stages", 0, "pin"), "cluod")

    message = _compile_error(tmp_path, workflow, SYSTEM)

    assert "flow.yaml" in message
    assert "stages[0].pin" in message
    assert "'cluod'" in message
    assert "did you mean 'cloud'" in message


def test_allowed_unknown_device(tmp_path: Path) -> None:
    workflow = _edited(WORKFLOW, ("stages", 2, "allowed"), ["edge", "gateway"])

    message = _compile_error(tmp_path, workflow, SYSTEM)

    assert "flow.yaml" in message
    assert "stages[2].allowed[1]" in message
    assert "'gateway'" in message


def test_pin_outside_allowed(tmp_path: Path) -> None:
    document = _edited(WORKFLOW, ("stages", 1, "allowed"), ["edge"])
    file = _write(tmp_path, "flow.yaml", _edited(document, ("stages", 1, "pin"), "cloud"))

    message = _load_error(load_workflow, file)

    assert "stages[1]" in message
    assert "'cloud'" in message


def test_missing_link_names_devices(tmp_path: Path) -> None:
    gateway = {
        "id": "gateway",
        "cpu": {"name": "Gateway CPU", "cores": 4, "single_thread": 1500.0, "cpu_mark": 6000.0},
    }
    system = _edited(SYSTEM, ("devices",), [*SYSTEM["devices"], gateway])
    system["links"].append({"between": ["edge", "gateway"], "bandwidth_mbps": 300.0})

    message = _compile_error(tmp_path, WORKFLOW, system)

    assert "system.yaml" in message
    assert "links" in message
    assert "'gateway'" in message
    assert "'cloud'" in message


def test_partial_mesh_enough(tmp_path: Path) -> None:
    # Decode and draw are pinned to the edge, so every edge of the flow has one end on
    # the edge device and no assignment needs the missing gateway-cloud link.
    gateway = {
        "id": "gateway",
        "cpu": {"name": "Gateway CPU", "cores": 4, "single_thread": 1500.0, "cpu_mark": 6000.0},
    }
    system = _edited(SYSTEM, ("devices",), [*SYSTEM["devices"], gateway])
    system["links"].append({"between": ["edge", "gateway"], "bandwidth_mbps": 300.0})
    workflow = _edited(WORKFLOW, ("stages", 0, "pin"), "edge")
    workflow = _edited(workflow, ("stages", 2, "pin"), "edge")
    workflow_file = _write(tmp_path, "flow.yaml", workflow)
    system_file = _write(tmp_path, "system.yaml", system)

    problem = compile_problem(load_workflow(workflow_file), load_system(system_file), EMPTY_CATALOG)

    assert problem.space_size == 3


def test_device_cpu_lacks_figure(tmp_path: Path) -> None:
    system = _edited(SYSTEM, ("devices", 1, "cpu", "cpu_mark"), DELETE)

    message = _compile_error(tmp_path, WORKFLOW, system)

    assert "system.yaml" in message
    assert "devices[1].cpu" in message
    assert "cpu_mark" in message
    assert "'detect'" in message


def test_reference_cpu_lacks_figure(tmp_path: Path) -> None:
    workflow = _edited(WORKFLOW, ("stages", 2, "score"), "integer_math")

    message = _compile_error(tmp_path, workflow, SYSTEM)

    assert "flow.yaml" in message
    assert "stages[2].score" in message
    assert "integer_math" in message


def test_unknown_pricing_provider(tmp_path: Path) -> None:
    system = _edited(SYSTEM, ("devices", 1, "pricing", "provider"), "flatrate")

    message = _compile_error(tmp_path, WORKFLOW, system)

    assert "system.yaml" in message
    assert "devices[1].pricing.provider" in message
    assert "'flatrate'" in message
    assert "flat" in message


def test_negative_flat_rate(tmp_path: Path) -> None:
    system = _edited(SYSTEM, ("devices", 1, "pricing", "usd_per_gb_out"), -0.09)

    message = _compile_error(tmp_path, WORKFLOW, system)

    assert "system.yaml" in message
    assert "devices[1].pricing.usd_per_gb_out" in message
    assert "-0.09" in message


def test_unknown_catalog_cpu(tmp_path: Path) -> None:
    system = _edited(SYSTEM, ("devices", 0, "cpu"), "Broadcom BCM2712")

    message = _compile_error(tmp_path, WORKFLOW, system)

    assert "system.yaml" in message
    assert "devices[0].cpu" in message
    assert "'Broadcom BCM2712'" in message


def test_unknown_field_hint_from_its_mapping(tmp_path: Path) -> None:
    """A misspelt field is matched against the fields of the mapping it sits in."""
    text = (CATALOGS / "systems" / "edge-cloud.yaml").read_text("utf-8")
    path = tmp_path / "system.yaml"
    path.write_text(text + "contention: {frames: 2}\n", "utf-8")

    with pytest.raises(InputError) as caught:
        load_system(path)

    message = str(caught.value)
    assert "contention: unknown field 'frames'" in message
    assert "did you mean" not in message
    assert "the fields here are cpu, links, concurrent_frames" in message


def test_error_values_in_file_spelling(tmp_path: Path) -> None:
    text = (CATALOGS / "systems" / "edge-cloud.yaml").read_text("utf-8")
    path = tmp_path / "system.yaml"
    path.write_text(text + "contention: {concurrent_frames: true}\n", "utf-8")

    with pytest.raises(InputError) as caught:
        load_system(path)

    assert "contention.concurrent_frames: invalid value true:" in str(caught.value)
