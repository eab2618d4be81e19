"""The site's index page (``index.html`` of ``cobench leaderboard site``): one line per board,
with its cells, its build cost and its best row."""

from __future__ import annotations

from dataclasses import dataclass

from cobench.leaderboard.board import Board
from cobench.leaderboard.render.html import CSS, SCRIPT, SITE_CSS, esc, page_head
from cobench.leaderboard.render.text import metric_label, pct, wall_note

#: the index's long titles and best rows wrap (the board tables' cells do not)
INDEX_CSS = "table#boards td.text { white-space: normal; min-width: 8rem; }\n"


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
