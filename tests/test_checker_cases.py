"""The checker on functions taken from the literature and from JAX's issue tracker, with
the verdict a careful analyst gives by hand.

Sources: Kakade & Lee (2018) and Bolte & Pauwels (2020) for AD returning a wrong
derivative where f is smooth; JAX's FAQ and issues for the NaN gradient of ``norm`` and
``sqrt`` at 0, the ``jnp.where`` trap (a NaN cotangent from the branch not taken),
``maximum(x, 0)`` / pooling / ``sort`` / ``top_k`` ties, straight-through estimators,
NaN guards, ``cond``/``while`` loops and mixed precision. Each expected verdict follows
from the function's definition; tolerances are stated where a slope is compared.
"""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax import lax

import jaxrelu as jr

f32, f64, bf16, f16 = jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16


def A(v, dt=f32):
    return jnp.asarray(v, dt)


@jax.custom_vjp
def _cube(x):
    return x**3


_cube.defvjp(lambda x: (x**3, x), lambda x, g: (3 * x**2 * g,))


@jax.custom_jvp
def _bad_relu(x):  # a custom rule that is wrong everywhere: slope 2 for x > 0
    return jnp.maximum(x, 0.0)


_bad_relu.defjvps(lambda g, ans, x: jnp.where(x > 0, 2.0 * g, 0.0))

CASES = [
    # (id, f, x0, d, verdict(s))
    (
        "kakade-lee relu(x)-relu(-x) at 0",
        lambda x: jr.relu(x) - jr.relu(-x),
        0.0,
        1.0,
        "wrong_derivative",
    ),
    (
        "bolte-pauwels relu(x)-relu(-x)-x",
        lambda x: jax.nn.relu(x) - jax.nn.relu(-x) - x,
        0.0,
        1.0,
        "wrong_derivative",
    ),
    (
        "max(min(x,0),x) = x",
        lambda x: jnp.maximum(jnp.minimum(x, 0.0), x),
        0.0,
        1.0,
        "wrong_derivative",
    ),
    ("relu at its kink", jr.relu, 0.0, 1.0, "kink"),
    ("abs at its kink", jnp.abs, 0.0, -1.0, "kink"),
    ("maximum(x, 0) tie", lambda x: jnp.maximum(x, 0.0), 0.0, 1.0, "kink"),
    ("clip at the lower end", lambda x: jnp.clip(x, -1.0, 1.0), -1.0, 1.0, "kink"),
    ("max(x, x^2) at 1", lambda x: jnp.maximum(x, x**2), 1.0, 1.0, "kink"),
    ("relu(relu(x) - 0.5) at 0 (flat)", lambda x: jr.relu(jr.relu(x) - 0.5), 0.0, 1.0, "linear"),
    ("relu away from 0", jr.relu, 1.5, -1.0, "linear"),
    ("floor at an integer", jnp.floor, 1.0, 1.0, "discontinuous"),
    ("floor(x + 2) at 1", lambda x: jnp.floor(x + 2.0), 1.0, 1.0, "discontinuous"),
    ("sign at 0", jnp.sign, 0.0, 1.0, "discontinuous"),
    ("step by where", lambda x: jnp.where(x > 0, 1.0, 0.0) + x, 0.0, 1.0, "discontinuous"),
    (
        "small jump 1e-4 in float32",
        lambda x: 1 + x + jnp.where(x > 0, 1e-4, 0.0),
        0.0,
        1.0,
        "discontinuous",
    ),
    ("heaviside at 0", lambda x: jnp.heaviside(x, 0.5), 0.0, 1.0, "discontinuous"),
    ("sqrt(|x|) at 0 (not Lipschitz)", lambda x: jnp.sqrt(jnp.abs(x)), 0.0, 1.0, "inconclusive"),
    ("sqrt(x^2) at 0 (NaN gradient)", lambda x: jnp.sqrt(x**2), 0.0, 1.0, "kink"),
    (
        "where-sqrt trap, forward mode",
        lambda x: jnp.where(x > 0, jnp.sqrt(x), 0.0),
        -1.0,
        1.0,
        "linear",
    ),
    (
        "where(x==0, 0, sin x) at 0",
        lambda x: jnp.where(x == 0, 0.0, jnp.sin(x)),
        0.0,
        1.0,
        "wrong_derivative|smooth",
    ),
    ("isnan guard", lambda x: jnp.where(jnp.isnan(x), 0.0, x**2), 1.0, 1.0, "smooth"),
    ("nan_to_num", lambda x: jnp.nan_to_num(x) ** 2, 1.0, 1.0, "smooth"),
    (
        "cond relu (branches agree)",
        lambda x: lax.cond(x > 0, lambda v: v, lambda v: 0.0 * v, x),
        0.0,
        1.0,
        "kink",
    ),
    (
        "straight-through round",
        lambda x: x + lax.stop_gradient(jnp.round(x) - x),
        0.3,
        1.0,
        "wrong_derivative",
    ),
    ("custom_jvp with a wrong rule", _bad_relu, 1.0, 1.0, "wrong_derivative"),
    ("sin", jnp.sin, 0.3, 1.0, "smooth"),
    (
        "sin in bfloat16 inside float32",
        lambda x: jnp.sin(x.astype(bf16)).astype(f32),
        0.5,
        1.0,
        "smooth|inconclusive",
    ),
    ("tanh * relu smooth away from 0", lambda x: jnp.tanh(x) * jr.relu(x), 0.7, 1.0, "smooth"),
    (
        "while loop with float test",
        lambda x: lax.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, 1.5 * s[1]), (0, x))[1],
        0.7,
        1.0,
        "linear",
    ),
]


# float32 where the precision is part of the case; every case in float64
IN_FLOAT32 = {
    "small jump 1e-4 in float32",
    "floor(x + 2) at 1",
    "sin in bfloat16 inside float32",
    "kakade-lee relu(x)-relu(-x) at 0",
    "relu at its kink",
    "sqrt(x^2) at 0 (NaN gradient)",
    "straight-through round",
    "cond relu (branches agree)",
}
SCALAR = [(*c, f64) for c in CASES] + [(*c, f32) for c in CASES if c[0] in IN_FLOAT32]


@pytest.mark.parametrize(
    "name, f, x0, d, want, dt", SCALAR, ids=[f"{c[0]}-{jnp.dtype(c[-1]).name}" for c in SCALAR]
)
def test_scalar_cases(name, f, x0, d, want, dt):
    rep = jr.check_linearization(f, A(x0, dt), A(d, dt))
    assert rep.verdict in want.split("|"), str(rep)
    _exact_slopes_agree_with_measured(rep)


def _exact_slopes_agree_with_measured(rep):
    """The one-sided slopes read from the jaxpr (directional_derivative) equal the ones
    measured from values of f, wherever both exist (not at jumps or non-Lipschitz points)."""
    if rep.verdict in ("discontinuous", "inconclusive"):
        return
    for exact, measured in (
        (rep.exact_slope_plus, rep.slope_plus),
        (rep.exact_slope_minus, rep.slope_minus),
    ):
        exact, measured = np.ravel(exact), np.ravel(measured)
        if np.all(np.isfinite(exact)) and np.all(np.isfinite(measured)):
            tol = 1e-3 if rep.dtype in ("float32", "bfloat16", "float16") else 1e-6
            np.testing.assert_allclose(exact, measured, rtol=tol, atol=tol, err_msg=str(rep))


VECTOR_CASES = [
    (
        "norm^2 at 0 (NaN gradient, smooth f)",
        lambda x: jnp.linalg.norm(x) ** 2,
        [0.0, 0.0],
        [1.0, 0.0],
        "wrong_derivative",
    ),
    ("norm at 0 (NaN gradient, kink)", jnp.linalg.norm, [0.0, 0.0], [1.0, 0.0], "kink"),
    (
        "max pooling tie",
        lambda v: lax.reduce_window(v, -jnp.inf, lax.max, (2,), (2,), "VALID").sum(),
        [1.0, 1.0],
        [1.0, -1.0],
        "kink",
    ),
    ("reduce max tie", jnp.max, [1.0, 1.0, 0.0], [1.0, -1.0, 0.0], "kink"),
    ("sort tie", lambda x: jnp.sort(x)[0], [1.0, 1.0], [1.0, -1.0], "kink"),
    ("argsort indexing", lambda x: x[jnp.argsort(x)][0], [1.0, 1.0], [1.0, -1.0], "kink"),
    (
        "top_k, tie with the element left out",
        lambda x: lax.top_k(x, 1)[0][0],
        [1.0, 1.0, 0.0],
        [1.0, -1.0, 0.0],
        "kink",
    ),
    ("complex abs at 0", lambda z: jnp.abs(z[0] + 1j * z[1]), [0.0, 0.0], [1.0, 1.0], "kink"),
    (
        "logsumexp at a tie of its max shift",
        jax.nn.logsumexp,
        [1.0, 2.0, 2.0],
        [1.0, -1.0, 0.5],
        "smooth",
    ),
    ("softmax at a tie", jax.nn.softmax, [1.0, 2.0, 2.0], [1.0, -1.0, 0.5], "smooth"),
    (
        "cross-entropy at a tie",
        lambda z: -jax.nn.log_softmax(z)[1],
        [1.0, 2.0, 2.0],
        [1.0, -1.0, 0.5],
        "smooth",
    ),
    (
        "jnp.select, jump at x = 1",
        lambda x: jnp.select([x < 0, x < 1], [x**2, x], 2 * x)[0],
        [1.0],
        [1.0],
        "discontinuous",
    ),
    (
        "jnp.piecewise, kink at 0",
        lambda x: jnp.piecewise(x, [x < 0], [lambda v: -v, lambda v: v])[0],
        [0.0],
        [1.0],
        "kink",
    ),
    (
        "scalar select_n over arrays",
        lambda x: jnp.sum(lax.select_n(x[0] > 0, x, 2 * x)),
        [0.0, 1.0],
        [1.0, 1.0],
        "discontinuous",
    ),
]


@pytest.mark.parametrize("name, f, x0, d, want", VECTOR_CASES, ids=[c[0] for c in VECTOR_CASES])
def test_vector_cases(name, f, x0, d, want):
    rep = jr.check_linearization(f, A(x0, f64), A(d, f64))
    assert rep.verdict in want.split("|"), str(rep)
    _exact_slopes_agree_with_measured(rep)


def test_slopes_exact_and_measured_agree_with_the_definition():
    rep = jr.check_linearization(lambda x: jnp.maximum(x, x**2), A(1.0, f64), A(1.0, f64))
    assert rep.slope_plus == pytest.approx(2.0, rel=1e-6)  # d/dx x^2 at 1
    assert rep.slope_minus == pytest.approx(1.0, rel=1e-6)
    assert (rep.exact_slope_plus, rep.exact_slope_minus) == (2.0, 1.0)
    rep = jr.check_linearization(lambda x: jr.relu(x) - jr.relu(-x), A(0.0, f64), A(1.0, f64))
    assert "AD returned 0" in rep.reason and "slope 1" in rep.reason  # the right derivative


def test_nan_derivative_reasons_name_the_nan():
    rep = jr.check_linearization(lambda x: jnp.linalg.norm(x), jnp.zeros(2), jnp.array([1.0, 0.0]))
    assert rep.verdict == "kink" and "not finite (nan)" in rep.reason
    assert (rep.slope_plus, rep.slope_minus) == pytest.approx((1.0, -1.0))


def test_two_custom_rules_of_one_factory_are_checked_each_by_its_own():
    """Two ``custom_jvp`` functions made by one factory have the same program text and
    rule name; only the rule differs (cos: right; 2x: wrong, AD 1 at 0.5 by ``jax.jvp``).
    Checked one after the other (a notebook cell rerun after a fix does this), each must
    be checked with its own rule, not the first one's compiled program."""

    def make(rule):
        @jax.custom_jvp
        def mysin(x):
            return jnp.sin(x)

        mysin.defjvp(lambda p, t: (jnp.sin(p[0]), rule(p[0]) * t[0]))
        return mysin

    x0 = A(0.5, f64)
    for wrong_first in (False, True):
        right, wrong = make(jnp.cos), make(lambda x: 2 * x)
        assert float(jax.jvp(wrong, (x0,), (A(1.0, f64),))[1]) == 1.0
        reps = {}
        for name in ("wrong", "right") if wrong_first else ("right", "wrong"):
            reps[name] = jr.check_linearization(right if name == "right" else wrong, x0)
        assert reps["right"].verdict == "smooth"
        assert reps["wrong"].verdict == "wrong_derivative"
        assert float(reps["wrong"].ad_slope) == 1.0


# --------------------------------------------------------------- modes, argnums


def test_custom_vjp_checked_in_reverse_mode_and_auto_says_why():
    f = lambda x: jnp.sum(_cube(x))
    x = jnp.array([0.5, -1.0])
    rep = jr.check_linearization(f, x, mode="auto")
    assert (rep.verdict, rep.mode) == ("smooth", "rev")
    assert "custom_vjp" in rep.reason
    with pytest.raises(TypeError, match="forward-mode"):
        jr.check_linearization(f, x, mode="fwd")


def test_reverse_only_nan_of_the_where_trap():
    f = lambda x: jnp.where(x > 0, jnp.sqrt(x), 0.0)
    assert jr.check_linearization(f, A(-1.0), A(1.0), mode="fwd").verdict == "linear"
    rep = jr.check_linearization(f, A(-1.0), A(1.0), mode="rev")
    assert rep.verdict == "wrong_derivative" and math.isnan(rep.ad_slope)


def test_reverse_mode_projects_vector_outputs():
    f = lambda x: jnp.stack([jnp.sin(x[0]) * x[1], jr.relu(x[1])])
    x, d = jnp.array([0.3, 0.0]), jnp.array([0.0, 1.0])
    fwd = jr.check_linearization(f, x, d, mode="fwd")
    rev = jr.check_linearization(f, x, d, mode="rev")
    assert fwd.verdict == rev.verdict == "kink"
    assert np.ndim(rev.ad_slope) == 0  # w^T J d: one number


def test_argnums_selects_the_perturbed_arguments():
    f = lambda a, b, c: jnp.sum(a * jr.relu(b)) + c
    args = (jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), jnp.array(3.0))
    assert jr.check_linearization(f, args, jnp.array([1.0, 0.0]), argnums=1).verdict == "kink"
    assert jr.check_linearization(f, args, jnp.array([1.0, 1.0]), argnums=0).verdict == "linear"
    rep = jr.check_linearization(f, args, (jnp.array([1.0, 0.0]), jnp.array(1.0)), argnums=(0, 2))
    assert rep.verdict == "linear"
    res = jr.check_many(f, jax.tree.map(lambda v: jnp.stack([v, v + 1]), args), argnums=0)
    assert res.verdict.tolist() == ["linear", "linear"]


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(x0=jnp.array(jnp.nan)), ValueError, "`x0`.*NaN"),
        (dict(x0=jnp.array([1.0, jnp.inf])), ValueError, "`x0`.*inf"),
        (dict(x0=jnp.zeros(0)), ValueError, "`x0`.*empty"),
        (dict(direction=jnp.array(jnp.nan)), ValueError, "`direction`"),
        (dict(direction=jnp.array(0.0)), ValueError, "`direction` is zero"),
        (dict(mode="backward"), ValueError, "`mode`"),
        (dict(argnums=0), TypeError, "tuple of all positional arguments"),
        (dict(x0=jnp.array(1)), TypeError, "`x0`"),
        (dict(f=3.0), TypeError, "callable"),
        (dict(steps=[1e-1, 1e-2]), ValueError, "`steps`"),
        (dict(rtol=-1.0), ValueError, "`rtol`"),
    ],
)
def test_bad_input_is_one_clear_error(kwargs, exc, match):
    args = dict(f=jnp.sin, x0=jnp.array(1.0), direction=None)
    args.update(kwargs)
    f, x0, d = args.pop("f"), args.pop("x0"), args.pop("direction")
    with pytest.raises(exc, match=match):
        jr.check_linearization(f, x0, d, **args)


def test_check_many_reports_a_bad_point_per_point():
    xs = jnp.array([-1.0, jnp.nan, 0.0])
    res = jr.check_many(jr.relu, xs, jnp.ones(3))
    assert res.verdict.tolist() == ["linear", "inconclusive", "kink"]
    assert "x0s[1]" in res.reports[1].reason


def test_check_many_on_no_points_is_one_clear_error():
    with pytest.raises(ValueError, match="`x0s` holds no points"):
        jr.check_many(jnp.sin, jnp.zeros((0,)))


@pytest.mark.parametrize("f", [lambda v: 1.0, lambda v: (v, 2.0)], ids=["const", "pair"])
def test_an_output_that_is_a_python_constant_is_checked(f):
    """``jax.jvp`` accepts a function returning a Python float (the program's output is a
    literal); so must the checker: f is affine (constant, or the identity beside one)."""
    assert jr.check_linearization(f, A(0.5)).verdict == "linear"
    assert jr.check_many(f, jnp.array([0.5, -2.0])).verdict.tolist() == ["linear"] * 2
    err = jr.neighbourhood_error(f, A(0.5), jnp.array([0.1, 0.01]))
    assert np.asarray(err.error).tolist() == [0.0, 0.0]


# ------------------------------------------------- invariances (metamorphic)


def test_verdict_does_not_depend_on_the_last_bit_of_x0():
    rng = np.random.default_rng(0)
    for dt in (f32, f64):
        cs = jnp.asarray(rng.uniform(-10, 10, 1000), dt)
        xs = cs
        f = lambda x, c: jr.relu(x - c)
        res = jr.check_many(f, (xs, cs), jnp.ones_like(xs), argnums=0)
        assert res.counts["kink"] == 1000, res
        cs = cs[:64]
        # one ulp away the kink is one ulp away: never a confident kink or linear claim
        # that contradicts the geometry; and two points one ulp apart on a smooth
        # function get the same verdict
        smooth = jr.check_many(jnp.sin, jnp.stack([cs, jnp.nextafter(cs, jnp.inf)]).reshape(-1))
        assert set(smooth.verdict.tolist()) == {"smooth"}


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(["relu linear", "sin", "abs shifted", "maximum"]),
    st.floats(0.1, 4.0),
    st.sampled_from([f32, f64]),
)
def test_one_ulp_does_not_change_a_verdict_where_the_answer_is_constant(case, x, dt):
    """Where the true answer is the same on a neighbourhood (relu on x > 0: linear; sin:
    smooth; |x - 5| and maximum(x, 4.5) below their kinks: linear), x0 and the next float
    get the same verdict, and it is the true one."""
    f, want = {
        "relu linear": (jr.relu, "linear"),
        "sin": (jnp.sin, "smooth"),
        "abs shifted": (lambda v: jnp.abs(v - 5.0), "linear"),
        "maximum": (lambda v: jnp.maximum(v, 4.5), "linear"),
    }[case]
    x0 = A(x, dt)
    x1 = jnp.nextafter(x0, jnp.asarray(jnp.inf, dt))
    v0 = jr.check_linearization(f, x0, A(1.0, dt)).verdict
    v1 = jr.check_linearization(f, x1, A(1.0, dt)).verdict
    assert v0 == v1 == want


def test_an_eps_close_kink_in_a_relu_network_is_linear_with_its_radius():
    """A unit planted 2^-10 away along d: f is affine on [x0, x0 + 2^-10 d] (piecewise
    linear, no switch before); the checker says linear, and the kink radius is 2^-10."""
    w = jnp.array([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0]], f32)
    x = jnp.array([0.5, -0.25], f32)
    z = x @ w
    b = -z + jnp.array([-(2.0**-10), 0.3, -0.4], f32)  # unit 0 reaches 0 at t = 2^-10
    f = lambda v: jnp.sum(jr.relu(v @ w + b) * jnp.array([1.0, 2.0, -1.0], f32))
    d = jnp.array([1.0, 0.0], f32)  # unit 0 moves at rate w[0, 0] = 1
    rep = jr.check_linearization(f, x, d)
    assert rep.verdict == "linear", str(rep)
    assert rep.kink_radius == pytest.approx(2.0**-10, rel=1e-3)


@pytest.mark.parametrize("scale", [2.0**-3, 2.0**5])
def test_scaling_f_and_d_by_powers_of_two_changes_nothing(scale):
    f = lambda x: jnp.maximum(jnp.sin(x), 0.5 * x)
    x0 = A(0.0, f64)
    base = jr.check_linearization(f, x0, A(1.0, f64))
    assert base.verdict == "kink"
    scaled_f = jr.check_linearization(lambda x: scale * f(x), x0, A(1.0, f64))
    scaled_d = jr.check_linearization(f, x0, A(scale, f64))
    assert scaled_f.verdict == scaled_d.verdict == base.verdict
    assert scaled_f.slope_plus == pytest.approx(scale * base.slope_plus)
    assert scaled_d.slope_plus == pytest.approx(scale * base.slope_plus)


def test_reversing_d_swaps_the_one_sided_slopes():
    f = lambda x: jnp.maximum(x, x**2)
    a = jr.check_linearization(f, A(1.0, f64), A(1.0, f64))
    b = jr.check_linearization(f, A(1.0, f64), A(-1.0, f64))
    assert b.slope_plus == pytest.approx(-a.slope_minus) and b.slope_minus == pytest.approx(
        -a.slope_plus
    )
    assert a.verdict == b.verdict == "kink"


# ------------------------------------------------ low-precision soundness


REGISTRY_KINKS = [
    (name, k.at, s)
    for name, info in jr.REGISTRY.items()
    if info.arity == 1
    for k in info.kinks
    for s in (0.0, 0.5, 1.0)
]


@pytest.mark.parametrize(
    "dt", [f16, bf16, f32, f64], ids=["float16", "bfloat16", "float32", "float64"]
)
def test_at_every_registry_kink_never_a_wrong_derivative(dt):
    """Property: at a kink, whatever the kink value and the precision, the verdict is kink
    or inconclusive (the one-sided slopes differ there, so AD cannot be wrong about a
    derivative that does not exist)."""
    verdicts = []
    for name, at, s in REGISTRY_KINKS:
        info = jr.REGISTRY[name]
        # the kink value as an array: a constant of the traced program, one compilation
        f = info.with_kink_values([jnp.asarray(s, dt)] * len(info.kinks))
        rep = jr.check_linearization(f, A(at, dt), A(1.0, dt))
        verdicts.append(rep.verdict)
        assert rep.verdict in ("kink", "inconclusive"), (name, at, s, str(rep))
    if dt in (f32, f64):
        assert set(verdicts) == {"kink"}


def _relu_net(seed, widths, dt):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(widths))
    ws = [
        (jax.random.normal(k, (a, b), f32) / np.sqrt(a)).astype(dt)
        for k, a, b in zip(keys, widths[:-1], widths[1:])
    ]

    def f(x):
        for w in ws[:-1]:
            x = jr.relu(x @ w + jnp.asarray(0.05, dt))
        return (x @ ws[-1])[0]

    return f


def _unit_rows(key, n, dim):
    d = jax.random.normal(key, (n, dim), f32)
    return d / jnp.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("dt", [f16, bf16], ids=["float16", "bfloat16"])
def test_wide_low_precision_relu_networks_are_never_wrong_derivative(dt):
    f = _relu_net(0, (32, 256, 256, 256, 1), dt)
    f64_ref = _relu_net(0, (32, 256, 256, 256, 1), f64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (12, 32), f32).astype(dt)
    ds = _unit_rows(jax.random.PRNGKey(2), 12, 32).astype(dt)
    res = jr.check_many(f, xs, ds)
    for i, rep in enumerate(res.reports):
        ad64 = float(jax.jvp(f64_ref, (xs[i].astype(f64),), (ds[i].astype(f64),))[1])
        if abs(rep.ad_slope - ad64) <= 1e-2 * (1 + abs(ad64)):  # AD agrees with float64
            assert rep.verdict != "wrong_derivative", str(rep)


def test_float32_relu_network_inconclusive_only_when_a_switch_is_unresolvably_close():
    f = _relu_net(3, (8, 64, 64, 1), f32)
    xs = jax.random.normal(jax.random.PRNGKey(2), (128, 8), f32)
    ds = _unit_rows(jax.random.PRNGKey(3), 128, 8)
    res = jr.check_many(f, xs, ds)
    for i, rep in enumerate(res.reports):
        assert rep.verdict in ("linear", "inconclusive"), str(rep)
        if rep.verdict == "inconclusive":
            near = min(jr.kink_radius(f, xs[i], ds[i]), jr.kink_radius(f, xs[i], -ds[i]))
            assert near < rep.steps[-1], str(rep)  # closer than the smallest step
    assert res.counts["linear"] >= 120


# -------------------------------- rounding inside f: values that move in quanta


def test_one_minus_cos_in_float32_is_smooth_where_its_values_move_in_quanta():
    """1 - cos(x) near 0 in float32: cos(x) ~ 1 is stored to 6e-8, so f(x0 + h) = f(x0)
    exactly at steps below ~6e-8 / sin(x0), where AD's step is not zero; read there, the
    remainders |h AD| looked like a wrong derivative (and, at some points, a jump). f is
    entire and AD's sin(x0) is right (float64 oracle below): smooth at every point."""
    xs = jnp.linspace(0.001, 0.05, 40, dtype=f32)
    np.testing.assert_allclose(
        np.asarray(jax.vmap(jax.grad(lambda x: 1 - jnp.cos(x)))(xs)),
        np.sin(np.asarray(xs, np.float64)),
        rtol=4 * 2.0**-23,  # sin in float32: a few ulps
    )
    rep = jr.check_many(lambda x: 1 - jnp.cos(x), xs, jnp.ones(40, f32))
    assert rep.counts["smooth"] == 40
    one = jr.check_linearization(lambda x: 1 - jnp.cos(x), A(0.01), A(1.0))
    assert one.verdict == "smooth" and "quanta" in one.reason


@pytest.mark.parametrize(
    "dt, z0, d",
    [
        (f32, [10.0, 0.0, 0.0], None),  # the default (random) direction
        (f32, [10.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        (f64, [30.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
        (f16, [4.0, 0.0, 0.0], [0.0, 1.0, 0.0]),  # was "discontinuous"
    ],
)
def test_a_confident_softmax_cross_entropy_is_never_a_wrong_derivative(dt, z0, d):
    """-log_softmax(z)[0] = log(1 + sum_i exp(z_i - z_0)) is smooth; its gradient is
    softmax(z) - e_0 (float64 oracle). With z_0 far ahead the loss is tiny while
    logsumexp ~ z_0 rounds to its ulp: f does not move at small steps. (AD's p_0 - 1 is a
    difference of numbers near 1: right to a few ulps of 1, the tolerance.)"""
    ce = lambda z: -jax.nn.log_softmax(z)[0]
    z = np.asarray(z0, np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(
        np.asarray(jax.grad(ce)(A(z0, dt)), np.float64),
        p - np.eye(3)[0],
        rtol=1e-5,
        atol=4 * float(jnp.finfo(dt).eps),
    )
    rep = jr.check_linearization(ce, A(z0, dt), None if d is None else A(d, dt))
    assert rep.verdict == "smooth", rep.reason


@pytest.mark.parametrize("dt, lead", [(f32, 12.0), (f64, 37.0)])
def test_many_confident_cross_entropies_are_never_a_jump_or_a_wrong_derivative(dt, lead):
    """The same loss at 30 random confident logits, checked together: ``check_many``
    evaluated f(x0) for the differences as the linearization's primal, another program
    that XLA rounded differently from the values at the steps (a reduction summed in
    another order), and the one-ulp offset read as a jump at the smallest steps (one
    ``discontinuous`` in each precision). The loss is smooth (an analytic function of
    z): neither a jump, a kink nor a wrong derivative may be claimed; its values are
    quantized, so ``inconclusive`` and ``linear`` (within precision) are honest."""
    z = jax.random.normal(jax.random.PRNGKey(1), (30, 5), f64) + jnp.array([lead, 0, 0, 0, 0])
    d = jax.random.normal(jax.random.PRNGKey(2), (30, 5), f64)
    d = d / jnp.linalg.norm(d, axis=1, keepdims=True)
    ce = lambda v: -jax.nn.log_softmax(v)[0]
    counts = jr.check_many(ce, z.astype(dt), d.astype(dt)).counts
    assert counts["discontinuous"] + counts["wrong_derivative"] + counts["kink"] == 0, counts
    assert counts["smooth"] >= 10, counts


@pytest.mark.parametrize(
    "dt, a, act",
    [(f32, 1e6, jnp.tanh), (f64, 1e12, jnp.tanh), (f32, 4e6, lambda z: 4 * jax.nn.sigmoid(z))],
)
def test_a_steep_smooth_function_is_no_wrong_derivative(dt, a, act):
    """tanh(a x) at 0 is analytic with derivative a, which AD gives exactly (oracle: a
    float64 central difference at h = 1e-3 / a). Its curvature lives on the scale 1 / a,
    far below the largest steps, so the smallest steps show its truncation (order 1
    where it saturates, then 3), which must not be read as rounding noise: the floor
    raised above it hid the order-3 steps and left the saturated ones' slope, reported
    as a wrong derivative. (4 sigmoid(z) has slope 1 at 0, as tanh; in float32 its tail
    falls into the rounding of 2 at the smallest steps.)"""
    f = lambda x: jnp.sum(act(a * x))
    h = 1e-3 / a
    x64 = jnp.array([h], f64)
    central = float((f(x64) - f(-x64)) / (2 * h))
    assert central == pytest.approx(a, rel=1e-6)
    assert float(jax.grad(f)(jnp.zeros(1, dt))[0]) == pytest.approx(a, rel=1e-6)
    rep = jr.check_linearization(f, jnp.zeros(1, dt), jnp.ones(1, dt))
    assert rep.verdict == "smooth", rep.reason


@pytest.mark.parametrize("dt", [f32, f64])
def test_values_that_never_move_are_no_rounding(dt):
    """x - stop_gradient(x) is 0 everywhere (derivative 0), AD says 1: f never moves at
    any step, so no quantum is seen and the wrong derivative stands; a straight-through
    estimator's round (stairs of 1, far coarser than rounding) is f's own."""
    sg = lax.stop_gradient
    for f in (lambda x: x - sg(x), lambda x: x + sg(jnp.round(x) - x)):
        assert jr.check_linearization(f, A(0.3, dt), A(1.0, dt)).verdict == "wrong_derivative"


@pytest.mark.parametrize("dt", [f32, f64])
def test_a_kink_at_a_double_eigenvalue_that_rounding_hides_is_not_linear(dt):
    """1e6 + (largest eigenvalue of [[0, x], [x, 0]]) = 1e6 + |x| (hand derivation): a kink
    at 0 with one-sided slopes 1 and -1, where AD says 0. In float32 (an ulp of 1e6 is
    1/16) every step small enough to read leaves f on the floor, and the jaxpr cannot give
    eigh's exact one-sided slopes at the tie: never ``linear``. In float64 the slopes are
    resolved: a kink."""
    swap = jnp.array([[0.0, 1.0], [1.0, 0.0]], dt)
    f = lambda x: 1e6 + jnp.linalg.eigvalsh(swap * x[0])[1]
    rep = jr.check_linearization(f, jnp.zeros(1, dt))
    assert rep.verdict == ("inconclusive" if dt == f32 else "kink"), rep.reason
    if dt == f32:
        assert "eigh" in rep.reason


@pytest.mark.parametrize("dt", [f32, f64])
def test_a_huge_element_the_direction_leaves_alone_does_not_set_the_steps(dt):
    """A softmax over scores masked with -1e9 (the transformer idiom), along a direction
    that leaves the masked score alone: softmax is smooth there and JAX's derivative is
    right (NumPy float64 central differences of the unmasked softmax agree to 1e-6). The
    steps must be scaled to the scores that move, not to 1e9: from 1e9 down, none is small
    enough to see the derivative (it was ``wrong_derivative`` in float32)."""
    s0 = jnp.array([0.3, 1.2, -0.4, -1e9], dt)
    d = jnp.array([1.0, 0.5, 0.0, 0.0], dt)
    v, u, h = np.array([0.3, 1.2, -0.4]), np.array([1.0, 0.5, 0.0]), 1e-6
    sm = lambda z: np.exp(z - z.max()) / np.sum(np.exp(z - z.max()))
    oracle = (sm(v + h * u) - sm(v - h * u)) / (2 * h)
    np.testing.assert_allclose(jax.jvp(jax.nn.softmax, (s0,), (d,))[1][:3], oracle, atol=1e-6)
    rep = jr.check_linearization(jax.nn.softmax, s0, d)
    assert rep.verdict == "smooth", rep.reason
    assert rep.steps[0] <= 2.0  # (the scale of the scores that move)
    many = jr.check_many(jax.nn.softmax, jnp.stack([s0, s0.at[0].set(-0.3)]), jnp.stack([d, d]))
    assert many.verdict.tolist() == ["smooth", "smooth"]


@pytest.mark.parametrize("dt", [f32, f64])
def test_a_nan_derivative_at_a_kink_that_rounding_flattens_is_no_smooth_slope(dt):
    """arccos(cos x) = |x| near 0, and the angle between u = (1, h) and v = (1, 0) is
    atan(|h|) (NumPy float64 below): kinks with one-sided slopes 1 and -1, where AD is
    NaN. cos(h) rounds to 1 up to h ~ sqrt(eps), so f is 0 at the smallest steps: the
    slopes read there (0 and 0) are rounding's, never 'differentiable with slope 0'. The
    where trap (f = 0 for x < 0, reverse-mode NaN at -0.5) stays a wrong derivative."""
    v = jnp.array([1.0, 0.0], dt)
    angle = lambda u: jnp.arccos(jnp.clip(u @ v / (jnp.linalg.norm(u) * jnp.linalg.norm(v)), -1, 1))
    for h in (1e-1, 1e-2):  # (float32 rounds the angle's cosine: 2% off at 1e-3)
        assert np.arccos(1 / np.hypot(1.0, h)) == pytest.approx(np.arctan(h), rel=1e-6)
        assert float(angle(jnp.array([1.0, h], dt))) == pytest.approx(np.arctan(h), rel=1e-2)
    for f, x0, d in (
        (lambda x: jnp.arccos(jnp.cos(x)), A(0.0, dt), A(1.0, dt)),
        (angle, v, jnp.array([0.0, 1.0], dt)),
    ):
        rep = jr.check_linearization(f, x0, d)
        assert math.isnan(rep.ad_slope)
        assert rep.verdict in ("kink", "inconclusive"), rep.reason
    trap = lambda x: jnp.where(x > 0, jnp.sqrt(x), 0.0)
    assert jr.check_linearization(trap, A(-0.5, dt), A(1.0, dt), mode="rev").verdict == (
        "wrong_derivative"
    )


def _sin_rule(rel):
    @jax.custom_jvp
    def mysin(x):
        return jnp.sin(x)

    mysin.defjvp(lambda p, t: (jnp.sin(p[0]), (1 + rel) * jnp.cos(p[0]) * t[0]))
    return mysin


@pytest.mark.parametrize(
    "dt, rel, x0", [(f32, 1e-3, 1.0), (f32, 1e-3, 2.0), (f32, 3e-4, 0.5), (f64, 1e-8, 1.0)]
)
def test_a_custom_rule_slightly_off_is_a_wrong_derivative(dt, rel, x0):
    """sin with the rule (1 + rel) cos: AD is off by rel cos(x0) (thousands of ulps), yet
    the remainders over the fitted steps still shrink like h^1.8-1.9 (the h^2 term hides
    the small h term there): it was called smooth. The exact slopes (the primal's program,
    cos) and the measured ones agree with each other, and AD is off both."""
    rep = jr.check_linearization(_sin_rule(rel), A(x0, dt))
    assert rep.verdict == "wrong_derivative", rep.reason
    assert float(rep.ad_slope) == pytest.approx((1 + rel) * math.cos(x0), rel=1e-6)
    assert "as do the measured ones" in rep.reason
    assert jr.check_linearization(_sin_rule(0.0), A(x0, dt)).verdict == "smooth"


def test_a_right_custom_rule_whose_primal_differentiates_badly_stays_smooth():
    """sinc with an accurate rule (-x/3 near 0): the primal's own derivative, (x cos x -
    sin x) / x^2, cancels in float32 (-5.5e-4 at 1e-4, true -3.3e-5), so the exact slopes
    are off; the measured ones side with AD, and nothing is condemned."""

    @jax.custom_jvp
    def sinc(x):
        return jnp.where(x == 0, 1.0, jnp.sin(x) / x)

    def rule(p, t):
        (x,) = p
        slope = jnp.where(jnp.abs(x) < 1e-2, -x / 3, (x * jnp.cos(x) - jnp.sin(x)) / x**2)
        return sinc(x), slope * t[0]

    sinc.defjvp(rule)
    for x0 in (1e-4, 1e-3):
        rep = jr.check_linearization(sinc, A(x0))
        assert abs(rep.exact_slope_plus - (-x0 / 3)) > abs(rep.slope_plus - (-x0 / 3))
        assert rep.verdict == "smooth", rep.reason


@pytest.mark.parametrize("dt, x0", [(f32, -80.0), (f64, -700.0)])
def test_exp_near_its_underflow_is_never_linear(dt, x0):
    """exp at -80 (float32) or -700 (float64) is about 1e-35 or 1e-304, a normal number,
    and smooth with AD right (exp). Its remainders, e^x0 h^2 / 2, fall below the smallest
    normal at small steps and are flushed to 0: they said 'linear, with a nonsmooth point
    further out'. relu at -1 (remainders exactly 0, f exactly 0) stays linear."""
    assert 0 < float(jnp.exp(A(x0, dt))) < 1e-30
    rep = jr.check_linearization(jnp.exp, A(x0, dt), A(1.0, dt))
    assert rep.verdict in ("smooth", "inconclusive"), rep.reason
    assert jr.check_linearization(jr.relu, A(-1.0, dt), A(1.0, dt)).verdict == "linear"


# -------------------------- large arguments: f varies far below the problem's scale


@pytest.mark.parametrize(
    "fn, x0",
    [(jnp.sin, 1e12), (jnp.cos, 1e15), (jnp.sin, np.float32(1e5))],
    ids=["sin-1e12-float64", "cos-1e15-float64", "sin-1e5-float32"],
)
def test_sin_and_cos_at_large_arguments_are_smooth(fn, x0):
    # the steps start at |x0| and span many periods, where the remainder grows like h;
    # below a period it is the h^2 of any smooth f, down to the smallest step that moves
    # x0 (an ulp of 1e12 is 1e-4). Oracle: sin and cos are smooth, and AD's slope is
    # NumPy's float64 derivative at the same point
    x = jnp.asarray(x0, f64 if isinstance(x0, float) else f32)
    rep = jr.check_linearization(fn, x, jnp.ones_like(x))
    want = np.cos(float(x)) if fn is jnp.sin else -np.sin(float(x))
    assert abs(rep.ad_slope - want) <= 1e-6, str(rep)
    assert rep.verdict == "smooth", str(rep)
    assert 1.6 <= rep.order <= 2.6, str(rep)
    many = jr.check_many(fn, x[None], jnp.ones_like(x)[None])  # the batched floors alike
    assert many.verdict.tolist() == ["smooth"], many.reports[0]


def _sin_times(factor):
    @jax.custom_jvp
    def s(x):
        return jnp.sin(x)

    @s.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return jnp.sin(x), factor * jnp.cos(x) * t

    return lambda x: jnp.sum(s(x))


def test_a_direction_moving_a_huge_element_is_not_a_wrong_derivative():
    # sin at [0.5, 1e9] in float32 along (1, 1)/sqrt(2): no step both moves 1e9 (an ulp
    # is 64) and resolves sin (period 6.3), so the measured slopes (about 0, sin's values
    # averaged over many periods) say nothing of the derivative. AD's is right (float64
    # oracle); a wrong rule (twice the derivative) is no better resolved there, and is
    # found where the steps resolve sin
    d = jnp.array([1.0, 1.0], f32) / np.sqrt(2)
    xs = jnp.array([[0.5, 1e9], [0.5, 3.0]], f32)
    want = (np.cos(0.5) + np.cos(float(xs[0, 1]))) / np.sqrt(2)
    rep = jr.check_linearization(lambda x: jnp.sum(jnp.sin(x)), xs[0], d)
    assert abs(rep.ad_slope - want) <= 1e-5, str(rep)
    assert rep.verdict == "inconclusive" and "AD's own slope" in rep.reason, str(rep)
    # in a batch, each point's AD is read near that point
    right = jr.check_many(_sin_times(1.0), xs, jnp.stack([d, d]))
    assert right.verdict.tolist() == ["inconclusive", "smooth"], right.reports[0]
    wrong = jr.check_many(_sin_times(2.0), xs, jnp.stack([d, d]))
    assert wrong.verdict.tolist() == ["inconclusive", "wrong_derivative"], wrong.reports[1]
    assert "AD's own slope" in wrong.reports[0].reason
    # a rule that is wrong at every point stays wrong where the steps resolve sin:
    # at 1e5 in float64 (an ulp is 1.5e-11)
    far = jr.check_linearization(_sin_times(2.0), jnp.array([1e5], f64), jnp.ones(1, f64))
    assert far.verdict == "wrong_derivative", str(far)


def _square_rule(extra):
    @jax.custom_jvp
    def sq(x):
        return x * x

    @sq.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return x * x, (2 * x + extra) * t

    return sq


@pytest.mark.parametrize("dt", [f32, f64], ids=["float32", "float64"])
def test_a_transition_steeper_than_the_smallest_step_is_not_a_wrong_derivative(dt):
    # tanh(1e12 x) at 0: f' = 1e12 (AD right), but every step of the grid (down to 2^-27
    # in float32) lands where tanh is saturated: f's values jump by 1 across 0 at every
    # step, and the measured "slopes" are 1/h. Neither a jump nor a wrong AD can be told
    # in float32; float64's steps reach 2^-56, well below the transition's 1e-12: smooth
    f = lambda x: jnp.tanh(1e12 * x)
    rep = jr.check_linearization(f, jnp.zeros((), dt), jnp.ones((), dt))
    assert rep.ad_slope == pytest.approx(1e12, rel=1e-6)
    if dt == f32:
        assert rep.verdict == "inconclusive" and "steeper" in rep.reason, str(rep)
    else:
        assert rep.verdict == "smooth", str(rep)
    # a wrong rule whose values follow the measured slope does stay wrong: x^2 with AD
    # 2x + 1 (1 at 0, where the true slope is 0: values h^2 off the slope-0 line)
    sq = jr.check_linearization(_square_rule(1.0), jnp.zeros((), dt), jnp.ones((), dt))
    assert sq.verdict == "wrong_derivative" and abs(sq.slope_plus) < 1e-3, str(sq)


@pytest.mark.parametrize("x0", [0.3, 1.0, 2.0])
def test_a_rule_ten_percent_off_in_float16_is_not_called_right(x0):
    # float16 values resolve slopes to a few percent (the measured ones land 1-3% off
    # cos here), and sin's h^2 term hides a 10% error at the fitted steps (order 1.7 to
    # 1.9). The exact slopes (the primal's program) show AD 10% off, beyond float16
    # rounding, and the measured ones side with them: not "smooth"; the right rule is
    sin = _sin_times
    rep = jr.check_linearization(sin(1.1), jnp.asarray(x0, f16), jnp.ones((), f16))
    assert abs(rep.ad_slope - 1.1 * np.cos(x0)) <= 4e-3 * (1 + abs(np.cos(x0)))  # the rule
    assert rep.verdict in ("inconclusive", "wrong_derivative"), str(rep)
    right = jr.check_linearization(sin(1.0), jnp.asarray(x0, f16), jnp.ones((), f16))
    assert right.verdict == "smooth", str(right)


def test_norm_at_zero_in_float16_is_never_a_jump():
    # |x| along d is |h| ||d||: a kink (slopes +-||d|| = +-2.29), continuous. In float16
    # the squares of steps below about 2e-4 underflow to 0, so f(x0 +- h d) = f(x0) = 0
    # there: the values "stop", which no jump does. bfloat16 (float32's exponent range)
    # resolves the kink; a real jump whose AD is NaN is still found
    d = np.array([1.0, -2.0, 0.5])
    for dt, want in ((f16, {"inconclusive", "kink"}), (bf16, {"kink"})):
        rep = jr.check_linearization(jnp.linalg.norm, jnp.zeros(3, dt), jnp.asarray(d, dt))
        assert rep.verdict in want, str(rep)
    jump = lambda x: jnp.where(x > 0, 1.0 + jnp.sqrt(x), 0.0)
    rep = jr.check_linearization(jump, A(0.0), A(1.0), mode="rev")
    assert rep.verdict == "discontinuous", str(rep)


def _values_sin_ad_one(x):
    # f's values are x + sin(x) (slope 1 + cos x); AD sees only x (slope 1)
    return x + jax.lax.stop_gradient(jnp.sin(x))


@pytest.mark.parametrize("x0", [1e5, 1e6])
def test_ad_blind_to_sin_at_large_arguments_is_never_called_right(x0):
    # the true slope 1 + cos(x0) (NumPy, float64) is far from AD's 1. In float32 near 1e5
    # and 1e6 the values (ulps 0.008 and 0.06) round sin's swings into what the floor
    # model calls noise: the remainders read as a jump over steps of 1 to 8 (1e5) or stay
    # at the floor (1e6). The program has no nonsmooth operation and its exact slopes are
    # 1 + cos(x0): neither "discontinuous" nor "linear" may be said; float64 resolves it
    truth = 1.0 + np.cos(x0)
    assert abs(truth - 1.0) > 0.9
    rep = jr.check_linearization(_values_sin_ad_one, jnp.asarray(x0, f32), jnp.ones((), f32))
    assert rep.ad_slope == 1.0
    assert rep.verdict in ("inconclusive", "wrong_derivative"), str(rep)
    if rep.verdict == "wrong_derivative":
        assert rep.slope_plus == pytest.approx(truth, abs=0.05), str(rep)
    wide = jr.check_linearization(_values_sin_ad_one, jnp.asarray(x0, f64), jnp.ones((), f64))
    assert wide.verdict == "wrong_derivative", str(wide)
    assert wide.slope_plus == pytest.approx(truth, abs=1e-3), str(wide)
    # the same values with AD right (x + sin x, JAX's own rule): no complaint. At 1e5 the
    # values move in quanta of 0.008 and the steps above them span sin's periods (their
    # slope averages to 1); AD near x0 there swings between 0 and 2: not a wrong AD
    plain = lambda x: x + jnp.sin(x)
    right = jr.check_linearization(plain, jnp.asarray(x0, f32), jnp.ones((), f32))
    assert right.verdict in ("linear", "smooth", "inconclusive"), str(right)


@pytest.mark.parametrize("dt", [f32, f64], ids=["float32", "float64"])
def test_a_smooth_program_read_as_a_kink_is_not_called_a_kink(dt):
    # x tanh(1e20 x) is C-infinity with derivative 0 at 0 (AD's 0 is right), but every
    # step of either grid lands where tanh(1e20 h) = 1: the values are |h|, a kink at the
    # grid's resolution. No operation of the program is nonsmooth: not "kink"
    f = lambda x: x * jnp.tanh(1e20 * x)
    rep = jr.check_linearization(f, jnp.zeros((), dt), jnp.ones((), dt))
    assert rep.ad_slope == 0.0
    assert rep.verdict == "inconclusive" and "no nonsmooth operation" in rep.reason, str(rep)
    # a smooth program read where the steps resolve it stays smooth (1e6: transition
    # 1e-6 wide, steps down to 1.5e-8 in float32)
    g = lambda x: x * jnp.tanh(1e6 * x)
    ok = jr.check_linearization(g, jnp.zeros((), dt), jnp.ones((), dt))
    assert ok.verdict == "smooth", str(ok)
    # |x| written with smooth operations whose AD is NaN at 0 (exp(log(x^2) / 2)): AD not
    # finite, the smoothness argument fails, and the kink is kept
    ab = lambda x: jnp.exp(jnp.log(x * x) / 2)
    kink = jr.check_linearization(ab, jnp.zeros((), dt), jnp.ones((), dt))
    assert kink.verdict == "kink" and kink.slope_plus == pytest.approx(1.0), str(kink)


@pytest.mark.parametrize("scale", [1e15, 1e20])
def test_a_saturated_transition_is_not_a_wrong_derivative_whatever_ads_size(scale):
    # tanh(s x) at 0: f'(0) = s exactly (AD right). In float32 every step (down to 2^-26)
    # saturates tanh; the values jump by 2 across 0 at every step. AD's step s h is far
    # above the jump, so the remainders' floor (which counts AD's step) hides it: the
    # jump is read against the values' own floor
    f = lambda x: jnp.tanh(scale * x)
    rep = jr.check_linearization(f, jnp.zeros((), f32), jnp.ones((), f32))
    assert rep.ad_slope == pytest.approx(scale, rel=1e-6)
    assert rep.verdict == "inconclusive", str(rep)


_sg = jax.lax.stop_gradient


def test_a_nonsmooth_operation_behind_stop_gradient_still_counts():
    # gradient-replacement tricks whose values are a jump or a kink (a straight-through
    # round, sign with tanh's gradient, relu with the identity's): the values decide,
    # whatever the program's cancelling shifts; oracles are the values' own one-sided
    # limits (round jumps by 1 at 0.5; relu's slopes are 1 and 0)
    ste = lambda x: x - _sg(x) + _sg(jnp.round(x))
    rep = jr.check_linearization(ste, jnp.asarray(0.5, f32), jnp.ones((), f32))
    assert rep.verdict == "discontinuous", str(rep)
    sign = lambda x: _sg(jnp.sign(x)) - _sg(jnp.tanh(x)) + jnp.tanh(x)
    rep = jr.check_linearization(sign, jnp.zeros((), f64), jnp.ones((), f64))
    assert rep.verdict == "discontinuous", str(rep)
    relu = lambda x: _sg(jax.nn.relu(x)) + x - _sg(x)
    rep = jr.check_linearization(relu, jnp.zeros((), f64), jnp.ones((), f64))
    assert rep.verdict == "kink", str(rep)
    assert (rep.slope_plus, rep.slope_minus) == pytest.approx((1.0, 0.0), abs=1e-9)


def _scaled_rule(fn, dfn, factor):
    """``fn`` with the custom rule ``factor * dfn(x)`` (factor 1: the right one)."""

    @jax.custom_jvp
    def f(x):
        return fn(x)

    @f.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), factor * dfn(x) * t

    return f


def _tanh_rule(scale, factor):
    dfn = lambda x: scale * (1 - jnp.tanh(scale * x) ** 2)
    return _scaled_rule(lambda x: jnp.tanh(scale * x), dfn, factor)


@pytest.mark.parametrize(
    "dt, scale, factor, x0, d",
    [
        (f32, 1.0, 1.01, -0.7889540195465088, 1.9814294576644897),
        (f32, 1.0, 1.001, 0.08971552550792694, -1.624428153038025),
        (f64, 1e10, 0.5, 0.0, 1.0),
    ],
)
def test_a_wrong_rule_read_on_curvature_stays_wrong(dt, scale, factor, x0, d):
    # AD near x0 at the steps read (above the grid's smallest) drifts with tanh's
    # curvature; the primal's exact slopes and the measured ones agree against AD: the
    # rule is wrong. Oracle: tanh'(s x0) s d in float64 (NumPy)
    truth = scale * (1 - np.tanh(scale * x0) ** 2) * d
    rep = jr.check_linearization(_tanh_rule(scale, factor), jnp.asarray(x0, dt), jnp.asarray(d, dt))
    assert rep.ad_slope == pytest.approx(factor * truth, rel=1e-5)
    assert rep.verdict == "wrong_derivative", str(rep)
    assert rep.slope_plus == pytest.approx(truth, rel=abs(factor - 1) / 4), str(rep)
    right = jr.check_linearization(_tanh_rule(scale, 1.0), jnp.asarray(x0, dt), jnp.asarray(d, dt))
    assert right.verdict == "smooth", str(right)


def test_ad_near_x0_is_not_fooled_by_steps_a_whole_number_of_periods_apart():
    # 1e6 + sin(1e3 x) in float32 (values in quanta of 0.06, sin's period 6.3e-3): read
    # at steps 2^-6 and up, which along d = -0.80 shift 1e3 x by almost exactly 4 pi and
    # 8 pi, so AD there looks steady. AD (1e3 cos(1e3 x0) d, NumPy) is right
    x0, d = -0.5149485468864441, -0.8029231429100037
    f = lambda x: 1e6 + jnp.sin(1e3 * x)
    rep = jr.check_linearization(f, jnp.asarray(x0, f32), jnp.asarray(d, f32))
    assert rep.ad_slope == pytest.approx(1e3 * np.cos(1e3 * np.float32(x0)) * d, rel=1e-3)
    assert rep.verdict != "wrong_derivative", str(rep)


def test_slopes_beyond_float32s_square_root_of_its_largest_value_are_compared():
    # exp with a rule 0.1% off at 51.6 in float32 (slopes 3.3e22, whose squares overflow
    # float32): AD off the exact slopes by 1e-3, the measured ones 30 times closer.
    # Oracle: exp(x0) d in float64
    x0, d = 51.566131591796875, 1.3134206533432007
    rule = _exp_rule(1.001)
    rep = jr.check_linearization(rule, jnp.asarray(x0, f32), jnp.asarray(d, f32))
    truth = np.exp(np.float64(np.float32(x0))) * np.float64(np.float32(d))
    assert rep.slope_plus == pytest.approx(truth, rel=1e-4), str(rep)
    assert rep.verdict == "wrong_derivative", str(rep)
    right = jr.check_linearization(_exp_rule(1.0), jnp.asarray(x0, f32), jnp.asarray(d, f32))
    assert right.verdict == "smooth", str(right)


def _exp_rule(factor):
    return _scaled_rule(jnp.exp, jnp.exp, factor)
