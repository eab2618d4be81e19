"""Progress display: rich bars for cells and epochs on a terminal; otherwise (logs, CI,
``nohup``) plain unwrapped lines, one per finished epoch and one per finished cell."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class GridProgress:
    def __init__(self, console: Console, enabled: bool | None = None):
        self.console = console
        self.enabled = console.is_terminal if enabled is None else enabled
        self.progress: Progress | None = None
        self.grid_task: TaskID | None = None
        self.epoch_task: TaskID | None = None
        self.done = 0
        self.total = 0
        self.cell: Any = None

    def start_grid(self, total: int, skipped: int) -> None:
        self.total, self.done = total, skipped
        if skipped:
            self.console.print(f"[dim]resuming: {skipped} of {total} cells already finished[/dim]")
        if self.enabled:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.grid_task = self.progress.add_task("cells", total=total, completed=skipped)
            self.epoch_task = self.progress.add_task("epochs", total=1, visible=False)

    def on_cell_start(self, cell: Any) -> None:
        self.cell = cell
        if self.progress is not None:
            assert self.epoch_task is not None  # added with the bars in start_grid
            self.progress.update(self.epoch_task, description=f"  {cell.label}", completed=0, total=None, visible=True)

    def on_epoch(self, epoch: int, epochs: int, record: dict[str, Any]) -> None:
        if self.progress is not None:
            assert self.epoch_task is not None  # added with the bars in start_grid
            self.progress.update(self.epoch_task, completed=epoch, total=epochs)
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
        if self.progress is not None:
            assert self.grid_task is not None  # added with the bars in start_grid
            self.progress.advance(self.grid_task)
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
            self.progress.stop()
            self.progress = None
