"""Training protocols of the reference papers, as named presets.

A protocol fixes everything about *how* a method is trained and evaluated that is not the
method itself: LR schedule (shape, peak, how it is evaluated per iteration), momentum and
whether it cycles, weight decay, epochs, batch size, augmentation, input normalisation,
clamping to the image range, the number of optimiser steps per batch, an eps warm-up of the
training attacks, and the final evaluation attack. Method rules (N-FGSM's k, GradAlign's lambda)
stay with the methods; a reference's exception under one protocol is the method's
``defaults_for_protocol``.

Every value below was read in the reference repository; ``sources`` names the file.
``docs/protocols.md`` holds the same table for readers.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

from cobench.errors import ConfigError

#: a value of a cell's training config (every setting is a number, a boolean or a name)
TrainingValue = bool | int | float | str

#: how the LR is evaluated per optimiser update (see cobench.run.training.make_scheduler)
LR_SCHEDULES = ("cyclic", "interp", "multistep", "constant")


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str
    #: "cyclic": torch's CyclicLR (base 0, peak at lr_peak of all updates), stepped after each
    #: update, so the first update uses lr 0; "interp": np.interp of the LR at (update + 1) /
    #: steps-per-epoch epochs between 0, lr_max at epoch floor(epochs * lr_peak) and 0 (GradAlign's
    #: utils.get_lr_schedule); "multistep": torch's MultiStepLR, x0.1 at 1/2 and 3/4 of all updates;
    #: "constant": lr_max throughout
    lr_schedule: str
    lr_peak: float
    lr_max: float
    #: momentum; with cycle_momentum it is CyclicLR's max_momentum (at lr 0) and base_momentum
    #: is reached at the LR peak, as torch's CyclicLR defaults do (0.8 / 0.9)
    momentum: float
    cycle_momentum: bool
    base_momentum: float
    weight_decay: float
    epochs: int
    batch_size: int
    augment: bool
    normalize: bool
    #: keep x + delta of the training attacks inside [0, 1]
    clamp: bool
    #: optimiser steps per minibatch with the same gradients (ELLE's reference loop: 2)
    optimizer_steps: int
    #: the final robust-accuracy attack (applied to the ``pgd-50-10`` evaluator)
    eval_steps: int
    eval_restarts: int
    #: the PGD step: a number in /255 units, or a rule relative to the cell's eps ("eps/4"); see eval_step_at
    eval_step_size: float | str
    eval_samples: int  # test samples attacked; 0 = all
    #: the training attacks' eps (and every size written relative to it) is ramped linearly from 0 at
    #: the first update to the full eps after this many epochs of updates, then held (0 = no warm-up);
    #: evaluation always uses the full eps (N-FGSM's SVHN runs: 5, see cobench.run.training.eps_warmup_scale)
    eps_warmup_epochs: int = 0
    #: training images held out as a validation split; > 0 also evaluates the epoch with the best validation
    #: PGD accuracy beside the last model (cobench.run.best_checkpoint; ELLE's val_best.pt on 1,024 images)
    val_size: int = 0
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def training_values(self) -> dict[str, TrainingValue]:
        """The fields that become a cell's ``training`` config."""
        return {k: getattr(self, k) for k in TRAINING_FIELDS}

    def eval_params(self, eps255: float) -> dict[str, int | float]:
        """Parameters of the ``pgd-50-10`` evaluator that this protocol fixes, for a cell at ``eps255``."""
        return {
            "steps": self.eval_steps,
            "restarts": self.eval_restarts,
            "step_size": eval_step_at(self.eval_step_size, eps255),
            "max_samples": self.eval_samples,
        }

    def describe(self) -> dict[str, Any]:
        return asdict(self)


TRAINING_FIELDS = (
    "lr_schedule",
    "lr_peak",
    "lr_max",
    "momentum",
    "cycle_momentum",
    "base_momentum",
    "weight_decay",
    "epochs",
    "batch_size",
    "augment",
    "normalize",
    "clamp",
    "optimizer_steps",
    "eps_warmup_epochs",
    "val_size",
)

#: a step written relative to eps: "eps", "eps/4", "eps*0.25"
_EPS_RULE = re.compile(r"^\s*eps\s*(?:([/*])\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))?\s*$")


def eval_step_at(step: float | str, eps255: float) -> float:
    """The evaluation step in /255 units for a cell at ``eps255``: ``step`` itself when it is a
    number, else its rule applied to eps (``"eps/4"`` at 8/255 is 2.0, at 16/255 4.0)."""
    if isinstance(step, (int, float)) and not isinstance(step, bool):
        return float(step)
    match = _EPS_RULE.match(step) if isinstance(step, str) else None
    if match is None or (match.group(1) == "/" and float(match.group(2)) == 0):
        raise ConfigError(
            f"eval_step_size {step!r} is not valid: write a number in /255 units (2) or a rule "
            "relative to eps: eps, eps/N or eps*F (e.g. 'eps/4')"
        )
    op, number = match.groups()
    if op is None:
        return float(eps255)
    return eps255 / float(number) if op == "/" else eps255 * float(number)


CO = "gortizji/co_features"
WONG = "locuslab/fast_adversarial"
NF = "pdejorge/N-FGSM"
GA = "tml-epfl/understanding-fast-adv-training"
EL = "LIONS-EPFL/ELLE"
TORCH_CYCLIC = "torch.optim.lr_scheduler.CyclicLR defaults (cycle_momentum=True, base 0.8, max 0.9)"


class EvalAttack(TypedDict):
    """A protocol's final robust-accuracy attack (:class:`Protocol`'s ``eval_*`` fields)."""

    eval_steps: int
    eval_restarts: int
    eval_step_size: float | str
    eval_samples: int


_PGD_50_10 = EvalAttack(eval_steps=50, eval_restarts=10, eval_step_size=2.0, eval_samples=0)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="co-features",
            summary="Ortiz-Jimenez, de Jorge et al., TMLR 2023: the injected-feature experiments",
            lr_schedule="cyclic",
            lr_peak=0.5,
            lr_max=0.2,
            momentum=0.9,
            cycle_momentum=True,
            base_momentum=0.8,
            weight_decay=5e-4,
            epochs=30,
            batch_size=128,
            augment=False,
            normalize=True,
            clamp=True,
            optimizer_steps=1,
            **_PGD_50_10,
            sources={
                "lr_schedule, lr_peak, cycle_momentum": f"{CO} injected_feature_cifar_fgsm_train.py (CyclicLR, "
                f"step_size_up = step_size_down = lr_steps / 2); {TORCH_CYCLIC}",
                "lr_max, momentum, weight_decay, epochs, batch_size, clamp (clip_box), eval": f"{CO} config/injected_feature_cifar_*_train/config.yaml",
                "augment": f"{CO} data/injection.py inject_feature (TensorDataset of the raw images, no transform)",
                "normalize": f"{CO} train/utils.py Normalizer around the model",
            },
        ),
        Protocol(
            name="fast-at",
            summary="Wong, Rice & Kolter, ICLR 2020 (FGSM/RS-FGSM and PGD-AT on CIFAR-10)",
            lr_schedule="cyclic",
            lr_peak=0.5,
            lr_max=0.2,
            momentum=0.9,
            cycle_momentum=True,
            base_momentum=0.8,
            weight_decay=5e-4,
            epochs=15,
            batch_size=128,
            augment=True,
            normalize=True,
            clamp=True,
            optimizer_steps=1,
            **_PGD_50_10,
            sources={
                "lr_schedule, lr_peak, lr_max, momentum, weight_decay, epochs, batch_size": f"{WONG} CIFAR10/train_fgsm.py "
                f"(train_pgd.py alike); {TORCH_CYCLIC}",
                "augment, normalize": f"{WONG} CIFAR10/utils.py get_loaders (RandomCrop 32 pad 4, flip, Normalize)",
                "clamp": f"{WONG} CIFAR10/train_fgsm.py clamp(delta, lower_limit - X, upper_limit - X)",
                "eval": f"{WONG} CIFAR10/train_fgsm.py evaluate_pgd(test_loader, model_test, 50, 10), alpha 2/255",
            },
        ),
        Protocol(
            name="n-fgsm",
            summary="de Jorge et al., NeurIPS 2022 (N-FGSM, CIFAR-10/100)",
            lr_schedule="cyclic",
            lr_peak=0.5,
            lr_max=0.2,
            momentum=0.9,
            cycle_momentum=True,
            base_momentum=0.8,
            weight_decay=5e-4,
            epochs=30,
            batch_size=128,
            augment=True,
            normalize=True,
            clamp=True,
            optimizer_steps=1,
            **_PGD_50_10,
            sources={
                "lr_schedule, lr_peak, lr_max, momentum, weight_decay, epochs, batch_size, clamp, eval": f"{NF} train.py; {TORCH_CYCLIC}",
                "augment, normalize": f"{NF} utils/data_utils.py IndexedCIFAR10Dataset (RandomCrop pad 4, flip, Normalize)",
            },
        ),
        Protocol(
            name="n-fgsm-svhn",
            summary="de Jorge et al., NeurIPS 2022 (N-FGSM on SVHN: lr 0.05, LR peak at 2/5, eps warm-up)",
            lr_schedule="cyclic",
            lr_peak=0.4,
            lr_max=0.05,
            momentum=0.9,
            cycle_momentum=True,
            base_momentum=0.8,
            weight_decay=5e-4,
            epochs=30,
            batch_size=128,
            augment=True,
            normalize=True,
            clamp=True,
            optimizer_steps=1,
            eps_warmup_epochs=5,
            **_PGD_50_10,
            sources={
                "lr_max": f"{NF} train.py:89-91 (SVHN: args.lr_max = 0.05)",
                "lr_schedule, lr_peak": f"{NF} train.py:178-181 (SVHN: CyclicLR step_size_up = lr_steps * 2 / 5, "
                f"step_size_down = lr_steps * 3 / 5); {TORCH_CYCLIC}",
                "eps_warmup_epochs": f"{NF} train.py:149-156 (n_warmup_iterations = 5 * len(train_loader)) and :206-211 "
                "(epsilon, alpha = their full values * min(iter_count / n_warmup_iterations, 1) "
                "before each update, iter_count from 0)",
                "momentum, weight_decay, epochs, batch_size, clamp, eval": f"{NF} train.py (argparse defaults; "
                "evaluate_pgd(..., 50, 10) at epsilon_test)",
                "augment, normalize": f"{NF} utils/data_utils.py IndexedSVHNDataset (RandomCrop pad 4, no flip, Normalize)",
            },
        ),
        Protocol(
            name="grad-align",
            summary="Andriushchenko & Flammarion, NeurIPS 2020 (GradAlign's CIFAR-10 eps sweep)",
            lr_schedule="interp",
            lr_peak=0.4,
            lr_max=0.3,
            momentum=0.9,
            cycle_momentum=False,
            base_momentum=0.9,
            weight_decay=5e-4,
            epochs=30,
            batch_size=128,
            augment=True,
            normalize=False,
            clamp=True,
            optimizer_steps=1,
            eval_steps=50,
            eval_restarts=10,
            eval_step_size="eps/4",
            eval_samples=1000,
            sources={
                "lr_schedule, lr_peak": f"{GA} utils.py get_lr_schedule: np.interp([t], [0, n_epochs * 2 // 5, n_epochs], "
                "[0, lr_max, 0]) at t = epoch - 1 + (i + 1) / len(train_batches), set on the optimiser",
                "lr_max, epochs": f"{GA} sh/exps_diff_eps_cifar10.sh (GradAlign runs: --lr_max=0.30 --epochs=30)",
                "momentum, cycle_momentum, weight_decay, batch_size": f"{GA} train.py (SGD momentum=0.9, no scheduler object)",
                "augment": f"{GA} data.py get_loaders (RandomCrop 32 pad 4, flip)",
                "normalize": f"{GA} models.py PreActResNet (mu = 0, std = 1)",
                "clamp": f"{GA} train.py clamp(X + delta, 0, 1) - X",
                "eval": f"{GA} train.py:80 (args.pgd_alpha = args.eps / 4) and :265-267 (attack_iters, n_restarts = "
                "50, 10); sh/exps_diff_eps_cifar10.sh (--n_final_eval=1000)",
            },
        ),
        Protocol(
            name="elle",
            summary="Abad Rocamora et al., ICLR 2024 (ELLE/ELLE-A on CIFAR-10; two optimiser steps per batch)",
            lr_schedule="cyclic",
            lr_peak=0.5,
            lr_max=0.2,
            momentum=0.9,
            cycle_momentum=True,
            base_momentum=0.8,
            weight_decay=5e-4,
            epochs=30,
            batch_size=128,
            augment=True,
            normalize=False,
            clamp=False,
            optimizer_steps=2,
            eval_steps=50,
            eval_restarts=10,
            eval_step_size="eps/4",
            eval_samples=0,
            val_size=1024,
            sources={
                "lr_schedule, lr_peak": f"{EL} core/utils/train.py init_scheduler 'GradAlign' (CyclicLR, lr_steps / 2 each "
                f"way on CIFAR-10); {TORCH_CYCLIC}",
                "lr_max, epochs, batch_size": f"{EL} scripts/run_elle_cifar10.sh (--lr 0.2 --scheduler 'GradAlign' --epochs 30)",
                "momentum, weight_decay": f"{EL} core/utils/train.py init_optimizer (momentum=0.9); parser.py (--weight-decay 5e-4)",
                "augment, normalize": f"{EL} parser.py (--augment True, --normalize False)",
                "clamp": f"{EL} core/utils/train.py loss: x_adv is projected to the eps-ball only when --clamp "
                "(default False), never to [0, 1]; the triplet points are not clamped either",
                "optimizer_steps": f"{EL} core/utils/train.py train: optimizer.step(); scheduler.step(); optimizer.step() "
                "with the same gradients",
                "eval": f"{EL} eval_pgd50-10.py (pgd_alpha = eps_eval / 4; attack_iters, n_restarts = (50, 10); the whole "
                "test loader)",
                "val_size": f"{EL} core/data/cifar10.py (split=1024: 1,024 training images held out for validation), "
                "train.py (val_best.pt: the epoch with the best validation robust accuracy), eval_pgd50-10.py "
                "and eval_aa.py (--early_stopping True: val_best.pt is evaluated by default); cobench evaluates "
                "it as best_* beside the last model",
            },
        ),
    )
}

DEFAULT_PROTOCOL = "co-features"


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; valid protocols: {', '.join(PROTOCOLS)}") from None
