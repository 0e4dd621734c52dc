"""Placements given by the user (`compare:`), their errors, and the baseline table.

The workflow is the object-detection example (capture and display pinned to edge) on
the edge-cloud example system. Each error case checks that the message names the file,
the field and what to do.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from allocation.catalog import load_cpu_catalog
from allocation.compile import CompiledProblem, compile_problem
from allocation.errors import InputError
from allocation.estimate import evaluate_placements
from allocation.explain import placements_of
from allocation.loading import (
    load_compare_file,
    load_system,
    load_workflow,
    resolve_comparisons,
)
from allocation.model import Comparison, System, Workflow
from allocation.results import baseline_table, candidate_labels, front_table
from allocation.sweep import sweep_in_process
from tests.conftest import CATALOGS
from tests.problems import EMPTY_CATALOG
from tests.test_cli import EDGE_CLOUD, OBJECT_DETECTION, run_cli

STAGES = [
    "capture",
    "resize",
    "to_rgb",
    "to_chw",
    "to_float",
    "add_batch",
    "detect",
    "draw_boxes",
    "display",
]


@functools.cache
def models() -> tuple[Workflow, System]:
    return load_workflow(OBJECT_DETECTION), load_system(EDGE_CLOUD)


def write(tmp_path: Path, name: str, document: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


def resolve(entries: list[dict[str, Any]], workflow: Workflow | None = None) -> list:
    default_workflow, system = models()
    comparisons = [Comparison.model_validate(entry) for entry in entries]
    return resolve_comparisons(
        workflow or default_workflow, system, comparisons, file="cmp.yaml", field="compare"
    )


def resolve_error(entries: list[dict[str, Any]], workflow: Workflow | None = None) -> str:
    with pytest.raises(InputError) as info:
        resolve(entries, workflow)
    return str(info.value)


# ---------------------------------------------------------------------------
# Resolving placements


def test_rest_places_free_stages() -> None:
    [(name, devices)] = resolve([{"name": "current design", "rest": "cloud"}])

    assert name == "current design"
    assert devices == ["edge"] + ["cloud"] * 7 + ["edge"]


def test_at_overrides_rest() -> None:
    [(_, devices)] = resolve([{"name": "detect only", "at": {"detect": "cloud"}, "rest": "edge"}])

    assert devices == ["cloud" if s == "detect" else "edge" for s in STAGES]


def test_at_alone_places_every_free_stage() -> None:
    free = {stage: "cloud" for stage in STAGES[1:-1]}

    [(_, devices)] = resolve([{"name": "all free in the cloud", "at": free}])

    assert devices == ["edge"] + ["cloud"] * 7 + ["edge"]


def test_pinned_stage_on_its_pin_accepted() -> None:
    [(_, devices)] = resolve([{"name": "x", "at": {"capture": "edge"}, "rest": "edge"}])

    assert devices == ["edge"] * 9


def test_unknown_stage_suggests_name() -> None:
    message = resolve_error([{"name": "x", "at": {"detcet": "cloud"}, "rest": "edge"}])

    assert message.startswith("cmp.yaml: compare[0].at.detcet: ")
    assert "did you mean 'detect'?" in message


def test_unknown_device_suggests_name() -> None:
    message = resolve_error([{"name": "x", "at": {"detect": "clod"}, "rest": "edge"}])

    assert "compare[0].at.detect" in message
    assert "known devices: edge, cloud" in message
    assert "did you mean 'cloud'?" in message


def test_unknown_rest_device() -> None:
    message = resolve_error([{"name": "ok", "rest": "edge"}, {"name": "x", "rest": "gateway"}])

    assert "compare[1].rest" in message
    assert "'gateway'" in message


def test_pinned_stage_elsewhere() -> None:
    message = resolve_error([{"name": "x", "at": {"display": "cloud"}, "rest": "edge"}])

    assert "compare[0].at.display" in message
    assert "pins it to 'edge'" in message
    assert "leave it out of at" in message


def test_stage_not_allowed_lists_allowed() -> None:
    workflow, _ = models()
    stages = [
        stage.model_copy(update={"allowed": ["edge"]}) if stage.id == "resize" else stage
        for stage in workflow.stages
    ]
    restricted = workflow.model_copy(update={"stages": stages})

    message = resolve_error([{"name": "x", "at": {"resize": "cloud"}, "rest": "edge"}], restricted)

    assert "compare[0].at.resize" in message
    assert "allowed devices: edge" in message


def test_rest_not_allowed_tells_to_list_stage() -> None:
    cpu = {"name": "PC", "cores": 1, "single_thread": 100.0}
    workflow = Workflow.model_validate(
        {
            "workflow": "two",
            "measured_on": cpu,
            "stages": [
                {"id": "read", "time_s": 1.0},
                {"id": "filter", "time_s": 1.0, "allowed": ["edge", "gateway"]},
            ],
        }
    )
    system = System.model_validate(
        {
            "system": "three",
            "devices": [{"id": d, "cpu": cpu} for d in ("edge", "gateway", "cloud")],
        }
    )

    with pytest.raises(InputError) as info:
        resolve_comparisons(
            workflow, system, [Comparison(name="x", rest="cloud")], file="s.yaml", field="compare"
        )

    message = str(info.value)
    assert message.startswith("s.yaml: compare[0].rest: ")
    assert "stage 'filter'" in message
    assert "allowed: edge, gateway" in message
    assert "list 'filter' under at" in message


def test_stage_left_unplaced() -> None:
    message = resolve_error([{"name": "x", "at": {"detect": "cloud"}}])

    assert message.startswith("cmp.yaml: compare[0]: ")
    assert "does not place stages resize, to_rgb, to_chw, to_float, add_batch, draw_boxes" in (
        message
    )
    assert "set rest" in message


@pytest.mark.parametrize("second", ["current design", "Current  Design", "CURRENT DESIGN"])
def test_duplicate_names_rejected(second: str) -> None:
    message = resolve_error([{"name": "current design", "rest": "edge"}, {"name": second}])

    assert "compare[1].name" in message
    assert "compare[0]" in message


def test_baseline_name_rejected() -> None:
    message = resolve_error([{"name": "all on cloud", "rest": "cloud"}])

    assert "compare[0].name" in message
    assert "baseline" in message


# ---------------------------------------------------------------------------
# Compare files


def test_compare_file_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cmp.yaml",
        {
            "description": "Designs <b>in use</b>",
            "compare": [
                {"name": "Aktuelles Design <i>v1</i>", "rest": "edge"},
                {"name": "detect in the cloud", "at": {"detect": "cloud"}, "rest": "edge"},
            ],
        },
    )

    comparisons = load_compare_file(path)

    assert [c.name for c in comparisons] == ["Aktuelles Design <i>v1</i>", "detect in the cloud"]
    assert comparisons[1].at == {"detect": "cloud"}


def test_compare_file_json(tmp_path: Path) -> None:
    path = tmp_path / "cmp.json"
    path.write_text('{"compare": [{"name": "x", "rest": "edge"}]}')

    assert load_compare_file(path)[0].rest == "edge"


def test_compare_file_without_key(tmp_path: Path) -> None:
    path = write(tmp_path, "cmp.yaml", {"placements": [{"name": "x"}]})

    with pytest.raises(InputError) as info:
        load_compare_file(path)

    message = str(info.value)
    assert "cmp.yaml" in message
    assert "missing the top-level 'compare' key" in message


def test_system_file_as_compare_file() -> None:
    with pytest.raises(InputError) as info:
        load_compare_file(EDGE_CLOUD)

    assert "this looks like a system file" in str(info.value)


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": ""}, "compare[0].name"),
        ({"name": "   "}, "compare[0].name"),
        ({"name": "x" * 201}, "compare[0].name"),
        ({"name": "x", "at": {"bad id": "edge"}}, "compare[0].at"),
        ({"name": "x", "at": {"detect": 3}}, "compare[0].at.detect"),
        ({"name": "x", "at": ["detect"]}, "compare[0].at"),
    ],
)
def test_compare_file_invalid_entry(tmp_path: Path, entry: dict, field: str) -> None:
    path = write(tmp_path, "cmp.yaml", {"compare": [entry]})

    with pytest.raises(InputError) as info:
        load_compare_file(path)

    assert f"cmp.yaml: {field}: invalid value" in str(info.value)


def test_compare_file_misspelt_field(tmp_path: Path) -> None:
    path = write(tmp_path, "cmp.yaml", {"compare": [{"name": "x", "rets": "edge"}]})

    with pytest.raises(InputError) as info:
        load_compare_file(path)

    message = str(info.value)
    assert "compare[0]: unknown field 'rets'" in message
    assert "did you mean 'rest'?" in message


def test_compare_file_empty_list(tmp_path: Path) -> None:
    path = write(tmp_path, "cmp.yaml", {"compare": []})

    with pytest.raises(InputError) as info:
        load_compare_file(path)

    assert "cmp.yaml: compare" in str(info.value)


def test_compare_file_entries_resolve(tmp_path: Path) -> None:
    path = write(tmp_path, "cmp.yaml", {"compare": [{"name": "x", "at": {"detcet": "cloud"}}]})
    workflow, system = models()

    with pytest.raises(InputError) as info:
        resolve_comparisons(workflow, system, load_compare_file(path), file=path)

    assert f"{path}: compare[0].at.detcet" in str(info.value)


# ---------------------------------------------------------------------------
# compare: in the system file


def system_with_compare(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    document = yaml.safe_load(EDGE_CLOUD.read_text())
    document["compare"] = entries
    return write(tmp_path, "system.yaml", document)


def test_system_compare_unknown_device_on_load(tmp_path: Path) -> None:
    path = system_with_compare(tmp_path, [{"name": "x", "rest": "gateway"}])

    with pytest.raises(InputError) as info:
        load_system(path)

    assert "system.yaml: compare[0].rest" in str(info.value)


def test_system_compare_checked_with_workflow(tmp_path: Path) -> None:
    path = system_with_compare(tmp_path, [{"name": "x", "at": {"detcet": "cloud"}}])
    system = load_system(path)
    catalog = load_cpu_catalog(CATALOGS / "cpus.parquet")

    with pytest.raises(InputError) as info:
        compile_problem(
            load_workflow(OBJECT_DETECTION),
            system,
            catalog,
            workflow_file=OBJECT_DETECTION,
            system_file=path,
            catalog_dir=CATALOGS,
        )

    assert f"{path}: compare[0].at.detcet" in str(info.value)


def test_validate_reports_compare_error(tmp_path: Path) -> None:
    path = system_with_compare(tmp_path, [{"name": "x", "at": {"display": "cloud"}}])

    result = run_cli(
        "validate", str(OBJECT_DETECTION), str(path), "--catalog", str(CATALOGS), cwd=tmp_path
    )

    assert result.returncode == 2, result.stderr
    assert "compare[0].at.display" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------
# The baseline table with given placements


@functools.cache
def object_detection() -> tuple[CompiledProblem, pd.DataFrame]:
    workflow, system = models()
    problem = compile_problem(
        workflow,
        system,
        load_cpu_catalog(CATALOGS / "cpus.parquet"),
        catalog_dir=CATALOGS,
    )
    front, _ = sweep_in_process(problem)
    table = front_table(problem, front)
    table.insert(0, "label", candidate_labels(len(table)))
    return problem, table


def test_baselines_keep_old_call() -> None:
    problem, candidates = object_detection()

    table = baseline_table(problem, candidates, list(candidates["label"]))

    assert list(table["baseline"]) == ["all on edge", "all on cloud"]
    assert list(table["kind"]) == ["all on one device", "all on one device"]


def test_given_placements_evaluated() -> None:
    problem, candidates = object_detection()
    comparisons = resolve(
        [
            {"name": "detect in the cloud", "at": {"detect": "cloud"}, "rest": "edge"},
            {"name": "Entwurf <b>2</b>", "at": {"capture": "edge"}, "rest": "edge"},
        ]
    )

    table = baseline_table(problem, candidates, list(candidates["label"]), comparisons)

    assert list(table["baseline"]) == [
        "all on edge",
        "all on cloud",
        "detect in the cloud",
        "Entwurf <b>2</b>",
    ]
    assert list(table["kind"]) == ["all on one device"] * 2 + ["given"] * 2
    given = placements_of(problem, table.iloc[2:])
    expected = evaluate_placements(problem, given).metrics
    np.testing.assert_array_equal(table["latency_s"].iloc[2:], expected["latency_s"])
    np.testing.assert_array_equal(table["cost_usd"].iloc[2:], expected["cost_usd"])
    assert table["at_detect"].iloc[2] == "cloud"
    assert table["at_resize"].iloc[2] == "edge"


def test_given_equal_to_candidate_is_on_front() -> None:
    problem, candidates = object_detection()
    # The all-edge placement is the cheapest candidate (nothing billed), so it is on the front.
    comparisons = [("current design", ["edge"] * 9)]

    table = baseline_table(problem, candidates, list(candidates["label"]), comparisons)
    row = table.set_index("baseline").loc["current design"]

    assert bool(row["on_front"])
    assert row["candidate"] == candidates["label"].iloc[-1]
    assert pd.isna(row["dominated_by"])
    assert pd.isna(row["better_by_latency_s"])


def test_dominated_by_closest_in_latency() -> None:
    problem, candidates = object_detection()
    # detect in the cloud alone: about 7.5 s, dominated by candidates around it.
    comparisons = resolve(
        [{"name": "detect in the cloud", "at": {"detect": "cloud"}, "rest": "edge"}]
    )

    table = baseline_table(problem, candidates, list(candidates["label"]), comparisons)
    row = table.set_index("baseline").loc["detect in the cloud"]

    front_points = candidates[["latency_s", "cost_usd"]].to_numpy()
    point = np.array([row["latency_s"], row["cost_usd"]])
    dominating = [
        i
        for i in range(len(front_points))
        if (front_points[i] <= point).all() and (front_points[i] < point).any()
    ]
    assert dominating
    closest = min(dominating, key=lambda i: abs(front_points[i, 0] - point[0]))
    assert row["dominated_by"] == candidates["label"].iloc[closest]
    assert row["better_by_latency_s"] == pytest.approx(point[0] - front_points[closest, 0])
    assert row["better_by_cost_usd"] == pytest.approx(point[1] - front_points[closest, 1])
    assert row["better_by_latency_s"] >= 0
    assert row["better_by_cost_usd"] >= 0


def test_dominated_by_prefers_nearer_candidate() -> None:
    # Hand-made front: A (1 s, 0.002 USD), B (2 s, 0.0024 USD), C (3 s, 0.0005 USD).
    # The one-stage flow all on cloud takes 2.5 s for 0.0025 USD: A and B dominate it,
    # and B is nearer in latency.
    workflow = Workflow.model_validate(
        {
            "workflow": "one",
            "measured_on": {"name": "PC", "cores": 1, "single_thread": 100.0},
            "stages": [{"id": "work", "time_s": 2.5}],
        }
    )
    system = System.model_validate(
        {
            "system": "cloud",
            "devices": [
                {
                    "id": "cloud",
                    "cpu": {"name": "PC", "cores": 1, "single_thread": 100.0},
                    "pricing": {"provider": "flat", "usd_per_compute_s": 0.001},
                }
            ],
        }
    )
    problem = compile_problem(workflow, system, EMPTY_CATALOG)
    front = pd.DataFrame({"latency_s": [1.0, 2.0, 3.0], "cost_usd": [0.002, 0.0024, 0.0005]})

    table = baseline_table(problem, front, ["A", "B", "C"])

    assert table["dominated_by"].iloc[0] == "B"
    assert table["better_by_latency_s"].iloc[0] == pytest.approx(0.5)
    assert table["better_by_cost_usd"].iloc[0] == pytest.approx(0.0001)


def test_given_placement_off_allowed_rejected() -> None:
    problem, candidates = object_detection()

    with pytest.raises(ValueError, match="capture"):
        baseline_table(problem, candidates, list(candidates["label"]), [("x", ["cloud"] * 9)])
