"""The prepared device check runs end to end on CPU in its tiny setting; benchmarks record load."""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from cobench.run.device import fp32_precision
from cobench.run.runner import RunSummary
from tests.data.formats import write_cifar10

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_environment(monkeypatch):
    """gpu_check sets CUBLAS_WORKSPACE_CONFIG for its process: put it back after each test."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"cobench_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_every_section_on_cpu_in_its_tiny_setting(tmp_path, capsys):
    write_cifar10(tmp_path / "data", n_train=40, n_test=20)
    gpu_check = load("gpu_check")
    report = gpu_check.main(
        ["--tiny", "--device", "cpu", "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / "out")]
    )
    sections = report["sections"]
    assert not any("error" in s or "skipped" in s for s in sections.values()), sections
    speed = sections["speed"]
    assert set(speed["steps_per_s"]) == {"reference", "cobench", "bf16", "channels_last"} and not speed["errors"]
    assert speed["ratio_to_reference"]["reference"] == 1.0
    assert (
        set(sections["cells_per_device"]["cells_per_hour"]) == {"1", "2"} and not sections["cells_per_device"]["failed"]
    )
    assert set(sections["cells_per_device"]["steady_cells_per_hour"]) == {"1", "2"}
    assert sections["pgd"]["decisions_differ"] == 0 and sections["pgd"]["agree"] is True
    assert sections["determinism"]["deterministic"]["identical_metrics"] is True
    assert sections["determinism"]["deterministic"]["numerics"]["deterministic_algorithms"] is True
    written = json.loads((tmp_path / "out" / "gpu_check-cpu.json").read_text())
    assert written["machine_load"]["before"]["cores"] >= 1 and "idle" in written["machine_load"]
    text = (tmp_path / "out" / "gpu_check-cpu.txt").read_text()
    assert "steps/s" in text and "cells/h" in text and "decisions differing: 0" in text
    assert text in capsys.readouterr().out


def test_gpu_check_skips_what_the_budget_leaves_no_time_for(tmp_path):
    write_cifar10(tmp_path / "data", n_train=40, n_test=20)
    report = load("gpu_check").main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--data-dir",
            str(tmp_path / "data"),
            "--out-dir",
            str(tmp_path / "out"),
            "--budget-s",
            "0",
            "--sections",
            "pgd",
        ]
    )
    assert "skipped" in report["sections"]["pgd"]


def test_gpu_check_names_an_unknown_section(capsys):
    with pytest.raises(SystemExit):
        load("gpu_check").parse_args(["--sections", "speed,sped"])
    assert "unknown section(s) sped; valid: speed, cells_per_device, pgd, determinism" in capsys.readouterr().err


def test_gpu_check_names_a_missing_data_dir(tmp_path):
    with pytest.raises(SystemExit, match="cifar10-prefix"):
        load("gpu_check").main(["--tiny", "--device", "cpu", "--data-dir", str(tmp_path / "none")])


def test_machine_load_warns_when_the_machine_is_not_idle(monkeypatch, capsys):
    machine_load = load("machine_load")
    ticks = iter([{1: ("trainer", 100), 2: ("idle", 5)}, {1: ("trainer", 200), 2: ("idle", 5)}])
    monkeypatch.setattr(machine_load, "_cpu_ticks", lambda: next(ticks))
    monkeypatch.setattr(machine_load.time, "sleep", lambda s: None)
    monkeypatch.setattr(machine_load.os, "getloadavg", lambda: (1.9, 1.5, 1.0))
    monkeypatch.setattr(machine_load.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(machine_load, "gpu_load", lambda: None)
    record = machine_load.machine_load()
    assert record["busy_processes"][0]["name"] == "trainer" and [p["pid"] for p in record["busy_processes"]] == [1]
    assert not record["idle"] and "load average 1.90 on 2 cores" in record["not_idle_because"][0]
    assert machine_load.warn_if_busy(record, "before the benchmark")
    assert "WARNING: the machine was not idle before the benchmark" in capsys.readouterr().out
    assert not machine_load.warn_if_busy({"idle": True}, "now")


def test_gpu_check_times_both_attacks_as_the_evaluators_run_them_and_allows_rounding(tmp_path, monkeypatch):
    """Section 3: eval mode and true fp32 (not training's TF32), and one decision in 16 flipped by
    rounding is agreement, not a failure."""
    write_cifar10(tmp_path / "data", n_train=40, n_test=20)
    gpu_check = load("gpu_check")
    real_load, seen = gpu_check.load_script, []

    def load_spied(name):
        module = real_load(name)
        if name == "pgd_eval":
            real_pgd, real_attack = module.pgd_until_fooled, module.attack

            def pgd_until_fooled(model, *args, **kwargs):
                seen.append((model.training, set(fp32_precision().values())))
                return real_pgd(model, *args, **kwargs)

            def attack(*args, prune, **kwargs):
                seconds, robust = real_attack(*args, prune=prune, **kwargs)
                if prune:  # a sample on its decision boundary, rounded the other way
                    robust = robust.clone()
                    robust[0] = ~robust[0]
                return seconds, robust

            module.pgd_until_fooled, module.attack = pgd_until_fooled, attack
        return module

    monkeypatch.setattr(gpu_check, "load_script", load_spied)
    args = gpu_check.parse_args(["--tiny", "--device", "cpu", "--data-dir", str(tmp_path / "data")])
    out = {}
    gpu_check.check_pgd(args, torch.device("cpu"), out)
    assert seen and all(s == (False, {"ieee"}) for s in seen), seen
    assert out["decisions_differ"] == 1 and out["decisions_allowed_to_differ"] == 1 and out["agree"] is True


def test_pgd_eval_attacks_in_the_evaluators_setting(monkeypatch):
    """Eval mode and true fp32, as the pgd evaluators run: a GPU would otherwise time TF32 convolutions."""
    pgd_eval = load("pgd_eval")
    seen = []
    real = pgd_eval.pgd_until_fooled

    def spy(model, *args, **kwargs):
        seen.append((model.training, set(fp32_precision().values())))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(pgd_eval, "pgd_until_fooled", spy)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3), torch.nn.BatchNorm1d(3)).train()
    x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 3, (8,))
    args = argparse.Namespace(eps=8.0, step_size=2.0, steps=2, restarts=1, batch_size=4)
    _, robust = pgd_eval.attack(model, x, y, args, prune=True, device=torch.device("cpu"))
    assert len(robust) == 8 and seen == [(False, {"ieee"})] * 2
    assert model.training  # restored


def test_gpu_check_counts_cells_per_hour_from_the_cells_own_times_not_worker_start_up(monkeypatch):
    gpu_check = load("gpu_check")

    class SlowStartRunner:
        """Cells that each took 2 s, behind a pool that took 30 s to start."""

        def __init__(self, spec, results_dir, **kwargs):
            self.k = kwargs["executor_options"]["cells_per_device"]

        def run(self):
            clock.now += 30 + 2 * 2 / self.k
            return RunSummary(results=[{"status": "ok", "wall_time_s": 2.0}] * 2, ran=2)

    class Clock:
        now = 0.0

        def perf_counter(self):
            return self.now

    clock = Clock()
    monkeypatch.setattr(gpu_check, "Runner", SlowStartRunner)
    monkeypatch.setattr(gpu_check, "time", clock)
    args = gpu_check.parse_args(["--tiny", "--device", "cpu"])
    out = {}
    gpu_check.check_cells_per_device(args, torch.device("cpu"), out)
    assert out["steady_cells_per_hour"] == {"1": 1800.0, "2": 3600.0}  # K cells per 2 s
    assert out["ratio_to_one"] == {"1": 1.0, "2": 2.0}
    assert out["cells_per_hour"]["1"] == pytest.approx(3600 * 2 / 34)  # end to end: start-up included


def test_gpu_check_stops_a_started_section_at_its_budget_and_keeps_what_it_measured(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", n_train=40, n_test=20)
    gpu_check = load("gpu_check")

    def slow_section(args, device, out=None):
        out = {} if out is None else out
        out["first"] = 1.0
        time.sleep(20)
        out["second"] = 2.0
        return out

    monkeypatch.setattr(gpu_check, "SECTIONS", (("speed", slow_section, 0.3),))
    t0 = time.perf_counter()
    report = gpu_check.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--data-dir",
            str(tmp_path / "data"),
            "--out-dir",
            str(tmp_path / "out"),
            "--budget-s",
            "3",
            "--sections",
            "speed",
        ]
    )
    assert time.perf_counter() - t0 < 15
    section = report["sections"]["speed"]
    assert section["first"] == 1.0 and "second" not in section and "stopped after" in section["stopped"]
    assert "speed: stopped after" in (tmp_path / "out" / "gpu_check-cpu.txt").read_text()


def test_each_section_ends_by_its_share_of_the_budget():
    gpu_check = load("gpu_check")
    ends = gpu_check.section_ends(["speed", "pgd"], 100.0)
    assert ends == pytest.approx({"speed": 60.0, "pgd": 100.0})
