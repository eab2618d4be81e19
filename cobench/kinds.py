"""The kinds of component a plugin can contribute, declared once.

Each kind is written here and nowhere else: its plural (the key users write in grids,
``--param`` and ``cobench list``), its base class in :mod:`cobench.api` (whose ``kind`` is
the singular used in messages), the hook specification that registers it, and whether a
grid cell names one. Everything else (the registry, grid parsing, the CLI, result
attribution) reads this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cobench import hookspecs
from cobench.api import Component, Dataset, Evaluator, Executor, Injection, Method, Model, RunLogger


@dataclass(frozen=True)
class Kind:
    plural: str
    base: type[Component]
    hookspec: Callable[..., None]
    #: a grid cell names components of this kind (executors schedule cells instead)
    in_grid: bool = True

    @property
    def singular(self) -> str:
        return self.base.kind

    @property
    def hook(self) -> str:
        return self.hookspec.__name__


#: in the order grids, messages and ``cobench list`` show them
KINDS: tuple[Kind, ...] = (
    Kind("datasets", Dataset, hookspecs.register_datasets),
    Kind("models", Model, hookspecs.register_models),
    Kind("methods", Method, hookspecs.register_methods),
    Kind("injections", Injection, hookspecs.register_injections),
    Kind("evaluators", Evaluator, hookspecs.register_evaluators),
    Kind("executors", Executor, hookspecs.register_executors, in_grid=False),
    Kind("loggers", RunLogger, hookspecs.register_loggers, in_grid=False),
)
KIND_NAMES: tuple[str, ...] = tuple(k.plural for k in KINDS)
#: the kinds a grid cell is made of, in grid order
GRID_KINDS: tuple[str, ...] = tuple(k.plural for k in KINDS if k.in_grid)
_BY_NAME = {k.plural: k for k in KINDS}


def kind(plural: str) -> Kind:
    """The kind called ``plural`` (``"methods"``); a :class:`KeyError` for anything else."""
    return _BY_NAME[plural]


def singular(plural: str) -> str:
    """``"methods"`` -> ``"method"``, for messages."""
    return kind(plural).singular
