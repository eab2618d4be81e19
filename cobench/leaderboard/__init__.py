"""Leaderboards: a TOML definition (grid + protocol), stored results validated against a JSON
schema, and deterministic Markdown/CSV/JSON tables, plots and an offline HTML page.

The modules, in the order a board's data flows through them:

* :mod:`.spec`: the definition (``leaderboards/<name>.toml``), its published figures included;
* :mod:`.collect`: the stored results, read and checked against the board's protocol;
* :mod:`.trust`: what each row can be trusted for; verification records; re-evaluating weights;
* :mod:`.board`: the typed board the renderers read, which :mod:`.rank` builds and ranks;
* :mod:`.render`: every format: Markdown, HTML, CSV/JSON, plots, the site's index, prose tables;
* :mod:`.outputs` (render, write, check), :mod:`.site`, :mod:`.submission` (``validate``) and
  :mod:`.estimate` (``build --dry-run``), which :mod:`.commands` puts on the command line:
  ``cobench leaderboard build|render|check|validate|verify|site|table|readme``.
"""

from __future__ import annotations

from cobench.leaderboard.spec import Leaderboard, load_leaderboard

__all__ = ["Leaderboard", "load_leaderboard"]
