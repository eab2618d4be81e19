"""Result files are validated against the JSON schema before they enter a table."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft202012Validator

from cobench.grid.cell import Cell
from cobench.store.results import ResultValidationError, read_result, result_schema, validate_result
from tests.leaderboard.conftest import edit_result, lb_cli, result_paths


def test_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(result_schema())


def test_real_results_from_execute_cell_are_accepted(tiny):
    paths = result_paths(tiny)
    assert len(paths) == 16
    for p in paths:
        data = read_result(p, validate=True)
        assert data["status"] == "ok" and data["schema_version"] == 1


def test_a_failed_result_is_valid_too(tiny):
    data = json.loads(result_paths(tiny)[0].read_text())
    for key in ("metrics", "curves", "cost", "plugins"):
        data.pop(key)
    data["status"] = "failed"
    with pytest.raises(ResultValidationError, match="at \\(top level\\): 'error' is a required property"):
        validate_result(copy.deepcopy(data), "x.json")
    data["error"] = {"type": "NonFiniteLossError", "message": "non-finite training loss", "traceback": "..."}
    validate_result(data, "x.json")


def _set(path, value):
    def fn(d):
        *head, last = path
        for k in head:
            d = d[k]
        d[last] = value

    return fn


def _drop(path):
    def fn(d):
        *head, last = path
        for k in head:
            d = d[k]
        del d[last]

    return fn


def _rehash(fn):
    """Apply fn, then make cell_id/config_hash consistent again (as a careless third party would)."""

    def wrapped(d):
        fn(d)
        d["cell_id"] = d["config_hash"] = Cell.from_config(d["config"]).cell_id

    return wrapped


MALFORMED = [
    (_set(["metrics", "pgd_acc"], 1.7), "at metrics/pgd_acc: 1.7 is greater than the maximum of 1"),
    (_set(["metrics", "clean_acc"], "99%"), "at metrics/clean_acc: '99%' is not of type 'number', 'null'"),
    (_set(["metrics", "co"], 2), "at metrics/co: 2 is not one of [0, 1, None]"),
    (_set(["status"], "done"), "at status: 'done' is not one of ['ok', 'failed']"),
    (_drop(["metrics"]), "'metrics' is a required property"),
    (_drop(["config"]), "'config' is a required property"),
    (_set(["schema_version"], 2), "has schema_version 2; this cobench reads schema_version 1"),
    (_set(["cell_id"], "not-a-hash"), "at cell_id: 'not-a-hash' does not match"),
    (_rehash(_set(["config", "eps"], 300)), "at config/eps: 300 is greater than the maximum of 255"),
    (_rehash(_set(["config", "training", "epochs"], 0)), "at config/training/epochs: 0 is less than the minimum of 1"),
    (_set(["config", "surprise"], 1), "Additional properties are not allowed ('surprise' was unexpected)"),
    (_set(["config", "eps"], 12.0), "is not the hash of its config"),
    (_set(["seed"], 5), "seed 5 differs from config.seed"),
    (_set(["curves", "train_loss"], "low"), "at curves/train_loss: 'low' is not of type 'array'"),
]


@pytest.mark.parametrize("mutate, fragment", MALFORMED)
def test_malformed_results_abort_the_render_naming_file_and_violation(tiny, mutate, fragment):
    before = {p: p.read_bytes() for p in tiny.parent.glob("tiny.*")}
    victim = result_paths(tiny)[3]
    edit_result(victim, mutate)
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 2
    assert str(victim) in out.output and fragment in out.output, out.output
    # never half-rendered: no output changed
    assert {p: p.read_bytes() for p in tiny.parent.glob("tiny.*")} == before


def test_invalid_json_is_rejected(tiny):
    victim = result_paths(tiny)[0]
    victim.write_text('{"schema_version": 1,')
    out = lb_cli(["render", str(tiny)])
    assert out.exit_code == 2 and f"result file {str(victim)!r} is not valid JSON" in out.output


def test_validate_command(tiny, tmp_path):
    ok = lb_cli(["validate", str(tiny.parent / "results")])
    assert ok.exit_code == 0 and "16 result file(s) valid" in ok.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "status": "ok"}))
    out = lb_cli(["validate", str(bad)])
    assert out.exit_code == 1 and "bad.json" in out.output and "'cell_id' is a required property" in out.output
    assert "1 result file(s): 0 valid, 0 inconsistent, 1 invalid" in out.output
