"""The report as one self-contained HTML page, and chart images embedded in markdown.

`render_report_html` turns report.md into a page that opens offline: the markdown is
rendered with markdown-it-py, raw HTML off, and every image that refers to a chart
becomes an interactive Vega-Lite view with its PNG as the fallback. `embed_pngs_in_markdown`
replaces the same image targets with PNG data URIs, for markdown shown where local files
cannot be reached, such as a Prefect markdown artifact.

The page loads nothing over the network. Its Content-Security-Policy allows only the
page's own two scripts (by hash), inline styles and ``data:`` images, and Vega evaluates
chart expressions with its interpreter (vega-embed's ``ast`` option), so no script needs
``eval``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from allocation.charts import _EMBED_OPTIONS, _javascript_bundle, _script_json

__all__ = [
    "ChartEmbed",
    "embed_pngs_in_markdown",
    "png_data_uri",
    "render_report_html",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
"""URL schemes a link may use. A link without a scheme (relative or ``#fragment``) is kept too."""

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):")

_EMBED_OPTIONS_HTML = {**_EMBED_OPTIONS, "ast": True}
"""vega-embed options of the page: those of chart.html, plus the expression interpreter.

With ``ast`` true, Vega evaluates expressions by walking their syntax tree instead of
compiling them with ``Function``, which the page's Content-Security-Policy forbids.
"""

_STYLESHEET = """\
:root { color-scheme: light; }
body {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  line-height: 1.45;
  color: #1a1a1a;
  background: #ffffff;
  max-width: 72rem;
  margin: 0 auto;
  padding: 1.5rem;
}
h1, h2, h3 { line-height: 1.2; margin: 1.6em 0 0.5em; }
h1 { margin-top: 0.5em; }
.table-scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #d0d0d0; padding: 0.3em 0.7em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td { font-variant-numeric: tabular-nums; }
td[style*="right"] { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
figure.chart { margin: 1em 0; }
.chart-fallback { max-width: 100%; height: auto; }
.chart-error { color: #a00000; }
.missing-image { color: #555555; font-style: italic; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2, h3 { break-after: avoid; }
  tr, figure.chart { break-inside: avoid; }
  .vega-actions { display: none; }
  a { color: inherit; }
}
"""

_EMBED_SCRIPT = """\
(function () {
  "use strict";
  const specs = %(specs)s;
  const views = %(views)s;
  const options = %(options)s;
  for (const view of views) {
    const figure = document.getElementById(view.id);
    const fallback = figure.querySelector(".chart-fallback");
    const showError = function (error) {
      const message = document.createElement("p");
      message.className = "chart-error";
      message.textContent = "The interactive chart could not be drawn: " + error;
      figure.appendChild(message);
    };
    if (typeof vegaEmbed !== "function") {
      showError("the Vega scripts did not load");
      continue;
    }
    vegaEmbed(figure.querySelector(".chart-view"), specs[view.spec], options)
      .then(function () { fallback.remove(); })
      .catch(showError);
  }
})();
"""


@dataclass(frozen=True)
class ChartEmbed:
    """A chart that markdown refers to as an image, with what the page needs to draw it.

    Attributes
    ----------
    file_name : str
        The image target the markdown uses, such as ``chart.png``.
    spec : dict
        The chart's Vega-Lite specification with inline data (``chart.to_dict()``).
    png : bytes
        The chart rendered as PNG, shown where scripts do not run.
    alt : str
        Text alternative of the chart.
    """

    file_name: str
    spec: dict[str, Any]
    png: bytes
    alt: str


def png_data_uri(png: bytes) -> str:
    """Encode PNG bytes as a ``data:image/png;base64,...`` URI.

    Raises
    ------
    ValueError
        When `png` does not start with the PNG signature.
    """
    if not png.startswith(_PNG_SIGNATURE):
        raise ValueError(f"expected PNG bytes (starting with {_PNG_SIGNATURE!r}), got {png[:8]!r}")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def embed_pngs_in_markdown(markdown_text: str, charts: Sequence[ChartEmbed]) -> str:
    """Replace the targets of chart images in markdown with PNG data URIs.

    Parameters
    ----------
    markdown_text : str
        Markdown such as report.md.
    charts : sequence of ChartEmbed
        The charts. An image ``![alt](file_name)`` or ``![alt](file_name "title")``
        whose target is a chart's `file_name` gets that chart's PNG.

    Returns
    -------
    str
        The markdown with every other character unchanged.

    Raises
    ------
    ValueError
        When two charts have the same `file_name`, or a PNG is not PNG bytes.

    Notes
    -----
    The rewrite matches the image syntax as text, so an image written inside a code
    span or code block is rewritten too. report.md has neither.
    """
    by_name = _charts_by_name(charts)
    if not by_name:
        return markdown_text
    names = "|".join(re.escape(name) for name in sorted(by_name, key=len, reverse=True))
    image = re.compile(
        r"(?<!\\)(?P<head>!\[(?:\\.|[^\\\[\]\n])*\]\()"
        rf"(?P<open><)?(?P<target>{names})(?(open)>)"
        r"(?P<tail>(?:[ \t]+\"[^\"\n]*\")?[ \t]*\))"
    )

    def substitute(match: re.Match[str]) -> str:
        uri = png_data_uri(by_name[match["target"]].png)
        if match["open"]:
            uri = f"<{uri}>"
        return match["head"] + uri + match["tail"]

    return image.sub(substitute, markdown_text)


def render_report_html(markdown_text: str, *, title: str, charts: Sequence[ChartEmbed]) -> str:
    """Render markdown as a self-contained HTML page with interactive charts.

    Parameters
    ----------
    markdown_text : str
        GitHub-style markdown with pipe tables, such as report.md. Raw HTML in it is
        shown as text.
    title : str
        The page title, escaped here.
    charts : sequence of ChartEmbed
        Charts that images in the markdown refer to by `file_name`.

    Returns
    -------
    str
        The HTML page. It declares UTF-8 as its charset.

    Raises
    ------
    ValueError
        When two charts have the same `file_name`, or a PNG is not PNG bytes.

    Notes
    -----
    An image whose target is a chart's `file_name` becomes a figure with the chart,
    drawn by vega-embed as SVG, and its PNG as a ``data:`` image. The script removes
    the PNG once the chart is drawn, so the PNG stays when scripts do not run or the
    chart fails.

    The Vega, Vega-Lite and vega-embed scripts are inlined once, after the content,
    and each chart's specification once, however often the markdown shows it. Charts
    the markdown does not refer to are left out.
    The figure's text alternative is the chart's `alt`, not the alt text in the markdown.

    Every other image is shown as its alt text in brackets and loads nothing. Links
    keep only the schemes http, https and mailto, or none (relative and ``#`` links).
    Any other link, ``javascript:`` and ``data:`` included, stays as the markdown text.

    The Content-Security-Policy forbids every network load (``default-src 'none'``) and
    runs only the page's own scripts, named by SHA-256 hash. Styles may be inline
    because vega-embed adds a ``<style>`` element and style attributes, and markdown-it
    aligns table cells with style attributes. CSS cannot run scripts, and with every
    load blocked it cannot send data anywhere.
    """
    by_name = _charts_by_name(charts)
    parser = _markdown_parser()
    env: dict[str, Any] = {"charts": by_name, "used": {}, "views": []}
    tokens = parser.parse(markdown_text, env)
    _mark_chart_paragraphs(tokens, parser, by_name)
    body = parser.renderer.render(tokens, parser.options, env)

    scripts: list[str] = []
    if env["views"]:
        # `used` maps each drawn chart to its index in `specs`, in insertion order.
        specs = [by_name[name].spec for name in env["used"]]
        scripts = [
            _javascript_bundle(),
            _EMBED_SCRIPT
            % {
                "specs": _script_json(specs),
                "views": _script_json(env["views"]),
                "options": _script_json(_EMBED_OPTIONS_HTML),
            },
        ]
    return _page(title, body, scripts)


def _charts_by_name(charts: Sequence[ChartEmbed]) -> dict[str, ChartEmbed]:
    by_name: dict[str, ChartEmbed] = {}
    for chart in charts:
        if chart.file_name in by_name:
            raise ValueError(f"two charts have the file_name {chart.file_name!r}")
        if not chart.png.startswith(_PNG_SIGNATURE):
            raise ValueError(f"the png of chart {chart.file_name!r} is not PNG bytes")
        by_name[chart.file_name] = chart
    return by_name


def _is_allowed_link(url: str) -> bool:
    """Accept a link with an allowed scheme or none. markdown-it passes it normalised."""
    scheme = _SCHEME.match(url.strip().lower())
    return scheme is None or scheme[1] in _LINK_SCHEMES


def _markdown_parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "xhtmlOut": False})
    parser.enable(["table", "strikethrough"])
    parser.validateLink = _is_allowed_link  # type: ignore[method-assign]
    parser.add_render_rule("image", _render_image)
    parser.add_render_rule("table_open", _render_table_open)
    parser.add_render_rule("table_close", _render_table_close)
    return parser


def _chart_target(parser: MarkdownIt, charts: Mapping[str, ChartEmbed], src: str) -> str | None:
    """Return the file_name of the chart an image target refers to, if any."""
    for name in charts:
        if src in (name, parser.normalizeLink(name)):
            return name
    return None


def _mark_chart_paragraphs(
    tokens: list[Token], parser: MarkdownIt, charts: Mapping[str, ChartEmbed]
) -> None:
    """Resolve chart images, and hide the paragraph around a chart that is its only content.

    A figure is not allowed inside a paragraph, so a paragraph that contains only one
    chart image loses its tags and the image renders as a block.
    """
    for index, token in enumerate(tokens):
        if token.type != "inline" or not token.children:
            continue
        for child in token.children:
            if child.type == "image":
                child.meta["chart"] = _chart_target(parser, charts, str(child.attrGet("src")))
        content = [c for c in token.children if not (c.type == "text" and not c.content.strip())]
        alone = len(content) == 1 and content[0].type == "image" and content[0].meta["chart"]
        if alone and 0 < index < len(tokens) - 1 and tokens[index - 1].type == "paragraph_open":
            tokens[index - 1].hidden = True
            tokens[index + 1].hidden = True
            content[0].meta["block"] = True


def _render_image(
    renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    token = tokens[idx]
    alt_text = renderer.renderInlineAsText(token.children or [], options, env)
    name = token.meta.get("chart")
    if name is None:
        # Not a chart: show the alt text and load nothing.
        return f'<span class="missing-image">[{html.escape(alt_text or "image")}]</span>'

    chart: ChartEmbed = env["charts"][name]
    used: dict[str, int] = env["used"]
    spec_index = used.setdefault(name, len(used))
    view_id = f"chart-{len(env['views']) + 1}"
    env["views"].append({"id": view_id, "spec": spec_index})
    alt = html.escape(chart.alt, quote=True)
    tag = "figure" if token.meta.get("block") else "span"
    inner = "div" if tag == "figure" else "span"
    return (
        f'<{tag} class="chart" id="{view_id}">'
        f'<{inner} class="chart-view" role="img" aria-label="{alt}"></{inner}>'
        f'<img class="chart-fallback" src="{png_data_uri(chart.png)}" alt="{alt}">'
        f"</{tag}>\n"
    )


def _render_table_open(
    renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    # Wide tables scroll inside their own box instead of widening the page.
    return '<div class="table-scroll">\n' + str(renderer.renderToken(tokens, idx, options, env))


def _render_table_close(
    renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]
) -> str:
    return str(renderer.renderToken(tokens, idx, options, env)) + "</div>\n"


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _content_security_policy(scripts: Sequence[str]) -> str:
    script_sources = " ".join(_script_hash(s) for s in scripts) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script_sources}",
            "style-src 'unsafe-inline'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _page(title: str, body: str, scripts: Sequence[str]) -> str:
    # The CSP meta element comes before any style or script, so it covers all of them.
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta http-equiv="Content-Security-Policy" content="'
        f'{html.escape(_content_security_policy(scripts), quote=True)}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<meta name="referrer" content="no-referrer">\n',
        f"<title>{html.escape(title, quote=True)}</title>\n",
        f"<style>\n{_STYLESHEET}</style>\n",
        "</head>\n<body>\n<main>\n",
        body,
        "</main>\n",
    ]
    for script in scripts:
        parts += ["<script>", script, "</script>\n"]
    parts.append("</body>\n</html>\n")
    return "".join(parts)
