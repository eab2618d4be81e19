"""Verification records: a result whose saved weights were re-evaluated under the leaderboard's
evaluators and reproduced its numbers.

``cobench leaderboard verify`` writes one record per verified result into the leaderboard's
results folder, under ``.verified/<cell_id>.json``; a row is *verified* when every seed's
result has a record that names this result's digest and its weights' hash, so editing the
result or swapping the weights afterwards voids the record. A result without a record whose
weights are not in the local weights store (nor beside it) is *weights not fetched*: nobody here
could have verified it yet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict, cast

from cobench.leaderboard.collect import StoredResult
from cobench.leaderboard.spec import Leaderboard
from cobench.store.records import MachineRecord
from cobench.store.weights import BEST, FINAL, WeightsStore, result_weights, weights_fetched

RECORDS_DIR = ".verified"


class _Record(TypedDict):
    cell_id: str
    result_digest: str | None
    weights_sha256: str
    passed: bool
    tolerance: float
    #: the accuracies compared: as the result reports them, and as re-evaluated
    reported: dict[str, float]
    reevaluated: dict[str, float]
    #: the cobench version and the machine (:func:`cobench.store.provenance.machine_record`) that re-evaluated
    cobench: str
    machine: MachineRecord


class VerificationRecord(_Record, total=False):
    """``.verified/<cell_id>.json`` as written and read; the best epoch's hash only where its weights were saved."""

    best_weights_sha256: str


def record_path(lb: Leaderboard, cell_id: str) -> Path:
    return lb.results_dir / RECORDS_DIR / f"{cell_id}.json"


def read_record(lb: Leaderboard, cell_id: str) -> VerificationRecord | None:
    path = record_path(lb, cell_id)
    try:
        return cast(VerificationRecord, json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return None


#: a record that matches the result but whose re-evaluation did not reproduce it
FAILED = "verification failed"
#: no matching record, and the weights are not in the local store: not verifiable here yet
NOT_FETCHED = "weights not fetched"


def verification_status(lb: Leaderboard, result: StoredResult, store: WeightsStore | None = None) -> str:
    """``verified`` when a passing record matches this result's digest and weights (final and
    best), ``verification failed`` when a matching record did not pass; otherwise ``weights not
    fetched`` when its weights are not in ``store``, else ``unverified`` (without ``store``:
    ``unverified``, whether or not they are fetched)."""
    record = read_record(lb, result.cell_id)
    final, best = result_weights(result.data, FINAL), result_weights(result.data, BEST)
    if (
        record
        and record.get("result_digest") == result.data.get("digest")
        and final is not None
        and record.get("weights_sha256") == final.sha256
        and record.get("best_weights_sha256") == (best.sha256 if best else None)
    ):
        return "verified" if record.get("passed") else FAILED
    if store is not None and final is not None and not weights_fetched(final, result.path, store):
        return NOT_FETCHED
    return "unverified"
