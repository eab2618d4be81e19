"""Run cells one after another in this process (the default)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cobench import hookimpl
from cobench.api import CellsToRun, Executor
from cobench.options import Progress, RunOptions


class LocalExecutor(Executor):
    """Sequential, in-process: shows per-epoch progress; the reference for other executors."""

    name = "local"
    in_process = True

    def run(
        self, cells: CellsToRun, work: Callable[..., dict], options: RunOptions, progress: Progress
    ) -> Iterable[tuple[Any, dict]]:
        for cell in cells:
            progress.on_cell_start(cell)
            yield cell, work(cell.config(), options, progress.on_epoch)


@hookimpl
def register_executors(register):
    register(LocalExecutor)
