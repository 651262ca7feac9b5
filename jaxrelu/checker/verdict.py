"""From evidence to a verdict: a small pure function, and the closed sets of verdicts and
of the causes behind them (each cause has its sentence in :mod:`.explain`).

The rules, in order:

1. ``f(x0)`` or ``f`` at small steps not finite: inconclusive.
2. A piecewise-linear program (read from the jaxpr) with no element on a switch is affine
   up to its nearest switch: *linear* when the remainders below that switch are at
   roundoff; inconclusive when the switch is closer than the smallest step.
3. AD's derivative not finite (``norm`` at 0, the ``where`` trap in reverse mode): the
   one-sided slopes from values decide: *kink* if they differ, *wrong_derivative* if
   they agree (``f`` is differentiable along ``d``), *discontinuous* if the values jump.
4. Otherwise the remainders: at the floor everywhere: *linear* if the floor is fine enough
   to exclude curvature (and, where the jaxpr gives the exact slopes, AD within rounding
   of them: else the values are too coarse to tell, inconclusive); at the floor then an
   abrupt rise: *linear* (a kink further out),
   unless fewer than 3 steps are flat and an element sits on a switch: then the rise is
   read as below (the flat steps are rounding inside ``f``). With an element on a switch,
   *linear* also needs the exact one-sided slopes and AD's to be equal: where they differ
   resolvably, *kink* or *wrong_derivative*; by less, inconclusive;
   order 2 (or local orders scattered but each at least 1.6): *smooth*, unless AD
   is off the exact slopes beyond rounding (see :func:`_against_exact`); order 1:
   inconclusive if the one-sided slopes (read again at the
   fitted steps if need be) do not account for the remainders at the smallest steps (a
   staircase's slope over many stairs), else *kink* if they differ,
   *wrong_derivative* if AD is resolvably off both (the slopes from the jaxpr break ties
   the measured ones cannot resolve); order 0: *discontinuous*.
5. A *kink* or *discontinuous* verdict with no element of any known site on its switch
   means the switch is closer than the steps can resolve: inconclusive. In a program
   with no nonsmooth operation at all whose AD is finite at ``x0``, ``f`` is
   differentiable there: inconclusive too (variation the steps do not resolve).
6. A *wrong_derivative* from the measured slopes needs ``f``'s values to follow them
   (not a constant offset across ``x0`` at every step, as at a jump, read against the
   values' own floor) and AD's slope at the smallest steps read (the fitted window's) to
   stay near its value at ``x0`` or near the measured slopes; where it wanders (``f``
   varies below the steps that inform the verdict): inconclusive.
7. Inconclusive from the remainders (scattered, too few, an order none of 0/1/2, or rule
   5) while no element is tied and a switch lies inside the grid: the steps below that
   switch alone decide; order 2 there is *smooth* (a smooth point near a kink).

Anything else is *inconclusive*, with the reason; a confident wrong verdict is worse.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np

from .remainders import KAPPA_ABRUPT, KAPPA_FLAT, Pattern, RemainderEvidence
from .slopes import Slope

__all__ = ["RESOLUTION", "VERDICTS", "Cause", "Evidence", "SlopeTests", "Verdict", "decide"]

RESOLUTION = 0.25  # a slope-based claim needs errors below 25% of the slopes' scale
MIN_FLAT = 3  # a "linear" verdict from remainders alone needs 3 steps at the floor
# f still at the small steps, up to eps^(1/3) of the scale: rounding inside f may hold it
# (a change of order h^3 or lower stays under an ulp that far)
PLATEAU_POWER = 1.0 / 3.0
# AD off the exact slopes by 8 times what the measured ones are: a wrong custom rule
AD_OFF_FACTOR = 8.0


class Verdict(enum.StrEnum):
    """What the linearization property does at ``x0`` along ``d``. String-valued:
    ``Verdict.KINK == "kink"``, and reports and JSON show the plain string."""

    LINEAR = "linear"
    SMOOTH = "smooth"
    KINK = "kink"
    WRONG_DERIVATIVE = "wrong_derivative"
    DISCONTINUOUS = "discontinuous"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


VERDICTS = tuple(v.value for v in Verdict)


class Cause(enum.Enum):
    """Why a verdict was reached (one per branch of :func:`decide`)."""

    F0_NOT_FINITE = enum.auto()
    F_NOT_FINITE = enum.auto()
    AFFINE_BETWEEN_SWITCHES = enum.auto()
    SWITCH_TOO_CLOSE = enum.auto()
    AD_NOT_FINITE_SLOPES_DIFFER = enum.auto()
    AD_NOT_FINITE_SLOPES_AGREE = enum.auto()
    AD_NOT_FINITE_JUMP = enum.auto()
    AD_NOT_FINITE_NON_LIPSCHITZ = enum.auto()
    AD_NOT_FINITE_STILL = enum.auto()
    AD_NOT_FINITE_UNRESOLVED = enum.auto()
    AD_NOT_FINITE_PLATEAU = enum.auto()
    UNDERFLOW = enum.auto()
    FLAT = enum.auto()
    FLAT_TOO_COARSE = enum.auto()
    FLAT_AT_JUMP = enum.auto()
    FLAT_AT_KINK = enum.auto()
    FLAT_THEN_RISE = enum.auto()
    RISE_TOO_COARSE = enum.auto()
    FEW_STEPS = enum.auto()
    SCATTERED = enum.auto()
    ORDER_TWO = enum.auto()
    ORDERS_ALL_ABOVE_ONE = enum.auto()
    SMOOTH_FIT_AT_KINK = enum.auto()
    EXACT_SLOPES_AGREE = enum.auto()
    EXACT_SLOPES_MATCH_AD = enum.auto()
    SLOPES_ACROSS_JUMP = enum.auto()
    SLOPES_DIFFER = enum.auto()
    EXACT_SLOPES_DIFFER = enum.auto()
    AD_OFF_SLOPES = enum.auto()
    AD_OFF_EXACT = enum.auto()
    AD_OFF_EXACT_UNRESOLVED = enum.auto()
    ORDER_ONE_UNRESOLVED = enum.auto()
    SLOPES_OFF_REMAINDERS = enum.auto()
    ORDER_ZERO = enum.auto()
    ORDER_OTHER = enum.auto()
    NEAR_SWITCH = enum.auto()
    ORDER_TWO_BELOW_SWITCH = enum.auto()
    AD_ON_FLOOR_BELOW_SWITCH = enum.auto()
    AD_VARIES_AT_STEPS = enum.auto()
    STEEP_BELOW_STEPS = enum.auto()
    NO_NONSMOOTH_SITE = enum.auto()
    FLAT_AD_OFF_EXACT = enum.auto()


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (immutability only)
class SlopeTests:
    """Comparisons of AD's slope with the one-sided slopes, with the tolerance that
    decides them (``differ``: the slopes differ by more than ``tol``; ``agree``: they
    agree and ``tol`` is fine enough to say so; ``ad_off``: AD is farther than ``tol``
    from both; ``resolution``: ``tol`` relative to the slopes' scale)."""

    tol: float
    differ: bool
    agree: bool
    ad_off: bool
    in_hull: bool
    resolution: float

    @staticmethod
    def of(ad: np.ndarray, plus: Slope, minus: Slope, eps: float) -> SlopeTests:
        sp, sm = plus.value, minus.value
        scale = max(1.0, float(np.linalg.norm(sp)), float(np.linalg.norm(sm)))
        if np.all(np.isfinite(ad)):
            scale = max(scale, float(np.linalg.norm(ad)))
        tol = plus.error + minus.error + 16 * eps * scale
        resolution = tol / scale
        gap = float(np.linalg.norm(sp - sm))
        finite = bool(np.all(np.isfinite(sp)) and np.all(np.isfinite(sm)))
        differ = finite and gap > tol
        agree = finite and gap <= tol and resolution <= RESOLUTION
        off = min(float(np.linalg.norm(ad - sp)), float(np.linalg.norm(ad - sm)))
        ad_off = bool(np.all(np.isfinite(ad))) and off > tol and resolution <= RESOLUTION
        lo, hi = np.minimum(sp, sm), np.maximum(sp, sm)
        in_hull = finite and bool(np.all(ad >= lo - tol) and np.all(ad <= hi + tol))
        return SlopeTests(tol, differ, agree, ad_off, in_hull, resolution)


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (immutability only)
class Evidence:
    """Everything :func:`decide` looks at (NumPy values, flat over outputs).

    Attributes:
        remainders: the reading of the AD remainders (of the value remainders, against
            each side's own slope, when AD is not finite).
        ad: AD's slope; ``ad_finite`` whether it is finite.
        plus, minus: one-sided slopes from values; ``tests`` their comparisons.
        exact_plus, exact_minus: the one-sided slopes from the jaxpr (None if unknown).
        f0_finite: ``f(x0)`` finite; ``f_finite``: ``f`` finite at the small steps.
        sites_known: the kink analysis ran, knows every primitive, and has the exact
            one-sided slopes at every tie; ``inexact_ties``: it knows every primitive,
            but at some tie the slopes are not exact (an ``eigh`` or ``svd`` tie, an
            undecided one).
        tied: elements exactly on a switch (over all sites); ``tied_jumps`` those of
            sites that are jumps.
        no_sites: the kink analysis knows every primitive and meets no nonsmooth
            operation along ``±d``, none behind ``stop_gradient`` either: a smooth program.
        radius_plus, radius_minus: distance to the nearest switch along ``±d``.
        piecewise_linear: the program is piecewise linear in ``x``.
        below_switch: number of grid steps below the nearest switch (both sides).
        flat_below_switch: the remainders at those steps are at the floor.
        resolved_below_switch: a slope error within the slopes' resolution would show
            at those steps (a switch closer than a few floors' worth of ``h |J d|``
            hides one: a straight-through estimator's fine stairs).
        below: the reading of the remainders at those steps alone, where no element is
            tied and a switch lies inside the grid (None otherwise): the local behaviour
            at ``x0``, which the larger steps, crossing the switch, cannot show.
        eps: working machine epsilon.
        top_step: the largest step of the grid (the problem's scale).
        underflow: the floor at the smallest step is positive but below the smallest
            normal number: remainders there may be flushed to 0 (``exp`` at -700 in
            float64), so remainders at the floor say nothing.
        values_still: ``f(x0 +- h d)`` equals ``f(x0)`` exactly at the smallest step on
            both sides (a jump cannot do that).
        values_jump: over the fitted steps, ``f``'s values keep a constant offset from
            the measured slopes' lines (a jump at the grid's resolution; computed where
            the remainders are of order 1 and AD is finite).
        ad_near: AD's slopes at the grid's two smallest steps, then at the two smallest
            steps read (the fitted window's) and 0.618 times the smallest, ``x0 + h d``
            then ``x0 - h d`` for each (rows, flat over outputs); measured only to
            confirm a *wrong_derivative* read from the measured slopes (None otherwise).
    """

    remainders: RemainderEvidence
    ad: np.ndarray
    ad_finite: bool
    plus: Slope
    minus: Slope
    tests: SlopeTests
    # defaults: what a check without kink analysis knows  (pragma: no mutate below)
    exact_plus: np.ndarray | None = None  # pragma: no mutate
    exact_minus: np.ndarray | None = None  # pragma: no mutate
    f0_finite: bool = True  # pragma: no mutate
    f_finite: bool = True  # pragma: no mutate
    sites_known: bool = False  # pragma: no mutate
    inexact_ties: bool = False  # pragma: no mutate
    tied: int = 0  # pragma: no mutate
    tied_jumps: int = 0  # pragma: no mutate
    no_sites: bool = False  # pragma: no mutate
    radius_plus: float = math.nan  # pragma: no mutate
    radius_minus: float = math.nan  # pragma: no mutate
    piecewise_linear: bool = False  # pragma: no mutate
    below_switch: int = 0  # pragma: no mutate
    flat_below_switch: bool = False  # pragma: no mutate
    resolved_below_switch: bool = True  # pragma: no mutate
    below: RemainderEvidence | None = None  # pragma: no mutate
    top_step: float = 1.0  # pragma: no mutate
    underflow: bool = False  # pragma: no mutate
    slopes_fit: bool = True  # pragma: no mutate
    values_still: bool = False  # pragma: no mutate
    values_jump: bool = False  # pragma: no mutate
    ad_near: np.ndarray | None = None  # pragma: no mutate
    eps: float = 2.0**-52  # pragma: no mutate


def _order_class(p: float) -> str:
    if p >= 1.6:
        return "two"
    if 0.7 <= p <= 1.3:
        return "one"
    if p <= 0.3:
        return "zero"
    return "other"


def _exact_break(ev: Evidence) -> tuple[Verdict, Cause] | None:
    """The one-sided slopes read from the jaxpr, where the measured ones cannot resolve
    the case but agree with them."""
    ex_p, ex_m, t = ev.exact_plus, ev.exact_minus, ev.tests
    if ex_p is None or ex_m is None:
        return None
    # non-finite exact slopes would reach no verdict below either (NaN, inf tests are False)
    if not (np.all(np.isfinite(ex_p)) and np.all(np.isfinite(ex_m))):  # pragma: no mutate
        return None
    consistent = np.linalg.norm(ev.plus.value - ex_p) <= ev.plus.error + 16 * ev.eps * (
        1 + np.linalg.norm(ex_p)
    ) and np.linalg.norm(ev.minus.value - ex_m) <= ev.minus.error + 16 * ev.eps * (
        1 + np.linalg.norm(ex_m)
    )
    if not consistent:
        return None
    exact_tol = 16 * ev.eps * (1 + np.linalg.norm(ex_p) + np.linalg.norm(ex_m))
    # component by component: outputs of very different sizes (stack([1e7 x, relu(x)]))
    if np.any(np.abs(ex_p - ex_m) > 16 * ev.eps * (1 + np.abs(ex_p) + np.abs(ex_m))):
        return Verdict.KINK, Cause.EXACT_SLOPES_DIFFER
    if ev.ad_finite and np.linalg.norm(ev.ad - ex_p) > max(t.tol, float(exact_tol)):
        return Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_EXACT
    return None


def _ad_not_finite(ev: Evidence) -> tuple[Verdict, Cause]:
    rem, t = ev.remainders, ev.tests
    if rem.pattern in (Pattern.POWER, Pattern.SCATTERED):
        cls = _order_class(rem.order)
        if cls == "zero" and ev.values_still:
            # f(x0 +- h d) equals f(x0) at the smallest step, on both sides: no jump; the
            # values stop moving there (norm at 0 in float16: the steps' squares underflow)
            return Verdict.INCONCLUSIVE, Cause.AD_NOT_FINITE_STILL
        if cls == "zero":
            return Verdict.DISCONTINUOUS, Cause.AD_NOT_FINITE_JUMP
        if rem.order < 0.7:
            return Verdict.INCONCLUSIVE, Cause.AD_NOT_FINITE_NON_LIPSCHITZ
    if t.differ:
        return Verdict.KINK, Cause.AD_NOT_FINITE_SLOPES_DIFFER
    if rem.pattern is Pattern.FLAT_THEN_RISE and rem.rise <= ev.eps**PLATEAU_POWER * ev.top_step:
        # f still at the small steps, moving beyond: rounding inside f holds it still while
        # an intermediate changes by less than an ulp, up to h ~ eps^(1/k) for a change of
        # order h^k (arccos(cos x) at 0: cos rounds to 1 up to sqrt(eps), and f = |x|
        # beyond); a plateau reaching further (the where trap's) is f's own
        return Verdict.INCONCLUSIVE, Cause.AD_NOT_FINITE_PLATEAU
    if t.agree:
        return Verdict.WRONG_DERIVATIVE, Cause.AD_NOT_FINITE_SLOPES_AGREE
    return Verdict.INCONCLUSIVE, Cause.AD_NOT_FINITE_UNRESOLVED


def _linear_unless_on_a_switch(ev: Evidence, cause: Cause) -> tuple[Verdict, Cause]:
    """Remainders at the roundoff floor say ``linear`` -- unless the jaxpr puts ``x0`` on
    a switch whose effect rounding can hide (``1e6 + relu(x)`` in float32: ``f`` rounds
    the kink away at every small step): then the exact one-sided slopes decide a kink, and
    a tied jump (whose gap may lie below the floor), or a tie whose exact slopes are
    unknown (``1e6 + eigvalsh(...)`` at a double eigenvalue), leaves it undecided."""
    if not _on_a_known_switch(ev):
        return Verdict.LINEAR, cause
    exact = _exact_break(ev)
    if exact is not None:
        return exact
    if ev.tied_jumps > 0:
        return Verdict.INCONCLUSIVE, Cause.FLAT_AT_JUMP
    if not _exact_all_equal(ev):
        return Verdict.INCONCLUSIVE, Cause.FLAT_AT_KINK
    return Verdict.LINEAR, cause


def _on_a_known_switch(ev: Evidence) -> bool:
    """Whether the jaxpr, every primitive known, puts ``x0`` on a switch."""
    return (ev.sites_known or ev.inexact_ties) and ev.tied > 0


def _exact_all_equal(ev: Evidence) -> bool:
    """Whether the exact one-sided slopes from the jaxpr are the same numbers (one code
    path computes both) and AD's slope (another path: ``jax.linearize``) agrees with them
    to rounding, twice the working epsilon of the largest component. A tie whose kink, or
    AD's error, is below what the tolerances resolve leaves them apart: ``x + 1e-6
    relu(x)`` in float32 (slopes 8 ulps apart), ``1e6 x0 + relu(x1) - relu(-x1)`` (AD 11
    ulps off)."""
    ex_p, ex_m = ev.exact_plus, ev.exact_minus
    # (both exact slopes come from one analysis: both None or both set; ``and`` alike)
    if ex_p is None or ex_m is None or np.shape(ex_p) != np.shape(ex_m):  # pragma: no mutate
        return False
    if not np.array_equal(ex_p, ex_m):
        return False
    # (decide reads this only where AD is finite: the other answer reads alike)
    if not ev.ad_finite:  # pragma: no mutate
        return True  # pragma: no mutate
    if np.shape(ev.ad) != np.shape(ex_p):
        return False
    scale = float(np.max(np.abs(np.concatenate([np.ravel(ev.ad), np.ravel(ex_p)])), initial=0))
    return bool(np.all(np.abs(ev.ad - ex_p) <= 2 * ev.eps * scale))


def _from_remainders(ev: Evidence) -> tuple[Verdict, Cause]:
    rem, t = ev.remainders, ev.tests
    if rem.pattern in (Pattern.FLAT, Pattern.FLAT_THEN_RISE) and ev.underflow:
        return Verdict.INCONCLUSIVE, Cause.UNDERFLOW
    if rem.pattern is Pattern.FLAT:
        if rem.kappa <= KAPPA_FLAT:
            return _linear_unless_on_a_switch(ev, Cause.FLAT)
        return Verdict.INCONCLUSIVE, Cause.FLAT_TOO_COARSE
    if rem.pattern is Pattern.FLAT_THEN_RISE:
        if rem.n_flat >= MIN_FLAT and rem.kappa <= KAPPA_ABRUPT:
            return _linear_unless_on_a_switch(ev, Cause.FLAT_THEN_RISE)
        if not _on_a_known_switch(ev) or math.isnan(rem.order):
            return Verdict.INCONCLUSIVE, Cause.RISE_TOO_COARSE
        # x0 sits on a switch (from the jaxpr): the few flat smallest steps are rounding
        # inside f (floor(x + 2) at 1 in float32: x + 2 swallows the step), and the rise
        # above them is the behaviour at the switch
    if rem.pattern is Pattern.FEW:
        return Verdict.INCONCLUSIVE, Cause.FEW_STEPS
    if rem.pattern is Pattern.SCATTERED:
        return Verdict.INCONCLUSIVE, Cause.SCATTERED
    cls = _order_class(rem.order)
    if cls == "two":
        return Verdict.SMOOTH, Cause.ORDER_TWO
    if cls == "zero":
        return Verdict.DISCONTINUOUS, Cause.ORDER_ZERO
    if cls == "other":
        return Verdict.INCONCLUSIVE, Cause.ORDER_OTHER
    if not ev.slopes_fit:
        return Verdict.INCONCLUSIVE, Cause.SLOPES_OFF_REMAINDERS
    if t.differ:
        return Verdict.KINK, Cause.SLOPES_DIFFER
    if t.ad_off:
        return Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_SLOPES
    exact = _exact_break(ev)
    if exact is not None:
        return exact
    return Verdict.INCONCLUSIVE, Cause.ORDER_ONE_UNRESOLVED


def decide(ev: Evidence) -> tuple[Verdict, Cause]:
    """The verdict and its cause (see the module docstring for the rules)."""
    if not ev.f0_finite:
        return Verdict.INCONCLUSIVE, Cause.F0_NOT_FINITE
    if not ev.f_finite:
        return Verdict.INCONCLUSIVE, Cause.F_NOT_FINITE
    affine_proof = ev.piecewise_linear and ev.sites_known and ev.tied == 0
    if affine_proof and ev.ad_finite and min(ev.radius_plus, ev.radius_minus) > 0:
        if ev.below_switch == 0:
            return Verdict.INCONCLUSIVE, Cause.SWITCH_TOO_CLOSE
        if ev.flat_below_switch and ev.resolved_below_switch:
            return Verdict.LINEAR, Cause.AFFINE_BETWEEN_SWITCHES
    if not ev.ad_finite:
        verdict, cause = _ad_not_finite(ev)
    else:
        verdict, cause = _from_remainders(ev)
    near = min(ev.radius_plus, ev.radius_minus)
    if (
        verdict in (Verdict.KINK, Verdict.DISCONTINUOUS)
        and ev.sites_known
        and ev.tied == 0
        and math.isfinite(near)
    ):
        verdict, cause = Verdict.INCONCLUSIVE, Cause.NEAR_SWITCH
    if verdict in (Verdict.KINK, Verdict.DISCONTINUOUS) and ev.no_sites and ev.ad_finite:
        # no nonsmooth operation anywhere in the program, and AD finite at x0 (no smooth
        # operation at a singularity): f is differentiable at x0. A kink or a jump read
        # from the steps is variation they do not resolve (x + stop_gradient(sin(x)) at
        # 1e5 in float32: sin's swings over steps of 1 to 8 read as a jump)
        verdict, cause = Verdict.INCONCLUSIVE, Cause.NO_NONSMOOTH_SITE
    if (
        verdict is Verdict.WRONG_DERIVATIVE
        and ev.ad_finite  # (the remainders then are AD's)
        and ev.sites_known
        and math.isfinite(near)
        and ev.below_switch > 0
        and ev.flat_below_switch
    ):
        # below the nearest switch f follows AD to the floor: the order-1 remainders come
        # from the steps that cross it (where(isclose(x, 1), 1, x) at 1, AD's 0 right)
        verdict, cause = Verdict.INCONCLUSIVE, Cause.AD_ON_FLOOR_BELOW_SWITCH
    if verdict is Verdict.INCONCLUSIVE and cause in _UNREAD_NEAR_SWITCH:
        # the steps that cross the nearby switch blur the power law; those below it alone
        # show the local behaviour (sin(x) + relu(x - 0.51) at 0.5: smooth, order 2)
        b = ev.below
        if b is not None and b.pattern is Pattern.POWER and _order_class(b.order) == "two":
            return Verdict.SMOOTH, Cause.ORDER_TWO_BELOW_SWITCH
    rem = ev.remainders
    if verdict is Verdict.INCONCLUSIVE and cause is Cause.SCATTERED and ev.ad_finite:
        # every pair of fitted steps shrinks the remainder faster than h (layer norm at a
        # constant input in float32: orders 1.9 to 2.9 as h falls through sqrt(eps_norm),
        # toward 3): no order-1 term (a kink, a wrong slope) shows at any of them
        if rem.local and all(_order_class(q) == "two" for q in rem.local):
            verdict, cause = Verdict.SMOOTH, Cause.ORDERS_ALL_ABOVE_ONE
    verdict, cause = _against_exact(ev, verdict, cause)
    if cause is Cause.AD_OFF_SLOPES and not _ad_steady(ev):
        return Verdict.INCONCLUSIVE, Cause.AD_VARIES_AT_STEPS
    if cause is Cause.AD_OFF_SLOPES and ev.values_jump:
        # the values jump across x0 at every step while AD is finite: a transition steeper
        # than the smallest step resolves (tanh(1e12 x) at 0 in float32), or a jump whose
        # AD is any number; the measured slopes (1 / h) are no derivative
        return Verdict.INCONCLUSIVE, Cause.STEEP_BELOW_STEPS
    return verdict, cause


def _ad_steady(ev: Evidence) -> bool:
    """Whether AD's slope near ``x0`` (``ev.ad_near``; True when not measured) is, at each
    of the grid's two smallest steps, within :data:`RESOLUTION` of the gap between AD at
    ``x0`` and that side's measured slope, of one of the two: the rule is off near ``x0``
    as at it (a wrong custom rule), or off at ``x0`` alone (``relu(x) - relu(-x)`` at 0,
    whose AD is 1 at every other point). Where it is near neither, ``f`` varies on a scale
    below the smallest step that moves ``x0`` (``sin`` at 1e9 in float32, whose steps of 64
    and up span periods), and the measured slopes average over it: they say nothing of
    the derivative at ``x0``.

    The same is asked at the two smallest steps the verdict read and at 0.618 times the
    smallest (rows 4 on, when measured: steps in powers of 2 alias with a period that
    divides them), which lie above the grid's where the smaller remainders are at the floor
    or quantized (``x + sin(x)`` at 1e6 in float32, read at steps of 16 and up, where AD
    swings between 0 and 2), unless the exact slopes from the jaxpr side with the
    measured ones against AD (:func:`_exact_corroborates`): then the read steps only lie
    on ``f``'s curvature (a rule 1% off ``tanh`` in float32)."""
    if ev.ad_near is None:
        return True
    rows = np.asarray(ev.ad_near)
    if not _near_all(ev, rows[:4]):
        return False
    return _near_all(ev, rows[4:]) or _exact_corroborates(ev)


def _near_all(ev: Evidence, rows: np.ndarray) -> bool:
    """Whether every row of AD slopes (``+h``, ``-h`` alternating) is within
    :data:`RESOLUTION` of the gap of AD at ``x0`` or of that side's measured slope."""
    for j, row in enumerate(rows):
        s = (ev.plus if j % 2 == 0 else ev.minus).value
        gap = float(np.linalg.norm(ev.ad - s))
        near = min(float(np.linalg.norm(row - ev.ad)), float(np.linalg.norm(row - s)))
        if not near <= RESOLUTION * gap:
            return False
    return True


def _exact_corroborates(ev: Evidence) -> bool:
    """Whether both measured slopes lie within :data:`RESOLUTION` of AD's distance from
    the exact slope (from the jaxpr: the primal program's own derivative): two readings
    independent of AD's rule agree against it."""
    gap = _ad_exact_gap(ev)
    if not gap > 0:
        return False
    ex = np.asarray(ev.exact_plus)
    far = max(float(np.linalg.norm(s - ex)) for s in (ev.plus.value, ev.minus.value))
    return far <= RESOLUTION * gap


def _exact_apart(ev: Evidence) -> bool | None:
    """Whether the exact one-sided slopes from the jaxpr differ (component by component,
    beyond rounding); None where they are unknown or not finite."""
    ex_p, ex_m = ev.exact_plus, ev.exact_minus
    if ex_p is None or ex_m is None or np.shape(ex_p) != np.shape(ex_m):
        return None
    if not (np.all(np.isfinite(ex_p)) and np.all(np.isfinite(ex_m))):
        return None
    return bool(np.any(np.abs(ex_p - ex_m) > 16 * ev.eps * (1 + np.abs(ex_p) + np.abs(ex_m))))


def _against_exact(ev: Evidence, verdict: Verdict, cause: Cause) -> tuple[Verdict, Cause]:
    """Verdicts from measured steps that the jaxpr's exact one-sided slopes contradict
    (where every site is known and every tie decided, so those slopes are exact):

    * *smooth* at a tied switch whose exact slopes differ: the fitted steps were too
      coarse or the kink too small to show (``x**2 + 1e-3 |x|`` at 0, a float16 grid
      scaled to ``|x0| = 6`` crossing a clip's other bound): *kink* where the measured
      slopes agree with the exact ones, else inconclusive;
    * *kink* from measured slopes that differ where the exact ones agree: no kink along
      ``d`` (``softplus`` at 0 in float16, whose steps reach 16 and beyond);
    * *smooth* where AD is off the exact slopes (which agree) beyond rounding: the h^2
      term hid the error at the fitted steps. *wrong_derivative* where the measured
      slopes are 8 times closer to the exact ones (not in 16 bits), *smooth* where they
      are within half that gap of AD, else inconclusive;
    * *wrong_derivative* in 16-bit precision where AD equals the exact slopes, which
      agree: the steps (0.016 and up in bfloat16) measure curvature, not the derivative
      (layer norm at 0). In float32 and float64 the measured slopes are kept: a wrong
      JVP of a JAX primitive would be wrong in the exact slopes too.
    """
    apart = _exact_apart(ev)
    if apart is None or not ev.sites_known:
        return verdict, cause
    if verdict is Verdict.SMOOTH and apart and ev.tied > 0:
        exact = _exact_break(ev)
        if exact is not None:
            return exact
        return Verdict.INCONCLUSIVE, Cause.SMOOTH_FIT_AT_KINK
    # (half precision: eps is 2^-10 or 2^-7 there, 2^-23 or less otherwise; any bound
    # between reads alike)
    half = ev.eps > 2.0**-12  # pragma: no mutate
    if verdict is Verdict.SMOOTH and not apart and not half and _ad_off_exact_and_measured(ev):
        # a power law near 2 over the fitted steps can hide a small order-1 term below
        # them (a custom rule 0.1% off in float32: orders 1.8 to 1.9). Not in 16 bits,
        # where AD's own rounding (in float16) can stray from the exact slopes (in float32)
        # by more than the few ulps of a steep softmax's measured slopes
        return Verdict.WRONG_DERIVATIVE, Cause.AD_OFF_EXACT
    if (
        verdict is Verdict.LINEAR
        and cause in (Cause.FLAT, Cause.FLAT_THEN_RISE)
        and not apart
        and _ad_off_exact(ev)
    ):
        # remainders at the floor, yet AD off the exact slopes beyond rounding: f's values
        # are too coarse to see the difference (x + stop_gradient(sin(x)) at 1e6 in float32,
        # slope 1.94, AD 1: sin's swings stay under the floor of values near 1e6)
        return Verdict.INCONCLUSIVE, Cause.FLAT_AD_OFF_EXACT
    if verdict is Verdict.SMOOTH and not apart and _ad_off_exact_unresolved(ev):
        # AD off the exact slopes beyond rounding, the measured ones too coarse to
        # corroborate or to clear it (a rule 1e-5 off at 1e5 in float32, where the steps
        # start at an ulp of 0.008; one 10% off in float16): "the derivative is right"
        # cannot be said
        return Verdict.INCONCLUSIVE, Cause.AD_OFF_EXACT_UNRESOLVED
    if verdict is Verdict.KINK and cause is Cause.SLOPES_DIFFER and not apart:
        return Verdict.INCONCLUSIVE, Cause.EXACT_SLOPES_AGREE
    matches_ad = not apart and ev.ad_finite and _exact_equal_ad(ev)
    if verdict is Verdict.WRONG_DERIVATIVE and ev.tied_jumps > 0 and matches_ad:
        # x0 on a jump of the program (floor at 1e6 in float32: a gap of 1, 16 ulps of f,
        # under the floor), whose slopes, both AD's: the measured slope of the steps that
        # resolve one (32 and up) is the staircase's, not a derivative at x0
        return Verdict.INCONCLUSIVE, Cause.SLOPES_ACROSS_JUMP
    if verdict is Verdict.WRONG_DERIVATIVE and matches_ad and half:
        return Verdict.INCONCLUSIVE, Cause.EXACT_SLOPES_MATCH_AD
    return verdict, cause


def _ad_off_exact_and_measured(ev: Evidence) -> bool:
    """Whether AD's slope is off the exact one (which both sides share) by more than
    :data:`AD_OFF_FACTOR` times the measured slopes are, and beyond rounding. Two
    independent readings against AD: a custom rule's own program (the exact slopes
    differentiate the primal) and the values of f. Where the primal's derivative is what
    rounds badly (a custom rule written for that), the measured slopes side with AD and
    nothing is condemned."""
    gap = _ad_exact_gap(ev)
    # (decide asks only where the exact slopes are known and finite, and AD finite where a
    # verdict is smooth: the gap is a number there, and this test a guard never taken)
    if math.isnan(gap):  # pragma: no mutate
        return False  # pragma: no mutate
    ex = np.asarray(ev.exact_plus)
    d_meas = float(max(np.linalg.norm(ev.plus.value - ex), np.linalg.norm(ev.minus.value - ex)))
    if not np.isfinite(d_meas):
        return False
    # (the measured slopes' own error bars are far wider than how close they come to the
    # exact ones: 4e-4 against 1e-5 for sin at 1 in float32; their closeness is what
    # corroborates the exact slopes)
    return bool(gap > max(AD_OFF_FACTOR * d_meas, _rounding(ev, ex)))


def _ad_off_exact_unresolved(ev: Evidence) -> bool:
    """Whether AD's slope is off the exact one beyond rounding (short of
    :func:`_ad_off_exact_and_measured`'s corroboration) without the measured slopes
    clearing it: both within half that gap of AD (the primal's own derivative rounds
    badly: sinc near 0 in float32). Measured slopes as coarse as the gap, or nearer the
    exact one, leave it undecided: a rule 0.1% off in float32 is within their noise."""
    if not _ad_off_exact(ev):
        return False
    to_ad = max(float(np.linalg.norm(s - ev.ad)) for s in (ev.plus.value, ev.minus.value))
    return not to_ad < _ad_exact_gap(ev) / 2


def _ad_off_exact(ev: Evidence) -> bool:
    """Whether AD's slope is off the exact one-sided slope from the jaxpr beyond rounding
    (:func:`_rounding`); False where either is unknown or not finite."""
    gap = _ad_exact_gap(ev)
    return not math.isnan(gap) and gap > _rounding(ev, np.asarray(ev.exact_plus))


def _ad_exact_gap(ev: Evidence) -> float:
    """The distance between AD's slope and the exact one along ``+d``; NaN where either is
    unknown or not finite."""
    ex = ev.exact_plus
    if ex is None:
        return math.nan
    # (the gap is read only for verdicts reached with AD finite, and a non-finite exact
    # slope makes the allowance infinite: the verdicts read alike without this test,
    # which keeps NumPy's warnings about inf - inf quiet)
    if not (ev.ad_finite and np.all(np.isfinite(ex))):  # pragma: no mutate
        return math.nan
    return float(np.linalg.norm(ev.ad - ex))


def _rounding(ev: Evidence, ex: np.ndarray) -> float:
    """How far AD's slope and the exact one (two code paths, one computed in the working
    precision) may stray apart by rounding alone: 16 eps (1 + 2 |ex|)."""
    return 16 * ev.eps * (1 + 2 * float(np.linalg.norm(ex)))


def _exact_equal_ad(ev: Evidence) -> bool:
    """Whether AD's slope equals the exact one-sided slope along ``+d`` to 16 ulps."""
    ex = np.asarray(ev.exact_plus)
    return bool(
        np.shape(ev.ad) == np.shape(ex)
        and np.all(np.abs(ev.ad - ex) <= 16 * ev.eps * (1 + np.abs(ex)))
    )


_UNREAD_NEAR_SWITCH = frozenset(
    {Cause.SCATTERED, Cause.FEW_STEPS, Cause.ORDER_OTHER, Cause.NEAR_SWITCH}
)
