"""``cobench boundary``: a built-in plugin adding the command through ``register_commands``."""

from __future__ import annotations

import json
import sys

import click

from cobench import hookimpl
from cobench.cli.run_flags import grid_options, run_options


@click.command("boundary")
@grid_options
@click.option(
    "--min-rate",
    default=0.5,
    show_default=True,
    type=float,
    help="A point is CO when at least this fraction of its seeds collapsed.",
)
@click.option(
    "--eps-step", default=1.0, show_default=True, type=float, help="Finest eps spacing the search refines to (/255)."
)
@click.option("--beta-step", type=float, help="Finest beta spacing with --2d (/255)  [default: 1.0].")
@click.option(
    "--2d", "two_d", is_flag=True, help="Refine over eps x beta together (else each beta is its own eps search)."
)
@run_options
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the thresholds as JSON to this file.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the phase diagram (PNG) to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the thresholds as JSON instead of a table.")
def boundary(
    spec, results_dir, min_rate, eps_step, beta_step, two_d, options, executor, executor_options, output, plot, as_json
) -> None:
    """Find the smallest eps with catastrophic overfitting per method (x injection x beta x model).

    Trains the coarse eps values, then refines only between neighbouring points whose CO
    verdicts differ, down to --eps-step; no monotonicity is assumed, so CO bands get both
    edges. Every cell is an ordinary cell in --results-dir (resumable, shared with `cobench run`).
    """
    from cobench.boundary.driver import search_boundaries, validate
    from cobench.boundary.plot import phase_diagram
    from cobench.boundary.report import rows, table
    from cobench.cli import stderr, stdout
    from cobench.grid.resolve import check_names
    from cobench.plugins import get_plugin_manager
    from cobench.run.progress import GridProgress
    from cobench.store.results import check_output_path, json_text, write_output

    if beta_step is not None and not two_d:
        raise click.UsageError("--beta-step refines beta, which only --2d searches; add --2d or drop --beta-step")
    beta_step = 1.0 if beta_step is None else beta_step
    validate(spec, min_rate=min_rate, eps_step=eps_step, beta_step=beta_step, two_d=two_d)
    check_names(spec, get_plugin_manager().registry)
    # checked before anything trains: neither may be a result, or a file a listing reads as one
    output = check_output_path(output, "-o", results_dir) if output is not None else None
    plot = check_output_path(plot, "--plot", results_dir) if plot is not None else None
    runs = search_boundaries(
        spec,
        results_dir,
        min_rate=min_rate,
        eps_step=eps_step,
        beta_step=beta_step,
        two_d=two_d,
        options=options,
        executor=executor,
        executor_options=executor_options,
        progress=GridProgress(stderr()),
    )
    out_rows = rows(runs)
    if output is not None:
        write_output(output, json_text({"thresholds": out_rows}))
        stderr().print(f"wrote {output}", markup=False)
    if plot is not None:
        write_output(plot, phase_diagram(runs), "--plot")
        stderr().print(f"wrote {plot}", markup=False)
    if as_json:
        click.echo(json.dumps({"thresholds": out_rows}, indent=2))
    else:
        stdout().print(table(out_rows))
    trained = sum(r.cells_trained for r in runs)
    reused = sum(r.cells_reused for r in runs)
    stderr().print(f"{trained} cells trained, {reused} reused from {results_dir}/")
    sys.stdout.flush()


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(boundary)
