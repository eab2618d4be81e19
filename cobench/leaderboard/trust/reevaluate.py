"""``cobench leaderboard verify``: re-evaluate a result's saved weights under the leaderboard's
evaluators and compare with the numbers it reports, as RobustBench re-evaluates released
models rather than trusting reported accuracies.

Every accuracy the result reports (a metric ending in ``_acc``) must be reproduced within
the leaderboard's ``verify_tolerance`` (absolute, as a fraction: 0.01 = 1 point). The
evaluators are seeded by the cell's seed, so on the same kind of device the figures match
exactly; the tolerance absorbs the arithmetic differences between devices. Metrics computed
from the training curves (``co``, ``co_epoch``) are recomputed from the stored curves, which
re-evaluation cannot check: that is what the consistency checks do.

The weights are fetched by their SHA-256 from a weights store (:mod:`cobench.store.weights`);
a file whose bytes hash to anything else is refused. With ``training.val_size`` a result also
holds the best epoch's weights: they are re-evaluated against its ``best_*`` accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cobench.errors import CobenchError
from cobench.grid.cell import Cell
from cobench.leaderboard.collect import StoredResult
from cobench.leaderboard.spec import Leaderboard
from cobench.leaderboard.trust.records import VerificationRecord, record_path
from cobench.options import RunOptions
from cobench.plugins import get_plugin_manager
from cobench.run.cell_worker import build_parts
from cobench.run.device import resolve_device, seed_everything
from cobench.run.evaluation import run_evaluators
from cobench.store.provenance import machine_record
from cobench.store.weights import (
    BEST,
    FINAL,
    WeightsStore,
    fetch_weights,
    load_weights,
    result_weights,
)


@dataclass(frozen=True)
class Verdict:
    """A result's accuracies as it reports them and as its weights gave them again."""

    result: StoredResult
    #: accuracy -> fraction, for every accuracy compared
    reported: dict[str, float]
    reevaluated: dict[str, float]
    tolerance: float

    @property
    def path(self) -> Path:
        return self.result.path

    @property
    def differences(self) -> dict[str, float]:
        return {k: self.reevaluated[k] - self.reported[k] for k in self.reported}

    @property
    def passed(self) -> bool:
        return all(abs(d) <= self.tolerance for d in self.differences.values())

    def record(self, device: torch.device) -> VerificationRecord:
        from cobench import __version__

        data = self.result.data
        record = VerificationRecord(
            cell_id=self.result.cell_id,
            result_digest=data.get("digest"),
            weights_sha256=data[FINAL]["sha256"],
            passed=self.passed,
            tolerance=self.tolerance,
            reported=dict(self.reported),
            reevaluated=dict(self.reevaluated),
            cobench=__version__,
            machine=machine_record(device),
        )
        if data.get(BEST):
            record["best_weights_sha256"] = data[BEST]["sha256"]
        return record

    def summary(self) -> str:
        worst = max(self.differences.items(), key=lambda kv: abs(kv[1]), default=(None, 0.0))
        shown = ", ".join(f"{k} {self.reported[k]:.4f} -> {self.reevaluated[k]:.4f}" for k in sorted(self.reported))
        verdict = (
            "reproduced"
            if self.passed
            else f"NOT reproduced ({worst[0]} off by {abs(worst[1]):.4f} > {self.tolerance})"
        )
        return f"{self.path}: {verdict}: {shown}"


def reevaluate(
    lb: Leaderboard, stored: StoredResult, options: RunOptions, store: WeightsStore | None = None
) -> Verdict:
    """Fetch the result's weights (from ``store``, the default store when None), load them into
    its model and run the evaluators of its config; the best epoch's weights, where saved, too."""
    path, result = stored.path, stored.data
    final = result_weights(result, FINAL)
    if final is None:
        raise CobenchError(
            f"result file {str(path)!r} has no saved weights; re-run it with `cobench run --save-models`"
        )
    store = store or WeightsStore()
    best = result_weights(result, BEST)
    # fetched (and their hashes checked) before anything is built: a missing or tampered file fails fast
    fetched = {key: fetch_weights(record, path, store) for key, record in ((FINAL, final), (BEST, best)) if record}
    registry = get_plugin_manager().registry
    cell = Cell.from_config(result["config"])
    device = resolve_device(options.device)
    seed_everything(cell.seed)
    parts = build_parts(cell, options, device, registry, with_method=False)
    curves = result.get("curves") or {}
    epochs = len(next(iter(curves.values()), []))
    parts.eval_ctx.history = [{k: v[i] for k, v in curves.items()} for i in range(epochs)]

    def accuracies(key: str) -> dict[str, float]:
        data, where = fetched[key]
        load_weights(parts.model, data, where)  # strict: every parameter and buffer is replaced
        metrics = run_evaluators(parts.model, parts.evaluators, lambda ev: ev.evaluate(parts.model, parts.eval_ctx))
        return {k: v for k, v in metrics.items() if k.endswith("_acc") and isinstance(v, (int, float))}

    measured = accuracies(FINAL)
    reported = dict(result.get("metrics") or {})
    # best_*: the early-stopped model's accuracies (training.val_size), compared only where its weights were saved
    if best is not None:
        measured.update({f"best_{k}": v for k, v in accuracies(BEST).items()})
    else:
        reported = {k: v for k, v in reported.items() if not k.startswith("best_")}
    compared = sorted(
        k for k in reported if k.endswith("_acc") and isinstance(reported[k], (int, float)) and k in measured
    )
    missing = sorted(k for k in reported if k.endswith("_acc") and reported[k] is not None and k not in compared)
    if missing:
        raise CobenchError(
            f"result file {str(path)!r} reports {', '.join(missing)}, which its evaluators do not produce"
        )
    return Verdict(stored, {k: reported[k] for k in compared}, {k: measured[k] for k in compared}, lb.verify_tolerance)


def write_record(lb: Leaderboard, verdict: Verdict, device: torch.device) -> Path:
    from cobench.store.results import write_json

    path = record_path(lb, verdict.result.cell_id)
    write_json(path, dict(verdict.record(device)))
    return path
