"""Result files, the one owner of their layout: one JSON file per cell, written atomically;
listing, reading and validating them; the failed result; flat rows and the run summary.

A result is the unit of resume: a cell whose file exists with ``status == "ok"`` and the
same ``config_hash`` is never run again. Failed cells are recorded too (with the error)
and are retried on the next run. Every file cobench writes (results, summaries, rendered
leaderboards) goes through :func:`write_atomic`: readers see the old file or the new one,
never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from cobench import __version__
from cobench.atomic import write_atomic
from cobench.errors import CobenchError, ConfigError
from cobench.grid.cell import CELL_FIELDS, COMPONENT_FIELDS, Cell
from cobench.store.records import EnvironmentRecord, FlatRow, ResultHeader, ResultRecord, as_record

SCHEMA_VERSION = 1
#: the JSON schema every result file follows, shipped inside the package
SCHEMA_FILE = "result.schema.json"
#: files ``cobench run`` writes beside the results that are not results
SUMMARY_FILES = ("summary.json", "summary.csv")


class ResultValidationError(CobenchError):
    """A result file that cannot be read, is not valid JSON or does not match the result schema."""


# --------------------------------------------------------------------------- writing
def write_json(path: Path, data: Mapping[str, object]) -> None:
    """``data`` (any JSON object: a result, a summary, a rendered board) as strict, sorted, indented
    JSON (tensors and numpy scalars become numbers)."""
    write_atomic(path, json_text(data))


def json_text(data: Any) -> str:
    """``data`` as write_json writes it."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def csv_text(rows: Sequence[FlatRow]) -> str:
    """``rows`` as CSV, with the union of their keys as columns (in first-seen order)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_summary(results_dir: Path, rows: Sequence[FlatRow]) -> None:
    """summary.json and summary.csv of the grid just run (every cell, flat columns)."""
    if not rows:
        return
    write_json(results_dir / "summary.json", {"cells": rows})
    write_atomic(results_dir / "summary.csv", csv_text(rows))


def check_writable(results_dir: Path, what: str = "results dir") -> None:
    """``results_dir`` exists (or is made) and takes a file; else one line naming it as ``what``."""
    if results_dir.exists() and not results_dir.is_dir():
        raise CobenchError(f"{what} {str(results_dir)!r} is not writable: it is a file, not a directory")
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=results_dir, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise CobenchError(f"{what} {str(results_dir)!r} is not writable: {exc.strerror or exc}") from None


#: files cobench keeps beside or under results, by suffix: never an output path
PROTECTED_SUFFIXES = {".pt": "checkpoint", ".safetensors": "weights", ".claim": "claim"}


def check_output_path(output: str | Path, option: str = "-o", results_dir: str | Path | None = None) -> Path:
    """The file an ``-o``/``--plot`` option may write, checked before any work is done: not a
    directory, not a result, checkpoint, weights or claim file (anywhere), not a path that a
    listing of ``results_dir`` would read as a result, and in a directory that can be written.
    Every command that writes a report goes through this one check (then :func:`write_output`)."""
    path = Path(output)
    if not str(output).strip():
        raise CobenchError(f"{option} is empty; name a file, e.g. {option} table.csv")
    if path.is_dir():
        raise CobenchError(f"{option} {str(path)!r} is a directory; name a file in it, e.g. {path / 'table.csv'}")
    if path.suffix in PROTECTED_SUFFIXES and path.exists():
        raise CobenchError(
            f"{option} {str(path)!r} is a cobench {PROTECTED_SUFFIXES[path.suffix]} file; writing "
            "there would destroy it: name another file"
        )
    if path.is_file() and _is_result(path):
        raise CobenchError(
            f"{option} {str(path)!r} is a cobench result file; writing there would destroy the "
            "result: name another file"
        )
    if results_dir is not None and Path(results_dir).is_dir() and _listed_as_result(path, Path(results_dir)):
        raise CobenchError(
            f"{option} {str(path)!r} is inside the results directory {str(results_dir)!r}, where "
            "every .json file is read as a result; write it elsewhere or use another extension"
        )
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise CobenchError(f"{option} {str(path)!r}: {str(parent)!r} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CobenchError(f"{option} {str(path)!r}: directory {str(parent)!r} is not writable")
    return path


def write_output(path: Path, data: str | bytes, option: str = "-o") -> None:
    """Write a checked output file atomically; a failure is one line naming ``path``."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise CobenchError(f"{option} {str(path)!r} could not be written: {exc.strerror or exc}") from None


def _is_result(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(50_000_000))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "config" in data and ("cell_id" in data or "status" in data)


def _listed_as_result(path: Path, results_dir: Path) -> bool:
    try:
        rel = path.resolve().relative_to(results_dir.resolve())
    except ValueError:
        return False
    return (
        path.suffix == ".json" and rel.name not in SUMMARY_FILES and not any(part.startswith(".") for part in rel.parts)
    )


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


# --------------------------------------------------------------------------- making results
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def result_header(cell: Cell, started_at: str) -> ResultHeader:
    """The fields every result of ``cell`` starts with: its identity and config."""
    return {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cell.cell_id,
        "config_hash": cell.cell_id,
        "config": cell.config(),
        "seed": cell.seed,
        "started_at": started_at,
    }


def failed_result(cell: Cell, exc: BaseException, message: str, started_at: str | None = None) -> ResultRecord:
    """A ``failed`` result of ``cell``: recorded, shown to the user, and retried on the next run."""
    started_at = started_at or now()
    return {
        **result_header(cell, started_at),
        "status": "failed",
        "finished_at": now(),
        "error": {
            "type": type(exc).__name__,
            "message": message,
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        },
    }


def sanitize(obj: Any) -> Any:
    """Replace NaN/inf by None so result files are strict JSON."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    return obj


def environment(device: torch.device) -> EnvironmentRecord:
    env: EnvironmentRecord = {
        "cobench": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "num_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


# --------------------------------------------------------------------------- finding and reading
def result_path(results_dir: Path, cell: Cell) -> Path:
    return Path(results_dir) / cell.filename()


def result_files(results_dir: Path) -> list[Path]:
    """Every result file under ``results_dir``, sorted (hidden files and folders and summaries skipped)."""
    results_dir = Path(results_dir)
    return sorted(
        p
        for p in results_dir.rglob("*.json")
        if not any(part.startswith(".") for part in p.relative_to(results_dir).parts) and p.name not in SUMMARY_FILES
    )


def read_result(path: Path, validate: bool = False) -> dict[str, Any]:
    """The result stored at ``path``; ``validate`` checks it against the schema and its own hash.

    Raises :class:`ResultValidationError` naming the file when it cannot be read, is not
    JSON, or is not a (valid) cobench result.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultValidationError(f"result file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ResultValidationError(f"result file {str(path)!r} is not UTF-8 text: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultValidationError(f"result file {str(path)!r} is not valid JSON: {exc}") from None
    if validate:
        return validate_result(data, path)
    if not isinstance(data, dict) or "config" not in data or "status" not in data:
        raise ResultValidationError(f"result file {str(path)!r} is not a cobench result (no 'config'/'status')")
    config = data["config"]
    missing = [f for f in CELL_FIELDS if not isinstance(config, dict) or f not in config]
    if missing or not all(isinstance(config[k], dict) and "name" in config[k] for k in COMPONENT_FIELDS):
        raise ResultValidationError(
            f"result file {str(path)!r} is not a cobench result of this schema: its config "
            + (f"lacks {', '.join(missing)}" if missing else "names no component")
        )
    check_schema_version(data, path)
    problems = schema_errors(data, lenient=True)
    if problems:
        raise ResultValidationError(
            f"result file {str(path)!r} has a malformed field (cobench/{SCHEMA_FILE}): " + "; ".join(problems)
        )
    return data


def iter_results(
    results_dir: Path, strict: bool = False, validate: bool = False, warn: Callable[[str], None] | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every result under ``results_dir``; unreadable files are skipped (``warn`` is told why,
    naming the file) unless ``strict``, which raises."""
    for path in result_files(results_dir):
        try:
            yield path, read_result(path, validate=validate)
        except ResultValidationError as exc:
            if strict:
                raise
            if warn is not None:
                warn(f"skipped: {exc.message}")


def finished_result(results_dir: Path, cell: Cell) -> ResultRecord | None:
    """The stored result if ``cell`` already finished successfully with the same config (a file
    this cobench reads as a result, with ``status`` ok and the cell's hash: a result it wrote)."""
    path = result_path(results_dir, cell)
    if not path.exists():
        return None
    try:
        data = read_result(path)
    except ResultValidationError:
        return None  # a corrupt or foreign file is redone, not trusted
    if data.get("status") == "ok" and data.get("config_hash") == cell.cell_id:
        return as_record(data)
    return None


# --------------------------------------------------------------------------- validation
@lru_cache(maxsize=1)
def result_schema() -> dict[str, Any]:
    from jsonschema import Draft202012Validator

    schema = json.loads(resources.files(__package__).joinpath(SCHEMA_FILE).read_text())
    Draft202012Validator.check_schema(schema)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(result_schema())


def schema_errors(data: Any, limit: int = 3, lenient: bool = False) -> list[str]:
    """Up to ``limit`` readable schema violations of ``data`` (empty when it is valid).

    ``lenient`` (reading a results folder, not admitting a result to a leaderboard) checks the
    type and range of every field present but tolerates missing ones and empty lists (an older
    or a failed result without curves or cost is still listed)."""
    errors = [e for e in _validator().iter_errors(data) if not (lenient and e.validator in ("required", "minItems"))]
    errors.sort(key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"at {'/'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}" for e in errors[:limit]]


def check_schema_version(data: Any, source: str | Path) -> None:
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ResultValidationError(
            f"result file {str(source)!r} has schema_version {data['schema_version']!r}; "
            f"this cobench reads schema_version {SCHEMA_VERSION}"
        )


def validate_result(data: Any, source: str | Path) -> dict[str, Any]:
    """``data`` if it is a schema-valid result whose id is the hash of its config, else raise
    naming ``source`` and the violations."""
    check_schema_version(data, source)
    problems = schema_errors(data)
    if problems:
        total = sum(1 for _ in _validator().iter_errors(data))
        more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
        raise ResultValidationError(
            f"result file {str(source)!r} does not match the cobench result schema "
            f"(cobench/{SCHEMA_FILE}): " + "; ".join(problems) + more
        )
    if data["config_hash"] != data["cell_id"]:
        raise ResultValidationError(
            f"result file {str(source)!r}: config_hash {data['config_hash']!r} differs from cell_id {data['cell_id']!r}"
        )
    try:
        expected = Cell.from_config(data["config"]).cell_id
    except (TypeError, ConfigError) as exc:  # a training setting this cobench does not have, say
        raise ResultValidationError(
            f"result file {str(source)!r}: its config is not one this cobench can read as a cell: {exc}"
        ) from None
    if data["cell_id"] != expected:
        raise ResultValidationError(
            f"result file {str(source)!r}: cell_id {data['cell_id']!r} is not the hash of its config "
            f"({expected!r}); the config was edited after the run, or the file was not written by cobench"
        )
    if data["seed"] != data["config"]["seed"]:
        raise ResultValidationError(
            f"result file {str(source)!r}: seed {data['seed']} differs from config.seed {data['config']['seed']}"
        )
    return data


# --------------------------------------------------------------------------- consistency
def result_problems(result: dict[str, Any]) -> list[str]:
    """What a read result contradicts in itself (see :mod:`cobench.store.consistency`); empty when consistent."""
    from cobench.store.consistency import problems

    return problems(result)


# --------------------------------------------------------------------------- rows
def provenance_columns(result: dict[str, Any]) -> FlatRow:
    """Where the result came from (see :mod:`cobench.store.provenance`) and its consistency problems, flat."""
    prov = result.get("provenance") or {}
    method = ((prov.get("components") or {}).get("methods") or {}).get(result["config"]["method"]["name"]) or {}
    machine = prov.get("machine") or {}
    env = result.get("environment") or {}
    return {
        "method_distribution": method.get("distribution"),
        "method_version": method.get("version"),
        "method_commit": method.get("commit"),
        "cobench_version": (prov.get("cobench") or {}).get("version"),
        "data_fingerprint": (prov.get("data") or {}).get("loaded"),
        "device_name": machine.get("device_name") or env.get("device_name"),
        "torch": machine.get("torch") or env.get("torch"),
        "cuda": machine.get("cuda"),
        # how the cell was run: times per step taken while K cells shared a device are not comparable
        # with times of a cell that had it alone (None: recorded before cobench recorded it)
        "executor": (prov.get("execution") or {}).get("executor"),
        "cells_per_device": (prov.get("execution") or {}).get("cells_per_device"),
        "problems": "; ".join(result_problems(result)) or None,
    }


def flat_row(result: dict[str, Any]) -> FlatRow:
    """One flat dict per result (as read from its file), ready for ``pandas.DataFrame``."""
    cfg = result["config"]
    row: FlatRow = {
        "cell_id": result.get("cell_id"),
        "status": result.get("status"),
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        "method": cfg["method"]["name"],
        "eps": cfg["eps"],
        "injection": cfg["injection"]["name"],
        "beta": cfg["beta"],
        "seed": cfg["seed"],
        "epochs": cfg["training"].get("epochs"),
    }
    row.update({k: v for k, v in (result.get("metrics") or {}).items() if not isinstance(v, (dict, list))})
    for k, v in (result.get("cost") or {}).items():
        row[f"cost_{k}"] = v
    row["wall_time_s"] = result.get("wall_time_s")
    row.update(provenance_columns(result))
    if result.get("error"):
        row["error"] = result["error"].get("message")
    return row
