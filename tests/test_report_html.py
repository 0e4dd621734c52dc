"""The HTML report page and the chart images embedded in markdown."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from allocation.charts import _javascript_bundle, write_chart_png
from allocation.report import escape_markdown
from allocation.report_html import (
    ChartEmbed,
    embed_pngs_in_markdown,
    png_data_uri,
    render_report_html,
)
from tests.browser import dump_dom, ink_fraction, screenshot

IMG_MARKUP = "<img src=x onerror=document.body.setAttribute('data-injected','img')>"
SCRIPT_MARKUP = "<script>document.body.setAttribute('data-injected','script')</script>"
JAVASCRIPT_LINK = "[click me](javascript:document.body.setAttribute('data-injected','link'))"

REPORT_MD = """\
# Allocation of demo on two-devices

Workflow demo on system two-devices. 3 candidates form the Pareto front.

![Trade-off](chart.png)

## Candidates

| Label | Placement | Latency (s) | Cost per run (USD) |
| --- | --- | ---: | ---: |
| A | all on cloud | 1.25 s | 0.000471 USD |
| B | stage 2 on cloud, rest on edge | 2.50 s | 0.000151 USD |
| C | all on edge | 7.54 s | 0 USD |

## Stages

- decode: Decode the frame
"""


@pytest.fixture(scope="module")
def chart_embed(tmp_path_factory: pytest.TempPathFactory) -> ChartEmbed:
    points = pd.DataFrame(
        {
            "latency_s": [1.25, 2.5, 7.54],
            "cost_usd": [0.000471, 0.000151, 0.0],
            "label": ["A", "B", "C"],
        }
    )
    chart = (
        alt.Chart(points)
        .mark_point(filled=True, size=80)
        .encode(x="latency_s:Q", y="cost_usd:Q", tooltip=["label:N", "latency_s:Q"])
        .properties(title="Trade-off of demo", width=400, height=300)
    )
    path = tmp_path_factory.mktemp("chart") / "chart.png"
    write_chart_png(chart, path, scale=1)
    return ChartEmbed(
        file_name="chart.png",
        spec=chart.to_dict(),
        png=path.read_bytes(),
        alt="Trade-off chart: latency against cost per run",
    )


def hostile_markdown() -> str:
    """Markdown with input text escaped as report.py does, and markup typed in directly."""
    return (
        f"# Report of {escape_markdown(IMG_MARKUP)}\n\n"
        f"Description: {escape_markdown(IMG_MARKUP)}\n\n"
        f"{SCRIPT_MARKUP}\n\n"
        f"{JAVASCRIPT_LINK}\n\n"
        "| Name | Value |\n| --- | ---: |\n"
        f"| {escape_markdown(IMG_MARKUP)} | 1 |\n\n"
        "![Trade-off](chart.png)\n"
    )


class ElementCollector(HTMLParser):
    """Collect every start tag with its attributes, and the text of script elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def collect(page: str) -> ElementCollector:
    collector = ElementCollector()
    collector.feed(page)
    collector.close()
    return collector


def main_html(page: str) -> str:
    return page[page.index("<main>") : page.index("</main>")]


def csp_of(page: str) -> str:
    for tag, attrs in collect(page).elements:
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            return attrs["content"] or ""
    raise AssertionError("the page has no Content-Security-Policy meta element")


def embedded_specs(page: str) -> list[dict[str, Any]]:
    match = re.search(r"const specs = (.*);\n", page)
    assert match is not None
    return json.loads(match.group(1))


# --- Rendering -----------------------------------------------------------------------


def test_report_html_headings_and_table(chart_embed: ChartEmbed) -> None:
    page = render_report_html(REPORT_MD, title="Report", charts=[chart_embed])
    body = main_html(page)

    assert "<h1>Allocation of demo on two-devices</h1>" in body
    assert "<h2>Candidates</h2>" in body
    assert "<table>" in body
    assert '<th style="text-align:right">Latency (s)</th>' in body
    assert '<td style="text-align:right">1.25 s</td>' in body
    assert "<li>decode: Decode the frame</li>" in body


def test_report_html_page_head() -> None:
    page = render_report_html("# Title", title="Report <of> \"demo\" & 'more'", charts=[])

    assert page.startswith("<!DOCTYPE html>\n")
    assert '<html lang="en">' in page
    assert page.index('<meta charset="utf-8">') < page.index("Content-Security-Policy")
    assert page.index("Content-Security-Policy") < page.index("<style>")
    assert "<title>Report &lt;of&gt; &quot;demo&quot; &amp; &#x27;more&#x27;</title>" in page


def test_report_html_chart_figure(chart_embed: ChartEmbed) -> None:
    page = render_report_html(REPORT_MD, title="Report", charts=[chart_embed])
    body = main_html(page)
    images = [attrs for tag, attrs in collect(body).elements if tag == "img"]

    assert '<figure class="chart" id="chart-1">' in body
    assert "<p><figure" not in body
    assert len(images) == 1
    assert images[0]["src"] == png_data_uri(chart_embed.png)
    assert images[0]["alt"] == chart_embed.alt
    assert images[0]["class"] == "chart-fallback"


def test_report_html_bundle_and_spec_once(chart_embed: ChartEmbed) -> None:
    markdown = REPORT_MD + "\n## Again\n\n![Same chart](chart.png)\n"
    page = render_report_html(markdown, title="Report", charts=[chart_embed])
    bundle = _javascript_bundle()

    assert page.count(bundle) == 1
    assert embedded_specs(page) == [chart_embed.spec]
    assert re.search(r"const views = (.*);\n", page)
    assert page.count('class="chart"') == 2
    assert page.count("<script>") == 2


def test_report_html_unused_chart_left_out(chart_embed: ChartEmbed) -> None:
    page = render_report_html("# No chart here", title="Report", charts=[chart_embed])

    assert "<script" not in page
    assert "script-src 'none'" in csp_of(page)
    assert "data:image/png" not in page


def test_report_html_content_security_policy(chart_embed: ChartEmbed) -> None:
    page = render_report_html(REPORT_MD, title="Report", charts=[chart_embed])
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in (part.strip() for part in csp_of(page).split(";"))
    }
    scripts = collect(page).scripts
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    ]

    assert policy["default-src"] == ["'none'"]
    assert policy["img-src"] == ["data:"]
    assert policy["base-uri"] == ["'none'"]
    assert sorted(policy["script-src"]) == sorted(hashes)
    assert "'unsafe-eval'" not in policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"]


def test_report_html_loads_nothing_external(chart_embed: ChartEmbed) -> None:
    page = render_report_html(REPORT_MD, title="Report", charts=[chart_embed])
    elements = collect(page).elements

    for tag, attrs in elements:
        assert tag not in {"link", "iframe", "object", "embed", "base"}, tag
        assert "src" not in attrs or str(attrs["src"]).startswith("data:image/png;base64,"), tag
    assert not re.search(r"@import|url\(", page.split("<script>")[0])


def test_report_html_hostile_text(chart_embed: ChartEmbed) -> None:
    page = render_report_html(hostile_markdown(), title=IMG_MARKUP, charts=[chart_embed])
    body = main_html(page)
    elements = collect(body).elements

    assert IMG_MARKUP not in page
    assert SCRIPT_MARKUP not in page
    assert "<script" not in body
    assert not [tag for tag, _ in elements if tag == "a"]
    assert [tag for tag, _ in elements if tag == "img"] == ["img"]
    for _, attrs in elements:
        assert not [name for name in attrs if name.startswith("on")], attrs
    assert "&lt;img src=x onerror=" in body
    assert "&lt;script&gt;document.body" in body
    assert "[click me](javascript:" in body


@pytest.mark.parametrize(
    ("target", "expected_href"),
    [
        ("https://example.org/prices", "https://example.org/prices"),
        ("http://example.org/", "http://example.org/"),
        ("mailto:team@example.org", "mailto:team@example.org"),
        ("front.parquet", "front.parquet"),
        ("#candidates", "#candidates"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)", None),
        ("&#106;avascript:alert(1)", None),
        ("vbscript:msgbox(1)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("data:image/png;base64,iVBORw0KGgo=", None),
        ("file:///etc/passwd", None),
    ],
)
def test_report_html_link_schemes(target: str, expected_href: str | None) -> None:
    page = render_report_html(f"See [the link]({target}).", title="Links", charts=[])
    links = [attrs for tag, attrs in collect(main_html(page)).elements if tag == "a"]

    if expected_href is None:
        assert links == []
        assert "[the link](" in page
    else:
        assert links == [{"href": expected_href}]


@pytest.mark.parametrize(
    "markdown",
    [
        "![remote](https://example.invalid/tracker.png)",
        "![inline](data:image/png;base64,iVBORw0KGgo=)",
        "![local](other.png)",
        "Text with an image ![remote](//example.invalid/x.png) inside.",
    ],
)
def test_report_html_other_images_as_text(markdown: str, chart_embed: ChartEmbed) -> None:
    page = render_report_html(markdown, title="Images", charts=[chart_embed])
    body = main_html(page)

    assert "<img" not in body
    assert "src=" not in body
    assert "<script" not in page


def test_report_html_remote_image_shown_as_alt_text() -> None:
    page = render_report_html("![remote](https://example.invalid/x.png)", title="x", charts=[])

    assert '<span class="missing-image">[remote]</span>' in page
    assert "example.invalid" not in page


def test_report_html_chart_inline_in_text(chart_embed: ChartEmbed) -> None:
    page = render_report_html("See ![the chart](chart.png) here.", title="x", charts=[chart_embed])
    body = main_html(page)

    assert '<p>See <span class="chart" id="chart-1">' in body
    assert "<figure" not in body


def test_report_html_duplicate_chart_names(chart_embed: ChartEmbed) -> None:
    with pytest.raises(ValueError, match=r"chart\.png"):
        render_report_html(REPORT_MD, title="x", charts=[chart_embed, chart_embed])


def test_report_html_rejects_non_png(chart_embed: ChartEmbed) -> None:
    jpeg = ChartEmbed(chart_embed.file_name, chart_embed.spec, b"\xff\xd8\xff\xe0", "alt")

    with pytest.raises(ValueError, match="not PNG"):
        render_report_html(REPORT_MD, title="x", charts=[jpeg])


# --- Data URIs in markdown -----------------------------------------------------------


def test_png_data_uri_round_trip(chart_embed: ChartEmbed) -> None:
    uri = png_data_uri(chart_embed.png)

    assert uri.startswith("data:image/png;base64,iVBORw0KGgo")
    assert base64.b64decode(uri.split(",", 1)[1]) == chart_embed.png


def test_png_data_uri_rejects_other_bytes() -> None:
    with pytest.raises(ValueError, match="PNG"):
        png_data_uri(b"<svg></svg>")


def test_embed_pngs_rewrites_chart_images(chart_embed: ChartEmbed) -> None:
    uri = png_data_uri(chart_embed.png)
    markdown = (
        "![Trade-off](chart.png)\n\n"
        '![With title](chart.png "The chart")\n\n'
        "![Angle brackets](<chart.png>)\n\n"
        "![Other](other.png)\n\n"
        "[a link to the file](chart.png)\n\n"
        "\\![escaped](chart.png)\n\n"
        "![Not this](chart.png.bak)\n"
    )
    embedded = embed_pngs_in_markdown(markdown, [chart_embed])

    assert f"![Trade-off]({uri})" in embedded
    assert f'![With title]({uri} "The chart")' in embedded
    assert f"![Angle brackets](<{uri}>)" in embedded
    assert "![Other](other.png)" in embedded
    assert "[a link to the file](chart.png)" in embedded
    assert "\\![escaped](chart.png)" in embedded
    assert "![Not this](chart.png.bak)" in embedded
    assert embedded.count(uri) == 3


def test_embed_pngs_renders_as_images(chart_embed: ChartEmbed) -> None:
    embedded = embed_pngs_in_markdown(REPORT_MD, [chart_embed])
    rendered = MarkdownIt("commonmark", {"html": False}).render(embedded)
    sources = [attrs.get("src") for tag, attrs in collect(rendered).elements if tag == "img"]

    assert sources == [png_data_uri(chart_embed.png)]
    assert embedded.replace(png_data_uri(chart_embed.png), "chart.png") == REPORT_MD


def test_embed_pngs_without_charts() -> None:
    assert embed_pngs_in_markdown(REPORT_MD, []) == REPORT_MD


# --- In a browser --------------------------------------------------------------------


def test_report_html_in_chromium(chart_embed: ChartEmbed, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(
        render_report_html(hostile_markdown(), title="Report", charts=[chart_embed]), "utf-8"
    )
    dom = dump_dom(page)
    body = main_html(dom)

    assert "data-injected=" not in dom
    assert "chart-error" not in body
    assert re.search(r'<figure class="chart" id="chart-1">.*?<svg', body, re.DOTALL)
    assert "Trade-off of demo" in body
    assert "<img" not in body
    assert "<script" not in body
    assert body.count("&lt;img src=x onerror=") == 3
    assert "&lt;script&gt;document.body" in body
    assert "[click me](javascript:" in body


def test_report_html_screenshot_not_blank(chart_embed: ChartEmbed, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_report_html(REPORT_MD, title="Report", charts=[chart_embed]), "utf-8")
    png = screenshot(page, tmp_path / "report.png", width=1000, height=900)

    assert ink_fraction(png) > 0.01


def test_report_html_csp_blocks_injected_script(chart_embed: ChartEmbed, tmp_path: Path) -> None:
    html_text = render_report_html(REPORT_MD, title="Report", charts=[chart_embed])
    injected = "<script>document.body.setAttribute('data-injected','script')</script>"
    page = tmp_path / "report.html"
    page.write_text(html_text.replace("</main>", injected + "</main>"), "utf-8")
    dom = dump_dom(page)

    assert "data-injected=" not in dom
    assert "<svg" in main_html(dom)


def test_report_html_fallback_when_chart_fails(chart_embed: ChartEmbed, tmp_path: Path) -> None:
    broken = ChartEmbed("chart.png", {"mark": "no-such-mark"}, chart_embed.png, "alt")
    page = tmp_path / "report.html"
    page.write_text(render_report_html(REPORT_MD, title="Report", charts=[broken]), "utf-8")
    body = main_html(dump_dom(page))

    assert 'class="chart-fallback"' in body
    assert "The interactive chart could not be drawn" in body
