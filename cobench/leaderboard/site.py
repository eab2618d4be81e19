"""The leaderboards as one static site (``cobench leaderboard site``), the form GitHub Pages serves:

    index.html               every board: title, dataset and model, cells, build cost, best row
    <board>/index.html       the board's page, rendered by :func:`cobench.leaderboard.html.render_html`
    <board>/plots/*.png      its plots, and <board>/figures/* its committed figures
    <board>/<board>.csv      the table as CSV, and <board>/<board>.json as JSON (downloads)

Every link is relative, so the site works from any URL prefix and from a folder on disk. Pages
are rendered from the stored results, as ``render`` does; a board without results is listed as
not built yet. The folder is marked as a cobench site, so that a rebuild may replace it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cobench.atomic import write_atomic
from cobench.errors import CobenchError
from cobench.leaderboard.board import Board
from cobench.leaderboard.html import CSS, SCRIPT, SITE_CSS, SiteLinks, esc, page_head, render_html
from cobench.leaderboard.plots import render_plots
from cobench.leaderboard.rank import build_board
from cobench.leaderboard.render import metric_label, pct, render_tables, wall_note
from cobench.leaderboard.spec import Leaderboard

#: the index's long titles and best rows wrap (the board tables' cells do not)
INDEX_CSS = "table#boards td.text { white-space: normal; min-width: 8rem; }\n"
#: a file that marks a folder as written by this module (so a rebuild may empty it)
MARKER = ".cobench-site"


@dataclass(frozen=True)
class BestRow:
    """The top row of a board's hardest table: its first setting at its largest eps."""

    method: str
    eps: float
    setting: str
    metric: str
    mean: float
    std: float | None
    seeds: int
    #: the seeds cannot separate it from the next row (rank ``=1``)
    tied: bool = False

    @property
    def text(self) -> str:
        text = (
            f"{self.method} at {self.eps:g}/255: {metric_label(self.metric)} {pct(self.mean, self.std, self.seeds)} %"
        )
        return text + (" (tied)" if self.tied else "")


@dataclass(frozen=True)
class BoardEntry:
    """One line of the index."""

    name: str
    title: str
    dataset: str
    model: str
    grid_cells: int
    #: None for a board that is not built yet
    finished_cells: int | None = None
    submitted_cells: int = 0
    build_hours: float | None = None
    build_note: str = ""
    best: BestRow | None = None

    @property
    def built(self) -> bool:
        return self.finished_cells is not None

    @property
    def page(self) -> str:
        return f"{self.name}/index.html"

    @property
    def cells_text(self) -> str:
        if self.finished_cells is None:
            return f"{self.grid_cells} (not built yet)"
        text = f"{self.finished_cells} of {self.grid_cells}"
        return text + (f" (+{self.submitted_cells} submitted)" if self.submitted_cells else "")


@dataclass(frozen=True)
class SiteReport:
    out: Path
    entries: tuple[BoardEntry, ...]
    files: int


def best_row(board: Board) -> BestRow | None:
    if not board.settings or board.rank_metric is None:
        return None
    setting = board.settings[0]
    rows = [r for r in board.rows_for(setting) if r.eps == max(r.eps for r in board.rows_for(setting))]
    top = next((r for r in rows if r.rank == 1), None)
    metric = board.rank_metric
    mean = None if top is None else top.mean(metric)
    if top is None or mean is None:
        return None
    return BestRow(
        method=top.method,
        eps=top.eps,
        setting=setting.title,
        metric=metric,
        mean=mean,
        std=top.std(metric),
        seeds=top.seeds,
        tied=top.rank_tied,
    )


def board_entry(board: Board) -> BoardEntry:
    lb, cov = board.lb, board.coverage
    return BoardEntry(
        name=lb.name,
        title=lb.title,
        dataset=lb.dataset,
        model=lb.model,
        grid_cells=cov.grid_cells,
        finished_cells=cov.grid_cells_finished,
        submitted_cells=cov.submitted_cells,
        build_hours=cov.build_hours,
        build_note=wall_note(lb, cov),
        best=best_row(board),
    )


def unbuilt_entry(lb: Leaderboard) -> BoardEntry:
    from cobench.grid.resolve import resolve
    from cobench.plugins import get_plugin_manager

    cells = resolve(lb.grid, get_plugin_manager().registry)
    return BoardEntry(name=lb.name, title=lb.title, dataset=lb.dataset, model=lb.model, grid_cells=len(cells))


def board_files(board: Board) -> dict[str, str | bytes]:
    """The board's files in the site, by path relative to the site's root."""
    lb = board.lb
    tables = render_tables(board)
    plots = render_plots(board)
    figures = {path: f"figures/{i}-{Path(path).name}" for i, (path, _) in enumerate(lb.figures, start=1)}
    links = SiteLinks(
        index="../index.html",
        downloads=(("CSV", f"{lb.name}.csv"), ("JSON", f"{lb.name}.json")),
        figures=tuple(figures.items()),
    )
    files: dict[str, str | bytes] = {f"{lb.name}/index.html": render_html(board, plots, links)}
    for ext in ("csv", "json"):
        files[f"{lb.name}/{lb.name}.{ext}"] = tables[lb.output(ext)]
    for name, png in plots.items():
        files[f"{lb.name}/{links.plots}/{name}"] = png
    for path, href in figures.items():
        files[f"{lb.name}/{href}"] = (lb.root / path).read_bytes()
    return files


def index_html(entries: list[BoardEntry]) -> str:
    columns = [
        ("title", "leaderboard", "text"),
        ("data", "dataset / model", "text"),
        ("cells", "cells", "num"),
        ("hours", "build cost (h)", "num"),
        ("best", "best row (largest eps)", "text"),
    ]
    out = [
        *page_head("cobench leaderboards", CSS + SITE_CSS + INDEX_CSS),
        "<header><h1>cobench leaderboards</h1>",
        '<p class="description">Catastrophic overfitting in fast adversarial training: each board trains a '
        "grid of methods under one protocol and ranks them by robust accuracy. Click a board for its tables, "
        "plots and downloads.</p></header>",
        '<div class="table-wrap"><table class="leaderboard sortable" id="boards"><thead><tr>',
    ]
    out += [f'<th scope="col" data-key="{k}" data-type="{t}" class="{t}">{esc(h)}</th>' for k, h, t in columns]
    out.append("</tr></thead><tbody>")
    for e in entries:
        title = f'<a href="{esc(e.page)}">{esc(e.title)}</a>' if e.built else esc(e.title)
        hours = "-" if e.build_hours is None else f"{e.build_hours:g}"
        best = e.best.text if e.best else ("-" if e.built else "not built yet")
        cells = [
            ("text", e.title, title),
            ("text", f"{e.dataset} / {e.model}", esc(f"{e.dataset} / {e.model}")),
            ("num", str(e.finished_cells if e.built else ""), esc(e.cells_text)),
            (
                "num",
                "" if e.build_hours is None else f"{e.build_hours:g}",
                f'<span title="{esc(e.build_note)}">{hours}</span>',
            ),
            ("text", best, esc(best)),
        ]
        out.append(f'<tr data-board="{esc(e.name)}" data-built="{str(e.built).lower()}">')
        out += [f'<td class="{kind}" data-value="{esc(value)}">{content}</td>' for kind, value, content in cells]
        out.append("</tr>")
    out.append("</tbody></table></div>")
    out.append(
        '<p class="note">Build cost: the wall-clock hours the board\'s finished cells (and the searches that chose '
        "its grid) recorded. Best row: rank 1 at the board's largest eps in its first setting, by the metric the "
        "board ranks by.</p>"
    )
    out.append(
        "<footer>Generated by <code>cobench leaderboard site</code> from the results stored in the repository; "
        "no training.</footer>"
    )
    out += [f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def check_out(out: Path) -> None:
    """``out`` may hold the site: it is new, empty, or a site written before."""
    if out.exists() and not out.is_dir():
        raise CobenchError(f"-o {str(out)!r} is a file; name a folder for the site, e.g. -o site/")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise CobenchError(
            f"-o {str(out)!r} is a folder that holds other files; name a new or empty folder "
            "(a folder written by `cobench leaderboard site` is replaced)"
        )


def empty_out(out: Path) -> None:
    """``out``, checked by :func:`check_out`, emptied (or created)."""
    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def build_site(boards: list[Leaderboard], out: Path) -> SiteReport:
    """Render every board and the index into ``out``; a bad result aborts before anything is written."""
    names = [lb.name for lb in boards]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CobenchError(f"two leaderboards named {', '.join(duplicates)}: a site has one page per board name")
    check_out(out)
    files: dict[str, str | bytes] = {}
    entries = []
    for lb in boards:
        if not lb.built:
            entries.append(unbuilt_entry(lb))
            continue
        board = build_board(lb)
        files.update(board_files(board))
        entries.append(board_entry(board))
    files["index.html"] = index_html(sorted(entries, key=lambda e: not e.built))  # built boards first
    files[".nojekyll"] = ""  # GitHub Pages: serve the files as they are
    files[MARKER] = "written by `cobench leaderboard site`; rebuilding replaces this folder\n"
    empty_out(out)
    for rel, data in files.items():
        write_atomic(out / rel, data)
    return SiteReport(out=out, entries=tuple(entries), files=len(files))
