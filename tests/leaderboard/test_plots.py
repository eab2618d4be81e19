"""Plot helpers: the CO boundary drawn on eps x beta heatmaps and the choice of curve panels."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from cobench.leaderboard.collect import StoredResult
from cobench.leaderboard.render.plots import co_boundary_segments, curve_panels
from cobench.leaderboard.render.text import robust_metric

nan = math.nan


def test_boundary_segments_separate_co_from_no_co_cells():
    # rows = eps (low to high), columns = beta; CO (>= 0.5) in the upper-right corner
    co = [[0.0, 0.0, 0.0], [0.0, 1.0, 0.5], [nan, 1.0, 1.0]]
    segs = set(co_boundary_segments(co))
    assert segs == {
        ((0.5, 0.5), (0.5, 1.5)),  # between (row 1, col 0) and (row 1, col 1)
        ((0.5, 0.5), (1.5, 0.5)),  # below (row 1, col 1)
        ((1.5, 0.5), (2.5, 0.5)),  # below (row 1, col 2)
    }  # the missing cell (row 2, col 0) draws nothing


def test_boundary_segments_of_a_band_have_both_edges():
    co = [[0.0], [1.0], [1.0], [0.0]]
    assert co_boundary_segments(co) == [((-0.5, 0.5), (0.5, 0.5)), ((-0.5, 2.5), (0.5, 2.5))]


def test_curve_panels_follow_the_recorded_curves():
    plain = {"curves": {"probe_pgd_acc": [0.1], "probe_fgsm_acc": [0.2], "train_loss": [1.0], "train_acc": [0.5]}}
    titles = [p[0] for p in curve_panels([StoredResult(Path("a.json"), plain)])]
    assert titles == ["robust probe accuracy (%)", "clean accuracy (%)", "training loss"]
    analysed = {"curves": {**plain["curves"], "probe_grad_align": [0.9], "probe_lle_llr": [0.01]}}
    titles = [p[0] for p in curve_panels([StoredResult(Path("a.json"), plain), StoredResult(Path("b.json"), analysed)])]
    assert titles[-2:] == ["gradient alignment", "local linearity error"]


def test_the_figures_draw_the_robust_accuracy_the_board_ranks_by_or_reports():
    def row(**means: float) -> SimpleNamespace:
        return SimpleNamespace(mean=means.get)

    rows = [row(pgd50_10_acc=0.2, clean_acc=0.5)]
    board = SimpleNamespace(rank_metric="pgd50_10_acc", rows=rows)
    assert robust_metric(board) == "pgd50_10_acc"  # was pgd_acc, which such a board has not: empty plots
    assert robust_metric(SimpleNamespace(rank_metric="clean_acc", rows=rows)) == "pgd50_10_acc"
    both = [row(pgd50_10_acc=0.2, clean_acc=0.5, autoattack_acc=0.1)]
    assert robust_metric(SimpleNamespace(rank_metric="clean_acc", rows=both)) == "autoattack_acc"
    assert robust_metric(SimpleNamespace(rank_metric=None, rows=[])) == "pgd_acc"
