"""Input rules found by running the tool as a user: YAML details and field paths."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from allocation.catalog import load_cpu_catalog
from allocation.errors import InputError
from allocation.loading import load_system, load_workflow
from tests.conftest import CATALOGS
from tests.test_cli import EDGE_CLOUD, OBJECT_DETECTION, run_cli

WORKFLOW = """\
workflow: w
measured_on: {name: ref, cores: 2, single_thread: 100}
stages:
  - {id: a, time_s: 1, pin: edge, allowed: [cloud]}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_duplicate_key_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "w.yaml", "workflow: a\nworkflow: b\n" + WORKFLOW.split("\n", 1)[1])
    with pytest.raises(InputError) as info:
        load_workflow(path)
    assert "duplicate key 'workflow'" in str(info.value)
    assert "line 2" in str(info.value)


def test_yaml_no_is_a_string(tmp_path: Path) -> None:
    text = WORKFLOW.replace(
        "{id: a, time_s: 1, pin: edge, allowed: [cloud]}", "{id: no, time_s: 1}"
    )
    workflow = load_workflow(write(tmp_path, "w.yaml", text))
    assert workflow.stages[0].id == "no"


def test_pin_outside_allowed_names_field(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_workflow(write(tmp_path, "w.yaml", WORKFLOW))
    message = str(info.value)
    assert "stages[0].allowed" in message
    assert "'edge'" in message


def test_monthly_objective_needs_runs(tmp_path: Path) -> None:
    text = EDGE_CLOUD.read_text().replace(
        "runs_per_month: 100000", "objectives: [latency_s, monthly_cost_usd]"
    )
    with pytest.raises(InputError) as info:
        load_system(write(tmp_path, "s.yaml", text))
    assert "objectives[1]" in str(info.value)
    assert "runs_per_month" in str(info.value)


def test_catalog_written_by_pandas_loads(tmp_path: Path) -> None:
    table = pq.read_table(CATALOGS / "cpus.parquet").to_pandas()
    table.to_parquet(tmp_path / "cpus.parquet")
    catalog = load_cpu_catalog(tmp_path / "cpus.parquet")
    assert len(catalog.cpus) == len(table)


def test_out_naming_a_file_exit_2(tmp_path: Path) -> None:
    target = write(tmp_path, "afile", "x")
    result = run_cli(
        "sweep",
        str(OBJECT_DETECTION),
        str(EDGE_CLOUD),
        "--catalog",
        str(CATALOGS),
        "--out",
        str(target),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--out" in result.stderr
    assert "names an existing file" in result.stderr
    assert target.read_text() == "x"


def test_late_input_error_exit_2_repeatedly(tmp_path: Path) -> None:
    # An error raised after the CPU catalog is read must exit 2 every time.
    bad = write(
        tmp_path, "w.yaml", OBJECT_DETECTION.read_text().replace("pin: edge", "pin: edgy", 1)
    )
    for _ in range(5):
        result = run_cli(
            "sweep", str(bad), str(EDGE_CLOUD), "--catalog", str(CATALOGS), cwd=tmp_path
        )
        assert result.returncode == 2, result.stderr
        assert "stages[0].pin" in result.stderr


def test_huge_stage_time_is_invalid(tmp_path: Path) -> None:
    text = WORKFLOW.replace(
        "{id: a, time_s: 1, pin: edge, allowed: [cloud]}", "{id: a, time_s: 1.5e+308}"
    )
    with pytest.raises(InputError) as info:
        load_workflow(write(tmp_path, "w.yaml", text))
    assert "stages[0].time_s" in str(info.value)
    assert "less than or equal to 1000000000" in str(info.value)
