"""What the two commands that run grids (``cobench run`` and ``cobench leaderboard build``)
share: their run options and their closing report."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

import click

from .options import RunOptions

if TYPE_CHECKING:
    from rich.console import Console

    from .runner import RunSummary

RUN_OPTIONS = (
    click.option("--data-dir", default="data", show_default=True, type=click.Path(file_okay=False)),
    click.option("--download/--no-download", default=False, help="Download datasets missing from --data-dir."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
    click.option("--channels-last", is_flag=True, help="Channels-last memory format (same results, faster on CPU)."),
    click.option("--executor", default="local", show_default=True,
                 help="How cells are scheduled (see `cobench list executors`)."),
    click.option("--workers", type=int, help="Worker processes for parallel executors."),
    click.option("--ray-address", help="Ray cluster to join (ray executor); a local instance otherwise."),
    click.option("--loggers", help="Comma-separated run loggers, e.g. tensorboard,mlflow; name:ARG sets the log dir "
                                   "or tracking URI (see `cobench list loggers`)."),
)


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the run options to a click command, which receives them as ``options``
    (:class:`RunOptions`), ``executor`` (a name) and ``executor_options`` (its parameters)."""

    @functools.wraps(command)
    def wrapper(*args: Any, data_dir: str, download: bool, device: str, channels_last: bool, executor: str,
                workers: int | None, ray_address: str | None, loggers: str | None, **kwargs: Any) -> Any:
        from .grid import parse_list
        from .plugins import get_plugin_manager
        from .tracking import resolve_loggers

        logger_specs = tuple(resolve_loggers(parse_list(loggers) or [], get_plugin_manager().registry))
        options = RunOptions(device=device, data_dir=data_dir, download=download, channels_last=channels_last,
                             loggers=logger_specs)
        executor_options = {k: v for k, v in {"workers": workers, "address": ray_address}.items() if v is not None}
        return command(*args, options=options, executor=executor, executor_options=executor_options, **kwargs)

    for option in reversed(RUN_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def report_run(summary: "RunSummary", where: str, err: "Console", note: str = "") -> int:
    """Print how a grid run went; returns the exit status the command ends with: 130 when it
    was interrupted, 1 when a cell failed (each failure is listed), else 0."""
    err.print(f"{summary.ran} cells run, {summary.skipped} already finished, {len(summary.failed)} failed; "
              f"results in {where}/{note}")
    if summary.interrupted:
        err.print("[yellow]interrupted: finished cells are saved; run the same command again to resume[/yellow]")
        return 130
    for result in summary.failed:
        err.print(f"[red]failed[/red] {result['cell_id']}: {result['error']['message']}")
    return 1 if summary.failed else 0
