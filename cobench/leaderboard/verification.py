"""Verification records: a result whose saved weights were re-evaluated under the leaderboard's
evaluators and reproduced its numbers.

``cobench leaderboard verify`` writes one record per verified result into the leaderboard's
results folder, under ``.verified/<cell_id>.json``; a row is *verified* when every seed's
result has a record that names this result's digest and its weights' hash, so editing the
result or swapping the weights afterwards voids the record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cobench.leaderboard.spec import Leaderboard

RECORDS_DIR = ".verified"


def record_path(lb: Leaderboard, cell_id: str) -> Path:
    return lb.results_dir / RECORDS_DIR / f"{cell_id}.json"


def read_record(lb: Leaderboard, cell_id: str) -> dict[str, Any] | None:
    path = record_path(lb, cell_id)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


#: a record that matches the result but whose re-evaluation did not reproduce it
FAILED = "verification failed"


def verification_status(lb: Leaderboard, path: Path, result: dict[str, Any]) -> str:
    """``verified`` when a passing record matches this result's digest and weights,
    ``verification failed`` when a matching record did not pass, else ``unverified``."""
    record = read_record(lb, result["cell_id"])
    weights = result.get("weights") or {}
    if not (
        record
        and record.get("result_digest") == result.get("digest")
        and weights.get("sha256")
        and record.get("weights_sha256") == weights.get("sha256")
    ):
        return "unverified"
    return "verified" if record.get("passed") else FAILED
