"""Stored results with wrong types or out-of-range values (issue 21): ``cobench results`` skips
each one with a warning naming the file and the field, and lists the rest; ``cobench leaderboard
validate`` exits 1 on an invalid or inconsistent file, with a line counting each kind.
The results are written without training."""

from __future__ import annotations

import json

import pytest

from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.store.digest import with_digest
from cobench.store.results import result_header, result_path, write_json
from tests.conftest import cli_run


def cobench(args: list[str]):
    from cobench.cli import _load_plugin_commands

    _load_plugin_commands()
    return cli_run(args)


@pytest.fixture
def results(tmp_path, pm):
    """Three consistent, schema-valid, signed finished results (seeds 0, 1, 2)."""
    spec = GridSpec.from_dict({"grid": {"methods": ["fgsm"], "eps": [8], "seeds": [0, 1, 2]}})
    paths = []
    for cell in resolve(spec, pm.registry):
        path = result_path(tmp_path / "r", cell)
        write_json(
            path,
            with_digest(
                {
                    **result_header(cell, "2026-01-01T00:00:00+00:00"),
                    "status": "ok",
                    "metrics": {"clean_acc": 0.9, "fgsm_acc": 0.5, "pgd_acc": 0.4, "co": 0, "co_epoch": None},
                    "curves": {"train_loss": [1.0]},
                    "cost": {"steps": 10},
                    "provenance": {"machine": {"device_name": "cpu"}},
                }
            ),
        )
        paths.append(path)
    return paths


def edit(path, change, sign: bool = False) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(with_digest(data) if sign else data))


def put(data, keys: str, value) -> None:
    *parents, last = keys.split(".")
    for k in parents:
        data = data[k]
    data[last] = value


#: (field, bad value, words of the warning besides the file's name)
MALFORMED = [
    ("config.eps", "8", ["config/eps", "'8' is not of type 'number'"]),
    ("config.training", None, ["config/training", "None is not of type 'object'"]),
    ("metrics", [0.5], ["at metrics", "is not of type 'object'"]),
    ("metrics.clean_acc", "0.9", ["metrics/clean_acc", "is not of type 'number', 'null'"]),
    ("metrics.clean_acc", 7.5, ["metrics/clean_acc", "7.5 is greater than the maximum of 1"]),
    ("metrics.noise_acc", -0.5, ["metrics/noise_acc", "less than the minimum of 0"]),
    ("status", 5, ["at status", "5 is not one of ['ok', 'failed']"]),
    ("schema_version", 99, ["schema_version 99", "this cobench reads schema_version 1"]),
    ("cost", "cheap", ["at cost", "is not of type 'object'"]),
    ("provenance", "mine", ["at provenance", "is not of type 'object'"]),
    ("provenance.machine", "cpu", ["provenance/machine", "is not of type 'object'"]),
]


@pytest.mark.parametrize("field, value, words", MALFORMED, ids=[f"{f}={v!r}" for f, v, _ in MALFORMED])
def test_a_malformed_result_is_skipped_naming_file_and_field(results, field, value, words):
    victim = results[1]
    edit(victim, lambda d: put(d, field, value))
    for fmt in ("table", "csv", "json"):
        out = cli_run(["results", str(victim.parents[2]), "--format", fmt])
        assert out.exit_code == 0, out.output
        assert "Traceback" not in out.output and "Error" not in out.output, out.output
        warning = next(line for line in out.output.splitlines() if victim.name in line)
        assert warning.startswith("warning: skipped") and all(w in warning for w in words), warning
        if fmt == "csv":
            assert sum(1 for line in out.output.splitlines() if ",ok,digits," in line) == 2  # the rest is listed
    invalid = cobench(["leaderboard", "validate", str(victim)])
    assert invalid.exit_code == 1 and "1 result file(s): 0 valid, 0 inconsistent, 1 invalid" in invalid.output


#: (what is done to the second result, exit status of validate, words of its output)
VALIDATE = [
    ("nothing", lambda p: None, 0, ["3 result file(s) valid"]),
    (
        "edited after the run (digest mismatch)",
        lambda p: edit(p, lambda d: put(d, "metrics.pgd_acc", 0.99)),
        1,
        ["inconsistent", "digest does not match", "3 result file(s): 2 valid, 1 inconsistent, 0 invalid"],
    ),
    (
        "PGD above clean accuracy with CO flagged, re-signed",
        lambda p: edit(p, lambda d: d["metrics"].update(pgd_acc=0.99, co=1, co_epoch=3), sign=True),
        1,
        ["pgd_acc 0.990 is above clean_acc", "3 result file(s): 2 valid, 1 inconsistent, 0 invalid"],
    ),
    (
        "not JSON",
        lambda p: p.write_text("{"),
        1,
        ["not valid JSON", "3 result file(s): 2 valid, 0 inconsistent, 1 invalid"],
    ),
]


@pytest.mark.parametrize("what, damage, status, words", VALIDATE, ids=[v[0] for v in VALIDATE])
def test_validate_fails_on_an_invalid_or_inconsistent_file(results, what, damage, status, words):
    damage(results[1])
    out = cobench(["leaderboard", "validate", str(results[0].parents[2])])
    assert out.exit_code == status, out.output
    assert all(w in out.output for w in words), out.output
    if status:
        assert str(results[1]) in out.output  # the culprit is named
