"""The temporary Prefect server of `allocation sweep`: reachable, local, never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.processes import processes_with_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

_PARENT = """
import sys, time
from allocation.local_server import LocalServer
server = LocalServer()
server.start()
server.wait_until_ready()
print(server.api_url, flush=True)
time.sleep(600)
"""


def _health(api_url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{api_url}/health", timeout=5) as response:
        return int(response.status)


def test_server_dies_with_parent(tmp_path: Path) -> None:
    # A mark in the environment finds the server; Prefect's home stays the default, whose
    # database is already migrated (a new one takes seconds more).
    mark = str(tmp_path)
    env = {**os.environ, "ALLOCATION_TEST_MARK": mark}
    env.pop("PREFECT_API_URL", None)
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        api_url = parent.stdout.readline().strip()
        error_output = parent.stderr.read() if not api_url and parent.stderr else ""
        assert api_url, error_output
        assert api_url.startswith("http://127.0.0.1:")
        assert _health(api_url) == 200
        servers = processes_with_env("ALLOCATION_TEST_MARK", mark)
        servers.remove(parent.pid)
        assert servers, "the server process was not found"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)

    # SIGKILL gives the parent no chance to clean up, so the kernel's parent-death
    # signal must stop the server.
    deadline = time.monotonic() + 30
    while processes_with_env("ALLOCATION_TEST_MARK", mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with_env("ALLOCATION_TEST_MARK", mark) == []


def test_configured_url_starts_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from allocation.local_server import start_unless_configured

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert start_unless_configured() is None
