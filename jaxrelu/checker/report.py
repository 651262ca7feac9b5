"""The checker's results: frozen dataclasses with a short ``repr``, a table ``str`` and a
``plot``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from .. import _util
from .explain import fmt_slope
from .remainders import local_orders

__all__ = ["LinearizationReport", "ManyReport", "NeighbourhoodError"]


def _fmt_order(p: float) -> str:
    return "" if not np.isfinite(p) else f"{p:.2f}"


@dataclasses.dataclass(frozen=True, repr=False)
class LinearizationReport:
    r"""Result of :func:`~jaxrelu.check_linearization`. Fields are NumPy arrays or Python
    scalars.

    Attributes:
        steps: the step sizes ``h``, decreasing.
        remainder_plus: :math:`\lVert f(x_0 + h d) - f(x_0) - J(x_0)(h d)\rVert` per step
            (projected on the cotangent in reverse mode).
        remainder_minus: :math:`\lVert f(x_0 - h d) - f(x_0) + J(x_0)(h d)\rVert` per step.
        floor: estimated roundoff level of each remainder (larger of the two sides).
        order: fitted convergence order as ``h -> 0`` (NaN where undefined, e.g. ``linear``).
        ad_slope: :math:`J(x_0) d` from AD (:math:`w^\top J d` in reverse mode).
        slope_plus: one-sided slope :math:`f'(x_0; d)`, from values of ``f``.
        slope_minus: :math:`-f'(x_0; -d)`, the slope seen from the other side.
        ad_in_hull: whether ``ad_slope`` lies between the one-sided slopes (within tolerance).
        radius: largest tested step up to which the relative ``remainder_plus`` stays within
            ``rtol`` at every smaller step.
        verdict: a :class:`~jaxrelu.Verdict` (a string: ``"linear"``, ``"smooth"``,
            ``"kink"``, ``"wrong_derivative"``, ``"discontinuous"``, ``"inconclusive"``).
        reason: one sentence behind the verdict.
        rtol: the tolerance used for ``radius``.
        dtype: name of the working precision: the lowest floating-point precision inside
            the program (read from its jaxpr), not only of its inputs and outputs.
        kink_radius: distance along ``d`` to the nearest switch of a nonsmooth operation,
            from the program's jaxpr (:func:`jaxrelu.kink_radius`); NaN where unavailable.
        sites: the nonsmooth sites nearest to ``x0`` (:class:`jaxrelu.KinkSite`), tied ones
            first; empty where unavailable.
        mode: ``"fwd"`` (JVP) or ``"rev"`` (VJP with a random cotangent): how AD's
            derivative was obtained.
        exact_slope_plus, exact_slope_minus: the one-sided slopes read from the jaxpr
            (:func:`jaxrelu.directional_derivative`), exact for piecewise-smooth programs;
            NaN where unavailable.
    """

    steps: np.ndarray
    remainder_plus: np.ndarray
    remainder_minus: np.ndarray
    floor: np.ndarray
    order: float
    ad_slope: Any
    slope_plus: Any
    slope_minus: Any
    ad_in_hull: bool
    radius: float
    verdict: str
    reason: str
    rtol: float = float("nan")
    dtype: str = ""
    kink_radius: float = float("nan")
    sites: tuple = ()
    mode: str = "fwd"
    exact_slope_plus: Any = float("nan")
    exact_slope_minus: Any = float("nan")

    @property
    def local_order_plus(self) -> np.ndarray:
        return local_orders(self.steps, self.remainder_plus)

    @property
    def local_order_minus(self) -> np.ndarray:
        return local_orders(self.steps, self.remainder_minus)

    def __repr__(self) -> str:
        return (
            f"LinearizationReport(verdict={str(self.verdict)!r}, order={self.order:.3g}, "
            f"radius={self.radius:.3g}, ad_in_hull={self.ad_in_hull})"
        )

    def __str__(self) -> str:
        lines = [
            f"linearization check: verdict {str(self.verdict)!r}"
            + ("" if math.isnan(self.order) else f" (order {self.order:.2f})")
            + (f", working precision {self.dtype}" if self.dtype else "")
            + f", mode {self.mode}",
            f"  reason: {self.reason}",
            f"  {'h':>10} {'r(+h)':>10} {'r(-h)':>10} {'floor':>10} {'p(+)':>6} {'p(-)':>6}",
        ]
        pp = np.concatenate([self.local_order_plus, [np.nan]])
        pm = np.concatenate([self.local_order_minus, [np.nan]])
        for i, h in enumerate(self.steps):
            lines.append(
                f"  {h:10.3e} {self.remainder_plus[i]:10.3e} {self.remainder_minus[i]:10.3e} "
                f"{self.floor[i]:10.3e} {_fmt_order(pp[i]):>6} {_fmt_order(pm[i]):>6}"
            )
        lines.append(
            f"  AD slope = {fmt_slope(_flat(self.ad_slope))}; one-sided slopes: "
            f"{fmt_slope(_flat(self.slope_plus))} (along +d), "
            f"{fmt_slope(_flat(self.slope_minus))} (from -d); in the Clarke hull: "
            f"{'yes' if self.ad_in_hull else 'no'}"
        )
        if np.all(np.isfinite(_flat(self.exact_slope_plus))):
            ep, em = (
                fmt_slope(_flat(self.exact_slope_plus)),
                fmt_slope(_flat(self.exact_slope_minus)),
            )
            lines.append(
                f"  exact one-sided slopes from the jaxpr: {ep} (along +d), {em} (from -d)"
            )
        lines.append(f"  radius (rtol {self.rtol:.1e}): {self.radius:.4g}")
        if not math.isnan(self.kink_radius):
            lines.append(f"  kink radius from the jaxpr: {self.kink_radius:.4g}")
        for s in self.sites:
            lines.append(f"  nearby nonsmooth site: {s}")
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Log-log plot of both remainders, the floor and slope-1 / slope-2 guides (drawn
        under the data; labels fit when saved). Needs matplotlib
        (``pip install "jaxrelu[plot]"``). Returns the axes."""
        plt = _util.require("matplotlib.pyplot", "plot", "plotting")
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
        h = self.steps
        tiny = np.finfo(np.float64).tiny
        top = max(np.max(self.remainder_plus, initial=0), np.max(self.remainder_minus, initial=0))
        top = top if top > 0 else 1.0
        for p, style in ((1, "-."), (2, (0, (1, 3)))):
            ax.loglog(
                h,
                top * (h / h[0]) ** p,
                color="0.6",
                lw=0.8,
                ls=style,
                zorder=1,
                label=f"slope {p}",
            )
        for r, style, name in (
            (self.remainder_plus, "o-", "r(+h)"),
            (self.remainder_minus, "s--", "r(-h)"),
        ):
            pos = r > 0
            if np.any(pos):
                ax.loglog(h[pos], r[pos], style, ms=3, zorder=3, label=name)
        ax.loglog(h, np.maximum(self.floor, tiny), ":", color="k", zorder=2, label="roundoff floor")
        positive = np.concatenate([self.floor[self.floor > 0], [top]])
        ax.set_ylim(max(np.min(positive) / 10, tiny), top * 10)
        ax.set_xlabel("step h")
        ax.set_ylabel("remainder")
        ax.set_title(f"verdict: {self.verdict}")
        ax.legend(fontsize=7, loc="best")
        return ax


def _flat(v: Any) -> np.ndarray:
    return np.concatenate(
        [np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(v)] or [np.zeros(0)]
    )


@dataclasses.dataclass(frozen=True, repr=False)
class ManyReport:
    """Result of :func:`~jaxrelu.check_many`: one entry per point (leading axis).

    Attributes:
        verdict: array of verdict strings.
        order, radius, ad_in_hull: arrays, one entry per point.
        ad_slope, slope_plus, slope_minus: arrays with a leading point axis.
        counts: verdict -> number of points (every verdict is a key).
        reports: the full :class:`LinearizationReport` of every point.
    """

    verdict: np.ndarray
    order: np.ndarray
    ad_slope: Any
    slope_plus: Any
    slope_minus: Any
    ad_in_hull: np.ndarray
    radius: np.ndarray
    counts: dict[str, int]
    reports: tuple[LinearizationReport, ...]

    def __len__(self) -> int:
        return len(self.verdict)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.counts.items() if v}
        return f"ManyReport({len(self)} points, counts={shown})"

    __str__ = __repr__


@dataclasses.dataclass(frozen=True, repr=False)
class NeighbourhoodError:
    """Result of :func:`~jaxrelu.neighbourhood_error`.

    Attributes:
        radii: the radii tested.
        error: for each radius, the largest remainder over the sampled points at that
            distance.
        floor: the roundoff level of each error.
        order: the order fitted over the radii whose error is above the floor (NaN if
            fewer than two).
    """

    radii: np.ndarray
    error: np.ndarray
    floor: np.ndarray
    order: float

    def __repr__(self) -> str:
        return f"NeighbourhoodError(order={self.order:.3g}, radii={len(self.radii)})"

    def plot(self, ax: Any = None) -> Any:
        """Log-log plot of the error against the radius (needs the ``plot`` extra)."""
        plt = _util.require("matplotlib.pyplot", "plot", "plotting")
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
        tiny = np.finfo(np.float64).tiny
        ax.loglog(self.radii, np.maximum(self.error, tiny), "o-", ms=3, label="max remainder")
        ax.loglog(self.radii, np.maximum(self.floor, tiny), ":", color="gray", label="floor")
        ax.set_xlabel("radius r")
        ax.set_ylabel("max |f(x) - f(x0) - J(x - x0)|")
        ax.legend(fontsize=7)
        return ax
