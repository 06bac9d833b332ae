"""The rank test the timing-oracle test and bench rely on (``bench/rank_test.py``), against
values worked out by hand and textbook cases."""

from __future__ import annotations

import math
import random

import pytest

from bench.rank_test import compare, mann_whitney, shift


@pytest.mark.parametrize(
    ("a", "b", "u", "effect"),
    [
        ([1, 2, 3], [4, 5, 6], 0, -1.0),  # every a below every b
        ([4, 5, 6], [1, 2, 3], 9, 1.0),
        ([1, 3, 5], [2, 4, 6], 3, -1 / 3),  # a beats b in 3 of 9 pairs
        ([1, 2], [1, 2], 2, 0.0),  # ties count half
    ],
)
def test_u_and_effect_size(a: list[float], b: list[float], u: float, effect: float) -> None:
    got_u, p, got_effect = mann_whitney(a, b)
    assert got_u == u
    assert math.isclose(got_effect, effect, abs_tol=1e-12)
    assert 0 <= p <= 1


def test_p_value_of_a_known_case() -> None:
    # a = 0..9, b = 8..17: a is above b in one pair (9 > 8) and ties it in two: U = 2.
    a = [float(x) for x in range(10)]
    b = [float(x) for x in range(8, 18)]
    u, p, _ = mann_whitney(a, b)
    assert u == 2
    z = (abs(u - 50) - 0.5) / math.sqrt(_variance(a, b))
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert p == pytest.approx(0.000326, rel=0.01)  # z = 3.593


def _variance(a: list[float], b: list[float]) -> float:
    n1, n2, n = len(a), len(b), len(a) + len(b)
    counts: dict[float, int] = {}
    for x in (*a, *b):
        counts[x] = counts.get(x, 0) + 1
    ties = sum(t**3 - t for t in counts.values())
    return n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))


def test_shift_is_the_median_pairwise_difference() -> None:
    assert shift([10, 11, 12], [1, 2, 3]) == 9
    assert shift([1.0, 2.0, 100.0], [1.0, 2.0, 3.0]) == 0.0  # one outlier moves nothing


def test_a_shift_beyond_the_tolerance_differs_and_noise_does_not() -> None:
    rng = random.Random(1)
    base = [1e-3 * rng.lognormvariate(0, 0.3) for _ in range(300)]
    same = [1e-3 * rng.lognormvariate(0, 0.3) for _ in range(300)]
    later = [x + 2e-4 for x in same]  # 20 % of the median later
    assert not compare(base, same).differ
    verdict = compare(later, base)
    assert verdict.differ and verdict.p < 1e-6 and verdict.effect > 0
    # A tiny but consistent shift: the rank test is sure, the size is below the tolerance.
    tiny = compare([x + 1e-5 for x in base], base)
    assert not tiny.differ
