r"""ReLU-family activations whose derivative at the kink is a chosen, traceable value.

Every function here is a :func:`jax.custom_jvp` whose forward value is bit-for-bit the
value of its :mod:`jax.nn` / :mod:`jax.numpy` counterpart. The derivative used *exactly*
at a kink is the second parameter (``kink_grad``, ``kink_grads`` or ``tie``). It may be a
Python number or a JAX array broadcastable to the input; it is traced (changing it never
recompiles, and it can be vmapped over), and it is never differentiated (its tangent is
zero). The defaults reproduce what JAX does today, so replacing ``jax.nn.relu`` by
``jaxrelu.relu`` changes nothing until a kink value is asked for. Where ``leaky_relu``,
``abs`` or ``hard_tanh`` gets JAX's own kink value as a Python or NumPy number (their
defaults), it is JAX's expression itself, without the rule: the same values, one comparison
fewer per element in the backward pass. A traced kink value always goes through the rule.

Tangents are built with :func:`jax.lax.select`, so they keep the input's dtype and weak
type and no ``NaN * 0`` can appear.

Reference: D. Bertoin, J. Bolte, S. Gerchinovitz, E. Pauwels, "Numerical influence of
ReLU'(0) on backpropagation", NeurIPS 2021 (arXiv:2106.12915).
"""

from __future__ import annotations

import dataclasses
import numbers
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

__all__ = [
    "REGISTRY",
    "ActivationInfo",
    "Kink",
    "abs",
    "hard_tanh",
    "leaky_relu",
    "maximum",
    "minimum",
    "relu",
    "relu6",
]

_builtin_abs = abs

try:  # keeps weak types when casting; private but stable for years, with a public fallback
    from jax._src.lax.lax import _convert_element_type as _cet

    def _cast(value: Any, dtype: Any, weak: bool) -> jax.Array:
        return _cet(value, dtype, weak_type=weak)

except ImportError:  # pragma: no cover - depends on the installed JAX

    def _cast(value: Any, dtype: Any, weak: bool) -> jax.Array:
        return lax.convert_element_type(value, dtype)


# --------------------------------------------------------------------------- helpers


def _weak(x: Any) -> bool:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return True
    aval = getattr(x, "aval", x)
    return bool(getattr(aval, "weak_type", False))


def _as_input(x: Any, name: str = "x") -> jax.Array:
    """Converts ``x`` to a JAX array, refusing non-numeric input with a clear error."""
    if isinstance(x, jax.Array):
        dtype = x.dtype
    else:
        if isinstance(x, (str, bytes)) or x is None:
            raise TypeError(f"`{name}` must be a real numeric array, got {type(x).__name__}")
        try:
            x = jnp.asarray(x)
        except TypeError as err:
            raise TypeError(
                f"`{name}` must be a real numeric array, got {type(x).__name__}"
            ) from err
        dtype = x.dtype
    if jnp.issubdtype(dtype, jnp.complexfloating) or dtype == jnp.bool_:
        raise TypeError(f"`{name}` must be real (integer or floating point), got dtype {dtype}")
    if not jnp.issubdtype(dtype, jnp.number):
        raise TypeError(f"`{name}` must be a real numeric array, got dtype {dtype}")
    return x


def _as_kink(value: Any, name: str, shape: tuple[int, ...]) -> jax.Array:
    """Validates a kink value: real, numeric, broadcastable *to* ``shape``."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be a real number or array, got {type(value).__name__}")
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be real, got {type(value).__name__}")
    if not isinstance(value, (numbers.Real, jax.Array, np.ndarray, np.generic)):
        try:
            value = np.asarray(value)
        except Exception as err:  # pragma: no cover - exotic objects
            raise TypeError(f"`{name}` must be a real number or array, got {value!r}") from err
    dtype = jnp.result_type(value)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"`{name}` must be a real number or array, got dtype {dtype}")
    vshape = tuple(np.shape(value))
    try:
        out = np.broadcast_shapes(vshape, shape)
    except ValueError:
        out = None
    if out != tuple(shape):
        raise ValueError(
            f"`{name}` of shape {vshape} does not broadcast to the input's shape {tuple(shape)}"
        )
    if isinstance(value, numbers.Real):
        return value  # type: ignore[return-value]
    return jnp.asarray(value)


def _kink_pair(value: Any, name: str, shape: tuple[int, ...]) -> tuple[Any, Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(
            f"`{name}` must be a pair (lower, upper) of numbers or arrays, got {value!r}"
        )
    return _as_kink(value[0], f"{name}[0]", shape), _as_kink(value[1], f"{name}[1]", shape)


def _coef(s: Any, g: jax.Array) -> jax.Array:
    """``s`` cast to the tangent's dtype and weak type, broadcast to its shape."""
    if isinstance(s, SymbolicZero):  # pragma: no cover - kink values are primals
        s = 0.0
    # The kink value is a constant of the rule: never differentiated, at any order.
    s = lax.stop_gradient(s)
    return jnp.broadcast_to(_cast(s, g.dtype, _weak(g)), g.shape)


def _scaled(g: jax.Array, s: jax.Array) -> jax.Array:
    """``s * g`` where ``s != 0`` and an exact ``+0`` where ``s == 0`` (as JAX writes it)."""
    return lax.select(s != 0, g * s, lax.full_like(g, 0))


def _is_constant(value: Any, c: float) -> bool:
    """Whether a kink value is a Python or NumPy number (not an array, not traced) equal
    to ``c``."""
    return (
        isinstance(value, (numbers.Real, np.generic))
        and not isinstance(value, (bool, np.bool_))
        and float(value) == c
    )


def _is_float0(g: Any) -> bool:
    return getattr(g, "dtype", None) == jax.dtypes.float0


def _named_jit(fn: Callable, name: str) -> Callable:
    fn.__name__ = name
    fn.__qualname__ = name
    return jax.jit(fn)


# ------------------------------------------------------------------------- primals
# The forward passes are the exact expressions jax.nn / jax.numpy use, jitted under the
# activation's name so that the kink analysis can attribute sites to them.

_relu_fwd = _named_jit(lambda x: jnp.maximum(x, 0), "jaxrelu_relu")
_relu6_fwd = _named_jit(lambda x: jnp.minimum(jnp.maximum(x, 0), 6.0), "jaxrelu_relu6")
_hard_tanh_fwd = _named_jit(
    lambda x: jnp.where(x > 1, 1, jnp.where(x < -1, -1, x)), "jaxrelu_hard_tanh"
)
_leaky_fwd = _named_jit(lambda x, a: jnp.where(x >= 0, x, a * x), "jaxrelu_leaky_relu")
_abs_fwd = _named_jit(lambda x: jnp.abs(x), "jaxrelu_abs")
_max_fwd = _named_jit(lambda x, y: jnp.maximum(x, y), "jaxrelu_maximum")
_min_fwd = _named_jit(lambda x, y: jnp.minimum(x, y), "jaxrelu_minimum")


# ------------------------------------------------------------------ custom_jvp cores


@jax.custom_jvp
def _relu(x, s):
    return _relu_fwd(x)


@_relu.defjvp
def _relu_jvp(primals, tangents):
    x, s = primals
    g, _ = tangents
    ans = _relu_fwd(x)
    if _is_float0(g):
        return ans, g
    zero = lax.full_like(g, 0)
    return ans, lax.select(x > 0, g, lax.select(x == 0, _scaled(g, _coef(s, g)), zero))


@jax.custom_jvp
def _relu6(x, lo, hi):
    return _relu6_fwd(x)


@_relu6.defjvp
def _relu6_jvp(primals, tangents):
    x, lo, hi = primals
    g = tangents[0]
    ans = _relu6_fwd(x)
    if _is_float0(g):
        return ans, g
    zero = lax.full_like(g, 0)
    at_kink = lax.select(x == 0, _scaled(g, _coef(lo, g)), _scaled(g, _coef(hi, g)))
    t = lax.select((x > 0) & (x < 6), g, lax.select((x == 0) | (x == 6), at_kink, zero))
    return ans, t


@jax.custom_jvp
def _hard_tanh(x, lo, hi):
    return _hard_tanh_fwd(x)


@_hard_tanh.defjvp
def _hard_tanh_jvp(primals, tangents):
    x, lo, hi = primals
    g = tangents[0]
    ans = _hard_tanh_fwd(x)
    if _is_float0(g):
        return ans, g
    zero = lax.full_like(g, 0)
    # NaN falls through to the identity branch, as in jax.nn.hard_tanh.
    inner = lax.select(
        x == -1, _scaled(g, _coef(lo, g)), lax.select(x == 1, _scaled(g, _coef(hi, g)), g)
    )
    return ans, lax.select((x > 1) | (x < -1), zero, inner)


@jax.custom_jvp
def _leaky_relu(x, s, a):
    return _leaky_fwd(x, a)


def _leaky_relu_jvp(primals, tangents):
    x, s, a = primals
    g, _, ga = tangents
    ans = _leaky_fwd(x, a)
    if isinstance(g, SymbolicZero) or _is_float0(g):
        t = jnp.zeros(ans.shape, ans.dtype)
    else:
        # the slope is differentiable (as in jax.nn.leaky_relu: d2/dx da = 1 where x < 0);
        # only the kink value is a constant of the rule
        slope = jnp.broadcast_to(_cast(a, g.dtype, _weak(g)), g.shape)
        t = lax.select(x > 0, g, lax.select(x == 0, _scaled(g, _coef(s, g)), g * slope))
    if not isinstance(ga, SymbolicZero):
        ga = jnp.broadcast_to(ga.astype(ans.dtype), ans.shape)
        # JAX's branch for the slope's tangent: x * da unless x >= 0 (NaN included)
        t = t + lax.select(x >= 0, jnp.zeros_like(ga), x * ga)
    return ans, t


_leaky_relu.defjvp(_leaky_relu_jvp, symbolic_zeros=True)


@jax.custom_jvp
def _abs(x, s):
    return _abs_fwd(x)


@_abs.defjvp
def _abs_jvp(primals, tangents):
    x, s = primals
    g, _ = tangents
    ans = _abs_fwd(x)
    if _is_float0(g):
        return ans, g
    # Away from 0 this is JAX's own rule (select(x >= 0, g, -g)), NaN included.
    return ans, lax.select(x == 0, _scaled(g, _coef(s, g)), lax.select(x >= 0, g, -g))


def _pair_jvp(fwd):
    def rule(primals, tangents):
        x, y, tie = primals
        gx, gy, _ = tangents
        ans = fwd(x, y)
        out = None
        if not isinstance(gx, SymbolicZero) and not _is_float0(gx):
            tx = _coef(tie, gx)
            cx = lax.select(x == ans, lax.select(y == ans, tx, jnp.ones_like(tx)), 0 * tx)
            out = gx * cx
        if not isinstance(gy, SymbolicZero) and not _is_float0(gy):
            ty = 1 - _coef(tie, gy)
            cy = lax.select(y == ans, lax.select(x == ans, ty, jnp.ones_like(ty)), 0 * ty)
            out = gy * cy if out is None else out + gy * cy
        if out is None:
            out = jnp.zeros(ans.shape, ans.dtype)
        return ans, out

    return rule


@jax.custom_jvp
def _maximum(x, y, tie):
    return _max_fwd(x, y)


@jax.custom_jvp
def _minimum(x, y, tie):
    return _min_fwd(x, y)


_maximum.defjvp(_pair_jvp(_max_fwd), symbolic_zeros=True)
_minimum.defjvp(_pair_jvp(_min_fwd), symbolic_zeros=True)


def _promote_pair(x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    x = _as_input(x, "x")
    y = _as_input(y, "y")
    dtype = jnp.result_type(x, y)
    weak = _weak(x) and _weak(y)
    x = _cast(x, dtype, weak)
    y = _cast(y, dtype, weak)
    return tuple(jnp.broadcast_arrays(x, y))  # type: ignore[return-value]


# ----------------------------------------------------------------------- public API


def relu(x: ArrayLike, kink_grad: ArrayLike = 0.0) -> jax.Array:
    r"""Rectified linear unit with a chosen derivative at 0.

    .. math::
        \mathrm{relu}(x) = \max(x, 0), \qquad
        \mathrm{relu}'(x) = \begin{cases} 1 & x > 0 \\ s & x = 0 \\ 0 & x < 0 \end{cases}

    where :math:`s` is ``kink_grad``. The Clarke subdifferential at 0 is :math:`[0, 1]`:
    any :math:`s` in it keeps the derivative a valid subgradient (values outside are
    allowed, for experiments). The forward value is bit-for-bit :func:`jax.nn.relu`, and
    the default :math:`s = 0` is JAX's choice (Bertoin et al., NeurIPS 2021).

    Args:
        x: input array.
        kink_grad: derivative used where ``x == 0``; a number or an array broadcastable to
            ``x``. Traced, never differentiated.

    Returns:
        ``max(x, 0)``, with the dtype of ``x``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrelu
        >>> jaxrelu.relu(jnp.array([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.0, 2.0]
        >>> float(jax.grad(jaxrelu.relu)(0.0)), float(jax.grad(jaxrelu.relu)(0.0, 1.0))
        (0.0, 1.0)
        >>> jax.vmap(jax.grad(jaxrelu.relu), in_axes=(None, 0))(0.0, jnp.array([0.0, 0.5])).tolist()
        [0.0, 0.5]
    """
    x = _as_input(x)
    return _relu(x, _as_kink(kink_grad, "kink_grad", jnp.shape(x)))


def leaky_relu(
    x: ArrayLike, kink_grad: ArrayLike = 1.0, negative_slope: ArrayLike = 1e-2
) -> jax.Array:
    r"""Leaky ReLU with a chosen derivative at 0.

    .. math::
        \mathrm{leaky\_relu}(x) = \begin{cases} x & x \ge 0 \\ \alpha x & x < 0 \end{cases},
        \qquad \text{derivative } s \text{ at } x = 0,

    with :math:`\alpha` = ``negative_slope`` and :math:`s` = ``kink_grad``. The Clarke
    subdifferential at 0 is :math:`[\min(\alpha, 1), \max(\alpha, 1)]`. The default
    :math:`s = 1` is what :func:`jax.nn.leaky_relu` gives (its ``x >= 0`` branch). Note the
    argument order: the kink value is second, ``negative_slope`` third (a keyword is
    clearest). ``negative_slope`` is cast to the dtype of ``x`` and is differentiable.

    Args:
        x: input array.
        kink_grad: derivative used where ``x == 0``; number or array broadcastable to ``x``.
        negative_slope: slope :math:`\alpha` for ``x < 0``.

    Returns:
        The activation, with the dtype of ``x``.

    Example:
        >>> import jax, jaxrelu
        >>> float(jax.grad(jaxrelu.leaky_relu)(0.0))
        1.0
        >>> float(jax.grad(lambda x: jaxrelu.leaky_relu(x, kink_grad=0.01))(0.0))
        0.01
    """
    x = _as_input(x)
    s = _as_kink(kink_grad, "kink_grad", jnp.shape(x))
    a = _as_kink(negative_slope, "negative_slope", jnp.shape(x))
    if jnp.issubdtype(x.dtype, jnp.inexact):
        a = _cast(a, x.dtype, _weak(x) and _weak(a))
        if _is_constant(kink_grad, 1.0):
            # JAX's own convention at 0: JAX's own expression and derivative (the general
            # rule's extra comparison per element cost 3-10% in a memory-bound backward)
            return _leaky_fwd(x, a)
    return _leaky_relu(x, s, a)


def abs(x: ArrayLike, kink_grad: ArrayLike = 1.0) -> jax.Array:
    r"""Absolute value with a chosen derivative at 0.

    .. math::
        |x|, \qquad \frac{d|x|}{dx} = \operatorname{sign}(x) \text{ for } x \ne 0,
        \quad s \text{ at } x = 0.

    The Clarke subdifferential at 0 is :math:`[-1, 1]`. The default :math:`s = 1` is what
    :func:`jax.numpy.abs` gives today (PyTorch gives 0).

    Args:
        x: input array.
        kink_grad: derivative used where ``x == 0``; number or array broadcastable to ``x``.

    Returns:
        ``|x|``, with the dtype of ``x``.

    Example:
        >>> import jax, jaxrelu
        >>> float(jax.grad(jaxrelu.abs)(0.0)), float(jax.grad(jaxrelu.abs)(0.0, 0.0))
        (1.0, 0.0)
    """
    x = _as_input(x)
    s = _as_kink(kink_grad, "kink_grad", jnp.shape(x))
    if _is_constant(kink_grad, 1.0):  # JAX's own convention: its expression (see leaky_relu)
        return _abs_fwd(x)
    return _abs(x, s)


def relu6(x: ArrayLike, kink_grads: Sequence[ArrayLike] = (0.0, 0.0)) -> jax.Array:
    r"""ReLU capped at 6, with chosen derivatives at its two kinks.

    .. math::
        \mathrm{relu6}(x) = \min(\max(x, 0), 6), \qquad
        \text{derivative } s_0 \text{ at } 0,\ s_6 \text{ at } 6,

    with ``kink_grads = (s_0, s_6)``. Clarke subdifferentials: :math:`[0, 1]` at both
    kinks. The default ``(0, 0)`` is what :func:`jax.nn.relu6` gives.

    Args:
        x: input array.
        kink_grads: ``(lower, upper)``: derivatives used where ``x == 0`` and ``x == 6``.

    Returns:
        The activation, with the dtype of ``x``.

    Example:
        >>> import jax, jaxrelu
        >>> [float(jax.grad(jaxrelu.relu6)(v, (0.5, 1.0))) for v in (0.0, 3.0, 6.0)]
        [0.5, 1.0, 1.0]
    """
    x = _as_input(x)
    lo, hi = _kink_pair(kink_grads, "kink_grads", jnp.shape(x))
    return _relu6(x, lo, hi)


def hard_tanh(x: ArrayLike, kink_grads: Sequence[ArrayLike] = (1.0, 1.0)) -> jax.Array:
    r"""Hard tanh with chosen derivatives at its two kinks.

    .. math::
        \mathrm{hard\_tanh}(x) = \max(-1, \min(x, 1)), \qquad
        \text{derivative } s_{-1} \text{ at } -1,\ s_{1} \text{ at } 1,

    with ``kink_grads = (s_{-1}, s_1)``. Clarke subdifferentials: :math:`[0, 1]` at both
    kinks. The default ``(1, 1)`` is what :func:`jax.nn.hard_tanh` gives.

    Args:
        x: input array.
        kink_grads: ``(lower, upper)``: derivatives used where ``x == -1`` and ``x == 1``.

    Returns:
        The activation, with the dtype of ``x``.

    Example:
        >>> import jax, jaxrelu
        >>> dht = jax.grad(jaxrelu.hard_tanh)
        >>> float(dht(1.0)), float(dht(1.0, (1.0, 0.0)))
        (1.0, 0.0)
    """
    x = _as_input(x)
    lo, hi = _kink_pair(kink_grads, "kink_grads", jnp.shape(x))
    pair = tuple(kink_grads) if isinstance(kink_grads, (tuple, list)) else ()
    if len(pair) == 2 and all(_is_constant(v, 1.0) for v in pair):  # JAX's own convention
        return _hard_tanh_fwd(x)
    return _hard_tanh(x, lo, hi)


def maximum(x: ArrayLike, y: ArrayLike, tie: ArrayLike = 0.5) -> jax.Array:
    r"""Elementwise maximum with a chosen split of the gradient at ties.

    .. math::
        \max(x, y), \qquad \frac{\partial}{\partial x} = \begin{cases}
        1 & x > y \\ \tau & x = y \\ 0 & x < y \end{cases}, \qquad
        \frac{\partial}{\partial y} = 1 - \frac{\partial}{\partial x} \text{ at ties},

    with :math:`\tau` = ``tie``. The Clarke subdifferential of :math:`\max` at a tie is
    the segment :math:`\{(\tau, 1-\tau) : \tau \in [0, 1]\}`. The default :math:`\tau = 0.5`
    is what :func:`jax.numpy.maximum` gives. Inputs are promoted and broadcast as by
    :func:`jax.numpy.maximum`.

    Args:
        x, y: input arrays.
        tie: share of the gradient given to ``x`` where ``x == y``.

    Returns:
        ``jnp.maximum(x, y)``.

    Example:
        >>> import jax, jaxrelu
        >>> dmax = jax.grad(jaxrelu.maximum)
        >>> float(dmax(0.0, 0.0)), float(dmax(0.0, 0.0, 1.0)), float(dmax(0.0, 0.0, 0.0))
        (0.5, 1.0, 0.0)
    """
    x, y = _promote_pair(x, y)
    return _maximum(x, y, _as_kink(tie, "tie", jnp.shape(x)))


def minimum(x: ArrayLike, y: ArrayLike, tie: ArrayLike = 0.5) -> jax.Array:
    r"""Elementwise minimum with a chosen split of the gradient at ties.

    .. math::
        \min(x, y), \qquad \frac{\partial}{\partial x} = \begin{cases}
        1 & x < y \\ \tau & x = y \\ 0 & x > y \end{cases},

    with :math:`\tau` = ``tie`` (``y`` receives :math:`1 - \tau` at ties). The Clarke
    subdifferential at a tie is :math:`\{(\tau, 1 - \tau) : \tau \in [0, 1]\}`; the default
    :math:`\tau = 0.5` is what :func:`jax.numpy.minimum` gives.

    Args:
        x, y: input arrays.
        tie: share of the gradient given to ``x`` where ``x == y``.

    Returns:
        ``jnp.minimum(x, y)``.

    Example:
        >>> import jax, jaxrelu
        >>> float(jax.grad(jaxrelu.minimum)(1.0, 1.0, 0.0))
        0.0
    """
    x, y = _promote_pair(x, y)
    return _minimum(x, y, _as_kink(tie, "tie", jnp.shape(x)))


# ------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class Kink:
    """One kink of an activation.

    Attributes:
        at: where the kink is, in the activation's switching variable (``x``, or ``x - y``
            for ``maximum``/``minimum``).
        left: the slope just below ``at`` (the one-sided derivative from the left).
        right: the slope just above ``at``.
        default: the derivative the activation uses at ``at`` by default (JAX's choice).
        param: the argument that sets it (``"kink_grad"``, ``"kink_grads[0]"``, ...).
    """

    at: float
    left: float
    right: float
    default: float
    param: str

    @property
    def clarke(self) -> tuple[float, float]:
        """The Clarke subdifferential interval ``[min(left, right), max(left, right)]``."""
        return (min(self.left, self.right), max(self.left, self.right))


@dataclasses.dataclass(frozen=True)
class ActivationInfo:
    """Registry entry: an activation, its kinks and its JAX counterpart.

    Attributes:
        name: public name in :mod:`jaxrelu`.
        fn: the jaxrelu function.
        jax_fn: the :mod:`jax.nn` / :mod:`jax.numpy` function it replaces.
        variable: the switching variable in which the kinks are located.
        kinks: the kinks, in increasing order of location.
        arity: number of array inputs (1, or 2 for ``maximum``/``minimum``).
    """

    name: str
    fn: Callable[..., jax.Array]
    jax_fn: Callable[..., jax.Array]
    variable: str
    kinks: tuple[Kink, ...]
    arity: int = 1

    def with_kink_values(self, values: Sequence[float]) -> Callable[..., jax.Array]:
        """Returns ``fn`` with its kink parameter fixed to ``values`` (one per kink)."""
        if len(values) != len(self.kinks):
            raise ValueError(f"{self.name} has {len(self.kinks)} kink(s), got {len(values)}")
        if self.name in ("relu6", "hard_tanh"):
            pair = (values[0], values[1])
            return lambda *a: self.fn(*a, pair)
        return lambda *a: self.fn(*a, values[0])


REGISTRY: Mapping[str, ActivationInfo] = types.MappingProxyType(
    {
        "relu": ActivationInfo(
            "relu", relu, jax.nn.relu, "x", (Kink(0.0, 0.0, 1.0, 0.0, "kink_grad"),)
        ),
        "leaky_relu": ActivationInfo(
            "leaky_relu",
            leaky_relu,
            jax.nn.leaky_relu,
            "x",
            (Kink(0.0, 0.01, 1.0, 1.0, "kink_grad"),),
        ),
        "abs": ActivationInfo("abs", abs, jnp.abs, "x", (Kink(0.0, -1.0, 1.0, 1.0, "kink_grad"),)),
        "relu6": ActivationInfo(
            "relu6",
            relu6,
            jax.nn.relu6,
            "x",
            (Kink(0.0, 0.0, 1.0, 0.0, "kink_grads[0]"), Kink(6.0, 1.0, 0.0, 0.0, "kink_grads[1]")),
        ),
        "hard_tanh": ActivationInfo(
            "hard_tanh",
            hard_tanh,
            jax.nn.hard_tanh,
            "x",
            (
                Kink(-1.0, 0.0, 1.0, 1.0, "kink_grads[0]"),
                Kink(1.0, 1.0, 0.0, 1.0, "kink_grads[1]"),
            ),
        ),
        "maximum": ActivationInfo(
            "maximum", maximum, jnp.maximum, "x - y", (Kink(0.0, 0.0, 1.0, 0.5, "tie"),), arity=2
        ),
        "minimum": ActivationInfo(
            "minimum", minimum, jnp.minimum, "x - y", (Kink(0.0, 1.0, 0.0, 0.5, "tie"),), arity=2
        ),
    }
)
"""Public table of jaxrelu's activations: name → :class:`ActivationInfo`.

The checker and the convention audit read it. For ``maximum``/``minimum`` slopes are
partial derivatives with respect to ``x``.
"""

del _builtin_abs
