"""The leaderboards as one static site (``cobench leaderboard site``), the form GitHub Pages serves:

    index.html               every board: title, dataset and model, cells, build cost, best row
                             (:mod:`cobench.leaderboard.render.index`)
    <board>/index.html       the board's page, rendered by :func:`cobench.leaderboard.render.html.render_html`
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
from cobench.leaderboard.rank import build_board
from cobench.leaderboard.render.html import SiteLinks, render_html
from cobench.leaderboard.render.index import BoardEntry, board_entry, index_html
from cobench.leaderboard.render.plots import render_plots
from cobench.leaderboard.render.tables import render_csv, render_json
from cobench.leaderboard.spec import Leaderboard

#: a file that marks a folder as written by this module (so a rebuild may empty it)
MARKER = ".cobench-site"


@dataclass(frozen=True)
class SiteReport:
    out: Path
    entries: tuple[BoardEntry, ...]
    files: int


def unbuilt_entry(lb: Leaderboard) -> BoardEntry:
    from cobench.grid.resolve import resolve
    from cobench.plugins import get_plugin_manager

    cells = resolve(lb.grid, get_plugin_manager().registry)
    return BoardEntry(name=lb.name, title=lb.title, dataset=lb.dataset, model=lb.model, grid_cells=len(cells))


def board_files(board: Board) -> dict[str, str | bytes]:
    """The board's files in the site, by path relative to the site's root."""
    lb = board.lb
    plots = render_plots(board)
    figures = {path: f"figures/{i}-{Path(path).name}" for i, (path, _) in enumerate(lb.figures, start=1)}
    links = SiteLinks(
        index="../index.html",
        downloads=(("CSV", f"{lb.name}.csv"), ("JSON", f"{lb.name}.json")),
        figures=tuple(figures.items()),
    )
    files: dict[str, str | bytes] = {f"{lb.name}/index.html": render_html(board, plots, links)}
    files[f"{lb.name}/{lb.name}.csv"] = render_csv(board)
    files[f"{lb.name}/{lb.name}.json"] = render_json(board)
    for name, png in plots.items():
        files[f"{lb.name}/{links.plots}/{name}"] = png
    for path, href in figures.items():
        files[f"{lb.name}/{href}"] = (lb.root / path).read_bytes()
    return files


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
