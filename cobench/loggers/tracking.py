"""Run loggers around one cell: resolve ``--loggers`` specs, tag runs with the cell's config,
and keep a failing tracker from failing the training it observes."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cobench.grid.resolve import resolve_component
from cobench.plugins import Registry, get_plugin_manager

EpochCallback = Callable[[int, int, dict[str, Any]], None]


def resolve_loggers(specs: list[str], registry: Registry) -> list[dict[str, Any]]:
    """``["tensorboard:runs", "mlflow"]`` -> [{name, params}] with defaults filled in (unknown names list the valid ones)."""
    return [resolve_component(registry, "loggers", spec, {}) for spec in specs]


def check_loggers(specs: Sequence[dict[str, Any]], registry: Registry) -> None:
    """Construct and check every logger before any training (missing libraries fail here)."""
    for spec in specs:
        registry.get("loggers", spec["name"])(**spec["params"]).check()


def cell_tags(config: dict[str, Any]) -> dict[str, str]:
    """A cell's config as flat string tags: component names, eps/beta/seed, ``kind.param`` values."""
    tags = {
        "dataset": config["dataset"]["name"],
        "model": config["model"]["name"],
        "method": config["method"]["name"],
        "injection": config["injection"]["name"],
        "eps": f"{config['eps']:g}",
        "beta": f"{config['beta']:g}",
        "seed": str(config["seed"]),
        "evaluators": ",".join(e["name"] for e in config["evaluators"]),
    }
    for kind in ("dataset", "model", "method", "injection"):
        for k, v in config[kind]["params"].items():
            tags[f"{kind}.{k}"] = str(v)
    for k, v in config["training"].items():
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


def numeric(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a record (bools and None dropped), as floats."""
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class CellLoggers:
    """The loggers of one cell. A logger that raises is warned about and dropped for the rest
    of the cell: tracking never fails a training run."""

    def __init__(
        self, specs: Sequence[dict[str, Any]], cell_id: str, label: str, config: dict[str, Any], group: str = ""
    ):
        self.cell_id, self.label, self.config, self.group = cell_id, label, config, group
        registry = get_plugin_manager().registry if specs else None
        self.loggers = [registry.get("loggers", s["name"])(**s["params"]) for s in specs] if registry else []

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
        tags = cell_tags(self.config) | ({"grid": self.group} if self.group else {})
        self._each(lambda lg: lg.start(self.cell_id, self.label, tags, self.config), "start")

    def wrap(self, on_epoch: EpochCallback | None) -> EpochCallback | None:
        """``on_epoch`` that also streams each epoch's record to the loggers."""
        if not self.loggers:
            return on_epoch

        def both(epoch: int, epochs: int, record: dict[str, Any]) -> None:
            metrics = numeric({k: v for k, v in record.items() if k != "epoch"})
            self._each(lambda lg: lg.log_epoch(epoch, metrics), "log an epoch")
            if on_epoch is not None:
                on_epoch(epoch, epochs, record)

        return both

    def finish(self, result: dict[str, Any]) -> None:
        self._each(lambda lg: lg.finish(result), "finish")
