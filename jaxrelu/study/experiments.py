r"""The ReLU'(0) study: Bertoin et al. (NeurIPS 2021) on the built-in data.

Three experiments, each returning JSON-ready rows (non-finite numbers are ``None``):

* :func:`volume` -- the paper's section 3 protocol: for ``inits`` random initialisations
  (``"torch"`` init), one pass over the training set in minibatches (no shuffling, the
  last partial batch included); on each minibatch the first-layer weight gradients with
  ReLU'(0) = 0 and = 1 are compared exactly, and an initialisation is in the bifurcation
  zone if any minibatch differs. Initialisation ``i`` is drawn with
  ``fold_in(PRNGKey(seed), i)``. The initialisations run in jitted chunks of at most
  :data:`VOLUME_CHUNK` (bounded memory for any ``inits``; Ctrl-C is honoured between
  chunks): a vmapped forward pass finds the minibatches with an exact zero at a ReLU, and
  both backward passes run only on those (the two gradients cannot differ elsewhere), with
  the instrumentation of :mod:`jaxrelu.study.instrument`. A chunk's initialisations are
  sharded over the local devices when there are several.
* :func:`train_comparison` -- section 4: final test accuracy by ReLU'(0), precision,
  batch norm, optimizer and seed, with zero hits and bifurcation steps.
* :func:`divergence` -- the introductory experiment: lockstep runs with ReLU'(0) = 0 and 1
  from one initialisation, the L1 distance between their weights at every step.

The defaults of every experiment live in its config dataclass (:class:`VolumeConfig`,
:class:`DivergenceConfig`; training: :class:`~jaxrelu.study.config.TrainConfig`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .. import _validate
from . import instrument, interrupt, limits, models
from .config import TrainConfig
from .data import Dataset, load_data
from .engine import train

__all__ = [
    "INTERVAL",
    "VOLUME_CHUNK",
    "DivergenceConfig",
    "VolumeConfig",
    "check_volume",
    "divergence",
    "train_comparison",
    "volume",
    "wilson_interval",
]

INTERVAL = {"method": "wilson", "level": 0.95}
"""How every probability's interval is computed (recorded in the JSON output)."""
_Z95 = 1.959963984540054
VOLUME_CHUNK = 256
"""Most initialisations computed by one XLA call of :func:`volume`."""


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


@dataclasses.dataclass(frozen=True)
class VolumeConfig:
    """One volume estimate (validated on construction).

    Attributes:
        dtype: precision of parameters and arithmetic.
        width, depth: the MLP (``depth`` hidden layers of ``width``), "torch" init.
        batch_size: minibatch size for the pass over the training set.
        inits: number of random initialisations (up to ``limits.MAX_INITS``).
        seed: seeds the initialisations.
    """

    dtype: str = "float32"
    width: int = 256
    depth: int = 3
    batch_size: int = 128
    inits: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _validate.float_dtype(self.dtype, "dtype"))
        for name, hi in (
            ("width", limits.MAX_WIDTH),
            ("depth", limits.MAX_DEPTH),
            ("batch_size", None),
            ("inits", limits.MAX_INITS),
        ):
            object.__setattr__(self, name, _validate.positive_int(getattr(self, name), name, hi=hi))
        seed = _validate.integer(self.seed, "seed", lo=0, hi=limits.MAX_SEED)
        object.__setattr__(self, "seed", seed)


@dataclasses.dataclass(frozen=True)
class DivergenceConfig:
    """One trajectory-divergence run: lockstep SGD with ReLU'(0) = 0 and 1.

    Attributes:
        dtype: precision.
        steps: SGD steps.
        width, depth: the MLP.
        batch_size: minibatch size.
        seed: seeds the initialisation and the shuffling.
        learning_rate: SGD learning rate.
        momentum: SGD momentum (0: plain SGD, as in the paper).
    """

    dtype: str = "float32"
    steps: int = 100
    width: int = 256
    depth: int = 2
    batch_size: int = 128
    seed: int = 0
    learning_rate: float = 0.1
    momentum: float = 0.0

    def __post_init__(self) -> None:
        _validate.positive_int(self.steps, "steps", hi=10**7)

    def train_config(self, steps_per_epoch: int) -> TrainConfig:
        return TrainConfig(
            width=self.width,
            depth=self.depth,
            batch_size=self.batch_size,
            dtype=self.dtype,
            optimizer="sgd",
            momentum=self.momentum,
            learning_rate=self.learning_rate,
            epochs=-(-self.steps // steps_per_epoch),
            seed=self.seed,
            kink_grads=(0.0, 1.0),
        )


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


# --------------------------------------------------------------------------- volume


def _batches(x: np.ndarray, y: np.ndarray, batch: int):
    """Sequential minibatches, the last one padded and masked."""
    n = len(y)
    n_batches = -(-n // batch)
    pad = n_batches * batch - n
    xb = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(n_batches, batch, -1)
    yb = np.concatenate([y, np.zeros(pad, y.dtype)]).reshape(n_batches, batch)
    mb = (np.arange(n_batches * batch) < n).reshape(n_batches, batch)
    return xb, yb, mb


def _one_init(arch: models.Architecture, dt, key, xs, ys, ms):
    """The protocol for one initialisation: ``(in zone, minibatches that differ, sum of
    their relative L2 differences, minibatches with an exact zero)``."""
    params = models.init(arch, key, dt)[0]
    kinks = models.ACTIVATIONS[arch.activation].kinks

    def first_layer_grad(xb, yb, mb, s):
        def loss(p):
            logits = models.apply(arch, p, {"bn": []}, xb, jnp.asarray(s, dt))[0]
            return models.cross_entropy(logits, yb, mb)

        return jax.grad(loss)(params)["layers"][0]["w"]

    def batch_hits(batch):
        # the forward pass of one minibatch, with the shapes of the backward passes below:
        # matrix products of other shapes may round differently (e.g. on GPUs), and the
        # exact zeros must be those the gradients see
        xb, mb = batch
        _, _, pre = models.apply(arch, params, {"bn": []}, xb, 0.0)
        return jnp.sum(instrument.kink_hits(pre, kinks, mb))

    hits = lax.map(batch_hits, (xs, ms))

    def per_batch(_, batch):
        xb, yb, mb, hb = batch
        grad_at = lambda s: first_layer_grad(xb, yb, mb, s)
        return None, instrument.bifurcation_test(grad_at, hb > 0)

    _, (differ, rel) = lax.scan(per_batch, None, (xs, ys, ms, hits))
    rel_sum = jnp.sum(jnp.where(differ, rel, 0.0))
    return jnp.any(differ), jnp.sum(differ), rel_sum, jnp.sum(hits > 0)


def _shard_map(fn, mesh, in_specs, out_specs):
    """``shard_map`` without the varying-axis check (the bifurcation test's ``lax.cond``
    returns constants on one branch; every output is per-initialisation anyway)."""
    try:
        from jax import shard_map
    except ImportError:  # pragma: no cover - older JAX
        from jax.experimental.shard_map import shard_map
    kw = dict(mesh=mesh, in_specs=in_specs, out_specs=out_specs)
    try:
        return shard_map(fn, **kw, check_vma=False)
    except TypeError:  # pragma: no cover - JAX before the check was renamed
        return shard_map(fn, **kw, check_rep=False)


@functools.lru_cache(maxsize=16)
def _compiled(arch: models.Architecture, dtype: str, n_devices: int, chunk: int, shape: tuple):
    """The chunk program for these static settings and minibatch shape, compiled (one
    compilation per distinct key; the key holds no closures, so it cannot go stale)."""
    dt = jnp.dtype(dtype)

    def local(keys, xs, ys, ms):
        return lax.map(lambda k: _one_init(arch, dt, k, xs, ys, ms), keys)

    if n_devices > 1:
        mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("inits",))
        local = _shard_map(local, mesh, (P("inits"), P(), P(), P()), (P("inits"),) * 4)

    def program(base, start, xs, ys, ms):
        index = start + jnp.arange(chunk, dtype=jnp.uint32)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(base, index)
        return local(keys, xs, ys, ms)

    n_batches, batch, features = shape
    args = (
        jax.ShapeDtypeStruct((2,), jnp.uint32),
        jax.ShapeDtypeStruct((), jnp.uint32),
        jax.ShapeDtypeStruct((n_batches, batch, features), dt),
        jax.ShapeDtypeStruct((n_batches, batch), jnp.int32),
        jax.ShapeDtypeStruct((n_batches, batch), bool),
    )
    # float32 means float32 products (no TF32 on GPUs), as in PyTorch's defaults
    with jax.default_matmul_precision("highest"):
        return jax.jit(program).lower(*args).compile()


def _volume_memory(arch: models.Architecture, dt, n_examples: int, batch: int, chunk: int) -> int:
    """Estimated bytes: the minibatches, and per device one initialisation's parameters,
    two gradients and activations, plus the chunk's outputs."""
    size = jnp.dtype(dt).itemsize
    data = n_examples * math.prod(arch.in_shape) * size
    per_init = models.n_params(arch) * 3 * size + 6 * models.n_activations(arch, batch) * size
    return data + per_init * len(jax.local_devices()) + 16 * chunk


def check_volume(cfg: VolumeConfig, ds: Dataset) -> tuple[models.Architecture, int]:
    """Every check :func:`volume` makes before compiling (batch size against the data,
    memory estimate); returns the network and the chunk size."""
    n = len(ds.y_train)
    if cfg.batch_size > n:
        raise ValueError(f"`batch_size` {cfg.batch_size} is larger than the training set ({n})")
    arch = models.Architecture(
        "mlp", (ds.n_features,), ds.num_classes, cfg.width, cfg.depth, init="torch"
    )
    n_dev = len(jax.local_devices())
    chunk = -(-min(cfg.inits, VOLUME_CHUNK) // n_dev) * n_dev
    limits.check_fits(
        _volume_memory(arch, cfg.dtype, n, cfg.batch_size, chunk),
        f"the volume estimate (width {cfg.width}, depth {cfg.depth}, batch {cfg.batch_size})",
    )
    return arch, chunk


def volume(
    dtype: str = VolumeConfig.dtype,
    width: int = VolumeConfig.width,
    depth: int = VolumeConfig.depth,
    batch_size: int = VolumeConfig.batch_size,
    inits: int = VolumeConfig.inits,
    seed: int = VolumeConfig.seed,
    data: Any = "digits",
) -> dict[str, Any]:
    """Estimates the probability that a random initialisation is in the bifurcation zone.

    Args:
        dtype: precision of parameters and arithmetic (NumPy name).
        width, depth: the MLP (``depth`` hidden layers of ``width``), "torch" init.
        batch_size: minibatch size for the pass over the training set.
        inits: number of random initialisations (any number: they run in chunks).
        seed: seeds the initialisations.
        data: data set (see :func:`jaxrelu.data.load_data`).

    Returns:
        A row: ``dtype, width, depth, batch_size, inits, seed, in_zone, probability, ci``
        (Wilson 95%), ``minibatch_rate`` (share of all minibatches whose gradients differ),
        ``relative_l2`` (mean relative L2 norm of the first-layer gradient difference over
        those minibatches; None if none), ``zero_hit_rate`` (share of minibatches with an
        exact zero at a ReLU), ``minibatches`` (per pass), ``seconds`` (run time,
        compilation excluded).

    Raises:
        ValueError: a bad argument (named), or a
            :class:`~jaxrelu.study.limits.ResourceLimitError` -- before any compilation.

    Example:
        >>> from jaxrelu.study import volume
        >>> row = volume("float16", width=16, depth=1, inits=4, data="synthetic")
        >>> row["inits"], 0.0 <= row["probability"] <= 1.0
        (4, True)
    """
    cfg = VolumeConfig(dtype, width, depth, batch_size, inits, seed)
    ds: Dataset = load_data(data)
    arch, chunk = check_volume(cfg, ds)
    n = len(ds.y_train)
    n_dev = len(jax.local_devices())
    xs, ys, ms = _batches(ds.x_train.reshape(n, -1), ds.y_train, cfg.batch_size)
    program = _compiled(arch, cfg.dtype, n_dev, chunk, xs.shape)
    dt = jnp.dtype(cfg.dtype)
    args = (jnp.asarray(xs, dt), jnp.asarray(ys, jnp.int32), jnp.asarray(ms))
    base = jax.random.PRNGKey(cfg.seed)
    totals = np.zeros(4)
    start = time.perf_counter()  # compilation excluded
    for lo in range(0, cfg.inits, chunk):
        out = jax.device_get(program(base, jnp.uint32(lo), *args))
        keep = min(chunk, cfg.inits - lo)
        totals += [float(np.sum(np.asarray(v)[:keep], dtype=np.float64)) for v in out]
        interrupt.check()
    seconds = time.perf_counter() - start
    in_zone, differ, rel_sum, hit_batches = totals
    in_zone, differ = int(in_zone), int(differ)
    lo_ci, hi_ci = wilson_interval(in_zone, cfg.inits)
    all_batches = cfg.inits * xs.shape[0]
    return {
        **dataclasses.asdict(cfg),
        "in_zone": in_zone,
        "probability": in_zone / cfg.inits,
        "ci": [lo_ci, hi_ci],
        "minibatch_rate": differ / all_batches,
        "relative_l2": float(rel_sum / differ) if differ else None,
        "zero_hit_rate": float(hit_batches / all_batches),
        "minibatches": int(xs.shape[0]),
        "seconds": seconds,
    }


# ------------------------------------------------------------------------- training


def train_comparison(
    kink_grads: tuple[float, ...] = (0.0, 1.0),
    dtype: str = "float32",
    optimizer: str = "sgd",
    batchnorm: bool = False,
    seed: int = 0,
    model: str = "mlp",
    epochs: int = 10,
    data: Any = "digits",
    progress: bool = False,
    **config: Any,
) -> list[dict[str, Any]]:
    """Trains one lockstep run per kink value and returns one row per kink value:
    ``model, kink_grad, dtype, optimizer, batchnorm, seed, status, test_accuracy,
    zero_hits, bifurcation_steps`` and more (``zero_hit_rate``, ``final_loss``,
    ``diverged_step``, ``diverged_reason``, ``epochs``, ``learning_rate``, ``network``
    (the fields that shape the model), ``seconds``). ``config`` holds further
    :class:`~jaxrelu.study.config.TrainConfig` fields."""
    cfg = TrainConfig(
        model=model,
        dtype=dtype,
        optimizer=optimizer,
        batchnorm=batchnorm,
        seed=seed,
        epochs=epochs,
        kink_grads=tuple(kink_grads),
        **config,
    )
    hist = train(cfg, data, progress=progress)
    lr = cfg.optim.to_dict()["learning_rate"]
    common = {
        "model": cfg.model,
        "dtype": cfg.dtype,
        "optimizer": cfg.optimizer,
        "batchnorm": cfg.batchnorm,
        "seed": cfg.seed,
    }
    return [
        {
            **common,
            "kink_grad": r["kink_grad"],
            "status": r["status"],
            "test_accuracy": r["test_accuracy"],
            "zero_hits": r["zero_hits"],
            "bifurcation_steps": r["bifurcation_steps"],
            "zero_hit_rate": r["zero_hit_rate"],
            "final_loss": r["final_loss"],
            "diverged_step": r["diverged_step"],
            "diverged_reason": r["diverged_reason"],
            "epochs": cfg.epochs,
            "learning_rate": lr,
            "network": cfg.network.to_dict(),
            "seconds": hist.seconds,
        }
        for r in hist.runs()
    ]


def divergence(
    dtype: str = DivergenceConfig.dtype,
    steps: int = DivergenceConfig.steps,
    width: int = DivergenceConfig.width,
    depth: int = DivergenceConfig.depth,
    batch_size: int = DivergenceConfig.batch_size,
    seed: int = DivergenceConfig.seed,
    learning_rate: float = DivergenceConfig.learning_rate,
    data: Any = "digits",
    momentum: float = DivergenceConfig.momentum,
) -> dict[str, Any]:
    """Lockstep SGD runs (plain by default, as in the paper) with ReLU'(0) = 0 and 1 from
    one initialisation; returns
    ``dtype, steps, l1`` (the L1 distance between their weights after every step; None
    where not finite), ``first_divergence`` (first step whose distance is not exactly 0,
    or None), ``zero_hits`` (per step, in the ReLU'(0) = 0 run) and ``status`` (per run,
    ``"ok"`` or ``"diverged"``)."""
    cfg = DivergenceConfig(dtype, steps, width, depth, batch_size, seed, learning_rate, momentum)
    ds = load_data(data)
    per_epoch = len(ds.y_train) // cfg.batch_size
    if per_epoch == 0:
        raise ValueError(f"`batch_size` {cfg.batch_size} is larger than the training set")
    hist = train(cfg.train_config(per_epoch), ds, progress=False)
    l1 = hist.weight_l1[: cfg.steps, 1]
    moved = np.flatnonzero(l1 != 0)  # NaN counts: the runs are no longer equal
    return {
        **dataclasses.asdict(cfg),
        "steps": len(l1),
        "l1": [_finite_or_none(float(v)) for v in l1],
        "first_divergence": int(moved[0]) + 1 if len(moved) else None,
        "zero_hits": [int(v) for v in hist.zero_hits[: cfg.steps, 0].sum(axis=1)],
        "status": list(hist.status),
    }
