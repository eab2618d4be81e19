"""An evaluator's wrong output or exception fails the cell naming the evaluator (issue 12, Execution)."""

from __future__ import annotations

import pytest
import torch

from cobench.api import Evaluator
from cobench.errors import CobenchError
from cobench.run.evaluation import run_evaluators


class Reports(Evaluator):
    name = "reports"

    def __init__(self, metrics=None, error: Exception | None = None):
        self.metrics, self.error = metrics, error

    def evaluate(self, model, ctx):
        if self.error is not None:
            raise self.error
        return self.metrics


def run(*evaluators):
    return run_evaluators(torch.nn.Linear(2, 2), list(evaluators), lambda ev: ev.evaluate(None, None))


def test_accuracy_outside_unit_interval_fails_naming_the_evaluator():
    with pytest.raises(CobenchError, match=r"evaluator 'reports' reported accuracy outside \[0, 1\]: clean_acc=1.7"):
        run(Reports({"clean_acc": 1.7}))


def test_an_evaluator_that_raises_is_named():
    with pytest.raises(CobenchError, match=r"evaluator 'reports' raised ZeroDivisionError: boom"):
        run(Reports(error=ZeroDivisionError("boom")))


def test_valid_accuracies_and_other_metrics_pass():
    assert run(Reports({"clean_acc": 1.0, "loss": 7.5, "co": True})) == {"clean_acc": 1.0, "loss": 7.5, "co": True}
