"""Thresholds of the checker's remainder reading, each pinned from its stated definition
on crafted inputs (no function is evaluated):

* the roundoff floor is raised to the noise seen at the tiniest steps only when that tail
  is erratic: local orders spread by more than 0.5 (``TAIL_SCATTER``); a tail whose orders
  agree is a signal (a jump or a kink) and leaves the floor alone;
* remainders at the floor up to some step and rising abruptly beyond say ``linear`` only
  if the curvature a smooth ``f`` could hide there is at most 1 (``KAPPA_ABRUPT``);
* the order fit is the least-squares slope of log r against log h, from two points on.
"""

import math

import numpy as np
import pytest

from jaxrelu.checker import Cause, Evidence, Pattern, Slope, SlopeTests, Verdict, decide
from jaxrelu.checker.remainders import RemainderEvidence, fit_order, roundoff_floor

EPS = 2.0**-52
H = 2.0 ** -np.arange(60)  # 1 .. 2^-59: the last steps are below 1e-2 sqrt(eps)
TINY = H <= 1e-2 * math.sqrt(EPS)


def _tail(orders):
    """Remainders 1e-10 at the first tiny step, then following the given local orders
    (one per halving) over the tiny steps; 1e-10 everywhere above."""
    r = np.full(len(H), 1e-10)
    first = int(np.argmax(TINY))
    for k, p in enumerate(orders):
        r[first + k + 1] = r[first + k] * 2.0**-p
    return r[: first + len(orders) + 1], H[: first + len(orders) + 1]


@pytest.mark.parametrize(
    "orders, raised",
    [
        ([0.0, 0.0, 0.0], False),  # a constant tail (a jump): signal
        ([1.0, 1.0, 1.0], False),  # halving with h (a kink): signal
        ([0.0, 0.4, 0.0], False),  # spread 0.4 <= 0.5: still signal
        ([0.0, 0.75, 0.0], True),  # spread 0.75 > 0.5: noise, the floor is raised
        ([1.0, -1.0, 1.0], True),
    ],
)
def test_floor_raised_only_by_an_erratic_tail(orders, raised):
    r, h = _tail(orders)
    mag = np.full(len(h), 1.0)  # base floor 4 eps = 8.9e-16, far below r
    floor = roundoff_floor(h, r, mag, EPS)
    base = 4 * EPS
    assert np.all(floor >= base)
    assert bool(np.any(floor > base)) is raised


def _rise(kappa, n_flat):
    return RemainderEvidence(Pattern.FLAT_THEN_RISE, 1.0, (0, 1, 2), (1.0, 1.0), n_flat, 1e-6,
                             kappa)  # fmt: skip


def _evidence(rem, **kw):
    one = Slope(np.array([1.0]), 1e-9, 1e-3)
    ad = np.array([1.0])
    return Evidence(rem, ad, True, one, one, SlopeTests.of(ad, one, one, EPS), eps=EPS, **kw)


@pytest.mark.parametrize(
    "kappa, n_flat, verdict",
    [
        (0.5, 3, Verdict.LINEAR),
        (1.0, 3, Verdict.LINEAR),  # at the bound
        (1.5, 3, Verdict.INCONCLUSIVE),  # a smooth f could hide curvature 1.5
        (0.5, 2, Verdict.INCONCLUSIVE),  # too few flat steps
    ],
)
def test_flat_then_abrupt_rise(kappa, n_flat, verdict):
    v, c = decide(_evidence(_rise(kappa, n_flat)))
    assert v is verdict
    if v is Verdict.INCONCLUSIVE:
        assert c is Cause.RISE_TOO_COARSE


@pytest.mark.parametrize("p", [0.0, 1.0, 2.0])
def test_order_fit_from_two_points_on(p):
    h = np.array([1.0, 0.5])
    assert fit_order(h, 3.0 * h**p) == pytest.approx(p, abs=1e-12)
    h3 = np.array([1.0, 0.5, 0.25])
    assert fit_order(h3, 3.0 * h3**p) == pytest.approx(p, abs=1e-12)
    assert math.isnan(fit_order(h[:1], h[:1]))
