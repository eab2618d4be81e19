"""No output path can destroy a result (issue 21): ``cobench results -o`` and ``cobench boundary
-o/--plot`` refuse a result, checkpoint, weights or claim file, and a path a listing of the
results directory would read as a result, before any work; what they write is written
atomically and named. Each data-loss case checks the finished result is intact and listed."""

from __future__ import annotations

import os

import pytest

from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.store.results import result_header, result_path, write_json
from tests.conftest import cli_run


def cobench(args: list[str]):
    from cobench.cli import _load_plugin_commands

    _load_plugin_commands()
    return cli_run(args)


@pytest.fixture
def finished(tmp_path, pm, monkeypatch):
    """A results dir holding one finished result (made without training), its checkpoint,
    weights and claim files, and a results dir elsewhere; returns the result's path."""
    spec = GridSpec.from_dict({"grid": {"methods": ["fgsm"], "eps": [8]}})
    cell = resolve(spec, pm.registry)[0]
    path = result_path(tmp_path / "r", cell)
    write_json(
        path, {**result_header(cell, "2026-01-01T00:00:00+00:00"), "status": "ok", "metrics": {"clean_acc": 0.5}}
    )
    (tmp_path / "r" / "checkpoints").mkdir()
    (tmp_path / "r" / "checkpoints" / f"{cell.cell_id}.pt").write_bytes(b"checkpoint")
    path.with_suffix(".safetensors").write_bytes(b"weights")
    path.with_name(path.name + ".claim").write_text("host:1")
    monkeypatch.chdir(tmp_path)
    return path


def listed(results_dir: str) -> int:
    out = cli_run(["results", results_dir, "--format", "csv"])
    return sum(1 for line in out.output.splitlines() if ",ok,digits," in line)


#: (command with {result} {ckpt} {weights} {claim} {dir} placeholders, exit status, words in the message)
CASES = [
    (["results", "r", "-o", "{result}"], 2, ["-o", "is a cobench result file"]),
    (["results", "r", "--format", "csv", "-o", "{result}"], 2, ["is a cobench result file"]),
    (["results", "r", "--format", "json", "-o", "{result}"], 2, ["is a cobench result file"]),
    (["results", "r", "--format", "csv", "-o", "{ckpt}"], 2, ["is a cobench checkpoint file"]),
    (["results", "r", "--format", "csv", "-o", "{weights}"], 2, ["is a cobench weights file"]),
    (["results", "r", "--format", "csv", "-o", "{claim}"], 2, ["is a cobench claim file"]),
    (["results", "r", "--format", "json", "-o", "r/all.json"], 2, ["inside the results directory", "read as a result"]),
    (["results", "r", "--format", "csv", "-o", "{dir}"], 2, ["is a directory"]),
    (["results", "r", "--format", "csv", "-o", ""], 2, ["-o is empty"]),
    (["results", "r", "--format", "csv", "-o", "{result}/x.csv"], 2, ["is a file, not a directory"]),
    (["boundary", "--results-dir", "r", "-o", "{result}"], 2, ["-o", "is a cobench result file"]),
    (["boundary", "--results-dir", "r", "-o", "r/thresholds.json"], 2, ["inside the results directory"]),
    (["boundary", "--results-dir", "r", "--plot", "{result}"], 2, ["--plot", "is a cobench result file"]),
    (["boundary", "--results-dir", "elsewhere", "-o", "{result}"], 2, ["is a cobench result file"]),
    (["boundary", "--results-dir", "r", "--plot", "{ckpt}"], 2, ["is a cobench checkpoint file"]),
]


@pytest.mark.parametrize("args, status, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_no_output_path_destroys_a_result(finished, tmp_path, args, status, words):
    places = {
        "result": str(finished),
        "ckpt": str(next((tmp_path / "r" / "checkpoints").glob("*.pt"))),
        "weights": str(finished.with_suffix(".safetensors")),
        "claim": str(finished) + ".claim",
        "dir": "r",
    }
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = cobench([a.format(**places) for a in args])
    assert out.exit_code == status, out.output
    assert all(w in out.output for w in words), out.output
    assert "Traceback" not in out.output
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, "nothing may be written or changed"
    assert listed("r") == 1  # the finished result is intact and still listed


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_every_format_is_written_to_the_file_and_named(finished, fmt):
    out = cli_run(["results", "r", "--format", fmt, "-o", "out/export.txt"])
    assert out.exit_code == 0, out.output
    assert "wrote out/export.txt (1 results" in out.output
    text = open("out/export.txt").read()
    assert ("fgsm" in text) and ("digits" in text)
    assert listed("r") == 1
    assert not [p for p in os.listdir("out") if p.endswith(".tmp")]


def test_an_unwritable_directory_is_named(finished, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        out = cli_run(["results", "r", "--format", "csv", "-o", str(locked / "all.csv")])
        assert out.exit_code == 2 and f"directory {str(locked)!r} is not writable" in out.output, out.output
    finally:
        locked.chmod(0o700)
