"""`allocation serve`: argument checks and the deployment it would serve; prefect.yaml."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from allocation.cli import build_parser, build_served_deployment, main
from allocation.errors import InputError
from flows.reevaluate import reevaluate
from tests.conftest import CATALOGS, REPO

STUDIES = CATALOGS / "studies.yaml"


@pytest.mark.parametrize(
    ("options", "field", "value"),
    [
        (["--cron", "61 * * * *"], "--cron", "'61 * * * *'"),
        (["--cron", "every morning"], "--cron", "'every morning'"),
        (["--cron", "0 6 * * *", "--timezone", "Mars/Base"], "--timezone", "'Mars/Base'"),
    ],
)
def test_serve_bad_schedule_exits_2(
    options: list[str], field: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(STUDIES), *options]) == 2
    error = capsys.readouterr().err
    assert f"command line: {field}: invalid value {value}" in error
    assert "Traceback" not in error


def test_serve_bad_studies_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "studies.yaml"
    path.write_text("studies: []\n", "utf-8")
    assert main(["serve", str(path), "--cron", "0 6 * * *"]) == 2
    assert "studies: invalid value []" in capsys.readouterr().err


def test_serve_needs_prefect_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    args = build_parser().parse_args(["serve", str(STUDIES), "--cron", "0 6 * * *"])
    with (
        temporary_settings(updates={PREFECT_API_URL: None}),
        pytest.raises(InputError) as caught,
    ):
        build_served_deployment(args)
    assert caught.value.field == "PREFECT_API_URL"
    assert "prefect server start --host 127.0.0.1" in str(caught.value)


def test_serve_builds_deployment(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    out = tmp_path / "results"
    args = build_parser().parse_args(
        [
            "serve",
            str(STUDIES),
            "--cron",
            "0 6 * * *",
            "--timezone",
            "Asia/Tokyo",
            "--out",
            str(out),
            "--name",
            "daily",
        ]
    )
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        deployment = build_served_deployment(args)
    assert deployment.name == "daily"
    [schedule] = deployment.schedules
    assert schedule.schedule.cron == "0 6 * * *"
    assert schedule.schedule.timezone == "Asia/Tokyo"
    assert deployment.parameters == {
        "studies_path": str(STUDIES.resolve()),
        "out_dir": str(out.resolve()),
    }
    assert deployment.entrypoint.endswith("flows/reevaluate.py:reevaluate")
    assert not out.exists()


def test_prefect_yaml_deployments_fit_the_flow() -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from allocation.cli_catalog import PRICES_UPDATED_EVENT

    config = yaml.safe_load((REPO / "prefect.yaml").read_text("utf-8"))
    flow_parameters = set(inspect.signature(reevaluate.fn).parameters)
    deployments = {d["name"]: d for d in config["deployments"]}
    assert set(deployments) == {"reevaluate-daily", "reevaluate-on-price-change"}
    for deployment in deployments.values():
        assert deployment["entrypoint"] == "flows/reevaluate.py:reevaluate"
        assert set(deployment["parameters"]) <= flow_parameters
        assert (REPO / deployment["parameters"]["studies_path"]).is_file()

    [schedule] = deployments["reevaluate-daily"]["schedules"]
    assert CronSchedule(**schedule).cron == "0 6 * * *"

    [trigger] = deployments["reevaluate-on-price-change"]["triggers"]
    fields = {key: value for key, value in trigger.items() if key != "type"}
    parsed = DeploymentEventTrigger.model_validate(fields)
    assert parsed.expect == {PRICES_UPDATED_EVENT}
    assert parsed.match.root == {"prefect.resource.id": "allocation.catalog.*"}
