"""Markup in names from the input files is shown as text in every output of a flow run.

The workflow description, the stage names, the CPU names and the name of a compared
placement carry HTML payloads that would run a script if any output rendered them as
markup: an image with an ``onerror`` handler and a ``<script>`` element. The script
element would also end an embedded Vega-Lite specification early if it were written
into a ``<script>`` block unescaped. The sweep runs as a real Prefect flow. Headless
Chromium loads the HTML pages offline and must also draw their charts. The artifacts
are read back through the Prefect client.
"""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser
from pathlib import Path

import pytest

from flows.sweep import artifact_key, sweep
from tests.browser import dump_dom, ink_fraction, screenshot
from tests.conftest import CATALOGS

PAYLOAD = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
SCRIPT = "<script>alert(1)</script>"
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

WORKFLOW = f"""\
workflow: hostile
description: "{PAYLOAD} description {SCRIPT}"
measured_on: {{name: "{PAYLOAD} reference", cores: 4, single_thread: 2000}}
stages:
  - {{id: cam, name: "{PAYLOAD} camera", time_s: 0.1, pin: edge}}
  - {{id: infer, name: "{PAYLOAD} inference {SCRIPT}", time_s: 1.5}}
  - {{id: show, name: "{SCRIPT}", time_s: 0.01, pin: edge}}
edges:
  - {{from: cam, to: infer, bytes: 600000}}
  - {{from: infer, to: show, bytes: 1000}}
"""

SYSTEM = f"""\
system: hostile-system
description: "{PAYLOAD} system"
runs_per_month: 1000
requirements: {{max_latency_s: 10}}
devices:
  - id: edge
    cpu: {{name: "{PAYLOAD} edge cpu", cores: 4, single_thread: 600}}
  - id: cloud
    cpu: {{name: "{PAYLOAD} cloud cpu", cores: 2, single_thread: 2500}}
    pricing: {{provider: flat, usd_per_compute_s: 0.0000333, usd_per_gb_out: 0.114}}
links:
  - {{between: [edge, cloud], bandwidth_mbps: 100}}
compare:
  - {{name: "{PAYLOAD} current design", rest: cloud}}
"""

HTML_FILES = ["report.html", "chart.html", "breakdown.html", "placement.html"]


@pytest.fixture(scope="module")
def outputs(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "workflow.yaml").write_text(WORKFLOW)
    (folder / "system.yaml").write_text(SYSTEM)
    out = folder / "out"
    sweep(str(folder / "workflow.yaml"), str(folder / "system.yaml"), str(CATALOGS), str(out))
    return out


def test_markdown_report_escapes_names(outputs: Path) -> None:
    report = (outputs / "report.md").read_text()
    assert "<img" not in report
    assert "<script" not in report
    for where in ("description", "camera", "edge cpu", "current design"):
        assert f"{ESCAPED} {where}" in report
    assert SCRIPT_ESCAPED in report


@pytest.mark.parametrize("name", HTML_FILES)
def test_html_source_has_no_raw_payload(outputs: Path, name: str) -> None:
    # In the embedded chart specifications the payload is JSON with "<" as \u003c.
    source = (outputs / name).read_text()
    assert PAYLOAD not in source
    assert SCRIPT not in source
    assert "alert(1)</script>" not in source


class ElementCollector(HTMLParser):
    """Collect every element's tag and attributes, the text outside scripts, and scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)
        else:
            self.text.append(data)


@pytest.mark.parametrize("name", HTML_FILES)
def test_html_page_shows_payload_as_text(outputs: Path, name: str) -> None:
    collector = ElementCollector()
    collector.feed(dump_dom(outputs / name))
    # No element created from the payload: every img left is a chart fallback, and
    # no script element runs the payload's code (the chart specifications contain
    # the payload as JSON text).
    for tag, attributes in collector.elements:
        assert "onerror" not in attributes, (tag, attributes)
        if tag == "img":
            assert (attributes.get("src") or "").startswith("data:image/png;base64,")
    assert "alert(1)" not in [script.strip() for script in collector.scripts]
    # The payload is shown as text: in SVG text, table cells or paragraphs. The
    # breakdown chart shows labels and device ids only, so no free text at all.
    text = "".join(collector.text)
    if name != "breakdown.html":
        assert PAYLOAD in text
        assert SCRIPT in text


def test_artifacts_escape_names(outputs: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read(key: str):
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )

    for kind in ("summary", "report"):
        artifacts = asyncio.run(read(artifact_key(kind, "hostile", "hostile-system")))
        assert artifacts, kind
        markdown = str(artifacts[0].data)
        assert "<img" not in markdown, kind
        assert "<script" not in markdown, kind
        assert ESCAPED in markdown, kind
    report = asyncio.run(read(artifact_key("report", "hostile", "hostile-system")))
    assert SCRIPT_ESCAPED in str(report[0].data)
    tables = asyncio.run(read(artifact_key("candidates", "hostile", "hostile-system")))
    assert tables
    assert "<img" not in str(tables[0].data)
    assert "<script" not in str(tables[0].data)


@pytest.mark.parametrize(("name", "charts"), [("report.html", 3), ("chart.html", 1)])
def test_html_page_draws_its_charts(outputs: Path, tmp_path: Path, name: str, charts: int) -> None:
    collector = ElementCollector()
    collector.feed(dump_dom(outputs / name))
    drawn = [tag for tag, attributes in collector.elements if tag == "svg"]
    assert len(drawn) >= charts
    assert "could not be drawn" not in "".join(collector.text)
    shot = screenshot(outputs / name, tmp_path / "page.png")
    # A blank page or an error line stays under 0.5 % of the pixels (see test_chart_browser).
    assert ink_fraction(shot) > 0.005
