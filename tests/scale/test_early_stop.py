"""Opt-in early stop of collapsed cells: the streak, the loop, the result and the table."""

from __future__ import annotations

import pytest
from rich.console import Console

from cobench.errors import ConfigError
from cobench.evaluators.co_detection import CODetector
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import execute_cell
from cobench.store.results import flat_row, schema_errors
from cobench.store.tables import aggregate, summary_tables
from cobench.testing import tiny_grid_spec


def probes(*pairs):
    return [{"probe_pgd_acc": p, "probe_fgsm_acc": f} for p, f in pairs]


def test_the_streak_counts_trailing_collapsed_epochs():
    co = CODetector()
    assert co.collapse_streak([]) == 0
    assert co.collapse_streak(probes((0.5, 0.6), (0.4, 0.6))) == 0
    assert co.collapse_streak(probes((0.5, 0.6), (0.05, 0.9), (0.02, 0.9))) == 2
    assert co.collapse_streak(probes((0.5, 0.6), (0.05, 0.9), (0.45, 0.6), (0.05, 0.9))) == 1  # recovered in between


def test_early_stop_needs_the_co_evaluator_and_a_non_negative_count():
    with pytest.raises(ConfigError, match="needs the 'co' evaluator"):
        spec = GridSpec(evaluators=["clean"])
        spec.override(stop_after_collapse=2)
        spec.validate()
    with pytest.raises(ConfigError, match=r"training.stop_after_collapse = -1: expected >= 0"):
        spec = GridSpec()
        spec.override(stop_after_collapse=-1)
        spec.validate()


def test_off_by_default_and_absent_from_existing_hashes():
    spec = tiny_grid_spec(["fgsm"])
    (cell,) = resolve(spec, get_plugin_manager().registry)
    assert "stop_after_collapse" not in cell.config()["training"] and cell.training.stop_after_collapse == 0


def test_a_cell_stops_once_collapse_persisted_and_says_so(monkeypatch):
    # the detector sees collapse from epoch 2 on (its decision rule is tested above)
    monkeypatch.setattr(CODetector, "collapse_streak", lambda self, history: max(0, len(history) - 1))
    spec = tiny_grid_spec(["fgsm"], evaluators=["clean", "co"])
    spec.override(epochs=6, stop_after_collapse=2)
    (cell,) = resolve(spec, get_plugin_manager().registry)
    result = execute_cell(cell.config(), {"device": "cpu"})
    assert result["status"] == "ok", result.get("error")
    assert result["metrics"]["stopped_early"] == 1 and result["metrics"]["stopped_early_epoch"] == 3
    assert result["cost"]["epochs_run"] == 3 and len(result["curves"]["train_loss"]) == 3
    assert schema_errors(result) == []
    assert schema_errors({**result, "metrics": {**result["metrics"], "stopped_early": 2}})  # the schema checks it
    table = summary_tables(aggregate([flat_row(result)]))[0]
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "fgsm *1/1" in text and "stopped early" in text
