"""A real Prefect server on 127.0.0.1 for tests, started with `prefect server start`.

Unlike the test harness in conftest.py, which runs Prefect's temporary server inside
the test process, this server is a separate process that other processes (such as the
`allocation` command line) reach through PREFECT_API_URL, as a user's server would be.
It keeps its SQLite database in a temporary PREFECT_HOME, sends no analytics and serves
no UI. Tests import the fixture explicitly:

    from tests.prefect_server import prefect_server  # noqa: F401
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"

STARTUP_TIMEOUT_S = 90.0
"""Time the server gets to pass its health check. The first start migrates a new database."""

STOP_TIMEOUT_S = 15.0
"""Time the server gets to exit after SIGTERM before it is killed."""

_START_ATTEMPTS = 3
"""Starts tried when the chosen port was taken between choosing it and binding it."""


def client_env(api_url: str, home: Path) -> dict[str, str]:
    """Return a copy of os.environ that sends a child process's Prefect calls to `api_url`.

    `home` becomes the child's PREFECT_HOME, so it writes nothing into the user's.
    """
    env = os.environ.copy()
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "NO_PROXY": _no_proxy(env),
        }
    )
    return env


def _no_proxy(env: dict[str, str]) -> str:
    """Add the loopback names to NO_PROXY, so that a configured proxy never receives the calls."""
    names = [n for n in env.get("NO_PROXY", "").split(",") if n]
    return ",".join([*names, HOST, "localhost"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _server_env(home: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.pop("PREFECT_API_URL", None)
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "NO_PROXY": _no_proxy(env),
        }
    )
    return env


def _is_healthy(api_url: str) -> bool:
    # An opener without proxies: the request must go straight to the loopback address.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _log_tail(log_path: Path, n_chars: int = 4000) -> str:
    text = log_path.read_text("utf-8", errors="replace") if log_path.exists() else ""
    return text[-n_chars:] or "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _start(home: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server on a free port and wait for its health check.

    Raises
    ------
    pytest.fail.Exception
        When the server exits early or does not pass its health check within
        `STARTUP_TIMEOUT_S`. The message ends with the server's output.
    """
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = _free_port()
        api_url = f"http://{HOST}:{port}/api"
        command = [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-ui",
            "--analytics-off",
        ]
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command, env=_server_env(home), stdout=log, stderr=subprocess.STDOUT
            )

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if _is_healthy(api_url):
                return process, api_url
            if process.poll() is not None:
                break
            time.sleep(0.25)
        exit_status = process.poll()
        _stop(process)

        output = _log_tail(log_path)
        port_taken = "address already in use" in output.lower()
        if exit_status is not None and port_taken and attempt < _START_ATTEMPTS:
            continue
        reason = (
            f"exited with status {exit_status}"
            if exit_status is not None
            else (
                f"start timed out: {api_url}/health did not return 200 within "
                f"{STARTUP_TIMEOUT_S:.0f} s"
            )
        )
        pytest.fail(f"Prefect server {reason}. Its output:\n{output}", pytrace=False)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run `prefect server start` on 127.0.0.1 and a free port for the tests of a module.

    Yields
    ------
    str
        The API URL, ``http://127.0.0.1:<port>/api``. The server is terminated at the
        end of the module, and killed if it does not exit within `STOP_TIMEOUT_S`.
    """
    home = tmp_path_factory.mktemp("prefect-server-home")
    process, api_url = _start(home, home / "server.log")
    try:
        yield api_url
    finally:
        _stop(process)
