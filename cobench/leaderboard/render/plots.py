"""Leaderboard figures (matplotlib, Agg canvas, no pyplot state): the eps sweep, the eps x beta
heatmaps per method (the layout of Ortiz-Jimenez, de Jorge et al., TMLR 2023, Fig. 2) and
training curves that show the moment of catastrophic overfitting; which figures a board has, and
their captions, :func:`.text.planned_plots` says (the pages show them too).

PNG bytes are returned, not written, so the HTML page can embed them and ``check`` can
re-render in memory. Plots are not compared byte for byte (they depend on the matplotlib
version); their presence is.
"""

from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cobench.api import NO_INJECTION
from cobench.leaderboard.board import Board, Setting
from cobench.leaderboard.collect import StoredResult
from cobench.leaderboard.render.text import METRIC_LABELS, planned_plots, robust_metric

DPI = 100


def method_colors(board: Board) -> dict[str, tuple[float, float, float, float]]:
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
            pts = sorted(
                (r.eps, mean, r.std(metric) or 0.0, r.co_rate or 0.0)
                for r in rows
                if r.method == name and (mean := r.mean(metric)) is not None
            )
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ax.errorbar(
                xs,
                [100 * p[1] for p in pts],
                yerr=[100 * p[2] for p in pts],
                color=colors[name],
                marker="o",
                capsize=3,
                label=name,
            )
            co = [p for p in pts if p[3] > 0]
            if co:
                ax.scatter(
                    [p[0] for p in co],
                    [100 * p[1] for p in co],
                    s=160,
                    facecolors="none",
                    edgecolors="crimson",
                    linewidths=1.5,
                    zorder=5,
                )
        ax.set_xticks(board.eps, [f"{e:g}/255" for e in board.eps])
        ax.set_xlabel("eps")
        ax.set_ylabel(f"{METRIC_LABELS[metric]} accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(s.title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="red ring: CO in some seed", title_fontsize=7)
    fig.suptitle(f"{board.lb.title}: {METRIC_LABELS[metric]} accuracy vs eps", fontsize=11)
    return png(fig)


CO_LEVEL = 0.5  # a cell is drawn inside the CO region when at least half its seeds collapsed


def co_boundary_segments(co: list[list[float]]) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Edges between neighbouring cells (rows x columns, image coordinates) on opposite sides of
    CO_LEVEL; cells without a value (NaN) draw no edge."""

    def side(v: float) -> bool | None:
        return None if v != v else v >= CO_LEVEL

    segs = []
    for y, row in enumerate(co):
        for x, v in enumerate(row):
            here = side(v)
            if here is None:
                continue
            if x + 1 < len(row) and side(row[x + 1]) not in (None, here):
                segs.append(((x + 0.5, y - 0.5), (x + 0.5, y + 0.5)))
            if y + 1 < len(co) and side(co[y + 1][x]) not in (None, here):
                segs.append(((x - 0.5, y + 0.5), (x + 0.5, y + 0.5)))
    return segs


def heatmap(board: Board, injection: str, value: str = "robust") -> bytes:
    """Per method: robust accuracy (``value="robust"``) or CO rate (``value="co"``) over eps (rows)
    x beta (columns), beta 0 being the uninjected setting; the CO boundary is drawn in both."""
    metric = robust_metric(board)
    rows = [r for r in board.rows if r.injection in (NO_INJECTION, injection)]
    betas = sorted({r.beta if r.injection != NO_INJECTION else 0.0 for r in rows})
    eps = sorted({r.eps for r in rows})
    methods = board.method_names
    ncols = min(3, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig = Figure(
        figsize=(1.6 + 1.4 * max(2, len(betas)) * ncols, 1.2 + 1.1 * max(2, len(eps)) * nrows), layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= len(methods):
            ax.set_visible(False)
            continue
        name = methods[i]
        grid = [[math.nan] * len(betas) for _ in eps]
        co = [[math.nan] * len(betas) for _ in eps]
        notes = [[""] * len(betas) for _ in eps]
        for r in rows:
            if r.method != name:
                continue
            b = 0.0 if r.injection == NO_INJECTION else r.beta
            y, x = eps.index(r.eps), betas.index(b)
            rate = r.co_rate
            co[y][x] = math.nan if rate is None else rate
            acc = r.mean(metric)
            if value == "co":
                grid[y][x] = co[y][x]
                notes[y][x] = "" if rate is None else f"{100 * rate:.0f}%\n{r.seeds} seeds"
            elif acc is not None:
                grid[y][x] = 100 * acc
                notes[y][x] = f"{grid[y][x]:.0f}" + (f"\nCO {100 * rate:.0f}%" if rate else "")
        if value == "co":
            image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, origin="lower", aspect="auto")
        else:
            image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, origin="lower", aspect="auto")
        for y in range(len(eps)):
            for x in range(len(betas)):
                if notes[y][x]:
                    dark = grid[y][x] > 0.6 if value == "co" else grid[y][x] < 60
                    ax.text(x, y, notes[y][x], ha="center", va="center", fontsize=8, color="white" if dark else "black")
        for (x0, y0), (x1, y1) in co_boundary_segments(co):
            ax.plot(
                [x0, x1],
                [y0, y1],
                color="deepskyblue" if value == "co" else "crimson",
                linewidth=3,
                solid_capstyle="round",
            )
        ax.set_xlim(-0.5, len(betas) - 0.5)
        ax.set_ylim(-0.5, len(eps) - 0.5)
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_yticks(range(len(eps)), [f"{e:g}" for e in eps])
        ax.set_xlabel("beta (/255)")
        if i % ncols == 0:
            ax.set_ylabel("eps (/255)")
        ax.set_title(name, fontsize=10)
    if image is not None:
        label = "CO rate over seeds" if value == "co" else f"{METRIC_LABELS[metric]} accuracy (%)"
        fig.colorbar(image, ax=axes, label=label, shrink=0.8)
    what = "no injection" if injection == NO_INJECTION else f"injection {injection}"
    shown = "CO rate" if value == "co" else f"{METRIC_LABELS[metric]} accuracy"
    fig.suptitle(
        f"{shown} over eps x beta ({what}); thick line: CO boundary (CO in >= {CO_LEVEL:.0%} of seeds)", fontsize=11
    )
    return png(fig)


#: per-epoch panels of the curves figure: (title, [(curve key, line style, legend text)], y scale, percent)
CURVE_PANELS: list[tuple[str, list[tuple[str, str, str]], str, bool]] = [
    ("robust probe accuracy (%)", [("probe_pgd_acc", "-", "PGD"), ("probe_fgsm_acc", "--", "FGSM")], "linear", True),
    (
        "clean accuracy (%)",
        [("probe_clean_acc", "-", "probe, clean"), ("train_acc", "--", "train batches")],
        "linear",
        True,
    ),
    ("training loss", [("train_loss", "-", "train loss")], "linear", False),
    ("gradient alignment", [("probe_grad_align", "-", "grad-align")], "linear", False),
    ("local linearity error", [("probe_lle", "-", "ELLE"), ("probe_lle_llr", "--", "LLR gamma")], "log", False),
]


def curve_panels(results: list[StoredResult]) -> list[tuple[str, list[tuple[str, str, str]], str, bool]]:
    """The panels of :data:`CURVE_PANELS` for which some result recorded a curve."""
    return [
        p for p in CURVE_PANELS if any(any((r.data.get("curves") or {}).get(k) for k, _, _ in p[1]) for r in results)
    ]


def curves(board: Board, setting: Setting) -> bytes:
    """One row per (eps, method), one column per quantity (robust and clean accuracy, loss, and
    grad-align / LLE when recorded); one colour per seed; dotted verticals mark each seed's CO epoch."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    results = [
        r
        for r in board.coll.ok
        if r.injection == setting.injection and (setting.injection == NO_INJECTION or r.beta == setting.beta)
    ]
    panels = curve_panels(results)
    eps = sorted({r.eps for r in results})
    rows_ = [
        (e, name) for e in eps for name in board.method_names if any(r.eps == e and r.method == name for r in results)
    ]
    seeds = sorted({r.seed for r in results})
    seed_colors = {s: colormaps["tab10"](i % 10) for i, s in enumerate(seeds)}
    fig = Figure(figsize=(3.0 * len(panels) + 0.6, 1.9 * len(rows_) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows_), len(panels), squeeze=False, sharex=True)
    for yi, (e, name) in enumerate(rows_):
        runs = sorted((r for r in results if r.eps == e and r.method == name), key=lambda r: r.seed)
        for xi, (title, keys, scale, percent) in enumerate(panels):
            ax = axes[yi][xi]
            for r in runs:
                c = r.data.get("curves") or {}
                color = seed_colors[r.seed]
                for key, style, _ in keys:
                    values = c.get(key)
                    if not values:
                        continue
                    epochs = (c.get("epoch") or list(range(1, 1 + len(values))))[: len(values)]
                    scaled = [None if v is None else (100 * v if percent else v) for v in values]
                    ax.plot(epochs, scaled, style, color=color, linewidth=1.2, alpha=0.9)
                co_epoch = (r.data.get("metrics") or {}).get("co_epoch")
                if co_epoch is not None:
                    ax.axvline(co_epoch, color=color, linestyle=":", linewidth=1.4)
            if percent:
                ax.set_ylim(0, 100)
            elif scale == "log" and ax.has_data():
                ax.set_yscale("log")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            if yi == 0:
                ax.set_title(
                    title + "\n" + ", ".join(f"{text} {'solid' if st == '-' else 'dashed'}" for _, st, text in keys),
                    fontsize=9,
                )
            if xi == 0:
                ax.set_ylabel(f"{name}\neps {e:g}/255", fontsize=9)
            if yi == len(rows_) - 1:
                ax.set_xlabel("epoch", fontsize=9)
    handles = [Line2D([], [], color=seed_colors[s], label=f"seed {s}") for s in seeds]
    handles.append(Line2D([], [], color="grey", linestyle=":", label="CO epoch (seed's colour)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    fig.suptitle(f"{setting.title}: per-epoch curves per seed", fontsize=11)
    return png(fig)


def render_plots(board: Board) -> dict[str, bytes]:
    """File name -> PNG bytes, for every figure of :func:`.text.planned_plots`."""
    out: dict[str, bytes] = {}
    for name, _ in planned_plots(board):
        if name == "eps-sweep.png":
            out[name] = eps_sweep(board)
        elif name.startswith("heatmap-"):
            out[name] = heatmap(board, name[len("heatmap-") : -len(".png")])
        elif name.startswith("co-rate-"):
            out[name] = heatmap(board, name[len("co-rate-") : -len(".png")], value="co")
        else:
            slug = name[len("curves-") : -len(".png")]
            out[name] = curves(board, next(s for s in board.settings if s.slug == slug))
    return out
