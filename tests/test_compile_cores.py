"""Cores of a device: explicit, from the pricing provider, or from the CPU."""

from __future__ import annotations

import pytest

from allocation.catalog import CpuCatalog
from allocation.compile import compile_problem
from allocation.model import System, Workflow
from allocation.reference import reference_evaluate
from tests.conftest import CATALOGS

WORKFLOW = {
    "workflow": "w",
    "measured_on": {"name": "ref", "cores": 8, "single_thread": 1000},
    "stages": [
        {"id": "a", "time_s": 1.0, "pin": "edge"},
        {"id": "b", "time_s": 4.0, "threads": 8},
    ],
    "edges": [{"from": "a", "to": "b", "bytes": 1000}],
}


def lambda_system(cores: int | None) -> System:
    cloud = {
        "id": "cloud",
        "cpu": {"name": "vcpu", "cores": 6, "single_thread": 1000},
        "pricing": {
            "provider": "aws-lambda",
            "region": "ap-northeast-1",
            "architecture": "arm64",
            "memory_mb": 3538,
        },
    }
    if cores is not None:
        cloud["cores"] = cores
    return System.model_validate(
        {
            "system": "s",
            "devices": [
                {"id": "edge", "cpu": {"name": "e", "cores": 4, "single_thread": 500}},
                cloud,
            ],
            "links": [{"between": ["edge", "cloud"], "bandwidth_mbps": 100}],
        }
    )


def compiled(cores: int | None):
    workflow = Workflow.model_validate(WORKFLOW)
    system = lambda_system(cores)
    problem = compile_problem(workflow, system, CpuCatalog(None, (), ""), catalog_dir=CATALOGS)
    return workflow, system, problem


def test_cores_follow_lambda_memory() -> None:
    _, _, problem = compiled(None)
    # 3538 MB buys two vCPUs' worth (1769 MB each): 4 s × 1000 × 8 / (1000 × 2).
    assert problem.stage_time_s[1, 1] == pytest.approx(16.0, rel=1e-12)


def test_explicit_cores_win() -> None:
    _, _, problem = compiled(4)
    assert problem.stage_time_s[1, 1] == pytest.approx(8.0, rel=1e-12)


def test_reference_uses_same_cores() -> None:
    workflow, system, problem = compiled(None)
    metrics = reference_evaluate(workflow, system, problem, {"a": "edge", "b": "cloud"})
    assert metrics["latency_s"] == pytest.approx(2.0 + 16.0 + 1000 * 8 / 1e8, rel=1e-12)
