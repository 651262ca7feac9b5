"""Compiling and running an analysis of a user's function: trace it to a jaxpr, evaluate
that jaxpr with the interpreter inside one jitted program, cache what can be reused.

Cache policy (one for the toolkit, in two levels):

* **Traces** are keyed by the function object, its code, the objects its closure cells,
  default arguments and referenced globals hold (by identity, following functions they
  reference two levels deep), and the shapes and dtypes of the arguments. A rebound
  closure variable or global therefore gives a fresh trace; state *mutated in place*
  (an element of a global dict or list changed) is not seen, exactly as with
  :func:`jax.jit`: call :func:`clear_caches` after such a change.
* **Compiled programs** are keyed by the traced program itself (its text, the user's
  source lines, the custom-rule callables it holds, the shapes of its constants and
  arguments) and the analysis options. Constants are passed to the compiled program as
  arguments, so a fresh trace with new constant values reuses the compilation and never
  returns the old values.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import inspect
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _util
from . import control as _control  # noqa: F401  (registers the control-flow rules)
from . import reductions as _reductions  # noqa: F401  (registers the order-based rules)
from .core import (
    Interpreter,
    Recorder,
    SiteMeta,
    SiteStats,
    Val,
    is_float,
    open_jaxpr,
    ties_only,
)
from .passes import fingerprint, lowest_float, sub_jaxprs

__all__ = [
    "Analysis",
    "Launched",
    "Traced",
    "analyse",
    "clear_caches",
    "compile_cached",
    "launch",
    "trace",
    "traced",
]

_CACHE_SIZE = 64
_TRACES: collections.OrderedDict = collections.OrderedDict()
_COMPILED: collections.OrderedDict = collections.OrderedDict()
_LOCK = threading.Lock()


def clear_caches() -> None:
    """Drops every cached trace and compiled program of jaxrelu's toolkit (the kink
    analysis, lexicographic derivatives and the checker). Needed only after changing, in
    place, state that an analysed function reads (see :mod:`jaxrelu._jaxpr.driver`)."""
    with _LOCK:
        _TRACES.clear()
        _COMPILED.clear()


def _lru_get(cache: collections.OrderedDict, key: Any) -> Any:
    with _LOCK:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
        return hit


def _lru_put(cache: collections.OrderedDict, key: Any, value: Any) -> None:
    with _LOCK:
        cache[key] = value
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


@contextlib.contextmanager
def _compiling() -> Iterator[None]:
    """Full-precision products; JAX's warning about second derivatives of max pooling
    (first-order JVPs of it trigger it on GPUs) silenced."""
    with jax.default_matmul_precision("highest"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*reduced precision for gradient of reduce")
        yield


_LEAKED = (
    "`f` closes a custom_jvp/custom_vjp rule over a value it computes while it runs (a "
    "custom function built on every call around a JAX array): jaxrelu traces `f` once and "
    "runs that rule again later, outside the trace the value belongs to. Compute the value "
    "outside `f`, or pass it to the custom function as an argument (jax.closure_convert "
    "does that)"
)


class Compiled:
    """``fn`` compiled ahead of time for ``example`` arguments, called like it.

    A program whose custom rule closes over a value of the trace it was built in (a
    ``custom_jvp`` made on every call around a JAX array) cannot run: JAX 0.10 compiles it
    for one more argument than the call passes ("Computation compiled for 4 inputs but
    called with 3"), and a plain ``jit`` leaks the tracer. That is a ``TypeError`` saying
    so.
    """

    def __init__(self, fn: Callable, *example: Any) -> None:
        with _compiling():
            self._aot = jax.jit(fn).lower(*example).compile()

    def __call__(self, *args: Any) -> Any:
        try:
            return self._aot(*args)
        except TypeError as err:
            if "compiled for" in str(err):
                raise TypeError(_LEAKED) from err
            raise


def compile_cached(key: tuple, refs: tuple, build: Callable[[], Callable], *example: Any):
    """The compiled ``build()`` for ``example`` arguments (a :class:`Compiled`), cached
    under ``key`` (which must identify the traced program; ``refs`` are kept alive with
    the entry)."""
    hit = _lru_get(_COMPILED, key)
    if hit is not None:
        return hit[0]
    compiled = Compiled(build(), *example)
    _lru_put(_COMPILED, key, (compiled, refs))
    return compiled


# ------------------------------------------------------------------------ traces


def _identity(obj: Any, depth: int) -> Any:
    """What a function's behaviour depends on, by identity: code, closure cells, defaults,
    referenced globals (functions among them followed ``depth`` more levels)."""
    if isinstance(obj, functools.partial):
        kw = tuple((k, id(v)) for k, v in sorted(obj.keywords.items()))
        return ("partial", _identity(obj.func, depth), tuple(map(id, obj.args)), kw)
    if inspect.ismethod(obj):
        return ("method", id(obj.__self__), _identity(obj.__func__, depth))
    code = getattr(obj, "__code__", None)
    if code is None:
        return ("object", id(obj))
    held = [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
    held += list(obj.__defaults__ or ())
    glob = getattr(obj, "__globals__", {})
    held += [glob[n] for n in code.co_names if n in glob]
    parts = []
    for h in held:
        if depth > 0 and inspect.isfunction(h):
            parts.append(_identity(h, depth - 1))
        else:
            parts.append(id(h))
    return (id(obj), id(code), tuple(parts))


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


def _avals(args: Any) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple(
        (np.shape(v), _util.dtype_of(v), bool(getattr(v, "weak_type", False))) for v in leaves
    )


@dataclasses.dataclass
class Traced:
    """A traced program and what is derived from it once: its compile-cache key
    (``fingerprint``, with the callables it names in ``refs``), whether it stops
    gradients (``probe``) and its lowest floating-point precision (``low``)."""

    closed: Any
    out_tree: Any
    fingerprint: str
    refs: tuple
    probe: bool
    low: Any
    fn: Any  # keeps the traced function alive while cached (its id is in the key)
    derived: dict = dataclasses.field(default_factory=dict)  # other facts, computed once

    def once(self, name: Any, compute: Callable[[], Any]) -> Any:
        """A fact about the program, computed on first use and kept with the trace."""
        if name not in self.derived:
            self.derived[name] = compute()
        return self.derived[name]


def trace(f: Callable, args: Sequence[Any]) -> tuple[Any, Any]:
    """``(closed jaxpr, output tree)`` of ``f(*args)``, traced now."""
    # a fresh wrapper: JAX caches traces by function identity (stale constants)
    closed, shape = jax.make_jaxpr(lambda *a: f(*a), return_shape=True)(*args)
    return closed, jax.tree.structure(shape)


def traced(f: Callable, args: Sequence[Any], *, key: Any = None, call: Callable | None = None):
    """The :class:`Traced` program of ``f(*args)``, from the trace cache when ``f`` and
    what it holds are unchanged. ``key`` adds to the cache key and ``call`` (a wrapper of
    ``f``, e.g. selecting arguments) is what gets traced."""
    k = (_identity(f, 2), key, _avals(args), _util.x64())
    hit = _lru_get(_TRACES, k)
    if hit is not None:
        return hit
    closed, out_tree = trace(call or f, args)
    text, refs = fingerprint(closed)
    jaxpr = open_jaxpr(closed)[0]
    entry = Traced(closed, out_tree, text, refs, _has_stop_gradient(jaxpr), lowest_float(jaxpr), f)
    _lru_put(_TRACES, k, entry)
    return entry


def _has_stop_gradient(jaxpr: Any) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "stop_gradient":
            return True
        if any(_has_stop_gradient(s) for s in sub_jaxprs(eqn.params)):
            return True
    return False


# ---------------------------------------------------------------------- analyses


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What one run returns (NumPy): output primals and tangent blocks (flat, in the
    program's output order; empty unless asked for), per-site metadata and statistics
    (tuples in :class:`SiteStats` field order), the probe's verdict, and, when asked, the
    value and gradient from :func:`jax.value_and_grad` (on the device) and whether every
    element of the gradient is finite."""

    out_p: list[np.ndarray]
    out_t: list[np.ndarray | None]
    meta: tuple[SiteMeta, ...]
    stats: list[tuple]
    shifts_cancel: bool
    out_tree: Any
    low_dtype: Any
    grad: Any = None
    grad_finite: bool = True

    def take(self, i: int) -> Analysis:
        """Element ``i`` of a batched analysis."""
        return dataclasses.replace(
            self,
            out_p=[o[i] for o in self.out_p],
            out_t=[None if t is None else t[i] for t in self.out_t],
            stats=[tuple(v[i] for v in s) for s in self.stats],
        )


def _zeros(a: Any, k: int) -> Any:
    return jnp.zeros((k, *jnp.shape(a)), jnp.result_type(a))


def _random_blocks(args: Sequence[Any], seed: int = 0) -> list[Any]:
    keys = jax.random.split(jax.random.PRNGKey(seed), max(len(args), 1))
    return [
        jax.random.normal(k, (1, *jnp.shape(a)), jnp.float32).astype(jnp.result_type(a))
        if is_float(a) and not jnp.iscomplexobj(a)
        else None
        for k, a in zip(keys, args)
    ]


def _pack(stats: list[SiteStats], wide: Any) -> tuple[Any, Any]:
    """All sites' statistics as one integer and one float array (two transfers)."""
    if not stats:
        return jnp.zeros((0, 3), jnp.int32), jnp.zeros((0, 3), wide)
    ints = jnp.stack([jnp.stack([s.size, s.ties, s.leaving]).astype(jnp.int32) for s in stats])
    floats = jnp.stack([jnp.stack([s.margin, s.radius, s.evidence]).astype(wide) for s in stats])
    return ints, floats


@dataclasses.dataclass(frozen=True)
class _Options:
    n_ld: int
    random: bool
    batched: bool
    outputs: bool
    grad: tuple[int, ...] | None
    values: bool = False


def _build(tr: Traced, opts: _Options, box: dict) -> Callable:
    if opts.grad is not None:
        return _build_grad(tr, opts, box)
    jaxpr = open_jaxpr(tr.closed)[0]
    wide = _util.widest_float()
    n_ld, probe = opts.n_ld, tr.probe

    def run(consts: list, args: list, tangents: list) -> dict[str, Any]:
        if opts.random:
            tangents = _random_blocks(args)
        if probe:
            tangents = [
                None
                if not is_float(a)
                else jnp.concatenate([t if t is not None else _zeros(a, n_ld), _zeros(a, 1)])
                for a, t in zip(args, tangents)
            ]
        moving = [a for a, t in zip(args, tangents) if t is not None]
        interp = Interpreter(wide, n_ld, probe, values=opts.values, input_eps=coarsest_eps(moving))
        rec = Recorder(wide)
        outs = interp.run(jaxpr, consts, [Val(a, t) for a, t in zip(args, tangents)], rec)
        box["meta"] = tuple(rec.meta)
        probe_val = scale = jnp.zeros((), wide)
        if probe:
            for o in outs:
                if o.t is not None and is_float(o.p):
                    probe_val = jnp.maximum(probe_val, jnp.max(jnp.abs(o.t[-1]), initial=0.0))
                    scale = jnp.maximum(scale, jnp.max(jnp.abs(o.p), initial=0.0))
        result: dict[str, Any] = {"stats": _pack(rec.stats, wide), "probe": (probe_val, scale)}
        if opts.outputs:
            result["out_p"] = [o.p for o in outs]
            result["out_t"] = [None if o.t is None else o.t[:n_ld] for o in outs]
        return result

    return jax.vmap(run, in_axes=(None, 0, 0)) if opts.batched else run


def coarsest_eps(args: Sequence[Any]) -> float | None:
    """The machine epsilon of the coarsest floating-point (or complex) array among
    ``args``; None if there is none."""
    dtypes = [_util.dtype_of(a) for a in args if is_float(a)]
    return _util.eps_of(dtypes) if dtypes else None


def _build_grad(tr: Traced, opts: _Options, box: dict) -> Callable:
    """Sites and ``jax.value_and_grad`` from one evaluation: JAX's AD runs through the
    interpreter in its faithful mode, so the forward pass that finds the ties is the one
    the gradient uses. Stop-gradient shifts are kept as sites (no probe here)."""
    jaxpr = open_jaxpr(tr.closed)[0]
    outs_ = jaxpr.outvars
    if len(outs_) != 1 or outs_[0].aval.shape != () or not is_float(outs_[0].aval):
        raise TypeError("`f` must return a floating-point scalar (as for jax.grad)")
    wide = _util.widest_float()

    grad_args: tuple[int, ...] = opts.grad or ()

    def run(consts: list, args: list, tangents: list) -> dict[str, Any]:
        def value(*a: Any) -> tuple:
            rec = Recorder(wide)
            eps = coarsest_eps([a[i] for i in grad_args])
            interp = Interpreter(wide, 0, faithful=True, input_eps=eps)
            (out,) = interp.run(jaxpr, consts, [Val(v) for v in a], rec)
            box["meta"] = tuple(rec.meta)
            return out.p, _pack(rec.stats, wide)

        with ties_only():
            (val, stats), grads = jax.value_and_grad(value, argnums=grad_args, has_aux=True)(*args)
        # one flag for every leaf, read with the statistics (not a host check per leaf)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        tied = jnp.any(stats[0][:, 1] > 0)  # some site has an element at its kink
        # what certified_grad reads first (one transfer); a NaN value certifies nothing
        flags = jnp.stack([tied, finite, jnp.isfinite(val)])
        return {"stats": stats, "finite": finite, "grad": (val, grads), "flags": flags}

    return run


def _program(tr: Traced, flat: list, tangents: list, opts: _Options) -> tuple[Any, tuple]:
    avals = tuple((jnp.shape(a), _util.dtype_of(a)) for a in flat)
    tspec = tuple(None if t is None else jnp.shape(t) for t in tangents)
    x64 = _util.x64()
    key = ("analysis", tr.fingerprint, tuple(map(id, tr.refs)), avals, tspec, opts, x64)
    hit = _lru_get(_COMPILED, key)
    if hit is not None:
        return hit[0], hit[2]
    box: dict[str, Any] = {}
    consts = list(open_jaxpr(tr.closed)[1])
    compiled = Compiled(_build(tr, opts, box), consts, flat, tangents)
    _lru_put(_COMPILED, key, (compiled, tr.refs, box["meta"]))
    return compiled, box["meta"]


def analyse(
    f: Callable, args: Sequence[Any], tangents: Sequence[Any] | None = None, **options: Any
) -> Analysis:
    """Evaluates ``f(*args)`` with the interpreter and copies the results to the host:
    ``launch(f, args, tangents, **options).collect()`` (see :func:`launch`)."""
    return launch(f, args, tangents, **options).collect()


@dataclasses.dataclass(frozen=True)
class Launched:
    """An analysis whose program has been started: its results are still on the device
    (JAX dispatches asynchronously) until :meth:`collect` copies them to the host."""

    tr: Traced
    meta: tuple[SiteMeta, ...]
    res: dict[str, Any]

    def gradient(self) -> Any:
        """``(value, flat gradient)`` of a ``grad`` analysis, on the device."""
        return self.res["grad"]

    def flags(self) -> tuple[bool, bool, bool]:
        """For a ``grad`` analysis: ``(some site has an element at its kink, the gradient
        is finite, the value is finite)``, read with one small transfer (the statistics
        stay on the device)."""
        tied, finite, value = (bool(v) for v in np.asarray(self.res["flags"]))
        return tied, finite, value

    def collect(self) -> Analysis:
        """The :class:`Analysis` (the statistics and outputs copied to the host)."""
        tr, meta = self.tr, self.meta
        res = {k: v for k, v in self.res.items() if k not in ("grad", "flags")}
        res = jax.device_get(res)
        ints, floats = (np.asarray(v) for v in res["stats"])
        probe_val, scale = res.get("probe", (0.0, 0.0))  # (a gradient has no probe)
        cancel = True
        if tr.probe:
            eps = float(jnp.finfo(tr.low if tr.low is not None else jnp.float32).eps)
            bound = np.sqrt(eps) * (1.0 + np.asarray(scale))
            cancel = bool(np.all(np.asarray(probe_val) <= bound))
        if any(not m.source for m in meta):
            here = _util.caller_location()
            meta = tuple(m if m.source else dataclasses.replace(m, source=here) for m in meta)
        stats = [
            (
                ints[..., i, 0],
                ints[..., i, 1],
                floats[..., i, 0],
                floats[..., i, 1],
                floats[..., i, 2],
                ints[..., i, 2],
            )
            for i in range(len(meta))
        ]
        return Analysis(
            [np.asarray(o) for o in res.get("out_p", [])],
            [None if t is None else np.asarray(t) for t in res.get("out_t", [])],
            meta,
            stats,
            cancel,
            tr.out_tree,
            tr.low,
            self.res.get("grad"),  # stays on the device, as jax.grad's result would
            bool(res.get("finite", True)),
        )


def launch(
    f: Callable,
    args: Sequence[Any],
    tangents: Sequence[Any] | None = None,
    *,
    n_ld: int = 0,
    random: bool = False,
    batched: bool = False,
    outputs: bool = True,
    grad: tuple[int, ...] | None = None,
    values: bool = False,
    key: Any = None,
    call: Callable | None = None,
) -> Launched:
    """Starts the interpreter's program for ``f(*args)``; its results stay on the device
    (see :class:`Launched`).

    Args:
        f: the user's function.
        args: its positional arguments (pytrees).
        tangents: per flat argument leaf, a tangent block ``(n_ld, *shape)`` or None.
        n_ld: number of lexicographic columns.
        random: use one random direction (``n_ld`` must be 1; ``tangents`` ignored).
        batched: every argument leaf and tangent block has a leading batch axis (blocks:
            ``(batch, n_ld, *shape)``); ``f`` is traced at the first element and the
            analysis is vmapped; results keep the batch axis (see :meth:`Analysis.take`).
        outputs: return the output values and tangents (else only the sites).
        grad: also return ``jax.value_and_grad(f, argnums=grad)`` (flat argument
            indices), from the same compiled program.
        values: tangents of the program's values (``stop_gradient`` passed through).
        key, call: see :func:`traced`.
    """
    first = jax.tree.map(lambda a: jnp.asarray(a)[0], args) if batched else args
    tr = traced(f, first, key=key, call=call)
    flat = [a if isinstance(a, jax.Array) else jnp.asarray(a) for a in jax.tree.leaves(args)]
    if tangents is None or random:
        tangents = [None] * len(flat)
    opts = _Options(n_ld, random, batched, outputs, grad, values)
    compiled, meta = _program(tr, flat, list(tangents), opts)
    consts = list(open_jaxpr(tr.closed)[1])
    return Launched(tr, meta, compiled(consts, flat, list(tangents)))
