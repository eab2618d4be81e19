"""Pruned PGD evaluation: same per-sample decisions as attacking every sample, less work."""

from __future__ import annotations

import torch
from torch import nn

from cobench.attacks import pgd, pgd_until_fooled
from tests.gpu.test_host_syncs import SyncCounter

EPS = 8 / 255


def small_cnn(dtype: torch.dtype, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 64, 4),
    )
    return model.to(dtype).eval()


def data(dtype: torch.dtype, n: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


class SampleCounter:
    """Counts the samples a model is asked to classify."""

    def __init__(self, model: nn.Module):
        self.samples = 0
        model.register_forward_hook(lambda m, i, out: setattr(self, "samples", self.samples + len(out)))


def fooled(model: nn.Module, x, y, delta) -> torch.Tensor:
    with torch.no_grad():
        return model(x + delta).argmax(1) != y


def test_pruned_and_naive_attacks_fool_the_same_samples_with_the_same_draws():
    # float64: rounding differences between batch sizes cannot flip a gradient sign or a decision
    model, (x, y) = small_cnn(torch.float64), data(torch.float64)
    g_naive, g_pruned = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    naive = pgd_until_fooled(model, x, y, EPS * 4, alpha=EPS, steps=6, restarts=4, generator=g_naive, prune=False)
    pruned = pgd_until_fooled(model, x, y, EPS * 4, alpha=EPS, steps=6, restarts=4, generator=g_pruned, prune=True)
    decisions = fooled(model, x, y, naive)
    assert 0 < decisions.sum() < len(x)  # the comparison is not trivial
    assert torch.equal(decisions, fooled(model, x, y, pruned))
    assert torch.equal(naive[decisions], pruned[decisions])  # the very perturbation that fooled each sample
    assert torch.equal(torch.rand(3, generator=g_naive), torch.rand(3, generator=g_pruned))  # same draws consumed


def test_pruned_attack_classifies_fewer_samples():
    model, (x, y) = small_cnn(torch.float32), data(torch.float32)
    counts = {}
    for prune in (False, True):
        counter = SampleCounter(model)
        pgd_until_fooled(
            model,
            x,
            y,
            EPS * 4,
            alpha=EPS,
            steps=6,
            restarts=4,
            generator=torch.Generator().manual_seed(0),
            prune=prune,
        )
        counts[prune] = counter.samples
    assert counts[False] == 4 * (6 + 1) * len(x)  # every sample, every step and final check, every restart
    assert counts[True] < counts[False] / 2


def test_a_sample_fooled_at_any_step_stays_fooled():
    """Stopping once fooled is at least as strong as judging only the last step (same draws)."""
    model, (x, y) = small_cnn(torch.float64, seed=1), data(torch.float64, seed=1)
    for restarts in (1, 3):
        judged_at_end = pgd(
            model, x, y, EPS * 4, alpha=EPS * 2, steps=8, restarts=restarts, generator=torch.Generator().manual_seed(5)
        )
        stopped = pgd_until_fooled(
            model, x, y, EPS * 4, alpha=EPS * 2, steps=8, restarts=restarts, generator=torch.Generator().manual_seed(5)
        )
        at_end, early = fooled(model, x, y, judged_at_end), fooled(model, x, y, stopped)
        assert torch.all(early >= at_end)
        assert stopped.abs().max() <= EPS * 4 + 1e-12
        assert (x + stopped).min() >= 0 and (x + stopped).max() <= 1


def test_pruned_attack_syncs_with_the_host_only_when_it_compacts():
    """Finding the fooled samples (nonzero, a boolean mask) makes a GPU's host wait: not every step."""
    model, (x, y) = small_cnn(torch.float32), data(torch.float32)
    counter = SyncCounter()
    with counter:
        pgd_until_fooled(model, x, y, EPS, alpha=EPS / 4, steps=50, restarts=2, generator=torch.Generator())
    # per restart: the samples left to attack, and at most one per compaction, after steps 1, 2, 4, 8,
    # 16, 24, 32, 40 and 48 (cobench.attacks.compact_after); it was two every step
    assert len(counter.calls) <= 2 * (1 + 9), counter.calls


def test_pruning_every_few_steps_keeps_every_decision_over_many_steps():
    """20 steps: samples fooled between compactions ride along frozen; decisions and perturbations
    are still those of attacking every sample (float64: no rounding flips)."""
    model, (x, y) = small_cnn(torch.float64, seed=2), data(torch.float64, seed=2)
    naive = pgd_until_fooled(
        model,
        x,
        y,
        EPS * 2,
        alpha=EPS / 4,
        steps=20,
        restarts=3,
        generator=torch.Generator().manual_seed(1),
        prune=False,
    )
    pruned = pgd_until_fooled(
        model, x, y, EPS * 2, alpha=EPS / 4, steps=20, restarts=3, generator=torch.Generator().manual_seed(1)
    )
    decisions = fooled(model, x, y, naive)
    assert 0 < decisions.sum() < len(x)
    assert torch.equal(decisions, fooled(model, x, y, pruned))
    assert torch.equal(naive, pruned)
