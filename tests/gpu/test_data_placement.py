"""Data larger than its device budget stays on the host; minibatches are copied over, and the cell
computes exactly what it computes with the data resident on the device."""

from __future__ import annotations

import json

import pytest
import torch

from cobench.api import InjectionContext
from cobench.errors import ConfigError
from cobench.run import training
from cobench.run.placement import budget_bytes, place_data
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from cobench.testing import tiny_grid_spec, tiny_splits


def test_the_budget_is_the_stated_one_or_half_the_free_gpu_memory(monkeypatch):
    assert budget_bytes(torch.device("cpu"), 2.5) == 2.5e9
    assert budget_bytes(torch.device("cpu"), 0) == float("inf")  # the host's memory is the data's anyway
    seen = []

    def mem_get_info(device):
        seen.append(device)
        return 6e9, 80e9

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    assert budget_bytes(torch.device("cuda", 1), 0) == 3e9
    assert seen == [torch.device("cuda", 1)]  # the cell's own device, not the current one
    with pytest.raises(ConfigError, match="data_budget_gb must be >= 0"):
        budget_bytes(torch.device("cpu"), -1)


def test_a_training_set_over_budget_stays_on_the_host_and_the_test_set_moves():
    data = tiny_splits()
    size = sum(t.element_size() * t.nelement() for t in (data.train_x, data.train_y, data.test_x, data.test_y))
    placed, where = place_data(data, torch.device("cpu"), data_budget_gb=size / 1e9)
    assert where == "device"
    placed, where = place_data(data, torch.device("cpu"), data_budget_gb=(size - 1) / 1e9)
    assert where == "host" and torch.equal(placed.train_x, data.train_x) and torch.equal(placed.test_x, data.test_x)


def test_injection_carriers_go_to_the_training_device_not_the_data_device(pm):
    data = tiny_splits()
    injection = pm.registry.get("injections", "low-freq")()
    ctx = InjectionContext(beta=8 / 255, num_classes=3, image_shape=(1, 8, 8), seed=0, device=torch.device("meta"))
    injection.prepare(ctx, data.train_x, data.train_y)  # host data, "meta" standing in for a GPU
    assert injection.carriers.device.type == "meta"


def metrics_and_curves(results_dir):
    """Every number a cell computed (its timings aside)."""
    return [
        (r["metrics"], {k: v for k, v in r["curves"].items() if not k.endswith("_time_s")})
        for _, r in sorted(iter_results(results_dir))
    ]


def test_host_resident_training_gives_the_resident_cells_numbers_exactly(tmp_path, monkeypatch):
    copies = []
    monkeypatch.setattr(training, "batch_to_device", lambda batch, device: copies.append(1) or batch.to(device))
    spec = tiny_grid_spec(["fgsm"], injections=["low-freq"], betas=[8])
    resident = Runner(spec, tmp_path / "resident", options={"device": "cpu"}).run()
    on_host = Runner(
        tiny_grid_spec(["fgsm"], injections=["low-freq"], betas=[8]),
        tmp_path / "host",
        options={"device": "cpu", "data_budget_gb": 1e-9},
    ).run()
    assert resident.ran == on_host.ran == 1 and not resident.failed and not on_host.failed
    assert copies, "the host path copied no minibatch"
    assert json.dumps(metrics_and_curves(tmp_path / "resident")) == json.dumps(metrics_and_curves(tmp_path / "host"))
    ((_, result),) = iter_results(tmp_path / "host")
    assert result["provenance"]["execution"]["train_data"] == "host"
    ((_, result),) = iter_results(tmp_path / "resident")
    assert result["provenance"]["execution"]["train_data"] == "device"
