"""Execute a grid: skip finished cells, run the rest through an executor, write one result per
cell as it finishes. Each cell runs in :func:`cobench.run.cell_worker.execute_cell`, wherever the
executor puts it; the driver only plans, checks, hands out cells and writes what comes back."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cobench.errors import ConfigError
from cobench.grid.cell import Cell
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.loggers.tracking import check_loggers, grid_group
from cobench.options import NoProgress, Progress, RunOptions
from cobench.params import component_problems
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import execute_cell
from cobench.run.claims import ClaimedCells, ClaimKeeper, Skipped
from cobench.run.dataset_cache import clear_cache, load_compact
from cobench.run.device import resolve_device
from cobench.run.training import compile_refusal
from cobench.store.digest import with_digest
from cobench.store.records import (
    WEIGHTS_BYTES,
    FlatRow,
    ResultRecord,
    WorkerResult,
    as_record,
    plain,
    worker_result,
)
from cobench.store.results import check_writable, failed_result, finished_result, flat_row, result_path, write_json
from cobench.store.weights import BEST, FINAL, WeightsStore


def attach_weights(result: WorkerResult, store: WeightsStore) -> ResultRecord:
    """A worker's result with the weights it sent (``--save-models``) written to ``store`` and their
    hash, size and store recorded in it (its digest then covers them)."""
    record = as_record({k: v for k, v in result.items() if k != WEIGHTS_BYTES})
    sent = result.get("_weights_safetensors")
    if sent is None:
        return record
    if FINAL in sent:
        record["weights"] = store.put(sent[FINAL]).to_json()
    if BEST in sent:
        record["best_weights"] = store.put(sent[BEST]).to_json()
    return with_digest(record)


def store_result(path: Path, result: WorkerResult, store: WeightsStore) -> ResultRecord:
    """Write a worker's ``result`` to ``path`` and the weights it carries to ``store``; returns the
    result as stored."""
    record = attach_weights(result, store)
    write_json(path, record)
    return record


def rescue_result(results_dir: Path, path: Path, result: WorkerResult, error: OSError) -> str:
    """``result`` could not be written to ``path``: save it under a temporary folder instead
    (same relative path) and return the one line that tells the user where and why."""
    relative = path.relative_to(results_dir)
    problem = (
        f"could not write the result of {relative} to {results_dir}: {error.strerror or error} (errno {error.errno})"
    )
    try:
        spare = Path(tempfile.mkdtemp(prefix="cobench-unsaved-"))
        store_result(spare / relative, result, WeightsStore(str(spare / "weights")))
    except OSError as again:
        metrics = json.dumps(result.get("metrics") or {}, sort_keys=True, default=str)
        return f"{problem}; it could not be saved elsewhere either ({again.strerror or again}), its metrics: {metrics}"
    return (
        f"{problem}; the result is saved in {spare}/{relative} instead: copy {spare}/. into "
        f"{results_dir}/ once it is writable"
    )


@dataclass
class RunSummary:
    results: list[ResultRecord] = field(default_factory=list)  # every cell of the grid, in grid order
    ran: int = 0
    skipped: int = 0
    failed: list[ResultRecord] = field(default_factory=list)
    interrupted: bool = False
    #: cells another run (another process or machine) was training, left to it
    busy: list[Skipped] = field(default_factory=list)
    #: why the run stopped early because a result could not be written (and where it went instead)
    unsaved: str | None = None

    def rows(self) -> list[FlatRow]:
        return [flat_row(plain(r)) for r in self.results]


#: where a grid's mid-cell checkpoints go unless --checkpoint-dir says otherwise
CHECKPOINT_SUBDIR = "checkpoints"


#: executor options the command line offers every executor, and their flags; one that the chosen
#: executor does not take is an error (it would be ignored)
SHARED_EXECUTOR_OPTIONS = {"workers": "--workers", "address": "--ray-address", "cells_per_device": "--cells-per-device"}


class Runner:
    """Runs ``spec``'s cells that have no finished result under ``results_dir``.

    ``options`` say how cells run (:class:`~cobench.options.RunOptions`; a mapping of its
    fields is accepted); ``executor`` names the executor plugin and ``executor_options``
    its parameters (one it does not take is an error).
    """

    def __init__(
        self,
        spec: GridSpec,
        results_dir: Path | str,
        *,
        options: RunOptions | Mapping[str, Any] | None = None,
        executor: str = "local",
        executor_options: Mapping[str, Any] | None = None,
    ):
        self.spec = spec
        self.results_dir = Path(results_dir)
        self.options = RunOptions.of(options)
        if self.options.checkpoints and not self.options.checkpoint_dir:
            self.options = replace(self.options, checkpoint_dir=str(self.results_dir / CHECKPOINT_SUBDIR))
        self.executor_name = executor
        self.executor_options = dict(executor_options or {})

    @property
    def weights_store(self) -> WeightsStore:
        """Where ``--save-models`` writes the weights (``--weights-store``, else the default store)."""
        return WeightsStore(self.options.weights_store or None)

    def plan(self) -> list[tuple[Cell, Path, ResultRecord | None]]:
        cells = resolve(self.spec, get_plugin_manager().registry)
        return [(c, result_path(self.results_dir, c), finished_result(self.results_dir, c)) for c in cells]

    def preflight(self, cells: list[Cell]) -> None:
        """Fail fast, before any training, on problems every cell would hit (the device is checked
        by :meth:`run`, except for remote executors, whose cells check their own where they run)."""
        check_writable(self.results_dir)
        if self.options.checkpoints:
            check_writable(Path(self.options.checkpoint_dir), "checkpoint dir")
        if self.options.save_models:
            self.weights_store.check_writable()
        if self.options.compile:
            registry = get_plugin_manager().registry
            for name in sorted({c.method.name for c in cells}):
                if getattr(registry.get("methods", name), "double_backward", False):
                    raise ConfigError(compile_refusal(name))
        check_loggers(self.options.loggers, get_plugin_manager().registry)
        for dataset in dict.fromkeys(c.dataset for c in cells):
            load_compact(dataset, self.options)

    def run(self, progress: Progress | None = None) -> RunSummary:
        progress = progress or NoProgress()
        plan = self.plan()
        executor_cls = get_plugin_manager().registry.get("executors", self.executor_name)
        valid = executor_cls.parameters()
        unknown = sorted(set(self.executor_options) - set(valid) - set(SHARED_EXECUTOR_OPTIONS))
        if unknown:
            raise ConfigError(
                f"executor {self.executor_name!r} has no parameter(s) {', '.join(unknown)}; valid: "
                + (", ".join(valid) or "(none)")
            )
        for key, flag in SHARED_EXECUTOR_OPTIONS.items():
            if key in self.executor_options and key not in valid:
                takers = sorted(
                    n for n, c in get_plugin_manager().registry.components["executors"].items() if key in c.parameters()
                )
                raise ConfigError(
                    f"{flag} does not apply to executor {self.executor_name!r} (it would be ignored); "
                    f"executors that take it: {', '.join(takers) or '(none)'}"
                )
        given = {k: v for k, v in self.executor_options.items() if k in valid}
        problems = component_problems(executor_cls, "executors", {**valid, **given})
        if problems:
            raise ConfigError(f"{len(problems)} invalid executor parameter value(s):\n  " + "\n  ".join(problems))
        executor = executor_cls(**given)
        summary = RunSummary()
        todo = [cell for cell, _, done in plan if done is None]
        by_id = {cell.cell_id: done for cell, _, done in plan if done is not None}
        summary.skipped = len(by_id)
        if not executor.remote():  # even with nothing to train: a device that is not there is an error
            resolve_device(self.options.device)
        if todo:
            self.preflight(todo)
            if not executor.in_process:  # the cells load their data where they run: drop the driver's copy
                clear_cache()
        progress.start_grid(len(plan), summary.skipped)
        paths = {cell.cell_id: path for cell, path, _ in plan}

        def finished_by_peer(cell: Cell, result: ResultRecord) -> None:
            by_id[cell.cell_id] = result
            summary.skipped += 1

        def record(cell: Cell, result: WorkerResult) -> None:
            stored = store_result(paths[cell.cell_id], result, self.weights_store)
            by_id[cell.cell_id] = stored
            summary.ran += 1
            if stored["status"] != "ok":
                summary.failed.append(stored)
            progress.on_cell_done(cell, plain(stored))

        def given_up(cell: Cell, why: str) -> None:
            try:
                record(cell, worker_result(failed_result(cell, RuntimeError(why), why)))
            finally:
                claimed.release(cell)

        with ClaimKeeper() as keeper:
            claimed = ClaimedCells(
                todo,
                lambda cell: paths[cell.cell_id],
                keeper,
                lambda cell: finished_result(self.results_dir, cell),
                finished_by_peer,
                progress.notice,
                given_up,
            )
            options = replace(  # the executor is recorded in each result; the group names the grid to trackers
                self.options,
                executor=self.executor_name,
                run_group=self.options.run_group or grid_group(self.results_dir, [c.cell_id for c, _, _ in plan]),
            )
            results = iter(executor.run(claimed, execute_cell, options, progress))
            try:
                for cell, handed_back in results:
                    result = worker_result(handed_back)
                    try:
                        record(cell, result)
                    except OSError as exc:  # full disk, read-only mount: keep the result, stop cleanly
                        summary.unsaved = rescue_result(self.results_dir, paths[cell.cell_id], result, exc)
                        break
                    finally:
                        claimed.release(cell)
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                getattr(results, "close", lambda: None)()  # an executor's workers stop with it
                progress.stop()
        summary.busy = claimed.busy
        summary.results = [by_id[c.cell_id] for c, _, _ in plan if c.cell_id in by_id]
        return summary
