"""Tests of the chart pages in headless Chromium: they draw, and input text stays text.

Each page is written by `write_chart_html`, loaded offline from a file, and checked
through its screenshot and its DOM after the scripts have run.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import altair as alt
import pandas as pd
import pytest

from allocation.charts import (
    breakdown_chart,
    placement_chart,
    tradeoff_chart,
    write_chart_html,
)
from allocation.results import SweepSummary
from tests.browser import chromium_path, dump_dom, ink_fraction, screenshot
from tests.test_charts import IMG_MARKUP, add_given_baseline, breakdown_tables, build_summary

INK_THRESHOLD = 0.005
"""Share of non-background pixels above which a 1280 x 1600 screenshot shows a chart.

Measured with Debian's Chromium: a page whose chart failed shows one line of error
text, about 0.2 % of the pixels (`test_error_page_below_threshold` checks that it stays
below), while the charts drawn here cover 1.5 % (trade-off) to 3 % (breakdown).
"""

ERROR_TEXT = "The chart could not be drawn"
"""Text that `write_chart_html` writes into the page when vega-embed fails."""

ERROR_PROBE = """<script>
window.pageErrors = [];
function recordPageError(text) {
  window.pageErrors.push(String(text));
  document.documentElement.setAttribute("data-page-errors", JSON.stringify(window.pageErrors));
}
window.addEventListener("error", function (event) {
  recordPageError("error: " + (event.message || (event.target && event.target.tagName)));
}, true);
window.addEventListener("unhandledrejection", function (event) {
  recordPageError("unhandled rejection: " + event.reason);
});
window.alert = function (message) { recordPageError("alert: " + message); };
const consoleError = console.error;
console.error = function () {
  recordPageError("console.error: " + Array.from(arguments).join(" "));
  consoleError.apply(console, arguments);
};
</script>
"""
"""Script put first in the page: it records script errors, failed loads and alerts in
the `data-page-errors` attribute of the root element, where the dumped DOM shows them."""

HOVER_PROBE = """<script>
(function hoverFirstCell() {
  const cell = document.querySelector("#chart svg g.mark-rect path");
  if (!cell) { setTimeout(hoverFirstCell, 50); return; }
  const box = cell.getBoundingClientRect();
  const at = {bubbles: true, clientX: box.x + box.width / 2, clientY: box.y + box.height / 2};
  cell.dispatchEvent(new PointerEvent("pointerover", at));
  cell.dispatchEvent(new PointerEvent("pointermove", at));
})();
</script>
"""
"""Script put last in the page: it moves the pointer onto the first cell of the chart,
so that vega-embed fills its tooltip element."""


class DomText(HTMLParser):
    """Collect the start tags of a page and the text inside the chart, SVG and tooltip."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.svg_text: list[str] = []
        self.tooltip_text: list[str] = []
        self.chart_text: list[str] = []
        self.root_attributes: dict[str, str | None] = {}
        self._svg_depth = 0
        self._tooltip_depth = 0
        self._chart_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "html":
            self.root_attributes = dict(attrs)
        if tag == "svg" or self._svg_depth:
            self._svg_depth += 1
        if ("id", "vg-tooltip-element") in attrs or self._tooltip_depth:
            self._tooltip_depth += 1
        if ("id", "chart") in attrs or self._chart_depth:
            self._chart_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._chart_depth:
            self._chart_depth -= 1
        if self._svg_depth:
            self._svg_depth -= 1
        if self._tooltip_depth:
            self._tooltip_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._svg_depth:
            self.svg_text.append(data)
        if self._tooltip_depth:
            self.tooltip_text.append(data)
        if self._chart_depth:
            self.chart_text.append(data)

    @property
    def page_errors(self) -> list[str]:
        return json.loads(self.root_attributes.get("data-page-errors") or "[]")


def parse_dom(dom: str) -> DomText:
    parser = DomText()
    parser.feed(dom)
    parser.close()
    return parser


def add_probes(page: Path, *, hover: bool = False) -> None:
    """Put `ERROR_PROBE` first in the page's head and, when asked, `HOVER_PROBE` last."""
    text = page.read_text("utf-8")
    head, found, rest = text.partition("<head>\n")
    assert found
    # The inlined bundle contains "</body>" in a string, so only the last one is the tag.
    body, found, tail = rest.rpartition("</body>")
    assert found
    probes = HOVER_PROBE if hover else ""
    page.write_text(
        head + "<head>\n" + ERROR_PROBE + body + probes + "</body>" + tail, encoding="utf-8"
    )


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
def summary() -> SweepSummary:
    return build_summary(runs_per_month=100_000)


@pytest.fixture(scope="module")
def hostile_summary() -> SweepSummary:
    return add_given_baseline(build_summary(text=IMG_MARKUP), IMG_MARKUP)


def chart_pages(summary: SweepSummary, *, title: str) -> dict[str, alt.TopLevelMixin]:
    return {
        "tradeoff": tradeoff_chart(
            summary, limits={"latency_s": 3.0, "monthly_cost_usd": 50}, recommended="B"
        ),
        "breakdown": breakdown_chart(*breakdown_tables(summary), title=title, recommended="B"),
        "placement": placement_chart(summary, recommended="B"),
    }


@pytest.mark.parametrize("name", ["tradeoff", "breakdown", "placement"])
def test_chart_page_draws(summary: SweepSummary, name: str, tmp_path: Path) -> None:
    chart = chart_pages(summary, title="Where the time and cost go")[name]
    spec = chart.to_dict()
    title = spec["title"]["text"]
    page = tmp_path / f"{name}.html"
    write_chart_html(chart, page)
    add_probes(page)

    ink = ink_fraction(screenshot(page, tmp_path / f"{name}.png"))
    assert ink > INK_THRESHOLD
    dom = dump_dom(page)
    parsed = parse_dom(dom)
    assert ERROR_TEXT not in "".join(parsed.chart_text)
    assert "svg" in parsed.tags
    assert title in "".join(parsed.svg_text)
    assert parsed.page_errors == []


def test_error_page_below_threshold(tmp_path: Path) -> None:
    chart = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_point().encode(x="x:Q")
    page = tmp_path / "broken.html"
    write_chart_html(chart, page)
    # An unknown mark type makes Vega-Lite reject the specification in the browser.
    text = page.read_text("utf-8")
    page.write_text(text.replace('"mark":{"type":"point"}', '"mark":{"type":"no-such-mark"}'))

    parsed = parse_dom(dump_dom(page))
    assert ERROR_TEXT in "".join(parsed.chart_text)
    assert "svg" not in parsed.tags
    assert ink_fraction(screenshot(page, tmp_path / "broken.png")) < INK_THRESHOLD


@pytest.mark.parametrize("name", ["tradeoff", "breakdown", "placement"])
def test_hostile_names_stay_text(hostile_summary: SweepSummary, name: str, tmp_path: Path) -> None:
    chart = chart_pages(hostile_summary, title=IMG_MARKUP)[name]
    page = tmp_path / f"{name}.html"
    write_chart_html(chart, page)
    add_probes(page, hover=name == "placement")

    dom = dump_dom(page)
    parsed = parse_dom(dom)
    svg_text = "".join(parsed.svg_text)
    assert "svg" in parsed.tags
    assert "img" not in parsed.tags
    assert IMG_MARKUP in svg_text
    assert parsed.page_errors == []
    assert ERROR_TEXT not in "".join(parsed.chart_text)
    if name == "tradeoff":
        # The description in the subtitle and the given baseline's name on the chart.
        assert svg_text.count(IMG_MARKUP) >= 2
    if name == "placement":
        # The CPU names in the subtitle; the stage name and CPU name in the tooltip.
        assert f"edge ({IMG_MARKUP})" in svg_text
        tooltip = "".join(parsed.tooltip_text)
        assert "Stage name" in tooltip
        assert tooltip.count(IMG_MARKUP) == 2
        assert re.search(r"&lt;img src=x onerror=alert\(1\)&gt;", dom)


def test_probes_catch_live_markup(summary: SweepSummary, tmp_path: Path) -> None:
    page = tmp_path / "live-markup.html"
    write_chart_html(placement_chart(summary), page)
    add_probes(page)
    # Markup put straight into the page, as an unescaped name would be.
    text = page.read_text("utf-8")
    body, _, tail = text.rpartition("</body>")
    page.write_text(body + IMG_MARKUP + "</body>" + tail, encoding="utf-8")

    parsed = parse_dom(dump_dom(page))
    assert "img" in parsed.tags
    assert "alert: 1" in parsed.page_errors
