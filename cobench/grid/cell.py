"""One grid cell, fully resolved: what will run, and its identity.

A cell holds typed, frozen values: a :class:`~cobench.params.ComponentSpec` per component and
the :class:`~cobench.grid.spec.CellTraining` settings. Its identity is the hash of its config
dict (:meth:`Cell.config`, ``cell_id``), so the dict's layout is frozen: changing a field's name
or content changes every stored result's identity. The dict form exists only where a cell is
hashed or a result written (:meth:`Cell.config`) and read back (:meth:`Cell.from_config`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from cobench.api import NO_INJECTION
from cobench.grid.spec import CellTraining
from cobench.params import ComponentSpec

#: the fields of a cell's config that are one component each
COMPONENT_FIELDS = ("dataset", "model", "method", "injection")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: each component with every parameter filled in, eps and
    beta in /255 units, and the training settings.

    ``eps`` and ``beta`` keep the number as written (a stored ``8`` stays an int, ``8.0`` a
    float): the config, and so ``cell_id``, is the JSON of what was stored."""

    dataset: ComponentSpec
    model: ComponentSpec
    method: ComponentSpec
    eps: float
    injection: ComponentSpec
    beta: float
    seed: int
    training: CellTraining
    evaluators: tuple[ComponentSpec, ...]

    def config(self) -> dict[str, Any]:
        """The cell as its result stores it and its id hashes it (the layout of the first release)."""
        return {
            "dataset": self.dataset.config(),
            "model": self.model.config(),
            "method": self.method.config(),
            "eps": self.eps,
            "injection": self.injection.config(),
            "beta": self.beta,
            "seed": self.seed,
            "training": self.training.as_config(),
            "evaluators": [e.config() for e in self.evaluators],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Cell:
        """The cell of a config dict (a result's ``config``): ``from_config(c).config() == c`` for every
        config cobench wrote. A missing or unknown field, or a malformed one, raises (TypeError, or
        :class:`~cobench.errors.ConfigError` for the training settings)."""
        given = set(config)
        if given != set(CELL_FIELDS):
            missing, unknown = sorted(set(CELL_FIELDS) - given), sorted(given - set(CELL_FIELDS))
            raise TypeError(
                "a cell config has the fields "
                + ", ".join(CELL_FIELDS)
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        if not isinstance(config["training"], Mapping) or not isinstance(config["evaluators"], list):
            raise TypeError("a cell config's training is a table and its evaluators a list")
        return cls(
            dataset=ComponentSpec.from_config(config["dataset"]),
            model=ComponentSpec.from_config(config["model"]),
            method=ComponentSpec.from_config(config["method"]),
            eps=config["eps"],
            injection=ComponentSpec.from_config(config["injection"]),
            beta=config["beta"],
            seed=config["seed"],
            training=CellTraining.from_config(config["training"]),
            evaluators=tuple(ComponentSpec.from_config(e) for e in config["evaluators"]),
        )

    @property
    def cell_id(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def injected(self) -> bool:
        """Whether a feature is injected (the identity injection has no beta)."""
        return self.injection.name != NO_INJECTION

    @property
    def label(self) -> str:
        inj = self.injection.name + (f"(beta={self.beta:g})" if self.injected else "")
        return f"{self.method.name} eps={self.eps:g}/255 {inj} seed={self.seed}"

    def filename(self) -> str:
        return (
            f"{self.dataset.name}-{self.model.name}/{self.method.name}/"
            f"eps{self.eps:g}-{self.injection.name}-beta{self.beta:g}-seed{self.seed}-{self.cell_id[:8]}.json"
        )


#: the fields of a cell's config (a result's config has exactly these)
CELL_FIELDS = tuple(f.name for f in fields(Cell))
