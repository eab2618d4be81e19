"""Validate result files against ``result.schema.json`` before they enter a leaderboard.

Third parties submit results by dropping files into a leaderboard's results folder, so
every file is checked first; one malformed file aborts the whole render with a message
naming the file and what is wrong, so a table is never half-rendered.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ..errors import CobenchError
from ..grid import Cell
from ..results import SCHEMA_VERSION

SCHEMA_FILE = "result.schema.json"
#: files under a results folder that are not results (written by ``cobench run``)
NOT_RESULTS = {"summary.json"}


class ResultValidationError(CobenchError):
    """A result file that is not valid JSON or does not match the result schema."""


@lru_cache(maxsize=1)
def result_schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(result_schema())


def describe(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"at {where}: {error.message}"


def schema_errors(data: Any, limit: int = 3) -> list[str]:
    """Up to ``limit`` readable schema violations of ``data`` (empty when it is valid)."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [describe(e) for e in errors[:limit]]


def validate_result(data: Any, source: str | Path) -> dict[str, Any]:
    """``data`` if it is a schema-valid result, else raise naming ``source`` and the violations."""
    if isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION):
        raise ResultValidationError(
            f"result file {str(source)!r} has schema_version {data['schema_version']!r}; "
            f"this cobench reads schema_version {SCHEMA_VERSION}")
    problems = schema_errors(data)
    if problems:
        total = sum(1 for _ in _validator().iter_errors(data))
        more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
        raise ResultValidationError(
            f"result file {str(source)!r} does not match the cobench result schema "
            f"(cobench/leaderboard/{SCHEMA_FILE}): " + "; ".join(problems) + more)
    if data["config_hash"] != data["cell_id"]:
        raise ResultValidationError(f"result file {str(source)!r}: config_hash {data['config_hash']!r} "
                                    f"differs from cell_id {data['cell_id']!r}")
    expected = Cell.from_config(data["config"]).cell_id
    if data["cell_id"] != expected:
        raise ResultValidationError(
            f"result file {str(source)!r}: cell_id {data['cell_id']!r} is not the hash of its config "
            f"({expected!r}); the config was edited after the run, or the file was not written by cobench")
    if data["seed"] != data["config"]["seed"]:
        raise ResultValidationError(f"result file {str(source)!r}: seed {data['seed']} differs from config.seed "
                                    f"{data['config']['seed']}")
    return data


def read_and_validate(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ResultValidationError(f"result file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultValidationError(f"result file {str(path)!r} is not valid JSON: {exc}") from None
    return validate_result(data, path)


def result_files(results_dir: Path) -> list[Path]:
    """Every result file under ``results_dir``, sorted (hidden files and summaries skipped)."""
    return sorted(p for p in Path(results_dir).rglob("*.json")
                  if not any(part.startswith(".") for part in p.relative_to(results_dir).parts)
                  and p.name not in NOT_RESULTS)


def load_results(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every result under ``results_dir``, each schema-validated; the first bad file raises."""
    return [(p, read_and_validate(p)) for p in result_files(results_dir)]
