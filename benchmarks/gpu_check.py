"""One prepared device check: what cobench's CUDA paths do on a real GPU, in one command.

    python benchmarks/gpu_check.py                          # a GPU machine; about 5-8 minutes on an H100/H200
    python benchmarks/gpu_check.py --tiny --device cpu      # the same checks in a tiny setting (the test)

Uses real CIFAR-10 images from ``--data-dir`` (default ``../shared/data/cifar10-prefix``: the
official python layout, read with ``verify_checksums=false``; no download, a GPU machine may have
no network) and measures, on one device:

1. **steps/s** of PreActResNet18 FGSM-AT (batch 128) in cobench's loop: fp32, bf16,
   channels-last, compiled (``--compile``), and the reference loop of ``benchmarks/speed.py``
   (DataLoader, per-batch copies, fp32) for the ratio;
2. **cells per hour** of a short fixed grid (FGSM-AT, eps 8/255, 8 seeds, 3 epochs, clean accuracy)
   under ``--executor local-parallel --cells-per-device K`` for K = 1, 2, 4, 8: steady (K cells at
   a time, each taking the median of the cells' own wall times: what sharing the GPU changes) and
   end to end (with each pool's worker start-up, which dominates cells this short);
3. **pruned vs naive PGD-50-10** on a briefly trained FGSM-AT model, both in the evaluators' own
   setting (eval mode, true fp32): both times, and how many per-sample decisions differ (they
   agree up to rounding: at most 0.5 % of the samples, at least one, may differ, since the two
   attacks' batch sizes differ and a GPU may round differently for each);
4. **determinism**: the same cell twice with ``--deterministic``, and twice without: are the
   metrics and curves identical?

Everything is printed and written to ``--out-dir`` (default ``benchmarks/results/``) as
``gpu_check-<device>.json`` and ``.txt``, with the machine's load before and after (a warning is
printed when it was not idle). Each section gets its share of ``--budget-s`` (plus what earlier ones
left unused) and is stopped when it is spent, keeping the figures it had finished and recording
that it stopped, so the command always finishes in the budget and writes what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # run from a source checkout too
sys.path.insert(0, str(HERE))  # speed.py, pgd_eval.py, the machine-load recorder

from machine_load import LoadRecorder  # noqa: E402

from cobench.grid.resolve import resolve  # noqa: E402
from cobench.grid.spec import GridSpec  # noqa: E402
from cobench.options import RunOptions  # noqa: E402
from cobench.params import ComponentSpec, Params  # noqa: E402
from cobench.plugins import get_plugin_manager  # noqa: E402
from cobench.run.cell_worker import execute_cell  # noqa: E402
from cobench.run.dataset_cache import load_dataset  # noqa: E402
from cobench.run.device import CUBLAS_WORKSPACE, resolve_device  # noqa: E402
from cobench.run.runner import Runner  # noqa: E402

DATASET = "cifar10"
DATASET_PARAMS = ("datasets.cifar10.verify_checksums=false",)
#: the full setting (a GPU) and the tiny one (the CPU test)
SETTINGS = {
    "full": {
        "model": "preact-resnet18",
        "width": None,
        "steps": 100,
        "warmup": 10,
        "grid_seeds": 8,
        "grid_epochs": 3,
        "cells_per_device": (1, 2, 4, 8),
        "pgd_epochs": 3,
        "pgd_steps": 50,
        "pgd_restarts": 10,
        "pgd_samples": 1000,
        "det_epochs": 1,
        "variants": "reference,cobench,bf16,channels_last,compile",
    },
    "tiny": {
        "model": "small-cnn",
        "width": 4,
        "steps": 2,
        "warmup": 1,
        "grid_seeds": 2,
        "grid_epochs": 1,
        "cells_per_device": (1, 2),
        "pgd_epochs": 1,
        "pgd_steps": 3,
        "pgd_restarts": 2,
        "pgd_samples": 16,
        "det_epochs": 1,
        "variants": "reference,cobench,bf16,channels_last",
    },
}


def load_script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"cobench_gpu_check_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cifar(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The real images under --data-dir, on the CPU (train x, y, test x, y)."""
    data = load_dataset(ComponentSpec(DATASET, Params({"verify_checksums": False})), RunOptions(data_dir=args.data_dir))
    return data.train_x, data.train_y, data.test_x, data.test_y


def grid_spec(args: argparse.Namespace, seeds: list[int], epochs: int, evaluators: list[str]) -> GridSpec:
    spec = GridSpec(
        datasets=[DATASET],
        models=[args.setting["model"]],
        methods=["fgsm"],
        eps=[8.0],
        seeds=seeds,
        evaluators=evaluators,
    )
    spec.override(epochs=epochs, probe_size=64)
    for p in DATASET_PARAMS:
        spec.set_param(p)
    if args.setting["width"]:
        spec.set_param(f"models.{args.setting['model']}.width={args.setting['width']}")
    return spec


# --------------------------------------------------------------------------- 1. steps/s
def check_speed(args: argparse.Namespace, device: torch.device, out: dict[str, Any]) -> None:
    speed = load_script("speed")
    s = args.setting
    x, y, _, _ = cifar(args)
    n = (s["steps"] + s["warmup"]) * 128
    reps = -(-n // len(x))
    x, y = x.repeat(reps, 1, 1, 1)[:n], y.repeat(reps)[:n]  # real images, cycled to the steps measured
    if x.shape[1:] != (3, 32, 32):
        raise SystemExit(f"--data-dir holds images of shape {tuple(x.shape[1:])}, not CIFAR-10's (3, 32, 32)")
    sargs = speed.parse_args(
        [
            "--model",
            s["model"],
            "--device",
            str(device),
            "--steps",
            str(s["steps"]),
            "--warmup",
            str(s["warmup"]),
            "--repeats",
            "1",
            "--variants",
            s["variants"],
        ]
        + (["--width", str(s["width"])] if s["width"] else [])
    )
    out.update(
        model=s["model"],
        batch_size=128,
        steps=s["steps"],
        steps_per_s={},
        compile_s={},
        errors={},
        ratio_to_reference={},
    )
    for variant in [v.strip() for v in s["variants"].split(",")]:
        try:
            if variant == "reference":
                out["steps_per_s"][variant] = speed.measure_reference(sargs, x, y, device)
            else:
                sps, compile_s = speed.measure_cobench(sargs, x, y, device, speed.parse_variant(variant))
                out["steps_per_s"][variant] = sps
                if compile_s is not None:
                    out["compile_s"][variant] = compile_s
        except Exception as exc:  # e.g. bf16 on a GPU without native support: recorded, the check goes on
            out["errors"][variant] = f"{type(exc).__name__}: {exc}"
        ref = out["steps_per_s"].get("reference")
        out["ratio_to_reference"] = {v: sps / ref for v, sps in out["steps_per_s"].items()} if ref else {}


# --------------------------------------------------------------------------- 2. cells per hour
def check_cells_per_device(args: argparse.Namespace, device: torch.device, out: dict[str, Any]) -> None:
    """Cells per hour end to end (a pool's worker start-up included: imports, CUDA context) and
    steady: K cells at a time, each taking the median of the cells' own wall times (from data
    loading to the last evaluator), which is what sharing a GPU changes."""
    s = args.setting
    spec = grid_spec(args, list(range(s["grid_seeds"])), s["grid_epochs"], ["clean"])
    out.update(
        cells=s["grid_seeds"],
        epochs=s["grid_epochs"],
        cells_per_hour={},
        steady_cells_per_hour={},
        median_cell_s={},
        failed={},
        ratio_to_one={},
    )
    for k in s["cells_per_device"]:
        with tempfile.TemporaryDirectory(prefix=f"gpu-check-k{k}-") as tmp:
            t0 = time.perf_counter()
            summary = Runner(
                spec,
                tmp,
                options=RunOptions(device=str(device), data_dir=args.data_dir, checkpoints=False),
                executor="local-parallel",
                executor_options={"cells_per_device": k},
            ).run()
            seconds = time.perf_counter() - t0
        key = str(k)
        out["cells_per_hour"][key] = 3600 * summary.ran / seconds
        walls = sorted(r["wall_time_s"] for r in summary.results if r.get("status") == "ok")
        if walls:
            median = statistics.median(walls)
            out["median_cell_s"][key] = median
            out["steady_cells_per_hour"][key] = 3600 * min(k, len(walls)) / median
        if summary.failed:
            out["failed"][key] = summary.failed[0]["error"]["message"]
        base = out["steady_cells_per_hour"].get("1")
        out["ratio_to_one"] = {k: v / base for k, v in out["steady_cells_per_hour"].items()} if base else {}


# --------------------------------------------------------------------------- 3. pruned vs naive PGD
#: pruned and naive PGD agree up to rounding: their batches differ in size, so a GPU may pick other
#: kernels, and a sample on its decision boundary can fall either way; this share of the samples
#: (at least one) may differ before the check reports a disagreement
DECISIONS_ALLOWED_TO_DIFFER = 0.005


def check_pgd(args: argparse.Namespace, device: torch.device, out: dict[str, Any]) -> None:
    """Both attacks timed in the evaluators' setting (``pgd_eval.attack``: eval mode, true fp32)."""
    pgd_eval = load_script("pgd_eval")
    s = args.setting
    get_plugin_manager().register(pgd_eval.KeepModelPlugin(), "benchmark-keep-model")
    spec = grid_spec(args, [0], s["pgd_epochs"], ["clean", "benchmark-keep-model"])
    (cell,) = resolve(spec, get_plugin_manager().registry)
    result = execute_cell(cell.config(), RunOptions(device=str(device), data_dir=args.data_dir, checkpoints=False))
    if result["status"] != "ok":
        raise RuntimeError(f"training the model to attack failed: {result['error']['message']}")
    model = pgd_eval.TRAINED.pop("model")
    x, y = pgd_eval.TRAINED.pop("x")[: s["pgd_samples"]], pgd_eval.TRAINED.pop("y")[: s["pgd_samples"]]
    pargs = argparse.Namespace(eps=8.0, step_size=2.0, steps=s["pgd_steps"], restarts=s["pgd_restarts"], batch_size=512)
    out.update(
        attack=f"PGD-{s['pgd_steps']}-{s['pgd_restarts']}, eps 8/255, step 2/255",
        samples=len(x),
        clean_acc=result["metrics"]["clean_acc"],
    )
    naive_s, naive = pgd_eval.attack(model, x, y, pargs, prune=False, device=device)
    out.update(naive_s=naive_s, robust_acc_naive=naive.float().mean().item())
    pruned_s, pruned = pgd_eval.attack(model, x, y, pargs, prune=True, device=device)
    differ = int((naive != pruned).sum())
    allowed = max(1, int(DECISIONS_ALLOWED_TO_DIFFER * len(x)))
    out.update(
        pruned_s=pruned_s,
        speedup=naive_s / pruned_s,
        robust_acc_pruned=pruned.float().mean().item(),
        decisions_differ=differ,
        decisions_allowed_to_differ=allowed,
        agree=differ <= allowed,
    )


# --------------------------------------------------------------------------- 4. determinism
def check_determinism(args: argparse.Namespace, device: torch.device, out: dict[str, Any]) -> None:
    s = args.setting
    (cell,) = resolve(grid_spec(args, [0], s["det_epochs"], ["clean", "fgsm"]), get_plugin_manager().registry)
    for deterministic in (True, False):
        runs = []
        for _ in range(2):
            r = execute_cell(
                cell.config(),
                RunOptions(device=str(device), data_dir=args.data_dir, checkpoints=False, deterministic=deterministic),
            )
            if r["status"] != "ok":
                raise RuntimeError(r["error"]["message"])
            runs.append(r)
        same_metrics = runs[0]["metrics"] == runs[1]["metrics"]
        same_curves = {k: v for k, v in runs[0]["curves"].items() if not k.endswith("_time_s")} == {
            k: v for k, v in runs[1]["curves"].items() if not k.endswith("_time_s")
        }
        out["deterministic" if deterministic else "default"] = {
            "identical_metrics": same_metrics,
            "identical_curves": same_curves,
            "metrics": [runs[0]["metrics"], runs[1]["metrics"]],
            "numerics": runs[0]["provenance"]["numerics"],
        }


# --------------------------------------------------------------------------- driver
Section = Callable[[argparse.Namespace, torch.device, dict[str, Any]], None]
SECTIONS: tuple[tuple[str, Section, float], ...] = (
    # name, function (fills its dict as it measures), its share of the budget
    ("speed", check_speed, 0.30),
    ("cells_per_device", check_cells_per_device, 0.30),
    ("pgd", check_pgd, 0.20),
    ("determinism", check_determinism, 0.10),
)


class BudgetExceeded(BaseException):
    """Raised inside a running section when its share of ``--budget-s`` is spent. A BaseException,
    like KeyboardInterrupt, so that no ``except Exception`` (a cell's own) turns it into a result;
    the section's figures measured so far are kept."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in this (the main) thread once ``seconds`` have passed. A
    local-parallel grid interrupted so terminates its worker processes as it unwinds."""

    def ring(signum: int, frame: Any) -> None:
        raise BudgetExceeded

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def section_ends(wanted: list[str], budget_s: float) -> dict[str, float]:
    """Seconds from the start by which each wanted section must end: each gets its share of the
    budget (shares rescaled over the wanted sections), plus whatever earlier ones left unused."""
    shares = [(name, share) for name, _, share in SECTIONS if name in wanted]
    total, done, ends = sum(share for _, share in shares), 0.0, {}
    for name, share in shares:
        done += share
        ends[name] = budget_s * done / total
    return ends


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-dir",
        default=str(ROOT.parent / "shared" / "data" / "cifar10-prefix"),
        help="CIFAR-10 in the official python layout (default: ../shared/data/cifar10-prefix)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out-dir", default=str(HERE / "results"), help="where gpu_check-<device>.json/.txt go")
    p.add_argument("--tiny", action="store_true", help="a tiny setting (small-cnn width 4, a few steps): the CPU test")
    p.add_argument(
        "--budget-s",
        type=float,
        default=450.0,
        help="seconds for all sections: each is stopped at the end of its share (what it measured is kept)",
    )
    p.add_argument(
        "--sections",
        default=",".join(name for name, _, _ in SECTIONS),
        help="comma-separated subset of " + ", ".join(name for name, _, _ in SECTIONS),
    )
    args = p.parse_args(argv)
    unknown = sorted({s.strip() for s in args.sections.split(",") if s.strip()} - {n for n, _, _ in SECTIONS})
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(n for n, _, _ in SECTIONS)}")
    args.setting = SETTINGS["tiny" if args.tiny else "full"]
    return args


def device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def report_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        f"cobench device check on {report['device_name']} (torch {report['torch']}, CUDA {report['cuda']}), "
        f"{report['setting']} setting, data {report['data_dir']} ({report['train_images']} train / "
        f"{report['test_images']} test images); machine idle throughout: "
        f"{'yes' if report['machine_load'].get('idle') else 'NO'}"
    ]
    sections = report["sections"]
    if "speed" in sections and "steps_per_s" in sections["speed"]:
        sp = sections["speed"]
        lines.append(f"1. {sp['model']} FGSM-AT, batch 128, {sp['steps']} steps: steps/s (x reference loop)")
        for v, sps in sp["steps_per_s"].items():
            ratio = sp["ratio_to_reference"].get(v)
            extra = f", compile {sp['compile_s'][v]:.0f} s" if v in sp["compile_s"] else ""
            lines.append(f"   {v:<16}{sps:>9.2f}" + (f"  ({ratio:.2f}x{extra})" if ratio else extra))
        lines += [f"   {v:<16} failed: {e}" for v, e in sp["errors"].items()]
    if "cells_per_device" in sections and "cells_per_hour" in sections["cells_per_device"]:
        cp = sections["cells_per_device"]
        lines.append(
            f"2. cells per hour, {cp['cells']} FGSM-AT cells x {cp['epochs']} epochs, local-parallel: steady "
            "(K cells at a time, each its median wall time) and end to end (worker start-up included)"
        )
        for k, v in cp["cells_per_hour"].items():
            steady = cp["steady_cells_per_hour"].get(k)
            lines.append(
                f"   --cells-per-device {k:<3}"
                + (f"{steady:>9.0f} cells/h steady ({cp['ratio_to_one'].get(k, 0):.2f}x K=1), " if steady else "")
                + f"{v:.0f} end to end"
                + (f"  failed: {cp['failed'][k]}" if k in cp["failed"] else "")
            )
    if "pgd" in sections and "naive_s" in sections["pgd"]:
        pg = sections["pgd"]
        line = (
            f"3. {pg['attack']} on {pg['samples']} images (clean {pg['clean_acc']:.3f}), eval mode, true fp32: "
            f"naive {pg['naive_s']:.1f} s"
        )
        if "pruned_s" in pg:
            line += (
                f", pruned {pg['pruned_s']:.1f} s ({pg['speedup']:.1f}x); robust acc {pg['robust_acc_naive']:.3f} / "
                f"{pg['robust_acc_pruned']:.3f}, decisions differing: {pg['decisions_differ']} of {pg['samples']} "
                f"(agree up to rounding, at most {pg['decisions_allowed_to_differ']}: {pg['agree']})"
            )
        lines.append(line)
    if "determinism" in sections:
        de = sections["determinism"]
        for mode in ("deterministic", "default"):
            if mode in de:
                lines.append(
                    f"4. two identical runs, {'--deterministic' if mode == 'deterministic' else 'default settings'}: "
                    f"metrics identical {de[mode]['identical_metrics']}, curves identical {de[mode]['identical_curves']}"
                )
    for name, section in sections.items():
        for why in ("skipped", "stopped", "error"):
            if why in section:
                lines.append(f"{name}: {section[why]}")
    lines.append(f"total {report['wall_s']:.0f} s")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # cuBLAS reads its workspace setting once, when it starts: set it before any CUDA work, so that
    # the determinism section's --deterministic runs are deterministic in this one process
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    device = resolve_device(args.device)
    if not Path(args.data_dir).is_dir():
        raise SystemExit(
            f"--data-dir {args.data_dir!r} does not exist: point it at CIFAR-10's python layout "
            "(cifar-10-batches-py/), e.g. ../shared/data/cifar10-prefix"
        )
    x, _, tx, _ = cifar(args)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    report: dict[str, Any] = {
        "device": str(device),
        "device_name": device_label(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "setting": "tiny" if args.tiny else "full",
        "data_dir": args.data_dir,
        "train_images": len(x),
        "test_images": len(tx),
        "budget_s": args.budget_s,
        "sections": {},
    }
    t_start = time.perf_counter()
    ends = section_ends(wanted, args.budget_s)
    with LoadRecorder() as load:
        t_sections = time.perf_counter()  # the budget is the sections' (the load recorder took a second)
        for name, fn, _ in SECTIONS:
            if name not in wanted:
                continue
            left = t_sections + ends[name] - time.perf_counter()
            if left <= 0:
                used = time.perf_counter() - t_sections
                report["sections"][name] = {
                    "skipped": f"skipped: {used:.0f} s of the {args.budget_s:.0f} s budget used"
                }
                continue
            out: dict[str, Any] = {}
            report["sections"][name] = out
            t0 = time.perf_counter()
            try:
                with deadline(left):
                    fn(args, device, out)
            except BudgetExceeded:
                out["stopped"] = (
                    f"stopped after {time.perf_counter() - t0:.0f} s, at the end of its share of the "
                    f"{args.budget_s:.0f} s budget: the figures it had finished are kept"
                )
            except Exception as exc:  # one section failing must not lose the others' figures
                out["error"] = f"failed: {type(exc).__name__}: {exc}"
            out["wall_s"] = time.perf_counter() - t0
            print(f"[{name}: {out['wall_s']:.0f} s]", flush=True)
    report["machine_load"] = load.record
    report["wall_s"] = time.perf_counter() - t_start
    text = "\n".join(report_lines(report))
    print(text)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = (
        "gpu_check-"
        + re.sub(r"[^A-Za-z0-9]+", "-", device.type if device.type == "cpu" else report["device_name"])
        .strip("-")
        .lower()
    )
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{stem}.txt").write_text(text + "\n")
    print(f"written: {out / stem}.json, .txt")
    return report


if __name__ == "__main__":
    main()
