r"""One-sided slopes from values of ``f`` only (no derivative needed, so they exist where
AD returns NaN).

On each side, the difference quotient :math:`D(h) = \pm(f(x_0 \pm h d) - f(x_0)) / h_e`
(:math:`h_e` the represented step's length along ``d``) is extrapolated once,
:math:`s(h) = 2 D(h) - D(2h)` (exact for quadratics and for piecewise-linear ``f``), and
taken at the step that balances truncation (the change of :math:`s` between consecutive
steps) against rounding (``eps · magnitudes / h``, tripled by the extrapolation). The error
estimate is twice that balance.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Slope", "one_sided", "one_sided_many"]


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (immutability only)
class Slope:
    """A one-sided slope: ``value`` (flat over outputs), its ``error`` (a bound on the
    Euclidean error) and the step it was read at."""

    value: np.ndarray
    error: float
    step: float


def one_sided(
    steps: np.ndarray, heff: np.ndarray, df: np.ndarray, mag: np.ndarray, eps: float
) -> Slope:
    """The slope on one side.

    Args:
        steps: nominal steps, decreasing.
        heff: represented step lengths along ``d``, signed (negative on the ``-d`` side,
            so that ``df / heff`` is the slope as seen along ``+d`` on both sides).
        df: ``f(x0 ± δ) - f(x0)`` per step, flat ``(n, m)``.
        mag: magnitudes per step (see :class:`jaxrelu.checker.evaluate.Measurements`).
        eps: working machine epsilon.
    """
    return one_sided_many(steps[None], heff[None], df[None], mag[None], eps)[0]


def one_sided_many(
    steps: np.ndarray,
    heff: np.ndarray,
    df: np.ndarray,
    mag: np.ndarray,
    eps: float,
    valid: np.ndarray | None = None,
) -> list[Slope]:
    """:func:`one_sided` for ``P`` points at once: arrays with a leading axis of points
    (``steps``, ``heff``, ``mag``: ``(P, n)``; ``df``: ``(P, n, m)``); ``valid`` marks the
    steps each point uses (a prefix; padding after it is ignored)."""
    n_pts, n, m = df.shape
    if valid is None:
        valid = np.ones((n_pts, n), bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = df / heff[:, :, None]
        s = np.full_like(d, np.nan)
        s[:, 1:] = 2 * d[:, 1:] - d[:, :-1]
        noise = 6 * eps * mag / steps
        change = np.full((n_pts, n), np.inf)
        change[:, 2:] = np.linalg.norm(s[:, 2:] - s[:, 1:-1], axis=2)
        err = change + noise
    err = np.where(np.isfinite(err) & np.all(np.isfinite(s), axis=2) & valid, err, np.inf)
    best = np.argmin(err, axis=1)
    out = []
    for p in range(n_pts):
        i = int(best[p])
        if np.isfinite(err[p, i]):
            out.append(Slope(s[p, i] + 0.0, float(2 * err[p, i]), float(steps[p, i])))
            continue
        finite = np.flatnonzero(np.all(np.isfinite(d[p]), axis=1) & valid[p])
        if len(finite) == 0:
            out.append(Slope(np.full(m, np.nan), float("inf"), float("nan")))
        else:
            j = int(finite[-1])
            # (+ 0.0 turns -0.0 into 0.0; any tiny addend reads alike on a measured slope)
            out.append(Slope(d[p, j] + 0.0, float("inf"), float(steps[p, j])))  # pragma: no mutate
    return out
