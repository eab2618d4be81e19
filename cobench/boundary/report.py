"""What a boundary search found: one flat row per (plane, beta), a rich table, and the cost of
the search next to the dense grid at the same resolution."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from cobench.api import NO_INJECTION
from cobench.boundary.driver import PlaneSearch
from cobench.boundary.search import Outcome, lattice_size


def dense_cells(run: PlaneSearch) -> int:
    """Cells of the dense grid over the search's eps (x beta) range at its lattice steps."""
    s = run.search
    eps = sorted({e for e, _ in s.outcomes})
    betas = sorted({b for _, b in s.outcomes})
    if not eps:
        return 0
    n_beta = lattice_size(betas[0], betas[-1], s.beta_step) if len(run.plane.betas) > 1 else len(run.plane.betas)
    return lattice_size(eps[0], eps[-1], s.eps_step) * n_beta * run.seeds


def rows(runs: list[PlaneSearch]) -> list[dict[str, Any]]:
    """One JSON-ready row per plane and beta: threshold, bracket, CO rates with 95% Wilson intervals."""
    out = []
    for run in runs:
        p = run.plane
        for t in run.search.thresholds():
            row: dict[str, Any] = {
                "dataset": p.dataset,
                "model": p.model,
                "method": p.method,
                "injection": p.injection,
                "beta": t.beta,
                "min_rate": run.search.min_rate,
                "threshold_eps": t.eps,
                "below_eps": t.below,
                "transitions": [list(tr) for tr in t.transitions],
            }
            row.update(_rate("threshold", t.outcome))
            row.update(_rate("below", t.below_outcome))
            row.update(
                {
                    "points": len(run.search.outcomes),
                    "coarse_points": run.search.coarse_points,
                    "cells_trained": run.cells_trained,
                    "cells_reused": run.cells_reused,
                    "cells_searched": len(run.search.outcomes) * run.seeds,
                    "dense_cells": dense_cells(run),
                }
            )
            out.append(row)
    return out


def _rate(prefix: str, outcome: Outcome | None) -> dict[str, Any]:
    if outcome is None:
        return {f"{prefix}_co": None, f"{prefix}_seeds": None, f"{prefix}_ci": None}
    return {f"{prefix}_co": outcome.k, f"{prefix}_seeds": outcome.n, f"{prefix}_ci": list(outcome.interval)}


def _fmt_rate(row: dict[str, Any], prefix: str) -> str:
    if row[f"{prefix}_seeds"] is None:
        return "-"
    lo, hi = row[f"{prefix}_ci"]
    return f"{row[f'{prefix}_co']}/{row[f'{prefix}_seeds']} [{100 * lo:.0f}-{100 * hi:.0f}%]"


def threshold_text(row: dict[str, Any]) -> str:
    if row["threshold_eps"] is None:
        return f"none up to {row['below_eps']:g}"
    if row["below_eps"] is None:
        return f"<= {row['threshold_eps']:g}"
    return f"{row['threshold_eps']:g} (in ({row['below_eps']:g}, {row['threshold_eps']:g}])"


def table(out_rows: list[dict[str, Any]]) -> Table:
    t = Table(
        title="Smallest eps (/255) with CO in at least "
        + ", ".join(sorted({f"{100 * r['min_rate']:.0f}%" for r in out_rows}))
        + " of seeds",
        title_justify="left",
    )
    for col in (
        "setting",
        "method",
        "beta",
        "CO threshold eps",
        "CO seeds there [95% CI]",
        "CO seeds below",
        "CO/no-CO edges",
        "cells searched / dense",
    ):
        t.add_column(col, justify="left" if col in ("setting", "method", "CO/no-CO edges") else "right")
    for r in out_rows:
        edges = ", ".join(f"{a:g}|{b:g}" for a, b in r["transitions"]) or "-"
        t.add_row(
            f"{r['dataset']}/{r['model']} {r['injection']}",
            r["method"],
            "-" if r["injection"] == NO_INJECTION else f"{r['beta']:g}",
            threshold_text(r),
            _fmt_rate(r, "threshold"),
            _fmt_rate(r, "below"),
            edges,
            f"{r['cells_searched']} / {r['dense_cells']}",
        )
    return t
