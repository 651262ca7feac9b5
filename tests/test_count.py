"""``jaxrelu._util.count``: exact counts of a mask by a matrix-vector product (the zero
counts of the instrumentation, the volume search and the kink analysis), checked against
NumPy's integer sum; the shapes where float32 could not be exact take the plain sum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrelu import _util


def _has_dot(fn, *args):
    return "dot_general" in str(jax.make_jaxpr(fn)(*args))


@pytest.mark.parametrize(
    "shape", [(7,), (3, 5), (64, 128), (2, 3, 4, 5), (1, 1), (4, 0), (0, 3), ()]
)
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_count_equals_integer_sum(shape, density):
    rng = np.random.default_rng(len(shape) + int(10 * density))
    mask = rng.random(shape) < density
    got = jax.jit(_util.count)(jnp.asarray(mask))
    assert got.dtype == jnp.int32 and got.shape == ()
    assert int(got) == int(np.sum(mask))


def test_count_of_small_integers_and_under_vmap():
    rng = np.random.default_rng(1)
    at = rng.integers(0, 3, (50, 333)).astype(np.int32)  # up to two kinks per entry
    assert int(jax.jit(lambda a: _util.count(a, most=2))(jnp.asarray(at))) == int(at.sum())
    masks = rng.random((6, 40, 17)) < 0.5
    got = jax.jit(jax.vmap(_util.count))(jnp.asarray(masks))
    np.testing.assert_array_equal(np.asarray(got), masks.reshape(6, -1).sum(axis=1))


def test_count_of_long_rows_stays_exact():
    """2**24 + 1 ones in one row: float32 would round the count to 2**24; the shape check
    sends such rows to the integer sum (traced at the boundary, computed above it)."""
    ones = jnp.ones((1, 2**24 + 1), bool)
    assert int(jax.jit(_util.count)(ones)) == 2**24 + 1
    spec = lambda n: jax.ShapeDtypeStruct((2, n), jnp.int32)
    assert _has_dot(_util.count, spec(2**24 - 1))
    assert not _has_dot(_util.count, spec(2**24))
    assert _has_dot(lambda a: _util.count(a, most=2), spec(2**23 - 1))
    assert not _has_dot(lambda a: _util.count(a, most=2), spec(2**23))


def test_count_uses_full_precision_products():
    # a default of bfloat16 passes (as on some accelerators) must not round the counts
    mask = jnp.ones((3, 1000), bool)
    with jax.default_matmul_precision("bfloat16"):
        assert int(jax.jit(_util.count)(mask)) == 3000
    assert "HIGHEST" in str(jax.make_jaxpr(_util.count)(mask))


def _lowered(fn, platform, *specs):
    from jax import export

    return export.export(jax.jit(fn), platforms=[platform])(*specs).mlir_module()


@pytest.mark.parametrize(("platform", "product"), [("cpu", True), ("cuda", False), ("tpu", False)])
def test_count_lowers_to_a_product_on_the_cpu_only(platform, product):
    """The CPU program counts by a matrix-vector product; a GPU or TPU program is one
    integer reduction (there XLA fuses the comparison into it), with no product left."""
    spec = jax.ShapeDtypeStruct((256, 1024), jnp.float32)
    text = _lowered(lambda z: _util.count(z == 0), platform, spec)
    assert ("dot_general" in text) is product
    assert "stablehlo.reduce" in text


def test_count_compiles_without_a_branch():
    """The platform choice is made at lowering: the compiled CPU program has no
    conditional left in it (one would cost a branch per count in the training loop)."""
    z = jnp.ones((64, 128))
    hlo = jax.jit(lambda v: _util.count(v == 0)).lower(z).compile().as_text()
    assert "conditional" not in hlo


def test_count_by_product_is_exact():
    """The CPU's branch, called directly, agrees with NumPy whatever the backend here."""
    rng = np.random.default_rng(3)
    mask = rng.random((37, 129)) < 0.4
    m = jnp.asarray(mask)
    assert int(jax.jit(_util._count_by_product)(m)) == int(mask.sum())


def test_counts_of_several_masks_in_their_order():
    """Masks of mixed shapes and dtypes, some shared: each count is its own mask's
    integer sum, in the order given, on the CPU path and the plain one alike."""
    rng = np.random.default_rng(4)
    masks = [
        rng.random((16, 9)) < 0.3,
        rng.integers(0, 3, (5, 7)).astype(np.int32),
        rng.random((16, 9)) < 0.7,
        rng.random((4,)) < 0.5,
        rng.random((16, 9)) < 0.0,
        rng.integers(0, 3, (5, 7)).astype(np.int32),
        np.zeros((0, 3), bool),
    ]
    want = [int(np.sum(m)) for m in masks]
    got = jax.jit(lambda ms: _util.counts(ms, most=2))([jnp.asarray(m) for m in masks])
    assert got.dtype == jnp.int32 and got.tolist() == want
    stacked = jnp.asarray(np.stack([masks[0], masks[2], masks[4]]))
    assert jax.jit(_util._counts_by_product)(stacked).tolist() == [want[0], want[2], want[4]]
    assert jax.jit(_util.counts)([]).shape == (0,)
    vm = jax.jit(jax.vmap(lambda a, b: _util.counts([a, b, a])))
    a, b = rng.random((3, 8, 5)) < 0.5, rng.random((3, 8, 5)) < 0.2
    sums = lambda m: m.reshape(3, -1).sum(axis=1)
    np.testing.assert_array_equal(
        np.asarray(vm(jnp.asarray(a), jnp.asarray(b))), np.stack([sums(a), sums(b), sums(a)], 1)
    )


@pytest.mark.parametrize(("platform", "small", "large"), [("cpu", 1, 3), ("cuda", 0, 0)])
def test_counts_of_one_shape_take_one_product(platform, small, large):
    """Three layers' zero tests of one shape: one matrix-vector product on the CPU (one
    operation instead of three) up to STACK_MOST elements each, one per layer above;
    none elsewhere."""
    rows = _util.STACK_MOST // 128
    for n, products in ((rows, small), (rows + 1, large)):
        spec = jax.ShapeDtypeStruct((3, n, 128), jnp.float32)
        fn = lambda z: _util.counts([z[0] == 0, z[1] == 0, z[2] == 0])
        assert _lowered(fn, platform, spec).count("stablehlo.dot_general") == products
