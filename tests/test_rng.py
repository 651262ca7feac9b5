"""The fast uniform draws (jaxrelu._rng): the threefry2x32 hash against Random123's
known-answer vectors, and the numbers against ``jax.random.uniform`` bit for bit, with the
fallback to it wherever the fast path does not apply."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrelu import _rng
from jaxrelu.study import models

# Random123's known-answer vectors for threefry2x32 with 20 rounds: (key, counter, output)
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def _primitives(fn, *args):
    names = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            names.add(eqn.primitive.name)
            for v in eqn.params.values():
                for sub in v if isinstance(v, (list, tuple)) else (v,):
                    if hasattr(sub, "jaxpr"):
                        walk(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr)
                    elif hasattr(sub, "eqns"):
                        walk(sub)

    walk(jax.make_jaxpr(lambda *a: fn(*a))(*args).jaxpr)  # a fresh trace each time
    return names


def _uses_jax_random(fn, *args):
    return bool({"random_bits", "threefry2x32"} & _primitives(fn, *args))


@pytest.mark.parametrize("key,ctr,out", KAT)
def test_threefry_known_answers(key, ctr, out):
    u = lambda v: jnp.asarray(v, jnp.uint32)
    got = jax.jit(_rng.threefry2x32)(u(key[0]), u(key[1]), u(ctr[0]), u(ctr[1]))
    assert tuple(int(g) for g in got) == out


@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (5, 3), (64, 256), (2, 3, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2**31 + 12345])
def test_uniform_equals_jax_random(shape, seed):
    key = jax.random.PRNGKey(seed)
    lo, hi = -0.3, 0.7
    ours = jax.jit(lambda k: _rng.uniform(k, shape, lo, hi))(key)
    ref = jax.jit(lambda k: jax.random.uniform(k, shape, jnp.float32, lo, hi))(key)
    assert ours.dtype == ref.dtype == jnp.float32 and ours.shape == ref.shape == shape
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    assert not _uses_jax_random(lambda k: _rng.uniform(k, shape, lo, hi), key)


def test_bits_equal_jax_random_bits():
    key = jax.random.PRNGKey(99)
    for shape in [(3,), (4, 5), (2, 3, 7)]:
        ours = jax.jit(lambda k: _rng._bits(_rng._key_words(k), shape))(key)
        ref = jax.random.bits(key, shape, jnp.uint32)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_uniform_under_vmap_and_typed_keys():
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.PRNGKey(0), jnp.arange(6))
    draw = jax.jit(jax.vmap(lambda k: _rng.uniform(k, (33, 9), -1.0, 1.0)))
    ref = jax.jit(jax.vmap(lambda k: jax.random.uniform(k, (33, 9), jnp.float32, -1.0, 1.0)))
    np.testing.assert_array_equal(np.asarray(draw(keys)), np.asarray(ref(keys)))
    typed = jax.random.key(5)
    ours = jax.jit(lambda k: _rng.uniform(k, (10, 3), -2.0, 2.0))(typed)
    want = jax.jit(lambda k: jax.random.uniform(k, (10, 3), jnp.float32, -2.0, 2.0))(typed)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(want))
    assert not _uses_jax_random(lambda k: _rng.uniform(k, (10, 3), -2.0, 2.0), typed)


def test_fallbacks_call_jax_random():
    key = jax.random.PRNGKey(3)
    draw = lambda k: _rng.uniform(k, (4, 4), -1.0, 1.0)
    ref = jax.jit(lambda k: jax.random.uniform(k, (4, 4), jnp.float32, -1.0, 1.0))
    # another generator: the key's own implementation draws
    rbg = jax.random.key(3, impl="rbg")
    assert _uses_jax_random(draw, rbg)
    np.testing.assert_array_equal(np.asarray(jax.jit(draw)(rbg)), np.asarray(ref(rbg)))
    # the user asked for JAX's own draws
    with _rng.plain_draws():
        assert _uses_jax_random(draw, key)
    assert not _uses_jax_random(draw, key)
    # threefry's other counter layout
    with jax.threefry_partitionable(False):
        assert _uses_jax_random(draw, key)
        np.testing.assert_array_equal(np.asarray(jax.jit(draw)(key)), np.asarray(ref(key)))
    # 2**32 elements or more: the counter's high word is no longer 0 (traced only)
    assert not _uses_jax_random(lambda k: _rng.uniform(k, (2**16, 2**16 - 1), 0, 1), key)
    assert _uses_jax_random(lambda k: _rng.uniform(k, (2**16, 2**16), 0, 1), key)


def test_disagreeing_jax_falls_back(monkeypatch):
    key = jax.random.PRNGKey(0)
    assert _rng._agrees()
    monkeypatch.setattr(_rng, "_agrees", lambda: False)
    assert _uses_jax_random(lambda k: _rng.uniform(k, (8,), 0.0, 1.0), key)


def test_self_check_detects_a_different_layout(monkeypatch):
    """``_agrees`` compares with jax.random.uniform: a hash that drifts from JAX's (here a
    top bit flipped) is caught."""
    real = _rng._bits
    monkeypatch.setattr(_rng, "_bits", lambda w, shape: real(w, shape) ^ np.uint32(1 << 31))
    _rng._agrees.cache_clear()
    _rng._fast_uniform.clear_cache()  # its traces captured the real hash
    try:
        assert not _rng._agrees()
    finally:
        _rng._agrees.cache_clear()
        _rng._fast_uniform.clear_cache()


_MLP = models.Architecture("mlp", (64,), 10, 32, 2, init="torch")


@pytest.mark.parametrize(
    "arch,dtype",
    [
        (_MLP, "float32"),
        (_MLP, "float16"),
        (models.Architecture("cnn", (8, 8, 1), 10, 8, 2, init="torch"), "float32"),
        (models.Architecture("resnet", (8, 8, 1), 10, 8, 2, init="torch"), "bfloat16"),
    ],
    ids=["mlp-f32", "mlp-f16", "cnn-f32", "resnet-bf16"],
)
def test_model_init_equals_plain_draws(arch, dtype):
    """The study's initialisations are jax.random.uniform's numbers whichever path draws
    them (the published runs stay reproducible)."""
    key = jax.random.PRNGKey(11)
    fast = jax.jit(lambda k: models.init(arch, k, dtype)[0])(key)

    def plain(k):
        with _rng.plain_draws():
            return models.init(arch, k, dtype)[0]

    ref = jax.jit(plain)(key)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------- permutation


@pytest.mark.parametrize("n", [0, 1, 2, 17, 1437, 8192])
def test_permutation_equals_jax_random(n):
    for seed in (0, 5, 2**31 + 3):
        key = jax.random.PRNGKey(seed)
        ours = jax.jit(lambda k: _rng.permutation(k, n))(key)
        ref = jax.jit(lambda k: jax.random.permutation(k, n))(key)
        assert ours.dtype == ref.dtype
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


@pytest.mark.parametrize("n", [1, 2, 1437, 1625, 1626, 8192, 2642245, 2642246])
def test_permutation_rounds_match_jax(n):
    """As many rounds as JAX's own permutation sorts (counted in its program; traced
    only), on both sides of the boundaries n**3 = (2**32 - 1)**r."""
    sorts = jax.make_jaxpr(lambda k: jax.random.permutation(k, n))(jax.random.PRNGKey(0))
    assert _rng._rounds(n) == str(sorts).count("sort[")


def test_stable_sort_with_repeated_keys_is_the_key_value_sort():
    """Distinct keys take the rank path; a repeated key must keep the stable order (the
    rank path alone would put two elements on one rank and lose one)."""
    rng = np.random.default_rng(0)
    x = jnp.arange(50, 100)
    distinct = jnp.asarray(rng.choice(2**32 - 1, 50, replace=False).astype(np.uint32))
    tied = distinct.at[7].set(distinct[31]).at[40].set(distinct[31])
    for keys in (distinct, tied):
        ours = jax.jit(_rng._stable_sort_by)(keys, x)
        want = jax.lax.sort_key_val(keys, x)[1]
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(want))
        assert sorted(np.asarray(ours).tolist()) == list(range(50, 100))


def _ranks_on_cpu(fn, key):
    """Whether ``fn``'s CPU program places indices by rank (the fast permutation): its
    jaxpr holds every platform's branch, the lowered program only the CPU's."""
    from jax import export

    return "searchsorted" in export.export(jax.jit(fn), platforms=["cpu"])(key).mlir_module()


def test_permutation_fallbacks():
    key = jax.random.PRNGKey(1)
    prims = lambda fn, *a: _primitives(fn, *a)
    assert "sort" in prims(lambda k: _rng.permutation(k, 100), key)
    assert _ranks_on_cpu(lambda k: _rng.permutation(k, 100), key)
    with _rng.plain_draws():
        assert _uses_jax_random(lambda k: _rng.permutation(k, 100), key)
        assert not _ranks_on_cpu(lambda k: _rng.permutation(k, 100), key)
    rbg = jax.random.key(1, impl="rbg")
    assert _uses_jax_random(lambda k: _rng.permutation(k, 100), rbg)
    assert not _ranks_on_cpu(lambda k: _rng.permutation(k, 100), rbg)
    np.testing.assert_array_equal(
        np.asarray(jax.jit(lambda k: _rng.permutation(k, 100))(rbg)),
        np.asarray(jax.random.permutation(rbg, 100)),
    )


def test_permutation_self_check(monkeypatch):
    assert _rng._permutation_agrees()
    monkeypatch.setattr(_rng, "_rounds", lambda n: 1)  # a different number of rounds
    _rng._permutation_agrees.cache_clear()
    try:
        assert not _rng._permutation_agrees()
    finally:
        _rng._permutation_agrees.cache_clear()
    monkeypatch.setattr(_rng, "_permutation_agrees", lambda: False)
    assert not _ranks_on_cpu(lambda k: _rng.permutation(k, 100), jax.random.PRNGKey(0))


def test_uniform_eager_and_constant_keys_equal_jax_random():
    """Eagerly (jax.random.uniform is one compiled program even then: its scaling is one
    fused multiply-add) and with a key that is a compile-time constant: the same numbers
    (found by a review: op-by-op rounding differed by one ulp in half the entries)."""
    key = jax.random.PRNGKey(123)
    ours = _rng.uniform(key, (1000,), -1e-3, 1e-3)
    ref = jax.random.uniform(key, (1000,), jnp.float32, -1e-3, 1e-3)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    const = jax.random.key(0)
    both = lambda: (
        jax.random.uniform(const, (64,), jnp.float32, 0.1, 0.7),
        _rng.uniform(const, (64,), 0.1, 0.7),
    )
    a, b = jax.jit(both)()
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    arch = models.Architecture("mlp", (50,), 10, 100, 2, init="torch")
    eager = models.init(arch, jax.random.key(0))[0]
    jitted = jax.jit(lambda k: models.init(arch, k)[0])(jax.random.key(0))
    for x, y in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(("platform", "by_rank"), [("cpu", True), ("cuda", False)])
def test_permutation_places_by_rank_on_the_cpu_only(platform, by_rank):
    """The rank placement (a binary search and a branch for repeated keys) is the CPU's
    program; a GPU program is jax.random.permutation's own sort, with no loop or branch
    (each would be a host round trip there)."""
    from jax import export

    fn = jax.jit(lambda k: _rng.permutation(k, 8192))
    text = export.export(fn, platforms=[platform])(jax.random.PRNGKey(0)).mlir_module()
    assert ("searchsorted" in text) is by_rank
    assert ("stablehlo.while" in text) is by_rank
    assert "stablehlo.sort" in text
