r"""Jitted training with kink instrumentation, in every precision, on one or many devices.

:func:`train` takes a frozen :class:`TrainConfig` and a data set and returns a
:class:`TrainHistory`. One epoch is one jitted :func:`jax.lax.scan` over minibatches,
with the data on the device and a fresh shuffle from the epoch's key; nothing is copied to
the host until the epoch ends, and the second epoch reuses the first one's compilation.

Several values of the activation's derivative at its kink (``kink_grads``) train in
lockstep in one program: same initialisation, same minibatches, vmapped over the kink
value. Per step and per run the engine records

* the loss;
* ``zero_hits``: pre-activations exactly at the kink, per layer;
* ``bifurcation``: whether the minibatch gradient with kink value 0 and with 1 differ
  (computed only on steps where some pre-activation hit the kink, since only then can they
  differ) and the relative L2 norm of the difference;
* ``weight_l1``: the L1 distance between each run's weights and the first run's.

A run whose loss becomes non-finite stops updating, is marked ``"diverged"`` with its
step, and the others go on.

Precision: ``dtype`` is used for parameters and arithmetic ("pure", as in Bertoin et
al.); with ``mixed=True`` the master weights and optimizer state stay float32 and only the
forward/backward pass runs in ``dtype``, with dynamic loss scaling for float16.

Scale-out: the batch axis is sharded over the local devices with :mod:`jax.sharding`
(parameters replicated); results equal one device's up to the order of reductions. For
several hosts, call :func:`jax.distributed.initialize` in every process first and give each
the same data: the mesh then spans ``jax.devices()`` (all hosts) and the same code runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import models
from .data import Dataset, load_data
from .progress import Progress

__all__ = ["DTYPES", "TrainConfig", "TrainHistory", "make_optimizer", "train"]

DTYPES = ("float16", "bfloat16", "float32", "float64")
OPTIMIZERS = ("sgd", "adam")

_TRACE_COUNT = {"epoch": 0}
_UNROLL = 1  # unrolling measured no faster on CPU


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (frozen, hashable).

    Attributes:
        model: ``"mlp"`` or ``"cnn"`` (see :class:`jaxrelu.models.Architecture`).
        width, depth: MLP hidden width and number of hidden layers.
        channels: CNN convolution channels.
        batchnorm: batch norm before every activation.
        init: ``"torch"`` (the paper's) or ``"he"``.
        activation: ``"relu"`` (default), ``"leaky_relu"``, ``"abs"``, ``"relu6"`` or
            ``"hard_tanh"``.
        dtype: ``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"`` (float64 needs
            ``jax.config.update("jax_enable_x64", True)``).
        mixed: float32 master weights with ``dtype`` compute (and loss scaling for float16).
        optimizer: ``"sgd"`` (momentum, weight decay added to the gradient as in PyTorch)
            or ``"adam"``.
        learning_rate: a number or an optax schedule (step -> rate).
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        batch_size: minibatch size (the last partial batch of an epoch is dropped).
        epochs: number of passes over the training set.
        kink_grads: the values of ReLU'(0) trained side by side, from one initialisation.
        seed: seeds the initialisation and the shuffling.
        instrument: record zero hits and bifurcations (cheap; on by default).
        devices: number of local devices for data parallelism; None uses as many as divide
            the batch size.
        loss_scale: initial dynamic loss scale for mixed float16.
        matmul_precision: ``jax.default_matmul_precision`` for the run: ``"highest"`` (the
            default) makes float32 products float32 on GPUs too, as PyTorch does by default;
            ``"default"`` lets JAX use TF32 there.
    """

    model: str = "mlp"
    width: int = 256
    depth: int = 2
    channels: tuple[int, ...] = (16, 32)
    batchnorm: bool = False
    init: str = "torch"
    activation: str = "relu"
    dtype: str = "float32"
    mixed: bool = False
    optimizer: str = "sgd"
    learning_rate: float | Callable[[Any], Any] = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    kink_grads: tuple[float, ...] = (0.0,)
    seed: int = 0
    instrument: bool = True
    devices: int | None = None
    loss_scale: float = 2.0**15
    matmul_precision: str = "highest"

    def validate(self, data: Dataset | None = None) -> None:
        """Raises a ``ValueError``/``TypeError`` naming the bad field (before compiling)."""
        if self.dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {DTYPES}, got {self.dtype!r}")
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError(
                "`dtype` float64 needs 64-bit mode: call "
                "jax.config.update('jax_enable_x64', True) first"
            )
        if self.mixed and self.dtype in ("float32", "float64"):
            raise ValueError("`mixed` precision needs a low-precision `dtype` (float16, bfloat16)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.model not in ("mlp", "cnn"):
            raise ValueError(f"`model` must be 'mlp' or 'cnn', got {self.model!r}")
        for name in ("batch_size", "epochs", "width", "depth"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
        if not callable(self.learning_rate):
            lr = self.learning_rate
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"`learning_rate` must be positive, got {lr!r}")
            if not math.isfinite(lr):
                raise ValueError(f"`learning_rate` must be finite, got {lr!r}")
        for name in ("momentum", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                raise ValueError(f"`{name}` must be a non-negative number, got {v!r}")
        if not isinstance(self.kink_grads, tuple) or not self.kink_grads:
            raise ValueError(f"`kink_grads` must be a non-empty tuple, got {self.kink_grads!r}")
        for v in self.kink_grads:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"`kink_grads` must hold finite numbers, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"`seed` must be an integer, got {self.seed!r}")
        if self.devices is not None:
            n = len(jax.local_devices())
            if not isinstance(self.devices, int) or not 1 <= self.devices <= n:
                raise ValueError(
                    f"`devices` must be between 1 and {n} (local devices), got {self.devices!r}"
                )
            if self.batch_size % self.devices:
                raise ValueError(
                    f"`batch_size` {self.batch_size} is not divisible by `devices` {self.devices}"
                )
        precisions = ("highest", "high", "default", "float32", "tensorfloat32", "bfloat16")
        if self.matmul_precision not in precisions:
            raise ValueError(
                f"`matmul_precision` must be one of {precisions}, got {self.matmul_precision!r}"
            )
        if not self.loss_scale > 0:
            raise ValueError(f"`loss_scale` must be positive, got {self.loss_scale!r}")
        self.architecture((8, 8, 1), 10)  # checks model/init/activation/channels fields
        if data is not None:
            if self.batch_size > len(data.y_train):
                raise ValueError(
                    f"`batch_size` {self.batch_size} is larger than the training set "
                    f"({len(data.y_train)} examples)"
                )
            self.architecture(data.image_shape, data.num_classes)

    def architecture(self, in_shape: tuple[int, ...], num_classes: int) -> models.Architecture:
        return models.Architecture(
            kind=self.model,
            in_shape=tuple(in_shape),
            num_classes=num_classes,
            width=self.width,
            depth=self.depth,
            channels=tuple(self.channels),
            batchnorm=self.batchnorm,
            init=self.init,
            activation=self.activation,
        )

    def n_devices(self) -> int:
        if self.devices is not None:
            return self.devices
        n = len(jax.local_devices())
        while self.batch_size % n:
            n -= 1
        return n


@dataclasses.dataclass(frozen=True)
class _Static:
    """The compile-time part of a run: everything but the seed and the kink values."""

    arch: models.Architecture
    dtype: str
    mixed: bool
    optimizer: str
    learning_rate: Any
    momentum: float
    weight_decay: float
    batch_size: int
    n_runs: int
    instrument: bool
    n_devices: int
    loss_scale: float = 2.0**15

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def param_dtype(self):
        return jnp.dtype("float32") if self.mixed else jnp.dtype(self.dtype)

    @property
    def scaled(self) -> bool:
        return self.mixed and self.dtype == "float16"

    def mesh(self) -> Mesh:
        return Mesh(np.array(jax.local_devices()[: self.n_devices]), ("data",))


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
        raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {name!r}")
    return optax.chain(*parts)


def _cross_entropy(logits, labels):
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def _where_runs(mask, new, old):
    """Per-run select over pytrees with a leading run axis."""

    def sel(n, o):
        m = mask.reshape(mask.shape + (1,) * (n.ndim - 1))
        return jnp.where(m, n, o)

    return jax.tree.map(sel, new, old)


def _tree_sum(tree, fn):
    leaves = [fn(v) for v in jax.tree.leaves(tree)]
    return sum(leaves[1:], leaves[0])


def _wide():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _init_carry(st: _Static, key, kinks):
    params, bn = models.init(st.arch, key, st.param_dtype)
    opt = make_optimizer(st.optimizer, st.learning_rate, st.momentum, st.weight_decay)
    k = st.n_runs
    rep = lambda t: jax.tree.map(lambda v: jnp.broadcast_to(v, (k, *v.shape)), t)
    params_k, bn_k = rep(params), rep(bn)
    opt_k = jax.vmap(opt.init)(params_k)
    return {
        "params": params_k,
        "opt": opt_k,
        "bn": bn_k,
        "alive": jnp.ones((k,), bool),
        "diverged_step": jnp.full((k,), -1, jnp.int32),
        "scale": jnp.full((k,), st.loss_scale if st.scaled else 1.0, jnp.float32),
        "good": jnp.zeros((k,), jnp.int32),
        "step": jnp.zeros((), jnp.int32),
    }


def _loss_fn(st: _Static, params, bn, xb, yb, kink, scale):
    p = jax.tree.map(lambda v: v.astype(st.compute_dtype), params) if st.mixed else params
    b = jax.tree.map(lambda v: v.astype(st.compute_dtype), bn) if st.mixed else bn
    logits, new_bn, pre = models.apply(st.arch, p, b, xb, kink, train=True)
    loss = _cross_entropy(logits, yb)
    if st.mixed:
        new_bn = jax.tree.map(lambda v: v.astype(jnp.float32), new_bn)
    return loss.astype(jnp.float32) * scale, (loss, new_bn, pre)


def _step(st: _Static, kinks, carry, batch):
    xb, yb = batch
    if st.n_devices > 1:
        sh = NamedSharding(st.mesh(), P("data"))
        xb = lax.with_sharding_constraint(xb, sh)
        yb = lax.with_sharding_constraint(yb, sh)
    params, bn = carry["params"], carry["bn"]
    grad_fn = jax.value_and_grad(
        lambda p, b, s, sc: _loss_fn(st, p, b, xb, yb, s, sc), has_aux=True
    )
    (_, (loss, new_bn, pre)), grads = jax.vmap(grad_fn)(params, bn, kinks, carry["scale"])
    k = st.n_runs
    _, kink_at = models.ACTIVATIONS[st.arch.activation]
    out = {"loss": loss.astype(jnp.float32)}
    if st.instrument:
        hits = jnp.stack(
            [
                sum(
                    jnp.sum(z == jnp.asarray(a, z.dtype), axis=tuple(range(1, z.ndim)))
                    for a in kink_at
                )
                for z in pre
            ],
            axis=1,
        ).astype(jnp.int32)  # (runs, layers)

        def both(_):
            def g_at(s):
                f = lambda p, b, sc: _loss_fn(st, p, b, xb, yb, s, sc)[0]
                return jax.vmap(jax.grad(f))(params, bn, carry["scale"])

            g0 = g_at(jnp.zeros((), st.compute_dtype))
            g1 = g_at(jnp.ones((), st.compute_dtype))
            wide = _wide()
            diff = jax.tree.map(lambda a, b: a != b, g0, g1)
            differ = jnp.any(
                jnp.stack([jnp.any(v.reshape(k, -1), axis=1) for v in jax.tree.leaves(diff)]),
                axis=0,
            )
            num = _tree_sum(
                jax.tree.map(lambda a, b: a.astype(wide) - b.astype(wide), g0, g1),
                lambda v: jnp.sum(jnp.square(v.reshape(k, -1)), axis=1),
            )
            den = _tree_sum(
                g0, lambda v: jnp.sum(jnp.square(v.astype(wide).reshape(k, -1)), axis=1)
            )
            rel = jnp.sqrt(num) / jnp.maximum(jnp.sqrt(den), jnp.finfo(wide).tiny)
            return differ, rel.astype(jnp.float32)

        def neither(_):
            return jnp.zeros((k,), bool), jnp.zeros((k,), jnp.float32)

        differ, rel = lax.cond(jnp.any(hits > 0), both, neither, None)
        out.update(zero_hits=hits, bifurcation=differ, bifurcation_rel_l2=rel)

    # unscale, skip non-finite steps of mixed float16, update
    scale = carry["scale"]
    grads = jax.tree.map(
        lambda g: (
            (g.astype(jnp.float32) / scale.reshape((k,) + (1,) * (g.ndim - 1))).astype(g.dtype)
            if st.scaled
            else g
        ),
        grads,
    )
    grads_finite = jnp.all(
        jnp.stack(
            [jnp.all(jnp.isfinite(v.reshape(k, -1)), axis=1) for v in jax.tree.leaves(grads)]
        ),
        axis=0,
    )
    opt = make_optimizer(st.optimizer, st.learning_rate, st.momentum, st.weight_decay)
    updates, new_opt = jax.vmap(opt.update)(grads, carry["opt"], params)
    new_params = jax.vmap(optax.apply_updates)(params, updates)
    loss_ok = jnp.isfinite(loss)
    alive = carry["alive"]
    apply = alive & loss_ok & (grads_finite if st.scaled else True)
    new_carry = dict(carry)
    new_carry["params"] = _where_runs(apply, new_params, params)
    new_carry["opt"] = _where_runs(apply, new_opt, carry["opt"])
    new_carry["bn"] = _where_runs(apply, new_bn, bn)
    new_carry["alive"] = alive & loss_ok
    new_carry["diverged_step"] = jnp.where(alive & ~loss_ok, carry["step"], carry["diverged_step"])
    if st.scaled:
        good = jnp.where(grads_finite, carry["good"] + 1, 0)
        grow = good >= 2000
        new_carry["scale"] = jnp.where(
            grads_finite, jnp.where(grow, scale * 2, scale), jnp.maximum(scale / 2, 1.0)
        )
        new_carry["good"] = jnp.where(grow, 0, good)
    new_carry["step"] = carry["step"] + 1
    if k == 1:  # a single run is at distance 0 from itself
        out["weight_l1"] = jnp.zeros((1,), jnp.float32)
        return new_carry, out
    wide = _wide()
    first = jax.tree.map(lambda v: v[:1], new_carry["params"])
    out["weight_l1"] = _tree_sum(
        jax.tree.map(
            lambda a, b: jnp.abs(a.astype(wide) - b.astype(wide)), new_carry["params"], first
        ),
        lambda v: jnp.sum(v.reshape(k, -1), axis=1),
    ).astype(jnp.float64 if wide == jnp.float64 else jnp.float32)
    return new_carry, out


def _epoch_impl(st: _Static, carry, kinks, key, x, y):
    _TRACE_COUNT["epoch"] += 1
    n = x.shape[0]
    n_batches = n // st.batch_size
    perm = jax.random.permutation(key, n)[: n_batches * st.batch_size]
    idx = perm.reshape(n_batches, st.batch_size)

    def body(c, i):
        return _step(st, kinks, c, (x[i], y[i]))

    return lax.scan(body, carry, idx, unroll=_UNROLL)


_epoch = jax.jit(_epoch_impl, static_argnums=0)


def _eval_impl(st: _Static, params, bn, x, y, chunk=1000):
    n = x.shape[0]
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(
        n_chunks, chunk, *x.shape[1:]
    )
    ys = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]).reshape(n_chunks, chunk)
    mask = (jnp.arange(n_chunks * chunk) < n).reshape(n_chunks, chunk)

    def one_run(p, b):
        if st.mixed:
            p = jax.tree.map(lambda v: v.astype(st.compute_dtype), p)
            b = jax.tree.map(lambda v: v.astype(st.compute_dtype), b)

        def per_chunk(args):
            xc, yc, mc = args
            logits, _, _ = models.apply(st.arch, p, b, xc, 0.0, train=False)
            logits = logits.astype(jnp.float32)
            correct = jnp.sum((jnp.argmax(logits, axis=1) == yc) & mc)
            logp = jax.nn.log_softmax(logits)
            nll = -jnp.sum(jnp.where(mc, jnp.take_along_axis(logp, yc[:, None], 1)[:, 0], 0.0))
            return correct, nll

        correct, nll = lax.map(per_chunk, (xs, ys, mask))
        return jnp.sum(correct) / n, jnp.sum(nll) / n

    return jax.vmap(one_run)(params, bn)


_eval = jax.jit(_eval_impl, static_argnums=(0, 5))


@dataclasses.dataclass
class TrainHistory:
    """What :func:`train` returns. Arrays have a run axis (one per kink value) last-but-
    one or last, as noted; everything is NumPy.

    Attributes:
        config: the :class:`TrainConfig`.
        dataset: the data set's name.
        kink_grads: ``(runs,)`` the kink values.
        epoch_loss: ``(epochs, runs)`` mean training loss per epoch.
        test_accuracy: ``(epochs, runs)`` test accuracy after every epoch.
        test_loss: ``(epochs, runs)``.
        step_loss: ``(steps, runs)``.
        zero_hits: ``(steps, runs, layers)`` pre-activations exactly at the kink.
        bifurcation: ``(steps, runs)`` whether the gradients with kink 0 and 1 differ.
        bifurcation_rel_l2: ``(steps, runs)`` their relative L2 difference.
        weight_l1: ``(steps, runs)`` L1 distance from each run's weights to the first run's.
        status: per run, ``"ok"`` or ``"diverged"``.
        diverged_step: ``(runs,)`` the step at which the loss became non-finite, or -1.
        params, state: final parameters and batch norm statistics (leading run axis).
        activations_per_step: pre-activations evaluated per step (for zero-hit rates).
        seconds: wall time including compilation; ``steps_per_second`` excludes the first
            epoch (compilation).
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
    params: Any
    state: Any
    activations_per_step: int
    seconds: float
    steps_per_second: float

    @property
    def final_accuracy(self) -> np.ndarray:
        return (
            self.test_accuracy[-1]
            if len(self.test_accuracy)
            else np.full(len(self.kink_grads), np.nan)
        )

    def runs(self) -> list[dict[str, Any]]:
        """One JSON-ready summary per run (kink value)."""
        out = []
        for i, s in enumerate(self.kink_grads):
            hits = int(self.zero_hits[:, i].sum()) if self.zero_hits.size else 0
            out.append(
                {
                    "kink_grad": float(s),
                    "status": self.status[i],
                    "diverged_step": int(self.diverged_step[i]),
                    "test_accuracy": float(self.final_accuracy[i]),
                    "final_loss": float(self.epoch_loss[-1, i])
                    if len(self.epoch_loss)
                    else math.nan,
                    "zero_hits": hits,
                    "zero_hit_rate": hits / max(1, self.activations_per_step * len(self.step_loss)),
                    "bifurcation_steps": int(self.bifurcation[:, i].sum())
                    if self.bifurcation.size
                    else 0,
                    "steps": len(self.step_loss),
                }
            )
        return out

    def __repr__(self) -> str:
        acc = ", ".join(f"{a:.3f}" for a in self.final_accuracy)
        return (
            f"TrainHistory({self.dataset}, {len(self.epoch_loss)} epochs, kink_grads="
            f"{self.kink_grads.tolist()}, test_accuracy=[{acc}], status={list(self.status)})"
        )


def _static_of(config: TrainConfig, data: Dataset) -> _Static:
    return _Static(
        arch=config.architecture(data.image_shape, data.num_classes),
        dtype=config.dtype,
        mixed=config.mixed,
        optimizer=config.optimizer,
        learning_rate=config.learning_rate,
        momentum=float(config.momentum),
        weight_decay=float(config.weight_decay),
        batch_size=config.batch_size,
        n_runs=len(config.kink_grads),
        instrument=config.instrument,
        n_devices=config.n_devices(),
        loss_scale=float(config.loss_scale),
    )


def train(config: TrainConfig, data: Any = "digits", *, progress: bool = True) -> TrainHistory:
    """Trains ``config`` on ``data`` and returns its :class:`TrainHistory`.

    Args:
        config: the run's :class:`TrainConfig`.
        data: a :class:`jaxrelu.data.Dataset`, ``"digits"`` (built in), ``"synthetic"`` or a
            path (directory of MNIST IDX files, or ``.npz``).
        progress: show a progress bar (epochs, loss, accuracy).

    Returns:
        The history. Results are returned even when every run diverged.

    Example:
        >>> import jaxrelu
        >>> from jaxrelu.train import TrainConfig, train
        >>> cfg = TrainConfig(width=32, epochs=2, kink_grads=(0.0, 1.0))
        >>> hist = train(cfg, "synthetic", progress=False)
        >>> hist.test_accuracy.shape, hist.status
        ((2, 2), ('ok', 'ok'))
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig, got {type(config).__name__}")
    data = load_data(data)
    config.validate(data)
    st = _static_of(config, data)
    start = time.perf_counter()
    mesh = st.mesh()
    rep = NamedSharding(mesh, P())
    dtype = st.compute_dtype
    x_train = jax.device_put(jnp.asarray(data.x_train, dtype), rep)
    y_train = jax.device_put(jnp.asarray(data.y_train, jnp.int32), rep)
    x_test = jax.device_put(jnp.asarray(data.x_test, dtype), rep)
    y_test = jax.device_put(jnp.asarray(data.y_test, jnp.int32), rep)
    kinks = jnp.asarray(config.kink_grads, dtype)
    k_init, k_shuffle = jax.random.split(jax.random.PRNGKey(config.seed))
    carry = jax.jit(_init_carry, static_argnums=0)(st, k_init, kinks)
    carry = jax.device_put(carry, rep)
    epoch_keys = jax.random.split(k_shuffle, config.epochs)
    outs, accs, tlosses = [], [], []
    bar = Progress(
        config.epochs,
        f"{config.model} {config.dtype} s={list(config.kink_grads)}",
        "epoch",
        progress,
    )
    t_first = None
    with jax.default_matmul_precision(config.matmul_precision):
        try:
            for e in range(config.epochs):
                carry, out = _epoch(st, carry, kinks, epoch_keys[e], x_train, y_train)
                acc, tloss = _eval(st, carry["params"], carry["bn"], x_test, y_test, 1000)
                out, acc, tloss, alive = jax.device_get((out, acc, tloss, carry["alive"]))
                if t_first is None:
                    t_first = time.perf_counter()
                outs.append(out)
                accs.append(acc)
                tlosses.append(tloss)
                bar.update(loss=float(np.nanmean(out["loss"])), acc=float(np.mean(acc)))
                if not np.any(alive):
                    break
        finally:
            bar.close()
    seconds = time.perf_counter() - start
    cat = lambda key, empty: (
        np.concatenate([o[key] for o in outs]) if outs and key in outs[0] else empty
    )
    k = len(config.kink_grads)
    n_layers = models.n_activation_layers(st.arch)
    steps = cat("loss", np.zeros((0, k)))
    n_steps_epoch = len(data.y_train) // config.batch_size
    later = max(len(outs) - 1, 0) * n_steps_epoch
    sps = (
        later / (seconds - (t_first - start)) if later and seconds > (t_first - start) else math.nan
    )
    carry = jax.device_get(carry)
    alive = np.asarray(carry["alive"])
    epoch_loss = np.stack([np.mean(o["loss"], axis=0) for o in outs]) if outs else np.zeros((0, k))
    return TrainHistory(
        config=config,
        dataset=data.name,
        kink_grads=np.asarray(config.kink_grads, np.float64),
        epoch_loss=epoch_loss,
        test_accuracy=np.stack(accs) if accs else np.zeros((0, k)),
        test_loss=np.stack(tlosses) if tlosses else np.zeros((0, k)),
        step_loss=steps,
        zero_hits=cat("zero_hits", np.zeros((0, k, n_layers), np.int32)),
        bifurcation=cat("bifurcation", np.zeros((0, k), bool)),
        bifurcation_rel_l2=cat("bifurcation_rel_l2", np.zeros((0, k))),
        weight_l1=cat("weight_l1", np.zeros((0, k))),
        status=tuple("ok" if a else "diverged" for a in alive),
        diverged_step=np.asarray(carry["diverged_step"]),
        params=carry["params"],
        state=carry["bn"],
        activations_per_step=_activations_per_step(st),
        seconds=seconds,
        steps_per_second=sps,
    )


def _activations_per_step(st: _Static) -> int:
    x = jax.ShapeDtypeStruct((st.batch_size, *st.arch.in_shape), jnp.float32)
    params, state = jax.eval_shape(lambda: models.init(st.arch, jax.random.PRNGKey(0)))
    _, _, pre = jax.eval_shape(lambda p, s, v: models.apply(st.arch, p, s, v), params, state, x)
    return int(sum(math.prod(z.shape) for z in pre))
