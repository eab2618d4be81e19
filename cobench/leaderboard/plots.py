"""Leaderboard figures (matplotlib, Agg canvas, no pyplot state): the eps sweep, the eps x beta
heatmaps per method (the layout of Ortiz-Jimenez, de Jorge et al., TMLR 2023, Fig. 2) and
training curves that show the moment of catastrophic overfitting.

PNG bytes are returned, not written, so the HTML page can embed them and ``check`` can
re-render in memory. Plots are not compared byte for byte (they depend on the matplotlib
version); their presence is.
"""
from __future__ import annotations

import io
import math
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..api import NO_INJECTION
from .board import METRIC_LABELS, Board, Setting

DPI = 100


def robust_metric(board: Board) -> str:
    """The robust accuracy the figures show: the ranking metric when it is an accuracy, else PGD."""
    if board.rank_metric in ("autoattack_acc", "pgd_acc"):
        return board.rank_metric
    return "pgd_acc"


def heatmap_injections(board: Board) -> list[str]:
    injected = sorted({s.injection for s in board.settings if s.injection != NO_INJECTION})
    return injected or ([NO_INJECTION] if board.rows else [])


def planned_plots(board: Board) -> list[tuple[str, str]]:
    """(file name, title) of every figure ``render_plots`` makes for ``board``, in order."""
    if not board.rows:
        return []
    label = METRIC_LABELS[robust_metric(board)]
    out = [("eps-sweep.png", f"{label} accuracy vs eps")]
    for inj in heatmap_injections(board):
        what = "no injection" if inj == NO_INJECTION else f"injection {inj}"
        out.append((f"heatmap-{inj}.png", f"{label} accuracy over eps x beta per method ({what})"))
    for s in board.settings:
        out.append((f"curves-{s.slug}.png", f"Training curves, {s.title.lower()}"))
    return out


def method_colors(board: Board) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(board.method_names)}


def png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def eps_sweep(board: Board) -> bytes:
    metric = robust_metric(board)
    settings = board.settings
    colors = method_colors(board)
    fig = Figure(figsize=(5.2 * len(settings), 3.8), layout="constrained")
    axes = fig.subplots(1, len(settings), squeeze=False)[0]
    for ax, s in zip(axes, settings):
        rows = board.rows_for(s)
        for name in board.method_names:
            pts = sorted((r["eps"], r[f"{metric}_mean"], r[f"{metric}_std"] or 0.0, r.get("co_rate") or 0.0)
                         for r in rows if r["method"] == name and r.get(f"{metric}_mean") is not None)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.errorbar(xs, [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts], color=colors[name],
                        marker="o", capsize=3, label=name)
            co = [p for p in pts if p[3] > 0]
            if co:
                ax.scatter([p[0] for p in co], [100 * p[1] for p in co], s=160, facecolors="none",
                           edgecolors="crimson", linewidths=1.5, zorder=5)
        ax.set_xticks(board.eps, [f"{e:g}/255" for e in board.eps])
        ax.set_xlabel("eps")
        ax.set_ylabel(f"{METRIC_LABELS[metric]} accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(s.title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="red ring: CO in some seed", title_fontsize=7)
    fig.suptitle(f"{board.lb.title}: {METRIC_LABELS[metric]} accuracy vs eps", fontsize=11)
    return png(fig)


def heatmap(board: Board, injection: str) -> bytes:
    """Per method: robust accuracy over eps (rows) x beta (columns); beta 0 is the uninjected setting."""
    metric = robust_metric(board)
    rows = [r for r in board.rows if r["injection"] in (NO_INJECTION, injection)]
    betas = sorted({r["beta"] if r["injection"] != NO_INJECTION else 0.0 for r in rows})
    eps = sorted({r["eps"] for r in rows})
    methods = board.method_names
    ncols = min(3, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig = Figure(figsize=(1.6 + 1.4 * max(2, len(betas)) * ncols, 1.2 + 1.1 * max(2, len(eps)) * nrows),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= len(methods):
            ax.set_visible(False)
            continue
        name = methods[i]
        grid = [[math.nan] * len(betas) for _ in eps]
        notes = [[""] * len(betas) for _ in eps]
        for r in rows:
            if r["method"] != name or r.get(f"{metric}_mean") is None:
                continue
            b = 0.0 if r["injection"] == NO_INJECTION else r["beta"]
            y, x = eps.index(r["eps"]), betas.index(b)
            grid[y][x] = 100 * r[f"{metric}_mean"]
            co = r.get("co_rate")
            notes[y][x] = f"{grid[y][x]:.0f}" + (f"\nCO {100 * co:.0f}%" if co else "")
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, origin="lower", aspect="auto")
        for y in range(len(eps)):
            for x in range(len(betas)):
                if notes[y][x]:
                    ax.text(x, y, notes[y][x], ha="center", va="center", fontsize=8,
                            color="white" if grid[y][x] < 60 else "black")
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_yticks(range(len(eps)), [f"{e:g}" for e in eps])
        ax.set_xlabel("beta (/255)")
        if i % ncols == 0:
            ax.set_ylabel("eps (/255)")
        ax.set_title(name, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, label=f"{METRIC_LABELS[metric]} accuracy (%)", shrink=0.8)
    what = "no injection" if injection == NO_INJECTION else f"injection {injection}"
    fig.suptitle(f"{METRIC_LABELS[metric]} accuracy over eps x beta ({what})", fontsize=11)
    return png(fig)


def curves(board: Board, setting: Setting) -> bytes:
    """Per-epoch probe accuracies (PGD solid, FGSM dashed) per seed; dotted lines mark CO epochs."""
    results = [r for _, r in board.coll.ok
               if r["config"]["injection"]["name"] == setting.injection
               and (setting.injection == NO_INJECTION or r["config"]["beta"] == setting.beta)]
    eps = sorted({r["config"]["eps"] for r in results})
    methods = board.method_names
    colors = method_colors(board)
    fig = Figure(figsize=(3.4 * max(2, len(methods)), 2.6 * len(eps)), layout="constrained")
    axes = fig.subplots(len(eps), len(methods), squeeze=False, sharey=True)
    for yi, e in enumerate(eps):
        for xi, name in enumerate(methods):
            ax = axes[yi][xi]
            runs = sorted((r for r in results if r["config"]["eps"] == e and r["config"]["method"]["name"] == name),
                          key=lambda r: r["seed"])
            for r in runs:
                c = r.get("curves") or {}
                epochs = c.get("epoch") or list(range(1, 1 + len(c.get("probe_pgd_acc") or [])))
                for key, style in (("probe_pgd_acc", "-"), ("probe_fgsm_acc", "--")):
                    values = c.get(key)
                    if values:
                        ax.plot(epochs[: len(values)], [None if v is None else 100 * v for v in values],
                                style, color=colors[name], alpha=0.85, linewidth=1.2)
                co_epoch = (r.get("metrics") or {}).get("co_epoch")
                if co_epoch is not None:
                    ax.axvline(co_epoch, color="crimson", linestyle=":", linewidth=1.2)
            ax.set_ylim(0, 100)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if yi == 0:
                ax.set_title(name, fontsize=10)
            if xi == 0:
                ax.set_ylabel(f"eps {e:g}/255\nprobe acc (%)")
            if yi == len(eps) - 1:
                ax.set_xlabel("epoch")
    fig.suptitle(f"{setting.title}: probe PGD (solid) and FGSM (dashed) accuracy per seed; "
                 "red dotted: CO epoch", fontsize=10)
    return png(fig)


def render_plots(board: Board) -> dict[str, bytes]:
    """File name -> PNG bytes, for every figure of :func:`planned_plots`."""
    out: dict[str, bytes] = {}
    for name, _ in planned_plots(board):
        if name == "eps-sweep.png":
            out[name] = eps_sweep(board)
        elif name.startswith("heatmap-"):
            out[name] = heatmap(board, name[len("heatmap-"):-len(".png")])
        else:
            slug = name[len("curves-"):-len(".png")]
            out[name] = curves(board, next(s for s in board.settings if s.slug == slug))
    return out
