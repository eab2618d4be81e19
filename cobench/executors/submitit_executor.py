"""Run cells as SLURM jobs through submitit (``pip install 'cobench[slurm]'``).

The grid's cells are cut into batches of ``cells_per_job`` and submitted as one SLURM job
array (one array task per batch; ``max_parallel_jobs`` caps how many run at once). Each task
runs its cells one after another and returns their results; the driver waits, and writes
each batch's results as its task finishes. ``cluster="local"`` runs the same jobs as local
processes through submitit's local executor (how the tests run it), ``cluster="debug"`` in
this process; ``None`` picks SLURM where ``sbatch`` exists, else local.

On SLURM each array task asks for ``gpus_per_job`` GPUs and SLURM caps how many run at once. The
local cluster has no scheduler, so the executor is one: it gives each job its own GPUs
(``CUDA_VISIBLE_DEVICES``, ``gpus_per_job`` of the driver's visible GPUs; ``cells_per_device`` jobs
share each) and submits a job only when a GPU slot is free, at most ``max_parallel_jobs`` at once.

Preemption and timeouts: a batch is a :class:`submitit.helpers.Checkpointable`. When SLURM
signals a preemption (or an imminent timeout), submitit pickles the batch, with the results
of the cells it already finished, and requeues it; the requeued task skips those cells and
the cell that was in flight resumes from its last per-epoch checkpoint (results written
under ``checkpoint_dir`` on shared storage), so only the epoch in progress is redone.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cobench import hookimpl
from cobench.api import CellsToRun, Executor
from cobench.errors import CobenchError, ConfigError
from cobench.options import Progress, RunOptions
from cobench.store.records import plain
from cobench.store.results import failed_result

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
        for config in self.configs[len(self.done) :]:
            self.done.append(self.work(config, self.options))
        return self.done


class SubmititExecutor(Executor):
    """SLURM job arrays through submitit; preempted jobs requeue and resume from checkpoints."""

    name = "submitit"

    def __init__(
        self,
        folder: str = "submitit-logs",
        cluster: str | None = None,
        cells_per_job: int = 1,
        max_parallel_jobs: int = 64,
        timeout_min: int = 240,
        partition: str | None = None,
        gpus_per_job: int = 1,
        cpus_per_job: int = 4,
        mem_gb: int = 32,
        max_requeues: int = 3,
        poll_s: float = 5.0,
        cells_per_device: int = 0,
    ):
        if cluster is not None and cluster not in CLUSTERS:
            raise ConfigError(f"submitit: cluster must be one of {', '.join(CLUSTERS)} (or unset), got {cluster!r}")
        for key, value in (
            ("cells_per_job", cells_per_job),
            ("max_parallel_jobs", max_parallel_jobs),
            ("timeout_min", timeout_min),
            ("cpus_per_job", cpus_per_job),
            ("mem_gb", mem_gb),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"submitit: {key} must be a positive integer, got {value!r}")
        if (
            not isinstance(gpus_per_job, int)
            or gpus_per_job < 0
            or not isinstance(max_requeues, int)
            or max_requeues < 0
        ):
            raise ConfigError("submitit: gpus_per_job and max_requeues must be non-negative integers")
        if not isinstance(cells_per_device, int) or cells_per_device < 0:
            raise ConfigError(
                f"submitit: cells_per_device must be a non-negative integer (0 = one), got {cells_per_device!r}"
            )
        #: jobs sharing one GPU (set of GPUs) at once on the local cluster
        self.cells_per_device = cells_per_device
        self.folder, self.cluster, self.cells_per_job = folder, cluster, cells_per_job
        self.max_parallel_jobs, self.timeout_min, self.partition = max_parallel_jobs, timeout_min, partition
        self.gpus_per_job, self.cpus_per_job, self.mem_gb = gpus_per_job, cpus_per_job, mem_gb
        self.max_requeues, self.poll_s = max_requeues, poll_s

    def executor(self, submitit: Any) -> Any:
        ex = submitit.AutoExecutor(
            folder=self.folder,
            cluster=self.cluster,
            slurm_max_num_timeout=self.max_requeues,
            local_max_num_timeout=self.max_requeues,
        )
        params: dict[str, Any] = {
            "timeout_min": self.timeout_min,
            "cpus_per_task": self.cpus_per_job,
            "tasks_per_node": 1,
            "nodes": 1,
            "name": "cobench",
        }
        if ex.cluster == "slurm":
            params.update(
                gpus_per_node=self.gpus_per_job,
                mem_gb=self.mem_gb,
                slurm_array_parallelism=self.max_parallel_jobs,
                slurm_signal_delay_s=120,
            )
            if self.partition:
                params["slurm_partition"] = self.partition
        ex.update_parameters(**params)
        return ex

    def remote(self) -> bool:
        """Cells run on SLURM nodes, not here: the device is checked where each cell runs."""
        return self.cluster == "slurm" or (self.cluster is None and shutil.which("sbatch") is not None)

    def local_slots(self, options: RunOptions) -> list[tuple[int, ...]]:
        """The GPUs of each job that may run at once on the local cluster: ``gpus_per_job`` of the
        visible GPUs per job, ``cells_per_device`` jobs per such set; on CPU (no GPU asked for or
        none here) ``cells_per_device`` jobs at once, else ``max_parallel_jobs``."""
        import torch

        ids = [] if options.device == "cpu" or self.gpus_per_job == 0 else visible_gpu_ids(torch.cuda.device_count())
        k = self.cells_per_device or 1
        if not ids:
            return [()] * min(self.max_parallel_jobs, self.cells_per_device or self.max_parallel_jobs)
        per = min(self.gpus_per_job, len(ids))
        groups = [tuple(ids[i : i + per]) for i in range(0, len(ids) - per + 1, per)]
        return [g for g in groups for _ in range(k)][: self.max_parallel_jobs]

    def run(
        self, cells: CellsToRun, work: Callable[..., dict], options: RunOptions, progress: Progress
    ) -> Iterable[tuple[Any, dict]]:
        """Per-epoch progress stays in the jobs; the driver reports each cell as its job finishes."""
        if not cells:
            return
        submitit = import_submitit()
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        ex = self.executor(submitit)
        groups = batches(list(cells), self.cells_per_job)
        if ex.cluster == "slurm":
            options = replace(options, cells_per_device=1)  # each array task has its GPUs to itself
            with ex.batch():  # one job array
                jobs = [ex.submit(CellBatch(work, [c.config() for c in group], options)) for group in groups]
            yield from self._collect(dict(zip(jobs, groups)))
            return
        yield from self._run_local(ex, groups, work, options)

    def _run_local(
        self, ex: Any, groups: list[list[Any]], work: Callable[..., dict], options: RunOptions
    ) -> Iterable[tuple[Any, dict]]:
        """The local cluster: one job per free slot, each pinned to its slot's GPUs."""
        slots = self.local_slots(options)
        free = list(slots)
        on_gpu = bool(slots[0])
        job_options = replace(options, cells_per_device=max(slots.count(s) for s in slots))
        if on_gpu and options.device.startswith("cuda"):
            job_options = replace(job_options, device="cuda")  # the job sees only its own GPUs
        queue = list(groups)
        pending: dict[Any, list[Any]] = {}
        slot_of: dict[Any, tuple[int, ...]] = {}
        try:
            while queue or pending:
                while queue and free:
                    slot, group = free.pop(0), queue.pop(0)
                    if on_gpu:
                        ex.update_parameters(gpus_per_node=len(slot), local_visible_gpus=slot)
                    job = ex.submit(CellBatch(work, [c.config() for c in group], job_options))
                    pending[job], slot_of[job] = group, slot
                finished = [job for job in pending if job.done()]
                if not finished:
                    time.sleep(self.poll_s)
                    continue
                for job in finished:
                    free.append(slot_of.pop(job))
                    yield from self._results(job, pending.pop(job))
        finally:
            for job in pending:  # interrupted: cancel what is still running
                job.cancel(check=False)

    def _collect(self, pending: dict[Any, list[Any]]) -> Iterable[tuple[Any, dict]]:
        try:
            while pending:
                finished = [job for job in pending if job.done()]
                if not finished:
                    time.sleep(self.poll_s)
                    continue
                for job in finished:
                    yield from self._results(job, pending.pop(job))
        finally:
            for job in pending:  # interrupted: cancel what is still queued or running
                job.cancel(check=False)

    @staticmethod
    def _results(job: Any, group: list[Any]) -> Iterable[tuple[Any, dict]]:
        error: BaseException = CobenchError("the job returned fewer results than it had cells")
        try:
            results = job.result()
        except Exception as exc:  # the job failed, was cancelled, or ran out of requeues
            results, error = [], exc
        for i, cell in enumerate(group):
            yield (
                cell,
                (
                    results[i]
                    if i < len(results)
                    else plain(
                        failed_result(
                            cell,
                            error,
                            f"submitit job {job.job_id} ended without a result for this cell: "
                            f"{type(error).__name__}: {error}",
                        )
                    )
                ),
            )


def visible_gpu_ids(count: int) -> list[int]:
    """The driver's visible GPUs as the ids a child's ``CUDA_VISIBLE_DEVICES`` takes: the driver's
    own ``CUDA_VISIBLE_DEVICES`` entries where they are numbers, else 0..count-1."""
    listed = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if listed and all(v.isdigit() for v in listed):
        return [int(v) for v in listed[:count]]
    return list(range(count))


@hookimpl
def register_executors(register):
    register(SubmititExecutor)
