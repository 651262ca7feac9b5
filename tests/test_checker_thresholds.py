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
        # falling at every halving (>= 0.9), faster than h at the smallest (>= 1.5): the
        # truncation of a steep smooth f (tanh(1e12 x) in float64), not noise
        ([1.0, 2.0, 3.0], False),
        ([0.9, 3.0, 1.5], False),  # both bounds met exactly
        ([0.85, 3.0, 3.0], True),  # one halving that does not fall enough
        ([1.0, 3.0, 1.4], True),  # the smallest steps fall too slowly
        ([1.0, 2.0], True),  # two halvings: too few to tell truncation from chance
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


# ------------------------------------------------ exact boundaries, with dyadic values
# floor = 4 eps = 2^-50 (mag 1, eps 2^-52): "informative" is strictly above 2 floors
# (2^-49), "clean" strictly above 8 floors (2^-47); these values are exact in float64.

F = 2.0**-50


def test_a_tail_exactly_at_two_floors_is_not_informative():
    # a constant tail (orders agree: it would be a signal if informative) exactly at 2
    # floors is not informative: it is noise, and the floor is raised to it
    r, h = _tail([0.0, 0.0, 0.0])
    r = np.where(h <= 1e-2 * math.sqrt(EPS), 2 * F, r)
    floor = roundoff_floor(h, r, np.ones(len(h)), EPS)
    assert floor[-1] == 2 * F
    r2 = np.where(h <= 1e-2 * math.sqrt(EPS), 4 * F, r)  # above 2 floors: a signal
    assert roundoff_floor(h, r2, np.ones(len(h)), EPS)[-1] == F


def test_a_falling_tail_is_read_on_its_informative_steps():
    """Truncation that falls into the floor (sigmoid(1e6 x) in float32 reaches the
    rounding of 0.5): the informative steps fall at every halving, the rest sit at the
    floor: no raise. Informative steps after one at the floor are noise: raised."""
    r, h = _tail([1.0, 2.0, 3.0, 3.0])
    r[-1] = 2 * F  # the smallest step at two floors: not informative
    assert roundoff_floor(h, r, np.ones(len(h)), EPS)[-1] == F
    bumped = r.copy()
    bumped[-2] = 2 * F  # a step at the floor, then an informative one after it
    bumped[-1] = 1e-11
    assert roundoff_floor(h, bumped, np.ones(len(h)), EPS)[-1] > F


def test_three_tiny_steps_are_enough_to_read_the_noise():
    r, h = _tail([0.0, 1.0])  # exactly 3 tiny steps, orders spread by 1: noise
    assert int(np.sum(h <= 1e-2 * math.sqrt(EPS))) == 3
    assert roundoff_floor(h, r, np.ones(len(h)), EPS)[-1] > F


def test_raised_floor_capped_by_the_largest_magnitude():
    r, h = _tail([0.0, 1.0, -1.0])  # noise of 1e-10 .. 2e-10 at the tiny steps
    mag = np.geomspace(1.0, 1e-9, len(h))  # |f| + |J d| h shrinks with h
    floor = roundoff_floor(h, r, mag, EPS)
    # raised to the noise (2e-10), which is below sqrt(eps) * max(mag) = 1.5e-8
    assert floor[-1] == pytest.approx(r[-4:].max(), rel=1e-12)


def test_clean_means_strictly_above_eight_floors():
    from jaxrelu.checker import classify_remainders

    h = 2.0 ** -np.arange(10)
    r = np.concatenate([h[:6] ** 2, np.full(4, 8 * F)])  # the last 4 exactly at 8 floors
    ev = classify_remainders(h, r, np.full(10, F), 1.0)
    assert ev.window == (1, 2, 3, 4, 5) and ev.order == pytest.approx(2.0, abs=1e-12)


def test_three_clean_steps_at_the_small_end_are_a_window():
    from jaxrelu.checker import classify_remainders

    h = 2.0 ** -np.arange(10)
    r = np.concatenate([np.full(7, 4 * F), 2.0 ** -np.arange(30.0, 33.0)])
    ev = classify_remainders(h, r, np.full(10, F), 1.0)
    assert ev.window == (7, 8, 9) and ev.order == pytest.approx(1.0, abs=1e-12)
    assert ev.pattern is Pattern.POWER


def test_a_tail_no_higher_than_the_floor_raises_nothing():
    # three tiny steps, remainders exactly at the largest floor among them (mags 1, 1/4,
    # 1: floors F, F/4, F): quiet, so the smaller floor stays F/4
    r, h = _tail([0.0, 0.0])
    tiny = h <= 1e-2 * math.sqrt(EPS)
    r = np.where(tiny, F, r)
    mag = np.ones(len(h))
    mag[np.flatnonzero(tiny)[1]] = 0.25
    floor = roundoff_floor(h, r, mag, EPS)
    np.testing.assert_array_equal(floor[tiny], [F, F / 4, F])


# ------------------------------------------------ one-sided slopes and their comparison


def test_one_sided_slope_error_is_change_plus_rounding_doubled():
    from jaxrelu.checker.slopes import one_sided

    # f affine with slope 3 along d: the extrapolated slopes 2 d_h - d_2h are all 3 and do
    # not change; the error is 2 (0 + 6 eps |mag| / h) at the largest step with a change
    # measured (the third), h = 0.25: 2 * 6 eps / 0.25 = 48 eps
    h = np.array([1.0, 0.5, 0.25, 0.125])
    s = one_sided(h, h, (3.0 * h)[:, None], np.ones(4), EPS)
    assert s.value.tolist() == [3.0] and s.step == 0.25 and s.error == 48 * EPS


def test_one_sided_slope_from_two_steps_has_no_error_bound():
    from jaxrelu.checker.slopes import one_sided

    # two steps: no change of the extrapolated slope can be measured; the smallest step's
    # difference quotient is returned, with an infinite error
    h = np.array([0.5, 0.25])
    s = one_sided(h, h, np.array([[1.5], [0.5]]), np.ones(2), EPS)
    assert s.value.tolist() == [2.0] and s.error == np.inf and s.step == 0.25


def test_slopes_differ_beyond_sixteen_eps_of_their_scale():
    one = Slope(np.array([1.0]), 0.0, 1e-3)
    below = Slope(np.array([1.0 - 33 * 2.0**-53]), 0.0, 1e-3)  # 16.5 eps below 1, exact
    t = SlopeTests.of(np.array([1.0]), one, below, EPS)
    assert t.tol == 16 * EPS and t.differ
    near = Slope(np.array([1.0 - 31 * 2.0**-53]), 0.0, 1e-3)  # 15.5 eps: within
    assert not SlopeTests.of(np.array([1.0]), one, near, EPS).differ
    # an infinite slope differs from nothing (no finite comparison)
    inf = Slope(np.array([np.inf]), 0.0, 1e-3)
    assert not SlopeTests.of(np.array([1.0]), inf, one, EPS).differ


# ------------------------------------------------ verdict boundaries (exact values)


def _ev(pattern=Pattern.POWER, order=1.0, sp=1.0, sm=1.0, ad=1.0, err=0.0, eps=EPS, **kw):
    rem = RemainderEvidence(pattern, order, (0, 1, 2), (order, order), 0, math.nan,
                            kw.pop("kappa", math.nan))  # fmt: skip
    plus = Slope(np.array([sp]), err, 1e-3)
    minus = Slope(np.array([sm]), err, 1e-3)
    a = np.array([ad])
    return Evidence(rem, a, bool(np.isfinite(ad)), plus, minus, SlopeTests.of(a, plus, minus, eps),
                    eps=eps, **kw)  # fmt: skip


@pytest.mark.parametrize(
    "order, verdict",
    [
        (1.6, Verdict.SMOOTH),  # "two" from 1.6 on
        (1.3, Verdict.KINK),  # "one" up to 1.3 (the slopes differ: a kink)
        (0.7, Verdict.KINK),  # "one" from 0.7
        (0.3, Verdict.DISCONTINUOUS),  # "zero" up to 0.3
        (0.5, Verdict.INCONCLUSIVE),  # none of them
    ],
)
def test_order_classes_at_their_bounds(order, verdict):
    assert decide(_ev(order=order, sp=1.0, sm=0.0, ad=0.0))[0] is verdict


def test_slope_tolerance_bounds_are_inclusive_where_stated():
    e = 2.0**-52
    # gap exactly 16 eps = tol: not "differ", but "agree"
    one, below = Slope(np.array([1.0]), 0.0, 1), Slope(np.array([1.0 - 32 * 2.0**-53]), 0.0, 1)
    t = SlopeTests.of(np.array([1.0]), one, below, e)
    assert t.tol == 16 * e and not t.differ and t.agree
    # resolution exactly 1/4 (eps 0, errors 1/8 each): still resolved
    s = Slope(np.array([1.0]), 0.125, 1)
    t = SlopeTests.of(np.array([1.0]), s, s, 0.0)
    assert t.resolution == 0.25 and t.agree
    # AD exactly tol (1/4) from both slopes: not "off"
    s = Slope(np.array([1.25]), 0.125, 1)
    t = SlopeTests.of(np.array([1.0]), s, s, 0.0)
    assert t.tol == 0.25 and not t.ad_off
    assert SlopeTests.of(np.array([0.75]), s, s, 0.0).ad_off
    # AD exactly tol outside the hull [0, 1] on either side is still inside
    lo, hi = Slope(np.array([0.0]), 0.125, 1), Slope(np.array([1.0]), 0.125, 1)
    assert SlopeTests.of(np.array([-0.25]), lo, hi, 0.0).in_hull
    assert SlopeTests.of(np.array([1.25]), lo, hi, 0.0).in_hull
    assert not SlopeTests.of(np.array([1.5]), lo, hi, 0.0).in_hull


def test_exact_slopes_need_both_sides():
    # only one exact slope: unused (no crash); the measured ones cannot resolve this
    ev = _ev(sp=1.0, sm=1.0, ad=1.0, err=1.0, exact_plus=np.array([1.0]), exact_minus=None)
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED)


@pytest.mark.parametrize(
    "sp, consistent",
    [(1.0 + 32 * EPS, True), (1.0 + 33 * EPS, False)],  # within 16 eps (1 + |1|): 32 eps
)
def test_exact_slopes_used_only_when_the_measured_ones_agree_with_them(sp, consistent):
    # exact slopes 1 and 1, AD 2: when consistent, AD is off the exact slope
    ev = _ev(sp=sp, sm=1.0, ad=2.0, err=0.0, exact_plus=np.array([1.0]),
             exact_minus=np.array([1.0]), order=1.0)  # fmt: skip
    ev = Evidence(**{**ev.__dict__, "tests": SlopeTests(0.5, False, False, False, True, 1.0)})
    got = decide(ev)
    if consistent:
        assert got == (Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_EXACT)
    else:
        assert got == (Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED)


def test_ad_exactly_at_the_exact_tolerance_is_not_off():
    ex = np.array([1.0])
    unresolved = SlopeTests(0.0, False, False, False, True, 1.0)
    cases = [(1.0 + 48 * EPS, Verdict.INCONCLUSIVE), (1.0 + 64 * EPS, Verdict.WRONG_DERIVATIVE)]
    for ad, want in cases:
        ev = _ev(sp=1.0, sm=1.0, ad=ad, exact_plus=ex, exact_minus=ex)
        ev = Evidence(**{**ev.__dict__, "tests": unresolved})
        assert decide(ev)[0] is want, ad


def test_ad_not_finite_order_bounds():
    # order exactly 0.7 is Lipschitz (one): the slopes decide (here they differ)
    assert decide(_ev(order=0.7, sp=1.0, sm=0.0, ad=np.nan))[0] is Verdict.KINK
    assert decide(_ev(order=1.0, sp=1.0, sm=0.0, ad=np.nan))[0] is Verdict.KINK
    assert decide(_ev(order=0.5, sp=1.0, sm=0.0, ad=np.nan)) == (
        Verdict.INCONCLUSIVE,
        Cause.AD_NOT_FINITE_NON_LIPSCHITZ,
    )


def test_flat_curvature_bound_is_inclusive():
    assert decide(_ev(pattern=Pattern.FLAT, order=math.nan, kappa=1e-3))[0] is Verdict.LINEAR
    assert decide(_ev(pattern=Pattern.FLAT, order=math.nan, kappa=2e-3)) == (
        Verdict.INCONCLUSIVE,
        Cause.FLAT_TOO_COARSE,
    )


def test_an_abrupt_rise_away_from_any_tie_stays_inconclusive():
    rise = RemainderEvidence(Pattern.FLAT_THEN_RISE, 1.0, (0, 1, 2), (1.0, 1.0), 2, 1e-6, 5.0)
    for tied in (0, 1):
        ev = _evidence(rise, sites_known=True, tied=tied)
        got = decide(ev)
        if tied:  # on a switch: the rise is the behaviour there (slopes agree: AD is fine)
            assert got[1] is not Cause.RISE_TOO_COARSE
        else:
            assert got == (Verdict.INCONCLUSIVE, Cause.RISE_TOO_COARSE)


def test_few_informative_steps_then_flat_is_an_abrupt_rise_only_if_h2_overshoots():
    from jaxrelu.checker import classify_remainders

    # two informative steps, then 8 at half a floor: extrapolating the lowest informative
    # remainder (40 floors) down one halving as h^2 gives 10 floors > 8: an abrupt rise;
    # from 24 floors it gives 6 < 8: too few steps to say
    h = 2.0 ** -np.arange(10)
    for lowest, pattern in [(40 * F, Pattern.FLAT_THEN_RISE), (24 * F, Pattern.FEW)]:
        r = np.concatenate([[2 * lowest, lowest], np.full(8, 0.5 * F)])
        ev = classify_remainders(h, r, np.full(10, F), 1.0)
        assert ev.pattern is pattern and ev.n_flat == 8


# ------------------------------------------------ boundaries found by the mutation run


def test_without_three_clean_steps_the_window_is_the_last_five_informative_ones():
    from jaxrelu.checker import classify_remainders

    # ten informative steps (4 floors: above 2, not above 8), none clean: the fit reads
    # the last WINDOW = 5 of them
    h = 2.0 ** -np.arange(10)
    ev = classify_remainders(h, np.full(10, 4 * F), np.full(10, F), 1.0)
    assert ev.window == (5, 6, 7, 8, 9)


def test_an_abrupt_rise_must_overshoot_strictly():
    from jaxrelu.checker import classify_remainders

    # two informative steps, then flat at one floor: the lowest (32 floors) extrapolated
    # one halving down as h^2 gives exactly 8 floors, not above 8: too few steps to say;
    # from 33 floors it is above: an abrupt rise (all values exact in binary)
    h = 2.0 ** -np.arange(8)
    for lowest, pattern in [(32 * F, Pattern.FEW), (33 * F, Pattern.FLAT_THEN_RISE)]:
        r = np.concatenate([[2 * lowest, lowest], np.full(6, F)])
        assert classify_remainders(h, r, np.full(8, F), 1.0).pattern is pattern


def test_slopes_far_apart_never_agree_and_an_infinite_one_has_no_hull():
    one, zero = Slope(np.array([1.0]), 0.0, 1e-3), Slope(np.array([0.0]), 0.0, 1e-3)
    t = SlopeTests.of(np.array([1.0]), one, zero, EPS)
    assert t.differ and not t.agree and t.resolution <= 0.25
    # tol is infinite with an infinite slope (its scale is): no hull, no comparison
    inf = Slope(np.array([np.inf]), 0.0, 1e-3)
    t = SlopeTests.of(np.array([2.0]), inf, one, EPS)
    assert not t.in_hull and not t.agree and not t.differ


def test_ad_off_at_a_resolution_of_exactly_one_quarter():
    # slopes 1 with errors 1/8 (eps 0): tol 1/4, scale 1, resolution exactly 1/4; AD 0 is
    # 1 away: off, and resolved
    s = Slope(np.array([1.0]), 0.125, 1)
    t = SlopeTests.of(np.array([0.0]), s, s, 0.0)
    assert t.resolution == 0.25 and t.ad_off


def _flat_at_a_tie(ad, **kw):
    rem = RemainderEvidence(Pattern.FLAT, math.nan, (), (), 8, math.nan, 0.0)
    plus = minus = Slope(np.array([1.0]), 0.0, 1e-3)
    a = np.array([ad])
    return Evidence(rem, a, True, plus, minus, SlopeTests.of(a, plus, minus, EPS), **kw)


def test_ad_off_the_exact_slopes_beyond_sixteen_eps_of_their_size():
    # remainders at the floor at a tied kink whose exact slopes are both 1: AD counts as
    # wrong beyond 16 eps (1 + |1| + |1|) = 48 eps from them (1 + 50 eps: wrong; 1 + 46
    # eps: not, but not equal to them either, so the flat remainders decide nothing)
    kw = dict(sites_known=True, tied=1, exact_plus=np.array([1.0]), exact_minus=np.array([1.0]))
    assert decide(_flat_at_a_tie(1 + 50 * EPS, **kw)) == (
        Verdict.WRONG_DERIVATIVE,
        Cause.AD_OFF_EXACT,
    )
    assert decide(_flat_at_a_tie(1 + 46 * EPS, **kw)) == (Verdict.INCONCLUSIVE, Cause.FLAT_AT_KINK)


def test_flat_remainders_say_linear_unless_the_jaxpr_shows_a_tie():
    # no tie (or no kink analysis): flat remainders are linear, whatever else is unknown
    assert decide(_flat_at_a_tie(1.0, sites_known=True, tied=0)) == (Verdict.LINEAR, Cause.FLAT)
    assert decide(_flat_at_a_tie(1.0, sites_known=False, tied=1)) == (Verdict.LINEAR, Cause.FLAT)


def test_one_flat_step_below_a_switch_explains_a_wrong_looking_slope():
    # order 1 with AD off both slopes (wrong_derivative), but a switch lies inside the
    # grid and the one step below it follows AD to the floor: inconclusive
    ev = _ev(order=1.0, sp=0.0, sm=0.0, ad=1.0, sites_known=True, radius_plus=1e-3,
             radius_minus=1e-3, below_switch=1, flat_below_switch=True)  # fmt: skip
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.AD_ON_FLOOR_BELOW_SWITCH)


def test_only_unread_causes_are_read_again_below_a_switch():
    # flat remainders too coarse to say linear: inconclusive for that reason, even where
    # the steps below a nearby switch follow a power law of order 2
    below = RemainderEvidence(Pattern.POWER, 2.0, (0, 1, 2), (2.0, 2.0), 0, math.nan, math.nan)
    ev = _ev(pattern=Pattern.FLAT, kappa=1.0, sites_known=True, radius_plus=1e-3,
             radius_minus=1e-3, below=below)  # fmt: skip
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.FLAT_TOO_COARSE)


def test_exact_slopes_apart_beyond_sixteen_eps_of_one_plus_their_sizes():
    # measured slopes 1 and 0 differ (a kink); the exact ones (+-a) confirm it only where
    # |2a| > 16 eps (1 + 2a). eps = 1/32 makes the bound exact: a = 1/2 sits on it (not
    # apart: the kink is not confirmed), a = 1/2 + 1/64 is beyond it
    for a, verdict in [(0.5, Verdict.INCONCLUSIVE), (0.5 + 1 / 64, Verdict.KINK)]:
        ev = _ev(order=1.0, sp=1.0, sm=0.0, ad=1.0, eps=1 / 32, sites_known=True,
                 exact_plus=np.array([a]), exact_minus=np.array([-a]))  # fmt: skip
        assert decide(ev)[0] is verdict


@pytest.mark.parametrize(
    "exact_plus, exact_minus",
    [
        (np.array([0.0]), None),  # unknown on one side
        (np.array(0.0), None),  # (a scalar beside an unknown side: shapes alike)
        (np.array([0.0]), np.array([np.inf])),  # not finite
        (np.array([0.0]), np.array([0.0, 0.0])),  # misshapen
    ],
)
def test_exact_slopes_that_cannot_be_compared_leave_a_kink_alone(exact_plus, exact_minus):
    ev = _ev(order=1.0, sp=1.0, sm=0.0, ad=1.0, sites_known=True,
             exact_plus=exact_plus, exact_minus=exact_minus)  # fmt: skip
    assert decide(ev) == (Verdict.KINK, Cause.SLOPES_DIFFER)


def test_half_precision_ad_matching_the_exact_slopes_within_sixteen_eps():
    # float16 (eps 2^-10): AD off the measured slopes (1) by 32 eps is wrong by them, but
    # it matches the exact slopes (1) within 16 eps (1 + 1) = 32 eps: the steps measured
    # curvature; at 33 eps it does not
    e = 2.0**-10
    kw = dict(sites_known=True, exact_plus=np.array([1.0]), exact_minus=np.array([1.0]))
    for off, verdict in [(32, Verdict.INCONCLUSIVE), (33, Verdict.WRONG_DERIVATIVE)]:
        ev = _ev(order=1.0, sp=1.0, sm=1.0, ad=1.0 + off * e, eps=e, **kw)
        assert decide(ev)[0] is verdict


def test_flat_steps_below_a_power_law_need_a_prediction_strictly_above_eight_floors():
    from jaxrelu.checker import classify_remainders

    # five clean steps at 16 floors (order exactly 0), then three at 2 floors (not
    # informative): the power law predicts 16 floors at the largest flat step, which is
    # 8 x max(floor, r) there, not above it; at 17 floors it is a rise
    h = 2.0 ** -np.arange(8)
    for level, pattern in [(16 * F, Pattern.POWER), (17 * F, Pattern.FLAT_THEN_RISE)]:
        r = np.concatenate([np.full(5, level), np.full(3, 2 * F)])
        ev = classify_remainders(h, r, np.full(8, F), 1.0)
        assert ev.pattern is pattern and ev.order == pytest.approx(0.0, abs=1e-12)


def _flat_tie_of(exact, ad):
    rem = RemainderEvidence(Pattern.FLAT, math.nan, (), (), 8, math.nan, 0.0)
    plus = minus = Slope(np.asarray(exact), 0.0, 1e-3)
    a = np.asarray(ad)
    return Evidence(rem, a, True, plus, minus, SlopeTests.of(a, plus, minus, EPS),
                    sites_known=True, tied=1, exact_plus=np.asarray(exact),
                    exact_minus=np.asarray(exact))  # fmt: skip


@pytest.mark.parametrize(
    "exact, ad, verdict",
    [
        # AD equal to the exact slopes to 2 eps of the largest component: flat means linear
        # (1e6 + 3 ulps: 3.5e-10 <= 2 eps 1e6 = 4.4e-10, although far beyond 2 eps of 1)
        ([1e6, 1.0], [1e6 + 3 * 2.0**-33, 1.0], Verdict.LINEAR),
        ([1e6, 1.0], [1e6 + 5 * 2.0**-33, 1.0], Verdict.INCONCLUSIVE),
        # relative, not absolute: slopes of 1e-3 apart by 4 eps of their size are apart
        ([1e-3], [1e-3 * (1 + 4 * EPS)], Verdict.INCONCLUSIVE),
        ([1e-3], [1e-3], Verdict.LINEAR),
    ],
)
def test_flat_at_a_tie_is_linear_when_ad_equals_the_exact_slopes_to_rounding(exact, ad, verdict):
    assert decide(_flat_tie_of(exact, ad))[0] is verdict


def test_affine_between_switches_needs_steps_that_would_show_a_wrong_slope():
    # a piecewise linear program, no tie, remainders at the floor below a switch: linear
    # only where a slope error would have shown there (resolved); a switch so close that
    # no step below it resolves the slopes proves nothing about AD
    kw = dict(piecewise_linear=True, sites_known=True, radius_plus=1e-6, radius_minus=1e-6,
              below_switch=4, flat_below_switch=True)  # fmt: skip
    assert decide(_ev(**kw)) == (Verdict.LINEAR, Cause.AFFINE_BETWEEN_SWITCHES)
    assert decide(_ev(resolved_below_switch=False, **kw))[1] is not Cause.AFFINE_BETWEEN_SWITCHES
