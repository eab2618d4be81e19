"""Base classes for everything a plugin can contribute.

A component is a class with a unique ``name``; its hyperparameters are the keyword
arguments of ``__init__`` (with defaults), so ``cobench list`` can show them and a grid
can override them. Runtime facts (eps, beta, data shapes, device) arrive through the
context objects below, never through the constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from cobench.options import Progress, RunOptions


class Component:
    """Common behaviour of registered components."""

    #: unique name within its kind, as typed on the command line (``fgsm``, ``low-freq``)
    name: ClassVar[str] = ""
    #: the kind of component, set by each base class
    kind: ClassVar[str] = ""
    #: the parameter filled by ``name:ARG`` spec strings (``imagefolder:PATH``, ``timm:resnet18``)
    spec_arg: ClassVar[str | None] = None
    #: a citation for the algorithm, shown by ``cobench list``
    paper: ClassVar[str] = ""
    #: conditions on numeric parameters, checked before any cell runs (:mod:`cobench.params`):
    #: ``{"steps": ">= 1", "q": ("> 0", "< 1")}``
    ranges: ClassVar[dict[str, str | tuple[str, ...]]] = {}
    #: parameters a cell records only when they differ from their default, so that a parameter
    #: added to an existing component keeps the identity (``cell_id``) of the cells stored before it
    recorded_when_set: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Hyperparameters and their defaults, read from ``__init__``'s keyword arguments."""
        params: dict[str, Any] = {}
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            params[p.name] = None if p.default is inspect.Parameter.empty else p.default
        return params

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


# --------------------------------------------------------------------------- data
@dataclass
class DataSplits:
    """A dataset held as tensors: images in [0, 1], shape (N, C, H, W), float32."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: random-crop padding and horizontal flip for training batches (0 / False disables)
    crop_padding: int = 0
    flip: bool = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> DataSplits:
        return DataSplits(
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.num_classes,
            self.mean,
            self.std,
            self.crop_padding,
            self.flip,
        )


@dataclass(frozen=True)
class DataContext:
    data_dir: str
    download: bool
    seed: int


class Dataset(Component):
    """A source of train/test images. ``load`` returns CPU tensors; the runner moves them."""

    kind = "dataset"

    def load(self, ctx: DataContext) -> DataSplits:
        raise NotImplementedError


# --------------------------------------------------------------------------- injections
@dataclass(frozen=True)
class InjectionContext:
    beta: float  # injection strength in pixel units (already divided by 255)
    num_classes: int
    image_shape: tuple[int, int, int]
    seed: int
    #: the device ``apply`` will see training batches on: put carriers there (None: ``train_x``'s device;
    #: the training set may stay on the host when it is too large for the device, see cobench.run.placement)
    device: torch.device | None = None


#: the name of the identity injection (no injected feature, so its cells have no beta axis)
NO_INJECTION = "none"


class Injection(Component):
    """A class-wise feature injection ``x -> x + beta * V[y]`` (or a data transform).

    ``prepare`` is called once per cell; ``apply`` is then used on train and test sets.
    Implementations expose the carriers as ``self.carriers`` (shape (K, C, H, W)) where
    the notion applies, so evaluators can build carrier-only images.
    """

    kind = "injection"
    carriers: Tensor | None = None
    #: ``False`` for injections that ignore ``ctx.beta`` (data transforms such as ``low-pass``):
    #: their cells get no beta axis, like ``none``'s, so ``--beta 4,8,16`` makes one cell, not three
    uses_beta: ClassVar[bool] = True
    #: the beta (/255) a grid that names this injection but gives no beta runs at, where the
    #: injection's reference has a default (``None``: no reference default, such a grid is refused)
    default_beta: ClassVar[float | None] = None
    #: where ``default_beta`` comes from, for the line that tells the user it was taken
    default_beta_source: ClassVar[str] = ""

    def prepare(self, ctx: InjectionContext, train_x: Tensor, train_y: Tensor) -> None:
        self.ctx = ctx

    def apply(self, x: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """The network the cell trains and evaluates, given the normalised model.

        An injection that transforms what the network *sees* (the paper's low-pass filter)
        returns the model behind that transform, so attacks pass through it too. Default:
        the model unchanged.
        """
        return model

    def train_bounds(self) -> tuple[float, float]:
        """Bounds on ``x + delta`` while training methods craft perturbations (``ctx.lower``,
        ``ctx.upper``); ``(-inf, inf)`` means no clamp. Evaluators always clamp to [0, 1]."""
        return (0.0, 1.0)


# --------------------------------------------------------------------------- models
class Model(Component):
    """An architecture. ``build`` returns an un-normalised network on [0,1]-range inputs;
    the runner prepends the dataset's normalisation, so attacks work in pixel space."""

    kind = "model"

    def build(self, *, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        raise NotImplementedError


# --------------------------------------------------------------------------- methods
@dataclass
class Batch:
    x: Tensor  # inputs in [0,1] (after augmentation and injection)
    y: Tensor
    index: Tensor  # positions of the samples in the training set (for per-sample state)


@dataclass
class TrainSetup:
    """What a method may need to know before training starts."""

    eps: float  # L-inf radius in pixel units
    n_train: int
    num_classes: int
    image_shape: tuple[int, int, int]
    device: torch.device
    generator: torch.Generator  # seeded, on ``device``; use it for every random draw
    epochs: int
    steps_per_epoch: int


class StepContext:
    """Handed to :meth:`Method.train_step`; owns the optimiser so methods stay pure algorithms.

    ``update(loss, logits, y)`` does zero_grad, backward, optimiser and LR-schedule step,
    checks the loss is finite and records training statistics. Methods that replay a
    minibatch (Free-AT) call it several times per batch.
    """

    def __init__(
        self,
        model: nn.Module,
        setup: TrainSetup,
        update: Callable[[Tensor, Tensor, Tensor], None],
        lower: float = 0.0,
        upper: float = 1.0,
    ):
        self.model = model
        self.setup = setup
        self._update = update
        self.lower, self.upper = lower, upper
        #: the protocol's eps warm-up factor for this step (1 = full eps; cobench.run.training.eps_warmup_scale)
        self.eps_scale = 1.0
        self.epoch = 0
        self.step = 0
        self.updates_this_step = 0

    @property
    def eps(self) -> float:
        """The attack radius of this step: the cell's eps (pixel units) times the warm-up factor."""
        return self.setup.eps * self.eps_scale

    @property
    def generator(self) -> torch.Generator:
        return self.setup.generator

    def update(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        self.updates_this_step += 1
        self._update(loss, logits, y)

    def clamp_delta(self, x: Tensor, delta: Tensor) -> Tensor:
        """Clamp ``delta`` so that ``x + delta`` stays in the valid image range."""
        from cobench.attacks import clamp_delta

        return clamp_delta(x, delta, self.lower, self.upper)

    def uniform(self, like: Tensor, low: float, high: float) -> Tensor:
        """Uniform noise drawn from the cell's seeded generator."""
        from cobench.attacks import uniform_like

        return uniform_like(like, low, high, self.generator)


class Method(Component):
    """An adversarial-training method: one ``train_step`` per minibatch.

    Subclasses set ``name`` and ``paper``, take hyperparameters as keyword arguments of
    ``__init__``, and may override :meth:`defaults_for_eps` with the paper's rule for
    scaling them with eps (expressed in /255 units, as papers state them).
    """

    kind = "method"
    #: optimiser updates per minibatch; the runner divides epochs by it (Free-AT's replays)
    replays: int = 1
    #: differentiates through an input gradient (double backward): ``--compile`` refuses it
    double_backward: bool = False

    @classmethod
    def defaults_for_eps(cls, eps255: float) -> dict[str, Any]:
        """Hyperparameter defaults at this eps (in /255 units); overrides ``__init__`` defaults."""
        return {}

    @classmethod
    def defaults_for_protocol(cls, protocol: str, eps255: float) -> dict[str, Any]:
        """A reference's per-setting exception under a training protocol (``cobench list protocols``)
        at this eps, e.g. N-FGSM's k = 3 on SVHN at 12/255; overrides :meth:`defaults_for_eps`."""
        return {}

    def setup(self, setup: TrainSetup) -> None:
        """Allocate per-run state (e.g. per-sample perturbations)."""

    def train_step(self, batch: Batch, ctx: StepContext) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State carried across steps, for mid-cell checkpoints (after ``setup``).

        The default takes every attribute that is a tensor, number, string or None (or a
        container of them, or a plain object whose attributes all are); override it when
        the method keeps state in another form.
        """
        return plain_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` on a method that ran ``setup`` (a resumed cell)."""
        load_plain_state(self, state)


# --------------------------------------------------------------------------- evaluators
@dataclass
class EvalContext:
    """What an evaluator sees: the (injected) test set and everything needed for analyses."""

    eps: float  # pixel units
    test_x: Tensor  # injected test images, on device
    test_y: Tensor
    clean_test_x: Tensor  # test images before injection
    injection: Injection
    num_classes: int
    device: torch.device
    batch_size: int
    seed: int
    #: a fixed held-out batch for per-epoch probes (a slice of the test set)
    probe_x: Tensor
    probe_y: Tensor
    #: per-epoch records so far (dicts of numbers); evaluators may read earlier epochs
    history: list[dict[str, Any]] = field(default_factory=list)

    def batches(self, x: Tensor | None = None, y: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        x = self.test_x if x is None else x
        y = self.test_y if y is None else y
        for i in range(0, len(x), self.batch_size):
            yield x[i : i + self.batch_size], y[i : i + self.batch_size]


class Evaluator(Component):
    """Measures a trained model. Metric names returned must be unique across evaluators.

    ``on_epoch_end`` (optional) is called after every epoch with the model in eval mode;
    its numbers become per-epoch curves. ``evaluate`` runs once after training.
    Evaluation is in fp32 with the model in eval mode.
    """

    kind = "evaluator"

    def on_epoch_end(self, model: nn.Module, ctx: EvalContext, epoch: int) -> dict[str, float] | None:
        return None

    def evaluate(self, model: nn.Module, ctx: EvalContext) -> dict[str, Any]:
        return {}


# --------------------------------------------------------------------------- executors
class CellsToRun(Protocol):
    """The cells an executor is handed: ``len()`` (an upper bound) and one pass of iteration."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...


class Executor(Component):
    """Schedules grid cells; this docstring is the executor contract (CONTRIBUTING.md points here).

    ``cells`` is an iterable with ``len()`` (an upper bound): iterate it only when about to
    start a cell, because the runner claims each cell as it is handed out and leaves out
    cells another run is training (:mod:`cobench.run.claims`); an executor that submits
    everything at once may take ``list(cells)``.
    ``run`` calls ``work(cell.config(), options[, on_epoch])`` for each cell, wherever it
    likes (in-process, a process pool, a cluster): ``work`` is a picklable module-level
    function (:func:`cobench.run.cell_worker.execute_cell`) that never raises for a failing cell but
    returns a ``failed`` result. ``options`` is the run's frozen
    :class:`~cobench.options.RunOptions` (an executor may hand a worker a copy with another
    ``device``); ``progress`` is the driver's :class:`~cobench.options.Progress`, whose
    ``on_cell_start`` and ``on_epoch`` only in-process executors can pass on. ``run`` yields
    ``(cell, result)`` as soon as each cell finishes: the driver writes the result and reports
    the cell, which is what lets an interrupted grid resume without losing finished cells.
    An executor that shares a device between cells hands workers ``options`` with
    ``cells_per_device`` set (results record it, and times under different sharing are not
    compared). :meth:`remote` says the cells run on other machines (a cluster): the driver then
    leaves checking ``--device`` to each cell, where it runs."""

    kind = "executor"
    #: cells run in the driver's own process (the driver's loaded datasets are then reused by them)
    in_process: bool = False

    def remote(self) -> bool:
        """Whether cells run on other machines than the driver (then ``--device`` is checked there)."""
        return False

    def run(
        self, cells: CellsToRun, work: Callable[..., dict], options: RunOptions, progress: Progress
    ) -> Iterable[tuple[Any, dict]]:
        raise NotImplementedError


# --------------------------------------------------------------------------- run loggers
class RunLogger(Component):
    """Streams one cell's per-epoch metrics and final result to an experiment tracker.

    One instance per cell, in the process that trains it: ``start`` before training (with the
    cell's id, label and config flattened into string tags), ``log_epoch`` after every epoch,
    ``finish`` with the result dict (``status`` ok or failed). ``check`` runs before any
    training and raises a clear error when the tracker's library is missing.
    """

    kind = "logger"

    def check(self) -> None:
        """Raise :class:`cobench.errors.ConfigError` when this logger cannot work here."""

    def start(self, cell_id: str, label: str, tags: dict[str, str], config: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self, result: dict[str, Any]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- component state
#: the values a checkpoint holds as they are (see :meth:`Method.state_dict`)
PLAIN = (Tensor, int, float, bool, str, type(None))


def is_plain(value: Any) -> bool:
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def plain_state(obj: Any) -> dict[str, Any]:
    """The attributes of ``obj`` a checkpoint can hold: tensors, numbers, strings, None and
    containers of them, and (nested) plain objects whose attributes are all such values.
    Anything else (modules, generators, the run's setup) is rebuilt by ``setup`` instead."""
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if is_plain(value):
            out[name] = value
        elif (
            hasattr(value, "__dict__")
            and not callable(value)
            and vars(value)
            and all(is_plain(v) for v in vars(value).values())
        ):
            out[name] = {"__object__": dict(vars(value))}
    return out


def load_plain_state(obj: Any, state: dict[str, Any]) -> None:
    """Inverse of :func:`plain_state`: sets the attributes back (nested objects in place)."""
    for name, value in state.items():
        if isinstance(value, dict) and "__object__" in value:
            vars(getattr(obj, name)).update(value["__object__"])
        else:
            setattr(obj, name, value)
