"""Run each cell as a Ray task (``pip install 'cobench[ray]'``), on a cluster or a local instance.

Each cell asks Ray for one GPU when the cluster has GPUs (none otherwise) and one CPU; Ray
pins the task to its GPU through ``CUDA_VISIBLE_DEVICES``. ``cells_per_device`` K makes each cell
ask for 1/K of a GPU (and less than a CPU where CPUs are fewer than GPU slots), so K cells run on
every GPU; on a CPU-only local instance it runs K cells at once. Results travel back to the
driver, which writes them as each task finishes, so nothing is written on worker nodes and
an interrupted grid keeps every finished cell. Workers must have cobench and the same
plugins installed (on a local instance they share this environment).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from cobench import hookimpl
from cobench.api import CellsToRun, Executor
from cobench.errors import CobenchError, ConfigError
from cobench.options import Progress, RunOptions
from cobench.store.records import plain
from cobench.store.results import failed_result


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CobenchError("the ray executor needs Ray: pip install 'cobench[ray]'") from None
    return ray


#: seconds to wait for a cluster's head to accept a connection before giving up (ray.init waits minutes)
CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` address must accept a TCP connection within ``timeout``;
    else one line naming it (``auto`` and other forms are left to Ray)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        why = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise CobenchError(
            f"--ray-address {address!r}: cannot reach the Ray cluster ({why}); "
            "check the head node's address and port, or leave --ray-address out for a local "
            "instance"
        ) from None


class RayExecutor(Executor):
    """Ray tasks: one GPU per cell where the cluster has GPUs; --ray-address joins a cluster."""

    name = "ray"
    ranges = {"workers": ">= 0", "gpus_per_cell": ">= 0"}

    def __init__(
        self, address: str | None = None, workers: int = 0, gpus_per_cell: float = 1.0, cells_per_device: int = 0
    ):
        if not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"ray: workers must be a non-negative integer (0 = all cores), got {workers!r}")
        if not isinstance(cells_per_device, int) or cells_per_device < 0:
            raise ConfigError(
                f"ray: cells_per_device must be a non-negative integer (0 = unset), got {cells_per_device!r}"
            )
        if not (0 < gpus_per_cell <= 8):
            raise ConfigError(f"ray: gpus_per_cell must be in (0, 8], got {gpus_per_cell!r}")
        self.address = address  # e.g. "auto" or "ray://head:10001"; None starts a local instance
        #: CPUs of a local instance, i.e. cells run at once on CPU (ignored when joining a cluster)
        self.workers = workers
        #: K cells per GPU: each asks Ray for 1/K of a GPU (on a CPU-only local instance: K cells at once)
        self.cells_per_device = cells_per_device
        self.gpus_per_cell = 1.0 / cells_per_device if cells_per_device else gpus_per_cell

    def remote(self) -> bool:
        """Joining a cluster: cells run on its nodes, so the device is checked where each cell runs."""
        return bool(self.address)

    def _init(self, ray: Any) -> bool:
        """Connect to Ray; returns whether this executor started it (and must shut it down)."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address:
            check_reachable(self.address)
            ray.init(address=self.address, ignore_reinit_error=True)
            return True
        # local workers are fresh interpreters: give them the driver's import path
        path = os.pathsep.join(p for p in sys.path if p)
        import torch

        # --cells-per-device K caps CPU-only runs at K cells; with GPUs it is K per GPU, on every GPU
        cpus = self.workers or (self.cells_per_device if torch.cuda.device_count() == 0 else 0)
        ray.init(
            num_cpus=cpus or None,
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
        return True

    def run(
        self, cells: CellsToRun, work: Callable[..., dict], options: RunOptions, progress: Progress
    ) -> Iterable[tuple[Any, dict]]:
        """Per-epoch progress stays in the tasks; the driver reports each cell as it finishes."""
        if not cells:
            return
        ray = import_ray()
        started = self._init(ray)
        try:
            resources = ray.cluster_resources()
            cluster_gpus, cluster_cpus = resources.get("GPU", 0), resources.get("CPU", 1)
            gpus = self.gpus_per_cell if cluster_gpus > 0 else 0
            # a task asks for one CPU, or less where the cluster has fewer CPUs than GPU slots: the
            # CPUs must never be what caps K cells per GPU
            cpus = min(1.0, cluster_cpus / (cluster_gpus / gpus)) if gpus else 1
            remote = ray.remote(num_gpus=gpus, num_cpus=cpus, max_retries=0)(work)
            if gpus and options.device.startswith("cuda"):
                options = replace(options, device="cuda")  # Ray pins each task to its GPU: inside the task it is cuda:0
            shared = max(1, round(1 / gpus)) if gpus and gpus < 1 else 1 if gpus else int(min(len(cells), cluster_cpus))
            options = replace(options, cells_per_device=shared)
            pending = {remote.remote(cell.config(), options): cell for cell in cells}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    cell = pending.pop(done[0])
                    try:
                        result = ray.get(done[0])
                    except Exception as exc:  # worker or node lost; cell errors come back as results
                        result = plain(
                            failed_result(
                                cell, exc, f"a Ray worker died while running this cell: {type(exc).__name__}: {exc}"
                            )
                        )
                    yield cell, result
            finally:
                for ref in pending:  # interrupted: abandon what is still queued or running
                    ray.cancel(ref, force=True)
        finally:
            if started:
                ray.shutdown()


@hookimpl
def register_executors(register):
    register(RayExecutor)
