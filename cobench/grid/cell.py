"""One grid cell, fully resolved: what will run, and its identity.

A cell's identity is the hash of its config dict (``cell_id``), so the dict's layout is
frozen: changing a field's name or content changes every stored result's identity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from cobench.api import NO_INJECTION
from cobench.grid.spec import CellTraining


@dataclass
class Cell:
    """One training run of the grid: each component as ``{"name", "params"}`` with every
    parameter filled in, eps and beta in /255 units, and the training settings."""

    dataset: dict[str, Any]
    model: dict[str, Any]
    method: dict[str, Any]
    eps: float
    injection: dict[str, Any]
    beta: float
    seed: int
    training: dict[str, Any]
    evaluators: list[dict[str, Any]]

    def config(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def cell_id(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def training_settings(self) -> CellTraining:
        """The training config as typed settings (a late field the dict leaves out at its default)."""
        return CellTraining.from_config(self.training)

    @property
    def injected(self) -> bool:
        """Whether a feature is injected (the identity injection has no beta)."""
        return self.injection["name"] != NO_INJECTION

    @property
    def label(self) -> str:
        inj = self.injection["name"] + (f"(beta={self.beta:g})" if self.injected else "")
        return f"{self.method['name']} eps={self.eps:g}/255 {inj} seed={self.seed}"

    def filename(self) -> str:
        return (
            f"{self.dataset['name']}-{self.model['name']}/{self.method['name']}/"
            f"eps{self.eps:g}-{self.injection['name']}-beta{self.beta:g}-seed{self.seed}-{self.cell_id[:8]}.json"
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Cell:
        return cls(**config)
