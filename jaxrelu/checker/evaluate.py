r"""The measurements, as one jitted and vmapped program per traced function: the value at
``x0``, AD's derivative along ``d``, and on both sides of every step ``h`` of the grid

.. math::
    r_\pm(h) = \lVert f(x_0 + \delta_\pm) - f(x_0) - J(x_0)\,\delta_\pm \rVert,
    \qquad \delta_\pm = \mathrm{fl}(x_0 \pm h d) - x_0,

with the step taken as represented. In reverse mode the derivative is a VJP with a fixed
random cotangent :math:`w` and everything is projected on it:
:math:`|w^\top (f(x_0 + \delta) - f(x_0)) - (w^\top J)\,\delta|`. Differences and norms are
taken in the widest float available; matrix products at full precision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

from .. import _util
from .._jaxpr.driver import compile_cached
from .problem import Problem

__all__ = ["Measurements", "measure"]


@dataclasses.dataclass(frozen=True)
class Measurements:
    """NumPy results for one point: both sides of the grid stacked (``+h`` then ``-h``).

    Attributes:
        rem: remainders ``(2n,)``.
        mag: ``||f(x0 + δ)|| + ||f(x0)|| + ||J δ||`` per step (sets the roundoff floor).
        vmag: ``||f(x0 + δ)|| + ||f(x0)||`` (the floor of values alone).
        df: ``f(x0 + δ) - f(x0)`` per step, flat over outputs ``(2n, m)`` (projected on
            ``w``, ``m = 1``, in reverse mode).
        heff: the represented step's length along ``d``: ``<δ, d> / <d, d>``.
        f0: ``f(x0)``, flat ``(m0,)``.
        ad: AD's slope ``J d`` flat ``(m,)`` (``w^T J d`` in reverse mode).
    """

    rem: np.ndarray
    mag: np.ndarray
    vmag: np.ndarray
    df: np.ndarray
    heff: np.ndarray
    f0: np.ndarray
    ad: np.ndarray


def _flat(vs: list) -> Any:
    """Concatenated, raveled; complex values as their real and imaginary parts."""
    parts = []
    for v in vs:
        if jnp.iscomplexobj(v):
            parts += [jnp.ravel(jnp.real(v)), jnp.ravel(jnp.imag(v))]
        else:
            parts.append(jnp.ravel(v))
    return jnp.concatenate(parts)


def _sq(leaves: list, wide: Any) -> Any:
    return sum(jnp.sum(jnp.square(jnp.abs(v).astype(wide))) for v in leaves)


def _core(closed: Any, mode: str) -> Callable:
    jaxpr = closed.jaxpr

    def core(consts, x0, fixed, d, w, steps):
        wide = _util.widest_float()
        run = jaxpr_as_fun(ClosedJaxpr(jaxpr, list(consts)))
        # (as arrays: an output that is a literal, ``lambda x: 1.0``, is a Python scalar)
        g = lambda x: [jnp.asarray(o) for o in run(*jax.tree.leaves(x), *jax.tree.leaves(fixed))]
        if mode == "fwd":
            f0, lin = _util.linearize(g, x0)
            cast = lambda vs: [v if jnp.iscomplexobj(v) else v.astype(wide) for v in vs]
            ad = cast(lin(d))
            linear = lambda dx: cast(lin(dx))
            project = lambda vs: vs
        else:
            f0, vjp = jax.vjp(g, x0)
            (wj,) = vjp([jnp.asarray(v, o.dtype) for v, o in zip(w, f0)])
            dot = lambda a, b: sum(
                jnp.sum(jnp.real(u.astype(wide) * v.astype(wide)))
                for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
            )
            ad = [dot(wj, d)]
            linear = lambda dx: [dot(wj, dx)]
            project = lambda vs: [sum(jnp.sum(jnp.real(u * v.astype(wide))) for u, v in zip(vs, w))]
        widen = lambda vs: [v if jnp.iscomplexobj(v) else v.astype(wide) for v in vs]
        dd = _sq(jax.tree.leaves(d), wide)

        def value(h):
            x = jax.tree.map(lambda a, b: a + h.astype(a.dtype) * b, x0, d)
            return g(x), jax.tree.map(lambda a, b: a - b, x, x0)

        # f(x0) for the differences is evaluated with the steps' values, in the same
        # batch: the primal of the linearization (f0 above) is another program, which XLA
        # may fuse and round differently (a reduction summed in another order), and a
        # one-ulp offset between the two reads as a jump at the smallest steps
        hs = jnp.concatenate([steps, -steps, jnp.zeros((1,), steps.dtype)])
        fxs, dxs = jax.vmap(value)(hs)
        f0w = widen([v[-1] for v in fxs])

        def one(fx, dx):
            df = project(
                [(u if jnp.iscomplexobj(u) else u.astype(wide)) - v for u, v in zip(fx, f0w)]
            )
            ldx = linear(dx)
            rem = jnp.sqrt(sum(jnp.sum(jnp.square(jnp.abs(a - b))) for a, b in zip(df, ldx)))
            vmag = jnp.sqrt(_sq(fx, wide)) + jnp.sqrt(_sq(f0w, wide))
            mag = vmag + jnp.sqrt(_sq(ldx, wide))
            along = sum(
                jnp.sum(u.astype(wide) * v.astype(wide))
                for u, v in zip(jax.tree.leaves(dx), jax.tree.leaves(d))
            )
            return rem, mag, vmag, _flat(df), along / dd

        rest = lambda t: jax.tree.map(lambda v: v[:-1], t)
        rem, mag, vmag, df, heff = jax.vmap(one)(rest(fxs), rest(dxs))
        return rem, mag, vmag, df, heff, _flat(widen(f0)), _flat(ad)

    return core


def measure(problem: Problem, steps: np.ndarray) -> list[Measurements]:
    """Runs the measurements: one point (``steps`` 1-D) or every point of a batched problem
    (``steps`` 2-D, one row per point). Compiled once per traced program and shapes."""
    wide = _util.widest_float()
    consts = list(problem.closed.consts)
    w = problem.cotangent if problem.cotangent is not None else []
    args = (consts, problem.x0, problem.fixed, problem.direction, w, jnp.asarray(steps, wide))
    text, refs = problem.traced.fingerprint, problem.traced.refs
    avals = jax.tree.map(lambda v: (jnp.shape(v), str(jnp.result_type(v))), args[1:])
    key = (
        "checker",
        problem.mode,
        problem.batched,
        text,
        tuple(map(id, refs)),
        str(avals),
        _util.x64(),
    )

    def build() -> Callable:
        core = _core(problem.closed, problem.mode)
        if problem.batched:
            return jax.vmap(core, in_axes=(None, 0, 0, 0, None, 0))
        return core

    compiled = compile_cached(key, refs, build, *args)
    out = jax.device_get(compiled(*args))
    arrays = [np.asarray(v, np.float64) for v in out]
    if not problem.batched:
        return [Measurements(*arrays)]
    return [Measurements(*(v[i] for v in arrays)) for i in range(arrays[0].shape[0])]
