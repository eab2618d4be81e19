"""Every output of a leaderboard, rendered in memory: written next to the TOML (``render``), or
compared with the committed files (``check``).

Staleness: tables (.md, .csv, .json) must match byte for byte; the HTML page must match once the
embedded plot data is blanked out (PNG bytes depend on the matplotlib version); every plot
must exist.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cobench.atomic import write_atomic
from cobench.leaderboard.board import Board
from cobench.leaderboard.rank import build_board
from cobench.leaderboard.render.html import normalise, render_html
from cobench.leaderboard.render.markdown import render_markdown
from cobench.leaderboard.render.plots import render_plots
from cobench.leaderboard.render.tables import render_csv, render_json
from cobench.leaderboard.spec import Leaderboard
from cobench.plugins import Registry


def render_outputs(lb: Leaderboard, registry: Registry | None = None) -> tuple[Board, dict[Path, str | bytes]]:
    """(board, path -> content) for the .md/.csv/.json tables, the .html page and the plots.

    Raises before producing anything if a result is malformed or breaks the protocol.
    """
    board = build_board(lb, registry)
    outputs: dict[Path, str | bytes] = {
        lb.output("md"): render_markdown(board),
        lb.output("csv"): render_csv(board),
        lb.output("json"): render_json(board),
    }
    plots = render_plots(board)
    outputs[lb.output("html")] = render_html(board, plots)
    for name, data in plots.items():
        outputs[lb.plots_dir / name] = data
    return board, outputs


def write_outputs(lb: Leaderboard, outputs: dict[Path, str | bytes]) -> list[Path]:
    """Write ``outputs``; plots no longer produced are removed from the plots folder."""
    for path, data in outputs.items():
        write_atomic(path, data)
    if lb.plots_dir.is_dir():
        for old in lb.plots_dir.glob("*.png"):
            if old not in outputs:
                old.unlink()
    return sorted(outputs)


@dataclass
class Stale:
    path: Path
    reason: str
    diff: str = ""


def unified(old: str, new: str, path: Path, limit: int = 40) -> str:
    lines = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"{path} (committed)", f"{path} (re-rendered)", lineterm="", n=1
        )
    )
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join(lines)


def stale_files(lb: Leaderboard, registry: Registry | None = None) -> list[Stale]:
    """Every output of ``lb`` that is missing or differs from a fresh render of its results."""
    _, outputs = render_outputs(lb, registry)
    stale: list[Stale] = []
    for path, fresh in sorted(outputs.items()):
        if not path.is_file():
            stale.append(Stale(path, "missing"))
            continue
        if isinstance(fresh, bytes):  # a plot: presence is enough
            continue
        committed = path.read_text()
        if path.suffix == ".html":
            committed, fresh = normalise(committed), normalise(fresh)
        if committed != fresh:
            stale.append(Stale(path, "differs from a fresh render", unified(committed, fresh, path)))
    return stale
