"""Activations: exact kink values, bitwise parity with JAX, transforms, dtypes, bad input.

Tolerances: values at kinks and default-parity checks are exact (``==`` / bitwise), since
the rules select between exact quantities. Away from kinks, derivatives are compared with
central differences in float64 at rtol 1e-6 (step 1e-6 leaves a truncation error of
O(1e-12) relative for these piecewise-linear functions, and roundoff of O(eps/h) = 1e-10).
"""

import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrelu as jr

UNARY = {
    "relu": (jr.relu, jax.nn.relu, [0.0]),
    "leaky_relu": (jr.leaky_relu, jax.nn.leaky_relu, [0.0]),
    "abs": (jr.abs, jnp.abs, [0.0]),
    "relu6": (jr.relu6, jax.nn.relu6, [0.0, 6.0]),
    "hard_tanh": (jr.hard_tanh, jax.nn.hard_tanh, [-1.0, 1.0]),
}
BINARY = {"maximum": (jr.maximum, jnp.maximum), "minimum": (jr.minimum, jnp.minimum)}


def _inputs(dtype, kinks, n=64, seed=0):
    """Random inputs spanning every piece, with every kink (and -0.0) included exactly."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-8, 8, n).astype(np.float64)
    x[: len(kinks)] = kinks
    x[len(kinks)] = -0.0
    return jnp.asarray(x, dtype=dtype)


def _bits(a):
    a = np.asarray(a)
    return a.view(np.uint8)


# ----------------------------------------------------------------- parity with JAX


@pytest.mark.parametrize("name", sorted(UNARY))
def test_forward_and_grad_bitwise_equal_jax_at_defaults(name, float_dtype):
    ours, theirs, kinks = UNARY[name]
    x = _inputs(float_dtype, kinks)
    np.testing.assert_array_equal(_bits(ours(x)), _bits(theirs(x)))
    g_ours = jax.vmap(jax.grad(ours))(x)
    g_theirs = jax.vmap(jax.grad(theirs))(x)
    assert g_ours.dtype == g_theirs.dtype == float_dtype
    np.testing.assert_array_equal(_bits(g_ours), _bits(g_theirs))
    # Upstream gradients of both signs, through a vjp.
    cot = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), float_dtype)
    vo = jax.vjp(ours, x)[1](cot)[0]
    vt = jax.vjp(theirs, x)[1](cot)[0]
    np.testing.assert_array_equal(_bits(vo), _bits(vt))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_bitwise_equal_jax_at_defaults(name, float_dtype):
    ours, theirs = BINARY[name]
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.integers(-3, 3, 50), float_dtype)  # many exact ties
    y = jnp.asarray(rng.integers(-3, 3, 50), float_dtype)
    np.testing.assert_array_equal(_bits(ours(x, y)), _bits(theirs(x, y)))
    go = jax.vmap(jax.grad(ours, argnums=(0, 1)))(x, y)
    gt = jax.vmap(jax.grad(theirs, argnums=(0, 1)))(x, y)
    for a, b in zip(go, gt):
        np.testing.assert_array_equal(_bits(a), _bits(b))
    # Derivative with respect to one argument only (the other a constant).
    np.testing.assert_array_equal(
        jax.vmap(jax.grad(lambda a: ours(a, 0.0)))(x),
        jax.vmap(jax.grad(lambda a: theirs(a, 0.0)))(x),
    )


def test_defaults_match_jax_at_every_kink_via_registry():
    for name, info in jr.REGISTRY.items():
        for kink in info.kinks:
            if info.arity == 1:
                got = float(jax.grad(info.fn)(kink.at))
                want = float(jax.grad(info.jax_fn)(kink.at))
            else:
                got = float(jax.grad(info.fn)(kink.at, 0.0))
                want = float(jax.grad(info.jax_fn)(kink.at, 0.0))
            assert got == want == kink.default, (name, kink)


# ------------------------------------------------------------- exact kink values

KINK_VALUES = [0.0, 0.25, 0.5, 1.0, -2.0]


@pytest.mark.parametrize("s", KINK_VALUES)
def test_exact_derivative_at_kinks(s, float_dtype):
    def g(f, at, *args):
        return jax.grad(f)(jnp.asarray(at, float_dtype), *args)

    assert g(jr.relu, 0.0, s) == s
    assert g(jr.leaky_relu, 0.0, s) == s
    assert g(jr.abs, 0.0, s) == s
    assert g(jr.relu6, 0.0, (s, 7.0)) == s and g(jr.relu6, 6.0, (7.0, s)) == s
    assert g(jr.hard_tanh, -1.0, (s, 7.0)) == s and g(jr.hard_tanh, 1.0, (7.0, s)) == s
    x = jnp.asarray(1.5, float_dtype)
    gx, gy = jax.grad(jr.maximum, argnums=(0, 1))(x, x, s)
    assert gx == s and gy == 1 - s
    gx, gy = jax.grad(jr.minimum, argnums=(0, 1))(x, x, s)
    assert gx == s and gy == 1 - s


@pytest.mark.parametrize("name", sorted(UNARY))
def test_kink_value_only_acts_at_the_kink(name):
    ours, theirs, kinks = UNARY[name]
    x = _inputs(jnp.float64, kinks)
    kv = (0.3, 0.7) if name in ("relu6", "hard_tanh") else 0.3
    g_ours = jax.vmap(jax.grad(lambda v: ours(v, kv)))(x)
    g_jax = jax.vmap(jax.grad(theirs))(x)
    at = np.isin(np.asarray(x), kinks)
    np.testing.assert_array_equal(np.asarray(g_ours)[~at], np.asarray(g_jax)[~at])
    assert set(np.asarray(g_ours)[at].tolist()) <= {0.3, 0.7}


def test_negative_slope_is_differentiable_and_kink_grad_is_not():
    f = lambda a: jr.leaky_relu(-2.0, 1.0, a)
    assert float(jax.grad(f)(0.1)) == -2.0
    assert float(jax.grad(lambda s: jr.relu(0.0, s))(0.3)) == 0.0
    assert float(jax.grad(lambda s: jax.grad(jr.relu)(0.0, s))(0.3)) == 0.0


# --------------------------------------------------------------------- transforms

TRANSFORMS = ["jit", "vmap", "grad", "jacfwd", "jacrev", "hessian", "linearize", "scan"]


@functools.cache
def _scalar_fns():
    return {
        "relu": lambda x, s: jr.relu(x, s),
        "leaky_relu": lambda x, s: jr.leaky_relu(x, s),
        "abs": lambda x, s: jr.abs(x, s),
        "relu6": lambda x, s: jr.relu6(x, (s, s)),
        "hard_tanh": lambda x, s: jr.hard_tanh(x + 1.0, (s, s)),
        "maximum": lambda x, s: jr.maximum(x, 0.0, s),
        "minimum": lambda x, s: jr.minimum(x, 0.0, s),
    }


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("name", sorted(jr.REGISTRY))
def test_transforms_give_the_kink_value(name, transform, float_dtype):
    f = _scalar_fns()[name]
    x = jnp.zeros((3,), float_dtype)  # every element at a kink
    s = 0.25
    if transform == "jit":
        val = jax.jit(jax.grad(lambda v: f(v, s).sum()))(x)
    elif transform == "vmap":
        val = jax.vmap(jax.grad(f), in_axes=(0, None))(x, s)
    elif transform == "grad":
        val = jax.grad(lambda v: f(v, s).sum())(x)
    elif transform == "jacfwd":
        val = jnp.diag(jax.jacfwd(f)(x, s))
    elif transform == "jacrev":
        val = jnp.diag(jax.jacrev(f)(x, s))
    elif transform == "hessian":
        h = jax.hessian(lambda v: f(v, s).sum())(x)
        assert h.dtype == float_dtype
        np.testing.assert_array_equal(h, 0)  # piecewise linear: zero second derivative
        val = jax.grad(lambda v: f(v, s).sum())(x)
    elif transform == "linearize":
        _, lin = jax.linearize(lambda v: f(v, s), x)
        val = lin(jnp.ones_like(x))
    else:  # scan

        def body(c, xi):
            return c + jax.grad(f)(xi, s), None

        total, _ = jax.lax.scan(body, jnp.zeros((), float_dtype), x)
        val = jnp.full((3,), total / 3)
    assert val.dtype == float_dtype
    np.testing.assert_array_equal(np.asarray(val, np.float64), 0.25)


def test_weak_type_is_kept():
    for f in (jr.relu, jr.abs, jr.leaky_relu, jr.relu6, jr.hard_tanh):
        y = f(0.0)
        g = jax.grad(f)(0.0)
        assert y.weak_type and g.weak_type, f
    g = jax.grad(jr.relu)(0.0, jnp.float32(1.0))  # a strongly typed kink value
    assert g.weak_type and float(g) == 1.0
    assert not jax.grad(jr.relu)(jnp.float32(0.0)).weak_type


# ---------------------------------------------------------- traced kink values


def test_vmap_over_kink_values():
    s = jnp.array([0.0, 0.5, 1.0])
    out = jax.vmap(jax.grad(jr.relu), in_axes=(None, 0))(0.0, s)
    np.testing.assert_array_equal(out, s)
    out = jax.vmap(jax.grad(jr.relu6), in_axes=(None, (0, None)))(6.0, (s, 0.0))
    np.testing.assert_array_equal(out, 0.0)
    out = jax.vmap(lambda t: jax.grad(jr.relu6)(6.0, (0.0, t)))(s)
    np.testing.assert_array_equal(out, s)


def test_array_kink_value_broadcasts_per_element():
    x = jnp.zeros((2, 3))
    s = jnp.array([0.0, 0.5, 1.0])
    g = jax.grad(lambda v: jr.relu(v, s).sum())(x)
    np.testing.assert_array_equal(g, jnp.broadcast_to(s, (2, 3)))


def test_changing_kink_value_does_not_recompile():
    traces = []

    @jax.jit
    def step(x, s):
        traces.append(1)
        return jax.grad(lambda v: jr.relu(v, s).sum())(x)

    x = jnp.zeros(4)
    for s in (0.0, 0.3, 1.0):
        np.testing.assert_array_equal(step(x, s), s)
    np.testing.assert_array_equal(step(x, jnp.float32(0.7)), jnp.float32(0.7))
    assert len(traces) == 2  # one for Python floats, one for the float32 array


# ------------------------------------------------------- away from the kinks (FD)

_finite = st.floats(-20, 20, allow_nan=False, allow_infinity=False)
_FD_FNS = (
    lambda v, s: jr.relu(v, s),
    lambda v, s: jr.leaky_relu(v, s, 0.1),
    lambda v, s: jr.abs(v, s),
    lambda v, s: jr.relu6(v, (s, s)),
    lambda v, s: jr.hard_tanh(v, (s, s)),
    lambda v, s: jr.maximum(v, 0.5 * v + 1e-2, s),
)


@jax.jit
def _ad_and_fd(x, s, h=1e-6):
    ad = jnp.stack([jax.vmap(jax.grad(f), in_axes=(0, None))(x, s) for f in _FD_FNS])
    fd = jnp.stack([(f(x + h, s) - f(x - h, s)) / (2 * h) for f in _FD_FNS])
    return ad, fd


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, 16, elements=_finite), st.floats(-1, 2))
def test_derivatives_match_finite_differences_away_from_kinks(x, s):
    kinks = np.array([0.0, 6.0, -1.0, 1.0, -0.02])  # -0.02: where v == 0.5 v + 0.01
    far = np.min(np.abs(x[:, None] - kinks[None]), axis=1) > 1e-3
    ad, fd = _ad_and_fd(jnp.asarray(x), jnp.float64(s))
    np.testing.assert_allclose(np.asarray(ad)[:, far], np.asarray(fd)[:, far], rtol=1e-6, atol=1e-9)


# -------------------------------------------------------------------- bad input


def test_bad_kink_values_are_clear_errors():
    with pytest.raises(ValueError, match="`kink_grad` of shape \\(3,\\) does not broadcast"):
        jr.relu(jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(ValueError, match="`kink_grad`"):
        jr.relu(jnp.zeros(3), jnp.zeros((2, 3)))  # would silently enlarge the output
    with pytest.raises(TypeError, match="`kink_grad`"):
        jr.relu(jnp.zeros(2), "zero")
    with pytest.raises(TypeError, match="`kink_grad`"):
        jr.relu(jnp.zeros(2), None)
    with pytest.raises(TypeError, match="`kink_grad`"):
        jr.relu(jnp.zeros(2), 1j)
    with pytest.raises(TypeError, match="`kink_grads`"):
        jr.relu6(jnp.zeros(2), 0.5)
    with pytest.raises(ValueError, match="`kink_grads\\[1\\]`"):
        jr.hard_tanh(jnp.zeros(2), (0.0, jnp.zeros(5)))
    with pytest.raises(ValueError, match="`tie`"):
        jr.maximum(jnp.zeros(2), 0.0, jnp.zeros(4))
    with pytest.raises(TypeError, match="`x`"):
        jr.relu("a")


def test_integer_input_forward_works_and_grad_is_a_clear_error():
    np.testing.assert_array_equal(jr.relu(jnp.array([-2, 3])), jax.nn.relu(jnp.array([-2, 3])))
    with pytest.raises(TypeError, match="int"):
        jax.grad(jr.relu)(1)


def test_registry_is_consistent():
    assert set(jr.REGISTRY) == {*UNARY, *BINARY}
    for info in jr.REGISTRY.values():
        for k in info.kinks:
            lo, hi = k.clarke
            assert lo <= hi
        # the registry's one-sided slopes are what the function does just off the kink
        for k in info.kinks:
            eps = 1e-3
            args = (lambda v: (v,)) if info.arity == 1 else (lambda v: (v, 0.0))
            left = float(jax.grad(info.fn)(*args(k.at - eps)))
            right = float(jax.grad(info.fn)(*args(k.at + eps)))
            assert (left, right) == (k.left, k.right), (info.name, k)
    with pytest.raises(TypeError):
        jr.REGISTRY["new"] = None


def test_leaky_relu_at_jax_convention_is_jax_program():
    """With the kink value JAX itself gives (1, a Python or NumPy number), leaky_relu is
    JAX's own expression, so its derivative is JAX's program (no extra comparison per
    element); any other value, or an array, goes through the chosen-derivative rule."""

    def calls(kink):
        f = lambda x: jnp.sum(jr.leaky_relu(x, kink))
        return str(jax.make_jaxpr(jax.grad(f))(jnp.ones(3))).count(" eq ")  # x == 0 tests

    assert calls(1.0) == calls(1) == calls(np.float32(1.0)) == 0
    assert calls(0.5) == calls(jnp.asarray(1.0)) == calls(np.array([1.0, 1.0, 1.0])) == 1
    x = jnp.array([-2.0, 0.0, 3.0])
    for kink in (1.0, np.float64(1.0)):
        np.testing.assert_array_equal(
            jax.grad(lambda v: jnp.sum(jr.leaky_relu(v, kink)))(x),
            jax.grad(lambda v: jnp.sum(jax.nn.leaky_relu(v)))(x),
        )
    with pytest.raises(TypeError, match="kink_grad"):
        jr.leaky_relu(x, True)


@pytest.mark.parametrize(
    "ours, theirs, default, other",
    [
        (lambda x, k: jr.abs(x, k), jnp.abs, 1.0, 0.0),
        (lambda x, k: jr.hard_tanh(x, (k, k)), jax.nn.hard_tanh, 1.0, 0.5),
    ],
    ids=["abs", "hard_tanh"],
)
def test_defaults_at_jax_convention_are_jax_programs(ours, theirs, default, other):
    def eqs(k):
        f = lambda x: jnp.sum(ours(x, k))
        return str(jax.make_jaxpr(jax.grad(f))(jnp.ones(3))).count(" eq ")

    assert eqs(default) == eqs(np.float32(default)) == 0
    assert eqs(other) > 0 and eqs(jnp.asarray(default)) > 0
    x = jnp.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, jnp.nan])
    g = jax.vmap(jax.grad(lambda v: ours(v, default)))(x)
    np.testing.assert_array_equal(g, jax.vmap(jax.grad(theirs))(x))
    kink = jnp.asarray(0.0 if other == 0.0 else 1.0)  # abs's kink, hard_tanh's upper one
    assert float(jax.grad(lambda v: ours(v, other))(kink)) == other


def test_leaky_relu_slope_derivatives_match_jax_through_the_rule():
    """The negative slope is differentiable as in jax.nn.leaky_relu, whichever path the
    kink value takes (the rule once stopped its gradient: d2/dx da was 0 for x < 0), and
    the slope's tangent is JAX's at NaN."""
    x = jnp.asarray([-2.0, 0.0, 3.0])
    mixed = lambda f: jax.vmap(jax.grad(jax.grad(f), argnums=1), (0, None))(x, 0.2)
    want = mixed(jax.nn.leaky_relu)
    np.testing.assert_array_equal(want, [1.0, 0.0, 0.0])
    for kink in (1.0, jnp.float32(1.0), 0.5):
        np.testing.assert_array_equal(mixed(lambda v, a, k=kink: jr.leaky_relu(v, k, a)), want)
    v = jnp.asarray([jnp.nan, -1.0, 0.0, 2.0])
    t_jax = jax.jvp(lambda a: jax.nn.leaky_relu(v, a), (0.2,), (1.0,))[1]
    t_ours = jax.jvp(lambda a: jr.leaky_relu(v, jnp.float32(1.0), a), (0.2,), (1.0,))[1]
    np.testing.assert_array_equal(t_ours, t_jax)
