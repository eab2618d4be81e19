"""A board's rows as a short table for prose (the README's), built from the board's rendered JSON,
and the README blocks that such tables fill.

``cobench leaderboard table BOARD`` prints one (Markdown or CSV); ``cobench leaderboard readme
FILE`` rewrites every block between a marker comment that holds the command's arguments and
``<!-- end -->``, or with ``--check`` fails when one is stale, so that no table in prose is typed
by hand. The full table, with ranks and costs, is the board's own page.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cobench.api import NO_INJECTION
from cobench.errors import CobenchError
from cobench.leaderboard.render.text import METRIC_LABELS, pct

#: accuracy columns in this order where a board reports them; any other accuracy follows, by name
ORDER = ("clean_acc", "fgsm_acc", "pgd_acc", "pgd50_10_acc", "autoattack_acc")
#: the multi-step attacks' accuracies: bold, with the CO count, in a row where a seed collapsed
ROBUST = ("pgd_acc", "pgd50_10_acc", "autoattack_acc")
FORMATS = ("markdown", "csv")


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False


def board_json(board: str, base: Path) -> Path:
    """The rendered JSON of ``board``: a path to it or to the board's TOML (beside which it is
    rendered), or a board's name, looked up as ``leaderboards/NAME.json`` under ``base``."""
    given = Path(board)
    if given.suffix in (".json", ".toml"):
        path = (base / given).with_suffix(".json")
    else:
        path = base / "leaderboards" / f"{board}.json"
    if not path.is_file():
        raise CobenchError(
            f"board {board!r}: no rendered board at {path} (render it with `cobench leaderboard render`)"
        )
    return path


@dataclass(frozen=True)
class RenderedRow:
    """One row of a rendered board's JSON, as the table reads it."""

    method: str
    injection: str
    eps: float
    beta: float
    seeds: int
    #: accuracy name -> (mean, std) as fractions; None where not measured
    accuracies: dict[str, tuple[float | None, float | None]]
    co_rate: float | None = None
    co_epoch_median: float | None = None
    flagged: bool = False

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> RenderedRow:
        names = {k.removesuffix("_mean") for k in row if k.endswith("_acc_mean")}
        return cls(
            method=row["method"],
            injection=row["injection"],
            eps=float(row["eps"]),
            beta=float(row["beta"]),
            seeds=int(row["seeds"]),
            accuracies={m: (row[f"{m}_mean"], row.get(f"{m}_std")) for m in names},
            co_rate=row.get("co_rate"),
            co_epoch_median=row.get("co_epoch_median"),
            flagged=bool(row.get("flagged")),
        )

    @property
    def collapsed(self) -> int:
        """Seeds that overfit catastrophically."""
        return round((self.co_rate or 0) * self.seeds)


def load_rows(path: Path) -> list[RenderedRow]:
    """The rows of the rendered board at ``path``; a file that is not one is a one-line error."""
    try:
        data = json.loads(path.read_text())
        return [RenderedRow.from_json(r) for r in data["rows"]]
    except json.JSONDecodeError as exc:
        raise CobenchError(f"{path} is not valid JSON: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CobenchError(f"{path} is not a rendered board (a row without {exc})") from None


def parse_labels(assignments: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``NAME=TEXT`` pairs: the method names as the prose writes them (``fgsm=FGSM-AT``)."""
    labels: dict[str, str] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise CobenchError(f"--label {assignment!r}: expected METHOD=TEXT, e.g. fgsm=FGSM-AT")
        labels[name.strip()] = text.strip()
    return labels


def accuracy_metrics(rows: list[RenderedRow]) -> list[str]:
    """The accuracies the board's rows report, in :data:`ORDER`, then the others by name."""
    reported = {m for row in rows for m in row.accuracies}
    return [m for m in ORDER if m in reported] + sorted(reported - set(ORDER))


def percent(row: RenderedRow, metric: str) -> str:
    """``mean ± std`` in %, one decimal (the std only over more than one seed); ``-`` when not measured."""
    mean, std = row.accuracies.get(metric, (None, None))
    return pct(mean, std, row.seeds)


def co_text(row: RenderedRow) -> str:
    """``k of n`` seeds collapsed, with the median epoch of the collapse where any did."""
    if row.co_rate is None:
        return "-"
    k = row.collapsed
    return f"{k} of {row.seeds}" + (f" ({row.co_epoch_median:g})" if k and row.co_epoch_median else "")


def level(value: float) -> str:
    return f"{value:g}/255"


def table(rows: list[RenderedRow], labels: Mapping[str, str] | None = None) -> tuple[list[str], list[list[Cell]]]:
    """(headers, cells) of a board's rows: one row per method and setting, grouped by injection,
    beta and eps, methods by name within them."""
    labels = labels or {}
    rows = sorted(rows, key=lambda r: (r.injection != NO_INJECTION, r.injection, r.beta, r.eps, r.method))
    injections = {r.injection for r in rows}
    metrics = accuracy_metrics(rows)
    with_co = any(r.co_rate is not None for r in rows)
    headers = ["method"] + ["injection"] * (len(injections) > 1) + ["eps"]
    headers += ["beta"] * (injections != {NO_INJECTION}) + ["seeds"]
    headers += [f"{METRIC_LABELS.get(m, m)} %" for m in metrics] + ["CO (median epoch)"] * with_co
    body = []
    for r in rows:
        mark = r.collapsed > 0
        cells = [Cell(labels.get(r.method, r.method) + (" ⚠" if r.flagged else ""))]
        cells += [Cell(r.injection)] * (len(injections) > 1) + [Cell(level(r.eps))]
        if injections != {NO_INJECTION}:
            cells.append(Cell("-" if r.injection == NO_INJECTION else level(r.beta)))
        cells.append(Cell(str(r.seeds)))
        cells += [Cell(percent(r, m), bold=mark and m in ROBUST) for m in metrics]
        cells += [Cell(co_text(r), bold=mark)] * with_co
        body.append(cells)
    return headers, body


def markdown(headers: list[str], rows: list[list[Cell]]) -> str:
    """A GitHub Markdown table: the method column left-aligned, the figures right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(headers) - 1)) + " |"]
    lines += ["| " + " | ".join(f"**{c.text}**" if c.bold else c.text for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def as_csv(headers: list[str], rows: list[list[Cell]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([c.text for c in row] for row in rows)
    return buf.getvalue()


def render(rows: list[RenderedRow], labels: Mapping[str, str] | None = None, fmt: str = "markdown") -> str:
    if fmt not in FORMATS:
        raise CobenchError(f"table format {fmt!r}: expected one of {', '.join(FORMATS)}")
    headers, cells = table(rows, labels)
    return (markdown if fmt == "markdown" else as_csv)(headers, cells)


#: a block a command writes: its opening comment holds the command's arguments, ``<!-- end -->`` closes it
BLOCK = re.compile(r"^<!-- cobench leaderboard table (?P<args>[^\n]*?) -->\n(?P<body>.*?)^<!-- end -->$", re.M | re.S)
OPENING = re.compile(r"^<!-- cobench leaderboard table\b", re.M)


@dataclass(frozen=True)
class Block:
    args: list[str]
    line: int
    old: str
    new: str


def rewrite(text: str, where: str, make: Callable[[list[str]], str]) -> tuple[str, list[Block]]:
    """``text`` with each block's body made anew by ``make(args)``, and the blocks; a block made
    of Markdown is set off by blank lines, so that the comments stay apart from the table."""
    blocks: list[Block] = []
    if len(OPENING.findall(text)) != len(BLOCK.findall(text)):
        raise CobenchError(
            f"{where}: a '<!-- cobench leaderboard table ... -->' comment has no '<!-- end -->' after it"
        )

    def replace(match: re.Match[str]) -> str:
        line = text.count("\n", 0, match.start()) + 1
        try:
            args = shlex.split(match["args"])
        except ValueError as exc:
            raise CobenchError(f"{where}:{line}: cannot read the table's arguments: {exc}") from None
        try:
            new = "\n" + make(args) + "\n"
        except CobenchError as exc:
            raise CobenchError(f"{where}:{line}: {exc.message}") from None
        blocks.append(Block(args, line, match["body"], new))
        return text[match.start() : match.start("body")] + new + "<!-- end -->"

    return BLOCK.sub(replace, text), blocks
