"""What a boundary search found: one flat row per (plane, beta), a rich table, and the cost of
the search next to the dense grid at the same resolution."""

from __future__ import annotations

from typing import TypedDict

from rich.table import Table

from cobench.api import NO_INJECTION
from cobench.boundary.driver import PlaneSearch
from cobench.boundary.search import lattice_size


def dense_cells(run: PlaneSearch) -> int:
    """Cells of the dense grid over the search's eps (x beta) range at its lattice steps."""
    s = run.search
    eps = sorted({e for e, _ in s.outcomes})
    betas = sorted({b for _, b in s.outcomes})
    if not eps:
        return 0
    n_beta = lattice_size(betas[0], betas[-1], s.beta_step) if len(run.plane.betas) > 1 else len(run.plane.betas)
    return lattice_size(eps[0], eps[-1], s.eps_step) * n_beta * run.seeds


class ThresholdRow(TypedDict):
    """One plane and beta of a search, as ``cobench boundary --json`` writes it: the threshold and
    its bracket, the CO seeds there and just below (with 95% Wilson intervals), and the search's cost."""

    dataset: str
    model: str
    method: str
    injection: str
    beta: float
    min_rate: float
    threshold_eps: float | None
    below_eps: float | None
    transitions: list[list[float]]
    threshold_co: int | None
    threshold_seeds: int | None
    threshold_ci: list[float] | None
    below_co: int | None
    below_seeds: int | None
    below_ci: list[float] | None
    points: int
    coarse_points: int
    cells_trained: int
    cells_reused: int
    cells_searched: int
    dense_cells: int


def rows(runs: list[PlaneSearch]) -> list[ThresholdRow]:
    """One JSON-ready row per plane and beta: threshold, bracket, CO rates with 95% Wilson intervals."""
    out = []
    for run in runs:
        p = run.plane
        for t in run.search.thresholds():
            at, below = t.outcome, t.below_outcome
            out.append(
                ThresholdRow(
                    dataset=p.dataset,
                    model=p.model,
                    method=p.method,
                    injection=p.injection,
                    beta=t.beta,
                    min_rate=run.search.min_rate,
                    threshold_eps=t.eps,
                    below_eps=t.below,
                    transitions=[list(tr) for tr in t.transitions],
                    threshold_co=None if at is None else at.k,
                    threshold_seeds=None if at is None else at.n,
                    threshold_ci=None if at is None else list(at.interval),
                    below_co=None if below is None else below.k,
                    below_seeds=None if below is None else below.n,
                    below_ci=None if below is None else list(below.interval),
                    points=len(run.search.outcomes),
                    coarse_points=run.search.coarse_points,
                    cells_trained=run.cells_trained,
                    cells_reused=run.cells_reused,
                    cells_searched=len(run.search.outcomes) * run.seeds,
                    dense_cells=dense_cells(run),
                )
            )
    return out


def _fmt_rate(co: int | None, seeds: int | None, ci: list[float] | None) -> str:
    if seeds is None or ci is None:
        return "-"
    lo, hi = ci
    return f"{co}/{seeds} [{100 * lo:.0f}-{100 * hi:.0f}%]"


def threshold_text(row: ThresholdRow) -> str:
    if row["threshold_eps"] is None:
        return f"none up to {row['below_eps']:g}"
    if row["below_eps"] is None:
        return f"<= {row['threshold_eps']:g}"
    return f"{row['threshold_eps']:g} (in ({row['below_eps']:g}, {row['threshold_eps']:g}])"


def table(out_rows: list[ThresholdRow]) -> Table:
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
            _fmt_rate(r["threshold_co"], r["threshold_seeds"], r["threshold_ci"]),
            _fmt_rate(r["below_co"], r["below_seeds"], r["below_ci"]),
            edges,
            f"{r['cells_searched']} / {r['dense_cells']}",
        )
    return t
