"""Data larger than its device budget stays on the host; minibatches are copied over, and the cell
computes exactly what it computes with the data resident on the device."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from cobench.api import InjectionContext
from cobench.errors import ConfigError
from cobench.grid.resolve import resolve
from cobench.options import RunOptions
from cobench.plugins import get_plugin_manager
from cobench.run import cell_worker, dataset_cache, placement, training
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
    assert budget_bytes(torch.device("cuda", 1), 2.5, cells_per_device=4) == 2.5e9  # a stated budget is per cell
    with pytest.raises(ConfigError, match="data_budget_gb must be >= 0"):
        budget_bytes(torch.device("cpu"), -1)


def test_a_training_set_over_budget_stays_on_the_host_and_the_test_set_moves():
    data = tiny_splits()
    size = sum(t.element_size() * t.nelement() for t in (data.train_x, data.train_y, data.test_x, data.test_y))
    assert place_data(data, torch.device("cpu"), data_budget_gb=size / 1e9).train_data == "device"
    placed = place_data(data, torch.device("cpu"), data_budget_gb=(size - 1) / 1e9)
    assert placed.train_data == "host"
    assert torch.equal(placed.data.train_x, data.train_x) and torch.equal(placed.data.test_x, data.test_x)


def test_injection_carriers_go_to_the_training_device_not_the_data_device(pm):
    data = tiny_splits()
    injection = pm.registry.get("injections", "low-freq")()
    ctx = InjectionContext(beta=8 / 255, num_classes=3, image_shape=(1, 8, 8), seed=0, device=torch.device("meta"))
    injection.prepare(ctx, data.train_x, data.train_y)  # host data, "meta" standing in for a GPU
    assert injection.carriers.device.type == "meta"


def just_the_test_set_gb(test_bytes: int) -> float:
    """A data budget (GB) that holds a low-freq cell's test set and its injected copy, and no more."""
    return (2 * test_bytes + 0.5) / 1e9


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
    test, _ = data_sizes()
    on_host = Runner(
        tiny_grid_spec(["fgsm"], injections=["low-freq"], betas=[8]),
        tmp_path / "host",
        options={"device": "cpu", "data_budget_gb": just_the_test_set_gb(test)},
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
    placed = place_data(data, torch.device("cpu"), data_budget_gb=compact / 1e9)
    assert placed.train_data == "device" and placed.device_bytes == compact
    assert placed.data.train_x.dtype == torch.uint8 and placed.data.test_x.dtype == torch.float32
    assert torch.equal(decode(placed.data.train_x), data.train_x)  # bit for bit
    placed = place_data(data, torch.device("cpu"), data_budget_gb=(compact - 1) / 1e9)
    assert placed.train_data == "host" and placed.data.train_x.dtype == torch.uint8
    # values that are not k/255 (the upsampled digits, say) stay float32
    placed = place_data(tiny_splits(), torch.device("cpu"), data_budget_gb=0)
    assert placed.data.train_x.dtype == torch.float32


@pytest.mark.parametrize("resident", [True, False], ids=["resident", "host"])
def test_a_cell_on_uint8_training_images_computes_what_it_computes_on_float32(tmp_path, monkeypatch, resident):
    write_cifar10(tmp_path / "data", n_train=40, n_test=16)
    budget = 0 if resident else just_the_test_set_gb(16 * 3 * 32 * 32 * 4 + 16 * 8)
    placed_dtypes = []
    real_place = cell_worker.place_data

    def spy(*args, **kwargs):
        placed = real_place(*args, **kwargs)
        placed_dtypes.append(placed.data.train_x.dtype)
        return placed

    monkeypatch.setattr(cell_worker, "place_data", spy)

    def run(name):
        spec = tiny_grid_spec(["fgsm"], datasets=["cifar10"], models=["small-cnn"], injections=["low-freq"], betas=[8])
        spec.params["datasets"] = {"cifar10": {"verify_checksums": False}}
        options = {"device": "cpu", "data_dir": str(tmp_path / "data"), "data_budget_gb": budget}
        summary = Runner(spec, tmp_path / name, options=options).run()
        assert summary.ran == 1 and not summary.failed, summary.failed

    run("uint8")
    # the float32 path, as before compaction: neither the process's cache nor the placement compacts
    monkeypatch.setattr(placement, "as_uint8", lambda x: None)
    monkeypatch.setattr(dataset_cache, "as_uint8", lambda x: None)
    dataset_cache.clear_cache()
    run("float32")
    assert placed_dtypes == [torch.uint8, torch.float32]
    assert json.dumps(metrics_and_curves(tmp_path / "uint8")) == json.dumps(metrics_and_curves(tmp_path / "float32"))


def test_the_validation_images_held_out_of_uint8_training_images_come_back_as_float32():
    data = tiny_splits()
    data = dataclasses.replace(data, train_x=(data.train_x * 255).round() / 255)
    placed = place_data(data, torch.device("cpu"), data_budget_gb=0).data
    train, val_x, _, _ = split_validation(placed, 8, seed=0)
    assert train.train_x.dtype == torch.uint8 and val_x.dtype == torch.float32
    _, float_val_x, _, _ = split_validation(data, 8, seed=0)
    assert torch.equal(val_x, float_val_x)


def test_cells_sharing_a_gpu_split_the_automatic_budget_between_them(monkeypatch):
    """K workers on one GPU each measure its free memory: each may claim half of it over K, not half."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (8e9, 80e9))
    assert budget_bytes(torch.device("cuda", 0), 0, cells_per_device=1) == 4e9
    assert budget_bytes(torch.device("cuda", 0), 0, cells_per_device=4) == 1e9


def test_a_cell_passes_its_sharing_to_the_budget(monkeypatch):
    seen = []
    real = placement.budget_bytes

    def spy(device, data_budget_gb, cells_per_device=1):
        seen.append(cells_per_device)
        return real(device, data_budget_gb, cells_per_device)

    monkeypatch.setattr(placement, "budget_bytes", spy)
    (cell,) = resolve(tiny_grid_spec(["fgsm"]), get_plugin_manager().registry)
    options = RunOptions(device="cpu", cells_per_device=3)
    cell_worker.build_parts(cell, options, torch.device("cpu"), get_plugin_manager().registry)
    assert seen == [3]


def injected_cell(budget_bytes: float):
    """A low-freq-injected cell's parts, built under a data budget of ``budget_bytes``."""
    (cell,) = resolve(tiny_grid_spec(["fgsm"], injections=["low-freq"], betas=[8]), get_plugin_manager().registry)
    options = RunOptions(device="cpu", data_budget_gb=budget_bytes / 1e9)
    return cell_worker.build_parts(cell, options, torch.device("cpu"), get_plugin_manager().registry)


def data_sizes() -> tuple[int, int]:
    """(the test set's bytes as evaluators see it, the training set's as kept) for ``injected_cell``."""
    (cell,) = resolve(tiny_grid_spec(["fgsm"], injections=["low-freq"], betas=[8]), get_plugin_manager().registry)
    data = dataset_cache.load_dataset(cell.dataset, RunOptions())
    train = placement.as_uint8(data.train_x)
    train_x = data.train_x if train is None else train
    return placement.nbytes(data.test_x, data.test_y), placement.nbytes(train_x, data.train_y)


def test_the_injected_test_copy_counts_in_the_data_budget():
    test, train = data_sizes()
    parts = injected_cell(2 * test + train)  # the clean test set, its injected copy and the training set
    assert parts.runtime.train_data == "device"
    assert not torch.equal(parts.eval_ctx.test_x, parts.eval_ctx.clean_test_x)  # a real copy
    # room for both test sets and the training set, but not the injected copy too: the training set stays
    parts = injected_cell(test + train)
    assert parts.runtime.train_data == "host"


def test_a_test_set_over_the_data_budget_is_refused_in_one_line():
    test, _ = data_sizes()
    with pytest.raises(ConfigError, match=r"the test set with its injected copy takes .* over the data budget"):
        injected_cell(1.5 * test)
    with pytest.raises(ConfigError, match=r"the test set takes .* over the data budget"):
        injected_cell(test - 1)
