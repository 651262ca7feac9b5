r"""The public entry points: :func:`check_linearization`, :func:`check_many`,
:func:`assert_linearization`, :func:`neighbourhood_error`.

A check is a pipeline of small steps: :func:`~.problem.setup` (validation, ``argnums``,
tracing, mode, working precision) → the step grid (:mod:`.grid`) → the measurements, one
compiled program (:mod:`.evaluate`) → the kink analysis along ``±d`` (one batched run of
the jaxpr interpreter: nearby sites, switch distances, exact one-sided slopes) → the
evidence (floors, one-sided slopes, the reading of the remainders) → :func:`~.verdict.decide`
→ :func:`~.explain.explain`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from .. import _util, _validate
from .._jaxpr import APPROXIMATE_AT_TIES, analyse
from .._jaxpr.driver import compile_cached
from ..kinks import KinkSite, sites_of, undecided_ties
from . import grid
from .evaluate import Measurements, measure
from .explain import explain, read_end
from .problem import Problem, random_direction, setup
from .remainders import (
    CLEAN,
    FLOOR_SAFETY,
    INFORMATIVE,
    Pattern,
    RemainderEvidence,
    classify_remainders,
    fit_order,
    roundoff_floor,
    roundoff_floor_many,
)
from .report import LinearizationReport, ManyReport, NeighbourhoodError
from .slopes import Slope, one_sided, one_sided_many
from .verdict import RESOLUTION, VERDICTS, Cause, Evidence, SlopeTests, Verdict, decide

__all__ = [
    "assert_linearization",
    "check_linearization",
    "check_many",
    "neighbourhood_error",
]


# ------------------------------------------------------------------- kink analysis


@dataclasses.dataclass(frozen=True)
class _Kinks:
    """What the jaxpr says about one point: nearby sites, ties, switch distances along
    ``±d`` and the exact one-sided slopes (projected on ``w`` in reverse mode)."""

    sites: tuple[KinkSite, ...] = ()
    known: bool = False
    kinds_known: bool = False
    tied: int = 0
    tied_jumps: int = 0
    radius_plus: float = math.nan
    radius_minus: float = math.nan
    exact_plus: np.ndarray | None = None
    exact_minus: np.ndarray | None = None
    no_sites: bool = False
    note: str = ""


def _no_sites(res: Any) -> bool:
    """Whether an analysis met no nonsmooth operation at all, before any is left out as
    harmless here: an equality guard whose cases the point cannot compare (``where(x ==
    0, 5, sin(x) / x)`` at 0) is still a possible jump, and a nonsmooth operation behind
    ``stop_gradient`` whose shift a probe finds cancelling (``logsumexp``'s max) may reach
    the values all the same (``x - stop_gradient(x) + stop_gradient(round(x))``)."""
    return not res.meta


def _nearness(s: KinkSite) -> tuple[int, float]:
    """Tied sites first, then by margin."""
    return -(s.ties > 0), s.min_margin if not math.isnan(s.min_margin) else math.inf


def _kinks(problem: Problem, n_pts: int) -> list[_Kinks]:
    """One batched analysis of every point along ``+d`` and ``-d``."""
    x0, fixed, d = problem.x0, problem.fixed, problem.direction
    if not problem.batched:
        x0, fixed, d = jax.tree.map(lambda v: jnp.asarray(v)[None], (x0, fixed, d))
    twice = lambda t: jax.tree.map(lambda v: jnp.concatenate([v, v]), t)
    args = (twice(x0), twice(fixed))
    dirs = jax.tree.map(lambda v: jnp.concatenate([v, -v]), d)
    blocks: list[Any] = [jnp.asarray(v)[:, None] for v in jax.tree.leaves(dirs)]
    blocks += [None] * len(jax.tree.leaves(args[1]))
    try:
        res = analyse(
            problem.user_fn,
            args,
            blocks,
            n_ld=1,
            batched=True,
            values=True,
            key=("checker", problem.nums),
            call=problem.fn,
        )
    except Exception as err:  # reported in the reason, never silent
        note = f"kink analysis unavailable ({type(err).__name__}: {str(err).splitlines()[0]})"
        return [_Kinks(note=note)] * n_pts
    out = []
    w = problem.cotangent
    for i in range(n_pts):
        plus, minus = res.take(i), res.take(n_pts + i)
        sp, sm = sites_of(plus, True), sites_of(minus, True)
        # a tie of eigh/svd: the tangents there are JAX's choice, not one-sided slopes
        approx = any(s.ties and s.primitive in APPROXIMATE_AT_TIES for s in (*sp, *sm))
        # (an undecided tie: the exact slopes may be the tie's own side, not the truth)
        undecided = bool(undecided_ties(plus) or undecided_ties(minus))
        kinds_known = all(s.kind != "unknown" for s in sp)
        known = kinds_known and not approx and not undecided

        def slope(r: Any, sign: float) -> np.ndarray:
            cols = []
            for p, t in zip(r.out_p, r.out_t):
                col = np.zeros(np.size(p)) if t is None else np.ravel(np.asarray(t)[0])
                if np.iscomplexobj(p) and w is None:  # as AD's slope: real, then imaginary
                    col = col.astype(complex)
                    cols += [col.real, col.imag]
                else:
                    cols.append(col)
            # (in float64: norms of float32 slopes beyond 1e19 overflow, exp(51) along d)
            flat = np.concatenate(cols) if cols else np.zeros(0)
            flat = flat.astype(np.result_type(flat, np.float64))
            if w is not None:
                flat = np.array([float(np.sum(flat * np.concatenate([np.ravel(v) for v in w])))])
            return sign * flat + 0.0

        near = sorted((s for s in sp if s.kind != "unknown"), key=_nearness)
        out.append(
            _Kinks(
                sites=tuple(near[:3]),
                known=known,
                kinds_known=kinds_known,
                tied=sum(s.ties for s in sp),
                tied_jumps=sum(s.ties for s in sp if s.kind == "jump"),
                radius_plus=min((s.radius for s in sp), default=math.inf),
                radius_minus=min((s.radius for s in sm), default=math.inf),
                exact_plus=slope(plus, 1.0) if known else None,
                exact_minus=slope(minus, -1.0) if known else None,
                no_sites=known and _no_sites(plus) and _no_sites(minus),
            )
        )
    return out


# ------------------------------------------------------------------------ evidence


def _finite_prefix(meas: Measurements, n: int) -> tuple[np.ndarray, str, bool]:
    """Steps kept: all, or all but the largest ones where ``f`` is not finite (a domain
    edge further out). ``ok`` is False when ``f`` is not finite at small steps."""
    fin = np.all(np.isfinite(meas.df[:n]), axis=1) & np.all(np.isfinite(meas.df[n:]), axis=1)
    if np.all(fin):
        return np.arange(n), "", True
    bad = np.flatnonzero(~fin)
    if np.array_equal(bad, np.arange(len(bad))) and n - len(bad) >= 3:
        return (
            np.arange(len(bad), n),
            (f" (f is not finite at the {len(bad)} largest step(s), which were left out)"),
            True,
        )
    return np.arange(n), "", False


def _evidence(
    problem: Problem,
    steps: np.ndarray,
    meas: Measurements,
    kinks: _Kinks,
    pre: tuple[Slope, Slope, np.ndarray] | None = None,
):
    """The evidence of one point; ``pre``: its slopes and floor computed for many points
    at once (:func:`_batched_slopes`, only for points that use every step and whose AD is
    finite). Long because it fills every field of :class:`Evidence` in one place, so that
    a field cannot be computed two ways."""
    n, eps = len(steps), problem.eps
    keep, note, f_ok = _finite_prefix(meas, n)
    h = steps[keep]
    ad = meas.ad
    ad_finite = bool(np.all(np.isfinite(ad)))
    mag_p, mag_m = (
        (meas.mag if ad_finite else meas.vmag)[:n][keep],
        (meas.mag if ad_finite else meas.vmag)[n:][keep],
    )
    dfp, dfm = meas.df[:n][keep], meas.df[n:][keep]
    if pre is not None:
        plus, minus, floor = pre
        rp, rm = meas.rem[:n], meas.rem[n:]
    else:
        plus, minus = _slopes_at(steps, meas, keep, eps)
        if ad_finite:
            rp, rm = meas.rem[:n][keep], meas.rem[n:][keep]
        else:  # each side against its own slope: the values alone
            with np.errstate(invalid="ignore"):
                rp = np.linalg.norm(dfp - meas.heff[:n][keep, None] * plus.value, axis=1)
                rm = np.linalg.norm(dfm - meas.heff[n:][keep, None] * minus.value, axis=1)
        both = np.maximum(rp, rm)
        floor = np.maximum(
            roundoff_floor(h, rp, mag_p, eps, both), roundoff_floor(h, rm, mag_m, eps, both)
        )
    r = np.maximum(rp, rm)
    f0_norm = float(np.linalg.norm(meas.f0))
    slope_norm = float(np.linalg.norm(ad if ad_finite else plus.value))
    rem = classify_remainders(
        h, np.where(np.isfinite(r), r, np.inf), floor, f0_norm + h[0] * slope_norm
    )
    idx = np.arange(n)[keep]  # the kept steps' indices
    floor0 = floor
    near = min(kinks.radius_plus, kinks.radius_minus)
    q = _quantum(dfp, dfm)
    s = _resolved_steps(dfp, dfm, rp, rm, h * slope_norm, meas.vmag[keep], eps, q)
    # (a switch inside the grid: the stairs may be f's own, as a straight-through
    # estimator's round(x * 1e6) / 1e6 is)
    if s is not None and ad_finite and kinks.known and not near <= h[0]:
        # f does not move at some small step though AD's step is not zero (rounding
        # inside f: 1 - cos(x) in float32, a confident softmax cross-entropy): f's values
        # are quantized there; the floor is raised to the quantum (its smallest move
        # seen) and only the steps whose AD step clearly exceeds it are read
        floor = np.maximum(floor, q)
        if s >= 3:
            rem = classify_remainders(h[:s], r[:s], floor[:s], f0_norm + h[0] * slope_norm)
            up = idx[:s]
            plus, minus = _slopes_at(steps, meas, up, eps)
        else:  # too few steps above the quantum to read anything
            rem = RemainderEvidence(Pattern.FEW, math.nan, (), (), len(h), math.nan, math.inf)
        note += (
            f" (f's values near x0 move in quanta of {q:.2g}: f(x0 ± h d) "
            f"equals f(x0) at some steps; the {len(h) - s} smallest steps were left out)"
        )
    slopes_fit = True
    order_one = rem.pattern is Pattern.POWER and 0.7 <= rem.order <= 1.3
    fit = lambda a, b: _slopes_fit(idx, n, rem.window, meas, rp, rm, floor, a, b, ad)
    if ad_finite and order_one and not fit(plus, minus):
        # the slopes were read at steps where f behaves otherwise (a staircase: slope 1
        # over many stairs, 0 on one): read them again at the fitted steps and below
        at = idx[h <= h[min(rem.window)]]
        plus, minus = _slopes_at(steps, meas, at, eps)
        slopes_fit = fit(plus, minus)
    if ad_finite and _order_two(rem) and not max(plus.step, minus.step) <= h[min(rem.window)]:
        # the slopes were read at steps above the fitted ones, where f may average over
        # variation far below them (sin at 1e12: values at steps of 1e3 and up give a
        # slope near 0); read them at the fitted steps and below, where f follows the
        # power law, so that a custom rule's error the h^2 term hides there is seen
        # against them
        at = idx[h <= h[min(rem.window)]]
        plus, minus = _slopes_at(steps, meas, at, eps)
    values_jump = ad_finite and order_one and _values_jump(h, rem.window, dfp, dfm, meas, keep,
                                                           n, plus, minus, eps)  # fmt: skip
    below = h < near if math.isfinite(near) else np.ones(len(h), bool)
    rem_below = None
    if kinks.known and kinks.tied == 0 and 0 < below.sum() < len(h):
        off = len(h) - int(below.sum())  # steps decrease: those below are a suffix
        got = classify_remainders(
            h[off:], np.where(np.isfinite(r[off:]), r[off:], np.inf), floor[off:],
            f0_norm + h[off] * slope_norm,
        )  # fmt: skip
        rem_below = dataclasses.replace(got, window=tuple(i + off for i in got.window))
    ev = Evidence(
        remainders=rem,
        ad=ad,
        ad_finite=ad_finite,
        plus=plus,
        minus=minus,
        tests=SlopeTests.of(ad, plus, minus, eps),
        exact_plus=kinks.exact_plus,
        exact_minus=kinks.exact_minus,
        f0_finite=bool(np.all(np.isfinite(meas.f0))),
        f_finite=f_ok,
        sites_known=kinks.known,
        inexact_ties=kinks.kinds_known and not kinks.known,
        tied=kinks.tied,
        tied_jumps=kinks.tied_jumps,
        no_sites=kinks.no_sites,
        radius_plus=kinks.radius_plus,
        radius_minus=kinks.radius_minus,
        piecewise_linear=problem.piecewise_linear,
        below_switch=int(np.sum(below)),
        # the jaxpr proves f affine below the switch: only rounding is left there, whose
        # spikes reach a few floors (the floor is read off the tiniest steps); a remainder
        # beyond CLEAN floors contradicts the proof
        flat_below_switch=bool(np.all(r[below] <= CLEAN * floor0[below])),
        # a slope error delta shows below the switch once delta h > CLEAN floors at the
        # largest step there: resolved when that bound is within the slopes' resolution
        resolved_below_switch=bool(
            np.any(below)
            and CLEAN * floor0[below][0] / h[below][0] <= RESOLUTION * max(1.0, slope_norm)
        ),
        below=rem_below,
        slopes_fit=slopes_fit,
        values_jump=bool(values_jump),
        values_still=bool(np.all(dfp[-1] == 0) and np.all(dfm[-1] == 0)),
        eps=eps,
        top_step=float(h[0]),
        underflow=bool(0 < floor0[-1] < _smallest_normal(problem, meas)),
    )
    return ev, keep, note, floor


def _slopes_at(steps: np.ndarray, meas: Measurements, at: np.ndarray, eps: float):
    """The one-sided slopes (along ``+d``, from ``-d``) read over the grid steps ``at``."""
    n = len(steps)
    side = lambda s: one_sided(steps[at], meas.heff[s][at], meas.df[s][at], meas.vmag[s][at], eps)
    return side(slice(0, n)), side(slice(n, 2 * n))


def _values_jump(h, window, dfp, dfm, meas, keep, n, plus: Slope, minus: Slope, eps) -> bool:
    """Whether ``f``'s values, against the measured slopes, keep a constant offset over the
    fitted steps (order below 0.5, above two floors): ``f`` changes by as much across
    ``x0`` at every step, as at a jump (``tanh(1e12 x)`` at 0 in float32, saturated at
    every step of the grid, whose AD slope 1e12 is right).

    The offsets' floor is read from the values alone (their magnitudes and the noise at
    the tiniest steps, :func:`roundoff_floor`), not from AD's step: a steep AD slope
    (1e15 for ``tanh(1e15 x)``) would raise the remainders' floor above any jump."""
    hp, hm = meas.heff[:n][keep], meas.heff[n:][keep]
    with np.errstate(invalid="ignore", over="ignore"):
        vp = np.linalg.norm(dfp - hp[:, None] * plus.value, axis=1)
        vm = np.linalg.norm(dfm - hm[:, None] * minus.value, axis=1)
        lin = h * max(float(np.linalg.norm(plus.value)), float(np.linalg.norm(minus.value)))
    v = np.maximum(vp, vm)
    mag = np.maximum(meas.vmag[:n][keep], meas.vmag[n:][keep]) + lin
    if not np.all(np.isfinite(v)):
        return False
    floor = roundoff_floor(h, v, mag, eps)
    w = np.asarray(window)
    if not np.all(v[w] > INFORMATIVE * floor[w]):
        return False
    return bool(fit_order(h[w], v[w]) < 0.5)


def _order_two(rem: RemainderEvidence) -> bool:
    """Whether the remainders were fitted to an order of about 2 (on a window)."""
    fitted = rem.pattern in (Pattern.POWER, Pattern.SCATTERED) and len(rem.window) > 0
    return fitted and rem.order >= 1.6


def _smallest_normal(problem: Problem, meas: Measurements) -> float:
    """The smallest normal number below which the remainders, or f's values, may be
    flushed to 0: float64's where both the remainders and f are float64, float32's
    otherwise (16-bit values are computed in float32 on the CPU)."""
    wide = np.asarray(meas.rem).dtype
    both64 = wide == np.float64 and problem.dtype_name == "float64"
    return float(np.finfo(np.float64 if both64 else np.float32).tiny)


def _resolved_steps(dfp, dfm, rp, rm, ad_step, vmag, eps: float, q: float) -> int | None:
    """Where ``f``'s value does not move at all on a side of a step while AD's step there
    is not zero but below half the quantum ``q`` of ``f``'s values (:func:`_quantum`), rounding
    inside ``f`` swallows the step (a kink's flat side does not move at all, but there AD's
    step is zero or at least the other side's smallest move). Returns how many of the
    largest steps have an AD step of at least :data:`CLEAN` quanta, when the quantum is one
    a rounding makes: at most ``sqrt(eps)`` of ``f``'s values, or 16 ``eps`` (a few ulps of
    a value of order 1 inside ``f``, as ``logsumexp`` of logits near 10 is). Coarser stairs
    are ``f``'s own (a straight-through estimator's ``round``); else None."""
    if not q <= max(math.sqrt(eps) * float(np.max(vmag)), 16 * eps):
        return None
    small = ad_step < q / 2
    still_p = np.all(dfp == 0, axis=1) & (rp > 0) & small
    still_m = np.all(dfm == 0, axis=1) & (rm > 0) & small
    if not np.any(still_p | still_m):
        return None
    return int(np.sum(ad_step >= CLEAN * q))


def _quantum(dfp: np.ndarray, dfm: np.ndarray) -> float:
    """The smallest nonzero move of ``f``'s values over the given steps, both sides: at
    least the spacing of the values ``f`` can take near ``x0``."""
    moves = np.concatenate([np.linalg.norm(dfp, axis=1), np.linalg.norm(dfm, axis=1)])
    moves = moves[moves > 0]
    return float(np.min(moves)) if len(moves) else math.inf


def _slopes_fit(idx, n, window, meas, rp, rm, floor, plus: Slope, minus: Slope, ad) -> bool:
    """Whether the one-sided slopes account for the remainders at the smallest fitted
    step: there ``|f(x0 ± h d) - f(x0) ∓ h AD|`` is ``h |slope - AD|`` to within half of
    either, twice the floor and the slope's error (an order-1 remainder is the slopes' gap
    to AD). ``idx``: the kept steps' indices; ``window``: the fitted ones among them."""
    i = max(window)
    hp, hm = abs(float(meas.heff[idx[i]])), abs(float(meas.heff[n + idx[i]]))

    def fits(r: float, s: Slope, step: float) -> bool:
        pred = float(np.linalg.norm(s.value - ad)) * step
        return bool(abs(r - pred) <= 0.5 * max(r, pred) + 2 * floor[i] + s.error * step)

    return fits(float(rp[i]), plus, hp) and fits(float(rm[i]), minus, hm)


@dataclasses.dataclass(frozen=True)
class _Shape:
    """How a flat slope maps back to the output's structure (computed once per check)."""

    treedef: Any
    shapes: tuple

    @staticmethod
    def of(like: Any) -> _Shape:
        leaves, treedef = jax.tree.flatten(like)
        return _Shape(treedef, tuple(np.shape(v) for v in leaves))

    def __call__(self, flat: np.ndarray) -> Any:
        """``flat`` in the output's shape; a scalar output as a Python float (``-0``
        as ``0``)."""
        if len(self.shapes) == 1 and self.shapes[0] in ((), (1,)) and flat.size == 1:
            return float(flat[0]) + 0.0
        out, start = [], 0
        for shape in self.shapes:
            k = int(np.prod(shape, dtype=int))
            out.append(np.reshape(flat[start : start + k], shape) + 0.0)
            start += k
        return jax.tree.unflatten(self.treedef, out)


@dataclasses.dataclass(frozen=True)
class _Judged:
    """One point's evidence and verdict (before the report is assembled)."""

    ev: Evidence
    keep: np.ndarray
    note: str
    floor: np.ndarray
    verdict: Verdict
    cause: Cause


def _judge(problem, steps, meas, kinks, pre=None) -> _Judged:
    # (values near float64's limit: magnitudes and norms overflow to inf, which the
    # floors and tests read as "cannot tell")
    with np.errstate(over="ignore"):
        ev, keep, note, floor = _evidence(problem, steps, meas, kinks, pre)
        return _Judged(ev, keep, note, floor, *decide(ev))


_CONFIRMED = (Cause.AD_OFF_SLOPES, Cause.STEEP_BELOW_STEPS)  # read with AD near x0


def _confirm(problem: Problem, judged: list[_Judged], steps: list[np.ndarray], points) -> list:
    """The verdicts read from the measured slopes against AD (rare) decided again with AD's
    slopes near ``x0`` (:func:`_ad_near`), all such points in one batched measurement;
    ``points``: each verdict's point index (None for an unbatched problem)."""
    todo = [k for k, j in enumerate(judged) if j.cause in _CONFIRMED]
    if not todo:
        return judged
    near = _ad_near(
        problem,
        [points[k] for k in todo],
        [steps[k][judged[k].keep] for k in todo],
        [_read(steps[k], judged[k]) for k in todo],
    )
    out = list(judged)
    for k, rows in zip(todo, near):
        ev = dataclasses.replace(judged[k].ev, ad_near=rows)
        with np.errstate(over="ignore"):
            verdict, cause = decide(ev)
        out[k] = dataclasses.replace(judged[k], ev=ev, verdict=verdict, cause=cause)
    return out


def _read(steps: np.ndarray, j: _Judged) -> np.ndarray:
    """The kept steps down to the smallest the verdict was read at (its fitted window's):
    below it the remainders are at the floor (or left out as quantized), and f may vary
    on scales between them and x0 (x + sin(x) at 1e6 in float32, read at steps of 16 up,
    where AD swings between 0 and 2)."""
    st = steps[j.keep]
    return st[: read_end(j.ev.remainders.window, len(st)) + 1]


_NEAR_ROWS = 10  # AD near x0: 4 rows at the grid's smallest steps, 6 at those read
_GOLDEN = (math.sqrt(5) - 1) / 2


def _ad_near(
    problem: Problem, points: list, steps: list[np.ndarray], reads: list[np.ndarray]
) -> list[np.ndarray]:
    """For each point (``points[k]`` of a batched problem, or None) with its grid
    ``steps[k]`` and the steps its verdict read ``reads[k]``: AD's slopes at ``x0 + h d``
    and ``x0 - h d`` for the grid's two smallest steps, then for the two smallest read and
    0.618 times the smallest (10 rows, flat). One batched run of the measurement program
    over all of them (padded to a power of two rows, so that few sizes are compiled),
    with each row's three smallest grid steps (``f`` is read no farther out than the
    check read it)."""
    wide = _util.widest_float()
    x0, fixed, d = problem.x0, problem.fixed, problem.direction
    if problem.batched:
        idx = np.asarray(points, dtype=int)
    else:
        x0, fixed, d = jax.tree.map(lambda v: jnp.asarray(v)[None], (x0, fixed, d))
        idx = np.zeros(len(points), dtype=int)
    # (and at 0.618 times the smallest read: steps in powers of 2 alias with a period that
    # divides them, as sin(1e3 x) along 0.8 at steps 2^-6 and 2^-5, shifts of 4 pi, 8 pi)
    t = np.concatenate(
        [[st[-1], -st[-1], st[-2], -st[-2], rd[-1], -rd[-1], rd[-2], -rd[-2],
          _GOLDEN * rd[-1], -_GOLDEN * rd[-1]]
         for st, rd in zip(steps, reads)]
    )  # fmt: skip
    grids = np.repeat(np.stack([st[-3:] for st in steps]), _NEAR_ROWS, axis=0)
    rows = np.repeat(idx, _NEAR_ROWS)
    pad = (1 << (len(rows) - 1).bit_length()) - len(rows)
    rows, t = np.concatenate([rows, rows[-1:].repeat(pad)]), np.concatenate([t, t[-1:].repeat(pad)])
    grids = np.concatenate([grids, grids[-1:].repeat(pad, axis=0)])
    x0, fixed, d = jax.tree.map(lambda v: jnp.asarray(v)[rows], (x0, fixed, d))
    tw = jnp.asarray(t, wide)
    x = jax.tree.map(
        lambda a, b: a + tw.reshape((-1,) + (1,) * (a.ndim - 1)).astype(a.dtype) * b, x0, d
    )
    batch = dataclasses.replace(problem, x0=x, fixed=fixed, direction=d, batched=True)
    ads = np.stack([m.ad for m in measure(batch, grids)])
    return [ads[_NEAR_ROWS * k : _NEAR_ROWS * (k + 1)] for k in range(len(points))]


def _report(problem, steps, meas, kinks, rtol, out_like, j: _Judged) -> LinearizationReport:
    with np.errstate(over="ignore"):
        return _report_at(problem, steps, meas, kinks, rtol, out_like, j)


def _report_at(problem, steps, meas, kinks, rtol, out_like, j: _Judged) -> LinearizationReport:
    ev, keep, note, floor, verdict, cause = j.ev, j.keep, j.note, j.floor, j.verdict, j.cause
    reason = explain(cause, ev, steps[keep]) + note
    if verdict in (Verdict.KINK, Verdict.WRONG_DERIVATIVE, Verdict.DISCONTINUOUS) and kinks.sites:
        s = kinks.sites[0]
        where = f" in {s.activation}" if s.activation else ""
        reason += (
            f". Nearest nonsmooth site: {s.primitive}{where} at {s.source} "
            f"({s.ties} element(s) exactly at the kink, margin {s.min_margin:.3g})"
        )
    if kinks.note:
        reason += f". Note: {kinks.note}"
    if problem.mode_note:
        reason += f". Reverse mode was used: forward mode failed ({problem.mode_note})"
    n = len(steps)
    full_floor = np.full(n, np.nan)
    full_floor[keep] = floor
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.linalg.norm(meas.f0) + steps * np.linalg.norm(meas.ad)
        ok = (meas.rem[:n] <= rtol * scale) | (meas.rem[:n] <= INFORMATIVE * full_floor)
    # the largest step from which every smaller one is within tolerance
    bad_steps = np.flatnonzero(~ok)
    start = int(bad_steps[-1]) + 1 if len(bad_steps) else 0
    radius = float(steps[start]) if start < n else 0.0
    shaped = out_like if problem.mode == "fwd" else _Shape.of(0.0)
    order = (
        ev.remainders.order if ev.remainders.pattern.name in ("POWER", "SCATTERED") else math.nan
    )
    if cause is Cause.ORDER_TWO_BELOW_SWITCH and ev.below is not None:
        order = ev.below.order
    return LinearizationReport(
        steps=steps,
        remainder_plus=meas.rem[:n] if ev.ad_finite else np.full(n, np.nan),
        remainder_minus=meas.rem[n:] if ev.ad_finite else np.full(n, np.nan),
        floor=full_floor,
        order=float(order),
        ad_slope=shaped(meas.ad),
        slope_plus=shaped(ev.plus.value),
        slope_minus=shaped(ev.minus.value),
        ad_in_hull=ev.tests.in_hull,
        radius=radius,
        verdict=verdict.value,
        reason=reason,
        rtol=rtol,
        dtype=problem.dtype_name,
        kink_radius=kinks.radius_plus,
        sites=kinks.sites,
        mode=problem.mode,
        exact_slope_plus=np.nan if ev.exact_plus is None else shaped(ev.exact_plus),
        exact_slope_minus=np.nan if ev.exact_minus is None else shaped(ev.exact_minus),
    )


def _out_like(problem: Problem) -> _Shape:
    avals = [v.aval for v in problem.closed.jaxpr.outvars]
    return _Shape(problem.out_tree, tuple(a.shape for a in avals))


def _rtol(rtol: Any, eps: float) -> float:
    if rtol is None:
        return 64 * eps
    return _validate.number(rtol, "rtol", positive=True)


def _steps_for(problem: Problem, steps: Any, i: int | None) -> np.ndarray:
    x0, _, d = problem.point(i)
    x_leaves = [np.asarray(v) for v in jax.tree.leaves(x0)]
    d_leaves = [np.asarray(v) for v in jax.tree.leaves(d)]
    if steps is None:
        return grid.default_steps(x_leaves, d_leaves, problem.eps)
    given = grid.validate_steps(steps)
    k = grid.moving_steps(given, x_leaves, d_leaves)
    if k < 3:
        raise ValueError(
            f"`steps`: only {k} of the given steps move `x0` along `direction` in its "
            f"precision; give larger steps"
        )
    return given[:k]


# ---------------------------------------------------------------------- public API


def check_linearization(
    f: Callable[..., Any],
    x0: Any,
    direction: Any = None,
    *,
    mode: str = "auto",
    argnums: int | Sequence[int] | None = None,
    key: jax.Array | None = None,
    steps: Sequence[float] | np.ndarray | None = None,
    rtol: float | None = None,
    analyze_kinks: bool = True,
) -> LinearizationReport:
    r"""Checks the linearization property of ``f`` at ``x0`` along a direction.

    Evaluates :math:`r_\pm(h) = \lVert f(x_0 \pm h d) - f(x_0) \mp J(x_0)(h d)\rVert` on a
    grid of steps (one jitted, vmapped call, both sides at once), estimates the roundoff
    floor, reads the order of :math:`r \sim h^p` above it and returns a verdict:
    ``"smooth"`` (order 2: the derivative is right), ``"linear"`` (remainders at roundoff:
    ``f`` is affine near ``x0``, e.g. inside one linear region of a ReLU network),
    ``"kink"`` (the one-sided slopes differ), ``"wrong_derivative"`` (``f`` is
    differentiable along ``d`` but AD returned another value or NaN, as for
    ``relu(x) - relu(-x)`` at 0 or ``norm(x)**2`` at 0), ``"discontinuous"`` (order 0) or
    ``"inconclusive"`` (with the reason: the precision cannot tell).

    The working precision is the lowest floating-point precision inside the program (read
    from its jaxpr: a ``bfloat16`` computation inside a ``float32`` function counts). The
    one-sided slopes come from values of ``f``, so they exist where AD returns NaN. The
    kink analysis of the jaxpr gives the nearest switches along ``±d``, the exact one-sided
    slopes, and, for piecewise-linear programs, a proof that ``f`` is affine up to them.

    Args:
        f: a JAX-traceable function returning a scalar, an array or a pytree of
            floating-point arrays (remainders use the Euclidean norm over all leaves).
        x0: the point: a floating-point array or pytree of them (finite, non-empty); with
            ``argnums``, the tuple of all positional arguments of ``f``.
        direction: same structure as ``x0`` (as the selected arguments with ``argnums``),
            used as given (steps are in its units). Default: a random direction drawn
            from ``key``, of unit length over all leaves.
        mode: ``"fwd"`` (JVP), ``"rev"`` (VJP with a random unit cotangent ``w``:
            :math:`w^\top J d` is checked, so ``custom_vjp`` functions and reverse-only
            NaNs are covered) or ``"auto"`` (forward where it works, else reverse). The
            report records the mode used.
        argnums: None (``f(x0)``), or an int or tuple of ints as in :func:`jax.grad`: then
            ``x0`` is the tuple of all positional arguments, ``f(*x0)`` is called and only
            the selected ones are perturbed.
        key: PRNG key for the default direction and the reverse-mode cotangent (default
            fixed keys, so results are reproducible).
        steps: decreasing step sizes (at least 3). Default: halving from the problem's
            scale (``max(||x0||, 1) / ||d||``, rounded to a power of 2; over the
            elements ``d`` moves where the rest is over ``1 / sqrt(eps)`` times larger)
            down to the last step that still moves ``x0`` along ``d`` in its precision.
            ``f`` is evaluated at ``x0 +- h d`` for every step ``h``: where it is undefined or does
            not terminate that far out (a ``while_loop`` that runs forever at a negative
            input), pass smaller steps.
        rtol: relative tolerance for ``radius`` (default ``64 * eps`` of the working
            precision).
        analyze_kinks: also read the program's jaxpr (nearest sites, switch distances,
            exact slopes; see :func:`jaxrelu.kink_sites`).

    Returns:
        A :class:`LinearizationReport`.

    Raises:
        TypeError: ``f`` not callable or not traceable; non-float ``x0``.
        ValueError: non-finite or empty ``x0``/``direction``, a zero direction, an unknown
            ``mode``, bad ``argnums`` or ``steps``.

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> jaxrelu.check_linearization(jaxrelu.relu, jnp.array(0.0), jnp.array(1.0)).verdict
        'kink'
        >>> rep = jaxrelu.check_linearization(jnp.sin, jnp.array(0.5, jnp.float32))
        >>> rep.verdict, round(rep.order)
        ('smooth', 2)
    """
    problem = setup(f, x0, direction, mode=mode, argnums=argnums, key=key)
    rtol = _rtol(rtol, problem.eps)
    grid_ = _steps_for(problem, steps, None)
    (meas,) = measure(problem, grid_)
    kinks = _kinks(problem, 1)[0] if analyze_kinks else _Kinks()
    (judged,) = _confirm(problem, [_judge(problem, grid_, meas, kinks)], [grid_], [None])
    return _report(problem, grid_, meas, kinks, rtol, _out_like(problem), judged)


def check_many(
    f: Callable[..., Any],
    x0s: Any,
    directions: Any = None,
    *,
    mode: str = "auto",
    argnums: int | Sequence[int] | None = None,
    key: jax.Array | None = None,
    steps: Sequence[float] | np.ndarray | None = None,
    rtol: float | None = None,
    analyze_kinks: bool = True,
) -> ManyReport:
    """:func:`check_linearization` for a batch of points, in one jitted vmapped call (and
    one batched kink analysis).

    Args:
        f: as for :func:`check_linearization`.
        x0s: the points: every leaf has a leading axis of the same length (with
            ``argnums``: the tuple of all arguments, each batched).
        directions: same structure and shapes as the selected points, or None for random
            unit directions (one per point, drawn from ``key``).
        mode, argnums, key, steps, rtol, analyze_kinks: as for :func:`check_linearization`;
            default steps are chosen per point.

    Returns:
        A :class:`ManyReport` with per-point arrays and ``counts`` (verdict -> number). A
        point that is not finite gets an ``"inconclusive"`` report saying so; the others
        are checked as usual.

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> xs = jnp.array([-1.0, 0.0, 2.0])
        >>> res = jaxrelu.check_many(jaxrelu.relu, xs, jnp.ones_like(xs))
        >>> res.verdict.tolist(), res.counts["kink"]
        (['linear', 'kink', 'linear'], 1)
    """
    problem = setup(
        f,
        x0s,
        directions,
        mode=mode,
        argnums=argnums,
        key=key,
        batched=True,
        names=("x0s", "directions"),
        finite=False,
    )
    n_pts = int(np.shape(jax.tree.leaves(problem.x0)[0])[0])  # (at least 1: setup checks)
    rtol = _rtol(rtol, problem.eps)
    bad = _nonfinite_points(problem)
    grids = _grids_many(problem, steps, bad)
    width = max(len(g) for g in grids)
    padded = np.stack(
        [np.concatenate([g, g[-1] * 2.0 ** -np.arange(1, width - len(g) + 1)]) for g in grids]
    )
    meas = measure(problem, padded)
    kinks = _kinks(problem, n_pts) if analyze_kinks else [_Kinks()] * n_pts
    like = _out_like(problem)
    lengths = np.array([len(g) for g in grids])
    pre = _batched_slopes(problem, padded, lengths, meas, bad)
    trimmed = []
    for i in range(n_pts):
        k, m = len(grids[i]), meas[i]
        side = lambda v, k=k: np.concatenate([v[:k], v[width : width + k]])
        trimmed.append(dataclasses.replace(
            m, rem=side(m.rem), mag=side(m.mag), vmag=side(m.vmag), df=side(m.df), heff=side(m.heff)
        ))  # fmt: skip
    judged = [_judge(problem, grids[i], trimmed[i], kinks[i], pre.get(i)) for i in range(n_pts)]
    ok = [i for i in range(n_pts) if not bad[i]]
    confirmed = _confirm(problem, [judged[i] for i in ok], [grids[i] for i in ok], ok)
    for i, j in zip(ok, confirmed):
        judged[i] = j
    reports = []
    for i in range(n_pts):
        rep = _report(problem, grids[i], trimmed[i], kinks[i], rtol, like, judged[i])
        if bad[i]:
            rep = dataclasses.replace(rep, verdict="inconclusive", reason=f"x0s[{i}] is not finite")
        reports.append(rep)
    return _many(reports)


def _batched_slopes(
    problem: Problem, steps: np.ndarray, lengths: np.ndarray, meas: list, bad: np.ndarray
) -> dict[int, tuple[Slope, Slope, np.ndarray]]:
    """The one-sided slopes and roundoff floors of every point whose AD is finite and ``f``
    finite at all its steps, computed for all of them at once (the same numbers as one
    point at a time, without the per-point NumPy overhead)."""
    width = steps.shape[1]
    rem, mag, vmag, df, heff = (
        np.stack([getattr(m, a) for m in meas]) for a in ("rem", "mag", "vmag", "df", "heff")
    )
    valid = np.arange(width)[None] < lengths[:, None]
    both = np.concatenate([valid, valid], axis=1)
    ok = ~bad & np.all(np.isfinite(np.stack([m.ad for m in meas])), axis=1)
    ok &= np.all(np.isfinite(df).all(axis=2) | ~both, axis=1)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return {}
    st, va, eps = steps[idx], valid[idx], problem.eps
    p, m = slice(0, width), slice(width, 2 * width)
    plus = one_sided_many(st, heff[idx, p], df[idx, p], vmag[idx, p], eps, va)
    minus = one_sided_many(st, heff[idx, m], df[idx, m], vmag[idx, m], eps, va)
    both = np.maximum(rem[idx, p], rem[idx, m])
    floor = np.maximum(
        roundoff_floor_many(st, rem[idx, p], mag[idx, p], eps, va, both),
        roundoff_floor_many(st, rem[idx, m], mag[idx, m], eps, va, both),
    )
    return {int(i): (plus[j], minus[j], floor[j, : lengths[i]]) for j, i in enumerate(idx)}


def _grids_many(problem: Problem, steps: Any, bad: np.ndarray) -> list[np.ndarray]:
    """Per-point grids, all at once on the host (non-finite points get a dummy grid)."""
    x_leaves = [np.asarray(v) for v in jax.tree.leaves(problem.x0)]
    d_leaves = [np.asarray(v) for v in jax.tree.leaves(problem.direction)]
    if steps is None:
        safe = lambda leaves: [
            np.where(bad.reshape((-1,) + (1,) * (v.ndim - 1)), 1, v) for v in leaves
        ]
        grids = grid.default_steps_many(safe(x_leaves), safe(d_leaves), problem.eps)
    else:
        given = grid.validate_steps(steps)
        grids = []
        for i in range(len(bad)):
            k = (
                3
                if bad[i]
                else grid.moving_steps(given, [v[i] for v in x_leaves], [v[i] for v in d_leaves])
            )
            if k < 3:
                raise ValueError(
                    f"`steps`: only {k} of the given steps move point {i} along its direction "
                    "in its precision; give larger steps"
                )
            grids.append(given[:k])
    return [np.geomspace(1.0, 2.0**-8, 9) if bad[i] else g for i, g in enumerate(grids)]


def _pad(g: np.ndarray, width: int) -> np.ndarray:
    """A grid continued by halvings to ``width`` steps (the extra ones are not used)."""
    return np.concatenate([g, g[-1] * 2.0 ** -np.arange(1, width - len(g) + 1)])


def _nonfinite_points(problem: Problem) -> np.ndarray:
    n = np.shape(jax.tree.leaves(problem.x0)[0])[0]
    flags = np.zeros(n, bool)
    for v in jax.tree.leaves((problem.x0, problem.direction)):
        a = np.asarray(v, np.float64).reshape(n, -1)
        flags |= ~np.all(np.isfinite(a), axis=1)
    return flags


def _many(reports: list[LinearizationReport]) -> ManyReport:
    verdict = np.array([str(r.verdict) for r in reports])
    stack = lambda name: jax.tree.map(
        lambda *v: np.stack([np.asarray(u, np.float64) for u in v]),
        *[getattr(r, name) for r in reports],
    )
    return ManyReport(
        verdict=verdict,
        order=np.array([r.order for r in reports]),
        ad_slope=stack("ad_slope"),
        slope_plus=stack("slope_plus"),
        slope_minus=stack("slope_minus"),
        ad_in_hull=np.array([r.ad_in_hull for r in reports]),
        radius=np.array([r.radius for r in reports]),
        counts={v: int(np.sum(verdict == v)) for v in VERDICTS},
        reports=tuple(reports),
    )


def assert_linearization(
    f: Callable[..., Any],
    x0: Any,
    direction: Any = None,
    *,
    allow: Sequence[str] = ("smooth", "linear"),
    **kw: Any,
) -> LinearizationReport:
    """Raises ``AssertionError`` (whose message is the report's table) unless the verdict
    of :func:`check_linearization` is one of ``allow``. For users' test suites; takes the
    same keywords (``mode``, ``argnums``, ...).

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> _ = jaxrelu.assert_linearization(jnp.tanh, jnp.array([0.1, 0.2]))
    """
    if isinstance(allow, str):
        allow = (allow,)
    unknown = set(allow) - set(VERDICTS)
    if unknown:
        raise ValueError(f"`allow` holds unknown verdicts {sorted(unknown)}; known: {VERDICTS}")
    rep = check_linearization(f, x0, direction, **kw)
    if str(rep.verdict) not in allow:
        raise AssertionError(f"verdict {str(rep.verdict)!r} not in {tuple(allow)}\n{rep}")
    return rep


# ------------------------------------------------------------ neighbourhood error


def _nbhd_core(closed: Any) -> Callable:
    def core(consts, x0, us, radii):
        wide = _util.widest_float()
        run = jaxpr_as_fun(ClosedJaxpr(closed.jaxpr, list(consts)))
        # (as arrays: an output that is a literal, ``lambda x: 1.0``, is a Python scalar)
        g = lambda x: [jnp.asarray(o) for o in run(*jax.tree.leaves(x))]
        f0, lin = _util.linearize(g, x0)

        def at(rad, u):
            x = jax.tree.map(lambda a, b: a + rad.astype(a.dtype) * b, x0, u)
            dx = jax.tree.map(lambda a, b: a - b, x, x0)
            fx, ldx = g(x), lin(dx)
            rem = [a.astype(wide) - b.astype(wide) - c.astype(wide) for a, b, c in zip(fx, f0, ldx)]
            sq = lambda vs: jnp.sqrt(sum(jnp.sum(jnp.square(jnp.abs(v.astype(wide)))) for v in vs))
            return sq(rem), sq(fx) + sq(f0) + sq(ldx)

        return jax.vmap(jax.vmap(at, in_axes=(None, 0)), in_axes=(0, None))(radii, us)

    return core


def neighbourhood_error(
    f: Callable[[Any], Any],
    x0: Any,
    radii: Sequence[float] | np.ndarray,
    *,
    n_directions: int = 64,
    key: jax.Array | None = None,
) -> NeighbourhoodError:
    r"""The seed's property literally: the worst remainder on spheres around ``x0``.

    For each radius :math:`r`, returns
    :math:`\max_{u} \lVert f(x_0 + r u) - f(x_0) - J(x_0)(r u)\rVert` over
    ``n_directions`` random unit directions :math:`u` (all radii and directions in one
    vmapped call), and the order fitted over the radii whose error is above the roundoff
    floor: 2 where ``f`` is smooth near ``x0``, 1 where a kink sits at ``x0``.

    Args:
        f: a JAX-traceable function of one argument.
        x0: the centre (a floating-point array or pytree of them, finite).
        radii: the radii (positive; at least 2).
        n_directions: number of sampled directions.
        key: PRNG key for the directions (default ``PRNGKey(0)``).

    Returns:
        A :class:`NeighbourhoodError` with ``radii``, ``error``, ``floor`` and ``order``.

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> res = jaxrelu.neighbourhood_error(jaxrelu.relu, jnp.zeros(3), [1e-1, 1e-2, 1e-3])
        >>> round(res.order, 2)
        1.0
    """
    try:
        rad = np.asarray(radii, np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`radii` must be a 1-D sequence of numbers, got {radii!r}") from err
    if rad.ndim != 1 or rad.size < 2:
        raise ValueError("`radii` must be 1-D with at least 2 radii")
    if not np.all(np.isfinite(rad)) or np.any(rad <= 0):
        raise ValueError("`radii` must be finite and positive")
    n_directions = _validate.positive_int(n_directions, "n_directions")
    problem = setup(f, x0, None, mode="fwd", key=key)
    keys = jax.random.split(key if key is not None else jax.random.PRNGKey(0), n_directions)
    us = jax.vmap(lambda k: random_direction(problem.x0, k))(keys)
    wide = _util.widest_float()
    args = (list(problem.closed.consts), problem.x0, us, jnp.asarray(rad, wide))
    text, refs = problem.traced.fingerprint, problem.traced.refs
    avals = str(jax.tree.map(lambda v: (jnp.shape(v), str(jnp.result_type(v))), args[1:]))
    key_ = ("neighbourhood", text, tuple(map(id, refs)), avals, _util.x64())
    compiled = compile_cached(key_, refs, lambda: _nbhd_core(problem.closed), *args)
    errs, mag = (np.asarray(v, np.float64) for v in compiled(*args))
    worst = np.argmax(errs, axis=1)
    error = errs[np.arange(len(rad)), worst]
    floor = FLOOR_SAFETY * problem.eps * mag.max(axis=1)
    above = error > CLEAN * floor
    order = fit_order(rad[above], error[above]) if np.sum(above) >= 2 else math.nan
    return NeighbourhoodError(radii=rad, error=error, floor=floor, order=order)
