"""Gather a leaderboard's results: schema-validate every file, then check it follows the
leaderboard's protocol, so a table only ever compares like with like.

A result enters the table when it is schema-valid (see :func:`cobench.store.results.validate_result`) and

* it is one of the leaderboard's grid cells (same config hash), or
* it is a method the leaderboard does not define (a third-party submission) trained and
  evaluated under the leaderboard's protocol: same dataset, model, training and evaluators,
  an eps of the grid and an injection/beta setting of the grid.

Any violation aborts with a message naming the file; nothing is rendered from a partial set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cobench.grid.cell import Cell
from cobench.grid.resolve import resolve
from cobench.leaderboard.spec import Leaderboard
from cobench.plugins import Registry, get_plugin_manager
from cobench.store.results import ResultValidationError, iter_results, read_result

PROTOCOL_KEYS = ("dataset", "model", "training", "evaluators")


class ProtocolError(ResultValidationError):
    """A schema-valid result that was produced under a different protocol than the leaderboard's."""


@dataclass(frozen=True)
class StoredResult:
    """One result file as the store read and validated it: the JSON stays as it was read (the
    store's checks take it so); what the board keys and counts by is typed here."""

    path: Path
    data: dict[str, Any]

    @property
    def cell_id(self) -> str:
        return self.data["cell_id"]

    @property
    def ok(self) -> bool:
        return self.data["status"] == "ok"

    @property
    def method(self) -> str:
        return self.data["config"]["method"]["name"]

    @property
    def eps(self) -> float:
        return self.data["config"]["eps"]

    @property
    def injection(self) -> str:
        return self.data["config"]["injection"]["name"]

    @property
    def beta(self) -> float:
        return self.data["config"]["beta"]

    @property
    def seed(self) -> int:
        return self.data["config"]["seed"]

    @property
    def key(self) -> tuple:
        """The board row it belongs to: :data:`cobench.store.tables.GROUP_KEYS`, in that order."""
        cfg = self.data["config"]
        return (cfg["dataset"]["name"], cfg["model"]["name"], self.injection, self.beta, self.method, self.eps)

    @property
    def build_seconds(self) -> float:
        return build_seconds(self.data)


@dataclass(frozen=True)
class Coverage:
    """How much of the board is built: cells finished, failed and submitted, and the wall-clock
    hours the finished grid cells recorded (:func:`build_seconds`). With ``searches``, also the
    search cells that are not also finished grid cells (a search cell the board reuses is counted
    once) and their hours."""

    grid_cells: int
    grid_cells_finished: int
    failed_cells: int
    submitted_cells: int
    grid_wall_hours: float
    search_cells: int | None = None
    search_wall_hours: float | None = None

    @property
    def build_hours(self) -> float:
        """The board's build time: its grid cells' and its searches'."""
        return round(self.grid_wall_hours + (self.search_wall_hours or 0.0), 2)

    def record(self) -> dict[str, float]:
        """As the board's JSON states it (the search figures only for a board with searches)."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass
class Collection:
    leaderboard: Leaderboard
    cells: list[Cell]
    results: list[StoredResult] = field(default_factory=list)
    #: the results stored in the board's ``searches`` folders (the searches that chose its grid)
    search_results: list[StoredResult] = field(default_factory=list)

    @property
    def ok(self) -> list[StoredResult]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[StoredResult]:
        return [r for r in self.results if not r.ok]

    @property
    def grid_ids(self) -> set[str]:
        return {c.cell_id for c in self.cells}

    def coverage(self) -> Coverage:
        grid_ids = self.grid_ids
        ok_ids = {r.cell_id for r in self.ok}
        wall_s = sum(r.build_seconds for r in self.ok if r.cell_id in grid_ids)
        cov = Coverage(
            grid_cells=len(grid_ids),
            grid_cells_finished=len(grid_ids & ok_ids),
            failed_cells=len(self.failed),
            submitted_cells=len(ok_ids - grid_ids),
            grid_wall_hours=round(wall_s / 3600, 2),
        )
        if not self.leaderboard.searches:
            return cov
        own = grid_ids & ok_ids
        extra = {r.cell_id: r for r in self.search_results if r.cell_id not in own}
        return replace(
            cov,
            search_cells=len(extra),
            search_wall_hours=round(sum(r.build_seconds for r in extra.values()) / 3600, 2),
        )


def build_seconds(result: dict[str, Any]) -> float:
    """The wall-clock seconds a cell took to build (``result`` as stored): its last run's, plus, for
    a resumed cell, what its interrupted runs had trained until the checkpoint it resumed from (work
    lost after that checkpoint is not counted, nor, for results older than that record, the
    interrupted runs)."""
    before = (result.get("cost") or {}).get("wall_before_resume_s") or 0.0
    return float(result.get("wall_time_s") or 0.0) + float(before)


def first_difference(got: Any, want: Any, where: str) -> str | None:
    """Dotted path and values of the first place where ``got`` differs from ``want``."""
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want)):
            if key not in got:
                return f"{where}.{key} is missing (the leaderboard uses {json.dumps(want[key])})"
            if key not in want:
                return f"{where}.{key} is not part of the leaderboard's protocol"
            diff = first_difference(got[key], want[key], f"{where}.{key}")
            if diff:
                return diff
        return None
    if got != want:
        return f"{where} is {json.dumps(got)}, the leaderboard uses {json.dumps(want)}"
    return None


def collect(lb: Leaderboard, registry: Registry | None = None, extra: list[Path] | tuple[Path, ...] = ()) -> Collection:
    """``lb``'s validated results; ``extra`` files (candidate submissions) are checked as if
    they were already in its results folder."""
    registry = registry or get_plugin_manager().registry
    cells = resolve(lb.grid, registry)
    searched = [
        StoredResult(*item)
        for folder in lb.searches
        for item in iter_results(lb.root / folder, strict=True, validate=True)
    ]
    coll = Collection(lb, cells, search_results=searched)
    stored = list(iter_results(lb.results_dir, strict=True, validate=True)) if lb.results_dir.is_dir() else []
    known = {p.resolve() for p, _ in stored}
    candidates = [StoredResult(*item) for item in stored] + [
        StoredResult(p, read_result(p, validate=True)) for p in extra if Path(p).resolve() not in known
    ]
    by_id = {c.cell_id: c for c in cells}
    # the protocol a submission must follow, per eps (a step rule such as eps/4 differs by eps)
    references = {c.eps: c.config() for c in reversed(cells)}
    grid_methods = {c.method.name for c in cells}
    settings = {(json.dumps(c.injection.config(), sort_keys=True), c.beta) for c in cells}
    seen_ids: dict[str, Path] = {}
    seen_seed: dict[tuple, Path] = {}
    method_params: dict[tuple, StoredResult] = {}
    for result in candidates:
        cfg = result.data["config"]
        where = f"result file {str(result.path)!r}"
        if result.cell_id in seen_ids:
            raise ProtocolError(
                f"{where} duplicates {str(seen_ids[result.cell_id])!r} (same cell {result.cell_id}); keep one of them"
            )
        seen_ids[result.cell_id] = result.path
        if result.cell_id not in by_id:
            if result.method in grid_methods:
                cell = _nearest_cell(result, cells)
                diff = first_difference(cfg, cell.config(), "config") if cell else None
                raise ProtocolError(
                    f"{where} is a {result.method!r} run that is not a cell of leaderboard {lb.name!r}"
                    + (f": {diff}" if diff else "")
                    + "; the leaderboard's own methods must use its exact config"
                )
            reference = references.get(result.eps, cells[0].config())
            for key in PROTOCOL_KEYS:
                diff = first_difference(cfg[key], reference[key], f"config.{key}")
                if diff:
                    raise ProtocolError(f"{where} does not follow leaderboard {lb.name!r}'s protocol: {diff}")
            if result.eps not in lb.grid.eps:
                raise ProtocolError(
                    f"{where} has eps {result.eps:g}/255; leaderboard {lb.name!r} uses eps "
                    + ", ".join(f"{e:g}" for e in lb.grid.eps)
                )
            if (json.dumps(cfg["injection"], sort_keys=True), result.beta) not in settings:
                raise ProtocolError(
                    f"{where} uses injection {result.injection!r} with beta {result.beta:g}, "
                    f"which is not a setting of leaderboard {lb.name!r}"
                )
        if not result.ok:
            coll.results.append(result)
            continue
        row_key = (result.method, result.eps, result.injection, result.beta)
        if row_key + (result.seed,) in seen_seed:
            raise ProtocolError(
                f"{where} and {str(seen_seed[row_key + (result.seed,)])!r} are both {result.method!r} at eps "
                f"{result.eps:g} seed {result.seed} with different configs; keep one of them"
            )
        seen_seed[row_key + (result.seed,)] = result.path
        first = method_params.setdefault(row_key, result)
        params, first_params = cfg["method"]["params"], first.data["config"]["method"]["params"]
        if params != first_params:
            diff = first_difference(params, first_params, "config.method.params")
            raise ProtocolError(
                f"{where} and {str(first.path)!r} report method {result.method!r} at eps {result.eps:g} with "
                f"different parameters ({diff}); one row cannot mix them"
            )
        coll.results.append(result)
    return coll


def _nearest_cell(result: StoredResult, cells: list[Cell]) -> Cell | None:
    """The grid cell with the same method, eps, injection, beta and seed, if any."""
    for c in cells:
        if (c.method.name, c.eps, c.injection.name, c.beta, c.seed) == (
            result.method,
            result.eps,
            result.injection,
            result.beta,
            result.seed,
        ):
            return c
    return None
