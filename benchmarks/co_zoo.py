"""The method zoo on the embedded dataset at the default CO eps: which methods collapse, at what cost.

    OMP_NUM_THREADS=1 python benchmarks/co_zoo.py --results-dir results/co_zoo

Trains every registered method (each with its paper's defaults and published eps rule) on
digits / small-cnn, 30 epochs, lr_max 0.4, eps 40/255 -- the setting in which FGSM-AT collapses
catastrophically on main -- and prints the summary table, a cost table (forward/backward passes
per step, time per step relative to FGSM) and whether the expected pattern holds (FGSM
collapses; N-FGSM, GradAlign, ELLE and PGD-AT do not). Finished cells are skipped, so an
interrupted run resumes where it stopped. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the machine-load recorder

from machine_load import LoadRecorder  # noqa: E402

from cobench.grid.spec import GridSpec  # noqa: E402
from cobench.plugins import get_plugin_manager  # noqa: E402
from cobench.run.progress import GridProgress  # noqa: E402
from cobench.run.runner import Runner  # noqa: E402
from cobench.store.tables import aggregate, summary_tables  # noqa: E402

SHOULD_COLLAPSE = ("fgsm",)
SHOULD_HOLD = ("n-fgsm", "grad-align", "elle", "pgd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results-dir", required=True, type=Path)
    p.add_argument("--methods", help="comma-separated subset (default: every registered method)")
    p.add_argument("--eps", type=float, default=40.0, help="eps in /255 units (default 40)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr-max", type=float, default=0.4)
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def cost_table(agg: list[dict], rows: list[dict]) -> Table:
    table = Table(
        title="training cost per minibatch step (Free-AT replays each minibatch m times over 1/m of the "
        "epochs, so compare its total train time)",
        title_justify="left",
    )
    for col in ("method", "forward passes", "backward passes", "ms / step", "time / FGSM", "train time (s)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("status") == "ok":
            by_method.setdefault(r["method"], []).append(r)
    for a in sorted(agg, key=lambda a: a.get("cost_vs_fgsm") or 0.0):
        rs = by_method.get(a["method"], [])

        def mean(k: str, rs: list = rs) -> float:
            return sum(r[k] for r in rs) / len(rs) if rs else float("nan")

        table.add_row(
            a["method"],
            f"{mean('cost_forward_passes_per_step'):.1f}",
            f"{mean('cost_backward_passes_per_step'):.1f}",
            f"{1000 * mean('cost_time_per_step_s'):.1f}",
            "-" if a["cost_vs_fgsm"] is None else f"{a['cost_vs_fgsm']:.1f}x",
            f"{mean('cost_train_time_s'):.0f}",
        )
    return table


def verdict(agg: list[dict]) -> list[str]:
    by = {a["method"]: a for a in agg}
    lines = []
    for name, want in [(m, True) for m in SHOULD_COLLAPSE] + [(m, False) for m in SHOULD_HOLD]:
        a = by.get(name)
        if a is None or a.get("co_rate") is None:
            lines.append(f"{name:11s} not run")
            continue
        collapsed = a["co_rate"] > 0.5
        pgd = a.get("pgd_acc_mean")
        ok = collapsed == want
        lines.append(
            f"{name:11s} {'collapsed' if collapsed else 'held     '} (PGD {100 * pgd:.1f}%) "
            f"{'as expected' if ok else 'NOT as expected'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pm = get_plugin_manager()
    methods = args.methods.split(",") if args.methods else pm.registry.names("methods")
    spec = GridSpec(
        datasets=["digits"],
        models=["small-cnn"],
        methods=methods,
        eps=[args.eps],
        seeds=[int(s) for s in args.seeds.split(",")],
        evaluators=["clean", "fgsm", "pgd", "co"],
    )
    spec.override(epochs=args.epochs, lr_max=args.lr_max)
    out, err = Console(width=140), Console(stderr=True)
    runner = Runner(spec, args.results_dir, options={"device": args.device})
    with LoadRecorder(echo=err.print):  # its cost table holds times: warns when the machine was not idle
        summary = runner.run(progress=GridProgress(err))
    rows = summary.rows()
    agg = aggregate(rows)
    for table in summary_tables(agg):
        out.print(table)
    out.print(cost_table(agg, rows))
    for line in verdict(agg):
        out.print(line)
    for r in summary.failed:
        err.print(f"failed: {r['config']['method']['name']}: {r['error']['message']}")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
