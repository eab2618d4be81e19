"""``cobench leaderboard ...``: a built-in plugin that adds the command group through the
``register_commands`` hook, like any third-party command would."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cobench import hookimpl
from cobench.cli.run_flags import report_run, run_options
from cobench.errors import CobenchError
from cobench.options import RunOptions


def _console(err: bool = False):
    from rich.console import Console

    return Console(stderr=err, highlight=False, soft_wrap=True)


def _render(lb) -> None:
    from cobench.leaderboard.outputs import render_outputs, write_outputs

    board, outputs = render_outputs(lb)
    write_outputs(lb, outputs)
    flagged = [problem for row in board.rows for problem in row.trust.problems]
    for problem in flagged:  # the table marks the rows (⚠, not ranked); the console names each file
        _console(err=True).print(f"warning: {lb.name}: row not ranked, {problem}", markup=False)
    cov = board.coverage
    tables = ", ".join(str(lb.output(ext)) for ext in ("md", "csv", "json", "html"))
    _console().print(
        f"{lb.name}: {len(board.rows)} rows from {cov.grid_cells_finished}/{cov.grid_cells} grid "
        f"cells (+{cov.submitted_cells} submitted, {cov.failed_cells} failed) -> {tables}, "
        f"{lb.plots_dir}/ ({sum(1 for p in outputs if p.suffix == '.png')} plots)"
    )


@click.group("leaderboard")
def leaderboard() -> None:
    """Build, render and check leaderboards defined in leaderboards/<name>.toml."""


@leaderboard.command()
@click.argument("toml_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@run_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the cell count and an estimate of device-hours; train nothing. "
    "Takes several boards: a step cost is measured once and reused by every board that shares it.",
)
@click.option(
    "--measure-steps",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Timed training steps per method for the --dry-run estimate (0: cell counts only, no timing).",
)
def build(
    toml_files: tuple[str, ...],
    options: RunOptions,
    executor: str,
    executor_options: dict,
    dry_run: bool,
    measure_steps: int,
) -> None:
    """Train the leaderboard's missing cells (finished ones are kept), then render it."""
    from cobench.leaderboard.spec import load_leaderboard
    from cobench.run.progress import GridProgress
    from cobench.run.runner import Runner

    if len(toml_files) > 1 and not dry_run:
        raise click.UsageError(
            f"build trains one leaderboard at a time, got {len(toml_files)} files; only --dry-run takes several"
        )
    boards = [load_leaderboard(f) for f in toml_files]
    runners = [
        Runner(lb.grid, lb.results_dir, options=options, executor=executor, executor_options=executor_options)
        for lb in boards
    ]
    if dry_run:
        from cobench.leaderboard.estimate import StepCosts, estimate_board

        costs = StepCosts()
        for lb, runner in zip(boards, runners):
            for line in estimate_board(lb, runner.plan(), options=options, steps=measure_steps, costs=costs):
                _console().print(line, markup=False)
        return
    lb, runner = boards[0], runners[0]
    err = _console(err=True)
    status = report_run(runner.run(progress=GridProgress(err)), str(lb.results_dir), err)
    if status == 130:
        sys.exit(status)
    _render(lb)  # failed cells are shown as such in the tables
    if status:
        sys.exit(status)


LABEL_HELP = "How the table names a method, METHOD=TEXT (fgsm=FGSM-AT); repeatable."


@leaderboard.command("table")
@click.argument("board")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv"]), default="markdown", show_default=True)
@click.option("--label", "labels", multiple=True, metavar="METHOD=TEXT", help=LABEL_HELP)
def table_command(board: str, fmt: str, labels: tuple[str, ...]) -> None:
    """Print a board's rows as a short table for prose: method, eps (and beta), seeds, each accuracy
    as mean ± std in %, CO seeds (median epoch). BOARD is the board's TOML or rendered JSON, or its
    name (leaderboards/NAME.json); the table is built from the rendered JSON."""
    click.echo(board_table(board, fmt, labels, Path.cwd()), nl=False)


def board_table(board: str, fmt: str, labels: tuple[str, ...] | list[str], base: Path) -> str:
    from cobench.leaderboard.render.prose import board_json, load_rows, parse_labels
    from cobench.leaderboard.render.prose import render as render_table

    return render_table(load_rows(board_json(board, base)), parse_labels(labels), fmt)


def table_block(args: list[str], base: Path) -> str:
    """The table that ``cobench leaderboard table ARGS`` prints, board names looked up under ``base``."""
    try:
        ctx = table_command.make_context("table", list(args))
    except click.ClickException as exc:
        raise CobenchError(f"table arguments {' '.join(args)!r}: {exc.format_message()}") from None
    return board_table(ctx.params["board"], ctx.params["fmt"], ctx.params["labels"], base)


@leaderboard.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when a table is stale.")
def readme(files: tuple[str, ...], check: bool) -> None:
    """Write the tables between '<!-- cobench leaderboard table ARGS -->' and '<!-- end -->' in
    Markdown files (ARGS as `cobench leaderboard table` takes them; board names are looked up under
    the file's folder), or with --check fail when one differs from what the boards give."""
    import difflib
    import functools

    from cobench.atomic import write_atomic
    from cobench.leaderboard.render.prose import rewrite

    out, err = _console(), _console(err=True)
    stale = []
    for f in files:
        path = Path(f)
        text = path.read_text()

        new, blocks = rewrite(text, f, functools.partial(table_block, base=path.parent))
        changed = [b for b in blocks if b.old != b.new]
        if not blocks:
            out.print(f"{f}: no '<!-- cobench leaderboard table ... -->' blocks", markup=False)
        elif check:
            stale += [f"{f}:{b.line}" for b in changed]
            for b in changed:
                err.print(f"stale {f}:{b.line}: table {' '.join(b.args)}", markup=False)
                diff = difflib.unified_diff(b.old.splitlines(), b.new.splitlines(), "README", "boards", lineterm="")
                err.print("\n".join(diff), markup=False)
            if not changed:
                out.print(f"{f}: {len(blocks)} table(s) up to date", markup=False)
        else:
            if new != text:
                write_atomic(path, new)
            out.print(f"{f}: {len(blocks)} table(s), {len(changed)} rewritten", markup=False)
    if stale:
        err.print(
            f"{len(stale)} stale table(s): {', '.join(stale)}\nrewrite with: cobench leaderboard readme "
            + " ".join(files),
            markup=False,
        )
        sys.exit(1)


@leaderboard.command()
@click.argument("toml_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def render(toml_files: tuple[str, ...]) -> None:
    """Re-render tables, plots and the HTML page from the stored results (no training)."""
    from cobench.leaderboard.spec import load_leaderboard

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
    from cobench.leaderboard.outputs import stale_files
    from cobench.leaderboard.spec import load_leaderboard

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
        err.print(
            f"{len(stale_all)} stale file(s): "
            + ", ".join(str(s.path) for s in stale_all)
            + "\nre-render with: cobench leaderboard render "
            + " ".join(toml_files)
        )
        sys.exit(1)


@leaderboard.command()
@click.argument("toml_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(),
    help="The folder to write the site to (new, empty, or a site written before, which is replaced).",
)
def site(toml_files: tuple[str, ...], out_dir: str) -> None:
    """Write every board as one static site (index, pages, plots, CSV and JSON downloads); no training."""
    from cobench.leaderboard.site import build_site
    from cobench.leaderboard.spec import load_leaderboard

    report = build_site([load_leaderboard(f) for f in toml_files], Path(out_dir))
    built = sum(e.built for e in report.entries)
    _console().print(
        f"{len(report.entries)} leaderboard(s), {built} built: {report.files} files -> {report.out / 'index.html'}"
    )


@leaderboard.command()
@click.argument("result_files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--leaderboard",
    "toml_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Also check the results against this leaderboard's protocol and its stored results (repeatable: "
    "each file goes to the board whose results folder holds it; with one board, every file does).",
)
@click.option(
    "--summary",
    "summary_path",
    type=click.Path(dir_okay=False),
    help="Append a Markdown report (each file's verdict, the rows the files add) to this file, "
    "e.g. $GITHUB_STEP_SUMMARY.",
)
def validate(result_files: tuple[str, ...], toml_files: tuple[str, ...], summary_path: str | None) -> None:
    """Check result files (or folders of them) against the result JSON schema and for
    self-contradiction; exit 1 when any file is invalid or inconsistent (a summary line counts them)."""
    from cobench.leaderboard.spec import load_leaderboard
    from cobench.leaderboard.submission import summary_markdown
    from cobench.leaderboard.submission import validate as check
    from cobench.store.results import result_files as files_under

    paths: list[Path] = []
    for f in result_files:
        p = Path(f)
        paths += files_under(p) if p.is_dir() else [p]
    if not paths:
        raise CobenchError(f"no result files in {', '.join(result_files)}")
    report = check(paths, [load_leaderboard(t) for t in toml_files])
    if summary_path:
        with open(summary_path, "a", encoding="utf-8") as summary:
            summary.write(summary_markdown(report))
    err = _console(err=True)
    for v in report.verdicts:
        if v.invalid is not None:
            err.print(f"invalid {v.invalid}", markup=False)
        for problem in v.problems:
            err.print(f"inconsistent {v.path}: {problem}", markup=False)
    protocol_errors = [c.protocol_error for c in report.boards if c.protocol_error]
    if protocol_errors:
        raise CobenchError("; ".join(protocol_errors))
    if not report.passed:
        err.print(report.counts(), markup=False)
        sys.exit(1)
    boards = ", ".join(str(c.lb.path) for c in report.boards)
    _console().print(f"{len(paths)} result file(s) valid" + (f"; they follow {boards}'s protocol" if boards else ""))


@leaderboard.command()
@click.argument("toml_file", type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--data-dir", default="data", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--all", "include_built", is_flag=True, help="Also re-evaluate the leaderboard's own cells that saved weights."
)
@click.option(
    "--weights-store",
    metavar="URL",
    default="",
    help="Where to fetch weights by hash first: a folder or fsspec URL (file://, s3://, gs://, https://, hf://) "
    "[default: $COBENCH_WEIGHTS_STORE, else ~/.cache/cobench/weights]; then the store each result names.",
)
def verify(toml_file: str, device: str, data_dir: str, include_built: bool, weights_store: str) -> None:
    """Re-evaluate submitted results' saved weights (final and best epoch) under the leaderboard's
    evaluators; exit 1 naming each result whose accuracies are not reproduced within verify_tolerance
    or whose weights no store has. A weights file whose SHA-256 differs is refused (exit 2)."""
    from cobench.leaderboard.collect import collect
    from cobench.leaderboard.spec import load_leaderboard
    from cobench.leaderboard.trust.reevaluate import reevaluate, write_record
    from cobench.run.device import resolve_device
    from cobench.store.weights import WeightsMissing, WeightsStore

    lb = load_leaderboard(toml_file)
    options = RunOptions(device=device, data_dir=data_dir)
    store = WeightsStore(weights_store or None)
    coll = collect(lb)
    grid_ids = coll.grid_ids
    out, err = _console(), _console(err=True)
    targets = [r for r in coll.ok if include_built or r.cell_id not in grid_ids]
    failed = missing = 0
    for result in targets:
        if not result.data.get("weights"):
            err.print(f"not verifiable {result.path}: no saved weights (run it with --save-models)", markup=False)
            continue
        try:
            verdict = reevaluate(lb, result, options, store)
        except WeightsMissing as exc:
            err.print(f"weights not fetched: {exc}", markup=False)
            missing += 1
            continue
        write_record(lb, verdict, resolve_device(device))
        (out if verdict.passed else err).print(verdict.summary(), markup=False)
        failed += not verdict.passed
    out.print(
        f"{lb.name}: {len(targets)} result(s) checked, {failed} not reproduced (tolerance {lb.verify_tolerance:g})"
        + (f", {missing} without fetched weights" if missing else "")
        + f"; records in {lb.results_dir}/.verified/"
    )
    if failed or missing:
        sys.exit(1)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(leaderboard)
