"""Tests of the trade-off chart, its offline HTML page and its PNG rendering."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import struct
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
    chart_axes,
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
    evaluation_table,
    front_table,
    placement_summary,
)
from allocation.sweep import sweep_in_process

IMG_MARKUP = "<img src=x onerror=alert(1)>"
SCRIPT_BREAK = "</script><script>alert(1)</script>"
HOSTILE_TEXT = f"{IMG_MARKUP} {SCRIPT_BREAK}"

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

    problem = compile_problem(workflow, system, CpuCatalog(None, (), ""))
    front, patterns = sweep_in_process(problem, sample_fraction=sample_fraction)
    candidates = front_table(problem, front)
    labels = candidate_labels(len(candidates))
    candidates.insert(0, "label", labels)
    candidates.insert(
        1,
        "placement",
        [
            placement_summary(problem, [row[f"at_{s}"] for s in problem.stage_ids])
            for _, row in candidates.iterrows()
        ],
    )
    return SweepSummary(
        workflow=workflow,
        system=system,
        problem=problem,
        candidates=candidates,
        patterns=evaluation_table(problem, patterns),
        patterns_sampled=sample_fraction < 1.0,
        baselines=baseline_table(problem, candidates, labels),
        space_size=problem.space_size,
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
