"""Catastrophic-overfitting detection from a per-epoch PGD/FGSM probe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

import torch
from torch import nn

from cobench import hookimpl
from cobench.api import EvalContext, Evaluator
from cobench.attacks import accuracy, fgsm, pgd
from cobench.errors import ConfigError

#: FGSM-PGD probe gap, as a fraction of probe clean accuracy, that counts as the single-step attack
#: gone blind (:func:`relative_rule`)
RELATIVE_GAP = 0.25
#: the PGD probe accuracy a model must have reached before the relative rule sees it fall
MIN_PEAK = 0.05


def collapsed_epochs(
    pgd_acc: list[float],
    fgsm_acc: list[float],
    clean_acc: list[float] | None = None,
    *,
    gap: float,
    drop: float,
    floor: float,
    relative_gap: float | None = None,
    min_peak: float = 0.0,
) -> list[bool]:
    """Per epoch, whether the probe shows a collapse there by either rule (before persistence)."""
    absolute, _ = absolute_rule(pgd_acc, fgsm_acc, gap=gap, drop=drop, floor=floor)
    if clean_acc is None or relative_gap is None:
        return absolute
    relative, _ = relative_rule(pgd_acc, fgsm_acc, clean_acc, relative_gap=relative_gap, drop=drop, min_peak=min_peak)
    return [a or r for a, r in zip(absolute, relative)]


def absolute_rule(
    pgd_acc: list[float], fgsm_acc: list[float], *, gap: float, drop: float, floor: float
) -> tuple[list[bool], list[bool]]:
    """(collapsed, gap open) per epoch, by the rule of cobench's first boards: FGSM accuracy
    exceeds PGD accuracy by at least ``gap``, and PGD accuracy fell to at most
    ``max(floor, (1 - drop) * best earlier PGD accuracy)``; the gap stays open while it is ``gap``."""
    collapsed, peak = [], 0.0
    for p, f in zip(pgd_acc, fgsm_acc):
        collapsed.append(f - p >= gap and p <= max(floor, (1 - drop) * peak))
        peak = max(peak, p)
    return collapsed, [f - p >= gap for p, f in zip(pgd_acc, fgsm_acc)]


def relative_rule(
    pgd_acc: list[float],
    fgsm_acc: list[float],
    clean_acc: list[float],
    *,
    relative_gap: float,
    drop: float,
    min_peak: float,
) -> tuple[list[bool], list[bool]]:
    """(collapsed, gap open) per epoch, relative to the model's own accuracy: FGSM accuracy
    exceeds PGD accuracy by at least ``relative_gap`` times the probe's clean accuracy, and PGD
    accuracy fell to at most ``(1 - drop)`` times its own best earlier value, which must have
    reached ``min_peak`` (a peak of one or two probe images is noise, not robustness).

    A model with 30-50 % clean accuracy (real images, a small network) cannot show an absolute
    gap of 0.3, but its single-step attack goes just as blind. Having no absolute floor, the rule
    does not count a model that never had robustness (the first epochs at a large eps)."""
    still_open = [f - p >= relative_gap * c for p, f, c in zip(pgd_acc, fgsm_acc, clean_acc)]
    collapsed, peak = [], 0.0
    for p, is_open in zip(pgd_acc, still_open):
        collapsed.append(is_open and peak >= min_peak and p <= (1 - drop) * peak)
        peak = max(peak, p)
    return collapsed, still_open


def first_persistent(collapsed: list[bool], still_open: list[bool], persist: int) -> int | None:
    """The first collapsed epoch whose gap stays open ``persist`` epochs (or until training ends)."""
    if persist < 1:
        raise ValueError(f"persist must be >= 1 epochs, got {persist}")
    return next((e for e, hit in enumerate(collapsed) if hit and all(still_open[e : e + persist])), None)


def detect_collapse(
    pgd_acc: list[float],
    fgsm_acc: list[float],
    clean_acc: list[float] | None = None,
    *,
    gap: float,
    drop: float,
    floor: float,
    persist: int = 1,
    relative_gap: float | None = None,
    min_peak: float = 0.0,
) -> int | None:
    """Index of the first epoch at which robust accuracy collapsed, else None.

    An epoch has collapsed by :func:`absolute_rule` or, given ``clean_acc`` and ``relative_gap``,
    by :func:`relative_rule`. A collapse counts only if that rule's FGSM-PGD gap stays open over
    that epoch and the ``persist - 1`` epochs after it (or every epoch left, when training ends
    sooner): catastrophic overfitting is the single-step attack *staying* blind, and a probe that
    shows the gap for one epoch early in training and then closes it again is a blip, not CO.
    """
    onsets = [first_persistent(*absolute_rule(pgd_acc, fgsm_acc, gap=gap, drop=drop, floor=floor), persist)]
    if clean_acc is not None and relative_gap is not None:
        onsets.append(
            first_persistent(
                *relative_rule(pgd_acc, fgsm_acc, clean_acc, relative_gap=relative_gap, drop=drop, min_peak=min_peak),
                persist,
            )
        )
    found = [e for e in onsets if e is not None]
    return min(found) if found else None


class CollapseRule(TypedDict):
    """A detector's decision rule: the keyword arguments of :func:`detect_collapse` it sets."""

    gap: float
    drop: float
    floor: float
    relative_gap: float | None
    min_peak: float


class CODetector(Evaluator):
    """Per-epoch PGD and FGSM probe on a fixed held-out batch; reports whether and when CO happened
    (:func:`detect_collapse`: the absolute rule, or the FGSM-PGD gap relative to clean accuracy)."""

    name = "co"
    ranges = {
        "steps": ">= 1",
        "alpha": "> 0",
        "gap": (">= 0", "<= 1"),
        "drop": (">= 0", "<= 1"),
        "floor": (">= 0", "<= 1"),
        "relative_gap": (">= 0", "<= 1"),
        "min_peak": (">= 0", "<= 1"),
    }
    #: the relative rule came after the digits boards were built; the consistency check shows that
    #: their stored verdicts are what it gives on their curves, so those cells keep their identity
    recorded_when_set = ("relative_gap", "min_peak")
    paper = "Wong, Rice & Kolter, ICLR 2020 (CO); Ortiz-Jimenez, de Jorge et al., TMLR 2023"

    def __init__(
        self,
        steps: int = 10,
        alpha: float = 0.25,
        gap: float = 0.3,
        drop: float = 0.5,
        floor: float = 0.1,
        persist: int = 3,
        relative_gap: float | None = RELATIVE_GAP,
        min_peak: float = MIN_PEAK,
    ):
        if not isinstance(persist, int) or persist < 1:
            raise ConfigError(
                f"co: persist must be an integer >= 1 (epochs the FGSM-PGD gap must last), got {persist!r}"
            )
        self.steps, self.alpha = steps, alpha
        self.gap, self.drop, self.floor, self.persist = gap, drop, floor, persist
        self.relative_gap, self.min_peak = relative_gap, min_peak

    def on_epoch_end(self, model: nn.Module, ctx: EvalContext, epoch: int) -> dict[str, float]:
        x, y = ctx.probe_x, ctx.probe_y
        g = torch.Generator(device=ctx.device).manual_seed(ctx.seed + 2)
        d_pgd = pgd(model, x, y, ctx.eps, alpha=self.alpha * ctx.eps, steps=self.steps, generator=g)
        d_fgsm = fgsm(model, x, y, ctx.eps)
        return {
            "probe_clean_acc": accuracy(model, x, y, ctx.batch_size),
            "probe_fgsm_acc": accuracy(model, x + d_fgsm, y, ctx.batch_size),
            "probe_pgd_acc": accuracy(model, x + d_pgd, y, ctx.batch_size),
        }

    def rule(self) -> CollapseRule:
        return CollapseRule(
            gap=self.gap, drop=self.drop, floor=self.floor, relative_gap=self.relative_gap, min_peak=self.min_peak
        )

    @staticmethod
    def history_of(curves: Mapping[str, list[float | None]]) -> list[dict[str, float | None]]:
        """A stored result's ``curves`` (metric -> per-epoch values) as per-epoch records."""
        return [dict(zip(curves, values)) for values in zip(*curves.values())]

    @staticmethod
    def probe_curves(
        history: Sequence[Mapping[str, float | None]],
    ) -> tuple[list[float], list[float], list[float] | None]:
        """(PGD, FGSM, clean) probe accuracies per epoch; clean is None where a result predates it."""
        probes = [(h.get("probe_pgd_acc"), h.get("probe_fgsm_acc"), h.get("probe_clean_acc")) for h in history]
        rows = [(p, f, c) for p, f, c in probes if p is not None and f is not None]
        clean = [c for _, _, c in rows if c is not None]
        return [p for p, _, _ in rows], [f for _, f, _ in rows], clean if len(clean) == len(rows) else None

    def first_collapse(self, history: Sequence[Mapping[str, float | None]]) -> int | None:
        """0-based index of the first collapsed epoch of ``history`` (per-epoch probe records)."""
        pgd_curve, fgsm_curve, clean_curve = self.probe_curves(history)
        return detect_collapse(pgd_curve, fgsm_curve, clean_curve, **self.rule(), persist=self.persist)

    def collapse_streak(self, history: Sequence[Mapping[str, float | None]]) -> int:
        """How many of the last epochs in ``history`` have collapsed in a row (the test of
        :func:`collapsed_epochs`): what the training loop's opt-in early stop
        (``stop_after_collapse``) reads."""
        streak = 0
        for hit in collapsed_epochs(*self.probe_curves(history), **self.rule()):
            streak = streak + 1 if hit else 0
        return streak

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, int | float | None]:
        pgd_curve, fgsm_curve, _ = self.probe_curves(ctx.history)
        first = self.first_collapse(ctx.history)
        final = (
            (
                detect_collapse(pgd_curve[-1:], fgsm_curve[-1:], gap=self.gap, drop=1.0, floor=self.floor) is not None
                or (first is not None and pgd_curve[-1] <= max(self.floor, (1 - self.drop) * max(pgd_curve)))
            )
            if pgd_curve
            else False
        )
        return {
            "co": 1 if first is not None else 0,
            "co_epoch": None if first is None else first + 1,  # 1-based, as papers count epochs
            "co_at_end": 1 if final else 0,
            "probe_pgd_peak": max(pgd_curve) if pgd_curve else None,
        }


@hookimpl
def register_evaluators(register):
    register(CODetector)
