"""The phase diagram of a boundary search: CO rate over eps x beta per method and injection,
every evaluated point marked, the threshold (mid-bracket of each beta's smallest CO eps) drawn
as a line and every other CO/no-CO edge (band edges) as a tick."""

from __future__ import annotations

import io
import math
from collections import defaultdict

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cobench.api import NO_INJECTION
from cobench.boundary.driver import PlaneSearch
from cobench.boundary.search import Outcome, Point, Threshold


def _edges(values: list[float]) -> list[float]:
    """Cell edges half-way between sorted values (a lone value gets a unit-wide cell)."""
    if len(values) == 1:
        return [values[0] - 0.5, values[0] + 0.5]
    mids = [(a + b) / 2 for a, b in zip(values, values[1:])]
    return [values[0] - (mids[0] - values[0])] + mids + [values[-1] + (values[-1] - mids[-1])]


def _nearest_rate(outcomes: dict[Point, Outcome], eps: float, beta: float, span: tuple[float, float]) -> float:
    """The CO rate of the evaluated point nearest to (eps, beta), axes scaled by their ranges."""
    se, sb = span
    return min(outcomes.items(), key=lambda kv: ((kv[0][0] - eps) / se) ** 2 + ((kv[0][1] - beta) / sb) ** 2)[1].rate


def phase_diagram(runs: list[PlaneSearch], dpi: int = 100) -> bytes:
    """PNG bytes: one panel per (dataset, model, method, injection); beta on x, eps on y."""
    panels: dict[tuple[str, str, str, str], tuple[dict[Point, Outcome], list[Threshold]]] = defaultdict(
        lambda: ({}, [])
    )
    for run in runs:
        p = run.plane
        outcomes, thresholds = panels[(p.dataset, p.model, p.method, p.injection)]
        outcomes.update(run.search.outcomes)
        thresholds.extend(run.search.thresholds())
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols + 1.2, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    mesh = None
    for ax, ((dataset, model, method, injection), (outcomes, thresholds)) in zip(axes.flat, sorted(panels.items())):
        eps = sorted({e for e, _ in outcomes})
        betas = sorted({b for _, b in outcomes})
        span = (max(eps) - min(eps) or 1.0, max(betas) - min(betas) or 1.0)
        grid = [[_nearest_rate(outcomes, e, b, span) for b in betas] for e in eps]
        mesh = ax.pcolormesh(_edges(betas), _edges(eps), grid, cmap="Reds", vmin=0, vmax=1)
        ax.scatter(
            [b for _, b in outcomes], [e for e, _ in outcomes], s=9, c="black", marker=".", label="evaluated point"
        )
        edges = [(t.beta, (a + b) / 2) for t in thresholds for a, b in t.transitions]
        if edges:
            ax.scatter(
                [b for b, _ in edges],
                [e for _, e in edges],
                s=22,
                marker="_",
                color="royalblue",
                linewidths=1.5,
                label="CO/no-CO edge",
            )
        line = sorted(
            (t.beta, (t.eps + t.below) / 2 if t.below is not None else t.eps) for t in thresholds if t.eps is not None
        )
        if line:
            ax.plot(
                [b for b, _ in line],
                [e for _, e in line],
                "-o",
                color="royalblue",
                markersize=4,
                linewidth=2,
                label="CO threshold (mid-bracket)",
            )
        ax.set_xlabel("beta (/255)" if injection != NO_INJECTION else "beta (/255; no injection)")
        ax.set_ylabel("eps (/255)")
        ax.set_title(f"{method}, {injection}\n{dataset}/{model}", fontsize=10)
        if len(betas) == 1:
            ax.set_xticks(betas)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, label="CO rate over seeds", shrink=0.8)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Catastrophic-overfitting phase diagram (shade: CO rate of the nearest evaluated point)", fontsize=11)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()
