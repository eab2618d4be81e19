"""A board as data: ``<name>.csv`` (its rows) and ``<name>.json`` (everything the pages show).

Same results in, same bytes out: rows are in board order, floats are rounded to 6 digits, keys
are sorted and there are no timestamps, so ``cobench leaderboard check`` compares them byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from cobench.leaderboard.board import Board, Row
from cobench.leaderboard.render.text import published_diff_text, published_text
from cobench.leaderboard.spec import TABLE_METRICS


def csv_columns(metrics: tuple[str, ...] = TABLE_METRICS, published: bool = False) -> list[str]:
    """The CSV/JSON columns of a board showing the accuracies ``metrics`` (and published figures)."""
    return (
        [
            "injection",
            "beta",
            "eps",
            "rank",
            "rank_tied",
            "method",
            "source",
            "plugin",
            "verification",
            "flagged",
            "seeds",
        ]
        + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
        + (["published", "published_diff"] if published else [])
        + [
            "co_rate",
            "co_rate_ci_low",
            "co_rate_ci_high",
            "co_epoch_median",
            "cost_vs_fgsm",
            "time_per_step_s",
            "timing_device",
            "forward_passes_per_step",
        ]
    )


def row_record(row: Row) -> dict[str, Any]:
    """Every value of a row by its column's name, as the CSV and JSON write it."""
    return {
        "injection": row.injection,
        "beta": row.beta,
        "eps": row.eps,
        "rank": row.rank,
        "rank_tied": row.rank_tied,
        "method": row.method,
        "source": row.trust.source,
        "plugin": row.trust.plugin,
        "verification": row.trust.verification,
        "flagged": row.flagged,
        "seeds": row.seeds,
        **{f"{m}_{s}": v for m, stat in row.stats.items() for s, v in zip(("mean", "std"), stat)},
        "published": published_text(row),
        "published_diff": published_diff_text(row),
        "co_rate": row.co_rate,
        "co_rate_ci_low": row.trust.co_rate_ci_low,
        "co_rate_ci_high": row.trust.co_rate_ci_high,
        "co_epoch_median": row.co_epoch_median,
        "cost_vs_fgsm": row.cost_vs_fgsm,
        "time_per_step_s": row.trust.time_per_step_s,
        "timing_device": row.trust.timing_device,
        "forward_passes_per_step": row.forward_passes_per_step,
        "problems": list(row.trust.problems),
        "published_figures": [c.record() for c in row.published],
    }


def rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def table_records(board: Board, with_problems: bool = False) -> list[dict[str, Any]]:
    """The rows as the CSV writes them; ``with_problems``, as the JSON does (with each row's problems and figures)."""
    extra: tuple[str, ...] = ("problems",) if with_problems else ()
    extra += ("published_figures",) if with_problems and board.published else ()
    columns = [*csv_columns(board.table_metrics, bool(board.published)), *extra]
    records = [row_record(r) for r in board.rows]
    return [{c: rounded(rec.get(c)) for c in columns} for rec in records]


def render_csv(board: Board) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=csv_columns(board.table_metrics, bool(board.published)), lineterminator="\n"
    )
    writer.writeheader()
    for rec in table_records(board):
        writer.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buf.getvalue()


def render_json(board: Board) -> str:
    lb = board.lb
    doc: dict[str, Any] = {  # the board's JSON, as written
        "name": lb.name,
        "title": lb.title,
        "description": lb.description,
        "results_dir": lb.results_rel,
        "protocol": board.protocol().record(),
        "ranked_by": board.rank_metric,
        "coverage": board.coverage.record(),
        "methods": [m.record() for m in board.methods],
        "provenance": board.provenance(),
        "rows": table_records(board, with_problems=True),
    }
    if lb.figures:
        doc["figures"] = [{"path": fig_path, "caption": caption} for fig_path, caption in lb.figures]
    if board.published:
        doc["published"] = [c.record() for c in board.published]
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
