"""No host sync in a training step: every built-in method's step is counted under a
TorchFunctionMode that sees each tensor-to-host conversion (item, bool, nonzero, boolean masks)."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from cobench.grid.spec import TrainingConfig
from cobench.options import RunOptions
from cobench.run.training import train
from tests.gpu.test_precision import tiny_parts

#: tensor methods that make the host wait for the device
SYNCING = {
    "item",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "nonzero",
    "tolist",
    "numpy",
    "cpu",
    "masked_select",
    "unique",
    "argwhere",
    "any_",
    "equal",
}


class SyncCounter(TorchFunctionMode):
    """Counts the calls that read a device tensor's value on the host, by name."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in SYNCING:
            self.calls.append(name)
        elif name in ("__getitem__", "__setitem__") and len(args) > 1 and self._masks(args[1]):
            self.calls.append(f"{name}[bool mask]")
        return func(*args, **(kwargs or {}))

    @staticmethod
    def _masks(index) -> bool:
        items = index if isinstance(index, tuple) else (index,)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


def step_syncs(method, **training) -> list[str]:
    """The syncing calls made inside the method's training steps (one epoch of two steps)."""
    counter = SyncCounter()
    inner = method.train_step

    def counted(batch, ctx):
        with counter:
            inner(batch, ctx)

    method.train_step = counted
    config = TrainingConfig(epochs=max(1, int(method.replays)), batch_size=16, lr_max=0.1, **training).as_config()
    train(tiny_parts(method, n_train=32, shape=(3, 8, 8)), config, RunOptions(device="cpu"))
    return counter.calls


def test_the_counter_sees_the_syncs_it_is_meant_to():
    counter = SyncCounter()
    x = torch.rand(4)
    with counter:
        bool((x > 0.5).any())
        x[x > 0.5]
        x.sum().item()
        x.nonzero()
    assert counter.calls == ["__bool__", "__getitem__[bool mask]", "item", "nonzero"]


@pytest.mark.parametrize(
    "name",
    [
        "grad-align",
        "elle",
        "elle-a",
        "cure",
        "cure-elle",
        "kim",
        "fgsm",
        "rs-fgsm",
        "n-fgsm",
        "free",
        "zerograd",
        "multigrad",
        "llr",
        "fgsm-pgi",
        "gat",
        "pgd",
    ],
)
def test_a_training_step_never_waits_for_the_device(pm, name):
    params = {"steps": 2} if name in ("llr", "pgd") else {}
    method = pm.registry.get("methods", name)(**params)
    assert step_syncs(method) == []


def test_elle_a_lambda_on_the_device_equals_the_host_schedule_exactly():
    from cobench.methods.elle import AdaptiveLambda

    errors = torch.rand(40, generator=torch.Generator().manual_seed(0), dtype=torch.float32) ** 4
    errors[[10, 25]] = 5.0  # two spikes
    host, device = AdaptiveLambda(4000.0, 0.99, 2.0), AdaptiveLambda(4000.0, 0.99, 2.0)
    for e in errors:
        assert device.weight(e) == pytest.approx(host.lam, rel=1e-7)
        host.observe(e.item())
        device.observe(e)
        assert device.lam.item() == host.lam and device.mean.item() == host.mean and device.m2.item() == host.m2
    assert host.lam > 0
