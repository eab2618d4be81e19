"""__name__: cobench's method contract, and a check of the algorithm itself."""
from __future__ import annotations

import torch
from torch import nn

from cobench.api import Batch
from cobench.testing import InputRecorder, MethodContract

EPS = 8 / 255


class Test__class__Contract(MethodContract):
    method_name = "__name__"
    max_perturbation = 1.0  # the perturbation stays in the eps-ball


def test_the_step_moves_away_from_the_clean_batch(cobench_pm, cobench_step_ctx):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8) * 0.5 + 0.25
    y = torch.randint(0, 3, (16,))
    model = InputRecorder(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), x)
    method = cobench_pm.registry.get("methods", "__name__")()
    method.train_step(Batch(x, y, torch.arange(16)), cobench_step_ctx(model, EPS))
    assert 0 < max(model.distances) <= EPS + 1e-6
