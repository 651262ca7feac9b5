r"""Rules for first-order primitives: smooth ones, integer/boolean machinery, comparisons,
selects, and the nonsmooth elementals with their lexicographic (LD) tangent rules.

With ``fsign(u, U)`` the sign of the first nonzero among ``u`` and the lexicographic
tangent columns ``U₁, U₂, …`` (Khan & Barton 2015):

* ``abs``: ``fsign(x, X) · X``; complex ``abs``: ``Re(conj(u) X) / |u|`` with ``u`` the
  first nonzero among ``z, Z₁, Z₂, …``;
* ``max(a, b)``: ``A`` if ``fsign(a - b, A - B) >= 0`` else ``B`` (``min`` symmetric);
  ``clamp`` is ``min(max(x, lo), hi)``; ``reduce_max``, max pooling, ``argmax`` and
  ``cummax`` pick the lexicographically largest ``(value, tangent columns)``;
* ``sort`` and ``top_k`` order by ``(value, tangent columns)``;
* comparisons take their value at the perturbed point (``x > c`` at ``x = c`` is true
  along ``+d``, false along ``-d``; ``x == c`` is false along any ``d != 0``), and every
  integer or boolean computation downstream (``and``, ``argmax`` over stacked conditions,
  ``cumsum``, indexing) is evaluated on those perturbed values; a ``select_n`` or a
  ``gather`` then takes its tangent from the branch or element the perturbed program uses;
* ``floor``, ``ceil``, ``round``, ``sign`` have zero derivative (they are jumps); a float
  turned into an integer truncates toward zero (jumps at the nonzero integers); values
  past a tied jump (``floor`` at an integer going down, a step, a moved index) are taken
  in the piece the direction enters, so downstream tangents are that piece's;
* a float read through switching integers (``table[floor(x)]``, ``dynamic_slice`` at a
  computed offset) is a site, a kink or a jump by whether the values agree across;
* smooth primitives push every column through JAX's JVP in one batched call.

Each nonsmooth primitive also records a *site*: the switching distance of every element
(``|a - b|`` for ``max``, ``|x|`` for ``abs``, the gap to the runner-up for ``reduce_max``,
the distance to the nearest integer boundary for ``floor``), how many elements sit exactly
on a switch, and how soon one is reached along the first direction.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Literal

from .core import (
    RULES,
    Interpreter,
    Recorder,
    SiteStats,
    Switch,
    Val,
    bcast_block,
    crossing_time,
    is_float,
    masked_div,
    rule,
    switch_stats,
)
from .core import ties_only_active as core_ties_only

__all__ = ["SMOOTH", "lookup"]

SMOOTH = frozenset(
    """add add_any sub mul div neg exp exp2 log1p expm1 sin cos tan asin acos atan
    sinh cosh tanh asinh acosh atanh logistic pow integer_pow square erf erfc
    erf_inv lgamma digamma polygamma igamma igammac bessel_i0e bessel_i1e real imag conj
    complex dot_general conv_general_dilated reduce_sum reduce_prod cumsum
    cumprod cumlogsumexp reshape broadcast_in_dim transpose squeeze expand_dims concatenate
    pad slice dynamic_slice dynamic_update_slice gather scatter scatter-add scatter_add
    scatter-mul scatter_mul rev copy copy_p iota split device_put sharding_constraint reshard
    mesh_cast optimization_barrier cholesky triangular_solve fft
    reduce_window_sum nextafter axis_index debug_callback pure_callback name square
    tridiagonal_solve stack unstack tile scatter-sub zeros_like ragged_dot_general
    symmetric_product regularized_incomplete_beta igamma_grad_a psum all_gather all_to_all
    ppermute reduce_scatter""".split()
)
"""Primitives that are smooth where they are defined: their tangents are JAX's JVP."""

PIECEWISE_LINEAR = frozenset(
    """add add_any sub neg reduce_sum cumsum reshape broadcast_in_dim transpose squeeze
    expand_dims concatenate pad slice dynamic_slice dynamic_update_slice gather scatter
    scatter-add scatter_add scatter-sub rev copy copy_p split stack unstack tile iota
    select_n max min abs clamp sign floor ceil round convert_element_type reduce_max
    reduce_min argmax argmin sort cummax cummin top_k stop_gradient real imag complex conj
    reduce_window_sum reduce_window_max reduce_window_min reduce_window select_and_gather_add
    gt ge lt le eq ne and or not xor device_put sharding_constraint reshard mesh_cast
    optimization_barrier copysign rem is_finite psum all_gather""".split()
)
"""Primitives that keep a piecewise-linear value piecewise linear (with the call and
control-flow primitives, whose results carry what their bodies computed)."""

_CALL_LIKE = frozenset(
    """pjit jit closed_call core_call remat remat2 checkpoint custom_jvp_call
    custom_vjp_call custom_vjp_call_jaxpr cond while scan""".split()
)


def curves(eqn: Any, vals: Sequence[Val]) -> bool:
    """Whether ``eqn`` makes a value that depends on the directions (has a tangent)
    nonlinear in them: ``x * x``, ``exp(x)``, ``1 / x``; not ``2 * x``, ``relu(x)``."""
    moving = [v.t is not None for v in vals]
    if not any(moving):  # (nothing moves: the flag is read only with a tangent)
        return False  # pragma: no mutate
    name = eqn.primitive.name
    if name in ("mul", "dot_general", "conv_general_dilated"):
        return sum(moving) >= 2
    if name == "div":
        return moving[1]
    return name not in PIECEWISE_LINEAR and name not in _CALL_LIKE


_SHAPE_OPS = frozenset(
    """broadcast_in_dim reshape squeeze expand_dims transpose slice rev copy copy_p
    concatenate stack unstack tile pad dynamic_slice gather""".split()
)
_SCANS = frozenset({"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
# most reduced elements flipped one by one (beyond: the nearest surface, a bound; either
# is right at any limit, the limit only bounds the work)
_FLIP_LIMIT = 16  # pragma: no mutate


def bind(eqn: Any, args: Sequence[Any], **override: Any) -> list[Any]:
    """Applies the equation's primitive to ``args`` (as ``jax.core.eval_jaxpr`` does,
    so higher-order primitives get their sub-functions)."""
    params = dict(eqn.params, **override) if override else eqn.params
    got = eqn.primitive.get_bind_params(params)
    # JAX >= 0.10 returns the parameters; older versions (sub-functions, parameters)
    subfuns, bind_params = got if isinstance(got, tuple) else ((), got)
    out = eqn.primitive.bind(*subfuns, *args, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


def lookup(eqn: Any) -> Any:
    """The rule for an equation: its registered rule, else the discrete rule for
    integer/boolean results, the smooth rule for :data:`SMOOTH` primitives, and the
    unknown-primitive rule otherwise."""
    fn = RULES.get(eqn.primitive.name)
    if fn is not None:
        return fn
    return lookup_default(eqn)


def lookup_default(eqn: Any) -> Any:
    """The rule for an equation without a registered one (see :func:`lookup`)."""
    name = eqn.primitive.name
    if not any(is_float(getattr(o, "aval", None)) for o in eqn.outvars):
        return discrete
    if name in SMOOTH:
        return smooth
    return unknown


# ---------------------------------------------------------------- smooth propagation


def jvp_columns(interp: Interpreter, eqn: Any, ins: Sequence[Val]) -> list[Any] | None:
    """Tangent blocks of the outputs from JAX's JVP of the primitive, every column in one
    vmapped call; integer and boolean operands take their values at the perturbed point
    (so ``gather`` with tied indices reads the element the perturbed program reads)."""
    tpos = [i for i, v in enumerate(ins) if v.t is not None]
    if not tpos or interp.ncols == 0:
        return None
    # every operand at its value in the piece the direction enters (``where(x > 0, 1, c)``
    # at a tie takes 1 along a positive direction, whether or not it has a tangent)
    args = [v.lex if v.lex is not None else v.p for v in ins]
    primals = [jnp.asarray(args[i]) for i in tpos]

    def fn(*xs: Any) -> tuple:
        a = list(args)
        for i, x in zip(tpos, xs):
            a[i] = x
        return tuple(bind(eqn, a))

    def one(*ts: Any) -> tuple:
        return jax.jvp(fn, primals, list(ts))[1]

    return list(jax.vmap(one)(*[ins[i].t for i in tpos]))


def _vals(outs: Sequence[Any], ts: Sequence[Any] | None, lex: Any = None) -> list[Val]:
    ts = [None] * len(outs) if ts is None else ts
    lex = [None] * len(outs) if lex is None else lex
    return [
        Val(o, t if is_float(o) else None, lo if is_float(o) else None)
        for o, t, lo in zip(outs, ts, lex)
    ]


def lex_values(interp: Interpreter, eqn: Any, ins: Sequence[Val], outs: Sequence[Any]) -> Any:
    """Float results at the perturbed point, where an operand's value there differs from
    its value at the point (downstream of a tied jump: ``floor`` at an integer, an index
    that the direction moves at once), so that tangents are those of the piece the
    perturbed point lies in. None when no operand carries such a value."""
    moved = [v for v in ins if v.lex is not None]
    if interp.n_ld == 0 or not moved:
        return None
    differs = jnp.any(jnp.stack([jnp.any(v.lex != v.p) for v in moved]))
    # the second evaluation only runs where some operand did move (rare: ties)
    return lax.cond(
        differs,
        lambda: tuple(bind(eqn, [v.lex if v.lex is not None else v.p for v in ins])),
        lambda: tuple(outs),
    )


def smooth(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    outs = bind(eqn, [v.p for v in ins])
    if _stays_flat(ins):
        return _flat_vals(interp, eqn, ins, rec)
    ts = jvp_columns(interp, eqn, ins)
    if any(not is_float(v.p) and v.sw is not None for v in ins) and is_float(outs[0]):
        index_site(interp, eqn, ins, outs[0], None if ts is None else ts[0], rec)
    return _vals(outs, ts, lex_values(interp, eqn, ins, outs))


def _stays_flat(ins: Sequence[Val]) -> bool:
    """Whether the result of piecewise-constant operands (``floor(x) / 2``,
    ``sign(x)[:, None]``, ``jnp.sum(jnp.floor(x))``) is itself piecewise constant, its
    switch carried as an integer's is (:func:`_propagate_switch`): float operands, each
    flat or a constant."""
    if not any(v.flat for v in ins) or not all(v.flat or v.const for v in ins):
        return False
    # (an index operand that switches makes it a gather read by :func:`index_site`, a
    # fixed one, ``floor(x)[idx]``, keeps it flat; the results of ``split`` or
    # ``optimization_barrier`` each get their own switch, as an integer sort's do)
    return all(is_float(v.p) or v.sw is None for v in ins)


# primitives whose operands may broadcast to the result's shape without acting
# elementwise (a product, window or solve can keep the shape): their switches are traced by
# flipping operand elements one at a time (:func:`_flip_switch`)
_NOT_ELEMENTWISE = frozenset(
    """dot_general conv_general_dilated reduce_window_sum reduce_window_max
    reduce_window_min reduce_window reduce_precision select_and_scatter_add
    select_and_gather_add scatter scatter-add scatter_add scatter-mul scatter_mul
    scatter-sub scatter-min scatter-max dynamic_update_slice fft cholesky triangular_solve
    lu tridiagonal_solve ragged_dot_general symmetric_product sort top_k psum all_gather
    all_to_all ppermute reduce_scatter""".split()
)


def _flat_vals(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """A piecewise-constant result (see :func:`_stays_flat`): no tangent, its value at the
    perturbed point, and its operands' nearest switch carried along, as for an integer."""
    return [v._replace(flat=v.sw is not None) for v in discrete(interp, eqn, ins, rec)]


_INDEX_FLIP_LIMIT = 1 << 20  # (switching index elements) x (output elements) traced at most


def index_site(interp: Interpreter, eqn: Any, ins: list[Val], out: Any, t_out: Any, rec):
    """A float result read through integer operands that switch (``table[floor(x)]``,
    ``dynamic_slice`` at a truncated offset): a site that is a kink or a jump by whether
    the result agrees across each index element's switch. Every switching index element is
    flipped to its value across, one at a time (vmapped); each output element takes the
    nearest flip that changes it. (Long: the flip, its tangent, the jump evidence and the
    radius all read one vmapped evaluation; split up, each part would redo it.)"""
    wide, shape = interp.wide, np.shape(out)
    ks = [i for i, v in enumerate(ins) if not is_float(v.p) and v.sw is not None]
    sws = [ins[k].sw for k in ks]
    ps = [jnp.asarray(ins[k].p) for k in ks]
    sizes = [int(p.size) for p in ps]
    n = sum(sizes)
    name = eqn.primitive.name
    if n * max(int(np.prod(shape, dtype=int)), 1) > _INDEX_FLIP_LIMIT:
        nan, inf = jnp.asarray(jnp.nan, wide), jnp.asarray(jnp.inf, wide)
        size = jnp.int32(int(np.prod(shape, dtype=int)))
        none = jnp.int32(0)  # pragma: no mutate (``leaving`` is read for jumps only)
        rec.add(eqn, name, "unknown", SiteStats(size, jnp.int32(0), nan, inf, nan, none))
        return
    field = lambda f, fill: jnp.concatenate(
        [
            jnp.ravel(
                jnp.broadcast_to(fill if getattr(sw, f) is None else getattr(sw, f), p.shape)
            ).astype(wide)
            for sw, p in zip(sws, ps)
        ]
    )
    dist = field("dist", jnp.inf)
    offsets = np.cumsum([0, *sizes])
    fpos = [i for i, v in enumerate(ins) if is_float(v.p) and v.t is not None and interp.ncols]

    # Where the pieces meet at the switch (stack([x, 2x - 1])[x > 1] at 1) the value read
    # does not change but its derivative may: the float operands are also read with
    # distinct markers, and a change of the marker read counts as a change (a constant
    # table with equal neighbours then reports a switch where nothing changes: harmless).
    floats = [i for i, v in enumerate(ins) if is_float(v.p)]

    def marked(args: list) -> Any:
        a = list(args)
        for i in floats:
            size = int(np.size(ins[i].p))
            marks = jnp.arange(size) + 1  # pragma: no mutate (any distinct nonzero markers)
            a[i] = marks.reshape(np.shape(ins[i].p)).astype(ins[i].p.dtype)
        return bind(eqn, a)[0]

    def flipped(g: Any) -> tuple:
        args = [v.p for v in ins]
        for k, sw, p, off in zip(ks, sws, ps, offsets):
            assert sw is not None  # ks holds the switching operands
            across = jnp.broadcast_to(sw.across, p.shape).astype(p.dtype)
            args[k] = jnp.where((jnp.arange(p.size) + off == g).reshape(p.shape), across, p)
        if not fpos:
            return bind(eqn, args)[0], jnp.zeros(shape, out.dtype), marked(args)

        def fn(*xs: Any) -> Any:
            a = list(args)
            for i, x in zip(fpos, xs):
                a[i] = x
            return bind(eqn, a)[0]

        firsts = [ins[i].t[0] for i in fpos]  # pragma: no mutate (first column; 1 clamps to 0)
        there, t_there = jax.jvp(fn, [ins[i].p for i in fpos], firsts)
        if not parts:
            return there, t_there, marked(args)
        # every lexicographic column, for rules.transverse
        column = lambda *c: jax.jvp(fn, [ins[i].p for i in fpos], list(c))[1]
        t_cols = jax.vmap(column)(*[ins[i].t[: interp.n_ld] for i in fpos])
        return there, t_there, marked(args), t_cols

    # (a switch that agrees at the point may part along its surface: rules.transverse)
    grads_of = [None if sw is None else sw.grad for sw in sws]
    # (grads are set with two columns or more only, and without float tangents ``flipped``
    # returns before reading ``parts``: its conditions read alike in any combination)
    known = all(g is not None for g in grads_of)
    parts = bool(fpos) and interp.n_ld >= 2 and known  # pragma: no mutate
    there_all, t_all, loc_all, *t_cols_all = jax.vmap(flipped)(jnp.arange(n))
    expand = (slice(None),) + (None,) * len(shape)
    changed = (there_all != jnp.asarray(out)[None]) | (loc_all != marked([v.p for v in ins])[None])
    d_all = jnp.where(changed, dist[expand], jnp.inf)
    best = jnp.argmin(d_all, axis=0)[None]
    # (the taken axis has length 1; JAX clamps a static index 1 to 0)
    pick = lambda a: jnp.take_along_axis(a, best, axis=0)[0]  # pragma: no mutate
    d_out = pick(d_all)
    moved = jnp.any(changed.reshape(n, -1), axis=1)
    lex = jnp.concatenate(
        [jnp.ravel(ins[k].lex if ins[k].lex is not None else p) for k, p in zip(ks, ps)]
    )
    leaving = jnp.sum(moved & (lex != jnp.concatenate([jnp.ravel(p) for p in ps])))
    st = switch_stats(d_out, None, wide, leaving=leaving)
    # (every sw is set here: only the rates decide; with none, the evidence reads alike)
    if all(sw is not None and sw.rate is not None for sw in sws):  # pragma: no mutate
        # the fills are never read: every rate is known here, and an element no flip
        # changes has an infinite distance
        rate = pick(jnp.where(changed, field("rate", 0.0)[expand], 0.0))  # pragma: no mutate
        # every index element's first crossing along the direction, whether or not its
        # nearest flip changes the result (clipped indices: the nearest crossing may be
        # clipped away while a later one is not): a radius never beyond the truth
        time = jnp.broadcast_to(field("time", jnp.inf)[expand], changed.shape)
        sw = Switch(d_out, rate, None)
        t_here = None if t_out is None else t_out
        ev = jump_evidence(interp, sw, out, pick(there_all), t_here, pick(t_all)[None], shape)
        st = st._replace(evidence=ev, radius=jnp.min(time, initial=jnp.inf))
    else:
        ev = jump_evidence(
            interp, Switch(d_out, None, None), out, pick(there_all), None, None, shape
        )
        st = st._replace(evidence=ev)
    rec.add(eqn, name, "select", st, select_threshold(out.dtype))
    if parts:
        k = interp.n_ld
        grads = jnp.concatenate(
            [
                jnp.reshape(bcast_block(jnp.asarray(g, wide), p.shape), (k, -1))
                for g, p in zip(grads_of, ps)
            ],
            axis=1,
        )  # (columns, index elements)
        # (best has a leading axis of length 1: JAX clamps a static index 1 to 0)
        g_best = jnp.moveaxis(grads.T[best[0]], -1, 0)  # pragma: no mutate
        # (the taken axis has length 1; JAX clamps a static index 1 to 0)
        t_best = jnp.take_along_axis(t_cols_all[0], best[:, None], axis=0)[0]  # pragma: no mutate
        # this side: the index's own value at the point (the output reads the piece the
        # perturbed point lies in, which may be the flip's: argsort([x1, -x1]) at 0)
        t_here = flipped(jnp.asarray(-1))[3]  # (no element is flipped)
        off = parting(wide, g_best, t_here, t_best, d_out == 0)
        record_transverse(interp, eqn, name, off, out.dtype, rec)


def record_unknown(
    interp: Interpreter, eqn: Any, rec: Recorder, outputs: Sequence[int] | None = None
) -> None:
    """Lists the equation as an ``"unknown"`` site (no margin, no evidence), its size that
    of ``outputs`` (default: all)."""
    outs = eqn.outvars if outputs is None else [eqn.outvars[k] for k in outputs]
    size = sum(int(np.prod(o.aval.shape, dtype=int)) for o in outs)
    nan = jnp.asarray(jnp.nan, interp.wide)
    inf = jnp.asarray(jnp.inf, interp.wide)
    none = jnp.int32(0)  # pragma: no mutate (``leaving`` is read for jumps only)
    st = SiteStats(jnp.int32(size), jnp.int32(0), nan, inf, nan, none)
    rec.add(eqn, eqn.primitive.name, "unknown", st)


def unknown(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """A primitive the analysis does not know: listed as an ``"unknown"`` site, tangents
    from JAX's own JVP."""
    outs = bind(eqn, [v.p for v in ins])
    if any(is_float(v.p) for v in ins):
        record_unknown(interp, eqn, rec)
    try:
        ts = jvp_columns(interp, eqn, ins)
    except NotImplementedError:  # no JVP rule either: no tangent
        ts = None
    return _vals(outs, ts)


@rule("reduce_precision")
def reduce_precision(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """At the operand's own precision (as JAX's ``remat`` inserts it) the identity; with
    fewer exponent or mantissa bits a staircase (constant between rounding boundaries,
    where JAX's derivative is 1): an ``"unknown"`` site, whose switches are not located."""
    (x,) = ins
    fi = jnp.finfo(jnp.result_type(x.p))
    if eqn.params["exponent_bits"] >= fi.nexp and eqn.params["mantissa_bits"] >= fi.nmant:
        outs = bind(eqn, [x.p])
        lex = None if x.lex is None else bind(eqn, [x.lex])
        return [Val(outs[0], x.t, None if lex is None else lex[0], x.sw, x.key)]
    return unknown(interp, eqn, ins, rec)


@rule("bitcast_convert_type")
def bitcast_convert(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """A float's bits read as another type (``jnp.frexp``, bit tricks such as clearing the
    sign bit): a function of the float whose switches and derivative the analysis cannot
    tell (JAX's derivative through it is zero): an ``"unknown"`` site. Bits read as a float
    (random numbers from integer keys) are not a site."""
    (x,) = ins
    if not is_float(x.p):
        return lookup_default(eqn)(interp, eqn, ins, rec)
    if any(is_float(getattr(o, "aval", None)) for o in eqn.outvars):
        return unknown(interp, eqn, ins, rec)
    record_unknown(interp, eqn, rec)
    return discrete(interp, eqn, ins, rec)


# -------------------------------------------------- integer and boolean computations


def discrete(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """Integer/boolean results: evaluated at the point and at the perturbed point, and the
    nearest switch of the operands carried along (where it can be traced)."""
    outs = bind(eqn, [v.p for v in ins])
    name = eqn.primitive.name
    if name in _SCANS and name != "cumsum" and ins[0].sw is not None:
        axis = eqn.params["axis"] % max(np.ndim(ins[0].p), 1)
        if np.shape(ins[0].p)[axis] > _FLIP_LIMIT:  # (not traced: a long cummax of a count)
            record_unknown(interp, eqn, rec)
    lex = None
    if any(v.lex is not None for v in ins):
        lex = bind(eqn, [v.lex if v.lex is not None else v.p for v in ins])
    sws = _propagate_switch(interp, eqn, ins, outs)
    return [
        Val(o, None, None if lex is None else lo, sw) for o, lo, sw in zip(outs, lex or outs, sws)
    ]


def _propagate_switch(interp, eqn, ins, outs) -> list[Switch | None]:
    none: list[Switch | None] = [None] * len(outs)
    if all(v.sw is None for v in ins):
        return none
    if len(outs) != 1:
        return _flip_switch(interp, eqn, ins, outs)
    name = eqn.primitive.name
    out = jnp.asarray(outs[0])
    if name in _SHAPE_OPS:
        return [_shape_switch(interp, eqn, ins)]
    if "axes" in eqn.params or name in _SCANS:
        return [_reduction_switch(interp, eqn, ins[0], out)] if len(ins) == 1 else none
    # elementwise, with operands of the result's shape, scalars, or (as ``jax.nn.one_hot``
    # compares an index against ``iota``) size-1 axes broadcast against it
    if name not in _NOT_ELEMENTWISE and all(_broadcasts_to(np.shape(v.p), out.shape) for v in ins):
        return [_elementwise_switch(interp, eqn, ins, out)]
    return _flip_switch(interp, eqn, ins, outs)


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether an operand of ``shape`` broadcasts elementwise to ``target``: a scalar, or
    the same rank with each axis equal or of size 1."""
    if shape == ():
        return True
    return len(shape) == len(target) and all(a in (1, b) for a, b in zip(shape, target))


def _flip_switch(interp, eqn, ins, outs) -> list[Switch | None]:
    """Any other discrete operation (an integer scatter-add as in ``jnp.bincount``, an
    integer sort's several outputs): the operands' switched elements are flipped across
    their switches, each with every element on its surface, and a result's switch is the
    nearest flip that changes it. Beyond :data:`_FLIP_LIMIT` switched elements, the nearest
    surface is flipped at once (as :func:`_nearest_flip` does); the first crossing is then
    the earliest of every element's, a bound never later than the truth."""
    moving = [j for j, v in enumerate(ins) if v.sw is not None]
    sws: dict[int, Switch] = {j: ins[j].sw for j in moving}
    has_rate = all(sw.rate is not None for sw in sws.values())
    if not has_rate and interp.n_ld:
        return [None] * len(outs)
    has_time = any(sw.time is not None for sw in sws.values())
    wide = interp.wide

    def field(name: str, fill: Any) -> dict[int, Any]:
        got = {}
        for j, sw in sws.items():
            shape, v = np.shape(ins[j].p), getattr(sw, name)
            got[j] = jnp.full(shape, fill, wide) if v is None else jnp.broadcast_to(v, shape)
        return got

    dist, time = field("dist", jnp.inf), field("time", jnp.inf)
    # (a rate fill is read only with every rate set: has_rate)
    rate = field("rate", 0.0)  # pragma: no mutate
    across = {j: jnp.broadcast_to(sw.across, np.shape(ins[j].p)) for j, sw in sws.items()}
    outs = [jnp.asarray(o) for o in outs]

    def flipped(groups: dict[int, Any]) -> list[Any]:
        args = [v.p for v in ins]
        for j, g in groups.items():
            args[j] = jnp.where(g, across[j], ins[j].p)
        return [jnp.asarray(a) for a in bind(eqn, args)]

    def surface(d: Any, r: Any) -> dict[int, Any]:
        # every element on the same switching surface crosses with the one flipped
        return {j: (dist[j] == d) & (rate[j] == r if has_rate else True) for j in moving}

    # (distance, rate, first crossing, results across) of each flip
    flips = []
    # (at the limit either way is right: flipped one by one, or the nearest surface)
    n_moving = sum(int(np.prod(np.shape(ins[j].p), dtype=int)) for j in moving)
    if n_moving <= _FLIP_LIMIT:  # pragma: no mutate
        for j in moving:
            for i in np.ndindex(np.shape(ins[j].p)):
                groups = surface(dist[j][i], rate[j][i])
                hot = np.zeros(np.shape(ins[j].p), bool)
                hot[i] = True
                groups[j] = groups[j] | hot
                flips.append((dist[j][i], rate[j][i], time[j][i], flipped(groups), True))
    else:  # the nearest surface alone
        cat = lambda f: jnp.concatenate([f[j].ravel() for j in moving])
        k = jnp.argmin(cat(dist))
        d0, r0 = cat(dist)[k], cat(rate)[k]
        alts = flipped(surface(d0, r0))
        if has_rate:  # every surface at that distance
            level = flipped({j: dist[j] == d0 for j in moving})
            alts = [jnp.where(a != o, a, lv) for a, o, lv in zip(alts, outs, level)]
        # (any crossing may change a result: the earliest of all bounds the first change)
        flips.append((d0, r0, jnp.min(cat(time)), alts, False))
    best_d = [jnp.full(o.shape, jnp.inf, wide) for o in outs]
    best_r = [jnp.zeros(o.shape, wide) for o in outs]
    best_t = [jnp.full(o.shape, jnp.inf, wide) for o in outs]
    best_a = list(outs)
    for d_at, r_at, t_at, alts, exact in flips:
        for m, (a, o) in enumerate(zip(alts, outs)):
            changed = (a != o) & jnp.isfinite(d_at)
            better = jnp.where(changed, d_at, jnp.inf) < best_d[m]
            best_d[m] = jnp.where(better, d_at, best_d[m])
            best_r[m] = jnp.where(better, r_at, best_r[m])
            best_a[m] = jnp.where(better, a, best_a[m])
            hit = changed if exact else True
            best_t[m] = jnp.minimum(best_t[m], jnp.where(hit, t_at, jnp.inf))
    return [
        Switch(d, r if has_rate else None, a, t if has_time else None)
        for d, r, a, t in zip(best_d, best_r, best_a, best_t)
    ]


def _shape_switch(interp, eqn, ins) -> Switch:
    """Data movement: the same movement applied to distances, rates and across-values."""
    name = eqn.primitive.name
    if name in ("concatenate", "stack"):
        data: Sequence[int] = range(len(ins))
    else:
        data = (0, 1) if name == "pad" else (0,)
    wide = interp.wide

    def moved(field: str, fill: Any) -> Any:
        args = []
        for i, v in enumerate(ins):
            if i not in data:
                args.append(v.p)
                continue
            if v.sw is None or getattr(v.sw, field) is None:
                if field == "across":
                    args.append(v.p)
                elif field == "rate" and all(u.sw is None or u.sw.rate is None for u in ins):
                    return None
                else:
                    args.append(jnp.full(np.shape(v.p), fill, wide))
            else:
                args.append(jnp.broadcast_to(getattr(v.sw, field), np.shape(v.p)))
        return bind(eqn, args)[0]

    time = None
    if any(u.sw is not None and u.sw.time is not None for u in ins):
        time = moved("time", jnp.inf)
    # (a rate fill marks operands that never move: any value >= 0 reads the same)
    rate = moved("rate", 0.0)  # pragma: no mutate
    grad = _moved_grad(interp, eqn, ins, data)
    return Switch(moved("dist", jnp.inf), rate, moved("across", None), time, grad=grad)


def _moved_grad(interp, eqn, ins, data) -> Any:
    """:attr:`Switch.grad` moved as the data are (column by column), or None where a
    moved switch has none (an operand without a switch is never at its surface: zeros)."""
    sws = [ins[i].sw for i in data]
    if all(sw is None for sw in sws) or any(sw is not None and sw.grad is None for sw in sws):
        return None
    k = interp.n_ld
    args: list[Any] = []
    axes: list[int | None] = []
    for i, v in enumerate(ins):
        if i not in data:
            args.append(v.p)
            axes.append(None)
            continue
        shape = np.shape(v.p)
        g = v.sw.grad if v.sw is not None else jnp.zeros((k, *shape), interp.wide)
        args.append(bcast_block(jnp.asarray(g, interp.wide), shape))
        axes.append(0)
    return jax.vmap(lambda *a: bind(eqn, list(a))[0], in_axes=axes)(*args)


def _elementwise_switch(interp, eqn, ins, out) -> Switch:
    """The operand nearest to its switch decides; across = the result with that operand
    across its switch."""
    shape = out.shape
    dists, rates, alts, times = [], [], [], []
    with_sw = [k for k, u in enumerate(ins) if u.sw is not None]
    for j, v in enumerate(ins):
        if v.sw is None:
            continue
        args = [u.p for u in ins]
        args[j] = v.sw.across
        # operands on the same switching surface (``x < 0`` and ``x >= 0``) cross together
        for k in with_sw:
            if k != j:
                u = ins[k]
                same = _same_surface(u.sw, v.sw, shape)
                args[k] = jnp.where(same, u.sw.across, jnp.broadcast_to(u.p, shape))
                args[j] = jnp.broadcast_to(args[j], shape)
        alts.append(jnp.broadcast_to(bind(eqn, args)[0], shape))
        dists.append(jnp.broadcast_to(v.sw.dist, shape))
        rates.append(None if v.sw.rate is None else jnp.broadcast_to(v.sw.rate, shape))
        if v.sw.time is not None:  # None: no tangent, so this switch is never crossed
            times.append(jnp.broadcast_to(v.sw.time, shape))
    time = jnp.min(jnp.stack(times), axis=0) if times else None
    grads = [ins[k].sw.grad for k in with_sw]
    known = all(g is not None for g in grads)
    if len(dists) == 1:
        return Switch(dists[0], rates[0], alts[0], time, grad=grads[0])
    d = jnp.stack(dists)
    # the nearest operand whose flip changes the result (where none does, the nearest):
    # ``(x0 >= 0) & (x1 > 0)`` at 0 switches where x1 does, not where x0 does
    moves = jnp.stack([a != out for a in alts])
    d_moving = jnp.where(moves, d, jnp.inf)
    near = jnp.where(jnp.any(moves, axis=0), jnp.argmin(d_moving, axis=0), jnp.argmin(d, axis=0))
    near = near[None]
    # (the taken axis has length 1; JAX clamps a static index 1 to 0)
    pick = lambda xs: jnp.take_along_axis(jnp.stack(xs), near, axis=0)[0]  # pragma: no mutate
    # a switch without a rate, beside others with one, has no tangent: it does not move
    zero = jnp.zeros(shape, interp.wide)
    rates = (
        [zero if r is None else r for r in rates] if any(r is not None for r in rates) else rates
    )
    rate = None if any(r is None for r in rates) else pick(rates)
    grad = None
    if known:
        cols = jnp.stack([bcast_block(jnp.asarray(g, interp.wide), shape) for g in grads])
        # (the taken axis has length 1; JAX clamps a static index 1 to 0)
        grad = jnp.take_along_axis(cols, near[:, None], axis=0)[0]  # pragma: no mutate
    return Switch(pick(dists), rate, pick(alts), time, grad=grad)


def _same_surface(a: Switch, b: Switch, shape: tuple) -> Any:
    """Where two switches are one surface: the same distance and (when carried) the same
    rate of approach along the direction, as for ``x < 0`` and ``x >= 0``; two surfaces
    that happen to be equally far (``x < -1`` and ``x < 1`` at 0) approach at different
    rates along a generic direction."""
    same = jnp.broadcast_to(a.dist, shape) == jnp.broadcast_to(b.dist, shape)
    if a.rate is not None and b.rate is not None:
        same = same & (jnp.broadcast_to(a.rate, shape) == jnp.broadcast_to(b.rate, shape))
    return same


def _reduction_switch(interp, eqn, v: Val, out) -> Switch | None:
    """A reduction or scan over a short axis (e.g. ``argmax`` over stacked conditions, as in
    ``jnp.select``): each element of the axis is flipped across its switch in turn; the
    nearest one whose flip changes the result decides."""
    name = eqn.primitive.name
    sw = v.sw
    assert sw is not None
    x = jnp.asarray(v.p)
    axes = tuple(eqn.params["axes"]) if "axes" in eqn.params else (eqn.params["axis"],)
    axes = tuple(a % x.ndim for a in axes)
    n = int(np.prod([x.shape[a] for a in axes], dtype=int))
    keep = name in _SCANS
    if sw.rate is None and interp.n_ld:
        return None
    # (at the limit either way is right: flipped one by one, or the nearest surface)
    if n > _FLIP_LIMIT:  # pragma: no mutate
        if name == "cumsum":
            return _long_cumsum_switch(interp, eqn, x, sw, axes[0], out)
        # (other long scans: listed as an "unknown" site by :func:`discrete`)
        return None if keep else _nearest_flip(eqn, x, sw, axes, out)
    dist = jnp.broadcast_to(sw.dist, x.shape)
    rate = None if sw.rate is None else jnp.broadcast_to(sw.rate, x.shape)
    across = jnp.broadcast_to(sw.across, x.shape)
    time = None if sw.time is None else jnp.broadcast_to(sw.time, x.shape)
    best_d = jnp.full(out.shape, jnp.inf, interp.wide)
    best_t = jnp.full(out.shape, jnp.inf, interp.wide)
    best_r = jnp.zeros(out.shape, interp.wide)
    best_a = out
    grad = None if sw.grad is None else bcast_block(jnp.asarray(sw.grad, interp.wide), x.shape)
    best_g: Any = None if grad is None else jnp.zeros((grad.shape[0], *out.shape), interp.wide)
    for idx in itertools.product(*[range(x.shape[a]) for a in axes]):
        hot = jnp.ones((), bool)
        for a, i in zip(axes, idx):
            shape = [1] * x.ndim
            shape[a] = x.shape[a]
            hot = hot & (jnp.arange(x.shape[a]) == i).reshape(shape)
        # every element on the same switching surface crosses with this one
        group = hot | (dist == jnp.sum(jnp.where(hot, dist, 0), axis=axes, keepdims=True))
        if rate is not None:
            group = group & (hot | (rate == jnp.sum(jnp.where(hot, rate, 0), axes, keepdims=True)))
        if grad is not None:  # the same tangent in every column, not along the first only
            cols = tuple(a + 1 for a in axes)
            own = jnp.sum(jnp.where(hot[None], grad, 0), axis=cols, keepdims=True)
            group = group & (hot | jnp.all(grad == own, axis=0))
        alt = bind(eqn, [jnp.where(group, across, x)])[0]
        changed = alt != out
        if rate is None:
            # without tangents two tied surfaces cannot be told apart (v1 > 0 and v2 > 0
            # at 0, where the first true one is read): a tied element flipped alone counts
            # too (a shared surface, x > 0 beside x <= 0, is tied there all the same)
            alone = bind(eqn, [jnp.where(hot, across, x)])[0]
            tie = jnp.sum(jnp.where(hot, dist, 0), axis=axes, keepdims=keep) == 0
            alt = jnp.where(changed, alt, alone)
            changed = changed | (jnp.broadcast_to(tie, out.shape) & (alone != out))

        def at(field: Any, hot: Any = hot) -> Any:
            picked = jnp.sum(jnp.where(hot, field, 0), axis=axes, keepdims=keep)
            return jnp.broadcast_to(picked, out.shape)

        d_j = jnp.where(changed, at(dist), jnp.inf)
        better = d_j < best_d
        best_d = jnp.where(better, d_j, best_d)
        if rate is not None:
            best_r = jnp.where(better, at(rate), best_r)
        best_a = jnp.where(better, alt, best_a)
        if grad is not None:
            g_j = jnp.sum(jnp.where(hot[None], grad, 0), axis=cols, keepdims=keep)
            best_g = jnp.where(better[None], jnp.broadcast_to(g_j, best_g.shape), best_g)
        if time is not None:
            best_t = jnp.minimum(best_t, jnp.where(changed, at(time), jnp.inf))
    return Switch(
        best_d,
        None if rate is None else best_r,
        best_a,
        None if time is None else best_t,
        grad=best_g,
    )


def _long_cumsum_switch(interp, eqn, x, sw: Switch, axis: int, out) -> Switch:
    """A cumulative sum over more than :data:`_FLIP_LIMIT` elements (``cumsum(x > c)``):
    each result switches where the nearest of the elements it sums does (those before it,
    or after it for a reversed sum) whose flip changes the sum, by that element's change.
    Elements on one surface cross together; only the first one's change is counted, so
    the value across may differ from the truth (elements crossing in opposite directions
    cancel); its distance is never later."""
    wide = interp.wide
    delta = (jnp.broadcast_to(sw.across, x.shape) - x).astype(out.dtype)
    # (an element whose flip changes nothing is no candidate: a farther one that does
    # must be found, as for (x > 0) & (y > 0) at x = 0, y = -1)
    dist = jnp.where(delta != 0, jnp.broadcast_to(sw.dist, x.shape).astype(wide), jnp.inf)
    rate = jnp.zeros(x.shape, wide) if sw.rate is None else jnp.broadcast_to(sw.rate, x.shape)

    def nearer(a: Any, b: Any) -> Any:  # the prefix's nearest element (the first at a tie)
        take_b = b[0] < a[0]
        return tuple(jnp.where(take_b, u, v) for u, v in zip(b, a))

    reverse = bool(eqn.params.get("reverse", False))
    d, r, dl = lax.associative_scan(
        nearer, (dist, rate.astype(wide), delta), reverse=reverse, axis=axis
    )
    time = None
    if sw.time is not None:
        time = lax.cummin(jnp.broadcast_to(sw.time, x.shape).astype(wide), axis, reverse)
    moves = (dl != 0) & jnp.isfinite(d)
    return Switch(
        jnp.where(moves, d, jnp.inf),
        None if sw.rate is None else jnp.where(moves, r, 0),
        out + jnp.where(moves, dl, 0).astype(out.dtype),
        time,
    )


def _nearest_flip(eqn, x, sw: Switch, axes: tuple, out) -> Switch:
    """A reduction over more than :data:`_FLIP_LIMIT` elements: per result, the nearest
    switching surface is flipped (every element on it crosses together), and if that
    changes nothing, every element at that distance (surfaces approaching at other rates
    too, as two elements tied at once). Where a flip changes the result, its distance and
    value are the switch's: exact for a count (``jnp.sum(x > c)``), whose every flip
    changes it; elsewhere (``any``, ``max``) a farther flip might, and the switch is not
    traced. The first crossing (``time``) is the earliest of every element's: a lower
    bound where not every crossing changes the result, never later than the truth."""
    rest = [a for a in range(x.ndim) if a not in axes]
    order = (*rest, *axes)
    lead = tuple(x.shape[a] for a in rest)

    def flat(v: Any) -> Any:  # (*rest, reduced elements)
        return jnp.transpose(jnp.broadcast_to(v, x.shape), order).reshape((*lead, -1))

    def unflat(v: Any) -> Any:
        back = tuple(int(i) for i in np.argsort(order))
        return jnp.transpose(v.reshape([x.shape[a] for a in order]), back)

    dist = flat(sw.dist)
    j = jnp.argmin(dist, axis=-1)[..., None]
    near = jnp.take_along_axis(dist, j, axis=-1)
    group = dist == near
    rate = None
    if sw.rate is not None:
        rates = flat(sw.rate)
        rate = jnp.take_along_axis(rates, j, axis=-1)
        group = group & (rates == rate)
    across = jnp.broadcast_to(sw.across, x.shape)
    alt = bind(eqn, [jnp.where(unflat(group), across, x)])[0]
    if rate is not None:  # every surface at that distance
        level = bind(eqn, [jnp.where(unflat(dist == near), across, x)])[0]
        alt = jnp.where(alt != out, alt, level)
    # (near has a last axis of length 1: JAX clamps any index to it)
    changed = (alt != out) & jnp.isfinite(near[..., 0])  # pragma: no mutate
    time = None if sw.time is None else jnp.min(flat(sw.time), axis=-1)
    # (near and rate have a last axis of length 1: JAX clamps any index to it)
    return Switch(
        jnp.where(changed, near[..., 0], jnp.inf),  # pragma: no mutate
        None if rate is None else jnp.where(changed, rate[..., 0], 0),  # pragma: no mutate
        jnp.where(changed, alt, out),
        time,
    )


# ------------------------------------------------------------------- comparisons

_LEX_TEST = {
    "gt": lambda s: s > 0,
    "ge": lambda s: s >= 0,
    "lt": lambda s: s < 0,
    "le": lambda s: s <= 0,
    "eq": lambda s: s == 0,
    "ne": lambda s: s != 0,
    # the total-order comparisons (jnp.searchsorted): the same away from -0/+0 and NaN
    "lt_to": lambda s: s < 0,
    "le_to": lambda s: s <= 0,
    "eq_to": lambda s: s == 0,
}


def _nonfinite_literal(var: Any) -> bool:
    if not isinstance(var, Literal):
        return False
    try:
        return not bool(np.all(np.isfinite(np.asarray(var.val))))
    except TypeError:
        return False


@rule("gt", "ge", "lt", "le", "eq", "ne", "lt_to", "le_to", "eq_to")
def compare(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """A float comparison is a switch at ``a == b``. ``x != x`` (NaN tests) and comparisons
    with an infinite constant (``nan_to_num``) switch at no finite point."""
    a, b = ins
    if not (is_float(a.p) or is_float(b.p)):  # pragma: no mutate (lax compares one dtype)
        return discrete(interp, eqn, ins, rec)
    (out,) = bind(eqn, [a.p, b.p])
    x, y = eqn.invars
    same = x is y and not isinstance(x, Literal)
    if same or _nonfinite_literal(x) or _nonfinite_literal(y):
        return [Val(out)]
    if jnp.iscomplexobj(a.p) or jnp.iscomplexobj(b.p):  # pragma: no mutate (one dtype)
        return [Val(out)]
    if all(v.flat or v.const for v in ins):
        # piecewise-constant operands (``floor(x) == 2``; ``sign(b) != sign(rem(x, b))`` in
        # ``x // b``): equal on whole pieces, so ``a == b`` is no tie; the test changes only
        # where an operand switches, as an integer comparison does
        return discrete(interp, eqn, ins, rec)
    shape = np.shape(out)
    m = interp.wide_of(a.p, shape) - interp.wide_of(b.p, shape)
    t = None
    if a.t is not None or b.t is not None:
        t = interp.t_of(a, shape, interp.wide) - interp.t_of(b, shape, interp.wide)
    test = _LEX_TEST[eqn.primitive.name]
    lex = test(interp.lex_sign(m, t)) if interp.n_ld else None
    # (without operand lex values ml equals m and nothing changes: ``or`` reads alike)
    if lex is not None and (a.lex is not None or b.lex is not None):  # pragma: no mutate
        # an operand in another piece at the perturbed point (a tied jump upstream)
        ml = interp.wide_of(a.lex if a.lex is not None else a.p, shape) - interp.wide_of(
            b.lex if b.lex is not None else b.p, shape
        )
        lex = jnp.where(ml != m, test(jnp.sign(ml)), lex)
        if t is not None and (a.nl or b.nl):
            undecided(interp, eqn, m, t, rec, moved=ml != m)
    elif lex is not None and t is not None and (a.nl or b.nl):
        undecided(interp, eqn, m, t, rec)
    rate = interp.rate(m, t)
    # ``x == c``: true at an instant of a moving point (the guard of ``sin(x) / x``, the
    # -0 canonicalisation in ``jnp.searchsorted``), unlike ``floor(x) == 2`` (a plateau)
    plateau = any(v.sw is not None or v.lex is not None for v in ins)
    point = eqn.primitive.name in ("eq", "ne", "eq_to") and not plateau
    sw = Switch(jnp.abs(m), rate, ~out, crossing_time(jnp.abs(m), rate), point, _grad(interp, t))
    return [Val(out, None, lex, sw)]


def _grad(interp: Interpreter, t: Any) -> Any:
    """A switching quantity's tangent in the lexicographic columns, kept for
    :func:`transverse` (which needs two columns or more)."""
    return t[: interp.n_ld] if t is not None and interp.n_ld >= 2 else None


def undecided(interp: Interpreter, eqn: Any, m: Any, t: Any, rec: Recorder, moved=None):
    """Records the elements of a nonlinear switching quantity ``m`` (see :func:`curves`)
    that are tied and whose tangent is 0 in every lexicographic column (and whose operands
    did not move to another piece upstream: ``moved``): ``x * x > 0`` at 0. Derivatives do
    not tell which side holds around the point (``x * x`` is positive on both sides,
    ``x * x - x * x`` on neither), so the side taken, the tie's own, may be wrong: such a
    site is reported (kind ``"undecided"``, listed only where it has such elements). A
    piecewise-linear quantity with a zero tangent is constant along the directions: its
    tie's own side is right."""
    cols = t[: interp.n_ld]
    open_ = (m == 0) & jnp.all(cols == 0, axis=0)
    if moved is not None:
        open_ = open_ & ~moved
    dist = jnp.where(open_, 0.0, 1.0).astype(interp.wide)
    rec.add(eqn, eqn.primitive.name, "undecided", switch_stats(dist, None, interp.wide))


def sign_bit(interp: Interpreter, x: Val, out: Any) -> Val:
    """``jnp.signbit(x)`` (a bit test, so no comparison in the jaxpr): a switch at
    ``x = 0`` like ``x < 0``, whose side at a tie is the direction's."""
    xw = interp.wide_of(x.p)
    t = None if x.t is None else x.t.astype(interp.wide)
    lex = None
    if interp.n_ld:
        s = interp.lex_sign(xw, t)
        lex = jnp.where(s != 0, s < 0, out)  # pragma: no mutate (s is -1 or 1 where read)
        if x.lex is not None:
            lex = jnp.where(x.lex != x.p, jnp.signbit(x.lex), lex)
    rate = interp.rate(xw, t)
    sw = Switch(jnp.abs(xw), rate, ~out, crossing_time(jnp.abs(xw), rate), grad=_grad(interp, t))
    return Val(out, None, lex, sw)


# ------------------------------------------------------------------------ selects


def _same_cases(cases: Sequence[Val]) -> bool:
    keys = {c.key for c in cases}
    return len(keys) == 1 and None not in keys


def _select_t(interp, idx, cases, shape):
    if all(c.t is None for c in cases) or interp.ncols == 0:
        return None
    cols = [interp.t_of(c, shape) for c in cases]
    idx = jnp.broadcast_to(idx, shape) if np.ndim(idx) else idx
    return jax.vmap(lambda *cs: lax.select_n(idx, *cs))(*cols)


def jump_evidence(interp, sw: Switch, here, there, t_here, t_there, shape) -> Any:
    """How far apart the two sides of a switch are *at* the switching surface, relative to
    their size: ``here``/``there`` are the outputs on this side and across, extrapolated to
    the surface along the first direction (0 for continuous switches such as
    ``where(x > 0, x, 0)``; NaN sides give no evidence)."""
    wide = interp.wide
    u = jnp.broadcast_to(jnp.asarray(here).astype(wide), shape)
    v = jnp.broadcast_to(jnp.asarray(there).astype(wide), shape)
    dist = jnp.broadcast_to(sw.dist, shape).astype(wide)
    gap = v - u
    scale = jnp.abs(u) + jnp.abs(v) + jnp.finfo(wide).tiny
    # no evidence: 0 (a tiny positive fill would read the same, far below every threshold)
    none = 0.0  # pragma: no mutate
    ev = jnp.where(dist == 0, jnp.abs(gap), none)
    if sw.rate is not None:
        rate = jnp.broadcast_to(sw.rate, shape).astype(wide)
        # sides without a tangent (constants) do not move: the gap is the same at the surface
        zero = jnp.zeros(shape, wide)
        dgap = (zero if t_there is None else t_there[0]) - (zero if t_here is None else t_here[0])
        dgap = dgap.astype(wide)
        moving = rate != 0
        # the fill is overwritten below wherever not moving
        surface = gap - masked_div(dist * dgap, rate, moving, 0.0)  # pragma: no mutate
        ev = jnp.where(dist == 0, ev, jnp.where(moving, jnp.abs(surface), none))
    ev = jnp.where(jnp.isfinite(ev), ev / scale, 0.0)
    # At a tie the gap is measured, not extrapolated: only the two sides' rounding can make
    # a continuous switch's gap nonzero, so a relative gap above tie_threshold is a jump;
    # scaled so that one threshold (select_threshold) serves both.
    dtype = jnp.result_type(here)
    boost = select_threshold(dtype) / tie_threshold(dtype)
    ev = jnp.where(dist == 0, ev * boost, ev)
    return jnp.max(ev, initial=0.0)  # pragma: no mutate (ev >= 0: any tiny initial reads alike)


def transverse(interp, sw: Switch, t_here, t_there, shape) -> Any:
    """Where a tied switch's two sides agree at the point but part along its switching
    surface: the difference of their tangents (over the lexicographic columns) is not
    parallel to the switching quantity's tangent ``grad`` (the surface's normal where the
    quantity is smooth), so along the surface the sides differ to first order and ``f``
    jumps across it at points arbitrarily near. ``where(v[1] > 0, 2 * v[0], v[0])`` at 0
    is no kink: it jumps across ``v[1] = 0`` wherever ``v[0] != 0``. Returns, per element,
    the part of the tangent difference orthogonal to ``grad`` relative to the tangents'
    size (0 where untied), to be read against :func:`tie_threshold` (the tangents are
    measured at the point, as a tie's gap is: well-conditioned formulas whose difference
    is parallel round to well below it); None with fewer than two columns or no tangent
    of the quantity (every difference is then parallel to a number)."""
    k = interp.n_ld
    if sw.grad is None or k < 2:
        return None
    wide = interp.wide
    zero = jnp.zeros((k, *shape), wide)
    a = zero if t_here is None else t_here[:k].astype(wide)
    b = zero if t_there is None else t_there[:k].astype(wide)
    g = bcast_block(jnp.asarray(sw.grad, wide), shape)
    return parting(wide, g, a, b, jnp.broadcast_to(sw.dist, shape) == 0)


def record_transverse(interp, eqn, name: str, off: Any, dtype: Any, rec: Recorder) -> None:
    """Records where :func:`parting`'s measure ``off`` exceeds :func:`tie_threshold` as an
    internal site of kind ``"transverse"`` (read by ``kinks.transverse_jumps``)."""
    # (an off-normal part of exactly 256 ulps: ``>=`` reads alike)
    cut = jnp.where(off > tie_threshold(dtype), 0.0, 1.0)  # pragma: no mutate
    rec.add(eqn, name, "transverse", switch_stats(cut, None, interp.wide))


def parting(wide: Any, g: Any, a: Any, b: Any, tied: Any) -> Any:
    """:func:`transverse`'s measure: per element (columns on the first axis), the part
    of ``b - a`` orthogonal to ``g`` relative to ``|a| + |b|``, where ``tied`` and ``g``
    is not zero (0 elsewhere)."""
    a, b, g = a.astype(wide), b.astype(wide), g.astype(wide)
    diff = b - a
    gg = jnp.sum(g * g, axis=0)
    # (at gg == 0 the masked quotient would be 0/0: NaN, dropped below as not finite, so
    # ``>=`` reads alike)
    moving = gg > 0  # pragma: no mutate
    num = jnp.sum(diff * g, axis=0)
    along = masked_div(num, gg, moving, 0.0)  # pragma: no mutate (g = 0 where filled)
    off = jnp.max(jnp.abs(diff - along * g), axis=0)
    size = jnp.max(jnp.abs(a), axis=0) + jnp.max(jnp.abs(b), axis=0) + jnp.finfo(wide).tiny
    return jnp.where(tied & moving & jnp.isfinite(off), off / size, 0.0)


def select_threshold(dtype: Any) -> float:
    """Relative gap above which a switch is a jump: 1e-3, or 32 ulps in low precision. (A
    gap extrapolated to the switching surface from the point carries the extrapolation's
    error; at a tie, :func:`tie_threshold` applies.)"""
    return max(1e-3, 32 * float(jnp.finfo(dtype).eps))


def tie_threshold(dtype: Any) -> float:
    """Relative gap above which a switch *at a tie* (its two sides evaluated at the point
    itself) is a jump: 256 ulps (2**-44 in float64, 2**-15 in float32: no rounding of two
    well-conditioned formulas that agree there differs that much), at most the square
    root of the dtype's epsilon and :func:`select_threshold` (16-bit precisions).
    ``where(x > 1000, x + 1, x)`` at 1000 (a relative gap of 5e-4) and
    ``where(x > 100, x + 0.01, x)`` at 100 (5e-5) are jumps in float64 and float32,
    below the extrapolated gaps' threshold."""
    eps = float(jnp.finfo(dtype).eps)
    return min(TIE_ULPS * eps, math.sqrt(eps), select_threshold(dtype))


TIE_ULPS = 256.0
""":func:`tie_threshold` in units of the dtype's epsilon."""


@rule("select_n")
def select(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``select_n(which, *cases)``: the primal from ``which``, the tangent from ``which``
    at the perturbed point. A site when ``which`` comes from float comparisons (unless
    every case is the same value, as in ``jnp.piecewise``'s stop-gradient routing)."""
    which, cases = ins[0], ins[1:]
    (out,) = bind(eqn, [v.p for v in ins])
    if not is_float(out):
        if _same_cases(cases):  # one value whichever case: no switch to carry
            return [Val(out)]
        return discrete(interp, eqn, ins, rec)
    shape = np.shape(out)
    idx_lex = which.lex if which.lex is not None else which.p
    t = _select_t(interp, idx_lex, cases, shape)
    sw = which.sw
    if sw is not None and not _same_cases(cases):
        prim = [c.p for c in cases]
        there = lax.select_n(sw.across, *[jnp.broadcast_to(c, shape) for c in prim])
        t_here = _select_t(interp, which.p, cases, shape)
        t_there = _select_t(interp, sw.across, cases, shape)
        ev = jump_evidence(interp, sw, out, there, t_here, t_there, shape)
        off = transverse(interp, sw, t_here, t_there, shape)
        if off is not None:
            record_transverse(interp, eqn, "select_n", off, out.dtype, rec)
        leaving = jnp.sum(jnp.broadcast_to(idx_lex != which.p, np.shape(sw.dist)))
        st = switch_stats(jnp.broadcast_to(sw.dist, shape), None, interp.wide)
        st = st._replace(
            evidence=ev,
            size=jnp.int32(int(np.prod(shape))),
            radius=sw.radius(shape, interp.wide),
        )
        kind = "point" if sw.point else "select"
        rec.add(eqn, "select_n", kind, _with_leaving(st, leaving), select_threshold(out.dtype))
    lex = None
    if interp.n_ld and (which.lex is not None or any(c.lex is not None for c in cases)):
        lex = lex_values(interp, eqn, [Val(which.p, None, which.lex), *cases], [out])[0]
    return [Val(out, t, lex)]


def _with_leaving(st: SiteStats, leaving: Any) -> SiteStats:
    return st._replace(leaving=jnp.asarray(leaving, jnp.int32))


@rule("convert_element_type")
def convert(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """Float to float is smooth; a comparison or integer turned into a float is a step
    (a jump site where it depends on a float comparison); float to integer truncates."""
    (x,) = ins
    (out,) = bind(eqn, [x.p])
    src, dst = is_float(x.p), is_float(out)
    if src and dst:
        # a staircase at the inputs' resolution (where tangents tell, only of a moving
        # value: a constant or the data cast to bfloat16 is no site)
        if _coarser(interp, x.p, out) and (interp.ncols == 0 or x.t is not None):
            return unknown(interp, eqn, ins, rec)
        return smooth(interp, eqn, ins, rec)
    if dst:
        if x.sw is not None:
            shape = np.shape(out)
            st = switch_stats(jnp.broadcast_to(x.sw.dist, shape), None, interp.wide)
            st = st._replace(radius=x.sw.radius(shape, interp.wide))
            # no lex only without directions, where no radius is reported: equivalent
            leaving = 0 if x.lex is None else jnp.sum(x.lex != x.p)  # pragma: no mutate
            rec.add(eqn, "step", "jump", _with_leaving(st, leaving))
            sw = x.sw._replace(across=bind(eqn, [x.sw.across])[0])
            return [Val(out, None, None if x.lex is None else bind(eqn, [x.lex])[0], sw)]
        return [Val(out, None, None if x.lex is None else bind(eqn, [x.lex])[0])]
    if src:
        return [_truncation(interp, eqn, x, out, rec)]
    return discrete(interp, eqn, ins, rec)


def _coarser(interp: Interpreter, x: Any, out: Any) -> bool:
    """Whether a float-to-float cast rounds to a precision coarser than both its operand's
    and every float input's: ``x.astype(bfloat16)`` of a float32 ``x`` is constant between
    bfloat16 values (derivative 0, where JAX's is 1), like ``reduce_precision`` below its
    operand's precision. Casts back to the inputs' own precision (float16 ``mean``
    accumulating in float32) round as any arithmetic does."""
    if interp.input_eps is None:
        return False
    eps = lambda v: float(jnp.finfo(jnp.result_type(v)).eps)
    return eps(out) > max(eps(x), interp.input_eps)


def _truncation(interp: Interpreter, eqn: Any, x: Val, out: Any, rec: Recorder) -> Val:
    """A float turned into an integer (truncation toward zero: jumps at every nonzero
    integer) or a boolean (``x != 0``: a switch at 0). The switch fields describe the
    nearest jump; ``time`` is the first crossing along the direction, which need not be
    the nearest (from 0.3 going up, truncation jumps at 1, not at the nearer 0); ``lex``
    is the value just along the direction (a tie left toward zero jumps at once)."""
    if x.sw is not None:  # a piecewise-constant float (``floor(x)``): its own jumps
        sw = x.sw._replace(across=bind(eqn, [x.sw.across])[0])
        # (the operand's lex, which the switches' rules set wherever a time is, overrides)
        lex = (
            None if sw.time is None else jnp.where(sw.time == 0, sw.across, out)
        )  # pragma: no mutate
        if x.lex is not None:  # the entered piece's value, where the operand knows it
            lex = bind(eqn, [x.lex])[0]
        return Val(out, None, lex, sw)
    xw = interp.wide_of(x.p)
    t = None if x.t is None else x.t.astype(interp.wide)
    if out.dtype == jnp.bool_:
        m = xw
        across: Any = ~out
    else:
        near = jnp.round(xw)
        # nearest jump (at 0 exactly both sides are 1 away: ``>`` reads alike)
        toward = jnp.where(xw >= 0, 1.0, -1.0)  # pragma: no mutate
        m = xw - jnp.where(near == 0, toward, near)
        side = jnp.where(m == 0, -jnp.sign(xw), -jnp.sign(m))  # the other side of it
        across = jnp.trunc(xw - m + 0.5 * side).astype(out.dtype)
    dist, rate = jnp.abs(m), interp.rate(m, t)
    if rate is None:  # (a piecewise constant operand may still have moved upstream)
        lex0 = None if x.lex is None else bind(eqn, [x.lex])[0]
        return Val(out, None, lex0, Switch(dist, None, across, None))
    if x.nl and interp.n_ld:  # (x * x).astype(int) at 0 (t: rate is not None)
        undecided(interp, eqn, m, t, rec, None if x.lex is None else x.lex != x.p)
    s = interp.lex_sign(jnp.zeros_like(xw), t)
    # (s == 0 keeps ``out`` below whatever the step: ``>=`` reads alike)
    step = jnp.where(s > 0, jnp.inf, -jnp.inf).astype(jnp.asarray(x.p).dtype)  # pragma: no mutate
    # the next float along the direction; from 0 a quarter instead (the next float is a
    # subnormal, which XLA on CPU flushes back to 0)
    xp = jnp.asarray(x.p)
    # (from 0 any probe inside (-1, 1) truncates to 0: 0.25 or 0.5 read alike)
    quarter = 0.25  # pragma: no mutate
    probe = jnp.where(xp == 0, quarter * s.astype(xp.dtype), jnp.nextafter(xp, step))
    lex = jnp.where(s == 0, out, bind(eqn, [probe])[0])
    if x.lex is not None:  # the operand itself moved to another piece (a tied jump upstream)
        lex = jnp.where(x.lex != x.p, bind(eqn, [x.lex])[0], lex)
    if out.dtype == jnp.bool_:
        time = crossing_time(dist, rate)
    else:
        assert t is not None  # a rate needs a tangent
        dx = t[0]  # pragma: no mutate (radius mode carries one column; index 1 clamps to 0)
        # (dx == 0 never crosses, masked below, whichever target it gets)
        target = jnp.where(dx > 0, jnp.floor(xw) + 1, jnp.ceil(xw) - 1)  # pragma: no mutate
        target = jnp.where(target == 0, target + jnp.sign(dx), target)  # 0 is no jump
        # (a leaving jump's radius is read as 0 by sites_of: any tiny time reads alike)
        time = jnp.where(lex != out, 0.0, masked_div(target - xw, dx, dx != 0))  # pragma: no mutate
    return Val(out, None, lex, Switch(dist, rate, across, time))


@rule("stop_gradient")
def stop_gradient(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """Zero tangent; the probe column (when carried) is seeded with ones here, so that the
    output's probe says how much the output depends on stop-gradient values."""
    (x,) = ins
    t = x.t if interp.values else None
    if interp.probe and is_float(x.p):
        t = (t if t is not None else interp.zeros_t(x.p)).at[-1].set(1)
    # the value itself goes through stop_gradient too: JAX's AD through a faithful
    # evaluation (certified_grad) is then AD of the program
    p = lax.stop_gradient(x.p) if is_float(x.p) else x.p
    return [Val(p, t, x.lex, x.sw, x.key)]


# ----------------------------------------------------- nonsmooth elementwise primitives


def lex_choose(interp, a: Any, ta: Any, b: Any, tb: Any, sign: float) -> Any:
    """The tangent of ``max`` (sign 1) or ``min`` (sign -1) of ``a`` and ``b``: ``ta``
    where ``sign · fsign(a - b, ta - tb) >= 0``."""
    m = a.astype(interp.wide) - b.astype(interp.wide)
    s = interp.lex_sign(m, (ta - tb).astype(interp.wide))
    # s == 0 only on a complete tie, where ta and tb agree in every lexicographic column:
    # ``>`` or ``>= 1`` would pick the other, equal, tangent
    return jnp.where((sign * s >= 0)[None], ta, tb)  # pragma: no mutate


@rule("max", "min")
def maxmin(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    a, b = ins
    (out,) = bind(eqn, [a.p, b.p])
    if not is_float(out):
        return discrete(interp, eqn, ins, rec)
    shape = np.shape(out)
    ap, bp = jnp.broadcast_to(a.p, shape), jnp.broadcast_to(b.p, shape)
    m = ap.astype(interp.wide) - bp.astype(interp.wide)
    # an operand in another piece at the perturbed point (a tied jump upstream, as
    # clip(floor(x), ...) at an integer): the choice and the value are that piece's
    al, bl = (jnp.broadcast_to(_lex_or_p(v), shape) for v in (a, b))
    t = dm = None
    if a.t is not None or b.t is not None:
        ta, tb = interp.t_of(a, shape), interp.t_of(b, shape)
        dm = (ta - tb).astype(interp.wide)
        sign = 1.0 if eqn.primitive.name == "max" else -1.0  # pragma: no mutate (a sign)
        t = lex_choose(interp, al, ta, bl, tb, sign)
    rec.add(
        eqn, eqn.primitive.name, "kink", switch_stats(jnp.abs(m), interp.rate(m, dm), interp.wide)
    )
    lex = None if a.lex is None and b.lex is None else bind(eqn, [al, bl])[0]
    return [Val(out, t, lex, _plateau_switch(interp, eqn, (a, b), out) if t is None else None)]


def _plateau_switch(interp, eqn: Any, ins: Sequence[Val], out: Any) -> Switch | None:
    """The switch of ``max``/``min``/``clamp`` of piecewise-constant operands (``clip(
    floor(x), 0, 2)``), as for any elementwise function of them: the operand nearest to
    its switch decides, and the result across it is computed with that operand across
    (an integer conversion of the result then jumps only where an operand does, not at
    every integer it equals)."""
    if all(v.sw is None for v in ins):
        return None
    return _elementwise_switch(interp, eqn, list(ins), jnp.asarray(out))


def _lex_or_p(v: Val) -> Any:
    """``v``'s value in the piece the perturbed point lies in."""
    return v.p if v.lex is None else v.lex


@rule("clamp")
def clamp(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``clamp(lo, x, hi) = min(max(x, lo), hi)``: two switches per element, ``x = lo``
    and ``max(x, lo) = hi`` (``lo = hi`` where ``x`` is below both)."""
    lo, x, hi = ins
    (out,) = bind(eqn, [lo.p, x.p, hi.p])
    if not is_float(out):
        return discrete(interp, eqn, ins, rec)
    shape = np.shape(out)
    lp, xp, hp = (jnp.broadcast_to(v.p, shape) for v in (lo, x, hi))
    ll, xl, hl = (jnp.broadcast_to(_lex_or_p(v), shape) for v in (lo, x, hi))
    t = None
    d1 = d2 = None
    if any(v.t is not None for v in ins):
        tl, tx, th = (interp.t_of(v, shape) for v in (lo, x, hi))
        up, down = 1.0, -1.0  # pragma: no mutate (only their signs are read)
        t1 = lex_choose(interp, xl, tx, ll, tl, up)
        t = lex_choose(interp, jnp.maximum(xl, ll), t1, hl, th, down)
        # the second switch compares max(x, lo) with hi: lo with hi where x < lo
        d1, d2 = (tx - tl).astype(interp.wide), (t1 - th).astype(interp.wide)
    m1 = xp.astype(interp.wide) - lp.astype(interp.wide)
    m2 = jnp.maximum(xp, lp).astype(interp.wide) - hp.astype(interp.wide)
    s1 = switch_stats(jnp.abs(m1), interp.rate(m1, d1), interp.wide)
    s2 = switch_stats(jnp.abs(m2), interp.rate(m2, d2), interp.wide)
    rec.add(eqn, "clamp", "kink", s1.merge(s2)._replace(size=s1.size))
    moved = any(v.lex is not None for v in ins)
    sw = _plateau_switch(interp, eqn, ins, out) if t is None else None
    return [Val(out, t, bind(eqn, [ll, xl, hl])[0] if moved else None, sw)]


@rule("cbrt")
def cube_root(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """Smooth except at 0, where its slope is infinite: a kink site (see :func:`_root`)."""
    outs = smooth(interp, eqn, ins, rec)
    _root(interp, eqn, ins[0], rec)
    return outs


def _root(interp: Interpreter, eqn: Any, x: Val, rec: Recorder) -> None:
    """The kink of ``sqrt`` or ``cbrt`` of a real operand at 0, where the slope is infinite
    and compositions switch (``sqrt(x * x)`` is ``|x|``, a norm is nonsmooth at 0): the
    operand's distance to 0 and its rate (to first order, for the radius: no later than
    the truth when the operand is affine or a sum of squares of affine functions along
    the line, ``|a + t b|**2`` reaching 0 at ``|a| / |b|`` and estimated at half that). An
    operand that is provably positive has none."""
    if rec.positive and rec.positive[0]:
        return
    z = interp.wide_of(x.p)
    dz = None if x.t is None else x.t.astype(interp.wide)
    rec.add(
        eqn, eqn.primitive.name, "kink", switch_stats(jnp.abs(z), interp.rate(z, dz), interp.wide)
    )


@rule("log", "sqrt", "rsqrt")
def principal_branch(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """Smooth on real numbers where defined, except ``sqrt`` at 0 (a kink site, see
    :func:`_root`); on complex ones the principal branch jumps across the negative real
    axis (``imag(sqrt(z))``, ``imag(log(z))``): the same branch cut site as
    :func:`atan2`'s, with ``y = imag(z)`` and ``x = real(z)``."""
    outs = smooth(interp, eqn, ins, rec)
    (z,) = ins
    if eqn.primitive.name == "sqrt" and not jnp.iscomplexobj(z.p):
        _root(interp, eqn, z, rec)
    if jnp.iscomplexobj(z.p):
        im = None if z.t is None else jnp.imag(z.t)
        re = Val(jnp.real(z.p), None if z.t is None else jnp.real(z.t))
        _cut(interp, eqn, rec, Val(jnp.imag(z.p), im), re, np.shape(z.p))
    return outs


# The principal branches' cuts of inverse functions of a complex ``z = re + i im``, each
# as ``(y, x)`` with the cut at ``y = 0``, ``x <= 0`` (NumPy's and C99's conventions): the
# real axis beyond -1 (log1p), beyond +-1 (asin, acos, atanh), the imaginary axis beyond
# +-i (atan, asinh). ``y`` is the part of ``z`` whose tangent moves across the cut.
_CUTS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]] = {
    "log1p": (jnp.imag, lambda re, im: re + 1),
    "asin": (jnp.imag, lambda re, im: 1 - jnp.abs(re)),
    "acos": (jnp.imag, lambda re, im: 1 - jnp.abs(re)),
    "atanh": (jnp.imag, lambda re, im: 1 - jnp.abs(re)),
    "atan": (jnp.real, lambda re, im: 1 - jnp.abs(im)),
    "asinh": (jnp.real, lambda re, im: 1 - jnp.abs(im)),
}


@rule(*_CUTS)
def inverse_branch(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """Smooth on real numbers (where defined); on complex ones a jump across the principal
    branch's cut (:data:`_CUTS`), recorded as :func:`atan2`'s cut is."""
    outs = smooth(interp, eqn, ins, rec)
    (z,) = ins
    if jnp.iscomplexobj(z.p):
        take, side = _CUTS[eqn.primitive.name]
        re, im = jnp.real(z.p), jnp.imag(z.p)
        y, x = Val(take(z.p), None), Val(side(re, im))
        if z.t is not None:  # (the first column is the one radii read)
            dz = z.t[0]  # pragma: no mutate (the first column; index 1 clamps to 0)
            dx = jax.jvp(side, (re, im), (jnp.real(dz), jnp.imag(dz)))[1]
            y, x = y._replace(t=take(z.t)), x._replace(t=dx[None])
        _cut(interp, eqn, rec, y, x, np.shape(z.p))
    return outs


@rule("pow")
def power(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``z ** w`` is ``exp(w log z)``: for a complex base, the cut of ``log`` (none where
    ``w`` is a fixed integer, whose powers agree across it)."""
    outs = smooth(interp, eqn, ins, rec)
    z, w = ins
    if jnp.iscomplexobj(z.p):
        shape = np.shape(outs[0].p)
        wp = jnp.asarray(w.p)
        exempt = None
        if w.t is None:  # (a moving exponent is an integer at an instant only)
            exempt = jnp.broadcast_to(
                (jnp.imag(wp) == 0) & (jnp.real(wp) == jnp.round(jnp.real(wp))), shape
            )
        y = Val(jnp.imag(z.p), None if z.t is None else jnp.imag(z.t))
        x = Val(jnp.real(z.p), None if z.t is None else jnp.real(z.t))
        _cut(interp, eqn, rec, y, x, shape, exempt)
    return outs


def _cut(interp, eqn, rec: Recorder, y: Val, x: Val, shape, exempt: Any = None) -> None:
    """Records a branch cut along ``y = 0``, ``x <= 0`` (see :func:`atan2`), except where
    ``exempt``. A ``y`` that cannot move (a constant, or no tangent: ``jnp.angle`` of a
    real array is ``atan2(0, x)``) never crosses the cut; where it is 0, the element
    switches instead where ``x`` crosses 0, at the branch point (``jnp.angle(x)`` jumps from
    0 to pi there). So does a ``y`` that is 0 with a zero tangent in every column
    (``log(x + 0j)``; if ``y`` is nonlinear, such as ``(x - 1)**2``, a switch that may not
    be one), which also stays tied on the cut's line: a zero one-sided
    tangent cannot tell a ``y`` that never moves from ``-relu(-x)`` at 0, which moves the
    other way."""
    yw, xw = interp.wide_of(y.p, shape), interp.wide_of(x.p, shape)
    on_side = xw <= 0
    if exempt is not None:
        on_side = on_side & ~exempt
    ty = None if y.t is None else interp.t_of(y, shape, interp.wide)
    fixed = y.const or (interp.ncols > 0 and ty is None)
    dist = jnp.where(on_side & ~fixed, jnp.abs(yw), jnp.inf)
    rate = interp.rate(yw, ty)
    if rate is not None:  # (off the side the distance is inf: any rate reads alike)
        rate = jnp.where(on_side, rate, 0.0)  # pragma: no mutate
    st = switch_stats(dist, rate, interp.wide)
    # elements on the cut's line that only the branch point switches
    point = None
    if fixed:
        point = yw == 0
    elif ty is not None:  # (a nonlinear y: a conservative extra switch)
        # (no lexicographic column, as in no caller: every element on the line)
        point = (yw == 0) & jnp.all(ty[: interp.n_ld] == 0, axis=0)
    if point is not None:
        if exempt is not None:
            point = point & ~exempt
        tx = None if x.t is None else interp.t_of(x, shape, interp.wide)
        # (a tied element on the line is counted by the cut's own statistics already,
        # unless y is fixed)
        away = point if fixed else point & (xw != 0)
        pst = switch_stats(jnp.where(away, jnp.abs(xw), jnp.inf), interp.rate(xw, tx), interp.wide)
        if tx is not None and interp.n_ld:  # at the branch point: left at once
            leaves = point & (xw == 0) & (interp.lex_sign(xw, tx) != 0)
            pst = _with_leaving(pst, jnp.sum(leaves))
        st = st.merge(pst)._replace(size=st.size)
    if ty is not None and x.t is not None and not core_ties_only():
        # an element off the cut's side that reaches it by the time y crosses 0 (to first
        # order): from (1, -1/2) along (-2, 1), y = 0 at t = 1/2, where x = 0
        dx = interp.t_of(x, shape, interp.wide)[0]
        cross = crossing_time(jnp.abs(yw), interp.rate(yw, ty))
        reach = jnp.isfinite(cross) & (xw + jnp.where(jnp.isfinite(cross), cross, 0) * dx <= 0)
        if exempt is not None:
            reach = reach & ~exempt
        st = st._replace(radius=jnp.minimum(st.radius, jnp.min(jnp.where(reach, cross, jnp.inf))))
    if ty is not None and interp.n_ld:  # a tie the direction leaves: crossed at once
        leaves = on_side & (yw == 0) & (interp.lex_sign(yw, ty) != 0)
        st = _with_leaving(st, st.leaving + jnp.sum(leaves))
    rec.add(eqn, eqn.primitive.name, "cut", st)


@rule("atan2")
def atan2(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``atan2(y, x)`` is smooth except on its branch cut, ``y = 0`` with ``x <= 0``,
    where it jumps by 2 pi (and is undefined at the origin): a jump site, listed only
    where an element has ``x <= 0`` (its margin is ``|y|`` there)."""
    outs = smooth(interp, eqn, ins, rec)
    y, x = ins
    if is_float(outs[0].p):
        _cut(interp, eqn, rec, y, x, np.shape(outs[0].p))
    return outs


@rule("abs")
def abs_(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    (x,) = ins
    (out,) = bind(eqn, [x.p])
    if not is_float(out):
        return discrete(interp, eqn, ins, rec)
    z = jnp.asarray(x.p)
    wide = interp.wide
    t = None
    if rec.positive and rec.positive[0]:  # abs of a positive quantity: no switch
        return smooth(interp, eqn, ins, rec)
    if jnp.iscomplexobj(z):
        mag = jnp.abs(z).astype(wide)
        rate = None
        if x.t is not None:
            u = z
            if interp.n_ld:  # the first nonzero among z and the lexicographic columns
                cols = x.t[: interp.n_ld]
                first = jnp.argmax(cols != 0, axis=0)
                # (a length-1 axis: JAX clamps any index to it)
                picked = jnp.take_along_axis(cols, first[None], axis=0)[0]  # pragma: no mutate
                u = jnp.where(z != 0, z, picked)
            au = jnp.abs(u)
            t = masked_div(jnp.real(jnp.conj(u)[None] * x.t), au, au > 0, 0.0)
            t = t.astype(out.dtype)
            # (rates are read from one-direction analyses only, whose x.t has one column)
            r0 = masked_div(jnp.real(jnp.conj(z) * x.t[0]), mag, mag > 0, 0.0)  # pragma: no mutate
            rate = r0.astype(wide) if interp.n_ld else None
        rec.add(eqn, "abs", "kink", switch_stats(mag, rate, wide))
        return [Val(out, t)]
    zl = jnp.asarray(_lex_or_p(x))  # the piece the perturbed point lies in decides
    if x.t is not None:
        t = interp.lex_sign(zl, x.t).astype(z.dtype)[None] * x.t
    zw = z.astype(wide)
    dz = None if x.t is None else x.t.astype(wide)
    rec.add(eqn, "abs", "kink", switch_stats(jnp.abs(zw), interp.rate(zw, dz), wide))
    return [Val(out, t, None if x.lex is None else jnp.abs(zl))]


# ------------------------------------------------------------------------- jumps


def periodic_stats(
    interp, q: Any, tq: Any, fn: Any, offset: float, skip_zero=False, with_switch=False
) -> Any:
    """Statistics of a function with jumps at every integer + ``offset`` (``floor`` and
    ``ceil``: 0, ``round``: 0.5; ``rem``: the quotient's nonzero integers). The radius is
    the distance to the next jump along the direction; a tied element that the
    direction moves into the other piece at once (``floor`` at an integer, going down)
    marks the site as switching immediately. With ``with_switch``, also the
    :class:`Switch` of the (piecewise-constant) result: its nearest jump, the value
    across it, and the first crossing along the direction (0 when leaving a tie)."""
    wide = interp.wide
    x = jnp.asarray(q).astype(wide) - offset
    near = jnp.round(x)
    dist = jnp.abs(x - near)
    if skip_zero:  # the quotient crossing 0 is no jump of a truncated remainder
        dist = jnp.where(near == 0, jnp.minimum(1 - jnp.abs(x), jnp.abs(x) + 1), dist)
    st = switch_stats(dist, None, wide)
    sw = None
    if with_switch:
        jump = near + offset
        out = fn(jnp.asarray(q).astype(wide))
        # probes inside the two unit-wide pieces beside the jump (any offset below 1 reads
        # the same pieces)
        below, above = fn(jump - 0.25), fn(jump + 0.25)  # pragma: no mutate
        sw = Switch(dist, None, jnp.where(below != out, below, above).astype(jnp.asarray(q).dtype))
    # (without lexicographic columns the only column is the stop-gradient probe, whose
    # crossing times nothing reads: radii are reported along a direction only)
    if tq is None or interp.n_ld == 0 or x.size == 0:  # pragma: no mutate
        return (st, sw) if with_switch else st
    dx = tq[0].astype(wide)
    # dx = 0 never crosses (masked below), whichever target it gets
    target = jnp.where(dx > 0, jnp.floor(x) + 1, jnp.ceil(x) - 1)  # pragma: no mutate
    if skip_zero:
        target = jnp.where(target == 0, target + jnp.sign(dx), target)
    t = masked_div(target - x, dx, dx != 0)
    s = interp.lex_sign(jnp.zeros_like(x), tq.astype(wide))
    q = jnp.asarray(q)
    # a quarter step along the direction from a tie (the jumps are a unit apart, so any
    # step below 1 reads the same piece; the next float after 0 is a subnormal, which XLA
    # on CPU flushes back to 0)
    moved = fn(x + offset + 0.25 * s)  # pragma: no mutate
    leaves = (dist == 0) & (s != 0) & (moved != fn(q))
    st = _with_leaving(st._replace(radius=jnp.min(t)), jnp.sum(leaves))
    if not with_switch:
        return st
    assert sw is not None
    rate = interp.rate(x - near, tq)
    return st, sw._replace(rate=rate, time=jnp.where(leaves, 0.0, t))


_PERIODIC = {"floor": (jnp.floor, 0.0), "ceil": (jnp.ceil, 0.0), "round": (jnp.round, 0.5)}


@rule("floor", "ceil", "round")
def staircase(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    (x,) = ins
    (out,) = bind(eqn, [x.p])
    if not is_float(out):
        return discrete(interp, eqn, ins, rec)
    name = eqn.primitive.name
    fn, offset = _PERIODIC[name]
    if name == "round":
        fn = lambda v: bind(eqn, [v])[0]
    st, sw = periodic_stats(interp, x.p, x.t, fn, offset, with_switch=True)
    rec.add(eqn, name, "jump", st)
    if x.nl and x.t is not None and interp.n_ld:  # ceil(x * x) at 0
        xw = interp.wide_of(x.p) - offset
        undecided(interp, eqn, xw - jnp.round(xw), x.t.astype(interp.wide), rec)
    # the result is piecewise constant: its switch goes along (an integer conversion of
    # it changes only where it jumps), and its value in the piece the direction enters
    lex = None
    if sw is not None and sw.time is not None:
        lex = jnp.where(sw.time == 0, sw.across, out)
    return [Val(out, None, lex, sw, flat=True)]


@rule("sign")
def sign(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    (x,) = ins
    (out,) = bind(eqn, [x.p])
    if not is_float(out):
        return discrete(interp, eqn, ins, rec)
    if rec.positive and rec.positive[0]:  # the sign of a positive quantity is constant
        return [Val(out)]
    if jnp.iscomplexobj(x.p):
        return [_complex_sign(interp, eqn, x, out, rec)]
    return [_sign_like(interp, eqn, x, out, rec, "sign", lambda v: bind(eqn, [v])[0])]


def _complex_sign(interp: Interpreter, eqn: Any, x: Val, out: Any, rec: Recorder) -> Val:
    """``sign(z) = z / |z|`` of a complex ``z``: smooth except at ``z = 0`` (a jump site,
    margin ``|z|``), with tangent ``dz / |z| - z Re(conj(z) dz) / |z|^3`` (0 at ``z = 0``,
    where the piece a direction enters is constant). JAX's own
    derivative of ``sign`` is 0 for complex values too, so it is also listed as an
    ``"unknown"`` site: :func:`~jaxrelu.certified_grad` does not certify ``jax.grad``
    there, and the lexicographic functions use this tangent instead of JAX's."""
    z = jnp.asarray(x.p)
    mag = jnp.abs(z)
    rate = None
    t = None
    if x.t is not None:
        safe = jnp.where(mag == 0, 1.0, mag).astype(mag.dtype)
        dz = x.t.astype(z.dtype)
        dmag = jnp.real(jnp.conj(z) * dz) / safe  # the tangent of |z|
        t = dz / safe - z * dmag / safe**2
        # (at 0, along a direction d, sign(s d) = sign(d) for s > 0: the piece entered is
        # constant, as for a real sign)
        t = jnp.where(mag == 0, 0, t).astype(z.dtype)
        rate = interp.rate(interp.wide_of(mag), dmag)
    rec.add(eqn, "sign", "jump", switch_stats(interp.wide_of(mag), rate, interp.wide))
    record_unknown(interp, eqn, rec)
    return Val(out, t)


def _sign_like(interp: Interpreter, eqn: Any, x: Val, out: Any, rec: Recorder, name: str, fn):
    """A result that is constant on each side of ``x = 0`` (``sign``, ``copysign``'s sign
    operand): a jump site, and the value in the piece the direction enters (``lex``) with
    its :class:`Switch`, so that ``sign(x) * x`` differentiates as ``|x|``."""
    xw = interp.wide_of(x.p)
    dx = None if x.t is None else x.t.astype(interp.wide)
    rate = interp.rate(xw, dx)
    st = switch_stats(jnp.abs(xw), rate, interp.wide)
    leaving: Any = 0
    lex, time = None, None
    if dx is not None and interp.n_ld:
        s = interp.lex_sign(xw, dx)
        leaves = (xw == 0) & (s != 0)
        leaving = jnp.sum(leaves)
        if x.nl:
            undecided(interp, eqn, xw, dx, rec, None if x.lex is None else x.lex != x.p)
        # (fn reads only the sign of its operand: any magnitude reads alike)
        moved = fn(jnp.where(s > 0, 1.0, -1.0).astype(jnp.asarray(x.p).dtype))  # pragma: no mutate
        lex = jnp.where(leaves, moved, out)
        time = jnp.where(leaves, 0.0, crossing_time(jnp.abs(xw), rate))
    if x.lex is not None:  # the operand itself moved to another piece upstream
        lex = jnp.where(x.lex != x.p, fn(x.lex), out if lex is None else lex)
    rec.add(eqn, name, "jump", _with_leaving(st, leaving))
    across = fn(-jnp.where(xw == 0, 1.0, jnp.sign(xw)).astype(jnp.asarray(x.p).dtype))
    return Val(out, None, lex, Switch(jnp.abs(xw), rate, across, time), flat=True)


@rule("copysign")
def copysign(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``copysign(a, b) = |a| sgn(b)`` with ``sgn(+-0) = +-1``: a kink of ``a`` at 0 (as
    ``abs``) and a jump of ``b`` at 0, whose side is the direction's (``+0`` moved along
    a negative direction takes the sign of the negative piece)."""
    # (JAX 0.10 has no copysign primitive, jnp.copysign is abs and a select on signbit:
    # this rule, for JAX versions that emit one, cannot run under the tests here)
    a, b = ins  # pragma: no mutate
    (out,) = bind(eqn, [a.p, b.p])  # pragma: no mutate
    if not is_float(out) or jnp.iscomplexobj(out):  # pragma: no mutate
        return discrete(interp, eqn, ins, rec)  # pragma: no mutate
    sgn_b = b  # pragma: no mutate
    if b.t is not None or b.lex is not None:  # pragma: no mutate
        one = jnp.ones_like(jnp.asarray(b.p))  # pragma: no mutate
        sgn = lambda v: jnp.copysign(one, v)  # pragma: no mutate
        sgn_b = _sign_like(interp, eqn, b, sgn(b.p), rec, "copysign", sgn)  # pragma: no mutate
    t_mag = None  # pragma: no mutate
    if a.t is not None:  # pragma: no mutate
        z = jnp.asarray(a.p)  # pragma: no mutate
        t_mag = interp.lex_sign(z, a.t).astype(z.dtype)[None] * a.t  # pragma: no mutate
        if not (rec.positive and rec.positive[0]):  # pragma: no mutate
            zw, dz = z.astype(interp.wide), a.t.astype(interp.wide)  # pragma: no mutate
            st = switch_stats(jnp.abs(zw), interp.rate(zw, dz), interp.wide)  # pragma: no mutate
            rec.add(eqn, "copysign", "kink", st)  # pragma: no mutate
    s_here = (
        sgn_b.p if sgn_b is not b else jnp.copysign(jnp.ones_like(out), b.p)
    )  # pragma: no mutate
    s_lex = sgn_b.lex if sgn_b is not b and sgn_b.lex is not None else s_here  # pragma: no mutate
    t = None if t_mag is None else (t_mag * s_lex[None]).astype(out.dtype)  # pragma: no mutate
    lex = None  # pragma: no mutate
    if sgn_b is not b and sgn_b.lex is not None:  # pragma: no mutate
        lex = jnp.abs(a.p if a.lex is None else a.lex) * s_lex  # pragma: no mutate
    return [Val(out, t, lex)]  # pragma: no mutate


@rule("rem")
def rem(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``rem(x, y) = x - y trunc(x / y)`` jumps where ``x / y`` crosses a nonzero integer."""
    x, y = ins
    outs = bind(eqn, [x.p, y.p])
    if not is_float(outs[0]):
        return discrete(interp, eqn, ins, rec)
    wide = interp.wide
    q = interp.wide_of(x.p) / interp.wide_of(y.p)
    tq = None
    if interp.ncols and (x.t is not None or y.t is not None):
        shape = np.shape(q)
        tx, ty = interp.t_of(x, shape, wide), interp.t_of(y, shape, wide)
        yw = jnp.broadcast_to(interp.wide_of(y.p), shape)
        tq = (tx - q[None] * ty) / yw[None]
    # offset 0: the truncation's jumps sit at the integers themselves
    st = periodic_stats(interp, q, tq, jnp.trunc, 0.0, skip_zero=True)  # pragma: no mutate
    rec.add(eqn, "rem", "jump", st)
    return _vals(outs, jvp_columns(interp, eqn, ins))
