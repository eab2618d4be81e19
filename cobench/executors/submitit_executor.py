"""Run cells as SLURM jobs through submitit (``pip install 'cobench[slurm]'``).

The grid's cells are cut into batches of ``cells_per_job`` and submitted as one SLURM job
array (one array task per batch; ``max_parallel_jobs`` caps how many run at once). Each task
runs its cells one after another and returns their results; the driver waits, and writes
each batch's results as its task finishes. ``cluster="local"`` runs the same jobs as local
processes through submitit's local executor (how the tests run it), ``cluster="debug"`` in
this process; ``None`` picks SLURM where ``sbatch`` exists, else local.

Preemption and timeouts: a batch is a :class:`submitit.helpers.Checkpointable`. When SLURM
signals a preemption (or an imminent timeout), submitit pickles the batch, with the results
of the cells it already finished, and requeues it; the requeued task skips those cells and
the cell that was in flight resumes from its last per-epoch checkpoint (results written
under ``checkpoint_dir`` on shared storage), so only the epoch in progress is redone.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from cobench import hookimpl
from cobench.api import CellsToRun, Executor
from cobench.errors import CobenchError, ConfigError
from cobench.options import Progress, RunOptions
from cobench.results import failed_result

try:  # optional: the executor reports how to install it when it is missing
    from submitit.helpers import Checkpointable
except ImportError:
    Checkpointable = object  # type: ignore[assignment,misc]

CLUSTERS = ("slurm", "local", "debug")


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise CobenchError("the submitit executor needs submitit: pip install 'cobench[slurm]'") from None
    return submitit


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class CellBatch(Checkpointable):
    """The work of one array task: several cells in order, requeued as a whole on preemption.

    ``checkpoint`` (from :class:`submitit.helpers.Checkpointable`) resubmits this object as it
    is, so ``done``, the results of the cells already finished, travels with the requeued job.
    """

    def __init__(self, work: Callable[..., dict], configs: list[dict[str, Any]], options: RunOptions):
        self.work, self.configs, self.options = work, configs, options
        self.done: list[dict[str, Any]] = []

    def __call__(self) -> list[dict[str, Any]]:
        for config in self.configs[len(self.done):]:
            self.done.append(self.work(config, self.options))
        return self.done


class SubmititExecutor(Executor):
    """SLURM job arrays through submitit; preempted jobs requeue and resume from checkpoints."""

    name = "submitit"

    def __init__(self, folder: str = "submitit-logs", cluster: str | None = None, cells_per_job: int = 1,
                 max_parallel_jobs: int = 64, timeout_min: int = 240, partition: str | None = None,
                 gpus_per_job: int = 1, cpus_per_job: int = 4, mem_gb: int = 32, max_requeues: int = 3,
                 poll_s: float = 5.0):
        if cluster is not None and cluster not in CLUSTERS:
            raise ConfigError(f"submitit: cluster must be one of {', '.join(CLUSTERS)} (or unset), got {cluster!r}")
        for key, value in (("cells_per_job", cells_per_job), ("max_parallel_jobs", max_parallel_jobs),
                           ("timeout_min", timeout_min), ("cpus_per_job", cpus_per_job), ("mem_gb", mem_gb)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"submitit: {key} must be a positive integer, got {value!r}")
        if not isinstance(gpus_per_job, int) or gpus_per_job < 0 or not isinstance(max_requeues, int) or max_requeues < 0:
            raise ConfigError("submitit: gpus_per_job and max_requeues must be non-negative integers")
        self.folder, self.cluster, self.cells_per_job = folder, cluster, cells_per_job
        self.max_parallel_jobs, self.timeout_min, self.partition = max_parallel_jobs, timeout_min, partition
        self.gpus_per_job, self.cpus_per_job, self.mem_gb = gpus_per_job, cpus_per_job, mem_gb
        self.max_requeues, self.poll_s = max_requeues, poll_s

    def executor(self, submitit: Any) -> Any:
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster, slurm_max_num_timeout=self.max_requeues,
                                   local_max_num_timeout=self.max_requeues)
        params: dict[str, Any] = {"timeout_min": self.timeout_min, "cpus_per_task": self.cpus_per_job,
                                  "tasks_per_node": 1, "nodes": 1, "name": "cobench"}
        if ex.cluster == "slurm":
            params.update(gpus_per_node=self.gpus_per_job, mem_gb=self.mem_gb,
                          slurm_array_parallelism=self.max_parallel_jobs, slurm_signal_delay_s=120)
            if self.partition:
                params["slurm_partition"] = self.partition
        ex.update_parameters(**params)
        return ex

    def run(self, cells: CellsToRun, work: Callable[..., dict], options: RunOptions,
            progress: Progress) -> Iterable[tuple[Any, dict]]:
        """Per-epoch progress stays in the jobs; the driver reports each cell as its job finishes."""
        if not cells:
            return
        submitit = import_submitit()
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        ex = self.executor(submitit)
        groups = batches(list(cells), self.cells_per_job)
        with ex.batch():  # one job array
            jobs = [ex.submit(CellBatch(work, [c.config() for c in group], options)) for group in groups]
        pending = dict(zip(jobs, groups))
        try:
            while pending:
                finished = [job for job in pending if job.done()]
                if not finished:
                    time.sleep(self.poll_s)
                    continue
                for job in finished:
                    group = pending.pop(job)
                    error: BaseException = CobenchError("the job returned fewer results than it had cells")
                    try:
                        results = job.result()
                    except Exception as exc:  # the job failed, was cancelled, or ran out of requeues
                        results, error = [], exc
                    for i, cell in enumerate(group):
                        yield cell, (results[i] if i < len(results) else failed_result(
                            cell, error, f"submitit job {job.job_id} ended without a result for this cell: "
                                         f"{type(error).__name__}: {error}"))
        finally:
            for job in pending:  # interrupted: cancel what is still queued or running
                job.cancel(check=False)


@hookimpl
def register_executors(register):
    register(SubmititExecutor)
