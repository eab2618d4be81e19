"""Mid-cell checkpoints: a cell's whole training state after each epoch, so that a killed or
preempted cell resumes from its last finished epoch and ends with the same metrics.

A checkpoint holds the model, the optimiser, the method's state (:meth:`cobench.api.Method.state_dict`),
every random number generator the loop draws from (the cell's generator; torch's, the cell's CUDA
device's, Python's and NumPy's global ones) with the type of device they belong to, the per-epoch
history and the loop's counters. A checkpoint resumes on the same type of device only (the cell's
generator cannot move between CPU and CUDA), and says so in one line otherwise. It is
written with ``torch.save`` to a temporary file and renamed into place (a reader never sees
half a file), and read with ``torch.load(weights_only=True)``: plain containers, numbers,
strings and tensors only, never arbitrary pickled objects.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
import torch
from torch import Tensor

from cobench.atomic import write_atomic
from cobench.errors import CobenchError

if TYPE_CHECKING:
    from cobench.run.best_checkpoint import BestState


class _RngStates(TypedDict):
    generator: Tensor
    torch: Tensor
    python: tuple[Any, ...]
    numpy: list[Any]


class RngStates(_RngStates, total=False):
    """Every generator a cell draws from (:func:`rng_states`) as a checkpoint holds them."""

    #: the type of device the cell trained on (checkpoints from before it was recorded lack it)
    device: str
    #: the cell's CUDA device's generator (older checkpoints: a list, every visible GPU's)
    cuda: Tensor | list[Tensor] | None


class _LoopState(TypedDict):
    epoch: int
    model: dict[str, Tensor]
    optimizer: dict[str, Any]  # torch's own state dicts
    scheduler: dict[str, Any]
    method: dict[str, Any]  # the method's (cobench.api.Method.state_dict)
    rng: RngStates
    updates: int
    history: list[dict[str, Any]]
    train_time: float
    epoch_times: list[float]
    batch_samples: int
    passes: list[int]


class LoopState(_LoopState, total=False):
    """A training loop's whole state after an epoch (:meth:`cobench.run.training.TrainingLoop.state_dict`)."""

    #: wall seconds trained so far (checkpoints written before it was kept lack it)
    wall_s: float
    #: the best epoch's tracker, with ``training.val_size``
    best: BestState


class CheckpointState(LoopState):
    """A checkpoint file: the loop's state and the cell it belongs to."""

    cell_id: str


def checkpoint_path(directory: Path | str, cell_id: str) -> Path:
    return Path(directory) / f"{cell_id}.pt"


def save_checkpoint(path: Path, state: CheckpointState) -> None:
    """``torch.save``, atomically."""
    write_atomic(path, lambda f: torch.save(state, f))


#: what a checkpoint that cannot be read is renamed to (kept for inspection; the cell restarts)
CORRUPT_SUFFIX = ".corrupt"


def load_checkpoint(path: Path, cell_id: str) -> CheckpointState | None:
    """The checkpoint of this cell at ``path``, or None when there is none (or it is another cell's).

    A file that cannot be read as a checkpoint (truncated, garbage, not a dict) is set aside as
    ``<name>.corrupt`` with a one-line message naming it, and the cell starts from scratch:
    retrying would hit the same file every time."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a checkpoint")
    except Exception as exc:
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        os.replace(path, aside)
        print(
            f"warning: checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
            f"moved to {aside}, the cell restarts from its first epoch",
            file=sys.stderr,
            flush=True,
        )
        return None
    # a dict of plain values and tensors (weights_only), written by CellCheckpoint.save for this cell
    return cast(CheckpointState, state) if state.get("cell_id") == cell_id else None


def remove_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- random number generators
#: bytes of a CPU generator's state (mt19937); a CUDA generator's (Philox seed and offset) is 16
CPU_GENERATOR_STATE_BYTES = 5056


class CheckpointDeviceError(CobenchError):
    """A checkpoint written on one kind of device, resumed on another."""


def rng_states(generator: torch.Generator, device: torch.device | None = None) -> RngStates:
    """Every generator a cell draws from, and the type of the device it trains on. Of CUDA's
    generators only the cell's own device's is saved, so a resume with fewer GPUs visible works."""
    device = torch.device(device if device is not None else generator.device)
    # numpy's stubs pick the dict overload for the default (legacy=True), which returns the MT19937 tuple
    np_state = cast(tuple[Any, ...], np.random.get_state())
    return {
        "device": device.type,
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
    }


def saved_device_type(states: RngStates) -> str:
    """The device type a checkpoint's generators belong to; checkpoints that predate the record
    tell it by the size of the cell generator's state."""
    if states.get("device"):
        return str(states["device"])
    return "cpu" if states["generator"].numel() == CPU_GENERATOR_STATE_BYTES else "cuda"


def check_resume_device(states: RngStates, device: torch.device, where: Any = "the checkpoint") -> None:
    """Refuse, in one line, to resume a cell on another type of device than it was saved on."""
    saved = saved_device_type(states)
    if saved != device.type:
        raise CheckpointDeviceError(
            f"{where} was written on {saved} and this run trains on {device.type}: the cell's random number "
            f"generator lives on its device and {saved}'s state cannot continue on {device.type} (the two draw "
            f"different streams), so the cell cannot resume exactly; resume it with --device {saved}, or delete "
            f"the checkpoint to train the cell again from the start on {device.type}"
        )


def restore_rng_states(states: RngStates, generator: torch.Generator, device: torch.device | None = None) -> None:
    device = torch.device(device if device is not None else generator.device)
    check_resume_device(states, device)
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if isinstance(cuda, (list, tuple)):  # checkpoints that saved every visible GPU's state
        index = device.index if device.index is not None else (torch.cuda.current_device() if cuda else 0)
        cuda = cuda[index] if index < len(cuda) else None
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside it moved to ``device`` (checkpoints load on the CPU)."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


class CellCheckpoint:
    """The checkpoint file of one cell: ``DIR/<cell_id>.pt``."""

    def __init__(self, directory: Path | str, cell_id: str):
        self.path = checkpoint_path(directory, cell_id)
        self.cell_id = cell_id

    def load(self) -> CheckpointState | None:
        return load_checkpoint(self.path, self.cell_id)

    def save(self, state: LoopState) -> None:
        save_checkpoint(self.path, {**state, "cell_id": self.cell_id})

    def remove(self) -> None:
        remove_checkpoint(self.path)
