"""Shared fixtures: a fresh plugin manager per test, and the cobench.testing fixtures
(tiny data, tiny models, a StepContext that records updates)."""

from __future__ import annotations

from typing import Any

import pytest

from cobench.plugins import PluginManager, reset_plugin_manager

# the plugin-author fixtures (cobench.testing is also a pytest11 plugin once cobench is installed)
from cobench.testing import (  # noqa: F401
    cobench_pm,
    cobench_step_ctx,
    cobench_tiny_data,
    cobench_tiny_grid,
    cobench_tiny_model,
)


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Every test sees a freshly loaded plugin manager."""
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture(autouse=True)
def _private_weights_store(tmp_path_factory, monkeypatch):
    """Weights that tests save (--save-models) go to a folder of the test's own, never the user's cache."""
    monkeypatch.setenv("COBENCH_WEIGHTS_STORE", str(tmp_path_factory.mktemp("weights-store")))


@pytest.fixture
def pm() -> PluginManager:
    from cobench.plugins import get_plugin_manager

    return get_plugin_manager()


def cli_run(args: list[str], **kwargs: Any):
    from click.testing import CliRunner

    from cobench.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)
