"""Run loggers around one cell: resolve ``--loggers`` specs, tag runs with the cell's config,
and keep a failing tracker from failing the training it observes."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cobench.grid.cell import COMPONENT_FIELDS, Cell
from cobench.grid.resolve import resolve_component
from cobench.params import ComponentSpec
from cobench.plugins import Registry, get_plugin_manager
from cobench.store.records import ResultRecord, plain

#: told each epoch's record as it finishes: (epoch, epochs, record)
EpochCallback = Callable[[int, int, dict[str, float | None]], None]


def resolve_loggers(specs: list[str], registry: Registry) -> list[ComponentSpec]:
    """``["tensorboard:runs", "mlflow"]`` -> their specs with defaults filled in (unknown names list the valid ones)."""
    return [resolve_component(registry, "loggers", spec, {}) for spec in specs]


def check_loggers(specs: Sequence[ComponentSpec], registry: Registry) -> None:
    """Construct and check every logger before any training (missing libraries fail here)."""
    for spec in specs:
        registry.get("loggers", spec.name)(**spec.kwargs()).check()


def cell_tags(cell: Cell) -> dict[str, str]:
    """A cell as flat string tags: component names, eps/beta/seed, ``kind.param`` values and the
    training config's values (as the cell's config writes them: a late field at its default is left out)."""
    tags = {
        "dataset": cell.dataset.name,
        "model": cell.model.name,
        "method": cell.method.name,
        "injection": cell.injection.name,
        "eps": f"{cell.eps:g}",
        "beta": f"{cell.beta:g}",
        "seed": str(cell.seed),
        "evaluators": ",".join(e.name for e in cell.evaluators),
    }
    for kind in COMPONENT_FIELDS:
        for k, v in getattr(cell, kind).kwargs().items():
            tags[f"{kind}.{k}"] = str(v)
    for k, v in cell.training.as_config().items():
        tags[f"training.{k}"] = str(v)
    return tags


def grid_group(results_dir: Path, cell_ids: Iterable[str]) -> str:
    """The grid's name for trackers that group runs (W&B's group, a ``grid`` tag): its results
    folder's name and a hash of its cells, so a resumed grid keeps its group and another grid in
    the same folder gets its own."""
    digest = hashlib.sha256("\n".join(sorted(cell_ids)).encode()).hexdigest()[:8]
    return f"{Path(results_dir).resolve().name}-{digest}"


def run_path(tags: dict[str, str], cell_id: str) -> str:
    """A readable, unique relative path for a cell's run, laid out like its result file."""
    return (
        f"{tags['dataset']}-{tags['model']}/{tags['method']}/"
        f"eps{tags['eps']}-{tags['injection']}-beta{tags['beta']}-seed{tags['seed']}-{cell_id[:8]}"
    )


def numeric(record: Mapping[str, object]) -> dict[str, float]:
    """The finite numbers of any record (an epoch's, a result's metrics or cost; bools, None and
    anything else dropped), as floats."""
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class CellLoggers:
    """The loggers of one cell. A logger that raises is warned about and dropped for the rest
    of the cell: tracking never fails a training run."""

    def __init__(self, specs: Sequence[ComponentSpec], cell: Cell, group: str = ""):
        self.cell, self.cell_id, self.label, self.group = cell, cell.cell_id, cell.label, group
        registry = get_plugin_manager().registry if specs else None
        self.loggers = [registry.get("loggers", s.name)(**s.kwargs()) for s in specs] if registry else []

    def _each(self, call: Callable[[Any], None], what: str) -> None:
        for logger in list(self.loggers):
            try:
                call(logger)
            except Exception as exc:
                warnings.warn(
                    f"logger {logger.name!r} failed to {what} for cell {self.cell_id} and is dropped: "
                    f"{type(exc).__name__}: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.loggers.remove(logger)

    def start(self) -> None:
        tags = cell_tags(self.cell) | ({"grid": self.group} if self.group else {})
        config = self.cell.config()
        self._each(lambda lg: lg.start(self.cell_id, self.label, tags, config), "start")

    def wrap(self, on_epoch: EpochCallback | None) -> EpochCallback | None:
        """``on_epoch`` that also streams each epoch's record to the loggers."""
        if not self.loggers:
            return on_epoch

        def both(epoch: int, epochs: int, record: dict[str, float | None]) -> None:
            metrics = numeric({k: v for k, v in record.items() if k != "epoch"})
            self._each(lambda lg: lg.log_epoch(epoch, metrics), "log an epoch")
            if on_epoch is not None:
                on_epoch(epoch, epochs, record)

        return both

    def finish(self, result: ResultRecord) -> None:
        self._each(lambda lg: lg.finish(plain(result)), "finish")
