"""`allocation calibrate` on synthetic measurements with a known ground truth.

A hidden system (speed factors, a sub-linear core-scaling exponent, a link overhead and
an effective bandwidth) generates measured runs with 2 % seeded noise. The fit must
recover every hidden parameter within 5 %.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from allocation.calibrate import calibrate
from allocation.compile import compile_problem
from allocation.measurements import Measurements, resolve_runs
from allocation.model import System, Workflow
from tests.problems import EMPTY_CATALOG

HIDDEN = {
    "alpha": 0.6,
    "overhead_ms": 40.0,
    "bandwidth_mbps": 30.0,
    "speed": {"edge": 0.7, "gateway": 1.0, "cloud": 1.8},
}
NOISE = 0.02

WORKFLOW: dict[str, Any] = {
    "workflow": "synthetic",
    "measured_on": {"name": "Reference PC", "single_thread": 2000, "cores": 8},
    "stages": [
        {"id": "read", "time_s": 0.05, "pin": "edge"},
        {"id": "decode", "time_s": 0.2, "threads": 2},
        {"id": "resize", "time_s": 0.1},
        {"id": "detect", "time_s": 1.0, "threads": 8},
        {"id": "track", "time_s": 0.3, "threads": 4},
        {"id": "show", "time_s": 0.02, "pin": "edge"},
    ],
    "edges": [
        {"from": "read", "to": "decode", "bytes": 200_000},
        {"from": "decode", "to": "resize", "bytes": 3_000_000},
        {"from": "resize", "to": "detect", "bytes": 1_200_000},
        {"from": "detect", "to": "track", "bytes": 50_000},
        {"from": "track", "to": "show", "bytes": 600_000},
    ],
}


def _system(hidden: bool) -> dict[str, Any]:
    devices = [
        {"id": "edge", "cpu": {"name": "Edge", "single_thread": 600, "cores": 2}},
        {"id": "gateway", "cpu": {"name": "Gateway", "single_thread": 1200, "cores": 4}},
        {"id": "cloud", "cpu": {"name": "Cloud", "single_thread": 2500, "cores": 16}},
    ]
    links = [
        {"between": ["edge", "gateway"], "bandwidth_mbps": 100},
        {"between": ["gateway", "cloud"], "bandwidth_mbps": 100},
        {"between": ["edge", "cloud"], "bandwidth_mbps": 100, "latency_ms": 5},
    ]
    system: dict[str, Any] = {"system": "synthetic-system", "devices": devices, "links": links}
    if hidden:
        system["core_scaling_exponent"] = HIDDEN["alpha"]
        for device in devices:
            device["speed_factor"] = HIDDEN["speed"][device["id"]]
        links[2]["overhead_ms"] = HIDDEN["overhead_ms"]
        links[2]["bandwidth_mbps"] = HIDDEN["bandwidth_mbps"]
    return system


def _measurements(seed: int) -> Measurements:
    workflow = Workflow.model_validate(WORKFLOW)
    truth = compile_problem(workflow, System.model_validate(_system(True)), EMPTY_CATALOG)
    rng = np.random.default_rng(seed)
    free = ["decode", "resize", "detect", "track"]
    index = {stage.id: s for s, stage in enumerate(workflow.stages)}
    device_index = {"edge": 0, "gateway": 1, "cloud": 2}
    runs = []
    for number in range(24):
        # Edge and cloud only, so that every transfer crosses the calibrated link.
        at = {stage: str(rng.choice(["edge", "cloud"])) for stage in free}
        placement = {"read": "edge", "show": "edge", **at}

        def noisy(value: float) -> float:
            return float(value * math.exp(rng.normal(0.0, NOISE)))

        stage_times = {
            stage.id: noisy(truth.stage_time_s[index[stage.id], device_index[placement[stage.id]]])
            for stage in workflow.stages
        }
        transfers = []
        for e, edge in enumerate(workflow.edges):
            a, b = device_index[placement[edge.source]], device_index[placement[edge.target]]
            if a != b:
                time_s = noisy(truth.edge_transfer_s[e, a, b])
                transfers.append({"from": edge.source, "to": edge.target, "time_s": time_s})
        runs.append(
            {
                "name": f"run {number}",
                "at": at,
                "rest": "edge",
                "repeats": 3,
                "stage_time_s": stage_times,
                "transfers": transfers,
            }
        )
    return Measurements.model_validate(
        {
            "measurements": "synthetic",
            "workflow": "synthetic",
            "system": "synthetic-system",
            "runs": runs,
        }
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_fit_recovers_hidden_parameters(seed: int) -> None:
    workflow = Workflow.model_validate(WORKFLOW)
    document = _system(False)
    system = System.model_validate(document)
    measurements = _measurements(seed)
    runs = resolve_runs(measurements, workflow, system, file="synthetic.yaml")

    result = calibrate(workflow, system, document, EMPTY_CATALOG, measurements, runs)
    fitted = result.system

    assert fitted.core_scaling_exponent == pytest.approx(HIDDEN["alpha"], rel=0.05)
    assert fitted.links[2].overhead_ms == pytest.approx(HIDDEN["overhead_ms"], rel=0.05)
    assert fitted.links[2].bandwidth_mbps == pytest.approx(HIDDEN["bandwidth_mbps"], rel=0.05)
    assert fitted.devices[0].speed_factor == pytest.approx(HIDDEN["speed"]["edge"], rel=0.05)
    assert fitted.devices[2].speed_factor == pytest.approx(HIDDEN["speed"]["cloud"], rel=0.05)


def test_fit_warns_about_unmeasured_parts() -> None:
    workflow = Workflow.model_validate(WORKFLOW)
    document = _system(False)
    system = System.model_validate(document)
    measurements = _measurements(1)
    runs = resolve_runs(measurements, workflow, system, file="synthetic.yaml")

    result = calibrate(workflow, system, document, EMPTY_CATALOG, measurements, runs)
    text = "\n".join(result.warnings)

    assert "device 'gateway': no measured stage ran on it" in text
    assert "link edge-gateway: no measured transfer crossed it" in text
    assert "speed_factor" not in result.system_document["devices"][1]


def test_one_transfer_size_fits_effective_bandwidth() -> None:
    workflow = Workflow.model_validate(WORKFLOW)
    document = _system(False)
    system = System.model_validate(document)
    measurements = Measurements.model_validate(
        {
            "measurements": "one-size",
            "workflow": "synthetic",
            "system": "synthetic-system",
            "runs": [
                {
                    "name": "all cloud",
                    "rest": "cloud",
                    "transfers": [{"from": "read", "to": "decode", "time_s": 0.1}],
                }
            ],
        }
    )
    runs = resolve_runs(measurements, workflow, system, file="one-size.yaml")

    result = calibrate(workflow, system, document, EMPTY_CATALOG, measurements, runs)

    assert any("bandwidth and overhead cannot be separated" in w for w in result.warnings)
    assert result.system.links[2].overhead_ms == 0.0
    # 200,000 bytes in 0.1 s, less the 5 ms latency: 1.6e6 bits / 0.095 s.
    assert result.system.links[2].bandwidth_mbps == pytest.approx(1.6 / 0.095, rel=1e-5)
