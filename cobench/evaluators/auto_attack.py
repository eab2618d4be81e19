"""AutoAttack (Croce & Hein, ICML 2020) through the ``pyautoattack`` package.

``version="standard"``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000
queries), as in the RobustBench protocol. ``version="fast"``: the APGD-CE + APGD-T subset
(``version="custom"`` in pyautoattack), which almost always matches the standard result on
non-obfuscated models at a fraction of the cost. Targeted attacks use min(9, K-1) targets;
APGD-T needs K >= 4 classes and is dropped (and recorded as dropped) below that.
Backend, package version, attacks, seed and sample count are recorded under ``autoattack_info``.
"""

from __future__ import annotations

from typing import TypedDict

from torch import nn

from cobench import hookimpl
from cobench.api import EvalContext, Evaluator
from cobench.attacks import accuracy
from cobench.errors import ConfigError

VERSIONS = {"standard": ["apgd-ce", "apgd-t", "fab-t", "square"], "fast": ["apgd-ce", "apgd-t"]}


class AutoAttackInfo(TypedDict):
    """How the AutoAttack accuracy was measured (reported beside it as ``autoattack_info``)."""

    backend: str
    backend_version: str
    version: str
    attacks: list[str]
    dropped_attacks: list[str]
    seed: int
    n_samples: int
    n_iter: int
    max_linf: float


class AutoAttackAccuracy(Evaluator):
    """Robust accuracy under L-inf AutoAttack (pyautoattack): standard, or fast = APGD-CE + APGD-T."""

    name = "autoattack"
    ranges = {"n_samples": ">= 0", "batch_size": ">= 1", "n_iter": ">= 1"}
    paper = "Croce & Hein, 'Reliable evaluation of adversarial robustness...', ICML 2020"

    def __init__(
        self,
        version: str = "standard",
        n_samples: int = 1000,
        seed: int | None = None,
        batch_size: int = 500,
        n_iter: int = 100,
    ):
        if version not in VERSIONS:
            raise ConfigError(f"autoattack version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if n_iter < 1 or batch_size < 1 or n_samples < 0:
            raise ConfigError("autoattack: n_iter and batch_size must be >= 1 and n_samples >= 0 (0 = whole test set)")
        self.version, self.n_samples, self.seed = version, n_samples, seed
        self.batch_size, self.n_iter = batch_size, n_iter

    def attacks(self, num_classes: int) -> tuple[list[str], list[str]]:
        wanted = list(VERSIONS[self.version])
        dropped = [a for a in wanted if a == "apgd-t" and num_classes < 4]
        return [a for a in wanted if a not in dropped], dropped

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, float | AutoAttackInfo]:
        import pyautoattack
        from pyautoattack import AutoAttack

        n = len(ctx.test_x) if not self.n_samples else min(self.n_samples, len(ctx.test_x))
        x, y = ctx.test_x[:n].contiguous(), ctx.test_y[:n].contiguous()
        seed = ctx.seed if self.seed is None else self.seed
        attacks, dropped = self.attacks(ctx.num_classes)
        aa = AutoAttack(
            model, attacks=attacks, device=ctx.device, eps=ctx.eps, norm="Linf", seed=seed, version="custom"
        )
        aa.verbose = False
        targets = min(9, ctx.num_classes - 1)
        aa.apgd.n_restarts = 1  # the standard version's setting for Linf
        aa.apgd_targeted.n_target_classes = targets
        aa.fab.n_target_classes = targets
        aa.fab.n_restarts = 1
        aa.square.n_queries = 5000
        for attack in (aa.apgd, aa.apgd_targeted):
            attack.n_iter = attack.n_iter_orig = self.n_iter
            attack.n_iter_2 = max(int(0.22 * self.n_iter), 1)
            attack.n_iter_min = max(int(0.06 * self.n_iter), 1)
            attack.size_decr = max(int(0.03 * self.n_iter), 1)
        aa.fab.n_iter = self.n_iter
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=self.batch_size)
        clean = accuracy(model, x, y, ctx.batch_size)
        robust = (y_adv.to(y.device) == y).float().mean().item()
        return {
            "autoattack_acc": robust,
            "autoattack_clean_acc": clean,
            "autoattack_info": {
                "backend": "pyautoattack",
                "backend_version": getattr(pyautoattack, "__version__", "unknown"),
                "version": self.version,
                "attacks": attacks,
                "dropped_attacks": dropped,
                "seed": seed,
                "n_samples": n,
                "n_iter": self.n_iter,
                "max_linf": (x_adv.to(x.device) - x).abs().amax().item() if n else 0.0,
            },
        }


@hookimpl
def register_evaluators(register):
    register(AutoAttackAccuracy)
