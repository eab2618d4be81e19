"""One cell, where it runs: build its runtime and components, train, evaluate, and return its
result. ``execute_cell`` is a plain function of a config dict so that process-pool and Ray
executors can ship it to workers; it never raises for a failing cell."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from cobench.api import Component, InjectionContext
from cobench.errors import CobenchError, NonFiniteLossError
from cobench.grid.cell import Cell
from cobench.kinds import GRID_KINDS, singular
from cobench.loggers.tracking import CellLoggers
from cobench.options import RunOptions
from cobench.plugins import Registry, get_plugin_manager
from cobench.run.best_checkpoint import BestCheckpoint, best_metrics, split_validation
from cobench.run.checkpoints import CellCheckpoint
from cobench.run.dataset_cache import dataset_fingerprint, load_compact
from cobench.run.device import configure_numerics, numerics_record, resolve_device, seed_everything
from cobench.run.evaluation import run_evaluators
from cobench.run.placement import decode, place_data
from cobench.run.runtime import CellRuntime
from cobench.run.training import CellParts, Normalize, train
from cobench.store.digest import with_digest
from cobench.store.provenance import cobench_record, components_record, fingerprint, machine_record
from cobench.store.records import (
    WEIGHTS_BYTES,
    CellOutcome,
    CostRecord,
    PluginsRecord,
    ProvenanceRecord,
    ResultRecord,
    ValidationRecord,
    plain,
)
from cobench.store.results import environment, failed_result, now, result_header, sanitize
from cobench.store.weights import BEST, FINAL, weights_bytes

#: told each epoch's record as it finishes: (epoch, epochs, record)
OnEpoch = Callable[[int, int, dict[str, float | None]], None]


def execute_cell(
    config: dict[str, Any], options: RunOptions | Mapping[str, Any] | None = None, on_epoch: OnEpoch | None = None
) -> dict[str, Any]:
    """Train and evaluate one cell; always returns a result (``status`` ok or failed), as the plain
    dict the executor contract hands back (:class:`cobench.api.Executor`; :class:`ResultRecord`)."""
    cell = Cell.from_config(config)
    options = RunOptions.of(options)
    started, t0 = now(), time.perf_counter()
    device = torch.device("cpu")
    loggers = CellLoggers(options.loggers, cell, group=options.run_group)
    weights: dict[str, bytes] | None = None
    result: ResultRecord
    try:
        device = resolve_device(options.device)
        loggers.start()
        outcome, weights = run_cell(cell, options, device, loggers.wrap(on_epoch))
        result = {**result_header(cell, started), **outcome, "status": "ok"}
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
    result = with_digest(sanitize(result))
    loggers.finish(result)
    return plain(result) if weights is None else {**result, WEIGHTS_BYTES: weights}


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


def build_runtime(cell: Cell, options: RunOptions, device: torch.device, registry: Registry) -> CellRuntime:
    """``cell``'s injection prepared on the whole training set, and its data placed on ``device``
    within the data budget, the injected test set included (the training set stays on the host
    when it does not fit what the test sets leave: :func:`cobench.run.placement.place_data`)."""
    kept = load_compact(cell.dataset, options)
    injection = registry.get("injections", cell.injection.name)(**cell.injection.kwargs())
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
    training = cell.training
    return CellRuntime(
        eps=cell.eps / 255.0,
        beta=cell.beta / 255.0,
        seed=cell.seed,
        device=device,
        data=placed.data,
        injection=injection,
        test_x=placed.test_x,
        eval_batch_size=training.eval_batch_size,
        probe_size=training.probe_size,
        train_data=placed.train_data,
    )


def build_parts(
    cell: Cell, options: RunOptions, device: torch.device, registry: Registry, with_method: bool = True
) -> CellParts:
    """Instantiate ``cell``'s components on ``device`` around its runtime (:func:`build_runtime`):
    model, method, evaluators.

    ``with_method=False`` leaves the method out (``None``): re-evaluating saved weights needs
    everything but the training method, whose plugin the verifier may not have installed."""
    runtime = build_runtime(cell, options, device, registry)
    data = runtime.data
    net = registry.get("models", cell.model.name)(**cell.model.kwargs()).build(
        num_classes=data.num_classes, image_shape=data.image_shape
    )
    return CellParts(
        # without normalisation (GradAlign's and ELLE's protocols) the network sees [0, 1] pixels directly;
        # an injection may put a layer in front of it (low-pass: the paper's DCT filter inside the model)
        model=runtime.injection.wrap_model(
            torch.nn.Sequential(*([Normalize(data.mean, data.std)] if cell.training.normalize else []), net)
        ).to(device),
        method=registry.get("methods", cell.method.name)(**cell.method.kwargs()) if with_method else None,
        evaluators=[registry.get("evaluators", e.name)(**e.kwargs()) for e in cell.evaluators],
        runtime=runtime,
    )


def run_cell(
    cell: Cell, options: RunOptions, device: torch.device, on_epoch: OnEpoch | None
) -> tuple[CellOutcome, dict[str, bytes] | None]:
    """Train and evaluate ``cell``: what its result holds beyond the header, and with ``--save-models``
    the weights to store ({result key: safetensors bytes}; the driver writes them)."""
    registry = get_plugin_manager().registry
    configure_numerics(options.deterministic, options.cudnn_benchmark)
    seed_everything(cell.seed)
    parts = build_parts(cell, options, device, registry)
    best, validation = held_out_validation(cell, parts)
    checkpoint = (
        CellCheckpoint(options.checkpoint_dir, cell.cell_id) if options.checkpoints and options.checkpoint_dir else None
    )
    outcome = train(parts, cell.training, options, on_epoch, checkpoint=checkpoint, best=best)
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
    if cell.training.stop_after_collapse:
        metrics["stopped_early"] = int(outcome.stopped_early_epoch is not None)
        metrics["stopped_early_epoch"] = outcome.stopped_early_epoch
    if checkpoint is not None and not options.keep_checkpoints:
        checkpoint.remove()
    keys = sorted({k for rec in outcome.history for k in rec})
    curves = {k: [rec.get(k) for rec in outcome.history] for k in keys}
    assert outcome.cost is not None  # train() sets it once training ends
    cost: CostRecord = {**outcome.cost, "eval_time_s": time.perf_counter() - t_eval}
    out: CellOutcome = {
        "metrics": metrics,
        "curves": curves,
        "cost": cost,
        "plugins": component_owners(cell, registry),
        "provenance": provenance(cell, options, device, parts.runtime),
    }
    if validation is not None:
        out["provenance"]["data"]["validation"] = validation
    weights = None
    if options.save_models:  # the driver writes them to the weights store
        weights = {FINAL: weights_bytes(parts.model)}
        if best_model is not None:
            weights[BEST] = weights_bytes(best_model)
    return out, weights


def held_out_validation(cell: Cell, parts: CellParts) -> tuple[BestCheckpoint | None, ValidationRecord | None]:
    """With ``training.val_size`` > 0: take the validation split out of the training set of
    ``parts.runtime`` (which is replaced) and return the tracker of the best epoch and the split's
    record; else (None, None)."""
    val_size = cell.training.val_size
    if val_size <= 0:
        return None, None
    runtime = parts.runtime
    rest, val_x, val_y, record = split_validation(runtime.data, val_size, cell.seed)
    parts.runtime = replace(runtime, data=rest)
    best = BestCheckpoint(
        val_x.to(runtime.device),  # the training set may be on the host (cobench.run.placement)
        val_y.to(runtime.device),
        runtime.injection,
        runtime.eps,
        runtime.eval_batch_size,
        runtime.seed,
    )
    return best, record


def provenance(cell: Cell, options: RunOptions, device: torch.device, runtime: CellRuntime) -> ProvenanceRecord:
    """Who computed the result and on what (see :mod:`cobench.store.provenance`)."""
    components = [(kind, getattr(cell, singular(kind)).name) for kind in GRID_KINDS if kind != "evaluators"]
    components += [("evaluators", e.name) for e in cell.evaluators]
    return {
        "cobench": cobench_record(),
        "components": components_record(get_plugin_manager(), components),
        "data": {
            "loaded": dataset_fingerprint(cell.dataset, options),
            "injected": fingerprint(getattr(runtime.injection, "carriers", None), runtime.test_x, runtime.data.test_y),
        },
        "machine": machine_record(device),
        "numerics": numerics_record(),
        "execution": {
            "executor": options.executor,
            "cells_per_device": options.cells_per_device,
            "train_data": runtime.train_data,
        },
    }


def component_owners(cell: Cell, registry: Registry) -> PluginsRecord:
    """The plugin that registered each of ``cell``'s components (evaluators: name -> plugin)."""
    return {
        "datasets": registry.owner("datasets", cell.dataset.name),
        "models": registry.owner("models", cell.model.name),
        "methods": registry.owner("methods", cell.method.name),
        "injections": registry.owner("injections", cell.injection.name),
        "evaluators": {e.name: registry.owner("evaluators", e.name) for e in cell.evaluators},
    }
