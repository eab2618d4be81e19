"""Claim files: concurrent runs on one results directory split the grid; a claim of a dead
process (or one without heartbeat) is taken over; a live one is skipped and reported."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from rich.console import Console

from cobench.api import Method
from cobench.cli.run_flags import report_run
from cobench.grid.resolve import resolve
from cobench.options import NoProgress
from cobench.run.claims import ClaimKeeper, claim_path, create_claim, read_claim, release, take_over, this_host
from cobench.run.runner import Runner
from cobench.store.results import iter_results, result_path
from cobench.testing import tiny_grid_spec


class Notes(NoProgress):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def notice(self, message: str) -> None:
        self.notes.append(message)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_claim(path, host: str, pid: int, age_s: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started_at": "2026-01-01T00:00:00+00:00"}))
    then = time.time() - age_s
    os.utime(path, (then, then))


def claim_of(spec, results_dir, pm, index: int = 0):
    cell = resolve(spec, pm.registry)[index]
    return cell, claim_path(result_path(results_dir, cell))


# --------------------------------------------------------------------------- the claim file
def test_a_claim_is_exclusive_records_its_owner_and_is_released_only_by_it(tmp_path):
    path = tmp_path / "a" / "cell.json.claim"
    assert create_claim(path) and not create_claim(path)
    claim = read_claim(path)
    assert (claim.host, claim.pid) == (this_host(), os.getpid()) and claim.is_mine()
    assert claim.stale_reason() is None
    write_claim(path, this_host(), os.getppid())  # a live peer's claim
    release(path)
    assert path.exists()
    write_claim(path, this_host(), os.getpid())
    release(path)
    assert not path.exists()


def test_staleness_dead_process_on_this_host_or_no_heartbeat_from_another(tmp_path):
    path = tmp_path / "c.claim"
    pid = dead_pid()
    write_claim(path, this_host(), pid)
    assert read_claim(path).stale_reason() == f"process {pid} on {this_host()} ended during training"
    write_claim(path, "other-machine", 12345, age_s=30)
    assert read_claim(path).stale_reason(stale_after=60) is None  # another host's pid cannot be checked
    write_claim(path, "other-machine", 12345, age_s=120)
    assert read_claim(path).stale_reason(stale_after=60).startswith("no heartbeat from other-machine:12345 for 120 s")
    path.write_text("")  # a claim still being written: fresh, so live
    assert read_claim(path).stale_reason() is None


def test_take_over_replaces_only_the_claim_judged_stale(tmp_path):
    path = tmp_path / "c.claim"
    write_claim(path, this_host(), dead_pid())
    judged = read_claim(path)
    write_claim(path, "other-machine", 777)  # a peer took it over between our look and our move
    assert not take_over(judged)
    assert read_claim(path).host == "other-machine" and [p.name for p in tmp_path.iterdir()] == ["c.claim"]
    assert take_over(read_claim(path)) and read_claim(path).is_mine()


def test_the_keeper_heartbeats_its_claims_and_releases_them_on_exit(tmp_path):
    path = tmp_path / "c.claim"
    with ClaimKeeper(interval=0.05) as keeper:
        assert keeper.acquire(path) == (True, None, None)
        before = time.time() - 10
        os.utime(path, (before, before))
        time.sleep(0.3)
        assert read_claim(path).heartbeat > before + 5
    assert not path.exists()


# --------------------------------------------------------------------------- the runner
def test_a_live_claim_is_skipped_and_reported(tmp_path, pm):
    spec = tiny_grid_spec(["fgsm"], seeds=[0, 1])
    busy_cell, path = claim_of(spec, tmp_path, pm)
    write_claim(path, this_host(), os.getppid())
    summary = Runner(spec, tmp_path, options={"device": "cpu"}).run()
    assert summary.ran == 1 and [s.cell.cell_id for s in summary.busy] == [busy_cell.cell_id]
    assert path.exists() and len(list(iter_results(tmp_path))) == 1
    console = Console(record=True, width=300)
    assert report_run(summary, str(tmp_path), console) == 0
    assert f"1 cell being trained by another run: {this_host()}:{os.getppid()} (1)" in console.export_text()


def test_a_claim_of_a_dead_process_is_taken_over_with_a_message(tmp_path, pm):
    spec = tiny_grid_spec(["fgsm"])
    cell, path = claim_of(spec, tmp_path, pm)
    pid = dead_pid()
    write_claim(path, this_host(), pid)
    notes = Notes()
    summary = Runner(spec, tmp_path, options={"device": "cpu"}).run(progress=notes)
    assert summary.ran == 1 and not summary.busy and not summary.failed
    assert notes.notes == [
        f"{cell.label}: was interrupted (process {pid} on {this_host()} ended during training); taking it over"
    ]
    assert not path.exists()


def test_a_cell_a_peer_finished_after_our_plan_is_not_trained_again(tmp_path, pm):
    spec = tiny_grid_spec(["fgsm"])
    Runner(spec, tmp_path, options={"device": "cpu"}).run()
    runner = Runner(spec, tmp_path, options={"device": "cpu"})
    planned = runner.plan()
    runner.plan = lambda: [(c, p, None) for c, p, _ in planned]  # planned before the peer finished
    summary = runner.run()
    assert summary.ran == 0 and summary.skipped == 1 and len(summary.results) == 1


class MeetsItsPeer(Method):
    """Plain training whose first step waits until the other run's first step too: the two
    runs train at the same time, so without claims both would train every cell."""

    name = "meets-its-peer"
    barrier = threading.Barrier(2, timeout=60)
    trainings: list[int] = []

    def train_step(self, batch, ctx):
        if len(self.trainings) < 2:
            self.trainings.append(1)
            self.barrier.wait()
        import torch.nn.functional as F

        logits = ctx.model(batch.x)
        ctx.update(F.cross_entropy(logits, batch.y), logits, batch.y)


def test_two_concurrent_runs_train_each_cell_exactly_once(tmp_path, pm):
    pm.registry.components["methods"]["meets-its-peer"] = MeetsItsPeer
    pm.registry.owners["methods"]["meets-its-peer"] = "test"
    MeetsItsPeer.barrier.reset()
    MeetsItsPeer.trainings.clear()
    spec = tiny_grid_spec(["meets-its-peer"], seeds=[0, 1, 2])
    summaries = []
    threads = [
        threading.Thread(target=lambda: summaries.append(Runner(spec, tmp_path, options={"device": "cpu"}).run()))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(summaries) == 2 and not any(s.failed for s in summaries)
    assert sorted(s.ran for s in summaries)[0] >= 1 and sum(s.ran for s in summaries) == 3
    assert len(list(iter_results(tmp_path))) == 3 and not list(tmp_path.rglob("*.claim"))


class PressesCtrlC(Method):
    name = "ctrl-c"

    def train_step(self, batch, ctx):
        raise KeyboardInterrupt


def test_ctrl_c_releases_the_claims(tmp_path, pm):
    pm.registry.components["methods"]["ctrl-c"] = PressesCtrlC
    pm.registry.owners["methods"]["ctrl-c"] = "test"
    summary = Runner(tiny_grid_spec(["ctrl-c"]), tmp_path, options={"device": "cpu"}).run()
    assert summary.interrupted and list(tmp_path.rglob("*.json")) == []
    assert list(tmp_path.rglob("*.claim")) == []


def test_dry_run_shows_cells_a_live_run_holds(tmp_path, pm):
    from tests.conftest import cli_run

    args = [
        "run",
        "--methods",
        "fgsm",
        "--eps",
        "8",
        "--seeds",
        "0,1",
        "--epochs",
        "1",
        "--evaluators",
        "clean",
        "--param",
        "models.small-cnn.width=4",
        "--param",
        "datasets.digits.size=8",
        "--results-dir",
        str(tmp_path),
    ]
    first = cli_run([*args, "--dry-run"], terminal_width=300).output.splitlines()[0]
    assert first.startswith("todo  fgsm eps=8/255 none seed=0")
    write_claim(claim_path(Path(first.split()[-1])), this_host(), os.getppid())
    lines = cli_run([*args, "--dry-run"], terminal_width=300).output.splitlines()
    assert lines[0].startswith(f"busy ({this_host()}:{os.getppid()})  fgsm eps=8/255 none seed=0")
    assert lines[1].startswith("todo  fgsm eps=8/255 none seed=1")
