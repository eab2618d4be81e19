"""Catastrophic-overfitting detection from a per-epoch PGD/FGSM probe."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cobench import hookimpl
from cobench.api import EvalContext, Evaluator
from cobench.attacks import accuracy, fgsm, pgd
from cobench.errors import ConfigError


def detect_collapse(pgd_acc: list[float], fgsm_acc: list[float], *, gap: float, drop: float, floor: float,
                    persist: int = 1) -> int | None:
    """Index of the first epoch at which robust accuracy collapsed, else None.

    An epoch has collapsed when FGSM accuracy exceeds PGD accuracy by at least ``gap``
    (the single-step attack no longer finds the adversarial examples PGD finds) and PGD
    accuracy fell to at most ``max(floor, (1 - drop) * best earlier PGD accuracy)``.
    The collapse counts only if the FGSM-PGD gap of at least ``gap`` persists over that epoch
    and the ``persist - 1`` epochs after it (or every epoch left, when training ends sooner):
    catastrophic overfitting is the single-step attack *staying* blind, and a probe that shows
    the gap for one epoch early in training and then closes it again is a blip, not CO.
    """
    if persist < 1:
        raise ValueError(f"persist must be >= 1 epochs, got {persist}")
    peak = 0.0
    for e, (p, f) in enumerate(zip(pgd_acc, fgsm_acc)):
        if f - p >= gap and p <= max(floor, (1 - drop) * peak):
            window = zip(pgd_acc[e:e + persist], fgsm_acc[e:e + persist])
            if all(fw - pw >= gap for pw, fw in window):
                return e
        peak = max(peak, p)
    return None


class CODetector(Evaluator):
    """Per-epoch PGD and FGSM probe on a fixed held-out batch; reports whether and when CO happened."""

    name = "co"
    ranges = {"steps": ">= 1", "alpha": "> 0", "gap": (">= 0", "<= 1"), "drop": (">= 0", "<= 1"), "floor": (">= 0", "<= 1")}
    paper = "Wong, Rice & Kolter, ICLR 2020 (CO); Ortiz-Jimenez, de Jorge et al., TMLR 2023"

    def __init__(self, steps: int = 10, alpha: float = 0.25, gap: float = 0.3, drop: float = 0.5, floor: float = 0.1,
                 persist: int = 3):
        if not isinstance(persist, int) or persist < 1:
            raise ConfigError(f"co: persist must be an integer >= 1 (epochs the FGSM-PGD gap must last), got {persist!r}")
        self.steps, self.alpha = steps, alpha
        self.gap, self.drop, self.floor, self.persist = gap, drop, floor, persist

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

    def collapse_streak(self, history: list[dict[str, Any]]) -> int:
        """How many of the last epochs in ``history`` have collapsed in a row (the same test as
        :func:`detect_collapse`, against the best PGD accuracy before each epoch): what the
        training loop's opt-in early stop (``stop_after_collapse``) reads."""
        probes = [(h["probe_pgd_acc"], h["probe_fgsm_acc"]) for h in history if "probe_pgd_acc" in h]
        streak, peak = 0, 0.0
        for p, f in probes:
            collapsed = f - p >= self.gap and p <= max(self.floor, (1 - self.drop) * peak)
            streak = streak + 1 if collapsed else 0
            peak = max(peak, p)
        return streak

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, Any]:
        pgd_curve = [h["probe_pgd_acc"] for h in ctx.history if "probe_pgd_acc" in h]
        fgsm_curve = [h["probe_fgsm_acc"] for h in ctx.history if "probe_fgsm_acc" in h]
        first = detect_collapse(pgd_curve, fgsm_curve, gap=self.gap, drop=self.drop, floor=self.floor,
                                persist=self.persist)
        final = (
            detect_collapse(pgd_curve[-1:], fgsm_curve[-1:], gap=self.gap, drop=1.0, floor=self.floor) is not None
            or (first is not None and pgd_curve[-1] <= max(self.floor, (1 - self.drop) * max(pgd_curve)))
        ) if pgd_curve else False
        return {
            "co": 1 if first is not None else 0,
            "co_epoch": None if first is None else first + 1,  # 1-based, as papers count epochs
            "co_at_end": 1 if final else 0,
            "probe_pgd_peak": max(pgd_curve) if pgd_curve else None,
        }


@hookimpl
def register_evaluators(register):
    register(CODetector)
