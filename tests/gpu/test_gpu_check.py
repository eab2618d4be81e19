"""The prepared device check runs end to end on CPU in its tiny setting; benchmarks record load."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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
    assert sections["pgd"]["decisions_differ"] == 0
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
