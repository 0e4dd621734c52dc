"""Studies files: validation with file, field path, value and fix, and fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

from allocation.cli import main
from allocation.errors import InputError
from allocation.studies import (
    fingerprint_study,
    load_studies,
    load_study_entry,
)
from tests.conftest import CATALOGS

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEM = CATALOGS / "systems" / "edge-cloud.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "studies.yaml"
    path.write_text(text, "utf-8")
    return path


def _study(extra: str = "") -> str:
    return f"studies:\n  - workflow: {WORKFLOW}\n    system: {SYSTEM}\n{extra}"


def test_example_studies_file_loads() -> None:
    studies = load_studies(CATALOGS / "studies.yaml")
    names = [entry.name for entry in studies.studies]
    assert names == ["object-detection--edge-cloud", "object-detection--edge-gateway-cloud"]
    assert studies.studies[0].catalog == CATALOGS.resolve()


def test_default_name_from_files(tmp_path: Path) -> None:
    studies = load_studies(_write(tmp_path, _study()))
    assert studies.studies[0].name == "object-detection--edge-cloud"


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ("    sweep: {method: fastest}\n", "studies[0].sweep.method", "auto, exhaustive or exact"),
        ("    sweep: {max_patterns: 0}\n", "studies[0].sweep.max_patterns", "whole number >= 1"),
        ("    sweep: {explain: [A-C]}\n", "studies[0].sweep.explain[0]", "separated by a colon"),
        ("    catalgo: .\n", "studies[0]", "unknown field 'catalgo'"),
        ("    catalog: nowhere\n", "studies[0].catalog", "folder not found"),
        ("    name: 'bad name'\n", "studies[0].name", "letters, digits"),
        (
            "    sweep: {requirements: {max_latency_s: -1}}\n",
            "studies[0].sweep.requirements.max_latency_s",
            "greater than 0",
        ),
    ],
)
def test_invalid_field_names_path_and_value(
    tmp_path: Path, extra: str, field: str, words: str
) -> None:
    path = _write(tmp_path, _study(extra))
    with pytest.raises(InputError) as caught:
        load_studies(path)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_missing_workflow_file(tmp_path: Path) -> None:
    path = _write(tmp_path, f"studies:\n  - workflow: missing.yaml\n    system: {SYSTEM}\n")
    with pytest.raises(InputError) as caught:
        load_studies(path)
    assert caught.value.field == "studies[0].workflow"
    assert caught.value.value == "missing.yaml"
    assert "relative path is taken from the folder of the studies file" in str(caught.value)


def test_duplicate_names_rejected(tmp_path: Path) -> None:
    body = f"  - workflow: {WORKFLOW}\n    system: {SYSTEM}\n"
    path = _write(tmp_path, "studies:\n" + body + body)
    with pytest.raises(InputError) as caught:
        load_studies(path)
    assert caught.value.field == "studies[1].name"
    assert "studies[0]" in str(caught.value)


def test_not_a_studies_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "workflow: x\n")
    with pytest.raises(InputError, match="top-level 'studies' list"):
        load_studies(path)


def test_cli_reevaluate_bad_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _study("    sweep: {method: fastest}\n"))
    out = tmp_path / "out"
    assert main(["reevaluate", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "studies[0].sweep.method" in error
    assert "'fastest'" in error
    assert "Traceback" not in error
    assert not out.exists()


def test_fingerprint_ignores_comments_and_unused_rows(tmp_path: Path) -> None:
    studies = load_studies(_write(tmp_path, _study()))
    entry = studies.studies[0]
    first = fingerprint_study(entry, load_study_entry(entry))

    # A comment in the system file and a copy of the catalog elsewhere change nothing.
    system = tmp_path / "system.yaml"
    system.write_text("# a comment\n" + SYSTEM.read_text("utf-8"), "utf-8")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for name in ("cpus.parquet", "prices.parquet", "cpu-aliases.csv"):
        (catalog / name).write_bytes((CATALOGS / name).read_bytes())
    path = tmp_path / "other.yaml"
    path.write_text(
        f"studies:\n  - workflow: {WORKFLOW}\n    system: {system}\n    catalog: {catalog}\n"
    )
    other_entry = load_studies(path).studies[0]
    second = fingerprint_study(other_entry, load_study_entry(other_entry))
    assert second.combined_sha256 == first.combined_sha256


def test_fingerprint_sees_sweep_options(tmp_path: Path) -> None:
    plain = load_studies(_write(tmp_path, _study())).studies[0]
    limited = load_studies(
        _write(tmp_path, _study("    sweep: {requirements: {max_latency_s: 5}}\n"))
    ).studies[0]
    a = fingerprint_study(plain, load_study_entry(plain))
    b = fingerprint_study(limited, load_study_entry(limited))
    assert b.changed_parts(a.sha256) == ["options"]


def test_status_line_says_none() -> None:
    from allocation.cli import _status_line
    from flows.reevaluate import StudyStatus

    status = StudyStatus("fork3", "changed", "out/fork3", diff_path="out/fork3/diff.md")
    assert _status_line(status) == (
        "fork3: changed, recommended none; changes in out/fork3/diff.md"
    )
    status.recommended = "A"
    assert _status_line(status).startswith("fork3: changed, recommended A;")


FORK_WORKFLOW = """\
workflow: fork3
measured_on: {name: Ref, single_thread: 1000, cores: 4}
stages:
  - {id: src, time_s: 0.1, pin: edge, memory_mb: 100}
  - {id: a, time_s: 1.0, memory_mb: 300}
  - {id: b, time_s: 0.5, memory_mb: 260}
edges:
  - {from: src, to: a, bytes: 1000000}
  - {from: src, to: b, bytes: 500000}
"""

FORK_SYSTEM = """\
system: sys3
devices:
  - {id: edge, memory_mb: EDGE_MB, cpu: {name: E, single_thread: 500, cores: 2}}
  - {id: gw, memory_mb: 400, cpu: {name: G, single_thread: 2000, cores: 2}}
links:
  - {between: [edge, gw], bandwidth_mbps: 10, latency_ms: 5}
"""


def write_fork_study(folder: Path, name: str, edge_mb: int) -> str:
    """Write a three-stage fork whose edge device offers `edge_mb`; return its entry.

    With 350 MB on the edge, no assignment fits: the edge has room for `src` but not
    for `a` or `b` beside it, and the gateway has no room for both.
    """
    (folder / f"{name}-workflow.yaml").write_text(FORK_WORKFLOW, "utf-8")
    system = FORK_SYSTEM.replace("EDGE_MB", str(edge_mb))
    (folder / f"{name}-system.yaml").write_text(system, "utf-8")
    return f"  - {{name: {name}, workflow: {name}-workflow.yaml, system: {name}-system.yaml}}\n"


def test_no_fitting_assignment_found_before_sweep(tmp_path: Path) -> None:
    path = _write(tmp_path, "studies:\n" + write_fork_study(tmp_path, "allinf", 350))
    entry = load_studies(path).studies[0]
    with pytest.raises(InputError) as caught:
        load_study_entry(entry)
    assert caught.value.file == str(entry.system)
    assert caught.value.field == "devices[0].memory_mb"
    assert "every one of the 4 assignments exceeds a device's memory limit" in str(caught.value)
    assert "device 'edge' (350 MB), exceeded by 3 assignments" in str(caught.value)

    # With room for one stage beside src on the edge, the check passes.
    path = _write(tmp_path, "studies:\n" + write_fork_study(tmp_path, "fits", 400))
    entry = load_studies(path).studies[0]
    assert load_study_entry(entry).problem.memory_bound_devices
