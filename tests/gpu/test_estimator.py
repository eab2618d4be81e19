"""The dry-run estimator times on a GPU as the runs it estimates would run there."""

from __future__ import annotations

import types

import torch

from cobench.grid.resolve import resolve
from cobench.leaderboard import estimate
from cobench.options import RunOptions
from cobench.testing import tiny_grid_spec


def test_the_attack_step_clock_starts_after_the_warm_up_has_finished_on_the_device(pm, monkeypatch):
    (cell,) = resolve(tiny_grid_spec(["fgsm"]), pm.registry)
    events: list[str] = []
    monkeypatch.setattr(estimate, "input_gradient", lambda *a, **k: events.append("attack step"))
    monkeypatch.setattr(estimate, "sync", lambda device: events.append(f"sync {device}"))
    ticks = iter([10.0, 10.5])
    monkeypatch.setattr(
        estimate, "time", types.SimpleNamespace(perf_counter=lambda: events.append("clock") or next(ticks))
    )
    seconds = estimate.time_per_attack_step(cell, (1, 8, 8), 10, torch.device("cpu"))
    assert events == ["attack step", "sync cpu", "clock", "attack step", "sync cpu", "clock"]
    assert seconds == 0.5


def test_the_estimate_uses_the_runs_channels_last_and_compile(pm, monkeypatch):
    (cell,) = resolve(tiny_grid_spec(["fgsm"]), pm.registry)
    seen: list[RunOptions] = []

    def fake_train(parts, training, options, *args, **kwargs):
        seen.append(options)
        return types.SimpleNamespace(history=[{"epoch_train_time_s": 2.0}])

    monkeypatch.setattr(estimate, "train", fake_train)
    assert (
        estimate.time_per_step(
            cell, (1, 8, 8), 10, torch.device("cpu"), 4, RunOptions(channels_last=True, compile=True)
        )
        == 0.5
    )
    assert seen[0].channels_last and seen[0].compile
    formats = []
    monkeypatch.setattr(
        estimate,
        "input_gradient",
        lambda model, x, *a, **k: formats.append(x.is_contiguous(memory_format=torch.channels_last)),
    )
    estimate.time_per_attack_step(cell, (3, 8, 8), 10, torch.device("cpu"), channels_last=True)
    assert formats == [True, True]
