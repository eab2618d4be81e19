"""TensorBoard run logger: one event directory per cell, laid out like the result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cobench import hookimpl
from cobench.api import RunLogger
from cobench.errors import ConfigError
from cobench.loggers.tracking import numeric, run_path


class TensorBoardLogger(RunLogger):
    """TensorBoard event files: per-epoch curves, final metrics, the config as text and hparams."""

    name = "tensorboard"
    paper = "TensorBoard (tensorflow/tensorboard); written through torch.utils.tensorboard"
    spec_arg = "log_dir"

    def __init__(self, log_dir: str = "runs"):
        self.log_dir = log_dir
        self.writer: Any = None
        self.last_epoch = 0

    def check(self) -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("the tensorboard logger needs TensorBoard: pip install 'cobench[tensorboard]'") from None

    def start(self, cell_id: str, label: str, tags: dict[str, str], config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.tags = tags
        self.writer = SummaryWriter(log_dir=str(Path(self.log_dir) / run_path(tags, cell_id)))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```")

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.last_epoch = epoch

    def finish(self, result: dict[str, Any]) -> None:
        final = numeric(result.get("metrics") or {})
        for key, value in final.items():
            self.writer.add_scalar(f"final/{key}", value, self.last_epoch)
        self.writer.add_text(
            "status",
            result.get("status", "unknown") + (f": {result['error']['message']}" if result.get("error") else ""),
        )
        self.writer.add_hparams(dict(self.tags), {f"hparams/{k}": v for k, v in final.items()}, run_name="hparams")
        self.writer.close()


@hookimpl
def register_loggers(register):
    register(TensorBoardLogger)
