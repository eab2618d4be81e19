"""The training loop: LR schedule, augmentation, pass counting, NaN handling."""

from __future__ import annotations

import pytest
import torch

from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec, TrainingConfig
from cobench.run.cell_worker import execute_cell
from cobench.run.training import make_scheduler, random_crop_flip

TINY = {"epochs": 1, "batch_size": 128, "lr_max": 0.1, "probe_size": 64}


def tiny_cell(pm, method="fgsm", evaluators=("clean",), eps=8, params=(), **training):
    spec = GridSpec(methods=[method], eps=[eps], evaluators=list(evaluators))
    spec.override(**{**TINY, **training})
    spec.set_param("models.small-cnn.width=4")
    for p in params:
        spec.set_param(p)
    return resolve(spec, pm.registry)[0]


def schedule(lr_schedule, total=100, steps_per_epoch=10, **over):
    training = TrainingConfig(protocol="co-features", lr_schedule=lr_schedule, **over).for_cell()
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=training.lr_max, momentum=training.momentum)
    sched = make_scheduler(opt, training, total, steps_per_epoch)
    lrs, moms = [], []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return lrs, moms


def test_cyclic_lr_is_a_triangle_peaking_at_lr_peak_and_momentum_cycles_inversely():
    lrs, moms = schedule("cyclic")
    assert lrs[0] == 0 and moms[0] == pytest.approx(0.9)
    assert max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == 50
    assert min(moms) == pytest.approx(0.8) and moms.index(min(moms)) == 50
    assert all(b >= a for a, b in zip(lrs[:50], lrs[1:51]))
    lrs, moms = schedule("cyclic", lr_peak=0.4, cycle_momentum=False)
    assert lrs.index(max(lrs)) == 40 and set(moms) == {0.9}


def test_interp_schedule_is_gradaligns_np_interp_at_the_end_of_each_iteration():
    lrs, _ = schedule("interp", total=100, steps_per_epoch=10, lr_peak=0.4, lr_max=0.3)
    # epochs = 10, peak at epoch 10 * 2 // 5 = 4; update j uses t = (j + 1) / 10 epochs
    assert lrs[0] == pytest.approx(0.3 * 0.1 / 4) and lrs[39] == pytest.approx(0.3)
    assert lrs[99] == pytest.approx(0.0, abs=1e-12)


def test_multistep_and_constant_schedules():
    lrs, _ = schedule("multistep", total=100)
    assert lrs[49] == pytest.approx(0.2) and lrs[50] == pytest.approx(0.02) and lrs[75] == pytest.approx(0.002)
    assert set(schedule("constant")[0]) == {0.2}


def test_random_crop_matches_a_manual_crop_of_the_padded_image():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, padding=2, flip=False, generator=g)
    g = torch.Generator().manual_seed(0)
    oy = torch.randint(0, 5, (2,), generator=g)
    ox = torch.randint(0, 5, (2,), generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        assert torch.equal(out[i], padded[i, :, oy[i] : oy[i] + 5, ox[i] : ox[i] + 5])


def test_flip_mirrors_about_half_the_images():
    x = torch.rand(200, 1, 4, 4)
    out = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, x)])
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert torch.all(flipped | same) and 60 < flipped.sum() < 140


def test_fgsm_costs_two_forward_and_two_backward_passes_per_step(pm):
    result = execute_cell(tiny_cell(pm, "fgsm").config(), {"device": "cpu"})
    assert result["status"] == "ok", result.get("error")
    assert result["cost"]["forward_passes_per_step"] == pytest.approx(2.0)
    assert result["cost"]["backward_passes_per_step"] == pytest.approx(2.0)
    pgd = execute_cell(tiny_cell(pm, "pgd", params=["methods.pgd.steps=3"]).config(), {"device": "cpu"})
    assert pgd["cost"]["forward_passes_per_step"] == pytest.approx(4.0)


def test_nan_loss_fails_the_cell_with_a_clear_message(pm):
    import torch.nn.functional as F

    from cobench.api import Method

    class Exploding(Method):
        """Produces a NaN loss from the second step on."""

        name = "exploding"

        def train_step(self, batch, ctx):
            logits = ctx.model(batch.x)
            loss = F.cross_entropy(logits, batch.y)
            ctx.update(loss * (float("nan") if ctx.step > 0 else 1.0), logits, batch.y)

    pm.registry.components["methods"]["exploding"] = Exploding
    pm.registry.owners["methods"]["exploding"] = "test"
    result = execute_cell(tiny_cell(pm, "exploding").config(), {"device": "cpu"})
    assert result["status"] == "failed"
    assert result["error"]["type"] == "NonFiniteLossError"
    assert "non-finite training loss" in result["error"]["message"] and "epoch 1" in result["error"]["message"]


def test_a_method_that_never_updates_fails_the_cell(pm):
    from cobench.api import Method

    class Lazy(Method):
        name = "lazy"

        def train_step(self, batch, ctx):
            pass

    pm.registry.components["methods"]["lazy"] = Lazy
    pm.registry.owners["methods"]["lazy"] = "test"
    result = execute_cell(tiny_cell(pm, "lazy").config(), {"device": "cpu"})
    assert result["status"] == "failed" and "without calling ctx.update()" in result["error"]["message"]


def test_passes_are_counted_in_samples_so_a_triple_batch_costs_three(pm):
    import torch.nn.functional as F

    from cobench.api import Method

    class Triple(Method):
        """One forward on a concatenation of three copies of the batch."""

        name = "triple"

        def train_step(self, batch, ctx):
            logits = ctx.model(torch.cat([batch.x] * 3))
            y3 = torch.cat([batch.y] * 3)
            ctx.update(F.cross_entropy(logits, y3), logits, y3)

    pm.registry.components["methods"]["triple"] = Triple
    pm.registry.owners["methods"]["triple"] = "test"
    result = execute_cell(tiny_cell(pm, "triple").config(), {"device": "cpu"})
    assert result["cost"]["forward_passes_per_step"] == pytest.approx(3.0)
    assert result["cost"]["backward_passes_per_step"] == pytest.approx(3.0)
