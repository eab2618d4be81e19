"""The board: what a leaderboard shows, whatever the format. Its rows (a method at one eps in one
setting, aggregated over seeds, judged and ranked), the protocol they share, the methods behind
them and the published figures they are compared with.

:func:`cobench.leaderboard.rank.build_board` makes one; the renderers read it. Every value is
typed; a ``record()`` is the form the board's JSON writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar

from cobench.api import NO_INJECTION
from cobench.grid.cell import Cell
from cobench.leaderboard.collect import Collection, Coverage
from cobench.leaderboard.spec import TABLE_METRICS, Leaderboard, Published
from cobench.leaderboard.trust.rows import BUILT_HERE, RowTrust


@dataclass(frozen=True)
class Setting:
    """One injection setting of the leaderboard; ``none`` has beta 0."""

    injection: str
    beta: float

    @property
    def title(self) -> str:
        if self.injection == NO_INJECTION:
            return "No injection"
        return f"Injection {self.injection}, beta = {self.beta:g}/255"

    @property
    def slug(self) -> str:
        return NO_INJECTION if self.injection == NO_INJECTION else f"{self.injection}-beta{self.beta:g}"

    def sort_key(self) -> tuple:
        return (self.injection != NO_INJECTION, self.injection, self.beta)


class PublishedRecord(TypedDict):
    """A published figure beside the board's number, as the board's JSON holds it."""

    ref: int
    method: str
    eps: float
    metric: str
    value: float
    std: float | None
    seeds: int | None
    checkpoint: str
    approximate: bool
    source: str
    differs: str
    injection: str
    beta: float
    compared_with: str
    cobench: float | None
    difference: float | None


@dataclass(frozen=True)
class Comparison:
    """A published figure beside the board's own mean of the column it is compared with."""

    #: its number on the board's pages, from 1 in the order of the TOML
    ref: int
    figure: Published
    #: the board's column (``best_<metric>`` for a best-checkpoint figure where the board shows it)
    compared_with: str
    #: the board's mean of that column in %, None where the row has none yet
    cobench: float | None

    @property
    def difference(self) -> float | None:
        """cobench - published, in points."""
        return None if self.cobench is None else round(self.cobench - self.figure.value, 6)

    def record(self) -> PublishedRecord:
        f = self.figure
        return PublishedRecord(
            ref=self.ref,
            method=f.method,
            eps=f.eps,
            metric=f.metric,
            value=f.value,
            std=f.std,
            seeds=f.seeds,
            checkpoint=f.checkpoint,
            approximate=f.approximate,
            source=f.source,
            differs=f.differs,
            injection=f.injection,
            beta=f.beta,
            compared_with=self.compared_with,
            cobench=self.cobench,
            difference=self.difference,
        )


@dataclass(frozen=True)
class Row:
    """One row of the board: a method at one eps in one setting, over its seeds
    (:func:`cobench.store.tables.aggregate`), with its trust, its rank and its published figures."""

    dataset: str
    model: str
    injection: str
    beta: float
    method: str
    eps: float
    seeds: int
    #: metric -> (mean, std) over the seeds, fractions; None where no seed reports it
    stats: Mapping[str, tuple[float | None, float | None]]
    trust: RowTrust
    co_rate: float | None = None
    co_epoch_median: float | None = None
    #: time per training step relative to FGSM's in the same setting; None where not comparable
    cost_vs_fgsm: float | None = None
    forward_passes_per_step: float | None = None
    #: competition rank within its setting and eps (1, 1, 3); None for a flagged or unranked row
    rank: int | None = None
    #: the seeds cannot separate it from a neighbour (``=N``)
    rank_tied: bool = False
    published: tuple[Comparison, ...] = ()

    def mean(self, metric: str) -> float | None:
        return self.stats.get(metric, (None, None))[0]

    def std(self, metric: str) -> float | None:
        return self.stats.get(metric, (None, None))[1]

    @property
    def key(self) -> tuple:
        """The key of its results (:attr:`cobench.leaderboard.collect.StoredResult.key`)."""
        return (self.dataset, self.model, self.injection, self.beta, self.method, self.eps)

    @property
    def setting(self) -> Setting:
        return Setting(self.injection, self.beta)

    @property
    def flagged(self) -> bool:
        return self.trust.flagged

    @property
    def built_here(self) -> bool:
        return self.trust.source == BUILT_HERE


class MethodRecord(TypedDict):
    """A method of the board, as the board's JSON holds it."""

    name: str
    plugin: str | None
    distributions: list[str]
    params: dict[str, dict[str, Any]]
    paper: str | None
    submitted: bool


@dataclass(frozen=True)
class MethodInfo:
    """A method of the board: the plugin it comes from, its parameters at each eps and its paper."""

    name: str
    #: the module of the plugin behind it, as its results name it
    plugin: str | None
    #: the plugin distributions (``name version``) its results were made with
    distributions: tuple[str, ...]
    #: eps (``8``) -> the method's parameters there, as its results record them; in eps order
    params: Mapping[str, dict[str, Any]]
    #: the paper, for a method of the board's own grid
    paper: str | None
    #: a method the board's grid does not define
    submitted: bool

    def record(self) -> MethodRecord:
        return MethodRecord(
            name=self.name,
            plugin=self.plugin,
            distributions=list(self.distributions),
            params=dict(self.params),
            paper=self.paper,
            submitted=self.submitted,
        )


@dataclass(frozen=True)
class Protocol:
    """What every row of the board was trained and evaluated under: its grid's cells."""

    #: a cell of the grid: the dataset, model, training and evaluators every cell shares
    reference: Cell
    eps: tuple[float, ...]
    #: one cell per injection setting, in grid order
    settings: tuple[Cell, ...]
    seeds: tuple[int, ...]
    #: one cell per eps: the evaluators' parameters may follow a step rule such as eps/4
    by_eps: tuple[Cell, ...]

    @property
    def evaluators_differ(self) -> bool:
        return len({json.dumps([e.config() for e in c.evaluators], sort_keys=True) for c in self.by_eps}) > 1

    def record(self) -> dict[str, Any]:
        cell = self.reference
        record = {
            "dataset": cell.dataset.config(),
            "model": cell.model.config(),
            "training": cell.training.as_config(),
            "evaluators": [e.config() for e in cell.evaluators],
            "eps": list(self.eps),
            "settings": [{"injection": c.injection.config(), "beta": c.beta} for c in self.settings],
            "seeds": list(self.seeds),
        }
        if self.evaluators_differ:
            record["evaluators_by_eps"] = {f"{c.eps:g}": [e.config() for e in c.evaluators] for c in self.by_eps}
        return record


T = TypeVar("T")


def unique(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """The first of ``items`` for each ``key``, in order."""
    seen, out = set(), []
    for it in items:
        k = key(it)
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


@dataclass(frozen=True)
class Board:
    lb: Leaderboard
    coll: Collection
    #: ranked best first within each setting and eps
    rows: tuple[Row, ...]
    rank_metric: str | None
    methods: tuple[MethodInfo, ...] = ()
    published: tuple[Comparison, ...] = ()

    @property
    def settings(self) -> list[Setting]:
        return sorted({r.setting for r in self.rows}, key=Setting.sort_key)

    @property
    def table_metrics(self) -> tuple[str, ...]:
        """The accuracy columns: the built-in ones that some row reports (a board without the 20-step
        ``pgd`` evaluator shows no empty PGD column), then the board's ``metrics``."""
        reported = tuple(m for m in TABLE_METRICS if any(r.mean(m) is not None for r in self.rows))
        return reported + tuple(m for m in self.lb.metrics if m not in reported)

    @property
    def method_names(self) -> list[str]:
        return [m.name for m in self.methods]

    @property
    def eps(self) -> list[float]:
        return sorted({r.eps for r in self.rows})

    @property
    def coverage(self) -> Coverage:
        return self.coll.coverage()

    def rows_for(self, setting: Setting) -> list[Row]:
        return [r for r in self.rows if r.setting == setting]

    def protocol(self) -> Protocol:
        cells = self.coll.cells
        return Protocol(
            reference=cells[0],
            eps=tuple(self.lb.grid.eps),
            settings=tuple(unique(cells, lambda c: (json.dumps(c.injection.config(), sort_keys=True), c.beta))),
            seeds=tuple(self.lb.grid.seeds),
            by_eps=tuple(unique(cells, lambda c: c.eps)),
        )

    def provenance(self) -> dict[str, list[str]]:
        """What the rows were built with: cobench builds, dataset fingerprints, machines."""
        out: dict[str, set[str]] = {"cobench": set(), "data": set(), "machines": set()}
        for r in self.coll.ok:
            prov = r.data.get("provenance") or {}
            if prov.get("cobench"):
                c = prov["cobench"]
                out["cobench"].add(f"{c.get('version')}" + (f" @{c['commit'][:10]}" if c.get("commit") else ""))
            if (prov.get("data") or {}).get("loaded"):
                out["data"].add(prov["data"]["loaded"])
            if prov.get("machine"):
                m = prov["machine"]
                out["machines"].add(
                    f"{m.get('device_name')} (torch {m.get('torch')}"
                    + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
                    + f", {m.get('num_threads')} threads)"
                )
        return {k: sorted(v) for k, v in out.items()}
