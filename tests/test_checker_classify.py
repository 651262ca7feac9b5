"""The checker's decision stages on crafted inputs, without any function evaluation.

Remainder sequences r = C h^p (+ noise, + a roundoff floor) for p in {0, 0.5, 1, 1.5, 2}
pin the thresholds of :func:`jaxrelu.checker.classify_remainders` (order classes 0 / 1 /
2 split at 0.3, 0.7, 1.3, 1.6; scatter limit 1.0; informative 2 floors, clean 8 floors;
3 flat steps; curvature bounds 1e-3 and 1), and hand-built evidence pins every branch of
:func:`jaxrelu.checker.decide`. Expected values are the definitions, not outputs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrelu as jr
from jaxrelu.checker import (
    Cause,
    Evidence,
    Pattern,
    RemainderEvidence,
    Slope,
    SlopeTests,
    Verdict,
    classify_remainders,
    decide,
)
from jaxrelu.checker.explain import explain
from jaxrelu.checker.remainders import roundoff_floor

H = 2.0 ** -np.arange(30)  # 1 .. 2^-29
EPS32 = float(np.finfo(np.float32).eps)


FLOOR = 1e-14


def power(c, p, floor=FLOOR, seed=0):
    """C h^p, with roundoff noise below ``floor`` where it would sink under it."""
    rng = np.random.default_rng(seed)
    return np.maximum(c * H**p, floor * rng.uniform(0.1, 0.9, len(H)))


def read(r, floor=FLOOR):
    return classify_remainders(H, r, np.full(len(H), floor), 1.0)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0, 1.5, 2.0])
def test_the_order_of_a_clean_power_law_is_recovered(p):
    ev = read(power(1.0, p))
    assert ev.pattern is Pattern.POWER
    assert ev.order == pytest.approx(p, abs=0.02)
    assert len(ev.window) == 5 and np.all(np.diff(ev.window) == 1)
    assert all(power(1.0, p)[i] > 8 * FLOOR for i in ev.window)  # the clean steps ...
    after = ev.window[-1] + 1  # ... the smallest ones: the next step is not clean
    assert after == len(H) or power(1.0, p)[after] <= 8 * FLOOR


@pytest.mark.parametrize(
    "p, verdict",
    [
        (0.0, "discontinuous"),
        (0.25, "discontinuous"),
        (0.5, "inconclusive"),
        (0.69, "inconclusive"),
        (0.75, "kink"),
        (1.0, "kink"),
        (1.25, "kink"),
        (1.45, "inconclusive"),
        (1.65, "smooth"),
        (2.0, "smooth"),
        (3.0, "smooth"),
    ],
)
def test_order_classes_and_their_boundaries(p, verdict):
    # slopes 1 and 0 with AD at 0.5: order 1 is a kink
    assert decide(_evidence(read(power(1.0, p)), ad=0.5, sp=1.0, sm=0.0))[0] == verdict


def test_the_window_is_contiguous_and_scatter_is_checked():
    # above the floor the local orders jump about (3.8, -1.8, 1.4, ...): no power law
    r = np.tile([1.0, 0.5, 0.02, 0.5, 0.01, 0.2], 5)  # never reaches the floor
    ev = read(r)
    assert ev.pattern is Pattern.SCATTERED
    assert np.all(np.diff(ev.window) == 1) and ev.window[-1] == len(H) - 1
    assert decide(_evidence(ev)) == (Verdict.INCONCLUSIVE, Cause.SCATTERED)
    # a clean subset (steps 0, 1, 3) would fit a power law: it is not used
    assert read(power(1.0, 1.0)).pattern is Pattern.POWER


def test_scatter_threshold_is_one():
    base = 1e-3 * H  # clean down to the last step (1e-3 2^-29 > 8 1e-14)
    r = base.copy()
    r[27] *= 2.0**0.45  # local orders 1 - 0.45 and 1 + 0.45 around it: spread 0.9
    ev = read(r)
    assert ev.pattern is Pattern.POWER and 27 in ev.window
    r[27] = base[27] * 2.0**0.55  # spread 1.1
    assert read(r).pattern is Pattern.SCATTERED
    # a spread of exactly 1 (local orders 1 and 2, exact in binary) is not "above 1"
    h = 2.0 ** -np.arange(3)
    ev = classify_remainders(h, np.array([1.0, 0.5, 0.125]), np.full(3, 1e-12), 1.0)
    assert ev.local == (1.0, 2.0) and ev.pattern is Pattern.POWER


def test_flat_sequences_and_the_curvature_bound():
    floor = np.full(len(H), 1e-8)
    r = floor * 0.5
    ev = classify_remainders(H, r, floor, 1.0)
    assert ev.pattern is Pattern.FLAT and ev.n_flat == len(H)
    # a smooth f with relative curvature rho would show rho |f| h^2/2 at h = 1
    assert ev.kappa == pytest.approx(1e-8)
    assert decide(_evidence(ev))[0] == "linear"
    coarse = classify_remainders(H, np.full(len(H), 1e-3), np.full(len(H), 2e-3), 1.0)
    assert coarse.kappa == pytest.approx(2e-3)  # above the 1e-3 bound
    assert decide(_evidence(coarse)) == (Verdict.INCONCLUSIVE, Cause.FLAT_TOO_COARSE)
    exact = classify_remainders(H, np.zeros(len(H)), np.full(len(H), 1.0), 1.0)
    assert exact.kappa == 0.0  # exactly affine on these points, whatever the precision
    assert decide(_evidence(exact))[0] == "linear"


def test_a_zero_floor_hides_no_curvature_even_at_zero_magnitude():
    # f(x0) = 0 and J d = 0 (magnitude 0), no roundoff at all, r = h until the last two
    # steps, which are exactly 0: nothing can hide below a zero floor, so the curvature
    # bound is 0 (not "unbounded", which dividing by the zero magnitude would give)
    r = np.where(np.arange(len(H)) < len(H) - 2, H, 0.0)
    ev = classify_remainders(H, r, np.zeros(len(H)), 0.0)
    assert ev.pattern is Pattern.FLAT_THEN_RISE and ev.n_flat == 2
    assert ev.kappa == 0.0


def test_flat_then_abrupt_rise_is_linear_with_the_rise_step():
    # a kink 2^-10 away along +d: zero remainder below it, (h - t0) beyond
    t0 = 2.0**-10
    r = np.where(H > t0, H - t0, 0.0) + 1e-17
    floor = np.full(len(H), 1e-15)
    ev = classify_remainders(H, r, floor, 1.0)
    assert ev.pattern is Pattern.FLAT_THEN_RISE
    assert ev.rise == t0
    assert ev.n_flat == 20
    assert decide(_evidence(ev)) == (Verdict.LINEAR, Cause.FLAT_THEN_RISE)


def test_a_rise_with_too_few_flat_steps_is_inconclusive():
    t0 = 2.0**-28  # only 2 steps at or below the kink
    r = np.where(H > t0, H - t0, 0.0) + 1e-17
    ev = classify_remainders(H, r, np.full(len(H), 1e-15), 1.0)
    assert ev.pattern is Pattern.FLAT_THEN_RISE and ev.n_flat == 2
    assert decide(_evidence(ev)) == (Verdict.INCONCLUSIVE, Cause.RISE_TOO_COARSE)


def test_a_smooth_function_reaching_the_floor_is_not_an_abrupt_rise():
    r = np.maximum(0.5 * H**2, 1e-16)
    ev = classify_remainders(H, r, np.full(len(H), 1e-16), 1.0)
    assert ev.pattern is Pattern.POWER and ev.order == pytest.approx(2, abs=0.01)


def test_a_window_falls_back_to_the_informative_run_when_few_steps_are_clean():
    floor = np.full(len(H), 1e-6)
    # four informative steps, only the two largest clean (above 8 floors)
    r = np.concatenate([[1e-4, 6e-5, 7e-6, 3.5e-6], np.full(len(H) - 4, 1e-7)])
    ev = classify_remainders(H, r, floor, 1.0)
    assert list(ev.window) == [0, 1, 2, 3]  # the informative run, not the 2 clean steps
    r2 = np.concatenate([[7e-6, 3.5e-6, 2.5e-6], np.full(len(H) - 3, 1e-7)])
    ev2 = classify_remainders(H, r2, floor, 1.0)
    assert list(ev2.window) == [0, 1, 2] and ev2.pattern is not Pattern.FEW


def test_informative_and_clean_thresholds():
    floor = np.full(len(H), 1.0)
    # 2.5 floors is informative but not clean; 7.9 floors too: the window falls back
    r = np.full(len(H), 0.5)
    r[:3] = [9.0, 2.5, 7.9]
    ev = classify_remainders(H, r, floor, 1.0)
    assert ev.n_flat == len(H) - 3
    r[:3] = [1.9, 1.8, 1.7]
    assert classify_remainders(H, r, floor, 1.0).pattern is Pattern.FLAT


def test_roundoff_floor_keeps_a_constant_tail_and_absorbs_noise():
    mag = np.full(len(H), 2.0)
    jump = np.full(len(H), 1e-4)  # 1 + x + where(x > 0, 1e-4, 0): constant remainder
    floor = roundoff_floor(H, jump, mag, EPS32)
    assert np.all(floor == 4 * EPS32 * mag)  # not raised: a constant tail is a signal
    rng = np.random.default_rng(0)
    noise = 50 * EPS32 * rng.uniform(0, 1, len(H))  # cancellation inside f: erratic
    raised = roundoff_floor(H, noise, mag, EPS32)
    tiny = H <= 1e-2 * np.sqrt(EPS32)
    assert raised[0] == pytest.approx(np.max(noise[tiny]))
    capped = roundoff_floor(H, np.where(tiny, rng.uniform(0, 1, len(H)), 0), mag, EPS32)
    assert np.all(capped <= np.sqrt(EPS32) * mag + 1e-30)  # at most sqrt(eps) relative


def test_roundoff_floor_is_not_raised_by_noise_below_its_largest_tiny_step_value():
    # |f| (hence the floor 4 eps |f|) is 10x larger at the last tiny step; erratic noise
    # between 5 and 30 eps stays below that largest floor: quiet, nothing raised
    tiny = H <= 1e-2 * np.sqrt(EPS32)
    mag = np.ones(len(H))
    mag[-1] = 10.0
    r = np.where(tiny, EPS32 * np.random.default_rng(1).uniform(5, 30, len(H)), 1.0)
    assert np.all(roundoff_floor(H, r, mag, EPS32) == 4 * EPS32 * mag)


def _tail_ending(orders, seed=0):
    """Remainders on H: erratic (cancellation noise of 0.5 to 2) over the tiny steps,
    then one flat halving, then halvings of the given local orders down to the last
    step (1e-3 there: far above the floor)."""
    r = np.random.default_rng(seed).uniform(0.5, 2.0, len(H))
    k = len(orders)
    r[-k - 1 :] = 1e-3 * np.cumprod([1.0, *np.power(2.0, orders[::-1])])[::-1]
    r[-k - 2] = r[-k - 1]  # order 0 just before: the settled run has exactly k halvings
    return r


def test_roundoff_floor_is_not_raised_by_a_tail_that_settles_on_truncation():
    # sin at 1e12 in float64: over the tiny steps the remainder is erratic where the
    # steps span periods, then h^2 below one. Four halvings of one order >= 1.5 (within
    # 0.5) at the end are truncation, not noise: the floor stays 4 eps |f|
    mag = np.full(len(H), 2.0)
    base = 4 * EPS32 * mag
    for orders in ([2.0] * 4, [2.0] * 6, [1.52] * 4, [1.7, 2.15, 1.7, 2.15], [3.0] * 4):
        assert np.all(roundoff_floor(H, _tail_ending(orders), mag, EPS32) == base), orders
    for orders in ([2.0] * 3, [1.45] * 4, [1.6, 2.2, 1.6, 2.2], [2.0, 2.0, 2.0, 1.4]):
        assert roundoff_floor(H, _tail_ending(orders), mag, EPS32)[0] > base[0], orders
    # read on ``both`` sides' larger remainder where given: one side's alone crosses
    # zero (a dip of 1e-3 at one step) and is no power law
    both = _tail_ending([2.0] * 5)
    side = both.copy()
    side[-3] *= 1e-3
    assert roundoff_floor(H, side, mag, EPS32)[0] > base[0]
    assert np.all(roundoff_floor(H, side, mag, EPS32, both) == base)


def test_exactly_three_zero_remainders_prove_affine_points():
    # r = h, then exactly 0 at the last three steps (over a tiny nonzero floor): f is
    # affine on those three floating-point points, so no curvature can hide there
    r = np.where(np.arange(len(H)) < len(H) - 3, H, 0.0)
    ev = classify_remainders(H, r, np.full(len(H), 1e-20), 1.0)
    assert ev.pattern is Pattern.FLAT_THEN_RISE and ev.n_flat == 3
    assert ev.kappa == 0.0


def test_a_small_jump_is_discontinuous_whatever_its_size_relative_to_the_floor():
    mag = np.full(len(H), 2.0)
    r = np.full(len(H), 1e-4)
    floor = roundoff_floor(H, r, mag, EPS32)
    ev = classify_remainders(H, r, floor, 1.0)
    assert ev.pattern is Pattern.POWER and abs(ev.order) < 0.05
    assert decide(_evidence(ev))[0] == "discontinuous"


# ------------------------------------------------------------------------ decide()


def _slope(v, err=1e-9):
    return Slope(np.atleast_1d(np.asarray(v, float)), err, 1e-3)


def _evidence(rem, ad=1.0, sp=1.0, sm=1.0, err=1e-9, eps=2.0**-52, **kw):
    plus, minus = _slope(sp, err), _slope(sm, err)
    ad = np.atleast_1d(np.asarray(ad, float))
    return Evidence(
        remainders=rem,
        ad=ad,
        ad_finite=bool(np.all(np.isfinite(ad))),
        plus=plus,
        minus=minus,
        tests=SlopeTests.of(ad, plus, minus, eps),
        eps=eps,
        **kw,
    )


ORDER1 = read(power(1.0, 1.0))
ORDER2 = read(power(1.0, 2.0))
FLAT = read(np.zeros(len(H)))


def test_order_one_with_different_slopes_is_a_kink_and_the_hull_is_reported():
    v, c = decide(_evidence(ORDER1, ad=0.0, sp=1.0, sm=0.0))
    assert (v, c) == (Verdict.KINK, Cause.SLOPES_DIFFER)
    assert SlopeTests.of(np.array([0.0]), _slope(1.0), _slope(0.0), 1e-16).in_hull
    assert not SlopeTests.of(np.array([2.0]), _slope(1.0), _slope(0.0), 1e-16).in_hull


def test_a_switch_at_distance_zero_proves_no_affine_piece():
    # a piecewise-linear program is affine up to its nearest switch on *each* side: a
    # radius of 0 on one side leaves no affine piece there, whatever the other side's
    for plus, minus in ((0.0, 1.0), (1.0, 0.0)):
        ev = _evidence(FLAT, ad=1.0, piecewise_linear=True, sites_known=True,
                       radius_plus=plus, radius_minus=minus, below_switch=0)  # fmt: skip
        assert decide(ev)[1] not in (Cause.SWITCH_TOO_CLOSE, Cause.AFFINE_BETWEEN_SWITCHES)
    ev = _evidence(FLAT, ad=1.0, piecewise_linear=True, sites_known=True,
                   radius_plus=1.0, radius_minus=2.0, below_switch=0)  # fmt: skip
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.SWITCH_TOO_CLOSE)


def test_flat_remainders_at_a_tie_need_equal_exact_slopes_for_linear():
    # x0 on a switch, remainders at the floor: linear only if the exact one-sided slopes
    # and AD's are the same numbers; a few ulps apart (x + 1e-6 relu(x) in float32) is
    # below every tolerance and says nothing either way
    one, near = np.array([1.0]), np.array([1.0 + 2.0**-20])
    tie = dict(sites_known=True, tied=1)
    ev = _evidence(FLAT, ad=1.0, exact_plus=one, exact_minus=one, **tie)
    assert decide(ev) == (Verdict.LINEAR, Cause.FLAT)
    for ex_p, ex_m, ad in ((near, one, 1.0), (one, one, 1.0 + 2.0**-20)):
        ev = _evidence(FLAT, ad=ad, exact_plus=ex_p, exact_minus=ex_m, eps=2.0**-23, **tie)
        assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.FLAT_AT_KINK)
    ev = _evidence(FLAT, ad=1.0, exact_plus=one, exact_minus=one, eps=2.0**-23, sites_known=True)
    assert decide(ev) == (Verdict.LINEAR, Cause.FLAT)  # no tie: the slopes are not read
    # AD's slope comes from another code path: rounding (2 eps of the largest) is no kink
    vec = np.array([3.0, -1.0])
    for off, want in ((2.0**-23, Verdict.LINEAR), (2.0**-20, Verdict.INCONCLUSIVE)):
        ev = _evidence(FLAT, ad=vec + np.array([0.0, off]), exact_plus=vec, exact_minus=vec,
                       eps=2.0**-23, **tie)  # fmt: skip
        assert decide(ev)[0] == want
    # a tie whose exact slopes the jaxpr does not give (eigh's, an undecided one): the
    # floor may hide a kink there, as at any tie (1e6 + eigvalsh at a double eigenvalue)
    ev = _evidence(FLAT, ad=1.0, inexact_ties=True, tied=1)
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.FLAT_AT_KINK)
    assert decide(_evidence(FLAT, ad=1.0, tied=1)) == (Verdict.LINEAR, Cause.FLAT)  # unknown


def test_order_one_with_slopes_that_miss_the_remainders_claims_nothing():
    # slopes read at steps where f behaves otherwise (a staircase) would say kink or
    # wrong_derivative; when they do not account for the smallest steps' remainders,
    # neither is claimed
    for sp, sm in ((1.0, 0.0), (1.0, 1.0)):
        ev = _evidence(ORDER1, ad=0.0, sp=sp, sm=sm, slopes_fit=False)
        assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.SLOPES_OFF_REMAINDERS)
        assert decide(_evidence(ORDER2, ad=0.0, sp=sp, sm=sm, slopes_fit=False))[0] == "smooth"


def test_order_one_with_equal_slopes_and_ad_off_is_a_wrong_derivative():
    assert decide(_evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0)) == (
        Verdict.WRONG_DERIVATIVE,
        Cause.AD_OFF_SLOPES,
    )


def test_wrong_derivative_needs_ad_near_x0_to_stay_at_x0_or_at_the_measured_slopes():
    # AD 0, measured slopes 1 on both sides (gap 1): AD at the smallest steps at x0's
    # value (a rule wrong near x0 too) or at the slopes' (wrong at x0 alone, as
    # relu(x) - relu(-x) at 0) confirms the claim, within a quarter of the gap
    claim = (Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_SLOPES)
    for near in ([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.24, 0.76, -0.24, 1.24]):
        ev = _evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0, ad_near=np.array(near)[:, None])
        assert decide(ev) == claim, near
    # AD wandering elsewhere at any one of them (f varies below the smallest step: sin
    # at 1e9 in float32): the measured slopes say nothing of the derivative at x0
    for k in range(4):
        for bad in (0.26, 0.5, 0.74, -0.26, 1.26, np.nan):
            near = np.ones(4)
            near[k] = bad
            ev = _evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0, ad_near=near[:, None])
            assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.AD_VARIES_AT_STEPS), (k, bad)
    # each side against its own measured slope (rows: +h, -h, +h', -h'): slopes 1 and
    # 1.15 agree to their errors; 1.26 is within a quarter gap of the second only
    varies = (Verdict.INCONCLUSIVE, Cause.AD_VARIES_AT_STEPS)
    for near, want in (
        ([1.0, 1.26, 1.0, 1.26], claim),
        ([1.26, 1.0, 1.0, 1.0], varies),
        ([1.0, 1.0, 1.26, 1.0], varies),
    ):
        ev = _evidence(ORDER1, ad=0.0, sp=1.0, sm=1.15, err=0.1, ad_near=np.array(near)[:, None])
        assert decide(ev) == want, near
    assert decide(_evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0)) == claim  # not measured
    # values that jump across x0 at every step: no derivative is measured at all
    ev = _evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0, values_jump=True, ad_near=np.zeros((4, 1)))
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.STEEP_BELOW_STEPS)


def test_ad_near_the_steps_read_needs_the_exact_slopes_when_it_wanders():
    # rows 0-3 (the grid's smallest steps) steady; rows 4-9 (the steps the verdict read,
    # above the grid's) away from both AD (0) and the measured slopes (1): f may vary
    # between x0 and those steps (x + sin(x) at 1e6 in float32) -- unless the exact
    # slopes side with the measured ones against AD, within a quarter of AD's distance
    # from them (a wrong rule read on f's curvature)
    claim = (Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_SLOPES)
    varies = (Verdict.INCONCLUSIVE, Cause.AD_VARIES_AT_STEPS)
    steady = np.zeros(10)
    assert decide(_evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0, ad_near=steady[:, None])) == claim
    for k in range(4, 10):
        near = np.zeros(10)
        near[k] = 0.5
        ev = _evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0, ad_near=near[:, None])
        assert decide(ev) == varies, k
        kw = dict(ad=0.0, sp=1.0, sm=1.0, ad_near=near[:, None], sites_known=True)
        for ex, want in ((1.0, claim), (0.81, claim), (0.79, varies), (0.0, varies)):
            exact = np.array([ex])
            ev = _evidence(ORDER1, exact_plus=exact, exact_minus=exact, **kw)
            assert decide(ev) == want, (k, ex)
    # the grid's rows are not excused by the exact slopes (sin at 1e9 in float32)
    near = np.zeros(10)
    near[1] = 0.5
    one = np.array([1.0])
    ev = _evidence(ORDER1, ad=0.0, sp=1.0, sm=1.0, ad_near=near[:, None],
                   exact_plus=one, exact_minus=one, sites_known=True)  # fmt: skip
    assert decide(ev) == varies


def test_a_program_with_no_nonsmooth_operation_has_no_kink_or_jump_where_ad_is_finite():
    order0 = read(np.full(len(H), 0.5))
    assert decide(_evidence(order0, ad=1.0)) == (Verdict.DISCONTINUOUS, Cause.ORDER_ZERO)
    ev = _evidence(order0, ad=1.0, no_sites=True)
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.NO_NONSMOOTH_SITE)
    kink = _evidence(ORDER1, ad=0.5, sp=1.0, sm=0.0)
    assert decide(kink) == (Verdict.KINK, Cause.SLOPES_DIFFER)
    ev = _evidence(ORDER1, ad=0.5, sp=1.0, sm=0.0, no_sites=True)
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.NO_NONSMOOTH_SITE)
    # AD not finite: a smooth operation at its singularity (exp(log(x^2) / 2) at 0)
    ev = _evidence(ORDER1, ad=np.nan, sp=1.0, sm=-1.0, no_sites=True)
    assert decide(ev) == (Verdict.KINK, Cause.AD_NOT_FINITE_SLOPES_DIFFER)


def test_linear_needs_ad_within_rounding_of_the_exact_slopes():
    # remainders at the floor (values too coarse to see a slope error): AD 1 against
    # exact slopes 1 + 16 eps (1 + 2 |ex|) and a hair more
    eps = 2.0**-23
    allowance = 16 * eps * (1 + 2 * 1.0)
    for off, want in ((0.9, Verdict.LINEAR), (1.1, Verdict.INCONCLUSIVE)):
        ex = np.array([1.0 + off * allowance])
        ev = _evidence(FLAT, ad=1.0, eps=eps, exact_plus=ex, exact_minus=ex, sites_known=True)
        assert decide(ev)[0] is want, off
    ex = np.array([1.94])
    ev = _evidence(FLAT, ad=1.0, eps=eps, exact_plus=ex, exact_minus=ex, sites_known=True)
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.FLAT_AD_OFF_EXACT)
    # unknown exact slopes, or AD not finite: the rule does not apply
    assert decide(_evidence(FLAT, ad=1.0, eps=eps))[0] is Verdict.LINEAR


def test_unresolvable_slopes_never_give_a_confident_wrong_derivative():
    # bfloat16 relu(x, 1) at 0: AD = 1 = the right slope; a coarse tolerance cannot
    # separate the slopes 1 and 0: inconclusive, not wrong_derivative
    ev = _evidence(ORDER1, ad=1.0, sp=1.0, sm=0.0, err=0.6, eps=2.0**-8)
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED)
    # AD equal to one side is never "off both"
    ev = _evidence(ORDER1, ad=1.0, sp=1.0, sm=0.9, err=0.1, eps=2.0**-8)
    assert decide(ev)[0] != "wrong_derivative"


def test_exact_slopes_from_the_jaxpr_break_unresolvable_ties_only_when_consistent():
    # float16 leaky ReLU with slope 0.9: measured slopes too coarse, exact ones differ
    ev = _evidence(
        ORDER1,
        ad=1.0,
        sp=1.0,
        sm=0.9,
        err=0.2,
        eps=2.0**-10,
        exact_plus=np.array([1.0]),
        exact_minus=np.array([0.9]),
    )
    assert decide(ev) == (Verdict.KINK, Cause.EXACT_SLOPES_DIFFER)
    ev = _evidence(
        ORDER1,
        ad=1.0,
        sp=1.0,
        sm=0.9,
        err=0.2,
        eps=2.0**-10,
        exact_plus=np.array([5.0]),
        exact_minus=np.array([0.9]),  # contradicts the values
    )
    assert decide(ev)[0] == "inconclusive"
    # in bfloat16 (eps 2^-8) a difference of 0.1 is below what even exact slopes resolve
    ev = _evidence(
        ORDER1,
        ad=1.0,
        sp=1.0,
        sm=0.9,
        err=0.2,
        eps=2.0**-8,
        exact_plus=np.array([1.0]),
        exact_minus=np.array([0.9]),
    )
    assert decide(ev)[0] == "inconclusive"


def _exact_case(sp, sm, ex_p, ex_m, err_p, err_m, ad=1.0, eps=2.0**-10):
    plus, minus = _slope(sp, err_p), _slope(sm, err_m)
    ad = np.atleast_1d(np.asarray(ad, float))
    return decide(
        Evidence(
            remainders=ORDER1,
            ad=ad,
            ad_finite=True,
            plus=plus,
            minus=minus,
            tests=SlopeTests.of(ad, plus, minus, eps),
            eps=eps,
            exact_plus=np.atleast_1d(np.asarray(ex_p, float)),
            exact_minus=np.atleast_1d(np.asarray(ex_m, float)),
        )
    )


@pytest.mark.parametrize("delta, kink", [(0.0475, True), (0.044, False)])
def test_exact_slopes_differ_beyond_16_ulps_of_their_scale(delta, kink):
    # exact_tol = 16 eps (1 + |e+| + |e-|) = 2^-6 (3 - delta) = 0.0461 (delta 0.0475),
    # 0.0462 (0.044); measured slopes (errors 0.2 each) cannot decide
    v = _exact_case(1.0, 1.0 - delta, 1.0, 1.0 - delta, 0.2, 0.2)
    assert v == (
        (Verdict.KINK, Cause.EXACT_SLOPES_DIFFER)
        if kink
        else (Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED)
    )


@pytest.mark.parametrize("side", ["plus", "minus"])
@pytest.mark.parametrize("off, used", [(0.040, True), (0.043, False)])
def test_exact_slopes_are_used_only_within_the_measured_error_plus_16_ulps(side, off, used):
    # consistent when |measured - exact| <= error + 16 eps (1 + |exact|):
    # 0.01 + 2^-6 * 2.040 = 0.0419 (off 0.040: used), 0.01 + 2^-6 * 2.043 = 0.0419 (off
    # 0.043: not used); the other side is measured exactly, with a coarse error
    if side == "plus":
        v = _exact_case(1.0, 0.5, 1.0 + off, 0.5, 0.01, 0.6)
    else:
        v = _exact_case(0.5, 1.0, 0.5, 1.0 + off, 0.6, 0.01, ad=0.5)
    assert v == (
        (Verdict.KINK, Cause.EXACT_SLOPES_DIFFER)
        if used
        else (Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED)
    )


@pytest.mark.parametrize("ad, wrong", [(1.5, True), (1.3, False), (1.0, False)])
def test_ad_off_the_exact_slope_needs_the_measured_tolerance_too(ad, wrong):
    # equal exact slopes 1; tol = 0.4 + 16 eps |ad|: AD 1.5 is 0.5 off (> 0.423: wrong),
    # AD 1.3 is 0.3 off (< 0.42, although > exact_tol 0.047: not condemned)
    v = _exact_case(1.0, 1.0, 1.0, 1.0, 0.2, 0.2, ad=ad)
    assert v == (
        (Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_EXACT)
        if wrong
        else (Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED)
    )


def test_the_exact_slope_boundaries_are_inclusive():
    """At exact equality (dyadic numbers, no rounding): consistency is ``<=``, a
    difference must exceed its tolerance (``>``)."""
    unresolved = (Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED)
    kink = (Verdict.KINK, Cause.EXACT_SLOPES_DIFFER)
    # |measured - exact| = 0.25 + 16 * 2^-10 * (1 + 1) = 0.28125 exactly: still consistent
    assert _exact_case(1.28125, 0.5, 1.0, 0.5, 0.25, 0.6) == kink
    assert _exact_case(0.5, 1.28125, 0.5, 1.0, 0.6, 0.25, ad=0.5) == kink
    # exact slopes 0.515625 and 0.484375 differ by exactly 16 * 2^-10 * (1 + 1): no kink
    assert _exact_case(0.515625, 0.484375, 0.515625, 0.484375, 0.2, 0.2, ad=0.515625) == (
        unresolved
    )
    # AD 1.5 off the exact slope 1 by exactly the measured tolerance 0.5: not condemned
    assert _exact_case(1.0, 1.0, 1.0, 1.0, 0.23828125, 0.23828125, ad=1.5) == unresolved


def test_order_two_is_smooth_and_flat_is_linear():
    assert decide(_evidence(ORDER2)) == (Verdict.SMOOTH, Cause.ORDER_TWO)
    assert decide(_evidence(FLAT)) == (Verdict.LINEAR, Cause.FLAT)


def test_non_finite_ad_is_decided_by_the_slopes():
    nan = float("nan")
    assert decide(_evidence(ORDER2, ad=nan, sp=0.0, sm=0.0)) == (
        Verdict.WRONG_DERIVATIVE,
        Cause.AD_NOT_FINITE_SLOPES_AGREE,
    )
    assert decide(_evidence(ORDER2, ad=nan, sp=1.0, sm=-1.0)) == (
        Verdict.KINK,
        Cause.AD_NOT_FINITE_SLOPES_DIFFER,
    )
    half = read(power(1.0, 0.5))
    assert decide(_evidence(half, ad=nan)) == (
        Verdict.INCONCLUSIVE,
        Cause.AD_NOT_FINITE_NON_LIPSCHITZ,
    )
    jump = read(power(1.0, 0.0))
    assert decide(_evidence(jump, ad=nan))[0] == "discontinuous"
    coarse = _evidence(ORDER2, ad=nan, sp=0.0, sm=0.1, err=1.0)
    assert decide(coarse) == (Verdict.INCONCLUSIVE, Cause.AD_NOT_FINITE_UNRESOLVED)


def test_non_finite_ad_on_a_plateau_rounding_can_make_is_not_read():
    """AD not finite, f still at the small steps and moving beyond (FLAT_THEN_RISE), the
    slopes read there 0 and 0: a plateau ending below eps^(1/3) of the largest step may be
    rounding's (arccos(cos x) at 0), one reaching further is f's own (the where trap)."""
    nan, eps = float("nan"), 2.0**-52

    def plateau(rise):
        rem = RemainderEvidence(Pattern.FLAT_THEN_RISE, 1.0, (0, 1, 2), (1.0, 1.0), 9, rise, 0)
        return _evidence(rem, ad=nan, sp=0.0, sm=0.0, eps=eps, top_step=2.0)

    edge = eps ** (1 / 3) * 2.0
    for rise in (np.sqrt(eps), edge):
        assert decide(plateau(rise)) == (Verdict.INCONCLUSIVE, Cause.AD_NOT_FINITE_PLATEAU)
    for rise in (edge * (1 + 1e-9), 0.5):
        assert decide(plateau(rise)) == (Verdict.WRONG_DERIVATIVE, Cause.AD_NOT_FINITE_SLOPES_AGREE)
    # slopes that differ at the small steps still say kink
    rem = RemainderEvidence(Pattern.FLAT_THEN_RISE, 1.0, (0, 1, 2), (1.0, 1.0), 9, 1e-8, 0)
    ev = _evidence(rem, ad=nan, sp=1.0, sm=-1.0, eps=eps, top_step=2.0)
    assert decide(ev) == (Verdict.KINK, Cause.AD_NOT_FINITE_SLOPES_DIFFER)


def test_values_that_stop_moving_at_the_smallest_step_are_no_jump():
    # AD not finite, the values' remainders of order 0: a jump, unless f(x0 +- h d) equals
    # f(x0) at the smallest step on both sides (float16 squares underflow under norm)
    nan = float("nan")
    zero = RemainderEvidence(Pattern.POWER, 0.0, (0, 1, 2), (0.0, 0.0), 0, nan, nan)
    ev = _evidence(zero, ad=nan, sp=1.0, sm=-1.0)
    assert decide(ev) == (Verdict.DISCONTINUOUS, Cause.AD_NOT_FINITE_JUMP)
    ev = _evidence(zero, ad=nan, sp=1.0, sm=-1.0, values_still=True)
    assert decide(ev) == (Verdict.INCONCLUSIVE, Cause.AD_NOT_FINITE_STILL)


def test_smooth_remainders_with_ad_off_the_exact_and_measured_slopes_are_a_wrong_derivative():
    """A fitted order near 2 where the exact slopes (both sides) agree with the measured
    ones and AD is off them by more than 8 times as much, and beyond 16 eps (1 + 2|J d|)."""
    eps, ex = 2.0**-23, np.array([1.0])

    def ev(ad, sp=1.0 + 1e-5, sm=1.0 - 1e-5, exact=ex):
        return _evidence(ORDER2, ad=ad, sp=sp, sm=sm, eps=eps, exact_plus=exact,
                         exact_minus=exact, sites_known=True)  # fmt: skip

    assert decide(ev(1.0 + 8e-5 * 1.01)) == (Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_EXACT)
    assert decide(ev(1.0 - 8e-5 * 1.01)) == (Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_EXACT)
    # short of 8 times: an error the order-2 term hides at these steps, not confirmed
    # (the measured slopes 1e-5 from the exact one) and not cleared: inconclusive
    unresolved = (Verdict.INCONCLUSIVE, Cause.AD_OFF_EXACT_UNRESOLVED)
    assert decide(ev(1.0 + 8e-5 * 0.99)) == unresolved
    assert decide(ev(1.0 - 2.1e-5)) == unresolved
    # measured slopes as coarse as the gap, leaning to AD by their noise, do not clear it
    # (a rule 0.1% off in float32); both within half the gap of AD do (a primal whose
    # own derivative rounds badly: sinc near 0)
    assert decide(ev(1.0 + 3e-5, sp=1.0 + 2.9e-5, sm=1.0 + 1.4e-5)) == unresolved
    assert decide(ev(1.0 + 3e-5, sp=1.0 + 1.4e-5, sm=1.0 + 2.9e-5)) == unresolved
    cleared = (Verdict.SMOOTH, Cause.ORDER_TWO)
    assert decide(ev(1.0 + 3e-5, sp=1.0 + 2.9e-5, sm=1.0 + 1.6e-5)) == cleared
    assert decide(ev(1.0 - 3e-5, sp=1.0 - 2.9e-5, sm=1.0 - 1.6e-5)) == cleared
    assert decide(ev(1.001, sp=1.001, sm=1.001)) == (Verdict.SMOOTH, Cause.ORDER_TWO)
    # the measured slopes exactly on the exact ones: rounding (16 eps (1 + 2)) decides
    assert decide(ev(1.0 + 48 * eps * 1.01, sp=1.0, sm=1.0))[0] == Verdict.WRONG_DERIVATIVE
    assert decide(ev(1.0 + 48 * eps * 0.99, sp=1.0, sm=1.0))[0] == Verdict.SMOOTH
    # the measured slopes 1e-5 away (neither corroborating nor clearing): rounding decides
    assert decide(ev(1.0 + 48 * eps * 0.99))[0] == Verdict.SMOOTH
    assert decide(ev(1.0 + 48 * eps * 1.01)) == unresolved
    # the side farther from the exact slope counts
    assert decide(ev(1.0 + 8e-5 * 1.01, sm=1.0 - 2e-5)) == unresolved
    # no exact slopes, or non-finite measured ones: nothing to corroborate
    assert decide(_evidence(ORDER2, ad=1.1, sp=1.0, sm=1.0, eps=eps))[0] == Verdict.SMOOTH
    # (non-finite measured slopes corroborate nothing, nor clear AD 10% off the exact)
    assert decide(ev(1.1, sp=float("nan"))) == unresolved
    assert decide(ev(1.1, exact=np.array([np.inf])))[0] == Verdict.SMOOTH


def test_remainders_at_a_floor_below_the_smallest_normal_read_nothing():
    """Flat remainders (or flat, then a rise) where the floor is subnormal: the remainders
    may have been flushed to 0, so neither 'linear' nor 'a nonsmooth point further out'
    follows; a power law above the floor is still read."""
    rise = RemainderEvidence(Pattern.FLAT_THEN_RISE, 1.0, (0, 1, 2), (1.0, 1.0), 9, 1e-3, 0)
    for rem in (FLAT, rise):
        assert decide(_evidence(rem, underflow=True)) == (Verdict.INCONCLUSIVE, Cause.UNDERFLOW)
    assert decide(_evidence(FLAT)) == (Verdict.LINEAR, Cause.FLAT)
    assert decide(_evidence(ORDER2, underflow=True)) == (Verdict.SMOOTH, Cause.ORDER_TWO)


def test_non_finite_values_are_inconclusive():
    assert decide(_evidence(ORDER2, f0_finite=False))[1] is Cause.F0_NOT_FINITE
    assert decide(_evidence(ORDER2, f_finite=False))[1] is Cause.F_NOT_FINITE


def test_piecewise_linear_proof_from_the_jaxpr():
    kw = dict(piecewise_linear=True, sites_known=True, tied=0, radius_plus=0.1, radius_minus=0.2)
    assert decide(_evidence(ORDER1, below_switch=4, flat_below_switch=True, **kw)) == (
        Verdict.LINEAR,
        Cause.AFFINE_BETWEEN_SWITCHES,
    )
    assert decide(_evidence(ORDER1, below_switch=0, **kw)) == (
        Verdict.INCONCLUSIVE,
        Cause.SWITCH_TOO_CLOSE,
    )
    # remainders informative below the switch: no proof, the remainders decide
    assert decide(_evidence(ORDER1, ad=0.0, below_switch=4, flat_below_switch=False, **kw))[0] == (
        "wrong_derivative"
    )
    # a tie somewhere: x0 sits on a switch, no proof
    tied = dict(kw, tied=1)
    assert decide(_evidence(ORDER1, ad=0.0, sp=1.0, sm=0.0, below_switch=4, **tied))[0] == "kink"


def test_a_kink_verdict_needs_an_element_on_a_switch():
    kw = dict(sites_known=True, tied=0, radius_plus=1e-9, radius_minus=math.inf)
    assert decide(_evidence(ORDER1, ad=0.0, sp=1.0, sm=0.0, **kw)) == (
        Verdict.INCONCLUSIVE,
        Cause.NEAR_SWITCH,
    )
    unknown = dict(kw, sites_known=False)
    assert decide(_evidence(ORDER1, ad=0.0, sp=1.0, sm=0.0, **unknown))[0] == "kink"


def test_a_short_fully_informative_sequence_is_fitted_on_its_own_steps():
    # four steps, all well above the floor: the window is exactly those four indices
    h = H[:4]
    ev = classify_remainders(h, h * np.array([1.0, 1.1, 0.9, 1.05]), np.full(4, 1e-12), 1.0)
    assert ev.window == (0, 1, 2, 3) and ev.n_flat == 0


def test_three_clean_steps_at_the_small_end_are_the_window():
    # all informative (above 2 floors); clean (above 8) except step 4: the window is the
    # three contiguous clean steps at the small end, not the informative run's last five
    r = np.array([100.0, 50.0, 25.0, 12.5, 5.0, 10.0, 9.0, 8.5])
    ev = classify_remainders(H[:8], r, np.ones(8), 1.0)
    assert ev.n_flat == 0 and ev.window == (5, 6, 7)


def test_a_resolution_of_exactly_a_quarter_still_decides():
    # errors 1/8 + 1/8 on slopes of scale 1 (eps 0): resolution exactly RESOLUTION = 0.25,
    # which is fine enough ("at most 25% of the slopes' scale")
    plus = minus = Slope(np.array([1.0]), 0.125, 1e-3)
    t = SlopeTests.of(np.array([1.0]), plus, minus, 0.0)
    assert t.resolution == 0.25 and t.agree
    assert SlopeTests.of(np.array([1.3]), plus, minus, 0.0).ad_off  # 0.3 away > tol 0.25


def test_ad_on_the_floor_below_a_switch_demotes_only_a_finite_wrong_derivative():
    # order 1 with AD off both slopes: wrong_derivative, unless a known switch is near and
    # the steps below it follow AD (then the larger steps, crossing it, disagree)
    wrong = dict(ad=0.0, sp=1.0, sm=1.0)
    near = dict(sites_known=True, radius_plus=1e-5, radius_minus=1e-5)
    assert decide(_evidence(ORDER1, **wrong))[0] is Verdict.WRONG_DERIVATIVE
    got = decide(_evidence(ORDER1, **wrong, **near, below_switch=3, flat_below_switch=True))
    assert got == (Verdict.INCONCLUSIVE, Cause.AD_ON_FLOOR_BELOW_SWITCH)
    for kw in (
        dict(below_switch=3, flat_below_switch=False),  # not flat: AD is off there too
        dict(below_switch=0, flat_below_switch=True),  # no step below the switch
    ):
        assert decide(_evidence(ORDER1, **wrong, **near, **kw))[0] is Verdict.WRONG_DERIVATIVE
    unknown = dict(near, sites_known=False)
    got = decide(_evidence(ORDER1, **wrong, **unknown, below_switch=3, flat_below_switch=True))
    assert got[0] is Verdict.WRONG_DERIVATIVE
    far = dict(near, radius_plus=math.inf, radius_minus=math.inf)
    got = decide(_evidence(ORDER1, **wrong, **far, below_switch=3, flat_below_switch=True))
    assert got[0] is Verdict.WRONG_DERIVATIVE


def test_scattered_orders_all_above_one_are_smooth():
    """Remainders falling like h^2 at first and h^3.5 later (a pre-asymptotic
    range, as layer norm's at a constant input): too scattered for one power law, but no
    pair of steps shrinks like h or slower, so no order-1 term is present: smooth. One
    pair at order 1.5 (a kink's h term showing) keeps it inconclusive."""
    h = 2.0 ** -np.arange(6)
    two_then_three = 2.0 ** -np.array([0.0, 2.0, 4.0, 6.0, 9.5, 13.0])
    ev = classify_remainders(h, two_then_three, np.full(6, 1e-12), 1.0)
    assert ev.pattern is Pattern.SCATTERED and min(ev.local) == 2.0
    assert decide(_evidence(ev)) == (Verdict.SMOOTH, Cause.ORDERS_ALL_ABOVE_ONE)
    slow = two_then_three.copy()
    slow[2:] *= 2**0.5  # the window's first pair at order 1.5
    ev = classify_remainders(h, slow, np.full(6, 1e-12), 1.0)
    assert ev.pattern is Pattern.SCATTERED and min(ev.local) == 1.5
    assert decide(_evidence(ev)) == (Verdict.INCONCLUSIVE, Cause.SCATTERED)


def test_layer_norm_at_a_constant_input_is_smooth_in_float32():
    """(x - mean) / sqrt(var + 1e-5) at a constant x: smooth (var + 1e-5 > 0); along a
    centred direction the remainder is h^3 for h << sqrt(1e-5) and saturates above it,
    so float32's resolvable steps (about 1e-3 and up) see orders between 2 and 3. The
    float64 check (steps down to 1e-6) sees order 3."""

    def layer_norm(x):
        c = x - jnp.mean(x)
        w = jnp.sin(jnp.arange(4.0, dtype=x.dtype))
        return jnp.sum(w * c / jnp.sqrt(jnp.mean(c * c) + 1e-5))

    for dtype in (jnp.float32, jnp.float64):
        rep = jr.check_linearization(layer_norm, jnp.ones(4, dtype))
        assert rep.verdict == "smooth", rep.reason


# ------------------------------------- measured verdicts the exact slopes contradict
# (functions from a probe of ML losses in low precision; slopes derived by hand)


@pytest.mark.parametrize(
    "f, x, d, dtype, slopes",
    [
        # elastic net sum(w^2) + 1e-3 sum|w| at w = [0, 1] along e0: slopes 1e-3 and -1e-3
        # (order 1.8 over the fitted steps: the kink's h term is small beside h^2)
        (lambda w: jnp.sum(w * w) + 1e-3 * jnp.sum(jnp.abs(w)), [0.0, 1.0], [1.0, 0.0],
         jnp.float32, (1e-3, -1e-3)),
        # sum(x^2 / 8 + clip(x, -1, 1)) at [6, 1] along e1: (1 + t)^2 / 8 + min(1 + t, 1):
        # slopes 1/4 and 5/4; float16's steps, scaled to |x| = 6, reach 8
        (lambda x: jnp.sum(x * x / 8 + jnp.clip(x, -1, 1)), [6.0, 1.0], [0.0, 1.0],
         jnp.float16, (0.25, 1.25)),
    ],
)  # fmt: skip
def test_a_power_law_fit_at_a_tied_kink_is_no_smooth_verdict(f, x, d, dtype, slopes):
    rep = jr.check_linearization(f, jnp.asarray(x, dtype), jnp.asarray(d, dtype))
    assert rep.verdict == "kink", rep.reason
    np.testing.assert_allclose([rep.exact_slope_plus, rep.exact_slope_minus], slopes, rtol=1e-3)


def test_coarse_low_precision_steps_are_no_kink_where_the_exact_slopes_agree():
    """softplus is C-infinity: at 0 its slope is 1/2 on both sides, and the slope of
    sum(softplus(x)) at (100, -100, 0) along (1, 1, 1) is 1 + 0 + 1/2 on both sides.
    float16's steps along it (8 and up: they must move 100 as asked) see softplus(h) ~ h:
    measured slopes near 2 and 1. The exact one-sided slopes, both 3/2, rule a kink out:
    inconclusive, not kink."""
    f = lambda x: jnp.sum(jax.nn.softplus(x))
    x, d = jnp.asarray([100.0, -100.0, 0.0], jnp.float16), jnp.ones(3, jnp.float16)
    rep = jr.check_linearization(f, x, d)
    assert rep.verdict == "inconclusive" and "exact one-sided slopes" in rep.reason
    assert rep.exact_slope_plus == rep.exact_slope_minus == 1.5
    assert (
        jr.check_linearization(f, x.astype(jnp.float32), d.astype(jnp.float32)).verdict == "smooth"
    )


def test_bfloat16_steps_that_see_only_curvature_are_no_wrong_derivative():
    """Layer norm sum(w * (x - mean) / sqrt(var + 1e-5)) at x = 0 along e0, w = [1, 2, 3,
    4]: the centred direction is e0 - 1/4, so f'(0; e0) = (1 - 10/4) / sqrt(1e-5) =
    -474.3, which AD and the exact slopes give. bfloat16's steps (0.016 and up) lie far
    beyond sqrt(1e-5), where f saturates: their slope is no derivative."""
    w = jnp.asarray([1.0, 2.0, 3.0, 4.0])

    def layer_norm(x):
        c = x - jnp.mean(x)
        return jnp.sum(w.astype(x.dtype) * c / jnp.sqrt(jnp.mean(c * c) + 1e-5))

    d = jnp.asarray([1.0, 0.0, 0.0, 0.0])
    rep = jr.check_linearization(layer_norm, jnp.zeros(4, jnp.bfloat16), d.astype(jnp.bfloat16))
    assert rep.verdict == "inconclusive" and "exact" in rep.reason
    rep32 = jr.check_linearization(layer_norm, jnp.zeros(4, jnp.float32), d.astype(jnp.float32))
    assert rep32.verdict == "smooth"
    assert rep32.ad_slope == pytest.approx(-1.5 / np.sqrt(1e-5), rel=1e-4)


BF16, F32_EPS = 2.0**-8, 2.0**-23
A = lambda v: np.atleast_1d(np.asarray(v, float))


def test_exact_slopes_overrule_measured_verdicts_only_where_they_are_exact():
    one, two = read(power(1.0, 1.0)), read(power(1.0, 2.0))
    # AD 5 off the agreeing measured slopes 1, but equal to the exact slopes: in bfloat16
    # the steps are too coarse; in float32 the measurement stands
    wrong = dict(ad=5.0, sp=1.0, sm=1.0, exact_plus=A(5.0), exact_minus=A(5.0), sites_known=True)
    assert decide(_evidence(one, eps=BF16, **wrong)) == (
        Verdict.INCONCLUSIVE,
        Cause.EXACT_SLOPES_MATCH_AD,
    )
    assert decide(_evidence(one, eps=F32_EPS, **wrong))[0] is Verdict.WRONG_DERIVATIVE
    off = dict(wrong, exact_plus=A(7.0), exact_minus=A(7.0))  # AD not the exact slope
    assert decide(_evidence(one, eps=BF16, **off))[0] is Verdict.WRONG_DERIVATIVE
    # measured slopes 1 and 0 (a kink) where the exact ones agree
    kink = dict(ad=0.5, sp=1.0, sm=0.0, exact_plus=A(0.5), exact_minus=A(0.5), sites_known=True)
    assert decide(_evidence(one, **kink)) == (Verdict.INCONCLUSIVE, Cause.EXACT_SLOPES_AGREE)
    assert decide(_evidence(one, **dict(kink, sites_known=False)))[0] is Verdict.KINK
    assert decide(_evidence(one, **dict(kink, exact_minus=A(0.4))))[0] is Verdict.KINK
    # order 2 at a tie whose exact slopes differ: kink where the measured ones agree with
    # them, else inconclusive; with no element tied, smooth stands
    tie = dict(ad=0.5, exact_plus=A(1.0), exact_minus=A(0.0), sites_known=True, tied=1)
    assert decide(_evidence(two, sp=1.0, sm=0.0, **tie)) == (
        Verdict.KINK,
        Cause.EXACT_SLOPES_DIFFER,
    )
    assert decide(_evidence(two, sp=0.5, sm=0.5, **tie)) == (
        Verdict.INCONCLUSIVE,
        Cause.SMOOTH_FIT_AT_KINK,
    )
    assert decide(_evidence(two, sp=0.5, sm=0.5, **dict(tie, tied=0)))[0] is Verdict.SMOOTH
    same = dict(tie, exact_minus=A(1.0 - 1e-15))  # apart by rounding only
    assert decide(_evidence(two, sp=0.5, sm=0.5, **same))[0] is Verdict.SMOOTH


def test_slopes_measured_across_a_tied_jump_are_no_wrong_derivative():
    """floor at 1e6 in float32 (gap 1, 16 ulps of f, below the floor): the steps that
    resolve a slope (32 and up) see the staircase's slope 1 against AD's 0, and the exact
    one-sided slopes (0, 0) are AD's. With x0 on a jump of the program that is no wrong
    derivative but undecidable; off every jump, or with exact slopes that are not AD's,
    the measurement stands."""
    one = read(power(1.0, 1.0))
    case = dict(
        ad=0.0, sp=1.0, sm=1.0, exact_plus=A(0.0), exact_minus=A(0.0), sites_known=True, tied=1
    )
    at_jump = _evidence(one, eps=F32_EPS, tied_jumps=1, **case)
    assert decide(at_jump) == (Verdict.INCONCLUSIVE, Cause.SLOPES_ACROSS_JUMP)
    assert "jump" in explain(Cause.SLOPES_ACROSS_JUMP, at_jump, H)
    assert decide(_evidence(one, eps=F32_EPS, tied_jumps=0, **case))[0] is Verdict.WRONG_DERIVATIVE
    off = dict(case, exact_plus=A(1.0), exact_minus=A(1.0))  # AD not the exact slope
    assert decide(_evidence(one, eps=F32_EPS, tied_jumps=1, **off))[0] is Verdict.WRONG_DERIVATIVE
    # AD 16 ulps from the exact slope still matches; far more does not
    near = dict(case, ad=8 * F32_EPS)
    assert decide(_evidence(one, eps=F32_EPS, tied_jumps=1, **near))[1] is Cause.SLOPES_ACROSS_JUMP
    far = dict(case, ad=64 * F32_EPS)
    assert decide(_evidence(one, eps=F32_EPS, tied_jumps=1, **far))[0] is Verdict.WRONG_DERIVATIVE
