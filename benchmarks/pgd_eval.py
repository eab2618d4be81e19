"""PGD-50-10 evaluation time, naive vs pruned, on a collapsed FGSM-AT model and a robust PGD-AT model.

    python benchmarks/pgd_eval.py                         # digits / small-cnn at 40/255, auto device
    python benchmarks/pgd_eval.py --model preact-resnet18 --dataset cifar10 --eps 8 --device cuda

Trains the two models with cobench's own runner (FGSM-AT collapses at the default setting,
PGD-AT holds), then attacks the test set with ``cobench.attacks.pgd_until_fooled`` twice
under the same random draws: ``prune=False`` (every sample forward and backward at every
step of every restart: the naive cost) and ``prune=True`` (fooled samples leave the batch;
later restarts attack only the samples still standing). Prints both times, the ratio, both
robust accuracies and how many per-sample decisions differ (0 expected). A benchmark, not a
test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the machine-load recorder

from machine_load import LoadRecorder

from cobench import hookimpl
from cobench.api import EvalContext, Evaluator
from cobench.attacks import pgd_until_fooled
from cobench.grid.resolve import resolve
from cobench.grid.spec import GridSpec
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import execute_cell
from cobench.run.device import resolve_device
from cobench.run.evaluation import evaluation_mode

TRAINED: dict[str, Any] = {}


class KeepModel(Evaluator):
    """Hands the trained model and its test set back to this script (benchmark only)."""

    name = "benchmark-keep-model"

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, Any]:
        TRAINED["model"], TRAINED["x"], TRAINED["y"] = model, ctx.test_x, ctx.test_y
        return {}


class KeepModelPlugin:
    @hookimpl
    def register_evaluators(self, register):
        register(KeepModel)


def train_model(args: argparse.Namespace, method: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor, dict]:
    """One cell trained by cobench's runner on this process's device; returns model, test set, metrics."""
    spec = GridSpec(
        datasets=[args.dataset],
        models=[args.model],
        methods=[method],
        eps=[args.eps],
        evaluators=["clean", "fgsm", "benchmark-keep-model"],
        seeds=[args.seed],
    )
    spec.override(epochs=args.epochs, lr_max=args.lr_max)
    (cell,) = resolve(spec, get_plugin_manager().registry)
    result = execute_cell(cell.config(), {"device": args.device, "data_dir": args.data_dir})
    if result["status"] != "ok":
        raise SystemExit(f"training {method} failed: {result['error']['message']}")
    model = TRAINED.pop("model").eval()
    return model, TRAINED.pop("x"), TRAINED.pop("y"), result["metrics"]


def attack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, prune: bool, device: torch.device
) -> tuple[float, torch.Tensor]:
    """Seconds for PGD-steps-restarts over the test set, and the per-sample 'robust' decisions, in
    the evaluators' own setting (:func:`cobench.run.evaluation.evaluation_mode`: eval mode, true
    fp32; a GPU would otherwise time TF32 convolutions the evaluators never run)."""
    g = torch.Generator(device=device).manual_seed(1)
    robust = []
    with evaluation_mode(model):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for i in range(0, len(x), args.batch_size):
            xb, yb = x[i : i + args.batch_size], y[i : i + args.batch_size]
            delta = pgd_until_fooled(
                model,
                xb,
                yb,
                args.eps / 255,
                alpha=args.step_size / 255,
                steps=args.steps,
                restarts=args.restarts,
                generator=g,
                prune=prune,
            )
            with torch.no_grad():
                robust.append(model(xb + delta).argmax(1) == yb)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0, torch.cat(robust)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--model", default="small-cnn")
    p.add_argument("--eps", type=float, default=40.0, help="eps in /255 units (training and attack)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr-max", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--step-size", type=float, default=2.0, help="PGD step in /255 units (the paper's 2)")
    p.add_argument("--samples", type=int, default=0, help="test samples attacked (0 = the whole test set)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    args.device = str(device)
    get_plugin_manager().register(KeepModelPlugin(), "benchmark-keep-model")
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "setting": f"{args.dataset} / {args.model}, eps {args.eps:g}/255, "
        f"PGD-{args.steps}-{args.restarts} step {args.step_size:g}/255",
        "models": {},
    }
    print(report["setting"], f"on {report['device']} ({report['threads']} threads)")
    print(
        f"{'model':<22}{'clean':>7}{'naive s':>9}{'pruned s':>10}{'speed-up':>10}{'naive acc':>11}"
        f"{'pruned acc':>12}{'differ':>8}"
    )
    load = LoadRecorder().__enter__()  # recorded beside the figures; warns when the machine was not idle
    for method, label in (("fgsm", "FGSM-AT"), ("pgd", "PGD-AT")):
        model, x, y, metrics = train_model(args, method)
        if args.samples:
            x, y = x[: args.samples], y[: args.samples]
        naive_s, naive = attack(model, x, y, args, prune=False, device=device)
        pruned_s, pruned = attack(model, x, y, args, prune=True, device=device)
        row = {
            "clean_acc": metrics["clean_acc"],
            "fgsm_acc": metrics["fgsm_acc"],
            "naive_s": naive_s,
            "pruned_s": pruned_s,
            "speedup": naive_s / pruned_s,
            "naive_acc": naive.float().mean().item(),
            "pruned_acc": pruned.float().mean().item(),
            "decisions_differ": int((naive != pruned).sum()),
            "samples": len(x),
        }
        report["models"][label] = row
        print(
            f"{label:<22}{row['clean_acc']:>7.3f}{naive_s:>9.1f}{pruned_s:>10.1f}{row['speedup']:>9.1f}x"
            f"{row['naive_acc']:>11.3f}{row['pruned_acc']:>12.3f}{row['decisions_differ']:>8}"
        )
    load.__exit__(None, None, None)
    report["machine_load"] = load.record
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
