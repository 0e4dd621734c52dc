"""Workflow models from the run history of real Prefect flows on the test server."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import numpy as np
import pytest

from allocation.catalog import load_cpu_catalog
from allocation.cli import main
from allocation.errors import InputError
from allocation.loading import load_workflow
from allocation.profile import render_workflow, write_workflow
from allocation.profile_prefect import draft_from_history, read_flow_history
from tests.conftest import CATALOGS

pytestmark = pytest.mark.prefect

CPU = "Intel Core i7-10700"
FRAME = np.arange(6000, dtype=np.float32)


@pytest.fixture(scope="module")
def flows(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Run a flow with persisted results twice, and one without persisted results once."""
    from prefect import flow, task
    from prefect.filesystems import LocalFileSystem

    storage = LocalFileSystem(basepath=str(tmp_path_factory.mktemp("results")))
    storage.save("profile-test-results", overwrite=True)

    @task(persist_result=True, result_storage=storage)
    def capture() -> np.ndarray:
        return FRAME.copy()

    @task(persist_result=True, result_storage=storage)
    def scale(frame: np.ndarray) -> np.ndarray:
        return frame * 2

    @task(persist_result=True, result_storage=storage)
    def summarise(frame: np.ndarray, scaled: np.ndarray) -> dict:
        return {"total": float(frame.sum() + scaled.sum())}

    @task(persist_result=True, result_storage=storage)
    def announce() -> str:
        return "done"

    @flow(name="profile-test-persisted")
    def persisted() -> None:
        frame = capture()
        summary = summarise(frame, scale(frame))
        announce(wait_for=[summary])

    @task(persist_result=False)
    def produce() -> bytes:
        return b"x" * 1000

    @task(persist_result=False)
    def consume(data: bytes) -> int:
        return len(data)

    @flow(name="profile-test-unpersisted")
    def unpersisted() -> None:
        consume(produce())

    persisted()
    persisted()
    unpersisted()
    return SimpleNamespace(summary={"total": float(FRAME.sum() * 3)})


@pytest.fixture
def quiet_cli_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore the environment and logger levels that the CLI's Prefect set-up changes."""
    for key in list(os.environ):
        monkeypatch.setenv(key, os.environ[key])
    names = ("prefect", "uvicorn", "docket", "prefect.server")
    levels = {name: logging.getLogger(name).level for name in names}
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_history_stages_and_edges(flows: SimpleNamespace, tmp_path: Path) -> None:
    history = asyncio.run(read_flow_history("profile-test-persisted", runs=5))
    assert len(history.flow_run_names) == 2
    draft, warnings = draft_from_history(history, CPU)
    assert warnings == []

    out = tmp_path / "flow.yaml"
    write_workflow(render_workflow(draft), out, catalog=load_cpu_catalog(CATALOGS / "cpus.parquet"))
    workflow = load_workflow(out)
    assert workflow.workflow == "profile-test-persisted"
    assert {stage.id for stage in workflow.stages} == {"capture", "scale", "summarise", "announce"}
    edges = {(edge.source, edge.target): edge.bytes for edge in workflow.edges}
    assert set(edges) == {
        ("capture", "scale"),
        ("capture", "summarise"),
        ("scale", "summarise"),
        ("summarise", "announce"),
    }
    # Sizes are the stored pickles of the results: cloudpickle, as Prefect's serializer.
    assert edges[("capture", "scale")] == len(cloudpickle.dumps(FRAME))
    assert edges[("scale", "summarise")] == len(cloudpickle.dumps(FRAME * 2))
    assert edges[("capture", "scale")] > FRAME.nbytes
    assert edges[("summarise", "announce")] == 0
    for stage in workflow.stages:
        assert stage.time_s > 0


def test_unpersisted_results_need_default(flows: SimpleNamespace) -> None:
    history = asyncio.run(read_flow_history("profile-test-unpersisted", runs=5))
    with pytest.raises(InputError, match=r"produce .*result not persisted.*--default-bytes"):
        draft_from_history(history, CPU)

    draft, warnings = draft_from_history(history, CPU, default_bytes=4096)
    assert [(e.source, e.target, e.size_bytes) for e in draft.edges] == [
        ("produce", "consume", 4096)
    ]
    assert len(warnings) == 1
    assert "assumed to be 4,096 bytes" in warnings[0]


def test_unknown_flow_suggests_names(flows: SimpleNamespace) -> None:
    with pytest.raises(InputError, match="profile-test-persisted"):
        asyncio.run(read_flow_history("profile-test-persistd"))


def test_cli_from_prefect(
    flows: SimpleNamespace, quiet_cli_settings: None, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "from-prefect.yaml"
    args = ["profile", "--from-prefect", "profile-test-unpersisted", "--cpu", CPU]
    assert main([*args, "--out", str(out)]) == 2
    assert "--default-bytes" in capsys.readouterr().err
    assert not out.exists()

    code = main([*args, "--runs", "1", "--default-bytes", "1000", "--out", str(out)])
    assert code == 0
    assert "warning: task produce" in capsys.readouterr().err
    workflow = load_workflow(out)
    assert [(e.source, e.target, e.bytes) for e in workflow.edges] == [("produce", "consume", 1000)]
    assert "ASSUMED --default-bytes" in out.read_text()
