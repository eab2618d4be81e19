"""Where a cell's data lives: on the training device when it fits a memory budget, else the
training set stays on the host and each minibatch is copied over (pinned, asynchronously).

Resident data is what makes a small-image cell fast on a GPU (no host round trip per step), but
an ImageNet-size training set in float32 does not fit any GPU. So the training images are kept as
uint8 wherever that is lossless (every value exactly k/255, as the image datasets produce them: a
quarter of the memory) and each minibatch is decoded to float32 when it is gathered, and the
budget is counted on what is actually kept. The budget is stated, recorded in each result's
provenance (``execution.train_data``), and neither it nor the compaction changes what a cell
computes: the same permutation, on the same generator, picks the same minibatches either way, and
decoding gives back the dataset's float32 values bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from cobench.api import DataSplits
from cobench.errors import ConfigError

#: with ``data_budget_gb = 0`` (automatic) the cells sharing a device may take this share of its free memory
AUTO_SHARE = 0.5


def budget_bytes(device: torch.device, data_budget_gb: float, cells_per_device: int = 1) -> float:
    """The bytes one cell's data may take on ``device``: the stated budget, or (0 = automatic) half of
    a CUDA device's free memory now, split between the ``cells_per_device`` cells that share it (each
    worker measures the free memory when its cell starts, so K workers must not each claim half);
    unbounded on the CPU and on MPS, whose memory is the host's."""
    if data_budget_gb < 0:
        raise ConfigError(f"data_budget_gb must be >= 0 (0 = automatic), got {data_budget_gb}")
    if data_budget_gb > 0:
        return data_budget_gb * 1e9
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return AUTO_SHARE * free / max(1, cells_per_device)
    return float("inf")


#: rows converted at a time when a split is checked for a lossless uint8 form (bounds the extra memory)
COMPACT_CHUNK = 4096


def as_uint8(x: Tensor) -> Tensor | None:
    """``x`` as uint8 when every value is exactly k/255 (:func:`decode` gives ``x`` back bit for bit,
    as the image datasets compute it), else None."""
    if x.dtype != torch.float32 or x.numel() == 0:
        return None
    out = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    for i in range(0, len(x), COMPACT_CHUNK):
        part = x[i : i + COMPACT_CHUNK]
        u8 = (part * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        if not torch.equal(decode(u8), part):
            return None
        out[i : i + COMPACT_CHUNK] = u8
    return out


def decode(x: Tensor) -> Tensor:
    """Images in [0, 1] as float32: uint8 ones divided by 255 (the datasets' own conversion, so
    bit for bit what they returned), anything else as it is."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def nbytes(*tensors: Tensor) -> int:
    return sum(t.element_size() * t.nelement() for t in tensors)


def device_bytes(*tensors: Tensor) -> int:
    """Bytes ``tensors`` hold, a tensor given twice counted once (an injection that returns its
    input makes no copy)."""
    return sum({t.data_ptr(): nbytes(t) for t in tensors}.values())


@dataclasses.dataclass(frozen=True)
class PlacedData:
    """A cell's data where it trains: the test set on the device, the training set there or on the host."""

    data: DataSplits
    #: the test images the evaluators see (after the cell's injection), on the device
    test_x: Tensor
    #: where the training set is: "device", or "host" when it does not fit what the test set leaves
    train_data: str
    #: what the data take on the device, the injected test copy included
    device_bytes: int


def gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def place_data(
    data: DataSplits,
    device: torch.device,
    data_budget_gb: float,
    *,
    inject: Callable[[Tensor, Tensor], Tensor] | None = None,
    cells_per_device: int = 1,
) -> PlacedData:
    """``data`` placed within the data budget (:func:`budget_bytes`). Evaluators read the test set on
    the device, so it goes there first, with the copy ``inject`` (the cell's injection) makes of it;
    a test set that alone exceeds the budget is a :class:`ConfigError`. The training set goes to the
    device too when it fits what is left, else it stays on the host (pinned for CUDA) and
    minibatches are copied over. ``data`` may hold uint8 images already (the process's compact
    cache). The training images come back as uint8 where that is lossless: whoever gathers a
    minibatch from them calls :func:`decode`. The test images are float32."""
    budget = budget_bytes(device, data_budget_gb, cells_per_device)
    test_x = decode(data.test_x)
    clean = nbytes(test_x, data.test_y)
    if clean > budget:  # refused before it is copied over
        raise ConfigError(over_budget(device, clean, budget, "the test set"))
    test_x, test_y = test_x.to(device), data.test_y.to(device)
    injected = test_x if inject is None else inject(test_x, test_y)
    used = device_bytes(test_x, test_y, injected)
    if used > budget:
        raise ConfigError(over_budget(device, used, budget, "the test set with its injected copy"))
    compact = as_uint8(data.train_x)  # None when already uint8 (a cached split) or not lossless
    train_x = data.train_x if compact is None else compact
    train_y = data.train_y
    where = "device" if used + nbytes(train_x, train_y) <= budget else "host"
    if where == "device":
        train_x, train_y = train_x.to(device), train_y.to(device)
        used += nbytes(train_x, train_y)
    else:
        train_x, train_y = train_x.cpu(), train_y.cpu()
        if device.type == "cuda":
            train_x, train_y = train_x.pin_memory(), train_y.pin_memory()
    placed = dataclasses.replace(data, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    return PlacedData(placed, injected, where, used)


def over_budget(device: torch.device, needed: float, budget: float, what: str) -> str:
    return (
        f"{what} takes {gb(needed)} on {device}, over the data budget of {gb(budget)} "
        "(--data-budget-gb; 0 = half the free GPU memory, shared by --cells-per-device): evaluators "
        "read the test set on the device; raise --data-budget-gb or run fewer cells per device"
    )


def batch_to_device(batch: Tensor, device: torch.device) -> Tensor:
    """A minibatch gathered from host-resident data, on ``device``: through pinned memory so that
    the copy to a GPU is asynchronous (the gathered rows are not pinned themselves)."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
