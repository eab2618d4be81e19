"""Weights & Biases run logger: one W&B run per cell, named by its cell id and grouped by its grid,
as the paper's own code logs its runs. ``WANDB_MODE=offline`` (or ``wandb:PROJECT`` with
``mode=offline``) writes the runs to disk for a later ``wandb sync``."""

from __future__ import annotations

from typing import Any

from cobench import hookimpl
from cobench.api import RunLogger
from cobench.errors import ConfigError
from cobench.loggers.tracking import numeric


class WandbLogger(RunLogger):
    """A W&B run per cell: per-epoch curves by epoch, final metrics in its summary, the cell's config."""

    name = "wandb"
    paper = "Weights & Biases (wandb/wandb) Python SDK"
    spec_arg = "project"

    def __init__(self, project: str = "cobench", entity: str = "", mode: str = "", dir: str = ""):
        #: W&B project and entity (team or user; "" = the account's default)
        self.project, self.entity = project, entity
        #: online, offline or disabled ("" = W&B's default, which WANDB_MODE sets)
        self.mode = mode
        #: where the run's local files go ("" = W&B's default, ./wandb)
        self.dir = dir
        self.run: Any = None

    def check(self) -> None:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("the wandb logger needs Weights & Biases: pip install 'cobench[wandb]'") from None
        if self.mode not in ("", "online", "offline", "disabled"):
            raise ConfigError(f"loggers.wandb.mode = {self.mode!r}: expected online, offline or disabled")

    def start(self, cell_id: str, label: str, tags: dict[str, str], config: dict[str, Any]) -> None:
        import wandb

        options: dict[str, Any] = {"mode": self.mode} if self.mode else {}  # else WANDB_MODE decides
        self.run = wandb.init(
            project=self.project,
            entity=self.entity or None,
            name=cell_id,
            group=tags.get("grid") or None,
            job_type=tags["method"],
            notes=label,
            config={**config, "cobench": {"cell_id": cell_id, "label": label, **tags}},
            dir=self.dir or None,
            reinit="create_new",  # one run per cell, several cells per process
            settings=wandb.Settings(console="off", silent=True),
            **options,
        )

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run.log({"epoch": epoch, **{f"epoch/{k}": v for k, v in metrics.items()}}, step=epoch)

    def finish(self, result: dict[str, Any]) -> None:
        summary: dict[str, float | str] = {f"final/{k}": v for k, v in numeric(result.get("metrics") or {}).items()}
        summary.update({f"cost/{k}": v for k, v in numeric(result.get("cost") or {}).items()})
        summary["status"] = result.get("status", "unknown")
        if result.get("error"):
            summary["error"] = result["error"]["message"][:5000]
        self.run.summary.update(summary)
        self.run.finish(exit_code=0 if result.get("status") == "ok" else 1)


@hookimpl
def register_loggers(register):
    register(WandbLogger)
