"""The leaderboard as one self-contained HTML page that works offline: inline CSS, a small
inline script that sorts the tables when a header is clicked, and the plots embedded as
base64 PNG. Nothing is fetched from the network.

``page.html#sort=pgd_acc-desc`` opens the page with every table sorted by that column.

The same page, given :class:`SiteLinks`, is a page of the static site (``cobench leaderboard
site``): images are then files beside it, and a bar links back to the index and to the downloads.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

from cobench.leaderboard.board import Board, Row
from cobench.leaderboard.render.tables import row_record
from cobench.leaderboard.render.text import (
    FLAGGED_NOTE,
    GENERATED_NOTE,
    PUBLISHED_NOTE,
    PUBLISHED_NUMERIC,
    SECTIONS,
    Markup,
    cells_of,
    columns_note,
    coverage_text,
    flagged_item,
    main_device,
    method_item,
    planned_plots,
    protocol_items,
    published_cells,
    published_columns,
    table_columns,
)
from cobench.leaderboard.spec import TABLE_METRICS

#: data URIs of embedded images; ``check`` blanks them out before comparing pages
IMAGE_DATA = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]*")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d232a; background: #fff; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .3rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #dde3ea; }
.description { color: #3b4652; } .note { font-size: .9rem; color: #4a5561; }
code { background: #f1f4f8; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
table.leaderboard { border-collapse: collapse; width: 100%; font-size: .92rem; margin: .6rem 0 1rem; }
table.leaderboard th, table.leaderboard td { padding: .35rem .6rem; border-bottom: 1px solid #e6ebf0; text-align: right;
       white-space: nowrap; }
table.leaderboard th.text, table.leaderboard td.text { text-align: left; }
.table-wrap { overflow-x: auto; }
table.leaderboard thead th { white-space: normal; vertical-align: bottom; background: #24435f; color: #fff; cursor: pointer; user-select: none; position: sticky; top: 0; }
table.leaderboard thead th:hover { background: #2f5a80; }
table.leaderboard thead th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: .7em; }
table.leaderboard thead th[aria-sort="descending"]::after { content: " \\25BC"; font-size: .7em; }
table.leaderboard tbody tr:nth-child(even) { background: #f6f8fb; }
table.leaderboard tbody tr:hover { background: #fff6d8; }
td.collapsed { color: #b3122e; font-weight: 600; }
td.method { font-weight: 600; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #e6ebf0; }
figcaption { font-size: .9rem; color: #4a5561; }
footer { margin-top: 3rem; font-size: .8rem; color: #6b7681; }
"""
#: added to a site page's style (the bar of links above its heading)
SITE_CSS = "nav.site { font-size: .9rem; margin-bottom: 1rem; } nav.site a { margin-right: 1rem; }\n"

SCRIPT = """
(function () {
  "use strict";
  function cellValue(td, numeric) {
    var v = td.getAttribute("data-value");
    if (v === null || v === "") { return null; }
    return numeric ? parseFloat(v) : v;
  }
  function sortTable(table, col, direction) {
    var heads = table.tHead.rows[0].cells;
    var numeric = heads[col].getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a.cells[col], numeric), y = cellValue(b.cells[col], numeric);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }   /* missing values always last */
      if (y === null) { return -1; }
      var c = numeric ? x - y : String(x).localeCompare(String(y));
      return direction === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", direction);
  }
  function columnIndex(table, key) {
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) { if (heads[i].getAttribute("data-key") === key) { return i; } }
    return -1;
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.setAttribute("title", "click to sort");
      th.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var current = th.getAttribute("aria-sort");
        var first = numeric && th.getAttribute("data-key") !== "rank" ? "descending" : "ascending";
        var next = current ? (current === "ascending" ? "descending" : "ascending") : first;
        sortTable(table, col, next);
      });
    });
  });
  var m = /sort=([A-Za-z0-9_]+)-(asc|desc)/.exec(window.location.hash || "");
  if (m) {
    Array.prototype.forEach.call(tables, function (table) {
      var col = columnIndex(table, m[1]);
      if (col >= 0) { sortTable(table, col, m[2] === "asc" ? "ascending" : "descending"); }
    });
  }
  document.documentElement.setAttribute("data-sortable-tables", String(tables.length));
})();
"""

NUMERIC = {
    "rank",
    "eps",
    "co_rate",
    "co_epoch_median",
    "cost_vs_fgsm",
    "time_per_step",
    "forward_passes_per_step",
    "seeds",
}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline_markdown(text: str) -> str:
    """The tiny Markdown subset used in protocol lines (``code`` and **bold**) as HTML."""
    text = esc(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


HTML = Markup(
    escape=esc,
    strong=lambda text: f"<strong>{text}</strong>",
    module=lambda name: f"<code>{esc(name)}</code>",
    aside=lambda text: f'<span class="note">{text}</span>',
    inline=inline_markdown,
)


def sort_values(row: Row, keys: list[str], metrics: tuple[str, ...] = TABLE_METRICS) -> dict[str, str]:
    """What the page's script sorts a row's cells by, by column key: the numbers themselves."""
    record = row_record(row)
    out = {}
    for key in keys:
        v = (
            row.mean(key)
            if key in metrics
            else row.trust.time_per_step_s
            if key == "time_per_step"
            else record.get(key)
        )
        out[key] = "" if v is None else format(v, ".6g") if isinstance(v, float) else str(v)
    return out


def table_html(board: Board, rows: list[Row], setting_slug: str) -> list[str]:
    out = [
        f'<div class="table-wrap"><table class="leaderboard sortable" data-setting="{esc(setting_slug)}">',
        "<thead><tr>",
    ]
    metrics = board.table_metrics
    columns = table_columns(metrics, bool(board.published))
    numeric = NUMERIC | set(metrics)
    for key, header in columns:
        kind = "num" if key in numeric else "text"
        out.append(f'<th scope="col" data-key="{key}" data-type="{kind}" class="{kind}">{esc(header)}</th>')
    out.append("</tr></thead>")
    out.append("<tbody>")
    device = main_device(board.rows)
    for row in rows:
        cells = cells_of(row, device, metrics)
        values = sort_values(row, [k for k, _ in columns], metrics)
        out.append(
            f'<tr data-method="{esc(row.method)}" data-eps="{row.eps:g}" data-source="{esc(row.trust.source)}"'
            f' data-verification="{esc(row.trust.verification)}" data-flagged="{str(row.flagged).lower()}">'
        )
        for key, _ in columns:
            classes = ["text" if key not in numeric else "num"]
            if key == "method":
                classes.append("method")
            if key == "co_rate" and row.co_rate:
                classes.append("collapsed")
            out.append(f'<td class="{" ".join(classes)}" data-value="{esc(values[key])}">{esc(cells[key])}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return out


def published_html(board: Board) -> list[str]:
    """The published figures beside cobench's numbers, as a sortable table."""
    if not board.published:
        return []
    numeric = set(PUBLISHED_NUMERIC)
    out = [
        f'<section id="published"><h2>{SECTIONS["published"]}</h2>',
        f'<p class="note">{HTML.inline(PUBLISHED_NOTE)}</p>',
        '<div class="table-wrap"><table class="leaderboard sortable published"><thead><tr>',
    ]
    for key, header in published_columns():
        kind = "num" if key in numeric else "text"
        out.append(f'<th scope="col" data-key="{key}" data-type="{kind}" class="{kind}">{esc(header)}</th>')
    out.append("</tr></thead><tbody>")
    for comparison in board.published:
        cells = published_cells(comparison)
        rec = comparison.record()
        out.append(f'<tr data-method="{esc(rec["method"])}" data-eps="{rec["eps"]:g}">')
        for key, _ in published_columns():
            kind = "num" if key in numeric else "text"
            value = rec.get(key)
            data = "" if value is None or kind == "text" else format(value, ".6g")
            style = "" if kind == "num" else ' style="white-space: normal; min-width: 10rem"'
            out.append(f'<td class="{kind}"{style} data-value="{esc(data)}">{esc(cells[key])}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div></section>")
    return out


@dataclass(frozen=True)
class SiteLinks:
    """Where a site page finds its neighbours, as relative URLs: the index, the downloads, and
    the folders its plots and figures are copied to (see :mod:`cobench.leaderboard.site`)."""

    index: str
    #: (label, href) of each download, e.g. ("CSV", "digits-small-cnn.csv")
    downloads: tuple[tuple[str, str], ...]
    plots: str = "plots"
    #: the figure paths of the board's TOML -> their href
    figures: tuple[tuple[str, str], ...] = ()

    def figure(self, path: str) -> str:
        return dict(self.figures)[path]


def figure_html(png: bytes | str, alt: str, caption_html: str, attrs: str = "") -> str:
    """A PNG embedded in the page (it works offline), or, given a URL, linked; with its caption."""
    src = png if isinstance(png, str) else "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<figure{attrs}><img src="{esc(src)}" alt="{esc(alt)}"><figcaption>{caption_html}</figcaption></figure>'


def nav_html(links: SiteLinks) -> str:
    parts = [f'<a href="{esc(links.index)}">All leaderboards</a>']
    parts += [f'<a href="{esc(href)}" download>Download {esc(label)}</a>' for label, href in links.downloads]
    return f'<nav class="site">{"".join(parts)}</nav>'


def page_head(title_html: str, css: str) -> list[str]:
    """The opening lines of every page cobench writes, up to ``<body>`` (``title_html`` is escaped)."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title_html}</title>",
        f"<style>{css}</style>",
        "</head>",
        "<body>",
    ]


def render_html(board: Board, plots: dict[str, bytes], links: SiteLinks | None = None) -> str:
    """The page; ``plots`` maps the names of :func:`.text.planned_plots` to PNG bytes. Without
    ``links`` the page is self-contained (images embedded); with them, a page of the site."""
    lb = board.lb
    out = [
        *page_head(f"{esc(lb.title)} — cobench leaderboard", CSS + (SITE_CSS if links else "")),
        f"<!-- {esc(GENERATED_NOTE)} -->",
    ]
    if links:
        out.append(nav_html(links))
    out += [f"<header><h1>{esc(lb.title)}</h1>"]
    if lb.description:
        out.append(f'<p class="description">{esc(lb.description)}</p>')
    out.append("</header>")
    out.append(f'<section id="protocol"><h2>{SECTIONS["protocol"]}</h2><ul>')
    out += [f"<li>{HTML.inline(item)}</li>" for item in protocol_items(board)]
    out.append("</ul>")
    ranked = f"`{board.rank_metric or 'method name'}`"
    out.append(f'<p class="note">{columns_note(ranked, HTML)} Click a column header to sort.</p>')
    out.append(f'<p class="note" id="coverage">{esc(coverage_text(board))}</p>')
    out.append("</section>")
    if not board.rows:
        out.append("<p><em>No results yet: run <code>cobench leaderboard build</code> on this leaderboard.</em></p>")
    for setting in board.settings:
        out.append(f'<section class="setting" id="setting-{esc(setting.slug)}"><h2>{esc(setting.title)}</h2>')
        out += table_html(board, board.rows_for(setting), setting.slug)
        flagged = [r for r in board.rows_for(setting) if r.flagged]
        if flagged:
            out.append(f'<p class="note">{FLAGGED_NOTE}</p><ul class="flagged">')
            out += [f"<li>{flagged_item(r, HTML)}</li>" for r in flagged]
            out.append("</ul>")
        out.append("</section>")
    if board.methods:
        out.append(f'<section id="methods"><h2>{SECTIONS["methods"]}</h2><ul>')
        out += [f"<li>{method_item(m, HTML)}</li>" for m in board.methods]
        out.append("</ul></section>")
    out += published_html(board)
    planned = planned_plots(board)
    if planned:
        out.append(f'<section id="plots"><h2>{SECTIONS["plots"]}</h2>')
        for name, title in planned:
            image = f"{links.plots}/{name}" if links else plots[name]
            out.append(figure_html(image, title, esc(title), f' id="plot-{esc(name[:-4])}"'))
        out.append("</section>")
    if lb.figures:
        out.append(f'<section id="figures"><h2>{SECTIONS["figures"]}</h2>')
        for fig_path, caption in lb.figures:
            figure = links.figure(fig_path) if links else (lb.root / fig_path).read_bytes()
            out.append(figure_html(figure, caption, HTML.inline(caption)))
        out.append("</section>")
    out.append(
        f"<footer>cobench leaderboard <code>{esc(lb.name)}</code>; results in "
        f"<code>{esc(lb.results_rel)}/</code>." + ("" if links else " Works offline.") + "</footer>"
    )
    out.append(f"<script>{SCRIPT}</script>")
    out.append("</body>")
    out.append("</html>")
    return "\n".join(out) + "\n"


def normalise(page: str) -> str:
    """The page with embedded image data blanked out, for staleness comparisons."""
    return IMAGE_DATA.sub("data:image/png;base64,", page)
