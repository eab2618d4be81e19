"""What the two commands that run grids (``cobench run`` and ``cobench leaderboard build``)
share: their run options and their closing report."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from cobench.grid.spec import AMP_MODES, toml_value
from cobench.options import RunOptions

if TYPE_CHECKING:
    from rich.console import Console

    from cobench.run.runner import RunSummary

RUN_OPTIONS = (
    click.option("--data-dir", default="data", show_default=True, type=click.Path(file_okay=False)),
    click.option("--download/--no-download", default=False, help="Download datasets missing from --data-dir."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
    click.option("--channels-last", is_flag=True, help="Channels-last memory format (same results, faster on CPU)."),
    click.option(
        "--save-models",
        is_flag=True,
        help="Keep each cell's final (and best-epoch) weights in the weights store (safetensors; "
        "hash, size and store in the result).",
    ),
    click.option(
        "--weights-store",
        metavar="URL",
        default="",
        help="Where --save-models writes weights: a folder or fsspec URL (file://, s3://, gs://, hf://) "
        "[default: $COBENCH_WEIGHTS_STORE, else ~/.cache/cobench/weights].",
    ),
    click.option(
        "--compile",
        "compile_model",
        is_flag=True,
        help="torch.compile the model for training steps (off by default: see benchmarks/speed.py).",
    ),
    click.option(
        "--checkpoints/--no-checkpoints",
        default=True,
        show_default=True,
        help="Per-epoch mid-cell checkpoints: a killed cell resumes after its last epoch.",
    ),
    click.option("--checkpoint-dir", default="", help="Where checkpoints go [default: RESULTS_DIR/checkpoints]."),
    click.option("--keep-checkpoints", is_flag=True, help="Keep each cell's checkpoint after it finished."),
    click.option(
        "--data-budget-gb",
        type=click.FloatRange(min=0),
        default=0.0,
        help="GB of device memory a cell's data may take (the test set and its injected copy first); a "
        "larger training set stays on the host and its minibatches are copied over [default: 0 = half "
        "the GPU's free memory, split between the cells sharing it].",
    ),
    click.option(
        "--deterministic",
        is_flag=True,
        help="Deterministic algorithms, cuDNN and cuBLAS (slower on GPUs; see docs/reproducibility.md).",
    ),
    click.option(
        "--cudnn-benchmark",
        is_flag=True,
        help="Let cuDNN pick convolution kernels by timing them (faster on GPUs, but two runs may "
        "differ in the last bits; recorded in each result; not with --deterministic).",
    ),
    click.option(
        "--executor", default="local", show_default=True, help="How cells are scheduled (see `cobench list executors`)."
    ),
    click.option("--workers", type=click.IntRange(min=1), help="Worker processes for parallel executors."),
    click.option(
        "--cells-per-device",
        type=click.IntRange(min=1),
        help="Cells sharing one GPU (local-parallel, ray); on CPU, cells splitting the cores.",
    ),
    click.option("--ray-address", help="Ray cluster to join (ray executor); a local instance otherwise."),
    click.option(
        "--loggers",
        help="Comma-separated run loggers, e.g. tensorboard,mlflow; name:ARG sets the log dir "
        "or tracking URI (see `cobench list loggers`).",
    ),
    click.option(
        "--executor-param",
        "executor_params",
        multiple=True,
        metavar="NAME=VALUE",
        help="An executor parameter, e.g. partition=gpu for submitit (see `cobench list executors`).",
    ),
)


#: the grid a command runs: a TOML file and/or these flags (shared by `cobench run` and `cobench boundary`)
GRID_OPTIONS = (
    click.argument("grid_file", required=False, type=click.Path(dir_okay=False)),
    click.option("--methods", help="Comma-separated methods, e.g. fgsm,n-fgsm,pgd (see `cobench list methods`)."),
    click.option("--eps", help="Comma-separated eps in /255 units, e.g. 2,4,8."),
    click.option("--injections", help="Comma-separated injections, e.g. none,low-freq."),
    click.option("--beta", "betas", help="Comma-separated injection strengths in /255 units."),
    click.option("--seeds", help="Comma-separated integer seeds, e.g. 0,1,2."),
    click.option("--datasets", "--dataset", "datasets", help="Comma-separated datasets (name or name:ARG)."),
    click.option("--models", "--model", "models", help="Comma-separated models (name or name:ARG)."),
    click.option("--evaluators", help="Comma-separated evaluators, e.g. clean,fgsm,pgd,co."),
    click.option(
        "--protocol", help="Training protocol preset, e.g. co-features, fast-at (see `cobench list protocols`)."
    ),
    click.option("--epochs", type=int),
    click.option("--batch-size", type=int),
    click.option("--lr-max", type=float),
    click.option("--amp", type=click.Choice(AMP_MODES), help="Training-step precision (evaluation is always fp32)."),
    click.option(
        "--stop-after-collapse",
        type=click.IntRange(min=0),
        metavar="P",
        help="End a cell once CO persisted for P epochs (needs the co evaluator; 0 = never, the default).",
    ),
    click.option(
        "--param",
        "params",
        multiple=True,
        metavar="KIND.NAME.PARAM=VALUE",
        help="Override a hyperparameter, e.g. methods.pgd.steps=5 (repeatable).",
    ),
    click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False)),
)

#: the list flags of GRID_OPTIONS and the GridSpec field each sets
_LIST_FLAGS = {
    "methods": "--methods",
    "eps": "--eps",
    "injections": "--injections",
    "betas": "--beta",
    "seeds": "--seeds",
    "datasets": "--datasets",
    "models": "--models",
    "evaluators": "--evaluators",
}
_VALUE_FLAGS = ("protocol", "epochs", "batch_size", "lr_max", "amp", "stop_after_collapse")


def grid_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the grid flags to a click command, which receives the parsed grid as ``spec``
    (a :class:`~cobench.grid.spec.GridSpec`, flags overriding the file) and ``results_dir``."""

    @functools.wraps(command)
    def wrapper(*args: Any, grid_file: str | None, params: tuple[str, ...], results_dir: str, **kwargs: Any) -> Any:
        from cobench.errors import CobenchError
        from cobench.grid.spec import GridSpec, parse_list

        if not results_dir.strip():
            raise CobenchError("--results-dir is empty; name a directory, e.g. --results-dir results")
        spec = GridSpec.from_toml(grid_file) if grid_file else GridSpec()
        values = {field: parse_list(kwargs.pop(field), what=flag) for field, flag in _LIST_FLAGS.items()}
        values.update({field: kwargs.pop(field) for field in _VALUE_FLAGS})
        spec.override(**values)
        if params:  # an unknown component first: a --param naming a valid one would hide it
            from cobench.grid.resolve import check_component_names
            from cobench.plugins import get_plugin_manager

            check_component_names(spec, get_plugin_manager().registry)
        spec.set_params(params)
        return command(*args, spec=spec, results_dir=results_dir, **kwargs)

    for option in reversed(GRID_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def parse_executor_params(assignments: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs, values read as TOML (``4``, ``true``, ``"x"``), else kept as strings."""
    out: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(
                f"{assignment!r}: expected NAME=VALUE, e.g. partition=gpu", param_hint="--executor-param"
            )
        out[name.strip()] = toml_value(raw)
    return out


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the run options to a click command, which receives them as ``options``
    (:class:`RunOptions`), ``executor`` (a name) and ``executor_options`` (its parameters)."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        data_dir: str,
        download: bool,
        device: str,
        channels_last: bool,
        save_models: bool,
        weights_store: str,
        compile_model: bool,
        checkpoints: bool,
        checkpoint_dir: str,
        keep_checkpoints: bool,
        data_budget_gb: float,
        deterministic: bool,
        cudnn_benchmark: bool,
        executor: str,
        workers: int | None,
        cells_per_device: int | None,
        ray_address: str | None,
        loggers: str | None,
        executor_params: tuple[str, ...],
        **kwargs: Any,
    ) -> Any:
        from cobench.errors import CobenchError
        from cobench.grid.spec import parse_list
        from cobench.loggers.tracking import resolve_loggers
        from cobench.plugins import get_plugin_manager
        from cobench.run.device import parse_device

        if not data_dir.strip():
            raise CobenchError("--data-dir is empty; name a directory, e.g. --data-dir data")
        parse_device(device)  # its form, before anything else; availability is checked before training
        if not checkpoints and (keep_checkpoints or checkpoint_dir):
            raise click.UsageError(
                f"{'--keep-checkpoints' if keep_checkpoints else '--checkpoint-dir'} needs "
                "checkpoints, which --no-checkpoints turns off; give one or the other"
            )
        if weights_store and not save_models:
            raise click.UsageError("--weights-store names where --save-models writes weights; add --save-models")
        if deterministic and cudnn_benchmark:
            raise click.UsageError(
                "--cudnn-benchmark picks kernels by timing them, which --deterministic rules out; give one or the other"
            )
        if loggers is not None and not loggers.strip():
            raise CobenchError(
                "--loggers is empty; name run loggers, e.g. --loggers tensorboard "
                "(see `cobench list loggers`), or leave it out"
            )

        if deterministic:  # cuBLAS reads it when it starts: set before any CUDA work here or in workers
            import os

            from cobench.run.device import CUBLAS_WORKSPACE

            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        logger_specs = tuple(resolve_loggers(parse_list(loggers) or [], get_plugin_manager().registry))
        options = RunOptions(
            device=device,
            data_dir=data_dir,
            download=download,
            channels_last=channels_last,
            compile=compile_model,
            checkpoints=checkpoints,
            checkpoint_dir=checkpoint_dir,
            keep_checkpoints=keep_checkpoints,
            loggers=logger_specs,
            save_models=save_models,
            weights_store=weights_store,
            data_budget_gb=data_budget_gb,
            deterministic=deterministic,
            cudnn_benchmark=cudnn_benchmark,
        )
        executor_options = {
            k: v
            for k, v in {"workers": workers, "address": ray_address, "cells_per_device": cells_per_device}.items()
            if v is not None
        }
        executor_options.update(parse_executor_params(executor_params))
        return command(*args, options=options, executor=executor, executor_options=executor_options, **kwargs)

    for option in reversed(RUN_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def report_run(summary: RunSummary, where: str, err: Console, note: str = "") -> int:
    """Print how a grid run went; returns the exit status the command ends with: 130 when it
    was interrupted, 1 when a cell failed (each failure is listed), else 0."""
    err.print(  # one line, never wrapped: a log or a narrow pipe would split it
        f"{summary.ran} cells run, {summary.skipped} already finished, {len(summary.failed)} failed; "
        f"results in {where}/{note}",
        soft_wrap=True,
    )
    if summary.busy:
        holders = Counter(skipped.holder for skipped in summary.busy)
        n = len(summary.busy)
        err.print(
            f"{n} {'cell' if n == 1 else 'cells'} being trained by another run: "
            + ", ".join(f"{holder} ({n})" for holder, n in holders.items())
            + "; run the same command again once it finished to include them",
            markup=False,
            soft_wrap=True,
        )
    if summary.interrupted:
        err.print("[yellow]interrupted: finished cells are saved; run the same command again to resume[/yellow]")
        return 130
    for result in summary.failed:
        err.print(f"[red]failed[/red] {result['cell_id']}: {result['error']['message']}", soft_wrap=True)
    if summary.unsaved:
        err.print(
            f"stopped: {summary.unsaved}; the remaining cells would fail the same way", markup=False, soft_wrap=True
        )
        return 1
    return 1 if summary.failed else 0
