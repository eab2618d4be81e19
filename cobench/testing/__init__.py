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
and ``cobench_tiny_grid`` (a function making a one-epoch :class:`~cobench.grid.spec.GridSpec`
on the embedded digits dataset, for end-to-end tests).
"""

from cobench.testing.contracts import (
    ComponentContract,
    DatasetContract,
    EvaluatorContract,
    ExecutorContract,
    InjectionContract,
    MethodContract,
    ModelContract,
)
from cobench.testing.fixtures import (
    InputRecorder,
    RecordingStep,
    cobench_pm,
    cobench_step_ctx,
    cobench_tiny_data,
    cobench_tiny_grid,
    cobench_tiny_model,
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
    "InputRecorder",
    "RecordingStep",
    "make_tiny_model",
    "tiny_splits",
    "tiny_grid_spec",
    "strict_json",
    # the pytest fixtures this plugin module provides (``[project.entry-points.pytest11]``)
    "cobench_pm",
    "cobench_tiny_data",
    "cobench_tiny_model",
    "cobench_step_ctx",
    "cobench_tiny_grid",
]
