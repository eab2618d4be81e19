"""The ``cobench`` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cobench import __version__
from cobench.cli.run_flags import grid_options, report_run, run_options
from cobench.cli.weights import weights
from cobench.errors import CobenchError
from cobench.grid.spec import GridSpec
from cobench.kinds import KIND_NAMES
from cobench.options import RunOptions
from cobench.plugins import get_plugin_manager
from cobench.run.progress import GridProgress
from cobench.store.records import FlatRow
from cobench.store.results import check_output_path, csv_text, flat_row, iter_results, write_output, write_summary
from cobench.store.tables import aggregate, summary_tables

#: the status of a process ended by SIGPIPE, as shells report it
SIGPIPE_EXIT = 128 + signal.SIGPIPE


class CobenchGroup(click.Group):
    """Turns unexpected exceptions into one clear line (``--traceback`` shows the rest)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `cobench results | head`: the reader left; end quietly, as a SIGPIPE would
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(SIGPIPE_EXIT)
        except Exception as exc:
            if ctx.obj and ctx.obj.get("traceback"):
                traceback.print_exc()
            click.echo(f"Error: {type(exc).__name__}: {exc} (run with --traceback for details)", err=True)
            sys.exit(1)


@click.group(cls=CobenchGroup)
@click.version_option(__version__, prog_name="cobench")
@click.option("--traceback", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """cobench: benchmark catastrophic overfitting in fast adversarial training."""
    ctx.ensure_object(dict)
    ctx.obj["traceback"] = traceback
    for line in get_plugin_manager().warnings():  # one broken plugin: say so, and carry on without it
        stderr().print(f"[yellow]warning:[/yellow] {escape(line)}", soft_wrap=True)


def stdout() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # logs and pipes: wide enough that tables never wrap
        console = Console(highlight=False, soft_wrap=False, width=120)
    return console


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


# --------------------------------------------------------------------------- run
@cli.command()
@grid_options
@run_options
@click.option("--dry-run", is_flag=True, help="List the cells and which are finished; train nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or with --dry-run, the plan) as JSON.")
def run(
    spec: GridSpec,
    results_dir: str,
    options: RunOptions,
    executor: str,
    executor_options: dict[str, Any],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Run a method x eps x injection x beta x seed grid; finished cells are skipped.

    With no arguments, runs the default grid on the embedded digits dataset and prints
    the summary table. GRID_FILE is a TOML grid; command-line flags override it.
    """
    from cobench.grid.resolve import default_beta_notes
    from cobench.run.runner import Runner

    runner = Runner(spec, results_dir, options=options, executor=executor, executor_options=executor_options)
    out, err = stdout(), stderr()
    for note in default_beta_notes(spec, get_plugin_manager().registry):  # stderr: --json stays parseable
        err.print(f"note: {escape(note)}", soft_wrap=True)
    if dry_run:
        from cobench.run.claims import live_holder

        plan = runner.plan()
        states = []
        for _cell, path, done in plan:
            holder = None if done else live_holder(path)
            states.append(("done" if done else "busy" if holder else "todo", holder))
        finished = sum(1 for *_, d in plan if d)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "cells": [
                            {
                                "state": state,
                                "holder": holder,
                                "cell_id": cell.cell_id,
                                "label": cell.label,
                                "path": str(path),
                            }
                            for (cell, path, _), (state, holder) in zip(plan, states)
                        ],
                        "total": len(plan),
                        "finished": finished,
                    },
                    indent=2,
                )
            )
            return
        for (cell, path, _), (state, holder) in zip(plan, states):
            shown = f"busy ({holder})" if holder else state
            out.print(f"{shown}  {cell.label}  {path}", soft_wrap=True)  # one line per cell, for grep
        out.print(f"{len(plan)} cells, {finished} finished")
        return
    summary = runner.run(progress=GridProgress(err))
    rows = summary.rows()
    if not summary.unsaved:  # the results dir could not take a result: it cannot take the summary either
        write_summary(Path(results_dir), rows)
    agg = aggregate(rows)
    if as_json:
        click.echo(json.dumps({"cells": rows, "summary": agg}, indent=2, default=str))
    else:
        for table in summary_tables(agg):
            out.print(table)
    status = report_run(summary, results_dir, err, note=" (summary.csv for pandas)")
    if status:
        sys.exit(status)


# --------------------------------------------------------------------------- results
@cli.command()
@click.argument("results_dir", default="results", type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
def results(results_dir: str, fmt: str, output: str | None) -> None:
    """Summarise or export every result under RESULTS_DIR (CSV/JSON load straight into pandas)."""
    out_path = check_output_path(output, "-o", results_dir) if output is not None else None
    found = list(iter_results(Path(results_dir), warn=lambda m: click.echo(f"warning: {m}", err=True)))
    rows = [flat_row(r) for _, r in found]
    if not rows:
        raise CobenchError(f"no result files under {results_dir!r}")
    for (path, _), row in zip(found, rows):
        if row.get("problems"):
            stderr().print(f"[yellow]inconsistent result[/yellow] {escape(str(path))}: {escape(str(row['problems']))}")
    if fmt == "table":
        tables = [*summary_tables(aggregate(rows)), provenance_table(rows)]
        if out_path is None:
            for table in tables:
                stdout().print(table)
            return
        text = render_text(tables)
    elif fmt == "csv":
        text = csv_text(rows)
    else:
        text = json.dumps(rows, indent=2) + "\n"
    if out_path is None:
        click.echo(text, nl=False)
        return
    write_output(out_path, text)
    click.echo(f"wrote {out_path} ({len(rows)} results, {fmt})", err=True)


def render_text(tables: list[Table]) -> str:
    """Rich tables as plain text (no colour codes), as ``cobench results`` prints them to a pipe."""
    import io

    buffer = io.StringIO()
    console = Console(file=buffer, highlight=False, soft_wrap=False, width=120, color_system=None)
    for table in tables:
        console.print(table)
    return buffer.getvalue()


def provenance_table(rows: list[FlatRow]) -> Table:
    """One line per distinct (method, plugin distribution, cobench, data, device) behind the results."""
    keys = (
        "method",
        "method_distribution",
        "method_version",
        "method_commit",
        "cobench_version",
        "data_fingerprint",
        "device_name",
        "torch",
        "cuda",
    )
    table = Table(title="provenance", title_justify="left")
    for col in ("method", "plugin distribution", "cobench", "data (sha256)", "device", "torch / CUDA", "cells"):
        table.add_column(col)
    seen: dict[tuple, int] = {}
    for r in rows:
        key = tuple(r.get(k) for k in keys)
        seen[key] = seen.get(key, 0) + 1
    for (method, dist, version, commit, cob, data, device, torch_v, cuda), n in sorted(seen.items(), key=str):
        table.add_row(
            escape(str(method)),
            escape(f"{dist or '-'} {version or ''}" + (f" @{commit[:10]}" if commit else "")),
            escape(str(cob or "-")),
            escape(str(data or "-").removeprefix("sha256:")[:16]),
            escape(str(device or "-")),
            escape(f"{torch_v or '-'}" + (f" / {cuda}" if cuda else "")),
            str(n),
        )
    return table


# --------------------------------------------------------------------------- plugins & list
@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """Installed plugins (built-in and third-party), their versions and hooks."""
    if ctx.invoked_subcommand is not None:
        return
    pm = get_plugin_manager()
    _ = pm.registry  # collect first: a plugin that breaks while registering is listed as failed
    infos = pm.plugins()
    if as_json:
        click.echo(
            json.dumps({"plugins": [vars(i) for i in infos], "failures": pm.failures, "clashes": pm.clashes}, indent=2)
        )
        return
    table = Table(title="cobench plugins")
    for col in ("plugin", "version", "distribution", "hooks", "status"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(
            i.name, i.version or "-", i.distribution or "-", ", ".join(i.hooks), "built-in" if i.builtin else "ok"
        )
    for name, msg in pm.failures.items():
        table.add_row(name, "-", "-", "-", escape(f"failed: {msg}"))
    stdout().print(table)


@plugins.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write the package directory cobench-NAME.",
)
def plugins_new(name: str, parent: str) -> None:
    """Write a working plugin package for a method NAME, with its tests (the method contract)."""
    from cobench.cli.scaffold import write_plugin

    target = write_plugin(name, Path(parent))
    click.echo(f"wrote {target}: cd {target} && pip install -e '.[test]' && pytest")


@cli.command("list")
@click.argument("kind", type=click.Choice([*KIND_NAMES, "protocols"]))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(kind: str, as_json: bool) -> None:
    """Components of one KIND with their owning plugin and parameters (defaults), or the training protocols."""
    if kind == "protocols":
        list_protocols(as_json)
        return
    pm = get_plugin_manager()
    rows = pm.describe(kind)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} {kind}")
    for col in ("name", "plugin", "parameters (defaults)", "description", "paper"):
        table.add_column(col, overflow="fold")
    for r in rows:
        params = ", ".join(f"{k}={v!r}" for k, v in r["parameters"].items()) or "-"
        table.add_row(
            r["name"], r["plugin"], escape(params), escape(r["summary"]), escape(r["paper"] or "-")
        )  # V[y] is not markup
    stdout().print(table)


def list_protocols(as_json: bool) -> None:
    from cobench.grid.protocols import DEFAULT_PROTOCOL, PROTOCOLS, TRAINING_FIELDS

    if as_json:
        click.echo(json.dumps([p.describe() for p in PROTOCOLS.values()], indent=2))
        return
    table = Table(title=f"{len(PROTOCOLS)} protocols (default: {DEFAULT_PROTOCOL}; sources: docs/protocols.md)")
    for col in ("name", "training", "evaluation", "reference"):
        table.add_column(col, overflow="fold")
    for p in PROTOCOLS.values():
        training = ", ".join(f"{k}={getattr(p, k)!r}" for k in TRAINING_FIELDS)
        step = p.eval_step_size
        evaluation = (
            f"PGD-{p.eval_steps}-{p.eval_restarts}, step "
            + (f"{step:g}/255" if isinstance(step, (int, float)) else step)
            + (f", {p.eval_samples} samples" if p.eval_samples else "")
        )
        table.add_row(p.name, escape(training), evaluation, escape(p.summary))
    stdout().print(table)


cli.add_command(weights)


def _load_plugin_commands() -> None:
    try:
        get_plugin_manager().pm.hook.register_commands(cli=cli)
    except CobenchError:  # a bad COBENCH_LOAD_PLUGINS: the command reports it, once
        return
    except Exception as exc:  # a broken plugin must not break the CLI
        click.echo(f"warning: a plugin's register_commands failed: {type(exc).__name__}: {exc}", err=True)


def main() -> None:
    _load_plugin_commands()
    cli(prog_name="cobench")


if __name__ == "__main__":
    main()
