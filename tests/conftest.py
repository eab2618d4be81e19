"""Shared fixtures: tiny data, tiny models and a StepContext that records updates."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from cobench.api import DataSplits, StepContext, TrainSetup
from cobench.plugins import PluginManager, reset_plugin_manager


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Every test sees a freshly loaded plugin manager."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def pm() -> PluginManager:
    from cobench.plugins import get_plugin_manager

    return get_plugin_manager()


@pytest.fixture
def tiny_data() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    return DataSplits(
        torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g),
        torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g),
        3, (0.5,), (0.25,),
    )


def make_tiny_model(in_ch: int = 1, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_ch, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.LazyLinear(classes))


@pytest.fixture
def tiny_model() -> nn.Module:
    model = make_tiny_model()
    model(torch.zeros(2, 1, 8, 8))  # materialise the lazy layer
    return model


class RecordingStep(StepContext):
    """A StepContext whose update records the losses and does an SGD step."""

    def __init__(self, model: nn.Module, eps: float, n_train: int = 64, image_shape=(1, 8, 8), num_classes: int = 3,
                 lr: float = 0.0, seed: int = 0):
        self.losses: list[float] = []
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)
        setup = TrainSetup(eps=eps, n_train=n_train, num_classes=num_classes, image_shape=image_shape,
                           device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                           epochs=1, steps_per_epoch=1)

        def update(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.losses.append(loss.item())

        super().__init__(model, setup, update)


@pytest.fixture
def step_ctx_factory():
    return RecordingStep


def param_vector(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def cli_run(args: list[str], **kwargs: Any):
    from click.testing import CliRunner

    from cobench.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)
