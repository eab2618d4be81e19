"""benchmarks/grid_throughput.py runs end to end in a tiny setting (a benchmark: its figures are not checked)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_grid_throughput_runs_both_ways_and_writes_its_figures(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("cobench_grid_benchmark", ROOT / "benchmarks" / "grid_throughput.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "grid.json"
    bench.main(
        ["--eps", "16", "--seeds", "0", "--epochs", "1", "--steps", "2", "--restarts", "1", "--device", "cpu"]
        + ["--json", str(out)]
    )
    report = json.loads(out.read_text())
    assert report["cells"] == 1 and report["reference_s"] > 0 and report["cobench_s"] > 0
    assert len(report["reference_metrics"]) == len(report["cobench_metrics"]) == 1
    assert "before" in report["machine_load"] and "cells/hour" in capsys.readouterr().out
