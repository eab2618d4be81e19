"""Grid throughput: cells per hour for a fixed grid, cobench against the reference way, in one run.

    python benchmarks/grid_throughput.py                  # digits / small-cnn on this machine
    python benchmarks/grid_throughput.py --model preact-resnet18 --dataset cifar10 --eps 8 --device cuda

The grid: FGSM-AT x eps (default 16/255, where it holds, and 40/255, where it collapses) x
seeds, trained for ``--epochs`` and evaluated with clean accuracy and PGD-50-10 (``--steps``, ``--restarts``).

* **reference**: the way the fast-AT repositories run such a grid: one Python process per
  cell (``subprocess``, so interpreter start, imports and data loading are paid per cell),
  a ``DataLoader`` over CPU tensors with per-batch ``.to(device)``, fp32, FGSM and the
  training step as in locuslab/fast_adversarial ``CIFAR10/train_fgsm.py`` (zero init, full
  ``backward()``, ``CyclicLR``, ``loss.item()`` every step), and PGD-50-10 as in the CO
  paper's gortizji/co_features ``attacks.RestartPGD`` (every sample, every step, every restart;
  the highest-loss restart kept).
* **cobench**: ``cobench.run.runner.Runner`` over the same cells, with the options given
  (``--executor``, ``--workers``, ``--channels-last``, ``--amp``): data resident on the
  device, one process for the grid, pruned PGD evaluation.

Same models (cobench's registry builds both), same data, same batch sizes, same epochs;
augmentation off in both. Prints seconds, cells per hour and the ratio. A benchmark, not a
test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout too
sys.path.insert(0, str(ROOT / "benchmarks"))  # the shared reference attacks

from machine_load import LoadRecorder  # noqa: E402
from reference_attacks import reference_fgsm_step, reference_restart_pgd  # noqa: E402

from cobench.grid.cell import Cell  # noqa: E402
from cobench.grid.resolve import resolve  # noqa: E402
from cobench.grid.spec import GridSpec  # noqa: E402
from cobench.options import RunOptions  # noqa: E402
from cobench.plugins import get_plugin_manager  # noqa: E402
from cobench.run.dataset_cache import load_dataset  # noqa: E402
from cobench.run.device import resolve_device  # noqa: E402
from cobench.run.runner import Runner  # noqa: E402
from cobench.run.training import Normalize  # noqa: E402


# --------------------------------------------------------------------------- the reference way
def reference_cell(config: dict[str, Any], device: torch.device, data_dir: str) -> dict[str, float]:
    """Train and evaluate one cell the reference way (runs in its own process)."""
    cell = Cell.from_config(config)
    torch.manual_seed(cell.seed)
    data = load_dataset(cell.dataset, RunOptions(data_dir=data_dir))
    reg = get_plugin_manager().registry
    net = reg.get("models", cell.model.name)(**cell.model.kwargs()).build(
        num_classes=data.num_classes, image_shape=data.image_shape
    )
    model = nn.Sequential(Normalize(data.mean, data.std), net).to(device)
    tr = cell.training
    eps = cell.eps / 255
    train_loader = DataLoader(
        TensorDataset(data.train_x, data.train_y),
        batch_size=tr.batch_size,
        shuffle=True,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    test_loader = DataLoader(TensorDataset(data.test_x, data.test_y), batch_size=tr.eval_batch_size, shuffle=False)
    opt = torch.optim.SGD(model.parameters(), lr=tr.lr_max, momentum=tr.momentum, weight_decay=tr.weight_decay)
    total = tr.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=0.0, max_lr=tr.lr_max, step_size_up=total / 2, step_size_down=total / 2
    )
    for _ in range(tr.epochs):
        model.train()
        for X, y in train_loader:
            X, y = X.to(device), y.to(device)
            reference_fgsm_step(model, opt, scheduler, X, y, eps)
    model.eval()
    pgd = next(e for e in cell.evaluators if e.name == "pgd-50-10").params
    clean = robust = n = 0
    for X, y in test_loader:
        X, y = X.to(device), y.to(device)
        delta = reference_restart_pgd(model, X, y, eps, pgd["step_size"] / 255, pgd["steps"], pgd["restarts"])
        with torch.no_grad():
            clean += (model(X).max(1)[1] == y).sum().item()
            robust += (model(X + delta).max(1)[1] == y).sum().item()
        n += len(y)
    return {"clean_acc": clean / n, "pgd50_10_acc": robust / n}


# --------------------------------------------------------------------------- the driver
def grid(args: argparse.Namespace) -> GridSpec:
    spec = GridSpec(
        datasets=[args.dataset],
        models=[args.model],
        methods=["fgsm"],
        eps=args.eps,
        seeds=args.seeds,
        evaluators=["clean", "pgd-50-10"],
    )
    spec.override(epochs=args.epochs, lr_max=args.lr_max, amp=args.amp)
    spec.training.augment = False
    spec.params["evaluators"] = {"pgd-50-10": {"steps": args.steps, "restarts": args.restarts}}
    return spec


def run_reference(cells: list[Cell], args: argparse.Namespace) -> tuple[float, list[dict[str, float]]]:
    t0 = time.perf_counter()
    results = []
    for cell in cells:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--reference-cell",
                json.dumps(cell.config()),
                "--device",
                args.device,
                "--data-dir",
                args.data_dir,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return time.perf_counter() - t0, results


def run_cobench(spec: GridSpec, args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as results_dir:
        options = {"device": args.device, "data_dir": args.data_dir, "channels_last": args.channels_last}
        t0 = time.perf_counter()
        executor_options = {"workers": args.workers} if args.workers else {}  # only executors that take it
        summary = Runner(
            spec, results_dir, options=options, executor=args.executor, executor_options=executor_options
        ).run()
        seconds = time.perf_counter() - t0
    if summary.failed:
        raise SystemExit(f"cobench cell failed: {summary.failed[0]['error']['message']}")
    return seconds, [r["metrics"] for r in summary.results]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--model", default="small-cnn")
    p.add_argument("--eps", default="16,40", help="comma-separated eps in /255 units")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr-max", type=float, default=0.2)
    p.add_argument("--steps", type=int, default=50, help="PGD steps of the evaluation (the paper's 50)")
    p.add_argument("--restarts", type=int, default=10, help="PGD restarts of the evaluation (the paper's 10)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--executor", default="local", help="cobench's executor (local, local-parallel, ...)")
    p.add_argument("--workers", type=int, default=0, help="cobench's workers (local-parallel)")
    p.add_argument("--channels-last", action="store_true", help="cobench's channels-last option")
    p.add_argument("--amp", default="off", choices=["off", "bf16"], help="cobench's training precision")
    p.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    p.add_argument("--reference-cell", help=argparse.SUPPRESS)  # internal: one reference cell in this process
    args = p.parse_args(argv)
    if not args.reference_cell:
        args.eps = [float(e) for e in args.eps.split(",")]
        args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    args.device = str(device)
    if args.reference_cell:
        print(json.dumps(reference_cell(json.loads(args.reference_cell), device, args.data_dir)))
        return
    spec = grid(args)
    cells = resolve(spec, get_plugin_manager().registry)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"{len(cells)} cells: {args.dataset} / {args.model}, FGSM-AT, eps {args.eps}, seeds {args.seeds}, "
        f"{args.epochs} epochs, clean + PGD-50-10; {name}"
    )
    with LoadRecorder() as load:  # recorded beside the figures; warns when the machine was not idle
        ref_s, ref = run_reference(cells, args)
        cob_s, cob = run_cobench(spec, args)
    report = {
        "device": name,
        "cells": len(cells),
        "reference_s": ref_s,
        "cobench_s": cob_s,
        "reference_cells_per_hour": 3600 * len(cells) / ref_s,
        "cobench_cells_per_hour": 3600 * len(cells) / cob_s,
        "ratio": ref_s / cob_s,
        "cobench_options": {
            "executor": args.executor,
            "workers": args.workers,
            "channels_last": args.channels_last,
            "amp": args.amp,
        },
        "reference_metrics": ref,
        "cobench_metrics": cob,
        "machine_load": load.record,
    }
    print(f"{'way':<12}{'seconds':>9}{'cells/hour':>12}")
    print(f"{'reference':<12}{ref_s:>9.0f}{report['reference_cells_per_hour']:>12.0f}")
    print(f"{'cobench':<12}{cob_s:>9.0f}{report['cobench_cells_per_hour']:>12.0f}")
    print(f"cobench / reference: {report['ratio']:.2f}x cells per hour")
    for c, r, m in zip(cells, ref, cob):
        print(f"  {c.label}: PGD-50-10 acc reference {r['pgd50_10_acc']:.3f}, cobench {m['pgd50_10_acc']:.3f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
