r"""The linearization checker: a Taylor-remainder test that diagnoses kinks.

Backpropagation relies on one property: :math:`f(x) \approx f(x_0) + J(x_0)(x - x_0)`.
:func:`check_linearization` measures it along a direction :math:`d` over a grid of
shrinking steps :math:`h`,

.. math::
    r_\pm(h) = \lVert f(x_0 \pm h d) - f(x_0) \mp J(x_0)\,(h d) \rVert,

estimates the roundoff floor below which a remainder carries no information, fits the
order :math:`p` of :math:`r \sim h^p` above it, and says why the property holds or fails:
2 where :math:`f` is smooth, 1 at a kink or where automatic differentiation returned a
wrong derivative, 0 at a jump. ``h d`` is taken *as represented*: the step actually made,
``fl(x0 + h d) - x0``, so that rounding of the input does not pose as a kink.

Matrix products are evaluated at full precision of their dtype
(``jax.default_matmul_precision("highest")``): on GPUs, JAX's default would run float32
products in TF32, whose 10-bit mantissa the float32 roundoff floor does not describe.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _util, _validate

__all__ = [
    "VERDICTS",
    "LinearizationReport",
    "ManyReport",
    "NeighbourhoodError",
    "assert_linearization",
    "check_linearization",
    "check_many",
    "neighbourhood_error",
]

VERDICTS = ("linear", "smooth", "kink", "wrong_derivative", "discontinuous", "inconclusive")

_FLOOR_SAFETY = 4.0  # floor = 4 eps (|f(x0)| + |f(x0 + h d)| + |J dx|)
_INFORMATIVE = 2.0  # a remainder above 2 floors carries information
_CLEAN = 8.0  # ... and above 8 floors is used for fitting the order
# Bounds on the relative curvature that "linear" may hide below the floor (see _diagnose):
# strict when the remainders never leave the floor, looser when they rise abruptly further
# out (a jump of the remainder is the signature of a kink, which no smooth f produces).
_KAPPA_FLAT = 1e-3
_KAPPA_ABRUPT = 1.0
_WINDOW = 5  # steps used to fit the asymptotic order


# ----------------------------------------------------------------------- report types


@dataclasses.dataclass(frozen=True, repr=False)
class LinearizationReport:
    """Result of :func:`check_linearization`. Fields are NumPy arrays or Python scalars.

    Attributes:
        steps: the step sizes ``h``, decreasing.
        remainder_plus: :math:`\\lVert f(x_0 + h d) - f(x_0) - J(x_0)(h d)\\rVert` per step.
        remainder_minus: :math:`\\lVert f(x_0 - h d) - f(x_0) + J(x_0)(h d)\\rVert` per step.
        floor: estimated roundoff level of each remainder (larger of the two sides).
        order: fitted convergence order as ``h -> 0`` (NaN where undefined, e.g. ``linear``).
        ad_slope: :math:`J(x_0) d` from :func:`jax.jvp`.
        slope_plus: one-sided slope :math:`f'(x_0; d)`.
        slope_minus: :math:`-f'(x_0; -d)`, the slope seen from the other side.
        ad_in_hull: whether ``ad_slope`` lies between the one-sided slopes (within tolerance).
        radius: largest tested step up to which the relative ``remainder_plus`` stays within
            ``rtol`` at every smaller step.
        verdict: one of ``"linear"``, ``"smooth"``, ``"kink"``, ``"wrong_derivative"``,
            ``"discontinuous"``, ``"inconclusive"``.
        reason: one sentence behind the verdict.
        rtol: the tolerance used for ``radius``.
        dtype: name of the working (lowest) precision.
        kink_radius: first-order distance along ``d`` to the nearest switching kink, from
            the program's jaxpr (:func:`jaxrelu.kink_radius`); NaN where unavailable.
        sites: the nonsmooth sites nearest to ``x0`` (:class:`jaxrelu.KinkSite`), nearest
            first; empty where unavailable.
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

    @property
    def local_order_plus(self) -> np.ndarray:
        return _local_orders(self.steps, self.remainder_plus)

    @property
    def local_order_minus(self) -> np.ndarray:
        return _local_orders(self.steps, self.remainder_minus)

    def __repr__(self) -> str:
        return (
            f"LinearizationReport(verdict={self.verdict!r}, order={self.order:.3g}, "
            f"radius={self.radius:.3g}, ad_in_hull={self.ad_in_hull})"
        )

    def __str__(self) -> str:
        lines = [
            f"linearization check: verdict {self.verdict!r}"
            + ("" if math.isnan(self.order) else f" (order {self.order:.2f})")
            + (f", working precision {self.dtype}" if self.dtype else ""),
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
            f"  AD slope J d = {_fmt_slope(self.ad_slope)}; one-sided slopes: "
            f"{_fmt_slope(self.slope_plus)} (along +d), {_fmt_slope(self.slope_minus)} "
            f"(from -d); in the Clarke hull: {'yes' if self.ad_in_hull else 'no'}"
        )
        lines.append(f"  radius (rtol {self.rtol:.1e}): {self.radius:.4g}")
        if not math.isnan(self.kink_radius):
            lines.append(f"  kink radius from the jaxpr: {self.kink_radius:.4g}")
        for s in self.sites:
            lines.append(f"  nearby nonsmooth site: {s}")
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Log-log plot of both remainders, the floor and slope-1 / slope-2 guides.

        Needs matplotlib (``pip install "jaxrelu[plot]"``). Returns the axes.
        """
        plt = _util.require("matplotlib.pyplot", "plot", "plotting")
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.6))
        h = self.steps
        tiny = np.finfo(np.float64).tiny
        ax.loglog(h, np.maximum(self.remainder_plus, tiny), "o-", ms=3, label="r(+h)")
        ax.loglog(h, np.maximum(self.remainder_minus, tiny), "s--", ms=3, label="r(-h)")
        ax.loglog(h, np.maximum(self.floor, tiny), ":", color="gray", label="roundoff floor")
        top = max(np.max(self.remainder_plus), np.max(self.remainder_minus), tiny)
        for p, style in ((1, "-."), (2, (0, (1, 3)))):
            ax.loglog(h, top * (h / h[0]) ** p, color="k", lw=0.8, ls=style, label=f"slope {p}")
        lo = max(min(np.min(self.floor[self.floor > 0], initial=top), top) / 10, tiny)
        ax.set_ylim(lo, top * 10)
        ax.set_xlabel("step h")
        ax.set_ylabel("remainder")
        ax.set_title(f"verdict: {self.verdict}")
        ax.legend(fontsize=7)
        return ax


@dataclasses.dataclass(frozen=True, repr=False)
class ManyReport:
    """Result of :func:`check_many`: one entry per point (leading axis).

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
    """Result of :func:`neighbourhood_error`.

    Attributes:
        radii: the radii tested (decreasing or as given).
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
            _, ax = plt.subplots(figsize=(5, 3.6))
        tiny = np.finfo(np.float64).tiny
        ax.loglog(self.radii, np.maximum(self.error, tiny), "o-", ms=3, label="max remainder")
        ax.loglog(self.radii, np.maximum(self.floor, tiny), ":", color="gray", label="floor")
        ax.set_xlabel("radius r")
        ax.set_ylabel("max |f(x) - f(x0) - J(x - x0)|")
        ax.legend(fontsize=7)
        return ax


# ---------------------------------------------------------------------------- helpers


def _fmt_order(p: float) -> str:
    return "" if not np.isfinite(p) else f"{p:.2f}"


def _fmt_slope(s: Any) -> str:
    leaves = jax.tree.leaves(s)
    if len(leaves) == 1 and np.ndim(leaves[0]) == 0:
        return f"{float(leaves[0]):.6g}"
    flat = np.concatenate([np.ravel(v) for v in leaves])
    if flat.size <= 4:
        return "[" + ", ".join(f"{v:.4g}" for v in flat) + "]"
    return f"array of {flat.size} values, norm {np.linalg.norm(flat):.4g}"


def _local_orders(steps: np.ndarray, r: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(r[:-1] / r[1:]) / np.log(steps[:-1] / steps[1:])


def _fit_order(h: np.ndarray, r: np.ndarray) -> float:
    if len(h) < 2:
        return float("nan")
    lh, lr = np.log(h), np.log(r)
    lh = lh - lh.mean()
    return float(np.sum(lh * (lr - lr.mean())) / np.sum(lh * lh))


def _random_direction(x0: Any, key: jax.Array) -> Any:
    leaves, treedef = jax.tree.flatten(x0)
    keys = jax.random.split(key, len(leaves))
    d = [jax.random.normal(k, jnp.shape(v), jnp.float32) for k, v in zip(keys, leaves)]
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in d))
    return jax.tree.unflatten(treedef, [(v / norm).astype(x.dtype) for v, x in zip(d, leaves)])


def _n_steps(eps: float) -> int:
    return round(-math.log2(eps)) + 2


def _default_steps(x0_norm: float, d_norm: float, eps: float) -> np.ndarray:
    """Halving grid from the problem's scale down to about eps/2 times it."""
    scale = max(x0_norm, 1.0) / d_norm
    top = 2.0 ** round(math.log2(scale))
    return top * 2.0 ** -np.arange(_n_steps(eps), dtype=np.float64)


def _validate_steps(steps: Any) -> np.ndarray:
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


def _validate_rtol(rtol: Any) -> float | None:
    if rtol is None:
        return None
    if not isinstance(rtol, (int, float, np.floating)) or isinstance(rtol, bool):
        raise TypeError(f"`rtol` must be a positive number, got {rtol!r}")
    if not (rtol > 0 and math.isfinite(rtol)):
        raise ValueError(f"`rtol` must be positive and finite, got {rtol}")
    return float(rtol)


def _prepare(f, x0, direction, key, name_x="x0", name_d="direction"):
    _validate.check_callable(f)
    x0 = _validate.float_tree(x0, name_x)
    if direction is None:
        if key is None:
            key = jax.random.PRNGKey(0)
        direction = _random_direction(x0, key)
    else:
        direction = _validate.float_tree(direction, name_d)
        _validate.check_same_structure(x0, direction, name_x, name_d)
        direction = jax.tree.map(lambda d, x: d.astype(x.dtype), direction, x0)
    d_norm = _util.tree_norm(direction)
    if not math.isfinite(d_norm):
        raise ValueError(f"`{name_d}` must be finite")
    if d_norm == 0.0:
        raise ValueError(f"`{name_d}` is zero; give a nonzero direction")
    return x0, direction, d_norm


def _sq(tree: Any, wide: Any) -> jax.Array:
    return sum(jnp.sum(jnp.square(v.astype(wide))) for v in jax.tree.leaves(tree))


# ------------------------------------------------------------------- the jitted core


def _remainder(f, lin, x0, f0, h, d, wide):
    """The remainder ``||f(x0 + h d) - f(x0) - J (h d)||`` with ``h d`` taken as represented
    (``fl(x0 + h d) - x0``), the magnitudes that set its roundoff floor, and
    ``f(x0 + h d) - f(x0)``; differences and norms in the wide dtype."""
    x = jax.tree.map(lambda a, b: a + h.astype(a.dtype) * b, x0, d)
    dx = jax.tree.map(lambda a, b: a - b, x, x0)  # the step as represented
    fx = f(x)
    ldx = lin(dx)
    df = jax.tree.map(lambda u, v: u.astype(wide) - v.astype(wide), fx, f0)
    rem = jax.tree.map(lambda a, b: a - b.astype(wide), df, ldx)
    mag = jnp.sqrt(_sq(fx, wide)) + jnp.sqrt(_sq(f0, wide)) + jnp.sqrt(_sq(ldx, wide))
    return jnp.sqrt(_sq(rem, wide)), mag, df


def _core(f: Callable, x0: Any, d: Any, steps: jax.Array):
    """Both sides of the whole grid in one vmapped evaluation."""
    wide = _util.widest_float()
    f0, lin = jax.linearize(f, x0)
    jd = lin(d)
    hs = jnp.concatenate([steps, -steps])
    r, mag, df = jax.vmap(lambda h: _remainder(f, lin, x0, f0, h, d, wide))(hs)
    f0w = jax.tree.map(lambda v: v.astype(wide), f0)
    jdw = jax.tree.map(lambda v: v.astype(wide), jd)
    return r, mag, df, f0w, jdw


_core_jit = jax.jit(_core, static_argnums=0)
_many_jit = jax.jit(jax.vmap(_core, in_axes=(None, 0, 0, 0)), static_argnums=0)


# ---------------------------------------------------------------------- the diagnosis


def _select_slope(steps, side_df, floor, sign):
    """One-sided slope estimate D(h) = sign (f(x0 ± h d) - f(x0)) / h at the step that
    balances truncation (change between consecutive steps) and noise (floor / h)."""
    leaves, treedef = jax.tree.flatten(side_df)
    flat = np.concatenate([np.reshape(v, (len(steps), -1)) for v in leaves], axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        D = sign * flat / steps[:, None]
        change = np.linalg.norm(D[:-1] - D[1:], axis=1)
        noise = 2 * floor[:-1] / steps[:-1]
        err = change + noise
    err = np.where(np.isfinite(err), err, np.inf)
    i = int(np.argmin(err)) if np.any(np.isfinite(err)) else len(steps) - 1
    est = D[i]
    tol = 4 * err[i] if np.isfinite(err[i]) else np.inf
    out, start = [], 0
    for v in leaves:
        size = int(np.prod(np.shape(v)[1:], dtype=int))
        out.append(np.reshape(est[start : start + size], np.shape(v)[1:]))
        start += size
    return jax.tree.unflatten(treedef, out), est, tol


def _as_output(tree: Any) -> Any:
    # (+ 0.0 turns -0.0 into 0.0: a slope of "minus zero" is just zero)
    leaves = jax.tree.leaves(tree)
    if len(leaves) == 1 and np.ndim(leaves[0]) == 0:
        return float(leaves[0]) + 0.0
    return jax.tree.map(lambda v: np.asarray(v, np.float64) + 0.0, tree)


def _flat(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(tree)])


def _diagnose(steps, rp, rm, floor_p, floor_m, f0_norm, jd_norm, eps, finite_msg):
    """Verdict, reason and order from the remainders (see the module docstring)."""
    n = len(steps)
    r = np.maximum(rp, rm)
    floor = np.maximum(floor_p, floor_m)
    informative = r > _INFORMATIVE * floor
    # the flat run at the smallest steps
    n_flat = 0
    while n_flat < n and not informative[n - 1 - n_flat]:
        n_flat += 1
    h_max = steps[0]
    magnitude = f0_norm + h_max * jd_norm

    def kappa(i):
        """Bound on the relative curvature a smooth f could hide below the floor up to
        steps[i] (a smooth f with f'' h_max^2 / |f| = rho has remainder rho |f| h^2 / 2
        h_max^2). Remainders that are exactly zero over at least 3 steps are no noise:
        f is exactly affine on those floating-point points, whatever the precision."""
        if floor[i] == 0 or (n - i >= 3 and np.all(r[i:] == 0)):
            return 0.0
        if magnitude == 0:
            return math.inf
        return floor[i] / magnitude * (h_max / steps[i]) ** 2

    if n_flat == n:
        k = kappa(0)
        if k <= _KAPPA_FLAT:
            return (
                "linear",
                f"the remainders stay at roundoff level for every step up to h = {h_max:.3g}: "
                "f is affine along d near x0" + finite_msg,
                math.nan,
            )
        return (
            "inconclusive",
            "the remainders never rise above the roundoff floor, and in this precision the "
            "floor is too coarse to tell a linear function from a smooth one" + finite_msg,
            math.nan,
        )

    # the informative run just above the flat range
    b = n - 1 - n_flat
    a = b
    while a > 0 and informative[a - 1]:
        a -= 1
    idx = np.arange(a, b + 1)
    clean = idx[r[idx] > _CLEAN * floor[idx]]
    use = clean if len(clean) >= 3 else idx
    window = use[-_WINDOW:]
    if len(window) < 3:
        # Too few informative steps to fit an order. The rise is abrupt if even an h^2 law
        # from the lowest informative step would put the largest flat step clearly above
        # its floor.
        j = n - n_flat
        lo = idx[-1]
        rise = n_flat > 0 and r[lo] * (steps[j] / steps[lo]) ** 2 > _CLEAN * max(floor[j], r[j])
        bound = _KAPPA_ABRUPT if rise else _KAPPA_FLAT
        if n_flat >= 3 and kappa(j) <= bound:
            H = steps[j]
            return (
                "linear",
                f"the remainders stay at roundoff level for steps up to h = {H:.3g} and rise "
                f"abruptly beyond (a kink or jump further out)" + finite_msg,
                math.nan,
            )
        return (
            "inconclusive",
            f"only {len(window)} informative step(s) above the roundoff floor; "
            "too few to estimate an order" + finite_msg,
            math.nan,
        )
    p = _fit_order(steps[window], r[window])
    local = _local_orders(steps[window], r[window])
    # An abrupt rise: the power law seen above would predict clearly informative
    # remainders at the largest flat step, but the remainder there is at roundoff level.
    abrupt = False
    if n_flat > 0 and np.isfinite(p):
        j = n - n_flat  # largest flat step
        lo = window[-1]
        predicted = r[lo] * (steps[j] / steps[lo]) ** max(p, 0.0)
        abrupt = predicted > _CLEAN * max(floor[j], r[j])
    if abrupt:
        j = n - n_flat
        if n_flat >= 3 and kappa(j) <= _KAPPA_ABRUPT:
            return (
                "linear",
                f"the remainders stay at roundoff level for steps up to h = {steps[j]:.3g} "
                f"and rise abruptly beyond (no power law h^p reaches down to the floor): "
                f"f is affine along d near x0, with a kink or jump further out" + finite_msg,
                math.nan,
            )
        return (
            "inconclusive",
            f"the remainders are at roundoff level up to h = {steps[j]:.3g} and rise abruptly "
            "beyond, but in this precision the floor is too coarse to claim f is affine"
            + finite_msg,
            p,
        )
    spread = float(np.max(local) - np.min(local)) if len(local) else 0.0
    if spread > 1.0:
        return (
            "inconclusive",
            f"the local orders {np.round(local, 2).tolist()} are too scattered to fit one "
            "power law (noise?)" + finite_msg,
            p,
        )
    span = f"over h in [{steps[window[-1]]:.2g}, {steps[window[0]]:.2g}]"
    if p >= 1.6:
        return (
            "smooth",
            f"the remainder shrinks like h^{p:.2f} {span}: the derivative is right and the "
            "linearization holds" + finite_msg,
            p,
        )
    if 0.7 <= p <= 1.3:
        return "order1", f"the remainder shrinks like h^{p:.2f} {span}" + finite_msg, p
    if p <= 0.3:
        return (
            "discontinuous",
            f"the remainder does not shrink with h (order {p:.2f} {span}): f jumps at x0 "
            "along d" + finite_msg,
            p,
        )
    return (
        "inconclusive",
        f"order {p:.2f} {span} is none of 0, 1, 2 (f may be non-Lipschitz at x0, e.g. "
        "sqrt(|x|))" + finite_msg,
        p,
    )


def _report_from(steps, r, mag, df, f0, jd, eps, rtol, dtype_name) -> LinearizationReport:
    n = len(steps)
    steps = np.asarray(steps, np.float64)
    r = np.asarray(r, np.float64)
    mag = np.asarray(mag, np.float64)
    rp, rm = r[:n], r[n:]
    floor_p = _FLOOR_SAFETY * eps * mag[:n]
    floor_m = _FLOOR_SAFETY * eps * mag[n:]
    # Where the grid reaches the roundoff regime, the smallest steps show the actual noise,
    # which includes rounding inside f that the magnitudes alone do not see (cancellation).
    # It may raise the floor up to sqrt(eps) relative: a jump smaller than that is
    # indistinguishable from noise, a larger one stays visible.
    # The noise is read off the steps so small that truncation cannot show (below
    # 1e-2 sqrt(eps) times the largest step): its maximum there, over both sides.
    tiny = steps <= 1e-2 * math.sqrt(eps) * steps[0]
    if np.sum(tiny) >= 2:
        with np.errstate(invalid="ignore"):
            noise = np.max(np.concatenate([rp[tiny], rm[tiny]]))
            floor_p = np.maximum(floor_p, np.minimum(noise, math.sqrt(eps) * mag[:n]))
            floor_m = np.maximum(floor_m, np.minimum(noise, math.sqrt(eps) * mag[n:]))
    floor = np.maximum(floor_p, floor_m)
    f0_flat, jd_flat = _flat(f0), _flat(jd)
    f0_norm, jd_norm = float(np.linalg.norm(f0_flat)), float(np.linalg.norm(jd_flat))
    df_p = jax.tree.map(lambda v: np.asarray(v[:n], np.float64), df)
    df_m = jax.tree.map(lambda v: np.asarray(v[n:], np.float64), df)
    ad_slope = _as_output(jd)
    finite_f = np.isfinite(rp) & np.isfinite(rm)

    def report(verdict, reason, order, sp=None, sm=None, hull=False, radius=0.0):
        nan = jax.tree.map(lambda v: np.full(np.shape(v), np.nan), jd)
        return LinearizationReport(
            steps=steps,
            remainder_plus=rp,
            remainder_minus=rm,
            floor=floor,
            order=float(order),
            ad_slope=ad_slope,
            slope_plus=_as_output(sp if sp is not None else nan),
            slope_minus=_as_output(sm if sm is not None else nan),
            ad_in_hull=bool(hull),
            radius=float(radius),
            verdict=verdict,
            reason=reason,
            rtol=rtol,
            dtype=dtype_name,
        )

    if not (np.all(np.isfinite(f0_flat)) and np.all(np.isfinite(jd_flat))):
        what = "f(x0)" if not np.all(np.isfinite(f0_flat)) else "the derivative J(x0) d"
        return report("inconclusive", f"{what} is not finite", math.nan)
    finite_msg = ""
    keep = np.arange(n)
    if not np.all(finite_f):
        bad = np.flatnonzero(~finite_f)
        n_bad = len(bad)
        if np.array_equal(bad, np.arange(n_bad)) and n - n_bad >= 3:
            keep = np.arange(n_bad, n)
            finite_msg = f" (f is not finite at the {n_bad} largest step(s), which were left out)"
        else:
            return report(
                "inconclusive",
                f"f is not finite at {n_bad} of the {n} steps, including small ones",
                math.nan,
            )
    sp_tree, sp, tol_p = _select_slope(
        steps[keep], jax.tree.map(lambda v: v[keep], df_p), floor_p[keep], 1.0
    )
    sm_tree, sm, tol_m = _select_slope(
        steps[keep], jax.tree.map(lambda v: v[keep], df_m), floor_m[keep], -1.0
    )
    scale = np.abs(sp) + np.abs(sm) + np.abs(jd_flat)
    tol = tol_p + tol_m + 16 * eps * scale
    hull = bool(
        np.all(jd_flat >= np.minimum(sp, sm) - tol) and np.all(jd_flat <= np.maximum(sp, sm) + tol)
    )
    slopes_differ = bool(np.any(np.abs(sp - sm) > tol))
    # radius: relative remainder along +d within rtol (or below the floor) at every step
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (rp <= rtol * (f0_norm + steps * jd_norm)) | (rp <= _INFORMATIVE * floor_p)
    ok &= finite_f
    radius = 0.0
    for i in range(n - 1, -1, -1):
        if not ok[i]:
            break
        radius = steps[i]
    verdict, reason, order = _diagnose(
        steps[keep],
        rp[keep],
        rm[keep],
        floor_p[keep],
        floor_m[keep],
        f0_norm,
        jd_norm,
        eps,
        finite_msg,
    )
    if verdict == "order1":
        fs = f"one-sided slopes {_fmt_slope(sp_tree)} (along +d) and {_fmt_slope(sm_tree)}"
        if slopes_differ:
            verdict = "kink"
            reason = (
                f"{reason} and the {fs} (from -d) differ: f is not differentiable at x0 "
                f"along d; AD's slope {_fmt_slope(ad_slope)} is "
                + ("inside" if hull else "outside")
                + " their hull"
            )
        else:
            verdict = "wrong_derivative"
            reason = (
                f"{reason} although the {fs} (from -d) agree: f is differentiable along d "
                f"but AD returned {_fmt_slope(ad_slope)}"
            )
    return report(verdict, reason, order, sp_tree, sm_tree, hull, radius)


def _dtype_info(x0: Any, out: Any) -> tuple[float, str]:
    dts = [v.dtype for v in jax.tree.leaves(x0)] + [v.dtype for v in jax.tree.leaves(out)]
    eps = _util.eps_of(dts)
    low = max(dts, key=lambda d: float(jnp.finfo(d).eps))
    return eps, jnp.dtype(low).name


# ------------------------------------------------------------------------ public API


def check_linearization(
    f: Callable[[Any], Any],
    x0: Any,
    direction: Any = None,
    *,
    key: jax.Array | None = None,
    steps: Sequence[float] | np.ndarray | None = None,
    rtol: float | None = None,
    analyze_kinks: bool = True,
) -> LinearizationReport:
    r"""Checks the linearization property of ``f`` at ``x0`` along a direction.

    Evaluates :math:`r_\pm(h) = \lVert f(x_0 \pm h d) - f(x_0) \mp J(x_0)(h d)\rVert` on a
    grid of steps (one jitted, vmapped call, both sides at once), estimates the roundoff
    floor, fits the order of :math:`r \sim h^p` above it and returns a verdict:
    ``"smooth"`` (order 2: the derivative is right), ``"linear"`` (remainders at roundoff:
    ``f`` is affine near ``x0``, e.g. inside one linear region of a ReLU network),
    ``"kink"`` (order 1 and the one-sided slopes differ), ``"wrong_derivative"`` (order 1
    although the one-sided slopes agree: AD returned another value, as for
    ``relu(x) - relu(-x)`` at 0), ``"discontinuous"`` (order 0) or ``"inconclusive"``.

    Args:
        f: a JAX-traceable function of one argument returning a scalar, an array or a
            pytree of floating-point arrays (remainders use the Euclidean norm over all
            output leaves).
        x0: the point: a floating-point array or a pytree of them.
        direction: same structure as ``x0``, used as given (steps are in its units).
            Default: a random direction drawn from ``key``, of unit length over all leaves.
        key: PRNG key for the default direction (default ``jax.random.PRNGKey(0)``, so
            results are reproducible).
        steps: decreasing step sizes (at least 3). Default: halving from the problem's
            scale (``max(||x0||, 1) / ||d||``, rounded to a power of 2) down to about
            ``eps / 2`` times it, for the input's own dtype.
        rtol: relative tolerance for ``radius`` (default ``64 * eps`` of the working dtype).
        analyze_kinks: also read the program's jaxpr for the nearest nonsmooth sites and
            the first-order kink radius along ``d`` (see :func:`jaxrelu.find_kinks`).

    Returns:
        A :class:`LinearizationReport`.

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> jaxrelu.check_linearization(jaxrelu.relu, jnp.array(0.0), jnp.array(1.0)).verdict
        'kink'
        >>> rep = jaxrelu.check_linearization(jnp.sin, jnp.array(0.5, jnp.float32))
        >>> rep.verdict, round(rep.order)
        ('smooth', 2)
    """
    x0, d, d_norm = _prepare(f, x0, direction, key)
    out = _util.trace_output(f, x0)
    rtol = _validate_rtol(rtol)
    eps, dtype_name = _dtype_info(x0, out)
    if steps is None:
        steps = _default_steps(_util.tree_norm(x0), d_norm, eps)
    else:
        steps = _validate_steps(steps)
    if rtol is None:
        rtol = 64 * eps
    wide = _util.widest_float()
    with jax.default_matmul_precision("highest"):
        r, mag, df, f0, jd = _core_jit(f, x0, d, jnp.asarray(steps, wide))
    rep = _report_from(steps, r, mag, df, f0, jd, eps, rtol, dtype_name)
    if analyze_kinks:
        rep = _with_kinks(rep, f, x0, d)
    return rep


def _with_kinks(rep: LinearizationReport, f: Callable, x0: Any, d: Any) -> LinearizationReport:
    from .kinks import kink_sites

    try:
        sites = kink_sites(f, x0, d)
    except Exception:  # the analysis is a bonus: never let it break the check
        return rep
    radius = min((s.radius for s in sites), default=math.inf)
    known = [s for s in sites if s.kind != "unknown"]
    known.sort(
        key=lambda s: (-(s.ties > 0), s.min_margin if not math.isnan(s.min_margin) else 1e300)
    )
    sites = known[:3]
    reason = rep.reason
    if rep.verdict in ("kink", "wrong_derivative", "discontinuous") and sites:
        s = sites[0]
        where = f" in {s.activation}" if s.activation else ""
        reason = (
            f"{reason}. Nearest nonsmooth site: {s.primitive}{where} at {s.source} "
            f"({s.ties} element(s) exactly at the kink, margin {s.min_margin:.3g})"
        )
    return dataclasses.replace(rep, sites=tuple(sites), kink_radius=float(radius), reason=reason)


def check_many(
    f: Callable[[Any], Any],
    x0s: Any,
    directions: Any = None,
    *,
    key: jax.Array | None = None,
    steps: Sequence[float] | np.ndarray | None = None,
    rtol: float | None = None,
) -> ManyReport:
    """:func:`check_linearization` for a batch of points, in one jitted vmapped call.

    Args:
        f: as for :func:`check_linearization` (a function of one point).
        x0s: the points: every leaf has a leading axis of the same length.
        directions: same structure and shapes as ``x0s`` (one direction per point), or
            None for random unit directions (one per point, drawn from ``key``).
        key, steps, rtol: as for :func:`check_linearization`; default steps are chosen per
            point (same number of steps for all).

    Returns:
        A :class:`ManyReport` with per-point arrays and ``counts`` (verdict -> number).

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> xs = jnp.array([-1.0, 0.0, 2.0])
        >>> res = jaxrelu.check_many(jaxrelu.relu, xs, jnp.ones_like(xs))
        >>> res.verdict.tolist(), res.counts["kink"]
        (['linear', 'kink', 'linear'], 1)
    """
    _validate.check_callable(f)
    x0s = _validate.float_tree(x0s, "x0s")
    leaves = jax.tree.leaves(x0s)
    if any(jnp.ndim(v) == 0 for v in leaves):
        raise ValueError("every leaf of `x0s` needs a leading batch axis")
    n_pts = jnp.shape(leaves[0])[0]
    if any(jnp.shape(v)[0] != n_pts for v in leaves):
        raise ValueError("every leaf of `x0s` must have the same leading (batch) size")
    if n_pts == 0:
        raise ValueError("`x0s` holds no points")
    if directions is None:
        keys = jax.random.split(key if key is not None else jax.random.PRNGKey(0), n_pts)
        directions = jax.vmap(_random_direction)(x0s, keys)
    else:
        directions = _validate.float_tree(directions, "directions")
        _validate.check_same_structure(x0s, directions, "x0s", "directions")
        directions = jax.tree.map(lambda d, x: d.astype(x.dtype), directions, x0s)
    one = jax.tree.map(lambda v: v[0], x0s)
    out = _util.trace_output(f, one)
    rtol = _validate_rtol(rtol)
    eps, dtype_name = _dtype_info(one, out)
    rtol = 64 * eps if rtol is None else rtol
    sq = lambda t: np.sqrt(
        sum(
            np.sum(np.square(np.asarray(v, np.float64)).reshape(n_pts, -1), axis=1)
            for v in jax.tree.leaves(t)
        )
    )
    x_norms, d_norms = sq(x0s), sq(directions)
    if np.any(d_norms == 0) or not np.all(np.isfinite(d_norms)):
        bad = int(np.flatnonzero((d_norms == 0) | ~np.isfinite(d_norms))[0])
        raise ValueError(f"`directions` for point {bad} is zero or not finite")
    if steps is None:
        grid = np.stack([_default_steps(a, b, eps) for a, b in zip(x_norms, d_norms)])
    else:
        grid = np.broadcast_to(_validate_steps(steps), (n_pts, len(steps)))
    wide = _util.widest_float()
    with jax.default_matmul_precision("highest"):
        r, mag, df, f0, jd = _many_jit(f, x0s, directions, jnp.asarray(grid, wide))
    r, mag = np.asarray(r), np.asarray(mag)
    df = jax.tree.map(np.asarray, df)
    f0 = jax.tree.map(np.asarray, f0)
    jd = jax.tree.map(np.asarray, jd)
    reports = []
    for i in range(n_pts):
        take = lambda t, i=i: jax.tree.map(lambda v: v[i], t)
        reports.append(
            _report_from(grid[i], r[i], mag[i], take(df), take(f0), take(jd), eps, rtol, dtype_name)
        )
    verdict = np.array([rp.verdict for rp in reports])
    stack = lambda name: jax.tree.map(
        lambda *v: np.stack([np.asarray(u, np.float64) for u in v]),
        *[getattr(rp, name) for rp in reports],
    )
    counts = {v: int(np.sum(verdict == v)) for v in VERDICTS}
    return ManyReport(
        verdict=verdict,
        order=np.array([rp.order for rp in reports]),
        ad_slope=stack("ad_slope"),
        slope_plus=stack("slope_plus"),
        slope_minus=stack("slope_minus"),
        ad_in_hull=np.array([rp.ad_in_hull for rp in reports]),
        radius=np.array([rp.radius for rp in reports]),
        counts=counts,
        reports=tuple(reports),
    )


def _nbhd_core(f, x0, us, radii):
    wide = _util.widest_float()
    f0, lin = jax.linearize(f, x0)

    def at(rad, u):
        return _remainder(f, lin, x0, f0, rad, u, wide)[:2]

    over_dirs = jax.vmap(at, in_axes=(None, 0))
    return jax.vmap(over_dirs, in_axes=(0, None))(radii, us)


_nbhd_jit = jax.jit(_nbhd_core, static_argnums=0)


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
        x0: the centre (a floating-point array or pytree of them).
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
    _validate.check_callable(f)
    x0 = _validate.float_tree(x0, "x0")
    out = _util.trace_output(f, x0)
    try:
        rad = np.asarray(radii, np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`radii` must be a 1-D sequence of numbers, got {radii!r}") from err
    if rad.ndim != 1 or rad.size < 2:
        raise ValueError("`radii` must be 1-D with at least 2 radii")
    if not np.all(np.isfinite(rad)) or np.any(rad <= 0):
        raise ValueError("`radii` must be finite and positive")
    if not isinstance(n_directions, int) or isinstance(n_directions, bool) or n_directions < 1:
        raise ValueError(f"`n_directions` must be a positive integer, got {n_directions!r}")
    keys = jax.random.split(key if key is not None else jax.random.PRNGKey(0), n_directions)
    us = jax.vmap(lambda k: _random_direction(x0, k))(keys)
    with jax.default_matmul_precision("highest"):
        err, mag = _nbhd_jit(f, x0, us, jnp.asarray(rad, _util.widest_float()))
    err, mag = np.asarray(err, np.float64), np.asarray(mag, np.float64)
    eps, _ = _dtype_info(x0, out)
    worst = np.argmax(err, axis=1)
    error = err[np.arange(len(rad)), worst]
    floor = _FLOOR_SAFETY * eps * mag.max(axis=1)
    above = error > _CLEAN * floor
    order = _fit_order(rad[above], error[above]) if np.sum(above) >= 2 else math.nan
    return NeighbourhoodError(radii=rad, error=error, floor=floor, order=order)


def assert_linearization(
    f: Callable[[Any], Any],
    x0: Any,
    direction: Any = None,
    *,
    allow: Sequence[str] = ("smooth", "linear"),
    **kw: Any,
) -> LinearizationReport:
    """Raises ``AssertionError`` (whose message is the report's table) unless the verdict
    of :func:`check_linearization` is one of ``allow``. For users' test suites.

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
    if rep.verdict not in allow:
        raise AssertionError(f"verdict {rep.verdict!r} not in {tuple(allow)}\n{rep}")
    return rep
