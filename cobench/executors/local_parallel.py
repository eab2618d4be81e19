"""Run cells in parallel worker processes on this machine: one per GPU, or several on CPU.

Workers are started with the ``spawn`` method (safe with torch and CUDA) and each loads
the plugins afresh when it first resolves a component. Results come back to the driver as
each cell finishes, so the driver writes them one by one and an interrupted grid keeps
every finished cell.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

import torch

from cobench import hookimpl
from cobench.api import CellsToRun, Executor
from cobench.errors import ConfigError
from cobench.options import Progress, RunOptions
from cobench.run.device import resolve_device
from cobench.store.records import plain
from cobench.store.results import failed_result


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


def plan_slots(
    device: torch.device,
    n_cells: int,
    workers: int = 0,
    cores: int | None = None,
    gpu_count: int | None = None,
    cells_per_device: int = 0,
) -> list[Slot]:
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
_started: Any = None  # the driver's SimpleQueue: (pid, cell_id) as each cell starts


def pin_device(device: str) -> None:
    """Make a worker's GPU its current CUDA device, so that anything using the current device
    (``torch.device("cuda")``, a plugin's ``.cuda()``, CUDA's RNG) lands on it and not on GPU 0."""
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))


def sharing(slots: list[Slot]) -> int:
    """How many of ``slots`` share one device at most: the cells-per-device a result records."""
    return max(Counter(slot.device for slot in slots).values(), default=1)


def _init_worker(slots: mp.Queue[Slot], started: Any, parent_pid: int) -> None:
    global _slot, _started
    _slot, _started = slots.get(timeout=60), started
    torch.set_num_threads(_slot.threads)
    pin_device(_slot.device)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose driver was killed (SIGKILL leaves no chance to clean up) exits too."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(1.0)


def _run_cell(work: Callable[..., dict], config: dict[str, Any], cell_id: str, options: RunOptions) -> dict:
    assert _slot is not None, "worker was not initialised"
    _started.put((os.getpid(), cell_id))  # a SimpleQueue writes at once: it survives an os._exit right after
    return work(config, replace(options, device=_slot.device))


# --------------------------------------------------------------------------- driver side
def death_message(exitcode: int | None) -> str:
    """What ended a worker process, as the failed cell's error says it (``None``: not known)."""
    if exitcode is None:
        return "worker process died while training this cell"
    if exitcode < 0:
        try:
            return f"worker process died (killed by signal {signal.Signals(-exitcode).name}) while training this cell"
        except ValueError:
            pass
    return f"worker process died (exit code {exitcode}) while training this cell"


class WorkerPool:
    """One ProcessPoolExecutor and what it needs to tell, once it broke, which cell's process died."""

    def __init__(self, ctx: Any, slots: list[Slot], max_workers: int):
        self.queue = ctx.Queue()
        for slot in slots[:max_workers]:
            self.queue.put(slot)
        self.started = ctx.SimpleQueue()
        self.pool = ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.queue, self.started, os.getpid()),
        )
        self.processes: dict[int, Any] = {}  # pid -> multiprocessing.Process, kept after the pool forgets them
        self.running: dict[int, str] = {}  # pid -> the cell_id it started last

    def submit(self, work: Callable[..., dict], cell: Any, options: RunOptions) -> Future:
        future = self.pool.submit(_run_cell, work, cell.config(), cell.cell_id, options)
        self.processes.update(getattr(self.pool, "_processes", None) or {})
        return future

    def note_started(self) -> None:
        """Read which worker started which cell (read often: the pipe must never fill up)."""
        while not self.started.empty():
            pid, cell_id = self.started.get()
            self.running[pid] = cell_id

    def culprits(self) -> dict[str, str]:
        """After the pool broke and shut down: cell_id -> why its process died, for each worker
        that ended on its own (the pool terminates the others with SIGTERM)."""
        self.note_started()
        return {
            self.running[pid]: death_message(p.exitcode)
            for pid, p in self.processes.items()
            if pid in self.running and p.exitcode not in (None, 0, -signal.SIGTERM)
        }

    def exitcode_of(self, cell_id: str) -> int | None:
        """The exit code of the worker that ran ``cell_id`` last (``None``: not known)."""
        self.note_started()
        pids = [pid for pid, ran in self.running.items() if ran == cell_id]
        return self.processes[pids[-1]].exitcode if pids and pids[-1] in self.processes else None

    def close(self, terminate: bool) -> None:
        if terminate:  # interrupted: in-flight cells are abandoned, as documented
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.queue.close()


class LocalParallelExecutor(Executor):
    """Worker processes on this machine: one per GPU, or `workers` on CPU sharing the cores."""

    name = "local-parallel"
    ranges = {"workers": ">= 0"}

    def __init__(self, workers: int = 0, cells_per_device: int = 0):
        for key, value in (("workers", workers), ("cells_per_device", cells_per_device)):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"local-parallel: {key} must be a non-negative integer (0 = automatic), got {value!r}"
                )
        self.workers = workers
        self.cells_per_device = cells_per_device

    def run(
        self, cells: CellsToRun, work: Callable[..., dict], options: RunOptions, progress: Progress
    ) -> Iterable[tuple[Any, dict]]:
        """Per-epoch progress stays in the workers; the driver reports each cell as it finishes.

        At most one cell per worker is submitted at a time, each taken from ``cells`` only
        then. A worker that dies (os._exit, segfault, OOM kill) breaks the whole pool: the
        cell whose process died is recorded as failed, the other cells that were in flight
        go to a fresh pool. When the dead process cannot be told apart, each of those cells
        is retried once on its own, and a cell that breaks its own pool is the culprit.
        """
        if not cells:
            return
        slots = plan_slots(
            resolve_device(options.device), len(cells), self.workers, cells_per_device=self.cells_per_device
        )
        options = replace(options, cells_per_device=sharing(slots))
        ctx = mp.get_context("spawn")
        fresh = iter(cells)
        fresh_done = False
        retry: list[Any] = []  # cells to run again in a fresh pool: innocent of its breaking
        alone: list[Any] = []  # cells of a break whose culprit is unknown: each runs once on its own
        while True:
            solo = bool(alone) and not retry
            if not solo and fresh_done and not retry:
                return
            width = 1 if solo else len(slots)
            workers = WorkerPool(ctx, slots, width)
            finished = False
            try:
                broken = yield from self._drain(
                    workers, iter([alone.pop(0)]) if solo else _chain(retry, fresh), work, options, width
                )
                finished = True
            finally:
                workers.close(terminate=not finished)
            if broken is None:
                fresh_done = fresh_done or not solo
                continue
            in_flight, why = broken
            for cell in in_flight:
                if cell.cell_id in why or len(in_flight) == 1:  # its process died
                    reason = why.get(cell.cell_id) or death_message(workers.exitcode_of(cell.cell_id))
                    yield cell, plain(failed_result(cell, BrokenProcessPool(reason), reason))
                else:
                    (retry if why else alone).append(cell)

    @staticmethod
    def _drain(
        workers: WorkerPool, source: Iterator[Any], work: Callable[..., dict], options: RunOptions, width: int
    ) -> Generator[tuple[Any, dict], None, tuple[list[Any], dict[str, str]] | None]:
        """Run ``source``'s cells, ``width`` at a time, yielding results; returns ``None`` when
        all ran, else the cells in flight when the pool broke and who died (cell_id -> why)."""
        pending: dict[Future, Any] = {}
        lost: list[Any] = []
        while not lost:
            while len(pending) < width:
                cell = next(source, None)
                if cell is None:
                    break
                pending[workers.submit(work, cell, options)] = cell
            if not pending:
                return None
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            workers.note_started()
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                wait(pending)  # a broken pool fails every future still running at once
                done = set(pending)
            for future in done:
                cell = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    lost.append(cell)
                    continue
                except Exception as exc:  # the result could not come back (e.g. not picklable)
                    result = failed_result(
                        cell,
                        exc,
                        f"a local-parallel worker could not return this cell's result: {type(exc).__name__}: {exc}",
                    )
                yield cell, result
        workers.pool.shutdown(wait=True)
        return lost, workers.culprits()


def _chain(first: list[Any], then: Iterator[Any]) -> Iterator[Any]:
    """``first``'s items (taken out of it as they are handed out), then ``then``'s."""
    while first:
        yield first.pop(0)
    yield from then


@hookimpl
def register_executors(register):
    register(LocalParallelExecutor)
