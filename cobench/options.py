"""How cells run, as opposed to what they are: the one object every run option lives in.

A :class:`RunOptions` travels unchanged from the command line through the runner and the
executors to every worker (it is frozen and picklable); none of it enters a cell's config
or its hash. Progress reporting is not an option: it is passed separately, because it
only exists in the driver process (:class:`Progress`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, cast

from cobench.params import ComponentSpec


@dataclass(frozen=True)
class RunOptions:
    """Options of a run that change where and how fast cells run, never what they compute."""

    #: auto, cpu, cuda, cuda:N or mps (see :func:`cobench.run.device.resolve_device`)
    device: str = "auto"
    #: where datasets are read from (and downloaded to)
    data_dir: str = "data"
    download: bool = False
    #: channels-last memory format for model and batches (same arithmetic, see benchmarks/speed.py)
    channels_last: bool = False
    #: keep each cell's final (and best-epoch) weights in the weights store (safetensors; see
    #: :mod:`cobench.store.weights`)
    save_models: bool = False
    #: the weights store's fsspec URL or folder ("" = $COBENCH_WEIGHTS_STORE, else the cache folder)
    weights_store: str = ""
    #: run loggers as resolved component specs (see cobench.loggers.tracking.resolve_loggers)
    loggers: tuple[ComponentSpec, ...] = ()
    #: torch.compile the model for the training steps (evaluators run the model itself); see benchmarks/speed.py
    compile: bool = False
    #: per-epoch mid-cell checkpoints, so a killed cell resumes after its last epoch (cobench.run.checkpoints)
    checkpoints: bool = True
    #: where they go ("" = ``checkpoints/`` under the results directory); shared storage on a cluster
    checkpoint_dir: str = ""
    #: keep a cell's checkpoint once it finished (by default it is removed)
    keep_checkpoints: bool = False
    #: GB of device memory a cell's data may take there, its test set and injected test copy included; past
    #: it the training set stays on the host and minibatches are copied over (0 = half the device's free
    #: memory on CUDA, split between the cells sharing it; see cobench.run.placement)
    data_budget_gb: float = 0.0
    #: deterministic algorithms, deterministic cuDNN and cuBLAS (see cobench.run.device.configure_numerics)
    deterministic: bool = False
    #: cuDNN autotuning (kernels picked by timing: faster convolutions, last bits may differ between runs)
    cudnn_benchmark: bool = False
    #: the executor running the cell and how many cells share its device at once, recorded in each
    #: result's provenance so that times per step taken under different sharing are never compared
    #: (set by the runner and the executors, not by the user)
    executor: str = "local"
    cells_per_device: int = 1
    #: the grid a cell belongs to, as run loggers group runs (``<results folder>-<hash of its cells>``;
    #: set by the runner, see :func:`cobench.loggers.tracking.grid_group`)
    run_group: str = ""

    @classmethod
    def of(cls, options: RunOptions | Mapping[str, Any] | None) -> RunOptions:
        """``options`` as a :class:`RunOptions` (a mapping names its fields; unknown names are an error)."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        options = cast(Mapping[str, Any], options)  # not an instance of cls: a mapping of field names
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(
                f"unknown run option(s) {', '.join(unknown)}; valid: {', '.join(f.name for f in fields(cls))}"
            )
        return cls(**options)


class Progress(Protocol):
    """What the driver is told while a grid runs (see :class:`cobench.run.progress.GridProgress`)."""

    def start_grid(self, total: int, skipped: int) -> None: ...
    def on_cell_start(self, cell: Any) -> None: ...
    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float | None]) -> None: ...
    def on_cell_done(self, cell: Any, result: dict[str, Any]) -> None: ...
    def notice(self, message: str) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    """Reports nothing (library use, tests)."""

    def start_grid(self, total: int, skipped: int) -> None:
        pass

    def on_cell_start(self, cell: Any) -> None:
        pass

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float | None]) -> None:
        pass

    def on_cell_done(self, cell: Any, result: dict[str, Any]) -> None:
        pass

    def notice(self, message: str) -> None:
        pass

    def stop(self) -> None:
        pass
