"""Setting up a check, once for every entry point: validated point and direction, the
argument selection (``argnums``), the traced program, the mode of differentiation and the
working precision."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._jaxpr.driver import Traced, traced
from .._jaxpr.passes import piecewise_linear
from .grid import norms

__all__ = ["MODES", "Problem", "random_direction", "setup"]

MODES = ("auto", "fwd", "rev")


@dataclasses.dataclass(frozen=True)
class Problem:
    """A validated check.

    Attributes:
        fn: ``fn(x, fixed)``: the function of the perturbed arguments ``x`` (the others,
            ``fixed``, held at their values); ``user_fn`` the user's ``f`` and ``nums`` the
            selected argument numbers (None: ``f(x0)``), which key the trace cache.
        x0, fixed: the point (perturbed part, and the rest); with a leading batch axis for
            :func:`~jaxrelu.check_many`.
        direction: like ``x0``.
        traced: the traced program of ``fn`` at one point (``closed``, ``out_tree``).
        mode: ``"fwd"`` or ``"rev"``: how the derivative is obtained.
        mode_note: why ``"auto"`` chose it (empty otherwise).
        cotangent: for ``"rev"``, the unit cotangent ``w`` (flat list of output leaves).
        eps: machine epsilon of the lowest precision inside the program.
        dtype_name: that precision's name.
        piecewise_linear: the program is piecewise linear in ``x`` (see
            :func:`jaxrelu._jaxpr.passes.piecewise_linear`).
        batched: points along a leading axis.
    """

    fn: Callable
    user_fn: Callable
    nums: Any
    x0: Any
    fixed: Any
    direction: Any
    traced: Traced
    mode: str
    mode_note: str
    cotangent: Any
    eps: float
    dtype_name: str
    piecewise_linear: bool
    batched: bool = False

    @property
    def closed(self) -> Any:
        return self.traced.closed

    @property
    def out_tree(self) -> Any:
        return self.traced.out_tree

    def point(self, i: int | None = None) -> tuple[Any, Any, Any]:
        """``(x0, fixed, direction)``, of point ``i`` when batched."""
        if i is None:
            return self.x0, self.fixed, self.direction
        take = lambda t: jax.tree.map(lambda v: v[i], t)
        return take(self.x0), take(self.fixed), take(self.direction)


def random_direction(x0: Any, key: jax.Array) -> Any:
    """A random direction of unit length over all leaves, in ``x0``'s dtypes."""
    leaves, treedef = jax.tree.flatten(x0)
    keys = jax.random.split(key, len(leaves))
    d = [jax.random.normal(k, jnp.shape(v), jnp.float32) for k, v in zip(keys, leaves)]
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in d))
    return jax.tree.unflatten(treedef, [(v / norm).astype(x.dtype) for v, x in zip(d, leaves)])


def _select(f: Callable, x0: Any, argnums: Any, batched: bool) -> tuple[Callable, Any, Any, Any]:
    """``(fn(x, fixed), x, fixed, nums)`` for ``argnums`` (None: ``f(x0)``)."""
    if argnums is None:
        return (lambda x, fixed: f(x)), x0, (), None
    if not isinstance(x0, (tuple, list)):
        raise TypeError(
            "with `argnums`, `x0` must be the tuple of all positional arguments of `f`, "
            f"got {type(x0).__name__}"
        )
    n = len(x0)
    nums = (argnums,) if isinstance(argnums, int) and not isinstance(argnums, bool) else argnums
    if (
        not isinstance(nums, (tuple, list))
        or not nums
        or any(not isinstance(a, int) or isinstance(a, bool) for a in nums)
    ):
        raise TypeError(f"`argnums` must be None, an int or a tuple of ints, got {argnums!r}")
    nums = tuple(a % n if -n <= a < n else a for a in nums)
    if any(not 0 <= a < n for a in nums) or len(set(nums)) != len(nums):
        raise ValueError(f"`argnums` {argnums!r} does not select distinct arguments of the {n}")
    single = isinstance(argnums, int)
    rest = tuple(i for i in range(n) if i not in nums)

    def fn(x: Any, fixed: Any) -> Any:
        args = [None] * n
        for i, v in zip(nums, (x,) if single else x):
            args[i] = v
        for i, v in zip(rest, fixed):
            args[i] = v
        return f(*args)

    x = x0[nums[0]] if single else tuple(x0[i] for i in nums)
    fixed = tuple(jax.tree.map(jnp.asarray, x0[i]) for i in rest)
    return fn, x, fixed, nums


def _forward_works(closed: Any) -> str:
    """Empty if forward-mode AD applies to the program, else why not: ``custom_vjp``
    functions define only a reverse-mode rule (JAX raises when their JVP is evaluated)."""
    from .._jaxpr.passes import sub_jaxprs

    def find(jaxpr: Any) -> str:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("custom_vjp_call", "custom_vjp_call_jaxpr"):
                name = eqn.params.get("name", "")
                return f"a custom_vjp function{f' ({name})' if name else ''} has no forward rule"
            for sub in sub_jaxprs(eqn.params):
                why = find(sub)
                if why:
                    return why
        return ""

    return find(closed.jaxpr)


def setup(
    f: Callable,
    x0: Any,
    direction: Any,
    *,
    mode: str = "auto",
    argnums: int | Sequence[int] | None = None,
    key: jax.Array | None = None,
    batched: bool = False,
    names: tuple[str, str] = ("x0", "direction"),
    finite: bool = True,
) -> Problem:
    """Validates everything before any tracing, then traces ``f`` once (``finite``:
    refuse non-finite points; :func:`~jaxrelu.check_many` reports them per point)."""
    _validate.check_callable(f)
    _validate.one_of(mode, MODES, "mode")
    fn, x, fixed, nums = _select(f, x0, argnums, batched)
    x = _point(x, names[0], batched, finite)
    direction = _direction(x, direction, key, batched, finite, names)
    one = (lambda t: jax.tree.map(lambda v: v[0], t)) if batched else (lambda t: t)
    x1, fixed1 = one(x), one(fixed)
    tr = _traced(f, fn, nums, x1, fixed1)
    closed = tr.closed
    note = ""
    if mode == "auto":
        note = tr.once("forward", lambda: _forward_works(closed))
        mode = "rev" if note else "fwd"
    w = None
    if mode == "rev":
        w = _cotangent(closed, key if key is not None else jax.random.PRNGKey(1))
    low = tr.low if tr.low is not None else jnp.dtype(jax.tree.leaves(x1)[0].dtype)
    n_x = len(jax.tree.leaves(x1))
    flags = [True] * n_x + [False] * (len(closed.jaxpr.invars) - n_x)
    pl = tr.once(("piecewise_linear", n_x), lambda: piecewise_linear(closed.jaxpr, flags))
    return Problem(
        fn=fn,
        user_fn=f,
        nums=nums,
        x0=x,
        fixed=fixed,
        direction=direction,
        traced=tr,
        mode=mode,
        mode_note=note,
        cotangent=w,
        eps=float(jnp.finfo(low).eps),
        dtype_name=jnp.dtype(low).name,
        piecewise_linear=pl,
        batched=batched,
    )


def _point(x: Any, name: str, batched: bool, finite: bool) -> Any:
    """A floating-point point (finite unless ``finite`` is False), with a common leading
    batch axis when ``batched``."""
    x = _validate.float_tree(x, name)
    if finite:
        _validate.finite_tree(x, name)
    if batched:
        leaves = jax.tree.leaves(x)
        if any(np.ndim(v) == 0 for v in leaves):
            raise ValueError(f"every leaf of `{name}` needs a leading batch axis")
        n_pts = np.shape(leaves[0])[0]
        if any(np.shape(v)[0] != n_pts for v in leaves):
            raise ValueError(f"every leaf of `{name}` must have the same leading (batch) size")
        if n_pts == 0:
            raise ValueError(f"`{name}` holds no points (its leading axis has size 0)")
    return x


def _direction(
    x: Any, direction: Any, key: Any, batched: bool, finite: bool, names: tuple[str, str]
) -> Any:
    """The given direction checked against ``x`` (structure, finite, nonzero) and cast to
    its dtypes, or a random unit one (per point) drawn from ``key``."""
    name_x, name_d = names
    if direction is None:
        key = jax.random.PRNGKey(0) if key is None else key
        if batched:
            keys = jax.random.split(key, np.shape(jax.tree.leaves(x)[0])[0])
            return jax.vmap(random_direction)(x, keys)
        return random_direction(x, key)
    direction = _validate.float_tree(direction, name_d)
    _validate.check_same_structure(x, direction, name_x, name_d)
    if finite:
        _validate.finite_tree(direction, name_d)
    direction = jax.tree.map(lambda d, v: d.astype(v.dtype), direction, x)
    norms = _norms(direction, batched)
    if np.any(norms == 0) and finite:
        which = "" if not batched else f" for point {int(np.flatnonzero(norms == 0)[0])}"
        raise ValueError(f"`{name_d}` is zero{which}; give a nonzero direction")
    return direction


def _norms(tree: Any, batched: bool) -> np.ndarray:
    leaves = [np.asarray(v, np.float64) for v in jax.tree.leaves(tree)]
    rows = len(leaves[0]) if batched else 1
    got = norms(np.concatenate([v.reshape(rows, -1) for v in leaves], axis=1))
    return got if batched else np.asarray(got[0])


def _traced(f: Callable, fn: Callable, nums: Any, x: Any, fixed: Any) -> Traced:
    """The traced program (from the trace cache when ``f`` is unchanged), with a clear
    error when ``f`` cannot be traced or does not return floating-point arrays."""
    from .._util import user_frame_of_exception

    try:
        tr = traced(f, (x, fixed), key=("checker", nums), call=fn)
    except Exception as err:  # any tracing failure becomes one clear TypeError
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise TypeError(
            f"`f` must be a JAX-traceable function of its inputs; tracing it failed at "
            f"{user_frame_of_exception(err)} with {type(err).__name__}: {first}"
        ) from err
    outs = tr.closed.jaxpr.outvars
    if not outs:
        raise TypeError("`f` returned no arrays")
    for v in outs:
        dt = v.aval.dtype
        if not jnp.issubdtype(dt, jnp.inexact):
            raise TypeError(f"`f` must return floating-point arrays; it returned dtype {dt}")
    return tr


def _cotangent(closed: Any, key: jax.Array) -> list[Any]:
    """A random unit cotangent over the output leaves (1 for a scalar output)."""
    avals = [v.aval for v in closed.jaxpr.outvars]
    if len(avals) == 1 and avals[0].shape == ():
        return [jnp.ones((), avals[0].dtype)]
    keys = jax.random.split(key, len(avals))
    w = [jax.random.normal(k, a.shape, jnp.float32) for k, a in zip(keys, avals)]
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in w))
    return [(v / norm).astype(a.dtype) for v, a in zip(w, avals)]
