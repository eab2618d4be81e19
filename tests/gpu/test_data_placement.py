"""Data larger than its device budget stays on the host; minibatches are copied over, and the cell
computes exactly what it computes with the data resident on the device."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cobench.api import InjectionContext
from cobench.errors import ConfigError
from cobench.run import placement, runner, training
from cobench.run.best_checkpoint import split_validation
from cobench.run.placement import budget_bytes, decode, place_data
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from cobench.testing import tiny_grid_spec, tiny_splits
from tests.data.formats import write_cifar10


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


def test_training_images_that_are_k_over_255_are_kept_as_uint8_and_the_budget_counts_that():
    data = tiny_splits()
    data = dataclasses.replace(data, train_x=(data.train_x * 255).round() / 255)  # what image datasets give
    floats = sum(t.element_size() * t.nelement() for t in (data.train_x, data.train_y, data.test_x, data.test_y))
    compact = floats - 3 * data.train_x.nelement()  # 1 byte per training pixel instead of 4
    placed, where = place_data(data, torch.device("cpu"), data_budget_gb=compact / 1e9)
    assert where == "device" and placed.train_x.dtype == torch.uint8 and placed.test_x.dtype == torch.float32
    assert torch.equal(decode(placed.train_x), data.train_x)  # bit for bit
    placed, where = place_data(data, torch.device("cpu"), data_budget_gb=(compact - 1) / 1e9)
    assert where == "host" and placed.train_x.dtype == torch.uint8
    # values that are not k/255 (the upsampled digits, say) stay float32
    placed, _ = place_data(tiny_splits(), torch.device("cpu"), data_budget_gb=0)
    assert placed.train_x.dtype == torch.float32


@pytest.mark.parametrize("budget", [0, 1e-9], ids=["resident", "host"])
def test_a_cell_on_uint8_training_images_computes_what_it_computes_on_float32(tmp_path, monkeypatch, budget):
    write_cifar10(tmp_path / "data", n_train=40, n_test=16)
    placed_dtypes = []
    real_place = runner.place_data

    def spy(data, device, data_budget_gb):
        placed, where = real_place(data, device, data_budget_gb)
        placed_dtypes.append(placed.train_x.dtype)
        return placed, where

    monkeypatch.setattr(runner, "place_data", spy)

    def run(name):
        spec = tiny_grid_spec(["fgsm"], datasets=["cifar10"], models=["small-cnn"], injections=["low-freq"], betas=[8])
        spec.params["datasets"] = {"cifar10": {"verify_checksums": False}}
        options = {"device": "cpu", "data_dir": str(tmp_path / "data"), "data_budget_gb": budget}
        summary = Runner(spec, tmp_path / name, options=options).run()
        assert summary.ran == 1 and not summary.failed, summary.failed

    run("uint8")
    # the float32 path, as before compaction: neither the process's cache nor the placement compacts
    monkeypatch.setattr(placement, "as_uint8", lambda x: None)
    monkeypatch.setattr(runner, "as_uint8", lambda x: None)
    runner._load_dataset.cache_clear()
    run("float32")
    assert placed_dtypes == [torch.uint8, torch.float32]
    assert json.dumps(metrics_and_curves(tmp_path / "uint8")) == json.dumps(metrics_and_curves(tmp_path / "float32"))


def test_the_validation_images_held_out_of_uint8_training_images_come_back_as_float32():
    data = tiny_splits()
    data = dataclasses.replace(data, train_x=(data.train_x * 255).round() / 255)
    placed, _ = place_data(data, torch.device("cpu"), data_budget_gb=0)
    train, val_x, _, _ = split_validation(placed, 8, seed=0)
    assert train.train_x.dtype == torch.uint8 and val_x.dtype == torch.float32
    _, float_val_x, _, _ = split_validation(data, 8, seed=0)
    assert torch.equal(val_x, float_val_x)
