"""Static passes over jaxprs: stop-gradient-only values, the lowest floating-point
precision a program computes in, and a fingerprint for compile caches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from .core import open_jaxpr

__all__ = [
    "fingerprint",
    "lowest_float",
    "piecewise_linear",
    "positive_vars",
    "shift_only",
    "sub_jaxprs",
]

_POSITIVE_OUT = frozenset({"exp", "exp2", "logistic", "cosh"})
_POSITIVE_IF_ALL = frozenset(
    """add add_any mul div reduce_sum reduce_prod reduce_max reduce_min broadcast_in_dim
    reshape squeeze expand_dims transpose slice rev copy convert_element_type cumsum
    cumprod cumlogsumexp concatenate max min""".split()
)


def shift_only(jaxpr: Any, shift_out: Sequence[bool] | None = None) -> frozenset:
    """The variables of ``jaxpr`` whose values reach its outputs only through
    ``stop_gradient`` (or not at all). ``shift_out[i]``: output ``i`` is such a value in
    the enclosing program."""
    flags = tuple(bool(s) for s in shift_out) if shift_out is not None else ()
    shift: set[Any] = set()
    bad: set[Any] = set()
    for i, v in enumerate(jaxpr.outvars):
        if isinstance(v, Literal):
            continue
        if i < len(flags) and flags[i]:
            shift.add(v)
        else:
            bad.add(v)
    for eqn in reversed(jaxpr.eqns):
        outs = [o for o in eqn.outvars if type(o).__name__ != "DropVar"]
        # outputs not in `bad` reach the program output only through stop_gradient, or not
        # at all (dead values)
        out_shift = all(o not in bad for o in outs)
        through = eqn.primitive.name == "stop_gradient" or out_shift
        for v in eqn.invars:
            if isinstance(v, Literal):
                continue
            if through:
                if v not in bad:
                    shift.add(v)
            else:
                bad.add(v)
                shift.discard(v)
    return frozenset(shift - bad)


def positive_vars(jaxpr: Any) -> frozenset:
    """Variables provably > 0 (for every input): ``exp``, ``logistic``, ``cosh`` of
    anything, positive literals, and sums, products, quotients, extrema and rearrangements
    of positive values. ``abs`` and ``sign`` of such a value switch nowhere (the sum of
    exponentials inside ``logsumexp``)."""
    pos: set[Any] = set()

    def is_pos(v: Any) -> bool:
        if isinstance(v, Literal):
            try:
                return bool(np.all(np.asarray(v.val) > 0))
            except TypeError:
                return False
        return v in pos

    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        ok = name in _POSITIVE_OUT or (
            name in _POSITIVE_IF_ALL and eqn.invars and all(is_pos(v) for v in eqn.invars)
        )
        if name in ("max",) and any(is_pos(v) for v in eqn.invars):
            ok = True
        if ok:
            pos.update(o for o in eqn.outvars if type(o).__name__ != "DropVar")
    return frozenset(pos)


def sub_jaxprs(params: dict) -> Iterator[Any]:
    """The jaxprs (open) held in an equation's parameters."""
    for v in params.values():
        for item in v if isinstance(v, (list, tuple)) else (v,):
            if hasattr(item, "eqns") or (hasattr(item, "jaxpr") and hasattr(item, "consts")):
                yield open_jaxpr(item)[0]


def _walk(jaxpr: Any) -> Iterator[Any]:
    yield jaxpr
    for eqn in jaxpr.eqns:
        for sub in sub_jaxprs(eqn.params):
            yield from _walk(sub)


def lowest_float(jaxpr: Any) -> Any:
    """The floating-point dtype of lowest precision among all values of ``jaxpr`` and its
    sub-jaxprs (None if it computes no floating-point value). Complex dtypes count as
    their real part."""
    low, low_eps = None, -1.0
    for j in _walk(jaxpr):
        vars_ = list(j.invars) + [o for e in j.eqns for o in e.outvars]
        for v in vars_:
            dt = getattr(getattr(v, "aval", None), "dtype", None)
            if dt is None or not jnp.issubdtype(dt, jnp.inexact):
                continue
            if jnp.issubdtype(dt, jnp.complexfloating):
                dt = jnp.finfo(dt).dtype
            eps = float(jnp.finfo(dt).eps)
            if eps > low_eps:
                low, low_eps = jnp.dtype(dt), eps
    return low


def _user_rule(wrapped: Any) -> Any:
    """The user's function inside a custom JVP rule's ``WrappedFun``: two rules of one
    factory have the same program text and name, so the rule itself must be in the key,
    but the ``WrappedFun`` around it is new at every trace (keying on it would compile
    every call again). It is the innermost ``WrappedFun`` reached through the closures
    of JAX's wrappers; failing that, the wrapper itself (never stale, only recompiled)."""
    found, todo, seen = wrapped, [wrapped], set()
    for _ in range(64):  # (a few levels in practice)
        if not todo:
            break
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if hasattr(o, "call_wrapped"):
            found = o
            o = o.f
        for cell in getattr(o, "__closure__", None) or ():
            try:
                todo.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
    return found.f if found is not wrapped else wrapped


def fingerprint(closed: Any) -> tuple[str, tuple[Any, ...]]:
    """A compile-cache key for a traced program: its text (literals included) and the
    Python callables its equations hold (custom JVP/VJP rules), which the text shows
    only by name, and the user's source line of every equation (the text has none).
    Constants are not part of it: compiled programs take them as
    arguments, so a changed global never returns a stale result."""
    from .core import source_of

    jaxpr = open_jaxpr(closed)[0]
    refs: list[Any] = []
    lines: list[str] = []  # the user's lines: part of every site's description
    for j in _walk(jaxpr):
        for eqn in j.eqns:
            lines.append(source_of(eqn))
            for v in eqn.params.values():
                if hasattr(v, "call_wrapped"):  # a custom JVP rule (see _user_rule)
                    refs.append(_user_rule(v))
                elif callable(v) and not hasattr(v, "eqns") and not isinstance(v, type):
                    refs.append(v)
    consts = tuple((np.shape(c), str(jnp.result_type(c))) for c in open_jaxpr(closed)[1])
    return f"{jaxpr}|{consts}|{lines}", tuple(refs)


# ------------------------------------------------------------- piecewise linearity

_LINEAR = frozenset(
    """add add_any sub neg reduce_sum cumsum broadcast_in_dim reshape squeeze expand_dims
    transpose slice concatenate stack pad rev copy copy_p select_n convert_element_type real
    imag conj complex reduce_window_sum max min abs clamp sort top_k reduce_max reduce_min
    reduce_window_max reduce_window_min cummax cummin sign floor ceil round stop_gradient
    scatter-add scatter_add dynamic_slice dynamic_update_slice gather reduce_precision
    optimization_barrier sharding_constraint device_put reshard mesh_cast name""".split()
)
_BILINEAR = frozenset({"mul", "dot_general", "conv_general_dilated"})
_CALLS = frozenset(
    """pjit jit closed_call core_call remat remat2 checkpoint custom_jvp_call custom_vjp_call
    custom_vjp_call_jaxpr""".split()
)


def piecewise_linear(jaxpr: Any, dependent: Sequence[bool]) -> bool:
    """Whether ``jaxpr`` is piecewise linear in the inputs flagged ``dependent``: every
    operation on values that depend on them is linear (sums, rearrangements, products
    with one independent factor, division by an independent value), piecewise linear
    (``max``, ``abs``, selects, sorting, pooling) or piecewise constant (``floor``,
    ``sign``, comparisons). Such a program is affine between its switches, so its kink
    radius bounds the region where the linearization is exact."""
    dep: set[Any] = {v for v, d in zip(jaxpr.invars, dependent) if d}

    def on(v: Any) -> bool:
        return not isinstance(v, Literal) and v in dep

    for eqn in jaxpr.eqns:
        ins = [on(v) for v in eqn.invars]
        if not any(ins):
            continue
        name = eqn.primitive.name
        floats = [
            jnp.issubdtype(getattr(getattr(o, "aval", None), "dtype", np.int32), jnp.inexact)
            for o in eqn.outvars
        ]
        if not any(floats) and name not in _CALLS and name not in ("cond", "while", "scan"):
            pass  # integer/boolean results: piecewise constant in the inputs
        elif name in _LINEAR:
            pass
        elif name in _BILINEAR:
            if sum(ins[:2]) > 1:
                return False
        elif name == "div":
            if ins[1]:
                return False
        elif name == "integer_pow":
            if eqn.params["y"] not in (0, 1):
                return False
        elif name in _CALLS:
            sub = next(sub_jaxprs(eqn.params), None)
            if sub is None or not piecewise_linear(sub, ins[len(ins) - len(sub.invars) :]):
                return False
        elif name == "cond":
            if not all(piecewise_linear(b, ins[1:]) for b in sub_jaxprs(eqn.params)):
                return False
        elif name in ("while", "scan"):
            if not _loop_piecewise_linear(eqn, ins):
                return False
        else:
            return False
        dep.update(o for o in eqn.outvars if type(o).__name__ != "DropVar")
    return True


def _loop_piecewise_linear(eqn: Any, ins: list[bool]) -> bool:
    """A loop body checked with its constants as dependent as outside and every carry and
    scanned input treated as dependent (a safe over-approximation of the fixpoint)."""
    p = eqn.params
    if eqn.primitive.name == "scan":
        from .control import scan_counts

        body = open_jaxpr(p["jaxpr"])[0]
        nc = scan_counts(eqn, body)[0]
        return piecewise_linear(body, ins[:nc] + [True] * (len(body.invars) - nc))
    cn, bn = p["cond_nconsts"], p["body_nconsts"]
    body = open_jaxpr(p["body_jaxpr"])[0]
    cond = open_jaxpr(p["cond_jaxpr"])[0]
    body_flags = ins[cn : cn + bn] + [True] * (len(body.invars) - bn)
    cond_flags = ins[:cn] + [True] * (len(cond.invars) - cn)
    return piecewise_linear(body, body_flags) and piecewise_linear(cond, cond_flags)
