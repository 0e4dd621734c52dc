"""The command line, run as a user runs it: a subprocess with real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CATALOGS, REPO

OBJECT_DETECTION = CATALOGS / "workflows" / "object-detection.yaml"
EDGE_CLOUD = CATALOGS / "systems" / "edge-cloud.yaml"


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "allocation.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_validate_examples_ok(tmp_path: Path) -> None:
    result = run_cli(
        "validate", str(OBJECT_DETECTION), str(EDGE_CLOUD), "--catalog", str(CATALOGS), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "128 assignments" in result.stdout


def test_validate_bad_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "workflow: w\nmeasured_on: {name: ref, cores: 2, single_thread: 100}\n"
        "stages:\n  - {id: a, time_s: 1}\n  - {id: b, time_s: -0.5}\n"
    )
    result = run_cli("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr
    assert "stages[1].time_s" in result.stderr
    assert "-0.5" in result.stderr
    assert "Traceback" not in result.stderr


def test_sweep_invalid_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "system.yaml"
    bad.write_text(EDGE_CLOUD.read_text().replace("bandwidth_mbps: 100", "bandwidth_mbps: 0"))
    out = tmp_path / "out"
    result = run_cli(
        "sweep",
        str(OBJECT_DETECTION),
        str(bad),
        "--catalog",
        str(CATALOGS),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "system.yaml" in result.stderr
    assert "links[0].bandwidth_mbps" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_sweep_unknown_provider_lists_installed(tmp_path: Path) -> None:
    bad = tmp_path / "system.yaml"
    bad.write_text(EDGE_CLOUD.read_text().replace("provider: aws-lambda", "provider: aws-lamda"))
    result = run_cli(
        "sweep", str(OBJECT_DETECTION), str(bad), "--catalog", str(CATALOGS), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "'aws-lamda'" in result.stderr
    assert "devices[1].pricing.provider" in result.stderr
    installed = result.stderr.split("installed providers: ")[1]
    assert "aws-lambda" in installed
    assert "flat" in installed


def test_readme_names_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    assert "uv run allocation sweep catalogs/workflows/object-detection.yaml" in text
    assert "uv run pytest" in text


@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"], ["validate", "--help"]])
def test_help_exits_zero(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0
    assert "usage" in result.stdout


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--max-latency-s", "-1"], ["--max-latency-s", "'-1'", ">= 0"]),
        (["--max-cost-usd", "nan"], ["--max-cost-usd", "'nan'", "finite"]),
        (["--max-latency-s", "0"], ["--max-latency-s", "greater than 0"]),
        (["--explain", "A"], ["--explain", "separated by a colon"]),
        (["--explain", "A:A"], ["--explain", "twice"]),
        (["--share-url", "javascript:alert(1)"], ["--share-url", "javascript:alert(1)", "http"]),
        (["--share-url", "http://"], ["--share-url", "no host name"]),
        (["--share-url", "https://me:secret@h.example/"], ["user name or password", "//***@"]),
        (["--minimise", "speed"], ["--minimise", "speed"]),
    ],
)
def test_sweep_bad_explain_options_exit_2(
    tmp_path: Path, options: list[str], words: list[str]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "sweep", str(OBJECT_DETECTION), str(EDGE_CLOUD), "--out", str(out), *options, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    for word in words:
        assert word in result.stderr
    assert "secret" not in result.stderr  # a password in --share-url is masked
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "option", [["--max-monthly-cost-usd", "10"], ["--minimise", "monthly_cost_usd"]]
)
def test_sweep_monthly_options_need_runs_per_month(tmp_path: Path, option: list[str]) -> None:
    system = tmp_path / "system.yaml"
    system.write_text(
        "\n".join(
            line
            for line in EDGE_CLOUD.read_text().splitlines()
            if not line.startswith("runs_per_month")
        )
    )
    out = tmp_path / "out"
    result = run_cli(
        "sweep",
        str(OBJECT_DETECTION),
        str(system),
        "--out",
        str(out),
        *option,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "runs_per_month" in result.stderr
    assert not out.exists()


def test_sweep_compare_names_differ_across_files(tmp_path: Path) -> None:
    system = tmp_path / "system.yaml"
    system.write_text(
        EDGE_CLOUD.read_text() + "compare:\n  - {name: Current  Design, rest: edge}\n"
    )
    compare = tmp_path / "compare.yaml"
    compare.write_text("compare:\n  - {name: current design, rest: cloud}\n")
    out = tmp_path / "out"
    result = run_cli(
        "sweep",
        str(OBJECT_DETECTION),
        str(system),
        "--out",
        str(out),
        "--compare",
        str(compare),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "compare[0].name" in result.stderr
    assert "ignoring case" in result.stderr
    assert not out.exists()


def test_sweep_compare_file_errors_exit_2(tmp_path: Path) -> None:
    compare = tmp_path / "compare.yaml"
    compare.write_text("compare:\n  - {name: current, rest: edge, at: {detct: cloud}}\n")
    out = tmp_path / "out"
    result = run_cli(
        "sweep",
        str(OBJECT_DETECTION),
        str(EDGE_CLOUD),
        "--out",
        str(out),
        "--compare",
        str(compare),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "compare.yaml" in result.stderr
    assert "compare[0].at" in result.stderr
    assert "detect" in result.stderr  # the suggestion for the typo
    assert not out.exists()


def test_sweep_limits_compare_and_unknown_pair(tmp_path: Path) -> None:
    compare = tmp_path / "compare.yaml"
    compare.write_text("compare:\n  - {name: current design, rest: edge, at: {detect: cloud}}\n")
    out = tmp_path / "out"
    common = ["sweep", str(OBJECT_DETECTION), str(EDGE_CLOUD), "--out", str(out)]
    result = run_cli(
        *common,
        "--compare",
        str(compare),
        "--max-latency-s",
        "4.2",
        "--explain",
        "A:J",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Recommended: D." in result.stdout
    report = (out / "report.md").read_text()
    assert "**Recommended: candidate D**" in report
    assert "### J compared with A" in report
    assert "current design" in report
    run = json.loads((out / "run.json").read_text())
    assert run["recommendation"]["label"] == "D"
    assert run["requirements"] == {"max_latency_s": 4.2, "minimise": "cost_usd"}
    assert run["compared_placements"] == ["current design"]

    # A label that is not on the front fails after the sweep, and changes nothing.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    result = run_cli(*common, "--explain", "A:Q", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "'Q'" in result.stderr
    assert "A, B, C" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
