"""Executors on GPUs, without GPUs: mocked torch.cuda, a fake Ray and a fake submitit record what
each executor asks for (GPUs, CPUs, concurrency) and what every cell is told."""

from __future__ import annotations

import contextlib
import queue
import sys
import types

import pytest
import torch

from cobench.errors import ConfigError
from cobench.executors.local_parallel import Slot, _init_worker, pin_device, plan_slots, sharing
from cobench.executors.ray_executor import RayExecutor
from cobench.executors.submitit_executor import SubmititExecutor
from cobench.options import NoProgress, RunOptions
from cobench.run.runner import Runner
from cobench.testing import tiny_grid_spec
from tests.scale.test_executors import cells


def told(config: dict, options: RunOptions, on_epoch=None) -> dict:
    """What a cell was told: its device and the sharing recorded for it."""
    return {
        "status": "ok",
        "seed": config["seed"],
        "device": options.device,
        "cells_per_device": options.cells_per_device,
    }


@pytest.fixture
def gpus(monkeypatch):
    """``n`` visible GPUs as torch.cuda reports them (set ``gpus(n)``), CUDA_VISIBLE_DEVICES unset."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def visible(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)

    return visible


# --------------------------------------------------------------------------- local-parallel (item 12)
def test_a_local_parallel_worker_makes_its_gpu_the_current_device(monkeypatch):
    pinned = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pinned.append(torch.device(d)))
    pin_device("cpu")
    assert pinned == []
    slots = queue.Queue()
    slots.put(Slot("cuda:1", torch.get_num_threads()))
    import os

    _init_worker(slots, None, os.getppid())  # what every spawned worker runs first
    assert pinned == [torch.device("cuda:1")]


def test_local_parallel_records_how_many_cells_share_a_gpu():
    slots = plan_slots(torch.device("cuda"), 10, gpu_count=2, cells_per_device=3)
    assert [s.device for s in slots] == ["cuda:0", "cuda:1"] * 3 and sharing(slots) == 3
    assert sharing(plan_slots(torch.device("cuda"), 10, gpu_count=4)) == 1
    assert sharing(plan_slots(torch.device("cpu"), 10, workers=2, cores=2)) == 2  # two workers share the CPU


# --------------------------------------------------------------------------- Ray (items 5, 6)
class Ref:
    def __init__(self, value):
        self.value = value


class FakeRay(types.ModuleType):
    """Enough of ``ray`` for the executor: records init and remote options, runs tasks at once."""

    def __init__(self, gpus: float, cpus: float):
        super().__init__("ray")
        self.resources = {"GPU": gpus, "CPU": cpus} if gpus else {"CPU": cpus}
        self.inits: list[dict] = []
        self.remotes: list[dict] = []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits.append(kwargs)

    def cluster_resources(self):
        return self.resources

    def remote(self, **kwargs):
        self.remotes.append(kwargs)

        class Task:
            def __init__(self, fn):
                self.fn = fn

            def remote(self, *args):
                return Ref(self.fn(*args))

        return Task

    def wait(self, refs, num_returns=1):
        return refs[:1], refs[1:]

    def get(self, ref):
        return ref.value

    def cancel(self, ref, force=False):
        pass

    def shutdown(self):
        pass


def run_ray(monkeypatch, gpus: int, cpus: int, **params) -> tuple[FakeRay, list[dict]]:
    ray = FakeRay(gpus, cpus)
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    results = [
        r
        for _, r in RayExecutor(**params).run(
            cells([0, 1, 2]), told, RunOptions(device="cuda" if gpus else "cpu"), NoProgress()
        )
    ]
    return ray, results


def test_ray_cells_per_device_is_k_per_gpu_on_every_gpu_not_k_in_all(monkeypatch):
    ray, results = run_ray(monkeypatch, gpus=8, cpus=64, cells_per_device=4)
    assert ray.inits[0]["num_cpus"] is None  # not capped at K cells in all
    assert ray.remotes == [{"num_gpus": 0.25, "num_cpus": 1.0, "max_retries": 0}]
    assert {r["cells_per_device"] for r in results} == {4} and {r["device"] for r in results} == {"cuda"}


def test_ray_asks_for_less_than_a_cpu_where_cpus_would_cap_the_gpu_slots(monkeypatch):
    ray, _ = run_ray(monkeypatch, gpus=8, cpus=16, cells_per_device=8)  # 64 GPU slots, 16 CPUs
    assert ray.remotes[0]["num_gpus"] == 0.125 and ray.remotes[0]["num_cpus"] == 0.25


def test_ray_cells_per_device_on_a_cpu_only_instance_runs_k_cells(monkeypatch):
    ray, results = run_ray(monkeypatch, gpus=0, cpus=2, cells_per_device=2)
    assert ray.inits[0]["num_cpus"] == 2 and ray.remotes[0]["num_gpus"] == 0
    assert {r["cells_per_device"] for r in results} == {2}


def test_ray_joining_a_cluster_checks_the_device_on_its_nodes():
    assert RayExecutor(address="auto").remote() and not RayExecutor().remote()


# --------------------------------------------------------------------------- submitit (items 4, 5)
class FakeSubmitit(types.ModuleType):
    """Enough of ``submitit``: jobs run in this process when first polled after a tick; the
    executor's parameters at each submission and the jobs in flight are recorded."""

    def __init__(self, cluster: str):
        super().__init__("submitit")
        fake = self
        self.submitted: list[dict] = []
        self.in_flight = 0
        self.peak = 0

        class Job:
            count = 0

            def __init__(self, fn, params):
                Job.count += 1
                self.job_id, self.fn, self.params, self.polls, self.value = str(Job.count), fn, params, 0, None

            def done(self):
                self.polls += 1
                if self.polls == 2 and self.value is None:
                    self.value = self.fn()
                    fake.in_flight -= 1
                return self.value is not None

            def result(self):
                return self.value

            def cancel(self, check=True):
                pass

        class AutoExecutor:
            def __init__(self, folder, cluster=None, **kwargs):
                self.cluster = cluster or "slurm"
                self.params: dict = {}

            def update_parameters(self, **kwargs):
                self.params.update(kwargs)

            @contextlib.contextmanager
            def batch(self):
                yield

            def submit(self, fn):
                fake.submitted.append(dict(self.params))
                fake.in_flight += 1
                fake.peak = max(fake.peak, fake.in_flight)
                return Job(fn, dict(self.params))

        self.AutoExecutor = AutoExecutor
        self.cluster = cluster


def run_submitit(monkeypatch, tmp_path, n_cells: int, **params):
    fake = FakeSubmitit(params.get("cluster", "local"))
    monkeypatch.setitem(sys.modules, "submitit", fake)
    ex = SubmititExecutor(folder=str(tmp_path / "logs"), poll_s=0.0, **params)
    results = [r for _, r in ex.run(cells(list(range(n_cells))), told, RunOptions(device="cuda"), NoProgress())]
    return fake, results


def test_submitit_local_gives_each_job_its_own_gpu_and_caps_concurrency(monkeypatch, tmp_path, gpus):
    gpus(2)
    fake, results = run_submitit(monkeypatch, tmp_path, 5, cluster="local")
    assert fake.peak == 2  # not all five at once
    assert [p["local_visible_gpus"] for p in fake.submitted[:2]] == [(0,), (1,)]
    assert all(p["gpus_per_node"] == 1 for p in fake.submitted)
    assert {r["device"] for r in results} == {"cuda"} and {r["cells_per_device"] for r in results} == {1}
    assert sorted(r["seed"] for r in results) == [0, 1, 2, 3, 4]


def test_submitit_local_with_cells_per_device_shares_each_gpu_k_ways(monkeypatch, tmp_path, gpus):
    gpus(2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the driver's own GPUs, by their ids
    fake, results = run_submitit(monkeypatch, tmp_path, 7, cluster="local", cells_per_device=2)
    assert fake.peak == 4
    assert sorted(p["local_visible_gpus"] for p in fake.submitted[:4]) == [(3,), (3,), (5,), (5,)]
    assert {r["cells_per_device"] for r in results} == {2}


def test_submitit_on_slurm_is_one_job_array_and_checks_the_device_in_the_job(monkeypatch, tmp_path, gpus):
    """A login node without a GPU submits `--device cuda` cells: the cell checks the device where it runs."""
    gpus(0)
    fake = FakeSubmitit("slurm")
    monkeypatch.setitem(sys.modules, "submitit", fake)
    summary = Runner(
        tiny_grid_spec(["fgsm"]),
        tmp_path / "res",
        options={"device": "cuda"},
        executor="submitit",
        executor_options={"cluster": "slurm", "folder": str(tmp_path / "logs"), "poll_s": 0.0},
    ).run()
    assert fake.submitted and fake.submitted[0]["gpus_per_node"] == 1  # submitted: not refused on the login node
    (failed,) = summary.failed  # here the "node" has no GPU either: the cell itself says so
    assert "CUDA is not available" in failed["error"]["message"]


def test_the_driver_still_refuses_cuda_without_a_gpu_for_local_executors(tmp_path, gpus):
    gpus(0)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Runner(tiny_grid_spec(["fgsm"]), tmp_path, options={"device": "cuda"}).run()
    assert SubmititExecutor(cluster="slurm").remote() and not SubmititExecutor(cluster="local").remote()


def test_the_driver_keeps_no_copy_of_the_data_when_cells_run_elsewhere(monkeypatch, tmp_path):
    """Each worker loads (and holds) the data it trains on; the driver only checks it loads."""
    from cobench.datasets.digits import Digits
    from cobench.executors.local import LocalExecutor
    from cobench.run.dataset_cache import clear_cache

    clear_cache()
    loads = []
    original = Digits.load
    monkeypatch.setattr(Digits, "load", lambda self, ctx: loads.append(1) or original(self, ctx))
    fake = FakeSubmitit("local")
    monkeypatch.setitem(sys.modules, "submitit", fake)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    summary = Runner(
        tiny_grid_spec(["fgsm"]),
        tmp_path / "res",
        options={"device": "cpu"},
        executor="submitit",
        executor_options={"cluster": "local", "folder": str(tmp_path / "logs"), "poll_s": 0.0},
    ).run()
    assert summary.ran == 1
    # the fake runs the job in this process: it loads the data again, because the driver's own copy
    # (from the preflight check) was dropped before any cell ran
    assert len(loads) == 2
    assert LocalExecutor.in_process and not SubmititExecutor.in_process
