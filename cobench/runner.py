"""Execute a grid: skip finished cells, run the rest through an executor, write one result
per cell as it finishes. ``execute_cell`` is a plain function of a config dict so that
process-pool and Ray executors can ship it to workers."""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch

from .api import DataContext, DataSplits, EvalContext, InjectionContext
from .checkpoints import CellCheckpoint
from .device import resolve_device, seed_everything
from .errors import CobenchError, NonFiniteLossError
from .grid import Cell, GridSpec
from .plugins import PluginManager, get_plugin_manager
from .results import SCHEMA_VERSION, atomic_write_json, check_writable, environment, flat_row, read_result, sanitize
from .training import Normalize, evaluation_mode, train


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@lru_cache(maxsize=4)
def _load_dataset(spec_json: str, data_dir: str, download: bool) -> DataSplits:
    spec = json.loads(spec_json)
    cls = get_plugin_manager().registry.get("datasets", spec["name"])
    return cls(**spec["params"]).load(DataContext(data_dir=data_dir, download=download, seed=0))


def load_dataset(spec: dict[str, Any], data_dir: str, download: bool) -> DataSplits:
    """Load (and cache in-process) a dataset component's splits on the CPU, with checks."""
    data = _load_dataset(json.dumps(spec, sort_keys=True), data_dir, download)
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
            raise CobenchError(f"dataset {spec['name']!r} returned a malformed {split} split: x {tuple(x.shape)}, y {tuple(y.shape)}")
    return data


def execute_cell(config: dict[str, Any], options: dict[str, Any],
                 on_epoch: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train and evaluate one cell; always returns a result dict (``status`` ok or failed)."""
    cell = Cell.from_config(config)
    started, t0 = now(), time.perf_counter()
    device = torch.device("cpu")
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "cell_id": cell.cell_id, "config_hash": cell.cell_id,
        "config": cell.config(), "seed": cell.seed, "started_at": started,
    }
    try:
        device = resolve_device(options.get("device", "auto"))
        result.update(run_cell(cell, options, device, on_epoch))
        result["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result["status"] = "failed"
        result["error"] = {
            "type": type(exc).__name__,
            "message": str(exc) if isinstance(exc, (CobenchError, NonFiniteLossError)) else f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    result["environment"] = environment(device)
    result["finished_at"] = now()
    result["wall_time_s"] = time.perf_counter() - t0
    return sanitize(result)


def run_cell(cell: Cell, options: dict[str, Any], device: torch.device,
             on_epoch: Callable[[int, int, dict[str, Any]], None] | None) -> dict[str, Any]:
    reg = get_plugin_manager().registry
    seed_everything(cell.seed)
    data = load_dataset(cell.dataset, options.get("data_dir", "data"), options.get("download", False)).to(device)
    eps, beta = cell.eps / 255.0, cell.beta / 255.0

    injection = reg.get("injections", cell.injection["name"])(**cell.injection["params"])
    injection.prepare(InjectionContext(beta=beta, num_classes=data.num_classes, image_shape=data.image_shape,
                                       seed=cell.seed), data.train_x, data.train_y)
    test_x = injection.apply(data.test_x, data.test_y)

    net = reg.get("models", cell.model["name"])(**cell.model["params"]).build(
        num_classes=data.num_classes, image_shape=data.image_shape)
    model = torch.nn.Sequential(Normalize(data.mean, data.std), net).to(device)
    method = reg.get("methods", cell.method["name"])(**cell.method["params"])
    evaluators = [reg.get("evaluators", e["name"])(**e["params"]) for e in cell.evaluators]
    probe = min(cell.training["probe_size"], len(test_x))
    eval_ctx = EvalContext(
        eps=eps, test_x=test_x, test_y=data.test_y, clean_test_x=data.test_x, injection=injection,
        num_classes=data.num_classes, device=device, batch_size=cell.training["eval_batch_size"], seed=cell.seed,
        probe_x=test_x[:probe], probe_y=data.test_y[:probe],
    )
    checkpoint = CellCheckpoint(options["checkpoint_dir"], cell.cell_id) if options.get("checkpoint_dir") else None
    outcome = train(model=model, method=method, data=data, injection=injection, evaluators=evaluators,
                    eval_ctx=eval_ctx, eps=eps, training=cell.training, device=device, seed=cell.seed,
                    on_epoch=on_epoch, channels_last=bool(options.get("channels_last", False)),
                    compile_model=bool(options.get("compile", False)), checkpoint=checkpoint)
    metrics: dict[str, Any] = {}
    owners: dict[str, str] = {}
    eval_ctx.history = outcome.history
    t_eval = time.perf_counter()
    with evaluation_mode(model):
        for ev, spec in zip(evaluators, cell.evaluators):
            produced = ev.evaluate(model, eval_ctx) or {}
            clash = set(produced) & set(metrics)
            if clash:
                raise CobenchError(f"evaluator {spec['name']!r} reports metric(s) {sorted(clash)} already reported by {owners[next(iter(clash))]!r}")
            metrics.update(produced)
            owners.update({k: spec["name"] for k in produced})
    if cell.training.get("stop_after_collapse"):
        metrics["stopped_early"] = int(outcome.stopped_early_epoch is not None)
        metrics["stopped_early_epoch"] = outcome.stopped_early_epoch
    if checkpoint is not None and not options.get("keep_checkpoints", False):
        checkpoint.remove()
    keys = sorted({k for rec in outcome.history for k in rec})
    curves = {k: [rec.get(k) for rec in outcome.history] for k in keys}
    cost = dict(outcome.cost, eval_time_s=time.perf_counter() - t_eval)
    plugins = {kind: reg.owners[kind][cell_part["name"]] for kind, cell_part in
               (("datasets", cell.dataset), ("models", cell.model), ("methods", cell.method),
                ("injections", cell.injection))}
    plugins["evaluators"] = {e["name"]: reg.owners["evaluators"][e["name"]] for e in cell.evaluators}
    return {"metrics": metrics, "curves": curves, "cost": cost, "plugins": plugins}


# ------------------------------------------------------------------------- the grid driver
@dataclass
class RunSummary:
    results: list[dict[str, Any]] = field(default_factory=list)  # every cell of the grid, in grid order
    ran: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    def rows(self) -> list[dict[str, Any]]:
        return [flat_row(r) for r in self.results]


#: where a grid's mid-cell checkpoints go by default, under its results directory
CHECKPOINT_SUBDIR = "checkpoints"


def result_path(results_dir: Path, cell: Cell) -> Path:
    return results_dir / cell.filename()


def finished_result(path: Path, cell: Cell) -> dict[str, Any] | None:
    """The stored result if this cell already finished successfully with the same config."""
    if not path.exists():
        return None
    try:
        data = read_result(path)
    except CobenchError:
        return None  # a corrupt or foreign file is redone, not trusted
    if data.get("status") == "ok" and data.get("config_hash") == cell.cell_id:
        return data
    return None


class Runner:
    def __init__(self, spec: GridSpec, results_dir: Path | str, *, options: dict[str, Any] | None = None,
                 executor: str = "local", executor_options: dict[str, Any] | None = None,
                 pm: PluginManager | None = None):
        self.spec = spec
        self.results_dir = Path(results_dir)
        self.options = {"device": "auto", "data_dir": "data", "download": False,
                        "checkpoint_dir": str(self.results_dir / CHECKPOINT_SUBDIR), **(options or {})}
        self.executor_name = executor
        self.executor_options = executor_options or {}
        self.pm = pm or get_plugin_manager()

    def plan(self) -> list[tuple[Cell, Path, dict[str, Any] | None]]:
        cells = self.spec.cells(self.pm.registry)
        return [(c, result_path(self.results_dir, c), finished_result(result_path(self.results_dir, c), c)) for c in cells]

    def preflight(self, cells: list[Cell]) -> None:
        """Fail fast, before any training, on problems every cell would hit."""
        check_writable(self.results_dir)
        resolve_device(self.options["device"])
        for spec in {json.dumps(c.dataset, sort_keys=True): c.dataset for c in cells}.values():
            load_dataset(spec, self.options["data_dir"], self.options["download"])

    def run(self, progress: Any | None = None) -> RunSummary:
        plan = self.plan()
        executor_cls = self.pm.registry.get("executors", self.executor_name)
        executor = executor_cls(**{k: v for k, v in self.executor_options.items() if k in executor_cls.parameters()})
        summary = RunSummary()
        todo = [cell for cell, _, done in plan if done is None]
        by_id = {cell.cell_id: done for cell, _, done in plan if done is not None}
        summary.skipped = len(by_id)
        if todo:
            self.preflight(todo)
        if progress is not None:
            progress.start_grid(len(plan), summary.skipped)
        paths = {cell.cell_id: path for cell, path, _ in plan}
        options = dict(self.options)
        if progress is not None:
            options["on_epoch"] = progress.on_epoch
            options["on_cell_start"] = progress.on_cell_start
        try:
            for cell, result in executor.run(todo, execute_cell, options):
                atomic_write_json(paths[cell.cell_id], result)
                by_id[cell.cell_id] = result
                summary.ran += 1
                if result["status"] != "ok":
                    summary.failed.append(result)
                if progress is not None:
                    progress.on_cell_done(cell, result)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            if progress is not None:
                progress.stop()
        summary.results = [by_id[c.cell_id] for c, _, _ in plan if c.cell_id in by_id]
        return summary
