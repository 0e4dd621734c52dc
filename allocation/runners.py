"""Run `allocation.sweep.sweep_chunk` on threads, processes, a Dask cluster or a Ray cluster.

A runner sends the chunk function and the compiled problem to an existing execution
engine: `concurrent.futures` for threads and processes, ``distributed`` for Dask and
``ray`` for Ray. Nothing here imports Prefect: the sweep flow stays on the calling
process and only the engine's chunk function runs on the workers.

A pool or cluster started here (a process pool, a `distributed.LocalCluster` on
127.0.0.1) is shut down when `open_runner`'s block ends, also on an error or a
KeyboardInterrupt. A runner given an address joins that cluster and leaves it running.
Ray runs only on a cluster given by its address: a Ray instance started by
``ray.init()`` listens on the machine's network address (ray 2.60 ignores
``_node_ip_address="127.0.0.1"`` there), and this module starts nothing that listens
beyond 127.0.0.1.

Workers of a cluster must be able to import ``allocation`` and the pricing providers
the problem uses, at the same versions as the calling process.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from allocation.errors import InputError

if TYPE_CHECKING:
    from allocation.compile import CompiledProblem
    from allocation.sweep import ChunkResult

__all__ = [
    "DEFAULT_RUNNER",
    "RUNNER_NAMES",
    "TASK_OVERHEAD_S",
    "ChunkRunner",
    "check_runner",
    "close_open_runners",
    "default_workers",
    "open_runner",
    "run_chunk",
]

RUNNER_NAMES = ("thread", "process", "dask", "ray")

DEFAULT_RUNNER = "thread"
"""The fastest runner on one machine (docs/benchmarks.md, "Runners"): the compiled
kernel releases the GIL and NumPy does for large arrays, so threads keep every core
busy without copying the problem or the results between processes."""

TASK_OVERHEAD_S = {"thread": 0.002, "process": 0.005, "dask": 0.025, "ray": 0.025}
"""Time each runner adds to one chunk (submit, transfer, result), in seconds. These are
`bench/bench_runners.py`'s figures on a loaded 2-core machine (0.4 ms, 1.2 ms and 12.5 ms)
rounded up; Ray's is an estimate. `flows.sweep.choose_chunk_size` sizes chunks so that
this overhead stays under 5 % of their time."""

_INSTALL_HINT = {
    "dask": "uv sync --extra dask (or pip install 'allocation[dask]')",
    "ray": "uv sync --extra ray (or pip install 'allocation[ray]')",
}

_IN_FLIGHT_PER_WORKER = 2
"""Chunks submitted ahead per worker: enough to keep workers busy between results,
few enough that results waiting on the caller bound the memory."""

_WAIT_SLICE_S = 0.5
"""Longest single wait for a result, so that a KeyboardInterrupt is seen promptly."""


def default_workers() -> int:
    """Return the number of cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# Problems by key in a worker process, so that the price tables the compiled kernel
# builds on a problem's first chunk are reused by its later chunks there.
_worker_problems: OrderedDict[str, CompiledProblem] = OrderedDict()
_worker_problems_lock = threading.Lock()
_WORKER_PROBLEMS_KEPT = 4


def run_chunk(
    problem_key: str,
    problem: CompiledProblem,
    start: int,
    stop: int,
    sample_fraction: float,
) -> ChunkResult:
    """Call `sweep_chunk` on the first copy of the problem this process received.

    A worker receives a new copy of the problem with every task. The kernel caches its
    price tables per problem object, so every task uses the first copy of its key.
    """
    from allocation.sweep import sweep_chunk

    with _worker_problems_lock:
        kept = _worker_problems.get(problem_key)
        if kept is None:
            _worker_problems[problem_key] = kept = problem
            while len(_worker_problems) > _WORKER_PROBLEMS_KEPT:
                _worker_problems.popitem(last=False)
        else:
            _worker_problems.move_to_end(problem_key)
    return sweep_chunk(kept, start, stop, sample_fraction=sample_fraction)


def _ignore_sigint() -> None:
    # Ctrl-C in a terminal reaches every process of the foreground group; the caller
    # handles it and shuts the workers down, so they ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ChunkRunner(ABC):
    """An execution engine that evaluates chunks of the assignment space.

    Attributes
    ----------
    name : str
        One of `RUNNER_NAMES`.
    workers : int
        Chunks that run at the same time.
    address : str or None
        The cluster joined, or None for one started here.
    """

    name: str

    def __init__(self, workers: int, address: str | None = None) -> None:
        self.workers = workers
        self.address = address

    @property
    def task_overhead_s(self) -> float:
        """Time this runner adds to one chunk, in seconds (`TASK_OVERHEAD_S`)."""
        return TASK_OVERHEAD_S[self.name]

    def map_unordered(
        self,
        problem: CompiledProblem,
        problem_key: str,
        chunks: Iterable[tuple[int, int]],
        sample_fraction: float,
    ) -> Iterator[ChunkResult]:
        """Evaluate the chunks and yield their results as they finish.

        At most ``2 * workers`` chunks are submitted ahead. Closing the iterator (or an
        exception in the caller) cancels the chunks not yet finished.
        """
        pending_chunks = iter(chunks)
        handle = self._share(problem)
        pending: set[Any] = set()
        try:
            for start, stop in pending_chunks:
                pending.add(self._submit(handle, problem_key, start, stop, sample_fraction))
                if len(pending) < _IN_FLIGHT_PER_WORKER * self.workers:
                    continue
                done, pending = self._wait_any(pending)
                for future in done:
                    yield self._result(future)
            while pending:
                done, pending = self._wait_any(pending)
                for future in done:
                    yield self._result(future)
        finally:
            if pending:
                self._cancel(pending)

    def _wait_any(self, pending: set[Any]) -> tuple[set[Any], set[Any]]:
        while True:
            done, still_pending = self._wait(pending, _WAIT_SLICE_S)
            if done:
                return done, still_pending

    def _share(self, problem: CompiledProblem) -> Any:
        """Return what tasks receive in place of the problem."""
        return problem

    @abstractmethod
    def _submit(
        self, handle: Any, problem_key: str, start: int, stop: int, sample_fraction: float
    ) -> Any: ...

    @abstractmethod
    def _wait(self, pending: set[Any], timeout_s: float) -> tuple[set[Any], set[Any]]: ...

    def _result(self, future: Any) -> ChunkResult:
        result: ChunkResult = future.result()
        return result

    def _cancel(self, pending: set[Any]) -> None:
        for future in pending:
            future.cancel()

    @abstractmethod
    def close(self) -> None:
        """Shut down what this runner started."""

    def describe(self) -> dict[str, Any]:
        """Return the runner's settings for run metadata."""
        return {"name": self.name, "workers": self.workers, "address": self.address}


class _ExecutorRunner(ChunkRunner):
    def __init__(self, executor: concurrent.futures.Executor, workers: int) -> None:
        super().__init__(workers)
        self._executor = executor

    def _submit(
        self, handle: Any, problem_key: str, start: int, stop: int, sample_fraction: float
    ) -> Any:
        return self._executor.submit(run_chunk, problem_key, handle, start, stop, sample_fraction)

    def _wait(self, pending: set[Any], timeout_s: float) -> tuple[set[Any], set[Any]]:
        done, still_pending = concurrent.futures.wait(
            pending, timeout=timeout_s, return_when=concurrent.futures.FIRST_COMPLETED
        )
        return set(done), set(still_pending)

    def close(self) -> None:
        """Shut down the pool without waiting for chunks already running."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class ThreadRunner(_ExecutorRunner):
    """Chunks on a thread pool of this process."""

    name = "thread"

    def __init__(self, workers: int) -> None:
        super().__init__(
            concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="chunk"), workers
        )


class ProcessRunner(_ExecutorRunner):
    """Chunks on a pool of worker processes started with the ``spawn`` method."""

    name = "process"

    def __init__(self, workers: int) -> None:
        # spawn, not fork: the calling process runs threads (Prefect's event loop and
        # API client), which a forked child would inherit in an undefined state.
        executor = concurrent.futures.ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_sigint,
        )
        super().__init__(executor, workers)

    def close(self) -> None:
        """Stop the worker processes, also those still running a chunk."""
        processes = list(getattr(self._executor, "_processes", {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


class DaskRunner(ChunkRunner):
    """Chunks on a Dask cluster: a `distributed.LocalCluster` or one at an address."""

    name = "dask"

    def __init__(self, workers: int | None, address: str | None) -> None:
        distributed = _import_engine("dask", "distributed")
        self._cluster = None
        if address is None:
            count = workers or default_workers()
            self._cluster = distributed.LocalCluster(
                n_workers=count,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                scheduler_port=0,
                dashboard_address=None,
                worker_dashboard_address=None,
                silence_logs=50,
            )
            try:
                self._client = distributed.Client(self._cluster)
            except BaseException:
                self._cluster.close()
                raise
        else:
            self._client = distributed.Client(address, timeout="30s")
            count = workers or max(1, sum(self._client.nthreads().values()))
        self._distributed = distributed
        super().__init__(count, address)

    def _share(self, problem: CompiledProblem) -> Any:
        return self._client.scatter(problem, broadcast=True, hash=False)

    def _submit(
        self, handle: Any, problem_key: str, start: int, stop: int, sample_fraction: float
    ) -> Any:
        return self._client.submit(
            run_chunk, problem_key, handle, start, stop, sample_fraction, pure=False
        )

    def _wait(self, pending: set[Any], timeout_s: float) -> tuple[set[Any], set[Any]]:
        try:
            done, still_pending = self._distributed.wait(
                list(pending), timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        except TimeoutError:
            return set(), pending
        return set(done), set(still_pending)

    def _cancel(self, pending: set[Any]) -> None:
        self._client.cancel(list(pending))

    def close(self) -> None:
        """Close the client, and the local cluster when this runner started it."""
        try:
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


class RayRunner(ChunkRunner):
    """Chunks on the Ray cluster at an address."""

    name = "ray"

    def __init__(self, workers: int | None, address: str) -> None:
        ray = _import_engine("ray", "ray")
        self._ray = ray
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_chunk)
        super().__init__(count, address)

    def _share(self, problem: CompiledProblem) -> Any:
        return self._ray.put(problem)

    def _submit(
        self, handle: Any, problem_key: str, start: int, stop: int, sample_fraction: float
    ) -> Any:
        return self._remote.remote(problem_key, handle, start, stop, sample_fraction)

    def _wait(self, pending: set[Any], timeout_s: float) -> tuple[set[Any], set[Any]]:
        ready, not_ready = self._ray.wait(list(pending), num_returns=1, timeout=timeout_s)
        return set(ready), set(not_ready)

    def _result(self, future: Any) -> ChunkResult:
        result: ChunkResult = self._ray.get(future)
        return result

    def _cancel(self, pending: set[Any]) -> None:
        for ref in pending:
            self._ray.cancel(ref, force=True)

    def close(self) -> None:
        """Disconnect from the cluster, which keeps running."""
        self._ray.shutdown()


def _import_engine(runner: str, module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise _missing_engine(runner, module) from None


def _missing_engine(runner: str, module: str) -> InputError:
    return InputError(
        f"--runner {runner} needs the {module!r} package, which is not installed; "
        f"install it with: {_INSTALL_HINT[runner]}",
        file="command line",
        field="--runner",
        value=runner,
        has_value=True,
    )


def check_runner(name: str, *, workers: int | None = None, address: str | None = None) -> None:
    """Check the runner settings and that its engine is installed, without starting it.

    Raises
    ------
    InputError
        For an unknown runner, an address given to a runner that takes none, or a
        missing package (the message names the install command).
    """
    if name not in RUNNER_NAMES:
        raise InputError(
            f"unknown runner; choose one of {', '.join(RUNNER_NAMES)}",
            file="command line",
            field="--runner",
            value=name,
            has_value=True,
        )
    if name == "dask":
        _find_engine("dask", "distributed")
        if address is not None:
            _check_dask_address(address)
    if name == "ray":
        _find_engine("ray", "ray")
    if address is not None and name not in ("dask", "ray"):
        raise InputError(
            f"an address is for --runner dask or ray, not {name}",
            file="command line",
            field="--runner",
            value=address,
            has_value=True,
        )
    if name == "ray" and address is None:
        raise InputError(
            "--runner ray needs --ray-address, the address of a running Ray cluster "
            "(ray start --head prints it); a Ray instance started here would listen on "
            "the machine's network address, not 127.0.0.1 only (docs/distributed.md)",
            file="command line",
            field="--ray-address",
        )
    if workers is not None and workers < 1:
        raise InputError(
            "needs at least 1 worker", file="command line", field="--workers", value=workers
        )


def _check_dask_address(address: str) -> None:
    """Check that `address` reads as a Dask scheduler address, without connecting."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except ValueError as exc:
        raise InputError(
            f"is not a Dask scheduler address ({exc}); give one such as tcp://10.0.0.5:8786",
            file="command line",
            field="--dask-address",
            value=address,
            has_value=True,
        ) from None


def _find_engine(runner: str, module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise _missing_engine(runner, module)


@contextmanager
def open_runner(
    name: str, *, workers: int | None = None, address: str | None = None
) -> Iterator[ChunkRunner]:
    """Start (or join) a runner and shut down what it started when the block ends.

    Parameters
    ----------
    name
        One of `RUNNER_NAMES`.
    workers
        Chunks at a time; for a local pool or cluster, its size (default: the cores of
        this machine); for a cluster at an address, its CPUs unless given.
    address
        A Dask scheduler (``tcp://host:8786``) or Ray cluster (``ray://host:10001``,
        ``host:6379`` or ``auto``) to join instead of starting one.

    Raises
    ------
    InputError
        As `check_runner`.
    """
    check_runner(name, workers=workers, address=address)
    runner: ChunkRunner
    if name == "thread":
        runner = ThreadRunner(workers or default_workers())
    elif name == "process":
        runner = ProcessRunner(workers or default_workers())
    elif name == "dask":
        runner = DaskRunner(workers, address)
    else:
        assert address is not None
        runner = RayRunner(workers, address)
    with _open_runners_lock:
        _open_runners.append(runner)
    try:
        yield runner
    finally:
        with _open_runners_lock:
            if runner in _open_runners:
                _open_runners.remove(runner)
        runner.close()


_open_runners: list[ChunkRunner] = []
_open_runners_lock = threading.Lock()


def close_open_runners(timeout_s: float = 10.0) -> None:
    """Shut down every runner `open_runner` started and has not closed yet.

    For a process that exits at once (on Ctrl-C) without unwinding its stack. Each
    runner gets `timeout_s` seconds.
    """
    with _open_runners_lock:
        runners = list(_open_runners)
        _open_runners.clear()
    for runner in runners:
        closer = threading.Thread(target=runner.close, daemon=True)
        closer.start()
        closer.join(timeout_s)
