"""The step grid: powers of two from the problem's scale down to the smallest step that
still moves ``x0`` as asked, in ``x0``'s own precision.

A step ``h`` is evaluated *as represented*: ``dx = fl(x0 + h d) - x0``. Below about an ulp
of ``x0`` that step no longer moves ``x0`` along ``d`` (``dx`` is 0 or off direction), and
remainders computed there say nothing about ``f``. The grid therefore ends at the last
power of two whose represented step is within 25% of ``h d``; since it is made of powers
of two relative to ``x0``'s binade, moving ``x0`` by one ulp does not change it, and
neither do the verdicts built on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DISTORTION",
    "default_steps",
    "default_steps_many",
    "ladder",
    "moving_steps",
    "validate_steps",
]

DISTORTION = 0.25  # largest relative error of the represented step kept in the grid


def _flat64(leaves: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in leaves])


def norms(a: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows of ``a`` (float64) that do not overflow where the
    squares would (``||(1e160, 0)||``): each row is scaled by its largest element first."""
    m = np.max(np.abs(a), axis=1, keepdims=True, initial=0.0)
    safe = np.where((m > 0) & np.isfinite(m), m, 1.0)
    return np.linalg.norm(a / safe, axis=1) * safe[:, 0]


def _scale_norm(x: np.ndarray, d: np.ndarray, eps: float) -> np.ndarray:
    """The norm that sets the steps, per row: ``||x||``, or ``||x||`` over the elements
    that ``d`` moves where the whole is more than ``1 / sqrt(eps)`` times larger (at least
    1 each). A masked softmax's -1e9 scores, which ``d`` leaves alone, would otherwise set
    steps of 1e9 and down, none small enough to see the derivative of the scores of order
    1; short of that, the larger steps of the whole help (a confident cross-entropy in
    float16, whose values move in quanta at the small steps)."""
    whole = np.maximum(norms(x), 1.0)
    moved = np.maximum(norms(np.where(d != 0, x, 0.0)), 1.0)
    return np.where(whole <= moved / math.sqrt(eps), whole, moved)


def _top(x0_norm: Any, d_norm: Any) -> Any:
    """The largest step, ``max(||x0||, 1) / ||d||`` (see :func:`_scale_norm`), rounded to
    a power of two."""
    with np.errstate(over="ignore", divide="ignore"):
        scale = np.maximum(x0_norm, 1.0) / d_norm
    if not np.all((scale > 0) & np.isfinite(scale)):
        raise ValueError(
            "`x0` and `direction`: the ratio of their sizes (||x0|| / ||direction||) is out "
            "of float64's range; scale the direction"
        )
    return 2.0 ** np.round(np.log2(scale))


def ladder(x0_norm: float, d_norm: float, eps: float) -> np.ndarray:
    """Halving steps from ``max(||x0||, 1) / ||d||`` (rounded to a power of two) down to
    about ``eps / 16`` times it."""
    top = float(_top(x0_norm, d_norm))
    return top * 2.0 ** -np.arange(round(-math.log2(eps)) + 4, dtype=np.float64)


def moving_steps(steps: np.ndarray, x0: Sequence[np.ndarray], d: Sequence[np.ndarray]) -> int:
    """How many of the (decreasing) ``steps`` move ``x0`` to within :data:`DISTORTION` of
    ``h d`` in ``x0``'s dtype: the grid stops at the first that does not."""
    d64 = _flat64(d)
    d_norm = float(norms(d64[None])[0])
    for i, h in enumerate(steps):
        err = 0.0  # pragma: no mutate (a sum of nonnegative terms)
        for x, v in zip(x0, d):
            x = np.asarray(x)
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is a bad step
                moved = (
                    x + (np.asarray(h, np.float64) * np.asarray(v, np.float64)).astype(x.dtype)
                ).astype(x.dtype)
                dx = moved.astype(np.float64) - x.astype(np.float64)
                err += float(np.sum(np.square(dx - h * np.asarray(v, np.float64))))
        # (NaN, an overflow, is bad; equality needs a step of 4/5 or 4/3 of a spacing,
        # which no float64 step is: ``<`` and ``<=`` read alike)
        if not math.sqrt(err) <= DISTORTION * h * d_norm:  # pragma: no mutate
            return i
    return len(steps)


def default_steps(x0: Sequence[np.ndarray], d: Sequence[np.ndarray], eps: float) -> np.ndarray:
    """The default grid for the point ``x0`` and direction ``d`` (lists of leaves), with at
    least 3 steps."""
    x64, d64 = _flat64(x0)[None], _flat64(d)[None]
    full = ladder(float(_scale_norm(x64, d64, eps)[0]), float(norms(d64)[0]), eps)
    return full[: max(moving_steps(full, x0, d), 3)]


def default_steps_many(
    x0: Sequence[np.ndarray], d: Sequence[np.ndarray], eps: float
) -> list[np.ndarray]:
    """:func:`default_steps` for every point of a batch (leaves with a leading point
    axis), computed for all points and steps at once."""
    n = np.shape(x0[0])[0]
    flat = lambda leaves: np.concatenate(
        [np.asarray(v, np.float64).reshape(n, -1) for v in leaves],  # pragma: no mutate
        axis=1,
    )
    d64 = flat(d)
    x_norm = _scale_norm(flat(x0), d64, eps)
    d_norm = norms(d64)
    k = round(-math.log2(eps)) + 4
    tops = _top(x_norm, d_norm)
    hs = tops[:, None] * 2.0 ** -np.arange(k)[None, :]  # (points, steps)
    err = np.zeros_like(hs)
    for x, v in zip(x0, d):
        # (NumPy reads any negative size as "the rest": -1 and -2 alike)
        x = np.asarray(x).reshape(n, 1, -1)  # pragma: no mutate
        v64 = np.asarray(v, np.float64).reshape(n, 1, -1)  # pragma: no mutate
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is a bad step
            step = (hs[:, :, None] * v64).astype(x.dtype)
            dx = (x + step).astype(x.dtype).astype(np.float64) - x.astype(np.float64)
            err += np.sum(np.square(dx - hs[:, :, None] * v64), axis=2)
    with np.errstate(invalid="ignore"):
        bad = ~(np.sqrt(err) <= DISTORTION * hs * d_norm[:, None])  # pragma: no mutate (as above)
    first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1), k)
    return [hs[i, : max(int(first_bad[i]), 3)] for i in range(n)]


def validate_steps(steps: Any) -> np.ndarray:
    """User-given steps: 1-D, at least 3, finite, positive, strictly decreasing."""
    try:
        s = np.asarray(steps, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`steps` must be a 1-D sequence of numbers, got {steps!r}") from err
    if s.ndim != 1:
        raise ValueError(f"`steps` must be 1-D, got shape {s.shape}")
    if s.size < 3:
        raise ValueError(f"`steps` needs at least 3 step sizes, got {s.size}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("`steps` must be finite and positive")
    if np.any(np.diff(s) >= 0):
        raise ValueError("`steps` must be strictly decreasing")
    return s
