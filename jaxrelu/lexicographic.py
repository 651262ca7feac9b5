r"""Lexicographic derivatives: a derivative that is right at kinks, for any JAX program.

Automatic differentiation applies a convention at kinks (``relu'(0) = 0``,
``max``'s 0.5 split), and a composition of conventions can be wrong where the function is
differentiable: ``relu(x) - relu(-x)`` is ``x``, yet ``jax.grad`` gives 0 at 0 (Kakade &
Lee 2018). Nesterov's lexicographic differentiation (2005) and Khan & Barton's
LD-derivatives (2013, 2015) give a derivative that is always valid for compositions of
smooth and piecewise-smooth elementals.

For a matrix of directions :math:`M = [m_1\ m_2\ \dots\ m_k]`, the LD-derivative
:math:`f'(x; M)` has one column per direction: the first is the one-sided directional
derivative :math:`f'(x; m_1)`, and each next column is the directional derivative of what
the previous ones left undecided. It is computed by a vector forward mode over the
program's jaxpr, one rule per primitive: with :math:`\mathrm{fsign}(u, U)` the sign of the
first nonzero among :math:`u, U_1, U_2, \dots`,

* ``abs``: :math:`\mathrm{fsign}(u, U) \cdot U`; ``relu``: :math:`U` if
  :math:`\mathrm{fsign}(u, U) > 0`, else 0;
* ``max(a, b)``: :math:`A` if :math:`\mathrm{fsign}(a - b, A - B) \ge 0`, else :math:`B`;
  likewise ``min``, ``clamp``, ``reduce_max``, pooling, ``sort``, ``top_k``;
* a ``where``/``select`` or ``cond`` on comparisons takes the branch valid at
  :math:`x + \varepsilon_1 m_1 + \varepsilon_2 m_2 + \dots` for
  :math:`\varepsilon_1 \gg \varepsilon_2 \gg \dots > 0` (``x == c`` is false there);
* smooth primitives: their JVP, applied to all columns in one batched call.

At a point where some nonsmooth operation is tied, ``custom_jvp`` functions
(``jax.nn.relu``, jaxrelu's activations) and ``custom_vjp`` functions are differentiated
through their primal definition: their custom rule *is* the convention being replaced.
Where nothing is tied the program is differentiable at the point and
:func:`directional_derivative`, :func:`ld_jvp` and :func:`ld_jacobian` return JAX's own
derivative (``jax.jvp``, ``jax.jacfwd``; custom rules included), bit for bit, as
:func:`certified_grad` returns ``jax.grad``'s; :func:`ld_grad` differentiates the
definition everywhere. The two agree unless a custom rule is wrong away from its kinks,
which is the checker's to find (:func:`jaxrelu.check_linearization` says
``wrong_derivative``).

For square nonsingular :math:`M`, the lexicographic Jacobian
:math:`J_L = f'(x; M)\, M^{-1}` equals the Jacobian wherever :math:`f` is differentiable,
and is an element of the Clarke generalized Jacobian everywhere else (for
piecewise-differentiable :math:`f`, a limiting Jacobian: the ordinary Jacobian at
:math:`x + \varepsilon m_1 + \varepsilon^2 m_2 + \dots` for small :math:`\varepsilon`).

Discontinuous programs (``floor``, a ``where`` whose branches differ at the switch) have
no derivative at their jumps; there the result is the derivative of the piece the
perturbed point lies in, and :func:`certified_grad` says the point is a jump.

References: Y. Nesterov, *Lexicographic differentiation of nonsmooth functions*, Math.
Program. 104 (2005); K. A. Khan, P. I. Barton, *A vector forward mode of automatic
differentiation for generalized derivative evaluation*, Optim. Methods Softw. 30 (2015).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from . import _util, _validate
from ._jaxpr import APPROXIMATE_AT_TIES, analyse
from ._jaxpr.driver import compile_cached, launch, traced
from .kinks import (
    KinkSite,
    sites_of,
    tied_guards,
    transverse_jumps,
    undecided_ties,
)

__all__ = [
    "Certificate",
    "UndecidedTieWarning",
    "certified_grad",
    "directional_derivative",
    "ld_grad",
    "ld_jacobian",
    "ld_jvp",
]


def _point(x: Any, name: str = "x") -> Any:
    _validate.concrete(x, name)
    x = _validate.float_tree(x, name)
    for i, leaf in enumerate(jax.tree.leaves(x)):
        if jnp.iscomplexobj(leaf):
            raise TypeError(
                f"`{name}` leaf {i} is complex; lexicographic derivatives need real inputs"
            )
    return x


def _size(x: Any) -> int:
    return int(sum(np.size(v) for v in jax.tree.leaves(x)))


def _blocks(x: Any, m: np.ndarray) -> list[Any]:
    """Splits the rows of ``m`` (n × k) over the leaves of ``x``: a tangent block
    ``(k, *leaf.shape)`` per leaf."""
    out, start = [], 0
    for leaf in jax.tree.leaves(x):
        n = int(np.size(leaf))
        rows = m[start : start + n]
        out.append(jnp.asarray(rows.T.reshape((m.shape[1], *np.shape(leaf))), leaf.dtype))
        start += n
    return out


def _directions(directions: Any, n: int, *, square: bool, name: str = "directions") -> np.ndarray:
    try:
        m = np.asarray(directions, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a real matrix, got {type(directions).__name__}") from err
    if m.ndim == 1 and not square:
        m = m[:, None]
    if m.ndim != 2 or m.shape[0] != n or m.shape[1] < 1:
        want = f"{n}×{n}" if square else f"{n}×k (k >= 1)"
        raise ValueError(
            f"`{name}` must be a {want} matrix whose columns are directions in the "
            f"flattened input (size {n}); got shape {m.shape}"
        )
    if not np.all(np.isfinite(m)):
        raise ValueError(f"`{name}` must be finite")
    if square and m.shape[1] != n:
        raise ValueError(
            f"`{name}` must be a square {n}×{n} matrix (ld_jvp takes fewer directions); "
            f"got shape {m.shape}"
        )
    if square and np.linalg.matrix_rank(m) < n:
        raise ValueError(f"`{name}` must be a nonsingular {n}×{n} matrix; this one is singular")
    if not square and not np.any(m[:, 0]):
        raise ValueError(f"the first column of `{name}` is zero; give a nonzero direction")
    return m


def _untied(f: Callable, args: tuple) -> Any:
    """The traced program when no nonsmooth site of ``f`` is tied at ``args`` (and every
    primitive is known), else None."""
    res = analyse(f, args, outputs=False)  # pragma: no mutate (outputs are not read here)
    if any(int(np.sum(s[1])) for s in res.stats) or any(m.kind == "unknown" for m in res.meta):
        return None
    return traced(f, args)


def _jax_derivative(tr: Any, args: tuple, kind: str, blocks: list | None = None) -> Any:
    """JAX's own derivative of the traced program, compiled once per program and shapes:
    ``jax.jacfwd`` (identity directions) or ``jax.vmap(jax.jvp)`` over the columns."""
    consts = list(tr.closed.consts)
    fn = lambda c, *a: jax.tree.unflatten(
        tr.out_tree, jaxpr_as_fun(ClosedJaxpr(tr.closed.jaxpr, list(c)))(*jax.tree.leaves(a))
    )
    if kind == "jacfwd":
        build = lambda: lambda c, a: jax.jacfwd(lambda x: fn(c, x))(a)
        example: tuple = (consts, args[0])
    else:

        def build() -> Callable:
            def push(c: list, a: Any, t: Any) -> Any:
                one = lambda col: jax.jvp(lambda x: fn(c, x), (a,), (col,))[1]
                return jax.vmap(one)(t)

            return push

        example = (consts, args[0], jax.tree.unflatten(jax.tree.structure(args[0]), blocks or []))
    # (the arguments' and the blocks' shapes; the blocks mirror the arguments, and the
    # trace's fingerprint holds the arguments too, so a key of the blocks alone reads alike)
    shapes = lambda v: (jnp.shape(v), str(jnp.result_type(v)))
    avals = str(jax.tree.map(shapes, example[1:]))  # pragma: no mutate
    key = ("lexicographic", kind, tr.fingerprint, tuple(map(id, tr.refs)), avals, _util.x64())
    return compile_cached(key, tr.refs, build, *example)(*example)


def _forward_or_none(tr: Any, args: tuple, kind: str, blocks: list | None = None) -> Any:
    """:func:`_jax_derivative`, or None where JAX has no forward mode for the program (a
    ``custom_vjp`` function): the interpreter's rules then give the same derivative (they
    differentiate its forward function)."""
    try:
        return _jax_derivative(tr, args, kind, blocks)
    except TypeError as err:
        if "custom_vjp" not in str(err):  # pragma: no cover - another failure: JAX's own
            raise
        return None


def _run(f: Callable, args: tuple, blocks: list, k: int) -> tuple[Any, Any]:
    """Output value and LD-derivative (output leaves with a trailing axis of k columns).

    Where no nonsmooth site is tied at the point, the program is differentiable there and
    its LD-derivative is JAX's own derivative along the columns (computed as JAX computes
    it); otherwise the interpreter's lexicographic rules."""
    tr = _untied(f, args)
    cols = None if tr is None else _forward_or_none(tr, args, "jvp", blocks)
    if cols is not None:
        value = f(*args)
        cols = jax.tree.map(lambda c: jnp.moveaxis(c, 0, -1), cols)
    else:
        res = analyse(f, args, blocks, n_ld=k)
        _warn_undecided(_unresolved(res), stacklevel=4)  # the caller of the public function
        value = jax.tree.unflatten(res.out_tree, [jnp.asarray(p) for p in res.out_p])
        cols = jax.tree.unflatten(
            res.out_tree,
            [
                jnp.zeros((*np.shape(p), k), np.asarray(p).dtype)
                if t is None
                else jnp.moveaxis(t, 0, -1)
                for p, t in zip(res.out_p, res.out_t)
            ],
        )
    _warn_not_a_number(value, cols, stacklevel=4)
    return value, cols


NOT_A_NUMBER = (
    "the derivative is not a number where f is finite: an operation is evaluated where "
    "its own derivative is infinite or undefined (sqrt or a power below 1 at 0, as in "
    "jnp.linalg.norm at 0), and first derivatives cannot give the one-sided one there"
)


def _warn_not_a_number(value: Any, cols: Any, stacklevel: int) -> None:
    """Warns where a derivative column is NaN at a finite output element (a NaN output has
    NaN derivatives as a matter of course): ``cols`` holds ``value``'s leaves with a
    trailing axis of columns."""
    bad = any(
        np.issubdtype(np.asarray(c).dtype, np.inexact)
        and np.any(np.isnan(np.asarray(c)) & np.isfinite(np.asarray(v))[..., None])
        for v, c in zip(jax.tree.leaves(value), jax.tree.leaves(cols))
    )
    if bad:
        _warn_nan(stacklevel)


def _warn_nan(stacklevel: int) -> None:
    warnings.warn(
        f"{NOT_A_NUMBER}: check_linearization measures f",
        UndecidedTieWarning,
        stacklevel=stacklevel + 1,
    )


def directional_derivative(f: Callable[[Any], Any], x: Any, d: Any) -> Any:
    r"""The one-sided directional derivative :math:`f'(x; d) = \lim_{t \downarrow 0}
    (f(x + t d) - f(x)) / t`, exact for piecewise-smooth programs.

    At a tie every nonsmooth operation takes the branch that holds for :math:`x + t d`,
    :math:`t > 0` (``relu`` passes :math:`\max(0, \dot m)`, ``abs`` :math:`|\dot m|`).
    Not exact where ``eigh`` or ``svd`` has a repeated value (there the result is JAX's
    JVP, one choice, as for the spectral norm at the identity: an
    :class:`UndecidedTieWarning` says so) or ``f`` uses a primitive :func:`find_kinks`
    lists as ``"unknown"`` (:func:`certified_grad` says so for a gradient). Where a tie
    cannot be resolved from first derivatives (``x * x > 0`` at 0, or a tied quantity
    whose derivative is NaN, as ``relu(norm(x))`` at 0) an :class:`UndecidedTieWarning` is
    emitted: the result may be wrong there. So is one where the result is NaN at a finite
    value of ``f`` (``jnp.linalg.norm`` at 0, whose one-sided derivative ``|d|`` first
    derivatives cannot give).

    Args:
        f: a JAX-traceable function of one argument.
        x: the point (floating-point array or pytree).
        d: the direction, same structure as ``x``.

    Returns:
        :math:`f'(x; d)`, with the structure of ``f``'s output.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrelu
        >>> float(jaxrelu.directional_derivative(jax.nn.relu, jnp.array(0.0), jnp.array(-1.0)))
        0.0
        >>> float(jaxrelu.directional_derivative(jnp.abs, jnp.array(0.0), jnp.array(-2.0)))
        2.0
    """
    _validate.check_callable(f)
    x = _point(x)
    d = _point(d, "d")
    _validate.check_same_structure(x, d, "x", "d")
    d = jax.tree.map(lambda u, v: u.astype(v.dtype), d, x)
    blocks = [jnp.asarray(v)[None] for v in jax.tree.leaves(d)]
    _, cols = _run(f, (x,), blocks, 1)
    # (one column: JAX clamps a static index 1 to 0)
    return jax.tree.map(lambda c: c[..., 0], cols)  # pragma: no mutate


def ld_jvp(f: Callable[[Any], Any], x: Any, directions: Any) -> tuple[Any, Any]:
    r"""Value and LD-derivative :math:`f'(x; M)` for a matrix of directions.

    Args:
        f: a JAX-traceable function of one argument.
        x: the point (floating-point array or pytree; ``n`` elements in all).
        directions: an ``n × k`` matrix :math:`M` whose columns are directions in the
            flattened input (leaves in ``jax.tree.leaves`` order, each raveled); each
            column resolves the ties the previous ones left.

    Returns:
        ``(f(x), L)`` where ``L`` has ``f``'s output structure with a trailing axis of
        ``k`` columns; ``L[..., 0]`` is :math:`f'(x; m_1)`.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrelu
        >>> y, L = jaxrelu.ld_jvp(lambda x: jnp.max(x), jnp.array([1.0, 1.0]), jnp.eye(2))
        >>> float(y), L.tolist()
        (1.0, [1.0, 0.0])
    """
    _validate.check_callable(f)
    x = _point(x)
    m = _directions(directions, _size(x), square=False)
    return _run(f, (x,), _blocks(x, m), m.shape[1])


def _unravel_columns(cols: Any, x: Any) -> Any:
    """Output leaves with a trailing axis of n columns → ``jax.jacfwd``'s structure."""
    x_leaves, x_def = jax.tree.flatten(x)

    def split(c: Any) -> Any:
        parts, start = [], 0
        lead = c.shape[:-1]
        for leaf in x_leaves:
            n = int(np.size(leaf))
            parts.append(c[..., start : start + n].reshape((*lead, *np.shape(leaf))))
            start += n
        return jax.tree.unflatten(x_def, parts)

    return jax.tree.map(split, cols)


def ld_jacobian(f: Callable[[Any], Any], x: Any, directions: Any = None) -> Any:
    r"""The lexicographic Jacobian :math:`f'(x; M)\, M^{-1}`.

    It is the Jacobian wherever ``f`` is differentiable and an element of the Clarke
    generalized Jacobian everywhere else (a limiting Jacobian for piecewise-differentiable
    ``f``).

    Args:
        f: a JAX-traceable function of one argument.
        x: the point (floating-point array or pytree, ``n`` elements in all).
        directions: a nonsingular ``n × n`` matrix :math:`M` whose columns are the
            directions; default the identity.

    Returns:
        The Jacobian with the structure :func:`jax.jacfwd` gives.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrelu
        >>> f = lambda x: jax.nn.relu(x) - jax.nn.relu(-x)  # = x
        >>> float(jax.jacfwd(f)(0.0)), float(jaxrelu.ld_jacobian(f, jnp.array(0.0)))
        (0.0, 1.0)
    """
    _validate.check_callable(f)
    x = _point(x)
    n = _size(x)
    if directions is None:
        tr = _untied(f, (x,))
        jac = None if tr is None else _forward_or_none(tr, (x,), "jacfwd")
        if jac is not None:  # differentiable here: jax.jacfwd itself, bit for bit
            return jac
        m = np.eye(n)
    else:
        m = _directions(directions, n, square=True)
    _, cols = _run(f, (x,), _blocks(x, m), n)
    if directions is not None:
        minv = np.linalg.inv(m)

        def back(c: Any) -> Any:
            rows = np.asarray(c, np.float64).reshape(-1, n)  # pragma: no mutate (any size < 0)
            return jnp.asarray(rows @ minv, c.dtype).reshape(c.shape)

        cols = jax.tree.map(back, cols)
    return _unravel_columns(cols, x)


def _argnums(argnums: Any, n_args: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or any(not isinstance(a, int) or isinstance(a, bool) for a in nums):
        raise TypeError(f"`argnums` must be an int or a tuple of ints, got {argnums!r}")
    for a in nums:
        if not -n_args <= a < n_args:
            raise ValueError(f"`argnums` {a} is out of range for {n_args} positional argument(s)")
    return tuple(a % n_args for a in nums)


class UndecidedTieWarning(RuntimeWarning):
    """A lexicographic derivative went through a comparison that is tied at the point and
    whose operands agree to first order along every direction (``x * x > 0`` at 0), or
    whose derivative is NaN there (``relu(sqrt(x * x) + x)`` at 0: ``sqrt``'s infinite
    slope times 0), or an ``eigh``/``svd`` with a repeated value (no lexicographic rule);
    also where the derivative itself is NaN at a finite value (``jnp.linalg.norm`` at 0):
    derivatives cannot tell which side holds around the point, so the result may be
    wrong (:func:`certified_grad` certifies nothing there; check it with
    :func:`check_linearization`, which measures ``f``)."""


BRANCH_CUTS = frozenset({"atan2", "log", "sqrt", "rsqrt"})
"""Primitives whose jump sites are branch cuts (see :func:`_moving_sites`)."""

UNDECIDED = (
    "a tie the lexicographic rules cannot resolve: a comparison whose operands agree to "
    "first order along every direction (as x * x > 0 at 0), a tied quantity whose "
    "derivative is not a number there (as sqrt(x * x) + x at 0), or a while_loop test "
    "that the direction leaves"
)


def _unresolved(res: Any, approx: bool = True) -> list[str]:
    """The undecided ties of an analysis, then the tied eigh/svd/lu sites (a repeated
    value, or tied pivot candidates, where the tangents are JAX's JVP, one choice, not the
    lexicographic derivative)."""
    what = {"lu": "tied pivot candidates"}
    tied = [
        f"{m.primitive} at {m.source or 'unknown'}, "
        f"{what.get(m.primitive, 'a repeated eigen- or singular value')} "
        "(no lexicographic rule: JAX's derivative, one choice)"
        for m, st in zip(res.meta, res.stats)
        if approx and m.primitive in APPROXIMATE_AT_TIES and int(np.asarray(st[1])) > 0
    ]
    return undecided_ties(res) + tied


def _warn_undecided(sources: list[str], stacklevel: int) -> None:
    if sources:
        warnings.warn(
            f"{UNDECIDED} ({sources[0]}): the result may be wrong (check_linearization measures f)",
            UndecidedTieWarning,
            stacklevel=stacklevel,
        )


class _LDGrad(NamedTuple):
    """:func:`_ld_grad_at`'s results."""

    grad: Any
    undecided: list[str]  # undecided ties (with ``approx``, tied eigh/svd sites too)
    row: np.ndarray  # the gradient as one row, on the host
    value: Any  # f's value
    transverse: list[tuple[str, str]]  # tied sites that part along their surface


def _identity_blocks(args: tuple, nums: tuple[int, ...], m: np.ndarray) -> list[Any]:
    """Per flat argument leaf, its rows of the direction matrix ``m`` (one row per
    selected input element, in order) as a tangent block, or None if not selected."""
    blocks, start = [], 0
    for i, a in enumerate(args):
        for leaf in jax.tree.leaves(a):
            if i in nums:
                k = int(np.size(leaf))
                blocks.append(_blocks(leaf, m[start : start + k])[0])
                start += k
            else:
                blocks.append(None)
    return blocks


def _transverse_reversed(f: Callable, args: tuple, nums: tuple[int, ...]) -> list[tuple[str, str]]:
    """:func:`transverse_jumps` with the identity's columns in reverse order (the same
    compiled analysis): a switching quantity nonsmooth at the point (``max(v0, v1) > 0``
    at 0) has the piece the first direction enters as its tangent, whose surface the
    cases may agree on while they part on another piece's (``v1 = 0, v0 < 0``); the other
    order enters another piece."""
    n = _size([args[i] for i in nums])
    res = analyse(f, args, _identity_blocks(args, nums, np.eye(n)[:, ::-1]), n_ld=n)
    return transverse_jumps(res)


def _ld_grad_at(f: Callable, args: tuple, nums: tuple[int, ...], approx: bool = False) -> _LDGrad:
    """The lexicographic gradient, the sources of its undecided ties (and, with
    ``approx``, of its tied eigh/svd sites), the gradient as one row (on the host), the
    value of ``f`` and the sources of its transverse jumps (:func:`transverse_jumps`)."""
    selected = [args[i] for i in nums]
    n = _size(selected)
    res = analyse(f, args, _identity_blocks(args, nums, np.eye(n)), n_ld=n)
    if len(res.out_p) != 1 or np.ndim(res.out_p[0]) != 0:
        raise TypeError("`f` must return a scalar (as for jax.grad)")
    if not jnp.issubdtype(np.asarray(res.out_p[0]).dtype, jnp.floating):
        raise TypeError("`f` must return a floating-point scalar (as for jax.grad)")
    t = res.out_t[0]
    row = np.zeros(n, np.asarray(res.out_p[0]).dtype) if t is None else np.asarray(t)
    grads = _unravel_columns(jnp.asarray(row), selected)
    return _LDGrad(
        (grads[0] if len(nums) == 1 else tuple(grads)),
        _unresolved(res, approx),
        row,
        res.out_p[0],
        transverse_jumps(res),
    )


def ld_grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    r"""A drop-in for :func:`jax.grad` that returns the lexicographic gradient
    (directions: the identity over the selected arguments, flattened).

    It equals ``jax.grad(f)`` wherever ``f`` is differentiable *and* AD's conventions do
    not interfere, and is right where they do: for ``relu(x) - relu(-x)`` at 0 it gives 1.
    Forward mode with one column per input element: cost grows with the input size.

    Args:
        f: a scalar-valued JAX-traceable function.
        argnums: which positional argument(s) to differentiate, as in :func:`jax.grad`.

    Returns:
        A function with ``f``'s signature returning the gradient (a tuple for a tuple
        ``argnums``).

    Example:
        >>> import jax, jax.numpy as jnp, jaxrelu
        >>> g = lambda x: jnp.maximum(jnp.minimum(x, 0.0), x)  # = x
        >>> float(jax.grad(g)(0.0)), float(jaxrelu.ld_grad(g)(jnp.array(0.0)))
        (0.75, 1.0)
    """
    _validate.check_callable(f)

    def grad_fn(*args: Any, **kwargs: Any) -> Any:
        if kwargs:  # passed through, not differentiated (as by jax.grad)
            return ld_grad(functools.partial(f, **kwargs), argnums)(*args)
        nums = _argnums(argnums, len(args))
        args = tuple(_point(a, f"args[{i}]") if i in nums else a for i, a in enumerate(args))
        g, undecided, row, value, _ = _ld_grad_at(f, args, nums, approx=True)
        _warn_undecided(undecided, stacklevel=3)
        if np.isnan(row).any() and np.isfinite(value):
            _warn_nan(stacklevel=2)
        return g

    return grad_fn


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (immutability only)
class Certificate:
    """How :func:`certified_grad` obtained its gradient.

    Attributes:
        method: ``"ad"`` (no nonsmooth site is tied at the point: ``jax.grad``'s result is
            the true gradient; or, uncertified, ``f``'s value is not finite, or some site
            is tied but the lexicographic gradient is not finite) or ``"lexicographic"``
            (some site is tied: the lexicographic gradient, an element of the Clarke
            subdifferential; an ``x == c`` guard holds at the point, where AD follows the
            guard's case; ``jax.grad`` is not finite while the forward lexicographic
            gradient is, as in the ``jnp.where`` trap; or reverse mode cannot run through
            ``f``, a ``lax.while_loop``).
        sites: the tied :class:`~jaxrelu.KinkSite` s (primitive, ``file:line``, ties).
        certified: False where no guarantee holds: ``f`` not finite at the point, a tied
            *jump* (``f`` is discontinuous there), a primitive the analysis does not know
            (``reduce_precision`` below the operand's precision, ``bitcast_convert_type``
            of a float: bit tricks, ``jnp.frexp``, and ``jnp.signbit``/``jnp.copysign``,
            which read the sign bit), a repeated eigen- or
            singular value (``eigh``/``svd`` have no lexicographic rule), or a gradient that
            is not finite (``sqrt(x**2)`` or ``norm(x)**2`` at 0; at a tie, a piece singular
            at the point, as ``jnp.sinc`` at 0, where ``jax.grad``'s gradient is returned),
            or a tie first-order information cannot resolve (:class:`UndecidedTieWarning`:
            ``x * x > 0`` at 0, a tied ``while_loop`` test).
        reason: one sentence. The gradient is that of the program as JAX differentiates
            it: ``stop_gradient`` has derivative 0 (the reason says so where ``f`` uses
            it), and away from ties a ``custom_jvp``/``custom_vjp`` rule is trusted.
    """

    method: str
    sites: tuple[KinkSite, ...]
    certified: bool = True  # pragma: no mutate (every construction passes it)
    reason: str = ""


def certified_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0
) -> Callable[..., tuple[Any, Certificate]]:
    """``jax.grad`` where it is provably right, the lexicographic gradient where it may not
    be, and a certificate saying which.

    One compiled program runs the kink analysis and ``jax.value_and_grad`` through the
    same evaluation of ``f``: if no nonsmooth site has an element exactly at its kink,
    ``f`` is differentiable there and ``jax.grad(f)``'s gradient is returned (the same
    operations, decided from three flags, without copying each site's statistics to the
    host; compiled within one program with the analysis, XLA may fuse and round them
    differently from ``jax.jit(jax.grad(f))``: up to an ulp or so in float32, as for
    ``jax.nn.gelu``); otherwise the lexicographic gradient (:func:`ld_grad`) is returned,
    with the tied sites.

    Args:
        f: a scalar-valued JAX-traceable function.
        argnums: as in :func:`jax.grad`.

    Returns:
        A function returning ``(gradient, Certificate)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrelu
        >>> f = lambda x: jnp.sum(jax.nn.relu(x) - jax.nn.relu(-x))
        >>> g, cert = jaxrelu.certified_grad(f)(jnp.array([0.0, 2.0]))
        >>> g.tolist(), cert.method, [s.ties for s in cert.sites]
        ([1.0, 1.0], 'lexicographic', [1, 1])
    """
    _validate.check_callable(f)

    def fn(*args: Any, **kwargs: Any) -> tuple[Any, Certificate]:
        if kwargs:  # passed through, not differentiated (as by jax.grad)
            return certified_grad(functools.partial(f, **kwargs), argnums)(*args)
        nums = _argnums(argnums, len(args))
        args = tuple(_point(a, f"args[{i}]") if i in nums else a for i, a in enumerate(args))
        leaves = [jax.tree.leaves(a) for a in args]
        offsets = np.cumsum([0] + [len(v) for v in leaves])
        flat_nums = tuple(j for i in nums for j in range(offsets[i], offsets[i + 1]))
        outputs = False  # pragma: no mutate (the outputs are not read here)
        try:
            run = launch(f, args, outputs=outputs, grad=flat_nums, key=("certified", nums))
        except ValueError as err:
            if "Reverse-mode differentiation does not work" not in str(err):
                raise  # pragma: no cover - another failure: JAX's own
            return _forward_only(f, args, nums)
        value, flat_grad = run.gradient()
        # (a tuple output already fails in the gradient, with JAX's "scalar" message)
        if jnp.ndim(value) != 0 or len(run.tr.out_tree.children()) > 1:  # pragma: no mutate
            raise TypeError("`f` must return a scalar (as for jax.grad)")

        def ad_gradient() -> Any:
            grads, k = [], 0
            for i in nums:
                n = len(leaves[i])
                tree = jax.tree.structure(args[i])
                grads.append(jax.tree.unflatten(tree, list(flat_grad[k : k + n])))
                k += n
            return grads[0] if len(nums) == 1 else tuple(grads)

        def ad(unknown: list[str], finite: bool) -> tuple[Any, Certificate]:
            g = ad_gradient()
            if not finite:
                return _not_finite(f, args, nums, g)
            if "convert_element_type" in unknown:
                moving = _moving_sites(f, args, nums)
                unknown = sorted({s.primitive for s in moving if s.kind == "unknown"})
            reason = "no nonsmooth site is at its kink: f is differentiable here"
            if unknown:
                reason = f"no known site is tied, but {', '.join(unknown)} is not analysed"
            return g, Certificate("ad", (), not unknown, reason + _stop_note(run.tr))

        tied_any, finite, value_ok = run.flags()  # one transfer: no statistics copied
        if not value_ok:
            reason = "f is not finite here (NaN or inf): nothing is certified"
            return ad_gradient(), Certificate("ad", (), False, reason)
        if not tied_any and finite:  # the common case
            # the unknown sites sites_of would list (it drops stop-gradient shifts here)
            meta = run.meta
            return ad(
                sorted({m.primitive for m in meta if m.kind == "unknown" and not m.shift}), True
            )

        def _tied_case(res: Any) -> tuple[Any, Certificate]:
            sites = sites_of(res, with_radius=False)  # pragma: no mutate
            unknown = sorted({s.primitive for s in sites if s.kind == "unknown"})
            # (the analysis ran ties-only: margins were not computed; a tied site's is 0)
            tied = tuple(dataclasses.replace(s, min_margin=0.0) for s in sites if s.ties > 0)
            guards = tied_guards(res)
            if not tied and not guards:
                return ad(unknown, res.grad_finite)
            # (the filter below keeps every site but a cut the point does not move off: a
            # wider trigger reads alike)
            cut = lambda s: s.primitive in BRANCH_CUTS and s.kind == "jump"  # pragma: no mutate
            if any(cut(s) for s in tied):
                kept = {(s.primitive, s.source) for s in _moving_sites(f, args, nums) if s.ties}
                tied = tuple(
                    s
                    for s in tied
                    if s.primitive not in BRANCH_CUTS or (s.primitive, s.source) in kept
                )
                if not tied and not guards:
                    return ad(unknown, res.grad_finite)
            g, undecided, _, _, transverse = _ld_grad_at(f, args, nums)
            # (one input element: the reversed identity is the identity, the same analysis
            # again; ``>=`` reads alike, at the cost of one more run)
            if not transverse and _size([args[i] for i in nums]) > 1:  # pragma: no mutate
                transverse = _transverse_reversed(f, args, nums)
            tied = _mark_transverse(tied, transverse)
            jumps = [s for s in tied if s.kind == "jump"]
            reason = f"{len(tied)} site(s) tied: the lexicographic gradient (a Clarke subgradient)"
            if guards:
                reason = (
                    f"an equality test holds at the point ({guards[0]}): jax.grad follows its "
                    "case, which holds only where the equality does; the lexicographic gradient "
                    "follows the case around it"
                    + (f"; {len(tied)} other site(s) tied" if tied else "")
                )
            # an equality test whose cases part along its surface (where(v[1] == 0, 2 v[0],
            # v[0]), or one that holds on a whole piece: relu(v[0]) == 0)
            parting = [src for src in guards if src in {s for _, s in transverse}]
            if parting:
                reason = (
                    f"an equality test holds at the point ({parting[0]}) and its cases part "
                    "along its surface: f may be discontinuous here; the gradient of the piece "
                    "the perturbed point lies in"
                )
            if jumps:
                reason = (
                    f"{len(jumps)} tied site(s) are jumps ({jumps[0].primitive} at "
                    f"{jumps[0].source}): f may be discontinuous here (unless the gap cancels "
                    "downstream, as in sign(x) * x); the gradient of the piece the perturbed "
                    "point lies in"
                )
            if not _finite(g):
                # a piece's formula singular at the point (sin(x)/x behind where(x == 0, ...)):
                # the lexicographic gradient evaluates it there; jax.grad's is the better guess
                reason += (
                    "; but it is not finite (a piece's formula may be singular at the point, as "
                    "in jnp.sinc at 0): jax.grad's gradient is returned instead, uncertified "
                    "(see check_linearization)"
                )
                return ad_gradient(), Certificate("ad", tied, False, reason)
            approx = sorted({s.primitive for s in tied if s.primitive in APPROXIMATE_AT_TIES})
            if approx:
                reason += (
                    f"; but {', '.join(approx)} has no lexicographic rule: at a repeated value "
                    "(or tied pivots) its derivative is JAX's, one choice that need not be a "
                    "Clarke subgradient"
                )
            if undecided:
                reason += f"; but {UNDECIDED} ({undecided[0]}; see check_linearization)"
            ok = not jumps and not parting and not unknown and not approx and not undecided
            return g, Certificate("lexicographic", tied, ok, reason + _stop_note(run.tr))

        res = run.collect()
        hidden = _hidden_jumps(res)
        return _with_hidden(_tied_case(res), hidden)

    return fn


def _mark_transverse(
    tied: tuple[KinkSite, ...], found: list[tuple[str, str]]
) -> tuple[KinkSite, ...]:
    """The tied sites, with those the lexicographic analysis found to part along their
    switching surface (:func:`transverse_jumps`) called jumps: their cases agree at the
    point, so the gradient's analysis (which has no tangents) took them for kinks."""
    return tuple(
        dataclasses.replace(s, kind="jump") if (s.primitive, s.source) in found else s for s in tied
    )


def _hidden_jumps(res: Any) -> list[KinkSite]:
    """Tied jumps whose values reach ``f`` only through ``stop_gradient`` (a straight-
    through quantizer ``x + stop_gradient(round(x) - x)`` at a half-integer): no site of
    the gradient, but ``f``'s value jumps there."""
    kept = sites_of(res, with_radius=False)
    every = sites_of(dataclasses.replace(res, shifts_cancel=False), with_radius=False)
    return [s for s in every if s not in kept and s.ties > 0 and s.kind == "jump"]


def _with_hidden(out: tuple[Any, Certificate], hidden: list[KinkSite]) -> tuple:
    g, cert = out
    if not hidden:
        return out
    s = hidden[0]
    said = cert.reason.replace(
        "no nonsmooth site is at its kink: f is differentiable here",
        "no nonsmooth site that the gradient goes through is at its kink",
    )
    reason = (
        f"{said}; but a tied jump reaches f through stop_gradient ({s.primitive} at "
        f"{s.source}): f's value jumps here, so no gradient is its derivative"
    )
    return g, dataclasses.replace(cert, certified=False, reason=reason)


STOP_NOTE = (
    "; f uses stop_gradient, whose derivative JAX defines as 0: this is the gradient of "
    "the program so defined (x * stop_gradient(x) gives x, a straight-through estimator "
    "its surrogate), not the derivative of f's values where stop_gradient's operand moves "
    "with the input (check_linearization measures the values)"
)


def _stop_note(tr: Any) -> str:
    return STOP_NOTE if tr.probe else ""


def _moving_sites(f: Callable, args: tuple, nums: tuple[int, ...]) -> list[KinkSite]:
    """The sites of ``f`` along a random direction of the differentiated arguments. The
    gradient's analysis has no tangents, so it cannot tell whether a cast below the
    inputs' precision or a branch cut moves with them (``X.astype(bfloat16)`` of the
    data, ``jnp.angle`` of a real number); in this analysis those that do not move are
    no sites."""
    rng = np.random.default_rng(0)  # pragma: no mutate (any fixed seed: a random line)
    blocks = []
    for i, a in enumerate(args):
        for leaf in jax.tree.leaves(a):
            move = i in nums and jnp.issubdtype(_util.dtype_of(leaf), jnp.inexact)
            # (one column is read: a block of more columns reads alike)
            shape = (1, *np.shape(leaf))  # pragma: no mutate
            blocks.append(
                jnp.asarray(rng.standard_normal(shape), _util.dtype_of(leaf)) if move else None
            )
    # (the callers read each site's primitive, source and ties: not its radius; one column)
    return sites_of(analyse(f, args, blocks, n_ld=1), with_radius=False)  # pragma: no mutate


def _forward_only(f: Callable, args: tuple, nums: tuple[int, ...]) -> tuple[Any, Certificate]:
    """:func:`certified_grad` for a program reverse mode cannot run through (a
    ``lax.while_loop``, whatever its trip count): the sites from a forward
    analysis, the forward lexicographic gradient (the derivative where nothing is tied)."""
    res = analyse(f, args)  # (a non-scalar f is refused by _ld_grad_at below)
    sites = sites_of(res, with_radius=False)
    tied = tuple(dataclasses.replace(s, min_margin=0.0) for s in sites if s.ties > 0)
    unknown = sorted({s.primitive for s in sites if s.kind == "unknown"})
    g, undecided, _, _, transverse = _ld_grad_at(f, args, nums)
    if not transverse and _size([args[i] for i in nums]) > 1 and tied:  # pragma: no mutate (cost)
        transverse = _transverse_reversed(f, args, nums)
    tied = _mark_transverse(tied, transverse)
    jumps = [s for s in tied if s.kind == "jump"]
    approx = sorted({s.primitive for s in tied if s.primitive in APPROXIMATE_AT_TIES})
    value_ok = bool(np.all(np.isfinite(np.asarray(res.out_p[0]))))
    reason = (
        "reverse mode does not run through f (a lax.while_loop): the forward "
        "lexicographic gradient, "
        + (f"{len(tied)} site(s) tied" if tied else "no site tied (the gradient)")
    )
    problems = [
        (not value_ok, "f is not finite here"),
        (not _finite(g), "the gradient is not finite"),
        (bool(jumps), f"{len(jumps)} tied site(s) are jumps"),
        (bool(unknown), f"{', '.join(unknown)} is not analysed"),
        (bool(approx), f"{', '.join(approx)} has no lexicographic rule"),
        (bool(undecided), f"{UNDECIDED} ({undecided[0] if undecided else ''})"),
    ]
    bad = [text for flag, text in problems if flag]
    if bad:
        reason += "; but " + "; ".join(bad)
    return g, Certificate("lexicographic", tied, not bad, reason)


def _finite(tree: Any) -> bool:
    return all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(tree))


def _not_finite(f: Callable, args: tuple, nums: tuple[int, ...], g_ad: Any):
    """No site is tied but ``jax.grad`` is NaN or infinite: a smooth primitive is
    evaluated where its derivative is not finite (``sqrt``, ``log``, a division at 0). If
    that happens only in branches and factors that do not affect ``f`` near the point (the
    ``jnp.where`` trap: reverse mode multiplies the untaken branch's infinite derivative by
    a zero cotangent), the forward lexicographic gradient follows the taken branches only
    and is finite: then it is the gradient. Otherwise ``f`` may be nondifferentiable there
    (``sqrt(x**2)`` at 0) or smooth with every derivative rule failing (``norm(x)**2`` at
    0): nothing is certified."""
    g, undecided, *_ = _ld_grad_at(f, args, nums)
    if _finite(g) and not undecided:
        reason = (
            "jax.grad is not finite (NaN/inf from a branch or factor that does not affect f "
            "here, e.g. the jnp.where trap); the forward lexicographic gradient follows the "
            "branches taken and is finite: the gradient"
        )
        return g, Certificate("lexicographic", (), True, reason)
    reason = (
        "the gradient is not finite: a primitive is evaluated where its derivative is "
        "infinite or undefined (sqrt, log, division at 0); f may be nondifferentiable here "
        "or smooth beyond what AD can tell: check it with check_linearization"
    )
    return g_ad, Certificate("ad", (), False, reason)
