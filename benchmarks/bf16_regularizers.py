"""How much bf16 autocast disturbs the large-lambda regularisers (ELLE, CURE-ELLE, LLR).

    python benchmarks/bf16_regularizers.py                 # digits / small-cnn, CPU, about a minute

Trains a small-cnn with FGSM-AT on the embedded digits for a few epochs (fp32), then, on the same
batches and the same random draws, computes each regulariser and the gradient of lambda times it
with respect to the weights three ways: fp32 (the reference), under bf16 autocast throughout (as
bf16 cells ran them before), and under bf16 autocast with the regulariser kept in fp32 (what
cobench does since for ELLE, ELLE-A and LLR; CURE-ELLE stays in bf16). Prints, per method (and for the plain cross-entropy, the noise every
bf16 step has), the median relative error of the regulariser and the median cosine
between its weight gradient and the fp32 one. ELLE's and CURE-ELLE's terms are differences of
nearly equal losses (or gradients), which bf16 logits round away; lambda (up to 10^4 and 5 x 10^4)
then multiplies the rounding noise. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the machine-load recorder

from machine_load import LoadRecorder

from cobench.api import EvalContext, StepContext, TrainSetup
from cobench.attacks import clamp_delta, sample_gradients
from cobench.grid.spec import TrainingConfig
from cobench.methods import cure, elle, llr
from cobench.options import RunOptions
from cobench.params import ComponentSpec
from cobench.plugins import get_plugin_manager
from cobench.run.dataset_cache import load_dataset
from cobench.run.runtime import CellParts
from cobench.run.training import Normalize, train


def build(data, width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    net = (
        get_plugin_manager()
        .registry.get("models", "small-cnn")(width=width)
        .build(num_classes=data.num_classes, image_shape=data.image_shape)
    )
    return torch.nn.Sequential(Normalize(data.mean, data.std), net)


def trained_model(data, width: int, epochs: int, eps: float) -> torch.nn.Module:
    model = build(data, width)
    reg = get_plugin_manager().registry
    injection = reg.get("injections", "none")()
    ctx = EvalContext(
        eps=eps,
        test_x=data.test_x,
        test_y=data.test_y,
        clean_test_x=data.test_x,
        injection=injection,
        num_classes=data.num_classes,
        device=torch.device("cpu"),
        batch_size=512,
        seed=0,
        probe_x=data.test_x[:64],
        probe_y=data.test_y[:64],
    )
    parts = CellParts(
        model=model, method=reg.get("methods", "fgsm")(), data=data, injection=injection, evaluators=[], eval_ctx=ctx
    )
    train(parts, TrainingConfig(epochs=epochs, batch_size=128).as_config(), RunOptions(device="cpu"))
    return model.train()


def step_ctx(model, data, eps: float, seed: int) -> StepContext:
    setup = TrainSetup(
        eps=eps,
        n_train=len(data.train_x),
        num_classes=data.num_classes,
        image_shape=data.image_shape,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
        epochs=1,
        steps_per_epoch=1,
    )
    return StepContext(model, setup, lambda *a: None)


def elle_term(model, x, y, ctx) -> torch.Tensor:
    """``elle.random_triplet_error``'s draws and error, without its fp32 region (what bf16 did before)."""
    eps = ctx.eps
    x_a = x + clamp_delta(x, ctx.uniform(x, -eps, eps), ctx.lower, ctx.upper)
    x_b = x + clamp_delta(x, ctx.uniform(x, -eps, eps), ctx.lower, ctx.upper)
    a = ctx.uniform(y.to(x.dtype), 0.0, 1.0)
    return elle.linearity_error(model, x_a, x_b, a, y)


def cure_elle_term(model, x, y, ctx) -> torch.Tensor:
    grad = cure.input_gradient_of_mean_loss(model, x, y)
    x_adv = (x + ctx.clamp_delta(x, ctx.eps * grad.sign())).detach()
    g_clean = cure.input_gradient_of_mean_loss(model, x, y)
    g_adv = cure.input_gradient_of_mean_loss(model, x_adv, y, create_graph=True)
    return ((g_clean - g_adv) * (g_clean - g_adv)).mean(dim=0).sum()


def llr_term(model, x, y, ctx) -> torch.Tensor:
    grad, losses, _ = sample_gradients(model, x, y, create_graph=True)
    init = ctx.uniform(x, -ctx.eps, ctx.eps)
    delta = llr.find_violation(model, x, y, init, losses, grad, ctx.eps, steps=10, lr=0.1)
    return llr.llr_regularizer(model, x, y, delta, losses, grad, 0.3)


def clean_loss(model, x, y, ctx) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(x), y)


TERMS: dict[str, tuple[Callable, float]] = {
    "cross-entropy (baseline)": (clean_loss, 1.0),
    "elle (lambda 10^4)": (elle_term, 1e4),
    "cure-elle (lambda 5 x 10^4)": (cure_elle_term, 5e4),
    "llr (lambda 4)": (llr_term, 4.0),
}


def measure(model, term: Callable, lam: float, x, y, ctx_fn, mode: str) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if mode != "fp32" else contextlib.nullcontext()
    keep = torch.autocast("cpu", enabled=False) if mode == "bf16, term in fp32" else contextlib.nullcontext()
    with bf16, keep:
        value = term(model, x, y, ctx_fn())
    (lam * value).backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return float(value.detach()), grad


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eps", type=float, default=24.0, help="eps in /255 units (ELLE's lambda 10^4 applies from 22)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--json", dest="json_out")
    args = p.parse_args(argv)
    data = load_dataset(ComponentSpec("digits"), RunOptions())
    eps = args.eps / 255
    report: dict[str, Any] = {
        "setting": f"digits / small-cnn width {args.width}, FGSM-AT {args.epochs} epochs, "
        f"eps {args.eps:g}/255, {args.batches} batches of 128",
        "terms": {},
    }
    with LoadRecorder() as load:
        model = trained_model(data, args.width, args.epochs, eps)
        for name, (term, lam) in TERMS.items():
            rel: dict[str, list[float]] = {"bf16": [], "bf16, term in fp32": []}
            cos: dict[str, list[float]] = {"bf16": [], "bf16, term in fp32": []}
            for b in range(args.batches):
                x, y = data.train_x[b * 128 : (b + 1) * 128], data.train_y[b * 128 : (b + 1) * 128]
                ctx_fn = functools.partial(step_ctx, model, data, eps, seed=b)  # the same draws in every mode
                ref_value, ref_grad = measure(model, term, lam, x, y, ctx_fn, "fp32")
                for mode in rel:
                    value, grad = measure(model, term, lam, x, y, ctx_fn, mode)
                    rel[mode].append(abs(value - ref_value) / max(abs(ref_value), 1e-30))
                    cos[mode].append(float(torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0)))
            report["terms"][name] = {
                mode: {
                    "median_relative_error": statistics.median(rel[mode]),
                    "median_gradient_cosine": statistics.median(cos[mode]),
                }
                for mode in rel
            }
    report["machine_load"] = load.record
    print(report["setting"])
    print(f"{'term':<30}{'mode':<22}{'rel. error':>12}{'grad cosine':>13}")
    for name, modes in report["terms"].items():
        for mode, r in modes.items():
            print(f"{name:<30}{mode:<22}{r['median_relative_error']:>12.2e}{r['median_gradient_cosine']:>13.4f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
