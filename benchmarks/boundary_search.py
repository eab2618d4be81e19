"""The boundary search against the dense eps grid on the embedded digits dataset.

Searches the CO threshold of FGSM-AT on plain digits and with a low-frequency injection
(``cobench boundary``'s driver), then trains the dense grid over the same eps range at the same
step (reusing every cell the search trained: they are ordinary cells in the same results dir)
and reads the thresholds off it. Prints, per setting, both answers, whether they agree, and the
cells each needed. The defaults are the shipped digits boards' setting (16x16 digits, small-cnn
width 32, 30 epochs), where FGSM-AT does collapse; one seed keeps it to about 30 minutes on 2 cores
(smaller images or fewer epochs are cheaper but show no CO at all in this eps range):

    python benchmarks/boundary_search.py --results-dir results/boundary-bench
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cobench.boundary.driver import PlaneSearch, outcomes, search_boundaries
from cobench.boundary.plot import phase_diagram
from cobench.boundary.report import rows
from cobench.boundary.report import table as boundary_table
from cobench.boundary.search import BoundarySearch, lattice_size
from cobench.grid.spec import GridSpec, parse_list
from cobench.run.progress import GridProgress
from cobench.run.runner import Runner

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the machine-load recorder
from machine_load import LoadRecorder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results-dir", default="results/boundary-bench")
    ap.add_argument("--eps", default="16,32,48", help="coarse eps (/255)")
    ap.add_argument("--eps-step", type=float, default=8.0)
    ap.add_argument("--beta", type=float, default=12.0, help="low-freq injection strength (/255)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--min-rate", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size", type=int, default=16, help="digits image size")
    ap.add_argument("--width", type=int, default=32, help="small-cnn width")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--plot", default=None, help="phase diagram PNG (default: RESULTS_DIR/phase-diagram.png)")
    args = ap.parse_args()

    spec = GridSpec(
        methods=["fgsm"],
        eps=parse_list(args.eps),
        injections=["none", "low-freq"],
        betas=[args.beta],
        seeds=parse_list(args.seeds),
        evaluators=["clean", "co"],
    )
    spec.override(epochs=args.epochs, probe_size=128)
    spec.set_param(f"datasets.digits.size={args.size}")
    spec.set_param(f"models.small-cnn.width={args.width}")
    options = {"device": args.device}
    err = Console(stderr=True, highlight=False)

    load = LoadRecorder().__enter__()  # warns when the machine was not idle (the wall times below)
    t0 = time.perf_counter()
    runs = search_boundaries(
        spec,
        args.results_dir,
        min_rate=args.min_rate,
        eps_step=args.eps_step,
        options=options,
        progress=GridProgress(err, enabled=False),
    )
    search_s = time.perf_counter() - t0
    print(f"search finished in {search_s:.0f} s:", flush=True)
    Console(width=200).print(boundary_table(rows(runs)))
    sys.stdout.flush()

    lo, hi = min(spec.eps), max(spec.eps)
    dense_eps = [lo + i * args.eps_step for i in range(lattice_size(lo, hi, args.eps_step))]
    dense_spec = copy.deepcopy(spec)
    dense_spec.override(eps=dense_eps)
    t0 = time.perf_counter()
    dense_summary = Runner(dense_spec, args.results_dir, options=options).run(GridProgress(err, enabled=False))
    dense_extra_s = time.perf_counter() - t0
    if dense_summary.failed:
        raise SystemExit(
            f"{len(dense_summary.failed)} dense cells failed: {dense_summary.failed[0]['error']['message']}"
        )

    table = Table(
        title=f"FGSM-AT on digits {args.size}x{args.size}, small-cnn width {args.width}, {args.epochs} epochs, "
        f"seeds {args.seeds}, CO when >= {args.min_rate:.0%} of seeds; eps step {args.eps_step:g}/255"
    )
    for col in (
        "setting",
        "search: threshold (bracket)",
        "dense grid: threshold (bracket)",
        "CO/no-CO edges",
        "same answer",
        "cells: search",
        "cells: dense",
        "search / dense",
    ):
        table.add_column(col)
    for run in runs:
        dense = dense_answer(run, dense_summary.results, dense_eps, args)
        s, d = run.search.thresholds()[0], dense.thresholds()[0]
        same = (s.eps, s.below, s.transitions) == (d.eps, d.below, d.transitions)
        searched = len(run.search.outcomes) * run.seeds
        dense_cells = len(dense.outcomes) * run.seeds
        table.add_row(
            run.plane.label,
            bracket(s),
            bracket(d),
            ", ".join(f"{a:g}|{b:g}" for a, b in d.transitions) or "-",
            "yes" if same else "NO",
            str(searched),
            str(dense_cells),
            f"{searched / dense_cells:.2f}",
        )
    Console(width=200).print(table)
    print(
        f"wall time: search {search_s:.0f} s, remaining dense cells {dense_extra_s:.0f} s "
        f"({dense_summary.ran} trained, {dense_summary.skipped} reused from the search)"
    )
    load.__exit__(None, None, None)
    print(f"machine idle throughout: {'yes' if load.record['idle'] else 'no'}")
    plot = Path(args.plot or Path(args.results_dir) / "phase-diagram.png")
    plot.write_bytes(phase_diagram(runs))
    print(f"phase diagram: {plot}")


def dense_answer(run: PlaneSearch, results: list[dict], dense_eps: list[float], args) -> BoundarySearch:
    """A search whose coarse pass is the whole dense lattice, fed from the dense grid's results."""
    beta = run.plane.betas[0]
    mine = [
        r
        for r in results
        if r["config"]["injection"]["name"] == run.plane.injection
        and r["config"]["method"]["name"] == run.plane.method
        and float(r["config"]["beta"]) == beta
    ]
    dense = BoundarySearch(dense_eps, [beta], min_rate=args.min_rate, eps_step=args.eps_step)
    found = outcomes(mine, beta)
    for point in dense.pending():
        dense.record(point, found[point])
    return dense


def bracket(t) -> str:
    if t.eps is None:
        return f"none up to {t.below:g}"
    return f"{t.eps:g}" + (f" ({t.below:g}, {t.eps:g}]" if t.below is not None else " (at the lowest eps)")


if __name__ == "__main__":
    main()
