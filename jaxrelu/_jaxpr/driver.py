"""Compiling and running an analysis of a user's function: trace it to a jaxpr, evaluate
that jaxpr with the interpreter inside one jitted program, cache the compiled program.

Cache policy (one for the toolkit): a compiled analysis is keyed by the *traced program*
(its text, the custom-rule callables it holds, the shapes and dtypes of its constants and
arguments) and the analysis options, never by the Python function object. The function
is traced again on every call (cheap), and its constants are passed to the compiled
program as arguments, so a changed global or closure either gives a different key
(recompiled) or a different argument (recomputed): never a stale result.
:func:`clear_caches` empties the cache.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _util
from . import control as _control  # noqa: F401  (registers the control-flow rules)
from . import reductions as _reductions  # noqa: F401  (registers the order-based rules)
from .core import Interpreter, Recorder, SiteMeta, Val, is_float, open_jaxpr
from .passes import fingerprint, lowest_float

__all__ = ["Analysis", "Program", "analyse", "clear_caches", "compile_cached", "trace"]

_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64
_LOCK = threading.Lock()


def clear_caches() -> None:
    """Drops every compiled analysis."""
    with _LOCK:
        _CACHE.clear()


@dataclasses.dataclass(frozen=True)
class Program:
    """A compiled analysis of one traced program."""

    fn: Callable
    meta: tuple[SiteMeta, ...]
    probe: bool
    refs: tuple  # the custom-rule callables of the key, kept alive while cached


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What one run returns (NumPy): output primals and tangent blocks (flat, in the
    program's output order), per-site metadata and statistics, the probe's verdict."""

    out_p: list[np.ndarray]
    out_t: list[np.ndarray | None]
    meta: tuple[SiteMeta, ...]
    stats: list[tuple]
    shifts_cancel: bool
    out_tree: Any
    low_dtype: Any

    def take(self, i: int) -> Analysis:
        """Element ``i`` of a batched analysis."""
        return dataclasses.replace(
            self,
            out_p=[o[i] for o in self.out_p],
            out_t=[None if t is None else t[i] for t in self.out_t],
            stats=[tuple(v[i] for v in s) for s in self.stats],
        )


def trace(f: Callable, args: Sequence[Any]) -> tuple[Any, Any]:
    """``(closed jaxpr, output tree)`` of ``f(*args)``."""
    # a fresh wrapper each time: JAX caches traces by function identity, which would
    # return the constants (globals, closures) of the first trace
    closed, shape = jax.make_jaxpr(lambda *a: f(*a), return_shape=True)(*args)
    return closed, jax.tree.structure(shape)


def compile_cached(key: tuple, refs: tuple, build: Callable[[], Callable], *example: Any):
    """The compiled ``build()`` for ``example`` arguments, cached under ``key`` (which
    must identify the traced program; ``refs`` are kept alive with the entry)."""
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit[0]
    with jax.default_matmul_precision("highest"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*reduced precision for gradient of reduce")
        compiled = jax.jit(build()).lower(*example).compile()
    with _LOCK:
        _CACHE[key] = (compiled, refs)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled


def _has_stop_gradient(jaxpr: Any) -> bool:
    from .passes import sub_jaxprs

    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "stop_gradient":
            return True
        if any(_has_stop_gradient(s) for s in sub_jaxprs(eqn.params)):
            return True
    return False


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


def _program(
    closed: Any, args: list, tangents: list, n_ld: int, random: bool, batched: bool
) -> Program:
    jaxpr, consts = open_jaxpr(closed)
    text, refs = fingerprint(closed)
    avals = tuple((jnp.shape(a), str(jnp.result_type(a))) for a in args)
    tspec = tuple(None if t is None else jnp.shape(t) for t in tangents)
    probe = _has_stop_gradient(jaxpr)
    x64 = jax.config.jax_enable_x64
    key = ("analysis", text, tuple(map(id, refs)), avals, tspec, n_ld, random, probe, batched, x64)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    wide = _util.widest_float()
    box: dict[str, Any] = {}

    def run(consts: list, args: list, tangents: list) -> tuple:
        if random:
            tangents = _random_blocks(args)
        if probe:
            tangents = [
                None
                if not is_float(a)
                else jnp.concatenate(
                    [
                        t
                        if t is not None
                        else jnp.zeros((n_ld, *jnp.shape(a)), jnp.result_type(a)),
                        jnp.zeros((1, *jnp.shape(a)), jnp.result_type(a)),
                    ]
                )
                for a, t in zip(args, tangents)
            ]
        interp = Interpreter(wide, n_ld, probe)
        rec = Recorder(wide)
        vals = [Val(a, t) for a, t in zip(args, tangents)]
        outs = interp.run(jaxpr, consts, vals, rec)
        box["meta"] = tuple(rec.meta)
        probe_val = jnp.zeros((), wide)
        scale = jnp.zeros((), wide)
        if probe:
            for o in outs:
                if o.t is not None and is_float(o.p):
                    probe_val = jnp.maximum(probe_val, jnp.max(jnp.abs(o.t[-1]), initial=0.0))
                    scale = jnp.maximum(scale, jnp.max(jnp.abs(o.p), initial=0.0))
        out_t = [None if o.t is None else o.t[:n_ld] for o in outs]
        return [o.p for o in outs], out_t, [tuple(s) for s in rec.stats], (probe_val, scale)

    fn = jax.vmap(run, in_axes=(None, 0, 0)) if batched else run
    with jax.default_matmul_precision("highest"), warnings.catch_warnings():
        # first-order JVPs of max pooling make JAX warn about second derivatives on GPUs
        warnings.filterwarnings("ignore", message=".*reduced precision for gradient of reduce")
        compiled = jax.jit(fn).lower(list(consts), list(args), list(tangents)).compile()
    prog = Program(compiled, box["meta"], probe, refs)
    with _LOCK:
        _CACHE[key] = prog
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return prog


def analyse(
    f: Callable,
    args: Sequence[Any],
    tangents: Sequence[Any] | None = None,
    *,
    n_ld: int = 0,
    random: bool = False,
    batched: bool = False,
) -> Analysis:
    """Evaluates ``f(*args)`` with the interpreter.

    Args:
        f: the user's function.
        args: its positional arguments (pytrees).
        tangents: per flat argument leaf, a tangent block ``(n_ld, *shape)`` or None.
        n_ld: number of lexicographic columns.
        random: use one random direction (``n_ld`` must be 1; ``tangents`` ignored).
        batched: every argument leaf and tangent block has a leading batch axis (blocks:
            ``(batch, n_ld, *shape)``); ``f`` is traced at the first element and the
            analysis is vmapped; results keep the batch axis (see :meth:`Analysis.take`).
    """
    first = jax.tree.map(lambda a: jnp.asarray(a)[0], args) if batched else args
    closed, out_tree = trace(f, first)
    flat = [jnp.asarray(a) for a in jax.tree.leaves(args)]
    if tangents is None:
        tangents = [None] * len(flat)
    if random:
        tangents = [None] * len(flat)
    prog = _program(closed, flat, list(tangents), n_ld, random, batched)
    consts = open_jaxpr(closed)[1]
    out_p, out_t, stats, (probe_val, scale) = jax.device_get(
        prog.fn(list(consts), flat, list(tangents))
    )
    low = lowest_float(open_jaxpr(closed)[0])
    cancel = True
    if prog.probe:
        eps = float(jnp.finfo(low if low is not None else jnp.float32).eps)
        cancel = bool(np.all(np.asarray(probe_val) <= np.sqrt(eps) * (1.0 + np.asarray(scale))))
    here = _util.caller_location()
    meta = tuple(m if m.source else dataclasses.replace(m, source=here) for m in prog.meta)
    return Analysis(
        [np.asarray(o) for o in out_p],
        [None if t is None else np.asarray(t) for t in out_t],
        meta,
        [tuple(np.asarray(v) for v in s) for s in stats],
        cancel,
        out_tree,
        low,
    )
