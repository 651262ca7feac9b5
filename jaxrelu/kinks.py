r"""Kink analysis read from the jaxpr: where a program is nonsmooth, how close it is, and
how far one can move before any of its nonsmooth operations switches.

A program's nonsmooth operations (``max``, ``min``, ``abs``, ``clamp``, ``sort``,
``reduce_max``, max-pooling, ``select_n`` driven by a comparison, ``sign``, ``floor``,
``round``, ``argmax``, ...) each have a *switching quantity* (ADOL-C's switching variable):
``a - b`` for ``max(a, b)``, ``x`` for ``abs(x)``, the gap to the runner-up for
``reduce_max``. The kink is where it is 0. :func:`find_kinks` traces the program to a
jaxpr and evaluates it with an interpreter that carries, for every value, its tangent
along a direction; at each nonsmooth site it records how many elements sit exactly at the
kink (``ties``) and the smallest distance to it (``min_margin``). :func:`kink_radius`
uses the tangents: an element whose switching quantity ``m`` moves toward 0 at rate
``dm`` crosses it at ``t = |m| / |dm|`` to first order, exactly for piecewise-linear
programs.

Everything runs as one jitted program per function and input shapes (compiled once,
cached): one forward pass and one JVP.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import Jaxpr, Literal

from . import _util, _validate

__all__ = [
    "AuditRow",
    "ConventionAudit",
    "KinkSite",
    "audit_conventions",
    "count_ties",
    "find_kinks",
    "kink_radius",
    "summary",
]

# ------------------------------------------------------------------ primitive tables

_KINK_PRIMS = {"max", "min", "abs", "clamp", "sort", "reduce_max", "reduce_min", "top_k"}
_KINK_PRIMS |= {"reduce_window_max", "reduce_window_min"}
_JUMP_PRIMS = {"sign", "floor", "ceil", "round", "argmax", "argmin", "rem"}
_COMPARISONS = {"gt", "ge", "lt", "le", "eq", "ne"}
_SMOOTH_PRIMS = {
    # arithmetic and elementary functions (smooth on their domain)
    "add",
    "add_any",
    "sub",
    "mul",
    "div",
    "neg",
    "exp",
    "exp2",
    "log",
    "log1p",
    "expm1",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "logistic",
    "sqrt",
    "rsqrt",
    "cbrt",
    "pow",
    "integer_pow",
    "square",
    "erf",
    "erfc",
    "erf_inv",
    "lgamma",
    "digamma",
    "polygamma",
    "igamma",
    "igammac",
    "bessel_i0e",
    "bessel_i1e",
    "real",
    "imag",
    "conj",
    "complex",
    "reduce_precision",
    # linear algebra, reductions, data movement
    "dot_general",
    "conv_general_dilated",
    "reduce_sum",
    "reduce_prod",
    "cumsum",
    "cumprod",
    "cumlogsumexp",
    "reshape",
    "broadcast_in_dim",
    "transpose",
    "squeeze",
    "expand_dims",
    "concatenate",
    "pad",
    "slice",
    "dynamic_slice",
    "dynamic_update_slice",
    "gather",
    "scatter",
    "scatter-add",
    "scatter_add",
    "rev",
    "copy",
    "copy_p",
    "iota",
    "split",
    "convert_element_type",
    "bitcast_convert_type",
    "select_n",
    "device_put",
    "sharding_constraint",
    "reshard",
    "mesh_cast",
    "optimization_barrier",
    "cholesky",
    "triangular_solve",
    "lu",
    "qr",
    "eigh",
    "svd",
    "fft",
    "stop_gradient",
    # integer / boolean / random machinery (no float dependence)
    "and",
    "or",
    "not",
    "xor",
    "shift_left",
    "shift_right_logical",
    "shift_right_arithmetic",
    "population_count",
    "clz",
    "random_bits",
    "random_seed",
    "random_wrap",
    "random_unwrap",
    "random_fold_in",
    "random_split",
    "threefry2x32",
    "is_finite",
    "nextafter",
    "axis_index",
    "debug_callback",
    "pure_callback",
    "name",
}
_CALL_PRIMS = {"pjit", "jit", "closed_call", "core_call", "remat", "remat2", "checkpoint"}
_CUSTOM_PRIMS = {"custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"}

_JAXRELU_PREFIX = "jaxrelu_"
_NN_ACTIVATIONS = {
    "relu",
    "relu6",
    "hard_tanh",
    "leaky_relu",
    "elu",
    "celu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "soft_sign",
    "log_sigmoid",
    "glu",
    "mish",
}

_JAXRELU_DIR = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------- public types


@dataclasses.dataclass(frozen=True)
class KinkSite:
    """One nonsmooth operation of a program, evaluated at a point.

    Attributes:
        primitive: the JAX primitive (``"max"``, ``"abs"``, ``"select_n"``, ``"sort"``,
            ``"reduce_max"``, ``"floor"``, ...).
        kind: ``"kink"`` (continuous, nonsmooth), ``"jump"`` (discontinuous) or
            ``"unknown"`` (a primitive the analysis does not know).
        activation: the jaxrelu or :mod:`jax.nn` activation the site sits in, else None.
        source: ``"file.py:LINE"`` of the user's line that produced it.
        size: number of elements evaluated (summed over loop iterations).
        ties: elements evaluated exactly at the kink.
        min_margin: smallest distance to the kink over the elements (the switching
            quantity, e.g. ``|a - b|`` for ``max(a, b)``); NaN for unknown primitives.
        radius: first-order distance along the analysis direction at which one of its
            elements switches (``inf`` if none moves toward its kink; NaN when no
            direction was given, as in :func:`find_kinks`).
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
            return f"{self.primitive}{act} at {self.source}: unknown primitive, not analysed"
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
    rows = [
        (
            s.primitive,
            s.kind,
            s.activation or "-",
            s.source,
            str(s.size),
            str(s.ties),
            "nan" if math.isnan(s.min_margin) else f"{s.min_margin:.3g}",
        )
        for s in sites
    ]
    head = ("primitive", "kind", "activation", "source", "size", "ties", "min margin")
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w[i]) if i < 4 else c.rjust(w[i]) for i, c in enumerate(r))
    return "\n".join(fmt(r) for r in [head, *rows])


# -------------------------------------------------------------------- the interpreter


@dataclasses.dataclass
class _Meta:
    primitive: str
    kind: str
    activation: str | None
    source: str


def _source_of(eqn: Any) -> str:
    try:
        frames = eqn.source_info.traceback.frames
    except AttributeError:
        return "unknown"
    for fr in frames:
        if not _util.is_internal_file(fr.file_name):
            return f"{os.path.basename(fr.file_name)}:{fr.line_num}"
    return "unknown"


class _Ctx:
    """Collects the static description and the traced statistics of every site."""

    def __init__(self, wide: Any, activation: str | None = None, source: str = "unknown"):
        self.wide = wide
        self.activation = activation
        self.source = source  # the user's line of the enclosing call, for inner equations
        self.meta: list[_Meta] = []
        self.stats: list[tuple] = []

    def child(self, activation: str | None = None, eqn: Any = None) -> _Ctx:
        return _Ctx(
            self.wide,
            activation if activation is not None else self.activation,
            self.where(eqn) if eqn is not None else self.source,
        )

    def where(self, eqn: Any) -> str:
        src = _source_of(eqn)
        return self.source if src == "unknown" else src

    def add(self, eqn, primitive, kind, stats, evidence=None):
        self.meta.append(_Meta(primitive, kind, self.activation, self.where(eqn)))
        self.stats.append(stats if evidence is None else (*stats[:4], evidence))

    def extend(self, other: _Ctx, stats: list[tuple]) -> None:
        self.meta.extend(other.meta)
        self.stats.extend(stats)


def _empty_stats(wide):
    inf = jnp.asarray(jnp.inf, wide)
    return (jnp.int32(0), jnp.int32(0), inf, inf, jnp.asarray(0.0, wide))


def _combine(a, b):
    """Accumulates two evaluations of one site (loop iterations)."""
    return (
        a[0] + b[0],
        a[1] + b[1],
        jnp.minimum(a[2], b[2]),
        jnp.minimum(a[3], b[3]),
        jnp.maximum(a[4], b[4]),
    )


def _reduce_stacked(s):
    return (jnp.sum(s[0]), jnp.sum(s[1]), jnp.min(s[2]), jnp.min(s[3]), jnp.max(s[4]))


def _signed_stats(m, dm, wide):
    """Stats of a signed switching quantity ``m`` (kink at 0) moving at rate ``dm``."""
    m = jnp.asarray(m).astype(wide)
    size = jnp.int32(m.size)
    if m.size == 0:
        return (size, *_empty_stats(wide)[1:])
    absm = jnp.abs(m)
    ties = jnp.sum(m == 0).astype(jnp.int32)
    min_margin = jnp.min(absm)
    if dm is None:
        radius = jnp.asarray(jnp.inf, wide)
    else:
        dm = jnp.asarray(dm).astype(wide)
        toward = (m * dm < 0) & (m != 0)
        radius = jnp.min(jnp.where(toward, absm / jnp.where(toward, jnp.abs(dm), 1), jnp.inf))
    return (size, ties, min_margin, radius, jnp.asarray(0.0, wide))


def _periodic_stats(x, dx, wide, offset):
    """Stats of a jump at every integer (+ offset): floor, ceil, round, rem."""
    x = jnp.asarray(x).astype(wide) - offset
    size = jnp.int32(x.size)
    near = jnp.round(x)
    ties = jnp.sum(x == near).astype(jnp.int32)
    min_margin = jnp.min(jnp.abs(x - near)) if x.size else jnp.asarray(jnp.inf, wide)
    if dx is None or x.size == 0:
        radius = jnp.asarray(jnp.inf, wide)
    else:
        dx = jnp.asarray(dx).astype(wide)
        target = jnp.where(dx > 0, jnp.floor(x) + 1, jnp.ceil(x) - 1)
        t = jnp.where(dx != 0, (target - x) / jnp.where(dx != 0, dx, 1), jnp.inf)
        radius = jnp.min(t)
    return (size, ties, min_margin, radius, jnp.asarray(0.0, wide))


def _gap_stats(x, dx, top, dtop, axes, wide, sign=1.0):
    """Stats of a max (sign 1) or min (sign -1) reduction: margins are the gaps between
    each element and the extremum; the extremum itself (one per output) is excluded."""
    x = jnp.asarray(x).astype(wide) * sign
    top = jnp.expand_dims(jnp.asarray(top).astype(wide) * sign, axes)
    gap = top - x  # >= 0, zero at the maximisers
    n_out = top.size
    size = jnp.int32(x.size)
    is_top = gap == 0
    ties = (jnp.sum(is_top) - n_out).astype(jnp.int32)
    pos = jnp.where(is_top, jnp.inf, gap)
    min_margin = jnp.where(ties > 0, 0.0, jnp.min(pos)) if x.size else jnp.asarray(jnp.inf, wide)
    if dx is None or dtop is None:
        radius = jnp.asarray(jnp.inf, wide)
    else:
        rate = (
            jnp.expand_dims(jnp.asarray(dtop).astype(wide) * sign, axes)
            - jnp.asarray(dx).astype(wide) * sign
        )
        toward = (~is_top) & (rate < 0)
        radius = jnp.min(jnp.where(toward, gap / jnp.where(toward, -rate, 1), jnp.inf))
    return (size, ties, min_margin, radius, jnp.asarray(0.0, wide))


def _window_patches(x, params, fill):
    """The elements of every pooling window, stacked on a new leading axis."""
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


def _open(j: Any) -> tuple[Jaxpr, list]:
    """(jaxpr, consts) of a closed jaxpr, or of an open one (JAX >= 0.11 stores those)."""
    if hasattr(j, "jaxpr") and hasattr(j, "consts"):
        return j.jaxpr, list(j.consts)
    return j, []


def _scan_counts(eqn: Any, body: Jaxpr) -> tuple[int, int]:
    """Numbers of constants and carries of a scan equation. Older JAX names them in the
    parameters; newer JAX does not, so they are read off the shapes: the scanned inputs
    and outputs are the trailing ones whose shape is (length, *body shape)."""
    p = eqn.params
    if "num_consts" in p and "num_carry" in p:
        return p["num_consts"], p["num_carry"]
    length = p["length"]

    def scanned(outer, inner):
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


def _is_float(v: Any) -> bool:
    dt = getattr(v, "dtype", None)
    if dt is None:
        return isinstance(v, float)
    return jnp.issubdtype(dt, jnp.floating)


class _Interpreter:
    """Evaluates a jaxpr on (primal, tangent) pairs, recording nonsmooth sites."""

    def __init__(self, wide: Any, with_tangents: bool):
        self.wide = wide
        self.with_tangents = with_tangents

    # -- environment -------------------------------------------------------------

    def run(
        self, jaxpr: Jaxpr, consts, primals, tangents, ctx: _Ctx, cmp_in=None, loop_predicate=None
    ):
        """Evaluates ``jaxpr``; returns output primals, tangents and, for boolean outputs
        that come from a float comparison, its (margin, rate)."""
        env: dict[Any, tuple[Any, Any]] = {}
        cmp: dict[Any, tuple[Any, Any]] = {}  # bool var -> (margin, rate) of its comparison

        def read(v):
            if isinstance(v, Literal):
                return v.val, None
            return env[v]

        def write(v, p, t):
            if type(v).__name__ != "DropVar":
                env[v] = (p, t if (t is not None and _is_float(p)) else None)

        for v, c in zip(jaxpr.constvars, consts):
            write(v, c, None)
        for i, (v, p, t) in enumerate(zip(jaxpr.invars, primals, tangents)):
            write(v, p, t)
            if cmp_in and cmp_in.get(i) is not None:
                cmp[v] = cmp_in[i]
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            outs = self.eqn(eqn, ins, cmp, ctx)
            for v, (p, t) in zip(eqn.outvars, outs):
                write(v, p, t)
        res = [read(v) for v in jaxpr.outvars]
        cmp_out = [None if isinstance(v, Literal) else cmp.get(v) for v in jaxpr.outvars]
        if loop_predicate is not None and cmp_out and cmp_out[0] is not None:
            m, dm = cmp_out[0]
            ctx.add(loop_predicate, "while", "jump", _signed_stats(m, dm, self.wide))
        return [p for p, _ in res], [t for _, t in res], cmp_out

    def inst(self, pairs):
        """Gives every float value a tangent (zeros where it had none), so that loop
        carries and branch outputs have one structure."""
        if not self.with_tangents:
            return tuple((p, None) for p, _ in pairs)
        out = []
        for p, t in pairs:
            if _is_float(p) and t is None:
                p = jnp.asarray(p)
                t = jnp.zeros(p.shape, p.dtype)
            out.append((p, t))
        return tuple(out)

    # -- evaluation of one equation ---------------------------------------------------

    def bind(self, eqn, ins, params=None):
        """Evaluates a first-order primitive, with its JVP on float inputs."""
        prim = eqn.primitive
        params = eqn.params if params is None else params
        primals = [p for p, _ in ins]
        float_pos = [i for i, (p, t) in enumerate(ins) if t is not None]
        if not self.with_tangents or not float_pos:
            out = prim.bind(*primals, **params)
            out = out if prim.multiple_results else [out]
            return [(o, None) for o in out]

        def fn(*fl):
            args = list(primals)
            for i, v in zip(float_pos, fl):
                args[i] = v
            return prim.bind(*args, **params)

        out, tout = jax.jvp(fn, [ins[i][0] for i in float_pos], [ins[i][1] for i in float_pos])
        if not prim.multiple_results:
            out, tout = [out], [tout]
        return [(o, t if _is_float(o) else None) for o, t in zip(out, tout)]

    def eqn(self, eqn, ins, cmp, ctx):
        name = eqn.primitive.name
        if name in _CALL_PRIMS or name in _CUSTOM_PRIMS:
            return self.call(eqn, ins, cmp, ctx)
        if name == "scan":
            return self.scan(eqn, ins, cmp, ctx)
        if name == "while":
            return self.while_loop(eqn, ins, cmp, ctx)
        if name == "cond":
            return self.cond(eqn, ins, cmp, ctx)
        outs = self.bind(eqn, ins)
        has_float_in = any(_is_float(p) for p, _ in ins)
        wide = self.wide
        if name in _COMPARISONS:
            (a, da), (b, db) = ins
            if _is_float(a) or _is_float(b):
                m = jnp.asarray(a).astype(wide) - jnp.asarray(b).astype(wide)
                dm = None
                if da is not None or db is not None:
                    dm = (jnp.zeros_like(m) if da is None else da.astype(wide)) - (
                        0 if db is None else db.astype(wide)
                    )
                cmp[eqn.outvars[0]] = (m, dm)
            return outs
        if name in ("not", "and", "or") or (
            name
            in (
                "convert_element_type",
                "broadcast_in_dim",
                "reshape",
                "squeeze",
                "transpose",
                "expand_dims",
                "slice",
                "rev",
                "copy",
                "copy_p",
            )
            and len(eqn.invars) == 1
        ):
            self.propagate_cmp(eqn, ins, outs, cmp, ctx)
            return outs
        if name == "select_n":
            pred_var = eqn.invars[0]
            if not isinstance(pred_var, Literal) and pred_var in cmp and len(ins) == 3:
                m, dm = cmp[pred_var]
                (u, du), (v, dv) = ins[1], ins[2]
                st = _signed_stats(m, dm, wide)
                evidence = self.jump_evidence(m, dm, u, du, v, dv)
                ctx.add(eqn, "select_n", "select", st, evidence)
            return outs
        if not has_float_in:
            return outs
        if name in _KINK_PRIMS or name in _JUMP_PRIMS:
            st = self.site_stats(eqn, ins, outs)
            if st is None:
                ctx.add(eqn, name, "unknown", self.unknown_stats(outs))
            else:
                ctx.add(eqn, name, "kink" if name in _KINK_PRIMS else "jump", st)
            return outs
        if name in _SMOOTH_PRIMS:
            return outs
        ctx.add(eqn, name, "unknown", self.unknown_stats(outs))
        return outs

    def unknown_stats(self, outs):
        size = sum(int(np.size(p)) for p, _ in outs)
        nan = jnp.asarray(jnp.nan, self.wide)
        return (jnp.int32(size), jnp.int32(0), nan, jnp.asarray(jnp.inf, self.wide), nan)

    def propagate_cmp(self, eqn, ins, outs, cmp, ctx):
        name = eqn.primitive.name
        srcs = [v for v in eqn.invars if not isinstance(v, Literal) and v in cmp]
        if not srcs:
            return
        out_var = eqn.outvars[0]
        out_p = outs[0][0]
        if name == "convert_element_type" and _is_float(out_p):
            # a comparison turned into a number: a step function of its operands
            m, dm = cmp[srcs[0]]
            ctx.add(eqn, "step", "jump", _signed_stats(m, dm, self.wide))
            return
        if name in ("and", "or"):
            if len(srcs) == 1:
                cmp[out_var] = cmp[srcs[0]]
                return
            (m1, d1), (m2, d2) = cmp[srcs[0]], cmp[srcs[1]]
            first = jnp.abs(m1) <= jnp.abs(m2)
            m = jnp.where(first, m1, m2)
            dm = None if d1 is None or d2 is None else jnp.where(first, d1, d2)
            cmp[out_var] = (m, dm)
            return
        m, dm = cmp[srcs[0]]
        if name in ("not", "convert_element_type"):
            cmp[out_var] = (m, dm)
            return
        params = dict(eqn.params)
        if "sharding" in params:
            params["sharding"] = None
        try:
            fm = eqn.primitive.bind(m, **params)
            fdm = None if dm is None else eqn.primitive.bind(dm, **params)
            cmp[out_var] = (fm, fdm)
        except Exception:  # shape op that does not apply to floats: lose the provenance
            pass

    def jump_evidence(self, m, dm, u, du, v, dv):
        """For select(m > 0, u, v): extrapolates the gap u - v to the switching surface
        along the tangent; continuous switches (e.g. where(x > 0, x, 0)) extrapolate to 0."""
        wide = self.wide
        g = jnp.asarray(v).astype(wide) - jnp.asarray(u).astype(wide)
        g = jnp.broadcast_to(g, jnp.shape(m))
        scale = jnp.abs(jnp.asarray(u).astype(wide)) + jnp.abs(jnp.asarray(v).astype(wide))
        scale = jnp.broadcast_to(scale, jnp.shape(m)) + 1e-30
        tie_gap = jnp.where(m == 0, jnp.abs(g) / scale, 0.0)
        if dm is None:
            return jnp.max(tie_gap, initial=0.0)
        dg = (0 if dv is None else dv.astype(wide)) - (0 if du is None else du.astype(wide))
        dg = jnp.broadcast_to(jnp.asarray(dg, wide), jnp.shape(m))
        moving = dm != 0
        surface = g - m * dg / jnp.where(moving, dm, 1)
        ext = jnp.where(moving, jnp.abs(surface) / scale, 0.0)
        return jnp.maximum(jnp.max(ext, initial=0.0), jnp.max(tie_gap, initial=0.0))

    def site_stats(self, eqn, ins, outs):
        name = eqn.primitive.name
        wide = self.wide
        if name in ("max", "min"):
            (a, da), (b, db) = ins
            m = jnp.asarray(a).astype(wide) - jnp.asarray(b).astype(wide)
            m = jnp.broadcast_to(m, jnp.shape(outs[0][0]))
            dm = self.diff(da, db, m)
            return _signed_stats(m, dm, wide)
        if name in ("abs", "sign"):
            (x, dx) = ins[0]
            return _signed_stats(x, dx, wide)
        if name == "clamp":
            (lo, dlo), (x, dx), (hi, dhi) = ins
            s1 = _signed_stats(
                jnp.broadcast_to(
                    jnp.asarray(x).astype(wide) - jnp.asarray(lo).astype(wide), jnp.shape(x)
                ),
                self.diff(dx, dlo, x),
                wide,
            )
            s2 = _signed_stats(
                jnp.broadcast_to(
                    jnp.asarray(x).astype(wide) - jnp.asarray(hi).astype(wide), jnp.shape(x)
                ),
                self.diff(dx, dhi, x),
                wide,
            )
            return (
                s1[0],
                s1[1] + s2[1],
                jnp.minimum(s1[2], s2[2]),
                jnp.minimum(s1[3], s2[3]),
                s1[4],
            )
        if name in ("floor", "ceil"):
            return _periodic_stats(ins[0][0], ins[0][1], wide, 0.0)
        if name == "round":
            return _periodic_stats(ins[0][0], ins[0][1], wide, 0.5)
        if name == "rem":
            (x, dx), (y, dy) = ins
            q = jnp.asarray(x).astype(wide) / jnp.asarray(y).astype(wide)
            dq = None
            if dx is not None or dy is not None:
                _, dq = jax.jvp(
                    lambda a, b: a / b,
                    (jnp.asarray(x).astype(wide), jnp.asarray(y).astype(wide)),
                    (
                        jnp.zeros_like(q) if dx is None else dx.astype(wide),
                        jnp.zeros(jnp.shape(y), wide) if dy is None else dy.astype(wide),
                    ),
                )
            return _periodic_stats(q, dq, wide, 0.0)
        if name in ("sort", "top_k"):
            dim = eqn.params.get("dimension", -1) if name == "sort" else -1
            y, dy = outs[0]
            m = jnp.diff(jnp.asarray(y).astype(wide), axis=dim)
            dm = None if dy is None else jnp.diff(dy.astype(wide), axis=dim)
            st = _signed_stats(m, dm, wide)
            return (jnp.int32(np.size(y)), *st[1:])
        if name in ("reduce_max", "reduce_min", "argmax", "argmin"):
            axes = tuple(eqn.params["axes"])
            x, dx = ins[0]
            sign = 1.0 if name in ("reduce_max", "argmax") else -1.0
            red = jnp.max if sign > 0 else jnp.min
            top = red(x, axis=axes)
            if dx is None:
                dtop = None
            else:
                _, dtop = jax.jvp(lambda v: red(v, axis=axes), (x,), (dx,))
            return _gap_stats(x, dx, top, dtop, axes, wide, sign)
        if name in ("reduce_window_max", "reduce_window_min"):
            x, dx = ins[0]
            sign = 1.0 if name.endswith("max") else -1.0
            fill = -jnp.inf if sign > 0 else jnp.inf
            pat = _window_patches(x, eqn.params, fill)
            if pat is None:
                return None
            dpat = None if dx is None else _window_patches(dx, eqn.params, 0.0)
            y, dy = outs[0]
            st = _gap_stats(pat, dpat, y, dy, (0,), wide, sign)
            # padding elements (+-inf) are never at a kink
            return st
        return None

    def diff(self, da, db, like):
        if da is None and db is None:
            return None
        shape = jnp.shape(like)
        a = jnp.zeros(shape, self.wide) if da is None else da.astype(self.wide)
        b = jnp.zeros(shape, self.wide) if db is None else db.astype(self.wide)
        return jnp.broadcast_to(a - b, shape)

    # -- higher-order primitives ------------------------------------------------------

    def call(self, eqn, ins, cmp, ctx):
        params = eqn.params
        name = eqn.primitive.name
        sub = params.get("jaxpr", params.get("call_jaxpr", params.get("fun_jaxpr")))
        if sub is None:
            ctx.add(eqn, name, "unknown", self.unknown_stats(self.bind(eqn, ins)))
            return self.bind(eqn, ins)
        jaxpr, consts = _open(sub)
        act = ctx.activation
        fname = params.get("name")
        if isinstance(fname, str):
            if fname.startswith(_JAXRELU_PREFIX):
                act = fname[len(_JAXRELU_PREFIX) :]
            elif fname in _NN_ACTIVATIONS:
                act = fname
        child = ctx.child(act, eqn)
        n_in = len(jaxpr.invars)
        offset = len(ins) - n_in
        args = ins[offset:]
        cmp_in = {
            i: cmp.get(v)
            for i, v in enumerate(eqn.invars[offset:])
            if not isinstance(v, Literal) and v in cmp
        }
        outs_p, outs_t, cmp_out = self.run(
            jaxpr, consts, [p for p, _ in args], [t for _, t in args], child, cmp_in
        )
        for v, c in zip(eqn.outvars, cmp_out):
            if c is not None:
                cmp[v] = c
        ctx.extend(child, child.stats)
        return list(zip(outs_p, outs_t))

    def discover(self, fn, *args):
        """Traces ``fn`` abstractly to learn the sites it records (their static part)."""
        holder = {}

        def wrapped(*a):
            out, c = fn(*a)
            holder["ctx"] = c
            return out

        jax.eval_shape(wrapped, *args)
        return holder["ctx"]

    def scan(self, eqn, ins, cmp, ctx):
        p = eqn.params
        body, body_consts = _open(p["jaxpr"])
        nc, nk = _scan_counts(eqn, body)
        consts, carry, xs = ins[:nc], self.inst(ins[nc : nc + nk]), ins[nc + nk :]
        holder = {}

        def step(c, x):
            child = ctx.child(eqn=eqn)
            args = list(consts) + list(c) + list(x)
            op, ot, _ = self.run(
                body, body_consts, [a for a, _ in args], [b for _, b in args], child
            )
            holder["ctx"] = child
            outs = list(zip(op, ot))
            return self.inst(outs[:nk]), (tuple(outs[nk:]), tuple(child.stats))

        c_out, (ys, stats) = lax.scan(
            step,
            tuple(carry),
            tuple(xs),
            length=p["length"],
            reverse=p["reverse"],
            unroll=p.get("unroll", 1),
        )
        child = holder["ctx"]
        ctx.extend(child, [_reduce_stacked(s) for s in stats])
        return list(c_out) + list(ys)

    def while_loop(self, eqn, ins, cmp, ctx):
        p = eqn.params
        cj, bj = p["cond_jaxpr"], p["body_jaxpr"]
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        cconsts, bconsts, init = ins[:cn], ins[cn : cn + bn], ins[cn + bn :]

        def cond_eval(carry):
            child = ctx.child(eqn=eqn)
            args = list(cconsts) + list(carry)
            op, _, _ = self.run(
                *_open(cj),
                [a for a, _ in args],
                [b for _, b in args],
                child,
                loop_predicate=eqn,
            )
            return op[0], child

        def body_eval(carry):
            pred_ctx = cond_eval(carry)[1]
            child = ctx.child(eqn=eqn)
            args = list(bconsts) + list(carry)
            op, ot, _ = self.run(*_open(bj), [a for a, _ in args], [b for _, b in args], child)
            return self.inst(zip(op, ot)), pred_ctx, child

        init = self.inst(init)
        probe = self.discover(lambda c: (None, body_eval(c)[2]), init)
        probe_pred = self.discover(lambda c: (None, cond_eval(c)[1]), init)
        n_pred, n_body = len(probe_pred.meta), len(probe.meta)
        acc0 = tuple(_empty_stats(self.wide) for _ in range(n_pred + n_body))

        def body_fn(state):
            carry, acc = state
            new, pctx, bctx = body_eval(carry)
            stats = list(pctx.stats) + list(bctx.stats)
            return new, tuple(_combine(a, s) for a, s in zip(acc, stats))

        def cond_fn(state):
            return cond_eval(state[0])[0]

        final, acc = lax.while_loop(cond_fn, body_fn, (init, acc0))
        last = cond_eval(final)[1]  # the check that ended the loop
        acc_pred = [_combine(a, s) for a, s in zip(acc[:n_pred], last.stats)]
        ctx.extend(probe_pred, acc_pred)
        ctx.extend(probe, list(acc[n_pred:]))
        return list(final)

    def cond(self, eqn, ins, cmp, ctx):
        branches = eqn.params["branches"]
        (idx, _), ops = ins[0], ins[1:]
        idx_var = eqn.invars[0]
        if not isinstance(idx_var, Literal) and idx_var in cmp:
            m, dm = cmp[idx_var]
            ctx.add(eqn, "cond", "jump", _signed_stats(m, dm, self.wide))

        def make(b):
            def run_branch(operands):
                child = ctx.child(eqn=eqn)
                br = branches[b]
                op, ot, _ = self.run(
                    *_open(br), [a for a, _ in operands], [t for _, t in operands], child
                )
                return self.inst(zip(op, ot)), child

            return run_branch

        runners = [make(b) for b in range(len(branches))]
        probes = [self.discover(r, tuple(ops)) for r in runners]
        counts = [len(pr.meta) for pr in probes]

        def full(b):
            def fn(operands):
                outs, child = runners[b](operands)
                stats = []
                for j, n in enumerate(counts):
                    if j == b:
                        stats.extend(child.stats)
                    else:
                        stats.extend(_empty_stats(self.wide) for _ in range(n))
                return outs, tuple(stats)

            return fn

        fns = [full(b) for b in range(len(branches))]
        outs, stats = lax.switch(jnp.asarray(idx, jnp.int32), fns, tuple(ops))
        start = 0
        for pr, n in zip(probes, counts):
            ctx.extend(pr, list(stats[start : start + n]))
            start += n
        return list(outs)


# ------------------------------------------------------------------------ the driver


def _analysis(f: Callable, with_tangents: bool, args, tangents):
    wide = _util.widest_float()
    closed = jax.make_jaxpr(f)(*args)
    flat_args = jax.tree.leaves(args)
    flat_t = jax.tree.leaves(tangents) if with_tangents else [None] * len(flat_args)
    ctx = _Ctx(wide, source=_util.caller_location())
    interp = _Interpreter(wide, with_tangents)
    t_in = [t if (t is not None and _is_float(a)) else None for a, t in zip(flat_args, flat_t)]
    interp.run(closed.jaxpr, closed.consts, flat_args, t_in, ctx)
    return ctx


_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64


def _compiled(f: Callable, mode: str, args, tangents):
    """Compiles the analysis of ``f`` once per argument shapes; returns (fn, metadata).

    ``mode``: ``"given"`` (tangents passed in), ``"random"`` (a fixed random direction
    drawn inside the compiled program) or ``"none"`` (forward only).
    """
    leaves, treedef = jax.tree.flatten(args)
    avals = tuple((jnp.shape(v), jnp.result_type(v)) for v in leaves)
    key = (f, mode, treedef, avals)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    _util.trace_output(f, *args)  # a clear error if f cannot be traced (first call only)
    meta_box: dict[str, Any] = {}

    def run(a, t):
        if mode == "random":
            t = _random_like(a)
        ctx = _analysis(f, mode != "none", a, t)
        meta_box["meta"] = list(ctx.meta)
        return [tuple(s) for s in ctx.stats]

    with jax.default_matmul_precision("highest"), warnings.catch_warnings():  # as the checker
        # (first-order JVPs of max pooling make JAX warn about second derivatives on GPUs)
        warnings.filterwarnings(
            "ignore", message=".*reduced precision for gradient of reduce-window"
        )
        compiled = jax.jit(run).lower(args, tangents).compile()
    entry = (compiled, meta_box["meta"])
    _CACHE[key] = entry
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return entry


def _run_analysis(f, args, tangents, mode):
    compiled, meta = _compiled(f, mode, args, tangents)
    stats = jax.device_get(compiled(args, tangents))
    sites = []
    for m, s in zip(meta, stats):
        size, ties, margin, radius, evidence = (np.asarray(v) for v in s)
        kind = m.kind
        if kind == "select":
            kind = "jump" if float(evidence) > 1e-3 else "kink"
        sites.append(
            (
                KinkSite(
                    primitive=m.primitive,
                    kind=kind,
                    activation=m.activation,
                    source=m.source,
                    size=int(size),
                    ties=int(ties),
                    min_margin=float(margin),
                ),
                float(radius),
            )
        )
    return sites


def _validated_args(f, args, name="args"):
    _validate.check_callable(f)
    if not args:
        raise TypeError("give the point(s) at which to evaluate `f`, e.g. find_kinks(f, x)")
    leaves = jax.tree.leaves(args)
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, (str, bytes)) or leaf is None:
            raise TypeError(f"`{name}` leaf {i} must be an array, got {leaf!r}")
    args = jax.tree.map(jnp.asarray, args)
    if not any(_is_float(v) for v in jax.tree.leaves(args)):
        raise TypeError(f"`{name}` must contain at least one floating-point array")
    return args


def find_kinks(f: Callable[..., Any], *args: Any) -> list[KinkSite]:
    """Every nonsmooth site of ``f`` evaluated at ``args``.

    Traces ``f`` to a jaxpr, recursing into every sub-jaxpr (``jit``, ``custom_jvp`` /
    ``custom_vjp`` calls, ``cond``, ``while``, ``scan``, ``remat``) and evaluates it in one
    jitted pass (forward plus one JVP along a fixed random direction, used to tell
    continuous switches from jumps). Returns one :class:`KinkSite` per nonsmooth operation,
    in program order; a primitive the analysis does not know is listed with kind
    ``"unknown"``; a smooth program gives ``[]``.

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
    args = _validated_args(f, args)
    return [s for s, _ in _run_analysis(f, args, None, "random")]


def _random_like(args):
    leaves, treedef = jax.tree.flatten(args)
    keys = jax.random.split(jax.random.PRNGKey(0), max(len(leaves), 1))
    out = [
        jax.random.normal(k, jnp.shape(v), jnp.float32).astype(v.dtype)
        if _is_float(v)
        else jnp.zeros(jnp.shape(v), jnp.float32)
        for k, v in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, out)


def count_ties(f: Callable[..., Any], *args: Any) -> int:
    """Total number of elements evaluated exactly at a kink (forward pass only).

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> jaxrelu.count_ties(lambda x: jaxrelu.relu(x).sum(), jnp.array([0.0, 1.0, 0.0]))
        2
    """
    args = _validated_args(f, args)
    return int(sum(s.ties for s, _ in _run_analysis(f, args, None, "none")))


def _prepare_direction(f, x0, direction):
    _validate.check_callable(f)
    x0 = _validate.float_tree(x0, "x0")
    if direction is None:
        raise TypeError("`direction` is required")
    direction = _validate.float_tree(direction, "direction")
    _validate.check_same_structure(x0, direction, "x0", "direction")
    norm = _util.tree_norm(direction)
    if norm == 0:
        raise ValueError("`direction` is zero; give a nonzero direction")
    if not math.isfinite(norm):
        raise ValueError("`direction` must be finite")
    direction = jax.tree.map(lambda d, x: d.astype(x.dtype), direction, x0)
    return x0, direction


def kink_radius(f: Callable[[Any], Any], x0: Any, direction: Any) -> float:
    r"""The first ``t > 0`` at which a nonsmooth site of ``f`` switches along ``x0 + t d``.

    Every site's switching quantity :math:`m` is propagated with its JVP :math:`\dot m`
    along ``d``; an element moving toward its kink (:math:`m \dot m < 0`) crosses it at
    :math:`t = |m| / |\dot m|` to first order, and the result is the minimum over all
    elements and sites. For piecewise-linear programs (ReLU networks and the like) this is
    exact: ``f`` is affine on ``[x0, x0 + t d]``. Elements sitting exactly on a kink do not
    count (they leave it at once, or stay on it); jumps count like kinks. ``inf`` where
    nothing crosses.

    Args:
        f: a JAX-traceable function of one argument.
        x0: the point (floating-point array or pytree of them).
        direction: same structure as ``x0``, nonzero; ``t`` is in its units.

    Returns:
        The radius as a Python float.

    Example:
        >>> import jax.numpy as jnp, jaxrelu
        >>> jaxrelu.kink_radius(lambda x: jaxrelu.relu(x - 1.0), jnp.array(0.25), jnp.array(1.0))
        0.75
    """
    x0, d = _prepare_direction(f, x0, direction)
    sites = _run_analysis(f, (x0,), (d,), "given")
    return float(min((r for _, r in sites), default=math.inf))


def _nearest_sites_and_radius(f, x0, d, n=3):
    """For the checker: the ``n`` sites nearest to ``x0`` (by margin) and the radius."""
    sites = _run_analysis(f, (x0,), (d,), "given")
    known = [dataclasses.replace(s, radius=r) for s, r in sites if s.kind != "unknown"]
    known.sort(
        key=lambda s: (-(s.ties > 0), s.min_margin if not math.isnan(s.min_margin) else math.inf)
    )
    radius = min((r for _, r in sites), default=math.inf)
    return known[:n], radius


# ---------------------------------------------------------------- convention audit


@dataclasses.dataclass(frozen=True)
class AuditRow:
    """What JAX's AD returns at one kink of one expression.

    Attributes:
        expression: the expression, as a user would write it.
        at: the point (the kink).
        ad: the derivative JAX's AD returns there.
        left, right: the one-sided slopes (from the left and from the right).
        in_clarke: whether ``ad`` lies in ``[min(left, right), max(left, right)]``.
        library: ``"jax"`` or ``"jaxrelu"``.
    """

    expression: str
    at: float
    ad: float
    left: float
    right: float
    in_clarke: bool
    library: str


class ConventionAudit(tuple):
    """The rows of :func:`audit_conventions`; ``str()`` is a table, ``to_dicts()`` data."""

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in self]

    def __str__(self) -> str:
        head = ("expression", "at", "AD derivative", "left slope", "right slope", "in Clarke")
        rows = [
            (
                r.expression,
                f"{r.at:g}",
                f"{r.ad:g}",
                f"{r.left:g}",
                f"{r.right:g}",
                "yes" if r.in_clarke else "NO",
            )
            for r in self
        ]
        w = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
        line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r))
        return "\n".join([line(head), "  ".join("-" * k for k in w), *map(line, rows)])


def _audit_cases():
    import jaxrelu as jr

    jnp_max = lambda x: jnp.max(jnp.stack([x, jnp.zeros_like(x)]))
    cases = [
        ("jax.nn.relu(x)", jax.nn.relu, [0.0], "jax"),
        ("jax.nn.relu6(x)", jax.nn.relu6, [0.0, 6.0], "jax"),
        ("jax.nn.hard_tanh(x)", jax.nn.hard_tanh, [-1.0, 1.0], "jax"),
        ("jax.nn.leaky_relu(x)", jax.nn.leaky_relu, [0.0], "jax"),
        ("jnp.abs(x)", jnp.abs, [0.0], "jax"),
        ("jnp.maximum(x, 0)", lambda x: jnp.maximum(x, 0.0), [0.0], "jax"),
        ("jnp.minimum(x, 0)", lambda x: jnp.minimum(x, 0.0), [0.0], "jax"),
        ("jnp.clip(x, 0, None)", lambda x: jnp.clip(x, 0.0, None), [0.0], "jax"),
        ("jnp.clip(x, -1, 1)", lambda x: jnp.clip(x, -1.0, 1.0), [-1.0, 1.0], "jax"),
        ("jnp.where(x > 0, x, 0)", lambda x: jnp.where(x > 0, x, 0.0), [0.0], "jax"),
        ("jnp.max([x, 0]) (tie)", jnp_max, [0.0], "jax"),
        ("relu(x) - relu(-x)  (= x)", lambda x: jax.nn.relu(x) - jax.nn.relu(-x), [0.0], "jax"),
        ("jaxrelu.relu(x)", jr.relu, [0.0], "jaxrelu"),
        ("jaxrelu.relu(x, 1.0)", lambda x: jr.relu(x, 1.0), [0.0], "jaxrelu"),
        ("jaxrelu.leaky_relu(x)", jr.leaky_relu, [0.0], "jaxrelu"),
        ("jaxrelu.abs(x)", jr.abs, [0.0], "jaxrelu"),
        ("jaxrelu.relu6(x)", jr.relu6, [0.0, 6.0], "jaxrelu"),
        ("jaxrelu.hard_tanh(x)", jr.hard_tanh, [-1.0, 1.0], "jaxrelu"),
        ("jaxrelu.maximum(x, 0)", lambda x: jr.maximum(x, 0.0), [0.0], "jaxrelu"),
        ("jaxrelu.minimum(x, 0)", lambda x: jr.minimum(x, 0.0), [0.0], "jaxrelu"),
    ]
    return cases


def audit_conventions() -> ConventionAudit:
    """What the installed JAX's AD returns at the kinks of common nonsmooth expressions.

    For each expression and kink: the derivative from :func:`jax.grad`, the left and
    right slopes (difference quotients over a power-of-two step on each side, exact for
    these piecewise-linear functions), and whether the AD value lies in the Clarke
    interval between them. Computed live, never from a stored table.

    Returns:
        A :class:`ConventionAudit` (a tuple of :class:`AuditRow`); print it for a table.

    Example:
        >>> import jaxrelu
        >>> rows = {r.expression: r for r in jaxrelu.audit_conventions()}
        >>> rows["jax.nn.relu(x)"].ad, rows["jnp.maximum(x, 0)"].ad
        (0.0, 0.5)
    """
    h = 2.0**-10
    rows = []
    for expr, fn, kinks, lib in _audit_cases():
        grad = jax.jit(jax.grad(fn))
        for k in kinks:
            x = jnp.float32(k)
            ad = float(grad(x))
            f0 = float(fn(x))
            left = (f0 - float(fn(jnp.float32(k - h)))) / h
            right = (float(fn(jnp.float32(k + h))) - f0) / h
            lo, hi = min(left, right), max(left, right)
            tol = 1e-6 * (1 + abs(lo) + abs(hi))
            rows.append(
                AuditRow(
                    expr,
                    float(k),
                    ad,
                    round(left, 6),
                    round(right, 6),
                    lo - tol <= ad <= hi + tol,
                    lib,
                )
            )
    return ConventionAudit(rows)
