"""A board as Markdown (``<name>.md``): the words of :mod:`.text` in Markdown's markup."""

from __future__ import annotations

import re

from cobench.leaderboard.board import Board, Row
from cobench.leaderboard.render.text import (
    FLAGGED_NOTE,
    GENERATED_NOTE,
    METRIC_LABELS,
    PUBLISHED_NOTE,
    PUBLISHED_NUMERIC,
    SECTIONS,
    Markup,
    cells_of,
    columns_note,
    coverage_text,
    flagged_item,
    main_device,
    method_item,
    planned_plots,
    protocol_items,
    published_cells,
    published_columns,
    table_columns,
)

#: characters with a meaning in Markdown (CommonMark lets any of them be backslash-escaped)
MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text: str) -> str:
    """``text`` as literal Markdown: HTML tags cannot open (``<`` becomes ``&lt;``) and emphasis,
    code, links and table pipes are backslash-escaped, so a submitted name renders as written."""
    text = MD_SPECIAL.sub(r"\\\1", str(text))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


MARKDOWN = Markup(
    escape=md_escape,
    strong=lambda text: f"**{text}**",
    module=md_escape,
    aside=lambda text: text,
    inline=lambda text: text,
)


def md_table(headers: list[str], right: list[bool], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the headers as given, the cells escaped, ``right`` columns right-aligned."""
    return [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---:" if r else "---" for r in right) + " |",
        *("| " + " | ".join(md_escape(c) for c in cells) + " |" for cells in rows),
    ]


def rows_table(board: Board, rows: list[Row], setting_column: bool = False) -> list[str]:
    """``rows`` as the board's table shows them; with ``setting_column``, their setting first (rows
    of several settings in one table, as a submission's check lists them)."""
    columns = table_columns(board.table_metrics, bool(board.published))
    device = main_device(board.rows)
    headers, right = [h for _, h in columns], [k != "method" for k, _ in columns]
    body = [[cells_of(row, device, board.table_metrics)[k] for k, _ in columns] for row in rows]
    if setting_column:
        headers, right = ["setting", *headers], [False, *right]
        body = [[_setting(row), *cells] for row, cells in zip(rows, body)]
    return md_table(headers, right, body)


def _setting(row: Row) -> str:
    return row.injection if row.injection == "none" else f"{row.injection} beta {row.beta:g}/255"


def render_markdown(board: Board) -> str:
    lb = board.lb
    out = [f"# {lb.title}", "", f"<!-- {GENERATED_NOTE} Source: {lb.path.name}, results in {lb.results_rel}/ -->", ""]
    if lb.description:
        out += [lb.description, ""]
    out += [f"## {SECTIONS['protocol']}", ""] + [f"- {item}" for item in protocol_items(board)] + [""]
    ranked = METRIC_LABELS.get(board.rank_metric or "", board.rank_metric or "method name")
    out += [columns_note(ranked, MARKDOWN), "", coverage_text(board), ""]
    if not board.rows:
        out += ["_No results yet: run `cobench leaderboard build` on this file._", ""]
    for setting in board.settings:
        out += [f"## {setting.title}", ""] + rows_table(board, board.rows_for(setting)) + [""]
        flagged = [r for r in board.rows_for(setting) if r.flagged]
        if flagged:
            out += [FLAGGED_NOTE, ""] + [f"- {flagged_item(r, MARKDOWN)}" for r in flagged] + [""]
    if board.methods:
        out += [f"## {SECTIONS['methods']}", ""] + [f"- {method_item(m, MARKDOWN)}" for m in board.methods] + [""]
    if board.published:
        columns = published_columns()
        out += [f"## {SECTIONS['published']}", "", PUBLISHED_NOTE, ""]
        body = [[published_cells(c)[k] for k, _ in columns] for c in board.published]
        out += md_table([h for _, h in columns], [k in PUBLISHED_NUMERIC for k, _ in columns], body) + [""]
    plots = planned_plots(board)
    if plots:
        out += [f"## {SECTIONS['plots']}", ""] + [f"![{title}]({lb.plots_rel}/{name})" for name, title in plots] + [""]
    if lb.figures:
        out += [f"## {SECTIONS['figures']}", ""]
        for fig_path, caption in lb.figures:
            out += [f"![{caption}]({fig_path})", "", caption, ""]  # Markdown, as the description is
    return "\n".join(out)
