"""Chunk runners: a real Dask LocalCluster and process pool give the thread runner's front."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from allocation.cli import main
from allocation.errors import InputError
from allocation.runners import ChunkRunner, check_runner, open_runner
from allocation.study import load_study
from allocation.sweep import merge_fronts, sweep_in_process
from flows.sweep import choose_chunk_size, sweep, use_shared_runner
from tests.conftest import CATALOGS

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEM = CATALOGS / "systems" / "edge-gateway-cloud.yaml"

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_runner() -> Iterator[ChunkRunner]:
    with open_runner("dask", workers=2) as runner:
        yield runner


def front_rows(front) -> list[tuple[int, float, float, int]]:  # type: ignore[no-untyped-def]
    metrics = front.evaluation.metrics
    return sorted(
        zip(
            front.evaluation.pattern_index.tolist(),
            metrics["latency_s"].tolist(),
            metrics["cost_usd"].tolist(),
            front.equivalent_count.tolist(),
            strict=True,
        )
    )


def test_dask_cluster_listens_on_loopback(dask_runner: ChunkRunner) -> None:
    client = dask_runner._client  # type: ignore[attr-defined]
    info = client.scheduler_info()
    assert info["address"].startswith("tcp://127.0.0.1:")
    assert len(info["workers"]) == 2
    for address in info["workers"]:
        assert address.startswith("tcp://127.0.0.1:")


def test_dask_flow_front_bytes_match_thread(
    prefect_harness: None, dask_runner: ChunkRunner, tmp_path: Path
) -> None:
    thread_out = tmp_path / "thread"
    dask_out = tmp_path / "dask"
    sweep(str(WORKFLOW), str(SYSTEM), str(CATALOGS), str(thread_out), chunk_size=700)
    with use_shared_runner(dask_runner):
        outcome = sweep(str(WORKFLOW), str(SYSTEM), str(CATALOGS), str(dask_out), chunk_size=97)

    thread_bytes = (thread_out / "front.parquet").read_bytes()
    dask_bytes = (dask_out / "front.parquet").read_bytes()
    assert dask_bytes == thread_bytes
    assert outcome.space_size == 2187
    assert not (dask_out / ".chunks").exists()


@pytest.mark.parametrize("chunk_size", [1, 50, 2187])
def test_dask_map_matches_in_process(dask_runner: ChunkRunner, chunk_size: int) -> None:
    problem = load_study(WORKFLOW, SYSTEM, CATALOGS).problem
    chunks = [(a, min(a + chunk_size, 2187)) for a in range(0, 2187, chunk_size)][:60]
    stop = chunks[-1][1]
    results = list(dask_runner.map_unordered(problem, "key", chunks, 1.0))
    expected = sweep_in_process(problem, chunk_size=stop)[0] if stop == 2187 else None
    front = merge_fronts(problem, [r.front for r in results])
    assert sorted((r.start, r.stop) for r in results) == chunks
    if expected is not None:
        assert front_rows(front) == front_rows(expected)


def test_process_runner_matches_in_process() -> None:
    problem = load_study(WORKFLOW, SYSTEM, CATALOGS).problem
    expected, _ = sweep_in_process(problem)
    chunks = [(a, min(a + 300, 2187)) for a in range(0, 2187, 300)]
    with open_runner("process", workers=1) as runner:
        results = list(runner.map_unordered(problem, "key", chunks, 0.5))
    front = merge_fronts(problem, [r.front for r in results])
    assert front_rows(front) == front_rows(expected)


def test_chunk_size_keeps_overhead_share() -> None:
    size = choose_chunk_size(10**9, task_overhead_s=0.025, rate_per_s=1e8)
    chunk_s = size / 1e8
    assert 0.025 / (0.025 + chunk_s) <= 0.05
    assert choose_chunk_size(10**9) == 1 << 20
    assert choose_chunk_size(10) == 65_536


def test_ray_without_address_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    ray_installed = importlib.util.find_spec("ray") is not None
    expected = "--ray-address" if ray_installed else "uv sync --extra ray"
    code = main(["sweep", str(WORKFLOW), str(SYSTEM), "--runner", "ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_missing_engine_names_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None if name in ("ray", "distributed") else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(InputError, match=r"pip install 'allocation\[ray\]'"):
        check_runner("ray", address="auto")
    with pytest.raises(InputError, match=r"uv sync --extra dask"):
        check_runner("dask")


def test_address_for_other_runner_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", str(WORKFLOW), str(SYSTEM), "--dask-address", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--dask-address" in err


@pytest.mark.parametrize("address", ["nonsense", "tcp://10.0.0.5", "tcp://host:port"])
def test_malformed_dask_address_exit_2(
    address: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    arguments = ["sweep", str(WORKFLOW), str(SYSTEM), "--out", str(out), "--runner", "dask"]
    code = main([*arguments, "--dask-address", address])
    err = capsys.readouterr().err
    assert code == 2
    assert "--dask-address" in err
    assert "tcp://10.0.0.5:8786" in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_cluster_front_matches(request: pytest.FixtureRequest) -> None:
    import os

    address = os.environ.get("ALLOCATION_TEST_RAY_ADDRESS")
    if not address:
        pytest.skip("set ALLOCATION_TEST_RAY_ADDRESS to a running Ray cluster")
    problem = load_study(WORKFLOW, SYSTEM, CATALOGS).problem
    expected, _ = sweep_in_process(problem)
    chunks = [(a, min(a + 500, 2187)) for a in range(0, 2187, 500)]
    with open_runner("ray", address=address) as runner:
        results = list(runner.map_unordered(problem, "key", chunks, 1.0))
    front = merge_fronts(problem, [r.front for r in results])
    assert front_rows(front) == front_rows(expected)
