"""Run cells one after another in this process (the default)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from cobench import hookimpl
from cobench.api import Executor


class LocalExecutor(Executor):
    """Sequential, in-process: shows per-epoch progress; the reference for other executors."""

    name = "local"

    def run(self, cells: list[Any], work: Callable[..., dict], options: dict[str, Any]) -> Iterable[tuple[Any, dict]]:
        on_epoch = options.get("on_epoch")
        on_start = options.get("on_cell_start")
        plain = {k: v for k, v in options.items() if not callable(v)}
        for cell in cells:
            if on_start is not None:
                on_start(cell)
            yield cell, work(cell.config(), plain, on_epoch)


@hookimpl
def register_executors(register):
    register(LocalExecutor)
