"""One scale axis of the induced-CO study (issue 28), run as the design fixes it before any outcome.

For the axis' setting (more updates, a wider model, or fewer images; everything else as
``leaderboards/cifar10-prefix-injected.toml``), it

1. finds plain FGSM-AT's threshold with ``cobench boundary`` (low-freq-pm at beta 0, i.e. no
   feature, so the cells sit in the same eps x beta plane as the injected ones; coarse eps
   6, 10, 14, refined to steps of 2/255; seed 0);
2. trains the pair at ``a``, the largest eps below that threshold where plain FGSM-AT held: the
   feature at beta = a (co_features' configs pair eps 8 with beta 8) and at beta = round(2a/3)
   (its README example: eps 6, beta 4). The plain member of the pair is the search's own cell at a.

Every cell records the CO probe, the carrier accuracy and the no-injection accuracy per epoch.
Run from the repository root::

    python studies/induced_co/axis.py updates --data-dir ../shared/data/cifar10-prefix

``--threshold-only`` stops after step 1 (which still trains the search's missing cells) and names
the pair it would train. The cells of a search can also be run one per core beforehand: the
boundary search reuses every finished cell.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BOARD = "leaderboards/cifar10-prefix-injected.toml"
COARSE_EPS = "6,10,14"
EPS_STEP = "2"

#: axis -> (results folder under leaderboards/results, the flags that move the setting)
AXES: dict[str, tuple[str, list[str]]] = {
    "updates": ("cifar10-prefix-study-updates", ["--epochs", "100"]),
    "updates-300": ("cifar10-prefix-study-updates-300", ["--epochs", "300"]),
    "width": ("cifar10-prefix-study-width", ["--param", "models.preact-resnet18.width=32"]),
    "data": ("cifar10-prefix-study-data", ["--param", "datasets.cifar10.train_first_per_file=500"]),
}

STUDY_FLAGS = [
    "--methods", "fgsm", "--injections", "low-freq-pm", "--seeds", "0",
    "--evaluators", "clean,co,carrier-acc,no-injection-acc",
    "--param", "evaluators.no-injection-acc.per_epoch=true",
    "--stop-after-collapse", "3",
]  # fmt: skip


def pair_eps(thresholds: dict) -> float:
    """The largest eps below plain FGSM-AT's threshold (the largest evaluated eps if none collapsed)."""
    (plain,) = [t for t in thresholds["thresholds"] if t["beta"] == 0.0]
    if plain["below_eps"] is None:
        raise SystemExit(f"plain FGSM-AT collapses at every eps searched ({COARSE_EPS}): no eps below its threshold")
    return float(plain["below_eps"])


def pair_betas(a: float) -> list[float]:
    """The injected members of the pair at eps ``a``: beta = a and beta = round(2a/3)."""
    return sorted({a, float(round(2 * a / 3))})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("axis", choices=sorted(AXES))
    parser.add_argument("--data-dir", default="../shared/data/cifar10-prefix")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threshold-only",
        action="store_true",
        help="search the plain threshold (training its missing cells) and write its json; train no pair",
    )
    args = parser.parse_args()
    folder, setting = AXES[args.axis]
    results = f"leaderboards/results/{folder}"
    common = [
        BOARD,
        *STUDY_FLAGS,
        *setting,
        "--data-dir",
        args.data_dir,
        "--results-dir",
        results,
        "--device",
        args.device,
    ]
    out = Path("leaderboards/figures") / f"{folder}-threshold.json"
    cobench = [sys.executable, "-m", "cobench"]
    subprocess.run(
        [*cobench, "boundary", *common, "--beta", "0", "--eps", COARSE_EPS, "--eps-step", EPS_STEP, "-o", str(out)],
        check=True,
    )
    a = pair_eps(json.loads(out.read_text()))
    betas = pair_betas(a)
    print(f"{args.axis}: the pair at eps {a:g}/255, beta {', '.join(f'{b:g}' for b in betas)}/255", flush=True)
    if args.threshold_only:
        return
    subprocess.run(
        [*cobench, "run", *common, "--eps", f"{a:g}", "--beta", ",".join(f"{b:g}" for b in betas)], check=True
    )


if __name__ == "__main__":
    main()
