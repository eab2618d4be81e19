"""The benchmarks' load recorder: the load a benchmark causes itself is not a reason to warn."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import machine_load


def test_the_load_average_left_by_the_benchmark_itself_does_not_make_it_busy(monkeypatch):
    cores = os.cpu_count() or 1
    monkeypatch.setattr(machine_load, "busy_processes", lambda sample_s: [])
    monkeypatch.setattr(machine_load, "gpu_load", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    lines: list[str] = []
    with machine_load.LoadRecorder(echo=lines.append) as load:
        monkeypatch.setattr(os, "getloadavg", lambda: (float(cores), 1.0, 0.5))  # our own threads
    assert load.record["idle"] and not lines
    assert load.record["after"]["loadavg"][0] == cores  # still recorded

    # another job running during the benchmark is seen and warned about
    busy = [{"pid": 1, "name": "python", "cpu_percent": 95.0}]
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with machine_load.LoadRecorder(echo=lines.append) as load:
        monkeypatch.setattr(machine_load, "busy_processes", lambda sample_s: busy)
    assert not load.record["idle"] and "after the benchmark" in lines[0] and "python (pid 1" in lines[0]


def test_a_high_load_average_before_the_benchmark_is_a_warning(monkeypatch):
    cores = os.cpu_count() or 1
    monkeypatch.setattr(machine_load, "busy_processes", lambda sample_s: [])
    monkeypatch.setattr(machine_load, "gpu_load", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (float(cores), 1.0, 0.5))
    lines: list[str] = []
    with machine_load.LoadRecorder(echo=lines.append) as load:
        pass
    assert not load.record["idle"] and "before the benchmark" in lines[0] and "1-minute load average" in lines[0]
