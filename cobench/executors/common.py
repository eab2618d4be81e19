"""Helpers shared by the executors that run cells outside the driver process.

Not a plugin module (it registers nothing): the local-parallel and ray executors import it.
"""
from __future__ import annotations

import traceback
from datetime import datetime, timezone
from typing import Any

from cobench.results import SCHEMA_VERSION


def plain_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options a worker process can receive: callables (progress hooks) stripped."""
    return {k: v for k, v in options.items() if not callable(v)}


def lost_cell_result(cell: Any, exc: BaseException, where: str) -> dict[str, Any]:
    """A ``failed`` result for a cell whose worker died before it could report one.

    ``execute_cell`` turns every exception raised *inside* a cell into a failed result; this
    covers what it cannot: a worker killed by the OS (out of memory), a crashed interpreter,
    a lost Ray node. The driver records it and the cell is retried on the next run.
    """
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "schema_version": SCHEMA_VERSION, "cell_id": cell.cell_id, "config_hash": cell.cell_id,
        "config": cell.config(), "seed": cell.seed, "status": "failed",
        "started_at": stamp, "finished_at": stamp,
        "error": {
            "type": type(exc).__name__,
            "message": f"{where} died while running this cell: {type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        },
    }
