"""The built-in injections, evaluators, datasets, models and executors keep the contracts
that cobench.testing offers plugin authors."""

from __future__ import annotations

import pytest

from cobench.testing import DatasetContract, EvaluatorContract, ExecutorContract, InjectionContract, ModelContract


def each(names: list[str]):
    """Parametrize a contract's ``contract_component`` fixture over built-in components."""
    return pytest.fixture(params=names)(lambda self, request: request.param)


class TestBuiltinInjections(InjectionContract):
    contract_component = each(["none", "low-freq", "high-freq", "random", "low-pass"])


class TestBuiltinEvaluators(EvaluatorContract):
    contract_component = each(["clean", "fgsm", "pgd", "co", "grad-align", "lle"])


class TestBuiltinDatasets(DatasetContract):
    contract_component = each(["digits"])


class TestBuiltinModels(ModelContract):
    contract_component = each(["small-cnn", "preact-resnet18"])


class TestBuiltinExecutors(ExecutorContract):
    contract_component = each(["local"])


class TestLocalParallelExecutor(ExecutorContract):
    component_name = "local-parallel"
    params = {"workers": 1}  # one worker process: the contract, not the speed-up
