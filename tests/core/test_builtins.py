"""Built-in models and the embedded dataset; the CLI-commands hook."""

from __future__ import annotations

import click
import pytest
import torch

from cobench.api import DataContext
from cobench.datasets.digits import Digits
from cobench.models.preact_resnet import PreActResNet18
from cobench.models.small_cnn import SmallCNN


@pytest.mark.parametrize("model", [SmallCNN(width=8), PreActResNet18(width=8)])
@pytest.mark.parametrize("shape, classes", [((3, 32, 32), 10), ((1, 16, 16), 7)])
def test_models_build_for_any_channels_size_and_classes(model, shape, classes):
    net = model.build(num_classes=classes, image_shape=shape)
    out = net(torch.rand(2, *shape))
    assert out.shape == (2, classes)


def test_preact_resnet18_has_the_standard_size():
    net = PreActResNet18().build(num_classes=10, image_shape=(3, 32, 32))
    n_params = sum(p.numel() for p in net.parameters())
    assert 11.1e6 < n_params < 11.2e6  # 11.17M, as in Wong et al.'s PreActResNet18


def test_embedded_digits_needs_no_download_and_has_a_fixed_split():
    data = Digits().load(DataContext(data_dir="/nonexistent", download=False, seed=123))
    again = Digits().load(DataContext(data_dir="/nonexistent", download=False, seed=7))
    assert data.train_x.shape[1:] == (1, 16, 16) and len(data.train_x) + len(data.test_x) == 1797
    assert data.train_x.min() >= 0 and data.train_x.max() <= 1
    assert set(data.train_y.unique().tolist()) == set(range(10))
    assert torch.equal(data.test_x, again.test_x)  # the split does not depend on the cell's seed


def test_register_commands_hook_adds_a_subcommand(pm):
    from cobench import hookimpl
    from cobench.cli import _load_plugin_commands, cli
    from tests.conftest import cli_run

    class Commands:
        @hookimpl
        def register_commands(self, cli):
            @cli.command(name="hello-plugin")
            def hello():
                click.echo("hello from a plugin")

    pm.register(Commands(), "commands-plugin")
    try:
        _load_plugin_commands()
        assert cli_run(["hello-plugin"]).output.strip() == "hello from a plugin"
    finally:
        cli.commands.pop("hello-plugin", None)
