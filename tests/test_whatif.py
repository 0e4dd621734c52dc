"""`allocation whatif` on the object-detection example over 1 to 1000 Mbit/s."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from allocation.catalog import load_cpu_catalog
from allocation.cli import main
from allocation.cli_calibrate import join_negative_range
from allocation.compile import compile_problem
from allocation.errors import InputError
from allocation.estimate import evaluate_chunk
from allocation.loading import read_document
from allocation.model import System, Workflow
from allocation.reference import reference_front
from allocation.whatif import Change, Point, WhatIf, apply_parameter, run_what_if
from allocation.whatif_report import report_markdown

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = ROOT / "catalogs"
WORKFLOW = CATALOGS / "workflows/object-detection.yaml"
SYSTEM = CATALOGS / "systems/edge-cloud.yaml"
PARAMETER = "links[0].bandwidth_mbps"


@functools.cache
def _sweep() -> WhatIf:
    return run_what_if(
        read_document(WORKFLOW),
        read_document(SYSTEM),
        load_cpu_catalog(CATALOGS / "cpus.parquet"),
        PARAMETER,
        1.0,
        1000.0,
        steps=13,
        log=True,
        tolerance=1e-4,
        catalog_dir=CATALOGS,
    )


def _exhaustive_front(bandwidth_mbps: float) -> frozenset[tuple[int, ...]]:
    """Estimate all 128 assignments and filter them with the slow reference front."""
    catalog = load_cpu_catalog(CATALOGS / "cpus.parquet")
    workflow_doc, system_doc = apply_parameter(
        read_document(WORKFLOW), read_document(SYSTEM), PARAMETER, bandwidth_mbps, catalog
    )
    system = System.model_validate(system_doc)
    problem = compile_problem(
        Workflow.model_validate(workflow_doc), system, catalog, catalog_dir=CATALOGS
    )
    evaluation = evaluate_chunk(problem, 0, problem.space_size)
    points = np.column_stack(
        [evaluation.metrics[name].astype(float) for name in problem.objectives]
    ).tolist()
    rows = [row for row, _ in reference_front(points)]
    return frozenset(tuple(int(d) for d in evaluation.placements[row]) for row in rows)


def test_crossovers_found() -> None:
    result = _sweep()
    kinds = {change.kind for change in result.changes}

    assert kinds == {"front", "recommended"}
    values = [change.value for change in result.changes]
    assert values == sorted(values)
    for change in result.changes:
        assert change.above.value - change.below.value <= 1e-4 * change.above.value


def test_crossovers_match_exhaustive_sweep() -> None:
    for change in _sweep().changes:
        below = _exhaustive_front(change.below.value)
        above = _exhaustive_front(change.above.value)
        where = f"{change.kind} change at {change.value:.6g} Mbit/s"
        assert below == change.below.front, where
        assert above == change.above.front, where
        if change.kind == "front":
            assert below != above, where
        else:
            assert change.below.recommended in below, where
            assert change.above.recommended in above, where
            assert change.below.recommended != change.above.recommended, where


def test_whatif_command_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "whatif"
    code = main(
        [
            "whatif",
            str(WORKFLOW),
            str(SYSTEM),
            "--param",
            "edges.*.bytes",
            "--range",
            "0.5:2",
            "--steps",
            "3",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "chart.html",
        "chart.png",
        "curves.parquet",
        "report.md",
    ]
    assert "# What if edges.*.bytes changes" in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--param", "links[0].colour", "--range", "1:2"], "--param: invalid value"),
        (["--param", "links[5].bandwidth_mbps", "--range", "1:2"], "neither an index below 1"),
        (["--param", PARAMETER, "--range", "5:1"], "--range: invalid value '5:1'"),
        (["--param", PARAMETER, "--range", "0:10", "--log"], "with --log the range must be"),
        (["--param", PARAMETER, "--range", "0:10"], "give a range inside the field's limits"),
        (["--param", PARAMETER, "--range", "-5:10"], "greater than 0"),
        (["--param", "devices[edge].cores", "--range", "1:4.5"], "takes whole numbers only"),
    ],
    ids=[
        "unknown-field",
        "unknown-link",
        "reversed-range",
        "log-from-zero",
        "invalid-value",
        "negative-start",
        "fractional-cores",
    ],
)
def test_whatif_invalid_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], expected: str
) -> None:
    out = tmp_path / "whatif"
    code = main(["whatif", str(WORKFLOW), str(SYSTEM), *arguments, "--out", str(out)])

    assert code == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def _vary(parameter: str, low: float, high: float, *, steps: int = 4) -> WhatIf:
    return run_what_if(
        read_document(WORKFLOW),
        read_document(SYSTEM),
        load_cpu_catalog(CATALOGS / "cpus.parquet"),
        parameter,
        low,
        high,
        steps=steps,
        catalog_dir=CATALOGS,
        workflow_file=WORKFLOW,
        system_file=SYSTEM,
    )


def test_cores_evaluated_at_whole_values() -> None:
    result = _vary("devices[cloud].cores", 1, 12)

    assert result.whole_numbers
    assert [point.value for point in result.grid] == [1, 5, 8, 12]
    assert result.changes
    for change in result.changes:
        assert change.below.value.is_integer()
        assert change.above.value.is_integer()
        assert change.above.value - change.below.value == 1
    assert set(result.curves["value"]) == {1, 5, 8, 12}


def test_whole_number_pricing_option_rejects_fraction() -> None:
    with pytest.raises(InputError, match="takes whole numbers only"):
        _vary("devices[cloud].pricing.memory_mb", 1024, 3453.56)


@pytest.mark.parametrize(
    ("parameter", "low", "field", "rule"),
    [
        ("devices[cloud].pricing.memory_mb", 100, "devices[1].pricing.memory_mb", "128 to 10240"),
        ("links[0].bandwidth_mbps", -5, "links[0].bandwidth_mbps", "greater than 0"),
        ("devices[cloud].cpu.single_thread", -1, "devices[1].cpu.single_thread", "greater than 0"),
    ],
    ids=["provider-option", "model-bound", "score"],
)
def test_out_of_range_names_file_and_rule(
    parameter: str, low: float, field: str, rule: str
) -> None:
    with pytest.raises(InputError) as caught:
        _vary(parameter, low, 4000)
    message = str(caught.value)

    assert message.startswith(f"command line: --range: invalid value '{low:g}:4000'")
    assert f"{field} in {SYSTEM}" in message
    assert rule in message
    assert "<system>" not in message
    assert "Input should" not in message


def test_join_negative_range() -> None:
    assert join_negative_range(["whatif", "--range", "-5:10", "--log"]) == [
        "whatif",
        "--range=-5:10",
        "--log",
    ]
    assert join_negative_range(["whatif", "--range", "1:10"]) == ["whatif", "--range", "1:10"]
    assert join_negative_range(["whatif", "--range", "-.5:1"]) == ["whatif", "--range=-.5:1"]


def test_report_names_recommended_change() -> None:
    below = Point(1.0, frozenset({(0, 0), (0, 1)}), (0, 0), {})
    above = Point(2.0, frozenset({(0, 0), (0, 1)}), (0, 1), {})
    result = WhatIf(
        "links[0].bandwidth_mbps",
        [below, above],
        [Change("recommended", below, above)],
        ("decode", "detect"),
        ("edge", "cloud"),
    )
    report = report_markdown(result)

    assert "recommended: recommended" not in report
    assert "the recommended candidate changes from all on edge to edge[decode] cloud[detect]" in (
        report
    )
    assert "| value | front size | recommended candidate |" in report


def test_curves_carry_every_objective() -> None:
    system = read_document(SYSTEM)
    system["objectives"] = ["latency_s", "cost_usd", "period_s"]
    result = run_what_if(
        read_document(WORKFLOW),
        system,
        load_cpu_catalog(CATALOGS / "cpus.parquet"),
        PARAMETER,
        10.0,
        100.0,
        steps=2,
        log=False,
        tolerance=1e-2,
        catalog_dir=CATALOGS,
    )

    columns = list(result.curves.columns)
    assert columns[:6] == [
        "value",
        "candidate",
        "latency_s",
        "cost_usd",
        "period_s",
        "throughput_fps",
    ]
    assert (result.curves["throughput_fps"] * result.curves["period_s"]).round(12).eq(1).all()
