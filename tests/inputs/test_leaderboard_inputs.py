"""A leaderboard's rank_by naming a metric its results do not report is an error naming it
and the metrics they do report, not a silent fall-back to another ranking (issue 21)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cobench.leaderboard.collect import ProtocolError, StoredResult
from cobench.leaderboard.rank import check_metrics

#: (rank_by, metrics, metrics the results report, words of the error or None when accepted)
CASES = [
    (("autoattack_acc", "pgd_acc"), (), {"clean_acc", "pgd_acc"}, None),  # the default, without AutoAttack
    (("pgd_acc",), ("noise_acc",), {"pgd_acc", "noise_acc"}, None),
    (("pgd_accc", "pgd_acc"), (), {"clean_acc", "pgd_acc"}, ["rank_by pgd_accc reported by none", "pgd_acc"]),
    (("noise_acc",), (), {"clean_acc", "pgd_acc"}, ["rank_by noise_acc reported by none", "clean_acc, pgd_acc"]),
    (("autoattack_acc", "pgd_acc"), (), {"clean_acc", "noise_acc"}, None),  # the defaults may be absent: no ranks
    (("pgd_acc",), ("noise_acc",), {"pgd_acc"}, ["metrics noise_acc reported by none"]),
]


@pytest.mark.parametrize("rank_by, metrics, reported, words", CASES, ids=[",".join(c[0]) for c in CASES])
def test_rank_by_and_metrics_must_be_reported(rank_by, metrics, reported, words):
    lb = SimpleNamespace(path=Path("board.toml"), rank_by=rank_by, metrics=metrics)
    coll = SimpleNamespace(ok=[StoredResult(Path("r.json"), {"metrics": {m: 0.5 for m in reported}})])
    if words is None:
        check_metrics(lb, coll)
        return
    with pytest.raises(ProtocolError) as info:
        check_metrics(lb, coll)
    assert all(w in info.value.message for w in ["board.toml", *words]), info.value.message
