"""Resolution: what the user asked for (a :class:`~cobench.grid.spec.GridSpec`) against the
installed plugins (a :class:`~cobench.plugins.Registry`), giving what will run (cells).

This is the one place where component names are checked, parameters are filled in and
overridden, and a method's published eps rule is applied.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from cobench.api import Component
from cobench.errors import ConfigError
from cobench.grid.cell import Cell
from cobench.grid.protocols import get_protocol
from cobench.grid.spec import GridSpec, split_spec
from cobench.kinds import GRID_KINDS, singular
from cobench.params import ComponentSpec, Params, component_problems
from cobench.plugins import Registry

#: the evaluator whose attack a protocol fixes (the final robust accuracy)
PROTOCOL_EVALUATOR = "pgd-50-10"


def resolve(spec: GridSpec, registry: Registry) -> list[Cell]:
    """The full cartesian grid of ``spec``; an injection that ignores beta (``none``, and any
    with ``uses_beta = False``) collapses the beta axis to 0."""
    check_names(spec, registry)
    for injection in spec.injections:
        grid_betas(spec, registry, injection)  # before any other problem: the most likely one
    resolved = {
        kind: {name: resolve_component(registry, kind, name, spec.params) for name in getattr(spec, kind)}
        for kind in ("datasets", "models", "injections", "evaluators")
    }
    problems = [
        p
        for kind, parts in resolved.items()
        for part in parts.values()
        for p in component_problems(registry.get(kind, part.name), kind, part.kwargs())
    ]
    evaluators = {
        eps: tuple(protocol_evaluator(spec, part, name, eps) for name, part in resolved["evaluators"].items())
        for eps in spec.eps
    }
    training = spec.training.for_cell()
    cells: list[Cell] = []
    for dataset, model, method, eps, injection in itertools.product(
        spec.datasets, spec.models, spec.methods, spec.eps, spec.injections
    ):
        injection_part = resolved["injections"][injection]
        betas = grid_betas(spec, registry, injection)
        method_part = resolve_component(
            registry, "methods", method, spec.params, eps255=eps, protocol=spec.training.protocol
        )
        method_problems = component_problems(registry.get("methods", method_part.name), "methods", method_part.kwargs())
        problems += [p for p in method_problems if p not in problems]
        for beta, seed in itertools.product(betas, spec.seeds):
            cells.append(
                Cell(
                    dataset=resolved["datasets"][dataset],
                    model=resolved["models"][model],
                    method=method_part,
                    eps=eps,
                    injection=injection_part,
                    beta=beta,
                    seed=seed,
                    training=training,
                    evaluators=evaluators[eps],
                )
            )
    if problems:
        raise ConfigError(f"{len(problems)} invalid parameter value(s):\n  " + "\n  ".join(problems))
    return cells


def grid_betas(spec: GridSpec, registry: Registry, injection: str, reference_default: bool = True) -> list[float]:
    """The betas ``injection``'s cells run at: ``[0.0]`` for one that ignores beta (``none``,
    ``low-pass``); the grid's betas for one that adds ``beta * V[y]``. Given no beta, such an
    injection runs at its reference's default (``default_beta``: the paper's DCT carriers take
    co_features' ``beta: 8``, see :func:`default_beta_notes`) and one without a reference default
    is refused (the old default, beta 0, injected nothing without a word); so is every injection
    when ``reference_default`` is false."""
    cls = registry.get("injections", split_spec(injection)[0])
    if not cls.uses_beta:
        return [0.0]
    if spec.betas is None:
        if reference_default and cls.default_beta is not None:
            return [float(cls.default_beta)]
        raise ConfigError(
            f"injection {injection!r} adds beta * V[y] but no strength was given"
            + ("" if cls.default_beta is None else " (a search needs the betas it searches)")
            + ": add --beta (in /255 units, e.g. --beta 8) or betas = [8] to the grid file"
        )
    return spec.betas


def default_beta_notes(spec: GridSpec, registry: Registry) -> list[str]:
    """One line per injection of ``spec`` that runs at its reference's default beta because the
    grid gives none (what ``cobench run`` prints before it plans)."""
    if spec.betas is not None:
        return []
    notes = []
    for injection in spec.injections:
        cls = registry.get("injections", split_spec(injection)[0])
        if cls.uses_beta and cls.default_beta is not None:
            notes.append(
                f"injection {injection!r} given no --beta: taking beta {cls.default_beta:g}/255, the default of "
                f"{cls.default_beta_source}; --beta sets another, --beta 0 injects nothing"
            )
    return notes


def protocol_evaluator(spec: GridSpec, part: ComponentSpec, name: str, eps255: float) -> ComponentSpec:
    """The protocol's final attack (steps, restarts, step, samples) for ``pgd-50-10`` at a cell's
    eps (a step rule such as GradAlign's eps/4 becomes a number here), where the grid's
    ``[params]`` do not set them."""
    if part.name != PROTOCOL_EVALUATOR:
        return part
    table = spec.params.get("evaluators", {})
    explicit = {**table.get(part.name, {}), **table.get(name, {})}
    fixed = {k: v for k, v in get_protocol(spec.training.protocol).eval_params(eps255).items() if k not in explicit}
    return ComponentSpec(part.name, Params({**part.params, **fixed}))


def check_component_names(spec: GridSpec, registry: Registry) -> None:
    """Every component of the grid exists (the error lists the valid ones). The command line checks
    this before it reads ``--param``, so an unknown name is reported rather than a ``--param``
    that names a valid component the grid lacks."""
    for kind in GRID_KINDS:
        for name in getattr(spec, kind):
            registry.get(kind, split_spec(name)[0])


def check_names(spec: GridSpec, registry: Registry) -> None:
    """Every component and every overridden parameter exists (the error lists the valid ones)."""
    check_component_names(spec, registry)
    for kind, comps in spec.params.items():
        for comp, params in comps.items():
            valid = registry.get(kind, split_spec(comp)[0]).parameters()
            for p in params:
                if p not in valid:
                    raise ConfigError(
                        f"{singular(kind)} {comp!r} has no parameter {p!r}; valid parameters: "
                        + (", ".join(valid) if valid else "(none)")
                    )


def resolved_params(
    cls: type[Component],
    overrides: Mapping[str, Any] | None = None,
    *,
    arg: str | None = None,
    eps255: float | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """The parameters a component runs with. Later sources win: ``__init__`` defaults, the
    ``name:ARG`` argument, the method's published rule for this eps (``defaults_for_eps``), its
    reference's exception under this protocol (``defaults_for_protocol``), then the user's overrides."""
    params = cls.parameters()
    if arg is not None:
        assert cls.spec_arg is not None, f"{cls.name} takes no ':ARG'"  # resolve_component refuses it before
        params[cls.spec_arg] = arg
    if eps255 is not None:
        params.update(cls.defaults_for_eps(eps255))  # type: ignore[attr-defined]
        if protocol is not None:
            params.update(cls.defaults_for_protocol(protocol, eps255))  # type: ignore[attr-defined]
    params.update(overrides or {})
    return params


def resolve_component(
    registry: Registry,
    kind: str,
    spec: str,
    params: Mapping[str, Any],
    eps255: float | None = None,
    protocol: str | None = None,
) -> ComponentSpec:
    """``name[:ARG]`` of ``kind`` as a cell holds it, with every parameter filled in (values as they
    read back from JSON); ``params`` is the grid's ``[params]`` table (``params[kind][name]``)."""
    name, arg = split_spec(spec)
    cls = registry.get(kind, name)
    if arg is not None and not cls.spec_arg:
        raise ConfigError(f"{singular(kind)} {name!r} takes no ':ARG' (got {spec!r})")
    table = params.get(kind, {})
    overrides = {**table.get(spec, {}), **(table.get(name, {}) if spec != name else {})}
    values = resolved_params(cls, overrides, arg=arg, eps255=eps255, protocol=protocol)
    defaults = cls.parameters()
    for key in getattr(cls, "recorded_when_set", ()):  # a later-added parameter at its default: not recorded
        if key in values and values[key] == defaults.get(key):
            del values[key]
    if cls.spec_arg is not None and cls.spec_arg in values and values[cls.spec_arg] is None:
        raise ConfigError(f"{singular(kind)} {name!r} needs an argument: write {name}:{cls.spec_arg.upper()}")
    return ComponentSpec(name, Params(jsonable(values)))


def jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), so a cell hashes the same before and after storing."""
    return json.loads(json.dumps(obj, default=str))
