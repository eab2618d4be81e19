"""Execute a grid: skip finished cells, run the rest through an executor, write one result
per cell as it finishes. ``execute_cell`` is a plain function of a config dict so that
process-pool and Ray executors can ship it to workers."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from cobench.api import Component, DataContext, DataSplits, EvalContext, InjectionContext
from cobench.errors import CobenchError, ConfigError, NonFiniteLossError
from cobench.grid.cell import Cell
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.kinds import GRID_KINDS, singular
from cobench.loggers.tracking import CellLoggers, check_loggers, grid_group
from cobench.options import NoProgress, Progress, RunOptions
from cobench.params import component_problems
from cobench.plugins import Registry, get_plugin_manager
from cobench.run.best_checkpoint import BestCheckpoint, best_metrics, split_validation
from cobench.run.checkpoints import CellCheckpoint
from cobench.run.claims import ClaimedCells, ClaimKeeper, Skipped
from cobench.run.device import configure_numerics, numerics_record, resolve_device, seed_everything
from cobench.run.evaluation import run_evaluators
from cobench.run.placement import as_uint8, decode, place_data
from cobench.run.training import CellParts, Normalize, compile_refusal, train
from cobench.store.digest import with_digest
from cobench.store.provenance import cobench_record, components_record, fingerprint, machine_record
from cobench.store.results import (
    check_writable,
    environment,
    failed_result,
    finished_result,
    flat_row,
    now,
    result_header,
    result_path,
    sanitize,
    write_json,
)
from cobench.store.weights import BEST, FINAL, WeightsStore, weights_bytes

OnEpoch = Callable[[int, int, dict[str, Any]], None]
#: key of a worker's result under which the saved weights travel to the driver (never written):
#: {result key (``weights``, ``best_weights``): safetensors bytes}
WEIGHTS_BYTES = "_weights_safetensors"


def compact(data: DataSplits) -> DataSplits:
    """``data`` with each image split kept as uint8 where that is lossless (a quarter of the memory)."""
    train, test = as_uint8(data.train_x), as_uint8(data.test_x)
    return replace(data, train_x=data.train_x if train is None else train, test_x=data.test_x if test is None else test)


def expand(data: DataSplits) -> DataSplits:
    """The float32 splits in [0, 1] every consumer sees (bit for bit what the dataset returned)."""
    return replace(data, train_x=decode(data.train_x), test_x=decode(data.test_x))


@lru_cache(maxsize=4)
def _load_dataset(spec_json: str, data_dir: str, download: bool) -> DataSplits:
    """A dataset's splits as cached in this process: uint8 where lossless (:func:`compact`), so the
    cached copy takes a quarter of the memory of float32 images."""
    spec = json.loads(spec_json)
    cls = get_plugin_manager().registry.get("datasets", spec["name"])
    return compact(cls(**spec["params"]).load(DataContext(data_dir=data_dir, download=download, seed=0)))


def load_dataset(spec: dict[str, Any], options: RunOptions) -> DataSplits:
    """Load (and cache in-process, compactly) a dataset component's splits; float32 on the CPU, with checks."""
    return expand(load_compact(spec, options))


def load_compact(spec: dict[str, Any], options: RunOptions) -> DataSplits:
    """A dataset component's splits as this process caches them (images uint8 where lossless, see
    :func:`compact`), checked: for whatever needs only shapes, or places the data itself."""
    data = _load_dataset(json.dumps(spec, sort_keys=True), options.data_dir, options.download)
    name = dataset_name(spec, options.data_dir)
    for split in ("train", "test"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
            raise CobenchError(
                f"dataset {name} returned a malformed {split} split: x {tuple(x.shape)}, y {tuple(y.shape)}"
            )
    if data.num_classes < 2:
        raise CobenchError(f"dataset {name} has {data.num_classes} class(es); classification needs at least 2")
    if len(data.train_x) < 2:
        raise CobenchError(f"dataset {name} has {len(data.train_x)} training image(s); training needs at least 2")
    if min(data.train_x.shape[-2:]) < MIN_IMAGE_SIDE:
        raise CobenchError(
            f"dataset {name} has {data.train_x.shape[-2]}x{data.train_x.shape[-1]}-pixel images; "
            f"cobench needs at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (the injections' carriers need "
            "frequencies, attacks need pixels)"
        )
    return data


#: the smallest image side a dataset may have
MIN_IMAGE_SIDE = 4


def dataset_name(spec: dict[str, Any], data_dir: str) -> str:
    """The dataset as an error names it: ``'npz' read from '/data/x.npz'`` for one read from a
    file or folder (a ``path`` parameter: ``npz``, ``imagefolder``), else its quoted name."""
    from cobench.datasets.common import resolve_path

    path = spec.get("params", {}).get("path")
    if isinstance(path, str) and path:
        return f"{spec['name']!r} read from {str(resolve_path(path, data_dir))!r}"
    return repr(spec["name"])


@lru_cache(maxsize=4)
def _dataset_fingerprint(spec_json: str, data_dir: str, download: bool) -> str:
    data = expand(_load_dataset(spec_json, data_dir, download))  # the float arrays, as before compaction
    return fingerprint(data.train_x, data.train_y, data.test_x, data.test_y)


def dataset_fingerprint(spec: dict[str, Any], options: RunOptions) -> str:
    """SHA-256 of the dataset's arrays as loaded (before injection), cached like the dataset."""
    return _dataset_fingerprint(json.dumps(spec, sort_keys=True), options.data_dir, options.download)


def execute_cell(
    config: dict[str, Any], options: RunOptions | Mapping[str, Any] | None = None, on_epoch: OnEpoch | None = None
) -> dict[str, Any]:
    """Train and evaluate one cell; always returns a result dict (``status`` ok or failed)."""
    cell = Cell.from_config(config)
    options = RunOptions.of(options)
    started, t0 = now(), time.perf_counter()
    device = torch.device("cpu")
    loggers = CellLoggers(options.loggers, cell.cell_id, cell.label, cell.config(), group=options.run_group)
    try:
        device = resolve_device(options.device)
        loggers.start()
        result = {
            **result_header(cell, started),
            **run_cell(cell, options, device, loggers.wrap(on_epoch)),
            "status": "ok",
        }
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # a component's sys.exit() fails its cell, not the whole grid
        message = (
            f"{exiting_component(exc)} called sys.exit({exc.code!r}) in cell {cell.label}; "
            "a component must raise an exception instead"
        )
        result = failed_result(cell, exc, message, started)
    except Exception as exc:
        message = str(exc) if isinstance(exc, (CobenchError, NonFiniteLossError)) else f"{type(exc).__name__}: {exc}"
        result = failed_result(cell, exc, message, started)
    result["environment"] = environment(device)
    result["finished_at"] = now()
    result["wall_time_s"] = time.perf_counter() - t0
    weights = result.pop(WEIGHTS_BYTES, None)
    result = with_digest(sanitize(result))
    loggers.finish(result)
    return result if weights is None else {**result, WEIGHTS_BYTES: weights}


def exiting_component(exc: BaseException) -> str:
    """The component whose method raised ``exc`` (the innermost frame whose ``self`` is a
    component), as ``"method 'x'"``; ``"a component"`` when no such frame exists."""
    tb, found = exc.__traceback__, "a component"
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, Component):
            found = f"{owner.kind} {owner.name!r}"
        tb = tb.tb_next
    return found


def build_parts(
    cell: Cell, options: RunOptions, device: torch.device, registry: Registry, with_method: bool = True
) -> CellParts:
    """Instantiate ``cell``'s components on ``device``: data, injection (prepared), model, method, evaluators.

    ``with_method=False`` leaves the method out (``None``): re-evaluating saved weights needs
    everything but the training method, whose plugin the verifier may not have installed."""
    kept = load_compact(cell.dataset, options)
    injection = registry.get("injections", cell.injection["name"])(**cell.injection["params"])
    injection.prepare(
        InjectionContext(
            beta=cell.beta / 255.0,
            num_classes=kept.num_classes,
            image_shape=kept.image_shape,
            seed=cell.seed,
            device=device,
        ),
        decode(kept.train_x),  # float32 on the host; the carriers go to ctx.device
        kept.train_y,
    )
    # the injected test set is counted in the data budget with the rest
    placed = place_data(
        kept, device, options.data_budget_gb, inject=injection.apply, cells_per_device=options.cells_per_device
    )
    data, test_x, train_data = placed.data, placed.test_x, placed.train_data
    net = registry.get("models", cell.model["name"])(**cell.model["params"]).build(
        num_classes=data.num_classes, image_shape=data.image_shape
    )
    training = cell.training_settings
    probe = min(training.probe_size, len(test_x))
    return CellParts(
        # without normalisation (GradAlign's and ELLE's protocols) the network sees [0, 1] pixels directly;
        # an injection may put a layer in front of it (low-pass: the paper's DCT filter inside the model)
        model=injection.wrap_model(
            torch.nn.Sequential(*([Normalize(data.mean, data.std)] if training.normalize else []), net)
        ).to(device),
        method=registry.get("methods", cell.method["name"])(**cell.method["params"]) if with_method else None,
        data=data,
        injection=injection,
        evaluators=[registry.get("evaluators", e["name"])(**e["params"]) for e in cell.evaluators],
        eval_ctx=EvalContext(
            eps=cell.eps / 255.0,
            test_x=test_x,
            test_y=data.test_y,
            clean_test_x=data.test_x,
            injection=injection,
            num_classes=data.num_classes,
            device=device,
            batch_size=training.eval_batch_size,
            seed=cell.seed,
            probe_x=test_x[:probe],
            probe_y=data.test_y[:probe],
        ),
        train_data=train_data,
    )


def run_cell(cell: Cell, options: RunOptions, device: torch.device, on_epoch: OnEpoch | None) -> dict[str, Any]:
    registry = get_plugin_manager().registry
    configure_numerics(options.deterministic, options.cudnn_benchmark)
    seed_everything(cell.seed)
    parts = build_parts(cell, options, device, registry)
    best, validation = held_out_validation(cell, parts)
    checkpoint = (
        CellCheckpoint(options.checkpoint_dir, cell.cell_id) if options.checkpoints and options.checkpoint_dir else None
    )
    outcome = train(parts, cell.training_settings, options, on_epoch, checkpoint=checkpoint, best=best)
    parts.eval_ctx.history = outcome.history
    t_eval = time.perf_counter()
    metrics = run_evaluators(parts.model, parts.evaluators, lambda ev: ev.evaluate(parts.model, parts.eval_ctx))
    best_model = None
    if best is not None:  # the early-stopped model, with the same evaluators
        best_model = best.best_model(parts.model)
        metrics.update(
            best_metrics(
                run_evaluators(best_model, parts.evaluators, lambda ev: ev.evaluate(best_model, parts.eval_ctx)),
                best.best_epoch,
            )
        )
    if cell.training_settings.stop_after_collapse:
        metrics["stopped_early"] = int(outcome.stopped_early_epoch is not None)
        metrics["stopped_early_epoch"] = outcome.stopped_early_epoch
    if checkpoint is not None and not options.keep_checkpoints:
        checkpoint.remove()
    keys = sorted({k for rec in outcome.history for k in rec})
    curves = {k: [rec.get(k) for rec in outcome.history] for k in keys}
    cost = dict(outcome.cost, eval_time_s=time.perf_counter() - t_eval)
    out: dict[str, Any] = {
        "metrics": metrics,
        "curves": curves,
        "cost": cost,
        "plugins": component_owners(cell, registry),
        "provenance": provenance(cell, options, device, parts),
    }
    if validation is not None:
        out["provenance"]["data"]["validation"] = validation
    if options.save_models:  # the driver writes them to the weights store
        out[WEIGHTS_BYTES] = {FINAL: weights_bytes(parts.model)}
        if best_model is not None:
            out[WEIGHTS_BYTES][BEST] = weights_bytes(best_model)
    return out


def held_out_validation(cell: Cell, parts: CellParts) -> tuple[BestCheckpoint | None, dict[str, Any] | None]:
    """With ``training.val_size`` > 0: take the validation split out of ``parts.data`` (in place)
    and return the tracker of the best epoch and the split's record; else (None, None)."""
    val_size = cell.training_settings.val_size
    if val_size <= 0:
        return None, None
    parts.data, val_x, val_y, record = split_validation(parts.data, val_size, cell.seed)
    device = parts.eval_ctx.device  # the training set may be on the host (cobench.run.placement)
    best = BestCheckpoint(
        val_x.to(device),
        val_y.to(device),
        parts.injection,
        parts.eval_ctx.eps,
        cell.training_settings.eval_batch_size,
        cell.seed,
    )
    return best, record


def provenance(cell: Cell, options: RunOptions, device: torch.device, parts: CellParts) -> dict[str, Any]:
    """Who computed the result and on what (see :mod:`cobench.store.provenance`)."""
    components = [(kind, getattr(cell, singular(kind))["name"]) for kind in GRID_KINDS if kind != "evaluators"]
    components += [("evaluators", e["name"]) for e in cell.evaluators]
    return {
        "cobench": cobench_record(),
        "components": components_record(get_plugin_manager(), components),
        "data": {
            "loaded": dataset_fingerprint(cell.dataset, options),
            "injected": fingerprint(
                getattr(parts.injection, "carriers", None), parts.eval_ctx.test_x, parts.eval_ctx.test_y
            ),
        },
        "machine": machine_record(device),
        "numerics": numerics_record(),
        "execution": {
            "executor": options.executor,
            "cells_per_device": options.cells_per_device,
            "train_data": parts.train_data,
        },
    }


def component_owners(cell: Cell, registry: Registry) -> dict[str, Any]:
    """The plugin that registered each of ``cell``'s components (evaluators: name -> plugin)."""
    owners: dict[str, Any] = {
        kind: registry.owner(kind, getattr(cell, singular(kind))["name"]) for kind in GRID_KINDS if kind != "evaluators"
    }
    owners["evaluators"] = {e["name"]: registry.owner("evaluators", e["name"]) for e in cell.evaluators}
    return owners


def attach_weights(result: dict[str, Any], store: WeightsStore) -> dict[str, Any]:
    """Write the weights a worker sent (``--save-models``) to ``store`` and record their hash,
    size and store in the result (whose digest then covers them)."""
    sent = result.get(WEIGHTS_BYTES)
    if sent is None:
        return result
    rest = {k: v for k, v in result.items() if k != WEIGHTS_BYTES}
    return with_digest({**rest, **{key: store.put(data).to_json() for key, data in sent.items()}})


def store_result(path: Path, result: dict[str, Any], store: WeightsStore) -> dict[str, Any]:
    """Write ``result`` to ``path`` and the weights it carries to ``store``; returns the result as stored."""
    result = attach_weights(result, store)
    write_json(path, result)
    return result


def rescue_result(results_dir: Path, path: Path, result: dict[str, Any], error: OSError) -> str:
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


# ------------------------------------------------------------------------- the grid driver
@dataclass
class RunSummary:
    results: list[dict[str, Any]] = field(default_factory=list)  # every cell of the grid, in grid order
    ran: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    #: cells another run (another process or machine) was training, left to it
    busy: list[Skipped] = field(default_factory=list)
    #: why the run stopped early because a result could not be written (and where it went instead)
    unsaved: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        return [flat_row(r) for r in self.results]


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

    def plan(self) -> list[tuple[Cell, Path, dict[str, Any] | None]]:
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
            for name in sorted({c.method["name"] for c in cells}):
                if getattr(registry.get("methods", name), "double_backward", False):
                    raise ConfigError(compile_refusal(name))
        check_loggers(self.options.loggers, get_plugin_manager().registry)
        for spec in {json.dumps(c.dataset, sort_keys=True): c.dataset for c in cells}.values():
            load_compact(spec, self.options)

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
                _load_dataset.cache_clear()
        progress.start_grid(len(plan), summary.skipped)
        paths = {cell.cell_id: path for cell, path, _ in plan}

        def finished_by_peer(cell: Cell, result: dict[str, Any]) -> None:
            by_id[cell.cell_id] = result
            summary.skipped += 1

        def record(cell: Cell, result: dict[str, Any]) -> None:
            result = store_result(paths[cell.cell_id], result, self.weights_store)
            by_id[cell.cell_id] = result
            summary.ran += 1
            if result["status"] != "ok":
                summary.failed.append(result)
            progress.on_cell_done(cell, result)

        def given_up(cell: Cell, why: str) -> None:
            try:
                record(cell, failed_result(cell, RuntimeError(why), why))
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
                for cell, result in results:
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
