"""The two-objective prefilter compiled with numba against the same steps in NumPy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from allocation.pareto import RELATIVE_TOLERANCE, _prefilter_bins_2d, pareto_front
from bench.bench_pareto import make_points
from bench.common import Settings, Table, format_seconds, median_time_s

TITLE = "Prefilter: numba or NumPy"


def prefilter_bins_2d_numpy(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Return the rows the bin prefilter keeps, computed with NumPy array operations."""
    f0 = values[:, 0]
    f1 = values[:, 1]
    low, high = f0.min(), f0.max()
    bins_per_unit = n_bins / (high - low)
    bins = np.minimum(((f0 - low) * bins_per_unit).astype(np.int64), n_bins - 1)
    bin_min1 = np.full(n_bins, np.inf)
    np.minimum.at(bin_min1, bins, f1)
    bin_max0 = np.full(n_bins, -np.inf)
    np.maximum.at(bin_max0, bins, f0)
    before_min1 = np.concatenate([[np.inf], np.minimum.accumulate(bin_min1)[:-1]])
    before_max0 = np.concatenate([[-np.inf], np.maximum.accumulate(bin_max0)[:-1]])
    p1 = before_min1[bins]
    one_minus = 1.0 - RELATIVE_TOLERANCE
    dropped = (p1 < f1 * one_minus) | ((p1 <= f1) & (before_max0[bins] < f0 * one_minus))
    return np.flatnonzero(~dropped)


_FIRST_CALL = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from allocation.pareto import pareto_front, _prefilter_bins_2d
from bench.bench_pareto import make_points
from bench.bench_prefilter import prefilter_bins_2d_numpy
imported_s = time.perf_counter() - started
points = make_points("uniform", int(sys.argv[1]), 2)
which = sys.argv[2]
started = time.perf_counter()
if which == "numba":
    _prefilter_bins_2d(points, 65536)
elif which == "numpy":
    prefilter_bins_2d_numpy(points, 65536)
else:
    pareto_front(points, np.arange(len(points)))
print(json.dumps({"first_call_s": time.perf_counter() - started, "import_s": imported_s}))
"""


def _first_call_s(which: str, n: int, cache_dir: str) -> dict[str, float]:
    """Time the first call in a new process that uses `cache_dir` as numba's cache."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    output = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, str(n), which],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def run(settings: Settings) -> list[Table]:
    """Time the prefilter both ways, cold (compiling), cached and warm."""
    n = 10**6 if settings.quick else 10**7
    points = make_points("uniform", n, 2)
    n_bins = 65536
    numba_rows = _prefilter_bins_2d(points, n_bins)
    numpy_rows = prefilter_bins_2d_numpy(points, n_bins)
    same = np.array_equal(numba_rows, numpy_rows)

    table = Table(
        title=f"Bin prefilter on {n:,} uniform 2-D points ({n_bins} bins)",
        columns=["version", "first call, empty cache", "first call, cache filled", "warm median"],
    )
    order = np.arange(n)
    with tempfile.TemporaryDirectory() as cache_dir:
        for which in ("numba", "numpy", "pareto_front"):
            cold = _first_call_s(which, n, cache_dir)["first_call_s"]
            cached = _first_call_s(which, n, cache_dir)["first_call_s"]
            if which == "numba":
                warm, _, _ = median_time_s(lambda: _prefilter_bins_2d(points, n_bins), 5)
            elif which == "numpy":
                warm, _, _ = median_time_s(
                    lambda: prefilter_bins_2d_numpy(points, n_bins), settings.repeats
                )
            else:
                warm, _, _ = median_time_s(lambda: pareto_front(points, order), 5)
            label = {
                "numba": "prefilter, numba",
                "numpy": "prefilter, NumPy",
                "pareto_front": "whole pareto_front (numba)",
            }[which]
            table.rows.append(
                [label, format_seconds(cold), format_seconds(cached), format_seconds(warm)]
            )
            table.facts[f"{which} warm"] = warm
            table.facts[f"{which} cold"] = cold
            table.facts[f"{which} cached"] = cached
    table.notes.append(
        f"Both versions keep the same {len(numba_rows):,} rows: {'yes' if same else 'NO'}. "
        "A first call runs in a new process; with an empty cache it includes numba's "
        "compilation, with the cache filled it loads the compiled code from disk."
    )
    return [table]
