r"""The ReLU'(0) study: Bertoin et al. (NeurIPS 2021) on the built-in data.

Three experiments, each returning JSON-ready rows (non-finite numbers are ``None``):

* :func:`volume` -- the paper's section 3 protocol: for ``inits`` random initialisations
  (``"torch"`` init), one pass over the training set in minibatches (no shuffling, the
  last partial batch included), or ``images`` images (further passes freshly shuffled);
  on each minibatch the first-layer weight gradients with ReLU'(0) = 0 and = 1 are
  compared exactly, and an initialisation is in the bifurcation zone if any minibatch
  differs. Initialisation ``i`` is drawn with ``fold_in(PRNGKey(seed), i)``. The
  initialisations run in jitted chunks of at most :data:`VOLUME_CHUNK` (bounded memory
  for any ``inits``; Ctrl-C is honoured between chunks), each a sequence of groups of
  :data:`VOLUME_GROUP` whose forward passes share one set of matrix products. A forward
  pass over :data:`VOLUME_ROWS` images (whole minibatches, stacked into one product per
  layer) finds the exact zeros at a kink, and both backward passes run only on
  minibatches with one (the two gradients cannot differ elsewhere), from a forward
  pass whose pre-activations are checked bit for bit against the ones searched (the
  zeros found are those the gradients see; a mismatch is an error), with the
  instrumentation of :mod:`jaxrelu.study.instrument`. A chunk's initialisations are
  sharded over the local devices when there are several, and chunks are dealt out to the
  processes of a multi-process run.
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
    "MAX_IMAGES",
    "VOLUME_CHUNK",
    "VOLUME_GROUP",
    "VOLUME_ROWS",
    "DivergenceConfig",
    "VolumeConfig",
    "check_volume",
    "divergence",
    "search_block",
    "train_comparison",
    "volume",
    "volume_group",
    "wilson_interval",
]

INTERVAL: dict[str, Any] = {"method": "wilson", "level": 0.95}
"""How every probability's interval is computed (recorded in the JSON output)."""
_Z95 = 1.959963984540054
VOLUME_CHUNK = 256
"""Most initialisations computed by one XLA call of :func:`volume`."""
MAX_IMAGES = 2**31 - 1
"""Most images one initialisation of :func:`volume` may see (minibatch indices are int32)."""
VOLUME_ROWS = 2048
"""Images whose forward pass :func:`volume`'s zero search computes as one product per
layer: ``VOLUME_ROWS // batch_size`` minibatches (at least one) are stacked. (On a 2-core
CPU, the paper's volume on digits, whose pass is 12 minibatches of 128, ran 5-8% faster as
one block of 1,536 rows than as two of 768.)"""
VOLUME_GROUP: int | None = None
"""Initialisations whose forward passes are batched into one set of matrix products by
:func:`volume` (a chunk is rounded up to whole groups); None: :func:`volume_group`'s
choice for the platform. Results do not depend on it."""


def volume_group() -> int:
    """:data:`VOLUME_GROUP`, or where it is None the platform's size: 1 on the CPU, where
    groups of 4, 8 and 16 ran slower; 8 on other platforms, where one initialisation's
    products are too small to fill the device (on an NVIDIA H100, groups of 8 ran the
    paper's volume 4.8x faster than groups of 1). ``benchmarks/bench_volume.py`` measures
    8 against the default."""
    if VOLUME_GROUP is not None:
        return int(VOLUME_GROUP)
    return 1 if jax.default_backend() == "cpu" else 8


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
        seed: seeds the initialisations (and the shuffles of passes after the first).
        accumulate: how 16-bit layers are rounded, one of ``models.ACCUMULATE``
            (``"native"``, ``"float32"``).
        images: images seen per initialisation (None: one pass over the training set).
    """

    dtype: str = "float32"
    width: int = 256
    depth: int = 3
    batch_size: int = 128
    inits: int = 100
    seed: int = 0
    accumulate: str = "native"
    images: int | None = None

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
        _validate.one_of(self.accumulate, models.ACCUMULATE, "accumulate")
        if self.images is not None:
            images = _validate.positive_int(self.images, "images", hi=MAX_IMAGES)
            object.__setattr__(self, "images", images)


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
        accumulate: how 16-bit layers are rounded (``"native"`` or ``"float32"``).
    """

    dtype: str = "float32"
    steps: int = 100
    width: int = 256
    depth: int = 2
    batch_size: int = 128
    seed: int = 0
    learning_rate: float = 0.1
    momentum: float = 0.0
    accumulate: str = "native"

    def __post_init__(self) -> None:
        _validate.positive_int(self.steps, "steps", hi=10**7)
        _validate.one_of(self.accumulate, models.ACCUMULATE, "accumulate")

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
            accumulate=self.accumulate,
        )


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


# --------------------------------------------------------------------------- volume


def _minibatch_indices(
    n: int, batch: int, images: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The minibatches of the protocol as indices into the training set.

    Pass 0 is the training set in its order (the paper's protocol); pass ``p >= 1`` is a
    permutation drawn with ``numpy.random.default_rng((seed, p))``. Each pass is cut into
    minibatches of ``batch`` (its last one partial), and the last pass is cut short after
    ``images`` images in all. Returns ``(index, mask, first)``: ``(minibatches, batch)``
    indices (padding points at row ``n``, a row of zeros) and validity, and the number of
    minibatches of the first pass."""
    rows, masks = [], []
    first = 0
    for p, lo in enumerate(range(0, images, n)):
        order = np.arange(n) if p == 0 else np.random.default_rng((seed, p)).permutation(n)
        take = order[: min(n, images - lo)]
        count = -(-len(take) // batch)
        pad = count * batch - len(take)
        rows.append(np.concatenate([take, np.full(pad, n)]).reshape(count, batch))
        masks.append((np.arange(count * batch) < len(take)).reshape(count, batch))
        first = first or count
    return np.concatenate(rows).astype(np.int32), np.concatenate(masks), first


def _group(arch: models.Architecture, dt, keys, x, y, index, mask, first, block: int):
    """The protocol for the initialisations of ``keys`` (one group; their forward passes
    are batched into one set of products), ``block`` minibatches at a time: one forward
    pass over the block's stacked images finds the exact zeros at a kink (one product per
    layer for ``block`` minibatches: a product's rows do not depend on its other rows on
    the backends this runs on, which :func:`_rows_agree` checks on every chunk); then,
    minibatch after minibatch, only where an initialisation that still counts has a zero,
    both backward passes run (from one forward pass under a vmap over the kink value: the
    forward pass does not depend on it), and that forward pass's pre-activations are
    compared bit for bit with the ones searched: the zeros found are those the gradients
    see, or the mismatch is counted. The whole first pass is examined (it gives the
    statistics); later blocks only until every initialisation of the group has differed
    once.

    Returns per initialisation ``(in zone, minibatches that differ, sum of their relative
    L2 differences, minibatches with an exact zero, minibatches whose gradients' forward
    pass differed from the search's)``, the middle three over the first pass."""
    params = jax.vmap(lambda k: models.init(arch, k, dt)[0])(keys)
    params = _materialized(params, first)
    kinks = models.ACTIVATIONS[arch.activation].kinks
    one = jnp.ones((), dt)
    n, batch = keys.shape[0], index.shape[1]

    def forward(p, xb, yb, mb, s):
        def each(q):
            logits, _, pre = models.apply(arch, q, {"bn": []}, xb, s)
            return models.cross_entropy(logits, yb, mb), pre

        losses, pre = jax.vmap(each)(p)
        return jnp.sum(losses), pre  # init i's gradient: that of its own loss

    def search(rows, masks):
        """Pre-activations ``(n, block, batch, ...)`` per layer and zero hits ``(n, block)``."""
        pre = _pre_activations(arch, params, x[rows.reshape(-1)], dt)
        pre = [z.reshape((n, block, batch, *z.shape[2:])) for z in pre]
        hit = lambda z, m: instrument.kink_any(z, kinks, m)
        return pre, jax.vmap(jax.vmap(hit), (0, None))(pre, masks)

    def tested(ops):
        xb, yb, mb, pre = ops

        def at(s):
            _, vjp, again = jax.vjp(lambda p: forward(p, xb, yb, mb, s), params, has_aux=True)
            return vjp(one)[0]["layers"][0]["w"], again

        w, again = jax.vmap(at, out_axes=(0, None))(jnp.asarray([0.0, 1.0], dt))
        differ, rel = jax.vmap(instrument.compare_gradients)(w[0], w[1])
        same = jnp.ones(n, bool)
        for a, b in zip(again, pre):
            equal = (a == b) | ((a != a) & (b != b))  # NaN where NaN
            same = same & jnp.all(equal.reshape(n, -1), axis=1)
        return differ, rel, same

    def untested(_):
        return jnp.zeros(n, bool), jnp.zeros(n, jnp.float32), jnp.ones(n, bool)

    def body(carry):
        u, *stats = carry
        rows = lax.dynamic_slice_in_dim(index, u * block, block)
        masks = lax.dynamic_slice_in_dim(mask, u * block, block)
        pre, hits = search(rows, masks)

        def minibatch(j, stats):
            zone, differ, rel, hit_batches, mismatch = stats
            in_first = u * block + j < first
            hit = hits[:, j]
            need = hit & (in_first | ~zone)
            ops = (x[rows[j]], y[rows[j]], masks[j], [z[:, j] for z in pre])
            d, r, same = lax.cond(jnp.any(need), tested, untested, ops)
            d = d & need
            stat = d & in_first
            return (
                zone | d,
                differ + stat,
                rel + jnp.where(stat, r, 0.0),
                hit_batches + (hit & in_first),
                mismatch + ~same,
            )

        stats = lax.cond(  # a block without zeros changes nothing
            jnp.any(hits),
            lambda s: lax.fori_loop(0, block, minibatch, s),
            lambda s: s,
            tuple(stats),
        )
        return (u + 1, *stats)

    def more(carry):
        lo, zone = carry[0] * block, carry[1]
        return (lo < index.shape[0]) & ((lo < first) | ~jnp.all(zone))

    zeros = jnp.zeros(n, jnp.int32)
    start = (jnp.int32(0), jnp.zeros(n, bool), zeros, jnp.zeros(n, jnp.float32), zeros, zeros)
    return lax.while_loop(more, body, start)[1:]


def _materialized(params: Any, first: jax.Array) -> Any:
    """``params`` as buffers of their own. Left as expressions, XLA's CPU backend fuses the
    parameter draws into the consumers of each product, so that a bias's hash is
    recomputed for every row of a stacked block (measured: the bias additions, ReLUs and
    zero tests ran 3-5x slower with the whole digits pass in one block). A conditional's
    result is a buffer; ``first >= 0`` is always true but known only at run time, so the
    branch is kept and the other one never runs. CPU only (elsewhere a conditional can cost
    a read of its predicate by the host), chosen when the program is lowered."""

    def buffers(p: Any, first: jax.Array) -> Any:
        return lax.cond(first >= 0, lambda: p, lambda: jax.tree.map(jnp.zeros_like, p))

    return lax.platform_dependent(params, first, cpu=buffers, default=lambda p, _: p)


def _pre_activations(arch: models.Architecture, params, xb, dt) -> list:
    """A group's pre-activations on the images ``xb`` (one forward pass per
    initialisation, vmapped over the group as in the gradients' forward pass)."""
    pre = lambda q: models.apply(arch, q, {"bn": []}, xb, jnp.zeros((), dt))[2]
    return jax.vmap(pre)(params)


def _rows_agree(arch: models.Architecture, dt, keys, x, index, block: int) -> jax.Array:
    """Whether, for the group of initialisations of ``keys``, the forward passes over
    ``index``'s minibatches stacked ``block`` at a time give, row for row and bit for bit,
    the pre-activations of each minibatch's own forward pass (what the zero search relies
    on: products whose rows do not depend on their other rows)."""
    params = jax.vmap(lambda k: models.init(arch, k, dt)[0])(keys)

    def each(rows):
        stacked = _pre_activations(arch, params, x[rows.reshape(-1)], dt)
        alone = lax.map(lambda r: _pre_activations(arch, params, x[r], dt), rows)
        ok = jnp.bool_(True)
        for a, b in zip(stacked, alone):
            b = jnp.moveaxis(b, 0, 1).reshape(a.shape)  # (group, block * batch, ...)
            ok = ok & jnp.all((a == b) | ((a != a) & (b != b)))  # NaN where NaN
        return ok

    return jnp.all(lax.map(each, index.reshape((-1, block, *index.shape[1:]))))


@functools.lru_cache(maxsize=16)
def _agreement(
    arch: models.Architecture, dtype: str, group: int, block: int, data: tuple, batches: tuple
):
    """:func:`_rows_agree` compiled for these static settings and shapes."""
    dt = jnp.dtype(dtype)
    run = jax.jit(lambda keys, x, index: _rows_agree(arch, dt, keys, x, index, block))
    args = (
        jax.ShapeDtypeStruct((group, 2), jnp.uint32),
        jax.ShapeDtypeStruct(data, dt),
        jax.ShapeDtypeStruct(batches, jnp.int32),
    )
    with jax.default_matmul_precision("highest"):
        return run.lower(*args).compile()


def _whole_blocks(index: np.ndarray, mask: np.ndarray, block: int, n: int):
    """``index`` and ``mask`` padded to whole blocks with minibatches of the padding row
    ``n``, masked out."""
    pad = -len(index) % block
    index = np.concatenate([index, np.full((pad, index.shape[1]), n, index.dtype)])
    return index, np.concatenate([mask, np.zeros((pad, mask.shape[1]), bool)])


def _stacking_agrees(arch, dtype: str, block: int, base, x: np.ndarray, index, group: int) -> bool:
    """Whether stacking ``block`` minibatches leaves every row of the products as it is,
    checked on the run's first group of ``group`` initialisations over the
    minibatches of ``index`` (the first pass; the products' algorithm depends on their
    shapes, not on the values: a backend that rounds a stacked row differently does so
    here). With several processes, stacking needs every process's agreement (they must
    all run the same program)."""
    probe, _ = _whole_blocks(index, np.ones(index.shape, bool), block, len(x) - 1)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.arange(group, dtype=jnp.uint32))
    program = _agreement(arch, dtype, group, block, x.shape, probe.shape)
    ok = bool(program(keys, jnp.asarray(x, dtype), jnp.asarray(probe)))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        ok = bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))
    return ok


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
def _compiled(
    arch: models.Architecture,
    dtype: str,
    n_devices: int,
    chunk: int,
    group: int,
    block: int,
    data: tuple,
    batches: tuple,
):
    """The chunk program for these static settings and shapes (``group``: initialisations
    per group, ``block``: minibatches per search product, ``data``: rows and features of
    the zero-padded training set, ``batches``: minibatches, a multiple of ``block``, and
    batch size), compiled (one compilation per distinct key; the key holds no closures,
    so it cannot go stale)."""
    dt = jnp.dtype(dtype)

    def local(keys, x, y, index, mask, first):
        groups = keys.reshape(-1, group, keys.shape[-1])
        run = lambda k: _group(arch, dt, k, x, y, index, mask, first, block)
        out = [o.reshape(-1) for o in lax.map(run, groups)]
        # the search's premise, checked again on this chunk's first group
        agree = _rows_agree(arch, dt, keys[:group], x, index[:block], block)
        out[4] = out[4].at[0].add(jnp.where(agree, 0, 1).astype(out[4].dtype))
        return tuple(out)

    if n_devices > 1:
        mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("inits",))
        local = _shard_map(local, mesh, (P("inits"),) + (P(),) * 5, (P("inits"),) * 5)

    def program(base, start, x, y, index, mask, first):
        keys = jax.vmap(jax.random.fold_in, (None, 0))(
            base, start + jnp.arange(chunk, dtype=jnp.uint32)
        )
        return local(keys, x, y, index, mask, first)

    args = (
        jax.ShapeDtypeStruct((2,), jnp.uint32),
        jax.ShapeDtypeStruct((), jnp.uint32),
        jax.ShapeDtypeStruct(data, dt),
        jax.ShapeDtypeStruct(data[:1], jnp.int32),
        jax.ShapeDtypeStruct(batches, jnp.int32),
        jax.ShapeDtypeStruct(batches, bool),
        jax.ShapeDtypeStruct((), jnp.int32),
    )
    # float32 means float32 products (no TF32 on GPUs), as in PyTorch's defaults
    with jax.default_matmul_precision("highest"):
        return jax.jit(program).lower(*args).compile()


def _volume_memory(
    arch: models.Architecture,
    dt,
    n_examples: int,
    batch: int,
    chunk: int,
    minibatches: int,
    group: int,
) -> int:
    """Estimated bytes: the training set, the minibatch indices, and per device one
    group's parameters, two gradients and activations (the search's block, the forward
    pass and both backward passes of one minibatch), plus the chunk's outputs."""
    size = jnp.dtype(dt).itemsize
    data = (n_examples + 1) * (math.prod(arch.in_shape) * size + 4)
    block = search_block(batch, minibatches)
    indices = (minibatches + block) * batch * 5
    # the search's block (and its check's two copies), one minibatch's three passes
    acts = max(6 + block, 2 * block) * models.n_activations(arch, batch)
    rows = block * batch * math.prod(arch.in_shape)  # the block's gathered images
    per_init = models.n_params(arch) * 3 * size + (acts + rows) * size
    return data + indices + per_init * group * len(jax.local_devices()) + 16 * chunk


def check_volume(cfg: VolumeConfig, ds: Dataset) -> tuple[models.Architecture, int]:
    """Every check :func:`volume` makes before compiling (batch size against the data,
    memory estimate); returns the network and the chunk size."""
    arch, chunk, _ = _plan(cfg, ds)
    return arch, chunk


def _plan(cfg: VolumeConfig, ds: Dataset) -> tuple[models.Architecture, int, int]:
    """:func:`check_volume`'s checks; returns the network, the chunk size and the group
    size: :data:`VOLUME_GROUP` where it is set, else :func:`volume_group`'s, halved while
    the estimate does not fit the memory (a group holds its initialisations' parameters
    and activations at once) and at most the initialisations each device runs."""
    n = len(ds.y_train)
    if cfg.batch_size > n:
        raise ValueError(f"`batch_size` {cfg.batch_size} is larger than the training set ({n})")
    arch = models.Architecture(
        "mlp",
        (ds.n_features,),
        ds.num_classes,
        cfg.width,
        cfg.depth,
        init="torch",
        accumulate=cfg.accumulate,
    )
    n_dev = len(jax.local_devices())
    images = n if cfg.images is None else cfg.images
    passes, rest = divmod(images, n)
    minibatches = passes * -(-n // cfg.batch_size) + -(-rest // cfg.batch_size)

    def chunk_and_bytes(group: int) -> tuple[int, int]:
        step = group * n_dev
        chunk = -(-min(cfg.inits, VOLUME_CHUNK) // step) * step
        need = _volume_memory(arch, cfg.dtype, n, cfg.batch_size, chunk, minibatches, group)
        return chunk, need

    group = volume_group()
    if VOLUME_GROUP is None and group > 1:
        group = max(1, min(group, -(-min(cfg.inits, VOLUME_CHUNK) // n_dev)))
        have = limits.available_bytes()
        while group > 1 and chunk_and_bytes(group)[1] * limits.SAFETY > have:
            group //= 2
        if jax.process_count() > 1:  # every process must compile the same program
            from jax.experimental import multihost_utils

            group = int(np.min(multihost_utils.process_allgather(np.int32(group))))
    chunk, need = chunk_and_bytes(group)
    limits.check_fits(
        need,
        f"the volume estimate (width {cfg.width}, depth {cfg.depth}, batch {cfg.batch_size}, "
        f"{images} images"
        + (f", initialisations in groups of VOLUME_GROUP = {group}" if group > 1 else "")
        + ")",
    )
    return arch, chunk, group


def search_block(batch_size: int, minibatches: int) -> int:
    """Minibatches stacked into one product by :func:`volume`'s zero search: at most
    :data:`VOLUME_ROWS` images (at least one minibatch), the ``minibatches`` cut into
    blocks as even as can be (the last block is padded: padding costs a forward pass)."""
    most = max(1, min(VOLUME_ROWS // batch_size, minibatches))
    blocks = -(-minibatches // most)
    return -(-minibatches // blocks)


def _chunk_totals(out: tuple, keep: int) -> np.ndarray:
    """One chunk's sums over its first ``keep`` initialisations (float64)."""
    return np.array([np.sum(np.asarray(v)[:keep], dtype=np.float64) for v in out])


def volume(
    dtype: str = VolumeConfig.dtype,
    width: int = VolumeConfig.width,
    depth: int = VolumeConfig.depth,
    batch_size: int = VolumeConfig.batch_size,
    inits: int = VolumeConfig.inits,
    seed: int = VolumeConfig.seed,
    data: Any = "digits",
    accumulate: str = VolumeConfig.accumulate,
    images: int | None = VolumeConfig.images,
) -> dict[str, Any]:
    """Estimates the probability that a random initialisation is in the bifurcation zone.
    (Long: the checks, the chunk loop, the multi-process gathering and the row are one
    protocol, in the order they run.)

    Args:
        dtype: precision of parameters and arithmetic (NumPy name).
        width, depth: the MLP (``depth`` hidden layers of ``width``), "torch" init.
        batch_size: minibatch size for the pass over the training set.
        inits: number of random initialisations (any number: they run in chunks).
        seed: seeds the initialisations (and the shuffles of passes after the first).
        data: data set (see :func:`jaxrelu.data.load_data`).
        accumulate: how 16-bit layers are rounded: ``"native"`` (product, then bias
            addition, each rounded to ``dtype``) or ``"float32"`` (accumulated in
            float32, bias added in float32, rounded once); no effect at 32 and 64 bits.
        images: images seen per initialisation; None is one pass over the training set.
            More than one pass: further passes, each a fresh shuffle (drawn from ``seed``
            and the pass number, the same for every initialisation), the last one cut
            short; an initialisation counts as in the zone at its first minibatch whose
            gradients differ. Nothing is trained between passes, so an image's
            pre-activations are the same in every pass (where a product's rows do not
            depend on the other rows' values, as on CPUs for products of one shape;
            changing the shape can change a row's rounding, which the zero search
            checks before stacking minibatches): later passes add an
            initialisation only through the other images of its minibatches. Repetition is
            not fresh data: on digits (float32, width 256, depth 3, batch 256, 1,000
            initialisations) one pass, two passes and 60,000 images all gave 11.

    Returns:
        A row: ``dtype, width, depth, batch_size, inits, seed, accumulate, images`` (the
        number of images seen per initialisation), ``in_zone, probability, ci`` (Wilson
        95%), ``minibatch_rate`` (share of the first pass's minibatches whose gradients
        differ), ``relative_l2`` (mean relative L2 norm of the first-layer gradient
        difference over those minibatches; None if none), ``zero_hit_rate`` (share of the
        first pass's minibatches with an exact zero at a ReLU), ``minibatches`` (of the
        first pass), ``seconds`` (run time; compilation and the stacking check before
        the run excluded).

    Raises:
        ValueError: a bad argument (named), or a
            :class:`~jaxrelu.study.limits.ResourceLimitError` -- before any compilation.

    With several processes (:func:`jax.distributed.initialize`), chunks of
    initialisations are dealt out to the processes in turn and their sums gathered in
    chunk order: every process returns the row a single process would, bit for bit.

    Example:
        >>> from jaxrelu.study import volume
        >>> row = volume("float16", width=16, depth=1, inits=4, data="synthetic")
        >>> row["inits"], row["images"], 0.0 <= row["probability"] <= 1.0
        (4, 2048, True)
    """
    cfg = VolumeConfig(dtype, width, depth, batch_size, inits, seed, accumulate, images)
    ds: Dataset = load_data(data)
    arch, chunk, group = _plan(cfg, ds)
    n = len(ds.y_train)
    seen = n if cfg.images is None else cfg.images
    index, mask, first = _minibatch_indices(n, cfg.batch_size, seen, cfg.seed)
    x = ds.x_train.reshape(n, -1)
    x = np.concatenate([x, np.zeros((1, x.shape[1]), x.dtype)])  # the padding row
    dt = jnp.dtype(cfg.dtype)
    base = jax.random.PRNGKey(cfg.seed)
    block = search_block(cfg.batch_size, len(index))
    if block > 1 and not _stacking_agrees(arch, cfg.dtype, block, base, x, index[:first], group):
        block = 1  # this backend rounds stacked rows differently: minibatch by minibatch
    index, mask = _whole_blocks(index, mask, block, n)
    n_dev = len(jax.local_devices())
    program = _compiled(arch, cfg.dtype, n_dev, chunk, group, block, x.shape, index.shape)
    args = (
        jnp.asarray(x, dt),
        jnp.asarray(np.append(ds.y_train, 0), jnp.int32),
        jnp.asarray(index),
        jnp.asarray(mask),
        jnp.int32(first),
    )
    procs, me = jax.process_count(), jax.process_index()
    starts = list(range(0, cfg.inits, chunk))
    totals = np.zeros(5)
    start = time.perf_counter()  # compilation excluded
    for r in range(0, len(starts), procs):  # one chunk per process in each round
        mine = r + me
        lo = starts[mine] if mine < len(starts) else starts[-1]
        sums = _chunk_totals(
            jax.device_get(program(base, jnp.uint32(lo), *args)), min(chunk, cfg.inits - lo)
        )
        if procs > 1:
            from jax.experimental import multihost_utils

            every = np.asarray(multihost_utils.process_allgather(sums))
            for k in range(min(procs, len(starts) - r)):  # chunk order
                totals += every[k]
        else:
            totals += sums
        interrupt.check()
    seconds = time.perf_counter() - start
    in_zone, differ, rel_sum, hit_batches, mismatch = totals
    if mismatch:
        raise RuntimeError(
            f"the gradients' forward pass rounded differently from the zero search's on "
            f"{int(mismatch)} minibatch(es) or block(s) of {block} stacked minibatches: "
            "the zeros found are not those the gradients see, so the estimate would be "
            "wrong (a compiler or library change?)"
        )
    n_zone, n_differ = int(in_zone), int(differ)
    lo_ci, hi_ci = wilson_interval(n_zone, cfg.inits)
    all_batches = cfg.inits * first
    return {
        **dataclasses.asdict(cfg),
        "images": seen,
        "in_zone": n_zone,
        "probability": n_zone / cfg.inits,
        "ci": [lo_ci, hi_ci],
        "minibatch_rate": n_differ / all_batches,
        "relative_l2": float(rel_sum / n_differ) if n_differ else None,
        "zero_hit_rate": float(hit_batches / all_batches),
        "minibatches": first,
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
    accumulate: str = "native",
    **config: Any,
) -> list[dict[str, Any]]:
    """Trains one lockstep run per kink value and returns one row per kink value:
    ``model, kink_grad, dtype, optimizer, batchnorm, seed, status, test_accuracy,
    zero_hits, bifurcation_steps`` and more (``accumulate`` (how 16-bit layers are
    rounded: ``"native"`` or ``"float32"``), ``zero_hit_rate``, ``final_loss``,
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
        accumulate=accumulate,
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
        "accumulate": cfg.run.accumulate,
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
    accumulate: str = DivergenceConfig.accumulate,
) -> dict[str, Any]:
    """Lockstep SGD runs (plain by default, as in the paper) with ReLU'(0) = 0 and 1 from
    one initialisation (16-bit layers rounded as ``accumulate`` says); returns
    the config's fields, ``steps, l1`` (the L1 distance between their weights after every step; None
    where not finite), ``first_divergence`` (first step whose distance is not exactly 0,
    or None), ``zero_hits`` (per step, in the ReLU'(0) = 0 run) and ``status`` (per run,
    ``"ok"`` or ``"diverged"``)."""
    cfg = DivergenceConfig(
        dtype, steps, width, depth, batch_size, seed, learning_rate, momentum, accumulate
    )
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
