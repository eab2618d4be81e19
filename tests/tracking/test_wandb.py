"""The W&B run logger against the real ``wandb`` library in offline mode: two tiny cells log to a
temp dir, then the offline runs' transaction logs are read back and compared with the result files."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from cobench.errors import ConfigError
from cobench.grid.spec import GridSpec
from cobench.loggers.tracking import grid_group, resolve_loggers
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from cobench.testing import tiny_grid_spec
from tests.boundary.oracle_plugin import TinyParts

#: a ``.wandb`` file: a 7-byte header (":W&B", magic 0xBEE1, version 0), then LevelDB-log records in
#: 32 KiB blocks, each with a 7-byte header (CRC-32, length, type: 1 full, 2 first, 3 middle, 4 last)
BLOCK, HEADER = 32768, 7


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline run, in order (what ``wandb sync`` uploads)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a W&B transaction log"
    records, pos, parts = [], HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # the rest of a block too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:
            break  # zero padding at the end of the file
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        parts += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def offline_run(run_dir: Path) -> dict[str, Any]:
    """An offline run's name, group, config, history (step -> values), summary and exit code."""
    (log,) = run_dir.glob("run-*.wandb")
    out: dict[str, Any] = {"config": {}, "history": {}, "summary": {}, "exit_code": None}

    def value(item) -> tuple[str, Any]:
        return item.key or "/".join(item.nested_key), json.loads(item.value_json)

    for rec in wandb_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["name"], out["group"], out["project"] = rec.run.display_name, rec.run.run_group, rec.run.project
            out["config"].update(value(i) for i in rec.run.config.update)
        elif kind == "config":
            out["config"].update(value(i) for i in rec.config.update)
        elif kind == "history":
            items = dict(value(i) for i in rec.history.item)
            out["history"][items["_step"]] = items
        elif kind == "summary":
            out["summary"].update(value(i) for i in rec.summary.update)
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """Two cells (FGSM-AT at 8 and 16/255, 2 epochs, a 16-image dataset) logged by W&B offline."""
    pytest.importorskip("wandb", reason="wandb not installed (pip install 'cobench[wandb]')")
    from cobench.plugins import get_plugin_manager, reset_plugin_manager

    tmp = tmp_path_factory.mktemp("wandb")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        mp.setenv(var, str(tmp))  # nothing written outside the temp dir
    reset_plugin_manager()
    pm = get_plugin_manager()
    pm.register(TinyParts(), "tiny-parts")
    spec = GridSpec(
        datasets=["oracle-data"], models=["oracle-model"], methods=["fgsm"], eps=[8, 16], evaluators=["clean", "co"]
    )
    spec.override(epochs=2, batch_size=8, probe_size=8)
    loggers = resolve_loggers(["wandb:cobench-test"], pm.registry)
    summary = Runner(spec, tmp / "results", options={"device": "cpu", "loggers": loggers}).run()
    assert not summary.failed
    results = {r["cell_id"]: r for _, r in iter_results(tmp / "results")}
    runs = [offline_run(d) for d in sorted((tmp / "wandb").glob("offline-run-*"))]
    yield tmp, results, runs
    mp.undo()
    reset_plugin_manager()


@pytest.mark.extras
def test_one_offline_run_per_cell_named_by_cell_id_grouped_by_grid(offline):
    tmp, results, runs = offline
    assert sorted(r["name"] for r in runs) == sorted(results)
    group = grid_group(tmp / "results", results)
    assert {r["group"] for r in runs} == {group} and group.startswith("results-")
    assert {r["project"] for r in runs} == {"cobench-test"}
    assert all(r["exit_code"] == 0 for r in runs)


@pytest.mark.extras
def test_offline_runs_hold_config_curves_and_final_metrics(offline):
    _, results, runs = offline
    for run in runs:
        result = results[run["name"]]
        config = run["config"]
        for key in ("method", "dataset", "model", "training", "eps", "seed"):
            assert config[key] == result["config"][key], key
        assert config["cobench"]["cell_id"] == result["cell_id"] and config["cobench"]["method"] == "fgsm"
        history = run["history"]
        assert sorted(history) == [1, 2] and [history[s]["epoch"] for s in (1, 2)] == [1, 2]
        for key in ("train_loss", "train_acc", "probe_pgd_acc", "lr"):
            assert [history[s][f"epoch/{key}"] for s in (1, 2)] == pytest.approx(result["curves"][key], rel=1e-6)
        summary = run["summary"]
        assert summary["final/clean_acc"] == pytest.approx(result["metrics"]["clean_acc"])
        assert summary["cost/forward_passes_per_step"] == pytest.approx(result["cost"]["forward_passes_per_step"])
        assert summary["status"] == "ok"


def test_missing_wandb_is_one_line_naming_the_extra(tmp_path, pm, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    loggers = resolve_loggers(["wandb"], pm.registry)
    with pytest.raises(ConfigError) as err:
        Runner(tiny_grid_spec(["fgsm"]), tmp_path, options={"device": "cpu", "loggers": loggers}).run()
    assert str(err.value.message) == "the wandb logger needs Weights & Biases: pip install 'cobench[wandb]'"
    assert not list(iter_results(tmp_path))  # nothing trained


def test_missing_wandb_on_the_command_line(tmp_path, monkeypatch):
    from tests.conftest import cli_run

    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.chdir(tmp_path)
    out = cli_run(["run", "--methods", "fgsm", "--eps", "8", "--epochs", "1", "--loggers", "wandb"])
    assert out.exit_code != 0
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert lines == ["Error: the wandb logger needs Weights & Biases: pip install 'cobench[wandb]'"], out.output
