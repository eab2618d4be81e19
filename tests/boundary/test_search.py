"""The boundary search's logic on synthetic CO oracles (no training): thresholds, bands, seeds,
the 2-D refinement, and agreement with the dense grid at the same resolution."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cobench.boundary.search import BoundarySearch, Outcome, lattice_size, snap, wilson_interval

Oracle = Callable[[float, float, int], bool]  # (eps, beta, seed) -> collapsed


def drive(search: BoundarySearch, oracle: Oracle, seeds: int = 1) -> int:
    """Run the search to the end against ``oracle``; returns how many points it evaluated."""
    evaluated = 0
    while not search.done:
        batch = search.pending()
        assert batch, "a search that is not done must ask for points"
        for eps, beta in batch:
            search.record((eps, beta), Outcome(tuple(int(oracle(eps, beta, s)) for s in range(seeds))))
        evaluated += len(batch)
    return evaluated


def dense(eps_lo: float, eps_hi: float, betas: list[float], oracle: Oracle, seeds: int = 1, **kw) -> BoundarySearch:
    """Every lattice point evaluated: the reference answer the adaptive search must reproduce."""
    step = kw.get("eps_step", 1.0)
    search = BoundarySearch([eps_lo + i * step for i in range(lattice_size(eps_lo, eps_hi, step))], betas, **kw)
    drive(search, oracle, seeds)
    return search


def test_monotone_threshold_is_bracketed_at_the_lattice_step():
    search = BoundarySearch(range(0, 41, 8), [0], eps_step=1)
    evaluated = drive(search, lambda e, b, s: e >= 13)
    (t,) = search.thresholds()
    assert (t.below, t.eps) == (12.0, 13.0) and t.transitions == [(12.0, 13.0)]
    assert evaluated < lattice_size(0, 40, 1) / 3
    ref = dense(0, 40, [0], lambda e, b, s: e >= 13).thresholds()[0]
    assert (ref.below, ref.eps, ref.transitions) == (t.below, t.eps, t.transitions)


def test_a_band_has_both_edges_located_without_assuming_monotonicity():
    band = lambda e, b, s: 10 <= e <= 20  # noqa: E731
    search = BoundarySearch(range(0, 41, 8), [0], eps_step=1)
    drive(search, band)
    (t,) = search.thresholds()
    assert (t.below, t.eps) == (9.0, 10.0)
    assert t.transitions == [(9.0, 10.0), (20.0, 21.0)]
    assert dense(0, 40, [0], band).thresholds()[0].transitions == t.transitions


def test_a_band_between_two_agreeing_coarse_points_is_missed_as_documented():
    search = BoundarySearch([0, 16, 32], [0], eps_step=1)
    drive(search, lambda e, b, s: 4 <= e <= 8)
    assert search.thresholds()[0].eps is None


def test_seed_rate_threshold_and_confidence_interval():
    # seed s collapses from eps 12 + 2s: 3 seeds, CO when at least 2 of them collapse -> eps 14
    oracle = lambda e, b, s: e >= 12 + 2 * s  # noqa: E731
    search = BoundarySearch(range(0, 33, 8), [0], eps_step=1, min_rate=2 / 3)
    drive(search, oracle, seeds=3)
    (t,) = search.thresholds()
    assert (t.below, t.eps) == (13.0, 14.0)
    assert (t.outcome.k, t.outcome.n, t.below_outcome.k) == (2, 3, 1)
    lo, hi = t.outcome.interval
    assert lo < 2 / 3 < hi and (lo, hi) == pytest.approx((0.2077, 0.9385), abs=1e-4)


def test_wilson_interval_limits():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)


def test_no_co_anywhere_and_co_everywhere():
    never = BoundarySearch(range(0, 17, 8), [0])
    assert drive(never, lambda e, b, s: False) == 3
    assert never.thresholds()[0].eps is None and never.thresholds()[0].below == 16.0
    always = BoundarySearch(range(0, 17, 8), [0])
    drive(always, lambda e, b, s: True)
    t = always.thresholds()[0]
    assert t.eps == 0.0 and t.below is None


def test_two_dimensional_refinement_follows_the_boundary():
    # CO when eps >= 30 - beta: the threshold falls by one eps per unit of beta
    oracle = lambda e, b, s: e >= 30 - b  # noqa: E731
    search = BoundarySearch(range(0, 41, 10), range(0, 21, 10), eps_step=1, beta_step=1)
    evaluated = drive(search, oracle)
    found = {t.beta: (t.below, t.eps) for t in search.thresholds()}
    for beta in (0.0, 10.0, 20.0):  # the coarse rows are resolved to the lattice step
        assert found[beta] == (29 - beta, 30 - beta)
    for beta, (below, eps) in found.items():  # every row's bracket contains the true threshold
        assert (below is None or below < 30 - beta) and eps >= 30 - beta
    assert evaluated < lattice_size(0, 40, 1) * lattice_size(0, 20, 1) / 4


def test_points_are_asked_once_and_snapped_to_the_lattice():
    search = BoundarySearch([0, 7], [0], eps_step=2)
    asked: list[tuple[float, float]] = []
    while not search.done:
        batch = search.pending()
        asked.extend(batch)
        for p in batch:
            search.record(p, Outcome((int(p[0] >= 3),)))
    assert len(asked) == len(set(asked))
    assert all(e % 2 == 0 for e, _ in asked) and snap(7, 2) == 8.0
