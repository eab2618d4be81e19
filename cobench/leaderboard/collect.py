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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cobench.grid.cell import Cell
from cobench.grid.resolve import resolve
from cobench.leaderboard.spec import Leaderboard
from cobench.plugins import Registry, get_plugin_manager
from cobench.store.results import ResultValidationError, flat_row, iter_results, read_result

PROTOCOL_KEYS = ("dataset", "model", "training", "evaluators")


class ProtocolError(ResultValidationError):
    """A schema-valid result that was produced under a different protocol than the leaderboard's."""


@dataclass
class Collection:
    leaderboard: Leaderboard
    cells: list[Cell]
    results: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    #: the results stored in the board's ``searches`` folders (the searches that chose its grid)
    search_results: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    @property
    def ok(self) -> list[tuple[Path, dict[str, Any]]]:
        return [(p, r) for p, r in self.results if r["status"] == "ok"]

    @property
    def failed(self) -> list[tuple[Path, dict[str, Any]]]:
        return [(p, r) for p, r in self.results if r["status"] != "ok"]

    def rows(self) -> list[dict[str, Any]]:
        return [flat_row(r) for _, r in self.ok]

    def coverage(self) -> dict[str, Any]:
        """Cells finished, failed and submitted, and ``grid_wall_hours``: the wall-clock time the
        finished grid cells recorded (:func:`build_seconds`).
        With ``searches``, also ``search_cells`` and ``search_wall_hours``: the search cells that are
        not also finished grid cells (a search cell the board reuses is counted once), and their time."""
        grid_ids = {c.cell_id for c in self.cells}
        ok_ids = {r["cell_id"] for _, r in self.ok}
        wall_s = sum(build_seconds(r) for _, r in self.ok if r["cell_id"] in grid_ids)
        cov: dict[str, Any] = {
            "grid_cells": len(grid_ids),
            "grid_cells_finished": len(grid_ids & ok_ids),
            "failed_cells": len(self.failed),
            "submitted_cells": len(ok_ids - grid_ids),
            "grid_wall_hours": round(wall_s / 3600, 2),
        }
        if self.leaderboard.searches:
            own = grid_ids & ok_ids
            extra = {r["cell_id"]: r for _, r in self.search_results if r["cell_id"] not in own}
            cov["search_cells"] = len(extra)
            cov["search_wall_hours"] = round(sum(build_seconds(r) for r in extra.values()) / 3600, 2)
        return cov


def build_seconds(result: dict[str, Any]) -> float:
    """The wall-clock seconds a cell took to build: its last run's, plus, for a resumed cell, what
    its interrupted runs had trained until the checkpoint it resumed from (work lost after that
    checkpoint is not counted, nor, for results older than that record, the interrupted runs)."""
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
    searched = [item for folder in lb.searches for item in iter_results(lb.root / folder, strict=True, validate=True)]
    coll = Collection(lb, cells, search_results=searched)
    stored = list(iter_results(lb.results_dir, strict=True, validate=True)) if lb.results_dir.is_dir() else []
    known = {p.resolve() for p, _ in stored}
    candidates = stored + [(p, read_result(p, validate=True)) for p in extra if Path(p).resolve() not in known]
    by_id = {c.cell_id: c for c in cells}
    # the protocol a submission must follow, per eps (a step rule such as eps/4 differs by eps)
    references = {c.eps: c.config() for c in reversed(cells)}
    grid_methods = {c.method.name for c in cells}
    settings = {(json.dumps(c.injection.config(), sort_keys=True), c.beta) for c in cells}
    seen_ids: dict[str, Path] = {}
    seen_seed: dict[tuple, Path] = {}
    method_params: dict[tuple, tuple[Path, dict[str, Any]]] = {}
    for path, result in candidates:
        cfg = result["config"]
        where = f"result file {str(path)!r}"
        if result["cell_id"] in seen_ids:
            raise ProtocolError(
                f"{where} duplicates {str(seen_ids[result['cell_id']])!r} (same cell "
                f"{result['cell_id']}); keep one of them"
            )
        seen_ids[result["cell_id"]] = path
        if result["cell_id"] not in by_id:
            if cfg["method"]["name"] in grid_methods:
                cell = _nearest_cell(cfg, cells)
                diff = first_difference(cfg, cell.config(), "config") if cell else None
                raise ProtocolError(
                    f"{where} is a {cfg['method']['name']!r} run that is not a cell of leaderboard {lb.name!r}"
                    + (f": {diff}" if diff else "")
                    + "; the leaderboard's own methods must use its exact config"
                )
            reference = references.get(cfg["eps"], cells[0].config())
            for key in PROTOCOL_KEYS:
                diff = first_difference(cfg[key], reference[key], f"config.{key}")
                if diff:
                    raise ProtocolError(f"{where} does not follow leaderboard {lb.name!r}'s protocol: {diff}")
            if cfg["eps"] not in lb.grid.eps:
                raise ProtocolError(
                    f"{where} has eps {cfg['eps']:g}/255; leaderboard {lb.name!r} uses eps "
                    + ", ".join(f"{e:g}" for e in lb.grid.eps)
                )
            if (json.dumps(cfg["injection"], sort_keys=True), cfg["beta"]) not in settings:
                raise ProtocolError(
                    f"{where} uses injection {cfg['injection']['name']!r} with beta {cfg['beta']:g}, "
                    f"which is not a setting of leaderboard {lb.name!r}"
                )
        if result["status"] != "ok":
            coll.results.append((path, result))
            continue
        row_key = (cfg["method"]["name"], cfg["eps"], cfg["injection"]["name"], cfg["beta"])
        if row_key + (cfg["seed"],) in seen_seed:
            raise ProtocolError(
                f"{where} and {str(seen_seed[row_key + (cfg['seed'],)])!r} are both {row_key[0]!r} at eps "
                f"{row_key[1]:g} seed {cfg['seed']} with different configs; keep one of them"
            )
        seen_seed[row_key + (cfg["seed"],)] = path
        if row_key in method_params and method_params[row_key][1] != cfg["method"]["params"]:
            other = method_params[row_key][0]
            diff = first_difference(cfg["method"]["params"], method_params[row_key][1], "config.method.params")
            raise ProtocolError(
                f"{where} and {str(other)!r} report method {row_key[0]!r} at eps {row_key[1]:g} with "
                f"different parameters ({diff}); one row cannot mix them"
            )
        method_params.setdefault(row_key, (path, cfg["method"]["params"]))
        coll.results.append((path, result))
    return coll


def _nearest_cell(cfg: dict[str, Any], cells: list[Cell]) -> Cell | None:
    """The grid cell with the same method, eps, injection, beta and seed, if any."""
    for c in cells:
        if (c.method.name, c.eps, c.injection.name, c.beta, c.seed) == (
            cfg["method"]["name"],
            cfg["eps"],
            cfg["injection"]["name"],
            cfg["beta"],
            cfg["seed"],
        ):
            return c
    return None
