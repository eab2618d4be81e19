"""BatchNorm handling of LLR and Kim et al. against their references: LLR's extra passes
normalise with the clean batch's statistics and never update the running ones (deepmind's
``batchnorm.py`` get_stats/set_stats); Kim et al.'s attack runs in eval mode (torchattacks 2.12's
``Attack.__call__``, which the authors' ``CustomFFGSM`` inherits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cobench.api import Batch
from cobench.methods.batchnorm import BatchStatistics
from cobench.methods.kim import KimCheckpoints
from cobench.methods.llr import LLR

from ._util import EPS, Capture, data


class ReferenceBatchNorm(nn.Module):
    """deepmind/local_linearity_regularizer ``batchnorm.BatchNorm._build`` in torch (1-D features)."""

    def __init__(self, features: int, decay_rate: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.decay_rate, self.eps = decay_rate, eps
        self.gamma = nn.Parameter(torch.ones(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("accum_mean", torch.zeros(features))
        self.register_buffer("accum_var", torch.ones(features))

    def forward(self, inputs, is_training=True, test_local_stats=False, get_stats=None, set_stats=None):
        mean = inputs.mean(0)
        mean_square = (inputs**2).mean(0)
        var = mean_square - mean**2
        if get_stats is not None:
            get_stats[self] = (mean, var)
        elif set_stats is not None:
            mean, var = set_stats[self]
        if is_training:
            with torch.no_grad():
                self.accum_mean.sub_(self.decay_rate * (self.accum_mean - mean))
                self.accum_var.sub_(self.decay_rate * (self.accum_var - var))
        m, v = (mean, var) if test_local_stats else (self.accum_mean, self.accum_var)
        return (inputs - m) / torch.sqrt(v + self.eps) * self.gamma + self.beta


def pair(seed: int = 0):
    """The same Linear-BN-tanh-Linear net, once with torch BatchNorm1d, once with the reference's BN."""
    torch.manual_seed(seed)
    ours = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 6), nn.BatchNorm1d(6, momentum=0.1), nn.Tanh(), nn.Linear(6, 3)
    ).double()
    with torch.no_grad():
        ours[2].weight.uniform_(0.5, 1.5)
        ours[2].bias.uniform_(-0.5, 0.5)
    ref_bn = ReferenceBatchNorm(6).double()
    ref_bn.load_state_dict(
        {
            "gamma": ours[2].weight,
            "beta": ours[2].bias,
            "accum_mean": ours[2].running_mean,
            "accum_var": ours[2].running_var,
        }
    )
    ref = nn.ModuleDict({"l1": ours[1], "bn": ref_bn, "l2": ours[4]})  # shared linear layers

    def ref_model(x, **bn_kwargs):
        return ref["l2"](torch.tanh(ref["bn"](ref["l1"](x.flatten(1)), **bn_kwargs)))

    return ours, ref_model, ref_bn


def test_reused_statistics_match_the_reference_set_stats_and_leave_running_statistics_alone():
    ours, ref_model, ref_bn = pair()
    x, y = data(dtype=torch.float64)
    x2 = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    stats = BatchStatistics(ours)
    ours.train()
    with stats.record():
        ours(x)
    running = (ours[2].running_mean.clone(), ours[2].running_var.clone(), ours[2].num_batches_tracked.clone())
    with stats.reuse():
        out = F.cross_entropy(ours(x2), y)
    assert ours.training and ours[2].training
    for before, after in zip(running, (ours[2].running_mean, ours[2].running_var, ours[2].num_batches_tracked)):
        assert torch.equal(before, after)

    batch_stats: dict = {}
    ref_model(x, is_training=False, test_local_stats=True, get_stats=batch_stats)
    ref_out = F.cross_entropy(ref_model(x2, is_training=False, test_local_stats=True, set_stats=batch_stats), y)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    params = list(ours.parameters())
    ref_params = [ours[1].weight, ours[1].bias, ref_bn.gamma, ref_bn.beta, ours[4].weight, ours[4].bias]
    for g, rg in zip(torch.autograd.grad(out, params), torch.autograd.grad(ref_out, ref_params)):
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-12)  # differentiable through the clean statistics


def test_llr_step_updates_running_statistics_once_as_the_nominal_pass():
    ours, ref_model, ref_bn = pair()
    x, y = data(dtype=torch.float64)
    from cobench.testing import RecordingStep

    LLR(steps=3).train_step(Batch(x, y, torch.arange(len(x))), RecordingStep(ours, EPS, seed=1))
    ref_model(x, is_training=True, test_local_stats=True)  # the reference's only updating pass
    torch.testing.assert_close(ours[2].running_mean, ref_bn.accum_mean, rtol=1e-10, atol=1e-12)
    # torch's running variance is the unbiased batch variance, the reference's the biased one
    n = len(x)  # both start at variance 1
    torch.testing.assert_close((ours[2].running_var - 0.9) * (n - 1) / n, ref_bn.accum_var - 0.9, rtol=1e-8, atol=1e-10)
    assert int(ours[2].num_batches_tracked) == 1


def test_kim_attack_runs_in_eval_mode_and_trains_in_train_mode(cobench_step_ctx):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    model = Capture(net)
    x, y = data()
    running = net[2].running_mean.clone()
    KimCheckpoints().train_step(Batch(x, y, torch.arange(len(x))), cobench_step_ctx(model, EPS, seed=2))
    # the attack's forward pass at the random start, any checkpoint passes: eval; the training pass: train
    assert model.modes[0] is False and model.modes[-1] is True
    assert all(mode is False for mode in model.modes[:-1])
    # only the training pass moved the running statistics: one momentum-0.1 update from zero
    with torch.no_grad():
        h = net[1](model.inputs[-1].flatten(1))
    torch.testing.assert_close(net[2].running_mean, 0.9 * running + 0.1 * h.mean(0))
