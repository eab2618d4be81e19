"""The rendered content of a leaderboard, independent of the output format: ranked rows per
setting (injection, beta) and eps, the protocol, coverage and the methods' parameters.

Rows come from :func:`cobench.store.tables.aggregate` (mean/std over seeds, CO rate, median CO
epoch, training cost relative to FGSM); this module only orders and ranks them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cobench.api import NO_INJECTION
from cobench.leaderboard.collect import Collection, ProtocolError, collect
from cobench.leaderboard.spec import DEFAULT_RANK_BY, KEYS, TABLE_METRICS, Leaderboard, Published
from cobench.leaderboard.trust.rows import annotate, noise_aware_ranks, plugin_label
from cobench.plugins import Registry, get_plugin_manager
from cobench.store.tables import METRICS, aggregate

METRIC_LABELS = {
    "clean_acc": "clean",
    "fgsm_acc": "FGSM",
    "pgd_acc": "PGD",
    "autoattack_acc": "AutoAttack",
    "pgd50_10_acc": "PGD-50-10",
    "carrier_acc": "carrier",
    "no_injection_acc": "no-injection",
}


@dataclass(frozen=True)
class Setting:
    """One injection setting of the leaderboard; ``none`` has beta 0."""

    injection: str
    beta: float

    @property
    def title(self) -> str:
        if self.injection == NO_INJECTION:
            return "No injection"
        return f"Injection {self.injection}, beta = {self.beta:g}/255"

    @property
    def slug(self) -> str:
        return NO_INJECTION if self.injection == NO_INJECTION else f"{self.injection}-beta{self.beta:g}"

    def sort_key(self) -> tuple:
        return (self.injection != NO_INJECTION, self.injection, self.beta)


@dataclass
class Board:
    lb: Leaderboard
    coll: Collection
    rows: list[dict[str, Any]]
    rank_metric: str | None
    methods: list[dict[str, Any]] = field(default_factory=list)
    #: the board's published figures with cobench's number and the difference (:func:`figure_rows`)
    published: list[dict[str, Any]] = field(default_factory=list)

    @property
    def settings(self) -> list[Setting]:
        return sorted({Setting(r["injection"], r["beta"]) for r in self.rows}, key=Setting.sort_key)

    @property
    def table_metrics(self) -> tuple[str, ...]:
        """The accuracy columns: the built-in ones that some row reports (a board without the 20-step
        ``pgd`` evaluator shows no empty PGD column), then the board's ``metrics``."""
        reported = tuple(m for m in TABLE_METRICS if any(r.get(f"{m}_mean") is not None for r in self.rows))
        return reported + tuple(m for m in self.lb.metrics if m not in reported)

    @property
    def method_names(self) -> list[str]:
        return [m["name"] for m in self.methods]

    @property
    def eps(self) -> list[float]:
        return sorted({r["eps"] for r in self.rows})

    def rows_for(self, setting: Setting) -> list[dict[str, Any]]:
        return [r for r in self.rows if Setting(r["injection"], r["beta"]) == setting]

    def protocol(self) -> dict[str, Any]:
        cell = self.coll.cells[0]
        protocol = {
            "dataset": cell.dataset,
            "model": cell.model,
            "training": cell.training,
            "evaluators": cell.evaluators,
            "eps": self.lb.grid.eps,
            "settings": [
                {"injection": c.injection, "beta": c.beta}
                for c in _unique(self.coll.cells, lambda c: (json.dumps(c.injection, sort_keys=True), c.beta))
            ],
            "seeds": self.lb.grid.seeds,
        }
        per_eps = {f"{c.eps:g}": c.evaluators for c in _unique(self.coll.cells, lambda c: c.eps)}
        if len({json.dumps(e, sort_keys=True) for e in per_eps.values()}) > 1:  # a step rule such as eps/4
            protocol["evaluators_by_eps"] = per_eps
        return protocol

    def provenance(self) -> dict[str, list[str]]:
        """What the rows were built with: cobench builds, dataset fingerprints, machines."""
        out: dict[str, set[str]] = {"cobench": set(), "data": set(), "machines": set()}
        for _, r in self.coll.ok:
            prov = r.get("provenance") or {}
            if prov.get("cobench"):
                c = prov["cobench"]
                out["cobench"].add(f"{c.get('version')}" + (f" @{c['commit'][:10]}" if c.get("commit") else ""))
            if (prov.get("data") or {}).get("loaded"):
                out["data"].add(prov["data"]["loaded"])
            if prov.get("machine"):
                m = prov["machine"]
                out["machines"].add(
                    f"{m.get('device_name')} (torch {m.get('torch')}"
                    + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
                    + f", {m.get('num_threads')} threads)"
                )
        return {k: sorted(v) for k, v in out.items()}


def _unique(items: list[Any], key) -> list[Any]:
    seen, out = set(), []
    for it in items:
        k = key(it)
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


def choose_rank_metric(agg: list[dict[str, Any]], rank_by: tuple[str, ...]) -> str | None:
    """The first ``rank_by`` metric every row reports, else the first any row reports."""
    for require_all in (True, False):
        for m in rank_by:
            have = [r.get(f"{m}_mean") is not None for r in agg]
            if have and (all(have) if require_all else any(have)):
                return m
    return None


def build_board(lb: Leaderboard, registry: Registry | None = None, extra: list[Path] | tuple[Path, ...] = ()) -> Board:
    """Collect and validate ``lb``'s results (and ``extra`` files, as if they were among them) and
    turn them into ranked rows."""
    registry = registry or get_plugin_manager().registry
    coll = collect(lb, registry, extra)
    check_metrics(lb, coll)
    metrics = tuple(dict.fromkeys(METRICS + lb.rank_by + lb.metrics))
    agg = aggregate(coll.rows(), metrics)
    rank_metric = choose_rank_metric(agg, lb.rank_by)

    def score(r: dict[str, Any]) -> float:
        v = r.get(f"{rank_metric}_mean") if rank_metric else None
        return -1.0 if v is None else v

    annotate(agg, coll)
    if lb.require_verification:
        unverified = [r for r in agg if r["source"] == "submitted" and r["verification"] != "verified"]
        if unverified:
            raise ProtocolError(
                f"leaderboard {lb.name!r} requires verified submissions; not verified: "
                + ", ".join(f"{r['method']} at eps {r['eps']:g}" for r in unverified)
                + " (save the weights with `cobench run --save-models` and run `cobench leaderboard verify`)"
            )
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in agg:
        groups.setdefault((Setting(r["injection"], r["beta"]).sort_key(), r["eps"]), []).append(r)
    rows: list[dict[str, Any]] = []
    for key in sorted(groups):
        ranked = sorted(groups[key], key=lambda r: (r["flagged"], -score(r), r["method"]))
        noise_aware_ranks(ranked, rank_metric)
        rows += ranked
    published = attach(lb.published, rows, TABLE_METRICS + lb.metrics, METRIC_LABELS) if lb.published else []
    return Board(
        lb=lb, coll=coll, rows=rows, rank_metric=rank_metric, methods=method_info(coll, registry), published=published
    )


def check_metrics(lb: Leaderboard, coll: Collection) -> None:
    """Every ``[leaderboard] metrics`` name, and every ``rank_by`` name beyond the defaults
    (``autoattack_acc``, ``pgd_acc``: a board may report neither, then its rows are not ranked),
    must be reported by one of the board's results."""
    reported = {k for _, r in coll.ok for k in (r.get("metrics") or {})}
    accuracies = ", ".join(sorted(k for k in reported if k.endswith("_acc"))) or "(no accuracy)"
    for key, names in (("metrics", lb.metrics), ("rank_by", [m for m in lb.rank_by if m not in DEFAULT_RANK_BY])):
        unknown = [m for m in names if m not in reported]
        if coll.ok and unknown:
            raise ProtocolError(
                f"{lb.path}: [leaderboard] {key} {', '.join(unknown)} reported by none of its results; "
                f"they report: {accuracies}"
            )


def method_info(coll: Collection, registry: Registry) -> list[dict[str, Any]]:
    """Per method: owning plugin, parameters per eps, and (for the grid's methods) its paper."""
    grid_methods = {c.method["name"] for c in coll.cells}
    info: dict[str, dict[str, Any]] = {}
    for _, r in coll.ok:
        name = r["config"]["method"]["name"]
        m = info.setdefault(
            name,
            {
                "name": name,
                "plugin": None,
                "distributions": [],
                "params": {},
                "paper": None,
                "submitted": name not in grid_methods,
            },
        )
        m["plugin"] = m["plugin"] or (r.get("plugins") or {}).get("methods")
        m["distributions"] = sorted(set(m["distributions"]) | {plugin_label(r)})
        m["params"][f"{r['config']['eps']:g}"] = r["config"]["method"]["params"]
        if name in grid_methods:
            m["paper"] = registry.get("methods", name).paper or None
    out = []
    for name in sorted(info):
        m = info[name]
        m["params"] = dict(sorted(m["params"].items(), key=lambda kv: float(kv[0])))
        out.append(m)
    return out


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
