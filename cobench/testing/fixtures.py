"""Building blocks for cobench's own tests and plugin authors' tests: tiny data, a tiny model,
a recording step context, a one-epoch grid, and the pytest fixtures that hand them out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from cobench.api import DataSplits, StepContext, TrainSetup
from cobench.plugins import PluginManager, get_plugin_manager, reset_plugin_manager


# --------------------------------------------------------------------------- building blocks
def tiny_splits(
    seed: int = 0, n_train: int = 64, n_test: int = 32, classes: int = 3, shape: tuple[int, int, int] = (1, 8, 8)
) -> DataSplits:
    """Random images in [0, 1] with random labels: enough to exercise code, not to learn."""
    g = torch.Generator().manual_seed(seed)
    return DataSplits(
        torch.rand(n_train, *shape, generator=g),
        torch.randint(0, classes, (n_train,), generator=g),
        torch.rand(n_test, *shape, generator=g),
        torch.randint(0, classes, (n_test,), generator=g),
        classes,
        (0.5,) * shape[0],
        (0.25,) * shape[0],
    )


def make_tiny_model(in_ch: int = 1, classes: int = 3, seed: int = 0) -> nn.Module:
    """Conv-BN-ReLU-linear; call it once on a batch (or use the fixture) to materialise it."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_ch, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(classes)
    )


class RecordingStep(StepContext):
    """A StepContext whose update records the losses and does a plain SGD step (lr 0 by default)."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        n_train: int = 64,
        image_shape=(1, 8, 8),
        num_classes: int = 3,
        lr: float = 0.0,
        seed: int = 0,
    ):
        self.losses: list[float] = []
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)
        setup = TrainSetup(
            eps=eps,
            n_train=n_train,
            num_classes=num_classes,
            image_shape=image_shape,
            device=torch.device("cpu"),
            generator=torch.Generator().manual_seed(seed),
            epochs=1,
            steps_per_epoch=1,
        )

        def update(loss: Tensor, logits: Tensor, y: Tensor) -> None:
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.losses.append(loss.item())

        super().__init__(model, setup, update)


def tiny_grid_spec(methods: list[str], **grid: Any):
    """A one-epoch grid on 8x8 digits with a width-4 small CNN: seconds per cell on a CPU."""
    from cobench.grid.spec import GridSpec

    spec = GridSpec(**{"methods": methods, "eps": [8], "evaluators": ["clean"], **grid})
    spec.override(epochs=1, probe_size=32)
    spec.params.setdefault("models", {}).setdefault("small-cnn", {}).setdefault("width", 4)
    spec.params.setdefault("datasets", {}).setdefault("digits", {}).setdefault("size", 8)
    return spec


class InputRecorder(nn.Module):
    """Wraps a model and records every input it is called on (``inputs``), their range and
    their distance from the clean batch (when the shapes match)."""

    def __init__(self, model: nn.Module, clean: Tensor):
        super().__init__()
        self.model = model
        self.clean = clean
        self.lows: list[float] = []
        self.highs: list[float] = []
        self.distances: list[float] = []
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            self.inputs.append(x.detach().clone())
            self.lows.append(x.min().item())
            self.highs.append(x.max().item())
            if x.shape == self.clean.shape:
                self.distances.append((x - self.clean).abs().max().item())
        return self.model(x)


def strict_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def cobench_pm() -> Iterator[PluginManager]:
    """A plugin manager loaded afresh from the installed entry points (and reset afterwards)."""
    reset_plugin_manager()
    yield get_plugin_manager()
    reset_plugin_manager()


@pytest.fixture
def cobench_tiny_data() -> DataSplits:
    return tiny_splits()


@pytest.fixture
def cobench_tiny_model() -> nn.Module:
    model = make_tiny_model()
    model(torch.zeros(2, 1, 8, 8))  # materialise the lazy layer
    return model


@pytest.fixture
def cobench_step_ctx() -> type[RecordingStep]:
    return RecordingStep


@pytest.fixture
def cobench_tiny_grid() -> Callable[..., Any]:
    return tiny_grid_spec
