"""MLflow run logger: one MLflow run per cell, through ``MlflowClient`` (no global active run,
so cells in one process never share state)."""

from __future__ import annotations

import time
from typing import Any

from cobench import hookimpl
from cobench.api import RunLogger
from cobench.errors import ConfigError
from cobench.loggers.tracking import numeric


class MLflowLogger(RunLogger):
    """An MLflow run per cell: config as tags and params, per-epoch metrics by step, final metrics."""

    name = "mlflow"
    paper = "MLflow (mlflow/mlflow) tracking client"
    spec_arg = "tracking_uri"

    def __init__(self, tracking_uri: str = "sqlite:///mlflow.db", experiment: str = "cobench"):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client: Any = None
        self.run_id: str | None = None
        self.last_epoch = 0

    def check(self) -> None:
        try:
            import mlflow  # noqa: F401

            if self.tracking_uri.startswith("sqlite:"):
                import alembic  # noqa: F401
                import sqlalchemy  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"the mlflow logger needs MLflow ({exc.name} is missing): pip install 'cobench[mlflow]'"
            ) from None

    def start(self, cell_id: str, label: str, tags: dict[str, str], config: dict[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(self.experiment)
            except Exception:  # created meanwhile by another worker
                experiment_id = self.client.get_experiment_by_name(self.experiment).experiment_id
        else:
            experiment_id = experiment.experiment_id
        run = self.client.create_run(experiment_id, run_name=label, tags={**tags, "cobench.cell_id": cell_id})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, v[:6000]) for k, v in tags.items()])

    def _log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._log(metrics, epoch)
        self.last_epoch = epoch

    def finish(self, result: dict[str, Any]) -> None:
        final = {f"final/{k}": v for k, v in numeric(result.get("metrics") or {}).items()}
        final.update({f"cost/{k}": v for k, v in numeric(result.get("cost") or {}).items()})
        if final:
            self._log(final, self.last_epoch)
        if result.get("error"):
            self.client.set_tag(self.run_id, "cobench.error", result["error"]["message"][:5000])
        self.client.set_terminated(self.run_id, "FINISHED" if result.get("status") == "ok" else "FAILED")


@hookimpl
def register_loggers(register):
    register(MLflowLogger)
