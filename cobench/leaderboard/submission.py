"""Checking result files before they join a leaderboard (``cobench leaderboard validate``), and the
report a pull-request check shows a reviewer: each file's verdict and the rows it would add.

A file fails when it is not schema-valid, contradicts itself (:mod:`cobench.store.consistency`:
edited after the run, metrics that disagree, CO not reproduced from its own probe curves), was
trained on other data than the board's cells (:mod:`cobench.leaderboard.trust`), or breaks the
board's protocol (:mod:`cobench.leaderboard.collect`). What no file check catches, a careful
forger's numbers, ``cobench leaderboard verify`` does by re-evaluating the weights; the report
says which files carry the weights' hash that verification needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cobench.errors import CobenchError
from cobench.leaderboard.board import Board, Row
from cobench.leaderboard.collect import ProtocolError, StoredResult
from cobench.leaderboard.rank import build_board
from cobench.leaderboard.render.markdown import md_escape, rows_table
from cobench.leaderboard.spec import Leaderboard
from cobench.leaderboard.trust.rows import board_data_fingerprint, data_problems
from cobench.store.results import ResultValidationError, read_result, result_problems


@dataclass(frozen=True)
class FileVerdict:
    path: Path
    #: why the file could not be read as a result (schema, JSON); None when it could
    invalid: str | None = None
    problems: tuple[str, ...] = ()
    #: the SHA-256 of the weights it records (``cobench run --save-models``), which ``verify`` fetches
    weights_sha256: str | None = None
    #: the weights store the result names, if any (docs/weights.md)
    weights_store: str | None = None
    result: StoredResult | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.invalid is None and not self.problems


@dataclass(frozen=True)
class BoardCheck:
    """The files checked against one board: the board with them in it, or why they break its protocol."""

    lb: Leaderboard
    paths: tuple[Path, ...]
    board: Board | None = None
    protocol_error: str | None = None

    def rows(self, verdicts: list[FileVerdict]) -> list[Row]:
        """The board's rows that hold one of the checked files: the rows a submission adds (or changes)."""
        if self.board is None:
            return []
        mine = {v.result.key for v in verdicts if v.result is not None and v.path in self.paths}
        return [r for r in self.board.rows if r.key in mine]


@dataclass(frozen=True)
class Validation:
    verdicts: list[FileVerdict]
    boards: list[BoardCheck]

    @property
    def invalid(self) -> int:
        return sum(v.invalid is not None for v in self.verdicts)

    @property
    def inconsistent(self) -> int:
        return sum(v.invalid is None and bool(v.problems) for v in self.verdicts)

    @property
    def passed(self) -> bool:
        return all(v.ok for v in self.verdicts) and not any(b.protocol_error for b in self.boards)

    def counts(self) -> str:
        valid = len(self.verdicts) - self.invalid - self.inconsistent
        return f"{len(self.verdicts)} result file(s): {valid} valid, {self.inconsistent} inconsistent, {self.invalid} invalid"


def read_verdict(path: Path) -> FileVerdict:
    try:
        result = StoredResult(path, read_result(path, validate=True))
    except ResultValidationError as exc:
        return FileVerdict(path, invalid=exc.message)
    weights = result.data.get("weights") or {}
    return FileVerdict(
        path,
        problems=tuple(result_problems(result.data)),
        weights_sha256=weights.get("sha256"),
        weights_store=weights.get("store"),
        result=result,
    )


def board_of(path: Path, boards: list[Leaderboard]) -> Leaderboard | None:
    """The board whose results folder holds ``path``; with one board, that board."""
    resolved = path.resolve()
    for lb in boards:
        if lb.results_dir.resolve() in resolved.parents:
            return lb
    return boards[0] if len(boards) == 1 else None


def check_board(lb: Leaderboard, verdicts: list[FileVerdict]) -> tuple[BoardCheck, list[FileVerdict]]:
    """``lb`` rebuilt with the files in it; the verdicts gain the data check against its cells."""
    paths = tuple(v.path for v in verdicts)
    try:
        board = build_board(lb, extra=list(paths))
    except ProtocolError as exc:
        return BoardCheck(lb, paths, protocol_error=exc.message), verdicts
    reference = board_data_fingerprint(board.coll)
    grid_ids = board.coll.grid_ids
    checked = []
    for v in verdicts:
        extra: tuple[str, ...] = ()
        if v.result is not None and v.result.cell_id not in grid_ids:
            extra = tuple(data_problems(v.result, reference))
        checked.append(FileVerdict(v.path, v.invalid, v.problems + extra, v.weights_sha256, v.weights_store, v.result))
    return BoardCheck(lb, paths, board=board), checked


def validate(paths: list[Path], boards: list[Leaderboard]) -> Validation:
    """Check every file, then each board with the files that belong to it (none when a file is invalid)."""
    if not paths:
        raise CobenchError("no result files to validate")
    verdicts = [read_verdict(p) for p in paths]
    checks: list[BoardCheck] = []
    if boards and not any(v.invalid for v in verdicts):
        by_board: dict[str, list[FileVerdict]] = {}
        for v in verdicts:
            lb = board_of(v.path, boards)
            if lb is not None:
                by_board.setdefault(lb.name, []).append(v)
        updated: dict[Path, FileVerdict] = {}
        for lb in boards:
            if lb.name in by_board:
                check, checked = check_board(lb, by_board[lb.name])
                checks.append(check)
                updated.update((v.path, v) for v in checked)
        verdicts = [updated.get(v.path, v) for v in verdicts]
    return Validation(verdicts, checks)


def summary_markdown(report: Validation) -> str:
    """The job summary of a pull-request check: verdict per file, then per board the rows the files add."""
    out = ["## Leaderboard submission check", ""]
    out.append(("✅ " if report.passed else "❌ ") + report.counts())
    out.append("")
    for v in report.verdicts:
        if v.invalid is not None:
            out.append(f"- ❌ `{v.path}`: invalid: {md_escape(v.invalid)}")
        elif v.problems:
            out.append(f"- ❌ `{v.path}`: " + md_escape("; ".join(v.problems)))
        else:
            weights = (
                f"weights sha256 `{v.weights_sha256[:16]}…`"
                + (f" (result names store `{v.weights_store}`)" if v.weights_store else "")
                if v.weights_sha256
                else "no weights recorded (cannot be verified: run with `--save-models`)"
            )
            out.append(f"- ✅ `{v.path}`: consistent; {weights}")
    for check in report.boards:
        out += ["", f"### {md_escape(check.lb.title)} (`{check.lb.name}`)", ""]
        if check.protocol_error:
            out.append("❌ does not follow the board's protocol: " + md_escape(check.protocol_error))
            continue
        assert check.board is not None  # built when the protocol holds
        rows = check.rows(report.verdicts)
        out.append("The rows these files add to the board, as it will show them:")
        out += [""] + rows_table(check.board, rows, setting_column=True)
        if any(not r.built_here and r.trust.verification != "verified" for r in rows):
            out += [
                "",
                "To verify: `cobench leaderboard verify "
                f"{check.lb.path} --weights-store URL` with the weights store the pull request names "
                "(it fetches each result's weights by their SHA-256).",
            ]
    return "\n".join(out) + "\n"
