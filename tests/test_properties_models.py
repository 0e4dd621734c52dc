"""Property tests on random input files: valid ones load and sweep, broken ones exit 2.

Hypothesis draws small workflow and system documents: chains and DAGs of 1 to 5 stages
on 2 to 4 devices, with pins, allowed sets, catalog or inline CPUs and `flat` pricing.
Valid documents are written to real YAML or JSON files and must load, compile and give
the same metrics and front in the engine as in the slow reference. Each invalid document
is a valid one with one mutation: a wrong type, a removed required field, a negative,
NaN or infinite number, or a broken reference. ``allocation sweep`` must reject it with
exit status 2 and a message naming the file, print no traceback and write nothing.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation import cli
from allocation.catalog import load_cpu_catalog
from allocation.compile import compile_problem
from allocation.estimate import METRIC_COLUMNS, evaluate_chunk
from allocation.loading import load_system, load_workflow
from allocation.model import SCORE_FIGURES
from allocation.reference import reference_sweep
from allocation.sweep import sweep_in_process
from tests.conftest import CATALOGS

STAGE_IDS = ("decode", "resize", "detect", "track", "draw.boxes")
DEVICE_IDS = ("edge", "gateway", "cloud-a", "cloud_b")

# Catalog rows with single_thread, cpu_mark and cores, spelled as users spell them: a
# row name, a different case, a name without clock suffix and an alias.
CATALOG_CPU_NAMES = (
    "BCM2711",
    "intel core i5-12400",
    "Intel Core i7-10700",
    "Raspberry Pi 4 Model B",
    "AMD Ryzen 5 5600X",
)
CATALOG_FIGURES = {"single_thread", "cpu_mark"}

RELATIVE_TOLERANCE = 1e-9
CATALOG = load_cpu_catalog(CATALOGS / "cpus.parquet")

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Valid documents.

finite_times = st.one_of(st.just(0.0), st.floats(1e-6, 10.0))
figures = st.floats(50.0, 50_000.0)


@st.composite
def inline_cpus(draw: st.DrawFn, name: str) -> dict[str, Any]:
    cpu: dict[str, Any] = {"name": name, "cores": draw(st.sampled_from([1, 2, 4, 8, 64]))}
    for figure in SCORE_FIGURES:
        cpu[figure] = draw(figures)
    if draw(st.booleans()):
        cpu["threads"] = cpu["cores"] * 2
    return cpu


@st.composite
def cpu_references(draw: st.DrawFn, name: str, scores: set[str]) -> Any:
    if scores <= CATALOG_FIGURES and draw(st.booleans()):
        return draw(st.sampled_from(CATALOG_CPU_NAMES))
    return draw(inline_cpus(name))


@st.composite
def flat_pricing(draw: st.DrawFn) -> dict[str, Any]:
    pricing: dict[str, Any] = {"provider": "flat"}
    for option, scale in (
        ("usd_per_compute_s", 1e-4),
        ("usd_per_invocation", 1e-6),
        ("usd_per_gb_in", 0.05),
        ("usd_per_gb_out", 0.2),
    ):
        if draw(st.booleans()):
            pricing[option] = draw(st.floats(0.0, scale))
    return pricing


@st.composite
def stage_restrictions(draw: st.DrawFn, device_ids: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["free", "free", "pin", "allowed", "pin_in_allowed"]))
    if kind == "free":
        return {}
    if kind == "pin":
        return {"pin": draw(st.sampled_from(device_ids))}
    allowed = draw(st.lists(st.sampled_from(device_ids), min_size=1, unique=True))
    if kind == "allowed":
        return {"allowed": allowed}
    return {"allowed": allowed, "pin": draw(st.sampled_from(allowed))}


def _devices_of(stage: dict[str, Any], device_ids: list[str]) -> list[str]:
    if "pin" in stage:
        return [stage["pin"]]
    return list(stage.get("allowed", device_ids))


@st.composite
def valid_documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Draw a workflow and a system document that load and compile without error."""
    device_ids = list(DEVICE_IDS[: draw(st.integers(2, 4))])
    topological = list(STAGE_IDS[: draw(st.integers(1, 5))])

    # Graph: a chain or a DAG along `topological`. The file lists stages in another order.
    if draw(st.booleans()):
        pairs = list(itertools.pairwise(topological))
    else:
        candidates = list(itertools.combinations(topological, 2))
        pairs = [pair for pair in candidates if draw(st.booleans())]
    edges = [{"from": u, "to": v, "bytes": draw(st.integers(0, 10**10))} for u, v in pairs]
    file_order = draw(st.permutations(topological))

    stages = []
    for stage_id in file_order:
        stage: dict[str, Any] = {"id": stage_id, "time_s": draw(finite_times)}
        if draw(st.booleans()):
            stage["threads"] = draw(st.integers(1, 16))
        if draw(st.booleans()):
            stage["score"] = draw(st.sampled_from(SCORE_FIGURES))
        stage.update(draw(stage_restrictions(device_ids)))
        stages.append(stage)
    scores = {stage.get("score", "single_thread") for stage in stages}

    workflow = {
        "workflow": "property-flow",
        "measured_on": draw(cpu_references("Reference PC", scores)),
        "stages": stages,
        "edges": edges,
    }

    devices = []
    for device_id in device_ids:
        device: dict[str, Any] = {"id": device_id, "cpu": draw(cpu_references(device_id, scores))}
        if draw(st.booleans()):
            device["cores"] = draw(st.integers(1, 8))
        if draw(st.booleans()):
            device["pricing"] = draw(flat_pricing())
        devices.append(device)

    # Links: every pair some assignment needs, and others at random.
    devices_of = {stage["id"]: _devices_of(stage, device_ids) for stage in stages}
    needed = {
        frozenset((a, b))
        for edge in edges
        for a in devices_of[edge["from"]]
        for b in devices_of[edge["to"]]
        if a != b
    }
    links = []
    for a, b in itertools.combinations(device_ids, 2):
        if frozenset((a, b)) in needed or draw(st.booleans()):
            link: dict[str, Any] = {"between": [a, b], "bandwidth_mbps": draw(st.floats(0.5, 1e4))}
            if draw(st.booleans()):
                link["latency_ms"] = draw(st.floats(0.0, 100.0))
            links.append(link)

    system: dict[str, Any] = {"system": "property-system", "devices": devices, "links": links}
    if draw(st.booleans()):
        system["runs_per_month"] = draw(st.integers(0, 10**6))
    objectives = ["latency_s", "cost_usd", "comm_s", "upload_bytes", "download_bytes"]
    if "runs_per_month" in system:
        objectives.append("monthly_cost_usd")
    if draw(st.booleans()):
        system["objectives"] = draw(
            st.lists(st.sampled_from(objectives), min_size=1, max_size=3, unique=True)
        )
    return workflow, system


# Files and the command line.


@dataclass(frozen=True)
class Files:
    folder: Path
    workflow: Path
    system: Path


@contextlib.contextmanager
def written(workflow: Any, system: Any, *, as_json: bool) -> Iterator[Files]:
    """Write the two documents into a temporary folder, as YAML or JSON."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        suffix = ".json" if as_json else ".yaml"
        paths = []
        for stem, document in (("workflow", workflow), ("system", system)):
            path = folder / f"{stem}{suffix}"
            if as_json:
                text = json.dumps(document, allow_nan=True)
            else:
                text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        yield Files(folder, paths[0], paths[1])


class PrefectStarted(BaseException):
    """Raised in place of Prefect's start-up, as a BaseException that the CLI does not catch."""


def _block_prefect(verbose: bool) -> None:
    raise PrefectStarted("the CLI started Prefect for input it should have rejected")


def run_sweep(files: Files) -> tuple[int, str]:
    """Run ``allocation sweep`` in-process with Prefect blocked. Return its status and output."""
    out = files.folder / "out"
    argv = ["sweep", str(files.workflow), str(files.system), "--catalog", str(CATALOGS)]
    argv += ["--out", str(out)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(cli, "_configure_prefect", _block_prefect),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        status = cli.main(argv)
    assert not out.exists() or not any(out.iterdir()), "wrote into --out"
    return status, stdout.getvalue() + stderr.getvalue()


# Valid models: the engine agrees with the reference.


@SETTINGS
@given(documents=valid_documents(), as_json=st.booleans(), chunk_divisor=st.integers(1, 5))
def test_valid_model_engine_matches_reference(
    documents: tuple[dict[str, Any], dict[str, Any]], as_json: bool, chunk_divisor: int
) -> None:
    with written(*documents, as_json=as_json) as files:
        workflow = load_workflow(files.workflow)
        system = load_system(files.system)
        problem = compile_problem(
            workflow,
            system,
            CATALOG,
            workflow_file=files.workflow,
            system_file=files.system,
            catalog_dir=CATALOGS,
        )

    assignments, metrics, expected_front = reference_sweep(workflow, system, problem)
    chunk_size = max(1, problem.space_size // chunk_divisor)
    front, _ = sweep_in_process(problem, chunk_size=chunk_size)
    evaluation = evaluate_chunk(problem, 0, problem.space_size)

    assert len(assignments) == problem.space_size
    pairs = zip(
        front.evaluation.pattern_index.tolist(), front.equivalent_count.tolist(), strict=True
    )
    assert sorted(pairs) == sorted(expected_front)
    for name in METRIC_COLUMNS:
        expected = np.array([row[name] for row in metrics], dtype=np.float64)
        np.testing.assert_allclose(
            evaluation.metrics[name].astype(np.float64),
            expected,
            rtol=RELATIVE_TOLERANCE,
            atol=0,
            equal_nan=True,
            err_msg=name,
        )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=valid_documents())
def test_valid_model_passes_validate(documents: tuple[dict[str, Any], dict[str, Any]]) -> None:
    with written(*documents, as_json=False) as files:
        argv = ["validate", str(files.workflow), str(files.system), "--catalog", str(CATALOGS)]
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = cli.main(argv)

    assert status == 0, stderr.getvalue()
    assert "assignments" in stdout.getvalue()


# Invalid models: one mutation, exit status 2.


@dataclass(frozen=True)
class Mutation:
    """A change that makes a valid document invalid."""

    target: str
    """``workflow`` or ``system``: the document changed."""
    path: tuple[Any, ...]
    """Path to the changed item; the message must contain it as a field path."""
    kind: str
    value: Any = None
    reported_at: bool = False
    """True when the message must name `path` as the field path."""


def _field_path(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


def _number_paths(workflow: dict[str, Any], system: dict[str, Any]) -> list[tuple[str, tuple]]:
    """Return every number of the documents that must be finite and >= 0, by path."""
    paths: list[tuple[str, tuple]] = []
    for i, stage in enumerate(workflow["stages"]):
        paths += [("workflow", ("stages", i, key)) for key in ("time_s", "threads") if key in stage]
    paths += [("workflow", ("edges", i, "bytes")) for i in range(len(workflow["edges"]))]
    for i, device in enumerate(system["devices"]):
        if "cores" in device:
            paths.append(("system", ("devices", i, "cores")))
        if isinstance(device["cpu"], dict):
            paths += [("system", ("devices", i, "cpu", key)) for key in ("cores", "single_thread")]
    for i, link in enumerate(system["links"]):
        paths += [
            ("system", ("links", i, key)) for key in ("bandwidth_mbps", "latency_ms") if key in link
        ]
    if "runs_per_month" in system:
        paths.append(("system", ("runs_per_month",)))
    if isinstance(workflow["measured_on"], dict):
        paths.append(("workflow", ("measured_on", "cores")))
    return paths


def _required_paths(workflow: dict[str, Any], system: dict[str, Any]) -> list[tuple[str, tuple]]:
    """Return the required fields of the documents, by path."""
    paths = [("workflow", ("measured_on",)), ("workflow", ("stages",))]
    for i in range(len(workflow["stages"])):
        paths += [("workflow", ("stages", i, "id")), ("workflow", ("stages", i, "time_s"))]
    for i in range(len(workflow["edges"])):
        paths += [("workflow", ("edges", i, key)) for key in ("from", "to", "bytes")]
    paths.append(("system", ("devices",)))
    for i in range(len(system["devices"])):
        paths += [("system", ("devices", i, "id")), ("system", ("devices", i, "cpu"))]
    for i in range(len(system["links"])):
        paths += [("system", ("links", i, "between")), ("system", ("links", i, "bandwidth_mbps"))]
    return paths


@st.composite
def mutations(draw: st.DrawFn, workflow: dict[str, Any], system: dict[str, Any]) -> Mutation:
    kind = draw(
        st.sampled_from(
            [
                "negative",
                "nan",
                "infinite",
                "string",
                "list",
                "remove",
                "unknown_field",
                "reference",
            ]
        )
    )
    if kind in ("negative", "nan", "infinite", "string", "list"):
        target, path = draw(st.sampled_from(_number_paths(workflow, system)))
        value = {
            "negative": draw(st.floats(-1e6, -1e-6)),
            "nan": math.nan,
            "infinite": draw(st.sampled_from([math.inf, -math.inf])),
            "string": draw(st.sampled_from(["1", "1.5 s", "", "100 Mbps", "null"])),
            "list": [1],
        }[kind]
        return Mutation(target, path, "set", value, reported_at=True)
    if kind == "remove":
        target, path = draw(st.sampled_from(_required_paths(workflow, system)))
        return Mutation(target, path, "remove")
    if kind == "unknown_field":
        i = draw(st.integers(0, len(workflow["stages"]) - 1))
        return Mutation("workflow", ("stages", i, "tme_s"), "set", 1.0)

    # A reference to a stage or device that does not exist, or a repeated id.
    options: list[Mutation] = [
        Mutation("workflow", ("stages", 0, "pin"), "set", "nowhere"),
        Mutation("workflow", ("stages", 0, "allowed"), "set", ["nowhere"]),
        Mutation("system", ("devices", 1, "id"), "set", system["devices"][0]["id"]),
    ]
    if workflow["edges"]:
        options += [
            Mutation("workflow", ("edges", 0, "to"), "set", "nowhere"),
            Mutation("workflow", ("edges", 0, "to"), "set", workflow["edges"][0]["from"]),
            Mutation("workflow", ("edges", len(workflow["edges"])), "append_reverse"),
        ]
    if system["links"]:
        options.append(Mutation("system", ("links", 0, "between", 1), "set", "nowhere"))
    if len(workflow["stages"]) > 1:
        options.append(
            Mutation("workflow", ("stages", 1, "id"), "set", workflow["stages"][0]["id"])
        )
    return draw(st.sampled_from(options))


def _apply(document: dict[str, Any], mutation: Mutation) -> dict[str, Any]:
    result = copy.deepcopy(document)
    *parents, last = mutation.path
    parent: Any = result
    for part in parents:
        parent = parent[part]
    if mutation.kind == "remove":
        del parent[last]
    elif mutation.kind == "append_reverse":
        first = parent[0]
        parent.append({"from": first["to"], "to": first["from"], "bytes": 1})
    else:
        if mutation.path[-1] == "allowed":
            parent.pop("pin", None)
        parent[last] = mutation.value
    return result


@st.composite
def invalid_documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], Mutation]:
    workflow, system = draw(valid_documents())
    mutation = draw(mutations(workflow, system))
    if mutation.target == "workflow":
        workflow = _apply(workflow, mutation)
    else:
        system = _apply(system, mutation)
    return workflow, system, mutation


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=invalid_documents(), as_json=st.booleans())
def test_invalid_model_exit_2(
    documents: tuple[dict[str, Any], dict[str, Any], Mutation], as_json: bool
) -> None:
    workflow, system, mutation = documents
    with written(workflow, system, as_json=as_json) as files:
        status, output = run_sweep(files)
        broken = files.workflow if mutation.target == "workflow" else files.system

    assert status == 2, output
    assert "Traceback" not in output
    assert broken.name in output
    json_constant = (
        as_json and isinstance(mutation.value, float) and not math.isfinite(mutation.value)
    )
    if mutation.reported_at and not json_constant:
        # JSON has no NaN or infinity, so those fail to parse before any field is read.
        assert _field_path(mutation.path) in output
