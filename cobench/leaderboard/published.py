"""Published figures beside a board's own numbers: ``[[leaderboard.published]]`` entries.

Each entry is one number a reference published for one row of the board (method, eps, and the
injection setting), with where it was read::

    [[leaderboard.published]]
    method = "grad-align"
    eps = 8
    metric = "pgd50_10_acc"     # one of the board's accuracy columns
    value = 47.6                # in %, as published
    std = 0.5                   # optional, as published
    seeds = 5                   # optional: runs behind the figure
    checkpoint = "last"         # "last" (end of training), "best" (early-stopped) or "n/s" (not stated)
    approximate = true          # read off a plot (shown as ≈)
    source = "tml-epfl/understanding-fast-adv-training README.md l.30, img/fig1_robustnes_diff_eps_cifar10.png (Fig. 1 left)"
    differs = "lr 0.30 ... (every way the published setting differs from the board's)"
    # injection = "low-freq-pm", beta = 8   (default: no injection)

A figure enters a board only with its ``source``; where the published setting differs from the
board's (model, epochs, checkpoint, evaluation), ``differs`` must say how. The rendered tables
show it beside cobench's number of the same metric, with the difference cobench - published in
points (:func:`figure_rows`); a figure for the ``best`` checkpoint is compared with the board's
``best_<metric>`` column when the board shows one, else with ``<metric>`` and the checkpoint
difference is stated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cobench.api import NO_INJECTION
from cobench.errors import ConfigError

CHECKPOINTS = ("last", "best", "n/s")
KEYS = (
    "method",
    "eps",
    "metric",
    "value",
    "std",
    "seeds",
    "checkpoint",
    "approximate",
    "source",
    "differs",
    "injection",
    "beta",
)


@dataclass(frozen=True)
class Published:
    method: str
    eps: float
    metric: str
    value: float  # in %
    source: str
    checkpoint: str = "last"
    std: float | None = None
    seeds: int | None = None
    approximate: bool = False
    differs: str = ""
    injection: str = NO_INJECTION
    beta: float = 0.0

    def key(self) -> tuple:
        return (self.injection, self.beta if self.injection != NO_INJECTION else 0.0, self.eps, self.method)

    def value_text(self) -> str:
        text = ("≈" if self.approximate else "") + f"{self.value:g}"
        if self.std is not None:
            text += f" ± {self.std:g}"
        return text

    def record(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in KEYS}


def parse_published(
    entries: Any, where: str, metrics: tuple[str, ...], methods: list[str], eps: list[float]
) -> tuple[Published, ...]:
    """The ``[[leaderboard.published]]`` entries of a board, checked; ``metrics`` are its accuracy columns."""
    if entries is None:
        return ()
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: [leaderboard] published must be an array of tables ([[leaderboard.published]])")
    out = []
    for i, e in enumerate(entries):
        at = f"{where}: [[leaderboard.published]] #{i + 1}"
        unknown = sorted(set(e) - set(KEYS))
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}")
        for key in ("method", "eps", "metric", "value", "source"):
            if key not in e:
                raise ConfigError(f"{at}: {key} is required (a figure enters a board only with its source)")
        if e["method"] not in methods:
            raise ConfigError(f"{at}: method {e['method']!r} is not one of the board's methods ({', '.join(methods)})")
        if not _number(e["eps"]) or float(e["eps"]) not in [float(x) for x in eps]:
            raise ConfigError(
                f"{at}: eps {e['eps']!r} is not one of the board's eps ({', '.join(f'{x:g}' for x in eps)})"
            )
        if e["metric"] not in metrics:
            raise ConfigError(
                f"{at}: metric {e['metric']!r} is not one of the board's accuracy columns ({', '.join(metrics)})"
            )
        if not _number(e["value"]) or not 0 <= e["value"] <= 100:
            raise ConfigError(f"{at}: value must be a percentage in [0, 100], got {e['value']!r}")
        if "std" in e and (not _number(e["std"]) or e["std"] < 0):
            raise ConfigError(f"{at}: std must be a number >= 0 (in points), got {e['std']!r}")
        if "seeds" in e and (not isinstance(e["seeds"], int) or isinstance(e["seeds"], bool) or e["seeds"] < 1):
            raise ConfigError(f"{at}: seeds must be an integer >= 1, got {e['seeds']!r}")
        if e.get("checkpoint", "last") not in CHECKPOINTS:
            raise ConfigError(f"{at}: checkpoint must be one of {', '.join(CHECKPOINTS)}, got {e['checkpoint']!r}")
        for key in ("source", "differs", "injection"):
            if key in e and (not isinstance(e[key], str) or (key != "differs" and not e[key].strip())):
                raise ConfigError(f"{at}: {key} must be a non-empty string")
        if "approximate" in e and not isinstance(e["approximate"], bool):
            raise ConfigError(f"{at}: approximate must be true or false")
        if "beta" in e and not _number(e["beta"]):
            raise ConfigError(f"{at}: beta must be a number (/255)")
        out.append(
            Published(
                method=e["method"],
                eps=float(e["eps"]),
                metric=e["metric"],
                value=float(e["value"]),
                source=" ".join(e["source"].split()),
                checkpoint=e.get("checkpoint", "last"),
                std=None if e.get("std") is None else float(e["std"]),
                seeds=e.get("seeds"),
                approximate=e.get("approximate", False),
                differs=" ".join(e.get("differs", "").split()),
                injection=e.get("injection", NO_INJECTION),
                beta=float(e.get("beta", 0.0)),
            )
        )
    return tuple(out)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def compared_metric(fig: Published, shown: tuple[str, ...]) -> str:
    """The board column a figure is compared with: ``best_<metric>`` for a best-checkpoint figure
    when the board shows it, else the figure's own metric."""
    best = f"best_{fig.metric}"
    return best if fig.checkpoint == "best" and best in shown else fig.metric


def figure_rows(
    figures: tuple[Published, ...], rows: list[dict[str, Any]], shown: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One record per figure, numbered from 1 in board order: the figure, the board's own mean of
    the compared metric (%, None where the row has none yet) and the difference cobench - published."""
    by_key = {(r["injection"], r["beta"], r["eps"], r["method"]): r for r in rows if r.get("source") == "built here"}
    out = []
    for n, fig in enumerate(figures, 1):
        column = compared_metric(fig, shown)
        row = by_key.get(fig.key())
        mean = None if row is None else row.get(f"{column}_mean")
        ours = None if mean is None else round(100 * mean, 6)
        out.append(
            {
                "ref": n,
                **fig.record(),
                "compared_with": column,
                "cobench": ours,
                "difference": None if ours is None else round(ours - fig.value, 6),
            }
        )
    return out


def row_figures(records: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """The figure records that belong to a board row."""
    if row.get("source") != "built here":
        return []
    key = (row["injection"], row["beta"], row["eps"], row["method"])
    return [
        f
        for f in records
        if (f["injection"], f["beta"] if f["injection"] != NO_INJECTION else 0.0, f["eps"], f["method"]) == key
    ]


def attach(
    figures: tuple[Published, ...], rows: list[dict[str, Any]], shown: tuple[str, ...], labels: dict[str, str]
) -> list[dict[str, Any]]:
    """Number the figures, and give each row ``published`` (its figures as text, ``-`` where none),
    ``published_diff`` (cobench - published per figure, in points) and ``published_figures``
    (the records); returns the records of every figure (:func:`figure_rows`)."""
    records = figure_rows(figures, rows, shown)
    for row in rows:
        mine = row_figures(records, row)
        row["published_figures"] = mine
        row["published"] = (
            "; ".join(
                f"[{f['ref']}] {labels.get(f['metric'], f['metric'])} {Published(**{k: f[k] for k in KEYS}).value_text()}"
                for f in mine
            )
            or "-"
        )
        row["published_diff"] = (
            "; ".join(f"[{f['ref']}] " + ("-" if f["difference"] is None else f"{f['difference']:+.1f}") for f in mine)
            or "-"
        )
    return records
