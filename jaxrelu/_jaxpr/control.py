"""Rules for calls and control flow: ``jit``/``pjit``, ``closed_call``, ``remat``,
``custom_jvp_call``/``custom_vjp_call`` (evaluated through their primal definition: a
custom rule *is* the convention the analysis looks past), ``cond``, ``while`` and
``scan``.

Loop carries and branch outputs must have one structure, so inside them every floating-
point value carries a tangent block (zeros where it had none) and every integer/boolean
value its perturbed value; switch provenance does not cross loop iterations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .core import Interpreter, Recorder, SiteStats, Val, is_float, open_jaxpr, rule, switch_stats
from .rules import bind, jump_evidence, select_threshold, sign_bit, unknown

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
        interp.run(jaxpr, consts, quiet, child, rec.shift_outs)
        rec.extend(child, child.stats)
        return [Val(o) for o in bind(eqn, [v.p for v in ins])]
    outs = interp.run(jaxpr, consts, args, child, rec.shift_outs)
    rec.extend(child, child.stats)
    # identity tokens are per evaluation: two calls of one function are different values
    return [v._replace(key=None) for v in outs]


# ---------------------------------------------------------------- uniform structures


def _pack(interp: Interpreter, vals: Sequence[Val]) -> tuple:
    out: list[tuple[Any, Any, Any]] = []
    for v in vals:
        p = jnp.asarray(v.p)
        if is_float(p):
            t = None
            if interp.ncols:
                t = jnp.asarray(v.t if v.t is not None else interp.zeros_t(p), dtype=p.dtype)
            out.append((p, t, None))
        else:
            out.append((p, None, jnp.asarray(v.lex if v.lex is not None else p, p.dtype)))
    return tuple(out)


def _unpack(packed: Sequence[tuple], nl: Sequence[bool] | None = None) -> list[Val]:
    """Values from :func:`_pack`'s arrays; ``nl``: their (static) nonlinearity flags."""
    flags = list(nl) if nl is not None else [False] * len(packed)
    return [Val(p, t, lex, nl=f) for (p, t, lex), f in zip(packed, flags)]


def _nl_of(vals: Sequence[Val]) -> list[bool]:
    return [bool(v.nl) for v in vals]


def _either(a: Sequence[bool], b: Sequence[bool]) -> list[bool]:
    return [x or y for x, y in zip(a, b)]


def _discover(fn: Callable, *args: Any) -> Recorder:
    """Traces ``fn`` abstractly to learn which sites it records."""
    box: dict[str, Recorder] = {}

    def wrapped(*a: Any) -> Any:
        out, r = fn(*a)
        box["rec"] = r
        return out

    jax.eval_shape(wrapped, *args)
    return box["rec"]


def _carry_fixpoint(nl: list[bool], body_nl: list[bool], trace: Callable[[], Any]) -> None:
    """Marks the loop carries a body iteration makes nonlinear (``nl`` in place): traces
    the body (abstractly, which sets ``body_nl``) until no carry changes; a carry made
    nonlinear feeds the next iteration, so the sites the loop records are known before
    it is traced for real."""
    for _ in range(len(nl) + 1):
        trace()
        grown = _either(nl, body_nl[: len(nl)])
        if grown == nl:
            return
        nl[:] = grown


# --------------------------------------------------------------------------- cond


@rule("cond")
def cond(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """The taken branch gives the value and the sites; the branch taken at the perturbed
    point gives the tangents; where the branch index comes from float comparisons, the
    cond is a site, a kink or a jump by whether the branches agree at the switch."""
    branches = eqn.params["branches"]
    which, ops = ins[0], _pack(interp, ins[1:])
    in_nl, out_nl = _nl_of(ins[1:]), [False] * len(eqn.outvars)

    def runner(b: int, enabled: bool) -> Callable:
        def fn(operands: tuple) -> tuple:
            child = rec.child(eqn=eqn, enabled=enabled)
            outs = interp.run(
                *open_jaxpr(branches[b]), _unpack(operands, in_nl), child, rec.shift_outs
            )
            out_nl[:] = _either(out_nl, _nl_of(outs))  # any branch's (static, traced once)
            return _pack(interp, outs), child

        return fn

    probes = [_discover(runner(b, True), ops) for b in range(len(branches))]
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
    start = 0
    for pr, n in zip(probes, counts):
        rec.extend(pr, list(stats[start : start + n]))
        start += n
    lex_outs = outs
    if which.lex is not None:
        lex_outs = lax.switch(index(which.lex), [silent(b) for b in range(n_b)], ops)
    if which.sw is not None:
        there = lax.switch(index(which.sw.across), [silent(b) for b in range(n_b)], ops)
        ev = jnp.asarray(0.0, interp.wide)
        for (p, t, _), (q, s, _) in zip(outs, there):
            if is_float(p) and not jnp.iscomplexobj(p):
                sh = jnp.shape(p)
                sw = which.sw._replace(
                    dist=jnp.broadcast_to(which.sw.dist, sh),
                    rate=None if which.sw.rate is None else jnp.broadcast_to(which.sw.rate, sh),
                )
                ev = jnp.maximum(ev, jump_evidence(interp, sw, p, q, t, s, sh))
        leaving = jnp.int32(0) if which.lex is None else jnp.sum(which.lex != which.p)
        st = switch_stats(which.sw.dist, None, interp.wide, ev, leaving)
        st = st._replace(radius=which.sw.radius(jnp.shape(which.sw.dist), interp.wide))
        thr = min(select_threshold(p.dtype) for p, _, _ in outs if is_float(p)) if outs else 1e-3
        rec.add(eqn, "cond", "select", st, thr)
    return [
        Val(p, lt if lt is not None else None, ll, nl=f)
        for (p, _, _), (_, lt, ll), f in zip(outs, lex_outs, out_nl)
    ]


# -------------------------------------------------------------------------- while


@rule("while")
def while_loop(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    """The loop runs as the program does; a loop test that compares floats is a jump site
    (the number of iterations changes there)."""
    p = eqn.params
    cj, bj = open_jaxpr(p["cond_jaxpr"]), open_jaxpr(p["body_jaxpr"])
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    cconsts, bconsts, init = ins[:cn], ins[cn : cn + bn], _pack(interp, ins[cn + bn :])
    nl, body_nl = _nl_of(ins[cn + bn :]), [False] * len(init)

    def test(carry: tuple) -> tuple[Any, Recorder]:
        child = rec.child(eqn=eqn)
        (pred,) = interp.run(*cj, list(cconsts) + _unpack(carry, nl), child)
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
        test_rec = test(carry)[1]
        child = rec.child(eqn=eqn)
        outs = interp.run(*bj, list(bconsts) + _unpack(carry, nl), child)
        body_nl[:] = _nl_of(outs)
        return _pack(interp, outs), test_rec, child

    if interp.n_ld:  # (the flags matter to lexicographic columns only)
        _carry_fixpoint(nl, body_nl, lambda: _discover(lambda c: (None, step(c)[2]), init))
    probe_test = _discover(lambda c: (None, test(c)[1]), init)
    probe_body = _discover(lambda c: (None, step(c)[2]), init)
    n_test = len(probe_test.meta)
    empty = SiteStats.empty(interp.wide)
    acc0 = tuple([empty] * (n_test + len(probe_body.meta)))

    def body_fn(state: tuple) -> tuple:
        carry, acc = state
        new, trec, brec = step(carry)
        stats = list(trec.stats) + list(brec.stats)
        return new, tuple(a.merge(s) for a, s in zip(acc, stats))

    final, acc = lax.while_loop(lambda s: test(s[0])[0], body_fn, (init, acc0))
    last = test(final)[1]  # the test that ended the loop
    rec.extend(probe_test, [a.merge(s) for a, s in zip(acc[:n_test], last.stats)])
    rec.extend(probe_body, list(acc[n_test:]))
    return _unpack(final, nl)


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
    return tuple((p, None if t is None else move(t), lex) for p, t, lex in packed)


@rule("scan")
def scan(interp: Interpreter, eqn: Any, ins: list[Val], rec: Recorder) -> list[Val]:
    p = eqn.params
    body, body_consts = open_jaxpr(p["jaxpr"])
    nc, nk = scan_counts(eqn, body)
    consts = list(ins[:nc])
    carry = _pack(interp, ins[nc : nc + nk])
    xs = _cols_second(_pack(interp, ins[nc + nk :]), True)
    box: dict[str, Recorder] = {}
    nl, xs_nl = _nl_of(ins[nc : nc + nk]), _nl_of(ins[nc + nk :])
    out_nl = [False] * len(eqn.outvars)

    def step(c: tuple, x: tuple) -> tuple:
        child = rec.child(eqn=eqn)
        vals = consts + _unpack(c, nl) + _unpack(x, xs_nl)  # slices: (ncols, ...) already
        outs = interp.run(body, body_consts, vals, child)
        box["rec"] = child
        out_nl[:] = _nl_of(outs)
        packed = _pack(interp, outs)
        return packed[:nk], (packed[nk:], tuple(child.stats))

    if interp.n_ld:  # (the flags matter to lexicographic columns only)
        xs1 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), xs)
        trace = lambda: jax.eval_shape(lambda c, x: step(c, x)[0], carry, xs1)
        _carry_fixpoint(nl, out_nl, trace)

    ys: Any
    stats: Any
    c_out, (ys, stats) = lax.scan(
        step, carry, xs, length=p["length"], reverse=p["reverse"], unroll=p.get("unroll", 1)
    )
    rec.extend(box["rec"], [SiteStats(*s).reduce() for s in stats])
    return _unpack(c_out, nl) + _unpack(_cols_second(ys, False), out_nl[nk:])
