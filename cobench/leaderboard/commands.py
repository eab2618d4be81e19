"""``cobench leaderboard ...``: a built-in plugin that adds the command group through the
``register_commands`` hook, like any third-party command would."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from cobench import hookimpl
from cobench.errors import CobenchError


def _console(err: bool = False):
    from rich.console import Console

    return Console(stderr=err, highlight=False, soft_wrap=True)


def _render(lb) -> None:
    from .outputs import render_outputs, write_outputs

    board, outputs = render_outputs(lb)
    write_outputs(lb, outputs)
    cov = board.coll.coverage()
    tables = ", ".join(str(lb.output(ext)) for ext in ("md", "csv", "json", "html"))
    _console().print(f"{lb.name}: {len(board.rows)} rows from {cov['grid_cells_finished']}/{cov['grid_cells']} grid "
                     f"cells (+{cov['submitted_cells']} submitted, {cov['failed_cells']} failed) -> {tables}, "
                     f"{lb.plots_dir}/ ({sum(1 for p in outputs if p.suffix == '.png')} plots)")


@click.group("leaderboard")
def leaderboard() -> None:
    """Build, render and check leaderboards defined in leaderboards/<name>.toml."""


@leaderboard.command()
@click.argument("toml_file", type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--data-dir", default="data", show_default=True, type=click.Path(file_okay=False))
@click.option("--download/--no-download", default=False, help="Download datasets missing from --data-dir.")
@click.option("--executor", default="local", show_default=True, help="How cells are scheduled (see `cobench list executors`).")
@click.option("--workers", type=int, help="Worker processes for parallel executors.")
@click.option("--dry-run", is_flag=True, help="Print the cell count and an estimate of device-hours; train nothing.")
@click.option("--measure-steps", default=3, show_default=True, type=int,
              help="Timed training steps per method for the --dry-run estimate.")
def build(toml_file: str, device: str, data_dir: str, download: bool, executor: str, workers: int | None,
          dry_run: bool, measure_steps: int) -> None:
    """Train the leaderboard's missing cells (finished ones are kept), then render it."""
    from cobench.progress import GridProgress
    from cobench.runner import Runner

    from .spec import load_leaderboard

    lb = load_leaderboard(toml_file)
    runner = Runner(lb.grid, lb.results_dir, options={"device": device, "data_dir": data_dir, "download": download},
                    executor=executor, executor_options={"workers": workers} if workers else {})
    if dry_run:
        from .estimate import estimate_board

        for line in estimate_board(lb, runner.plan(), device=device, data_dir=data_dir, steps=measure_steps):
            _console().print(line, markup=False)
        return
    err = _console(err=True)
    summary = runner.run(progress=GridProgress(err))
    err.print(f"{summary.ran} cells run, {summary.skipped} already finished, {len(summary.failed)} failed; "
              f"results in {lb.results_dir}/")
    if summary.interrupted:
        err.print("[yellow]interrupted: finished cells are saved; run the same command again to resume[/yellow]")
        sys.exit(130)
    _render(lb)
    if summary.failed:
        for r in summary.failed:
            err.print(f"[red]failed[/red] {r['cell_id']}: {r['error']['message']}")
        sys.exit(1)


@leaderboard.command()
@click.argument("toml_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def render(toml_files: tuple[str, ...]) -> None:
    """Re-render tables, plots and the HTML page from the stored results (no training)."""
    from .spec import load_leaderboard

    for f in toml_files:
        lb = load_leaderboard(f)
        if not lb.built:
            _console().print(not_built(lb))
            continue
        _render(lb)


def not_built(lb) -> str:
    return f"{lb.name}: not built yet (no results under {lb.results_dir}/); skipped"


@leaderboard.command()
@click.argument("toml_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check(toml_files: tuple[str, ...]) -> None:
    """Fail (exit 1) when a committed table, page or plot is stale or missing."""
    from .check import stale_files
    from .spec import load_leaderboard

    out, err = _console(), _console(err=True)
    stale_all = []
    for f in toml_files:
        lb = load_leaderboard(f)
        if not lb.built:
            out.print(not_built(lb))
            continue
        stale = stale_files(lb)
        stale_all += stale
        if not stale:
            out.print(f"{lb.name}: up to date")
        for s in stale:
            err.print(f"[red]stale[/red] {s.path}: {s.reason}")
            if s.diff:
                err.print(s.diff, markup=False)
    if stale_all:
        err.print(f"{len(stale_all)} stale file(s): " + ", ".join(str(s.path) for s in stale_all)
                  + "\nre-render with: cobench leaderboard render " + " ".join(toml_files))
        sys.exit(1)


@leaderboard.command()
@click.argument("result_files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--leaderboard", "toml_file", type=click.Path(dir_okay=False),
              help="Also check the results against this leaderboard's protocol and its stored results.")
def validate(result_files: tuple[str, ...], toml_file: str | None) -> None:
    """Check result files (or folders of them) against the result JSON schema."""
    from .schema import read_and_validate, result_files as files_under

    paths: list[Path] = []
    for f in result_files:
        p = Path(f)
        paths += files_under(p) if p.is_dir() else [p]
    if not paths:
        raise CobenchError(f"no result files in {', '.join(result_files)}")
    for p in paths:
        read_and_validate(p)
    if toml_file:
        from .collect import collect
        from .spec import load_leaderboard

        collect(load_leaderboard(toml_file), extra=paths)
    _console().print(f"{len(paths)} result file(s) valid" + (f"; they follow {toml_file}'s protocol" if toml_file else ""))


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(leaderboard)
