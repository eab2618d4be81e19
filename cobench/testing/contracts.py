"""The contracts: the tests every component of a kind must pass. :class:`MethodContract` is set
with ``method_name``; the contracts for injections, evaluators, datasets, models and executors
with ``component_name`` (and ``params`` where the component needs arguments)::

    from cobench.testing import InjectionContract

    class TestMyInjection(InjectionContract):
        component_name = "my-injection"

Every contract looks the component up through the plugin registry (the ``cobench_pm``
fixture), so it tests the installed plugin as ``cobench run`` sees it.
"""

from __future__ import annotations

import copy
import importlib.metadata as md
import math
from typing import Any, ClassVar

import pytest
import torch

from cobench.api import (
    Batch,
    Component,
    DataContext,
    Dataset,
    EvalContext,
    Evaluator,
    Executor,
    Injection,
    InjectionContext,
    Method,
    Model,
)
from cobench.grid.protocols import PROTOCOLS
from cobench.grid.resolve import resolve, resolved_params
from cobench.options import NoProgress, RunOptions
from cobench.plugins import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, PluginManager
from cobench.testing.fixtures import (
    InputRecorder,
    RecordingStep,
    make_tiny_model,
    strict_json,
    tiny_grid_spec,
    tiny_splits,
)

__all__ = [
    "MethodContract",
    "ComponentContract",
    "InjectionContract",
    "EvaluatorContract",
    "DatasetContract",
    "ModelContract",
    "ExecutorContract",
]


class ComponentContract:
    """What every component must do: be registered through an entry point under its name,
    have JSON parameters that construct it, and a docstring for ``cobench list``."""

    #: the kind's plural (``"injections"``), set by each contract
    kind: ClassVar[str] = ""
    #: the name the component registers under
    component_name: str = ""
    #: constructor arguments used by the tests (over the declared defaults)
    params: dict[str, Any] = {}

    @pytest.fixture
    def contract_component(self) -> str:
        """The component under test; parametrize this fixture to run the contract on several."""
        if not self.component_name:
            pytest.fail(f"{type(self).__name__} must set component_name")
        return self.component_name

    def component_class(self, pm: PluginManager, name: str) -> type[Component]:
        return pm.registry.get(self.kind, name)

    def build(self, pm: PluginManager, name: str) -> Any:
        cls = self.component_class(pm, name)
        return cls(**{**cls.parameters(), **self.params})

    def test_registered_through_an_entry_point(self, cobench_pm: PluginManager, contract_component: str) -> None:
        cls = self.component_class(cobench_pm, contract_component)
        assert cls.name == contract_component
        owner = cobench_pm.registry.owner(self.kind, contract_component)
        entry_points = {ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
        assert owner in entry_points or owner in BUILTIN_PLUGINS, (
            f"{contract_component!r} is registered by {owner!r}, which is not a '{ENTRY_POINT_GROUP}' entry point"
        )

    def test_parameters_are_json_and_construct_it(self, cobench_pm: PluginManager, contract_component: str) -> None:
        cls = self.component_class(cobench_pm, contract_component)
        params = {**cls.parameters(), **self.params}
        missing = [k for k, v in params.items() if v is None and k != cls.spec_arg]
        assert not missing, f"give these parameters a default (or set them in the contract's params): {missing}"
        assert strict_json(params), f"parameters must be strict JSON (results store them): {params}"
        cls(**params)
        assert cls.summary(), f"give the class a docstring: its first line is shown by `cobench list {self.kind}`"


class InjectionContract(ComponentContract):
    """An injection prepares on a training set and maps images to finite images of the same
    shape and dtype, deterministically for a seed; one that declares ``uses_beta = False``
    gives the same output at every beta."""

    kind = "injections"
    beta255: float = 8.0

    def injected(self, pm: PluginManager, name: str, beta255: float, seed: int = 0) -> torch.Tensor:
        from cobench.testing import tiny_splits

        data = tiny_splits(seed=1, shape=(3, 8, 8))
        injection = self.build(pm, name)
        assert isinstance(injection, Injection)
        injection.prepare(
            InjectionContext(
                beta=beta255 / 255.0, num_classes=data.num_classes, image_shape=data.image_shape, seed=seed
            ),
            data.train_x,
            data.train_y,
        )
        out = injection.apply(data.test_x, data.test_y)
        assert out.shape == data.test_x.shape and out.dtype == data.test_x.dtype, "apply must keep shape and dtype"
        assert torch.isfinite(out).all()
        return out

    def test_apply_is_finite_same_shape_and_deterministic(
        self, cobench_pm: PluginManager, contract_component: str
    ) -> None:
        first = self.injected(cobench_pm, contract_component, self.beta255)
        assert torch.equal(first, self.injected(cobench_pm, contract_component, self.beta255)), (
            "draw random carriers from a generator seeded with ctx.seed"
        )

    def test_declared_beta_free_means_beta_free(self, cobench_pm: PluginManager, contract_component: str) -> None:
        cls = self.component_class(cobench_pm, contract_component)
        assert issubclass(cls, Injection)  # registered as an injection
        if cls.uses_beta:
            pytest.skip("the injection uses beta")
        low = self.injected(cobench_pm, contract_component, self.beta255)
        high = self.injected(cobench_pm, contract_component, 2 * self.beta255)
        assert torch.equal(low, high), "uses_beta = False, but the output depends on beta"


class EvaluatorContract(ComponentContract):
    """An evaluator returns strict-JSON metrics (accuracies ``*_acc`` in [0, 1]) from a tiny
    trained-or-not model, and leaves the model's parameters unchanged."""

    kind = "evaluators"

    def context(self) -> tuple[torch.nn.Module, EvalContext]:
        from cobench.testing import make_tiny_model, tiny_splits

        data = tiny_splits(seed=1)
        injection = Injection()
        model = make_tiny_model()
        model(torch.zeros(2, 1, 8, 8))
        model.eval()
        ctx = EvalContext(
            eps=8 / 255,
            test_x=data.test_x,
            test_y=data.test_y,
            clean_test_x=data.test_x,
            injection=injection,
            num_classes=data.num_classes,
            device=torch.device("cpu"),
            batch_size=16,
            seed=0,
            probe_x=data.test_x[:8],
            probe_y=data.test_y[:8],
        )
        return model, ctx

    def test_metrics_are_json_accuracies_in_range_and_the_model_is_untouched(
        self, cobench_pm: PluginManager, contract_component: str
    ) -> None:
        evaluator = self.build(cobench_pm, contract_component)
        assert isinstance(evaluator, Evaluator)
        model, ctx = self.context()
        before = [p.detach().clone() for p in model.parameters()]
        per_epoch = evaluator.on_epoch_end(model, ctx, 1)
        assert per_epoch is None or isinstance(per_epoch, dict)
        metrics = evaluator.evaluate(model, ctx)
        assert isinstance(metrics, dict) and strict_json(metrics), f"metrics must be a strict-JSON dict: {metrics}"
        for key, value in metrics.items():
            if key.endswith("_acc") and value is not None:
                assert 0.0 <= value <= 1.0, f"{key} = {value} is not an accuracy in [0, 1]"
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "evaluate must not train the model"


class DatasetContract(ComponentContract):
    """A dataset loads CPU float images in [0, 1], (N, C, H, W), labels in [0, num_classes)."""

    kind = "datasets"
    data_dir: str = "data"
    download: bool = False

    def test_loads_well_formed_splits(self, cobench_pm: PluginManager, contract_component: str) -> None:
        dataset = self.build(cobench_pm, contract_component)
        assert isinstance(dataset, Dataset)
        data = dataset.load(DataContext(data_dir=self.data_dir, download=self.download, seed=0))
        for split in ("train", "test"):
            x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
            assert x.ndim == 4 and len(x) == len(y) > 0, f"{split}: x {tuple(x.shape)}, y {tuple(y.shape)}"
            assert x.dtype == torch.float32 and x.device.type == "cpu"
            assert 0.0 <= x.min().item() and x.max().item() <= 1.0, f"{split} images must be in [0, 1]"
            assert 0 <= y.min().item() and y.max().item() < data.num_classes, f"{split} labels outside [0, num_classes)"
        assert len(data.mean) == len(data.std) == data.image_shape[0]


class ModelContract(ComponentContract):
    """A model builds a network mapping (N, C, H, W) images to (N, num_classes) logits, for
    the image shape it is given."""

    kind = "models"
    image_shape: tuple[int, int, int] = (3, 32, 32)

    def test_builds_a_network_with_one_logit_per_class(
        self, cobench_pm: PluginManager, contract_component: str
    ) -> None:
        model = self.build(cobench_pm, contract_component)
        assert isinstance(model, Model)
        torch.manual_seed(0)
        net = model.build(num_classes=5, image_shape=self.image_shape)
        assert isinstance(net, torch.nn.Module)
        net.eval()
        logits = net(torch.rand(2, *self.image_shape))
        assert logits.shape == (2, 5) and torch.isfinite(logits).all()


def echo_work(config: dict[str, Any], options: RunOptions, on_epoch: Any = None) -> dict[str, Any]:
    """A picklable stand-in for :func:`cobench.run.cell_worker.execute_cell` (for executor contracts)."""
    return {"status": "ok", "seed": config["seed"]}


class HandedOut:
    """Cells as the runner hands them to an executor: ``len()`` and one pass of iteration
    (each cell is claimed as it is taken), no indexing."""

    def __init__(self, cells: list[Any]):
        self._cells = cells
        self.passes = 0

    def __len__(self) -> int:
        return len(self._cells)

    def __iter__(self) -> Any:
        self.passes += 1
        return iter(self._cells)


class ExecutorContract(ComponentContract):
    """An executor calls ``work`` once per cell and yields every cell exactly once, with the
    result ``work`` returned for it, taking the cells in one pass (the contract in
    :class:`cobench.api.Executor`)."""

    kind = "executors"

    def test_yields_every_cell_once_with_its_own_result(
        self, cobench_pm: PluginManager, contract_component: str
    ) -> None:
        from cobench.testing import tiny_grid_spec

        executor = self.build(cobench_pm, contract_component)
        assert isinstance(executor, Executor)
        cells = resolve(tiny_grid_spec(["fgsm"], seeds=[0, 1, 2]), cobench_pm.registry)
        handed_out = HandedOut(cells)
        done = list(executor.run(handed_out, echo_work, RunOptions(device="cpu"), NoProgress()))
        assert sorted(c.cell_id for c, _ in done) == sorted(c.cell_id for c in cells)
        assert all(result == {"status": "ok", "seed": cell.seed} for cell, result in done)
        assert handed_out.passes == 1, (
            f"the executor iterated the cells {handed_out.passes} times; take them in one pass"
        )


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
        return pm.registry.get("methods", name)

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
            "declare it under [project.entry-points.cobench] in your pyproject.toml and reinstall"
        )

    def test_parameters_are_json_and_construct_the_method(
        self, cobench_pm: PluginManager, contract_method: str
    ) -> None:
        cls = self.method_class(cobench_pm, contract_method)
        params = cls.parameters()
        assert all(v is not None for v in params.values()), f"every parameter needs a default: {params}"
        assert strict_json(params), f"parameters() must be strict JSON (results store them): {params}"
        cls(**params)
        for eps255 in (2.0, 8.0, 16.0):
            scaled = cls.defaults_for_eps(eps255)
            assert set(scaled) <= set(params), (
                f"defaults_for_eps({eps255}) names unknown parameters {set(scaled) - set(params)}"
            )
            assert strict_json(scaled), f"defaults_for_eps({eps255}) must be strict JSON: {scaled}"
            cls(**{**params, **scaled})
            for protocol in PROTOCOLS:
                rule = cls.defaults_for_protocol(protocol, eps255)
                assert set(rule) <= set(params) and strict_json(rule), (
                    f"defaults_for_protocol({protocol!r}, {eps255}) must name known parameters in strict JSON: {rule}"
                )
                cls(**{**params, **scaled, **rule})
        assert cls.summary(), "give the class a docstring: its first line is shown by `cobench list methods`"
        assert int(cls.replays) >= 1

    def test_step_calls_update_with_a_finite_loss_and_keeps_train_mode(
        self, cobench_pm: PluginManager, contract_method: str
    ) -> None:
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
            f"the model saw inputs in [{min(model.lows)}, {max(model.highs)}]: clamp x + delta to [ctx.lower, ctx.upper]"
        )
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
        from cobench.run.cell_worker import execute_cell

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
        replays = int(self.method_class(cobench_pm, contract_method)(**cell.method.kwargs()).replays)
        assert cost["optimizer_updates"] == cost["steps"] * replays, (
            "call ctx.update once per train_step, or `replays` times for a method that replays its minibatch"
        )
        assert cost["forward_passes_per_step"] >= 1 and cost["backward_passes_per_step"] >= 1
        assert cost["time_per_step_s"] > 0
