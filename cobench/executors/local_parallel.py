"""Run cells in parallel worker processes on this machine: one per GPU, or several on CPU.

Workers are started with the ``spawn`` method (safe with torch and CUDA) and each loads
the plugins afresh when it first resolves a component. Results come back to the driver as
each cell finishes, so the driver writes them one by one and an interrupted grid keeps
every finished cell.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

import torch

from cobench import hookimpl
from cobench.api import Executor
from cobench.device import resolve_device
from cobench.errors import ConfigError
from cobench.options import Progress, RunOptions
from cobench.results import failed_result


@dataclass(frozen=True)
class Slot:
    """What one worker process runs on."""

    device: str
    threads: int


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_slots(device: torch.device, n_cells: int, workers: int = 0, cores: int | None = None,
               gpu_count: int | None = None, cells_per_device: int = 0) -> list[Slot]:
    """One slot per worker process.

    CUDA given as ``auto``/``cuda``: ``cells_per_device`` workers per visible GPU (default
    one; ``workers`` more or fewer cycle over them), each pinned to its ``cuda:i``: small
    models leave a GPU mostly idle, so several cells can share one. An explicit ``cuda:N``
    or ``mps``: ``cells_per_device`` workers (default one) on that device. CPU: ``workers``
    processes, else ``cells_per_device``, else one per core, splitting the cores between them
    with ``torch.set_num_threads``. Never more workers than cells.
    """
    cores = available_cores() if cores is None else cores
    per_device = cells_per_device or 1
    if device.type == "cuda" and device.index is None:
        gpus = torch.cuda.device_count() if gpu_count is None else gpu_count
        n = workers or gpus * per_device
        devices = [f"cuda:{i % gpus}" for i in range(n)]
    elif device.type == "cpu":
        n = workers or cells_per_device or cores
        devices = ["cpu"] * n
    else:
        n = workers or per_device
        devices = [str(device)] * n
    n = max(1, min(n, n_cells))
    threads = max(1, cores // n)
    return [Slot(d, threads) for d in devices[:n]]


# --------------------------------------------------------------------------- worker side
_slot: Slot | None = None


def _init_worker(slots: "mp.Queue[Slot]", parent_pid: int) -> None:
    global _slot
    _slot = slots.get(timeout=60)
    torch.set_num_threads(_slot.threads)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose driver was killed (SIGKILL leaves no chance to clean up) exits too."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(1.0)


def _run_cell(work: Callable[..., dict], config: dict[str, Any], options: RunOptions) -> dict:
    assert _slot is not None, "worker was not initialised"
    return work(config, replace(options, device=_slot.device))


# --------------------------------------------------------------------------- driver side
class LocalParallelExecutor(Executor):
    """Worker processes on this machine: one per GPU, or `workers` on CPU sharing the cores."""

    name = "local-parallel"
    ranges = {"workers": ">= 0"}

    def __init__(self, workers: int = 0, cells_per_device: int = 0):
        for key, value in (("workers", workers), ("cells_per_device", cells_per_device)):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"local-parallel: {key} must be a non-negative integer (0 = automatic), got {value!r}")
        self.workers = workers
        self.cells_per_device = cells_per_device

    def run(self, cells: list[Any], work: Callable[..., dict], options: RunOptions,
            progress: Progress) -> Iterable[tuple[Any, dict]]:
        """Per-epoch progress stays in the workers; the driver reports each cell as it finishes."""
        if not cells:
            return
        slots = plan_slots(resolve_device(options.device), len(cells), self.workers,
                           cells_per_device=self.cells_per_device)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for slot in slots:
            queue.put(slot)
        pool = ProcessPoolExecutor(max_workers=len(slots), mp_context=ctx, initializer=_init_worker,
                                   initargs=(queue, os.getpid()))
        pending: dict[Future, Any] = {pool.submit(_run_cell, work, cell.config(), options): cell for cell in cells}
        finished = False
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # the worker process died (OOM kill, crash)
                        result = failed_result(cell, exc, f"a local-parallel worker process died while running "
                                                            f"this cell: {type(exc).__name__}: {exc}")
                    yield cell, result
            finished = True
        finally:
            if not finished:  # interrupted: in-flight cells are abandoned, as documented
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            queue.close()


@hookimpl
def register_executors(register):
    register(LocalParallelExecutor)
