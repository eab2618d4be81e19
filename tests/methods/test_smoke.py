"""Every registered method trains one epoch through the runner and reports its cost."""
from __future__ import annotations

import pytest

from cobench.grid import GridSpec
from cobench.plugins import get_plugin_manager, reset_plugin_manager
from cobench.runner import execute_cell

reset_plugin_manager()
METHODS = get_plugin_manager().registry.names("methods")
reset_plugin_manager()


def test_the_zoo_has_at_least_fourteen_methods_each_with_a_paper_and_summary(pm):
    rows = pm.describe("methods")
    assert len(rows) >= 14
    for row in rows:
        assert row["paper"], row["name"]
        assert row["summary"], row["name"]
        assert all(v is not None for v in row["parameters"].values()), row["name"]


@pytest.mark.parametrize("method", METHODS)
def test_one_epoch_on_digits_runs_and_reports_cost(method, pm):
    spec = GridSpec(methods=[method], eps=[8], evaluators=["clean"])
    spec.override(epochs=1, batch_size=128)
    spec.set_param("models.small-cnn.width=4")
    (cell,) = spec.cells(pm.registry)
    result = execute_cell(cell.config(), {"device": "cpu"})
    assert result["status"] == "ok", result.get("error")
    cost = result["cost"]
    assert cost["epochs_run"] == 1
    assert cost["optimizer_updates"] == cost["steps"] * getattr(
        pm.registry.get("methods", method)(**cell.method["params"]), "replays", 1)
    assert cost["forward_passes_per_step"] >= 1 and cost["backward_passes_per_step"] >= 1
    assert cost["time_per_step_s"] > 0
    assert 0 <= result["metrics"]["clean_acc"] <= 1
