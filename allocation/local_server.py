"""A temporary Prefect server on 127.0.0.1 that boots while the sweep prepares.

Without PREFECT_API_URL, Prefect starts its own temporary server the first time a flow
needs one. It first imports its server code into the calling process (seconds of CPU),
and only then starts the server process, which takes several seconds more to respond. `allocation
sweep` instead starts the same server process as soon as the inputs are valid, without
importing the server code, and loads its own modules and warms its compiled code while
that server boots. The flow then reaches the server through PREFECT_API_URL, as it
would reach a server the user runs.

The server is the one Prefect's embedded mode runs: Prefect's application factory under
uvicorn, marked as a temporary server, so that it keeps Prefect's own database
(PREFECT_HOME) and runs only the services a temporary server runs (no scheduler, so it
never starts runs of the user's deployments). It listens on 127.0.0.1 only, serves no
UI and sends no analytics. It stops when the sweep ends, and on Linux also when the
sweep's process is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from allocation.errors import AllocationError

HOST = "127.0.0.1"

STARTUP_TIMEOUT_S = 120.0
"""Time the server gets to pass its health check, unless
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS sets another. A first start migrates
a new database."""

STOP_TIMEOUT_S = 10.0
"""Time the server gets to exit after SIGTERM before it is killed."""

_POLL_S = 0.05

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send SIGTERM to this process when its parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _startup_timeout_s() -> float:
    text = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "")
    try:
        value = float(text)
    except ValueError:
        return STARTUP_TIMEOUT_S
    return value if value > 0 else STARTUP_TIMEOUT_S


def _prefect_parent_dir() -> Path:
    """Return the folder that contains the installed `prefect` package."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise AllocationError("Prefect is not installed; run `uv sync` in the project")
    return Path(spec.origin).parent.parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _no_proxy(env: dict[str, str]) -> str:
    """Add the loopback names to NO_PROXY, so that no configured proxy receives the calls."""
    names = [n for n in env.get("NO_PROXY", "").split(",") if n]
    return ",".join([*names, HOST, "localhost"])


class LocalServer:
    """Prefect's temporary server in a child process on 127.0.0.1 and a free port.

    `start` returns at once; `wait_until_ready` blocks until the server passes its health check.
    Use it as a context manager to stop it in every case.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.api_url = f"http://{HOST}:{self.port}/api"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start the server process without waiting for it."""
        env = os.environ.copy()
        env.pop("PREFECT_API_URL", None)
        env.update(
            {
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_UI_ENABLED": "false",
                "NO_PROXY": _no_proxy(env),
            }
        )
        # The command and settings of Prefect's own temporary server
        # (prefect.server.api.server.SubprocessASGIServer), found without importing
        # Prefect's server code.
        env.update({"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(_prefect_parent_dir()),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--log-level",
            "error",
        ]
        # Kept open for the life of the server; closed in stop().
        self._log = tempfile.TemporaryFile(prefix="allocation-prefect-server-")  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in the terminal reaches the sweep, which then
            # stops the server after its own clean-up.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    def wait_until_ready(self, timeout_s: float | None = None) -> None:
        """Block until the server passes its health check.

        Raises
        ------
        AllocationError
            When the server exits or does not respond within `timeout_s`; the message
            ends with the server's last output.
        """
        assert self._process is not None, "start() first"
        if timeout_s is None:
            timeout_s = _startup_timeout_s()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with opener.open(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self._process.poll() is not None:
                break
            time.sleep(_POLL_S)
        status = self._process.poll()
        self.stop()
        reason = (
            f"exited with status {status}"
            if status is not None
            else f"timed out: no response on {self.api_url} within {timeout_s:.0f} s"
        )
        raise AllocationError(
            f"Prefect's temporary server {reason}; run again, or start a server with "
            "`prefect server start --host 127.0.0.1` and set PREFECT_API_URL "
            f"(docs/guide.md). Its output: {self._output_tail()}"
        )

    def settings(self) -> contextlib.AbstractContextManager[Any]:
        """Return a context in which this thread's Prefect calls reach this server.

        Prefect's settings context belongs to one thread, so each thread that runs a
        flow enters its own.
        """
        from prefect.settings import PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.api_url})

    def close(self) -> None:
        """Send Prefect's queued logs and events, stop the server, unset its URL."""
        flush_prefect()
        self.stop()
        if os.environ.get("PREFECT_API_URL") == self.api_url:
            del os.environ["PREFECT_API_URL"]

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _output_tail(self, n_chars: int = 2000) -> str:
        if self._log is None:
            return "(none)"
        self._log.seek(0)
        text = self._log.read().decode("utf-8", errors="replace").strip()
        return text[-n_chars:] or "(none)"

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_unless_configured() -> LocalServer | None:
    """Start a temporary Prefect server unless one is configured (PREFECT_API_URL).

    The environment is read first, so that the server starts before Prefect's import.
    Prefect's settings (its profile) are read right after, and a URL configured there
    stops the server again. A process that has already imported Prefect, such as a test
    with Prefect's test harness, reads the settings first. The server's URL goes into
    the environment for the processes this one starts; `LocalServer.close` removes it.
    """
    if os.environ.get("PREFECT_API_URL") or ("prefect" in sys.modules and configured_api_url()):
        return None
    server = LocalServer()
    server.start()
    if configured_api_url():
        server.stop()
        return None
    os.environ["PREFECT_API_URL"] = server.api_url
    return server


def configured_api_url() -> str | None:
    """Return the Prefect API URL that Prefect's settings give, or None."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def flush_prefect() -> None:
    """Send the logs and events Prefect still has queued, while the server runs.

    Prefect sends them in the background. At exit it retries for about a minute when
    the server is gone, so flushing first keeps the exit prompt.
    """
    if "prefect" not in sys.modules:
        return
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception:
        pass  # Logs and events that fail to send are lost, as they are without the flush.
