"""Progress display: on a terminal, one live display (rich) of the cells done out of the total
with the time left, and the current cell's epoch; otherwise (logs, CI, ``nohup``) plain
unwrapped lines, one per finished epoch and one per finished cell.

The time left is this run's own average pace (its elapsed time over the cells it finished, the
current cell counted by its epochs) times what remains: rich's speed estimate only looks at the
last 30 seconds, and a cell that trains for minutes would never show one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


def time_left(elapsed: float, done: float, remaining: float) -> float | None:
    """Seconds left when ``done`` units of work took ``elapsed`` seconds and ``remaining`` are
    left (the average pace so far); None before any unit is done."""
    if done <= 0:
        return None
    return elapsed / done * max(remaining, 0.0)


def clock_text(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TimeLeftColumn(ProgressColumn):
    """``~0:12:30 left``, counting down from the estimate made at the last finished epoch or cell
    (``finishing`` past it: the final evaluation is not part of an epoch's time)."""

    def __init__(self, clock: Callable[[], float]):
        super().__init__()
        self.clock = clock

    def render(self, task: Task) -> Text:
        finish_at = task.fields.get("finish_at")
        if finish_at is None:
            return Text(task.fields.get("idle", ""), style="progress.remaining")
        left = finish_at - self.clock()
        return Text(f"~{clock_text(left)} left" if left >= 0.5 else "finishing", style="progress.remaining")


class GridProgress:
    def __init__(self, console: Console, enabled: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.enabled = console.is_terminal if enabled is None else enabled
        self.clock = clock
        self.progress: Progress | None = None
        self.grid_task: TaskID | None = None
        self.epoch_task: TaskID | None = None
        self.done = 0
        self.total = 0
        self.cell: Any = None
        #: when this run started, and the cells it finished itself (resumed ones cost it nothing)
        self.started = 0.0
        self.done_here = 0
        self.cell_started = 0.0

    def start_grid(self, total: int, skipped: int) -> None:
        self.total, self.done = total, skipped
        self.started, self.done_here = self.clock(), 0
        if skipped:
            self.console.print(f"[dim]resuming: {skipped} of {total} cells already finished[/dim]")
        if self.enabled:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                TimeLeftColumn(self.clock),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.grid_task = self.progress.add_task(
                "cells",
                total=total,
                completed=skipped,
                count=f"{skipped}/{total} cells",
                idle="(time left after the first epoch)",
            )
            self.epoch_task = self.progress.add_task("", total=1, visible=False, count="")

    def _estimate(self, fraction: float = 0.0) -> None:
        """The grid's time left, with the current cell ``fraction`` done."""
        if self.progress is None:
            return
        assert self.grid_task is not None  # added with the bars in start_grid
        left = time_left(self.clock() - self.started, self.done_here + fraction, self.total - self.done - fraction)
        self.progress.update(
            self.grid_task,
            completed=self.done + fraction,
            count=f"{self.done}/{self.total} cells",
            finish_at=None if left is None or self.done >= self.total else self.clock() + left,
            idle="",
        )

    def on_cell_start(self, cell: Any) -> None:
        self.cell = cell
        self.cell_started = self.clock()
        if self.progress is not None:
            assert self.epoch_task is not None  # added with the bars in start_grid
            self.progress.reset(
                self.epoch_task,
                description=f"  {cell.label}",
                total=None,
                visible=True,
                count="epoch -",
                finish_at=None,
            )

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, float | None]) -> None:
        if self.progress is not None:
            assert self.epoch_task is not None  # added with the bars in start_grid
            left = time_left(self.clock() - self.cell_started, epoch, epochs - epoch)
            self.progress.update(
                self.epoch_task,
                completed=epoch,
                total=epochs,
                count=f"epoch {epoch}/{epochs}",
                finish_at=None if left is None else self.clock() + left,
            )
            self._estimate(epoch / epochs if epochs else 0.0)
            return
        numbers = " ".join(f"{k}={v:.3f}" for k, v in record.items() if isinstance(v, float))
        label = f" {self.cell.label}" if self.cell is not None else ""
        self.plain(f"  epoch {epoch}/{epochs}{label}: {numbers}")

    def on_cell_done(self, cell: Any, result: dict[str, Any]) -> None:
        self.done += 1
        status = result["status"]
        if status == "ok":
            m = result.get("metrics", {})
            text = " ".join(f"{k}={v:.3f}" for k, v in m.items() if k.endswith("_acc") and isinstance(v, float))
            if m.get("co"):
                text += f" CO@{m.get('co_epoch')}"
            line = f"[{self.done}/{self.total}] {cell.label}: {text} ({result.get('wall_time_s', 0):.0f}s)"
        else:
            line = f"[{self.done}/{self.total}] {cell.label}: [red]FAILED[/red] {result['error']['message']}"
        self.done_here += 1
        if self.progress is not None:
            self._estimate()
            self.progress.console.print(line)
        else:
            self.plain(line)

    def notice(self, message: str) -> None:
        """Something the user should know mid-run (a cell taken over from an interrupted run)."""
        line = f"[yellow]{escape(message)}[/yellow]"
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            self.plain(line)

    def plain(self, line: str) -> None:
        """One log line, never wrapped (a narrow pipe would otherwise split it)."""
        self.console.print(line, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.progress is not None:
            assert self.epoch_task is not None  # added with the bars in start_grid
            self.progress.update(self.epoch_task, visible=False)  # what stays on screen: the cells' line
            self.progress.stop()
            self.progress = None
