"""One cell runtime: the worker builds it once, training reads it, the evaluators' context is built from it."""

from __future__ import annotations

import pytest
import torch

from cobench.api import DataSplits, EvalContext
from cobench.grid.cell import Cell
from cobench.grid.resolve import resolve
from cobench.options import RunOptions
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import build_parts, held_out_validation
from cobench.run.runtime import CellParts, CellRuntime
from cobench.testing import tiny_grid_spec


def tiny_data() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 8, 8, generator=g)
    return DataSplits(x, torch.arange(12) % 2, x[:6], torch.arange(6) % 2, 2, (0.5,), (0.25,))


def a_cell(**training) -> Cell:
    spec = tiny_grid_spec(["fgsm"], injections=["low-freq"], betas=[8])
    spec.override(**training)
    (cell,) = resolve(spec, get_plugin_manager().registry)
    return cell


def test_the_worker_builds_one_runtime_that_the_evaluators_context_repeats():
    cell = a_cell()
    registry = get_plugin_manager().registry
    parts = build_parts(cell, RunOptions(device="cpu"), torch.device("cpu"), registry)
    runtime, ctx = parts.runtime, parts.eval_ctx
    assert (runtime.eps, runtime.beta, runtime.seed) == (cell.eps / 255, cell.beta / 255, cell.seed)
    assert (ctx.eps, ctx.seed, ctx.device, ctx.num_classes) == (
        runtime.eps,
        runtime.seed,
        runtime.device,
        runtime.num_classes,
    )
    assert ctx.test_x is runtime.test_x and ctx.clean_test_x is runtime.data.test_x
    assert ctx.injection is runtime.injection and ctx.batch_size == cell.training.eval_batch_size
    assert len(ctx.probe_x) == min(cell.training.probe_size, len(runtime.test_x))


def test_the_runtime_is_frozen_and_the_validation_split_replaces_it():
    cell = a_cell(val_size=16)
    parts = build_parts(cell, RunOptions(device="cpu"), torch.device("cpu"), get_plugin_manager().registry)
    before = parts.runtime
    with pytest.raises(AttributeError):
        before.eps = 1.0  # type: ignore[misc]
    best, record = held_out_validation(cell, parts)
    assert best is not None and record is not None and record["size"] == 16
    assert len(parts.runtime.data.train_x) == len(before.data.train_x) - 16
    assert parts.runtime.test_x is before.test_x  # the test set is untouched


def test_hand_built_parts_read_their_runtime_from_the_evaluation_context():
    data, injection = tiny_data(), get_plugin_manager().registry.get("injections", "none")()
    ctx = EvalContext(
        eps=4 / 255,
        test_x=data.test_x,
        test_y=data.test_y,
        clean_test_x=data.test_x,
        injection=injection,
        num_classes=2,
        device=torch.device("cpu"),
        batch_size=3,
        seed=7,
        probe_x=data.test_x[:2],
        probe_y=data.test_y[:2],
    )
    parts = CellParts(
        model=torch.nn.Flatten(), method=None, data=data, injection=injection, evaluators=[], eval_ctx=ctx
    )
    assert parts.eval_ctx is ctx
    assert parts.runtime == CellRuntime(4 / 255, None, 7, torch.device("cpu"), data, injection, data.test_x, 3, 2)
    with pytest.raises(TypeError, match="runtime"):
        CellParts(model=torch.nn.Flatten(), method=None, evaluators=[], eval_ctx=ctx)
