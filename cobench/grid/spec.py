"""Grid specification: what the user asked for, parsed from a TOML file and/or CLI values
and checked for form. It knows nothing of the installed plugins: :func:`cobench.grid.resolve.resolve`
turns a spec into cells.

Eps and beta are written in /255 units, as papers state them (``8`` means 8/255);
``"8/255"`` is accepted too.
"""

from __future__ import annotations

import copy
import sys
import typing
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from cobench.api import NO_INJECTION
from cobench.errors import ConfigError
from cobench.grid.protocols import DEFAULT_PROTOCOL, LR_SCHEDULES, TrainingValue, get_protocol
from cobench.kinds import GRID_KINDS, singular
from cobench.params import value_problems

#: marks a CellTraining field added after 0.1.0: a config written before it lacks the key, and one at
#: its default leaves it out, so that every cell of those days keeps its id (see CellTraining.as_config)
LATE = {"late": True}


@dataclass(frozen=True, kw_only=True)
class CellTraining:
    """A cell's training settings, every value resolved: what the training loop and the cell worker
    read, as typed attributes. The dict form (:meth:`as_config`) is what a cell hashes and a result
    stores; :meth:`from_config` reads it back. The defaults here are the only ones: a field a stored
    config lacks takes its default."""

    epochs: int
    batch_size: int
    lr_max: float
    lr_schedule: str  # see cobench.grid.protocols.LR_SCHEDULES
    lr_peak: float
    momentum: float
    cycle_momentum: bool
    base_momentum: float
    weight_decay: float
    augment: bool
    normalize: bool
    clamp: bool
    optimizer_steps: int
    # every cell's config has these three; their defaults serve hand-made ones (a test's, a benchmark's)
    protocol: str = DEFAULT_PROTOCOL
    probe_size: int = 256
    eval_batch_size: int = 512
    amp: str = field(default="off", metadata=LATE)
    stop_after_collapse: int = field(default=0, metadata=LATE)
    eps_warmup_epochs: int = field(default=0, metadata=LATE)
    val_size: int = field(default=0, metadata=LATE)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CellTraining:
        """The settings of a training config dict (a cell's, a stored result's); a late field it
        lacks takes its default. A key that is no setting, or a required one missing, is an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in config if k not in known)
        missing = sorted(f.name for f in fields(cls) if f.name not in config and not has_default(f))
        if unknown or missing:
            raise ConfigError(
                "training config: "
                + "; ".join(
                    [f"unknown key(s) {', '.join(unknown)}"] * bool(unknown)
                    + [f"missing key(s) {', '.join(missing)}"] * bool(missing)
                )
            )
        return cls(**config)

    @classmethod
    def of(cls, training: CellTraining | Mapping[str, Any]) -> CellTraining:
        """``training`` itself, or the settings of a config dict (callers may pass either)."""
        return training if isinstance(training, CellTraining) else cls.from_config(training)

    def as_config(self) -> dict[str, TrainingValue]:
        """The dict a cell hashes and a result stores. Fields added after the first release are left
        out while at their default, so an unchanged config keeps its hash (and its cell its id)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not (f.metadata.get("late") and getattr(self, f.name) == f.default)
        }


def has_default(f: Any) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


#: CellTraining fields added after 0.1.0 and their defaults (see CellTraining.as_config)
LATE_DEFAULTS: dict[str, TrainingValue] = {
    f.name: f.default for f in fields(CellTraining) if f.metadata.get("late") and f.default is not MISSING
}


@dataclass
class TrainingConfig:
    """The training part of a grid. ``protocol`` names a preset (cobench/grid/protocols.py) that fills
    every field left at ``None``; a value set here overrides the preset's."""

    protocol: str = DEFAULT_PROTOCOL
    epochs: int | None = None
    batch_size: int | None = None
    lr_max: float | None = None
    lr_schedule: str | None = None  # see cobench.grid.protocols.LR_SCHEDULES
    lr_peak: float | None = None  # fraction of training where the LR peaks
    momentum: float | None = None
    cycle_momentum: bool | None = None  # cycle momentum inversely to the LR, as torch's CyclicLR does
    base_momentum: float | None = None  # momentum at the LR peak when cycled
    weight_decay: float | None = None
    augment: bool | None = None  # the dataset's standard crop/flip, where it has one
    normalize: bool | None = None  # per-channel standardisation as the model's first layer
    clamp: bool | None = None  # training attacks keep x + delta in [0, 1]
    optimizer_steps: int | None = None  # optimiser steps per minibatch (ELLE's reference: 2)
    eps_warmup_epochs: int | None = None  # training attacks' eps ramped from 0 over these epochs (N-FGSM on SVHN: 5)
    probe_size: int = CellTraining.probe_size  # held-out test samples probed every epoch for CO detection
    eval_batch_size: int = CellTraining.eval_batch_size
    #: mixed precision of the training steps: "off" (fp32) or "bf16" (autocast); evaluation is always fp32
    amp: str = CellTraining.amp
    #: opt-in early stop: end a cell once the ``co`` evaluator has seen CO for this many epochs in a row (0 = never)
    stop_after_collapse: int = CellTraining.stop_after_collapse
    #: training images held out as a validation split; > 0 also keeps the epoch with the best validation PGD
    #: accuracy and evaluates it beside the last model (``best_*`` metrics; cobench.run.best_checkpoint). 0 = off
    val_size: int | None = None

    def resolved(self) -> dict[str, TrainingValue]:
        """Every field, with the protocol's values filled in where this config leaves them unset."""
        values = get_protocol(self.protocol).training_values()
        values.update({k: v for k, v in asdict(self).items() if v is not None})
        return values

    def validate(self) -> None:
        """Every field of the right type, and every resolved value in range; one error lists every problem."""
        problems = value_problems("training", asdict(self), typing.get_type_hints(TrainingConfig), {})
        if not problems:
            problems = value_problems("training", self.resolved(), {}, TRAINING_RANGES)
            v = self.for_cell()
            if v.lr_schedule not in LR_SCHEDULES:
                problems.append(f"training.lr_schedule = {v.lr_schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")
            if v.base_momentum > v.momentum:
                problems.append(f"training.base_momentum = {v.base_momentum!r}: expected <= momentum ({v.momentum})")
            if v.eps_warmup_epochs > v.epochs:
                problems.append(
                    f"training.eps_warmup_epochs = {v.eps_warmup_epochs!r}: expected <= epochs "
                    f"({v.epochs}), or the training attacks never reach the full eps"
                )
            if v.amp not in AMP_MODES:
                problems.append(f"training.amp = {v.amp!r}: expected one of {', '.join(AMP_MODES)}")
        if problems:
            raise ConfigError("invalid training value(s):\n  " + "\n  ".join(problems))

    def for_cell(self) -> CellTraining:
        """The settings a cell of this grid trains with: the protocol's values where this config leaves them unset."""
        return CellTraining.from_config(self.resolved())

    def as_config(self) -> dict[str, TrainingValue]:
        """The training part of a cell's config (:meth:`CellTraining.as_config`)."""
        return self.for_cell().as_config()


AMP_MODES = ("off", "bf16")
#: the largest seed: torch.manual_seed takes any int64, and results store it as a JSON integer
MAX_SEED = 2**63 - 1
#: conditions on TrainingConfig's numeric fields (see cobench.params)
TRAINING_RANGES = {
    "epochs": ">= 1",
    "batch_size": ">= 2",
    "lr_max": ("> 0", "<= 10"),
    "lr_peak": ("> 0", "< 1"),
    "momentum": (">= 0", "< 1"),
    "base_momentum": ">= 0",
    "weight_decay": ">= 0",
    "optimizer_steps": ">= 1",
    "probe_size": ">= 1",
    "eval_batch_size": ">= 1",
    "stop_after_collapse": ">= 0",
    "eps_warmup_epochs": ">= 0",
    "val_size": ">= 0",
}


@dataclass
class GridSpec:
    datasets: list[str] = field(default_factory=lambda: ["digits"])
    models: list[str] = field(default_factory=lambda: ["small-cnn"])
    methods: list[str] = field(default_factory=lambda: ["fgsm", "n-fgsm", "pgd"])
    eps: list[float] = field(default_factory=lambda: [16.0, 40.0])
    injections: list[str] = field(default_factory=lambda: [NO_INJECTION])
    #: ``None``: not given. Injections that ignore beta (``none``) run at beta 0; one that adds
    #: ``beta * V[y]`` refuses to run without a strength (see :func:`cobench.grid.resolve.grid_betas`)
    betas: list[float] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    evaluators: list[str] = field(default_factory=lambda: ["clean", "fgsm", "pgd", "co"])
    training: TrainingConfig = field(default_factory=TrainingConfig)
    #: hyperparameter overrides: params[kind][component][param] = value
    params: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_toml(cls, path: str | Path) -> GridSpec:
        return cls.from_dict(read_toml(path, "grid file"), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "grid") -> GridSpec:
        data = copy.deepcopy(data)
        grid = dict(table(data.pop("grid", {}), "[grid]", source))
        grid.update(
            {k: data.pop(k) for k in list(data) if k not in ("training", "params", "leaderboard", "evaluation")}
        )
        spec = cls()
        aliases = {singular(kind): kind for kind in GRID_KINDS} | {"beta": "betas", "seed": "seeds"}
        for key, value in grid.items():
            key = aliases.get(key, key)
            if key not in cls.__dataclass_fields__ or key in ("training", "params"):
                raise ConfigError(
                    f"{source}: unknown grid key {key!r}; valid keys: "
                    + ", ".join(k for k in cls.__dataclass_fields__ if k not in ("training", "params"))
                )
            value = value if isinstance(value, list) else [value]
            if not value:
                raise ConfigError(
                    f"{source}: {key} = [] is empty, so the grid has no cells; give at least one value "
                    f"or leave {key} out for its default"
                )
            setattr(spec, key, value)
        training = {
            **table(data.get("training", {}), "[training]", source),
            **table(data.get("evaluation", {}), "[evaluation]", source),
        }
        spec.training = make_training(training, source)
        spec.params = data.get("params", {})
        try:
            spec.normalize()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc.message}") from None
        return spec

    def override(self, **values: Any) -> None:
        """Apply CLI values (``None`` means not given)."""
        for key, value in values.items():
            if value is None:
                continue
            if key in TrainingConfig.__dataclass_fields__:
                setattr(self.training, key, value)
            else:
                setattr(self, key, list(value))
        self.normalize()

    def normalize(self) -> None:
        """Parse and check every axis. A value listed twice (``8`` and ``"8/255"`` are the same eps)
        is an error, not silently merged: the grid would not be what was written."""
        self.eps = unique([parse_level(e, "eps") for e in self.eps], "eps", self.eps, level=True)
        if self.betas is not None:
            self.betas = unique([parse_level(b, "beta") for b in self.betas], "betas", self.betas, level=True)
        self.seeds = unique([parse_seed(s) for s in self.seeds], "seeds", self.seeds)
        for key in GRID_KINDS:
            names = [str(n).strip() for n in getattr(self, key)]
            if not names or any(not n for n in names):
                raise ConfigError(f"{key} must name at least one component, got {getattr(self, key)!r}")
            setattr(self, key, unique(names, key, names))
        self.training.validate()
        if self.training.stop_after_collapse and "co" not in [str(e).split(":")[0] for e in self.evaluators]:
            raise ConfigError(
                "stop_after_collapse needs the 'co' evaluator (it detects the collapse); add it to evaluators"
            )
        if not isinstance(self.params, dict):
            raise ConfigError(f"params must be a table of kinds ([params.methods.pgd] steps = 5), got {self.params!r}")
        for kind, comps in self.params.items():
            if kind not in GRID_KINDS:
                raise ConfigError(f"params.{kind}: unknown kind; valid kinds: {', '.join(GRID_KINDS)}")
            if not isinstance(comps, dict) or any(not isinstance(v, dict) for v in comps.values()):
                raise ConfigError(f"params.{kind} must map component names to tables of parameters")

    def set_param(self, assignment: str) -> None:
        """Apply ``kind.component.param=value`` (value parsed as TOML, else kept as a string)."""
        kind, comp, param, value = parse_param(assignment)
        self.params.setdefault(kind, {}).setdefault(comp, {})[param] = value

    def set_params(self, assignments: typing.Iterable[str]) -> None:
        """Apply the command line's ``--param`` flags: each must name a component of the grid, and
        one parameter given twice with different values is an error (which one was meant?)."""
        given: dict[tuple[str, str, str], Any] = {}
        for assignment in assignments:
            kind, comp, param, value = parse_param(assignment)
            key = (kind, comp, param)
            if key in given and given[key] != value:
                raise ConfigError(
                    f"--param {kind}.{comp}.{param} is given twice with different values "
                    f"({given[key]!r} and {value!r}); give it once"
                )
            given[key] = value
            names = getattr(self, kind)
            if comp not in names and comp not in {split_spec(n)[0] for n in names}:
                raise ConfigError(
                    f"--param {assignment!r}: {singular(kind)} {comp!r} is not in the grid, so the "
                    f"value would be ignored; the grid's {kind}: {', '.join(names)}"
                )
            self.set_param(assignment)


def parse_param(assignment: str) -> tuple[str, str, str, Any]:
    """``kind.component.param=value`` as its parts (value parsed as TOML, else kept as a string)."""
    if "=" not in assignment:
        raise ConfigError(f"--param {assignment!r}: expected KIND.COMPONENT.PARAM=VALUE, e.g. methods.pgd.steps=5")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 3 or parts[0] not in GRID_KINDS or not all(p.strip() for p in parts):
        raise ConfigError(
            f"--param {assignment!r}: expected KIND.COMPONENT.PARAM with KIND one of {', '.join(GRID_KINDS)}"
        )
    return parts[0], parts[1], parts[2], toml_value(raw)


def toml_value(raw: str) -> Any:
    """A command-line value read as TOML (``4``, ``true``, ``"x"``, ``[1, 2]``), else the string itself."""
    try:
        return tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return raw.strip()


def unique(values: list[Any], key: str, raw: list[Any], level: bool = False) -> list[Any]:
    """``values`` (parsed from ``raw``), or an error naming the first value listed twice."""
    seen: dict[Any, Any] = {}
    for value, written in zip(values, raw):
        if value in seen:
            how = f" (written {seen[value]!r} and {written!r})" if level and seen[value] != written else ""
            shown = f"{value:g}/255" if level else repr(value)
            raise ConfigError(f"{key} lists {shown} twice{how}; give each value once")
        seen[value] = written
    return values


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The TOML file at ``path``; a missing or malformed file is a :class:`ConfigError` naming ``what``."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {str(path)!r} is a directory, not a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {exc}") from None


def make_training(values: dict[str, Any], source: str) -> TrainingConfig:
    valid = TrainingConfig.__dataclass_fields__
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(f"{source}: unknown training key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    return TrainingConfig(**values)


def table(value: Any, what: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {what} must be a table of key = value lines, got {value!r}")
    return value


def parse_seed(value: Any) -> int:
    """A seed: an integer in 0..MAX_SEED (a string of digits is accepted, as the CLI passes them)."""
    try:
        seed = (
            int(value) if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)) else None
        )
    except ValueError:
        seed = None
    if seed is None or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"seed {value!r} is not valid: seeds must be integers in 0..{MAX_SEED} "
            "(2**63 - 1, the range torch seeds and results store)"
        )
    return seed


def split_spec(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def parse_level(value: Any, what: str) -> float:
    """Parse an eps/beta in /255 units: ``8``, ``8.0``, ``"8"`` or ``"8/255"``; must be in [0, 255]."""
    raw = value
    if isinstance(value, str):
        value = value.strip()
        if value.endswith("/255"):
            value = value[: -len("/255")]
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{what} {raw!r} is not a number; write it in /255 units, e.g. 8 or 8/255") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} {raw!r} is not a number")
    value = float(value)
    if not (0.0 <= value <= 255.0) or value != value:
        raise ConfigError(
            f"{what} {raw!r} is out of range: write it in /255 units, between 0 and 255 (e.g. 8 for 8/255)"
        )
    return value


def parse_list(text: str | None, cast=str, what: str = "list") -> list[Any] | None:
    """``"a,b, c"`` -> ["a", "b", "c"]; None stays None (not given on the command line)."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{what} {text!r} is empty; give a comma-separated list, e.g. {what} a,b")
    return [cast(t) for t in items]
