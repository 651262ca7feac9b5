r"""The ReLU'(0) study: Bertoin et al. (NeurIPS 2021) on the built-in data.

Three experiments, each returning JSON-ready rows:

* :func:`volume` -- the paper's section 3 protocol: for ``inits`` random initialisations
  (``"torch"`` init), one pass over the training set in minibatches (no shuffling, the
  last partial batch included); on each minibatch the first-layer weight gradients with
  ReLU'(0) = 0 and = 1 are compared exactly, and an initialisation is in the bifurcation
  zone if any minibatch differs. All initialisations run as one jitted program: a vmapped
  forward pass finds the minibatches with an exact zero at a ReLU, and both backward passes
  run only on those (the two gradients cannot differ elsewhere). The initialisation axis
  is sharded over the local devices when there are several.
* :func:`train_comparison` -- section 4: final test accuracy by ReLU'(0), precision,
  batch norm, optimizer and seed, with zero hits and bifurcation steps.
* :func:`divergence` -- the introductory experiment: lockstep runs with ReLU'(0) = 0 and 1
  from one initialisation, the L1 distance between their weights at every step.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from . import models
from .data import Dataset, load_data
from .engine import DTYPES, TrainConfig, train

__all__ = ["divergence", "train_comparison", "volume", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
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


def _check_positive(**kw: Any) -> None:
    for name, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}")


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("float64 needs jax.config.update('jax_enable_x64', True) first")


def _batches(x: np.ndarray, y: np.ndarray, batch: int):
    """Sequential minibatches, the last one padded and masked."""
    n = len(y)
    n_batches = -(-n // batch)
    pad = n_batches * batch - n
    xb = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(n_batches, batch, -1)
    yb = np.concatenate([y, np.zeros(pad, y.dtype)]).reshape(n_batches, batch)
    mb = (np.arange(n_batches * batch) < n).reshape(n_batches, batch)
    return xb, yb, mb


def _volume_program(arch: models.Architecture, dtype: str, n_devices: int):
    """The whole protocol as one jitted function of (init keys, minibatches).

    Per initialisation: a forward pass over every minibatch counts the exact zeros at the
    ReLUs; then a scan over the minibatches runs both backward passes under a ``lax.cond``
    only where there were zeros. Initialisations are mapped over with ``lax.map`` (a real
    conditional per initialisation), split over the local devices by ``shard_map``.
    """
    dt = jnp.dtype(dtype)

    def loss(params, xb, yb, mb, kink):
        logits, _, _ = models.apply(arch, params, {"bn": []}, xb, kink)
        logp = jax.nn.log_softmax(logits)
        nll = -jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
        # the mean over the real examples of the batch (the padded ones weigh 0)
        return jnp.sum(jnp.where(mb, nll, jnp.zeros_like(nll))) / jnp.sum(mb).astype(dt)

    def first_layer_grad(params, xb, yb, mb, kink):
        return jax.grad(loss)(params, xb, yb, mb, jnp.asarray(kink, dt))["layers"][0]["w"]

    def one_init(key, xs, ys, ms):
        params = models.init(arch, key, dt)[0]

        def batch_hits(batch):
            # the forward pass of one minibatch, with the shapes of the backward passes below:
            # matrix products of other shapes may round differently (e.g. on GPUs), and the
            # exact zeros must be those the gradients see
            xb, mb = batch
            _, _, pre = models.apply(arch, params, {"bn": []}, xb, 0.0)
            return sum(jnp.sum((z == 0) & mb[:, None]) for z in pre)

        hits = lax.map(batch_hits, (xs, ms))

        def per_batch(_, batch):
            xb, yb, mb, hb = batch

            def both(_):
                g0 = first_layer_grad(params, xb, yb, mb, 0.0)
                g1 = first_layer_grad(params, xb, yb, mb, 1.0)
                d = g0.astype(jnp.float32) - g1.astype(jnp.float32)
                ref = g0.astype(jnp.float32)
                rel = jnp.sqrt(jnp.sum(d * d)) / jnp.maximum(
                    jnp.sqrt(jnp.sum(ref * ref)), jnp.finfo(jnp.float32).tiny
                )
                return jnp.any(g0 != g1), rel

            def neither(_):
                return jnp.zeros((), bool), jnp.zeros((), jnp.float32)

            return None, lax.cond(hb > 0, both, neither, None)

        _, (differ, rel) = lax.scan(per_batch, None, (xs, ys, ms, hits))
        return hits, differ, rel

    def local(keys, xs, ys, ms):
        return lax.map(lambda k: one_init(k, xs, ys, ms), keys)

    if n_devices > 1:
        mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("inits",))
        spec = (P("inits"), P(), P(), P())
        local = _shard_map(local, mesh, spec, (P("inits"), P("inits"), P("inits")))
    return jax.jit(local)


def _shard_map(fn, mesh, in_specs, out_specs):
    try:
        from jax import shard_map
    except ImportError:  # pragma: no cover - older JAX
        from jax.experimental.shard_map import shard_map
    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)


_PROGRAMS: dict = {}


def volume(
    dtype: str = "float32",
    width: int = 256,
    depth: int = 3,
    batch_size: int = 128,
    inits: int = 100,
    seed: int = 0,
    data: Any = "digits",
) -> dict[str, Any]:
    """Estimates the probability that a random initialisation is in the bifurcation zone.

    Args:
        dtype: precision of parameters and arithmetic (NumPy name).
        width, depth: the MLP (``depth`` hidden layers of ``width``), "torch" init.
        batch_size: minibatch size for the pass over the training set.
        inits: number of random initialisations.
        seed: seeds the initialisations.
        data: data set (see :func:`jaxrelu.data.load_data`).

    Returns:
        A row: ``dtype, width, depth, batch_size, inits, in_zone, probability, ci``
        (Wilson 95%), ``minibatch_rate`` (share of all minibatches whose gradients differ),
        ``relative_l2`` (mean relative L2 norm of the first-layer gradient difference over
        those minibatches; None if none), ``zero_hit_rate`` (share of minibatches with an
        exact zero at a ReLU), ``seconds`` (run time, compilation excluded).

    Example:
        >>> from jaxrelu.study import volume
        >>> row = volume("float16", width=16, depth=1, inits=4, data="synthetic")
        >>> row["inits"], 0.0 <= row["probability"] <= 1.0
        (4, True)
    """
    _check_dtype(dtype)
    _check_positive(width=width, depth=depth, batch_size=batch_size, inits=inits)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    ds: Dataset = load_data(data)
    if batch_size > len(ds.y_train):
        raise ValueError(
            f"`batch_size` {batch_size} is larger than the training set ({len(ds.y_train)})"
        )
    arch = models.Architecture("mlp", (ds.n_features,), ds.num_classes, width, depth, init="torch")
    n_dev = len(jax.local_devices())
    while inits % n_dev:
        n_dev -= 1
    xs, ys, ms = _batches(ds.x_train.reshape(len(ds.y_train), -1), ds.y_train, batch_size)
    key = (arch, dtype, n_dev)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = {"jit": _volume_program(arch, dtype, n_dev)}
    dt = jnp.dtype(dtype)
    keys = jax.random.split(jax.random.PRNGKey(seed), inits)
    args = (keys, jnp.asarray(xs, dt), jnp.asarray(ys), jnp.asarray(ms))
    shapes = (inits, xs.shape)
    if shapes not in _PROGRAMS[key]:
        # float32 means float32 products (no TF32 on GPUs), as in PyTorch's defaults
        with jax.default_matmul_precision("highest"):
            _PROGRAMS[key][shapes] = _PROGRAMS[key]["jit"].lower(*args).compile()
    start = time.perf_counter()  # compilation excluded
    hits, differ, rel = jax.device_get(_PROGRAMS[key][shapes](*args))
    seconds = time.perf_counter() - start
    in_zone = int(np.sum(np.any(differ, axis=1)))
    lo, hi = wilson_interval(in_zone, inits)
    return {
        "dtype": dtype,
        "width": width,
        "depth": depth,
        "batch_size": batch_size,
        "inits": inits,
        "in_zone": in_zone,
        "probability": in_zone / inits,
        "ci": [lo, hi],
        "minibatch_rate": float(np.mean(differ)),
        "relative_l2": float(np.mean(rel[differ])) if np.any(differ) else None,
        "zero_hit_rate": float(np.mean(hits > 0)),
        "minibatches": int(differ.shape[1]),
        "seconds": seconds,
    }


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
    ``diverged_step``, ``epochs``, ``seconds``)."""
    lr = config.pop("learning_rate", 1e-3 if optimizer == "adam" else 0.1)
    cfg = TrainConfig(
        model=model,
        dtype=dtype,
        optimizer=optimizer,
        batchnorm=batchnorm,
        seed=seed,
        epochs=epochs,
        kink_grads=tuple(float(s) for s in kink_grads),
        learning_rate=lr,
        **config,
    )
    hist = train(cfg, data, progress=progress)
    rows = []
    for r in hist.runs():
        rows.append(
            {
                "model": model,
                "kink_grad": r["kink_grad"],
                "dtype": dtype,
                "optimizer": optimizer,
                "batchnorm": bool(batchnorm),
                "seed": seed,
                "status": r["status"],
                "test_accuracy": r["test_accuracy"],
                "zero_hits": r["zero_hits"],
                "bifurcation_steps": r["bifurcation_steps"],
                "zero_hit_rate": r["zero_hit_rate"],
                "final_loss": r["final_loss"] if math.isfinite(r["final_loss"]) else None,
                "diverged_step": r["diverged_step"],
                "epochs": epochs,
                "learning_rate": lr if not callable(lr) else "schedule",
                "seconds": hist.seconds,
            }
        )
    return rows


def divergence(
    dtype: str = "float32",
    steps: int = 100,
    width: int = 256,
    depth: int = 2,
    batch_size: int = 128,
    seed: int = 0,
    learning_rate: float = 0.1,
    data: Any = "digits",
    momentum: float = 0.0,
) -> dict[str, Any]:
    """Lockstep SGD runs (plain by default, as in the paper) with ReLU'(0) = 0 and 1 from
    one initialisation; returns
    ``dtype, steps, l1`` (the L1 distance between their weights after every step),
    ``first_divergence`` (first step with a nonzero distance, or None) and
    ``zero_hits`` (per step, in the ReLU'(0) = 0 run)."""
    _check_positive(steps=steps, width=width, depth=depth, batch_size=batch_size)
    ds = load_data(data)
    per_epoch = len(ds.y_train) // batch_size
    if per_epoch == 0:
        raise ValueError(f"`batch_size` {batch_size} is larger than the training set")
    epochs = -(-steps // per_epoch)
    cfg = TrainConfig(
        width=width,
        depth=depth,
        batch_size=batch_size,
        dtype=dtype,
        optimizer="sgd",
        momentum=momentum,
        learning_rate=learning_rate,
        epochs=epochs,
        seed=seed,
        kink_grads=(0.0, 1.0),
    )
    hist = train(cfg, ds, progress=False)
    l1 = hist.weight_l1[:steps, 1]
    nz = np.flatnonzero(l1 > 0)
    return {
        "dtype": dtype,
        "steps": len(l1),
        "width": width,
        "depth": depth,
        "batch_size": batch_size,
        "seed": seed,
        "momentum": momentum,
        "l1": [float(v) for v in l1],
        "first_divergence": int(nz[0]) + 1 if len(nz) else None,
        "zero_hits": [int(v) for v in hist.zero_hits[:steps, 0].sum(axis=1)],
        "status": list(hist.status),
    }
