"""Determinism and fp32 precision: what is set, what is recorded, and how sharing is compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cobench.errors import ConfigError
from cobench.grid.resolve import resolve
from cobench.leaderboard.collect import StoredResult
from cobench.leaderboard.trust.rows import timing_key as timing_key_of
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import execute_cell
from cobench.run.device import configure_numerics, fp32_precision, numerics_record, true_fp32
from cobench.run.evaluation import evaluation_mode
from cobench.store.tables import aggregate
from cobench.testing import tiny_grid_spec
from tests.conftest import cli_run


@pytest.fixture
def restore_numerics(monkeypatch):
    """Put back every global switch a test turns (deterministic algorithms, cuDNN, precision)."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # registers the original state for teardown
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.conv.fp32_precision,
    )
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
    torch.backends.cudnn.conv.fp32_precision = before[4]


def test_evaluation_runs_in_true_fp32_and_training_keeps_its_precision(restore_numerics):
    torch.backends.cudnn.conv.fp32_precision = "tf32"  # PyTorch's default for cuDNN convolutions
    model = torch.nn.Linear(2, 2)
    with evaluation_mode(model):
        inside = fp32_precision()
    assert set(inside.values()) == {"ieee"} and "cudnn_conv" in inside and "cuda_matmul" in inside
    assert fp32_precision()["cudnn_conv"] == "tf32"  # restored for training
    with pytest.raises(RuntimeError), true_fp32():
        raise RuntimeError
    assert fp32_precision()["cudnn_conv"] == "tf32"


def test_deterministic_sets_and_records_every_switch(restore_numerics):
    torch.backends.cudnn.benchmark = True  # left on by something else in the process
    configure_numerics(deterministic=True)
    record = numerics_record()
    assert record["deterministic_algorithms"] and record["cudnn_deterministic"] and not record["cudnn_benchmark"]
    assert record["cublas_workspace_config"] == ":4096:8" and record["eval_fp32_precision"] == "ieee"
    assert record["train_fp32_precision"]["cudnn_conv"] == torch.backends.cudnn.conv.fp32_precision
    configure_numerics(deterministic=False)
    record = numerics_record()
    assert (
        not record["deterministic_algorithms"] and not record["cudnn_deterministic"] and not record["cudnn_benchmark"]
    )


def test_a_result_records_numerics_execution_and_the_cpu(tmp_path, restore_numerics):
    out = cli_run(
        [
            "run",
            "--methods",
            "fgsm",
            "--eps",
            "8",
            "--epochs",
            "1",
            "--evaluators",
            "clean",
            "--param",
            "models.small-cnn.width=8",
            "--device",
            "cpu",
            "--deterministic",
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert out.exit_code == 0, out.output
    (path,) = tmp_path.glob("**/eps*.json")
    prov = json.loads(path.read_text())["provenance"]
    assert prov["numerics"]["deterministic_algorithms"] is True
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # set by the command, before any CUDA work
    assert prov["execution"] == {"executor": "local", "cells_per_device": 1, "train_data": "device"}
    assert prov["machine"]["cpu"] and prov["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def row(method, t, shared):
    return {
        "status": "ok",
        "dataset": "d",
        "model": "m",
        "injection": "none",
        "beta": 0,
        "method": method,
        "eps": 8,
        "clean_acc": 0.5,
        "cost_time_per_step_s": t,
        "cells_per_device": shared,
    }


def test_times_taken_under_different_sharing_are_not_compared():
    same = {r["method"]: r for r in aggregate([row("fgsm", 1.0, 1), row("pgd", 4.0, 1)])}
    assert same["pgd"]["cost_vs_fgsm"] == pytest.approx(4.0)
    mixed = {r["method"]: r for r in aggregate([row("fgsm", 1.0, 4), row("pgd", 4.0, 1)])}
    assert mixed["pgd"]["cost_vs_fgsm"] is None  # FGSM shared a GPU with 3 other cells, PGD had it alone
    old = {r["method"]: r for r in aggregate([row("fgsm", 1.0, None), row("pgd", 2.0, None)])}
    assert old["pgd"]["cost_vs_fgsm"] == pytest.approx(2.0)  # results from before sharing was recorded


def timing_key(result: dict) -> str | None:
    return timing_key_of(StoredResult(Path("r.json"), result))


def test_board_timing_keys_tell_sharing_apart_and_keep_old_results_keys():
    prov = {"machine": {"device_name": "H100"}, "cobench": {"version": "1"}}
    old = timing_key({"provenance": prov})
    assert old == json.dumps([prov["machine"], prov["cobench"]], sort_keys=True)  # unchanged for stored results
    alone = timing_key({"provenance": {**prov, "execution": {"executor": "local", "cells_per_device": 1}}})
    shared = timing_key({"provenance": {**prov, "execution": {"executor": "ray", "cells_per_device": 4}}})
    assert len({old, alone, shared}) == 3
    resident = {"executor": "local", "cells_per_device": 1, "train_data": "device"}
    assert timing_key({"provenance": {**prov, "execution": resident}}) == alone  # resident is what was always done
    on_host = timing_key({"provenance": {**prov, "execution": {**resident, "train_data": "host"}}})
    assert on_host not in {old, alone, shared}


def test_a_library_reading_the_legacy_tf32_switches_during_evaluation_does_not_crash(restore_numerics):
    """PyTorch 2.14 raises 'a mix of the legacy and new APIs' when ``cudnn.allow_tf32`` is read while
    the conv and RNN precisions disagree with it (what true_fp32 left them in before the fix)."""
    before = torch.backends.cudnn.allow_tf32
    with evaluation_mode(torch.nn.Linear(2, 2)):
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert set(fp32_precision().values()) == {"ieee"}
    assert torch.backends.cudnn.allow_tf32 is before  # readable again, and restored


def test_cudnn_benchmark_is_off_unless_opted_into_and_never_with_deterministic(restore_numerics):
    torch.backends.cudnn.benchmark = True  # left on by something else in the process
    configure_numerics(deterministic=False)
    assert not numerics_record()["cudnn_benchmark"]
    configure_numerics(deterministic=False, benchmark=True)
    assert numerics_record()["cudnn_benchmark"] is True
    with pytest.raises(ConfigError, match="deterministic rules out"):
        configure_numerics(deterministic=True, benchmark=True)
    out = cli_run(["run", "--deterministic", "--cudnn-benchmark", "--device", "cpu"])
    assert out.exit_code == 2 and "give one or the other" in out.output


def test_a_cell_run_with_cudnn_benchmark_records_it(restore_numerics, tmp_path):
    (cell,) = resolve(tiny_grid_spec(["fgsm"]), get_plugin_manager().registry)
    result = execute_cell(cell.config(), {"device": "cpu", "checkpoints": False, "cudnn_benchmark": True})
    assert result["status"] == "ok", result.get("error")
    assert result["provenance"]["numerics"]["cudnn_benchmark"] is True
