"""``jax.random.uniform`` and ``jax.random.permutation``: the same numbers, drawn faster on
the CPU.

On the CPU, JAX lowers the threefry2x32 hash as a rolled loop of five iterations whose
rotation amounts are loop data (to keep compile times short): each iteration is a
separate pass over the whole output, and drawing a float32 costs about 10 ns on a 2-core
machine. The volume estimate draws every initialisation's parameters (150k numbers for
the paper's MLP), so the draws were about 30% of its time.

:func:`uniform` computes the same hash unrolled, with constant rotations: XLA fuses it
into one vectorised pass (about 5x faster) and the bits are identical. The fast path is
taken only when the key is a threefry key, threefry is in its partitionable mode (JAX's
default) and a one-time check finds it equal to ``jax.random.uniform`` under this JAX;
otherwise ``jax.random.uniform`` itself is called. Tests compare the two bit for bit.

:func:`permutation` is ``jax.random.permutation(key, n)``: JAX stably sorts the indices by
fresh random 32-bit keys, two or three rounds. XLA's CPU sort of a key and a value runs a
compiled comparator per comparison (2 ms for 8,192 elements here), while a single uint32
array sorts four times faster. So each round sorts the keys alone and places every index
at its key's rank (a binary search in the sorted keys); where two keys are equal (about
once in a hundred epochs of 8,192), that round is JAX's stable key-value sort itself. The
permutation is the same, about 3x faster: the training engine shuffles every epoch. On
other platforms (GPU, TPU) the program calls ``jax.random.permutation`` itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# threefry2x32's rotation schedule and key-schedule constant (Salmon et al., SC 2011)
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA
_PLAIN: contextvars.ContextVar[bool] = contextvars.ContextVar("plain_draws", default=False)


@contextlib.contextmanager
def plain_draws() -> Iterator[None]:
    """While tracing under it, :func:`uniform` calls ``jax.random.uniform`` itself (what a
    user writes by hand: benchmarks' baselines, and tests comparing the two paths). Only
    traces made under it are affected (a function ``jax.jit`` has already traced keeps its
    program)."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def _rotate_left(x: Any, d: int) -> Any:
    return lax.shift_left(x, np.uint32(d)) | lax.shift_right_logical(x, np.uint32(32 - d))


def threefry2x32(k0: Any, k1: Any, x0: Any, x1: Any) -> tuple[Any, Any]:
    """The threefry2x32 hash of the counter words ``(x0, x1)`` under key ``(k0, k1)``
    (uint32), 20 rounds unrolled."""
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _key_words(key: Any) -> Any | None:
    """The two uint32 words of a threefry key, or None for any other key."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != () or "threefry" not in str(jax.random.key_impl(key)):
            return None
        key = jax.random.key_data(key)
    elif jax.config.jax_default_prng_impl != "threefry2x32":  # type: ignore[attr-defined]
        return None
    if key.shape != (2,) or key.dtype != jnp.uint32:
        return None
    return key


def _bits(words: Any, shape: tuple[int, ...]) -> Any:
    """``jax.random.bits(key, shape, uint32)`` in threefry's partitionable mode: the hash
    of each element's row-major index (high word 0 below 2**32 elements), the two output
    words xor-ed."""
    n = math.prod(shape)
    lo = lax.iota(jnp.uint32, n)
    a, b = threefry2x32(words[0], words[1], jnp.zeros_like(lo), lo)
    return (a ^ b).reshape(shape)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _fast_uniform(words: Any, shape: tuple[int, ...], minval: float, maxval: float) -> Any:
    # jitted as jax.random.uniform is: one program, so that XLA contracts the scaling into
    # one fused multiply-add there and here alike (eagerly, op by op, it rounded twice);
    # the barrier keeps a constant key from being folded at compile time (the folder
    # rounds twice too, while JAX's rolled loop is not folded)
    words = lax.optimization_barrier(words)
    # jax.random.uniform's float32 construction: 23 random mantissa bits under exponent 0
    # give [1, 2); shift to [0, 1), scale, and clip at minval
    mant = lax.shift_right_logical(_bits(words, shape), np.uint32(9)) | np.uint32(0x3F800000)
    floats = lax.bitcast_convert_type(mant, jnp.float32) - np.float32(1.0)
    lo, hi = jnp.float32(minval), jnp.float32(maxval)
    return lax.max(lo, floats * (hi - lo) + lo)


def _fast(key: Any, size: int) -> Any | None:
    """The key's words where the fast path applies (see the module docstring), else None."""
    words = _key_words(key)
    if (
        _PLAIN.get()
        or words is None
        or not jax.config.jax_threefry_partitionable  # type: ignore[attr-defined]
        or size >= 2**32
    ):
        return None
    return words


@functools.cache
def _agrees() -> bool:
    """Whether the fast path gives ``jax.random.uniform``'s numbers under this JAX (its
    counter layout and float construction are not part of JAX's API)."""
    shape, lo, hi = (3, 37), -0.25, 0.75

    def both(k: Any) -> tuple[Any, Any]:
        ref = jax.random.uniform(k, shape, jnp.float32, lo, hi)
        return ref, _fast_uniform(_key_words(k), shape, lo, hi)

    with jax.ensure_compile_time_eval():
        keys = [jax.random.key(s, impl="threefry2x32") for s in (0, 2**31 + 12345)]
        pairs = [jax.jit(both)(k) for k in keys]
        return all(bool(np.array_equal(np.asarray(a), np.asarray(b))) for a, b in pairs)


def uniform(key: Any, shape: tuple[int, ...], minval: float, maxval: float) -> Any:
    """``jax.random.uniform(key, shape, jnp.float32, minval, maxval)``, bit for bit
    (compiled in the same program), faster on the CPU (see the module docstring)."""
    shape = tuple(int(s) for s in shape)
    words = _fast(key, math.prod(shape))
    if words is None or not _agrees():
        return jax.random.uniform(key, shape, jnp.float32, minval, maxval)
    return _fast_uniform(words, shape, minval, maxval)


def _rounds(n: int) -> int:
    """``jax.random.permutation``'s number of sorting rounds for ``n`` elements."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


def _stable_sort_by(keys: Any, x: Any) -> Any:
    """``lax.sort_key_val(keys, x)[1]`` (a stable sort) for uint32 ``keys``: with distinct
    keys, each element goes to its key's rank among the sorted keys; with a repeated key,
    the key-value sort itself."""
    ordered = lax.sort(keys)

    def by_rank(keys: Any, x: Any) -> Any:
        rank = jnp.searchsorted(ordered, keys)
        return jnp.zeros_like(x).at[rank].set(x, unique_indices=True)

    tied = jnp.any(ordered[1:] == ordered[:-1])
    return lax.cond(tied, lambda k, v: lax.sort_key_val(k, v)[1], by_rank, keys, x)


def _fast_permutation(key: Any, n: int) -> Any:
    x = jnp.arange(n)
    for _ in range(_rounds(n)):
        key, sub = jax.random.split(key)
        x = _stable_sort_by(_bits(_key_words(sub), (n,)), x)
    return x


@functools.cache
def _permutation_agrees() -> bool:
    """Whether :func:`_fast_permutation` gives ``jax.random.permutation``'s under this JAX."""
    with jax.ensure_compile_time_eval():
        for seed, n in ((0, 2000), (2**31 + 7, 300)):  # two rounds, one round
            k = jax.random.key(seed, impl="threefry2x32")
            ours = jax.jit(lambda k, n=n: _fast_permutation(k, n))(k)  # a fresh trace
            if not np.array_equal(np.asarray(ours), np.asarray(jax.random.permutation(k, n))):
                return False
    return True


def permutation(key: Any, n: int) -> Any:
    """``jax.random.permutation(key, n)`` for an integer ``n``, the same indices, faster on
    the CPU (see the module docstring)."""
    n = int(n)
    plain = lambda k: jax.random.permutation(k, n)
    if _fast(key, n) is None or not _permutation_agrees():
        return plain(key)
    # the rank placement is a CPU remedy: on a GPU its binary search is a loop and its
    # check for repeated keys a branch (host round trips there), where the key-value sort
    # is no slower; the platform is chosen when the program is lowered
    return lax.platform_dependent(key, cpu=lambda k: _fast_permutation(k, n), default=plain)
