"""Result files: one JSON per cell, written atomically; loading, validation and flat rows.

A result is the unit of resume: a cell whose file exists with ``status == "ok"`` and the
same ``config_hash`` is never run again. Failed cells are recorded too (with the error)
and are retried on the next run.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from . import __version__
from .errors import CobenchError

SCHEMA_VERSION = 1


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, allow_nan=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.item() if obj.numel() == 1 else obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def sanitize(obj: Any) -> Any:
    """Replace NaN/inf by None so result files are strict JSON."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    return obj


def environment(device: torch.device) -> dict[str, Any]:
    env = {
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


def check_writable(results_dir: Path) -> None:
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=results_dir, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise CobenchError(f"results dir {str(results_dir)!r} is not writable: {exc.strerror or exc}") from None


def read_result(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise CobenchError(f"result file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "config" not in data or "status" not in data:
        raise CobenchError(f"result file {str(path)!r} is not a cobench result (no 'config'/'status')")
    return data


def iter_results(results_dir: Path, strict: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every result under ``results_dir``; unreadable files are skipped unless ``strict``."""
    for path in sorted(Path(results_dir).rglob("*.json")):
        if path.name.startswith(".") or path.name in ("summary.json",):
            continue
        try:
            yield path, read_result(path)
        except CobenchError:
            if strict:
                raise


def provenance_columns(result: dict[str, Any]) -> dict[str, Any]:
    """Where the result came from (see :mod:`cobench.provenance`) and its consistency problems, flat."""
    from .consistency import problems

    prov = result.get("provenance") or {}
    method = ((prov.get("components") or {}).get("methods") or {}).get(result["config"]["method"]["name"]) or {}
    machine = prov.get("machine") or {}
    return {
        "method_distribution": method.get("distribution"),
        "method_version": method.get("version"),
        "method_commit": method.get("commit"),
        "cobench_version": (prov.get("cobench") or {}).get("version"),
        "data_fingerprint": (prov.get("data") or {}).get("loaded"),
        "device_name": machine.get("device_name") or (result.get("environment") or {}).get("device_name"),
        "torch": machine.get("torch") or (result.get("environment") or {}).get("torch"),
        "cuda": machine.get("cuda"),
        "problems": "; ".join(problems(result)) or None,
    }


def flat_row(result: dict[str, Any]) -> dict[str, Any]:
    """One flat dict per result, ready for ``pandas.DataFrame``."""
    cfg = result["config"]
    row: dict[str, Any] = {
        "cell_id": result.get("cell_id"),
        "status": result.get("status"),
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        "method": cfg["method"]["name"],
        "eps": cfg["eps"],
        "injection": cfg["injection"]["name"],
        "beta": cfg["beta"],
        "seed": cfg["seed"],
        "epochs": cfg["training"]["epochs"],
    }
    row.update({k: v for k, v in (result.get("metrics") or {}).items() if not isinstance(v, (dict, list))})
    for k, v in (result.get("cost") or {}).items():
        row[f"cost_{k}"] = v
    row["wall_time_s"] = result.get("wall_time_s")
    row.update(provenance_columns(result))
    if result.get("error"):
        row["error"] = result["error"].get("message")
    return row
