"""Consistency checks of one result: does it contradict itself?

Run on every result a leaderboard reads (and by ``cobench results``). Each check returns a
sentence naming what is wrong; a leaderboard marks such rows and does not rank them. The
checks catch hand edits and hand-forged files that forgot something, not a careful forger:
that needs re-evaluation of the weights (``cobench leaderboard verify``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cobench.errors import CobenchError
from cobench.store.digest import digest_matches

#: accuracies may differ by this much in the "wrong" direction (1 point) before a check fires
ACCURACY_SLACK = 0.01
#: a collapsed model's PGD accuracy is far below its clean accuracy; closer than this contradicts ``co``
CO_MIN_CLEAN_PGD_GAP = 0.05
#: ``time_per_step_s x steps`` (median epoch) and ``train_time_s`` (all epochs) agree within this factor
#: (3.3 was seen on a genuine run of a machine shared by several jobs)
TIME_FACTOR = 10.0


def check_digest(result: dict[str, Any]) -> list[str]:
    match = digest_matches(result)
    if match is None:
        return ["it has no digest (not written by this cobench's `run`, or written before results carried one)"]
    if not match:
        return ["its digest does not match its content: it was edited after the run"]
    return []


def check_cell_id(result: dict[str, Any]) -> list[str]:
    from cobench.grid.cell import Cell

    try:
        expected = Cell.from_config(result["config"]).cell_id
    except Exception as exc:  # a config cobench cannot even read
        return [f"its config cannot be read ({type(exc).__name__}: {exc})"]
    if result.get("cell_id") != expected:
        return [f"cell_id {result.get('cell_id')!r} is not the hash of its config ({expected!r})"]
    return []


def evaluator_params(result: dict[str, Any], name: str) -> dict[str, Any]:
    spec = next((e for e in result["config"].get("evaluators", []) if e.get("name") == name), None)
    return (spec or {}).get("params") or {}


def check_accuracies(result: dict[str, Any]) -> list[str]:
    m = result.get("metrics") or {}
    clean = m.get("clean_acc")
    out = []
    # multi-step attacks only (FGSM accuracy above clean accuracy is a known symptom of CO itself),
    # each against the clean accuracy of the same images: PGD only where it ran on the whole test set
    pairs = [("autoattack_acc", "autoattack_clean_acc")]
    if evaluator_params(result, "pgd").get("max_samples", 0) == 0:
        pairs.append(("pgd_acc", "clean_acc"))
    for key, ref in pairs:
        if m.get(ref) is not None and m.get(key) is not None and m[key] > m[ref] + ACCURACY_SLACK:
            out.append(
                f"{key} {m[key]:.3f} is above {ref} {m[ref]:.3f} on the same images: "
                "a multi-step attack does not raise accuracy"
            )
    if (
        m.get("co") == 1
        and clean is not None
        and m.get("pgd_acc") is not None
        and len(pairs) == 2
        and clean - m["pgd_acc"] < CO_MIN_CLEAN_PGD_GAP
    ):
        out.append(
            f"co=1 (catastrophic overfitting) but pgd_acc {m['pgd_acc']:.3f} is within "
            f"{CO_MIN_CLEAN_PGD_GAP} of clean_acc {clean:.3f}"
        )
    if (m.get("co") == 1) != (m.get("co_epoch") is not None) and "co" in m:
        out.append(f"co={m.get('co')} but co_epoch={m.get('co_epoch')}")
    return out


def check_co_against_curves(result: dict[str, Any]) -> list[str]:
    """The ``co`` flag must be what the CO detector's rule gives on the stored probe curves."""
    from cobench.evaluators.co_detection import CODetector

    m, curves = result.get("metrics") or {}, result.get("curves") or {}
    spec = next((e for e in result["config"].get("evaluators", []) if e.get("name") == CODetector.name), None)
    if spec is None or "co" not in m or "probe_pgd_acc" not in curves or "probe_fgsm_acc" not in curves:
        return []
    try:
        detector = CODetector(**{**CODetector.parameters(), **spec.get("params", {})})
        history = CODetector.history_of(curves)
        first = detector.first_collapse(history)
    except (TypeError, ValueError, KeyError, CobenchError):
        return ["its co detector parameters or probe curves cannot be read"]
    if (first is not None) != bool(m["co"]) or (first is not None and m.get("co_epoch") != first + 1):
        return [
            f"co={m['co']} (epoch {m.get('co_epoch')}) but its own probe curves give "
            + ("no collapse" if first is None else f"a collapse at epoch {first + 1}")
        ]
    return []


def check_cost(result: dict[str, Any]) -> list[str]:
    c = result.get("cost") or {}
    out = []
    for key in ("forward_passes_per_step", "backward_passes_per_step"):
        if c.get(key) is not None and c[key] < 1:
            out.append(f"{key} is {c[key]:g}: every training step runs at least one forward and backward pass")
    if c.get("optimizer_updates") is not None and c.get("steps") and c["optimizer_updates"] < c["steps"]:
        out.append(
            f"{c['optimizer_updates']} optimizer updates for {c['steps']} steps: each step updates at least once"
        )
    t, per, steps = c.get("train_time_s"), c.get("time_per_step_s"), c.get("steps")
    if t and per and steps and not (1 / TIME_FACTOR <= per * steps / t <= TIME_FACTOR):
        out.append(
            f"time_per_step_s {per:.4g} x {steps} steps = {per * steps:.4g} s is implausible for train_time_s {t:.4g} s"
        )
    return out


CHECKS: tuple[Callable[[dict[str, Any]], list[str]], ...] = (
    check_digest,
    check_cell_id,
    check_accuracies,
    check_co_against_curves,
    check_cost,
)


def problems(result: dict[str, Any]) -> list[str]:
    """Every contradiction found in ``result`` (a finished one), as sentences; empty when consistent."""
    if result.get("status") != "ok":
        return []
    return [p for check in CHECKS for p in check(result)]
