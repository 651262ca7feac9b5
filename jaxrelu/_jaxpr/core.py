r"""The evaluation loop, the values it carries and the rule table.

Every value of the program is carried as a :class:`Val`:

* ``p``: the primal value, exactly as the program computes it;
* ``t``: a block of tangent columns, shape ``(ncols, *p.shape)`` (``None`` when the value
  does not depend on the inputs, or is not floating point). The first ``n_ld`` columns are
  *lexicographic* (LD) tangents (Khan & Barton 2015): column ``j`` is the directional
  derivative along ``m_j`` of what the earlier columns left undecided, so that at a tie
  every rule picks the branch the program takes at ``x + ε₁ m₁ + ε₂ m₂ + …`` for
  ``ε₁ ≫ ε₂ ≫ … > 0``. The first column alone is the one-sided directional derivative
  ``f'(x; m₁)``. An optional last *probe* column measures how much the output depends
  on stop-gradient values (see :mod:`.rules`);
* ``lex``: for integer and boolean values, their value at that perturbed point (``None``
  when it is the primal value);
* ``sw``: for integer and boolean values that depend on floating-point comparisons, a
  :class:`Switch`: how far the nearest comparison is from flipping, how fast it moves
  toward flipping along ``m₁``, and the value just across it;
* ``key``: an identity token (the variable, or what a ``stop_gradient`` passed through),
  used to recognise selects between a value and its own stop-gradient copy.

Rules live in a table, ``RULES[primitive name]``; a rule takes the interpreter, the
equation, its input values and the site recorder, and returns the output values. Adding a
primitive means registering one rule (:func:`rule`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from .. import _util

__all__ = [
    "RULES",
    "Interpreter",
    "Recorder",
    "SiteMeta",
    "SiteStats",
    "Switch",
    "Val",
    "rule",
]


class Switch(NamedTuple):
    """Where a discrete value switches: ``dist`` (>= 0, 0 at a tie) to the nearest
    switching surface, ``rate`` at which ``dist`` changes along the first direction
    (None without tangents), ``across`` the value just across that surface, and ``time``:
    the earliest first-order crossing along the first direction of *any* switch the value
    depends on (None without tangents; the nearest switch need not be the first crossed).
    ``point``: the switch holds on its surface only, which a moving point crosses in an
    instant (``x == c``); a select on it changes ``f`` only where its cases differ there.
    ``grad``: the switching quantity's tangent in every lexicographic column (a leading
    axis of ``n_ld``), where a comparison made it and only shape-preserving or data-moving
    operations followed (None elsewhere: not known)."""

    dist: Any
    rate: Any
    across: Any
    time: Any = None
    point: bool = False
    grad: Any = None

    def radius(self, shape: Sequence[int], wide: Any) -> Any:
        """The earliest crossing (a tied element counts by its next crossing: a
        comparison never crosses again, a truncation does at the next integer)."""
        if self.time is None:
            return jnp.asarray(jnp.inf, wide)
        time = jnp.broadcast_to(self.time, shape).astype(wide)
        return jnp.min(time, initial=jnp.inf)


def masked_div(num: Any, den: Any, mask: Any, fill: Any = jnp.inf) -> Any:
    """``num / den`` where ``mask``, ``fill`` elsewhere (``den`` is replaced by 1 where it
    is masked, so no 0/0 appears in the gradient-free bookkeeping)."""
    return jnp.where(mask, num / jnp.where(mask, den, 1), fill)  # pragma: no mutate


def crossing_time(dist: Any, rate: Any) -> Any:
    """``dist / -rate`` where moving toward the switch (``rate < 0``), else ``inf``."""
    if rate is None:
        return None
    toward = (rate < 0) & (dist > 0)
    return masked_div(dist, -rate, toward)


class Val(NamedTuple):
    p: Any
    t: Any = None
    lex: Any = None
    sw: Switch | None = None
    key: Any = None
    # computed from the directions' input through a smooth nonlinear operation (x * x,
    # exp): a zero tangent does not make it constant along the directions, as it does for
    # a piecewise-linear value
    nl: bool = False
    # computed from literals and the program's constants alone (``jnp.median``'s
    # ``floor(0.5 * (n - 1))``): the same at every input, so no site of the program
    const: bool = False
    # piecewise constant by construction (``floor``, ``sign``): it changes only where its
    # own switch ``sw`` is crossed, so a comparison of such values switches there alone
    flat: bool = False


class SiteStats(NamedTuple):
    """Statistics of one nonsmooth site, combined over loop iterations field by field."""

    size: Any
    ties: Any
    margin: Any
    radius: Any
    evidence: Any
    leaving: Any  # tied elements that the direction moves off their switch at once

    @staticmethod
    def empty(wide: Any) -> SiteStats:
        inf = jnp.asarray(jnp.inf, wide)
        zero = jnp.int32(0)
        return SiteStats(zero, zero, inf, inf, jnp.asarray(0.0, wide), zero)

    def merge(self, other: SiteStats) -> SiteStats:
        return SiteStats(*(op(a, b) for op, a, b in zip(_MERGE, self, other)))

    def reduce(self) -> SiteStats:
        """Combines stacked statistics (a leading iteration axis)."""
        ops: tuple[Callable[[Any], Any], ...] = _REDUCE
        return SiteStats(*(op(v) for op, v in zip(ops, self)))


_MERGE = (jnp.add, jnp.add, jnp.minimum, jnp.minimum, jnp.maximum, jnp.add)
_REDUCE = (
    jnp.sum,
    jnp.sum,
    functools.partial(jnp.min, initial=jnp.inf),  # (a scan of length 0 has no iteration)
    functools.partial(jnp.min, initial=jnp.inf),
    functools.partial(jnp.max, initial=0.0),
    jnp.sum,
)


@dataclasses.dataclass(frozen=True)
class SiteMeta:
    """The static description of a site: what and where (known at trace time).

    ``kind`` is ``"kink"``, ``"jump"``, ``"unknown"``, ``"select"`` (decided after the
    run from the jump evidence: above ``threshold`` it is a jump) or ``"point"`` (a select
    on ``x == c``: a jump above ``threshold``, else no site at all), ``"undecided"`` (a tie
    the lexicographic rules cannot resolve: listed only by ``kinks.undecided_ties``) or
    ``"cut"`` (a branch cut: a jump, listed where an element is on its side). ``shift`` marks sites
    whose values reach the output only through ``stop_gradient``."""

    primitive: str
    kind: str
    activation: str | None
    source: str | None
    shift: bool = False
    threshold: float = 0.0


def source_of(eqn: Any) -> str:
    """``file:line`` of the first user frame of an equation (``"unknown"`` if none)."""
    try:
        frames = eqn.source_info.traceback.frames
    except AttributeError:
        return "unknown"
    for fr in frames:
        if not _util.is_internal_file(fr.file_name):
            return f"{os.path.basename(fr.file_name)}:{fr.line_num}"
    return "unknown"


_COUNTS = ("size", "ties", "leaving")  # the integer fields of SiteStats


def _int32_counts(stats: SiteStats) -> SiteStats:
    """The counts as int32 whatever computed them (a sum over loop iterations is int64
    with x64 on): a cond's branches must give their statistics the same types."""
    return stats._replace(**{k: jnp.asarray(getattr(stats, k)).astype(jnp.int32) for k in _COUNTS})


class Recorder:
    """Collects sites: their static :class:`SiteMeta` and traced :class:`SiteStats`.

    A disabled recorder (for branches evaluated only for their tangents or for evidence)
    drops everything."""

    def __init__(
        self,
        wide: Any,
        activation: str | None = None,
        source: str | None = None,
        enabled: bool = True,
    ):
        self.wide = wide
        self.activation = activation
        self.source = source
        self.enabled = enabled
        # set by the interpreter for the equation being evaluated: whether its outputs
        # (all, and each) reach the program output only through stop_gradient
        self.shift = False
        self.shift_outs: list[bool] | None = None
        self.dead_outs: list[bool] | None = None  # outputs nothing reads
        self.positive: list[bool] = []  # which inputs are provably > 0 (see passes)
        self.meta: list[SiteMeta] = []
        self.stats: list[SiteStats] = []

    def child(self, activation: str | None = None, eqn: Any = None, enabled: bool = True):
        return Recorder(
            self.wide,
            activation if activation is not None else self.activation,
            self.where(eqn) if eqn is not None else self.source,
            self.enabled and enabled,
        )

    def where(self, eqn: Any) -> str | None:
        """The user's line of ``eqn``, else of the enclosing call (None at the top level:
        the caller's line, filled in after the run)."""
        src = source_of(eqn)
        return self.source if src == "unknown" else src

    def add(self, eqn: Any, primitive: str, kind: str, stats: SiteStats, threshold=0.0):
        if not self.enabled:
            return
        self.meta.append(
            SiteMeta(primitive, kind, self.activation, self.where(eqn), self.shift, threshold)
        )
        self.stats.append(_int32_counts(stats))

    def extend(self, other: Recorder, stats: Sequence[SiteStats]) -> None:
        if not self.enabled:
            return
        meta = other.meta
        if self.shift:  # a call whose outputs only feed stop_gradient: all its sites too
            meta = [dataclasses.replace(m, shift=True) for m in meta]
        self.meta.extend(meta)
        self.stats.extend(_int32_counts(st) for st in stats)


Rule = Callable[["Interpreter", Any, list[Val], Recorder], list[Val]]
RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Registers a rule for the primitives ``names``."""

    def register(fn: Rule) -> Rule:
        for n in names:
            RULES[n] = fn
        return fn

    return register


def is_float(v: Any) -> bool:
    dt = getattr(v, "dtype", None)
    if dt is None:
        return isinstance(v, float)
    return bool(jnp.issubdtype(dt, jnp.inexact))


def open_jaxpr(j: Any) -> tuple[Any, list]:
    """(jaxpr, consts) of a closed jaxpr, or of an open one (JAX >= 0.11 stores those)."""
    if hasattr(j, "jaxpr") and hasattr(j, "consts"):
        return j.jaxpr, list(j.consts)
    return j, []


class Interpreter:
    """Evaluates jaxprs on :class:`Val` values with the rules of :data:`RULES`.

    Args:
        wide: the dtype for bookkeeping (switching quantities, statistics).
        n_ld: number of lexicographic tangent columns (0: primal values only).
        probe: carry one more tangent column seeded at ``stop_gradient`` outputs.
        faithful: values only, computed so that JAX's own AD through the evaluation is AD
            of the program: ``custom_jvp``/``custom_vjp`` calls are bound as themselves
            (their inner equations are evaluated on stop-gradient inputs for their sites).
        values: tangents are derivatives of the program's *values*: ``stop_gradient`` passes
            them through (the checker compares them with slopes measured from values;
            derivatives of the program, as ``ld_grad`` gives, respect it).
        input_eps: the machine epsilon of the coarsest floating-point input (None: no
            float input): a cast to a coarser precision than the inputs' is a staircase.
    """

    def __init__(
        self,
        wide: Any,
        n_ld: int,
        probe: bool = False,
        faithful: bool = False,
        values: bool = False,
        input_eps: float | None = None,
    ):
        self.wide = wide
        self.input_eps = input_eps
        self.n_ld = n_ld
        self.probe = probe
        self.faithful = faithful
        self.values = values
        self.ncols = n_ld + int(probe)
        # masks of tied elements whose lexicographic columns are NaN (sqrt(x * x) at 0),
        # which the rule being evaluated resolved blindly: recorded as undecided sites
        self._blind: list[Any] | None = None

    # -- the evaluation loop ----------------------------------------------------------

    def run(
        self,
        jaxpr: Any,
        consts: Sequence[Any],
        ins: Sequence[Val],
        rec: Recorder,
        shift_out: Sequence[bool] | None = None,
        dead_out: Sequence[bool] | None = None,
    ) -> list[Val]:
        """Evaluates ``jaxpr`` on ``ins``; ``shift_out[i]`` says that output ``i`` reaches
        the program's output only through ``stop_gradient``, ``dead_out[i]`` that nothing
        outside reads it (``eigvalsh``'s call of ``eigh`` drops the eigenvectors)."""
        from .passes import positive_vars, shift_only
        from .rules import bind, curves, lookup

        shift = shift_only(jaxpr, shift_out)
        positive = positive_vars(jaxpr)
        used = {v for e in jaxpr.eqns for v in e.invars if not isinstance(v, Literal)}
        dead = dead_out if dead_out is not None else [False] * len(jaxpr.outvars)
        used.update(
            v for v, gone in zip(jaxpr.outvars, dead) if not gone and not isinstance(v, Literal)
        )
        env: dict[Any, Val] = {}

        def read(v: Any) -> Val:
            if isinstance(v, Literal):
                return Val(v.val, key=("literal", repr(v.val)), const=True)
            return env[v]

        def write(v: Any, val: Val) -> None:
            if type(v).__name__ == "DropVar":
                return
            if val.t is not None and not is_float(val.p):
                val = val._replace(t=None)
            env[v] = val if val.key is not None else val._replace(key=v)

        for v, c in zip(jaxpr.constvars, consts):
            write(v, Val(c, const=True))
        for v, val in zip(jaxpr.invars, ins):
            write(v, val)
        for eqn in jaxpr.eqns:
            vals = [read(v) for v in eqn.invars]
            if all(v.const for v in vals):  # folded: it never switches (nor records sites)
                # (a stop_gradient copy keeps its operand's identity, as in the rule)
                key = vals[0].key if eqn.primitive.name == "stop_gradient" else None
                for v, o in zip(eqn.outvars, bind(eqn, [v.p for v in vals])):
                    write(v, Val(o, key=key, const=True))
                continue
            fn = lookup(eqn)
            rec.shift_outs = [o in shift or type(o).__name__ == "DropVar" for o in eqn.outvars]
            rec.dead_outs = [type(o).__name__ == "DropVar" or o not in used for o in eqn.outvars]
            rec.positive = [not isinstance(v, Literal) and v in positive for v in eqn.invars]
            rec.shift = bool(rec.shift_outs) and all(rec.shift_outs)
            outer, self._blind = self._blind, []
            try:
                outs = fn(self, eqn, vals, rec)
                for bad in self._blind:
                    dist = jnp.where(bad, 0.0, 1.0).astype(self.wide)
                    rec.add(
                        eqn, eqn.primitive.name, "undecided", switch_stats(dist, None, self.wide)
                    )
            finally:
                self._blind = outer
            if any(v.nl for v in vals) or curves(eqn, vals):
                outs = [o._replace(nl=True) for o in outs]
            rec.shift, rec.shift_outs, rec.positive = False, None, []
            rec.dead_outs = None
            for v, val in zip(eqn.outvars, outs):
                write(v, val)
        return [read(v) for v in jaxpr.outvars]

    # -- helpers for rules ------------------------------------------------------------

    def zeros_t(self, p: Any) -> Any:
        p = jnp.asarray(p)
        return jnp.zeros((self.ncols, *p.shape), p.dtype)

    def t_of(self, v: Val, shape: Sequence[int] | None = None, dtype: Any = None) -> Any:
        """The tangent block of ``v`` (zeros if none), broadcast to ``shape``."""
        p = jnp.asarray(v.p)
        t = v.t if v.t is not None else self.zeros_t(p)
        if dtype is not None:
            t = t.astype(dtype)
        if shape is not None and tuple(t.shape[1:]) != tuple(shape):
            t = bcast_block(t, shape)
        return t

    def lex_sign(self, m: Any, t: Any) -> Any:
        """``fsign(m, t)``: the sign of the first nonzero among ``m`` and the lexicographic
        columns of ``t`` (elementwise; 0 where all are zero)."""
        s = jnp.sign(m)
        if t is None or self.n_ld == 0:
            return s
        self.blind(m == 0, t)
        if self.n_ld == 1:
            return jnp.where(s != 0, s, jnp.sign(t[0]).astype(s.dtype))

        def resolve(s: Any) -> Any:
            cols = t[: self.n_ld]
            first = jnp.argmax(cols != 0, axis=0)
            val = jnp.take_along_axis(cols, first[None], axis=0)[0]
            return jnp.where(s != 0, s, jnp.sign(val).astype(s.dtype))

        # the columns only matter at ties: skip the search over them when there is none
        return jax.lax.cond(jnp.any(s == 0), resolve, lambda s: s, s)

    def blind(self, tied: Any, t: Any, axes: Sequence[int] = ()) -> None:
        """Notes the ``tied`` elements whose lexicographic columns in ``t`` (``(ncols,
        ...)``) have a NaN (any of them along ``axes`` of the elements, for a reduction):
        a tangent that is not a number (``sqrt`` at 0 times 0) cannot decide the side, so
        the evaluated rule's choice there is recorded as an undecided tie."""
        if self._blind is None or t is None or not self.n_ld:
            return
        nan = jnp.any(jnp.isnan(t[: self.n_ld]), axis=0)
        bad = jnp.broadcast_to(tied, jnp.broadcast_shapes(jnp.shape(tied), nan.shape)) & nan
        if axes:
            bad = jnp.any(bad, axis=tuple(axes))
        self._blind.append(bad)

    def rate(self, m: Any, t: Any) -> Any:
        """Rate of change of ``|m|`` along the first direction (None without one)."""
        if t is None or self.n_ld == 0:
            return None
        dm = t[0].astype(self.wide)
        return jnp.where(m >= 0, dm, -dm)

    def wide_of(self, x: Any, shape: Sequence[int] | None = None) -> Any:
        x = jnp.asarray(x)
        x = x.astype(self.wide) if not jnp.iscomplexobj(x) else x
        return x if shape is None else jnp.broadcast_to(x, shape)


def bcast_block(t: Any, shape: Sequence[int]) -> Any:
    """Broadcasts a tangent block ``(ncols, *s)`` to ``(ncols, *shape)`` (NumPy rules on
    the trailing axes)."""
    extra = len(shape) - (t.ndim - 1)
    t = t.reshape((t.shape[0],) + (1,) * extra + tuple(t.shape[1:]))
    return jnp.broadcast_to(t, (t.shape[0], *shape))


_TIES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("ties_only", default=False)


@contextlib.contextmanager
def ties_only() -> Any:
    """While tracing under it, sites record only their ties (``certified_grad``'s check):
    margins and radii are left at ``inf``, which saves passes over the activations (the
    caller knows a tied site's margin is 0)."""
    token = _TIES_ONLY.set(True)
    try:
        yield
    finally:
        _TIES_ONLY.reset(token)


def ties_only_active() -> bool:
    """Whether a :func:`ties_only` analysis is being traced."""
    return _TIES_ONLY.get()


def switch_stats(
    dist: Any, rate: Any, wide: Any, evidence: Any = None, leaving: Any = 0
) -> SiteStats:
    """Statistics of a switching distance ``dist`` (0 at a tie) changing at ``rate``: an
    element moving toward its switch (``rate < 0``) reaches it at ``dist / -rate``, to
    first order (exactly for piecewise-linear programs); tied elements do not count for
    the radius (they leave the switch at once, or stay on it)."""
    dist = jnp.asarray(dist).astype(wide)
    size = jnp.int32(dist.size)
    if dist.size == 0:
        return SiteStats.empty(wide)._replace(size=size)
    ties = _util.count(dist == 0)
    ev = jnp.asarray(0.0, wide) if evidence is None else jnp.asarray(evidence, wide)
    leaving = jnp.asarray(leaving, jnp.int32)
    if _TIES_ONLY.get():  # the evidence still tells a tied jump from a tied kink
        return SiteStats.empty(wide)._replace(size=size, ties=ties, evidence=ev, leaving=leaving)
    margin = jnp.min(dist)
    if rate is None:
        radius = jnp.asarray(jnp.inf, wide)
    else:
        rate = jnp.broadcast_to(jnp.asarray(rate).astype(wide), dist.shape)
        toward = (rate < 0) & (dist > 0)
        radius = jnp.min(masked_div(dist, -rate, toward))
    return SiteStats(size, ties, margin, radius, ev, leaving)


def first_true(mask: Any, axes: Sequence[int]) -> Any:
    """A one-hot mask (over ``axes``) of the first true element of ``mask`` along them,
    all false where there is none."""
    axes = tuple(a % mask.ndim for a in axes)
    keep = [a for a in range(mask.ndim) if a not in axes]
    perm = keep + list(axes)
    moved = jnp.transpose(mask, perm)
    lead = moved.shape[: len(keep)]
    n = int(np.prod(moved.shape[len(keep) :], dtype=int))
    flat = moved.reshape((*lead, n))
    idx = jnp.argmax(flat, axis=-1)
    hot = (jnp.arange(n) == idx[..., None]) & jnp.any(flat, axis=-1, keepdims=True)
    hot = hot.reshape(moved.shape)
    return jnp.transpose(hot, [int(i) for i in np.argsort(perm)])
