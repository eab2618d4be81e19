"""Building a board: collect its results, judge them, aggregate them over seeds and rank the rows.

Rows come from :func:`cobench.store.tables.aggregate` (mean/std over seeds, CO rate, median CO
epoch, training cost relative to FGSM); :func:`cobench.leaderboard.trust.rows.assess` says what
each can be trusted for; this module orders and ranks them and compares the published figures.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cobench.leaderboard.board import Board, Comparison, MethodInfo, Row
from cobench.leaderboard.collect import Collection, ProtocolError, StoredResult, collect
from cobench.leaderboard.spec import DEFAULT_RANK_BY, TABLE_METRICS, Leaderboard, Published
from cobench.leaderboard.trust.rows import RowTrust, assess, plugin_label
from cobench.plugins import Registry, get_plugin_manager
from cobench.store.results import flat_row
from cobench.store.tables import GROUP_KEYS, METRICS, aggregate


def build_board(lb: Leaderboard, registry: Registry | None = None, extra: list[Path] | tuple[Path, ...] = ()) -> Board:
    """Collect and validate ``lb``'s results (and ``extra`` files, as if they were among them) and
    turn them into ranked rows."""
    registry = registry or get_plugin_manager().registry
    coll = collect(lb, registry, extra)
    check_metrics(lb, coll)
    metrics = tuple(dict.fromkeys(METRICS + lb.rank_by + lb.metrics))
    trust = assess(coll)
    rows = [row_of(agg, metrics, trust) for agg in aggregate([flat_row(r.data) for r in coll.ok], metrics)]
    rank_metric = choose_rank_metric(rows, lb.rank_by)
    if lb.require_verification:
        unverified = [r for r in rows if not r.built_here and r.trust.verification != "verified"]
        if unverified:
            raise ProtocolError(
                f"leaderboard {lb.name!r} requires verified submissions; not verified: "
                + ", ".join(f"{r.method} at eps {r.eps:g}" for r in unverified)
                + " (save the weights with `cobench run --save-models` and run `cobench leaderboard verify`)"
            )

    def order(r: Row) -> tuple:
        mean = r.mean(rank_metric) if rank_metric else None
        return (r.flagged, -(-1.0 if mean is None else mean), r.method)

    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.setting.sort_key(), r.eps), []).append(r)
    ranked = [row for key in sorted(groups) for row in noise_aware_ranks(sorted(groups[key], key=order), rank_metric)]
    published = compare_published(lb.published, ranked, TABLE_METRICS + lb.metrics)
    ranked = [replace(r, published=row_figures(published, r)) for r in ranked]
    return Board(
        lb=lb,
        coll=coll,
        rows=tuple(ranked),
        rank_metric=rank_metric,
        methods=method_info(coll, registry),
        published=published,
    )


def row_of(aggregated: dict[str, Any], metrics: tuple[str, ...], trust: dict[tuple, RowTrust]) -> Row:
    """A row of :func:`cobench.store.tables.aggregate` (the store's untyped table), with its trust;
    with a cost ratio to FGSM only where both were timed alike."""
    judged = trust[tuple(aggregated[k] for k in GROUP_KEYS)]
    return Row(
        dataset=aggregated["dataset"],
        model=aggregated["model"],
        injection=aggregated["injection"],
        beta=aggregated["beta"],
        method=aggregated["method"],
        eps=aggregated["eps"],
        seeds=aggregated["seeds"],
        stats={m: (aggregated[f"{m}_mean"], aggregated[f"{m}_std"]) for m in metrics},
        trust=judged,
        co_rate=aggregated["co_rate"],
        co_epoch_median=aggregated["co_epoch_median"],
        cost_vs_fgsm=aggregated["cost_vs_fgsm"] if judged.timing_comparable else None,
        forward_passes_per_step=aggregated["forward_passes_per_step"],
    )


def choose_rank_metric(rows: list[Row], rank_by: tuple[str, ...]) -> str | None:
    """The first ``rank_by`` metric every row reports, else the first any row reports."""
    for require_all in (True, False):
        for m in rank_by:
            have = [r.mean(m) is not None for r in rows]
            if have and (all(have) if require_all else any(have)):
                return m
    return None


def noise_aware_ranks(rows: list[Row], metric: str | None) -> list[Row]:
    """``rows`` (already sorted best first) ranked by ``metric``; flagged rows get no rank.

    A row shares the rank of the first row of its tie group while its mean is within the larger
    of the two rows' standard deviations over seeds of that row's mean: the seeds cannot tell
    them apart. Ranks are competition ranks (1, 1, 3).
    """
    ranks: list[int | None] = []
    tied = [False] * len(rows)
    position = 0
    leader: tuple[int, float, float] | None = None  # the first row of the tie group: index, mean, std
    for i, row in enumerate(rows):
        mean = None if metric is None else row.mean(metric)
        if row.flagged or metric is None or mean is None:
            ranks.append(None)
            continue
        position += 1
        sd = row.std(metric) or 0.0
        if leader is not None and leader[1] - mean <= max(sd, leader[2]):
            ranks.append(ranks[leader[0]])
            tied[i] = tied[leader[0]] = True
        else:
            ranks.append(position)
            leader = (i, mean, sd)
    return [replace(row, rank=rank, rank_tied=tie) for row, rank, tie in zip(rows, ranks, tied)]


def check_metrics(lb: Leaderboard, coll: Collection) -> None:
    """Every ``[leaderboard] metrics`` name, and every ``rank_by`` name beyond the defaults
    (``autoattack_acc``, ``pgd_acc``: a board may report neither, then its rows are not ranked),
    must be reported by one of the board's results."""
    reported = {k for r in coll.ok for k in (r.data.get("metrics") or {})}
    accuracies = ", ".join(sorted(k for k in reported if k.endswith("_acc"))) or "(no accuracy)"
    for key, names in (("metrics", lb.metrics), ("rank_by", [m for m in lb.rank_by if m not in DEFAULT_RANK_BY])):
        unknown = [m for m in names if m not in reported]
        if coll.ok and unknown:
            raise ProtocolError(
                f"{lb.path}: [leaderboard] {key} {', '.join(unknown)} reported by none of its results; "
                f"they report: {accuracies}"
            )


def method_info(coll: Collection, registry: Registry) -> tuple[MethodInfo, ...]:
    """Per method: owning plugin, parameters per eps, and (for the grid's methods) its paper."""
    grid_methods = {c.method.name for c in coll.cells}
    by_method: dict[str, list[StoredResult]] = {}
    for r in coll.ok:
        by_method.setdefault(r.method, []).append(r)
    out = []
    for name, results in sorted(by_method.items()):
        plugins = [(r.data.get("plugins") or {}).get("methods") for r in results]
        # the last result at each eps gives the parameters there (a row cannot mix them: collect)
        params = {f"{r.eps:g}": r.data["config"]["method"]["params"] for r in results}
        out.append(
            MethodInfo(
                name=name,
                plugin=next((p for p in plugins if p), None),
                distributions=tuple(sorted({plugin_label(r) for r in results})),
                params=dict(sorted(params.items(), key=lambda kv: float(kv[0]))),
                paper=(registry.get("methods", name).paper or None) if name in grid_methods else None,
                submitted=name not in grid_methods,
            )
        )
    return tuple(out)


def compared_metric(fig: Published, shown: tuple[str, ...]) -> str:
    """The board column a figure is compared with: ``best_<metric>`` for a best-checkpoint figure
    when the board shows it, else the figure's own metric."""
    best = f"best_{fig.metric}"
    return best if fig.checkpoint == "best" and best in shown else fig.metric


def compare_published(
    figures: tuple[Published, ...], rows: list[Row], shown: tuple[str, ...]
) -> tuple[Comparison, ...]:
    """Each figure, numbered from 1 in board order, with the board's own mean of the compared
    metric (in %; None where the row has none yet). ``shown`` are the board's accuracy columns."""
    by_key = {(r.injection, r.beta, r.eps, r.method): r for r in rows if r.built_here}
    out = []
    for n, fig in enumerate(figures, 1):
        column = compared_metric(fig, shown)
        row = by_key.get(fig.key())
        mean = None if row is None else row.mean(column)
        out.append(
            Comparison(ref=n, figure=fig, compared_with=column, cobench=None if mean is None else round(100 * mean, 6))
        )
    return tuple(out)


def row_figures(published: tuple[Comparison, ...], row: Row) -> tuple[Comparison, ...]:
    """The published figures that belong to a row of the board's own grid."""
    if not row.built_here:
        return ()
    return tuple(c for c in published if c.figure.key() == (row.injection, row.beta, row.eps, row.method))
