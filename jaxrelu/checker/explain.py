"""The sentence behind a verdict, written from the same numbers the report shows."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .remainders import RemainderEvidence
from .verdict import Cause, Evidence

__all__ = ["explain", "fmt_slope", "read_end"]


def fmt_slope(v: np.ndarray | float | None) -> str:
    """A slope as the report prints it: ``-0`` shows as ``0``; long vectors by norm."""
    if v is None:
        return "unknown"
    flat = np.ravel(np.asarray(v, np.float64)) + 0.0
    if flat.size == 1:
        return f"{flat[0]:.6g}"
    if flat.size <= 4:
        return "[" + ", ".join(f"{x:.4g}" for x in flat) + "]"
    return f"a vector of {flat.size} values, norm {np.linalg.norm(flat):.4g}"


def _exact_spread(ev: Evidence) -> float:
    """The largest difference between the exact one-sided slopes and AD's (finite ones)."""
    vals = [np.ravel(np.asarray(v, np.float64)) for v in (ev.exact_plus, ev.exact_minus, ev.ad)
            if v is not None and np.all(np.isfinite(v))]  # fmt: skip
    return max(float(np.max(np.abs(a - b))) for a in vals for b in vals) if vals else math.nan


def _shrinks(ev: Evidence, h: np.ndarray) -> str:
    """The remainders' behaviour: a power law, or (x0 on a switch) at roundoff level."""
    if math.isnan(ev.remainders.order):
        return (
            "the remainders stay at roundoff level (x0 is on a switch of the program whose "
            "effect the rounding of f hides)"
        )
    return f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)}"


def _span(ev: Evidence, steps: np.ndarray, rem: RemainderEvidence | None = None) -> str:
    w = (rem or ev.remainders).window
    if not w:
        return ""
    return f" over h in [{steps[w[-1]]:.2g}, {steps[w[0]]:.2g}]"


def _slopes(ev: Evidence) -> str:
    return (
        f"one-sided slopes {fmt_slope(ev.plus.value)} (along +d) and "
        f"{fmt_slope(ev.minus.value)} (from -d)"
    )


def _exact(ev: Evidence) -> str:
    if ev.exact_plus is None or ev.exact_minus is None:
        return ""
    return f" (from the jaxpr: {fmt_slope(ev.exact_plus)} and {fmt_slope(ev.exact_minus)})"


_TEXT: dict[Cause, Callable[[Evidence, np.ndarray], str]] = {
    Cause.F0_NOT_FINITE: lambda ev, h: "f(x0) is not finite",
    Cause.F_NOT_FINITE: lambda ev, h: "f is not finite at some of the small steps",
    Cause.AFFINE_BETWEEN_SWITCHES: lambda ev, h: (
        "the program is piecewise linear in x and no switch is crossed before "
        f"t = {ev.radius_plus:.3g} along +d and {ev.radius_minus:.3g} along -d (from the "
        "jaxpr), and the remainders below are at roundoff: f is affine there"
    ),
    Cause.SWITCH_TOO_CLOSE: lambda ev, h: (
        f"the nearest switch is {min(ev.radius_plus, ev.radius_minus):.3g} away (from the "
        f"jaxpr), closer than the smallest step this precision resolves ({h[-1]:.3g})"
    ),
    Cause.AD_NOT_FINITE_SLOPES_DIFFER: lambda ev, h: (
        f"AD's derivative is not finite ({fmt_slope(ev.ad)}), and the {_slopes(ev)} differ: "
        f"f is not differentiable at x0 along d{_exact(ev)}"
    ),
    Cause.AD_NOT_FINITE_SLOPES_AGREE: lambda ev, h: (
        f"AD's derivative is not finite ({fmt_slope(ev.ad)}), although the {_slopes(ev)} "
        f"agree: f is differentiable along d with slope {fmt_slope(ev.plus.value)}"
        f"{_exact(ev)}"
    ),
    Cause.AD_NOT_FINITE_JUMP: lambda ev, h: (
        f"AD's derivative is not finite ({fmt_slope(ev.ad)}) and the values of f do not "
        f"converge as h shrinks (order {ev.remainders.order:.2f}): f jumps at x0"
    ),
    Cause.AD_NOT_FINITE_STILL: lambda ev, h: (
        f"AD's derivative is not finite ({fmt_slope(ev.ad)}) and the values of f do not "
        f"follow one power law (order {ev.remainders.order:.2f}), but at the smallest step "
        f"({h[-1]:.2g}) f(x0 +- h d) equals f(x0) on both sides, which no jump does: the "
        "values stop moving there (an underflow or rounding inside f, as float16 squares "
        "of small steps underflow); no claim"
    ),
    Cause.AD_NOT_FINITE_NON_LIPSCHITZ: lambda ev, h: (
        f"AD's derivative is not finite ({fmt_slope(ev.ad)}) and the difference quotients "
        f"grow without bound (order {ev.remainders.order:.2f}): f is not Lipschitz at x0"
    ),
    Cause.AD_NOT_FINITE_UNRESOLVED: lambda ev, h: (
        f"AD's derivative is not finite ({fmt_slope(ev.ad)}); the {_slopes(ev)} cannot be "
        f"told apart or confirmed equal in {_prec(ev)}"
    ),
    Cause.AD_NOT_FINITE_PLATEAU: lambda ev, h: (
        f"AD's derivative is not finite ({fmt_slope(ev.ad)}); f does not move at the steps "
        f"up to h = {ev.remainders.rise:.3g} and moves beyond: rounding inside f (cos near "
        "0 rounds to 1) can hold it still that far, so the slopes read there say nothing"
    ),
    Cause.UNDERFLOW: lambda ev, h: (
        "the remainders fall below the smallest normal number at the small steps (f and "
        "its linearization are that small there, as exp near its underflow), where they may "
        "be flushed to 0: remainders at the floor cannot tell affine from smooth"
    ),
    Cause.FLAT: lambda ev, h: (
        f"the remainders stay at roundoff level for every step up to h = {h[0]:.3g}: f is "
        "affine along d near x0"
    ),
    Cause.FLAT_TOO_COARSE: lambda ev, h: (
        "the remainders never rise above the roundoff floor, and in "
        f"{_prec(ev)} the floor is too coarse to tell a linear function from a smooth one"
    ),
    Cause.FLAT_AT_JUMP: lambda ev, h: (
        f"the remainders stay at roundoff level, but x0 is on a jump of the program "
        f"({ev.tied_jumps} tied element(s)) whose gap, if it reaches f, lies below the "
        f"roundoff floor of {_prec(ev)}: a jump cannot be told from none"
    ),
    Cause.FLAT_AT_KINK: lambda ev, h: (
        f"the remainders stay at roundoff level, but x0 is on a switch of the program "
        f"({ev.tied} tied element(s)) whose exact one-sided slopes and AD's are not all "
        f"equal (largest difference {_exact_spread(ev):.3g}), by less than {_prec(ev)} "
        "resolves: a kink or a wrong derivative too small to measure cannot be told from none"
        if ev.exact_plus is not None
        else f"the remainders stay at roundoff level, but x0 is on a switch of the program "
        f"({ev.tied} tied element(s)) whose exact one-sided slopes the jaxpr does not give "
        "(a tie of eigh, svd or lu pivots, or one left undecided): a kink that the rounding of f "
        "hides cannot be told from none"
    ),
    Cause.FLAT_THEN_RISE: lambda ev, h: (
        f"the remainders stay at roundoff level for steps up to h = {ev.remainders.rise:.3g} "
        "and rise abruptly beyond (no power law reaches down to the floor): f is affine "
        "along d near x0, with a nonsmooth point further out"
    ),
    Cause.RISE_TOO_COARSE: lambda ev, h: (
        f"the remainders are at roundoff level up to h = {ev.remainders.rise:.3g} and rise "
        f"abruptly beyond, but too few steps lie below, or in {_prec(ev)} the floor is too "
        "coarse, to claim f is affine"
    ),
    Cause.FEW_STEPS: lambda ev, h: (
        "fewer than 3 steps rise above the roundoff floor: too few to estimate an order"
    ),
    Cause.SCATTERED: lambda ev, h: (
        f"the local orders {np.round(ev.remainders.local, 2).tolist()}{_span(ev, h)} are "
        "too scattered to fit one power law (noise, or a nonsmooth point near x0)"
    ),
    Cause.ORDER_TWO: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)}: the "
        "derivative is right and the linearization holds"
    ),
    Cause.ORDERS_ALL_ABOVE_ONE: lambda ev, h: (
        f"the local orders {np.round(ev.remainders.local, 2).tolist()}{_span(ev, h)} vary "
        "too much for one power law, but each is at least 1.6: the remainder shrinks "
        "faster than h at every step (no kink, no wrong slope), so the derivative is right "
        "and the linearization holds"
    ),
    Cause.SMOOTH_FIT_AT_KINK: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)}, but x0 is "
        f"on a switch ({ev.tied} tied element(s)) whose exact one-sided slopes "
        f"{fmt_slope(ev.exact_plus)} and {fmt_slope(ev.exact_minus)} (from the jaxpr) "
        f"differ: a kink the steps in {_prec(ev)} do not resolve, or cross other switches"
    ),
    Cause.EXACT_SLOPES_AGREE: lambda ev, h: (
        f"the measured {_slopes(ev)} differ{_span(ev, h)}, but the exact one-sided slopes "
        f"from the jaxpr agree ({fmt_slope(ev.exact_plus)}): no kink at x0 along d; the "
        f"steps in {_prec(ev)} are too coarse for f's curvature"
    ),
    Cause.EXACT_SLOPES_MATCH_AD: lambda ev, h: (
        f"the measured slopes {fmt_slope(ev.plus.value)} and {fmt_slope(ev.minus.value)}"
        f"{_span(ev, h)} disagree with AD's {fmt_slope(ev.ad)}, but AD equals the exact "
        f"one-sided slopes from the jaxpr: in {_prec(ev)} the steps are too coarse to "
        "measure the derivative (they see f's curvature)"
    ),
    Cause.SLOPES_ACROSS_JUMP: lambda ev, h: (
        f"the measured slopes {fmt_slope(ev.plus.value)} and {fmt_slope(ev.minus.value)}"
        f"{_span(ev, h)} disagree with AD's {fmt_slope(ev.ad)}, but x0 is on a jump of the "
        f"program ({ev.tied_jumps} tied element(s)) whose exact one-sided slopes are AD's: "
        f"its gap lies below the roundoff floor of {_prec(ev)}, and the steps that resolve "
        "a slope measure the staircase, not f at x0"
    ),
    Cause.SLOPES_DIFFER: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)} and the "
        f"{_slopes(ev)} differ{_exact(ev)}: f is not differentiable at x0 along d; AD's "
        f"slope {fmt_slope(ev.ad)} is {'inside' if ev.tests.in_hull else 'outside'} their hull"
    ),
    Cause.EXACT_SLOPES_DIFFER: lambda ev, h: (
        f"{_shrinks(ev, h)}; in "
        f"{_prec(ev)} the measured {_slopes(ev)} cannot resolve their difference, but the "
        f"exact ones from the jaxpr, {fmt_slope(ev.exact_plus)} and "
        f"{fmt_slope(ev.exact_minus)}, differ and agree with them: f is not differentiable "
        "at x0 along d"
    ),
    Cause.AD_OFF_SLOPES: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)} although the "
        f"{_slopes(ev)} agree: f is differentiable along d with slope "
        f"{fmt_slope(ev.plus.value)}{_exact(ev)}, but AD returned {fmt_slope(ev.ad)}"
    ),
    Cause.AD_OFF_EXACT: lambda ev, h: (
        f"{_shrinks(ev, h)}; the exact "
        f"one-sided slopes from the jaxpr agree ({fmt_slope(ev.exact_plus)}), as do the "
        f"measured ones ({fmt_slope(ev.plus.value)} and {fmt_slope(ev.minus.value)}), but "
        f"AD returned {fmt_slope(ev.ad)}"
    ),
    Cause.AD_OFF_EXACT_UNRESOLVED: lambda ev, h: (
        f"{_shrinks(ev, h)}, but AD's slope {fmt_slope(ev.ad)} is off the exact one-sided "
        f"slope from the jaxpr ({fmt_slope(ev.exact_plus)}) beyond rounding, and the "
        f"measured ones ({fmt_slope(ev.plus.value)} and {fmt_slope(ev.minus.value)}) are "
        f"nearer the exact one but too coarse in {_prec(ev)} to confirm it: the order-2 "
        "term hides an error of this size at these steps"
    ),
    Cause.ORDER_ONE_UNRESOLVED: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)}, but in "
        f"{_prec(ev)} neither a difference between the {_slopes(ev)} nor a gap between them "
        f"and AD's {fmt_slope(ev.ad)} can be resolved (tolerance {ev.tests.tol:.2g})"
    ),
    Cause.SLOPES_OFF_REMAINDERS: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)}, but the "
        f"{_slopes(ev)} do not account for it at the smallest steps (f behaves differently "
        "at different scales, e.g. a fine staircase): no claim about a kink or AD's slope"
    ),
    Cause.AD_VARIES_AT_STEPS: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)} and the "
        f"{_slopes(ev)} agree, away from AD's {fmt_slope(ev.ad)}; but AD's own slope at "
        f"the smallest steps read (x0 +- {_smallest_read(ev, h):.2g} d) is near neither: f "
        "varies on a scale below the smallest step that moves x0 in this precision (or "
        "that its values resolve), and the measured slopes average over it (leave large "
        "elements out of the direction, or check in float64)"
    ),
    Cause.STEEP_BELOW_STEPS: lambda ev, h: (
        f"the remainder shrinks like h^{ev.remainders.order:.2f}{_span(ev, h)}, but f's "
        "values jump across x0 by the same amount at every one of these steps, down to "
        f"{_smallest_read(ev, h):.2g}{_floor_below(ev, h)}: f is a jump, or a transition "
        f"steeper than these steps resolve; AD's slope {fmt_slope(ev.ad)} cannot be judged "
        "from them"
    ),
    Cause.ORDER_ZERO: lambda ev, h: (
        f"the remainder does not shrink with h (order {ev.remainders.order:.2f}"
        f"{_span(ev, h)}): f jumps at x0 along d"
    ),
    Cause.ORDER_OTHER: lambda ev, h: (
        f"order {ev.remainders.order:.2f}{_span(ev, h)} is none of 0, 1, 2 (f may be "
        "non-Lipschitz at x0, e.g. sqrt(|x|))"
    ),
    Cause.NEAR_SWITCH: lambda ev, h: (
        "the remainders look nonsmooth, but no element sits on a switch at x0: the nearest "
        f"switch is {min(ev.radius_plus, ev.radius_minus):.3g} away (from the jaxpr), too "
        "close for the steps to resolve"
    ),
    Cause.NO_NONSMOOTH_SITE: lambda ev, h: (
        f"the remainders look nonsmooth{_order(ev, h)}, but the program has no nonsmooth "
        f"operation (from its jaxpr) and AD's slope {fmt_slope(ev.ad)} is finite: f is "
        f"differentiable at x0, and varies on a scale the steps in {_prec(ev)} do not "
        "resolve; no claim about AD's slope"
    ),
    Cause.FLAT_AD_OFF_EXACT: lambda ev, h: (
        "the remainders stay at roundoff level, but AD's slope "
        f"{fmt_slope(ev.ad)} is off the exact one-sided slope from the jaxpr "
        f"({fmt_slope(ev.exact_plus)}) beyond rounding: in {_prec(ev)} f's values near x0 "
        "are too coarse to show which is right (check in float64, or nearer 0)"
    ),
    Cause.ORDER_TWO_BELOW_SWITCH: lambda ev, h: _below_switch(ev, h),
    Cause.AD_ON_FLOOR_BELOW_SWITCH: lambda ev, h: (
        "the larger steps disagree with AD, but below the nearest switch "
        f"({min(ev.radius_plus, ev.radius_minus):.3g} away, from the jaxpr) f follows AD's "
        "slope to the roundoff floor: the disagreement comes from the steps that cross it"
    ),
}


def _below_switch(ev: Evidence, h: np.ndarray) -> str:
    below = ev.below
    assert below is not None  # decide() gives this cause only with it
    return (
        f"the nearest switch is {min(ev.radius_plus, ev.radius_minus):.3g} away (from the "
        "jaxpr; no element sits on one at x0); over the steps below it the remainder "
        f"shrinks like h^{below.order:.2f}{_span(ev, h, below)}: the derivative is right "
        "and the linearization holds up to that switch"
    )


def read_end(window: tuple[int, ...], n: int) -> int:
    """Index of the smallest step a verdict read: its fitted window's (two steps or
    more), else the grid's last of ``n``. AD near ``x0`` is read there too."""
    return int(max(window)) if len(window) >= 2 else n - 1


def _smallest_read(ev: Evidence, h: np.ndarray) -> float:
    return float(h[read_end(ev.remainders.window, len(h))])


def _order(ev: Evidence, h: np.ndarray) -> str:
    """`` (order p over h in [a, b])`` where an order was fitted."""
    if math.isnan(ev.remainders.order):
        return ""
    return f" (order {ev.remainders.order:.2f}{_span(ev, h)})"


def _floor_below(ev: Evidence, h: np.ndarray) -> str:
    """Where the fitted window stops above the grid's smallest step: what lies below."""
    if _smallest_read(ev, h) <= h[-1]:
        return ""
    return f" (the smaller steps, to {h[-1]:.2g}, lie too near the roundoff floor to read)"


def _prec(ev: Evidence) -> str:
    return f"this precision (eps {ev.eps:.2g})"


def explain(cause: Cause, ev: Evidence, steps: np.ndarray) -> str:
    """One sentence for ``cause``, from the evidence and the steps."""
    return _TEXT[cause](ev, steps)
