"""A pytest plugin for cobench plugin authors: fixtures and the contract every method must pass.

Installed with cobench (``[project.entry-points.pytest11]``), so in a plugin package's test
suite the fixtures are simply available and the contract is one subclass::

    from cobench.testing import MethodContract

    class TestMyMethod(MethodContract):
        method_name = "my-method"          # the name your plugin registers
        params = {"alpha": 0.5}            # optional hyperparameter overrides
        max_perturbation = 1.0             # optional: |delta| <= this * eps

Fixtures: ``cobench_pm`` (a freshly loaded plugin manager), ``cobench_tiny_data`` (64/32
random 1x8x8 images, 3 classes), ``cobench_tiny_model`` (a materialised conv-BN-linear
net for them), ``cobench_step_ctx`` (the :class:`RecordingStep` class: a
:class:`~cobench.api.StepContext` whose ``update`` records losses and takes an SGD step)
and ``cobench_tiny_grid`` (a function making a one-epoch :class:`~cobench.grid.GridSpec`
on the embedded digits dataset, for end-to-end tests).
"""
from __future__ import annotations

import copy
import importlib.metadata as md
import json
import math
from typing import Any, Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

from cobench.api import Batch, DataSplits, Method, StepContext, TrainSetup
from cobench.options import RunOptions
from cobench.plugins import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, PluginManager, get_plugin_manager, reset_plugin_manager
from cobench.protocols import PROTOCOLS
from cobench.resolve import resolve, resolved_params

__all__ = ["MethodContract", "InjectionContract", "EvaluatorContract", "DatasetContract", "ModelContract",
           "ExecutorContract", "InputRecorder", "RecordingStep", "make_tiny_model", "tiny_splits", "tiny_grid_spec"]


# --------------------------------------------------------------------------- building blocks
def tiny_splits(seed: int = 0, n_train: int = 64, n_test: int = 32, classes: int = 3,
                shape: tuple[int, int, int] = (1, 8, 8)) -> DataSplits:
    """Random images in [0, 1] with random labels: enough to exercise code, not to learn."""
    g = torch.Generator().manual_seed(seed)
    return DataSplits(
        torch.rand(n_train, *shape, generator=g), torch.randint(0, classes, (n_train,), generator=g),
        torch.rand(n_test, *shape, generator=g), torch.randint(0, classes, (n_test,), generator=g),
        classes, (0.5,) * shape[0], (0.25,) * shape[0],
    )


def make_tiny_model(in_ch: int = 1, classes: int = 3, seed: int = 0) -> nn.Module:
    """Conv-BN-ReLU-linear; call it once on a batch (or use the fixture) to materialise it."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_ch, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.LazyLinear(classes))


class RecordingStep(StepContext):
    """A StepContext whose update records the losses and does a plain SGD step (lr 0 by default)."""

    def __init__(self, model: nn.Module, eps: float, n_train: int = 64, image_shape=(1, 8, 8), num_classes: int = 3,
                 lr: float = 0.0, seed: int = 0):
        self.losses: list[float] = []
        self.opt = torch.optim.SGD(model.parameters(), lr=lr)
        setup = TrainSetup(eps=eps, n_train=n_train, num_classes=num_classes, image_shape=image_shape,
                           device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed),
                           epochs=1, steps_per_epoch=1)

        def update(loss: Tensor, logits: Tensor, y: Tensor) -> None:
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.losses.append(loss.item())

        super().__init__(model, setup, update)


def tiny_grid_spec(methods: list[str], **grid: Any):
    """A one-epoch grid on 8x8 digits with a width-4 small CNN: seconds per cell on a CPU."""
    from cobench.grid import GridSpec

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


# --------------------------------------------------------------------------- the method contract
class MethodContract:
    """Tests every training method must pass. Subclass it in a test module and set ``method_name``.

    The method is always looked up through the plugin registry, so the tests exercise the
    installed plugin exactly as ``cobench run`` does.
    """

    #: the name the method registers under (``cobench list methods``)
    method_name: str = ""
    #: hyperparameter overrides used by the contract tests
    params: dict[str, Any] = {}
    #: eps in /255 units for the tests
    eps255: float = 8.0
    #: if set, every input the method feeds the model is within this multiple of eps of the clean batch
    max_perturbation: float | None = None

    # -- helpers
    @pytest.fixture
    def contract_method(self) -> str:
        """The method under test; parametrize this fixture to run the contract on several methods."""
        if not self.method_name:
            pytest.fail(f"{type(self).__name__} must set method_name")
        return self.method_name

    def method_class(self, pm: PluginManager, name: str) -> type[Method]:
        return pm.registry.get("methods", name)  # type: ignore[return-value]

    def build(self, cls: type[Method]) -> Method:
        return cls(**resolved_params(cls, self.params, eps255=self.eps255))

    def one_step(self, cls: type[Method], seed: int = 0, lr: float = 0.0) -> tuple[RecordingStep, InputRecorder]:
        data = tiny_splits(seed=1)
        x, y = data.train_x[:32], data.train_y[:32]
        model = InputRecorder(make_tiny_model(seed=seed), x)
        model.model(torch.zeros(2, 1, 8, 8))
        model.train()
        torch.seed()  # scramble the global RNG: the method's random draws must come from ctx.generator
        ctx = RecordingStep(model, self.eps255 / 255.0, lr=lr, seed=seed)
        method = self.build(cls)
        method.setup(ctx.setup)
        method.train_step(Batch(x, y, torch.arange(len(x))), ctx)
        return ctx, model

    # -- the contract
    def test_registered_through_an_entry_point(self, cobench_pm: PluginManager, contract_method: str) -> None:
        cls = self.method_class(cobench_pm, contract_method)
        assert issubclass(cls, Method) and cls.name == contract_method
        owner = cobench_pm.registry.owners["methods"][contract_method]
        entry_points = {ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
        assert owner in entry_points or owner in BUILTIN_PLUGINS, (
            f"{contract_method!r} is registered by {owner!r}, which is not a '{ENTRY_POINT_GROUP}' entry point: "
            "declare it under [project.entry-points.cobench] in your pyproject.toml and reinstall")

    def test_parameters_are_json_and_construct_the_method(self, cobench_pm: PluginManager, contract_method: str) -> None:
        cls = self.method_class(cobench_pm, contract_method)
        params = cls.parameters()
        assert all(v is not None for v in params.values()), f"every parameter needs a default: {params}"
        assert strict_json(params), f"parameters() must be strict JSON (results store them): {params}"
        cls(**params)
        for eps255 in (2.0, 8.0, 16.0):
            scaled = cls.defaults_for_eps(eps255)
            assert set(scaled) <= set(params), f"defaults_for_eps({eps255}) names unknown parameters {set(scaled) - set(params)}"
            assert strict_json(scaled), f"defaults_for_eps({eps255}) must be strict JSON: {scaled}"
            cls(**{**params, **scaled})
            for protocol in PROTOCOLS:
                rule = cls.defaults_for_protocol(protocol, eps255)
                assert set(rule) <= set(params) and strict_json(rule), (
                    f"defaults_for_protocol({protocol!r}, {eps255}) must name known parameters in strict JSON: {rule}")
                cls(**{**params, **scaled, **rule})
        assert cls.summary(), "give the class a docstring: its first line is shown by `cobench list methods`"
        assert int(cls.replays) >= 1

    def test_step_calls_update_with_a_finite_loss_and_keeps_train_mode(self, cobench_pm: PluginManager,
                                                                     contract_method: str) -> None:
        cls = self.method_class(cobench_pm, contract_method)
        ctx, model = self.one_step(cls)
        assert ctx.updates_this_step >= 1, "train_step must call ctx.update(loss, logits, y) at least once"
        assert len(ctx.losses) == ctx.updates_this_step
        assert all(math.isfinite(v) for v in ctx.losses)
        assert model.training, "train_step must leave the model in train mode"

    def test_inputs_stay_in_the_image_range(self, cobench_pm: PluginManager, contract_method: str) -> None:
        cls = self.method_class(cobench_pm, contract_method)
        _, model = self.one_step(cls)
        assert model.lows and min(model.lows) >= -1e-6 and max(model.highs) <= 1 + 1e-6, (
            f"the model saw inputs in [{min(model.lows)}, {max(model.highs)}]: clamp x + delta to [ctx.lower, ctx.upper]")
        if self.max_perturbation is not None:
            bound = self.max_perturbation * self.eps255 / 255.0
            assert max(model.distances) <= bound + 1e-6, f"perturbation {max(model.distances)} exceeds {bound}"

    def test_deterministic_with_a_fixed_seed(self, cobench_pm: PluginManager, contract_method: str) -> None:
        cls = self.method_class(cobench_pm, contract_method)
        runs = []
        for _ in range(2):
            ctx, model = self.one_step(cls, seed=3, lr=0.1)
            runs.append((ctx.losses, torch.cat([p.detach().flatten() for p in model.parameters()])))
        assert runs[0][0] == runs[1][0], "draw every random number from ctx.generator (or ctx.uniform)"
        assert torch.equal(runs[0][1], runs[1][1])

    def test_one_epoch_through_execute_cell(self, cobench_pm: PluginManager, contract_method: str) -> None:
        """One epoch through the runner: metrics, curves, attribution and the training cost."""
        from cobench.runner import execute_cell

        spec = tiny_grid_spec([contract_method], eps=[self.eps255])
        if self.params:
            spec.params.setdefault("methods", {})[contract_method] = copy.deepcopy(self.params)
        (cell,) = resolve(spec, cobench_pm.registry)
        result = execute_cell(cell.config(), RunOptions(device="cpu"))
        assert result["status"] == "ok", result.get("error", {}).get("traceback")
        assert 0.0 <= result["metrics"]["clean_acc"] <= 1.0
        assert all(math.isfinite(v) for v in result["curves"]["train_loss"])
        assert result["plugins"]["methods"] == cobench_pm.registry.owners["methods"][contract_method]
        cost = result["cost"]
        assert cost["epochs_run"] == 1
        replays = int(self.method_class(cobench_pm, contract_method)(**cell.method["params"]).replays)
        assert cost["optimizer_updates"] == cost["steps"] * replays, (
            "call ctx.update once per train_step, or `replays` times for a method that replays its minibatch")
        assert cost["forward_passes_per_step"] >= 1 and cost["backward_passes_per_step"] >= 1
        assert cost["time_per_step_s"] > 0


# the contracts of the other kinds live in their own module; authors import them from here
from cobench.contracts import (DatasetContract, EvaluatorContract, ExecutorContract,  # noqa: E402
                               InjectionContract, ModelContract)
