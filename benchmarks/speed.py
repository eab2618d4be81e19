"""Training-loop speed: cobench's loop against a reference loop written the way the fast-AT
repositories write it, same model, method (FGSM-AT), batch and machine, in one run.

The reference follows locuslab/fast_adversarial (Wong, Rice & Kolter, ICLR 2020,
``CIFAR10/train_fgsm.py``, zero init): a ``DataLoader`` over CPU tensors with a per-batch
``.to(device)``, a normalisation layer, fp32, a full ``backward()`` to get the input
gradient, ``CyclicLR``, and ``loss.item()`` bookkeeping every step. cobench's loop is
``cobench.run.training.train`` on device-resident data. The data are synthetic CIFAR-shaped
tensors (no download) and augmentation is off in both, so both loops do the same work.

Variants of cobench's loop (``--variants``), each measured in the same run, interleaved
over ``--repeats`` rounds and reported as the median:

* ``cobench``: the loop as it is (fp32, contiguous NCHW);
* ``channels_last``: model and batches in channels-last memory format (``--channels-last``);
* ``bf16``: ``amp="bf16"``, the method's steps under ``torch.autocast(dtype=bfloat16)``;
* ``compile``: cobench's ``--compile`` option, ``torch.compile(model)`` for the training steps
  (compile time reported separately and excluded);
* ``channels_last+bf16`` and any other ``+`` combination.

Usage::

    python benchmarks/speed.py                                 # preact-resnet18, auto device
    python benchmarks/speed.py --model small-cnn --device cpu --steps 30
    python benchmarks/speed.py --eval                          # also evaluation throughput by batch size
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout too
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared reference attacks

from machine_load import LoadRecorder
from reference_attacks import reference_fgsm_step

from cobench.api import NO_INJECTION, DataSplits, EvalContext, Method
from cobench.attacks import accuracy, fgsm
from cobench.grid.spec import TrainingConfig
from cobench.options import RunOptions
from cobench.plugins import get_plugin_manager
from cobench.run.device import resolve_device
from cobench.run.runtime import CellParts
from cobench.run.training import Normalize, train

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)  # CIFAR-10's
EPS = 8 / 255
VARIANT_FLAGS = ("channels_last", "bf16", "compile")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(name: str, width: int | None, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    cls = get_plugin_manager().registry.get("models", name)
    net = cls(**({"width": width} if width else {})).build(num_classes=10, image_shape=(3, 32, 32))
    return nn.Sequential(Normalize(MEAN, STD), net).to(device)


# --------------------------------------------------------------------------- the reference loop
def reference_loop(
    model: nn.Module, loader: DataLoader, device: torch.device, steps: int, warmup: int, lr_max: float = 0.2
) -> float:
    """locuslab/fast_adversarial's FGSM-AT epoch (zero init, alpha = eps); returns steps/s."""
    opt = torch.optim.SGD(model.parameters(), lr=lr_max, momentum=0.9, weight_decay=5e-4)
    total = steps + warmup
    scheduler = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=0.0, max_lr=lr_max, step_size_up=total / 2, step_size_down=total / 2
    )
    t0 = None
    model.train()
    for i, (X, y) in enumerate(loader):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        if i == total:
            break
        X, y = X.to(device), y.to(device)
        reference_fgsm_step(model, opt, scheduler, X, y, EPS)
    sync(device)
    return steps / (time.perf_counter() - t0)


def measure_reference(args: argparse.Namespace, x: Tensor, y: Tensor, device: torch.device) -> float:
    model = build_model(args.model, args.width, device)
    loader = DataLoader(
        TensorDataset(x, y), batch_size=args.batch_size, shuffle=True, drop_last=True, pin_memory=device.type == "cuda"
    )
    return reference_loop(model, loader, device, args.steps, args.warmup)


# --------------------------------------------------------------------------- cobench's loop
def splits(x: Tensor, y: Tensor, device: torch.device) -> DataSplits:
    x, y = x.to(device), y.to(device)
    return DataSplits(x, y, x[:256], y[:256], 10, MEAN, STD)


def cobench_epoch(
    model: nn.Module, method: Method, data: DataSplits, device: torch.device, bs: int, flags: set[str]
) -> None:
    """One epoch of cobench's own loop, with the variant's flags as the runner would pass them."""
    reg = get_plugin_manager().registry
    injection = reg.get("injections", NO_INJECTION)()
    config = TrainingConfig(epochs=1, batch_size=bs, augment=False, amp="bf16" if "bf16" in flags else "off")
    config.validate()
    eval_ctx = EvalContext(
        eps=EPS,
        test_x=data.test_x,
        test_y=data.test_y,
        clean_test_x=data.test_x,
        injection=injection,
        num_classes=10,
        device=device,
        batch_size=512,
        seed=0,
        probe_x=data.test_x,
        probe_y=data.test_y,
    )
    parts = CellParts(model=model, method=method, data=data, injection=injection, evaluators=[], eval_ctx=eval_ctx)
    train(
        parts,
        config.as_config(),
        RunOptions(device=str(device), channels_last="channels_last" in flags, compile="compile" in flags),
    )


def measure_cobench(
    args: argparse.Namespace, x: Tensor, y: Tensor, device: torch.device, flags: set[str]
) -> tuple[float, float | None]:
    """Steps/s of ``cobench.run.training.train`` (a warm-up epoch first); also the compile time
    (``compile``: cobench's ``--compile`` option, whose warm-up epoch compiles)."""
    model = build_model(args.model, args.width, device)
    method: Method = get_plugin_manager().registry.get("methods", "fgsm")()
    bs, n_warm = args.batch_size, args.warmup * args.batch_size
    sync(device)
    t0 = time.perf_counter()
    cobench_epoch(model, method, splits(x[:n_warm], y[:n_warm], device), device, bs, flags)
    sync(device)
    compile_s = time.perf_counter() - t0 if "compile" in flags else None
    data = splits(x[n_warm:], y[n_warm:], device)
    sync(device)
    t0 = time.perf_counter()
    cobench_epoch(model, method, data, device, bs, flags)
    sync(device)
    return args.steps / (time.perf_counter() - t0), compile_s


# --------------------------------------------------------------------------- evaluation
def measure_eval(args: argparse.Namespace, x: Tensor, y: Tensor, device: torch.device) -> dict[int, dict[str, float]]:
    """Images/s of clean and FGSM evaluation (what evaluators do) at several batch sizes."""
    model = build_model(args.model, args.width, device).eval()
    x, y = x[: args.eval_samples].to(device), y[: args.eval_samples].to(device)
    out: dict[int, dict[str, float]] = {}
    for bs in args.eval_batch_sizes:
        accuracy(model, x[:bs], y[:bs], bs)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        accuracy(model, x, y, bs)
        sync(device)
        clean = len(x) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(0, len(x), bs):
            delta = fgsm(model, x[i : i + bs], y[i : i + bs], EPS)
            with torch.no_grad():
                model(x[i : i + bs] + delta)
        sync(device)
        out[bs] = {"clean_images_per_s": clean, "fgsm_images_per_s": len(x) / (time.perf_counter() - t0)}
    return out


# --------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="preact-resnet18", help="a cobench model (preact-resnet18, small-cnn, ...)")
    p.add_argument("--width", type=int, help="the model's width parameter (default: the model's own)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, help="measured steps per loop (default 30 on CPU, 200 on GPU)")
    p.add_argument("--warmup", type=int, help="unmeasured warm-up steps (default 3 on CPU, 20 on GPU)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    p.add_argument(
        "--variants",
        default="reference,cobench,channels_last,bf16,channels_last+bf16",
        help="comma-separated: reference, cobench, or '+'-joined flags from " + ", ".join(VARIANT_FLAGS),
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--eval", action="store_true", help="also measure evaluation throughput by batch size")
    p.add_argument("--eval-batch-sizes", default="128,512,1024")
    p.add_argument("--eval-samples", type=int, default=2048)
    p.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    args.eval_batch_sizes = [int(b) for b in args.eval_batch_sizes.split(",")]
    return args


def parse_variant(name: str) -> set[str]:
    if name in ("reference", "cobench"):
        return set()
    flags = set(name.split("+"))
    unknown = flags - set(VARIANT_FLAGS)
    if unknown:
        raise SystemExit(
            f"unknown variant flag(s) {sorted(unknown)}; valid: reference, cobench, {', '.join(VARIANT_FLAGS)}"
        )
    return flags


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type != "cpu"
    args.steps = args.steps or (200 if gpu else 30)
    args.warmup = args.warmup or (20 if gpu else 3)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    flags = {v: parse_variant(v) for v in variants}
    n = (args.steps + args.warmup) * args.batch_size
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    runs: dict[str, list[float]] = {v: [] for v in variants}
    compile_s: dict[str, float] = {}
    for _ in range(args.repeats):
        for v in variants:
            if v == "reference":
                runs[v].append(measure_reference(args, x, y, device))
            else:
                sps, c = measure_cobench(args, x, y, device, flags[v])
                runs[v].append(sps)
                if c is not None:
                    compile_s.setdefault(v, c)
    report: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "steps_per_s": {v: statistics.median(r) for v, r in runs.items()},
        "all_runs": runs,
        "compile_s": compile_s,
    }
    ref = report["steps_per_s"].get("reference")
    if ref:
        report["ratio_to_reference"] = {v: s / ref for v, s in report["steps_per_s"].items()}
    if args.eval:
        report["eval"] = measure_eval(args, x, y, device)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"{report['model']}, FGSM-AT, batch {report['batch_size']}, {report['device_name']} "
        f"({report['threads']} threads), torch {report['torch']}; median of {report['repeats']} x "
        f"{report['steps']} steps after {report['warmup']} warm-up"
    )
    print(f"{'variant':<24}{'steps/s':>10}{'x reference':>14}")
    for v, sps in report["steps_per_s"].items():
        ratio = report.get("ratio_to_reference", {}).get(v)
        extra = f"  (compile {report['compile_s'][v]:.0f}s)" if v in report["compile_s"] else ""
        print(f"{v:<24}{sps:>10.2f}{'' if ratio is None else f'{ratio:>14.2f}'}{extra}")
    for bs, e in report.get("eval", {}).items():
        print(
            f"eval batch {bs:>5}: clean {e['clean_images_per_s']:>9.0f} img/s, FGSM {e['fgsm_images_per_s']:>9.0f} img/s"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with LoadRecorder() as load:  # recorded beside the figures; warns when the machine was not idle
        report = run(args)
    report["machine_load"] = load.record
    print_report(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
