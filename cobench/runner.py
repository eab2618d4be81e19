"""Execute a grid: skip finished cells, run the rest through an executor, write one result
per cell as it finishes. ``execute_cell`` is a plain function of a config dict so that
process-pool and Ray executors can ship it to workers."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .api import DataContext, DataSplits, EvalContext, InjectionContext
from .cell import Cell
from .device import resolve_device, seed_everything
from .errors import CobenchError, NonFiniteLossError
from .evaluation import run_evaluators
from .grid import GridSpec
from .kinds import GRID_KINDS, singular
from .options import NoProgress, Progress, RunOptions
from .plugins import Registry, get_plugin_manager
from .resolve import resolve
from .results import (check_writable, environment, failed_result, finished_result, flat_row, now, result_header,
                      result_path, sanitize, write_json)
from .tracking import CellLoggers, check_loggers
from .training import CellParts, Normalize, train

OnEpoch = Callable[[int, int, dict[str, Any]], None]


@lru_cache(maxsize=4)
def _load_dataset(spec_json: str, data_dir: str, download: bool) -> DataSplits:
    spec = json.loads(spec_json)
    cls = get_plugin_manager().registry.get("datasets", spec["name"])
    return cls(**spec["params"]).load(DataContext(data_dir=data_dir, download=download, seed=0))


def load_dataset(spec: dict[str, Any], options: RunOptions) -> DataSplits:
    """Load (and cache in-process) a dataset component's splits on the CPU, with checks."""
    data = _load_dataset(json.dumps(spec, sort_keys=True), options.data_dir, options.download)
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
            raise CobenchError(f"dataset {spec['name']!r} returned a malformed {split} split: x {tuple(x.shape)}, y {tuple(y.shape)}")
    return data


def execute_cell(config: dict[str, Any], options: RunOptions | Mapping[str, Any] | None = None,
                 on_epoch: OnEpoch | None = None) -> dict[str, Any]:
    """Train and evaluate one cell; always returns a result dict (``status`` ok or failed)."""
    cell = Cell.from_config(config)
    options = RunOptions.of(options)
    started, t0 = now(), time.perf_counter()
    device = torch.device("cpu")
    loggers = CellLoggers(options.loggers, cell.cell_id, cell.label, cell.config())
    try:
        device = resolve_device(options.device)
        loggers.start()
        result = {**result_header(cell, started), **run_cell(cell, options, device, loggers.wrap(on_epoch)),
                  "status": "ok"}
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, (CobenchError, NonFiniteLossError)) else f"{type(exc).__name__}: {exc}"
        result = failed_result(cell, exc, message, started)
    result["environment"] = environment(device)
    result["finished_at"] = now()
    result["wall_time_s"] = time.perf_counter() - t0
    result = sanitize(result)
    loggers.finish(result)
    return result


def build_parts(cell: Cell, options: RunOptions, device: torch.device, registry: Registry) -> CellParts:
    """Instantiate ``cell``'s components on ``device``: data, injection (prepared), model, method, evaluators."""
    data = load_dataset(cell.dataset, options).to(device)
    injection = registry.get("injections", cell.injection["name"])(**cell.injection["params"])
    injection.prepare(InjectionContext(beta=cell.beta / 255.0, num_classes=data.num_classes,
                                       image_shape=data.image_shape, seed=cell.seed), data.train_x, data.train_y)
    test_x = injection.apply(data.test_x, data.test_y)
    net = registry.get("models", cell.model["name"])(**cell.model["params"]).build(
        num_classes=data.num_classes, image_shape=data.image_shape)
    probe = min(cell.training["probe_size"], len(test_x))
    return CellParts(
        # without normalisation (GradAlign's and ELLE's protocols) the network sees [0, 1] pixels directly;
        # an injection may put a layer in front of it (low-pass: the paper's DCT filter inside the model)
        model=injection.wrap_model(torch.nn.Sequential(
            *([Normalize(data.mean, data.std)] if cell.training["normalize"] else []), net)).to(device),
        method=registry.get("methods", cell.method["name"])(**cell.method["params"]),
        data=data,
        injection=injection,
        evaluators=[registry.get("evaluators", e["name"])(**e["params"]) for e in cell.evaluators],
        eval_ctx=EvalContext(
            eps=cell.eps / 255.0, test_x=test_x, test_y=data.test_y, clean_test_x=data.test_x, injection=injection,
            num_classes=data.num_classes, device=device, batch_size=cell.training["eval_batch_size"],
            seed=cell.seed, probe_x=test_x[:probe], probe_y=data.test_y[:probe],
        ),
    )


def run_cell(cell: Cell, options: RunOptions, device: torch.device, on_epoch: OnEpoch | None) -> dict[str, Any]:
    registry = get_plugin_manager().registry
    seed_everything(cell.seed)
    parts = build_parts(cell, options, device, registry)
    outcome = train(parts, cell.training, options, on_epoch)
    parts.eval_ctx.history = outcome.history
    t_eval = time.perf_counter()
    metrics = run_evaluators(parts.model, parts.evaluators, lambda ev: ev.evaluate(parts.model, parts.eval_ctx))
    keys = sorted({k for rec in outcome.history for k in rec})
    curves = {k: [rec.get(k) for rec in outcome.history] for k in keys}
    cost = dict(outcome.cost, eval_time_s=time.perf_counter() - t_eval)
    return {"metrics": metrics, "curves": curves, "cost": cost, "plugins": component_owners(cell, registry)}


def component_owners(cell: Cell, registry: Registry) -> dict[str, Any]:
    """The plugin that registered each of ``cell``'s components (evaluators: name -> plugin)."""
    owners: dict[str, Any] = {kind: registry.owners[kind][getattr(cell, singular(kind))["name"]]
                              for kind in GRID_KINDS if kind != "evaluators"}
    owners["evaluators"] = {e["name"]: registry.owners["evaluators"][e["name"]] for e in cell.evaluators}
    return owners


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


class Runner:
    """Runs ``spec``'s cells that have no finished result under ``results_dir``.

    ``options`` say how cells run (:class:`~cobench.options.RunOptions`; a mapping of its
    fields is accepted); ``executor`` names the executor plugin and ``executor_options``
    its parameters (those it does not take are ignored).
    """

    def __init__(self, spec: GridSpec, results_dir: Path | str, *,
                 options: RunOptions | Mapping[str, Any] | None = None, executor: str = "local",
                 executor_options: Mapping[str, Any] | None = None):
        self.spec = spec
        self.results_dir = Path(results_dir)
        self.options = RunOptions.of(options)
        self.executor_name = executor
        self.executor_options = dict(executor_options or {})

    def plan(self) -> list[tuple[Cell, Path, dict[str, Any] | None]]:
        cells = resolve(self.spec, get_plugin_manager().registry)
        return [(c, result_path(self.results_dir, c), finished_result(self.results_dir, c)) for c in cells]

    def preflight(self, cells: list[Cell]) -> None:
        """Fail fast, before any training, on problems every cell would hit."""
        check_writable(self.results_dir)
        resolve_device(self.options.device)
        check_loggers(self.options.loggers, get_plugin_manager().registry)
        for spec in {json.dumps(c.dataset, sort_keys=True): c.dataset for c in cells}.values():
            load_dataset(spec, self.options)

    def run(self, progress: Progress | None = None) -> RunSummary:
        progress = progress or NoProgress()
        plan = self.plan()
        executor_cls = get_plugin_manager().registry.get("executors", self.executor_name)
        executor = executor_cls(**{k: v for k, v in self.executor_options.items() if k in executor_cls.parameters()})
        summary = RunSummary()
        todo = [cell for cell, _, done in plan if done is None]
        by_id = {cell.cell_id: done for cell, _, done in plan if done is not None}
        summary.skipped = len(by_id)
        if todo:
            self.preflight(todo)
        progress.start_grid(len(plan), summary.skipped)
        paths = {cell.cell_id: path for cell, path, _ in plan}
        try:
            for cell, result in executor.run(todo, execute_cell, self.options, progress):
                write_json(paths[cell.cell_id], result)
                by_id[cell.cell_id] = result
                summary.ran += 1
                if result["status"] != "ok":
                    summary.failed.append(result)
                progress.on_cell_done(cell, result)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            progress.stop()
        summary.results = [by_id[c.cell_id] for c, _, _ in plan if c.cell_id in by_id]
        return summary
