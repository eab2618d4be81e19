"""Speed options of the training loop (bf16 autocast, channels-last) and the speed benchmark."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cobench.api import EvalContext, Evaluator
from cobench.attacks import fgsm
from cobench.errors import ConfigError
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec, TrainingConfig
from cobench.options import RunOptions
from cobench.run.cell_worker import execute_cell
from cobench.run.runtime import CellParts
from cobench.run.training import Normalize, train
from cobench.testing import tiny_grid_spec, tiny_splits
from tests.conftest import cli_run

ROOT = Path(__file__).resolve().parents[2]
#: the training keys of cobench 0.1.0's cells (protocols added more, and re-keyed every cell on purpose)
V010_TRAINING_KEYS = {
    "epochs",
    "batch_size",
    "lr_max",
    "lr_schedule",
    "momentum",
    "weight_decay",
    "augment",
    "probe_size",
    "eval_batch_size",
}


# --------------------------------------------------------------------------- amp in the grid
def test_amp_enters_a_cells_identity_only_when_used(pm):
    fp32 = resolve(tiny_grid_spec(["fgsm"]), pm.registry)[0]
    fp32_config = fp32.config()["training"]
    assert "amp" not in fp32_config and V010_TRAINING_KEYS <= set(fp32_config)  # amp at its default is left out
    spec = tiny_grid_spec(["fgsm"])
    spec.override(amp="bf16")
    bf16 = resolve(spec, pm.registry)[0]
    assert bf16.training.amp == bf16.config()["training"]["amp"] == "bf16" and bf16.cell_id != fp32.cell_id
    assert GridSpec.from_dict({"training": {"amp": "bf16"}}).training.amp == "bf16"


def test_unknown_amp_mode_is_a_clear_error():
    with pytest.raises(ConfigError, match="training.amp = .*expected one of off, bf16"):
        TrainingConfig(amp="fp16").validate()
    out = cli_run(["run", "--amp", "fp16", "--dry-run"])
    assert out.exit_code != 0 and "fp16" in out.output


# --------------------------------------------------------------------------- the loop
class DtypeProbe(Evaluator):
    """Calls the model once per epoch, so its hooks see an evaluation forward pass."""

    name = "dtype-probe"

    def on_epoch_end(self, model, ctx, epoch):
        model(ctx.probe_x)
        return {}


def run_tiny_train(amp: str = "off", channels_last: bool = False):
    data = tiny_splits(n_train=64, shape=(3, 8, 8))
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(
        Normalize(data.mean, data.std), conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3)
    )
    seen: list[tuple[bool, torch.dtype, bool]] = []
    conv.register_forward_hook(
        lambda m, i, o: seen.append((m.training, o.dtype, i[0].is_contiguous(memory_format=torch.channels_last)))
    )
    from cobench.injections.none import NoInjection
    from cobench.methods.fgsm import FGSM

    ctx = EvalContext(
        eps=8 / 255,
        test_x=data.test_x,
        test_y=data.test_y,
        clean_test_x=data.test_x,
        injection=NoInjection(),
        num_classes=3,
        device=torch.device("cpu"),
        batch_size=64,
        seed=0,
        probe_x=data.test_x[:8],
        probe_y=data.test_y[:8],
    )
    training = TrainingConfig(epochs=1, batch_size=32, lr_max=0.05, amp=amp).as_config()
    parts = CellParts(
        model=model, method=FGSM(), data=data, injection=NoInjection(), evaluators=[DtypeProbe()], eval_ctx=ctx
    )
    outcome = train(parts, training, RunOptions(device="cpu", channels_last=channels_last))
    return outcome, seen, model


def test_bf16_trains_under_autocast_and_evaluates_in_fp32():
    outcome, seen, model = run_tiny_train(amp="bf16")
    train_dtypes = {dtype for training, dtype, _ in seen if training}
    eval_dtypes = {dtype for training, dtype, _ in seen if not training}
    assert train_dtypes == {torch.bfloat16} and eval_dtypes == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert outcome.cost["amp"] == "bf16" and outcome.history[0]["train_loss"] > 0
    # the FGSM evaluator attacks in fp32 after bf16 training
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 3, (4,))
    assert fgsm(model.eval(), x, y, 8 / 255).dtype == torch.float32


def test_channels_last_feeds_channels_last_batches_and_trains_the_same():
    base, seen_base, _ = run_tiny_train()
    cl, seen_cl, model = run_tiny_train(channels_last=True)
    assert all(is_cl for training, _, is_cl in seen_cl if training)
    assert not any(is_cl for training, _, is_cl in seen_base if training)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert cl.history[0]["train_loss"] == pytest.approx(base.history[0]["train_loss"], rel=1e-4)
    assert cl.cost["channels_last"] and not base.cost["channels_last"]


def test_channels_last_through_the_runner_gives_the_same_result(pm):
    (cell,) = resolve(tiny_grid_spec(["fgsm"], evaluators=["clean", "fgsm"]), pm.registry)
    plain = execute_cell(cell.config(), {"device": "cpu"})
    fast = execute_cell(cell.config(), {"device": "cpu", "channels_last": True})
    assert plain["status"] == fast["status"] == "ok"
    assert fast["cost"]["channels_last"] is True and fast["config"] == plain["config"]
    assert fast["curves"]["train_loss"] == pytest.approx(plain["curves"]["train_loss"], rel=1e-4)
    assert fast["metrics"]["clean_acc"] == pytest.approx(plain["metrics"]["clean_acc"], abs=2 / 450)


# --------------------------------------------------------------------------- the benchmark
def load_speed():
    spec = importlib.util.spec_from_file_location("cobench_speed_benchmark", ROOT / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_fgsm_is_cobenchs_fgsm():
    speed = load_speed()  # puts benchmarks/ on sys.path, as the script does
    import reference_attacks

    torch.manual_seed(0)
    model = nn.Sequential(
        Normalize((0.5,) * 3, (0.25,) * 3),
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 30 * 30, 10),
    ).train()
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    assert torch.allclose(
        reference_attacks.reference_fgsm(model, x, y, speed.EPS), fgsm(model, x, y, speed.EPS), atol=1e-7
    )


def test_speed_script_measures_every_variant(tmp_path, capsys):
    speed = load_speed()
    out = tmp_path / "speed.json"
    speed.main(
        [
            "--model",
            "small-cnn",
            "--width",
            "4",
            "--device",
            "cpu",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--variants",
            "reference,cobench,channels_last+bf16",
            "--eval",
            "--eval-samples",
            "64",
            "--eval-batch-sizes",
            "32,64",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert set(report["steps_per_s"]) == {"reference", "cobench", "channels_last+bf16"}
    assert all(v > 0 for v in report["steps_per_s"].values())
    assert {"before", "after", "idle"} <= set(report["machine_load"])  # the load beside the figures
    assert report["ratio_to_reference"]["reference"] == 1.0
    assert set(report["eval"]) == {"32", "64"}
    printed = capsys.readouterr().out
    assert "x reference" in printed and "channels_last+bf16" in printed
    with pytest.raises(SystemExit, match="unknown variant flag"):
        speed.main(["--variants", "fp8", "--device", "cpu"])
