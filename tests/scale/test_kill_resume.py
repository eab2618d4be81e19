"""Reliability: a grid SIGKILLed mid-run resumes with every finished cell kept and only the
unfinished cells redone; results are written atomically, so a killed write leaves no result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cobench.store.results import iter_results

ROOT = Path(__file__).resolve().parents[2]
GRID = [
    "--methods",
    "fgsm,n-fgsm",
    "--eps",
    "4,8",
    "--epochs",
    "2",
    "--evaluators",
    "clean",
    "--param",
    "models.small-cnn.width=4",
    "--param",
    "datasets.digits.size=8",
    "--device",
    "cpu",
]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",
    }


def results(res: Path) -> dict[Path, dict]:
    return dict(iter_results(res, strict=True))  # strict: any unreadable *.json fails the test


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


@pytest.mark.parametrize(
    "executor", [[], ["--executor", "local-parallel", "--workers", "2"]], ids=["local", "local-parallel"]
)
def test_sigkill_mid_grid_then_resume(tmp_path, executor):
    if executor and not Path("/proc/self/task").exists():
        pytest.skip("needs /proc to find the worker processes")
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "cobench", "run", *GRID, *executor, "--results-dir", str(res)]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 90
    workers: set[int] = set()
    while not (res.exists() and results(res)):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no cell finished within 90 s"
        workers.update(children(proc.pid))
        time.sleep(0.05)
    workers.update(children(proc.pid))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()

    kept = results(res)  # every file present is a complete, valid result
    assert 1 <= len(kept) < 4, "the kill should land mid-grid"
    assert all(r["status"] == "ok" for r in kept.values())
    # a write interrupted by the kill leaves at most a dot-prefixed temp file, never read as a result
    (res / "digits-small-cnn" / ".killed-mid-write.json.abc123.tmp").write_text('{"status": "ok", "conf')
    stamps = {p: (p.stat().st_mtime_ns, r["started_at"], r["cell_id"]) for p, r in kept.items()}

    if executor:  # orphaned workers notice their driver is gone and exit
        assert len(workers) >= 2, workers
        deadline = time.time() + 10
        while any(alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in workers), "local-parallel workers outlived their killed driver"

    again = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {len(kept)} of 4 cells already finished" in again.stderr
    assert f"{4 - len(kept)} cells run, {len(kept)} already finished, 0 failed" in again.stderr
    final = results(res)
    assert len(final) == 4 and all(r["status"] == "ok" for r in final.values())
    for path, (mtime, started, cell_id) in stamps.items():  # kept cells were not redone
        assert path.stat().st_mtime_ns == mtime
        assert final[path]["started_at"] == started and final[path]["cell_id"] == cell_id
    assert len({r["cell_id"] for r in final.values()}) == 4
    summary = json.loads((res / "summary.json").read_text())
    assert len(summary["cells"]) == 4
