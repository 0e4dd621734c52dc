"""Tests of the charts (trade-off, breakdown, placement), their HTML pages and PNGs."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import pytest
import vl_convert

from allocation.catalog import CpuCatalog
from allocation.charts import (
    MAX_BACKGROUND_POINTS,
    OKABE_ITO,
    SYMLOG_MIN_SPAN,
    breakdown_chart,
    category_styles,
    chart_axes,
    placement_chart,
    tradeoff_chart,
    write_chart_html,
    write_chart_png,
)
from allocation.compile import compile_problem
from allocation.model import System, Workflow
from allocation.results import (
    SweepSummary,
    baseline_table,
    candidate_labels,
)
from allocation.study import Study
from allocation.summary import summarise as build_sweep_summary
from allocation.sweep import sweep_in_process

IMG_MARKUP = "<img src=x onerror=alert(1)>"
SCRIPT_BREAK = "</script><script>alert(1)</script>"
HOSTILE_TEXT = f"{IMG_MARKUP} {SCRIPT_BREAK}"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY = "#999999"

FRONT_BLUE = (0x00, 0x72, 0xB2)
BASELINE_VERMILLION = (0xD5, 0x5E, 0x00)


def build_summary(
    *,
    n_free_stages: int = 3,
    stage_ids: list[str] | None = None,
    text: str = "plain text",
    zero_cost: bool = False,
    runs_per_month: int | None = None,
    objectives: list[str] | None = None,
    sample_fraction: float = 1.0,
) -> SweepSummary:
    """Sweep a chain on edge, gateway and cloud and collect the summary the flow builds.

    The first and last stages are pinned to the edge; the others may run anywhere, so
    the space has 3 ** n_free_stages assignments. The gateway is priced but slower
    than the cloud and dearer per second, so "all on gateway" is dominated. `text` is
    the free text of every description, stage name and CPU name.
    """
    ids = stage_ids or [f"stage-{i}" for i in range(n_free_stages + 2)]
    stages: list[dict[str, Any]] = []
    for i, stage_id in enumerate(ids):
        stage: dict[str, Any] = {"id": stage_id, "name": text, "time_s": 0.2 + 0.3 * (i % 4)}
        if i in (0, len(ids) - 1):
            stage["pin"] = "edge"
        stages.append(stage)
    edges = [
        {"from": source, "to": target, "bytes": 200_000 * (1 + i % 3)}
        for i, (source, target) in enumerate(itertools.pairwise(ids))
    ]
    workflow = Workflow.model_validate(
        {
            "workflow": "detect-objects",
            "description": text,
            "measured_on": {"name": text, "cores": 4, "single_thread": 1000},
            "stages": stages,
            "edges": edges,
        }
    )

    def rates(usd_per_compute_s: float) -> dict[str, Any]:
        scale = 0.0 if zero_cost else 1.0
        return {
            "provider": "flat",
            "usd_per_compute_s": scale * usd_per_compute_s,
            "usd_per_invocation": scale * 2e-7,
            "usd_per_gb_out": scale * 0.09,
        }

    system_data: dict[str, Any] = {
        "system": "pi-gateway-cloud",
        "description": text,
        "devices": [
            {"id": "edge", "cpu": {"name": text, "cores": 4, "single_thread": 300}},
            {
                "id": "gateway",
                "cpu": {"name": text, "cores": 4, "single_thread": 800},
                "pricing": rates(5e-5),
            },
            {
                "id": "cloud",
                "cpu": {"name": "Cloud vCPU", "cores": 2, "single_thread": 2500},
                "pricing": rates(1.7e-5),
            },
        ],
        "links": [
            {"between": ["edge", "gateway"], "bandwidth_mbps": 300, "latency_ms": 1},
            {"between": ["gateway", "cloud"], "bandwidth_mbps": 100, "latency_ms": 15},
            {"between": ["edge", "cloud"], "bandwidth_mbps": 40, "latency_ms": 25},
        ],
    }
    if runs_per_month is not None:
        system_data["runs_per_month"] = runs_per_month
    if objectives is not None:
        system_data["objectives"] = objectives
    system = System.model_validate(system_data)

    return summarise(workflow, system, sample_fraction=sample_fraction)


def summarise(workflow: Workflow, system: System, *, sample_fraction: float = 1.0) -> SweepSummary:
    """Sweep `workflow` on `system` and collect the summary the flow builds."""
    catalog = CpuCatalog(None, (), "")
    problem = compile_problem(workflow, system, catalog)
    front, patterns = sweep_in_process(problem, sample_fraction=sample_fraction)
    study = Study(workflow, system, catalog, problem, inputs={})
    return build_sweep_summary(
        study,
        front,
        patterns,
        patterns_sampled=sample_fraction < 1.0,
        timings_s={"evaluate_s": 0.25, "total_s": 1.5},
    )


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Decode an 8-bit RGBA, non-interlaced PNG into (width, height, pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position = 8
    chunks: dict[bytes, list[bytes]] = {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunks.setdefault(kind, []).append(data[position + 8 : position + 8 + length])
        position += 12 + length
    width, height, bit_depth, colour_type, _, _, interlace = struct.unpack(
        ">IIBBBBB", chunks[b"IHDR"][0]
    )
    assert (bit_depth, colour_type, interlace) == (8, 6, 0)

    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * 4
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        filter_type = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - 4] if i >= 4 else 0
            up = previous[i]
            up_left = previous[i - 4] if i >= 4 else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                estimate = left + up - up_left
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
                predictor = (left, up, up_left)[distances.index(min(distances))]
                line[i] = (line[i] + predictor) & 0xFF
        pixels.extend((line[i], line[i + 1], line[i + 2], line[i + 3]) for i in range(0, stride, 4))
        previous = line
    return width, height, pixels


def count_near(
    pixels: list[tuple[int, int, int, int]], colour: tuple[int, int, int], tolerance: int = 12
) -> int:
    return sum(
        1
        for r, g, b, a in pixels
        if a > 200 and max(abs(r - colour[0]), abs(g - colour[1]), abs(b - colour[2])) <= tolerance
    )


def embedded_spec(page: str) -> dict[str, Any]:
    match = re.search(r"const spec = (.*);\nconst embedOptions", page)
    assert match is not None
    return json.loads(match.group(1))


def field_names(spec: Any) -> list[str]:
    """Return every `field` value of a Vega-Lite specification, recursively."""
    found = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "field" and isinstance(value, str):
                found.append(value)
            else:
                found += field_names(value)
    elif isinstance(spec, list):
        for item in spec:
            found += field_names(item)
    return found


@pytest.fixture(scope="module")
def small_summary() -> SweepSummary:
    return build_summary()


@pytest.fixture(scope="module")
def large_summary() -> SweepSummary:
    # 3 ** 10 = 59,049 assignments, of which about 20,000 are kept as patterns.
    return build_summary(n_free_stages=10, sample_fraction=20_000 / 3**10)


def test_chart_axes_default_and_custom() -> None:
    assert chart_axes(("latency_s", "cost_usd")) == ("latency_s", "cost_usd")
    assert chart_axes(["comm_s", "upload_bytes", "cost_usd"]) == ("comm_s", "upload_bytes")
    assert chart_axes(["cost_usd"]) == ("cost_usd", "latency_s")


def test_chart_layers_and_titles(small_summary: SweepSummary) -> None:
    spec = tradeoff_chart(small_summary).to_dict()
    encodings = [layer["encoding"] for layer in spec["layer"]]

    assert {e["x"]["title"] for e in encodings} == {"Latency (s)"}
    assert {e["y"]["title"] for e in encodings} == {"Cost per run (USD)"}
    assert "detect-objects" in spec["title"]["text"]
    assert "pi-gateway-cloud" in spec["title"]["text"]
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks.count("line") == 1
    assert marks.count("text") == 3
    lines = [layer for layer in spec["layer"] if layer["mark"]["type"] == "line"]
    assert lines[0]["mark"]["interpolate"] == "step-after"


def test_chart_labels_every_candidate(small_summary: SweepSummary) -> None:
    spec = tradeoff_chart(small_summary).to_dict()
    labels = []
    for layer in spec["layer"]:
        if layer["mark"]["type"] == "text" and layer["encoding"]["text"]["field"] == "label":
            labels += [row["label"] for row in spec["datasets"][layer["data"]["name"]]]

    assert sorted(labels) == sorted(small_summary.candidates["label"])


def test_chart_marks_baselines(small_summary: SweepSummary) -> None:
    spec = tradeoff_chart(small_summary).to_dict()
    names = set()
    for layer in spec["layer"]:
        if layer["mark"]["type"] == "text" and layer["encoding"]["text"]["field"] == "baseline":
            names |= {row["baseline"] for row in spec["datasets"][layer["data"]["name"]]}

    assert names == set(small_summary.baselines["baseline"])
    assert "all on gateway" in names


def test_chart_small_space_draws_every_pattern(small_summary: SweepSummary) -> None:
    spec = tradeoff_chart(small_summary).to_dict()
    background = spec["layer"][0]

    assert background["mark"]["type"] == "point"
    assert len(spec["datasets"][background["data"]["name"]]) == small_summary.space_size


def test_chart_large_space_is_binned(large_summary: SweepSummary) -> None:
    assert len(large_summary.patterns) > MAX_BACKGROUND_POINTS

    spec = tradeoff_chart(large_summary).to_dict()
    background = spec["layer"][0]
    cells = spec["datasets"][background["data"]["name"]]

    assert background["mark"]["type"] == "rect"
    assert len(cells) <= MAX_BACKGROUND_POINTS
    assert sum(cell["count"] for cell in cells) == len(large_summary.patterns)
    assert "uniform sample" in " ".join(spec["title"]["subtitle"])


def test_chart_encodes_no_placement_columns(small_summary: SweepSummary) -> None:
    fields = field_names(tradeoff_chart(small_summary).to_dict())

    assert fields
    assert not [name for name in fields if name.startswith("at_")]


def test_chart_dotted_stage_ids(tmp_path: Path) -> None:
    summary = build_summary(stage_ids=["in.frame", "a.b", "c.d.e", "out.boxes"])
    chart = tradeoff_chart(summary)
    fields = field_names(chart.to_dict())

    assert not [name for name in fields if "." in name or "[" in name]
    write_chart_html(chart, tmp_path / "chart.html")
    write_chart_png(chart, tmp_path / "chart.png", scale=0.5)
    assert (tmp_path / "chart.png").stat().st_size > 1000


def test_chart_zero_costs(tmp_path: Path) -> None:
    summary = build_summary(zero_cost=True)
    assert (summary.patterns["cost_usd"] == 0).all()

    chart = tradeoff_chart(summary)
    spec = chart.to_dict()
    low, high = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]

    assert low == 0
    assert high > 0
    write_chart_html(chart, tmp_path / "chart.html")
    write_chart_png(chart, tmp_path / "chart.png", scale=0.5)
    _, _, pixels = png_pixels((tmp_path / "chart.png").read_bytes())
    assert count_near(pixels, FRONT_BLUE) > 0


def test_chart_more_objectives_than_axes() -> None:
    summary = build_summary(
        runs_per_month=100_000, objectives=["latency_s", "monthly_cost_usd", "comm_s"]
    )
    spec = tradeoff_chart(summary).to_dict()

    assert spec["layer"][0]["encoding"]["y"]["title"] == "Monthly cost (USD)"
    assert "drawn on latency_s and monthly_cost_usd" in " ".join(spec["title"]["subtitle"])


def test_html_inlines_runtime(small_summary: SweepSummary, tmp_path: Path) -> None:
    chart = tradeoff_chart(small_summary)
    path = tmp_path / "chart.html"
    write_chart_html(chart, path)
    page = path.read_text("utf-8")

    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"""src\s*=\s*["']?https?://""", page, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=", page, re.IGNORECASE)
    vegalite_version = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    assert vl_convert.javascript_bundle(vl_version=vegalite_version) in page
    assert 'vegaEmbed("#chart", spec' in page
    assert embedded_spec(page) == chart.to_dict()


def test_html_escapes_input_text(tmp_path: Path) -> None:
    summary = build_summary(text=HOSTILE_TEXT)
    path = tmp_path / "chart.html"
    write_chart_html(tradeoff_chart(summary), path)
    page = path.read_text("utf-8")

    assert IMG_MARKUP not in page
    assert SCRIPT_BREAK not in page
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in page
    assert page.lower().count("</script") == 2
    assert IMG_MARKUP in " ".join(embedded_spec(page)["title"]["subtitle"])


def test_html_escapes_page_title(tmp_path: Path) -> None:
    chart = (
        alt.Chart(pd.DataFrame({"x": [1.0], "note": [SCRIPT_BREAK]}))
        .mark_point()
        .encode(x="x:Q", tooltip="note:N")
        .properties(title=HOSTILE_TEXT)
    )
    path = tmp_path / "chart.html"
    write_chart_html(chart, path)
    page = path.read_text("utf-8")

    assert "<title>&lt;img src=x onerror=alert(1)&gt; &lt;/script&gt;" in page
    assert IMG_MARKUP not in page
    assert SCRIPT_BREAK not in page
    assert embedded_spec(page)["title"] == HOSTILE_TEXT


def test_png_large_space(large_summary: SweepSummary, tmp_path: Path) -> None:
    chart = tradeoff_chart(large_summary)
    write_chart_html(chart, tmp_path / "chart.html")
    write_chart_png(chart, tmp_path / "chart.png")
    data = (tmp_path / "chart.png").read_bytes()
    width, height = struct.unpack(">II", data[16:24])

    assert width >= 1200
    assert height >= 800
    assert len(data) > 50_000


def test_png_shows_front_and_baselines(large_summary: SweepSummary, tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    write_chart_png(tradeoff_chart(large_summary), path, scale=0.5)
    width, height, pixels = png_pixels(path.read_bytes())

    assert len(pixels) == width * height
    assert len(set(pixels)) > 50
    assert count_near(pixels, FRONT_BLUE) > 100
    assert count_near(pixels, BASELINE_VERMILLION, tolerance=40) > 10


def test_chart_draws_very_large_front() -> None:
    summary = build_summary()
    n = 8192
    row = summary.candidates.iloc[[0] * n].reset_index(drop=True)
    row["latency_s"] = np.linspace(1.0, 9.0, n)
    row["cost_usd"] = np.linspace(0.009, 0.0, n)
    row["label"] = [f"C{i}" for i in range(n)]
    large = dataclasses.replace(summary, candidates=row)
    spec = tradeoff_chart(large).to_dict()
    text = json.dumps(spec)
    assert "Front drawn with 2,000 of its 8,192 points" in text
    assert "60 of 2,000 candidates labelled" in text


# --- Helpers for the limit, recommendation, scale, breakdown and placement tests ---


def build_many_devices_summary(n_devices: int, *, text: str = "plain text") -> SweepSummary:
    """Sweep a 4-stage chain on `n_devices` devices, each priced but the edge.

    The first stage is pinned to the edge; the other three may run anywhere.
    """
    ids = ["capture", "resize", "detect", "draw"]
    workflow = Workflow.model_validate(
        {
            "workflow": "many-devices",
            "description": text,
            "measured_on": {"name": text, "cores": 4, "single_thread": 1000},
            "stages": [
                {"id": stage_id, "name": text, "time_s": 0.1 + 0.2 * i}
                | ({"pin": "edge"} if i == 0 else {})
                for i, stage_id in enumerate(ids)
            ],
            "edges": [
                {"from": source, "to": target, "bytes": 100_000}
                for source, target in itertools.pairwise(ids)
            ],
        }
    )
    devices: list[dict[str, Any]] = []
    for i in range(n_devices):
        device: dict[str, Any] = {
            "id": "edge" if i == 0 else f"node-{i}",
            "cpu": {"name": text, "cores": 4, "single_thread": 300 + 250 * i},
        }
        if i:
            device["pricing"] = {"provider": "flat", "usd_per_compute_s": 1e-6 * i**2}
        devices.append(device)
    links = [
        {"between": [a["id"], b["id"]], "bandwidth_mbps": 100, "latency_ms": 5}
        for a, b in itertools.combinations(devices, 2)
    ]
    system = System.model_validate({"system": "wide", "devices": devices, "links": links})
    return summarise(workflow, system)


def with_spread_costs(summary: SweepSummary) -> SweepSummary:
    """Return the summary with costs from 0 and 1e-8 to 1e-2 USD: six decades and zeros.

    The front's costs fall from 1e-3 to 1e-7 USD, and its last candidate costs 0.
    """
    rng = np.random.default_rng(7)
    patterns = summary.patterns.copy()
    n = len(patterns)
    patterns["cost_usd"] = np.where(rng.random(n) < 0.1, 0.0, 10 ** rng.uniform(-8, -2, n))
    candidates = summary.candidates.copy()
    costs = 10 ** np.linspace(-3, -7, len(candidates))
    costs[-1] = 0.0
    candidates["cost_usd"] = costs
    return dataclasses.replace(summary, patterns=patterns, candidates=candidates)


def add_given_baseline(summary: SweepSummary, name: str) -> SweepSummary:
    """Return the summary with a given placement `name`: candidate A's placement."""
    problem = summary.problem
    first = summary.candidates.iloc[0]
    devices = [str(first[f"at_{stage_id}"]) for stage_id in problem.stage_ids]
    baselines = baseline_table(
        problem,
        summary.candidates,
        list(summary.candidates["label"]),
        comparisons=[(name, devices)],
    )
    return dataclasses.replace(summary, baselines=baselines)


def breakdown_tables(summary: SweepSummary) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return time and cost tables whose parts add up to each candidate's metrics."""
    time_rows, cost_rows = [], []
    for _, row in summary.candidates.iterrows():
        compute_s = row["latency_s"] - row["comm_s"]
        time_rows += [
            (row["label"], "compute on edge", 0.6 * compute_s),
            (row["label"], "compute on cloud", 0.4 * compute_s),
            (row["label"], "transfer", row["comm_s"]),
        ]
        cost_rows += [
            (row["label"], "cloud: compute", 0.7 * row["cost_usd"]),
            (row["label"], "cloud: requests", 0.1 * row["cost_usd"]),
            (row["label"], "cloud: egress", 0.2 * row["cost_usd"]),
        ]
    return (
        pd.DataFrame(time_rows, columns=["label", "part", "time_s"]),
        pd.DataFrame(cost_rows, columns=["label", "line", "cost_usd"]),
    )


def layers_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every unit layer of a specification, through layer and concat nesting."""
    found = []
    for key in ("layer", "vconcat", "hconcat"):
        for child in spec.get(key, []):
            found += layers_of(child)
    if "mark" in spec:
        found.append(spec)
    return found


def rows_of(spec: dict[str, Any], layer: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the rows of a layer's dataset; Altair moves data shared by layers to the top."""
    data = layer.get("data", spec.get("data"))
    return spec["datasets"][data["name"]]


def mark_type(layer: dict[str, Any]) -> str:
    mark = layer["mark"]
    return mark if isinstance(mark, str) else mark["type"]


def colour_values(spec: Any) -> set[str]:
    """Return every "#rrggbb" string of a specification, upper case."""
    found: set[str] = set()
    if isinstance(spec, dict):
        for value in spec.values():
            found |= colour_values(value)
    elif isinstance(spec, list):
        for item in spec:
            found |= colour_values(item)
    elif isinstance(spec, str) and re.fullmatch(r"#[0-9A-Fa-f]{6}", spec):
        found.add(spec.upper())
    return found


def symlog(values: np.ndarray, constant: float) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values) / constant)


def check_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100
    assert height > 100
    return width, height


@pytest.fixture(scope="module")
def spread_summary() -> SweepSummary:
    return with_spread_costs(build_summary())


@pytest.fixture(scope="module")
def large_spread_summary(large_summary: SweepSummary) -> SweepSummary:
    return with_spread_costs(large_summary)


# --- Limits -----------------------------------------------------------------------


def test_limits_drawn_as_labelled_rules() -> None:
    summary = build_summary(runs_per_month=100_000)
    limits = {"latency_s": 2.0, "cost_usd": 0.0001, "monthly_cost_usd": 50}
    spec = tradeoff_chart(summary, limits=limits).to_dict()
    rules = [layer for layer in spec["layer"] if mark_type(layer) == "rule"]

    assert len(rules) == 2
    by_channel = {
        channel: rows_of(spec, rule)
        for rule in rules
        for channel in ("x", "y")
        if channel in rule["encoding"]
    }
    assert by_channel["x"][0]["limit"] == 2.0
    assert by_channel["y"][0]["limit"] == 0.0001
    assert all(rule["mark"]["strokeDash"] for rule in rules)
    texts = [
        row["limit_label"]
        for layer in spec["layer"]
        if mark_type(layer) == "text" and layer["encoding"]["text"]["field"] == "limit_label"
        for row in rows_of(spec, layer)
    ]
    assert sorted(texts) == ["Cost limit 0.0001 USD per run", "Latency limit 2 s"]
    subtitle = " ".join(spec["title"]["subtitle"])
    assert "Monthly cost limit 50 USD" in subtitle


def test_limits_extend_axis_domain(small_summary: SweepSummary) -> None:
    top_latency_s = float(small_summary.patterns["latency_s"].max())
    spec = tradeoff_chart(small_summary, limits={"latency_s": 3 * top_latency_s}).to_dict()
    low, high = spec["layer"][0]["encoding"]["x"]["scale"]["domain"]

    assert high >= 3 * top_latency_s
    assert low <= float(small_summary.patterns["latency_s"].min())


def test_limits_off_axes_not_drawn(small_summary: SweepSummary) -> None:
    spec = tradeoff_chart(small_summary, limits={"comm_s": 0.5, "latency_s": None}).to_dict()

    assert not [layer for layer in spec["layer"] if mark_type(layer) == "rule"]
    assert "Communication time limit 0.5 s" in " ".join(spec["title"]["subtitle"])


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"speed": 1.0}, "unknown metric 'speed'"),
        ({"latency_s": -1.0}, "finite number >= 0"),
        ({"cost_usd": float("nan")}, "finite number >= 0"),
        ({"cost_usd": float("inf")}, "finite number >= 0"),
    ],
)
def test_limits_invalid(
    small_summary: SweepSummary, limits: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tradeoff_chart(small_summary, limits=limits)


# --- Recommended candidate --------------------------------------------------------


def test_recommended_ring_and_legend(small_summary: SweepSummary) -> None:
    spec = tradeoff_chart(small_summary, recommended="B").to_dict()
    rings = [
        layer
        for layer in spec["layer"]
        if mark_type(layer) == "point" and layer["mark"].get("size", 0) > 300
    ]

    assert len(rings) == 1
    assert [row["label"] for row in rows_of(spec, rings[0])] == ["B"]
    assert rings[0]["mark"]["filled"] is False
    legend_entries = rings[0]["encoding"]["color"]["scale"]["domain"]
    assert "Recommended: B" in legend_entries
    assert any(line.startswith("Recommended: B (") for line in spec["title"]["subtitle"])


def test_recommended_unknown_label(small_summary: SweepSummary) -> None:
    with pytest.raises(ValueError, match="'ZZ' is not a candidate label"):
        tradeoff_chart(small_summary, recommended="ZZ")


def test_recommended_kept_on_thinned_front() -> None:
    summary = build_summary()
    n = 8192
    front = summary.candidates.iloc[[0] * n].reset_index(drop=True)
    front["latency_s"] = np.linspace(1.0, 9.0, n)
    front["cost_usd"] = np.linspace(0.009, 0.0, n)
    front["label"] = [f"C{i}" for i in range(n)]
    spec = tradeoff_chart(
        dataclasses.replace(summary, candidates=front), recommended="C4001"
    ).to_dict()
    labelled = [
        row["label"]
        for layer in spec["layer"]
        if mark_type(layer) == "text" and layer["encoding"]["text"]["field"] == "label"
        for row in rows_of(spec, layer)
    ]
    points = [
        row["label"]
        for layer in spec["layer"]
        if mark_type(layer) == "point" and layer["mark"].get("size") == 70
        for row in rows_of(spec, layer)
    ]

    assert "C4001" in labelled
    assert "C4001" in points


# --- Axis scales ------------------------------------------------------------------


def test_symlog_for_wide_span_with_zeros(spread_summary: SweepSummary) -> None:
    spec = tradeoff_chart(spread_summary).to_dict()
    y = spec["layer"][0]["encoding"]["y"]
    positive = spread_summary.patterns["cost_usd"][spread_summary.patterns["cost_usd"] > 0]

    assert (spread_summary.patterns["cost_usd"] == 0).any()
    assert y["scale"]["type"] == "symlog"
    assert y["scale"]["constant"] == pytest.approx(
        min(positive.min(), spread_summary.candidates["cost_usd"][lambda c: c > 0].min())
    )
    low, high = y["scale"]["domain"]
    assert low < 0 < high
    assert y["title"] == "Cost per run (USD, symmetric log scale)"
    ticks = y["axis"]["values"]
    assert ticks[0] == 0
    assert all(np.log10(tick) == round(np.log10(tick)) for tick in ticks[1:])
    x = spec["layer"][0]["encoding"]["x"]
    assert "type" not in x["scale"]
    assert x["title"] == "Latency (s)"


def test_linear_for_narrow_span(small_summary: SweepSummary) -> None:
    spec = tradeoff_chart(small_summary).to_dict()

    for layer in spec["layer"]:
        for channel in ("x", "y"):
            encoding = layer["encoding"][channel]
            assert "type" not in encoding["scale"]
            assert "log" not in encoding["title"]


def test_symlog_threshold_three_decades(small_summary: SweepSummary) -> None:
    def y_scale(top_cost_usd: float) -> dict[str, Any]:
        patterns = small_summary.patterns.copy()
        candidates = small_summary.candidates.copy()
        patterns["cost_usd"] = np.linspace(1e-6, top_cost_usd, len(patterns))
        candidates["cost_usd"] = 1e-6
        summary = dataclasses.replace(small_summary, patterns=patterns, candidates=candidates)
        spec = tradeoff_chart(summary).to_dict()
        return spec["layer"][0]["encoding"]["y"]["scale"]

    assert "type" not in y_scale(1e-6 * SYMLOG_MIN_SPAN)
    assert y_scale(1e-6 * SYMLOG_MIN_SPAN * 1.01)["type"] == "symlog"


def test_symlog_limit_counts_for_span(small_summary: SweepSummary) -> None:
    top_cost_usd = float(small_summary.patterns["cost_usd"].max())
    spec = tradeoff_chart(small_summary, limits={"cost_usd": top_cost_usd * 1e4}).to_dict()

    assert spec["layer"][0]["encoding"]["y"]["scale"]["type"] == "symlog"


def test_symlog_binned_cells_line_up(large_spread_summary: SweepSummary) -> None:
    summary = large_spread_summary
    spec = tradeoff_chart(summary).to_dict()
    background = spec["layer"][0]
    cells = pd.DataFrame(rows_of(spec, background))
    scale = background["encoding"]["y"]["scale"]
    constant = scale["constant"]

    assert background["mark"]["type"] == "rect"
    assert scale["type"] == "symlog"
    # The cells are regular in the symlog space: 50 rows of equal height.
    low, high = symlog(np.array(scale["domain"]), constant)
    step = (high - low) / 50
    rows_start = (symlog(cells["y_start"].to_numpy(), constant) - low) / step
    rows_end = (symlog(cells["y_end"].to_numpy(), constant) - low) / step
    np.testing.assert_allclose(rows_start, rows_start.round(), atol=1e-6)
    np.testing.assert_allclose(rows_end - rows_start, 1.0, atol=1e-6)

    # Every pattern is counted in the cell that contains it.
    x_low, x_high = background["encoding"]["x"]["scale"]["domain"]
    x_step = (x_high - x_low) / 80
    patterns = summary.patterns
    column = np.minimum(((patterns["latency_s"] - x_low) / x_step).astype(int), 79)
    row = np.minimum(((symlog(patterns["cost_usd"].to_numpy(), constant) - low) / step), 49)
    expected = pd.Series(1, index=pd.MultiIndex.from_arrays([column, row.astype(int)]))
    expected = expected.groupby(level=[0, 1]).sum()
    cells_at = pd.Series(
        cells["count"].to_numpy(),
        index=pd.MultiIndex.from_arrays(
            [
                ((cells["x_start"] - x_low) / x_step).round().astype(int),
                rows_start.round().astype(int),
            ]
        ),
    ).sort_index()
    assert cells_at.sum() == len(patterns)
    pd.testing.assert_series_equal(cells_at, expected.sort_index(), check_names=False)


def test_symlog_png(spread_summary: SweepSummary, tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    write_chart_png(
        tradeoff_chart(spread_summary, limits={"cost_usd": 1e-4}, recommended="B"),
        path,
        scale=0.5,
    )
    _, _, pixels = png_pixels(path.read_bytes())

    assert count_near(pixels, FRONT_BLUE) > 50


# --- Baselines --------------------------------------------------------------------


def test_given_baseline_drawn_as_text(small_summary: SweepSummary) -> None:
    summary = add_given_baseline(small_summary, "current design")
    spec = tradeoff_chart(summary).to_dict()
    names = [
        row["baseline"]
        for layer in spec["layer"]
        if mark_type(layer) == "text" and layer["encoding"]["text"]["field"] == "baseline"
        for row in rows_of(spec, layer)
    ]
    diamonds = [
        layer
        for layer in spec["layer"]
        if mark_type(layer) == "point" and layer["mark"].get("filled") is False
    ]

    assert "current design" in names
    assert "all on gateway" in names
    entry = "Baseline or compared placement"
    assert {row["series"] for row in rows_of(spec, diamonds[0])} == {entry}
    assert diamonds[0]["encoding"]["color"]["scale"]["domain"].count(entry) == 1
    tooltip_titles = [entry["title"] for entry in diamonds[0]["encoding"]["tooltip"]]
    assert tooltip_titles[:2] == ["Baseline", "Kind"]
    kinds = {row["baseline"]: row["kind"] for row in rows_of(spec, diamonds[0])}
    assert kinds["current design"] == "given"
    assert kinds["all on cloud"] == "all on one device"


def test_coincident_baseline_names_on_own_lines(small_summary: SweepSummary) -> None:
    summary = add_given_baseline(small_summary, "current design")
    spec = tradeoff_chart(summary).to_dict()
    name_layers = [
        layer
        for layer in spec["layer"]
        if mark_type(layer) == "text" and layer["encoding"]["text"]["field"] == "baseline"
    ]
    line_of = {
        row["baseline"]: layer["mark"]["dy"]
        for layer in name_layers
        for row in rows_of(spec, layer)
    }

    # The given placement is candidate A, and so is "all on cloud".
    assert summary.baselines.set_index("baseline").loc["all on cloud", "candidate"] == "A"
    assert line_of["current design"] > line_of["all on cloud"]
    assert all(layer["mark"]["limit"] > 0 for layer in name_layers)


# --- Breakdown chart --------------------------------------------------------------


def test_breakdown_stacks_sum_to_metrics(small_summary: SweepSummary) -> None:
    time_table, cost_table = breakdown_tables(small_summary)
    spec = breakdown_chart(time_table, cost_table, title="Breakdown").to_dict()
    time_panel, cost_panel = spec["vconcat"]
    expected = small_summary.candidates.set_index("label")

    for panel, value, metric in (
        (time_panel, "time_s", "latency_s"),
        (cost_panel, "cost_usd", "cost_usd"),
    ):
        bars = next(layer for layer in panel["layer"] if mark_type(layer) == "bar")
        assert bars["encoding"]["x"]["stack"] == "zero"
        sums = pd.DataFrame(rows_of(spec, bars)).groupby("label")[value].sum()
        for label, total in sums.items():
            assert total == pytest.approx(expected.loc[label, metric], rel=1e-12, abs=1e-15)
        assert sorted(sums.index) == sorted(expected.index)


def test_breakdown_titles_and_units(small_summary: SweepSummary) -> None:
    spec = breakdown_chart(*breakdown_tables(small_summary), title="Where time goes").to_dict()
    time_panel, cost_panel = spec["vconcat"]

    assert spec["title"]["text"] == "Where time goes"
    assert "(s)" in time_panel["title"]["text"]
    assert "(USD)" in cost_panel["title"]["text"]
    time_bars = next(layer for layer in time_panel["layer"] if mark_type(layer) == "bar")
    cost_bars = next(layer for layer in cost_panel["layer"] if mark_type(layer) == "bar")
    assert time_bars["encoding"]["x"]["title"] == "Time per run (s)"
    assert cost_bars["encoding"]["x"]["title"] == "Cost per run (USD)"
    totals = next(layer for layer in time_panel["layer"] if mark_type(layer) == "text")
    assert all(row["total_text"].endswith(" s") for row in rows_of(spec, totals))


def test_breakdown_rows_ordered_and_recommended() -> None:
    labels = ["AA", "B", "Z", "A", "C"]
    time_table = pd.DataFrame({"label": labels, "part": "transfer", "time_s": 1.0})
    cost_table = pd.DataFrame({"label": labels, "line": "cloud: compute", "cost_usd": 1e-6})
    spec = breakdown_chart(time_table, cost_table, title="t", recommended="B").to_dict()
    bars = next(layer for layer in layers_of(spec) if mark_type(layer) == "bar")
    y = bars["encoding"]["y"]

    assert y["sort"] == ["A", "B (recommended)", "C", "Z", "AA"]
    weight = y["axis"]["labelFontWeight"]
    assert weight["condition"]["test"] == 'datum.value === "B (recommended)"'
    assert weight["condition"]["value"] == "bold"
    with pytest.raises(ValueError, match="'Q' is not a candidate label"):
        breakdown_chart(time_table, cost_table, title="t", recommended="Q")


def test_breakdown_zero_cost_message(small_summary: SweepSummary, tmp_path: Path) -> None:
    time_table, cost_table = breakdown_tables(small_summary)
    for costs in (cost_table.assign(cost_usd=0.0), cost_table.iloc[0:0]):
        chart = breakdown_chart(time_table, costs, title="No cloud")
        spec = chart.to_dict()
        cost_panel = spec["vconcat"][1]

        assert mark_type(cost_panel) == "text"
        assert "no priced device" in rows_of(spec, cost_panel)[0]["message"]
        assert "(USD)" in cost_panel["title"]["text"]
    write_chart_png(chart, tmp_path / "breakdown.png", scale=0.5)
    check_png(tmp_path / "breakdown.png")


@pytest.mark.parametrize(
    ("time_table", "message"),
    [
        (pd.DataFrame({"label": ["A"], "time_s": [1.0]}), "time_table: missing column"),
        (pd.DataFrame({"label": ["A"], "part": ["x"], "time_s": [-1.0]}), "finite number >= 0"),
        (pd.DataFrame({"label": ["A"], "part": ["x"], "time_s": [np.nan]}), "finite number >= 0"),
    ],
)
def test_breakdown_invalid_table(time_table: pd.DataFrame, message: str) -> None:
    cost_table = pd.DataFrame({"label": ["A"], "line": ["cloud: compute"], "cost_usd": [0.0]})
    with pytest.raises(ValueError, match=message):
        breakdown_chart(time_table, cost_table, title="t")


def test_breakdown_adds_repeated_parts() -> None:
    time_table = pd.DataFrame(
        {
            "label": ["A", "A", "A"],
            "part": ["transfer", "transfer", "compute on edge"],
            "time_s": [0.25, 0.5, 1.0],
        }
    )
    cost_table = pd.DataFrame({"label": ["A"], "line": ["cloud: compute"], "cost_usd": [0.0]})
    spec = breakdown_chart(time_table, cost_table, title="t").to_dict()
    bars = next(layer for layer in layers_of(spec) if mark_type(layer) == "bar")

    assert {row["part"]: row["time_s"] for row in rows_of(spec, bars)} == {
        "transfer": 0.75,
        "compute on edge": 1.0,
    }


# --- Placement chart --------------------------------------------------------------


def test_placement_cells_match_candidates() -> None:
    summary = build_summary(stage_ids=["in.frame", "a.b", "c.d.e", "out.boxes"])
    spec = placement_chart(summary).to_dict()
    rects = next(layer for layer in spec["layer"] if mark_type(layer) == "rect")
    cells = rows_of(spec, rects)
    stage_rows = [f"{i + 1} {s}" for i, s in enumerate(summary.problem.stage_ids)]
    labels = list(summary.candidates["label"])

    assert len(cells) == len(stage_rows) * len(labels)
    assert rects["encoding"]["y"]["sort"] == stage_rows
    assert stage_rows[0] == "1 in.frame"
    assert rects["encoding"]["x"]["sort"] == labels
    devices = {(cell["stage"], cell["candidate"]): cell["device"] for cell in cells}
    for _, candidate in summary.candidates.iterrows():
        for stage_row, stage_id in zip(stage_rows, summary.problem.stage_ids, strict=True):
            assert devices[(stage_row, candidate["label"])] == candidate[f"at_{stage_id}"]
    assert not [name for name in field_names(spec) if "." in name or name.startswith("at_")]


def test_placement_text_legend_and_tooltip(small_summary: SweepSummary) -> None:
    spec = placement_chart(small_summary).to_dict()
    rects = next(layer for layer in spec["layer"] if mark_type(layer) == "rect")
    texts = next(layer for layer in spec["layer"] if mark_type(layer) == "text")

    assert rects["encoding"]["color"]["legend"]["title"] == "Device"
    assert rects["encoding"]["color"]["scale"]["domain"] == ["edge", "gateway", "cloud"]
    assert texts["encoding"]["text"]["field"] == "device"
    tooltip = {entry["title"]: entry["field"] for entry in rects["encoding"]["tooltip"]}
    assert tooltip["Stage name"] == "stage_name"
    assert tooltip["CPU"] == "cpu"
    assert {row["stage_name"] for row in rows_of(spec, rects)} == {"plain text"}
    assert {row["cpu"] for row in rows_of(spec, rects)} == {"plain text", "Cloud vCPU"}
    assert "Devices: edge (plain text)" in " ".join(spec["title"]["subtitle"])


def test_placement_recommended_outlined(small_summary: SweepSummary) -> None:
    spec = placement_chart(small_summary, recommended="C").to_dict()
    outlines = [
        layer
        for layer in spec["layer"]
        if mark_type(layer) == "rect" and layer["mark"].get("filled") is False
    ]

    assert len(outlines) == 1
    assert rows_of(spec, outlines[0]) == [{"candidate": "C"}]
    assert "y" not in outlines[0]["encoding"]
    assert "Recommended: C (outlined)" in spec["title"]["subtitle"]
    with pytest.raises(ValueError, match="recommended"):
        placement_chart(small_summary, recommended="Q")


def test_placement_wide_front_thinned() -> None:
    summary = build_summary()
    n = 500
    front = summary.candidates.iloc[[0] * n].reset_index(drop=True)
    front["label"] = candidate_labels(n)
    spec = placement_chart(
        dataclasses.replace(summary, candidates=front), recommended="KK"
    ).to_dict()
    rects = next(layer for layer in spec["layer"] if mark_type(layer) == "rect")
    columns = rects["encoding"]["x"]["sort"]

    assert len(columns) <= 61
    assert columns[0] == "A"
    assert columns[-1] == front["label"].iloc[-1]
    assert "KK" in columns
    assert "of the 500 candidates" in " ".join(spec["title"]["subtitle"])


# --- Colours ----------------------------------------------------------------------


def test_category_styles_colour_blind_safe() -> None:
    styles = category_styles(24)

    assert [colour for colour, _ in styles[:8]] == list(OKABE_ITO)
    assert {opacity for _, opacity in styles[:8]} == {1.0}
    assert styles[8] == (OKABE_ITO[7], 0.5)
    assert styles[16] == (OKABE_ITO[7], 0.25)
    assert len(set(styles)) == 24
    assert {colour for colour, _ in styles} == set(OKABE_ITO)


def test_charts_use_palette_colours(small_summary: SweepSummary) -> None:
    allowed = {colour.upper() for colour in OKABE_ITO} | {GREY, "#FFFFFF"}
    summary = add_given_baseline(small_summary, "current design")
    charts = [
        tradeoff_chart(summary, limits={"latency_s": 3.0}, recommended="B"),
        breakdown_chart(*breakdown_tables(summary), title="t", recommended="A"),
        placement_chart(summary, recommended="A"),
    ]

    for chart in charts:
        colours = colour_values(chart.to_dict())
        assert colours
        assert colours <= allowed


def test_ten_devices_distinct_styles(tmp_path: Path) -> None:
    summary = build_many_devices_summary(10)
    spec = placement_chart(summary).to_dict()
    rects = next(layer for layer in spec["layer"] if mark_type(layer) == "rect")
    colours = rects["encoding"]["color"]["scale"]["range"]
    opacities = rects["encoding"]["opacity"]["scale"]["range"]

    assert len(colours) == 10
    assert set(colours) <= set(OKABE_ITO)
    assert len(set(zip(colours, opacities, strict=True))) == 10
    assert rects["encoding"]["opacity"]["legend"]["title"] == "Device"
    write_chart_png(placement_chart(summary), tmp_path / "placement.png", scale=0.5)
    check_png(tmp_path / "placement.png")


def test_ten_parts_distinct_styles() -> None:
    parts = [f"compute on node-{i}" for i in range(10)]
    time_table = pd.DataFrame({"label": "A", "part": parts, "time_s": 0.1})
    cost_table = pd.DataFrame({"label": ["A"], "line": ["cloud: compute"], "cost_usd": [1e-6]})
    spec = breakdown_chart(time_table, cost_table, title="t").to_dict()
    bars = next(layer for layer in layers_of(spec) if mark_type(layer) == "bar")
    colour, opacity = bars["encoding"]["color"]["scale"], bars["encoding"]["opacity"]["scale"]

    assert colour["domain"] == parts
    assert len(set(zip(colour["range"], opacity["range"], strict=True))) == 10
    assert bars["encoding"]["order"]["field"] == "order"


# --- PNG of every chart -----------------------------------------------------------


def test_png_of_every_chart(small_summary: SweepSummary, tmp_path: Path) -> None:
    charts = {
        "tradeoff": tradeoff_chart(small_summary, limits={"latency_s": 3.0}, recommended="B"),
        "breakdown": breakdown_chart(
            *breakdown_tables(small_summary), title="Breakdown", recommended="B"
        ),
        "placement": placement_chart(small_summary, recommended="B"),
    }
    for name, chart in charts.items():
        path = tmp_path / f"{name}.png"
        write_chart_png(chart, path, scale=0.5)
        check_png(path)
        _, _, pixels = png_pixels(path.read_bytes())
        assert count_near(pixels, FRONT_BLUE) > 30, name


def test_chart_building_is_fast(large_summary: SweepSummary) -> None:
    summary = add_given_baseline(large_summary, "current design")
    time_table, cost_table = breakdown_tables(summary)
    start = time.perf_counter()
    tradeoff_chart(summary, limits={"latency_s": 10.0}, recommended="B").to_dict()
    breakdown_chart(time_table, cost_table, title="t", recommended="B").to_dict()
    placement_chart(summary, recommended="B").to_dict()

    assert time.perf_counter() - start < 3.0


def test_tooltip_titles_not_special(small_summary: SweepSummary) -> None:
    summary = add_given_baseline(small_summary, "current design")
    charts = [
        tradeoff_chart(summary, limits={"latency_s": 3.0}, recommended="B"),
        tradeoff_chart(with_spread_costs(summary), max_background_points=10),
        breakdown_chart(*breakdown_tables(summary), title="t"),
        placement_chart(summary),
    ]
    for chart in charts:
        spec = chart.to_dict()
        titles = [
            entry["title"]
            for layer in layers_of(spec)
            for entry in layer.get("encoding", {}).get("tooltip", [])
        ]
        assert titles
        # vega-tooltip turns an "image" entry into an image and a "title" entry into a heading.
        assert not {"title", "image"} & {title.lower() for title in titles}


def test_placement_long_workflow_cut(small_summary: SweepSummary) -> None:
    stage_ids = tuple(f"s.{i}" for i in range(250))
    candidates = small_summary.candidates.copy()
    for stage_id in stage_ids:
        candidates[f"at_{stage_id}"] = "edge"
    problem = dataclasses.replace(small_summary.problem, stage_ids=stage_ids)
    summary = dataclasses.replace(small_summary, problem=problem, candidates=candidates)
    spec = placement_chart(summary).to_dict()
    rects = next(layer for layer in spec["layer"] if mark_type(layer) == "rect")
    rows = rects["encoding"]["y"]["sort"]

    assert len(rows) == 200
    assert rows[-1] == "200 s.199"
    assert "the first 200 of 250 stages" in " ".join(spec["title"]["subtitle"])


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        ({"cost_usd": 1e300}, "Cost limit 1e300 USD per run: off the chart, above every value"),
        ({"latency_s": 1e308}, "Latency limit 1e308 s: off the chart, above every value"),
        ({"latency_s": 1e-300}, "Latency limit 1e-300 s: off the chart, below every value"),
    ],
)
def test_limits_far_from_data_named_not_drawn(
    small_summary: SweepSummary, tmp_path: Path, limits: dict[str, float], words: str
) -> None:
    chart = tradeoff_chart(small_summary, limits=limits)
    spec = chart.to_dict()

    assert not [layer for layer in spec["layer"] if mark_type(layer) == "rule"]
    assert words in spec["title"]["subtitle"]
    write_chart_png(chart, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 0
