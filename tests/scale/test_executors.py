"""Executors: slot planning, local-parallel worker processes, Ray on a local CPU instance."""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch

from cobench.errors import CobenchError, ConfigError
from cobench.executors.local_parallel import LocalParallelExecutor, Slot, plan_slots
from cobench.grid.cell import Cell
from cobench.grid.spec import TrainingConfig
from cobench.options import NoProgress, RunOptions
from cobench.params import ComponentSpec
from cobench.run.runner import Runner
from cobench.store.results import iter_results
from cobench.testing import tiny_grid_spec


# --------------------------------------------------------------------------- planning
def test_cpu_slots_split_the_cores_and_never_outnumber_cells():
    cpu = torch.device("cpu")
    assert plan_slots(cpu, n_cells=10, cores=8) == [Slot("cpu", 1)] * 8
    assert plan_slots(cpu, n_cells=10, workers=2, cores=8) == [Slot("cpu", 4)] * 2
    assert plan_slots(cpu, n_cells=3, cores=8) == [Slot("cpu", 2)] * 3  # 3 workers, 8 // 3 threads each
    assert plan_slots(cpu, n_cells=5, workers=4, cores=2) == [Slot("cpu", 1)] * 4


def test_gpu_slots_pin_one_worker_per_visible_gpu():
    cuda = torch.device("cuda")
    assert [s.device for s in plan_slots(cuda, n_cells=9, cores=16, gpu_count=4)] == [f"cuda:{i}" for i in range(4)]
    assert plan_slots(cuda, n_cells=9, cores=16, gpu_count=4)[0].threads == 4
    # more workers than GPUs share them round-robin; an explicit device keeps every worker on it
    assert [s.device for s in plan_slots(cuda, n_cells=9, workers=3, cores=16, gpu_count=2)] == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
    ]
    assert [s.device for s in plan_slots(torch.device("cuda:1"), n_cells=9, cores=16, gpu_count=2)] == ["cuda:1"]


def test_bad_worker_counts_are_clear_errors():
    with pytest.raises(ConfigError, match="workers must be a non-negative integer"):
        LocalParallelExecutor(workers=-1)
    from cobench.executors.ray_executor import RayExecutor

    with pytest.raises(ConfigError, match="workers"):
        RayExecutor(workers=-2)


# --------------------------------------------------------------------------- work functions for workers
def sleepy_work(config: dict, options: RunOptions, on_epoch=None) -> dict:
    """Sleeps ``seed`` tenths of a second; reports which process and device ran it."""
    time.sleep(config["seed"] / 10)
    return {
        "status": "ok",
        "pid": os.getpid(),
        "device": options.device,
        "threads": torch.get_num_threads(),
        "plugins_loaded": "cobench.executors.local_parallel" in sys.modules,
        "finished": time.time(),
    }


def dying_work(config: dict, options: RunOptions, on_epoch=None) -> dict:
    os._exit(3)  # a worker killed mid-cell (OOM killer, segfault)


def cells(seeds: list[int]) -> list[Cell]:
    training = TrainingConfig(epochs=1).for_cell()
    return [
        Cell(
            ComponentSpec("d"),
            ComponentSpec("m"),
            ComponentSpec("fgsm"),
            8.0,
            ComponentSpec("none"),
            0.0,
            s,
            training,
            (),
        )
        for s in seeds
    ]


def test_local_parallel_yields_each_result_as_its_cell_finishes():
    ex = LocalParallelExecutor(workers=2)
    gen = ex.run(cells([25, 0]), sleepy_work, RunOptions(device="cpu"), NoProgress())
    first_cell, first = next(gen)
    t_first = time.time()
    ((second_cell, second),) = list(gen)
    assert (first_cell.seed, second_cell.seed) == (0, 25)  # the quick cell comes back first...
    assert t_first < second["finished"]  # ...while the slow one is still running
    assert first["pid"] != second["pid"] != os.getpid()
    assert first["device"] == "cpu" and first["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)


def test_a_dead_worker_becomes_a_failed_result_not_a_crash():
    ((cell, result),) = list(
        LocalParallelExecutor(workers=1).run(cells([1]), dying_work, RunOptions(device="cpu"), NoProgress())
    )
    assert result["status"] == "failed" and result["cell_id"] == cell.cell_id
    assert result["error"]["message"] == "worker process died (exit code 3) while training this cell"
    assert result["config"] == cell.config()


# --------------------------------------------------------------------------- real grids
def curves(results_dir) -> dict[str, list[float]]:
    return {r["config"]["method"]["name"]: r["curves"]["train_loss"] for _, r in iter_results(results_dir)}


def test_local_parallel_grid_matches_the_sequential_executor(tmp_path, local_reference):
    summary = Runner(
        tiny_grid_spec(["fgsm", "n-fgsm"]),
        tmp_path,
        options={"device": "cpu"},
        executor="local-parallel",
        executor_options={"workers": 2},
    ).run()
    assert summary.ran == 2 and not summary.failed
    got = curves(tmp_path)
    assert got.keys() == local_reference.keys()
    for name in got:
        assert got[name] == pytest.approx(local_reference[name], rel=1e-4, abs=1e-5), name
    assert len({r["environment"]["num_threads"] for r in summary.results}) == 1


def test_missing_ray_names_the_extra(monkeypatch):
    from cobench.executors.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(CobenchError, match=r"pip install 'cobench\[ray\]'"):
        list(RayExecutor().run(cells([0]), sleepy_work, RunOptions(), NoProgress()))


@pytest.mark.ray
@pytest.mark.extras
def test_ray_grid_on_a_local_cpu_instance(tmp_path, local_reference, monkeypatch):
    pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    summary = Runner(
        tiny_grid_spec(["fgsm", "n-fgsm"]),
        tmp_path,
        options={"device": "cpu"},
        executor="ray",
        executor_options={"workers": 2},
    ).run()
    assert summary.ran == 2 and not summary.failed, [r.get("error") for r in summary.failed]
    files = [p for p, _ in iter_results(tmp_path)]
    assert len(files) == 2  # written by the driver, one per cell
    got = curves(tmp_path)
    for name in got:
        assert got[name] == pytest.approx(local_reference[name], rel=1e-4, abs=1e-5), name
    import ray

    assert not ray.is_initialized()  # the local instance it started was shut down


def test_cells_per_device_shares_each_gpu_and_splits_the_cpu_cores():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    slots = plan_slots(cuda, n_cells=20, cores=16, gpu_count=2, cells_per_device=3)
    assert sorted(s.device for s in slots) == ["cuda:0"] * 3 + ["cuda:1"] * 3 and slots[0].threads == 16 // 6
    assert [s.device for s in plan_slots(torch.device("cuda:1"), n_cells=9, cores=8, cells_per_device=2)] == [
        "cuda:1"
    ] * 2
    assert plan_slots(cpu, n_cells=10, cores=8, cells_per_device=2) == [Slot("cpu", 4)] * 2
    assert plan_slots(cpu, n_cells=1, cores=8, cells_per_device=4) == [Slot("cpu", 8)]  # never more than cells
    with pytest.raises(ConfigError, match="cells_per_device must be a non-negative integer"):
        LocalParallelExecutor(cells_per_device=-1)
    from cobench.executors.ray_executor import RayExecutor

    assert RayExecutor(cells_per_device=4).gpus_per_cell == 0.25


def test_cells_per_device_on_cpu_gives_each_worker_its_share_of_the_cores():
    ex = LocalParallelExecutor(cells_per_device=2)
    results = [r for _, r in ex.run(cells([3, 3]), sleepy_work, RunOptions(device="cpu"), NoProgress())]
    assert {r["threads"] for r in results} == {max(1, len(os.sched_getaffinity(0)) // 2)}
    assert all(r["pid"] != os.getpid() for r in results)
