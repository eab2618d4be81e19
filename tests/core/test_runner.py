"""Runner: result schema, atomic files, resume, failures that do not stop the grid."""

from __future__ import annotations

import json
import os

import pytest

from cobench.errors import CobenchError
from cobench.grid.spec import GridSpec
from cobench.run.runner import Runner
from cobench.store.results import SCHEMA_VERSION, flat_row, iter_results


def tiny_spec(**kw) -> GridSpec:
    spec = GridSpec(**{"methods": ["fgsm"], "eps": [8], "evaluators": ["clean", "fgsm", "co"], **kw})
    spec.override(epochs=2, probe_size=64)
    spec.set_param("models.small-cnn.width=4")
    return spec


def test_result_schema(tmp_path, pm):
    summary = Runner(tiny_spec(), tmp_path, options={"device": "cpu"}).run()
    assert summary.ran == 1 and not summary.failed
    files = [p for p, _ in iter_results(tmp_path)]
    assert len(files) == 1 and not list(tmp_path.rglob("*.tmp"))
    r = json.loads(files[0].read_text())
    assert r["schema_version"] == SCHEMA_VERSION and r["status"] == "ok"
    assert r["config_hash"] == r["cell_id"] and len(r["cell_id"]) == 16
    assert r["config"]["method"] == {"name": "fgsm", "params": {"alpha": 1.0}}
    assert r["config"]["eps"] == 8.0 and r["seed"] == 0
    for key in ("clean_acc", "fgsm_acc", "co", "co_epoch", "co_at_end"):
        assert key in r["metrics"]
    assert 0 <= r["metrics"]["clean_acc"] <= 1
    assert r["curves"]["epoch"] == [1, 2]
    for key in ("train_loss", "train_acc", "lr", "probe_pgd_acc", "probe_fgsm_acc"):
        assert len(r["curves"][key]) == 2
    assert r["cost"]["train_time_s"] > 0 and r["cost"]["forward_passes_per_step"] == 2
    assert r["environment"]["torch"] and r["environment"]["device"] == "cpu"
    assert r["plugins"]["methods"] == "cobench.methods.fgsm"
    assert r["wall_time_s"] > 0 and r["started_at"] <= r["finished_at"]
    row = flat_row(r)
    assert row["method"] == "fgsm" and row["clean_acc"] == r["metrics"]["clean_acc"]


def test_rerun_skips_finished_cells_and_runs_only_new_ones(tmp_path, pm):
    Runner(tiny_spec(), tmp_path, options={"device": "cpu"}).run()
    (first,) = [p for p, _ in iter_results(tmp_path)]
    mtime = first.stat().st_mtime_ns
    summary = Runner(tiny_spec(seeds=[0, 1]), tmp_path, options={"device": "cpu"}).run()
    assert summary.skipped == 1 and summary.ran == 1 and len(summary.results) == 2
    assert first.stat().st_mtime_ns == mtime


def test_corrupt_or_failed_results_are_redone(tmp_path, pm):
    Runner(tiny_spec(), tmp_path, options={"device": "cpu"}).run()
    (path,) = [p for p, _ in iter_results(tmp_path)]
    path.write_text("{ truncated")
    assert Runner(tiny_spec(), tmp_path, options={"device": "cpu"}).run().ran == 1
    data = json.loads(path.read_text())
    data["status"] = "failed"
    path.write_text(json.dumps(data))
    assert Runner(tiny_spec(), tmp_path, options={"device": "cpu"}).run().ran == 1


def test_failing_cell_is_recorded_and_the_grid_continues(tmp_path, pm):
    from cobench.api import Method

    class Broken(Method):
        name = "broken"

        def train_step(self, batch, ctx):
            raise RuntimeError("deliberate failure")

    pm.registry.components["methods"]["broken"] = Broken
    pm.registry.owners["methods"]["broken"] = "test"
    summary = Runner(tiny_spec(methods=["broken", "fgsm"]), tmp_path, options={"device": "cpu"}).run()
    assert summary.ran == 2 and len(summary.failed) == 1
    failed = summary.failed[0]
    assert failed["status"] == "failed" and "deliberate failure" in failed["error"]["message"]
    assert "Traceback" in failed["error"]["traceback"]
    statuses = sorted(r["status"] for _, r in iter_results(tmp_path))
    assert statuses == ["failed", "ok"]
    # the next run retries only the failed cell
    assert Runner(tiny_spec(methods=["broken", "fgsm"]), tmp_path, options={"device": "cpu"}).run().skipped == 1


def test_sys_exit_inside_train_step_fails_its_cell_naming_it_and_the_grid_continues(tmp_path, pm):
    import sys

    from cobench.api import Method

    class Exiting(Method):
        name = "exiting"

        def train_step(self, batch, ctx):
            sys.exit(3)

    pm.registry.components["methods"]["exiting"] = Exiting
    pm.registry.owners["methods"]["exiting"] = "test"
    summary = Runner(tiny_spec(methods=["exiting", "fgsm"]), tmp_path, options={"device": "cpu"}).run()
    assert summary.ran == 2 and len(summary.failed) == 1
    message = summary.failed[0]["error"]["message"]
    assert "method 'exiting' called sys.exit(3)" in message and "exiting eps=8/255" in message
    assert sorted(r["status"] for _, r in iter_results(tmp_path)) == ["failed", "ok"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_results_dir_is_a_clear_error(tmp_path, pm):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(CobenchError, match="not writable"):
        Runner(tiny_spec(), ro / "results", options={"device": "cpu"}).run()


def test_results_dir_that_is_a_file_is_a_clear_error(tmp_path, pm):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CobenchError, match="not writable"):
        Runner(tiny_spec(), blocker, options={"device": "cpu"}).run()


def test_unreadable_data_dir_fails_before_training(tmp_path, pm):
    with pytest.raises(CobenchError, match=r"cannot read cifar10 from data dir .*--download"):
        Runner(
            tiny_spec(datasets=["cifar10"]),
            tmp_path / "res",
            options={"device": "cpu", "data_dir": str(tmp_path / "nodata")},
        ).run()
    assert not list((tmp_path / "res").rglob("*.json"))


def test_result_files_lists_results_only_and_failed_results_carry_the_cell(tmp_path):
    from cobench.grid.cell import Cell
    from cobench.grid.spec import TrainingConfig
    from cobench.params import ComponentSpec
    from cobench.store.results import failed_result, read_result, result_files, write_json, write_summary

    cell = Cell(
        ComponentSpec("d"),
        ComponentSpec("m"),
        ComponentSpec("fgsm"),
        8.0,
        ComponentSpec("none"),
        0.0,
        3,
        TrainingConfig(epochs=1).for_cell(),
        (),
    )
    try:
        raise RuntimeError("worker lost")
    except RuntimeError as exc:
        failed = failed_result(cell, exc, "a worker died")
    write_json(tmp_path / cell.filename(), failed)
    write_json(tmp_path / ".hidden" / "x.json", failed)
    write_summary(tmp_path, [{"a": 1}])
    (path,) = result_files(tmp_path)
    data = read_result(path)
    assert data["status"] == "failed" and data["cell_id"] == cell.cell_id == data["config_hash"]
    assert data["config"] == cell.config() and data["seed"] == 3 and data["error"]["message"] == "a worker died"
    assert "RuntimeError: worker lost" in data["error"]["traceback"]
    assert (tmp_path / "summary.csv").exists() and (path.stat().st_mode & 0o644) == 0o644
