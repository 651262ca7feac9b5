"""Rules for calls and control flow: ``jit``/``pjit``, ``closed_call``, ``remat``,
``custom_jvp_call``/``custom_vjp_call`` (evaluated through their primal definition: a
custom rule *is* the convention the analysis looks past), ``cond``, ``while`` and
``scan``.

Loop carries and branch outputs must have one structure, so inside them every floating-
point value carries a tangent block (zeros where it had none) and every integer/boolean
value its perturbed value; a value that has a switch in any iteration or branch carries it
in all (infinitely far where it has none; see :class:`Layout`), so an index or count made
from a comparison inside a loop or branch switches where it is used after it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .core import (
    Interpreter,
    Recorder,
    SiteStats,
    Switch,
    Val,
    is_float,
    open_jaxpr,
    rule,
    switch_stats,
)
from .passes import _walk
from .rules import (
    bind,
    jump_evidence,
    jvp_columns,
    select_threshold,
    sign_bit,
    tie_threshold,
    transverse,
    unknown,
)

__all__ = ["scan_counts"]

_JAXRELU_PREFIX = "jaxrelu_"
_NN_ACTIVATIONS = frozenset(
    """relu relu6 hard_tanh leaky_relu elu celu selu gelu silu swish hard_sigmoid hard_silu
    hard_swish sparse_plus sparse_sigmoid squareplus soft_sign log_sigmoid glu mish""".split()
)
_CALLS = (
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "remat",
    "remat2",
    "checkpoint",
    "custom_jvp_call",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
)


def _activation(params: dict, current: str | None) -> str | None:
    name = params.get("name")
    if isinstance(name, str):
        if name.startswith(_JAXRELU_PREFIX):
            return name[len(_JAXRELU_PREFIX) :]
        if name in _NN_ACTIVATIONS:
            return name
    return current


_SEARCHSORTED: dict[tuple, Any] = {}


def _searchsorted_by_comparisons(eqn: Any, sub: Any) -> Any:
    """``jnp.searchsorted``'s default methods search in a loop, whose comparisons the
    analysis cannot carry out of the loop; its ``"compare_all"`` method computes the same
    index from one comparison per element. This finds which side the call used (by
    tracing the loop methods for both sides and matching the program) and returns the
    comparison program for it; None if the call matches none (then it is analysed as is)."""
    avals = [v.aval for v in eqn.invars]
    key = (str(sub), tuple((a.shape, str(a.dtype), bool(a.weak_type)) for a in avals))
    if key in _SEARCHSORTED:
        return _SEARCHSORTED[key]
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in avals]

    def inner(side: str, method: str) -> Any:
        fn = lambda a, v: jnp.searchsorted(a, v, side=side, method=method)
        outer = jax.make_jaxpr(fn)(*specs)
        calls = [e for e in outer.jaxpr.eqns if e.params.get("name") == "searchsorted"]
        return calls[0].params["jaxpr"] if len(calls) == 1 else None

    found = None
    for side in ("left", "right"):
        for method in ("scan", "scan_unrolled"):
            try:
                if str(inner(side, method)) == key[0]:
                    found = inner(side, "compare_all")
            except Exception:  # pragma: no cover - an older jnp.searchsorted signature
                continue
    _SEARCHSORTED[key] = found
    return found


@rule(*_CALLS)
def call(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    params = eqn.params
    sub = params.get("jaxpr", params.get("call_jaxpr", params.get("fun_jaxpr")))
    if sub is None:
        return unknown(interp, eqn, ins, rec)
    if params.get("name") == "searchsorted" and len(ins) == 2:
        sub = _searchsorted_by_comparisons(eqn, sub) or sub
    jaxpr, consts = open_jaxpr(sub)
    child = rec.child(_activation(params, rec.activation), eqn)
    args = ins[len(ins) - len(jaxpr.invars) :]
    if params.get("name") == "signbit" and len(args) == 1 and is_float(args[0].p):
        if not jnp.iscomplexobj(args[0].p):  # a bit test inside: a switch at 0 here
            return [sign_bit(interp, args[0], bind(eqn, [v.p for v in ins])[0])]
    custom = eqn.primitive.name.startswith("custom_")
    if interp.faithful and custom:  # keep the custom rule for JAX's AD; sites from inside
        quiet = [v._replace(p=jax.lax.stop_gradient(v.p)) if is_float(v.p) else v for v in args]
        interp.run(jaxpr, consts, quiet, child, rec.shift_outs, rec.dead_outs)
        rec.extend(child, child.stats)
        return [Val(o) for o in bind(eqn, [v.p for v in ins])]
    outs = interp.run(jaxpr, consts, args, child, rec.shift_outs, rec.dead_outs)
    rec.extend(child, child.stats)
    if eqn.primitive.name == "custom_jvp_call" and _reads_bits(jaxpr):
        # the definition reads a float's bits (``jnp.frexp``, and so ``jnp.ldexp``): its
        # derivative through them is zero, the custom rule's is the function's
        ts = jvp_columns(interp, eqn, ins)
        if ts is not None:
            outs = [o._replace(t=t) if is_float(o.p) else o for o, t in zip(outs, ts)]
    # identity tokens are per evaluation: two calls of one function are different values
    return [v._replace(key=None) for v in outs]


_BITS: dict[int, tuple[Any, bool]] = {}


def _reads_bits(jaxpr: Any) -> bool:
    """Whether ``jaxpr`` (or a sub-jaxpr) reads a floating-point value's bits."""
    hit = _BITS.get(id(jaxpr))
    if hit is None or hit[0] is not jaxpr:
        found = any(
            e.primitive.name == "bitcast_convert_type" and is_float(e.invars[0].aval)
            for j in _walk(jaxpr)
            for e in j.eqns
        )
        hit = _BITS[id(jaxpr)] = (jaxpr, found)
    return hit[1]


# ---------------------------------------------------------------- uniform structures


class Layout(NamedTuple):
    """The static part of a value crossing a loop iteration or a branch: whether it is
    nonlinear in the input (``Val.nl``), carries a switch (``Val.sw``; then ``point`` is
    the switch's own flag) and, for a float, a perturbed value (``lex``: a piecewise-
    constant float such as ``floor(x)``). Carries and branch outputs take the join over
    the iterations and branches (:func:`_join`): a switch made in one iteration reaches
    the comparisons, selects and indexing of the next and after the loop."""

    nl: bool = False
    sw: bool = False
    point: bool = True
    lex: bool = False


def _layout(v: Val) -> Layout:
    point = bool(v.sw.point) if v.sw is not None else True
    return Layout(bool(v.nl), v.sw is not None, point, is_float(v.p) and v.lex is not None)


def _join(a: Layout, b: Layout) -> Layout:
    if not a.sw:
        point = b.point
    elif not b.sw:
        point = a.point
    else:
        point = a.point and b.point
    return Layout(a.nl or b.nl, a.sw or b.sw, point, a.lex or b.lex)


def _joined(a: Any, b: Any) -> list[Layout]:
    return [_join(x, y) for x, y in zip(a, b)]


def _pack_switch(interp: Interpreter, p: Any, sw: Switch | None) -> tuple:
    """A switch as arrays of ``p``'s shape (none: infinitely far, never crossed)."""
    shape, wide = jnp.shape(p), interp.wide
    dist: Any
    rate: Any
    across: Any
    time: Any
    if sw is None:
        dist, rate, across, time = jnp.inf, 0.0, p, jnp.inf
    else:
        dist, rate, across, time = sw.dist, sw.rate, sw.across, sw.time
        rate = 0.0 if rate is None else rate  # (no tangent: the switch does not move)
        time = jnp.inf if time is None else time
        if across is None:
            across = p
    try:
        fit = lambda a, dt: jnp.broadcast_to(jnp.asarray(a, dt), shape)
        dist, rate, time = fit(dist, wide), fit(rate, wide), fit(time, wide)
        across = fit(across, jnp.asarray(p).dtype)
    except ValueError:  # pragma: no cover - no rule makes a switch larger than its value
        near = jnp.min(jnp.asarray(dist, wide))
        dist, rate, across = jnp.full(shape, near, wide), jnp.zeros(shape, wide), p
        time = jnp.full(shape, jnp.min(jnp.asarray(time, wide)), wide)
    return (dist, rate if interp.n_ld else None, across, time)


def _pack(interp: Interpreter, vals: Sequence[Val], lay: Sequence[Layout] | None = None) -> tuple:
    """The arrays of values that cross an iteration or a branch, in one structure for a
    given layout (``lay``: default, each value's own)."""
    lay = [_layout(v) for v in vals] if lay is None else lay
    out: list[tuple[Any, Any, Any, Any]] = []
    for v, lo in zip(vals, lay):
        p = jnp.asarray(v.p)
        sw = _pack_switch(interp, p, v.sw) if lo.sw else None
        if is_float(p):
            t = None
            if interp.ncols:
                t = jnp.asarray(v.t if v.t is not None else interp.zeros_t(p), dtype=p.dtype)
            lex = jnp.asarray(v.lex if v.lex is not None else p, p.dtype) if lo.lex else None
            out.append((p, t, lex, sw))
        else:
            out.append((p, None, jnp.asarray(v.lex if v.lex is not None else p, p.dtype), sw))
    return tuple(out)


def _unpack(packed: Sequence[tuple], lay: Sequence[Layout] | None = None) -> list[Val]:
    """Values from :func:`_pack`'s arrays and their (static) layout."""
    lay = list(lay) if lay is not None else [Layout()] * len(packed)
    vals = []
    for (p, t, lex, sw), lo in zip(packed, lay):
        switch = None
        if sw is not None:
            dist, rate, across, time = sw
            switch = Switch(dist, rate, across, time, lo.point)
        vals.append(Val(p, t, lex, switch, nl=lo.nl))
    return vals


def _discover(fn: Callable, *args: Any) -> Recorder:
    """Traces ``fn`` abstractly to learn which sites it records."""
    box: dict[str, Recorder] = {}

    def wrapped(*a: Any) -> Any:
        out, r = fn(*a)
        box["rec"] = r
        return out

    jax.eval_shape(wrapped, *args)
    return box["rec"]


def _carry_fixpoint(lay: list[Layout], body_lay: list[Layout], trace: Callable[[], Any]) -> Any:
    """Joins into the loop carries' layouts (``lay``, in place) what a body iteration
    makes of them: traces the body (abstractly, which sets ``body_lay``) until no carry
    changes; a carry made nonlinear or given a switch feeds the next iteration, so the
    sites the loop records are known before it is traced for real. Returns the last
    trace's result (a trace with the final layouts)."""
    for _ in range(3 * len(lay) + 1):  # (each carry's layout can grow 3 times)
        out = trace()
        grown = _joined(lay, body_lay[: len(lay)])
        if grown == lay:
            return out
        lay[:] = grown
    raise AssertionError("loop carry layouts did not settle")  # pragma: no cover


# --------------------------------------------------------------------------- cond


def _lay(interp: Interpreter, v: Val) -> Layout:
    """:func:`_layout`, without the nonlinearity flag where no lexicographic column reads
    it (so that it never costs a trace of a loop body more)."""
    lo = _layout(v)
    return lo if interp.n_ld else lo._replace(nl=False)


def _nearer(a: Switch | None, b: Switch, shape: tuple, wide: Any) -> Switch:
    """Of two switches of one value, elementwise the nearer one (the first crossing of
    either is the earliest of both)."""
    if a is None:
        return b
    fit = lambda x: jnp.broadcast_to(jnp.asarray(x), shape)
    da, db = fit(a.dist).astype(wide), fit(b.dist).astype(wide)
    take_b = db < da
    rate = None
    if a.rate is not None or b.rate is not None:
        ra = jnp.zeros(shape, wide) if a.rate is None else fit(a.rate).astype(wide)
        rb = jnp.zeros(shape, wide) if b.rate is None else fit(b.rate).astype(wide)
        rate = jnp.where(take_b, rb, ra)
    times = [fit(s.time).astype(wide) for s in (a, b) if s.time is not None]
    time = None if not times else functools.reduce(jnp.minimum, times)
    across = jnp.where(take_b, fit(b.across), fit(a.across))
    return Switch(jnp.where(take_b, db, da), rate, across, time, a.point and b.point)


@rule("cond")
def cond(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """The taken branch gives the value and the sites; the branch taken at the perturbed
    point gives the tangents; where the branch index comes from float comparisons, the
    cond is a site, a kink or a jump by whether the branches agree at the switch, and its
    integer (and piecewise-constant) outputs switch there too."""
    branches = eqn.params["branches"]
    in_lay = [_lay(interp, v) for v in ins[1:]]
    which, ops = ins[0], _pack(interp, ins[1:], in_lay)
    seen: list[list[Layout]] = []
    joint: list[Layout] = []  # the outputs' layout: the join over the branches

    def runner(b: int, enabled: bool) -> Callable:
        def fn(operands: tuple) -> tuple:
            child = rec.child(eqn=eqn, enabled=enabled)
            outs = interp.run(
                *open_jaxpr(branches[b]), _unpack(operands, in_lay), child, rec.shift_outs
            )
            if not joint:  # (probing: each branch traced once)
                seen.append([_lay(interp, o) for o in outs])
            return _pack(interp, outs, joint or None), child

        return fn

    probes = [_discover(runner(b, True), ops) for b in range(len(branches))]
    joint[:] = functools.reduce(_joined, seen)
    counts = [len(p.meta) for p in probes]

    def padded(b: int) -> Callable:
        def fn(operands: tuple) -> tuple:
            outs, child = runner(b, True)(operands)
            stats: list[SiteStats] = []
            for j, n in enumerate(counts):
                stats += child.stats if j == b else [SiteStats.empty(interp.wide)] * n
            return outs, tuple(stats)

        return fn

    def silent(b: int) -> Callable:
        return lambda operands: runner(b, False)(operands)[0]

    n_b = len(branches)
    index = lambda i: jnp.clip(jnp.asarray(i, jnp.int32), 0, n_b - 1)
    outs, stats = lax.switch(index(which.p), [padded(b) for b in range(n_b)], ops)
    lex_outs = outs
    if which.lex is not None:
        # the branch the direction enters: its sites count too (their distances along the
        # direction from the point: the radius of the piece entered)
        lex_outs, lex_stats = lax.switch(index(which.lex), [padded(b) for b in range(n_b)], ops)
        other = index(which.lex) != index(which.p)
        empty = SiteStats.empty(interp.wide)
        stats = tuple(
            SiteStats(*s).merge(SiteStats(*(jnp.where(other, a, e) for a, e in zip(ls, empty))))
            for s, ls in zip(stats, lex_stats)
        )
    start = 0
    for pr, n in zip(probes, counts):
        rec.extend(pr, list(stats[start : start + n]))
        start += n
    vals = [
        Val(p, lt, ll if not is_float(p) or lo.lex else None, sw=v.sw, nl=lo.nl)
        for (p, _, _, _), (_, lt, ll, _), lo, v in zip(outs, lex_outs, joint, _unpack(outs, joint))
    ]
    if which.sw is not None:
        there = lax.switch(index(which.sw.across), [silent(b) for b in range(n_b)], ops)
        ev = cut = jnp.asarray(0.0, interp.wide)
        for k, ((p, t, _, _), (q, s, _, _)) in enumerate(zip(outs, there)):
            sh = jnp.shape(p)
            if is_float(p) and not jnp.iscomplexobj(p):
                sw = which.sw._replace(
                    dist=jnp.broadcast_to(which.sw.dist, sh),
                    rate=None if which.sw.rate is None else jnp.broadcast_to(which.sw.rate, sh),
                )
                ev = jnp.maximum(ev, jump_evidence(interp, sw, p, q, t, s, sh))
                off = transverse(interp, sw, t, s, sh)
                if off is not None:
                    cut = jnp.maximum(cut, jnp.max(off, initial=0.0) / tie_threshold(p.dtype))
            if not is_float(p) or joint[k].sw:  # a discrete output switches with the index
                vals[k] = vals[k]._replace(
                    sw=_nearer(vals[k].sw, which.sw._replace(across=q), sh, interp.wide)
                )
        leaving = jnp.int32(0) if which.lex is None else jnp.sum(which.lex != which.p)
        st = switch_stats(which.sw.dist, None, interp.wide, ev, leaving)
        st = st._replace(radius=which.sw.radius(jnp.shape(which.sw.dist), interp.wide))
        # (discrete outputs alone are no site here: they switch where they are used)
        floats = [p for p, _, _, _ in outs if is_float(p)]
        if floats:
            rec.add(eqn, "cond", "select", st, min(select_threshold(p.dtype) for p in floats))
            if interp.n_ld >= 2 and which.sw.grad is not None:  # (kinks.transverse_jumps)
                apart = jnp.where(cut > 1, 0.0, 1.0).astype(interp.wide)
                rec.add(eqn, "cond", "transverse", switch_stats(apart, None, interp.wide))
    return vals


# -------------------------------------------------------------------------- while


@rule("while")
def while_loop(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """The loop runs as the program does; a loop test that compares floats is a jump site
    (the number of iterations changes there)."""
    p = eqn.params
    cj, bj = open_jaxpr(p["cond_jaxpr"]), open_jaxpr(p["body_jaxpr"])
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cconsts, bconsts, start = ins[:cn], ins[cn : cn + bn], ins[cn + bn :]
    lay = [_lay(interp, v) for v in start]
    body_lay = list(lay)

    def test(carry: tuple) -> tuple[Any, Recorder]:
        child = rec.child(eqn=eqn)
        (pred,) = interp.run(*cj, list(cconsts) + _unpack(carry, lay), child)
        if pred.sw is not None:
            # a tied test the direction leaves at once changes the number of iterations
            leaving = jnp.int32(0) if pred.lex is None else jnp.sum(pred.lex != pred.p)
            st = switch_stats(pred.sw.dist, None, interp.wide, leaving=leaving)
            st = st._replace(radius=pred.sw.radius(jnp.shape(pred.sw.dist), interp.wide))
            child.add(eqn, "while", "jump", st)
            if pred.lex is not None:  # the perturbed point's loop would run otherwise
                moved = jnp.where(pred.lex != pred.p, 0.0, 1.0).astype(interp.wide)
                child.add(eqn, "while", "undecided", switch_stats(moved, None, interp.wide))
        return pred.p, child

    def step(carry: tuple) -> tuple[tuple, Recorder, Recorder]:
        pred, test_rec = test(carry)
        child = rec.child(eqn=eqn)
        outs = interp.run(*bj, list(bconsts) + _unpack(carry, lay), child)
        body_lay[:] = [_lay(interp, o) for o in outs]
        new = _pack(interp, outs, lay)
        if jnp.ndim(pred):  # batched (``jax.vmap``): finished elements keep their carry
            new = _select_batched(pred, new, carry)
        return new, test_rec, child

    probe_body = _carry_fixpoint(
        lay, body_lay, lambda: _discover(lambda c: (None, step(c)[2]), _pack(interp, start, lay))
    )
    init = _pack(interp, start, lay)
    probe_test = _discover(lambda c: (None, test(c)[1]), init)
    n_test = len(probe_test.meta)
    empty = SiteStats.empty(interp.wide)
    acc0 = tuple([empty] * (n_test + len(probe_body.meta)))

    def body_fn(state: tuple) -> tuple:
        carry, acc = state
        new, trec, brec = step(carry)
        stats = list(trec.stats) + list(brec.stats)
        return new, tuple(a.merge(s) for a, s in zip(acc, stats))

    final, acc = lax.while_loop(lambda s: jnp.any(test(s[0])[0]), body_fn, (init, acc0))
    last = test(final)[1]  # the test that ended the loop
    rec.extend(probe_test, [a.merge(s) for a, s in zip(acc[:n_test], last.stats)])
    rec.extend(probe_body, list(acc[n_test:]))
    return _unpack(final, lay)


def _select_batched(pred: Any, new: tuple, old: tuple) -> tuple:
    """A ``while`` whose test is batched (``jax.vmap`` of a loop whose test depends on
    the mapped input) runs until every element's test fails, and a step changes only the
    elements whose test holds: ``pred`` selects along the carries' leading axes (behind
    the column axis of tangent blocks)."""
    k = jnp.ndim(pred)

    def sel(a: Any, b: Any, lead: int) -> Any:
        if a is None:
            return None
        shape = (1,) * lead + jnp.shape(pred) + (1,) * (jnp.ndim(a) - lead - k)
        return jnp.where(jnp.reshape(pred, shape), a, b)

    out = []
    for (p, t, lex, sw), (p0, t0, lex0, sw0) in zip(new, old):
        if sw is not None:
            sw = tuple(sel(a, b, 0) for a, b in zip(sw, sw0))
        out.append((sel(p, p0, 0), sel(t, t0, 1), sel(lex, lex0, 0), sw))
    return tuple(out)


# --------------------------------------------------------------------------- scan


def scan_counts(eqn: Any, body: Any) -> tuple[int, int]:
    """Numbers of constants and carries of a scan equation. Older JAX names them in the
    parameters; newer JAX does not, so they are read off the shapes: the scanned inputs
    and outputs are the trailing ones whose shape is (length, *body shape)."""
    p = eqn.params
    if "num_consts" in p and "num_carry" in p:
        return p["num_consts"], p["num_carry"]
    length = p["length"]

    def scanned(outer: Any, inner: Any) -> bool:
        return tuple(outer.aval.shape) == (length, *inner.aval.shape)

    n_ys = 0
    for o, i in zip(reversed(eqn.outvars), reversed(body.outvars)):
        if not scanned(o, i):
            break
        n_ys += 1
    n_carry = len(eqn.outvars) - n_ys
    n_xs = 0
    for o, i in zip(reversed(eqn.invars), reversed(body.invars)):
        if n_xs >= len(eqn.invars) - n_carry or not scanned(o, i):
            break
        n_xs += 1
    return len(eqn.invars) - n_carry - n_xs, n_carry


def _cols_second(packed: tuple, forward: bool) -> tuple:
    """Moves tangent blocks' column axis behind (forward) or back in front of the scanned
    axis."""
    move = (lambda t: jnp.moveaxis(t, 0, 1)) if forward else (lambda t: jnp.moveaxis(t, 1, 0))
    return tuple((p, None if t is None else move(t), lex, sw) for p, t, lex, sw in packed)


@rule("scan")
def scan(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    p = eqn.params
    body, body_consts = open_jaxpr(p["jaxpr"])
    nc, nk = scan_counts(eqn, body)
    consts, start, xvals = list(ins[:nc]), ins[nc : nc + nk], ins[nc + nk :]
    lay = [_lay(interp, v) for v in start]
    xs_lay = [_lay(interp, v) for v in xvals]
    xs = _cols_second(_pack(interp, xvals, xs_lay), True)
    box: dict[str, Recorder] = {}
    out_lay = [Layout()] * len(eqn.outvars)

    def step(c: tuple, x: tuple) -> tuple:
        child = rec.child(eqn=eqn)
        vals = consts + _unpack(c, lay) + _unpack(x, xs_lay)  # slices: (ncols, ...) already
        outs = interp.run(body, body_consts, vals, child)
        box["rec"] = child
        out_lay[:] = [_lay(interp, o) for o in outs]
        ys = _pack(interp, outs[nk:], out_lay[nk:])  # (one trace: their own layouts)
        return _pack(interp, outs[:nk], lay), (ys, tuple(child.stats))

    xs1 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
    trace = lambda: jax.eval_shape(lambda c, x: step(c, x)[0], _pack(interp, start, lay), xs1)
    _carry_fixpoint(lay, out_lay, trace)

    ys: Any
    stats: Any
    c_out, (ys, stats) = lax.scan(
        step,
        _pack(interp, start, lay),
        xs,
        length=p["length"],
        reverse=p["reverse"],
        unroll=p.get("unroll", 1),
    )
    rec.extend(box["rec"], [SiteStats(*s).reduce() for s in stats])
    return _unpack(c_out, lay) + _unpack(_cols_second(ys, False), out_lay[nk:])
