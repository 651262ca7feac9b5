"""Rules for the order-based primitives: ``reduce_max``/``reduce_min``, ``argmax``/
``argmin``, max/min pooling (``reduce_window_max``/``_min``), ``cummax``/``cummin``,
``sort`` and ``top_k``, and the spectral ones (``eigh``, ``svd``). Their lexicographic
tangents follow the element that is largest (or comes first) in the order of
``(value, tangent column 1, column 2, …)``; their sites measure the gap between each
element and the extremum (or its neighbour in order).

The spectral primitives are smooth where their eigen- or singular values are distinct (and
nonzero, for ``svd``), and nonsmooth where two coincide (the largest eigenvalue of
``diag(v)`` is ``max(v)``; the spectral norm of a 1x1 matrix is ``|a|``). Their sites
measure those gaps; their tangents stay JAX's JVP, which at a repeated value is not the
one-sided derivative (:data:`APPROXIMATE_AT_TIES`: the checker does not read exact slopes
there and :func:`jaxrelu.certified_grad` certifies nothing)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .core import (
    Interpreter,
    Recorder,
    SiteStats,
    Switch,
    Val,
    crossing_time,
    first_true,
    is_float,
    masked_div,
    rule,
    switch_stats,
)
from .rules import (
    bind,
    discrete,
    index_site,
    jump_evidence,
    parting,
    record_transverse,
    record_unknown,
    select_threshold,
    smooth,
    unknown,
)

__all__ = ["APPROXIMATE_AT_TIES"]

APPROXIMATE_AT_TIES = frozenset({"eigh", "svd", "lu"})
"""Primitives whose tangents at a tie are JAX's JVP (one choice among the directional
derivatives of the tied values), not the lexicographic derivative."""


def lex_pick(interp: Interpreter, x: Any, t: Any, axes: Sequence[int], sign: float) -> Any:
    """One-hot mask over ``axes`` of the lexicographically largest (sign 1) or smallest
    (sign -1) element: the largest value, ties broken by the tangent columns in order,
    then by position (the first)."""
    xs = sign * x.astype(interp.wide)
    cand = xs == jnp.max(xs, axis=tuple(axes), keepdims=True)
    if t is not None and interp.n_ld:
        # a second maximiser whose columns are NaN: the pick is blind there
        second = cand & (jnp.sum(cand, axis=tuple(axes), keepdims=True) > 1)
        interp.blind(second, t, axes)
        cols = sign * t[: interp.n_ld].astype(interp.wide)

        def refine(c: Any) -> Any:
            def body(c: Any, col: Any) -> tuple[Any, None]:
                best = jnp.max(jnp.where(c, col, -jnp.inf), axis=tuple(axes), keepdims=True)
                return c & (col == best), None

            return lax.scan(body, c, cols)[0]

        # refining a single candidate keeps it: ``>= 1`` would only cost time
        tied = jnp.any(jnp.sum(cand, axis=tuple(axes)) > 1)  # pragma: no mutate
        cand = lax.cond(tied, refine, lambda c: c, cand)
    return first_true(cand, axes)


def gap_stats(interp, x, t, top, t_top, axes, sign) -> SiteStats:
    """Gaps between every element and the extremum of its group: a tie is a second
    maximiser; an element closing the gap (``d(gap) < 0``) reaches it at ``gap / rate``."""
    wide = interp.wide
    xw = sign * x.astype(wide)
    tw = sign * jnp.expand_dims(top.astype(wide), tuple(axes))
    gap = tw - xw
    is_top = gap == 0
    n_out = int(np.prod(top.shape, dtype=int))
    ties = (jnp.sum(is_top) - n_out).astype(jnp.int32)
    pos = jnp.where(is_top, jnp.inf, gap)
    margin = jnp.where(ties > 0, 0.0, jnp.min(pos, initial=jnp.inf)).astype(wide)
    radius = jnp.asarray(jnp.inf, wide)
    if t is not None and interp.n_ld:
        # the first column (kink_radius and the checker pass one; JAX clamps a static
        # index 1 to 0, so no test can tell t[0] from t[1] here)
        top0 = t_top[0].astype(wide)  # pragma: no mutate
        rate = sign * (jnp.expand_dims(top0, tuple(axes)) - t[0].astype(wide))  # pragma: no mutate
        toward = (~is_top) & (rate < 0)
        radius = jnp.min(masked_div(gap, -rate, toward))
    zero = jnp.int32(0)  # pragma: no mutate (``leaving`` is read for jumps; argmax sets it)
    evidence = jnp.asarray(0.0, wide)  # pragma: no mutate (read for jump sites only)
    return SiteStats(jnp.int32(x.size), jnp.maximum(ties, 0), margin, radius, evidence, zero)


def _picked(t: Any, pick: Any, axes: Sequence[int]) -> Any:
    return jnp.sum(jnp.where(pick[None], t, 0), axis=tuple(a + 1 for a in axes))


@rule("reduce_max", "reduce_min", "argmax", "argmin")
def reduce_extremum(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    (x,) = ins
    if not is_float(x.p):
        return discrete(interp, eqn, ins, rec)
    name = eqn.primitive.name
    axes = tuple(a % np.ndim(x.p) for a in eqn.params["axes"])
    sign = 1.0 if name in ("reduce_max", "argmax") else -1.0
    (out,) = bind(eqn, [x.p])
    xp = jnp.asarray(x.p)
    pick = lex_pick(interp, xp, x.t, axes, sign)
    # sign is +-1
    top = jnp.max(xp, axis=axes) if sign > 0 else jnp.min(xp, axis=axes)  # pragma: no mutate
    t_top = None if x.t is None else _picked(x.t, pick, axes)
    st = gap_stats(interp, xp, x.t, top, t_top, axes, sign)
    if name.startswith("reduce"):
        rec.add(eqn, name, "kink", st)
        return [Val(out, t_top)]
    lex = jnp.argmax(pick, axis=axes[0]).astype(out.dtype)
    rec.add(eqn, name, "jump", st._replace(leaving=jnp.sum(lex != out).astype(jnp.int32)))
    if x.nl and interp.n_ld and x.t is not None and t_top is not None:
        _undecided_extremum(interp, eqn, xp, x.t, top, t_top, pick, axes, sign, rec)
    return [Val(out, None, lex)]


def _undecided_extremum(interp, eqn, x, t, top, t_top, pick, axes, sign, rec) -> None:
    """``argmax`` of a nonlinear quantity (:func:`.rules.undecided`): an element tied with
    the one picked whose every lexicographic column equals the picked one's (``x**3``
    against 0 at 0) may lead on either side of the point, which first derivatives cannot
    tell; such elements are an undecided site."""
    wide, n = interp.wide, interp.n_ld
    gap = sign * (jnp.expand_dims(top.astype(wide), axes) - x.astype(wide))
    same = jnp.all(t[:n] == jnp.expand_dims(t_top[:n], tuple(a + 1 for a in axes)), axis=0)
    open_ = (gap == 0) & same & ~pick
    # (undecided sites are read by their ties only: any positive distance reads alike)
    dist = jnp.where(open_, 0.0, 1.0).astype(wide)  # pragma: no mutate
    rec.add(eqn, eqn.primitive.name, "undecided", switch_stats(dist, None, wide))


def window_patches(x: Any, params: dict, fill: Any) -> Any:
    """The elements of every pooling window, stacked on a new leading axis (None for
    base-dilated windows, which the analysis does not take apart)."""
    wd, ws = params["window_dimensions"], params["window_strides"]
    pad, wdil = params["padding"], params["window_dilation"]
    if any(b != 1 for b in params["base_dilation"]):
        return None
    xp = lax.pad(x, jnp.asarray(fill, x.dtype), [(lo, hi, 0) for lo, hi in pad])
    out_shape = [(xp.shape[i] - (wd[i] - 1) * wdil[i] - 1) // ws[i] + 1 for i in range(x.ndim)]
    patches = []
    for off in itertools.product(*[range(k) for k in wd]):
        start = [o * d for o, d in zip(off, wdil)]
        limit = [s + (n - 1) * st + 1 for s, n, st in zip(start, out_shape, ws)]
        patches.append(lax.slice(xp, start, limit, ws))
    return jnp.stack(patches)


@rule("reduce_window_max", "reduce_window_min")
def pooling(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    (x,) = ins
    if not is_float(x.p):
        return discrete(interp, eqn, ins, rec)
    sign = 1.0 if eqn.primitive.name.endswith("max") else -1.0
    xp = jnp.asarray(x.p)
    pat = window_patches(xp, eqn.params, -sign * jnp.inf)
    if pat is None:
        return unknown(interp, eqn, ins, rec)
    (out,) = bind(eqn, [x.p])
    tp = None
    if x.t is not None:
        # the padding's tangent is never picked (its value is -inf): any fill would do
        tp = jax.vmap(lambda c: window_patches(c, eqn.params, 0.0))(x.t)  # pragma: no mutate
    pick = lex_pick(interp, pat, tp, (0,), sign)
    t_out = None if tp is None else _picked(tp, pick, (0,))
    st = gap_stats(interp, pat, tp, jnp.asarray(out), t_out, (0,), sign)
    rec.add(eqn, eqn.primitive.name, "kink", st._replace(size=jnp.int32(xp.size)))
    return [Val(out, t_out)]


def _lex_sign_last(interp: Interpreter, m: Any, cols: Any) -> Any:
    s = jnp.sign(m)
    # (every caller passes columns, and they come with lexicographic ones)
    if cols is None or interp.n_ld == 0:  # pragma: no mutate
        return s
    c = cols[..., : interp.n_ld]
    first = jnp.argmax(c != 0, axis=-1)
    val = jnp.take_along_axis(c, first[..., None], axis=-1)[..., 0]  # pragma: no mutate (length 1)
    return jnp.where(s != 0, s, jnp.sign(val))


@rule("cummax", "cummin")
def cumulative(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    (x,) = ins
    if not is_float(x.p):
        return discrete(interp, eqn, ins, rec)
    axis, reverse = eqn.params["axis"] % np.ndim(x.p), eqn.params["reverse"]
    sign = 1.0 if eqn.primitive.name == "cummax" else -1.0  # pragma: no mutate (a sign)
    (out,) = bind(eqn, [x.p])
    xp, wide = jnp.asarray(x.p), interp.wide
    t_out = None
    if x.t is not None:
        cols = jnp.moveaxis(x.t, 0, -1)

        def combine(a: tuple, b: tuple) -> tuple:
            va, ca = a
            vb, cb = b
            m = sign * (va.astype(wide) - vb.astype(wide))
            s = _lex_sign_last(interp, m, sign * (ca - cb).astype(wide))
            # s == 0: equal values and tangent columns, either is right
            keep_a = (s >= 0) if not reverse else (s > 0)  # pragma: no mutate
            return jnp.where(keep_a, va, vb), jnp.where(keep_a[..., None], ca, cb)

        _, c_out = lax.associative_scan(combine, (xp, cols), reverse=reverse, axis=axis)
        t_out = jnp.moveaxis(c_out, -1, 0)
    # switching quantity: each element against the running extremum before it
    n = xp.shape[axis]
    fill = jnp.full_like(jnp.take(jnp.asarray(out), jnp.arange(1), axis=axis), -sign * jnp.inf)
    if reverse:
        prev = jnp.concatenate([lax.slice_in_dim(out, 1, n, axis=axis), fill], axis=axis)
    else:
        prev = jnp.concatenate([fill, lax.slice_in_dim(out, 0, n - 1, axis=axis)], axis=axis)
    m = xp.astype(wide) - jnp.asarray(prev).astype(wide)
    rate = None
    if t_out is not None and interp.n_ld:
        # the first column (radius mode carries one: JAX clamps a static index 1 to 0)
        t0, x0 = t_out[0], x.t[0]  # pragma: no mutate
        z = jnp.zeros_like(lax.slice_in_dim(t0, 0, 1, axis=axis))
        if reverse:
            t_prev = jnp.concatenate([lax.slice_in_dim(t0, 1, n, axis=axis), z], axis=axis)
        else:
            t_prev = jnp.concatenate([z, lax.slice_in_dim(t0, 0, n - 1, axis=axis)], axis=axis)
        rate = interp.rate(m, (x0 - t_prev)[None])
    rec.add(eqn, eqn.primitive.name, "kink", switch_stats(jnp.abs(m), rate, wide))
    return [Val(out, t_out)]


def _lex_sort(interp, keys: list[Val], payload: list[Any], dim: int, descending: bool):
    """Sorts ``payload`` in the order of the perturbed keys: each float key followed by
    its lexicographic tangent columns."""
    sk = []
    for v in keys:
        base = v.lex if v.lex is not None else jnp.asarray(v.p)
        sk.append(-base if descending and is_float(base) else base)
        if v.t is not None and is_float(v.p):
            sk += [(-c if descending else c) for c in v.t[: interp.n_ld]]
    # stable: a complete tie (keys and every column equal) keeps the positions' order, as
    # the unperturbed sort does; XLA's CPU sort keeps it either way (no CPU test can tell)
    stable = True  # pragma: no mutate
    out = lax.sort(tuple(sk) + tuple(payload), dimension=dim, is_stable=stable, num_keys=len(sk))
    return list(out[len(sk) :])


@rule("sort")
def sort(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    p = eqn.params
    dim, nk = p["dimension"] % np.ndim(ins[0].p), p["num_keys"]
    outs = bind(eqn, [v.p for v in ins])
    if not any(is_float(v.p) for v in ins[:nk]):
        return discrete(interp, eqn, ins, rec)
    with_t = [v for v in ins if v.t is not None]
    res = [Val(o) for o in outs]
    # without columns the sorted payload equals the plain sort's: skipping it saves time
    if interp.ncols and (with_t or any(v.lex is not None for v in ins)):  # pragma: no mutate
        cols = [c for v in with_t for c in v.t]
        moved = _lex_sort(interp, ins[:nk], [jnp.asarray(v.p) for v in ins] + cols, dim, False)
        lexp, rest = moved[: len(ins)], moved[len(ins) :]
        res, k = [], 0
        for v, o, lp in zip(ins, outs, lexp):
            if v.t is not None:
                res.append(Val(o, jnp.stack(rest[k : k + interp.ncols])))
                k += interp.ncols
            else:
                res.append(Val(o, None, None if is_float(o) else lp))
    key = jnp.asarray(outs[0])
    if is_float(key) and key.shape[dim] > 1:
        m = jnp.diff(key.astype(interp.wide), axis=dim)
        rate = None
        if res[0].t is not None and interp.n_ld:
            t0 = res[0].t[0]  # pragma: no mutate (the first column; index 1 clamps to 0)
            rate = jnp.diff(t0.astype(interp.wide), axis=dim)
        st = switch_stats(m, rate, interp.wide)
        rec.add(eqn, "sort", "kink", st._replace(size=jnp.int32(key.size)))
        # every other output (an argsort's positions, values sorted along with the keys)
        # is a rearrangement that changes where two keys swap: a jump unless the swapped
        # values agree
        for k in range(1, len(res)):
            if rec.dead_outs is not None and rec.dead_outs[k]:
                continue
            last = lambda a: jnp.moveaxis(a, dim, -1)
            back = lambda a: jnp.moveaxis(a, -1, dim)
            sw, neighbour = _order_switch(
                interp, last(m), None if rate is None else last(rate), last(jnp.asarray(outs[k]))
            )
            tied_last = sw.dist == 0
            sw = Switch(*(None if f is None else back(f) for f in sw[:4]))  # type: ignore[arg-type]
            if is_float(outs[k]):
                t = res[k].t
                # (the first column alone; 1:2 reads alike, clamped to the only column)
                t_there = None
                if t is not None:
                    t1 = jnp.moveaxis(t[:1], dim + 1, -1)  # pragma: no mutate
                    t_there = jnp.moveaxis(neighbour(t1), -1, dim + 1)
                here = jnp.asarray(outs[k])
                ev = jump_evidence(interp, sw, here, sw.across, t, t_there, here.shape)
                st = switch_stats(sw.dist, sw.rate, interp.wide, evidence=ev)
                rec.add(eqn, "sort", "select", st, select_threshold(here.dtype))
                key_t = res[0].t
                if t is not None and key_t is not None and interp.n_ld >= 2:
                    # payloads that agree at a tied swap but part along its surface
                    lead = lambda a: jnp.moveaxis(a[: interp.n_ld], dim + 1, -1)
                    tk, tp = lead(key_t), lead(t)
                    off = parting(interp.wide, tk - neighbour(tk), tp, neighbour(tp), tied_last)
                    record_transverse(interp, eqn, "sort", off, here.dtype, rec)
            else:
                if res[0].t is not None and interp.n_ld >= 2:
                    # the swapping keys' gap, in every column (rules.transverse)
                    tk = jnp.moveaxis(res[0].t[: interp.n_ld], dim + 1, -1)
                    sw = sw._replace(grad=jnp.moveaxis(tk - neighbour(tk), -1, dim + 1))
                res[k] = res[k]._replace(sw=sw)
    return res


def _order_switch(interp: Interpreter, gap: Any, rate: Any, payload: Any) -> tuple[Switch, Any]:
    """The switch of values rearranged in sorted order (sorted axis last): ``gap`` between
    adjacent sorted keys (>= 0), its ``rate`` along the first direction. A position's
    nearest switch is the nearer of its two gaps, its value across that of the neighbour
    it swaps with; the first crossing is the earliest of the whole axis (a position's
    occupant can change after other swaps, never before the first one). Also returns the
    map from an array in sorted order to its values at those neighbours."""
    wide = interp.wide
    inf = jnp.full((*gap.shape[:-1], 1), jnp.inf, wide)
    left = jnp.concatenate([inf, gap], axis=-1)
    right = jnp.concatenate([gap, inf], axis=-1)
    # (equally near neighbours: either one's is a nearest switch)
    use_left = left < right  # pragma: no mutate
    dist = jnp.where(use_left, left, right)

    def neighbour(a: Any) -> Any:
        return jnp.where(
            use_left,
            jnp.concatenate([a[..., :1], a[..., :-1]], axis=-1),
            jnp.concatenate([a[..., 1:], a[..., -1:]], axis=-1),
        )

    across = neighbour(payload)
    if rate is None:
        return Switch(dist, None, across, None), neighbour
    zero = jnp.zeros_like(inf)
    r = jnp.where(
        use_left, jnp.concatenate([zero, rate], axis=-1), jnp.concatenate([rate, zero], axis=-1)
    )
    first = jnp.min(crossing_time(gap, rate), axis=-1, keepdims=True, initial=jnp.inf)
    return Switch(dist, r, across, jnp.broadcast_to(first, dist.shape)), neighbour


@rule("top_k")
def top_k(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``top_k``: the k largest along the last axis (or ``axis``). Ties between the k-th
    and the first element left out count too."""
    (x,) = ins
    if not is_float(x.p):
        return discrete(interp, eqn, ins, rec)
    vals, idx = bind(eqn, [x.p])
    k = eqn.params["k"]
    if k == 0:  # nothing taken (jnp.argpartition's second half of a 1-element partition)
        return [Val(vals), Val(idx)]
    axis = eqn.params.get("axis", -1) % np.ndim(x.p)  # pragma: no mutate (JAX sets axis)
    xp = jnp.moveaxis(jnp.asarray(x.p), axis, -1)
    n = xp.shape[-1]
    iota = jnp.broadcast_to(jnp.arange(n, dtype=idx.dtype), xp.shape)
    cols = [] if x.t is None else list(jnp.moveaxis(x.t, axis + 1, -1))
    key = Val(xp, None if x.t is None else jnp.moveaxis(x.t, axis + 1, -1))
    srt = _lex_sort(interp, [key], [xp, iota, *cols], xp.ndim - 1, True)
    sv, si, sc = srt[0], srt[1], srt[2:]
    t = None
    if sc:
        t = jnp.moveaxis(jnp.stack([c[..., :k] for c in sc]), -1, axis + 1)
    lex = jnp.moveaxis(si[..., :k], -1, axis)
    # switches: the order inside the k largest, and each element left out against the
    # k-th (any of them may cross it first)
    head = sv.astype(interp.wide)
    inner = head[..., : k - 1] - head[..., 1:k]
    outer = head[..., k - 1 : k] - head[..., k:]
    gap = jnp.concatenate([inner, outer], axis=-1)
    rate = None
    if sc and interp.n_ld:
        h0 = sc[0].astype(interp.wide)
        rate = jnp.concatenate(
            [h0[..., : k - 1] - h0[..., 1:k], h0[..., k - 1 : k] - h0[..., k:]], axis=-1
        )
    if gap.shape[-1]:
        st = switch_stats(gap, rate, interp.wide)
        # ties: adjacent equal values among the first k + 1 only
        adjacent = head[..., : min(k + 1, n) - 1] - head[..., 1 : min(k + 1, n)]
        st = st._replace(size=jnp.int32(xp.size), ties=jnp.sum(adjacent == 0).astype(jnp.int32))
        rec.add(eqn, "top_k", "kink", st)
    # the positions switch where two of the first k + 1 swap: the neighbour's position in
    # the unperturbed order (ties: the lower position first, as top_k picks) is across
    sw = None
    # (one element: no gap, the switch is never crossed)
    if not (rec.dead_outs is not None and rec.dead_outs[1]):
        # (iota as a second key is the first-position order a stable sort gives anyway)
        keys = (-xp.astype(interp.wide), iota)
        _, order = lax.sort(keys, dimension=xp.ndim - 1, num_keys=1)  # pragma: no mutate
        full = head[..., :-1] - head[..., 1:]
        r_full = None if rate is None else h0[..., :-1] - h0[..., 1:]
        got, neighbour = _order_switch(interp, full, r_full, order)
        if rate is not None:
            # the first k positions move at the first swap inside them or of the k-th with
            # an element left out (two elements left out may swap earlier: no change)
            first = jnp.min(crossing_time(gap, rate), axis=-1, keepdims=True, initial=jnp.inf)
            got = got._replace(time=jnp.broadcast_to(first, got.dist.shape))
        sw = Switch(*(None if f is None else jnp.moveaxis(f[..., :k], -1, axis) for f in got[:4]))  # type: ignore[arg-type]
        if sc and interp.n_ld >= 2:
            # the swapping keys' gap, in every column (rules.transverse)
            tk = jnp.stack(sc[: interp.n_ld])
            sw = sw._replace(grad=jnp.moveaxis((tk - neighbour(tk))[..., :k], -1, axis + 1))
    return [Val(vals, t), Val(idx, None, lex, sw)]


def _scatter_gather(eqn: Any, operand_shape: Sequence[int], updates_shape: Sequence[int]):
    """The gather that reads, for every element of a scatter's updates, the operand
    element it lands on (as JAX's own scatter JVP rules build it)."""
    dn = eqn.params["dimension_numbers"]
    gdn = lax.GatherDimensionNumbers(
        offset_dims=tuple(dn.update_window_dims),
        collapsed_slice_dims=tuple(dn.inserted_window_dims),
        start_index_map=tuple(dn.scatter_dims_to_operand_dims),
        operand_batching_dims=tuple(dn.operand_batching_dims),
        start_indices_batching_dims=tuple(dn.scatter_indices_batching_dims),
    )
    sizes, pos = [], 0
    for i in range(len(operand_shape)):
        if i in dn.inserted_window_dims or i in dn.operand_batching_dims:
            sizes.append(1)
        else:
            sizes.append(updates_shape[dn.update_window_dims[pos]])
            pos += 1
    mode = eqn.params["mode"]

    def gather(a: Any, idx: Any) -> Any:
        # (an update dropped out of bounds reads NaN: it never equals the result)
        return lax.gather(a, idx, gdn, tuple(sizes), mode=mode, fill_value=jnp.nan)

    return gather


@rule("scatter-max", "scatter_max", "scatter-min", "scatter_min")
def scatter_extremum(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``x.at[i].max(u)`` and ``jax.ops.segment_max``/``segment_min``: each result is the
    extremum of its operand element and the updates landing on it. The tangent follows
    the lexicographically largest (smallest) of them, as for ``reduce_max``; the site
    measures every element's gap to the extremum it lands on."""
    op, idx, upd = ins
    if not is_float(op.p):
        return discrete(interp, eqn, ins, rec)
    sign = 1.0 if "max" in eqn.primitive.name else -1.0
    wide = interp.wide
    (out,) = bind(eqn, [op.p, idx.p, upd.p])
    o, u, ix = jnp.asarray(op.p), jnp.asarray(upd.p), jnp.asarray(idx.p)
    gather = _scatter_gather(eqn, o.shape, u.shape)
    scat = lambda a, b: bind(eqn, [a, ix, b])[0]
    low = jnp.asarray(-sign * jnp.inf, o.dtype)
    at = gather(out, ix)
    win_u, win_o = u == at, o == out
    # how many elements reach each result's extremum (more than one: a tie)
    ones = lambda m: m.astype(jnp.int32)
    dn, mode = eqn.params["dimension_numbers"], eqn.params["mode"]
    adds = lax.scatter_add(ones(win_o), ix, ones(win_u), dn, mode=mode)
    t_out = None
    # (without tangents on either operand the columns are zeros: None reads alike)
    if interp.ncols and (op.t is not None or upd.t is not None):  # pragma: no mutate
        zero_o, zero_u = jnp.zeros(o.shape, o.dtype), jnp.zeros(u.shape, u.dtype)
        to = [zero_o] * interp.ncols if op.t is None else list(op.t)
        tu = [zero_u] * interp.ncols if upd.t is None else list(upd.t)
        # the columns in turn narrow the tied candidates (the first column alone is the
        # one-sided derivative: the extremum of the tied elements' tangents)
        cu, co = win_u, win_o
        for j in range(interp.n_ld):
            best = scat(jnp.where(co, to[j], low), jnp.where(cu, tu[j], low))
            cu = cu & (tu[j] == gather(best, ix))
            co = co & (to[j] == best)
        cols = [scat(jnp.where(co, a, low), jnp.where(cu, b, low)) for a, b in zip(to, tu)]
        t_out = jnp.stack(cols)
        # (no candidate left: a NaN column dropped every tied element)
        t_out = jnp.where(t_out == low, jnp.nan, t_out)
        if interp.n_ld:
            interp.blind(win_u & (gather(adds.astype(wide), ix) > 1), upd.t)
            interp.blind(win_o & (adds > 1), op.t)
    # the gap of every update and operand element to the extremum it lands on
    gap_u = sign * (at.astype(wide) - u.astype(wide))
    gap_o = sign * (out.astype(wide) - o.astype(wide))
    ties = jnp.sum(jnp.maximum(adds - 1, 0)).astype(jnp.int32)
    gaps = jnp.concatenate([gap_u.ravel(), gap_o.ravel()])
    pos = jnp.where(jnp.isnan(gaps) | (gaps == 0), jnp.inf, gaps)
    margin = jnp.where(ties > 0, 0.0, jnp.min(pos, initial=jnp.inf)).astype(wide)
    radius = jnp.asarray(jnp.inf, wide)
    if t_out is not None and interp.n_ld:
        t0 = t_out[0].astype(wide)  # pragma: no mutate (the first column; 1 clamps to 0)
        ru = sign * (gather(t0, ix) - tu[0].astype(wide))
        ro = sign * (t0 - to[0].astype(wide))
        rates = jnp.concatenate([ru.ravel(), ro.ravel()])
        # (an infinite pos divides to inf whatever the mask says)
        toward = (pos < jnp.inf) & (rates < 0)  # pragma: no mutate
        radius = jnp.min(masked_div(pos, -rates, toward))
    # (a kink site: its evidence is read for selects and points only, ``leaving`` for
    # jumps only)
    none, never = jnp.int32(0), jnp.asarray(0.0, wide)  # pragma: no mutate
    st = SiteStats(jnp.int32(u.size), ties, margin, radius, never, none)
    rec.add(eqn, eqn.primitive.name, "kink", st)
    if idx.sw is not None:
        index_site(interp, eqn, ins, out, t_out, rec)
    return [Val(out, t_out)]


def _spectral_site(interp: Interpreter, eqn: Any, val: Val, rec: Recorder, zero: bool) -> None:
    """A site over the gaps between adjacent values (in sorted order along the last axis)
    and, with ``zero`` (singular values), the distance of the smallest to 0. With
    tangents, values that have none (the data's spectrum) never change order: no site."""
    if interp.ncols and val.t is None:
        return
    w = jnp.asarray(val.p).astype(interp.wide)
    order = jnp.argsort(w, axis=-1)
    ws = jnp.take_along_axis(w, order, axis=-1)
    parts = [ws[..., :1]] if zero else []
    rate = None
    # (with columns val.t is set: see the return above; and columns come with ld ones)
    if val.t is not None and interp.n_ld:  # pragma: no mutate
        t0 = val.t[0]  # pragma: no mutate (the first column; index 1 clamps to 0)
        ts = jnp.take_along_axis(t0.astype(interp.wide), order, axis=-1)
        head = [ts[..., :1]] if zero else []
        rate = jnp.concatenate([*head, jnp.diff(ts, axis=-1)], axis=-1)
    gaps = jnp.concatenate([*parts, jnp.diff(ws, axis=-1)], axis=-1)
    if gaps.shape[-1]:
        rec.add(eqn, eqn.primitive.name, "kink", switch_stats(gaps, rate, interp.wide))


def _vectors_site(interp: Interpreter, eqn: Any, rec: Recorder, vectors: Sequence[int]) -> None:
    """An ``"unknown"`` site for the eigen- or singular vectors among the outputs, where
    something reads them: each vector is fixed only up to sign (a phase), and LAPACK's
    choice of it flips with the input where the values stay apart (the top eigenvector of
    ``[[1.6 - t, 0.5], [0.5, 1.4 + t]]`` changes sign at ``t = 0.1``, its eigenvalues at
    least 1 apart). Where that happens is not located: a function of the vectors that
    their sign leaves unchanged (``v v^T``) is smooth, one that it changes jumps."""
    dead = rec.dead_outs
    if all(dead is not None and dead[k] for k in vectors):  # (also where there are none)
        return
    record_unknown(interp, eqn, rec, vectors)


@rule("eigh")
def eigh(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``eigh`` (outputs: eigenvectors, eigenvalues): a kink where two eigenvalues
    coincide; the eigenvectors, where read, are an ``"unknown"`` site (their signs)."""
    outs = smooth(interp, eqn, ins, rec)
    if is_float(outs[1].p):  # (real, also for complex Hermitian input)
        _spectral_site(interp, eqn, outs[1], rec, zero=False)
    _vectors_site(interp, eqn, rec, [0])
    return outs


@rule("lu")
def lu(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``lu`` with partial pivoting (outputs: the packed factors, pivots, permutation): a
    jump where two pivot candidates tie in magnitude, as the pivot row, and with it the
    factors, switches there (``det`` and ``solve``, continuous, read it through products
    whose gap cancels). Pivoting divides by the largest candidate, so a tie is a
    multiplier of magnitude exactly 1 below the diagonal (``1 - |L_ik|`` is the distance;
    for complex matrices in LAPACK's measure ``|Re| + |Im|`` of the candidate
    ``L_ik U_kk`` against ``U_kk``), or a zero pivot (every candidate 0)."""
    outs = smooth(interp, eqn, ins, rec)
    a = jnp.asarray(outs[0].p)
    m, n = a.shape[-2:]
    k = min(m, n)
    if k == 0 or m < 2:
        return outs
    wide = interp.wide
    low = np.tril(np.ones((m, k), bool), -1)  # the multipliers L_ik, i > k
    mult = a[..., :, :k]
    pivot = jnp.diagonal(a, axis1=-2, axis2=-1)[..., None, :k]
    if jnp.iscomplexobj(a):
        # LAPACK picks a complex pivot by |Re| + |Im|, not by modulus: the candidate
        # L_ik U_kk against the pivot U_kk in that measure
        cabs1 = lambda z: (jnp.abs(jnp.real(z)) + jnp.abs(jnp.imag(z))).astype(wide)
        size = cabs1(pivot)
        ratio = cabs1(mult * pivot) / jnp.where(size == 0, 1.0, size)
    else:
        ratio = jnp.abs(mult).astype(wide)
    dist = jnp.where(pivot == 0, 0.0, jnp.maximum(1.0 - ratio, 0.0))
    rate = None
    t = outs[0].t
    # (the first column's rate, as for eigenvalue gaps: only where columns are read)
    if t is not None and interp.n_ld and not jnp.iscomplexobj(a):  # pragma: no mutate
        tm = jnp.asarray(t[0])[..., :, :k].astype(wide)  # pragma: no mutate (column 0)
        rate = jnp.where(pivot == 0, 0.0, -jnp.sign(mult).astype(wide) * tm)
        rate = rate[..., low]
    rec.add(eqn, "lu", "jump", switch_stats(dist[..., low], rate, wide))
    return outs


@rule("svd")
def svd(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """``svd`` (outputs: singular values first, then the vectors if computed): a kink where
    two singular values coincide or the smallest is 0; the singular vectors, where read,
    are an ``"unknown"`` site (their signs)."""
    outs = smooth(interp, eqn, ins, rec)
    if is_float(outs[0].p):
        _spectral_site(interp, eqn, outs[0], rec, zero=True)
    _vectors_site(interp, eqn, rec, list(range(1, len(outs))))  # (none: values only)
    return outs
