"""Seeded random workflow and system models for comparing the engine with the reference.

`random_problem(seed)` builds a small problem with 1 to 9 stages on 2 to 4 devices. The
graph is a chain, a forest or a general DAG, with several sources and sinks, isolated
stages, and stages listed out of topological order. Stages may have pins and allowed
sets, edges may carry zero bytes and stages may take zero time. Links come with and
without ``latency_ms``, up to three devices are priced by the ``flat`` provider, and
there are one, two or three objectives. Every space has at most `MAX_SPACE` assignments,
so that the pure-Python reference stays fast.

`random_problem_mixed_pricing(seed)` builds the same problem with at least one priced
device and some devices priced by ``aws-lambda`` from ``catalogs/prices.parquet``
instead of ``flat``; compile it with that catalog folder as ``catalog_dir``.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from allocation.catalog import CpuCatalog
from allocation.model import SCORE_FIGURES, System, Workflow

__all__ = ["EMPTY_CATALOG", "MAX_SPACE", "random_problem", "random_problem_mixed_pricing"]

MAX_SPACE = 3000
"""Largest number of assignments of a generated problem."""

EMPTY_CATALOG = CpuCatalog(None, (), "")
"""A CPU catalog without rows: every generated CPU is written inline."""

_STAGE_IDS = (
    "decode",
    "resize",
    "detect",
    "track",
    "crop",
    "classify",
    "blur_faces",
    "draw.boxes",
    "encode-jpeg",
)
_DEVICE_IDS = ("edge", "gateway", "cloud-a", "cloud_b")
_SPACE_LIMITS = (8, 30, 100, 300, 1000, MAX_SPACE)
_SPACE_LIMIT_WEIGHTS = (1, 3, 4, 4, 3, 2)


def random_problem(seed: int) -> tuple[Workflow, System]:
    """Build the workflow and system of one random problem, the same for the same seed."""
    rng = random.Random(seed)

    # One problem in twenty gets many stages on four devices, so that large spaces occur.
    large = rng.random() < 0.05
    device_ids = list(_DEVICE_IDS[: 4 if large else rng.randint(2, 4)])
    rng.shuffle(device_ids)
    n_stages = rng.randint(6, 9) if large else rng.randint(1, 9)
    stage_ids = list(_STAGE_IDS[:n_stages])
    rng.shuffle(stage_ids)

    edges = _random_edges(rng, stage_ids)
    stages = [_random_stage(rng, stage_id) for stage_id in stage_ids]
    limit = MAX_SPACE if large else rng.choices(_SPACE_LIMITS, _SPACE_LIMIT_WEIGHTS)[0]
    space_size = _restrict_devices(rng, stages, device_ids, limit)

    used_figures = {stage.get("score", "single_thread") for stage in stages}
    workflow = {
        "workflow": f"random-{seed}",
        "measured_on": _random_cpu(rng, "Reference PC", used_figures),
        "stages": stages,
        "edges": edges,
    }
    if rng.random() < 0.2:
        workflow["description"] = "Random flow <b>with markup</b> & Unicode: Bildverarbeitung"

    system: dict[str, Any] = {
        "system": f"random-system-{seed}",
        "devices": _random_devices(rng, device_ids, used_figures, share_cpus=space_size <= 500),
        "links": _random_links(rng, stages, edges, device_ids),
    }
    if rng.random() < 0.5:
        system["runs_per_month"] = rng.choice([0, 1, 1000, rng.randint(1, 10**7)])
    # Large spaces keep the default objectives, because a single objective such as
    # upload_bytes can make thousands of assignments equivalent and the reference front
    # takes time quadratic in their number.
    if space_size <= 500 and rng.random() < 0.6:
        system["objectives"] = _random_objectives(rng, has_runs="runs_per_month" in system)

    return Workflow.model_validate(workflow), System.model_validate(system)


def _random_edges(rng: random.Random, stage_ids: list[str]) -> list[dict[str, Any]]:
    # Edges follow `rank`, a topological order that mostly differs from the file order,
    # so that the engine cannot rely on edges pointing forward in the file.
    rank = list(stage_ids)
    if rng.random() < 0.7:
        rng.shuffle(rank)
    shape = rng.choice(["chain", "chain", "dag", "dag", "dag", "forest", "isolated"])

    if shape == "chain":
        pairs = list(itertools.pairwise(rank))
    elif shape == "isolated":
        pairs = []
    else:
        density = rng.uniform(0.2, 0.7) if shape == "dag" else rng.uniform(0.1, 0.3)
        pairs = [
            (rank[i], rank[j])
            for i in range(len(rank))
            for j in range(i + 1, len(rank))
            if rng.random() < density
        ]
    rng.shuffle(pairs)
    return [{"from": u, "to": v, "bytes": _random_bytes(rng)} for u, v in pairs]


def _random_bytes(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.2:
        return 0
    if roll < 0.3:
        return rng.randint(1, 100)
    if roll < 0.9:
        return rng.randint(1_000, 10**8)
    return rng.randint(10**9, 10**10)


def _random_stage(rng: random.Random, stage_id: str) -> dict[str, Any]:
    stage: dict[str, Any] = {"id": stage_id}
    roll = rng.random()
    if roll < 0.15:
        stage["time_s"] = 0.0
    elif roll < 0.3:
        stage["time_s"] = round(rng.uniform(0.01, 2.0), 2)
    else:
        stage["time_s"] = rng.uniform(1e-4, 3.0)
    if rng.random() < 0.4:
        stage["threads"] = rng.randint(1, 16)
    if rng.random() < 0.6:
        stage["score"] = rng.choice(SCORE_FIGURES)
    if rng.random() < 0.2:
        stage["name"] = f"Étape {stage_id} — <i>résumé</i>"
    return stage


def _restrict_devices(
    rng: random.Random, stages: list[dict[str, Any]], device_ids: list[str], limit: int
) -> None:
    """Add pins and allowed sets at random, then more until the space fits `limit`.

    Returns the number of assignments.
    """
    for stage in stages:
        roll = rng.random()
        if roll < 0.12:
            stage["pin"] = rng.choice(device_ids)
        elif roll < 0.3:
            stage["allowed"] = rng.sample(device_ids, rng.randint(1, len(device_ids)))
        elif roll < 0.35:
            # A pin inside an allowed set, which the pin overrides.
            allowed = rng.sample(device_ids, rng.randint(1, len(device_ids)))
            stage["allowed"] = allowed
            stage["pin"] = rng.choice(allowed)

    def radix(stage: dict[str, Any]) -> int:
        if "pin" in stage:
            return 1
        return len(stage.get("allowed", device_ids))

    while math.prod(radix(stage) for stage in stages) > limit:
        stage = rng.choice([stage for stage in stages if radix(stage) > 1])
        current = stage.get("allowed", device_ids)
        if rng.random() < 0.3:
            stage["pin"] = rng.choice(current)
            stage.pop("allowed", None)
        else:
            stage["allowed"] = rng.sample(current, len(current) - 1)
    return math.prod(radix(stage) for stage in stages)


def _random_cpu(rng: random.Random, name: str, used_figures: set[str]) -> dict[str, Any]:
    cpu: dict[str, Any] = {"name": name, "cores": rng.choice([1, 2, 4, 4, 8, 16, 64])}
    for figure in SCORE_FIGURES:
        # A figure that no stage is scaled by may be missing.
        if figure not in used_figures and rng.random() < 0.3:
            continue
        value = rng.uniform(200.0, 40_000.0)
        cpu[figure] = round(value) * 1.0 if rng.random() < 0.3 else value
    return cpu


def _random_devices(
    rng: random.Random, device_ids: list[str], used_figures: set[str], *, share_cpus: bool
) -> list[dict[str, Any]]:
    n_priced = rng.randint(0, min(3, len(device_ids)))
    priced = set(rng.sample(device_ids, n_priced))
    devices = []
    for d, device_id in enumerate(device_ids):
        if share_cpus and d > 0 and rng.random() < 0.2:
            # Reuse the previous device's CPU, so that assignments that differ only in the
            # choice between the two tie and exercise the duplicate rule. Large spaces
            # skip this, because thousands of ties make the reference front slow.
            cpu = devices[-1]["cpu"]
        else:
            cpu = _random_cpu(rng, f"CPU of {device_id} «{d}»", used_figures)
        device: dict[str, Any] = {"id": device_id, "cpu": cpu}
        if rng.random() < 0.5:
            device["cores"] = rng.randint(1, cpu["cores"])
        if device_id in priced:
            device["pricing"] = _random_flat_pricing(rng)
        devices.append(device)
    return devices


def _random_flat_pricing(rng: random.Random) -> dict[str, Any]:
    pricing: dict[str, Any] = {"provider": "flat"}
    scales = {
        "usd_per_compute_s": 1e-4,
        "usd_per_invocation": 1e-6,
        "usd_per_gb_in": 0.05,
        "usd_per_gb_out": 0.2,
    }
    for option, scale in scales.items():
        roll = rng.random()
        if roll < 0.15:
            continue
        pricing[option] = 0.0 if roll < 0.3 else rng.uniform(0.0, scale)
    return pricing


def _random_links(
    rng: random.Random,
    stages: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    device_ids: list[str],
) -> list[dict[str, Any]]:
    """Link every pair of devices, or only the pairs some assignment needs plus a few."""
    every_pair = list(itertools.combinations(device_ids, 2))
    if rng.random() < 0.75:
        pairs = every_pair
    else:
        devices_of = {
            stage["id"]: [stage["pin"]] if "pin" in stage else stage.get("allowed", device_ids)
            for stage in stages
        }
        needed = {
            frozenset((a, b))
            for edge in edges
            for a in devices_of[edge["from"]]
            for b in devices_of[edge["to"]]
            if a != b
        }
        pairs = [pair for pair in every_pair if frozenset(pair) in needed or rng.random() < 0.3]

    links = []
    for a, b in pairs:
        link: dict[str, Any] = {
            "between": [a, b] if rng.random() < 0.5 else [b, a],
            "bandwidth_mbps": rng.choice([1.0, 10.0, 100.0, rng.uniform(0.5, 2000.0)]),
        }
        roll = rng.random()
        if roll < 0.6:
            link["latency_ms"] = rng.uniform(0.0, 80.0)
        elif roll < 0.7:
            link["latency_ms"] = 0.0
        links.append(link)
    return links


def _random_objectives(rng: random.Random, *, has_runs: bool) -> list[str]:
    """Return latency and cost (either order), or one objective, or three."""
    roll = rng.random()
    if roll < 0.25:
        return ["latency_s", "cost_usd"] if rng.random() < 0.5 else ["cost_usd", "latency_s"]
    extra = ["comm_s", "upload_bytes", "download_bytes"] + (
        ["monthly_cost_usd"] if has_runs else []
    )
    if roll < 0.6:
        return [rng.choice(["latency_s", "cost_usd", *extra])]
    return ["latency_s", "cost_usd", rng.choice(extra)]


# Lambda configurations with every price the provider needs in catalogs/prices.parquet.
_LAMBDA_CONFIGURATIONS = (
    ("ap-northeast-1", "x86_64"),
    ("ap-northeast-1", "arm64"),
    ("us-east-1", "x86_64"),
)


def random_problem_mixed_pricing(seed: int) -> tuple[Workflow, System]:
    """Build `random_problem(seed)` with `flat` and `aws-lambda` devices side by side.

    At least one device is priced. Each priced device keeps its `flat` rates or, with
    probability one half, is billed by `aws-lambda` with a random region, architecture
    and memory size. About half of the systems have a `runs_per_month`.
    """
    workflow, system = random_problem(seed)
    rng = random.Random(seed + 7_000_003)
    # warnings=False: pydantic cannot tell which side of the CPU union it serialises.
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)

    devices = document["devices"]
    if not any("pricing" in device for device in devices):
        rng.choice(devices)["pricing"] = _random_flat_pricing(rng)
    for device in devices:
        if "pricing" not in device or rng.random() < 0.5:
            continue
        region, architecture = rng.choice(_LAMBDA_CONFIGURATIONS)
        device["pricing"] = {
            "provider": "aws-lambda",
            "region": region,
            "architecture": architecture,
            "memory_mb": rng.choice([128, 1024, 1769, 5120, 10240]),
        }
    if any(device.get("pricing", {}).get("provider") == "aws-lambda" for device in devices):
        # A run can move up to about 90 GB (nine edges of up to 10 GB each), and the Tokyo
        # egress tiers of the price table end at 10,240 GB a month, so at most 100 runs.
        if "runs_per_month" in document or rng.random() < 0.5:
            document["runs_per_month"] = rng.choice([0, 1, 100])
    elif "runs_per_month" not in document and rng.random() < 0.5:
        document["runs_per_month"] = rng.choice([1, 1000, 100_000, 10**7])
    return workflow, System.model_validate(document)


# Options of every built-in provider that states per-run cost terms, priced from
# catalogs/prices.parquet.
_TERM_PRICINGS: tuple[dict[str, Any], ...] = (
    {"provider": "aws-lambda", "region": "us-east-1", "memory_mb": 1769},
    {
        "provider": "aws-lambda",
        "region": "ap-northeast-1",
        "architecture": "arm64",
        "memory_mb": 128,
    },
    {"provider": "aws-ec2", "region": "us-east-1", "instance_type": "t3.medium"},
    {
        "provider": "aws-ec2",
        "region": "ap-northeast-1",
        "instance_type": "m5.xlarge",
        "utilisation": 0.6,
    },
    {"provider": "gcp-cloud-run", "region": "us-central1", "memory_gib": 0.5},
    {"provider": "gcp-cloud-run", "region": "us-central1", "vcpu": 4, "memory_gib": 8},
    {"provider": "azure-functions", "region": "eastus", "memory_mb": 160},
    {"provider": "azure-functions", "region": "eastus", "memory_mb": 1536},
)


def random_problem_any_pricing(seed: int) -> tuple[Workflow, System]:
    """Build `random_problem(seed)` with any built-in provider that has per-run cost terms.

    Each priced device keeps its `flat` rates or, with probability two thirds, gets one
    of the configurations of `aws-lambda`, `aws-ec2` (busy_time), `gcp-cloud-run` or
    `azure-functions`; one device in three is priced when none was. The objectives are
    those that add up over one run: latency_s, cost_usd, comm_s and the byte counts.
    `runs_per_month` is 1 or unset, so that monthly quantities stay inside every tier.
    Compile it with ``catalogs/`` as ``catalog_dir``.
    """
    workflow, system = random_problem(seed)
    rng = random.Random(seed + 9_000_011)
    document = system.model_dump(by_alias=True, exclude_none=True, warnings=False)

    devices = document["devices"]
    if not any("pricing" in device for device in devices) and rng.random() < 0.7:
        rng.choice(devices)["pricing"] = _random_flat_pricing(rng)
    for device in devices:
        if "pricing" in device and rng.random() < 2 / 3:
            device["pricing"] = dict(rng.choice(_TERM_PRICINGS))
    document.pop("runs_per_month", None)
    if rng.random() < 0.3:
        document["runs_per_month"] = 1
    document["objectives"] = _random_additive_objectives(rng)
    return workflow, System.model_validate(document)


def _random_additive_objectives(rng: random.Random) -> list[str]:
    roll = rng.random()
    if roll < 0.5:
        return ["latency_s", "cost_usd"] if rng.random() < 0.7 else ["cost_usd", "latency_s"]
    others = ["comm_s", "upload_bytes", "download_bytes"]
    if roll < 0.7:
        return [rng.choice(["latency_s", "cost_usd", *others])]
    if roll < 0.9:
        return ["latency_s", "cost_usd", rng.choice(others)]
    return rng.sample(["latency_s", "cost_usd", *others], rng.randint(2, 4))


def chain_problem(
    n_stages: int,
    seed: int,
    *,
    n_devices: int = 4,
    lambda_device: bool = True,
    pin_first: bool = False,
) -> tuple[Workflow, System]:
    """Build a chain of `n_stages` stages on an edge device, a gateway and cloud devices.

    With `pin_first` the first stage is pinned to the edge device. Devices beyond the first two are
    priced: the third by `flat`, the fourth by `aws-lambda` when `lambda_device` is set
    (compile with ``catalogs/`` as ``catalog_dir``) and by `flat` otherwise.
    """
    rng = random.Random(seed)
    stage_ids = [f"s{i:02d}" for i in range(n_stages)]
    edges = [
        {"from": u, "to": v, "bytes": rng.randint(1_000, 5_000_000)}
        for u, v in itertools.pairwise(stage_ids)
    ]
    return _large_problem(
        rng, f"chain-{n_stages}", stage_ids, edges, n_devices, lambda_device, pin_first
    )


def branching_problem(
    n_stages: int,
    seed: int,
    *,
    max_branches: int = 3,
    n_devices: int = 4,
    lambda_device: bool = True,
    pin_first: bool = False,
) -> tuple[Workflow, System]:
    """Build a DAG of `n_stages` stages whose branches split and join again.

    One source feeds the graph, which splits into at most `max_branches` parallel
    branches at a time, joins them at fan-in stages, and ends in one sink. The devices
    are those of `chain_problem`.
    """
    rng = random.Random(seed)
    stage_ids = [f"s{i:02d}" for i in range(n_stages)]
    edges: list[dict[str, Any]] = []

    def connect(u: str, v: str) -> None:
        edges.append({"from": u, "to": v, "bytes": rng.randint(1_000, 5_000_000)})

    tails = [stage_ids[0]]
    for i, stage_id in enumerate(stage_ids[1:], start=1):
        remaining = n_stages - i
        roll = rng.random()
        if remaining == 1 or (len(tails) > 1 and (roll < 0.3 or remaining <= len(tails))):
            # Join two or more branches.
            joined = rng.sample(tails, rng.randint(2, len(tails))) if remaining > 1 else tails
            for tail in joined:
                connect(tail, stage_id)
            tails = [t for t in tails if t not in joined] + [stage_id]
        elif len(tails) < max_branches and roll < 0.6:
            # Split: the new stage starts a branch from an existing tail, which stays.
            connect(rng.choice(tails), stage_id)
            tails.append(stage_id)
        else:
            tail = rng.choice(tails)
            connect(tail, stage_id)
            tails[tails.index(tail)] = stage_id
    return _large_problem(
        rng, f"dag-{n_stages}", stage_ids, edges, n_devices, lambda_device, pin_first
    )


def _large_problem(
    rng: random.Random,
    name: str,
    stage_ids: list[str],
    edges: list[dict[str, Any]],
    n_devices: int,
    lambda_device: bool,
    pin_first: bool,
) -> tuple[Workflow, System]:
    stages: list[dict[str, Any]] = [
        {"id": stage_id, "time_s": rng.uniform(0.001, 0.5)} for stage_id in stage_ids
    ]
    device_ids = list(_DEVICE_IDS[:n_devices])
    if pin_first:
        stages[0]["pin"] = device_ids[0]
    devices: list[dict[str, Any]] = []
    for d, device_id in enumerate(device_ids):
        # The edge device is slow, the gateway faster and the cloud devices fastest.
        speed = (400.0, 1200.0, 3500.0, 3000.0)[d % 4] * rng.uniform(0.8, 1.25)
        cpu = {"name": f"CPU {d}", "cores": 4, "single_thread": speed}
        device: dict[str, Any] = {"id": device_id, "cpu": cpu}
        if d == 3 and lambda_device:
            device["pricing"] = {"provider": "aws-lambda", "region": "us-east-1", "memory_mb": 1769}
            device["cores"] = 1
        elif d >= 2:
            device["pricing"] = {
                "provider": "flat",
                "usd_per_compute_s": rng.uniform(1e-5, 1e-4),
                "usd_per_invocation": rng.uniform(0.0, 1e-6),
                "usd_per_gb_in": rng.uniform(0.0, 0.02),
                "usd_per_gb_out": rng.uniform(0.05, 0.12),
            }
        devices.append(device)
    links = [
        {
            "between": [a, b],
            "bandwidth_mbps": rng.choice([10.0, 100.0, 1000.0]),
            "latency_ms": rng.uniform(1.0, 40.0),
        }
        for a, b in itertools.combinations(device_ids, 2)
    ]
    workflow = {
        "workflow": name,
        "measured_on": {"name": "Reference PC", "cores": 4, "single_thread": 3000.0},
        "stages": stages,
        "edges": edges,
    }
    system = {"system": f"{name}-system", "devices": devices, "links": links}
    return Workflow.model_validate(workflow), System.model_validate(system)
