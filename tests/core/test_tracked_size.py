"""``.ci/check-tracked-size``: CI fails when the files git tracks exceed the limit (32 MiB), so a run
on a lent GPU machine always has room for its data and wheels."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "check-tracked-size"
KIB = 1024

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def check(repo: Path, limit_mib: str = "1") -> subprocess.CompletedProcess:
    env = {**os.environ, "TRACKED_LIMIT_MIB": limit_mib}
    return subprocess.run([str(SCRIPT)], cwd=repo, env=env, capture_output=True, text=True)


def test_the_tracked_tree_is_held_under_the_limit(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "odd name\nwith a newline.bin").write_bytes(b"x" * 600 * KIB)
    (repo / "untracked.bin").write_bytes(b"x" * 5000 * KIB)  # not tracked: does not count
    git(repo, "add", "odd name\nwith a newline.bin")
    ok = check(repo)
    assert ok.returncode == 0 and "tracked files: 0.6 MiB of 1 MiB" in ok.stdout, ok.stderr

    (repo / "weights.safetensors").write_bytes(b"x" * 500 * KIB)
    git(repo, "add", "weights.safetensors")
    over = check(repo)
    assert over.returncode == 1, over.stdout
    assert "tracked files take 1.1 MiB, over the 1 MiB limit" in over.stderr
    assert over.stderr.index("odd name\\nwith a newline.bin") < over.stderr.index("weights.safetensors")

    (repo / "weights.safetensors").unlink()  # deleted from the working tree, still tracked: still counted
    assert check(repo).returncode == 1
    git(repo, "rm", "-q", "--cached", "weights.safetensors")
    assert check(repo).returncode == 0
    assert check(repo, limit_mib="0").returncode == 1

    bad = check(repo, limit_mib="32MB")
    assert bad.returncode == 2 and "TRACKED_LIMIT_MIB must be a whole number of MiB, got '32MB'" in bad.stderr
