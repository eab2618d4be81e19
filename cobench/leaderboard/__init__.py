"""Leaderboards: a TOML definition (grid + protocol), stored results validated against a JSON
schema, and deterministic Markdown/CSV/JSON tables, plots and an offline HTML page.

``cobench leaderboard build|render|check|validate`` (see :mod:`.commands`).
"""

from __future__ import annotations

from cobench.leaderboard.spec import Leaderboard, load_leaderboard

__all__ = ["Leaderboard", "load_leaderboard"]
