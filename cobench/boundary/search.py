"""Adaptive search for the catastrophic-overfitting boundary over eps (and optionally beta).

The search is a refinement of boxes on a lattice, independent of training: it asks for the
CO outcomes (one 0/1 per seed) of lattice points and decides which points to ask for next.

* A point is *CO* when the fraction of its seeds that collapsed is at least ``min_rate``.
* The coarse pass asks for every point of ``eps x betas``. Adjacent coarse points span boxes
  (intervals when the beta axis has one value).
* A box whose corners disagree (some CO, some not) is split at the midpoints of its sides,
  snapped to the lattice (multiples of ``eps_step`` / ``beta_step``), and the new corners are
  asked for. A box whose corners agree is left alone; a box that cannot be split further
  (its sides are one lattice step wide) brackets the boundary as tightly as the lattice allows.

Nothing assumes CO is monotone in eps: every disagreeing box is refined, so a CO *band*
(collapse at intermediate eps only, as with injected features) has both edges located. What
the search cannot see is a band (or a hole) narrower than the coarse spacing that lies strictly
between two coarse points that agree: choose the coarse spacing below the narrowest feature
you want found.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

Point = tuple[float, float]  # (eps, beta) in /255 units


def snap(value: float, step: float) -> float:
    """``value`` rounded to the nearest multiple of ``step`` (6 decimals, so equal points hash equal)."""
    return float(round(round(value / step) * step, 6))


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (95% for z = 1.96); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Outcome:
    """The CO outcomes of one point: one 0/1 per seed."""

    collapsed: tuple[int, ...]

    @property
    def k(self) -> int:
        return sum(self.collapsed)

    @property
    def n(self) -> int:
        return len(self.collapsed)

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)


@dataclass(frozen=True)
class Box:
    eps: tuple[float, float]
    beta: tuple[float, float]

    def corners(self) -> list[Point]:
        return sorted({(e, b) for e in self.eps for b in self.beta})


@dataclass
class Threshold:
    """The smallest eps at which a line (fixed beta) is CO, with what brackets it."""

    beta: float
    eps: float | None  # None: no evaluated eps was CO
    below: float | None  # the largest evaluated non-CO eps under it (None: CO already at the lowest eps)
    outcome: Outcome | None  # at ``eps``
    below_outcome: Outcome | None
    #: every (lower, upper) eps pair of adjacent evaluated points whose classes differ: band edges
    transitions: list[tuple[float, float]] = field(default_factory=list)


class BoundarySearch:
    """The search state of one plane (dataset, model, method, injection); drive it with
    :meth:`pending` and :meth:`record` until :attr:`done`."""

    def __init__(
        self,
        eps: Iterable[float],
        betas: Iterable[float],
        *,
        min_rate: float = 0.5,
        eps_step: float = 1.0,
        beta_step: float = 1.0,
    ):
        self.eps_step, self.beta_step = eps_step, beta_step
        self.min_rate = min_rate
        coarse_eps = sorted({snap(e, eps_step) for e in eps})
        coarse_betas = sorted({snap(b, beta_step) for b in betas})
        self.outcomes: dict[Point, Outcome] = {}
        self._asked: set[Point] = set()
        self._open: list[Box] = [Box(e, b) for e in _spans(coarse_eps) for b in _spans(coarse_betas)]
        self._queue: list[Point] = [(e, b) for e in coarse_eps for b in coarse_betas]
        self.coarse_points = len(self._queue)

    # ------------------------------------------------------------------ driving
    def pending(self) -> list[Point]:
        """Points to evaluate next (each returned once); empty when waiting or done."""
        out = [p for p in self._queue if p not in self._asked]
        self._asked.update(out)
        self._queue = []
        return out

    def record(self, point: Point, outcome: Outcome) -> None:
        self.outcomes[point] = outcome
        if all(p in self.outcomes for p in self._asked):
            self._refine()

    @property
    def done(self) -> bool:
        return not self._queue and all(p in self.outcomes for p in self._asked)

    def is_co(self, point: Point) -> bool:
        return self.outcomes[point].rate >= self.min_rate

    def _refine(self) -> None:
        still_open: list[Box] = []
        for box in self._open:
            corners = box.corners()
            if len({self.is_co(p) for p in corners}) < 2:
                continue  # agreeing corners: assumed uniform inside (see the module docstring)
            eps_cuts = _cut(box.eps, self.eps_step)
            beta_cuts = _cut(box.beta, self.beta_step)
            if len(eps_cuts) == len(set(box.eps)) and len(beta_cuts) == len(set(box.beta)):
                continue  # one lattice step wide: resolved
            for e in _spans(eps_cuts):
                for b in _spans(beta_cuts):
                    child = Box(e, b)
                    still_open.append(child)
                    self._queue.extend(p for p in child.corners() if p not in self._asked and p not in self._queue)
        self._open = still_open

    # ------------------------------------------------------------------ answers
    @property
    def betas(self) -> list[float]:
        return sorted({b for _, b in self.outcomes})

    def threshold(self, beta: float) -> Threshold:
        line = sorted((e, o) for (e, b), o in self.outcomes.items() if b == beta)
        classes = [(e, o, o.rate >= self.min_rate) for e, o in line]
        transitions = [(a[0], b[0]) for a, b in zip(classes, classes[1:]) if a[2] != b[2]]
        for i, (e, o, co) in enumerate(classes):
            if co:
                below = classes[i - 1] if i else None
                return Threshold(beta, e, below[0] if below else None, o, below[1] if below else None, transitions)
        return Threshold(beta, None, line[-1][0] if line else None, None, line[-1][1] if line else None, transitions)

    def thresholds(self) -> list[Threshold]:
        return [self.threshold(b) for b in self.betas]


def _spans(values: list[float]) -> list[tuple[float, float]]:
    """Adjacent pairs of sorted values; a single value is a degenerate span."""
    if len(values) == 1:
        return [(values[0], values[0])]
    return list(zip(values, values[1:]))


def _cut(span: tuple[float, float], step: float) -> list[float]:
    """The span's ends plus its snapped midpoint when that lies strictly inside."""
    lo, hi = span
    mid = snap((lo + hi) / 2, step)
    return sorted({lo, hi} | ({mid} if lo < mid < hi else set()))


def lattice_size(lo: float, hi: float, step: float) -> int:
    """How many lattice points a dense grid from ``lo`` to ``hi`` at ``step`` holds."""
    return int(round((hi - lo) / step)) + 1
