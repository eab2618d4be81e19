"""``cobench boundary``: a built-in plugin adding the command through ``register_commands``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cobench import hookimpl
from cobench.run_command import run_options


@click.command("boundary")
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False))
@click.option("--methods", help="Comma-separated methods, e.g. fgsm,n-fgsm.")
@click.option("--eps", help="Comma-separated coarse eps in /255 units, e.g. 0,8,16,24,32,40,48.")
@click.option("--injections", help="Comma-separated injections, e.g. none,low-freq.")
@click.option("--beta", "betas", help="Comma-separated injection strengths in /255 units (coarse values with --2d).")
@click.option("--seeds", help="Comma-separated integer seeds, e.g. 0,1,2.")
@click.option("--datasets", "--dataset", "datasets", help="Comma-separated datasets.")
@click.option("--models", "--model", "models", help="Comma-separated models.")
@click.option("--evaluators", help="Comma-separated evaluators; must include co.")
@click.option("--epochs", type=int)
@click.option("--lr-max", type=float)
@click.option("--param", "params", multiple=True, metavar="KIND.NAME.PARAM=VALUE", help="Override a hyperparameter (repeatable).")
@click.option("--min-rate", default=0.5, show_default=True, type=float,
              help="A point is CO when at least this fraction of its seeds collapsed.")
@click.option("--eps-step", default=1.0, show_default=True, type=float, help="Finest eps spacing the search refines to (/255).")
@click.option("--beta-step", default=1.0, show_default=True, type=float, help="Finest beta spacing with --2d (/255).")
@click.option("--2d", "two_d", is_flag=True, help="Refine over eps x beta together (else each beta is its own eps search).")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False))
@run_options
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the thresholds as JSON to this file.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the phase diagram (PNG) to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the thresholds as JSON instead of a table.")
def boundary(grid_file, methods, eps, injections, betas, seeds, datasets, models, evaluators, epochs, lr_max, params,
             min_rate, eps_step, beta_step, two_d, results_dir, options, executor, executor_options, output, plot,
             as_json) -> None:
    """Find the smallest eps with catastrophic overfitting per method (x injection x beta x model).

    Trains the coarse eps values, then refines only between neighbouring points whose CO
    verdicts differ, down to --eps-step; no monotonicity is assumed, so CO bands get both
    edges. Every cell is an ordinary cell in --results-dir (resumable, shared with `cobench run`).
    """
    from cobench.cli import stderr, stdout
    from cobench.grid import GridSpec, parse_list
    from cobench.plugins import get_plugin_manager
    from cobench.progress import GridProgress
    from cobench.resolve import check_names
    from cobench.results import atomic_write_json

    from .driver import search_boundaries, validate
    from .plot import phase_diagram
    from .report import rows, table

    spec = GridSpec.from_toml(grid_file) if grid_file else GridSpec()
    spec.override(methods=parse_list(methods), eps=parse_list(eps), injections=parse_list(injections),
                  betas=parse_list(betas), seeds=parse_list(seeds), datasets=parse_list(datasets),
                  models=parse_list(models), evaluators=parse_list(evaluators), epochs=epochs, lr_max=lr_max)
    for p in params:
        spec.set_param(p)
    validate(spec, min_rate=min_rate, eps_step=eps_step, beta_step=beta_step, two_d=two_d)
    check_names(spec, get_plugin_manager().registry)
    runs = search_boundaries(spec, results_dir, min_rate=min_rate, eps_step=eps_step, beta_step=beta_step, two_d=two_d,
                             options=options, executor=executor, executor_options=executor_options,
                             progress=GridProgress(stderr()))
    out_rows = rows(runs)
    if output:
        atomic_write_json(Path(output), {"thresholds": out_rows})
    if plot:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        Path(plot).write_bytes(phase_diagram(runs))
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
