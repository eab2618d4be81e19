"""Every output of a leaderboard, rendered in memory, and writing them next to the TOML."""

from __future__ import annotations

from pathlib import Path

from cobench.atomic import write_atomic
from cobench.leaderboard.board import Board, build_board
from cobench.leaderboard.html import render_html
from cobench.leaderboard.plots import render_plots
from cobench.leaderboard.render import render_tables
from cobench.leaderboard.spec import Leaderboard
from cobench.plugins import Registry


def render_outputs(lb: Leaderboard, registry: Registry | None = None) -> tuple[Board, dict[Path, str | bytes]]:
    """(board, path -> content) for the .md/.csv/.json tables, the .html page and the plots.

    Raises before producing anything if a result is malformed or breaks the protocol.
    """
    board = build_board(lb, registry)
    outputs: dict[Path, str | bytes] = dict(render_tables(board))
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
