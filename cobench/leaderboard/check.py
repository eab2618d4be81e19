"""Staleness: re-render a leaderboard in memory and compare with the committed files.

Tables (.md, .csv, .json) must match byte for byte; the HTML page must match once the
embedded plot data is blanked out (PNG bytes depend on the matplotlib version); every plot
must exist.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cobench.leaderboard.html import normalise
from cobench.leaderboard.outputs import render_outputs
from cobench.leaderboard.spec import Leaderboard
from cobench.plugins import Registry


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
