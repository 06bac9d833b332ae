"""Comparing two samples of timings without assuming a distribution: pure, no I/O.

Used by ``bench/oracle_timing.py`` (effect sizes) and by ``tests/test_timing_oracle.py``
(whether a caller could tell two kinds of callee apart by timing).

- ``mann_whitney``: the Mann-Whitney U test (two-sided, normal approximation with the tie
  correction; fine from ~20 values a side), and the rank-biserial correlation as its effect size
  (0: no tendency, ±1: every value of one sample above every value of the other).
- ``shift``: the Hodges-Lehmann estimate of how much ``a`` is later than ``b`` (the median of
  all pairwise differences): in seconds, robust to the outliers a loaded machine produces.
- ``differ``: the verdict the test uses. Two samples differ when the rank test is sure
  (p < ``alpha``) **and** the shift is larger than a tolerance derived from the spread: a
  fraction of the pooled median. Either alone misleads on a shared 2-core machine: with
  hundreds of values a 1 % drift between the halves of a run is "significant", and without the
  rank test one slow burst moves a median.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: How sure the rank test must be before a difference counts.
ALPHA = 1e-3
#: The largest shift that is taken for noise, as a fraction of the pooled median.
RELATIVE_TOLERANCE = 0.1


@dataclass(frozen=True, slots=True)
class Comparison:
    median_a: float
    median_b: float
    #: Hodges-Lehmann: a typical (a - b).
    shift: float
    u: float
    p: float
    #: Rank-biserial correlation, in [-1, 1]; positive when ``a`` tends to be larger.
    effect: float
    tolerance: float

    @property
    def differ(self) -> bool:
        return self.p < ALPHA and abs(self.shift) > self.tolerance


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """U of ``a``, the two-sided p-value, and the rank-biserial effect size."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need values")
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    rank_sum_a = sum(r for r, (_, side) in zip(ranks, pooled, strict=True) if side == 0)
    u = rank_sum_a - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    mean = n1 * n2 / 2
    if variance <= 0:
        return u, 1.0, 0.0
    z = (abs(u - mean) - 0.5) / math.sqrt(variance)
    p = math.erfc(max(z, 0.0) / math.sqrt(2))
    return u, min(1.0, p), 2 * u / (n1 * n2) - 1


def shift(a: Sequence[float], b: Sequence[float]) -> float:
    """The Hodges-Lehmann estimate of the shift of ``a`` over ``b``."""
    return statistics.median([x - y for x in a for y in b])


def compare(
    a: Sequence[float], b: Sequence[float], relative_tolerance: float = RELATIVE_TOLERANCE
) -> Comparison:
    u, p, effect = mann_whitney(a, b)
    return Comparison(
        median_a=statistics.median(a),
        median_b=statistics.median(b),
        shift=shift(a, b),
        u=u,
        p=p,
        effect=effect,
        tolerance=relative_tolerance * statistics.median([*a, *b]),
    )
