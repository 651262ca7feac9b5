r"""Jitted training with kink instrumentation, in every precision, on one or many devices.

:func:`train` takes a frozen :class:`TrainConfig` and a data set and returns a
:class:`TrainHistory`. Underneath, three public pure functions do the work and can be
used directly (tests and benchmarks do):

* :func:`init_state` -- the :class:`TrainState` (a NamedTuple pytree) of every lockstep
  run, from one initialisation;
* :func:`train_step` -- one minibatch: gradients, instrumentation, unscaling, the masked
  update, divergence detection, loss scaling, the distance between runs;
* :func:`train_epoch` -- one pass over the data: a jitted :func:`jax.lax.scan` of
  :func:`train_step` over shuffled minibatches, in chunks of at most
  :data:`MAX_STEPS_PER_CALL` steps (Ctrl-C is honoured between chunks, see
  :mod:`jaxrelu.study.interrupt`); the second epoch reuses the first one's compilation.

The compile-time part of a run is its :class:`EngineSpec` (hashable); the seed and the
kink values are data (the kink values live in the state), so changing them never
recompiles.

Several values of the activation's derivative at its kink (``kink_grads``) train in
lockstep in one program: same initialisation, same minibatches, vmapped over the kink
value. Per step and per run the engine records (:class:`StepRecord`) the loss, the zero
hits per layer and the bifurcation test (:mod:`jaxrelu.study.instrument`), and the L1
distance between each run's weights and the first run's.

**Divergence.** A run diverges at the first step where its minibatch loss is not finite,
its updated parameters are not finite, or its loss exceeds :data:`DIVERGENCE_FACTOR` times
its first minibatch's loss (for 10 classes, about 230 nats: the network gives the right
class a probability below :math:`e^{-230}`). From then on it stops updating and is
reported ``"diverged"`` with its step and reason (:class:`Divergence`); the other runs go
on.

Precision: ``dtype`` is used for parameters and arithmetic ("pure", as in Bertoin et
al.); with ``mixed=True`` the master weights and optimizer state stay float32 and only the
forward/backward pass runs in ``dtype``, with dynamic loss scaling for float16 (a step
with non-finite gradients is skipped and halves the scale; ``loss_scale_period`` good
steps double it).

Scale-out: the batch axis is sharded over the local devices with :mod:`jax.sharding`
(parameters replicated); results equal one device's up to the order of reductions. For
several hosts, call :func:`jax.distributed.initialize` in every process first and give each
the same data: the mesh then spans ``jax.devices()`` (all hosts) and the same code runs.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import _rng, _util
from . import instrument, interrupt, limits, models, ties
from .config import (
    DTYPES,
    NetworkConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    data_devices,
)
from .data import Dataset, load_data
from .progress import Progress

__all__ = [
    "DIVERGENCE_FACTOR",
    "DTYPES",
    "MAX_STEPS_PER_CALL",
    "Divergence",
    "EngineSpec",
    "NetworkConfig",
    "OptimConfig",
    "RunConfig",
    "StepRecord",
    "TrainConfig",
    "TrainHistory",
    "TrainState",
    "evaluate",
    "init_state",
    "make_optimizer",
    "preflight",
    "train",
    "train_epoch",
    "train_step",
]

DIVERGENCE_FACTOR = 100.0
"""A run diverges when its minibatch loss exceeds this many times its first one."""
MAX_STEPS_PER_CALL = 256
"""Longest scan run by one XLA call: Ctrl-C waits at most this many steps."""
EVAL_CHUNK = 1000


class Divergence(enum.IntEnum):
    """Why a run stopped (0: it did not)."""

    NONE = 0
    LOSS_NOT_FINITE = 1
    PARAMS_NOT_FINITE = 2
    LOSS_EXPLODED = 3

    @property
    def message(self) -> str:
        return {
            Divergence.NONE: "",
            Divergence.LOSS_NOT_FINITE: "loss not finite",
            Divergence.PARAMS_NOT_FINITE: "parameters not finite",
            Divergence.LOSS_EXPLODED: f"loss above {DIVERGENCE_FACTOR:g}x its initial value",
        }[self]


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """The compile-time part of a run: everything but the seed and the kink values.

    Build it with :meth:`of`; one compilation per spec (it is hashable)."""

    arch: models.Architecture
    optim: OptimConfig
    dtype: str
    mixed: bool
    n_runs: int
    instrument: bool
    n_devices: int
    loss_scale: float
    loss_scale_period: int
    matmul_precision: str
    lexicographic: tuple[int, ...] = ()

    @classmethod
    def of(cls, config: TrainConfig, data: Dataset) -> EngineSpec:
        """The spec of ``config`` on ``data`` (checked against the data first)."""
        config.check_data(data.image_shape, data.num_classes, len(data.y_train))
        run = config.run
        return cls(
            arch=config.network.architecture(data.image_shape, data.num_classes, run.accumulate),
            optim=config.optim,
            dtype=run.dtype,
            mixed=run.mixed,
            n_runs=len(run.kink_grads),
            instrument=run.instrument,
            n_devices=config.n_devices(),
            loss_scale=run.loss_scale,
            loss_scale_period=run.loss_scale_period,
            matmul_precision=run.matmul_precision,
            lexicographic=tuple(i for i, s in enumerate(run.kink_grads) if s == ties.LEXICOGRAPHIC),
        )

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def param_dtype(self) -> jnp.dtype:
        return jnp.dtype("float32") if self.mixed else jnp.dtype(self.dtype)

    @property
    def scaled(self) -> bool:
        return self.mixed and self.dtype == "float16"

    def mesh(self) -> Mesh:
        return Mesh(np.array(data_devices()[: self.n_devices]), ("data",))

    def optimizer(self) -> optax.GradientTransformation:
        o = self.optim
        return make_optimizer(o.optimizer, o.learning_rate, o.momentum, o.weight_decay)

    def memory_bytes(self, n_examples: int) -> int:
        """Estimated device memory of a run (parameters, optimizer state, gradients of
        the lockstep runs and the bifurcation test, activations, data), before the
        :data:`limits.SAFETY` factor."""
        p = models.n_params(self.arch)
        cb, pb = self.compute_dtype.itemsize, self.param_dtype.itemsize
        slots = {"sgd": 1, "adam": 2}[self.optim.optimizer]
        per_param = pb * (4 + slots) + cb * (2 + self.mixed)
        acts = models.n_activations(self.arch, self.optim.batch_size)
        eval_acts = models.n_activations(self.arch, min(EVAL_CHUNK, n_examples))
        data = n_examples * math.prod(self.arch.in_shape) * cb
        return self.n_runs * (p * per_param + 6 * acts * cb + 2 * eval_acts * cb) + data


class TrainState(NamedTuple):
    """Everything that changes during training, with a leading run axis (a pytree).

    Attributes:
        params: parameters (``param_dtype``), ``(runs, ...)`` leaves.
        opt_state: optimizer state.
        model_state: batch norm running statistics.
        kink_grads: ``(runs,)`` each run's derivative at the kink (compute dtype).
        alive: ``(runs,)`` false once a run diverged.
        diverged_step: ``(runs,)`` the step at which it diverged, or -1.
        diverged_reason: ``(runs,)`` a :class:`Divergence` code.
        initial_loss: ``(runs,)`` the first minibatch's loss.
        loss_scale: ``(runs,)`` dynamic loss scale (1 unless mixed float16).
        good_steps: ``(runs,)`` steps since the loss scale last changed.
        step: scalar step counter.
    """

    params: Any
    opt_state: Any
    model_state: Any
    kink_grads: jax.Array
    alive: jax.Array
    diverged_step: jax.Array
    diverged_reason: jax.Array
    initial_loss: jax.Array
    loss_scale: jax.Array
    good_steps: jax.Array
    step: jax.Array


class StepRecord(NamedTuple):
    """What one step records, per run (``None`` fields when not instrumented).

    Attributes:
        loss: ``(runs,)`` minibatch loss (float32).
        weight_l1: ``(runs,)`` L1 distance from each run's weights to the first run's.
        zero_hits: ``(runs, layers)`` pre-activations exactly at a kink.
        bifurcation: ``(runs,)`` whether the gradients with kink derivative 0 and 1 differ.
        bifurcation_rel_l2: ``(runs,)`` their relative L2 difference.
        live_ties: ``(runs, layers)`` the zero hits whose gradient row with respect to
            the parameters may be nonzero (only these can change a gradient; see
            :func:`jaxrelu.study.models.tangent_support`).
    """

    loss: Any
    weight_l1: Any
    zero_hits: Any = None
    bifurcation: Any = None
    bifurcation_rel_l2: Any = None
    live_ties: Any = None


def make_optimizer(
    name: str, learning_rate: Any, momentum: float = 0.9, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """SGD (with momentum; weight decay added to the gradient, as PyTorch does) or Adam."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    if name == "sgd":
        parts.append(optax.sgd(learning_rate, momentum=momentum or None))
    elif name == "adam":
        parts.append(optax.adam(learning_rate))
    else:
        raise ValueError(f"`optimizer` must be one of 'sgd', 'adam'; got {name!r}")
    return optax.chain(*parts)


# ------------------------------------------------------------------------------ state


def _per_run(tree: Any, k: int) -> Any:
    return jax.tree.map(lambda v: jnp.broadcast_to(v, (k, *v.shape)), tree)


def _init_state(spec: EngineSpec, key: jax.Array, kink_grads: jax.Array) -> TrainState:
    params, model_state = models.init(spec.arch, key, spec.param_dtype)
    k = spec.n_runs
    params_k = _per_run(params, k)
    return TrainState(
        params=params_k,
        opt_state=jax.vmap(spec.optimizer().init)(params_k),
        model_state=_per_run(model_state, k),
        kink_grads=jnp.asarray(kink_grads, spec.compute_dtype),
        alive=jnp.ones((k,), bool),
        diverged_step=jnp.full((k,), -1, jnp.int32),
        diverged_reason=jnp.zeros((k,), jnp.int32),
        initial_loss=jnp.full((k,), jnp.nan, jnp.float32),
        loss_scale=jnp.full((k,), spec.loss_scale if spec.scaled else 1.0, jnp.float32),
        good_steps=jnp.zeros((k,), jnp.int32),
        step=jnp.zeros((), jnp.int32),
    )


_init_state_jit = jax.jit(_init_state, static_argnums=0)


def init_state(spec: EngineSpec, key: jax.Array, kink_grads: Any) -> TrainState:
    """The initial :class:`TrainState` of ``spec.n_runs`` lockstep runs, one per entry of
    ``kink_grads``, all from the initialisation drawn with ``key``. A
    ``"lexicographic"`` entry is stored as 0 (the slope at the ties the rule need not
    look at; ``spec.lexicographic`` says which runs use the rule)."""
    return _init_state_jit(spec, key, _kink_array(spec, kink_grads, jnp))


def _kink_array(spec: EngineSpec, kink_grads: Any, xp: Any = np) -> Any:
    """``kink_grads`` as a ``(runs,)`` array of the compute dtype (``xp``: NumPy for a
    host copy, :mod:`jax.numpy` where it may be traced)."""
    if isinstance(kink_grads, (list, tuple)):
        kink_grads = [0.0 if s == ties.LEXICOGRAPHIC else s for s in kink_grads]
    kink_grads = xp.asarray(kink_grads, dtype=spec.compute_dtype)
    if kink_grads.shape != (spec.n_runs,):
        raise ValueError(
            f"`kink_grads` must have shape ({spec.n_runs},) (one per run), got {kink_grads.shape}"
        )
    return kink_grads


@functools.lru_cache(maxsize=64)
def _init_on_mesh(spec: EngineSpec):
    """:func:`init_state` compiled to build the state replicated over ``spec``'s mesh (in
    a multi-process run, over every process's devices): one compilation per spec."""
    return jax.jit(
        functools.partial(_init_state, spec), out_shardings=NamedSharding(spec.mesh(), P())
    )


# ------------------------------------------------------------------------------- step


def _cast_tree(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda v: v.astype(dtype), tree)


def _loss(spec: EngineSpec, params, model_state, xb, yb, kink, scale):
    """One run's scaled loss (float32) and ``(loss, new model state, pre-activations)``."""
    if spec.mixed:
        params = _cast_tree(params, spec.compute_dtype)
        model_state = _cast_tree(model_state, spec.compute_dtype)
    logits, new_state, pre = models.apply(spec.arch, params, model_state, xb, kink, train=True)
    loss = models.cross_entropy(logits, yb)
    if spec.mixed:
        new_state = _cast_tree(new_state, jnp.float32)
    return loss.astype(jnp.float32) * scale, (loss, new_state, pre)


def _shard(spec: EngineSpec, xb: jax.Array, yb: jax.Array):
    if spec.n_devices == 1:
        return xb, yb
    sh = NamedSharding(spec.mesh(), P("data"))
    return lax.with_sharding_constraint(xb, sh), lax.with_sharding_constraint(yb, sh)


def _runs(spec: EngineSpec, fn):
    """``fn`` over the lockstep runs: vmapped, or as is for one run (no run axis, so XLA
    sees the program of a single hand-written run)."""
    return fn if spec.n_runs == 1 else jax.vmap(fn)


# the state's per-run fields (everything but the scalar step counter)
_PER_RUN = tuple(f for f in TrainState._fields if f != "step")


def _squeeze(spec: EngineSpec, tree: Any) -> Any:
    return tree if spec.n_runs > 1 else jax.tree.map(lambda v: v[0], tree)


def _expand(spec: EngineSpec, tree: Any) -> Any:
    return tree if spec.n_runs > 1 else jax.tree.map(lambda v: v[None], tree)


def _squeeze_state(spec: EngineSpec, state: TrainState) -> TrainState:
    return state._replace(**{f: _squeeze(spec, getattr(state, f)) for f in _PER_RUN})


def _unsqueeze_state(spec: EngineSpec, state: TrainState) -> TrainState:
    return state._replace(**{f: _expand(spec, getattr(state, f)) for f in _PER_RUN})


def _gradients(spec: EngineSpec, st: TrainState, xb, yb):
    """Every run's loss, new batch norm statistics, pre-activations and gradients."""
    grad_fn = jax.value_and_grad(lambda p, b, s, sc: _loss(spec, p, b, xb, yb, s, sc), has_aux=True)
    (_, (loss, new_bn, pre)), grads = _runs(spec, grad_fn)(
        st.params, st.model_state, st.kink_grads, st.loss_scale
    )
    return loss.astype(jnp.float32), new_bn, pre, grads


def _support(spec: EngineSpec, st: TrainState, xb, pre) -> list | None:
    """Per run and layer, where a tie may change a gradient
    (:func:`~jaxrelu.study.models.tangent_support`); None where every tie may: the CNN,
    activations other than ReLU, and networks whose every unit has a parameter of its own
    (the MLP, batch norm), whose support is all True (None spares the instrumentation a
    second count of the same zeros)."""
    arch = spec.arch
    if arch.kind not in ("mlp", "resnet") or arch.activation != "relu":
        return None
    if models.support_is_everywhere(arch):
        return None
    one = lambda p, z: models.tangent_support(spec.arch, p, z, xb)
    return _runs(spec, one)(st.params, pre)


def _lexicographic(spec: EngineSpec, st: TrainState, xb, yb, pre, support, grads):
    """The lexicographic runs' gradients: their ordinary gradient (computed with slope 0)
    where no tie can matter, else the lexicographic gradient (:mod:`.ties`), under a
    :func:`jax.lax.cond` per run (nothing extra on a step without candidate ties)."""

    def one(params, model_state, scale, pre_r, support_r, grad_r):
        def loss_of(p, slopes):
            scaled, (_, _, pre_p) = _loss(spec, p, model_state, xb, yb, slopes, scale)
            return scaled, pre_p

        cand = [(z == 0) & t for z, t in zip(pre_r, support_r)]
        tied = jnp.any(jnp.stack([jnp.any(c) for c in cand]))
        lex = lambda: ties.lexicographic_grad(loss_of, params, pre_r, cand)
        return lax.cond(tied, lex, lambda: grad_r)

    args = (st.params, st.model_state, st.loss_scale, pre, support, grads)
    if spec.n_runs == 1:
        return one(*args)
    for r in spec.lexicographic:
        g = one(*jax.tree.map(lambda v, r=r: v[r], args))
        grads = jax.tree.map(lambda all_runs, v, r=r: all_runs.at[r].set(v), grads, g)
    return grads


def _instrumentation(spec: EngineSpec, st: TrainState, xb, yb, pre, support):
    """Zero hits per run and layer, those among them that may change a gradient, and the
    bifurcation test where there are any of those."""
    kinks = models.ACTIVATIONS[spec.arch.activation].kinks
    hits = _runs(spec, lambda z: instrument.kink_hits(z, kinks))(pre)
    if support is None:
        live = hits
    else:

        def live_one(z, t):
            return _util.counts([(a == 0) & b for a, b in zip(z, t)])

        live = _runs(spec, live_one)(pre, support)

    def grad_at(s: float):
        kink = jnp.asarray(s, spec.compute_dtype)
        f = lambda p, b, sc: _loss(spec, p, b, xb, yb, kink, sc)[0]
        return _runs(spec, jax.grad(f))(st.params, st.model_state, st.loss_scale)

    runs = None if spec.n_runs == 1 else spec.n_runs
    differ, rel = instrument.bifurcation_test(grad_at, jnp.any(live > 0), runs=runs)
    return hits, differ, rel, live


def _all_finite(tree: Any) -> jax.Array:
    """Whether every entry of one run's leaves is finite: the largest magnitude of each
    leaf is finite (NaN and inf propagate through ``max``, and it cannot overflow); one
    fused reduction per leaf, in the leaf's own dtype."""
    return jnp.all(jnp.stack([jnp.isfinite(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(tree)]))


def _unscale(spec: EngineSpec, grads: Any, scale: jax.Array) -> Any:
    if not spec.scaled:
        return grads
    return jax.tree.map(lambda g: (g.astype(jnp.float32) / scale).astype(g.dtype), grads)


def _divergence(loss, initial, params_bad) -> jax.Array:
    """One run's :class:`Divergence` code at this step (0: none)."""
    reason = jnp.where(
        ~jnp.isfinite(loss),
        int(Divergence.LOSS_NOT_FINITE),
        jnp.where(
            params_bad,
            int(Divergence.PARAMS_NOT_FINITE),
            jnp.where(loss > DIVERGENCE_FACTOR * initial, int(Divergence.LOSS_EXPLODED), 0),
        ),
    )
    return reason.astype(jnp.int32)


def _loss_scale(spec: EngineSpec, st, grads_ok: jax.Array):
    """Dynamic loss scaling: halve on non-finite gradients, double after a period."""
    if not spec.scaled:
        return st.loss_scale, st.good_steps
    good = jnp.where(grads_ok, st.good_steps + 1, 0)
    grow = good >= spec.loss_scale_period
    scale = st.loss_scale
    scale = jnp.where(grads_ok, jnp.where(grow, scale * 2, scale), jnp.maximum(scale / 2, 1.0))
    return scale, jnp.where(grow, 0, good)


def _update_one(
    spec: EngineSpec, step, st: TrainState, grads, new_bn, loss, masked: bool
) -> TrainState:
    """One run's optimizer step.

    ``masked``: applied only if the run is alive and the step sound (its loss finite and
    at most :data:`DIVERGENCE_FACTOR` times the first, its new parameters finite, and with
    loss scaling its gradients finite), with the divergence recorded; the select that keeps
    a stopped run's parameters is elementwise and fused with the update, the finiteness
    test is one reduction per leaf. Unmasked: the plain update, exactly what the masked
    step computes for a sound step (:func:`train_epoch` recomputes masked any chunk in
    which a run diverged)."""
    grads = _unscale(spec, grads, st.loss_scale)
    updates, new_opt = spec.optimizer().update(grads, st.opt_state, st.params)
    new_params = optax.apply_updates(st.params, updates)
    initial = jnp.where(step == 0, loss, st.initial_loss)
    if not masked:
        return st._replace(
            params=new_params, opt_state=new_opt, model_state=new_bn, initial_loss=initial
        )
    grads_ok = _all_finite(grads) if spec.scaled else jnp.bool_(True)
    reason = _divergence(loss, initial, ~_all_finite(new_params) & grads_ok)
    ok = st.alive & (reason == 0)
    apply = ok & grads_ok
    newly = st.alive & (reason != 0)
    scale, good = _loss_scale(spec, st, grads_ok)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)
    return st._replace(
        params=keep(new_params, st.params),
        opt_state=keep(new_opt, st.opt_state),
        model_state=keep(new_bn, st.model_state),
        alive=ok,
        diverged_step=jnp.where(newly, step, st.diverged_step),
        diverged_reason=jnp.where(newly, reason, st.diverged_reason),
        initial_loss=initial,
        loss_scale=scale,
        good_steps=good,
    )


def _weight_l1(spec: EngineSpec, params: Any) -> jax.Array:
    """L1 distance from each run's parameters to the first run's, in the widest float."""
    if spec.n_runs == 1:  # a single run is at distance 0 from itself
        return jnp.zeros((), jnp.float32)
    wide = _util.widest_float()
    per_leaf = [
        jnp.sum(jnp.abs(v.astype(wide) - v[:1].astype(wide)).reshape(spec.n_runs, -1), axis=1)
        for v in jax.tree.leaves(params)
    ]
    return sum(per_leaf[1:], per_leaf[0])


def train_step(
    spec: EngineSpec,
    state: TrainState,
    batch: tuple[jax.Array, jax.Array],
    *,
    masked: bool = True,
) -> tuple[TrainState, StepRecord]:
    """One minibatch for every lockstep run: ``(new_state, record)``.

    Pure and jittable (``jax.jit(train_step, static_argnums=0)``); :func:`train_epoch`
    scans it. ``batch`` is ``(images, integer labels)`` with ``spec.optim.batch_size``
    examples. A single run is computed without a run axis (the state's axis of length 1
    is a free reshape), several are vmapped.

    ``masked=False`` skips divergence handling (no finiteness test, no per-run select):
    the step is then only right if no run diverges at it; :func:`train_epoch` runs whole
    chunks that way and recomputes a chunk masked when a run diverged in it.
    """
    xb, yb = _shard(spec, *batch)
    st = _squeeze(spec, state._replace(step=jnp.zeros((spec.n_runs,), jnp.int32)))
    loss, new_bn, pre, grads = _gradients(spec, st, xb, yb)
    support = _support(spec, st, xb, pre) if spec.instrument or spec.lexicographic else None
    if spec.lexicographic:
        if support is None:  # the CNN is refused by TrainConfig; a safe default anyway
            support = _runs(spec, lambda z: [jnp.ones(v.shape, bool) for v in z])(pre)
        grads = _lexicographic(spec, st, xb, yb, pre, support, grads)
    extra = _instrumentation(spec, st, xb, yb, pre, support) if spec.instrument else (None,) * 4
    update = lambda s, g, b, l: _update_one(spec, state.step, s, g, b, l, masked)
    new = _runs(spec, update)(st, grads, new_bn, loss)
    record = StepRecord(loss, _weight_l1(spec, new.params), *extra)
    new_state = _expand(spec, new)._replace(step=state.step + 1)
    return new_state, _expand(spec, record)


# ------------------------------------------------------------------------------ epoch


def _host(tree: Any) -> Any:
    """NumPy copies of a pytree of arrays. In a multi-process run an array may span
    devices of other processes: replicated, this process's copy is the value; sharded,
    the shards are gathered from every process
    (:func:`jax.experimental.multihost_utils.process_allgather`, which every process
    reaches at the same point: the engine calls this between chunks, in lockstep)."""

    def get(v: Any) -> Any:
        if isinstance(v, jax.Array) and not v.is_fully_addressable:
            if v.is_fully_replicated:
                return np.asarray(v.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(v, tiled=True))
        return np.asarray(v)

    return jax.tree.map(get, tree)


def _run_steps(spec: EngineSpec, state: TrainState, x, y, key, start, steps: int, masked: bool):
    """``steps`` steps from minibatch ``start`` of the epoch shuffled by ``key`` (the
    permutation is computed inside the program: no host work between steps).

    Returns ``(state, records, suspect)``; ``suspect`` (unmasked only) is true if a run
    may have diverged in these steps: a loss not finite or above the divergence bound, or
    parameters not finite at the end."""
    bs = spec.optim.batch_size
    perm = _rng.permutation(key, x.shape[0])  # jax.random.permutation's, faster on the CPU
    idx = lax.dynamic_slice_in_dim(perm, start * bs, steps * bs).reshape(steps, bs)

    def body(carry, i):
        # `train_step` is looked up when traced, so a wrapped `train_step` sees every trace
        new, rec = train_step(spec, _unsqueeze_state(spec, carry), (x[i], y[i]), masked=masked)
        return _squeeze_state(spec, new), rec

    # a single run's carry has no run axis (the reshapes cancel inside the loop), so that
    # XLA updates the parameters in place
    carry, recs = lax.scan(body, _squeeze_state(spec, state), idx)
    state = _unsqueeze_state(spec, carry)
    if masked:
        return state, recs, jnp.bool_(False)
    loss = recs.loss
    bad = ~jnp.isfinite(loss) | (loss > DIVERGENCE_FACTOR * state.initial_loss)
    finite = _runs(spec, _all_finite)(_squeeze(spec, state.params))
    return state, recs, jnp.any(bad) | ~jnp.all(finite)


# Masked chunks run on the state in place (donated); an unmasked chunk keeps its input,
# from which it is recomputed masked if a run diverged in it.
_run_steps_masked = jax.jit(
    functools.partial(_run_steps, masked=True), static_argnums=(0, 6), donate_argnums=1
)
_run_steps_fast = jax.jit(functools.partial(_run_steps, masked=False), static_argnums=(0, 6))


def _chunks(n: int, most: int) -> list[tuple[int, int]]:
    """``n`` steps as near-equal chunks of at most ``most`` (two lengths at most, so at
    most two compilations)."""
    count = -(-n // most)
    size = -(-n // count)
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def train_epoch(
    spec: EngineSpec, state: TrainState, x: Any, y: Any, key: jax.Array
) -> tuple[TrainState, StepRecord]:
    """One shuffled pass over ``(x, y)`` (the last partial batch dropped).

    Returns the new state and the :class:`StepRecord` of every step as NumPy arrays
    (steps first). Runs in chunks of at most :data:`MAX_STEPS_PER_CALL` steps and calls
    :func:`jaxrelu.study.interrupt.check` between them. While every run is alive (and no
    loss scaling can skip a step), chunks run without divergence handling, and a chunk in
    which a run may have diverged is recomputed with it: the result is the same, and the
    common case pays nothing for it. ``state``'s buffers may be donated (reused for the
    new state): use the returned state, not the one passed in.
    """
    n = x.shape[0]
    n_batches = n // spec.optim.batch_size
    if n_batches == 0:
        raise ValueError(
            f"`batch_size` {spec.optim.batch_size} is larger than the data ({n} examples)"
        )
    records = []
    # unmasked (fast) while every run is alive and no loss scaling can skip a step
    fast = not spec.scaled and bool(np.all(_host(state.alive)))
    with jax.default_matmul_precision(spec.matmul_precision):
        for lo, hi in _chunks(n_batches, MAX_STEPS_PER_CALL):
            args = (x, y, key, np.int32(lo), hi - lo)
            if fast:
                new, rec, suspect = _run_steps_fast(spec, state, *args)
                if bool(_host(suspect)):
                    new, rec, _ = _run_steps_masked(spec, state, *args)
                    fast = bool(np.all(_host(new.alive)))
            else:
                new, rec, _ = _run_steps_masked(spec, state, *args)
            state = new
            records.append(_host(rec))
            interrupt.check()
    stacked = jax.tree.map(lambda *a: np.concatenate(a), *records)
    return state, stacked


def _evaluate(spec: EngineSpec, params, model_state, x, y):
    n = x.shape[0]
    n_chunks = -(-n // EVAL_CHUNK)
    pad = n_chunks * EVAL_CHUNK - n
    xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(
        n_chunks, EVAL_CHUNK, *x.shape[1:]
    )
    ys = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]).reshape(n_chunks, EVAL_CHUNK)
    mask = (jnp.arange(n_chunks * EVAL_CHUNK) < n).reshape(n_chunks, EVAL_CHUNK)

    def one_run(p, b):
        if spec.mixed:
            p, b = _cast_tree(p, spec.compute_dtype), _cast_tree(b, spec.compute_dtype)

        def per_chunk(args):
            xc, yc, mc = args
            logits, _, _ = models.apply(spec.arch, p, b, xc, 0.0, train=False)
            logits = logits.astype(jnp.float32)
            correct = jnp.sum((jnp.argmax(logits, axis=1) == yc) & mc)
            return correct, jnp.sum(jnp.where(mc, models.nll(logits, yc), 0.0))

        correct, nll = lax.map(per_chunk, (xs, ys, mask))
        return jnp.sum(correct) / n, jnp.sum(nll) / n

    return jax.vmap(one_run)(params, model_state)


_evaluate_jit = jax.jit(_evaluate, static_argnums=0)


def evaluate(spec: EngineSpec, state: TrainState, x: Any, y: Any) -> tuple[np.ndarray, ...]:
    """``(accuracy, mean loss)`` of every run on ``(x, y)``, as NumPy ``(runs,)`` arrays
    (batch norm in inference mode)."""
    with jax.default_matmul_precision(spec.matmul_precision):
        out = _evaluate_jit(spec, state.params, state.model_state, x, y)
    return tuple(_host(out))


# ---------------------------------------------------------------------------- history


@dataclasses.dataclass
class TrainHistory:
    """What :func:`train` returns. Arrays have a run axis (one per kink value) last-but-
    one or last, as noted; everything is NumPy.

    Attributes:
        config: the :class:`TrainConfig`.
        dataset: the data set's name.
        kink_grads: ``(runs,)`` the kink values (NaN for ``"lexicographic"``; the config
            has the names).
        epoch_loss: ``(epochs, runs)`` mean training loss per epoch.
        test_accuracy: ``(epochs, runs)`` test accuracy after every epoch.
        test_loss: ``(epochs, runs)``.
        step_loss: ``(steps, runs)``.
        zero_hits: ``(steps, runs, layers)`` pre-activations exactly at the kink.
        bifurcation: ``(steps, runs)`` whether the gradients with kink 0 and 1 differ.
        bifurcation_rel_l2: ``(steps, runs)`` their relative L2 difference.
        weight_l1: ``(steps, runs)`` L1 distance from each run's weights to the first run's.
        status: per run, ``"ok"`` or ``"diverged"``.
        diverged_step: ``(runs,)`` the step at which the run diverged, or -1.
        diverged_reason: per run, why it diverged (:attr:`Divergence.message`), or None.
        params, state: final parameters and batch norm statistics (leading run axis).
        activations_per_step: pre-activations evaluated per step (for zero-hit rates).
        seconds: wall time including compilation; ``steps_per_second`` excludes the first
            epoch (compilation).
        live_ties: ``(steps, runs, layers)`` the zero hits that may change a gradient
            (:attr:`StepRecord.live_ties`).
    """

    config: TrainConfig
    dataset: str
    kink_grads: np.ndarray
    epoch_loss: np.ndarray
    test_accuracy: np.ndarray
    test_loss: np.ndarray
    step_loss: np.ndarray
    zero_hits: np.ndarray
    bifurcation: np.ndarray
    bifurcation_rel_l2: np.ndarray
    weight_l1: np.ndarray
    status: tuple[str, ...]
    diverged_step: np.ndarray
    diverged_reason: tuple[str | None, ...]
    params: Any
    state: Any
    activations_per_step: int
    seconds: float
    steps_per_second: float
    live_ties: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0, 0), int))
    activations_per_step_by_layer: tuple[int, ...] = ()

    @property
    def final_accuracy(self) -> np.ndarray:
        if len(self.test_accuracy):
            return self.test_accuracy[-1]
        return np.full(len(self.kink_grads), np.nan)

    def runs(self) -> list[dict[str, Any]]:
        """One JSON-ready summary per run (kink value); non-finite numbers are None."""
        out = []
        steps = len(self.step_loss)
        for i, s in enumerate(self.config.kink_grads):
            hits = int(self.zero_hits[:, i].sum()) if self.zero_hits.size else 0
            final = float(self.epoch_loss[-1, i]) if len(self.epoch_loss) else math.nan
            acc = float(self.final_accuracy[i])
            out.append(
                {
                    "kink_grad": s if isinstance(s, str) else float(s),
                    "status": self.status[i],
                    "diverged_step": int(self.diverged_step[i]),
                    "diverged_reason": self.diverged_reason[i],
                    "test_accuracy": acc if math.isfinite(acc) else None,
                    "final_loss": final if math.isfinite(final) else None,
                    "zero_hits": hits,
                    "zero_hit_rate": hits / max(1, self.activations_per_step * steps),
                    "bifurcation_steps": int(self.bifurcation[:, i].sum())
                    if self.bifurcation.size
                    else 0,
                    "steps": steps,
                    **self._tie_summary(i, steps),
                }
            )
        return out

    def _tie_summary(self, i: int, steps: int) -> dict[str, Any]:
        """Run ``i``'s ties by layer and the gradient that flows through them: the relative
        L2 norm of (gradient with ReLU'(0) = 1) - (gradient with ReLU'(0) = 0), averaged
        over all steps (0 where no tie can matter: the two are then equal) and its
        largest value."""
        if not self.zero_hits.size:
            return {}
        rel = np.nan_to_num(self.bifurcation_rel_l2[:, i].astype(np.float64))
        per_layer = self.activations_per_step_by_layer
        out: dict[str, Any] = {
            "zero_hits_by_layer": [int(v) for v in self.zero_hits[:, i].sum(axis=0)],
            "live_ties_by_layer": [int(v) for v in self.live_ties[:, i].sum(axis=0)]
            if self.live_ties.size
            else None,
            "tie_gradient_mean": float(rel.mean()) if steps else 0.0,
            "tie_gradient_max": float(rel.max()) if steps else 0.0,
        }
        if per_layer:
            out["zero_hit_rate_by_layer"] = [
                h / max(1, n * steps) for h, n in zip(out["zero_hits_by_layer"], per_layer)
            ]
        return out

    def __repr__(self) -> str:
        acc = ", ".join(f"{a:.3f}" for a in self.final_accuracy)
        return (
            f"TrainHistory({self.dataset}, {len(self.epoch_loss)} epochs, kink_grads="
            f"{list(self.config.kink_grads)}, test_accuracy=[{acc}], status={list(self.status)})"
        )


def _history(config, spec, data, records, accs, tlosses, state, seconds, sps) -> TrainHistory:
    k = spec.n_runs
    n_layers = models.n_activation_layers(spec.arch)

    def cat(field: str, empty: np.ndarray) -> np.ndarray:
        parts = [getattr(r, field) for r in records if getattr(r, field) is not None]
        return np.concatenate(parts) if parts else empty

    state = _host(state)
    alive = np.asarray(state.alive)
    reasons = [Divergence(int(c)) for c in np.asarray(state.diverged_reason)]
    return TrainHistory(
        config=config,
        dataset=data.name,
        kink_grads=np.asarray(
            [np.nan if k == ties.LEXICOGRAPHIC else k for k in config.kink_grads], np.float64
        ),
        epoch_loss=np.stack([np.mean(r.loss, axis=0) for r in records])
        if records
        else np.zeros((0, k)),
        test_accuracy=np.stack(accs) if accs else np.zeros((0, k)),
        test_loss=np.stack(tlosses) if tlosses else np.zeros((0, k)),
        step_loss=cat("loss", np.zeros((0, k))),
        zero_hits=cat("zero_hits", np.zeros((0, k, n_layers), np.int32)),
        live_ties=cat("live_ties", np.zeros((0, k, n_layers), np.int32)),
        bifurcation=cat("bifurcation", np.zeros((0, k), bool)),
        bifurcation_rel_l2=cat("bifurcation_rel_l2", np.zeros((0, k))),
        weight_l1=cat("weight_l1", np.zeros((0, k))),
        status=tuple("ok" if a else "diverged" for a in alive),
        diverged_step=np.asarray(state.diverged_step),
        diverged_reason=tuple(r.message or None for r in reasons),
        params=state.params,
        state=state.model_state,
        activations_per_step=models.n_activations(spec.arch, spec.optim.batch_size),
        activations_per_step_by_layer=models.n_activations_by_layer(
            spec.arch, spec.optim.batch_size
        ),
        seconds=seconds,
        steps_per_second=sps,
    )


def preflight(config: TrainConfig, data: Dataset) -> EngineSpec:
    """Every check :func:`train` makes before compiling (fields against the data, memory
    estimate); returns the run's :class:`EngineSpec`."""
    spec = EngineSpec.of(config, data)
    n_examples = len(data.y_train) + len(data.y_test)
    limits.check_fits(spec.memory_bytes(n_examples), f"training {config!r}")
    return spec


def train(config: TrainConfig, data: Any = "digits", *, progress: bool = True) -> TrainHistory:
    """Trains ``config`` on ``data`` and returns its :class:`TrainHistory`.

    Args:
        config: the run's :class:`TrainConfig`.
        data: a :class:`jaxrelu.data.Dataset`, ``"digits"`` (built in), ``"synthetic"`` or a
            path (directory of MNIST IDX files, or ``.npz``).
        progress: show a progress bar (epochs, loss, accuracy).

    Returns:
        The history. Results are returned even when every run diverged.

    Raises:
        ValueError: a field that does not fit the data (named), or a
            :class:`~jaxrelu.study.limits.ResourceLimitError` if the run cannot fit in
            memory -- both before anything is compiled.

    Example:
        >>> from jaxrelu.train import TrainConfig, train
        >>> cfg = TrainConfig(width=32, epochs=2, kink_grads=(0.0, 1.0))
        >>> hist = train(cfg, "synthetic", progress=False)
        >>> hist.test_accuracy.shape, hist.status
        ((2, 2), ('ok', 'ok'))
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, got {type(config).__name__}")
    data = load_data(data)
    spec = preflight(config, data)
    start = time.perf_counter()
    # replicated over the mesh, which spans every process's devices in a multi-process
    # run: the data placed from host copies (the same in every process), never from arrays
    # committed to one process's device
    rep = NamedSharding(spec.mesh(), P())
    put = lambda a, dt: jax.device_put(np.asarray(a).astype(dt), rep)
    x_train, y_train = put(data.x_train, spec.compute_dtype), put(data.y_train, np.int32)
    x_test, y_test = put(data.x_test, spec.compute_dtype), put(data.y_test, np.int32)
    k_init, k_shuffle = jax.random.split(jax.random.PRNGKey(config.seed))
    # built in place on the mesh (a host copy put there would be compared across processes,
    # and the state's NaN initial loss is never equal to itself)
    state = _init_on_mesh(spec)(np.asarray(k_init), _kink_array(spec, config.kink_grads))
    epoch_keys = np.asarray(jax.random.split(k_shuffle, config.epochs))
    records, accs, tlosses = [], [], []
    desc = f"{config.model} {config.dtype} s={list(config.kink_grads)}"
    bar = Progress(config.epochs, desc, "epoch", progress)
    t_first = None
    try:
        for e in range(config.epochs):
            state, rec = train_epoch(spec, state, x_train, y_train, epoch_keys[e])
            acc, tloss = evaluate(spec, state, x_test, y_test)
            t_first = t_first or time.perf_counter()
            records.append(rec)
            accs.append(acc)
            tlosses.append(tloss)
            bar.update(loss=float(np.nanmean(rec.loss)), acc=float(np.mean(acc)))
            if not np.any(_host(state.alive)):
                break
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    later = max(len(records) - 1, 0) * (len(data.y_train) // config.batch_size)
    compile_s = (t_first or start) - start
    sps = later / (seconds - compile_s) if later and seconds > compile_s else math.nan
    return _history(config, spec, data, records, accs, tlosses, state, seconds, sps)
