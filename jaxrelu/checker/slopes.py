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

__all__ = ["Slope", "one_sided"]


@dataclasses.dataclass(frozen=True)
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
    m = df.shape[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = df / heff[:, None]
        s = np.full_like(d, np.nan)
        s[1:] = 2 * d[1:] - d[:-1]
        noise = 6 * eps * mag / steps
        change = np.full(len(steps), np.inf)
        change[2:] = np.linalg.norm(s[2:] - s[1:-1], axis=1)
        err = change + noise
    err = np.where(np.isfinite(err) & np.all(np.isfinite(s), axis=1), err, np.inf)
    if not np.any(np.isfinite(err)):
        finite = np.flatnonzero(np.all(np.isfinite(d), axis=1))
        if len(finite) == 0:
            return Slope(np.full(m, np.nan), float("inf"), float("nan"))
        i = int(finite[-1])
        return Slope(d[i] + 0.0, float("inf"), float(steps[i]))
    i = int(np.argmin(err))
    return Slope(s[i] + 0.0, float(2 * err[i]), float(steps[i]))
