"""Faulty pricing providers fail a sweep with exit status 1 and an error naming them.

The providers below are real classes, registered in the ``allocation.pricing``
entry-point group by an installed-package record (a ``.dist-info`` folder with
``entry_points.txt``) on ``sys.path``, as pip would leave one. Nothing is built, so the
registration costs milliseconds. Each provider misbehaves in one way: it raises, hangs,
returns arrays of the wrong shape or dtype, NaN, a negative cost, or writes into the
usage arrays. One test runs a real Prefect flow through the command line.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from allocation.cli import main
from allocation.errors import ProviderError
from allocation.pricing import (
    API_VERSION,
    PROVIDER_TIMEOUT_ENV,
    PricingContext,
    Usage,
    create_provider,
    provider_time_limit,
)
from allocation.study import load_study
from allocation.sweep import sweep_in_process

PACKAGE = "faulty-pricing"
VERSION = "0.3"
RELEASE_HANGS = threading.Event()
"""Set at the end of the module, so that the threads of hanging calls end."""


class Healthy:
    """A correct provider: 0.001 USD per compute second; the faulty ones derive from it."""

    api_version = API_VERSION
    name = "healthy"
    calls = 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> Healthy:
        return cls()

    def cost_lines_usd(self, usage: Usage) -> dict[str, Any]:
        type(self).calls += 1
        return {"compute": 0.001 * usage.compute_s}

    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> Any:
        return 0.001 * usage.compute_s * runs_per_month

    def describe(self) -> dict[str, Any]:
        return {"usd_per_compute_s": 0.001}


class Raises(Healthy):
    def cost_lines_usd(self, usage: Usage) -> dict[str, Any]:
        raise ZeroDivisionError("rate table has a zero divisor")


class Hangs(Healthy):
    calls = 0

    def cost_lines_usd(self, usage: Usage) -> dict[str, Any]:
        type(self).calls += 1
        RELEASE_HANGS.wait()
        return super().cost_lines_usd(usage)


class WrongShape(Healthy):
    def cost_lines_usd(self, usage: Usage) -> dict[str, Any]:
        return {"compute": np.zeros((len(usage), 2))}


class WrongDtype(Healthy):
    def cost_lines_usd(self, usage: Usage) -> dict[str, Any]:
        return {"compute": np.array(["0.1"] * len(usage))}


class ReturnsNaN(Healthy):
    def cost_lines_usd(self, usage: Usage) -> dict[str, Any]:
        return {"compute": np.full(len(usage), np.nan)}


class NegativeMonthly(Healthy):
    def monthly_cost_usd(self, usage: Usage, runs_per_month: int) -> Any:
        return -np.ones(len(usage))


class ReturnsList(Healthy):
    def cost_lines_usd(self, usage: Usage) -> Any:
        return [0.1] * len(usage)


class ModifiesUsage(Healthy):
    def cost_lines_usd(self, usage: Usage) -> dict[str, Any]:
        usage.compute_s[:] = 0.0
        return super().cost_lines_usd(usage)


class OptionsFail(Healthy):
    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> Healthy:
        raise KeyError("usd_per_compute_s")


class OptionsHang(Healthy):
    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: PricingContext) -> Healthy:
        RELEASE_HANGS.wait()
        return cls()


class BadCores(Healthy):
    def usable_cores(self) -> float:
        return float("nan")


PROVIDERS = {
    "fault-raises": Raises,
    "fault-hangs": Hangs,
    "fault-wrong-shape": WrongShape,
    "fault-wrong-dtype": WrongDtype,
    "fault-nan": ReturnsNaN,
    "fault-negative-monthly": NegativeMonthly,
    "fault-list": ReturnsList,
    "fault-modifies-usage": ModifiesUsage,
    "fault-options": OptionsFail,
    "fault-options-hang": OptionsHang,
    "fault-cores": BadCores,
}

WORKFLOW = """\
workflow: faults
measured_on: {name: Reference PC, single_thread: 2000, cores: 4}
stages:
  - {id: capture, time_s: 0.2, pin: edge}
  - {id: detect, time_s: 0.4}
  - {id: publish, time_s: 0.1}
edges:
  - {from: capture, to: detect, bytes: 1000}
  - {from: detect, to: publish, bytes: 1000}
"""

SYSTEM = """\
system: faults-system
runs_per_month: 1000
devices:
  - id: edge
    cpu: {{name: Edge board, single_thread: 500, cores: 4}}
  - id: cloud
    cpu: {{name: Cloud vCPU, single_thread: 2000, cores: 2}}
    pricing: {{provider: {provider}}}
links:
  - {{between: [edge, cloud], bandwidth_mbps: 100}}
"""


@pytest.fixture(scope="module", autouse=True)
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Register `PROVIDERS` as the installed package faulty-pricing would."""
    site = tmp_path_factory.mktemp("site")
    record = site / f"{PACKAGE.replace('-', '_')}-{VERSION}.dist-info"
    record.mkdir()
    (record / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n"
    )
    lines = [f"{name} = {__name__}:{cls.__name__}" for name, cls in PROVIDERS.items()]
    (record / "entry_points.txt").write_text("[allocation.pricing]\n" + "\n".join(lines) + "\n")
    sys.path.insert(0, str(site))
    try:
        yield
    finally:
        sys.path.remove(str(site))
        RELEASE_HANGS.set()


def write_inputs(folder: Path, provider: str) -> tuple[Path, Path]:
    workflow = folder / "workflow.yaml"
    system = folder / "system.yaml"
    workflow.write_text(WORKFLOW)
    system.write_text(SYSTEM.format(provider=provider))
    return workflow, system


def expected_origin(name: str) -> str:
    target = f"{__name__}:{PROVIDERS[name].__name__}"
    return f"pricing provider {name!r} ({target} from package {PACKAGE} {VERSION})"


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("fault-raises", "failed in cost_lines_usd for device 'cloud' with ZeroDivisionError"),
        ("fault-wrong-shape", ", 2); expected ("),
        ("fault-wrong-dtype", "of dtype <U3; expected an array of real numbers"),
        ("fault-nan", "with nan in row 0; costs must be finite"),
        ("fault-negative-monthly", "from monthly_cost_usd for device 'cloud' with -1.0 in row 0"),
        ("fault-list", "returned list from cost_lines_usd for device 'cloud'; expected a dict"),
        ("fault-modifies-usage", "with ValueError: assignment destination is read-only"),
        ("fault-cores", "returned nan from usable_cores for device 'cloud'"),
    ],
)
def test_faulty_provider_named_in_error(tmp_path: Path, name: str, detail: str) -> None:
    workflow, system = write_inputs(tmp_path, name)

    with pytest.raises(ProviderError) as info:
        study = load_study(workflow, system)
        sweep_in_process(study.problem)

    message = str(info.value)
    assert message.startswith(expected_origin(name)), message
    assert detail in message
    assert "not of the input files" in message


def test_fault_in_options_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    workflow, system = write_inputs(tmp_path, "fault-options")

    status = main(["sweep", str(workflow), str(system), "--out", "out"])

    error = capsys.readouterr().err
    assert status == 1
    assert f"{expected_origin('fault-options')} failed in from_options" in error
    assert "KeyError: 'usd_per_compute_s'" in error
    assert "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["system.yaml", "workflow.yaml"]


def test_hang_in_options_times_out_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow, system = write_inputs(tmp_path, "fault-options-hang")
    out = tmp_path / "out"

    status = main(
        ["sweep", str(workflow), str(system), "--out", str(out), "--provider-timeout-s", "0.2"]
    )

    error = capsys.readouterr().err
    assert status == 1
    assert f"{expected_origin('fault-options-hang')} did not return from from_options" in error
    assert "within 0.2 s" in error
    assert "--provider-timeout-s" in error
    assert not out.exists()


def test_hang_times_out_once_then_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one call times out, later calls fail without reaching the provider.

    The space has 4 assignments in 4 chunks: without that rule each chunk would wait
    for the limit again.
    """
    monkeypatch.setenv(PROVIDER_TIMEOUT_ENV, "0.2")
    workflow, system = write_inputs(tmp_path, "fault-hangs")
    Hangs.calls = 0
    study = load_study(workflow, system)

    with pytest.raises(ProviderError) as info:
        sweep_in_process(study.problem, chunk_size=1)

    message = str(info.value)
    assert message.startswith(expected_origin("fault-hangs")), message
    assert "did not return from cost_lines_usd for device 'cloud' within 0.2 s" in message
    assert PROVIDER_TIMEOUT_ENV in message
    assert Hangs.calls == 1


def test_timeout_option_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROVIDER_TIMEOUT_ENV, "1000")
    context = PricingContext(
        file="s.yaml", field="devices[1].pricing", device_id="cloud", catalog_dir=None
    )

    with provider_time_limit(0.1), pytest.raises(ProviderError, match=r"within 0\.1 s"):
        create_provider("fault-options-hang", {}, context)


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_invalid_timeout_environment_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    monkeypatch.setenv(PROVIDER_TIMEOUT_ENV, value)
    workflow, system = write_inputs(tmp_path, "fault-raises")

    status = main(["sweep", str(workflow), str(system), "--out", str(tmp_path / "out")])

    error = capsys.readouterr().err
    assert status == 2
    assert f"{PROVIDER_TIMEOUT_ENV}: invalid value {value!r}" in error
    assert not (tmp_path / "out").exists()


def test_timeout_option_rejects_negative(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sweep", "w.yaml", "s.yaml", "--provider-timeout-s", "-1"])

    assert info.value.code == 2
    assert "expected a finite number >= 0" in capsys.readouterr().err


def test_help_gives_timeout_default(capsys: pytest.CaptureFixture[str]) -> None:
    from allocation.pricing import DEFAULT_PROVIDER_TIMEOUT_S

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])

    text = " ".join(capsys.readouterr().out.split())
    assert f"${PROVIDER_TIMEOUT_ENV} or {DEFAULT_PROVIDER_TIMEOUT_S:g};" in text


@pytest.fixture
def cli_settings() -> Iterator[None]:
    """Restore the environment and the log levels that the command line sets for Prefect."""
    environment = dict(os.environ)
    names = ("prefect", "uvicorn", "docket", "prefect.server")
    levels = {name: logging.getLogger(name).level for name in names}
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.prefect
def test_flow_hang_exit_1_keeps_outputs(
    prefect_harness: None,
    cli_settings: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real flow run through the command line: the hang ends the sweep with exit 1.

    The output folder contains files of an earlier run, which must stay as they were.
    """
    workflow, system = write_inputs(tmp_path, "fault-hangs")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("earlier report\n")
    (out / "front.parquet").write_bytes(b"earlier front")

    status = main(
        ["sweep", str(workflow), str(system), "--out", str(out), "--provider-timeout-s", "0.5"]
    )

    # In this process Prefect's logging was set up before the command line could quiet
    # it, so the log of the failed task may come first. The command's message is last.
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 1, last_line
    assert last_line.startswith(f"error: {expected_origin('fault-hangs')} did not return from")
    assert "cost_lines_usd for device 'cloud' within 0.5 s" in last_line
    assert sorted(p.name for p in out.iterdir()) == ["front.parquet", "report.md"]
    assert (out / "report.md").read_text() == "earlier report\n"
    assert (out / "front.parquet").read_bytes() == b"earlier front"
