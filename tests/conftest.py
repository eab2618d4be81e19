"""Shared fixtures: tiny data, tiny models and a StepContext that records updates."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from cobench.api import DataSplits
from cobench.plugins import PluginManager, reset_plugin_manager
# the plugin-author fixtures (cobench.testing is also a pytest11 plugin once cobench is installed)
from cobench.testing import (  # noqa: F401
    RecordingStep, cobench_pm, cobench_step_ctx, cobench_tiny_data, cobench_tiny_grid, cobench_tiny_model,
    make_tiny_model, tiny_splits,
)


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
    return tiny_splits()


@pytest.fixture
def tiny_model(cobench_tiny_model) -> nn.Module:
    return cobench_tiny_model


@pytest.fixture
def step_ctx_factory():
    return RecordingStep


def param_vector(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def cli_run(args: list[str], **kwargs: Any):
    from click.testing import CliRunner

    from cobench.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)
