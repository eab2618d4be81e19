"""``cobench leaderboard build --dry-run``: cell count and device-hours from a measured step cost.

For each method of the board, a few training steps of the board's model, method and batch size
are timed on the current device on random images of the dataset's shape (read from the files
under ``--data-dir`` when present, else declared by the dataset class), then scaled by the number of steps a
cell trains. The final PGD evaluation is timed the same way (one attack step on an evaluation
batch, scaled by steps x restarts x test samples). Per-epoch probes and AutoAttack are not in
the estimate. Boards estimated together share a :class:`StepCosts`: a step cost is measured
once per model, method, batch size and optimiser steps per batch, and reused by every board
with the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch

from cobench.api import DataSplits
from cobench.attacks import input_gradient
from cobench.errors import CobenchError
from cobench.grid.cell import Cell
from cobench.leaderboard.spec import Leaderboard
from cobench.options import RunOptions
from cobench.plugins import get_plugin_manager
from cobench.run.dataset_cache import load_compact
from cobench.run.device import resolve_device, seed_everything, true_fp32
from cobench.run.runtime import CellParts, CellRuntime
from cobench.run.training import Normalize, sync, train

#: evaluators whose final attack is timed, and the parameters that give (steps, restarts, samples)
PGD_EVALUATORS = ("pgd", "pgd-50-10")


def dataset_facts(cell: Cell, options: RunOptions) -> tuple[bool, tuple[int, int, int], int, int, int]:
    """(files found, image shape, train size, test size, classes): from the files when present,
    else from what the dataset class declares."""
    cls = get_plugin_manager().registry.get("datasets", cell.dataset.name)
    try:
        data = load_compact(cell.dataset, RunOptions(device=options.device, data_dir=options.data_dir))
        return True, data.image_shape, len(data.train_x), len(data.test_x), data.num_classes
    except CobenchError:
        facts: list[Any] = [getattr(cls, k, None) for k in ("image_shape", "train_size", "test_size")]
        if None in facts:
            raise CobenchError(
                f"dataset {cell.dataset.name!r} is not under {options.data_dir!r} and declares no "
                "image_shape/train_size/test_size; put its files there to estimate the board's cost"
            ) from None
        return False, tuple(facts[0]), int(facts[1]), int(facts[2]), int(cast(Any, cls).num_classes)


def build_model(cell: Cell, shape: tuple[int, int, int], classes: int, mean, std, device: torch.device):
    reg = get_plugin_manager().registry
    net = reg.get("models", cell.model.name)(**cell.model.kwargs()).build(num_classes=classes, image_shape=shape)
    layers = [Normalize(mean, std)] if cell.training.normalize else []
    return torch.nn.Sequential(*layers, net).to(device)


def time_per_step(
    cell: Cell, shape, classes: int, device: torch.device, steps: int, options: RunOptions | None = None
) -> float:
    """Seconds per training step (one minibatch, all its replays) of ``cell``'s method, model and batch
    size, with the run's ``--channels-last`` and ``--compile`` (the second epoch is timed: the first
    warms up, compilation included)."""
    options = options or RunOptions()
    reg = get_plugin_manager().registry
    seed_everything(0)
    bs = cell.training.batch_size
    g = torch.Generator().manual_seed(0)
    x = torch.rand(bs * steps, *shape, generator=g)
    y = torch.randint(0, classes, (bs * steps,), generator=g)
    mean, std = (0.5,) * shape[0], (0.25,) * shape[0]
    data = DataSplits(x, y, x[:bs], y[:bs], classes, mean, std).to(device)
    model = build_model(cell, shape, classes, mean, std, device)
    method = reg.get("methods", cell.method.name)(**cell.method.kwargs())
    injection = reg.get("injections", "none")()
    runtime = CellRuntime(
        eps=cell.eps / 255,
        beta=0.0,
        seed=0,
        device=device,
        data=data,
        injection=injection,
        test_x=data.test_x,
        eval_batch_size=bs,
        probe_size=len(data.test_x),
    )
    training = replace(cell.training, epochs=2 * max(1, int(method.replays)))  # two epochs: the first warms up
    parts = CellParts(model=model, method=method, evaluators=[], runtime=runtime)
    outcome = train(
        parts, training, RunOptions(device=str(device), channels_last=options.channels_last, compile=options.compile)
    )
    return outcome.history[-1]["epoch_train_time_s"] / steps


def time_per_attack_step(cell: Cell, shape, classes: int, device: torch.device, channels_last: bool = False) -> float:
    """Seconds of one PGD step (forward + input gradient) on one evaluation batch, model in eval mode
    and in true fp32, as evaluators run it (in channels-last memory format with ``channels_last``;
    evaluators never run compiled)."""
    bs = cell.training.eval_batch_size
    x = torch.rand(bs, *shape, device=device)
    y = torch.randint(0, classes, (bs,), device=device)
    model = build_model(cell, shape, classes, (0.5,) * shape[0], (0.25,) * shape[0], device).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with true_fp32():
        input_gradient(model, x, y, torch.zeros_like(x))  # warm-up
        sync(device)  # the warm-up's queued kernels must not run inside the timed interval
        t0 = time.perf_counter()
        input_gradient(model, x, y, torch.zeros_like(x))
        sync(device)
        return time.perf_counter() - t0


def eval_attack_steps(cell: Cell, test_size: int) -> int:
    """Attack steps of the cell's final PGD evaluators, in evaluation batches."""
    total = 0
    for ev in cell.evaluators:
        if ev.name not in PGD_EVALUATORS:
            continue
        p = ev.params
        samples = min(p.get("max_samples") or test_size, test_size)
        batches = math.ceil(samples / cell.training.eval_batch_size)
        total += p.get("steps", 0) * max(1, p.get("restarts", 1)) * batches
    return total


@dataclass
class StepCosts:
    """Measured seconds per training step and per evaluation attack step, by what decides them."""

    train: dict[tuple, float] = field(default_factory=dict)
    attack: dict[tuple, float] = field(default_factory=dict)


def train_cost_key(cell: Cell, shape: tuple[int, int, int]) -> tuple:
    t = cell.training
    return (cell.model, cell.method.name, shape, t.batch_size, t.optimizer_steps, t.amp)


def estimate_board(
    lb: Leaderboard,
    plan: list[tuple[Cell, Path, Any]],
    *,
    options: RunOptions,
    steps: int,
    costs: StepCosts | None = None,
) -> Iterator[str]:
    """Lines of the dry-run report: cells, measured step costs per method, device-hours in total.
    ``steps = 0`` reports the cells only; ``costs`` carries measurements over from earlier boards."""
    dev = resolve_device(options.device)
    costs = costs if costs is not None else StepCosts()
    todo = [cell for cell, _, done in plan if done is None]
    yield f"{lb.name}: {len(plan)} cells, {len(plan) - len(todo)} finished, {len(todo)} to train"
    if not todo:
        return
    if steps == 0:
        yield "  step costs not measured (--measure-steps 0): no device-hours estimate"
        return
    found, shape, n_train, test_size, classes = dataset_facts(todo[0], options)
    reg = get_plugin_manager().registry
    yield (
        f"  step costs measured on {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}), "
        f"{steps} step(s) per method on random images of shape {shape} "
        f"({'dataset found' if found else 'dataset not under --data-dir: sizes it declares'}); model {lb.model}"
        + (", channels-last" if options.channels_last else "")
        + (", compiled" if options.compile else "")
    )
    first = todo[0]
    attack_key = (first.model, shape, first.training.eval_batch_size)
    if attack_key not in costs.attack:
        costs.attack[attack_key] = time_per_attack_step(first, shape, classes, dev, options.channels_last)
    attack_step = costs.attack[attack_key]
    shown: set[tuple] = set()
    total = 0.0
    for cell in todo:
        name, key = cell.method.name, train_cost_key(cell, shape)
        if key not in shown:
            reused = key in costs.train
            if not reused:
                costs.train[key] = time_per_step(cell, shape, classes, dev, steps, options)
            shown.add(key)
            yield f"  {name}: {costs.train[key]:.3f} s/step" + (" (measured for an earlier board)" if reused else "")
        replays = max(1, int(reg.get("methods", name).replays))
        bs = cell.training.batch_size
        steps_per_epoch = n_train // bs + (1 if n_train % bs >= 2 else 0)
        train_s = math.ceil(cell.training.epochs / replays) * steps_per_epoch * costs.train[key]
        total += train_s + eval_attack_steps(cell, test_size) * attack_step
    yield (
        f"  estimate: {total / 3600:.3g} device-hours on {dev} for {len(todo)} cells "
        f"(training + final PGD evaluation; per-epoch probes and AutoAttack not included)"
    )
