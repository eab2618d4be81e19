"""Typed parameters: a component's (or the training table's) values checked against its
type hints and declared ranges, so that a wrong value fails before any cell starts.

A component declares ranges as ``ranges = {"steps": ">= 1", "alpha": ("> 0", "<= 255")}``:
each condition is an operator and a number. Every problem is collected, so one error lists
them all (see :func:`cobench.grid.resolve.resolve`).

A component chosen and filled in is a :class:`ComponentSpec`: its name and its frozen
:class:`Params`, as a grid cell (and a run's loggers) hold them.
"""

from __future__ import annotations

import inspect
import math
import operator
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def init_hints(cls: type[Any]) -> dict[str, Any]:
    """Type hints of ``cls.__init__``'s parameters (empty where they cannot be resolved)."""
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation naming something not importable: no type checks, not a crash
        return {}


def type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit ``hint`` (``None`` when it does). Unknown hints accept anything."""
    if hint is Any or hint is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if any(type_problem(value, h) is None for h in options):
            return None
        return "expected " + " or ".join(type_name(h) for h in options)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        return None if value in allowed else "expected one of " + ", ".join(repr(a) for a in allowed)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return f"expected {type_name(hint)}"
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if args and any(type_problem(v, args[0]) for v in value):
            return f"expected {type_name(hint)}"
        return None
    if hint is type(None):
        return None if value is None else "expected None"
    if hint is bool:
        return None if isinstance(value, bool) else "expected a boolean (true or false)"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            return "expected a number"
        return None if isinstance(value, int) or math.isfinite(value) else "expected a finite number"
    if hint is str:
        return None if isinstance(value, str) else "expected a string"
    if isinstance(hint, type):
        return None if isinstance(value, hint) else f"expected {type_name(hint)}"
    return None


def type_name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", None) or str(hint)
    )


def range_problem(value: Any, conditions: str | tuple[str, ...]) -> str | None:
    """The first condition (``">= 1"``) that ``value`` breaks, as ``"expected >= 1"``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None  # None (an optional value) or a type already reported
    for condition in [conditions] if isinstance(conditions, str) else conditions:
        op, _, bound = condition.strip().partition(" ")
        if not _OPERATORS[op](value, float(bound)):
            return f"expected {condition.strip()}"
    return None


def check_range_declarations(owner: str, ranges: Mapping[str, Any], valid: Mapping[str, Any]) -> None:
    """A plugin author's mistake in ``ranges`` (unknown parameter, bad condition) raises :class:`ValueError`."""
    for name, conditions in ranges.items():
        if name not in valid:
            raise ValueError(f"{owner}: ranges names {name!r}, which is not a parameter")
        for condition in [conditions] if isinstance(conditions, str) else conditions:
            op, _, bound = condition.strip().partition(" ")
            try:
                float(bound)
            except ValueError:
                op = ""
            if op not in _OPERATORS:
                raise ValueError(
                    f"{owner}: range {condition!r} of {name!r} is not OP NUMBER with OP one of " + ", ".join(_OPERATORS)
                )


def value_problems(
    where: str,
    values: Mapping[str, Any],
    hints: Mapping[str, Any],
    ranges: Mapping[str, Any],
    required: tuple[str, ...] = (),
) -> list[str]:
    """One line per bad value: ``where.key = value: expected ...``."""
    problems = []
    for key in required:
        if values.get(key) is None:
            problems.append(f"{where}.{key} is required (it has no default); set it, e.g. --param {where}.{key}=VALUE")
    for key, value in values.items():
        if key in required and value is None:
            continue
        why = type_problem(value, hints[key]) if key in hints else None
        if why is None and key in ranges:
            why = range_problem(value, ranges[key])
        if why is not None:
            problems.append(f"{where}.{key} = {value!r}: {why}")
    return problems


def component_problems(cls: Any, plural: str, values: Mapping[str, Any]) -> list[str]:
    """The problems of component ``cls`` (of kind ``plural``) run with ``values``."""
    signature = inspect.signature(cls.__init__).parameters
    required = tuple(
        n
        for n, p in signature.items()
        if n != "self"
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and n != cls.spec_arg
    )
    return value_problems(f"{plural}.{cls.name}", values, init_hints(cls), getattr(cls, "ranges", {}), required)


# --------------------------------------------------------------------------- component specs
class Params(Mapping[str, Any]):
    """A component's parameter values, frozen and hashable: what ``__init__`` of its class takes.

    The values are those a JSON file holds (numbers, strings, booleans, None, lists, tables);
    here a list is kept as a tuple and a table as a :class:`Params`, so nothing inside can change
    and the whole can key a cache. :meth:`thawed` gives them back as JSON reads them, which is
    what a component is constructed with and what a cell hashes. Each value's type is the one the
    component's ``__init__`` declares (checked by :func:`component_problems`), hence ``Any`` here."""

    __slots__ = ("_values",)
    _values: dict[str, Any]

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = {str(k): _freeze(v) for k, v in (values or {}).items()}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def thawed(self) -> dict[str, Any]:
        """The values as JSON reads them back (tuples as lists, tables as dicts): fresh, mutable copies."""
        return {k: _thaw(v) for k, v in self._values.items()}


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Params(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Params):
        return value.thawed()
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class ComponentConfig(TypedDict):
    """A component as a cell's config (and a result file) writes it."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class ComponentSpec:
    """One component, resolved: its registered ``name`` and every parameter value it runs with.

    A grid cell holds one per dataset, model, method, injection and evaluator, and a run one
    per logger. :meth:`config` is its dict form, the one a cell hashes and a result stores."""

    name: str
    params: Params = field(default_factory=Params)

    def __post_init__(self) -> None:
        if not isinstance(self.params, Params):  # a plain mapping given: frozen here
            object.__setattr__(self, "params", Params(self.params))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ComponentSpec:
        """The spec of a stored ``{"name", "params"}``; anything else in it is an error."""
        if set(config) != {"name", "params"} or not isinstance(config["name"], str):
            raise TypeError(f"a component is {{'name': str, 'params': table}}, got {dict(config)!r}")
        if not isinstance(config["params"], Mapping):
            raise TypeError(f"component {config['name']!r}: params must be a table, got {config['params']!r}")
        return cls(config["name"], Params(config["params"]))

    def config(self) -> ComponentConfig:
        return {"name": self.name, "params": self.params.thawed()}

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments its class is constructed with (``cls(**spec.kwargs())``)."""
        return self.params.thawed()
