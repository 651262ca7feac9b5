r"""Reading a remainder sequence: the roundoff floor, and the order of convergence.

For a smooth ``f`` the remainder behaves like :math:`C h^2`, at a kink (or where AD
returned a wrong derivative) like :math:`C h`, at a jump like a constant, until it meets
the roundoff floor :math:`\varphi(h) \approx \varepsilon (|f(x_0+\delta)| + |f(x_0)| + |J\delta|)`
below which it carries no information. :func:`classify_remainders` finds the contiguous
window of steps just above the floor where the sequence follows one power law, fits its
order and checks that the local orders agree; a sequence that stays at the floor, or that
stays there up to some step and then rises more abruptly than any power law allows (a kink
or jump further out), is told apart and the curvature a smooth function could hide below
the floor is bounded.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import numpy as np

__all__ = [
    "CLEAN",
    "FLOOR_SAFETY",
    "INFORMATIVE",
    "KAPPA_ABRUPT",
    "KAPPA_FLAT",
    "SCATTER",
    "SETTLED",
    "WINDOW",
    "Pattern",
    "RemainderEvidence",
    "classify_remainders",
    "fit_order",
    "local_orders",
    "roundoff_floor",
    "roundoff_floor_many",
]

FLOOR_SAFETY = 4.0  # floor = 4 eps (|f(x0 + δ)| + |f(x0)| + |J δ|): rounding of the three terms
INFORMATIVE = 2.0  # a remainder above 2 floors carries information ...
CLEAN = 8.0  # ... and above 8 floors is used to fit the order
WINDOW = 5  # the order is fitted on at most 5 steps: the smallest clean ones
SCATTER = 1.0  # local orders in the window may differ by at most this much
TAIL_SCATTER = 0.5  # a tail of steps whose local orders agree this well is signal, not noise
TAIL_FALL = 0.9  # a tail whose local orders are all at least this falls at every halving,
TAIL_TRUNCATION = 1.5  # and at least this at its smallest steps: truncation, not noise
SETTLED = 4  # a tail whose 4 smallest informative halvings follow one law of order >= 1.5
# Bounds on the relative curvature rho = |f''| h_max^2 / |f| that a "linear" verdict may
# leave unresolved below the floor: strict when the remainders never leave the floor,
# looser when they rise abruptly further out (a kink or jump there; no smooth f does that).
KAPPA_FLAT = 1e-3
KAPPA_ABRUPT = 1.0


class Pattern(enum.Enum):
    """What a remainder sequence looks like."""

    FLAT = "at the roundoff floor at every step"
    FLAT_THEN_RISE = "at the floor up to some step, then an abrupt rise"
    POWER = "a power law h^p above the floor"
    SCATTERED = "local orders too scattered for one power law"
    FEW = "fewer than 3 informative steps"


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (immutability only)
class RemainderEvidence:
    """The reading of a remainder sequence.

    Attributes:
        pattern: the :class:`Pattern`.
        order: fitted order (NaN unless ``POWER`` or ``SCATTERED``).
        window: indices of the fitted steps.
        local: local orders over the window.
        n_flat: number of smallest steps at the floor.
        rise: the largest step still at the floor, for ``FLAT_THEN_RISE`` (NaN otherwise).
        kappa: relative curvature a smooth ``f`` could hide below the floor up to the
            flat range's largest step (0 for remainders exactly zero over >= 3 steps).
    """

    pattern: Pattern
    order: float
    window: tuple[int, ...]
    local: tuple[float, ...]
    n_flat: int
    rise: float
    kappa: float


def local_orders(steps: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``log(r_i / r_{i+1}) / log(h_i / h_{i+1})`` between consecutive steps."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(r[:-1] / r[1:]) / np.log(steps[:-1] / steps[1:])


def fit_order(h: np.ndarray, r: np.ndarray) -> float:
    """Least-squares slope of ``log r`` against ``log h``."""
    if len(h) < 2:
        return float("nan")
    lh, lr = np.log(h), np.log(r)
    lh = lh - lh.mean()
    return float(np.sum(lh * (lr - lr.mean())) / np.sum(lh * lh))


def roundoff_floor(
    steps: np.ndarray, r: np.ndarray, mag: np.ndarray, eps: float, both: Any = None
) -> np.ndarray:
    """The floor :data:`FLOOR_SAFETY` ``eps · mag``, raised to the noise actually seen at
    the tiniest steps when rounding inside ``f`` (cancellation) makes it larger.

    The noise is read off steps below ``1e-2 sqrt(eps)`` times the largest, where no
    truncation term of a smooth ``f`` is visible. A tail whose local orders agree (a
    constant remainder: a jump; one halving with ``h``: a kink) is a signal and raises
    nothing; an erratic one raises the floor to its maximum, at most ``sqrt(eps)`` times
    the largest magnitude (``|f| + |J d| h`` at the largest step: ``|f|`` itself may be far
    smaller than the values whose rounding makes the noise; a larger jump stays visible).
    A tail that settles on a power law of order at least 1.5 (truncation) raises nothing
    either; ``both`` (the larger remainder of the two sides, default ``r``) is where that
    is read: one side's remainder alone can cross zero where two terms of its expansion
    cancel.
    """
    both = None if both is None else both[None]
    return roundoff_floor_many(steps[None], r[None], mag[None], eps, None, both)[0]


def roundoff_floor_many(
    steps: np.ndarray,
    r: np.ndarray,
    mag: np.ndarray,
    eps: float,
    valid: Any = None,
    both: Any = None,
) -> np.ndarray:
    """:func:`roundoff_floor` for ``P`` points at once (``(P, n)`` arrays; ``valid`` marks
    each point's steps, a prefix)."""
    floor = FLOOR_SAFETY * eps * mag
    # (equality needs a step of exactly 1e-2 sqrt(eps) times the largest: never a power of 2)
    tiny = steps <= 1e-2 * math.sqrt(eps) * steps[:, :1]  # pragma: no mutate
    if valid is not None:
        tiny = tiny & valid
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.log(r[:, :-1] / r[:, 1:]) / np.log(steps[:, :-1] / steps[:, 1:])
    pair = tiny[:, :-1] & tiny[:, 1:]  # consecutive tiny steps (they form a suffix)
    spread = np.max(np.where(pair, lo, -np.inf), axis=1) - np.min(
        np.where(pair, lo, np.inf), axis=1
    )
    spread = np.where(np.any(pair & np.isnan(lo), axis=1), np.nan, spread)
    rt_max = np.max(np.where(tiny, r, -np.inf), axis=1)
    usable = (np.sum(tiny, axis=1) >= 3) & np.all(np.isfinite(r) | ~tiny, axis=1)
    informative = np.all((r > INFORMATIVE * floor) | ~tiny, axis=1)
    # (a spread of exactly 0.5 needs ratios of sqrt(2): ``<`` and ``<=`` read alike)
    signal = informative & (spread <= TAIL_SCATTER)  # pragma: no mutate
    # a tail that falls at every halving, faster than h at its smallest informative
    # steps, is truncation, not noise: a smooth f whose curvature lives on a scale far
    # below the largest step (tanh(1e6 x) at 0 in float32: order 1.6 rising to 3 through
    # the tail; tanh(1e12 x) in float64: 1 where it saturates, then 3; sigmoid(1e6 x) in
    # float32 falls so until it reaches the rounding of 0.5); rounding noise never falls
    # so. Read on the tail's informative steps, which must come first (once at the floor,
    # the rest stays there).
    above, ordered, ipair, end = _tail(r, floor, tiny)
    smallest = np.take_along_axis(np.where(ipair, lo, np.nan), np.maximum(end, 0), axis=1)[:, 0]
    falling = (
        ordered
        & (np.sum(above, axis=1) >= 4)  # three halvings: noise does not fall so by chance
        & np.all(np.where(ipair, lo >= TAIL_FALL, True), axis=1)
        & (smallest >= TAIL_TRUNCATION)
    )
    # a tail that settles on a power law of order >= 1.5 over its 4 smallest informative
    # halvings (orders within TAIL_SCATTER) is truncation too, whatever it does at larger
    # steps: sin at 1e12 in float64 varies on a scale of 1, far below the largest step
    # (1e12), and its remainders follow h where the steps span many periods, then h^2
    # down to the smallest step. Rounding noise does not fall 2^6-fold over 4 halvings
    settled = _settled(steps, r if both is None else both, floor, tiny)
    signal = signal | falling | settled
    quiet = rt_max <= np.max(np.where(tiny, floor, -np.inf), axis=1)
    raise_ = usable & ~signal & ~quiet
    # capped at sqrt(eps) of the largest magnitude seen (|f| + |J d| h at the largest
    # step): |f| near x0 may be far below the values inside f whose rounding is the noise
    finite_mag = np.where(np.isfinite(mag), mag, 0.0)  # pragma: no mutate (any fill <= 0)
    scale = np.max(finite_mag, axis=1, keepdims=True)
    raised = np.maximum(floor, np.minimum(rt_max[:, None], math.sqrt(eps) * scale))
    return np.where(raise_[:, None], raised, floor)


def _tail(r: np.ndarray, floor: np.ndarray, tiny: np.ndarray) -> tuple[Any, Any, Any, Any]:
    """The tail's informative steps (``above``), whether they come first (``ordered``:
    once at the floor, the rest stays there), the consecutive pairs of them (``ipair``)
    and the index of the last such pair (``end``, ``(P, 1)``)."""
    above = tiny & (r > INFORMATIVE * floor)
    ordered = ~np.any(tiny[:, :-1] & ~above[:, :-1] & above[:, 1:], axis=1)
    ipair = above[:, :-1] & above[:, 1:]
    end = (np.argmax(tiny, axis=1) + np.sum(above, axis=1) - 2)[:, None]
    return above, ordered, ipair, end


def _settled(steps: np.ndarray, r: np.ndarray, floor: np.ndarray, tiny: np.ndarray) -> Any:
    """Per point: whether the tiny steps' remainders ``r``, informative ones first, end
    in :data:`SETTLED` halvings of orders at least :data:`TAIL_TRUNCATION` that agree to
    :data:`TAIL_SCATTER`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.log(r[:, :-1] / r[:, 1:]) / np.log(steps[:, :-1] / steps[:, 1:])
    above, ordered, ipair, end = _tail(r, floor, tiny)
    picks = np.maximum(end + np.arange(1 - SETTLED, 1)[None, :], 0)
    last = np.take_along_axis(np.where(ipair, lo, np.nan), picks, axis=1)
    with np.errstate(invalid="ignore"):
        return (
            ordered
            & (np.sum(above, axis=1) >= SETTLED + 1)
            & np.all(last >= TAIL_TRUNCATION, axis=1)
            & (np.ptp(last, axis=1) <= TAIL_SCATTER)
        )


def _kappa(i: int, steps, r, floor, magnitude) -> float:
    """Bound on the relative curvature a smooth ``f`` could hide below the floor up to
    ``steps[i]``: one with ``|f''| h_max^2 / |f| = rho`` has remainder
    ``rho |f| h^2 / (2 h_max^2)``. Remainders exactly zero over >= 3 steps are no noise:
    ``f`` is affine on those floating-point points."""
    n = len(steps)
    if floor[i] == 0 or (n - i >= 3 and np.all(r[i:] == 0)):
        return 0.0
    if magnitude == 0:
        return math.inf
    return float(floor[i] / magnitude * (steps[0] / steps[i]) ** 2)


def _window(r: np.ndarray, floor: np.ndarray, a: int, b: int) -> np.ndarray:
    """The fitting window inside the informative run ``[a, b]``: the contiguous clean
    steps at its small end (at most :data:`WINDOW`), else its last steps."""
    clean = r > CLEAN * floor
    c = b
    # (stopping at a instead of below it reads the same: one step is no window)
    while c >= a and not clean[c]:  # pragma: no mutate
        c -= 1
    e = c
    while e > a and clean[e - 1]:
        e -= 1
    # (no clean step: c = e = a - 1, a run of one)
    if c - e + 1 >= 3:
        return np.arange(max(e, c - WINDOW + 1), c + 1)
    return np.arange(max(a, b - WINDOW + 1), b + 1)


def classify_remainders(
    steps: np.ndarray, r: np.ndarray, floor: np.ndarray, magnitude: float
) -> RemainderEvidence:
    """Reads a remainder sequence (steps decreasing, all finite).

    Args:
        steps: the step sizes.
        r: remainders (the larger of the two sides at each step).
        floor: roundoff floor per step.
        magnitude: ``|f(x0)| + h_max |J d|``: the scale against which curvature is bounded.
    """
    n = len(steps)
    informative = r > INFORMATIVE * floor
    n_flat = 0
    while n_flat < n and not informative[n - 1 - n_flat]:
        n_flat += 1
    nan = float("nan")
    if n_flat == n:
        k = _kappa(0, steps, r, floor, magnitude)
        return RemainderEvidence(Pattern.FLAT, nan, (), (), n, nan, k)
    b = n - 1 - n_flat
    a = b
    while a > 0 and informative[a - 1]:
        a -= 1
    win = _window(r, floor, a, b)
    j = n - n_flat  # the largest flat step (if any)
    if len(win) < 3:
        rise, k = nan, math.inf
        if n_flat:  # an abrupt rise: even h^2 from the lowest informative step overshoots
            lo = b
            if r[lo] * (steps[j] / steps[lo]) ** 2 > CLEAN * max(floor[j], r[j]):
                rise, k = float(steps[j]), _kappa(j, steps, r, floor, magnitude)
        pattern = Pattern.FLAT_THEN_RISE if not math.isnan(rise) else Pattern.FEW
        return RemainderEvidence(pattern, nan, tuple(win), (), n_flat, rise, k)
    p = fit_order(steps[win], r[win])
    local = local_orders(steps[win], r[win])
    if n_flat:  # the power law seen above predicts clearly informative flat steps
        lo = win[-1]  # pragma: no mutate (on a power law any window step predicts alike)
        predicted = r[lo] * (steps[j] / steps[lo]) ** max(p, 0)
        if predicted > CLEAN * max(floor[j], r[j]):
            k = _kappa(j, steps, r, floor, magnitude)
            return RemainderEvidence(
                Pattern.FLAT_THEN_RISE, p, tuple(win), tuple(local), n_flat, float(steps[j]), k
            )
    pattern = Pattern.SCATTERED if np.ptp(local) > SCATTER else Pattern.POWER
    return RemainderEvidence(pattern, p, tuple(win), tuple(local), n_flat, nan, nan)
