"""Checkpoints and devices: the cell's own GPU's generator only, and the device type recorded."""

from __future__ import annotations

import pytest
import torch

from cobench.grid.spec import TrainingConfig
from cobench.methods.fgsm import FGSM
from cobench.options import RunOptions
from cobench.run.checkpoints import (
    CellCheckpoint,
    CheckpointDeviceError,
    check_resume_device,
    restore_rng_states,
    rng_states,
)
from cobench.run.training import train
from tests.gpu.test_precision import tiny_parts


@pytest.fixture
def fake_gpus(monkeypatch):
    """Two visible GPUs as far as the checkpoint code asks: per-device RNG states, recorded calls."""
    calls = {"get": [], "set": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda,
        "get_rng_state",
        lambda device="cuda": (
            calls["get"].append(torch.device(device))
            or torch.full((16,), torch.device(device).index or 0, dtype=torch.uint8)
        ),
    )
    monkeypatch.setattr(
        torch.cuda,
        "set_rng_state",
        lambda state, device="cuda": calls["set"].append((int(state[0]), torch.device(device))),
    )

    def every_gpu(*args, **kwargs):
        raise AssertionError("the state of every visible GPU was asked for")

    monkeypatch.setattr(torch.cuda, "get_rng_state_all", every_gpu)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", every_gpu)
    return calls


def test_a_checkpoint_saves_only_the_cells_own_gpu_and_its_device_type(fake_gpus):
    states = rng_states(torch.Generator(), torch.device("cuda:1"))
    assert states["device"] == "cuda" and fake_gpus["get"] == [torch.device("cuda:1")]
    assert int(states["cuda"][0]) == 1
    restore_rng_states(states, torch.Generator(), torch.device("cuda:0"))  # resumed with fewer GPUs visible
    assert fake_gpus["set"] == [(1, torch.device("cuda:0"))]


def test_an_old_checkpoint_with_every_gpus_state_resumes_on_one(fake_gpus):
    states = rng_states(torch.Generator(), torch.device("cuda:0"))
    states["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]  # saved with 4 GPUs visible
    restore_rng_states(states, torch.Generator(), torch.device("cuda:1"))
    assert fake_gpus["set"] == [(1, torch.device("cuda:1"))]  # its own device's state, not all four
    cpu_state = states.pop("generator")
    states["generator"] = torch.zeros(16, dtype=torch.uint8)  # without a recorded device: told by the state's size
    del states["device"]
    check_resume_device(states, torch.device("cuda:0"))
    states["generator"] = cpu_state
    with pytest.raises(CheckpointDeviceError, match="written on cpu"):
        check_resume_device(states, torch.device("cuda:0"))


def test_a_cpu_checkpoint_resumed_on_cuda_is_refused_in_one_line(tmp_path):
    training = TrainingConfig(epochs=1, batch_size=32, lr_max=0.1).as_config()
    checkpoint = CellCheckpoint(tmp_path, "cell")
    train(tiny_parts(FGSM()), training, RunOptions(device="cpu"), checkpoint=checkpoint)
    states = checkpoint.load()["rng"]
    assert states["device"] == "cpu" and states["cuda"] is None
    with pytest.raises(CheckpointDeviceError, match=r"written on cpu and this run trains on cuda.*--device cpu"):
        check_resume_device(states, torch.device("cuda"))
    del states["device"]  # a checkpoint from before the device was recorded: told by its generator
    with pytest.raises(CheckpointDeviceError, match="written on cpu"):
        check_resume_device(states, torch.device("cuda:0"))
    check_resume_device(states, torch.device("cpu"))


def test_a_cuda_checkpoint_resumed_on_cpu_fails_the_cell_with_the_reason(tmp_path):
    training = TrainingConfig(epochs=1, batch_size=32, lr_max=0.1).as_config()
    checkpoint = CellCheckpoint(tmp_path, "cell")
    train(tiny_parts(FGSM()), training, RunOptions(device="cpu"), checkpoint=checkpoint)
    saved = checkpoint.load()
    saved["rng"].update(
        device="cuda", generator=torch.zeros(16, dtype=torch.uint8), cuda=torch.zeros(16, dtype=torch.uint8)
    )
    checkpoint.save(saved)
    with pytest.raises(
        CheckpointDeviceError, match=rf"checkpoint {tmp_path}/cell.pt was written on cuda.*--device cuda"
    ):
        train(tiny_parts(FGSM()), training, RunOptions(device="cpu"), checkpoint=checkpoint)


# --------------------------------------------------------------------------- large checkpoints (FGSM-PGI)
class FakeClock:
    """``time`` for the training loop: every reading advances 0.1 s; a save adds its own cost."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 0.1
        return self.now


class SlowCheckpoint:
    """Records after which epochs a checkpoint was written; each write 'takes' ``cost`` seconds."""

    def __init__(self, clock: FakeClock, cost: float):
        self.clock, self.cost, self.epochs = clock, cost, []
        self.path = "fake.pt"

    def load(self):
        return None

    def save(self, state):
        self.epochs.append(state["epoch"])
        self.clock.now += self.cost


def test_a_slow_checkpoint_is_written_less_often_and_its_cost_recorded(monkeypatch):
    from cobench.methods.fgsm_pgi import FGSMPGI
    from cobench.run import training as loop

    config = TrainingConfig(epochs=8, batch_size=32, lr_max=0.1).as_config()
    for cost, expected in ((0.0, [1, 8]), (2.0, [1, 8])):
        clock = FakeClock()
        monkeypatch.setattr(loop, "time", clock)
        checkpoint = SlowCheckpoint(clock, cost)
        outcome = train(tiny_parts(FGSMPGI()), config, RunOptions(device="cpu"), checkpoint=checkpoint)
        # a 0.2 s or a 2.2 s write against a fraction of a second of 'training' per epoch would cost far
        # more than 5% of the training: only the first and the last epoch's are written
        assert checkpoint.epochs == expected
        # each write is timed across two clock ticks: the state's wall stamp and the end of the write
        assert outcome.cost["checkpoint_s"] == pytest.approx(len(expected) * (cost + 0.2))


def test_checkpoints_are_due_by_their_share_of_the_training_time_however_quick():
    from cobench.run.training import checkpoint_due

    assert checkpoint_due(0.0, 0.0)  # the first, which times the writes
    assert not checkpoint_due(0.5, 3.0) and checkpoint_due(0.5, 10.0)  # a quick write after short GPU epochs
    assert not checkpoint_due(5.0, 60.0) and checkpoint_due(5.0, 100.0)


class SteppedClock:
    """``time`` that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


@pytest.mark.parametrize(("epoch_s", "every"), [(3.0, 4), (600.0, 1)], ids=["gpu-epochs", "cpu-epochs"])
def test_quick_checkpoints_cost_a_few_percent_of_training_on_short_gpu_epochs(monkeypatch, epoch_s, every):
    """30 epochs, each write taking 0.5 s: under 1 s, it was written after every epoch, 17% of 3-s epochs."""
    from cobench.run import training as loop

    clock = SteppedClock()
    monkeypatch.setattr(loop, "time", clock)
    cadence, written = loop.CheckpointCadence(), []

    def write():
        clock.now += 0.5

    for epoch in range(1, 31):
        clock.now += epoch_s
        cadence.trained(epoch_s)
        if cadence.due():
            cadence.timed(write)
            written.append(epoch)
    assert written == list(range(1, 31, every))
    trained = 30 * epoch_s
    assert cadence.total_s <= loop.CHECKPOINT_MAX_OVERHEAD * trained + 0.5  # 5% and the first write
