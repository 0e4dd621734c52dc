"""Resuming a sweep from its chunk store: after SIGINT, after SIGKILL, and never stale."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from allocation.chunk_store import ChunkStore, plan_resumed_chunks, problem_key
from allocation.runners import open_runner
from allocation.study import load_study
from allocation.sweep import sweep_chunk, sweep_in_process
from flows.sweep import _estimate_chunks, sweep
from tests.conftest import CATALOGS, REPO
from tests.test_runners import front_rows

WORKFLOW = CATALOGS / "workflows" / "object-detection.yaml"
SYSTEM = CATALOGS / "systems" / "edge-gateway-cloud.yaml"
BIG_WORKFLOW = CATALOGS / "workflows" / "style-transfer.yaml"


def test_plan_reuses_stored_ranges() -> None:
    reused, todo = plan_resumed_chunks(100, 30, [(0, 30), (20, 40), (60, 70), (90, 120)])
    assert reused == [(0, 30), (60, 70)]
    assert todo == [(30, 60), (70, 100)]


def test_plan_without_store_cuts_space() -> None:
    reused, todo = plan_resumed_chunks(10, 4, [])
    assert reused == []
    assert todo == [(0, 4), (4, 8), (8, 10)]


def test_store_roundtrip_and_resume(tmp_path: Path) -> None:
    problem = load_study(WORKFLOW, SYSTEM, CATALOGS).problem
    key = problem_key(problem, sample_fraction=1.0)
    store = ChunkStore(tmp_path, key)
    store.open()
    for start, stop in [(0, 500), (1000, 1300)]:
        store.save(sweep_chunk(problem, start, stop))
    (store.path / "1300-1400.npz").write_bytes(b"truncated")

    loaded = store.load(0, 500, problem.n_stages)
    assert loaded is not None
    assert np.array_equal(loaded.patterns.pattern_index, np.arange(500))

    with open_runner("thread", workers=2) as runner:
        front, patterns, chunks, counts, _ = _estimate_chunks(
            problem, runner, store, 400, 1.0, None, show_progress=False
        )
    expected, expected_patterns = sweep_in_process(problem)
    assert counts == {"reused": 2, "computed": 5}
    assert front_rows(front) == front_rows(expected)
    assert chunks[0] == (0, 500)
    assert np.array_equal(
        np.concatenate([p.pattern_index for p in patterns]), expected_patterns.pattern_index
    )


def test_changed_inputs_never_reuse_chunks(tmp_path: Path) -> None:
    study = load_study(WORKFLOW, SYSTEM, CATALOGS)
    key = problem_key(study.problem, sample_fraction=1.0, inputs=study.inputs)
    old = ChunkStore(tmp_path, key)
    old.open()
    old.save(sweep_chunk(study.problem, 0, 2187))

    changed_system = tmp_path / "system.yaml"
    changed_system.write_text(
        SYSTEM.read_text().replace("bandwidth_mbps: 100", "bandwidth_mbps: 90", 1)
    )
    changed = load_study(WORKFLOW, changed_system, CATALOGS)
    changed_key = problem_key(changed.problem, sample_fraction=1.0, inputs=changed.inputs)
    commented = tmp_path / "commented.yaml"
    commented.write_text(SYSTEM.read_text() + "# a comment\n")
    recommented = load_study(WORKFLOW, commented, CATALOGS)
    assert changed_key != key
    assert problem_key(study.problem, sample_fraction=0.5, inputs=study.inputs) != key
    assert problem_key(recommented.problem, sample_fraction=1.0, inputs=recommented.inputs) != key

    store = ChunkStore(tmp_path, changed_key)
    with open_runner("thread", workers=1) as runner:
        front, _, _, counts, _ = _estimate_chunks(
            changed.problem, runner, store, 2187, 1.0, None, show_progress=False
        )
    expected, _ = sweep_in_process(changed.problem)
    assert counts == {"reused": 0, "computed": 1}
    assert front_rows(front) == front_rows(expected)
    assert not old.path.exists()


def _start_sweep(out: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "allocation.cli",
        "sweep",
        str(BIG_WORKFLOW),
        str(SYSTEM),
        "--out",
        str(out),
        "--chunk-size",
        "500",
        "--max-patterns",
        "100",
    ]
    environment = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    # A new session, so that the test can signal the sweep and its Prefect server
    # together, as Ctrl-C in a terminal does, and end the server after SIGKILL.
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_chunks(process: subprocess.Popen[str], out: Path, count: int) -> int:
    """Poll the chunk store until it has `count` chunks; return how many it has."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = len(list(out.glob(".chunks/*/*.npz")))
        if found >= count:
            return found
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"the sweep stored fewer than {count} chunks in 240 s")


def _end_group(process: subprocess.Popen[str]) -> None:
    """Kill what is left of the sweep's process group, such as a Prefect server."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def test_interrupt_then_kill_then_resume(prefect_harness: None, tmp_path: Path) -> None:
    out = tmp_path / "out"

    # Ctrl-C: exit 130, one line, no traceback, chunks kept.
    first = _start_sweep(out)
    _wait_for_chunks(first, out, 3)
    os.killpg(first.pid, signal.SIGINT)
    _, stderr = first.communicate(timeout=120)
    _end_group(first)
    kept_after_interrupt = len(list(out.glob(".chunks/*/*.npz")))
    assert first.returncode == 130
    assert "interrupted: the finished chunks are kept in" in stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert kept_after_interrupt >= 3
    assert not (out / "run.json").exists()

    # SIGKILL: the same command resumes and adds chunks before it dies.
    second = _start_sweep(out)
    _wait_for_chunks(second, out, kept_after_interrupt + 3)
    os.killpg(second.pid, signal.SIGKILL)
    second.communicate(timeout=60)
    kept_after_kill = len(list(out.glob(".chunks/*/*.npz")))
    assert not (out / "run.json").exists()

    # The same sweep, run to the end, reuses them and gives the front of one run.
    outcome = sweep(
        str(BIG_WORKFLOW), str(SYSTEM), None, str(out), chunk_size=500, max_patterns=100
    )
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["chunks_reused"] == kept_after_kill
    assert counts["chunks_reused"] + counts["chunks_computed"] == counts["chunks"]
    assert counts["chunks"] == 355
    assert not (out / ".chunks").exists()

    study = load_study(BIG_WORKFLOW, SYSTEM, CATALOGS)
    expected, _ = sweep_in_process(study.problem, sample_fraction=100 / 177_147)
    front = pq.read_table(out / "front.parquet").to_pandas()
    assert outcome.space_size == 177_147
    assert sorted(front["latency_s"]) == sorted(expected.evaluation.metrics["latency_s"])
    assert sorted(front["cost_usd"]) == sorted(expected.evaluation.metrics["cost_usd"])
    assert front["equivalent_count"].sum() == expected.equivalent_count.sum()
