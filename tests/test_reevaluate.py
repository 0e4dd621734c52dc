"""The `reevaluate` flow, run for real against a temporary Prefect server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.reevaluate import diff_artifact_key, reevaluate
from tests.conftest import CATALOGS

pytestmark = pytest.mark.prefect


def _raise_arm64_duration(prices: Path, factor: float) -> tuple[float, float]:
    """Multiply the Lambda arm64 duration rate in ap-northeast-1; return old and new."""
    table = pq.read_table(prices)
    frame = table.to_pandas()
    rows = (
        (frame["service"] == "lambda")
        & (frame["region"] == "ap-northeast-1")
        & (frame["dimension"] == "duration")
        & (frame["architecture"] == "arm64")
    )
    assert rows.sum() == 1
    rates = table.column("usd_per_unit").to_pylist()
    index = int(rows.to_numpy().nonzero()[0][0])
    old = rates[index]
    rates[index] = old * factor
    column = table.schema.get_field_index("usd_per_unit")
    table = table.set_column(
        column, table.schema.field(column), pa.array(rates, type=table.schema.field(column).type)
    )
    pq.write_table(table, prices)
    return old, rates[index]


@pytest.fixture
def studies(tmp_path: Path) -> Path:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for name in ("cpus.parquet", "prices.parquet", "cpu-aliases.csv"):
        (catalog / name).write_bytes((CATALOGS / name).read_bytes())
    system = (CATALOGS / "systems" / "edge-cloud.yaml").read_text("utf-8")
    (tmp_path / "edge-cloud-arm.yaml").write_text(
        system.replace("architecture: x86_64", "architecture: arm64"), "utf-8"
    )
    path = tmp_path / "studies.yaml"
    path.write_text(
        "studies:\n"
        f"  - name: detection-arm\n"
        f"    workflow: {CATALOGS / 'workflows' / 'object-detection.yaml'}\n"
        "    system: edge-cloud-arm.yaml\n"
        "    catalog: catalog\n",
        "utf-8",
    )
    return path


def test_reevaluate_sweeps_only_after_a_price_change(
    prefect_harness: None, studies: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    study_out = out / "detection-arm"

    # First run: no earlier evaluation, so one sweep.
    first = reevaluate(str(studies), str(out))
    assert first.sweeps_run == 1
    assert first.studies[0].status == "first"
    assert "First evaluation" in (study_out / "diff.md").read_text("utf-8")
    state = json.loads((out / "state.json").read_text("utf-8"))
    evaluated_at = state["studies"]["detection-arm"]["evaluated_at"]

    # Second run, nothing changed: no sweep, an "unchanged" record.
    front_before = (study_out / "front.parquet").read_bytes()
    second = reevaluate(str(studies), str(out))
    assert second.sweeps_run == 0
    assert second.studies[0].status == "unchanged"
    state = json.loads((out / "state.json").read_text("utf-8"))
    assert state["last_run"]["sweeps_run"] == 0
    assert state["last_run"]["statuses"] == {"detection-arm": "unchanged"}
    assert state["studies"]["detection-arm"]["last_status"] == "unchanged"
    assert state["studies"]["detection-arm"]["evaluated_at"] == evaluated_at
    assert (study_out / "front.parquet").read_bytes() == front_before
    assert not (study_out / "previous").exists()

    # Third run after the arm64 duration price rose 12 %: a sweep and a diff.
    old_rate, new_rate = _raise_arm64_duration(tmp_path / "catalog" / "prices.parquet", 1.12)
    third = reevaluate(str(studies), str(out))
    assert third.sweeps_run == 1
    assert third.studies[0].status == "changed"
    assert third.studies[0].changed_parts == ["pricing"]
    assert (study_out / "previous" / "front.parquet").read_bytes() == front_before

    diff = (study_out / "diff.md").read_text("utf-8")
    assert "aws lambda arm64 duration price in ap-northeast-1 rose 12.0 %" in diff
    assert "0.0000133334 → 0.000014933408 USD per GB-second" in diff
    assert "USD per GB-second, device cloud (aws-lambda)" in diff
    # Every candidate that uses the cloud costs more, and the diff names the cause.
    assert "A (stages 1, 9 on edge, rest on cloud): cost_usd" in diff
    assert "(from input change 1)" in diff
    assert "1 stayed unchanged" in diff  # all on edge costs nothing either way
    assert "## Recommendation" in diff
    state = json.loads((out / "state.json").read_text("utf-8"))
    assert state["last_run"]["sweeps_run"] == 1
    assert state["studies"]["detection-arm"]["last_status"] == "changed"
    assert not list(out.glob(".*.tmp"))

    # The diff is published under a stable key.
    from prefect.client.orchestration import get_client

    async def read_artifact() -> str:
        async with get_client() as client:
            artifact = await client.read_latest_artifacts()
            keyed = [a for a in artifact if a.key == diff_artifact_key("detection-arm")]
            return str(keyed[0].data)

    assert diff_artifact_key("detection-arm") == "diff-detection-arm"
    assert "rose 12.0 %" in asyncio.run(read_artifact())
    assert new_rate == pytest.approx(old_rate * 1.12)


def test_invalid_study_stops_every_study(prefect_harness: None, tmp_path: Path) -> None:
    from allocation.errors import InputError
    from tests.test_reevaluate_studies import write_fork_study

    # The valid study comes first: without the check of every study before the first
    # sweep, it would be swept and written before the second one fails.
    studies = tmp_path / "studies.yaml"
    studies.write_text(
        "studies:\n"
        + write_fork_study(tmp_path, "fits", 400)
        + write_fork_study(tmp_path, "allinf", 350),
        "utf-8",
    )
    out = tmp_path / "out"
    with pytest.raises(InputError, match="every one of the 4 assignments"):
        reevaluate(str(studies), str(out))
    assert not out.exists()


def test_failed_sweep_leaves_no_empty_folder(prefect_harness: None, tmp_path: Path) -> None:
    from allocation.errors import InputError
    from tests.test_reevaluate_studies import write_fork_study

    # Only the sweep finds that the front has no candidate Z.
    entry = write_fork_study(tmp_path, "fits", 400).rstrip("}\n") + ", sweep: {explain: [A:Z]}}\n"
    studies = tmp_path / "studies.yaml"
    studies.write_text("studies:\n" + entry, "utf-8")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="names candidate 'Z'"):
        reevaluate(str(studies), str(out))
    assert not out.exists()
