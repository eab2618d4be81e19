"""Piped output shows one unwrapped line per epoch and per cell (issue 12, Execution)."""

from __future__ import annotations

import io

from rich.console import Console

from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.run.progress import GridProgress


def test_not_a_terminal_prints_epoch_lines_unwrapped(pm):
    buf = io.StringIO()
    progress = GridProgress(Console(file=buf, width=40, force_terminal=False))
    (cell,) = resolve(GridSpec.from_dict({"grid": {"methods": ["n-fgsm"], "eps": [8]}}), pm.registry)
    progress.start_grid(1, 0)
    progress.on_cell_start(cell)
    for epoch in (1, 2):
        progress.on_epoch(epoch, 2, {"epoch": epoch, "train_loss": 1.23456, "probe_pgd_acc": 0.5})
    progress.on_cell_done(cell, {"status": "ok", "metrics": {"clean_acc": 0.9}, "wall_time_s": 3.0})
    progress.stop()
    lines = buf.getvalue().splitlines()
    assert lines[0] == f"  epoch 1/2 {cell.label}: train_loss=1.235 probe_pgd_acc=0.500"
    assert lines[1].startswith("  epoch 2/2 ") and len(lines) == 3
    assert lines[2].startswith("[1/1] ") and lines[2].endswith("clean_acc=0.900 (3s)")


def test_the_closing_report_is_one_unwrapped_line():
    from cobench.cli.run_flags import report_run
    from cobench.run.runner import RunSummary

    buf = io.StringIO()
    summary = RunSummary()
    summary.ran, summary.skipped = 6, 0
    assert (
        report_run(summary, "/a/long/results/folder", Console(file=buf, width=40), note=" (summary.csv for pandas)")
        == 0
    )
    assert buf.getvalue() == (
        "6 cells run, 0 already finished, 0 failed; results in /a/long/results/folder/ (summary.csv for pandas)\n"
    )
