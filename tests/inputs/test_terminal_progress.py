"""On a terminal, one live display: cells done of the total with the time left, and the current
cell's epoch; no per-epoch log lines (those are for pipes, tests/inputs/test_piped_progress.py)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.run.progress import GridProgress, time_left

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def screen(buf: io.StringIO) -> str:
    """What the terminal was sent, without colours and cursor moves."""
    return ANSI.sub("", buf.getvalue())


def test_time_left_is_the_average_pace_times_what_remains():
    assert time_left(60.0, 2, 4) == 120.0
    assert time_left(10.0, 0.5, 1.5) == 30.0
    assert time_left(5.0, 0, 3) is None  # nothing done yet: no estimate
    assert time_left(5.0, 1, -0.5) == 0.0


def test_terminal_shows_cells_time_left_and_the_current_epoch(pm):
    buf, clock = io.StringIO(), Clock()
    progress = GridProgress(Console(file=buf, width=120, force_terminal=True), clock=clock)
    assert progress.enabled
    cells = resolve(GridSpec.from_dict({"grid": {"methods": ["fgsm", "n-fgsm"], "eps": [8, 16]}}), pm.registry)
    progress.start_grid(4, 1)  # one cell finished by an earlier run: it costs this run nothing
    assert progress.progress is not None
    progress.progress.refresh()
    assert "1/4 cells" in screen(buf) and "(time left after the first epoch)" in screen(buf)

    progress.on_cell_start(cells[1])
    clock.now += 10  # the first epoch of two took 10 s
    progress.on_epoch(1, 2, {"epoch": 1, "train_loss": 1.5})
    progress.progress.refresh()
    shown = screen(buf)
    # the grid: half a cell in 10 s, 2.5 cells left: 50 s; the cell: one epoch of 10 s left
    assert re.search(r"cells .*1/4 cells .* ~0:00:50 left", shown), shown
    assert re.search(rf"{re.escape(cells[1].label)} .*epoch 1/2 .* ~0:00:10 left", shown), shown
    assert "train_loss" not in shown  # no per-epoch log line on a terminal

    clock.now += 10
    progress.on_epoch(2, 2, {"epoch": 2})
    clock.now += 20  # the final evaluation: past the estimate
    progress.progress.refresh()
    assert "finishing" in screen(buf)
    progress.on_cell_done(cells[1], {"status": "ok", "metrics": {"clean_acc": 0.9}, "wall_time_s": 40.0})
    progress.progress.refresh()
    shown = screen(buf)
    assert f"[2/4] {cells[1].label}: clean_acc=0.900 (40s)" in shown
    assert re.search(r"2/4 cells .* ~0:01:20 left", shown), shown  # 40 s a cell, 2 left
    progress.stop()
    final = screen(buf).rstrip().splitlines()[-1]
    assert "2/4 cells" in final and "epoch" not in final  # the epoch line leaves with the run


def test_cobench_run_in_a_pseudo_terminal_draws_the_live_display(tmp_path: Path):
    """The real command on a real (pseudo) terminal: rich's display, not the log lines."""
    cobench = Path(sys.executable).with_name("cobench")
    args = [
        str(cobench),
        "run",
        "--methods",
        "fgsm",
        "--eps",
        "8",
        "--epochs",
        "2",
        "--evaluators",
        "clean",
        "--param",
        "models.small-cnn.width=4",
        "--param",
        "datasets.digits.size=8",
        "--results-dir",
        str(tmp_path / "results"),
        "--device",
        "cpu",
    ]
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", "OMP_NUM_THREADS": "1"}
    env.pop("NO_COLOR", None)
    env.pop("CI", None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    raw = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError("cobench run produced no output for 120 s:\n" + raw.decode(errors="replace"))
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, raw.decode(errors="replace")
    text = raw.decode(errors="replace")
    assert "\x1b[" in text, "no terminal control sequences: the live display was not drawn"
    plain = ANSI.sub("", text)
    assert "1/1 cells" in plain and "[1/1] fgsm eps=8/255" in plain
    assert not re.search(r"^\s*epoch \d+/2 fgsm", plain, re.M), "per-epoch log lines on a terminal"
