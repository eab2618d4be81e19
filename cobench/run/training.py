"""The training loop shared by every method: device-resident data, the protocol's per-iteration
LR and momentum schedule (torch's schedulers), SGD, optional crop/flip augmentation on the device,
the protocol's eps warm-up of the training attacks, per-epoch evaluator probes."""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cobench.api import Batch, Method, StepContext, TrainSetup
from cobench.errors import ConfigError, NonFiniteLossError
from cobench.grid.spec import CellTraining
from cobench.options import RunOptions
from cobench.run.checkpoints import (
    CellCheckpoint,
    LoopState,
    check_resume_device,
    restore_rng_states,
    rng_states,
    to_device,
)
from cobench.run.evaluation import run_evaluators
from cobench.run.placement import batch_to_device, decode

# CellParts lives with the runtime; the step-parity tests (tests/fidelity, kept unchanged) import it from here
from cobench.run.runtime import CellParts
from cobench.store.records import TrainCost

if TYPE_CHECKING:
    from cobench.run.best_checkpoint import BestCheckpoint


class Normalize(nn.Module):
    """Per-channel standardisation as the model's first layer, so attacks work in [0,1] pixel space."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def random_crop_flip(x: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Per-sample random crop (zero padding) and horizontal flip, vectorised on x's device."""
    n, c, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch_idx = torch.arange(n, device=x.device)[:, None, None, None]
        chan_idx = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch_idx, chan_idx, rows, cols]
    if flip:
        mask = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def make_scheduler(
    opt: torch.optim.Optimizer, training: CellTraining, total_updates: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The LR (and momentum) schedule of ``training.lr_schedule``, stepped once per minibatch
    after the optimiser, built from torch's own schedulers as the reference repositories build them.

    ``cyclic``: CyclicLR(base_lr=0, max_lr=lr_max, step_size_up=total * lr_peak, step_size_down=
    the rest); constructing it sets the LR of the first update to 0, and with ``cycle_momentum``
    momentum goes from ``momentum`` at LR 0 down to ``base_momentum`` at the peak (torch's
    defaults 0.9 / 0.8, which every reference keeps). ``interp``: GradAlign's np.interp of the
    LR at (update + 1) / steps_per_epoch epochs through (0, 0), (floor(epochs * lr_peak), lr_max),
    (epochs, 0). ``multistep``: MultiStepLR x0.1 at total / 2 and total * 3 / 4 (as float
    milestones, like the references). ``constant``: lr_max.
    """
    lr_max, shape = training.lr_max, training.lr_schedule
    if shape == "cyclic":
        up = total_updates * training.lr_peak
        return torch.optim.lr_scheduler.CyclicLR(
            opt,
            base_lr=0.0,
            max_lr=lr_max,
            # float step sizes, as the references pass them: torch annotates ints, computes with any number
            step_size_up=up,  # type: ignore[arg-type]
            step_size_down=total_updates - up,  # type: ignore[arg-type]
            cycle_momentum=training.cycle_momentum,
            base_momentum=training.base_momentum,
            max_momentum=training.momentum,
        )
    if shape == "interp":
        epochs = total_updates / steps_per_epoch
        peak_epoch = math.floor(epochs * training.lr_peak)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda update: float(np.interp((update + 1) / steps_per_epoch, [0, peak_epoch, epochs], [0, 1, 0]))
        )
    if shape == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            opt,
            # float milestones, as the references write them: torch annotates ints, compares with any number
            milestones=[total_updates / 2, total_updates * 3 / 4],  # type: ignore[list-item]
            gamma=0.1,
        )
    if shape == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda update: 1.0)
    raise ConfigError(f"lr_schedule must be one of cyclic, interp, multistep, constant; got {shape!r}")


def eps_warmup_scale(updates: int, warmup_updates: int) -> float:
    """The factor on the training attacks' eps before optimiser update ``updates`` (counted from 0):
    ``min(updates / warmup_updates, 1)``, so the first update trains at eps 0 and the full eps is
    reached after ``warmup_updates`` updates; 1 without warm-up. This is pdejorge/N-FGSM
    ``train.py``'s SVHN ramp (``epsilon_global * min(iter_count / n_warmup_iterations, 1)``)."""
    return 1.0 if warmup_updates <= 0 else min(updates / warmup_updates, 1.0)


class PassCounter:
    """Counts samples sent forward through the model and first-order backward out of it.

    Counting samples, not calls, makes a forward pass on a 3x-size batch (ELLE's triplets)
    cost three passes; dividing by the minibatch samples gives passes per step.
    """

    def __init__(self, model: nn.Module):
        self.forward = 0
        self.backward = 0
        self.paused = False  # evaluator probes between epochs are not training cost
        self.handle = model.register_forward_hook(self._on_forward)

    def _on_forward(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        if self.paused or not isinstance(output, Tensor):
            return
        self.forward += len(output)
        if output.requires_grad:
            output.register_hook(self._on_backward)

    def _on_backward(self, grad: Tensor) -> None:
        if not self.paused:
            self.backward += len(grad)

    def remove(self) -> None:
        self.handle.remove()


@dataclass
class TrainOutcome:
    #: per-epoch records (:meth:`TrainingLoop.probe`), also those a resumed cell read from its checkpoint
    history: list[dict[str, Any]] = field(default_factory=list)
    cost: TrainCost | None = None
    #: the epoch after which an opt-in early stop ended training (``stop_after_collapse``), else None
    stopped_early_epoch: int | None = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_amp(device: torch.device, amp: str) -> None:
    """Refuse a precision the cell's device cannot run natively: ``amp="bf16"`` on CUDA needs
    compute capability 8.0 (Ampere) or newer on *that* device. ``torch.cuda.is_bf16_supported()``
    is not used: it asks the current device, not the cell's, and by default accepts GPUs that only
    emulate bfloat16 (V100, T4), where bf16 runs slower than fp32."""
    if amp == "off":
        return
    if amp != "bf16":
        raise ConfigError(f"amp must be 'off' or 'bf16', got {amp!r}")
    if device.type == "cuda" and torch.version.hip is None:
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            raise ConfigError(
                f"amp='bf16' needs a GPU with native bfloat16 (compute capability 8.0 or newer); "
                f"{device} ({torch.cuda.get_device_name(device)}) has {major}.{minor} and would "
                'emulate it slowly: train in fp32 (amp = "off")'
            )


def step_precision(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The autocast context of a training step: bf16 autocast for ``amp="bf16"``, else nothing
    (the device is checked once per cell by :func:`check_amp`)."""
    if amp == "off":
        return contextlib.nullcontext()
    if amp != "bf16":
        raise ConfigError(f"amp must be 'off' or 'bf16', got {amp!r}")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def check_compile(method: Method, options: RunOptions) -> None:
    """``--compile`` cannot run a method that differentiates through a gradient (double backward):
    torch.compile's AOTAutograd refuses it. Said before training, in one line."""
    if options.compile and getattr(method, "double_backward", False):
        raise ConfigError(compile_refusal(method.name))


def compile_refusal(name: str) -> str:
    return (
        f"--compile cannot train method {name!r}: it differentiates through an input gradient (double "
        "backward), which torch.compile's AOTAutograd does not support; run it without --compile"
    )


#: writing checkpoints may cost at most this share of the training time (plus the first write)
CHECKPOINT_MAX_OVERHEAD = 0.05


def checkpoint_due(last_save_s: float, trained_since_s: float) -> bool:
    """Whether to write a checkpoint after this epoch: once the training done since the last one is
    long enough for a write (timed by the last one) to cost at most ``CHECKPOINT_MAX_OVERHEAD`` of
    it; the first is always due. So writes cost at most about 5 % of the training whatever the
    epoch length: a 0.5 s write after GPU epochs of 3 s comes every 4 epochs (every epoch, it
    would cost 17 %), while on a CPU, whose epochs take minutes, it comes every epoch. FGSM-PGI's
    per-sample prior and momentum make a CIFAR-10 checkpoint 1.3 GB, measured at 4.5-5.2 s to
    write on this project's machine. A killed cell redoes at most about 20 x the write time of
    training. When a checkpoint is written never changes what a resumed cell computes."""
    return last_save_s <= CHECKPOINT_MAX_OVERHEAD * trained_since_s


def train(
    parts: CellParts,
    training: CellTraining | dict[str, Any],
    options: RunOptions,
    on_epoch: Callable[[int, int, dict[str, float | None]], None] | None = None,
    checkpoint: CellCheckpoint | None = None,
    best: BestCheckpoint | None = None,
) -> TrainOutcome:
    """Train ``parts.model`` with ``parts.method``; returns per-epoch history and the measured cost.

    ``training`` is a cell's training settings (:class:`cobench.grid.spec.CellTraining`, or its dict
    form, :meth:`~cobench.grid.spec.CellTraining.as_config`); ``training.amp`` (``"off"`` or ``"bf16"``) runs the method's steps under autocast.
    ``options.channels_last`` keeps model and batches in channels-last memory format (the same
    arithmetic, faster convolutions on CPU: see benchmarks/speed.py). Evaluators always run
    in fp32 (:func:`cobench.run.evaluation.evaluation_mode`).

    ``options.compile`` hands the method ``torch.compile(model)`` (training steps only;
    evaluators get the model itself, whose varying batch shapes would recompile).
    ``checkpoint``: after the first epoch, the last, and as often between as
    :func:`checkpoint_due` allows, the whole training state is saved there, and a run that finds
    one resumes after its epoch (see :mod:`cobench.run.checkpoints`).
    ``training.stop_after_collapse`` = P > 0 ends training once the ``co`` evaluator has
    seen collapse for P epochs in a row (``stopped_early_epoch``).
    ``best`` (``training.val_size`` > 0, :mod:`cobench.run.best_checkpoint`) measures the held-out
    validation split after every epoch (``val_pgd_acc``) and keeps the best epoch's weights.
    """
    loop = TrainingLoop(parts, CellTraining.of(training), options, best)
    saved = checkpoint.load() if checkpoint is not None else None
    if checkpoint is not None and saved is not None:  # resume after the last finished epoch, exactly
        loop.resume(saved, f"checkpoint {checkpoint.path}")
    saves = CheckpointCadence()

    def save_checkpoint(target: CellCheckpoint, done: int) -> None:
        target.save(loop.state_dict(done))

    try:
        for epoch in range(loop.start_epoch, loop.epochs):
            seconds = loop.train_epoch(epoch)
            record = loop.probe(epoch, seconds)
            if on_epoch is not None:
                on_epoch(epoch + 1, loop.epochs, record)
            if loop.collapsed_for_long_enough():
                loop.outcome.stopped_early_epoch = epoch + 1
                break
            saves.trained(seconds)
            if checkpoint is not None and (epoch + 1 == loop.epochs or saves.due()):
                saves.timed(functools.partial(save_checkpoint, checkpoint, epoch + 1))
    finally:
        loop.counter.remove()
    loop.outcome.cost = loop.cost(checkpoint_s=saves.total_s)
    return loop.outcome


class CheckpointCadence:
    """When to write the next checkpoint (:func:`checkpoint_due`), and what writing them cost."""

    def __init__(self) -> None:
        self.last_s = 0.0  # the last write's cost
        self.since_s = 0.0  # training time since it
        self.total_s = 0.0  # all writes

    def trained(self, seconds: float) -> None:
        self.since_s += seconds

    def due(self) -> bool:
        return checkpoint_due(self.last_s, self.since_s)

    def timed(self, save: Callable[[], None]) -> None:
        start = time.perf_counter()
        save()
        self.last_s = time.perf_counter() - start
        self.total_s += self.last_s
        self.since_s = 0.0


@dataclass(frozen=True)
class LoopPlan:
    """How long a cell trains, fixed before its first step."""

    n_train: int
    batch_size: int
    steps_per_epoch: int
    #: epochs of passes over the data: a replaying method (Free-AT) makes the same number of
    #: optimiser updates in ``training.epochs / replays`` of them
    epochs: int
    replays: int
    #: updates over which the training attacks' eps ramps up (``training.eps_warmup_epochs``)
    warmup_updates: int

    @classmethod
    def of(cls, n_train: int, training: CellTraining, replays: int) -> LoopPlan:
        bs = training.batch_size
        steps = n_train // bs + (1 if n_train % bs >= 2 else 0)  # a trailing batch of 1 would break BatchNorm
        # an epoch of updates is steps_per_epoch of them, also for replaying methods (as training.epochs)
        warmup = training.eps_warmup_epochs * steps
        return cls(n_train, bs, steps, max(1, math.ceil(training.epochs / replays)), replays, warmup)

    @property
    def total_updates(self) -> int:
        return self.epochs * self.steps_per_epoch * self.replays


class EpochSums:
    """The training loss and accuracy summed over one epoch's minibatches, on the device."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.seen = 0

    def add(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        self.loss += loss.detach().float() * len(y)
        self.correct += (logits.detach().argmax(1) == y).sum()
        self.seen += len(y)

    def means(self) -> tuple[float, float]:
        """(mean loss, accuracy) of the epoch; one host sync each."""
        return (self.loss / max(1, self.seen)).item(), (self.correct / max(1, self.seen)).item()


@dataclass
class LoopTally:
    """What a cell's training has done so far, carried across a checkpoint's resume."""

    updates: int = 0
    train_time: float = 0.0
    epoch_times: list[float] = field(default_factory=list)
    batch_samples: int = 0  # minibatch samples trained on, to turn sample counts into passes per step
    #: wall seconds of this run start here; earlier, interrupted runs' come from the checkpoint
    wall_start: float = field(default_factory=time.perf_counter)
    wall_before_resume: float = 0.0


class TrainingLoop:
    """One cell's training state, set up as the reference repositories set it up, and its steps:
    :meth:`train_epoch`, :meth:`probe` (the evaluators between epochs), :meth:`state_dict` /
    :meth:`resume` (mid-cell checkpoints) and :meth:`cost`. :func:`train` runs them in order.

    It reads the cell's eps, seed, device, data and injection from ``parts.runtime`` and its
    settings from ``training``; the evaluators' context is only handed to their probes."""

    def __init__(
        self, parts: CellParts, training: CellTraining, options: RunOptions, best: BestCheckpoint | None = None
    ):
        self.parts, self.runtime, self.training, self.options, self.best = parts, parts.runtime, training, options, best
        assert parts.method is not None, "training needs the cell's method (build_parts with with_method=True)"
        self.method = parts.method
        check_amp(self.runtime.device, training.amp)
        check_compile(self.method, options)
        if options.channels_last:
            parts.model.to(memory_format=torch.channels_last)
        self.plan = LoopPlan.of(len(self.runtime.data.train_x), training, max(1, int(self.method.replays)))
        self.generator = torch.Generator(device=self.runtime.device).manual_seed(self.runtime.seed)
        self.opt, self.scheduler, self.ctx = self._set_up()
        self.sums = EpochSums(self.runtime.device)
        self.counter = PassCounter(parts.model)
        self.outcome = TrainOutcome()
        self.tally = LoopTally()
        self.start_epoch = 0
        parts.model.train()

    def _set_up(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, StepContext]:
        """The method's setup, then the optimiser, its schedule and the methods' step context, in
        the reference repositories' order (the method's setup may draw from the generator)."""
        runtime, training, plan, model = self.runtime, self.training, self.plan, self.parts.model
        setup = TrainSetup(
            eps=runtime.eps,
            n_train=plan.n_train,
            num_classes=runtime.num_classes,
            image_shape=runtime.image_shape,
            device=runtime.device,
            generator=self.generator,
            epochs=plan.epochs,
            steps_per_epoch=plan.steps_per_epoch,
        )
        self.method.setup(setup)
        opt = torch.optim.SGD(
            model.parameters(), lr=training.lr_max, momentum=training.momentum, weight_decay=training.weight_decay
        )
        scheduler = make_scheduler(opt, training, plan.total_updates, plan.steps_per_epoch * plan.replays)
        # the protocol's clamp lifts the [0, 1] box entirely; otherwise the injection says where
        # training perturbations live (low-pass: unclamped, as the reference's clip_box=False)
        lower, upper = runtime.injection.train_bounds() if training.clamp else (-math.inf, math.inf)
        # torch.compile of a module returns an OptimizedModule (an nn.Module); torch annotates a Callable
        compiled = cast(nn.Module, torch.compile(model)) if self.options.compile else model
        return opt, scheduler, StepContext(compiled, setup, self.update, lower, upper)

    @property
    def epochs(self) -> int:
        return self.plan.epochs

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.options.channels_last else torch.contiguous_format

    def update(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        """The optimiser update a method calls from ``train_step`` (``ctx.update``)."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.scheduler.step()
        for _ in range(self.training.optimizer_steps - 1):  # ELLE's reference steps twice per batch
            self.opt.step()
        if self.training.amp != "off":
            # autocast caches its low-precision copy of every weight until its region ends, and the
            # optimiser updates the weights in place: a method that updates more than once per
            # step (Free-AT's replays) would run its next forward pass on the old weights
            torch.clear_autocast_cache()
        self.tally.updates += 1
        self.sums.add(loss, logits, y)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training data in a fresh random order; returns its seconds."""
        runtime, data, ctx, bs = self.runtime, self.runtime.data, self.ctx, self.plan.batch_size
        device = runtime.device
        sync(device)
        t0 = time.perf_counter()
        self.sums = EpochSums(device)
        perm = torch.randperm(self.plan.n_train, generator=self.generator, device=device)
        on_host = runtime.train_data == "host"
        host_perm = perm.cpu() if on_host else perm  # one host sync per epoch, not per step
        for step in range(self.plan.steps_per_epoch):
            idx = perm[step * bs : (step + 1) * bs]
            if on_host:
                rows = host_perm[step * bs : (step + 1) * bs]
                x, y = batch_to_device(data.train_x[rows], device), batch_to_device(data.train_y[rows], device)
            else:
                x, y = data.train_x[idx], data.train_y[idx]
            x = decode(x)  # uint8 training images (lossless compaction) -> float32 in [0, 1]
            if self.training.augment and (data.crop_padding or data.flip):
                x = random_crop_flip(x, data.crop_padding, data.flip, self.generator)
            x = runtime.injection.apply(x, y)
            if self.options.channels_last:
                x = x.contiguous(memory_format=self.memory_format)
            ctx.epoch, ctx.step, ctx.updates_this_step = epoch, step, 0
            ctx.eps_scale = eps_warmup_scale(self.tally.updates, self.plan.warmup_updates)
            self._step(Batch(x, y, idx))
            self.tally.batch_samples += len(y)
        sync(device)
        seconds = time.perf_counter() - t0
        self.tally.train_time += seconds
        self.tally.epoch_times.append(seconds)
        return seconds

    def _step(self, batch: Batch) -> None:
        """The method's training step on one minibatch, in the cell's precision."""
        with step_precision(self.runtime.device, self.training.amp):
            try:
                self.method.train_step(batch, self.ctx)
            except RuntimeError as exc:  # a third-party method that needs double backward
                if self.options.compile and ("double backward" in str(exc) or "create_graph" in str(exc)):
                    raise ConfigError(compile_refusal(self.method.name)) from exc
                raise
        if self.ctx.updates_this_step == 0:
            raise RuntimeError(f"method {self.method.name!r} returned from train_step without calling ctx.update()")

    def probe(self, epoch: int, seconds: float) -> dict[str, float | None]:
        """The epoch's record: training loss and accuracy, then the evaluators' probes (not
        counted as training passes) and the validation split; appended to the history."""
        loss, acc = self.sums.means()
        if not math.isfinite(loss):
            raise NonFiniteLossError(epoch + 1, self.plan.steps_per_epoch, loss)
        record: dict[str, float | None] = {
            "epoch": epoch + 1,
            "lr": self.opt.param_groups[0]["lr"],
            "train_loss": loss,
            "train_acc": acc,
            "epoch_train_time_s": seconds,
        }
        model, eval_ctx = self.parts.model, self.parts.eval_ctx
        eval_ctx.history = self.outcome.history
        self.counter.paused = True
        record = run_evaluators(
            model, self.parts.evaluators, lambda ev: ev.on_epoch_end(model, eval_ctx, epoch + 1), record
        )
        if self.best is not None:
            record["val_pgd_acc"] = self.best.observe(model, epoch + 1)
        self.counter.paused = False
        self.outcome.history.append(record)
        return record

    def collapsed_for_long_enough(self) -> bool:
        """``stop_after_collapse`` = P > 0: the ``co`` evaluator has seen collapse for P epochs in a row."""
        stop_after = int(self.training.stop_after_collapse)
        if not stop_after:
            return False
        streak = next((ev.collapse_streak for ev in self.parts.evaluators if hasattr(ev, "collapse_streak")), None)
        return streak is not None and streak(self.outcome.history) >= stop_after

    def state_dict(self, epochs_done: int) -> LoopState:
        """Everything a resumed cell needs to continue exactly where this one is."""
        tally = self.tally
        state: LoopState = {
            "epoch": epochs_done,
            "model": self.parts.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.method.state_dict(),
            "rng": rng_states(self.generator, self.runtime.device),
            "updates": tally.updates,
            "history": self.outcome.history,
            "train_time": tally.train_time,
            "wall_s": tally.wall_before_resume + time.perf_counter() - tally.wall_start,
            "epoch_times": tally.epoch_times,
            "batch_samples": tally.batch_samples,
            "passes": [self.counter.forward, self.counter.backward],
        }
        if self.best is not None:
            state["best"] = self.best.state_dict()
        return state

    def resume(self, saved: LoopState, where: str) -> None:
        """Load :meth:`state_dict`'s output; training continues after its epoch."""
        device, tally = self.runtime.device, self.tally
        check_resume_device(saved["rng"], device, where)
        self.parts.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.method.load_state_dict(to_device(saved["method"], device))
        restore_rng_states(saved["rng"], self.generator, device)
        self.start_epoch, tally.updates, self.outcome.history = saved["epoch"], saved["updates"], saved["history"]
        tally.train_time, tally.epoch_times = saved["train_time"], saved["epoch_times"]
        tally.wall_before_resume = saved.get("wall_s", 0.0)  # checkpoints written before it was kept: 0
        tally.batch_samples = saved["batch_samples"]
        self.counter.forward, self.counter.backward = saved["passes"]
        if self.best is not None and saved.get("best") is not None:
            self.best.load_state_dict(saved["best"])

    def cost(self, checkpoint_s: float) -> TrainCost:
        """What training cost: time, epochs, steps, updates and passes per step."""
        tally, steps_per_epoch = self.tally, self.plan.steps_per_epoch
        epochs_run = len(self.outcome.history)
        steps = max(1, epochs_run * steps_per_epoch)
        return {
            "train_time_s": tally.train_time,
            "epochs_run": epochs_run,
            "steps": steps,
            "optimizer_updates": tally.updates,
            "forward_passes_per_step": self.counter.forward / max(1, tally.batch_samples),
            "backward_passes_per_step": self.counter.backward / max(1, tally.batch_samples),
            # the median epoch is robust to the first epoch's one-off warm-up (allocator, kernels)
            "time_per_step_s": statistics.median(tally.epoch_times) / steps_per_epoch if tally.epoch_times else None,
            "amp": self.training.amp,
            "channels_last": self.options.channels_last,
            "checkpoint_s": checkpoint_s,  # seconds spent writing mid-cell checkpoints (not in train_time_s)
            # a resumed cell: the wall seconds its interrupted runs had trained until the checkpoint it
            # resumed from (wall_time_s is this run's only); a build's time is the sum of both
            "wall_before_resume_s": tally.wall_before_resume,
        }
