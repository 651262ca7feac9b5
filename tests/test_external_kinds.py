"""Kinds of code found in the wild that the first versions got wrong, with expected values
derived by hand (each next to its derivation), not from jaxrelu's output.

* ``certified_grad`` where ``jax.grad`` is NaN: JAX's most reported gradient bug
  (``norm`` at 0, the ``jnp.where`` trap, ``sqrt(x**2)``);
* jumps multiplied by a factor that vanishes at the jump (``sign(x) * x`` is ``|x|``):
  directional derivatives must use the value of the piece the direction enters;
* ``jnp.searchsorted`` and what is built on it (``jnp.interp``, ``jnp.digitize``), whose
  default method searches in a loop;
* the checker on a switch whose effect the rounding of ``f`` hides (``1e6 + relu(x)`` in
  float32: every small step rounds the kink away);
* ``x == c`` guards (``sin(x) / x``), ``jnp.stack``/``jnp.tile``, ``copysign``/``signbit``;
* spectral functions (largest eigenvalue, spectral norm), smooth except where two eigen-
  or singular values coincide;
* smooth points a small distance from a kink, where the larger steps cross it.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr

F32 = lambda v: jnp.asarray(v, jnp.float32)


def dd(f, x, d):
    return float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d)))


# ------------------------------------------------------------ certified_grad and NaN


def test_where_trap_gets_the_true_gradient_certified():
    # f = 0 for every x <= 0; jax.grad is NaN at -1 (reverse mode multiplies the untaken
    # branch's sqrt'(-1) = NaN by a zero cotangent); the true gradient is 0
    f = lambda x: jnp.where(x > 0, jnp.sqrt(x), 0.0)
    assert np.isnan(jax.grad(f)(jnp.array(-1.0)))
    g, cert = jr.certified_grad(f)(jnp.array(-1.0))
    assert float(g) == 0.0
    assert cert.method == "lexicographic" and cert.certified and cert.sites == ()
    assert "jax.grad is not finite" in cert.reason


def test_a_nan_in_one_leaf_of_several_arguments_is_seen():
    # the where trap in the last leaf of a pytree, beside finite leaves and a second
    # argument: every leaf of every differentiated argument is checked
    def f(p, c):
        trap = jnp.where(p["z"] > 0, jnp.sqrt(p["z"]), 0.0)
        return 3.0 * p["w"] + jnp.sum(p["v"] ** 2) + c * trap

    p = {"v": jnp.array([1.0, -2.0]), "w": jnp.array(0.5), "z": jnp.array(-1.0)}
    assert np.isnan(jax.grad(f)(p, 2.0)["z"])
    (gp, gc), cert = jr.certified_grad(f, argnums=(0, 1))(p, jnp.array(2.0))
    assert "jax.grad is not finite" in cert.reason and cert.certified
    assert float(gp["z"]) == 0.0 and float(gp["w"]) == 3.0 and float(gc) == 0.0
    np.testing.assert_array_equal(np.asarray(gp["v"]), [2.0, -4.0])
    # the same function where the gradient is finite: jax.grad's, certified
    q = dict(p, z=jnp.array(4.0))
    (gq, gc), cert = jr.certified_grad(f, argnums=(0, 1))(q, jnp.array(2.0))
    assert cert.method == "ad" and cert.certified
    assert float(gq["z"]) == 0.5 and float(gc) == 2.0


@pytest.mark.parametrize(
    "f, x",
    [
        # smooth (gradient 0) but every derivative rule gives 0 * inf
        (lambda x: jnp.linalg.norm(x) ** 2, np.zeros(2)),
        # |x|: no gradient at 0
        (lambda x: jnp.sqrt(x**2), np.array(0.0)),
        (lambda x: jnp.linalg.norm(x), np.zeros(2)),
    ],
)
def test_a_nan_gradient_is_never_certified(f, x):
    g, cert = jr.certified_grad(f)(jnp.asarray(x))
    assert not cert.certified
    assert not np.all(np.isfinite(np.asarray(g)))
    assert "not finite" in cert.reason


def test_a_tied_site_with_a_nan_lexicographic_gradient_is_not_certified():
    # the sinc guard at 0: the equality guard takes the sin(x)/x branch for x + t d, whose
    # forward derivative at 0 is 0/0; jax.grad is NaN too (the where trap)
    f = lambda x: jnp.where(x == 0, 1.0, jnp.sin(x) / x)
    g, cert = jr.certified_grad(f)(jnp.array(0.0))
    assert not cert.certified and "not finite" in cert.reason and np.isnan(g)


@pytest.mark.parametrize(
    "f",
    [
        jnp.sinc,
        # the JAX FAQ's "double where": sin(x)/x without the trap
        lambda x: jnp.where(
            x == 0, 1.0, jnp.sin(jnp.where(x == 0, 1.0, x)) / jnp.where(x == 0, 1.0, x)
        ),
    ],
    ids=["sinc", "double_where"],
)
def test_a_nan_lexicographic_gradient_leaves_jax_grads_finite_one_uncertified(f):
    """Both are C-infinity with derivative 0 at 0 (sin(x)/x = 1 - x**2/6 + ...), and
    jax.grad gives 0 there; the lexicographic gradient evaluates the x != 0 piece at 0
    (0/0). certified_grad returns jax.grad's finite value, without certifying it."""
    x = jnp.array(0.0)
    g, cert = jr.certified_grad(f)(x)
    assert float(g) == float(jax.grad(f)(x)) == 0.0
    assert cert.method == "ad" and not cert.certified and cert.sites
    assert "jax.grad's gradient is returned" in cert.reason


def test_a_value_that_is_not_finite_certifies_nothing():
    """optax's softmax cross-entropy with a -inf logit (a mask) is NaN (0 * -inf), log at -1
    is NaN, 1/x at 0 is inf: f is not differentiable where it is not defined, whatever
    its gradient."""
    lab = jnp.array([1.0, 0.0, 0.0])

    def sce(v):
        logits = jnp.stack([v[0], -jnp.inf, v[1]])
        return -jnp.sum(lab * jax.nn.log_softmax(logits))  # optax's formula

    for f, x in ((sce, jnp.array([1.0, 1.0])), (jnp.log, -1.0), (lambda x: 1 / x, 0.0)):
        g, cert = jr.certified_grad(f)(jnp.asarray(x))
        assert not np.all(np.isfinite(f(jnp.asarray(x))))
        assert not cert.certified and "not finite" in cert.reason
        np.testing.assert_array_equal(np.asarray(g), np.asarray(jax.grad(f)(jnp.asarray(x))))


def test_certified_grad_keeps_stop_gradient():
    """AD through the analysis is AD of the program: stop_gradient stops it (the
    straight-through estimator's gradient is 1; x * stop_gradient(x) at 3 is 3), as
    jax.grad and ld_grad say."""
    sg = jax.lax.stop_gradient
    cases = [
        (sg, 1.0, 0.0),
        (lambda x: x * sg(x), 3.0, 3.0),
        (lambda x: x + sg(jnp.round(x) - x), 0.3, 1.0),
        (lambda x: jnp.exp(x - sg(x)) * x, 0.5, 1.5),  # exp(0) * (1 + x)
    ]
    for f, x0, want in cases:
        x = jnp.asarray(x0)
        g, cert = jr.certified_grad(f)(x)
        assert float(g) == want == float(jax.grad(f)(x))
        assert float(jr.ld_grad(f)(x)) == want
        assert cert.method == "ad"


def test_certified_grads_tied_sites_have_margin_zero():
    _, cert = jr.certified_grad(lambda x: jnp.sum(jnp.abs(x)))(jnp.array([0.0, 2.0]))
    (site,) = cert.sites
    assert (site.ties, site.min_margin) == (1, 0.0)
    assert [s.min_margin for s in jr.find_kinks(jnp.abs, jnp.array([0.0, 2.0]))] == [0.0]


def test_reduce_precision_below_the_operands_precision_is_not_analysed():
    """Rounding to 2 mantissa bits is a staircase: constant on (1, 1.125), where JAX's
    derivative is 1 (the truth: 0). Listed as unknown, never certified, and the checker
    measures the constant: AD's slope is wrong. At the operand's own precision (as
    jax.checkpoint inserts it) it is the identity: no site."""
    rp = lambda x: jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=2)
    x = jnp.asarray(1.1)
    assert [float(rp(jnp.asarray(v))) for v in (1.1, 1.12, 1.13)] == [1.0, 1.0, 1.25]
    (site,) = jr.find_kinks(rp, x)
    assert (site.primitive, site.kind) == ("reduce_precision", "unknown")
    g, cert = jr.certified_grad(rp)(x)
    assert not cert.certified and "reduce_precision" in cert.reason
    r = jr.check_linearization(rp, jnp.asarray(1.1), jnp.asarray(1.0))
    assert r.verdict == "wrong_derivative"
    own = lambda x: jax.lax.reduce_precision(x * x, exponent_bits=8, mantissa_bits=23)
    x = jnp.asarray(1.1, jnp.float32)  # float32's own precision: the identity
    assert jr.find_kinks(own, x) == []
    assert [s.kind for s in jr.find_kinks(own, x.astype(jnp.float64))] == ["unknown"]
    # float32 with one field short (float16's 10 mantissa bits, or its 5 exponent bits):
    # not the identity (with 10 mantissa bits 1.1 and 1.1 + 2^-14 round alike): unknown
    for e, m in ((8, 10), (5, 23)):
        short = lambda x, e=e, m=m: jax.lax.reduce_precision(x, exponent_bits=e, mantissa_bits=m)
        if m == 10:
            assert float(short(x)) == float(short(x + 2.0**-14))
        assert [s.kind for s in jr.find_kinks(short, x)] == ["unknown"], (e, m)
    g, cert = jr.certified_grad(own)(x)
    assert cert.certified and float(g) == float(jax.grad(own)(x))
    # at its own precision, downstream of a tied floor: floor(x) (x - 1) at 1 is x - 1 to
    # the right and 0 to the left (one-sided slopes 1 and 0 by hand; the quotients agree)
    kinked = lambda x: jax.lax.reduce_precision(
        jnp.floor(x) * (x - 1.0), exponent_bits=11, mantissa_bits=52
    )
    h, one = 2.0**-20, jnp.asarray(1.0, jnp.float64)
    for d, slope in ((1.0, 1.0), (-1.0, 0.0)):
        assert float((kinked(one + d * h) - kinked(one)) / h) == slope
        assert float(jr.ld_jvp(kinked, one, jnp.asarray([[d]]))[1][0]) == slope
    remat = jax.checkpoint(lambda x: jnp.sin(x) * jax.nn.relu(x))
    g, cert = jr.certified_grad(remat)(jnp.asarray(0.5))
    assert cert.certified and float(g) == float(jax.grad(remat)(jnp.asarray(0.5)))


def test_a_floats_bits_are_not_analysed_but_random_bits_are_no_site():
    """Clearing the sign bit is |x| (derivative -1 at -2; JAX's is 0); jnp.frexp's
    mantissa jumps from ~1 to 0.5 at 1. Both unknown, never certified. Random numbers are
    bits read as floats from an integer key: no site."""

    def bitabs(x):
        i = jax.lax.bitcast_convert_type(x, jnp.int32)
        return jax.lax.bitcast_convert_type(i & 0x7FFFFFFF, jnp.float32)

    x = jnp.asarray(-2.0, jnp.float32)
    assert float(bitabs(x)) == 2.0
    assert [s.kind for s in jr.find_kinks(bitabs, x)] == ["unknown"]
    assert not jr.certified_grad(bitabs)(x)[1].certified
    fr = lambda x: jnp.frexp(x)[0]
    assert not jr.certified_grad(fr)(jnp.asarray(1.0))[1].certified
    noise = lambda x: x * jax.random.uniform(jax.random.PRNGKey(0), ())
    assert all(s.kind != "unknown" for s in jr.find_kinks(noise, jnp.asarray(1.0)))
    assert jr.certified_grad(noise)(jnp.asarray(1.0))[1].certified


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_ldexp_and_frexp_take_their_custom_rule_not_the_bits(dtype):
    """jnp.frexp reads a float's bits inside a custom_jvp function: the bits' derivative is
    zero, the rule's the function's. ldexp(x, n) = x 2^n (derivative 2^n, exact in binary);
    frexp's mantissa is x / 2^e on each binade (derivative 2^-e). Never certified (the bits
    are not analysed), but the lexicographic functions give the true derivatives."""
    x = jnp.asarray([1.5, -3.0, 0.3], dtype)
    n = jnp.asarray([3, -2, 5])
    jac = jr.ld_jacobian(lambda v: jnp.ldexp(v, n), x)
    np.testing.assert_array_equal(np.asarray(jac), np.diag(2.0 ** np.asarray(n)))
    e = np.asarray(jnp.frexp(x)[1])
    mant = lambda v: jnp.sum(jnp.frexp(v)[0])
    np.testing.assert_array_equal(np.asarray(jr.ld_grad(mant)(x)), 2.0**-e)
    assert float(jr.directional_derivative(lambda v: jnp.ldexp(v, 2), x[1], -1.0)) == -4.0
    assert not jr.certified_grad(mant)(x)[1].certified

    @jax.custom_jvp
    def bitabs(v):  # |v| by clearing the sign bit, with its derivative as the rule
        i = jax.lax.bitcast_convert_type(v, jnp.int32)
        return jax.lax.bitcast_convert_type(i & 0x7FFFFFFF, jnp.float32)

    bitabs.defjvp(lambda p, t: (bitabs(p[0]), jnp.sign(p[0]) * t[0]))
    assert float(jr.directional_derivative(bitabs, jnp.float32(-2.0), jnp.float32(1.0))) == -1.0


def test_a_tied_while_test_is_left_at_once():
    """while c < 10: c = 2c, from 5: one doubling reaches 10 exactly and the test fails;
    from 5 - t the loop doubles again (19.99...): the jump is crossed at once along -1.
    From 4 along +1 the trip count changes at 5 (radius 1)."""
    wl = lambda x: jax.lax.while_loop(lambda c: c < 10.0, lambda c: 2 * c, x)
    assert float(wl(jnp.asarray(5.0))) == 10.0 and float(wl(jnp.asarray(5.0 - 1e-9))) > 19
    assert jr.kink_radius(wl, jnp.asarray(5.0), jnp.asarray(-1.0)) == 0.0
    assert jr.kink_radius(wl, jnp.asarray(4.0), jnp.asarray(1.0)) == pytest.approx(1.0)
    both = lambda x: jax.lax.while_loop(lambda c: (c < 10.0) & (c > 0.1), lambda c: 2 * c, x)
    assert jr.kink_radius(both, jnp.asarray(5.0), jnp.asarray(-1.0)) == 0.0


# ------------------------------------------ jumps times a factor that vanishes there


@pytest.mark.parametrize(
    "name, f, plus, minus",
    [
        # sign(x) x = |x|: slopes 1 along +1 and along -1 (f(-t) = t)
        ("sign", lambda x: jnp.sign(x) * x, 1.0, 1.0),
        # heaviside(x, 0.5) x = relu(x) (its value 0.5 at 0 is multiplied by 0)
        ("heaviside", lambda x: jnp.heaviside(x, 0.5) * x, 1.0, 0.0),
        # copysign(1, x) x = |x| (+0 moved along -1 takes the sign -1)
        ("copysign", lambda x: jnp.copysign(1.0, x) * x, 1.0, 1.0),
        # floor(-t) (-t) = (-1)(-t) = t; floor(t) t = 0 for t < 1
        ("floor", lambda x: jnp.floor(x) * x, 0.0, 1.0),
        # ceil(t) t = t; ceil(-t) (-t) = 0
        ("ceil", lambda x: jnp.ceil(x) * x, 1.0, 0.0),
        # sign(x) sin(x) = |sin(x)|
        ("sign_sin", lambda x: jnp.sign(x) * jnp.sin(x), 1.0, 1.0),
        # (x != 0) x = x: the indicator is 1 on both sides of 0
        ("indicator", lambda x: (x != 0).astype(x.dtype) * x, 1.0, -1.0),
        # where(signbit(x), -x, 2x): 2t along +1, t along -1
        ("signbit", lambda x: jnp.where(jnp.signbit(x), -x, 2 * x), 2.0, 1.0),
    ],
)
def test_directional_derivatives_through_a_jump_that_a_zero_factor_closes(name, f, plus, minus):
    assert dd(f, 0.0, 1.0) == plus
    assert dd(f, 0.0, -1.0) == minus


def test_entered_piece_of_a_branch_with_a_tangent():
    # where(x > 0, 1, c(x)) x with c(x) = 0 x + 0.5 (a tangent, zero): at 0 along +1 the
    # piece is 1 * x (slope 1), along -1 it is 0.5 x (slope -0.5 along -1)
    f = lambda x: jnp.where(x > 0, 1.0, x * 0 + 0.5) * x
    assert dd(f, 0.0, 1.0) == 1.0 and dd(f, 0.0, -1.0) == -0.5


def test_staircases_at_ties_use_the_piece_entered_not_the_next_float():
    # the next float after 0 is subnormal (flushed to 0 by XLA on CPU): the piece below
    # floor's jump at 0 must still be found; round(0.5) = 0 (half to even)
    assert dd(lambda x: jnp.floor(x) * x, 2.0, -1.0) == -1.0  # floor(2 - t) = 1
    assert dd(lambda x: jnp.round(x) * x, 0.5, 1.0) == 1.0  # round(0.5 + t) = 1
    assert dd(lambda x: jnp.round(x) * x, 0.5, -1.0) == 0.0  # round(0.5 - t) = 0
    assert dd(lambda x: jnp.fmod(x, 1.0), 1.0, -1.0) == -1.0  # fmod(1 - t, 1) = 1 - t


def test_copysign_sites_and_radius():
    # copysign(1, x - 0.5) x is -x below 0.5 and x above: from 0 the sign flips at 0.5
    f = lambda x: jnp.copysign(1.0, x - 0.5) * x
    assert jr.kink_radius(f, jnp.array(0.0), jnp.array(1.0)) == 0.5
    assert dd(f, 0.0, 1.0) == -1.0
    # copysign(x, 1) = |x|: a kink at 0 with slopes 1 both ways
    g = lambda x: jnp.copysign(x, 1.0)
    assert dd(g, 0.0, 1.0) == 1.0 and dd(g, 0.0, -1.0) == 1.0
    assert jr.count_ties(g, jnp.array(0.0)) >= 1


# ----------------------------------------------------------------- searchsorted


XP, FP = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0])


def hat(x):
    """x on [0, 1], 2 - x on [1, 2]: breakpoints at 0, 1, 2."""
    return jnp.interp(x, jnp.asarray(XP), jnp.asarray(FP))


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("method", ["scan", "scan_unrolled", "compare_all", "sort"])
def test_searchsorted_switches_are_seen_whatever_the_method(side, method):
    # x * (number of bins [1, 2] below x): the index first changes at x = 1, 0.5 from 0.5
    f = lambda x: x * jnp.searchsorted(jnp.array([1.0, 2.0]), x, side=side, method=method)
    assert jr.kink_radius(f, jnp.array(0.5), jnp.array(1.0)) == 0.5
    assert jr.kink_radius(f, jnp.array(1.5), jnp.array(-1.0)) == 0.5
    # at 1: left gives index 0 at 1 and just below, 1 just above (and right gives 1 at 1)
    assert dd(f, 1.0, 1.0) == 1.0 and dd(f, 1.0, -1.0) == 0.0


@pytest.mark.parametrize(
    "x0, d, radius", [(0.25, 1.0, 0.75), (0.25, -1.0, 0.25), (1.5, 1.0, 0.5), (1.5, -1.0, 0.5)]
)
def test_interp_kink_radius_is_the_distance_to_the_next_breakpoint(x0, d, radius):
    assert jr.kink_radius(hat, jnp.array(x0), jnp.array(d)) == radius


def test_interp_at_a_breakpoint():
    # hat(1 + t) = 1 - t and hat(1 - t) = 1 - t
    assert dd(hat, 1.0, 1.0) == -1.0 and dd(hat, 1.0, -1.0) == -1.0
    assert jr.check_linearization(hat, jnp.array(1.0), jnp.array(1.0)).verdict == "kink"
    assert jr.check_linearization(hat, jnp.array(0.5), jnp.array(1.0)).verdict == "linear"
    _, cert = jr.certified_grad(hat)(jnp.array(1.0))
    assert cert.method == "lexicographic"


def test_digitize_is_a_staircase():
    dig = lambda x: jnp.digitize(x, jnp.array([1.0, 2.0])).astype(x.dtype)
    assert jr.kink_radius(dig, jnp.array(0.5), jnp.array(1.0)) == 0.5
    assert jr.check_linearization(dig, jnp.array(1.0), jnp.array(1.0)).verdict == "discontinuous"
    # a table read at the bin index (digitize picks its result by a comparison of the
    # constant bins, which never switches as x moves)
    table = lambda x: jnp.take(jnp.array([0.0, 1.0, 5.0]), jnp.digitize(x, jnp.array([1.0, 2.0])))
    assert jr.kink_radius(table, jnp.array(0.5), jnp.array(1.0)) == 0.5
    assert [s.kind for s in jr.find_kinks(table, jnp.array(0.5))] == ["jump"]


# ------------------------------------------------- the checker where rounding hides


def test_a_kink_that_rounding_hides_is_a_kink_from_the_exact_slopes():
    # float32: 1e6 + relu(h) rounds to 1e6 for every h below 0.03, so the remainders sit
    # at the roundoff floor; the jaxpr's one-sided slopes (1 and 0) still differ
    r = jr.check_linearization(lambda x: 1e6 + jax.nn.relu(x), F32(0.0), F32(1.0))
    assert r.verdict == "kink" and "roundoff level" in r.reason
    # outputs of very different sizes: the slopes differ in the small component
    r = jr.check_linearization(lambda x: jnp.stack([1e7 * x, jax.nn.relu(x)]), F32(0), F32(1))
    assert r.verdict == "kink"


@pytest.mark.parametrize(
    "f, x, dtype",
    [
        # a jump of 1e-6 at f = 1 in float32 (8 ulps): never "linear"
        (lambda x: 1 + x + jnp.where(x > 0, F32(1e-6), F32(0.0)), 0.0, jnp.float32),
        # 3e-15 at f = 1 in float64 (13 ulps)
        (lambda x: 1 + x + jnp.where(x > 0, 3e-15, 0.0), 0.0, jnp.float64),
    ],
)
def test_a_jump_below_the_floor_at_x0_is_never_linear(f, x, dtype):
    r = jr.check_linearization(f, jnp.asarray(x, dtype), jnp.asarray(1.0, dtype))
    assert r.verdict in ("discontinuous", "inconclusive")
    if r.verdict == "inconclusive":
        assert "jump" in r.reason


@pytest.mark.parametrize("k", [1, 4, 16])
def test_a_kink_below_the_floor_is_never_called_linear(k):
    """x + k eps relu(x) in float32 has a kink of k ulps at 0 (slopes 1 + k eps and 1), and
    1e6 x0 + relu(x1) - relu(-x1) is 1e6 x0 + x1, whose AD gradient [1e6, 0] is wrong:
    both effects are below float32's roundoff floor, so no verdict can be measured, but
    'linear' (f affine, AD right) would be a confident wrong one."""
    eps = float(jnp.finfo(jnp.float32).eps)
    f = lambda x: x + k * eps * jax.nn.relu(x)
    r = jr.check_linearization(f, F32(0.0), F32(1.0))
    assert r.verdict in ("inconclusive", "kink"), r.reason
    g = lambda x: 1e6 * x[0] + jax.nn.relu(x[1]) - jax.nn.relu(-x[1])
    assert jr.check_linearization(g, jnp.zeros(2, jnp.float32)).verdict != "linear"
    many = jr.check_many(g, jnp.zeros((3, 2), jnp.float32))
    assert many.counts["linear"] == 0
    assert jr.ld_grad(g)(jnp.zeros(2, jnp.float32)).tolist() == [1e6, 1.0]
    # a resolvable kink of the same form is one
    big = lambda x: x + 1e-2 * jax.nn.relu(x)
    assert jr.check_linearization(big, F32(0.0), F32(1.0)).verdict == "kink"


def test_flat_remainders_at_a_tie_with_equal_exact_slopes_stay_linear():
    # relu(x) - relu(x) + 2x is 2x: a tied site whose exact slopes agree
    f = lambda x: jax.nn.relu(x) - jax.nn.relu(x) + 2 * x
    assert jr.check_linearization(f, jnp.array(0.0), jnp.array(1.0)).verdict == "linear"
    # W relu(x) with x0 = 0 tied and d0 = 0: affine along d (AD's slope and the exact ones
    # differ by rounding only: W's products summed in another order)
    w = jax.random.normal(jax.random.PRNGKey(0), (16, 32))
    g = lambda x: w @ jax.nn.relu(x)
    x = jnp.abs(jax.random.normal(jax.random.PRNGKey(1), (32,))).at[0].set(0.0)
    d = jax.random.normal(jax.random.PRNGKey(2), (32,)).at[0].set(0.0)
    assert jr.check_linearization(g, x, d).verdict == "linear"
    # complex outputs: the exact slopes are compared part by part, as AD's
    h = lambda x: (1 + 2j) * x + jax.nn.relu(x) - jax.nn.relu(x)
    assert jr.check_linearization(h, jnp.asarray(0.0), jnp.asarray(1.0)).verdict == "linear"
    k = lambda x: (1 + 2j) * x + jax.nn.relu(x)
    assert jr.check_linearization(k, jnp.asarray(0.0), jnp.asarray(1.0)).verdict == "kink"


# ------------------------------------------------------------------ other kinds


def test_equality_guards_are_no_sites_unless_they_jump():
    sinc = lambda x: jnp.where(x == 0, 1.0, jnp.sin(x) / x)  # continuous: no site
    assert jr.find_kinks(sinc, jnp.array(0.0)) == []
    bad = lambda x: jnp.where(x == 0, 5.0, jnp.sin(x) / x)  # a removable jump at 0
    # at 0 the other side is sin(0)/0 = NaN (no evidence in the jaxpr): values decide
    assert jr.check_linearization(bad, jnp.array(0.0), jnp.array(1.0)).verdict == ("discontinuous")
    # from 0.5, the guard is crossed after 0.5 along -1, where the cases differ (5 vs 1)
    (site,) = jr.find_kinks(bad, jnp.array(0.5))
    assert site.kind == "jump" and site.ties == 0
    assert jr.kink_radius(bad, jnp.array(0.5), jnp.array(-1.0)) == 0.5
    # floor(x) == 2 holds on a whole interval: a plateau, kept as an ordinary select whose
    # nearest switch is floor's. step is continuous at 2 (2.0 on the left, x = 2 on the
    # right) and jumps at 3 (from 3 to 2.0); at neither point is the test tied.
    step = lambda x: jnp.where(jnp.floor(x) == 2, x, 2.0)
    for x0, kind, margin in ((2.75, "jump", 0.25), (2.25, "kink", 0.25)):
        sites = {s.primitive: s for s in jr.find_kinks(step, jnp.array(x0))}
        assert sites["select_n"].kind == kind
        assert sites["select_n"].ties == 0 and sites["select_n"].min_margin == margin


@pytest.mark.parametrize(
    "f",
    [
        lambda x: jnp.stack([1e7 * x, jax.nn.relu(x)]),
        lambda x: jnp.tile(jax.nn.relu(x), 3),
        lambda x: jnp.unstack(jnp.stack([x, jax.nn.relu(x)]))[1],
    ],
)
def test_stack_and_tile_are_known_primitives(f):
    sites = jr.find_kinks(f, F32(0.0))
    assert [s.kind for s in sites] == ["kink"]


@pytest.mark.parametrize("limit, kind", [(4, "jump"), (3, "unknown")])
def test_index_sites_beyond_the_flip_limit_are_unknown_not_guessed(limit, kind, monkeypatch):
    from jaxrelu._jaxpr import rules

    # one switching index element times four outputs: 4 flips traced at most
    monkeypatch.setattr(rules, "_INDEX_FLIP_LIMIT", limit)
    jr.clear_caches()
    table = jnp.arange(8.0) ** 2
    f = lambda x: jax.lax.dynamic_slice(table, (jnp.floor(x).astype(jnp.int32),), (4,))
    sites = {s.primitive: s for s in jr.find_kinks(f, F32(2.5))}
    jr.clear_caches()
    site = sites["dynamic_slice"]
    assert site.kind == kind and site.ties == 0 and site.size == 4


def _halve_all(x):
    """Halves x until every element is at most 1 (a loop reverse mode cannot run through:
    certified_grad takes its forward-only path)."""
    return jax.lax.while_loop(lambda s: jnp.any(s > 1), lambda s: s * 0.5, x)


@pytest.mark.parametrize(
    "f",
    [
        lambda x: jax.nn.relu(x),
        lambda x: (jnp.sum(x), jnp.sum(x)),
        _halve_all,
        lambda x: (jnp.sum(_halve_all(x)), jnp.sum(x)),
    ],
    ids=["vector", "tuple", "while vector", "while tuple"],
)
def test_certified_grad_needs_a_scalar(f):
    with pytest.raises(TypeError, match=r"`f` must return a (floating-point )?scalar"):
        jr.certified_grad(f)(jnp.array([0.0, 3.0]))


def test_a_relative_gap_of_exactly_the_threshold_is_not_a_jump():
    # At a tie the two sides are evaluated at the point itself: the threshold is 256 ulps,
    # float64's 2**-44. |(2**44 + 1) - (2**44 - 1)| / 2**45 = 2**-44 exactly (every number
    # here is a float64 and the division is by a power of two): "above the threshold"
    # makes a jump, so this is a kink, and an x == c guard with this gap is no site at
    # all; twice the gap is a jump either way.
    a, b = 2.0**44 + 1, 2.0**44 - 1
    x = jnp.array(0.0, jnp.float64)
    (site,) = jr.find_kinks(lambda x: jnp.where(x > 0, a, b).astype(x.dtype), x)
    assert site.kind == "kink"
    assert jr.find_kinks(lambda x: jnp.where(x == 0, b, a).astype(x.dtype), x) == []
    (site,) = jr.find_kinks(lambda x: jnp.where(x == 0, b - 1, a + 1).astype(x.dtype), x)
    assert site.kind == "jump"
    (site,) = jr.find_kinks(lambda x: jnp.where(x > 0, a + 1, b - 1).astype(x.dtype), x)
    assert site.kind == "jump"


def test_tie_thresholds_per_dtype():
    """256 ulps, at most sqrt(eps) and the extrapolated gaps' threshold: float64 2**-44,
    float32 2**-15, float16 32 ulps = 2**-5 (select_threshold), bfloat16 sqrt(2**-7)."""
    from jaxrelu._jaxpr.rules import tie_threshold

    assert tie_threshold(jnp.float64) == 2.0**-44
    assert tie_threshold(jnp.float32) == 2.0**-15
    assert tie_threshold(jnp.float16) == 2.0**-5
    assert tie_threshold(jnp.bfloat16) == pytest.approx(2.0**-3.5, rel=1e-12)


def test_a_small_jump_at_a_tie_is_a_jump():
    """``where(x > 100, x + 0.01, x)`` at 100: relative gap 0.01 / 200.01 = 5.0e-5, about
    420 float32 ulps; the checker measures it as discontinuous."""
    h = lambda x: jnp.where(x > 100.0, x + 0.01, x)
    x = F32(100.0)
    (site,) = jr.find_kinks(h, x)
    assert site.kind == "jump"
    _, cert = jr.certified_grad(h)(x)
    assert not cert.certified
    assert jr.check_linearization(h, x, F32(1.0)).verdict == "discontinuous"


def test_a_gap_of_a_thousandth_at_a_tie_is_a_jump():
    """``where(x > 1000, x + 1, x)``: a jump of 1 at 1000, relative gap 1/2001. Extrapolated
    gaps need the loose threshold (1e-3), a gap measured at the tie does not: a jump in
    float32 and float64, never certified, crossed at once along +1 (and not at all along
    -1, where the piece ``x`` goes on)."""
    for dtype in (jnp.float32, jnp.float64):
        h = lambda x: jnp.where(x > 1000.0, x + 1.0, x)
        x = jnp.asarray(1000.0, dtype)
        (site,) = jr.find_kinks(h, x)
        assert (site.kind, site.ties) == ("jump", 1)
        g, cert = jr.certified_grad(h)(x)
        assert not cert.certified and float(g) == 1.0
        assert jr.kink_radius(h, x, jnp.asarray(1.0, dtype)) == 0.0
        assert jr.kink_radius(h, x, jnp.asarray(-1.0, dtype)) == np.inf


def test_reduction_margins_are_the_gap_to_the_runner_up():
    # max([0, 1, 3]) switches when 1 reaches 3 (margin 2); min switches when 1 reaches 0
    x = jnp.array([0.0, 1.0, 3.0])
    assert [s.min_margin for s in jr.find_kinks(lambda v: jnp.max(v), x)] == [2.0]
    assert [s.min_margin for s in jr.find_kinks(lambda v: jnp.min(v), x)] == [1.0]
    assert [s.min_margin for s in jr.find_kinks(lambda v: jnp.argmin(v) * v[0], x)] == [1.0]


def test_signbit_of_a_value_that_jumps_at_the_point():
    # floor(-t) = -1 has its sign bit set: 2x along -1 (slope -2 along -1); floor(t) = 0
    # has not: 3x along +1
    f = lambda x: jnp.where(jnp.signbit(jnp.floor(x)), 2 * x, 3 * x)
    assert dd(f, 0.0, -1.0) == -2.0 and dd(f, 0.0, 1.0) == 3.0


def test_a_string_point_is_refused_by_name():
    with pytest.raises(TypeError, match="`args` leaf 0 must be an array"):
        jr.find_kinks(lambda x: x, "0.5")


def test_cummax_tie_is_resolved_by_the_first_direction():
    # cummax([1, 1]) with directions e0 then e1: moving x0 up first makes x0 the running
    # maximum, so both outputs follow x0 (rows [1, 0]); the second direction never decides
    jac = jr.ld_jacobian(lambda x: jax.lax.cummax(x), jnp.array([1.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(jac), [[1.0, 0.0], [1.0, 0.0]])


def test_top_k_radius_is_where_an_outsider_enters():
    # top-2 of [3, 1, 2] sums 3 + 2; moving x1 up, it replaces 2 after 1, and along
    # (0, 1, -1) after 0.5 (1 + t = 2 - t)
    f = lambda x: jax.lax.top_k(x, 2)[0].sum()
    x = jnp.array([3.0, 1.0, 2.0])
    assert jr.kink_radius(f, x, jnp.array([0.0, 1.0, 0.0])) == 1.0
    assert jr.kink_radius(f, x, jnp.array([0.0, 1.0, -1.0])) == 0.5


def test_signbit_at_negative_zero_takes_the_direction():
    # -0.0 has its sign bit set, but -0.0 + t is positive: 3t along +1; 2(-t) along -1
    f = lambda x: jnp.where(jnp.signbit(x), 2 * x, 3 * x)
    assert dd(f, -0.0, 1.0) == 3.0 and dd(f, -0.0, -1.0) == -2.0


def test_cummax_tie_that_the_first_direction_keeps():
    # directions (1, 1) then (0, 1): the first moves both equally (still tied), the second
    # raises x1, so the running maximum of [x0, x1] follows x1: Jacobian rows [1, 0], [0, 1]
    m = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    jac = jr.ld_jacobian(lambda x: jax.lax.cummax(x), jnp.array([1.0, 1.0]), m)
    np.testing.assert_allclose(np.asarray(jac), [[1.0, 0.0], [0.0, 1.0]], atol=1e-12)


def test_a_zero_one_sided_slope_is_reported_as_0_not_minus_0():
    # relu at 0: f(-h) = 0, so the slope from -d is exactly zero (a -0.0 from the
    # arithmetic must not reach the report as "-0")
    r = jr.check_linearization(jax.nn.relu, jnp.array(0.0), jnp.array(1.0))
    minus = float(np.asarray(r.slope_minus).ravel()[0])
    assert minus == 0.0 and not np.signbit(minus)
    assert "-0 " not in r.reason and "−0" not in r.reason


# ------------------------------------------------------------ eigh and svd


def _lam_max(v):
    # the largest eigenvalue of diag(v) is max(v): smooth where v0 != v1
    return jnp.linalg.eigvalsh(jnp.diag(v))[-1]


def test_repeated_eigenvalue_is_a_tied_site_and_not_certified():
    sites = jr.find_kinks(_lam_max, jnp.array([1.0, 1.0]))
    assert [(s.primitive, s.kind, s.ties) for s in sites] == [("eigh", "kink", 1)]
    _, cert = jr.certified_grad(_lam_max)(jnp.array([1.0, 1.0]))
    assert not cert.certified and "eigh has no lexicographic rule" in cert.reason
    # distinct eigenvalues: differentiable, gradient of max(v) is e_1 (the larger one)
    g, cert = jr.certified_grad(_lam_max)(jnp.array([1.0, 2.0]))
    assert cert.certified and cert.method == "ad"
    np.testing.assert_array_equal(np.asarray(g), [0.0, 1.0])
    assert jr.find_kinks(_lam_max, jnp.array([1.0, 2.0]))[0].ties == 0


@pytest.mark.parametrize(
    "x0, d, radius",
    [
        ([1.0, 1.5], [1.0, 0.0], 0.5),  # 1 + t meets 1.5
        ([1.0, 1.5], [0.0, -1.0], 0.5),  # 1.5 - t meets 1
        ([1.0, 1.5], [1.0, -1.0], 0.25),  # 1 + t meets 1.5 - t
        ([1.0, 1.5], [-1.0, 1.0], np.inf),  # they move apart
    ],
)
def test_eigenvalue_gap_radius(x0, d, radius):
    got = jr.kink_radius(_lam_max, jnp.array(x0), jnp.array(d))
    assert got == pytest.approx(radius, rel=1e-12)


def test_spectral_norm_sites_and_radius():
    norm2 = lambda a: jnp.linalg.norm(a, 2)
    # 1x1: |a|, a kink at 0 (the smallest singular value reaches 0)
    sites = [s for s in jr.find_kinks(norm2, jnp.array([[0.0]])) if s.primitive == "svd"]
    assert len(sites) == 1 and sites[0].ties == 1
    # diag(3, 1) along diag(-1, 0): singular values 3 - t and 1 coincide at t = 2
    a, d = jnp.array([[3.0, 0.0], [0.0, 1.0]]), jnp.array([[-1.0, 0.0], [0.0, 0.0]])
    assert jr.kink_radius(norm2, a, d) == pytest.approx(2.0, rel=1e-12)
    # along diag(0, -2): 1 - 2t reaches 0 at t = 0.5 first
    d = jnp.array([[0.0, 0.0], [0.0, -2.0]])
    assert jr.kink_radius(norm2, a, d) == pytest.approx(0.5, rel=1e-12)


def test_checker_at_a_repeated_eigenvalue_ignores_jax_tangents():
    # along (1, -1): f = max(1 + t, 1 - t), slopes +1 and -1. JAX's JVP at the tie is one
    # eigenvector choice, not a one-sided slope: no exact slope is read from it
    r = jr.check_linearization(_lam_max, jnp.array([1.0, 1.0]), jnp.array([1.0, -1.0]))
    assert r.verdict == "kink"
    assert r.slope_plus == pytest.approx(1.0, abs=1e-6)
    assert r.slope_minus == pytest.approx(-1.0, abs=1e-6)
    assert np.isnan(r.exact_slope_plus) and np.isnan(r.exact_slope_minus)


# ------------------------------------------------------------ smooth near a kink


@pytest.mark.parametrize(
    "x0, c, dtype, order",
    [
        (0.5, 0.51, jnp.float32, 2.0),  # sin'' = -sin(0.5): remainder 0.24 h^2
        (0.5, 0.5 + 1e-6, jnp.float64, 2.0),
        (0.0, 1e-6, jnp.float64, 3.0),  # sin''(0) = 0: remainder h^3 / 6
    ],
)
def test_smooth_point_a_little_before_a_kink(x0, c, dtype, order):
    # sin(x) + relu(x - c) is sin(x) on (-inf, c): smooth at x0 < c. Steps beyond c - x0
    # cross the kink and blur the power law; those below it show the order
    f = lambda x: jnp.sin(x) + jax.nn.relu(x - c)
    r = jr.check_linearization(f, jnp.asarray(x0, dtype), jnp.asarray(1.0, dtype))
    assert r.verdict == "smooth", r.reason
    assert r.order == pytest.approx(order, abs=0.25)
    assert f"{c - x0:.3g} away" in r.reason


def test_near_a_kink_a_wrong_derivative_is_not_called_smooth():
    # the same function with AD's slope off by 0.25 below the kink: the remainder there is
    # 0.25 h (order 1), which must not read as smooth
    @jax.custom_jvp
    def bad_sin(x):
        return jnp.sin(x)

    bad_sin.defjvp(lambda p, t: (jnp.sin(p[0]), (jnp.cos(p[0]) + 0.25) * t[0]))
    f = lambda x: bad_sin(x) + jax.nn.relu(x - (0.5 + 1e-6))
    r = jr.check_linearization(f, jnp.asarray(0.5), jnp.asarray(1.0))
    assert r.verdict != "smooth", r.reason


# ------------------------------------- third probe round (ML code, the literature)


def _no_undecided_warning(fn):

    with warnings.catch_warnings():
        warnings.simplefilter("error", jr.UndecidedTieWarning)
        return fn()


def test_a_tied_jump_of_cond_or_switch_is_not_certified():
    """cond(x > 1, x + 1, x) at 1: f(1) = 1, f(1+) = 2, a jump; the same with switch (a
    gap of 4). With equal branches the cond is continuous: its tie is certified."""
    from jax import lax

    jump = lambda x: lax.cond(x > 1.0, lambda v: v + 1.0, lambda v: v, x)
    four = lambda x: lax.switch(jnp.int32(x > 1.0), [lambda v: v, lambda v: v + 4.0], x)
    same = lambda x: lax.cond(x > 1.0, lambda v: 2.0 * v - 1.0, lambda v: v, x)
    for f in (jump, four):
        _, cert = jr.certified_grad(f)(F32(1.0))
        assert not cert.certified and [s.kind for s in cert.sites] == ["jump"]
    g, cert = jr.certified_grad(same)(F32(1.0))
    # the piece entered along +1 is 2v - 1: slope 2 (a Clarke subgradient of a kink)
    assert cert.certified and [s.kind for s in cert.sites] == ["kink"] and float(g) == 2.0


@pytest.mark.parametrize(
    "f, slope",
    [
        (lambda x: jnp.where(x == 0, 0.0, jnp.sin(x)), 1.0),  # sin: cos 0 = 1
        (lambda x: jnp.where(x != 0, x, 0.0), 1.0),  # x
        (lambda x: jnp.where(x == 0, 0.0, 3.0 * x) + jax.nn.relu(x), 4.0),  # 3x + relu
    ],
)
def test_a_tied_equality_guard_takes_the_case_around_it(f, slope):
    """AD follows the ``==`` case, which holds only at the point (its derivative 0); the
    derivative is the other case's. The guard is still no site (f does not change)."""
    assert float(jax.grad(f)(F32(0.0))) != slope
    g, cert = jr.certified_grad(f)(F32(0.0))
    assert cert.certified and cert.method == "lexicographic" and float(g) == slope
    assert "equality" in cert.reason
    assert all(s.primitive != "select_n" for s in jr.find_kinks(f, F32(0.0)))
    g, cert = jr.certified_grad(f)(F32(0.5))  # away from the guard: jax.grad
    assert cert.method == "ad" and cert.certified


def test_an_equality_guard_whose_cases_differ_is_a_jump_not_a_guard():
    """where(x == 0, 1, x) is 1 at 0 and x around it (by evaluation below): a removable
    discontinuity, no guard of cases that agree. Listed as a tied jump, never certified,
    and not described as an equality guard."""
    f = lambda x: jnp.where(x == 0, 1.0, x)
    assert float(f(F32(0.0))) == 1.0 and abs(float(f(F32(1e-6)))) < 1e-5
    _, cert = jr.certified_grad(f)(F32(0.0))
    assert not cert.certified and "equality" not in cert.reason
    assert [(s.kind, s.ties) for s in jr.find_kinks(f, F32(0.0))] == [("jump", 1)]


@pytest.mark.parametrize(
    "f, x, d, true",
    [
        (lambda x: jnp.where(x * x > 0, x, 0.0), 0.0, 1.0, 1.0),  # = x
        (lambda x: x * jnp.sign(x**3), 0.0, 1.0, 1.0),  # = |x|
        (lambda x: jnp.where(x**3 > 0, 2.0 * x, x), 0.0, 1.0, 2.0),  # 2x for x > 0
        # the safe-norm idiom: ||x||, whose derivative along d is ||d|| = 5 at 0
        (
            lambda v: jnp.where(
                jnp.sum(v**2) > 0, jnp.sqrt(jnp.where(jnp.sum(v**2) > 0, jnp.sum(v**2), 1.0)), 0.0
            ),
            [0.0, 0.0],
            [3.0, 4.0],
            5.0,
        ),
    ],
)
def test_a_tie_first_order_cannot_resolve_is_never_certified(f, x, d, true):
    """The switching quantity is tied and its derivative is 0 in every direction (x^2,
    x^3, |x|^2 at 0): derivatives cannot tell the side around the point. The rules take
    the tie's own side, whose answer is wrong here (``true`` by hand), so it must come
    with a warning, and certified_grad must not certify."""
    with pytest.warns(jr.UndecidedTieWarning, match="cannot resolve"):
        jr.directional_derivative(f, F32(x), F32(d))
    _, cert = jr.certified_grad(f)(F32(x))
    assert not cert.certified and "cannot resolve" in cert.reason


def test_a_tie_the_direction_decides_gives_no_warning():
    """``where(x > 0, x, 0)`` at 0 and ``relu(x) - relu(-x)``: first order decides."""
    relu_where = lambda x: jnp.where(x > 0, x, 0.0)
    assert _no_undecided_warning(lambda: dd(relu_where, 0.0, 1.0)) == 1.0
    assert _no_undecided_warning(lambda: dd(relu_where, 0.0, -1.0)) == 0.0
    odd = lambda x: jax.nn.relu(x) - jax.nn.relu(-x)
    g, cert = _no_undecided_warning(lambda: jr.certified_grad(odd)(F32(0.0)))
    assert float(g) == 1.0 and cert.certified
    # piecewise linear with a zero tangent: constant along the direction (the tie's own
    # side is right): 0 * x, and x0 along (0, 1)
    flat = lambda x: jnp.where(0 * x > 0, x, 2 * x)
    assert _no_undecided_warning(lambda: dd(flat, 0.0, 1.0)) == 2.0
    along = lambda v: jnp.where(jax.nn.relu(v[0]) > 0, 3 * v[1], 5 * v[1])
    assert _no_undecided_warning(lambda: dd(along, [0.0, 0.0], [0.0, 1.0])) == 5.0
    # x * x - x * x is constant too, but only a nonlinear quantity's curvature would say so
    with pytest.warns(jr.UndecidedTieWarning):
        assert dd(lambda x: jnp.where(x * x - x * x > 0, x, 2.0 * x), 0.0, 1.0) == 2.0


TABLE = jnp.array([0.0, 1.0, 4.0, 9.0])


def _lerp(x):
    """Linear interpolation of TABLE: slope 1 on [0, 1], 3 on [1, 2], 5 on [2, 3]."""
    i = jnp.clip(jnp.floor(x), 0, 2)
    t, k = x - i, i.astype(jnp.int32)
    return TABLE[k] * (1 - t) + TABLE[k + 1] * t


@pytest.mark.parametrize(
    "f, x, d, true",
    [
        (_lerp, 1.0, -1.0, -1.0),  # segment [0, 1], slope 1, along -1
        (_lerp, 1.0, 1.0, 3.0),
        (_lerp, 2.0, -1.0, -3.0),
        # a triangle wave: 1 - x on [0, 1], 1 + x on [-1, 0]: -1 along both directions
        (lambda x: jnp.abs(jnp.mod(x, 2.0) - 1.0), 0.0, -1.0, -1.0),
        (lambda x: jnp.abs(jnp.mod(x, 2.0) - 1.0), 0.0, 1.0, -1.0),
        # distance to the nearest integer: 1 - x on [0.5, 1], x on [0, 0.5]
        (lambda x: jnp.abs(jnp.round(x) - x), 0.5, 1.0, -1.0),
        (lambda x: jnp.abs(jnp.round(x) - x), 0.5, -1.0, -1.0),
    ],
)
def test_clip_max_and_abs_after_a_tied_jump_use_the_piece_entered(f, x, d, true):
    """A tied floor/mod/round enters another piece along the direction; the max/min/abs
    after it must read that piece's value, not the point's (the lerp used the segment
    the point starts, slope 3, going down)."""
    assert dd(f, x, d) == true


def test_switch_on_a_clipped_floor_follows_the_piece_entered():
    """switch(clip(floor(x), 0, 2), [x, 2x - 1, 3x - 3]) at 1: x on [0, 1], 2x - 1 on
    [1, 2]; along -1 the first branch: derivative 1 (per unit of -1: -1)."""
    from jax import lax

    g = lambda x: lax.switch(
        jnp.clip(jnp.floor(x), 0, 2).astype(jnp.int32),
        [lambda v: v, lambda v: 2 * v - 1, lambda v: 3 * v - 3],
        x,
    )
    assert dd(g, 1.0, -1.0) == -1.0 and dd(g, 1.0, 1.0) == 2.0
    assert float(jr.ld_jacobian(g, F32(1.0), jnp.array([[-1.0]]))) == 1.0


def test_custom_vjp_functions_away_from_ties():
    """JAX has no forward mode for custom_vjp; the rules differentiate its forward
    function: sin(x) + relu(x) at 1 has derivative cos 1 + 1."""

    @jax.custom_vjp
    def f(x):
        return jnp.sin(x) + jax.nn.relu(x)

    f.defvjp(lambda x: (f(x), x), lambda x, g: (g * (jnp.cos(x) + (x > 0)),))
    want = float(jnp.cos(F32(1.0))) + 1.0
    assert dd(f, 1.0, 1.0) == pytest.approx(want, rel=1e-6)
    assert float(jr.ld_jacobian(f, F32(1.0))) == pytest.approx(want, rel=1e-6)
    _, cols = jr.ld_jvp(f, F32(1.0), jnp.array([[2.0]]))
    assert float(cols[0]) == pytest.approx(2 * want, rel=1e-6)


def test_certified_grad_of_a_while_loop_with_a_traced_trip_count():
    """Reverse mode cannot run through such a loop; forward mode can. The tent map
    (``while y > 1: y = 2 - y``) is x on [0, 1] and 2 - x on [1, 2]; halving until at
    most 1 is x / 4 on (2, 4]. At a tied test the loop runs the point's own iterations,
    not the perturbed point's: uncertified, and a warning."""
    from jax import lax

    tent = lambda x: lax.while_loop(lambda y: y > 1, lambda y: 2 - y, x)
    halve = lambda x: lax.while_loop(lambda s: s > 1, lambda s: s * 0.5, x)
    for f, x, slope in ((tent, 0.5, 1.0), (tent, 1.5, -1.0), (halve, 3.0, 0.25)):
        g, cert = jr.certified_grad(f)(F32(x))
        assert cert.certified and float(g) == slope
    for f, x in ((tent, 1.0), (halve, 2.0)):
        _, cert = jr.certified_grad(f)(F32(x))
        assert not cert.certified and cert.sites[0].primitive == "while"
        # (as every certificate: a tied site's margin is 0, its radius not computed)
        assert cert.sites[0].min_margin == 0.0 and np.isnan(cert.sites[0].radius)
    with pytest.warns(jr.UndecidedTieWarning, match="while at"):
        dd(halve, 2.0, 1.0)
    assert _no_undecided_warning(lambda: dd(halve, 3.0, 1.0)) == 0.25


def test_atan2_on_its_branch_cut_is_a_jump():
    """atan2(y, x) jumps by 2 pi across y = 0 where x < 0 (as does jnp.angle); off the
    cut its gradient in (x, y) is (-y, x) / (x^2 + y^2): at (-1, 0.5), (-0.4, -0.8)."""
    f = lambda v: jnp.arctan2(v[1], v[0])
    angle = lambda v: jnp.angle(v[0] + 1j * v[1])
    for fn in (f, angle):
        _, cert = jr.certified_grad(fn)(F32([-1.0, 0.0]))
        assert not cert.certified and [s.kind for s in cert.sites] == ["jump"]
    g, cert = jr.certified_grad(f)(F32([-1.0, 0.5]))
    assert cert.certified and np.allclose(np.asarray(g), [-0.4, -0.8], rtol=1e-6)
    assert jr.find_kinks(f, F32([1.0, 0.0])) == []  # not on the cut: no site
    assert [s.kind for s in jr.find_kinks(f, F32([-1.0, 0.0]))] == ["jump"]


def test_a_program_jax_cannot_linearize_is_checked_through_its_jvp():
    """A max pool with a 0 initial value (relu fused into the pool) is a generic
    reduce_window: jax.jvp runs through it, jax.linearize does not. Near (1, -2, 0.5, 3)
    the function is x0 + x3: slope 2 along the ones."""
    from jax import lax

    f = lambda x: jnp.sum(
        lax.reduce_window(x, jnp.zeros((), x.dtype), lax.max, (2,), (2,), "VALID")
    )
    x, d = F32([1.0, -2.0, 0.5, 3.0]), F32([1.0, 1.0, 1.0, 1.0])
    for mode in ("fwd", "auto"):
        r = jr.check_linearization(f, x, d, mode=mode)
        assert r.verdict == "linear" and r.ad_slope == 2.0


def test_a_cast_below_the_inputs_precision_is_a_staircase():
    """x.astype(bfloat16) of a float32 x is constant between bfloat16 values: at 1.3,
    f(1.3 +- 1e-4) = 1.296875 (the derivative is 0; JAX's is 1), as reduce_precision
    below its operand's precision. A cast back to the inputs' own precision (float16 mean,
    accumulated in float32) is ordinary rounding."""
    f = lambda x: x.astype(jnp.bfloat16).astype(jnp.float32)
    x = F32(1.3)
    assert float(f(x + 1e-4)) == float(f(x - 1e-4)) == 1.296875
    _, cert = jr.certified_grad(f)(x)
    assert not cert.certified and "convert_element_type" in cert.reason
    assert [s.kind for s in jr.find_kinks(f, x)] == ["unknown"]
    g = lambda v: jnp.mean(jax.nn.relu(v))
    grad, cert = jr.certified_grad(g)(jnp.array([1.0, 2.0], jnp.float16))
    assert cert.certified and np.asarray(grad, np.float32).tolist() == [0.5, 0.5]
    assert jr.find_kinks(lambda v: v.astype(jnp.float64) * 2, x) == []  # widening


def test_ad_right_below_a_nearby_switch_is_not_called_wrong():
    """where(isclose(x, 1), 1, x) is 1 on |x - 1| <= 1e-5 + 1e-8 and x outside: at 1 it
    is locally constant, so AD's 0 is the derivative; only the steps beyond the band
    (where f = x) disagree. A wrong rule near a switch stays wrong: 2x by a custom rule
    (true slope 1) with a relu 1e-3 away."""
    f = lambda x: jnp.where(jnp.isclose(x, 1.0), 1.0, x)
    r = jr.check_linearization(f, F32(1.0), F32(1.0))
    assert r.ad_slope == 0.0 and r.verdict == "inconclusive"
    assert "below the nearest switch" in r.reason

    @jax.custom_jvp
    def ident(x):
        return x

    ident.defjvp(lambda p, t: (p[0], 2.0 * t[0]))
    g = lambda x: ident(x) + jax.nn.relu(x - 1e-3)
    r = jr.check_linearization(g, F32(0.0), F32(1.0))
    assert r.ad_slope == 2.0 and r.verdict == "wrong_derivative"


def test_clamp_with_equal_bounds_below_them_is_a_tie():
    """clamp(lo, x, hi) with x < lo = hi is min(lo, hi): a kink in (lo, hi). At
    (lo, x, hi) = (0, -1, 0) along -e_hi it is hi: slope -1 per unit; the lexicographic
    Jacobian with the identity directions takes lo's piece first: e_lo increases lo, so
    min(lo, hi) = hi: (0, 0, 1). From lo = -0.5 along +e_lo, lo reaches hi after 0.5."""
    from jax import lax

    f = lambda v: lax.clamp(v[0], v[1], v[2])
    x = F32([0.0, -1.0, 0.0])
    g, cert = jr.certified_grad(f)(x)
    assert cert.certified and cert.method == "lexicographic"
    assert np.asarray(g).tolist() == [0.0, 0.0, 1.0]
    assert dd(f, x, [0.0, 0.0, -1.0]) == -1.0
    radius = jr.kink_radius(f, F32([-0.5, -1.0, 0.0]), F32([1.0, 0.0, 0.0]))
    assert float(radius) == 0.5


def _warns_undecided(f, x, d):
    with pytest.warns(jr.UndecidedTieWarning):
        return dd(f, x, d)


@pytest.mark.parametrize(
    "name, f",
    [
        # each equals x near 0 (true derivative 1 along +1), through x * x compared at 0
        ("cond", lambda x: jnp.where(lax.cond(x < 5, lambda v: v * v, lambda v: v, x) > 0, x, 0.0)),
        (
            "scan",
            lambda x: jnp.where(lax.scan(lambda c, _: (c * c, None), x, None, 1)[0] > 0, x, 0.0),
        ),
        (
            "while",
            lambda x: jnp.where(
                lax.while_loop(lambda s: s[1] < 1, lambda s: (s[0] * s[0], s[1] + 1), (x, 0))[0]
                > 0,
                x,
                0.0,
            ),
        ),
        ("into cond", lambda x: lax.cond(x * x > 0, lambda v: v, lambda v: 0.0 * v, x)),
        (
            "scan carry",
            lambda x: (
                x
                * lax.scan(lambda c, _: (c + 0.0 * c, jnp.where(c > 0, 1.0, 0.0)), x * x, None, 2)[
                    1
                ][1]
            ),
        ),
        ("ceil", lambda x: x * jnp.ceil(x * x)),
        ("floor", lambda x: jnp.where(jnp.floor(-x * x) < 0, x, 0.0)),
        ("bool", lambda x: x * (x * x).astype(bool)),
        # a plateau (floor(x + 1/2) = 0 near 0, not moved) added: still undecided
        ("sign after a plateau", lambda x: x * jnp.sign(x * x + jnp.floor(x + 0.5))),
    ],
)
def test_nonlinear_ties_are_seen_through_control_flow_and_staircases(name, f):
    """The nonlinearity of x * x is carried into and out of cond, scan and while, and a
    staircase or truncation of it at 0 is as undecided as a comparison."""
    _warns_undecided(f, 0.0, 1.0)
    _, cert = jr.certified_grad(f)(F32(0.0))
    assert not cert.certified


def test_piecewise_linear_values_in_loops_and_divisions_give_no_warning():
    """Zero tangents of piecewise-linear quantities: constant along the direction."""
    relu_scan = lambda x: lax.scan(lambda c, _: (jnp.where(c > 0, c, 0.0), None), x, None, 2)[0]
    assert _no_undecided_warning(lambda: dd(relu_scan, 0.0, 1.0)) == 1.0
    masked = lambda x: lax.scan(
        lambda c, m: (c + jnp.where(m == 0, 0.0, x), None), 0.0, F32([0, 1])
    )[0]
    assert _no_undecided_warning(lambda: dd(masked, 0.0, 1.0)) == 1.0
    by_two = lambda x: jnp.where(0.0 * x / 2.0 > 0, x, 2.0 * x)  # a constant divisor
    assert _no_undecided_warning(lambda: dd(by_two, 0.0, 1.0)) == 2.0
    # x / x is 1 for x != 0 and NaN at 0: nonlinear (a divisor that moves)
    with pytest.warns(jr.UndecidedTieWarning):
        dd(lambda x: jnp.where(x / (1.0 + x) - x / (1.0 + x) > 0, x, 2.0 * x), 0.0, 1.0)


def test_safe_norm_from_a_fori_loop_warns():
    """The squared norm summed in a fori_loop: its tie at 0 is as undecided."""
    sq = lambda v: lax.fori_loop(0, 2, lambda i, a: a + v[i] * v[i], 0.0)
    norm = lambda v: jnp.where(sq(v) > 0, jnp.sqrt(jnp.where(sq(v) > 0, sq(v), 1.0)), 0.0)
    with pytest.warns(jr.UndecidedTieWarning):
        jr.directional_derivative(norm, F32([0.0, 0.0]), F32([3.0, 4.0]))


def test_lax_clamp_after_a_tied_floor_uses_the_piece_entered():
    """clamp(0, floor(x), 2) + (x - floor(x)) at 1 along -1: floor enters 0, the piece
    x (slope 1, so -1 along -1); along +1 floor stays 1: slope 1."""
    f = lambda x: lax.clamp(0.0, jnp.floor(x), 2.0) * 2.0 + (x - jnp.floor(x))
    # f = 2 floor(x) + frac(x) on [0, 3): 2k + (x - k) = x + k: slope 1 everywhere
    assert dd(f, 1.0, -1.0) == -1.0 and dd(f, 1.0, 1.0) == 1.0
    g = lambda x: TABLE[lax.clamp(0.0, jnp.floor(x), 2.0).astype(jnp.int32)] * x
    # at 1 along -1: TABLE[0] * x = 0; along +1: TABLE[1] * x, slope 1
    assert dd(g, 1.0, -1.0) == 0.0 and dd(g, 1.0, 1.0) == 1.0


def test_a_switch_on_a_clipped_floor_between_integers_is_certified():
    """At 1.5 the program is 2x - 1 on (1, 2): no element at a switch (the clip keeps
    floor's switch; the integer conversion is no tie of its own)."""
    g = lambda x: lax.switch(
        jnp.clip(jnp.floor(x), 0, 2).astype(jnp.int32),
        [lambda v: v, lambda v: 2 * v - 1, lambda v: 3 * v - 3],
        x,
    )
    for x, slope in ((1.5, 2.0), (3.5, 3.0), (0.5, 1.0)):
        grad, cert = jr.certified_grad(g)(F32(x))
        assert cert.certified and float(grad) == slope
        # (at 0.5 floor's 0 ties the clip's 0: a tie of two plateaus, certified)
        assert cert.method == ("lexicographic" if x == 0.5 else "ad")
    assert jr.check_linearization(g, F32(1.5), F32(1.0)).verdict == "linear"
    assert float(jr.kink_radius(g, F32(1.5), F32(1.0))) == 0.5


@pytest.mark.parametrize(
    "f",
    [
        lambda v: jnp.arctan2(v[1], v[0]),
        lambda v: jnp.imag(jnp.sqrt(v[0] + 1j * v[1])),
        lambda v: jnp.imag(jnp.log(v[0] + 1j * v[1])),
    ],
)
def test_branch_cuts_are_jumps_where_the_imaginary_part_moves(f):
    """Across y = 0 with x < 0 these jump (2 pi, 2 sqrt(|x|) i, 2 pi i): at (-1, 0) no
    gradient is certified; at (1, 0) they are smooth; from (-1, 0.5) along -e_y the cut
    is 0.5 away; a y that does not move (jnp.angle of a real number, or y not
    differentiated) never crosses it."""
    _, cert = jr.certified_grad(f)(F32([-1.0, 0.0]))
    assert not cert.certified and [s.kind for s in cert.sites] == ["jump"]
    assert jr.certified_grad(f)(F32([1.0, 0.0]))[1].certified
    assert float(jr.kink_radius(f, F32([-1.0, 0.5]), F32([0.0, -1.0]))) == 0.5
    assert float(jr.kink_radius(f, F32([-1.0, 0.0]), F32([0.0, -1.0]))) == 0.0
    assert jr.kink_radius(f, F32([-1.0, 0.5]), F32([0.0, 1.0])) == np.inf
    assert jr.certified_grad(f)(F32([-1.0, 0.0]))[1].sites[0].min_margin == 0.0
    two = lambda x, y: jnp.arctan2(y, x)
    assert jr.certified_grad(two)(F32(-1.0), F32(0.0))[1].certified  # x alone moves
    assert not jr.certified_grad(two, argnums=1)(F32(-1.0), F32(0.0))[1].certified
    grad, cert = jr.certified_grad(jnp.angle)(F32(-2.0))
    assert cert.certified and float(grad) == 0.0  # pi for every real x < 0
    # y = -relu(-x) has no slope along +1 but moves along -1: atan2(y, -1) jumps at 0
    # (f(-1e-3) = -pi + 1e-3, f(0) = pi)
    h = lambda x: jnp.arctan2(-jax.nn.relu(-x), -1.0)
    assert not jr.certified_grad(h)(F32(0.0))[1].certified


C = lambda v: lax.complex(v[0], v[1])


@pytest.mark.parametrize(
    "f, on, off, d",
    [
        # log1p(z) = log(1 + z): imag jumps by 2 pi across re < -1
        (lambda v: jnp.imag(jnp.log1p(C(v))), [-3.0, 0.0], [-0.5, 0.0], [0.0, 1.0]),
        (lambda v: jnp.imag(jnp.log1p(C(v))), [-1.5, 0.0], [-0.5, 0.0], [0.0, 1.0]),
        # asin, acos, atanh: cut along the real axis beyond +-1; the imaginary part of
        # asin(2 +- i0) is -+acosh 2, of acos it is +-acosh 2, atanh's jumps by pi (the
        # same at 1.5, with acosh 1.5)
        (lambda v: jnp.imag(jnp.arcsin(C(v))), [2.0, 0.0], [0.5, 0.0], [0.0, 1.0]),
        (lambda v: jnp.imag(jnp.arcsin(C(v))), [1.5, 0.0], [0.5, 0.0], [0.0, 1.0]),
        (lambda v: jnp.imag(jnp.arccos(C(v))), [-2.0, 0.0], [-0.5, 0.0], [0.0, 1.0]),
        (lambda v: jnp.imag(jnp.arccos(C(v))), [-1.5, 0.0], [-0.5, 0.0], [0.0, 1.0]),
        (lambda v: jnp.imag(jnp.arctanh(C(v))), [2.0, 0.0], [0.5, 0.0], [0.0, 1.0]),
        (lambda v: jnp.imag(jnp.arctanh(C(v))), [-1.5, 0.0], [0.5, 0.0], [0.0, 1.0]),
        # atan, asinh: along the imaginary axis beyond +-i; the real part of atan jumps by
        # pi, asinh's by 2 acosh 2 (2 acosh 1.5 at 1.5 i)
        (lambda v: jnp.real(jnp.arctan(C(v))), [0.0, 2.0], [0.0, 0.5], [1.0, 0.0]),
        (lambda v: jnp.real(jnp.arctan(C(v))), [0.0, -1.5], [0.0, 0.5], [1.0, 0.0]),
        (lambda v: jnp.real(jnp.arcsinh(C(v))), [0.0, -2.0], [0.0, -0.5], [1.0, 0.0]),
        (lambda v: jnp.real(jnp.arcsinh(C(v))), [0.0, 1.5], [0.0, -0.5], [1.0, 0.0]),
        # z ** 0.5 = sqrt(z): imag jumps by 2 sqrt(3) across re < 0
        (lambda v: jnp.imag(C(v) ** 0.5), [-3.0, 0.0], [3.0, 0.0], [0.0, 1.0]),
    ],
)
def test_principal_branch_cuts_of_inverse_functions_are_jumps(f, on, off, d):
    """On the cut (``on``) the function jumps along ``d``: no certificate, a tied cut site,
    and 0.25 away along -d from a quarter off it; beside the cut (``off``) it is smooth
    (derivations: the principal branches, as NumPy defines them, beside each case)."""
    x = jnp.asarray(on, jnp.float64)
    step = 1e-9 * jnp.asarray(d, jnp.float64)
    assert abs(float(f(x + step)) - float(f(x - step))) > 1.0  # the oracle: a jump
    _, cert = jr.certified_grad(f)(x)
    assert not cert.certified and [(s.kind, s.ties) for s in cert.sites] == [("jump", 1)]
    quarter = x + 0.25 * jnp.asarray(d, jnp.float64)
    assert float(jr.kink_radius(f, quarter, -jnp.asarray(d, jnp.float64))) == 0.25
    assert jr.certified_grad(f)(jnp.asarray(off, jnp.float64))[1].certified


@pytest.mark.parametrize(
    "f",
    [
        lambda v: jnp.arctan2(v[1], v[0]),
        lambda v: jnp.imag(jnp.log(C(v))),
        lambda v: jnp.imag(C(v) ** 0.5),
        lambda v: jnp.imag(jnp.log1p(C(v) - 1.0)),  # log1p's cut, moved to x <= 0
    ],
)
def test_a_path_from_off_the_cut_reaches_it(f):
    """From (1, -1/2) along (-4, 1): y = 0 at t = 1/2, where x = -1, on the cut (a jump
    there); along (-1, 1) y = 0 where x = 1/2 (smooth there), and along (-4, -1) y moves
    away: no crossing."""
    x = jnp.asarray([1.0, -0.5], jnp.float64)
    v = lambda a, b: jnp.asarray([a, b], jnp.float64)
    assert float(jr.kink_radius(f, x, v(-4.0, 1.0))) == 0.5
    (site,) = jr.kink_sites(f, x, v(-4.0, 1.0))
    assert site.kind == "jump" and site.radius == 0.5
    assert jr.kink_radius(f, x, v(-1.0, 1.0)) == np.inf
    assert jr.kink_radius(f, x, v(-4.0, -1.0)) == np.inf
    assert jr.find_kinks(f, x) == []  # (no element on the cut's side)


def test_an_integer_power_of_a_complex_number_has_no_cut():
    """z ** 2.0 = z * z is entire: no site on the negative real axis; z ** w with a
    moving w has the cut of log z."""
    sq = lambda v: jnp.imag(C(v) ** 2.0)
    x = jnp.asarray([-3.0, 0.0], jnp.float64)
    assert jr.find_kinks(sq, x) == [] and jr.certified_grad(sq)(x)[1].certified
    moving = lambda v: jnp.imag(C(v) ** (2.0 + 0.0 * v[0]))
    assert [s.kind for s in jr.find_kinks(moving, x)] == ["jump"]


def test_max_of_plateaus_then_an_index_uses_the_operand_that_moves():
    """T[int(max(floor(x), floor(-x)))] * (x - 1) at 1: going right floor(-x) drops to
    -2 and floor(x) stays 1 (T[1] = 20: slope 20); going left floor(x) drops to 0 and
    floor(-x) rises to -1: max 0 (T[0] = 10, slope 10 per unit, -10 along -1). With a
    comparison as the second plateau: x T[int(max(floor(x), x > 0))] at 0: 20 and -10."""
    f = lambda x: (x - 1) * TABLE10[jnp.maximum(jnp.floor(x), jnp.floor(-x)).astype(jnp.int32)]
    assert dd(f, 1.0, 1.0) == 20.0 and dd(f, 1.0, -1.0) == -10.0
    g = lambda x: (
        x * TABLE10[jnp.maximum(jnp.floor(x), (x > 0).astype(jnp.float32)).astype(jnp.int32)]
    )
    assert dd(g, 0.0, 1.0) == 20.0 and dd(g, 0.0, -1.0) == -10.0


TABLE10 = jnp.array([10.0, 20.0, 30.0, 40.0])


def test_an_empty_scan_records_its_sites_with_no_element():
    f = lambda x: lax.scan(lambda c, y: (jnp.maximum(c * c, y), c), x, jnp.zeros((0,), x.dtype))[0]
    (site,) = jr.find_kinks(f, F32(1.0))
    assert (site.size, site.ties, site.min_margin) == (0, 0, np.inf)
    grad, cert = jr.certified_grad(f)(F32(1.0))
    assert cert.certified and float(grad) == 1.0


def test_casts_of_the_data_or_constants_are_no_staircase():
    """Only a cast of a differentiated input below its precision is a staircase: the
    data's (a float32 batch cast to bfloat16) and a constant's are fixed values; a
    bfloat16 batch does not hide the parameters' cast."""
    w, X = jnp.ones((2, 2), jnp.float32), jnp.full((3, 2), 0.5, jnp.float32)
    data_cast = lambda w, X: jnp.sum(jax.nn.relu(X.astype(jnp.bfloat16) @ w).astype(jnp.float32))
    grad, cert = jr.certified_grad(data_cast)(w, X)
    assert cert.certified and np.asarray(grad).tolist() == [[1.5, 1.5], [1.5, 1.5]]
    const = lambda x: x * F32(1.3).astype(jnp.bfloat16).astype(jnp.float32)
    assert jr.certified_grad(const)(F32(2.0))[1].certified
    param_cast = lambda w, X: jnp.sum(jax.nn.relu(X @ w.astype(jnp.bfloat16)).astype(jnp.float32))
    for batch in (X, X.astype(jnp.bfloat16)):
        assert not jr.certified_grad(param_cast)(w, batch)[1].certified
        assert jr.certified_grad(param_cast, argnums=1)(w, batch)[1].certified


def test_a_count_over_many_elements_switches_at_the_nearest_crossing():
    """x0 * #{x_i > 1/2} over 128 elements (more than are flipped one by one): with
    x_i = (i + 1/4) / 128 moving along the ones, element 63 reaches 1/2 first, after
    (1/2 - 63.25/128) = 0.75/128; backwards element 64 leaves after 0.25/128."""
    x = (jnp.arange(128.0, dtype=jnp.float32) + 0.25) / 128
    f = lambda x: x[0] * jnp.sum(x > 0.5)
    assert float(jr.kink_radius(f, x, jnp.ones(128, jnp.float32))) == 0.75 / 128
    assert float(jr.kink_radius(f, x, -jnp.ones(128, jnp.float32))) == 0.25 / 128


# ------------------------------------------- switches carried by loops and branches
#
# An index or a count computed from a comparison inside a scan, a while_loop or a cond
# and used after it (a mode of a hybrid system, a counter of crossings, a branch's
# integer result): the first versions dropped its switch at the loop's or branch's end,
# so the select or the indexing after it was no site and a jump was certified.

PICK = lambda x, i: jnp.stack([x, 3.0 * x, 5.0 * x])[i]  # slopes 1, 3, 5 by index


def _count_in_scan(x):
    # i = 2 * [x > 1] (two iterations of i + [x > 1])
    return lax.scan(lambda i, _: (i + (x > 1.0).astype(jnp.int32), None), 0, None, 2)[0]


def _count_in_while(x):
    body = lambda s: (s[0] + 1, s[1] + (x > 1.0).astype(jnp.int32))
    return lax.while_loop(lambda s: s[0] < 2, body, (0, 0))[1]


def _index_from_cond(x):
    # 0 for x <= 1, 1 for 1 < x <= 3, 2 above 3: the index's switch and the branch's own
    return lax.cond(x > 1.0, lambda: 1 + (x > 3.0).astype(jnp.int32), lambda: jnp.int32(0))


@pytest.mark.parametrize(
    "index, right",
    [(_count_in_scan, 5.0), (_count_in_while, 5.0), (_index_from_cond, 3.0)],
    ids=["scan", "while", "cond"],
)
def test_a_discrete_value_from_a_loop_or_branch_keeps_its_switch(index, right):
    """f = [x, 3x, 5x][i(x)]: at x = 1, f = 1 on the left and 3 or 5 just right of it (a
    jump): the slope entered along +1 is 3 or 5 (``right``), along -1 it is -1; the tie is
    a jump, so certified_grad certifies nothing. At 1.25 the nearest switch is 0.25 away
    (its radius going down) and the gradient is certified."""
    f = lambda x: PICK(x, index(x))
    assert dd(f, 1.0, 1.0) == right and dd(f, 1.0, -1.0) == -1.0
    _, cert = jr.certified_grad(f)(F32(1.0))
    assert not cert.certified and [s.kind for s in cert.sites] == ["jump"]
    g, cert = jr.certified_grad(f)(F32(1.25))
    assert cert.certified and float(g) == right
    assert float(jr.kink_radius(f, F32(1.25), F32(-1.0))) == 0.25
    (site,) = jr.find_kinks(f, F32(1.25))
    assert site.kind == "jump" and site.ties == 0 and site.min_margin == 0.25


def test_a_branch_output_switches_where_its_index_or_its_own_comparison_does():
    """From x = 1.5 the index's switch (at 1) is nearer, but going up the branch's own
    comparison (at 3) is the one crossed; at 3 the branch's tie decides: 5 to the right,
    3 to the left."""
    f = lambda x: PICK(x, _index_from_cond(x))
    assert float(jr.kink_radius(f, F32(1.5), F32(1.0))) == 1.5
    assert float(jr.kink_radius(f, F32(1.5), F32(-1.0))) == 0.5
    assert dd(f, 3.0, 1.0) == 5.0 and dd(f, 3.0, -1.0) == -3.0
    assert not jr.certified_grad(f)(F32(3.0))[1].certified


def test_stacked_comparisons_and_carried_floors_keep_their_switches():
    """ys = [x_i > 1] stacked by a scan: sum(where(ys, 2x, x)) jumps at x_0 = 1 (gap 1)
    and has slope 2 just right of it, 1 left; floor(x) carried through a scan: floor(x) + y
    is a staircase in x (slope 0 on each step, a jump at 2)."""
    stacked = lambda x: jnp.sum(
        jnp.where(lax.scan(lambda c, xi: (c, xi > 1.0), 0.0, x)[1], 2.0 * x, x)
    )
    x = F32([1.0, 0.5])
    assert jr.directional_derivative(stacked, x, F32([1.0, 0.0])) == 2.0
    assert jr.directional_derivative(stacked, x, F32([-1.0, 0.0])) == -1.0
    _, cert = jr.certified_grad(stacked)(x)
    assert not cert.certified and [s.ties for s in cert.sites] == [1]
    floor = lambda v: lax.scan(lambda c, _: (jnp.floor(v[0]), None), v[0], None, 2)[0] + v[1]
    assert not jr.certified_grad(floor)(F32([2.0, 1.0]))[1].certified
    g, cert = jr.certified_grad(floor)(F32([2.5, 1.0]))
    assert cert.certified and np.asarray(g).tolist() == [0.0, 1.0]


def test_a_branch_with_only_integer_outputs_is_no_site_of_its_own():
    """where(cond(x > 1, 1, 0) > 0, x + 1, x) jumps at 1 (gap 1): one site, the select
    that uses the branch's result; the cond itself is no kink (its outputs are integers)."""
    i = lambda x: lax.cond(x > 1.0, lambda: jnp.int32(1), lambda: jnp.int32(0))
    f = lambda x: jnp.where(i(x) > 0, x + 1.0, x)
    assert [(s.primitive, s.kind, s.ties) for s in jr.find_kinks(f, F32(1.0))] == [
        ("select_n", "jump", 1)
    ]
    assert not jr.certified_grad(f)(F32(1.0))[1].certified


def test_argmax_of_a_nonlinear_tie_warns():
    """[2x, x][argmax(x**3, 0)] is 2x for x > 0 and x for x < 0: at 0 the slopes are 2
    and -1 by hand. x**3 and 0 agree to first order, so the rules cannot tell which
    leads on the left: a warning, and no certificate. With x in place of x**3 the tie is
    decided by the first derivative: both slopes right, no warning."""
    f = lambda x: jnp.stack([2 * x, x])[jnp.argmax(jnp.stack([x**3, 0.0 * x]))]
    g = lambda x: jnp.stack([2 * x, x])[jnp.argmin(jnp.stack([-x, 0.0 * x]))]
    with pytest.warns(jr.UndecidedTieWarning):
        jr.directional_derivative(f, F32(0.0), F32(-1.0))
    assert not jr.certified_grad(f)(F32(0.0))[1].certified
    assert _no_undecided_warning(lambda: dd(g, 0.0, 1.0)) == 2.0
    assert _no_undecided_warning(lambda: dd(g, 0.0, -1.0)) == -1.0
    assert _no_undecided_warning(lambda: dd(f, 0.5, 1.0)) == 2.0  # (no tie at 0.5)


def test_an_equality_carried_through_a_loop_stays_an_instant():
    """b = (x == 1) carried through a scan: where(b, 1, x) is x everywhere (the cases
    agree where b holds): no site, gradient 1 certified; where(b, 5, x) jumps at 1 (a
    site). A carry that is an equality in its first iteration and floor(x) == 1 (a
    plateau, [1, 2)) after it is no instant: where(b, 1, x) then differs from x on (1, 2),
    so the tie at 1 is listed."""
    carried = lambda x: lax.scan(lambda b, _: (b, None), x == 1.0, None, 2)[0]
    same = lambda x: jnp.where(carried(x), 1.0, x)
    jump = lambda x: jnp.where(carried(x), 5.0, x)
    assert jr.find_kinks(same, F32(1.0)) == []
    g, cert = jr.certified_grad(same)(F32(1.0))
    assert cert.certified and float(g) == 1.0
    assert [s.kind for s in jr.find_kinks(jump, F32(1.0))] == ["jump"]
    mixed = lambda x: lax.scan(lambda b, _: (jnp.floor(x) == 1.0, None), x == 1.0, None, 2)[0]
    plateau = lambda x: jnp.where(mixed(x), 1.0, x)
    sites = jr.find_kinks(plateau, F32(1.0))  # (and floor's own, tied in both iterations)
    assert [s.ties for s in sites if s.primitive == "select_n"] == [1]


@pytest.mark.parametrize(
    "f, x, grad",
    [
        # the middle element of 3 distinct values; the mean of the middle two of 4
        (jnp.median, [3.0, 1.0, 2.0], [0.0, 0.0, 1.0]),
        (jnp.median, [4.0, 1.0, 3.0, 2.0], [0.0, 0.0, 0.5, 0.5]),
        # 25th percentile of 5 values: position 0.25 * 4 = 1 exactly, the 2nd smallest
        (lambda v: jnp.percentile(v, 25.0), [5.0, 1.0, 4.0, 2.0, 3.0], [0, 0, 0, 1, 0]),
        # quantile 0.5 of 4: position 1.5, halfway between the 2nd and 3rd smallest
        (lambda v: jnp.quantile(v, 0.5), [1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 0.5, 0.0]),
    ],
)
def test_median_and_quantiles_of_distinct_values_are_smooth(f, x, grad):
    """With distinct values the order is locally fixed, so f is linear near x (the
    weights by hand beside each case). The interpolation position q (n - 1) is computed
    from constants alone: its floor at an integer never moves, so it is no site."""
    g, cert = jr.certified_grad(f)(F32(x))
    assert cert.certified and cert.method == "ad"
    np.testing.assert_allclose(np.asarray(g), grad, rtol=0, atol=1e-6)
    assert all(s.ties == 0 for s in jr.find_kinks(f, F32(x)))
    assert jr.check_linearization(f, F32(x)).verdict == "linear"


def test_a_constant_folded_switch_still_counts_where_the_input_reaches_it():
    """floor(c) of a constant is no site; floor(c + 0 * x) depends on x (formally): it
    is kept (the tie at an integer)."""
    const = lambda x: x * jnp.floor(F32(2.0))
    assert jr.find_kinks(const, F32(1.0)) == []
    formal = lambda x: x * jnp.floor(2.0 + 0.0 * x)
    assert [s.ties for s in jr.find_kinks(formal, F32(1.0))] == [1]


NORM = jnp.linalg.norm


@pytest.mark.parametrize(
    "f, x, d, true",
    [
        # relu(|x| + x) - relu(|x| - x) = 2x with |x| written sqrt(x * x): slope 2
        (lambda x: jax.nn.relu(jnp.sqrt(x * x) + x) - jax.nn.relu(jnp.sqrt(x * x) - x),
         0.0, 1.0, 2.0),
        # relu(||x||) = ||x||: slope ||d|| = 1 along e0
        (lambda v: jax.nn.relu(jnp.linalg.norm(v)), [0.0, 0.0], [1.0, 0.0], 1.0),
        # the triplet loss relu(||a - p|| - ||a - n|| + 1) at a = p, n = a + (1, 0): the
        # margin is -1 + 1 = 0, tied; along e0, ||a - p|| grows like t and ||a - n|| falls
        # like t: slope 2
        (lambda a: jax.nn.relu(NORM(a - 1.0) - NORM(a - F32([2.0, 1.0])) + 1.0),
         [1.0, 1.0], [1.0, 0.0], 2.0),
    ],
)  # fmt: skip
def test_a_tie_whose_tangent_is_not_a_number_is_undecided(f, x, d, true):
    """sqrt and norm at 0 have an infinite slope; times a zero tangent it is NaN, which
    cannot tell a tied relu's side (the rules took 0 and certified it). The true slope
    (``true``, by hand) needs more than first derivatives: a warning, no certificate."""
    with pytest.warns(jr.UndecidedTieWarning, match="not a number"):
        got = jr.directional_derivative(f, F32(x), F32(d))
    assert float(got) != true  # (what the rules can say; the warning is the point)
    _, cert = jr.certified_grad(f)(F32(x))
    assert not cert.certified and "not a number" in cert.reason


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_a_derivative_that_is_not_a_number_where_f_is_finite_warns(dtype):
    """norm(x) at 0 along d is |d| (3 for d = (1, 2, 2), by hand), but sqrt's infinite
    slope at 0 times a zero tangent is NaN: a NaN result must come with a warning. A NaN
    value of f (sqrt at -1) carries NaN derivatives as a matter of course: no warning."""
    x, d = jnp.zeros(3, dtype), jnp.array([1.0, 2.0, 2.0], dtype)
    with pytest.warns(jr.UndecidedTieWarning, match="not a number where f is finite") as w:
        got = jr.directional_derivative(jnp.linalg.norm, x, d)
    assert np.isnan(float(got)) and w[0].filename == __file__
    with pytest.warns(jr.UndecidedTieWarning, match="not a number where f is finite") as got:
        jr.ld_grad(jnp.linalg.norm)(x)
    assert got[0].filename == __file__  # attributed to the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(float(jr.directional_derivative(jnp.sqrt, jnp.array(-1.0, dtype), 1.0)))
        # away from 0 the same function is smooth: 1 along the unit direction d / 3
        got = jr.directional_derivative(jnp.linalg.norm, x + d, d / 3)
        assert float(got) == pytest.approx(1.0, rel=1e-6)


def test_the_certificate_says_where_stop_gradient_defines_the_gradient():
    """x * stop_gradient(x) has values x^2 (derivative 4 at 2); JAX's gradient is x = 2,
    the program's with stop_gradient's derivative 0. certified_grad returns JAX's and
    says so; without stop_gradient no such note."""
    sg = lax.stop_gradient
    g, cert = jr.certified_grad(lambda x: x * sg(x))(F32(2.0))
    assert float(g) == 2.0 and "stop_gradient" in cert.reason
    assert jr.check_linearization(lambda x: x * sg(x), F32(2.0)).verdict == "wrong_derivative"
    assert "stop_gradient" not in jr.certified_grad(lambda x: x * x)(F32(2.0))[1].reason


def test_a_repeated_singular_value_warns_in_the_lexicographic_functions():
    """The spectral norm at the identity along E12: sigma_max([[1, t], [0, 1]]) = 1 + t/2
    + O(t^2), slope 1/2; svd has no lexicographic rule there (JAX's JVP gives 0), so the
    directional derivative and ld_grad warn; at diag(2, 1) nothing is tied: no warning."""
    spectral = lambda a: jnp.linalg.norm(a, 2)
    e12 = jnp.asarray([[0.0, 1.0], [0.0, 0.0]])
    with pytest.warns(jr.UndecidedTieWarning, match="singular value"):
        jr.directional_derivative(spectral, jnp.eye(2), e12)
    with pytest.warns(jr.UndecidedTieWarning, match="singular value"):
        jr.ld_grad(spectral)(jnp.eye(2))
    two = jnp.diag(jnp.asarray([2.0, 1.0]))
    assert (
        _no_undecided_warning(lambda: float(jr.directional_derivative(spectral, two, e12))) == 0.0
    )


def test_a_repeated_eigenvalue_of_data_not_differentiated_is_no_tie():
    """x * max eig(M) with M = I (a repeated eigenvalue) fixed: f = x, gradient 1; the
    lexicographic gradient over x alone reads no tangent of M."""
    f = lambda x, m: x * jnp.max(jnp.linalg.eigvalsh(m))
    eye = jnp.eye(2, dtype=jnp.float32)
    assert _no_undecided_warning(lambda: float(jr.ld_grad(f)(F32(2.0), eye))) == 1.0
    assert jr.kink_sites(lambda x: f(x, eye), F32(2.0), F32(1.0)) == []
    # moving with x, the repeated eigenvalue is a tie (and so is the max over the two)
    h = lambda x: jnp.max(jnp.linalg.eigvalsh(x * eye))
    assert {s.primitive for s in jr.kink_sites(h, F32(2.0), F32(1.0)) if s.ties} == {
        "eigh",
        "reduce_max",
    }


def test_an_equality_guard_matters_only_where_it_holds():
    """where(x == 0, 0, sin(x)) is sin(x) (the cases agree at 0). At 0 jax.grad follows the
    == case (0) while the derivative is cos(0) = 1: the lexicographic gradient, certified.
    At 1 the test does not hold: jax.grad's cos(1), certified as AD's own."""
    f = lambda x: jnp.where(x == 0.0, 0.0, jnp.sin(x))
    g, cert = jr.certified_grad(f)(jnp.asarray(0.0))
    assert (cert.method, cert.certified, float(g)) == ("lexicographic", True, 1.0)
    g, cert = jr.certified_grad(f)(jnp.asarray(1.0))
    assert (cert.method, cert.certified) == ("ad", True)
    assert float(g) == pytest.approx(np.cos(1.0), rel=1e-15)
    # a tied kink that is no equality test is not explained as one
    g, cert = jr.certified_grad(jax.nn.relu)(jnp.asarray(0.0))
    assert cert.certified and cert.reason.startswith("1 site(s) tied")
    assert "equality" not in cert.reason
