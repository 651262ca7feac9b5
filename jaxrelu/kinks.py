r"""Kink analysis read from the jaxpr: where a program is nonsmooth, how close it is, and
how far one can move before any of its nonsmooth operations switches.

A program's nonsmooth operations (``max``, ``min``, ``abs``, ``clamp``, ``sort``,
``top_k``, ``reduce_max``, max pooling, ``cummax``, a ``select_n`` or ``cond`` driven by
float comparisons, an index computed from them, ``sign``, ``floor``, ``round``, ``rem``,
``argmax``, the eigen- and singular values of ``eigh``/``svd``, ...) each have a
*switching quantity* (ADOL-C's switching variable): ``a - b`` for ``max(a, b)``, ``x`` for
``abs(x)``, the gap to the runner-up for ``reduce_max``. The kink is where it is 0.
:func:`find_kinks` traces the program to a jaxpr and evaluates it with an interpreter
that carries, for every value, its one-sided directional derivative along a direction
(the lexicographic rules of :mod:`jaxrelu.lexicographic`: at a tie, ``relu`` passes
``max(0, ṁ)``, not AD's convention); at each nonsmooth site it records how many elements
sit exactly at the kink (``ties``) and the smallest distance to it (``min_margin``).
:func:`kink_radius` uses the directional derivatives: an element whose switching quantity
``m`` moves toward 0 at rate ``ṁ`` crosses it at ``t = |m| / |ṁ|``, exactly for
piecewise-linear programs, including points that sit on a kink.

What is *not* a site: NaN tests (``x != x`` in ``isnan``, ``nan_to_num``), comparisons
with infinite constants, ``abs``/``sign`` of provably positive values (the sum of
exponentials in ``logsumexp``), selects between a value and its own stop-gradient copy
(``jnp.piecewise``'s routing), and nonsmooth operations whose values reach the output
only through ``stop_gradient`` *when the output does not depend on them* (the max shift
of ``logsumexp``/``softmax``: measured by a probe derivative; a straight-through
estimator's ``round`` does change the output and stays a site).

Everything runs as one jitted program per traced function and input shapes; compiled
programs are cached by the traced program, so a changed global never gives a stale
result (:func:`jaxrelu.clear_caches` empties the cache).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _table, _validate
from ._jaxpr import Analysis, analyse

__all__ = ["KinkSite", "count_ties", "find_kinks", "kink_radius", "kink_sites", "summary"]


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (immutability only)
class KinkSite:
    """One nonsmooth operation of a program, evaluated at a point.

    Attributes:
        primitive: the JAX primitive (``"max"``, ``"abs"``, ``"select_n"``, ``"sort"``,
            ``"reduce_max"``, ``"floor"``, ``"cond"``, ``"step"`` for a comparison turned
            into a number, ...).
        kind: ``"kink"`` (continuous, nonsmooth), ``"jump"`` (discontinuous) or
            ``"unknown"`` (a primitive the analysis does not know). A ``select_n`` or
            ``cond`` is a kink or a jump by whether its branches agree at the switch:
            a jump when their gap there, relative to ``|here| + |there|``, exceeds
            ``1e-3`` (or 32 ulps of the output's dtype, whichever is larger).
        activation: the jaxrelu or :mod:`jax.nn` activation the site sits in, else None.
        source: ``"file.py:LINE"`` of the user's line that produced it.
        size: number of elements evaluated (summed over loop iterations).
        ties: elements evaluated exactly at the kink.
        min_margin: smallest distance to the kink over the elements (the switching
            quantity, e.g. ``|a - b|`` for ``max(a, b)``); NaN for unknown primitives.
        radius: distance along the analysis direction at which one of its elements
            switches (``inf`` if none moves toward its kink; 0 for a jump that the
            direction crosses at once; NaN when no direction was given, as in
            :func:`find_kinks`).
    """

    primitive: str
    kind: str
    activation: str | None
    source: str
    size: int
    ties: int
    min_margin: float
    radius: float = float("nan")

    def __str__(self) -> str:
        act = f" in {self.activation}" if self.activation else ""
        if self.kind == "unknown":
            where = f"{self.primitive}{act} at {self.source}"
            return f"{where}: not analysed (its switches are not located)"
        return (
            f"{self.primitive}{act} at {self.source} ({self.kind}): {self.ties} of "
            f"{self.size} element(s) at the kink, min margin {self.min_margin:.3g}"
        )


def summary(sites: Sequence[KinkSite]) -> str:
    """A table of sites: primitive, kind, activation, source, size, ties, min margin.

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> sites = jaxrelu.find_kinks(lambda x: jaxrelu.relu(x - 1.0).sum(), jnp.ones(3))
        >>> table = jaxrelu.summary(sites).splitlines()
        >>> table[0].split()
        ['primitive', 'kind', 'activation', 'source', 'size', 'ties', 'min', 'margin']
        >>> table[1].split()[:3], table[1].split()[-3:]
        (['max', 'kink', 'relu'], ['3', '3', '0'])
    """
    if not sites:
        return "no nonsmooth sites"
    head = ("primitive", "kind", "activation", "source", "size", "ties", "min margin")
    rows = [
        (
            s.primitive,
            s.kind,
            s.activation or _table.MISSING,
            s.source,
            str(s.size),
            str(s.ties),
            "nan" if math.isnan(s.min_margin) else f"{s.min_margin:.3g}",
        )
        for s in sites
    ]
    return _table.render(head, rows, right=(4, 5, 6))


# ---------------------------------------------------------------------- validation


def validated_args(f: Any, args: tuple, name: str = "args") -> tuple:
    """Checks ``f`` and the point(s) of :func:`find_kinks`; arrays out."""
    _validate.check_callable(f)
    if not args:
        raise TypeError("give the point(s) at which to evaluate `f`, e.g. find_kinks(f, x)")
    for i, leaf in enumerate(jax.tree.leaves(args)):
        if isinstance(leaf, (str, bytes)) or leaf is None:
            raise TypeError(f"`{name}` leaf {i} must be an array, got {leaf!r}")
    args = jax.tree.map(jnp.asarray, args)
    if not any(jnp.issubdtype(v.dtype, jnp.inexact) for v in jax.tree.leaves(args)):
        raise TypeError(f"`{name}` must contain at least one floating-point array")
    return args


def validated_direction(f: Any, x0: Any, direction: Any) -> tuple[Any, Any]:
    """Checks ``f``, a finite non-empty point ``x0`` and a finite nonzero ``direction``
    of the same structure (cast to ``x0``'s dtypes)."""
    _validate.check_callable(f)
    x0 = _validate.float_tree(x0, "x0")
    _validate.finite_tree(x0, "x0")
    if direction is None:
        raise TypeError("`direction` is required")
    direction = _validate.float_tree(direction, "direction")
    _validate.check_same_structure(x0, direction, "x0", "direction")
    _validate.finite_tree(direction, "direction")
    if all(not np.any(np.asarray(v)) for v in jax.tree.leaves(direction)):
        raise ValueError("`direction` is zero; give a nonzero direction")
    cast = jax.tree.map(lambda d, x: d.astype(x.dtype), direction, x0)
    # checked again in x0's dtypes: a float32 direction of 1e-9 is 0 in float16, 1e5 inf
    try:
        _validate.finite_tree(cast, "direction")
    except ValueError:
        raise ValueError(
            "`direction` overflows in x0's dtype; scale it down (t is in its units)"
        ) from None
    lost = any(
        np.any((np.asarray(d) != 0) & (np.asarray(c) == 0))
        for d, c in zip(jax.tree.leaves(direction), jax.tree.leaves(cast))
    )
    if lost:
        raise ValueError(
            "`direction` has elements that underflow to zero in x0's dtype; scale it up, "
            "or set them to 0"
        )
    return x0, cast


# ------------------------------------------------------------------------ sites


def sites_of(res: Analysis, with_radius: bool) -> list[KinkSite]:
    """The :class:`KinkSite` list of an analysis: select/cond kinds decided from their jump
    evidence, cancelling stop-gradient shifts left out."""
    out = []
    for m, s in zip(res.meta, res.stats):
        if m.shift and res.shifts_cancel:
            continue
        size, ties, margin, radius, evidence, leaving = (np.asarray(v) for v in s)
        kind = m.kind
        if kind == "select":
            kind = "jump" if float(evidence) > m.threshold else "kink"
        elif kind in ("undecided", "transverse"):  # listed by undecided_ties and
            # transverse_jumps, where they matter
            continue
        elif kind == "cut":  # a branch cut (atan2): listed where an element is on its
            # side, or where the direction reaches it
            reached = with_radius and np.isfinite(float(radius))
            if not np.isfinite(float(margin)) and int(ties) == 0 and not reached:
                continue
            kind = "jump"
        elif kind == "point":  # x == c: f changes only if the cases differ there
            if float(evidence) <= m.threshold:
                continue
            kind = "jump"
        r = float(radius)
        if kind == "jump" and int(leaving) > 0:
            r = 0.0  # the direction leaves a tied jump at once
        out.append(
            KinkSite(
                primitive=m.primitive,
                kind=kind,
                activation=m.activation,
                source=m.source or "unknown",
                size=int(size),
                ties=int(ties),
                min_margin=float(margin),
                radius=r if with_radius else math.nan,
            )
        )
    return out


def tied_guards(res: Analysis) -> list[str]:
    """Sources of the equality tests (``where(x == c, ...)``) that hold at the point with
    cases that agree there, which :func:`sites_of` leaves out (``f`` does not change at
    them). AD follows the ``==`` case, which holds only on the equality set; the
    derivative is that of the case taken around it (``where(x == 0, 0, sin(x))`` at 0:
    AD's 0, the derivative 1)."""
    out = []
    for m, s in zip(res.meta, res.stats):
        if m.kind == "point" and int(np.asarray(s[1])) > 0:
            # (a point whose cases differ is also a tied jump, whose reason and refusal
            # replace the guard's: another field read here changes nothing seen)
            if float(np.asarray(s[4])) <= m.threshold:  # pragma: no mutate
                out.append(m.source or "unknown")
    return out


def undecided_ties(res: Analysis) -> list[str]:
    """``"primitive at source"`` of the ties the lexicographic rules cannot resolve: a
    comparison tied at the point whose switching quantity does not move to first order
    along any direction of the analysis (``x * x > 0`` at 0: derivatives do not tell
    which side holds around the point; the rules take the tie's own side, which may be
    wrong, as ``where(x * x > 0, x, 0)`` is ``x``), or a ``while_loop`` test tied at the
    point that the directions leave (the loop runs the point's own iterations, not the
    perturbed point's)."""
    return [
        f"{m.primitive} at {m.source or 'unknown'}"
        for m, s in zip(res.meta, res.stats)
        if m.kind == "undecided" and int(np.asarray(s[1])) > 0
    ]


def transverse_jumps(res: Analysis) -> list[tuple[str, str]]:
    """``(primitive, source)`` of the sites tied at the point whose cases agree there but
    part along the switching surface (recorded, as internal sites of kind
    ``"transverse"``, by analyses with two lexicographic columns or more): a select,
    ``cond``, sorted payload or switching index. ``where(v[1] > 0, 2 * v[0], v[0])`` at 0
    jumps across ``v[1] = 0`` wherever ``v[0] != 0``, so it is no kink, although its
    cases agree at the point."""
    return [
        (m.primitive, m.source or "unknown")
        for m, s in zip(res.meta, res.stats)
        if m.kind == "transverse" and int(np.asarray(s[1])) > 0
    ]


def find_kinks(f: Callable[..., Any], *args: Any) -> list[KinkSite]:
    """Every nonsmooth site of ``f`` evaluated at ``args``.

    Traces ``f`` to a jaxpr, recursing into every sub-jaxpr (``jit``, ``custom_jvp`` /
    ``custom_vjp`` calls, ``cond``, ``while``, ``scan``, ``remat``) and evaluates it in one
    jitted pass (forward plus one directional derivative along a fixed random direction,
    used to tell continuous switches from jumps). Returns one :class:`KinkSite` per
    nonsmooth operation, in program order; a primitive the analysis does not know is
    listed with kind ``"unknown"``; a smooth program gives ``[]``.

    Args:
        f: a JAX-traceable function.
        *args: its arguments (arrays or pytrees of arrays).

    Returns:
        A list of :class:`KinkSite`.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrelu
        >>> f = lambda x: jnp.sum(jax.nn.relu(x - 1.0))
        >>> sites = jaxrelu.find_kinks(f, jnp.array([1.0, 2.0, 1.0]))
        >>> [(s.primitive, s.activation, s.ties) for s in sites]
        [('max', 'relu', 2)]
    """
    args = validated_args(f, args)
    return sites_of(analyse(f, args, n_ld=1, random=True, values=True), with_radius=False)


def count_ties(f: Callable[..., Any], *args: Any) -> int:
    """Total number of elements evaluated exactly at a kink: the sum of
    :func:`find_kinks`' ties (one pass, with the same fixed random direction, which tells a
    value that cannot move off its switch, as the imaginary part of ``x + 0j`` on a branch
    cut, from one at a tie).

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> jaxrelu.count_ties(lambda x: jaxrelu.relu(x).sum(), jnp.array([0.0, 1.0, 0.0]))
        2
    """
    args = validated_args(f, args)
    # (with_radius only adds radii: the ties are the same either way)
    sites = sites_of(analyse(f, args, n_ld=1, random=True), with_radius=False)  # pragma: no mutate
    return int(sum(s.ties for s in sites))


def kink_sites(f: Callable[[Any], Any], x0: Any, direction: Any) -> list[KinkSite]:
    """The nonsmooth sites of ``f`` at ``x0``, each with its ``radius`` along
    ``direction`` (see :func:`kink_radius`).

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> f = lambda x: jaxrelu.relu(jaxrelu.relu(x) - 0.5)
        >>> [(s.ties, s.radius) for s in jaxrelu.kink_sites(f, jnp.array(0.0), jnp.array(1.0))]
        [(1, inf), (0, 0.5)]
    """
    x0, d = validated_direction(f, x0, direction)
    leaves = [np.asarray(v) for v in jax.tree.leaves(d)]
    # the direction scaled by a power of 2 (exact) to a largest element in [1, 2): its
    # tangents, carried in x0's dtype, would underflow in float16 for a small one (1e-5
    # along relu(1e-3 x - 0.5): radius inf) and overflow for a large one (1e3 along
    # relu(100 x)); not where that would flush a small element of it to 0
    mags = [np.abs(v.astype(np.float64)) for v in leaves]
    # (d is nonzero, checked above: the initial value is never the maximum)
    top = max(float(np.max(m, initial=0.0)) for m in mags)  # pragma: no mutate
    scale = 2.0 ** -math.floor(math.log2(top))
    scaled = [(v.astype(np.float64) * scale).astype(v.dtype) for v in leaves]
    if any(np.any((v != 0) & (w == 0)) for v, w in zip(leaves, scaled)):
        scale, scaled = 1.0, leaves
    blocks = [jnp.asarray(w)[None] for w in scaled]
    sites = sites_of(analyse(f, (x0,), blocks, n_ld=1, values=True), with_radius=True)
    return [dataclasses.replace(s, radius=s.radius * scale) for s in sites]


def kink_radius(f: Callable[[Any], Any], x0: Any, direction: Any) -> float:
    r"""The first ``t > 0`` at which a nonsmooth site of ``f`` switches along ``x0 + t d``.

    Every site's switching quantity :math:`m` is propagated with its one-sided directional
    derivative :math:`\dot m` along ``d``; an element moving toward its kink
    (:math:`m \dot m < 0`) crosses it at :math:`t = |m| / |\dot m|` to first order, and the
    result is the minimum over all elements and sites. For piecewise-linear programs (ReLU
    networks and the like) this is exact: ``f`` is affine on ``[x0, x0 + t d]``, also when
    ``x0`` sits on kinks (tied elements are followed into the piece ``d`` enters). Where a
    switching quantity is not piecewise linear in ``t`` it is a first-order estimate, which
    may be later than the true crossing or missing: ``relu(x**2 - 1)`` along 1 gives 0.75
    from 0.5 (the kink is 0.5 away) and ``inf`` from 0 (the slope of ``x**2 - 1`` is 0
    there; the kink is 1 away). A jump
    that ``d`` crosses at once (``floor`` at an integer, going down) gives 0. ``inf`` where
    nothing crosses. A discrete reduction over more than 16 elements switches at the first
    crossing of any of them: exact for a count (``jnp.sum(x > c)``), no later than the
    truth for ``any``, ``max`` or ``argmax`` (a crossing may leave them unchanged). Sites
    that the analysis does not locate (``find_kinks`` lists them as ``"unknown"``:
    primitives it does not know, the signs of ``eigh``'s eigenvectors and ``svd``'s
    singular vectors, ``qr``'s factors, a ``cummax``, ``cummin`` or ``cumprod`` of a
    switching value over more than 16 elements) have no radius and do not count: check
    ``find_kinks`` before trusting the radius. A cumulative count (``jnp.cumsum(x > c)``)
    switches at the nearest crossing that changes it among the elements each result
    sums, and ``lu``
    where two pivot candidates tie (a first-order estimate, as for eigenvalue gaps).
    ``sqrt`` and ``cbrt`` switch where their operand is 0 (a norm at 0): a first-order
    estimate from the operand, half the true distance for a norm shrinking to 0 along the
    line.

    Args:
        f: a JAX-traceable function of one argument.
        x0: the point (floating-point array or pytree of them, finite).
        direction: same structure as ``x0``, finite and nonzero; ``t`` is in its units.

    Returns:
        The radius as a Python float.

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> jaxrelu.kink_radius(lambda x: jaxrelu.relu(x - 1.0), jnp.array(0.25), jnp.array(1.0))
        0.75
    """
    return float(min((s.radius for s in kink_sites(f, x0, direction)), default=math.inf))
