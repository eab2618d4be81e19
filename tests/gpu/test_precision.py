"""Mixed precision on the training path: autocast's weight cache, the bf16 guard, fp32 evaluation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cobench.api import EvalContext
from cobench.grid.spec import TrainingConfig
from cobench.injections.none import NoInjection
from cobench.methods.free import FreeAT
from cobench.options import RunOptions
from cobench.run.runtime import CellParts
from cobench.run.training import Normalize, train
from cobench.testing import tiny_splits


def test_free_at_replays_under_bf16_see_the_weights_of_the_previous_update():
    """Autocast caches its bf16 copy of each weight for the whole autocast region: replay 2 of a
    minibatch must not run on the copy made before replay 1's optimiser step."""
    data = tiny_splits(n_train=32, shape=(3, 4, 4))
    torch.manual_seed(0)
    linear = nn.Linear(48, 3)
    model = nn.Sequential(Normalize(data.mean, data.std), nn.Flatten(), linear)
    gaps: list[float] = []

    def check(module, inputs, output):
        if not module.training:
            return
        with torch.autocast("cpu", enabled=False):  # what the live weights give, without the cache
            fresh = F.linear(
                inputs[0].to(torch.bfloat16), module.weight.to(torch.bfloat16), module.bias.to(torch.bfloat16)
            )
        gaps.append((output.float() - fresh.float()).abs().max().item())

    linear.register_forward_hook(check)
    ctx = EvalContext(
        eps=8 / 255,
        test_x=data.test_x,
        test_y=data.test_y,
        clean_test_x=data.test_x,
        injection=NoInjection(),
        num_classes=3,
        device=torch.device("cpu"),
        batch_size=32,
        seed=0,
        probe_x=data.test_x[:4],
        probe_y=data.test_y[:4],
    )
    training = TrainingConfig(epochs=2, batch_size=32, lr_max=0.5, lr_schedule="constant", amp="bf16").as_config()
    parts = CellParts(
        model=model, method=FreeAT(replays=2), data=data, injection=NoInjection(), evaluators=[], eval_ctx=ctx
    )
    train(parts, training, RunOptions(device="cpu"))
    assert len(gaps) == 2  # one minibatch, two replays
    assert max(gaps) == 0.0


# --------------------------------------------------------------------------- --compile and double backward
def tiny_parts(method, n_train=32, shape=(3, 4, 4)):
    data = tiny_splits(n_train=n_train, shape=shape)
    torch.manual_seed(0)
    model = nn.Sequential(
        Normalize(data.mean, data.std),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * shape[1] * shape[2], 3),
    )
    ctx = EvalContext(
        eps=8 / 255,
        test_x=data.test_x,
        test_y=data.test_y,
        clean_test_x=data.test_x,
        injection=NoInjection(),
        num_classes=3,
        device=torch.device("cpu"),
        batch_size=32,
        seed=0,
        probe_x=data.test_x[:4],
        probe_y=data.test_y[:4],
    )
    return CellParts(model=model, method=method, data=data, injection=NoInjection(), evaluators=[], eval_ctx=ctx)


@pytest.fixture
def aot_eager(monkeypatch):
    """torch.compile with the aot_eager backend: AOTAutograd without a C compiler."""
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))


@pytest.mark.parametrize("name", ["grad-align", "cure", "cure-elle", "llr"])
def test_compile_refuses_double_backward_methods_before_training(pm, aot_eager, name):
    from cobench.errors import ConfigError

    method = pm.registry.get("methods", name)()
    steps = []
    method.train_step = lambda batch, ctx: steps.append(1)
    training = TrainingConfig(epochs=1, batch_size=32, lr_max=0.1).as_config()
    with pytest.raises(ConfigError, match=f"--compile cannot train method '{name}'.*double backward"):
        train(tiny_parts(method), training, RunOptions(device="cpu", compile=True))
    assert not steps


def test_an_undeclared_double_backward_method_under_compile_fails_with_the_same_line(aot_eager):
    from cobench.errors import ConfigError
    from cobench.methods.grad_align import GradAlign

    class Undeclared(GradAlign):  # a third-party method that does not say it needs double backward
        name = "undeclared"
        double_backward = False

    training = TrainingConfig(epochs=1, batch_size=32, lr_max=0.1).as_config()
    with pytest.raises(ConfigError, match="--compile cannot train method 'undeclared'"):
        train(tiny_parts(Undeclared()), training, RunOptions(device="cpu", compile=True))


def test_fgsm_trains_compiled(aot_eager):
    from cobench.methods.fgsm import FGSM

    training = TrainingConfig(epochs=1, batch_size=32, lr_max=0.1).as_config()
    outcome = train(tiny_parts(FGSM()), training, RunOptions(device="cpu", compile=True))
    assert outcome.history[0]["train_loss"] > 0


def test_the_run_command_refuses_compile_for_grad_align_before_any_cell(tmp_path):
    from tests.conftest import cli_run

    out = cli_run(
        [
            "run",
            "--methods",
            "fgsm,grad-align",
            "--eps",
            "8",
            "--epochs",
            "1",
            "--evaluators",
            "clean",
            "--compile",
            "--device",
            "cpu",
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert out.exit_code != 0
    assert "--compile cannot train method 'grad-align'" in out.output
    assert not list(tmp_path.glob("**/eps*.json"))  # nothing trained, not even fgsm


# --------------------------------------------------------------------------- the bf16 guard
@pytest.mark.parametrize("capability,ok", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_needs_native_support_on_the_cells_own_gpu(monkeypatch, capability, ok):
    from cobench.errors import ConfigError
    from cobench.run.training import check_amp

    asked = []
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla V100" if capability < (8, 0) else "H100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation counts as support there
    device = torch.device("cuda:1")
    if ok:
        check_amp(device, "bf16")
    else:
        with pytest.raises(ConfigError, match=r"native bfloat16.*cuda:1 \(Tesla V100\)"):
            check_amp(device, "bf16")
    assert asked == [device]  # the cell's device, not the current one
    check_amp(device, "off")


# --------------------------------------------------------------------------- large-lambda regularisers under bf16
@pytest.mark.parametrize("name", ["elle", "elle-a", "llr"])
def test_cancellation_prone_regularisers_run_in_fp32_inside_a_bf16_step(pm, name):
    """ELLE's linearity error and LLR's terms are differences of nearly equal losses: bf16 logits put
    a 15% error on ELLE's (benchmarks/bf16_regularizers.py), which lambda = 10^4 multiplies."""
    method = pm.registry.get("methods", name)(**({"steps": 2} if name == "llr" else {}))
    parts = tiny_parts(method)
    seen: list[tuple[int, torch.dtype]] = []
    parts.model[-1].register_forward_hook(lambda m, i, o: seen.append((len(o), o.dtype)) if m.training else None)
    training = TrainingConfig(epochs=1, batch_size=32, lr_max=0.1, amp="bf16").as_config()
    train(parts, training, RunOptions(device="cpu"))
    if name == "llr":
        assert {dtype for _, dtype in seen} == {torch.float32}
    else:
        assert {dtype for n, dtype in seen if n == 96} == {torch.float32}  # the triplets: x_a, x_b, x_c
        assert {dtype for n, dtype in seen if n == 32} == {torch.bfloat16}  # FGSM's data term stays bf16
