"""Run loggers against the real TensorBoard and MLflow libraries: one tiny cell logs to a temp
dir, then the event files / tracking store are read back and compared with the result file."""

from __future__ import annotations

import sys

import pytest

from cobench import hookimpl
from cobench.api import RunLogger
from cobench.errors import ConfigError
from cobench.grid.cell import Cell
from cobench.grid.spec import GridSpec
from cobench.loggers.tracking import cell_tags, resolve_loggers
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from cobench.testing import tiny_grid_spec
from tests.boundary.oracle_plugin import TinyParts

pytestmark = pytest.mark.extras
pytest.importorskip("tensorboard", reason="needs the tensorboard extra: pip install -e '.[tensorboard]'")
pytest.importorskip("mlflow", reason="needs the mlflow extra: pip install -e '.[mlflow]'")


def logged_run(tmp, pm, loggers):
    """One cheap cell (a 16-image dataset, a linear model, FGSM-AT, 2 epochs) with ``loggers``."""
    pm.register(TinyParts(), "tiny-parts")
    spec = GridSpec(
        datasets=["oracle-data"], models=["oracle-model"], methods=["fgsm"], eps=[8], evaluators=["clean", "co"]
    )
    spec.override(epochs=2, batch_size=8, probe_size=8)
    summary = Runner(
        spec, tmp / "results", options={"device": "cpu", "loggers": resolve_loggers(loggers, pm.registry)}
    ).run()
    assert not summary.failed
    ((_, result),) = list(iter_results(tmp / "results"))
    return result


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One cell trained with both loggers (module-wide: the libraries are slow to import)."""
    from cobench.plugins import get_plugin_manager, reset_plugin_manager

    tmp = tmp_path_factory.mktemp("logged")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the file store, fast to create; SQLite is the default
    reset_plugin_manager()
    result = logged_run(tmp, get_plugin_manager(), [f"tensorboard:{tmp / 'tb'}", f"mlflow:file:{tmp / 'mlruns'}"])
    yield tmp, result
    mp.undo()


def test_tensorboard_events_hold_the_epoch_curves_and_final_metrics(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp, result = logged
    (run_dir,) = [p.parent for p in (tmp / "tb").rglob("events.out.tfevents.*") if p.parent.name != "hparams"]
    assert result["cell_id"][:8] in run_dir.name and run_dir.parent.name == "fgsm"
    assert run_dir.parent.parent.name == "oracle-data-oracle-model"
    events = EventAccumulator(str(run_dir)).Reload()
    for key in ("train_loss", "train_acc", "probe_pgd_acc", "lr"):
        scalars = events.Scalars(f"epoch/{key}")
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx(result["curves"][key], rel=1e-6, abs=1e-7)
    (final,) = events.Scalars("final/clean_acc")
    assert final.value == pytest.approx(result["metrics"]["clean_acc"]) and final.step == 2
    assert "config" in "".join(events.Tags()["tensors"])


def test_mlflow_run_holds_tags_params_metrics_and_status(logged):
    from mlflow import MlflowClient

    tmp, result = logged
    client = MlflowClient(tracking_uri=f"file:{tmp / 'mlruns'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cobench").experiment_id])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["cobench.cell_id"] == result["cell_id"]
    assert {k: tags[k] for k in ("method", "eps", "seed", "injection")} == {
        "method": "fgsm",
        "eps": "8",
        "seed": "0",
        "injection": "none",
    }
    assert run.data.params["method.alpha"] == str(result["config"]["method"]["params"]["alpha"])
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(result["curves"]["train_loss"])
    assert run.data.metrics["final/clean_acc"] == pytest.approx(result["metrics"]["clean_acc"])
    assert run.data.metrics["cost/forward_passes_per_step"] == pytest.approx(result["cost"]["forward_passes_per_step"])


def test_cell_tags_flatten_the_config(logged):
    _, result = logged
    tags = cell_tags(Cell.from_config(result["config"]))
    assert tags["training.epochs"] == "2" and tags["method.alpha"] == "1.0" and tags["evaluators"] == "clean,co"
    assert all(isinstance(v, str) for v in tags.values())


class Exploding(RunLogger):
    """Raises on every epoch."""

    name = "exploding"

    def start(self, cell_id, label, tags, config):
        pass

    def log_epoch(self, epoch, metrics):
        raise OSError("disk full")

    def finish(self, result):
        pass


class ExplodingPlugin:
    @hookimpl
    def register_loggers(self, register):
        register(Exploding)


def test_a_failing_logger_is_dropped_with_a_warning_and_the_cell_still_finishes(tmp_path, pm):
    pm.register(ExplodingPlugin(), "exploding-plugin")
    with pytest.warns(RuntimeWarning, match="logger 'exploding' failed to log an epoch.*disk full"):
        result = logged_run(tmp_path, pm, ["exploding"])
    assert result["status"] == "ok"


def test_missing_library_and_unknown_logger_fail_before_training(tmp_path, pm, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    spec = tiny_grid_spec(["fgsm"])
    with pytest.raises(ConfigError, match=r"pip install 'cobench\[tensorboard\]'"):
        Runner(
            spec, tmp_path, options={"device": "cpu", "loggers": resolve_loggers(["tensorboard"], pm.registry)}
        ).run()
    assert not list(iter_results(tmp_path))
    with pytest.raises(Exception, match="tensorboard"):  # the unknown-name error lists the valid loggers
        resolve_loggers(["tensorbord"], pm.registry)
    with pytest.raises(ConfigError, match="takes no ':ARG'"):
        pm.register(ExplodingPlugin(), "exploding-plugin")
        resolve_loggers(["exploding:x"], pm.registry)
