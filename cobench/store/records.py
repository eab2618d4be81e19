"""The records a result file holds, as the JSON they are written as (``result.schema.json`` is the
contract for readers; these types are the writer's side of it).

A result is written as it is built: a :class:`ResultRecord` is the dict that goes to disk, and its
parts (cost, provenance, environment, error, weights) are the dicts under its keys, so what is
typed here is byte for byte what a file holds and what its digest covers. A result read back from
disk is a plain dict (:func:`cobench.store.results.read_result`): an old or hand-made file need
not have every key.

A key that only some results carry is in a ``total=False`` class; the keys every writer sets are
in its base class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast

#: a value of a flat row: a JSON scalar
Scalar = str | int | float | bool | None
#: one result as flat columns (:func:`cobench.store.results.flat_row`, summary.csv), or one
#: aggregated row of results (:func:`cobench.store.tables.aggregate`)
FlatRow = dict[str, Scalar]


class ErrorRecord(TypedDict):
    """Why a cell failed: the exception's type, the message shown, its traceback."""

    type: str
    message: str
    traceback: str


class TrainCost(TypedDict):
    """What training a cell cost (:meth:`cobench.run.training.TrainingLoop.cost`)."""

    train_time_s: float
    epochs_run: int
    steps: int
    optimizer_updates: int
    forward_passes_per_step: float
    backward_passes_per_step: float
    #: the median epoch per step (None: no epoch ran)
    time_per_step_s: float | None
    amp: str
    channels_last: bool
    #: seconds spent writing mid-cell checkpoints (not in train_time_s)
    checkpoint_s: float
    #: a resumed cell: the wall seconds its interrupted runs had trained until the checkpoint
    wall_before_resume_s: float


class CostRecord(TrainCost):
    """A result's ``cost``: training's, and the final evaluation's seconds."""

    eval_time_s: float


class DistributionRecord(TypedDict, total=False):
    """The installed distribution behind cobench or a component (``commit``: pip's VCS record)."""

    distribution: str | None
    version: str | None
    commit: str
    editable: bool


class ComponentRecord(DistributionRecord, total=False):
    """A component's plugin (its entry-point name) and that plugin's distribution."""

    plugin: str


class MachineRecord(TypedDict):
    """What a timing (and, on CPU, the last bits of a result) depends on."""

    device_name: str
    torch: str
    cuda: str | None
    num_threads: int
    cpu: str
    cpu_capability: str
    #: a hash of the host's name: the same machine?, without naming it
    host: str


class NumericsRecord(TypedDict):
    """The determinism switches and the fp32 precision a cell trained with."""

    deterministic_algorithms: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    cublas_workspace_config: str | None
    train_fp32_precision: dict[str, str]
    eval_fp32_precision: str


class ValidationRecord(TypedDict):
    """The validation split held out of the training set (``training.val_size``)."""

    size: int
    of: int
    seed: int
    indices_sha256: str


class _DataRecord(TypedDict):
    #: SHA-256 of the dataset's arrays as loaded, and of the carriers and the injected test set
    loaded: str
    injected: str


class DataRecord(_DataRecord, total=False):
    validation: ValidationRecord


class ExecutionRecord(TypedDict):
    """How the cell was run: times taken while K cells shared a device are compared only with each other."""

    executor: str
    cells_per_device: int
    #: where the training set lived: "device", or "host" when it did not fit (cobench.run.placement)
    train_data: str


class ProvenanceRecord(TypedDict):
    """Who computed a result, from what and on what (:mod:`cobench.store.provenance`)."""

    cobench: DistributionRecord
    #: {kind: {component name: its plugin and distribution}}
    components: dict[str, dict[str, ComponentRecord]]
    data: DataRecord
    machine: MachineRecord
    numerics: NumericsRecord
    execution: ExecutionRecord


class _EnvironmentRecord(TypedDict):
    cobench: str
    torch: str
    python: str
    platform: str
    device: str
    device_name: str
    num_threads: int


class EnvironmentRecord(_EnvironmentRecord, total=False):
    """Where the cell ran (``cuda``: the CUDA build, on a CUDA device)."""

    cuda: str | None


class PluginsRecord(TypedDict):
    """The plugin that registered each of a cell's components (evaluators: name -> plugin)."""

    datasets: str
    models: str
    methods: str
    injections: str
    evaluators: dict[str, str]


class _WeightsEntry(TypedDict):
    sha256: str


class WeightsEntry(_WeightsEntry, total=False):
    """Where a result's weights are (:class:`cobench.store.weights.WeightsRecord`)."""

    size: int
    store: str
    file: str


class ResultHeader(TypedDict):
    """The fields every result of a cell starts with: its identity and config."""

    schema_version: int
    cell_id: str
    config_hash: str
    #: the cell's config (:meth:`cobench.grid.cell.Cell.config`): the dict its id is the hash of
    config: dict[str, Any]
    seed: int
    started_at: str


class ResultRecord(ResultHeader, total=False):
    """A result as cobench writes it: ``ok`` with metrics, curves, cost, plugins and provenance, or
    ``failed`` with the error; then where it ran, when it finished and its digest. ``weights`` and
    ``best_weights`` once the driver stored them (``--save-models``)."""

    status: Literal["ok", "failed"]
    finished_at: str
    wall_time_s: float
    #: the evaluators' final numbers; a third-party evaluator's may be any JSON value (cobench.api.Evaluator)
    metrics: dict[str, Any]
    #: per-epoch records, one list per key: the loop's numbers and the evaluators' probes
    curves: dict[str, list[float | None]]
    cost: CostRecord
    plugins: PluginsRecord
    provenance: ProvenanceRecord
    environment: EnvironmentRecord
    error: ErrorRecord
    digest: str
    weights: WeightsEntry
    best_weights: WeightsEntry


#: key of a worker's result under which the saved weights travel to the driver (never written)
WEIGHTS_BYTES = "_weights_safetensors"


class WorkerResult(ResultRecord, total=False):
    """A result as a worker hands it to the driver (:func:`cobench.run.cell_worker.execute_cell`):
    with ``--save-models`` the weights travel along, {result key: safetensors bytes}; the driver
    writes them to the weights store and records them (:func:`cobench.run.runner.attach_weights`)."""

    _weights_safetensors: dict[str, bytes]


def plain(record: Mapping[str, object]) -> dict[str, Any]:
    """``record`` as the plain dict the plugin API hands around (what an executor's ``work`` returns
    and its ``run`` yields, what a run logger's ``finish`` gets): a copy with the same keys and values."""
    return dict(record)


def as_record(data: Mapping[str, Any]) -> ResultRecord:
    """A result read back as a plain dict (a file that this cobench read as a finished result of
    the cell) as the record it is."""
    return cast(ResultRecord, data)


def worker_result(data: Mapping[str, Any]) -> WorkerResult:
    """A result as an executor hands it back (a plain dict: :class:`cobench.api.Executor`) as the
    record the worker built."""
    return cast(WorkerResult, data)


class CellOutcome(TypedDict):
    """What a cell that trained adds to its result's header (:func:`cobench.run.cell_worker.run_cell`)."""

    metrics: dict[str, Any]
    curves: dict[str, list[float | None]]
    cost: CostRecord
    plugins: PluginsRecord
    provenance: ProvenanceRecord
