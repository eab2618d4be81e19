"""Drive boundary searches with the ordinary runner.

Each point the search asks for becomes ordinary grid cells (one per seed) trained by
:class:`cobench.run.runner.Runner` into the results directory, so a search resumes where it
stopped, reuses cells that ``cobench run`` or a leaderboard already trained, and leaves cells
that ``cobench results`` and the leaderboards read like any others.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cobench.api import NO_INJECTION
from cobench.boundary.search import BoundarySearch, Outcome, Point
from cobench.errors import CobenchError, ConfigError
from cobench.grid.spec import GridSpec
from cobench.store.records import ResultRecord

CO_EVALUATOR = "co"


@dataclass(frozen=True)
class Plane:
    """What one search varies eps (and beta) in: a dataset, model, method and injection."""

    dataset: str
    model: str
    method: str
    injection: str
    betas: tuple[float, ...]  # several: refined together over eps x beta

    @property
    def label(self) -> str:
        inj = (
            self.injection
            if self.injection == NO_INJECTION
            else f"{self.injection} beta={','.join(f'{b:g}' for b in self.betas)}"
        )
        return f"{self.dataset}/{self.model} {self.method} {inj}"


@dataclass
class PlaneSearch:
    plane: Plane
    search: BoundarySearch
    cells_trained: int = 0
    cells_reused: int = 0
    seeds: int = 0
    results: list[ResultRecord] = field(default_factory=list)


def planes(spec: GridSpec, two_d: bool) -> list[Plane]:
    """The grid's (dataset, model, method, injection) planes; without ``two_d`` each beta is a line."""
    out = []
    for dataset in spec.datasets:
        for model in spec.models:
            for method in spec.methods:
                for injection in spec.injections:
                    if injection == NO_INJECTION:
                        out.append(Plane(dataset, model, method, injection, (0.0,)))
                    elif two_d:
                        out.append(Plane(dataset, model, method, injection, tuple(sorted(spec.betas or [0.0]))))
                    else:
                        out.extend(Plane(dataset, model, method, injection, (b,)) for b in sorted(spec.betas or [0.0]))
    return out


def validate(spec: GridSpec, *, min_rate: float, eps_step: float, beta_step: float, two_d: bool) -> None:
    """Reject a search that cannot work, before anything trains."""
    if CO_EVALUATOR not in spec.evaluators:
        raise ConfigError(
            f"the boundary search reads the {CO_EVALUATOR!r} evaluator's verdicts; add it to "
            f"--evaluators (got {','.join(spec.evaluators)})"
        )
    if not 0 < min_rate <= 1:
        raise ConfigError(f"--min-rate must be in (0, 1] (the fraction of seeds that must collapse), got {min_rate}")
    if not (math.isfinite(eps_step) and math.isfinite(beta_step)):
        raise ConfigError(
            f"--eps-step and --beta-step must be finite numbers (/255 units), got {eps_step:g} and {beta_step:g}"
        )
    if eps_step <= 0 or beta_step <= 0:
        raise ConfigError(f"--eps-step and --beta-step must be > 0 (/255 units), got {eps_step:g} and {beta_step:g}")
    if len(spec.eps) < 2:
        raise ConfigError(f"give at least two coarse eps values to search between, got {spec.eps}")
    if two_d and (len(spec.betas or []) < 2 or spec.injections == [NO_INJECTION]):
        raise ConfigError(
            "--2d refines over eps x beta: give an injection other than 'none' and at least two --beta values"
        )


def search_boundaries(
    spec: GridSpec,
    results_dir: Path | str,
    *,
    min_rate: float = 0.5,
    eps_step: float = 1.0,
    beta_step: float = 1.0,
    two_d: bool = False,
    options: dict[str, Any] | None = None,
    executor: str = "local",
    executor_options: dict[str, Any] | None = None,
    progress: Any | None = None,
) -> list[PlaneSearch]:
    """Search every plane of ``spec`` to the end, training only the cells the searches ask for."""
    from cobench.grid.resolve import grid_betas
    from cobench.plugins import get_plugin_manager
    from cobench.run.runner import Runner

    validate(spec, min_rate=min_rate, eps_step=eps_step, beta_step=beta_step, two_d=two_d)
    for injection in spec.injections:  # planes() reads beta 0 for an injection given no --beta: refuse it first
        grid_betas(spec, get_plugin_manager().registry, injection, reference_default=False)
    runs = [
        PlaneSearch(
            p,
            BoundarySearch(spec.eps, p.betas, min_rate=min_rate, eps_step=eps_step, beta_step=beta_step),
            seeds=len(spec.seeds),
        )
        for p in planes(spec, two_d)
    ]
    while not all(r.search.done for r in runs):
        for run in runs:
            by_beta: dict[float, list[float]] = defaultdict(list)
            for eps, beta in run.search.pending():
                by_beta[beta].append(eps)
            for beta, eps_values in sorted(by_beta.items()):
                summary = Runner(
                    plane_spec(spec, run.plane, eps_values, beta),
                    results_dir,
                    options=options,
                    executor=executor,
                    executor_options=executor_options,
                ).run(progress)
                if summary.interrupted:
                    raise KeyboardInterrupt
                if summary.failed:
                    first = summary.failed[0]
                    raise CobenchError(
                        f"{len(summary.failed)} cell(s) of the search failed, e.g. "
                        f"{first['cell_id']}: {first['error']['message']}"
                    )
                run.cells_trained += summary.ran
                run.cells_reused += summary.skipped
                run.results.extend(summary.results)
                for point, outcome in outcomes(summary.results, beta).items():
                    run.search.record(point, outcome)
    return runs


def plane_spec(spec: GridSpec, plane: Plane, eps: list[float], beta: float) -> GridSpec:
    """``spec`` narrowed to one plane, one beta and the given eps values (seeds and the rest kept)."""
    sub = copy.deepcopy(spec)
    sub.datasets, sub.models, sub.methods, sub.injections = (
        [plane.dataset],
        [plane.model],
        [plane.method],
        [plane.injection],
    )
    sub.eps, sub.betas = sorted(eps), [beta]
    sub.normalize()
    return sub


def outcomes(results: list[ResultRecord], beta: float) -> dict[Point, Outcome]:
    """Per eps, the seeds' CO verdicts (ordered by seed) from finished results."""
    per_point: dict[Point, list[tuple[int, int]]] = defaultdict(list)
    for r in results:
        co = (r.get("metrics") or {}).get("co")
        if co is None:
            raise CobenchError(
                f"result {r.get('cell_id')} has no 'co' metric; the boundary search needs the "
                f"{CO_EVALUATOR!r} evaluator"
            )
        per_point[(float(r["config"]["eps"]), beta)].append((r["config"]["seed"], int(co)))
    return {p: Outcome(tuple(c for _, c in sorted(v))) for p, v in per_point.items()}
