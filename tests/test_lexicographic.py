"""Lexicographic derivatives against independent oracles.

* Exact derivatives where f is differentiable but AD's conventions are wrong (Kakade & Lee
  2018; Bolte & Pauwels 2020): the true value is known by hand.
* Piecewise-linear networks with *integer* weights, biases, points and directions: every
  value is a dyadic rational, so float64 is exact, planted ties are exactly 0, and the
  ordinary Jacobian at ``x + ε m1 + ε² m2 + ε³ m3`` (ε = 2^-12; no other switch is closer
  than 1) is the lexicographic Jacobian *bit for bit* (Khan & Barton 2015, the limit
  characterisation). Directions are chosen so that the first column leaves some ties
  undecided and the later columns must break them.
* Piecewise-smooth programs: Jacobians along the curve converge to it as ε → 0.
* Away from ties: ``ld_jacobian`` is ``jax.jacfwd`` and ``certified_grad`` is ``jax.grad``,
  bit for bit.
"""

import inspect
import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr

EPS = 2.0**-12


# ------------------------------------------------------ exact where AD is wrong


@pytest.mark.parametrize(
    "f, x, true",
    [
        (lambda x: jax.nn.relu(x) - jax.nn.relu(-x), 0.0, 1.0),  # Kakade & Lee: = x
        (lambda x: jr.relu(x) - jr.relu(-x), 0.0, 1.0),
        (lambda x: jax.nn.relu(x) - jax.nn.relu(-x) - x, 0.0, 0.0),  # Bolte & Pauwels: = 0
        (lambda x: jnp.maximum(jnp.minimum(x, 0.0), x), 0.0, 1.0),  # = x
        (lambda x: jnp.where(x == 0, 0.0, jnp.sin(x)), 0.0, 1.0),  # = sin x
        (lambda x: jnp.maximum(x, x), 0.0, 1.0),
        (lambda x: jnp.abs(x) - jnp.abs(-x) + x, 0.0, 1.0),  # = x
        (lambda x: jnp.clip(x, 0.0, None) - jnp.clip(-x, 0.0, None), 0.0, 1.0),  # = x
        (lambda x: jnp.max(jnp.stack([x, x, -x]) ** 2), 0.0, 0.0),  # = x^2
        (lambda x: lax.cond(x > 0, lambda v: v, lambda v: v, x), 0.0, 1.0),
    ],
)
def test_exact_derivative_where_f_is_differentiable(f, x, true):
    x = jnp.asarray(x, jnp.float64)
    assert float(jr.ld_grad(f)(x)) == true
    assert float(jr.ld_jacobian(f, x)) == true
    assert float(jr.directional_derivative(f, x, jnp.asarray(1.0, jnp.float64))) == true
    assert float(jr.directional_derivative(f, x, jnp.asarray(-1.0, jnp.float64))) == -true


def test_several_variables_and_compositions():
    # relu(x - y) - relu(y - x) = x - y; |x| + |y| - |x + y| at a double tie
    f = lambda v: jax.nn.relu(v[0] - v[1]) - jax.nn.relu(v[1] - v[0])
    g = lambda v: jnp.abs(v[0]) + jnp.abs(v[1]) - jnp.abs(v[0] + v[1])
    x = jnp.array([2.0, 2.0])
    assert jr.ld_grad(f)(x).tolist() == [1.0, -1.0]
    assert jax.grad(f)(x).tolist() == [0.0, 0.0]  # AD's convention at the tie
    z = jnp.zeros(2)
    # at 0, g is 0 on the positive and negative quadrants, 2|.| elsewhere: along e1 then e2
    # the point (ε, ε²) lies in the positive quadrant, where g = 0
    assert jr.ld_grad(g)(z).tolist() == [0.0, 0.0]
    # with M = [e1, -e2] the point (ε, -ε²) lies where g = 2|y|: gradient (0, -2)
    J = jr.ld_jacobian(g, z, jnp.array([[1.0, 0.0], [0.0, -1.0]]))
    assert np.asarray(J).tolist() == [0.0, -2.0]


def test_directional_derivatives_are_positively_homogeneous_and_one_sided():
    f = lambda v: jnp.max(jnp.abs(v)) + jax.nn.relu(v[0] - v[1])
    x = jnp.zeros(2)
    for d in ([1.0, 2.0], [-3.0, 1.0], [1.0, -1.0]):
        d = jnp.array(d)
        one = float(jr.directional_derivative(f, x, d))
        # f is positively homogeneous at 0: f(0 + t d) = t f(d)
        assert one == pytest.approx(float(f(d)), rel=1e-12)
        assert float(jr.directional_derivative(f, x, 2.5 * d)) == pytest.approx(2.5 * one)


# ------------------------------------------- integer networks: the limit oracle


def _int_net(seed, sizes, kind="relu"):
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in itertools.pairwise(sizes):
        layers.append(
            (
                jnp.asarray(rng.integers(-3, 4, (a, b)), jnp.float64),
                jnp.asarray(rng.integers(-4, 5, b), jnp.float64),
            )
        )
    act = {"relu": jax.nn.relu, "abs": jnp.abs, "leaky": lambda z: jnp.maximum(z, 0.5 * z)}[kind]

    def f(x):
        h = x
        for w, b in layers[:-1]:
            h = act(h @ w + b)
        w, b = layers[-1]
        return h @ w + b

    return f, layers


def _plant_ties(layers, x, n_ties, rng):
    """Moves biases of the first layer so that n_ties pre-activations are exactly 0."""
    w, b = layers[0]
    z = np.asarray(x @ w + b)
    units = rng.choice(len(z), size=n_ties, replace=False)
    b = np.asarray(b).copy()
    b[units] -= z[units]
    return [(w, jnp.asarray(b)), *layers[1:]], units


def _limit_jacobian(f, x, m):
    """Jacobian at x + ε m1 + ε² m2 + ...: exact in float64 for these integer programs."""
    cols = np.asarray(m)
    pt = np.asarray(x, np.float64).copy()
    for k in range(cols.shape[1]):
        pt = pt + EPS ** (k + 1) * cols[:, k]
    return np.asarray(jax.jacobian(f)(jnp.asarray(pt)))


@pytest.mark.parametrize("kind", ["relu", "abs", "leaky"])
@pytest.mark.parametrize("seed", range(4))
def test_lexicographic_jacobian_is_the_limiting_jacobian_on_integer_networks(kind, seed):
    rng = np.random.default_rng(100 + seed)
    f, layers = _int_net(seed, (4, 6, 5, 3), kind)
    x = jnp.asarray(rng.integers(-3, 4, 4), jnp.float64)
    layers, units = _plant_ties(layers, x, 3, rng)
    f = _int_net_from(layers, kind)
    assert jr.count_ties(f, x) >= 3
    # the first direction is orthogonal to a tied unit's weights: the second must decide
    w = np.asarray(layers[0][0])[:, units[0]]
    m1 = np.array([w[1], -w[0], 0, 0], float) if np.any(w[:2]) else np.array([1.0, 0, 0, 0])
    m = np.column_stack([m1, rng.integers(-2, 3, (4, 3))]).astype(float)
    if np.linalg.matrix_rank(m) < 4:
        m[:, 1:] = np.eye(4)[:, 1:]
        m[:, 0] = (
            m1
            if np.linalg.matrix_rank(np.column_stack([m1, np.eye(4)[:, 1:]])) == 4
            else [1, 0, 0, 0]
        )
    J_ld = np.asarray(jr.ld_jacobian(f, x, jnp.asarray(m)))
    _, L = jr.ld_jvp(f, x, jnp.asarray(m))
    J_lim = _limit_jacobian(f, x, m)
    np.testing.assert_array_equal(np.asarray(L), J_lim @ m)  # f'(x; M) = J M exactly
    np.testing.assert_allclose(J_ld, J_lim, rtol=0, atol=1e-12)  # M^-1 in float64


def _int_net_from(layers, kind):
    act = {"relu": jax.nn.relu, "abs": jnp.abs, "leaky": lambda z: jnp.maximum(z, 0.5 * z)}[kind]

    def f(x):
        h = x
        for w, b in layers[:-1]:
            h = act(h @ w + b)
        w, b = layers[-1]
        return h @ w + b

    return f


@pytest.mark.parametrize("seed", range(3))
def test_max_pooling_network_at_planted_ties(seed):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.integers(-2, 3, (3, 3, 1, 2)), jnp.float64)
    v = jnp.asarray(rng.integers(-2, 3, (2 * 2 * 2, 1)), jnp.float64)

    def f(img):
        z = lax.conv_general_dilated(
            img, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        z = lax.reduce_window(
            jax.nn.relu(z), -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
        )
        return (z.reshape(1, -1) @ v)[0]

    img = jnp.zeros((1, 4, 4, 1))  # zero image: every unit and every pooling window tied
    assert jr.count_ties(f, img) > 10
    m = jnp.asarray(rng.integers(-3, 4, (16, 16)), jnp.float64)
    assert np.linalg.matrix_rank(np.asarray(m)) == 16
    J_ld = np.asarray(jr.ld_jacobian(f, img, m)).reshape(1, 16)
    pt = EPS * np.asarray(m)[:, 0] + EPS**2 * np.asarray(m)[:, 1] + EPS**3 * np.asarray(m)[:, 2]
    J_lim = np.asarray(jax.jacobian(f)(jnp.asarray(pt.reshape(1, 4, 4, 1)))).reshape(1, 16)
    np.testing.assert_allclose(J_ld, J_lim, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "f, x, d",
    [
        (lambda v: jnp.maximum(v[0] ** 2, v[1] + v[0]), [1.0, 0.0], [1.0, 0.5]),
        (lambda v: jax.nn.relu(jnp.sin(v[0]) * v[1]), [0.0, 2.0], [1.0, -1.0]),
        (lambda v: jnp.sort(jnp.stack([jnp.exp(v[0]), 1.0 + v[1]]))[0], [0.0, 0.0], [-1.0, 2.0]),
        (lambda v: jnp.abs(v[0] ** 3 - v[1]) * jnp.cos(v[1]), [0.0, 0.0], [2.0, 1.0]),
    ],
)
def test_piecewise_smooth_programs_converge_along_the_curve(f, x, d):
    x = jnp.asarray(x, jnp.float64)
    m = jnp.asarray(np.column_stack([d, [0.3, -1.7]]), jnp.float64)
    J_ld = np.asarray(jr.ld_jacobian(f, x, m))
    errs = []
    for eps in (1e-3, 1e-5, 1e-7):
        pt = x + eps * m[:, 0] + eps**2 * m[:, 1]
        errs.append(np.max(np.abs(np.asarray(jax.jacobian(f)(pt)) - J_ld)))
    assert errs[-1] < 1e-6 and errs[-1] < errs[0]  # first order in eps


# ------------------------------------------------------------ away from ties


def _mlp(seed, smooth=True):
    ks = jax.random.split(jax.random.PRNGKey(seed), 4)
    w1 = jax.random.normal(ks[0], (5, 7), jnp.float64)
    w2 = jax.random.normal(ks[1], (7, 3), jnp.float64)
    act = (lambda z: jnp.tanh(z) * jax.nn.relu(z)) if smooth else jax.nn.relu

    def f(x):
        return jnp.sin(act(x @ w1 + 0.1) @ w2)

    return f


@pytest.mark.parametrize("seed", range(3))
def test_away_from_ties_ld_jacobian_is_jacfwd_bit_for_bit(seed):
    f = _mlp(seed)
    x = jax.random.normal(jax.random.PRNGKey(10 + seed), (5,), jnp.float64)
    assert jr.count_ties(f, x) == 0
    want = jax.jit(jax.jacfwd(f))(x)  # the compiled jacfwd (eager op-by-op may round otherwise)
    np.testing.assert_array_equal(np.asarray(jr.ld_jacobian(f, x)), np.asarray(want))


@pytest.mark.parametrize("seed", range(3))
def test_away_from_ties_certified_grad_is_grad_bit_for_bit(seed):
    f = lambda x, s: jnp.sum(_mlp(seed, smooth=False)(x) * s)
    x = jax.random.normal(jax.random.PRNGKey(20 + seed), (5,), jnp.float64)
    g, cert = jr.certified_grad(f)(x, 2.0)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(jax.grad(f)(x, 2.0)))
    assert cert.method == "ad" and cert.sites == () and cert.certified


def test_certified_grad_reads_the_statistics_only_when_needed(monkeypatch):
    # away from ties, two flags decide (no per-site statistics copied to the host); at a
    # tie or a non-finite gradient, the statistics are read
    from jaxrelu._jaxpr import driver

    collected = []
    real = driver.Launched.collect
    monkeypatch.setattr(driver.Launched, "collect", lambda self: collected.append(1) or real(self))
    f = lambda x: jnp.sum(jax.nn.relu(x) * x)
    g, cert = jr.certified_grad(f)(jnp.array([1.0, -2.0]))
    assert (g.tolist(), cert.method, cert.certified, collected) == ([2.0, 0.0], "ad", True, [])
    g, cert = jr.certified_grad(f)(jnp.array([0.0, -2.0]))
    assert (cert.method, [s.ties for s in cert.sites]) == ("lexicographic", [1]) and collected
    before = len(collected)
    h = lambda x: jnp.sum(jnp.where(x > 0, jnp.sqrt(x), x))  # the jnp.where trap: NaN at -1
    g, cert = jr.certified_grad(h)(jnp.array([-1.0, 4.0]))
    assert (g.tolist(), cert.method, cert.certified) == ([1.0, 0.25], "lexicographic", True)
    assert len(collected) > before


def test_certificate_lists_the_tied_sites_with_their_lines():
    def f(x):
        return jnp.sum(jax.nn.relu(x) - jax.nn.relu(-x))  # the line of the sites

    line = f.__code__.co_firstlineno + 1
    g, cert = jr.certified_grad(f)(jnp.array([0.0, 2.0, 0.0]))
    assert g.tolist() == [1.0, 1.0, 1.0]
    assert cert.method == "lexicographic" and cert.certified
    assert [(s.primitive, s.ties) for s in cert.sites] == [("max", 2), ("max", 2)]
    assert all(s.source == f"test_lexicographic.py:{line}" for s in cert.sites)


def test_certificate_of_a_tied_jump_is_not_certified():
    f = lambda x: jnp.sum(jnp.floor(x) + x)
    g, cert = jr.certified_grad(f)(jnp.array([1.0, 0.5]))
    assert cert.method == "lexicographic" and not cert.certified
    assert "discontinuous" in cert.reason
    assert g.tolist() == [1.0, 1.0]


def test_argnums_and_pytrees_as_in_jax():
    def f(p, x):
        return jnp.sum(jax.nn.relu(p["w"] @ x + p["b"]))

    p = {"w": jnp.array([[1.0, -1.0], [2.0, 0.0]]), "b": jnp.array([0.0, -2.0])}
    x = jnp.array([1.0, 1.0])  # both units tied
    g = jr.ld_grad(f)(p, x)
    assert jax.tree.structure(g) == jax.tree.structure(p)
    # along +e for every parameter, the tied units turn on: gradient of w@x + b
    np.testing.assert_array_equal(g["w"], [[1.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(g["b"], [1.0, 1.0])
    gp, gx = jr.ld_grad(f, argnums=(0, 1))(p, x)
    np.testing.assert_array_equal(gp["b"], g["b"])
    np.testing.assert_array_equal(gx, [3.0, -1.0])
    J = jr.ld_jacobian(lambda v: {"a": jax.nn.relu(v), "b": v.sum()}, jnp.array([0.0, 1.0]))
    assert J["a"].shape == (2, 2) and J["b"].shape == (2,)
    np.testing.assert_array_equal(J["a"], np.eye(2))


@pytest.mark.parametrize(
    "name, f, x0, plus, minus",
    [
        # floor(x) x at 1: the piece [1, 2) is x (slope 1), the piece [0, 1) is 0
        ("floor times x", lambda x: jnp.floor(x) * x, 1.0, 1.0, 0.0),
        # a step times x at 0: x on the right, 0 on the left
        ("where step times x", lambda x: jnp.where(x > 0, 1.0, 0.0) * x, 0.0, 1.0, 0.0),
        # truncation: int(x) x at -1: 0 on (-1, 0); -x on (-2, -1], so f(-1 - t) = 1 + t
        ("int(x) times x", lambda x: x.astype(jnp.int32) * x, -1.0, 0.0, 1.0),
    ],
)
def test_values_downstream_of_a_tied_jump_come_from_the_entered_piece(name, f, x0, plus, minus):
    """f'(x; +1) and f'(x; -1): the derivative of the piece the direction enters:
    values taken past a tied jump (floor, a step, a truncation) are that piece's values,
    not the values at the point (hand-derived one-sided slopes)."""
    x = jnp.array(x0)
    assert float(jr.directional_derivative(f, x, jnp.array(1.0))) == plus
    assert float(jr.directional_derivative(f, x, jnp.array(-1.0))) == minus


def test_stop_gradient_has_no_tangent_at_ties():
    # max(x0, x1) + stop_gradient(x0) at a tie: the stop-gradient term adds nothing to any
    # column (the tie goes to x0 along e1): [1, 0]
    f = lambda x: jnp.maximum(x[0], x[1]) + lax.stop_gradient(x[0])
    J = jr.ld_jacobian(f, jnp.array([1.0, 1.0]))
    assert np.asarray(J).tolist() == [1.0, 0.0]
    assert np.asarray(jr.ld_grad(f)(jnp.array([1.0, 1.0]))).tolist() == [1.0, 0.0]


def test_ld_jvp_takes_fewer_directions_than_inputs():
    """k < n directions (and a single 1-D direction) are allowed: a lexicographic
    directional derivative needs only as many directions as it takes to break the ties.
    Hand values: f(x) = max(x0, x1) + |x2| at (1, 1, 0)."""
    f = lambda x: jnp.maximum(x[0], x[1]) + jnp.abs(x[2])
    x = jnp.array([1.0, 1.0, 0.0])
    m = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # 3 × 2
    y, L = jr.ld_jvp(f, x, m)
    # m1 = (1, 1, 0) leaves the max tied, moves nothing in |x2|; m2 = (0, 1, 1) picks x1
    # and |x2|'s + branch: f'(x; m1) = 1, f'(x; m2) = 1 + 1 = 2
    assert float(y) == 1.0 and np.asarray(L).tolist() == [1.0, 2.0]
    _, L1 = jr.ld_jvp(f, x, jnp.array([-1.0, 0.0, -2.0]))  # one direction, as a vector
    assert np.asarray(L1).tolist() == [2.0]  # max' = 0 (x1 stays), |.|' along -2 is 2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="directions"):
        jr.ld_jacobian(lambda x: x, jnp.zeros(2), jnp.ones((2, 2)))  # singular
    with pytest.raises(ValueError, match=r"`directions` must be a square 2×2 .* \(2, 1\)"):
        jr.ld_jacobian(lambda x: x, jnp.zeros(2), jnp.ones((2, 1)))  # ld_jvp's shape
    with pytest.raises(ValueError, match="directions"):
        jr.ld_jacobian(lambda x: x, jnp.zeros(2), jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="directions"):
        jr.ld_jvp(lambda x: x, jnp.zeros(2), jnp.ones((3, 1)))
    with pytest.raises(TypeError, match="`x`"):
        jr.ld_jacobian(lambda x: x, jnp.zeros(2, jnp.int32))
    with pytest.raises(TypeError, match="callable"):
        jr.ld_grad(3)
    with pytest.raises(ValueError, match="`d`"):
        jr.directional_derivative(jnp.abs, jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(TypeError, match="scalar"):
        jr.ld_grad(lambda x: x)(jnp.zeros(2))
    with pytest.raises(ValueError, match="argnums"):
        jr.ld_grad(lambda x: x.sum(), argnums=3)(jnp.zeros(2))


def test_float32_and_one_compilation_per_shape():
    f = lambda x: jnp.sum(jax.nn.relu(x) - jax.nn.relu(-x))
    x = jnp.zeros(3, jnp.float32)
    g = jr.ld_grad(f)(x)
    assert g.dtype == jnp.float32 and g.tolist() == [1.0, 1.0, 1.0]
    events = []
    cb = lambda name, secs, **kw: events.append(name)
    xs = [jnp.ones(3, jnp.float32), -jnp.ones(3, jnp.float32)]
    jax.monitoring.register_event_duration_secs_listener(cb)
    try:
        for v in xs:
            jr.ld_grad(f)(v)
    finally:
        jax.monitoring.unregister_event_duration_listener(cb)
    assert "/jax/core/compile/backend_compile_duration" not in events


def test_nan_handling_is_not_hidden():
    # d/dx sqrt(x) at 0 is infinite: the directional derivative says so (inf), not 0
    dd = float(jr.directional_derivative(jnp.sqrt, jnp.array(0.0), jnp.array(1.0)))
    assert math.isinf(dd)


def test_a_unique_maximum_with_a_nan_column_is_no_undecided_tie():
    # 0 * sqrt(x0) + 1 has a NaN derivative at x0 = 0 (0 * inf). Alone at the maximum it is
    # no tie: only the derivative's NaN is reported. Tied with x1 = 1, the pick between the
    # two maximisers cannot be decided from a NaN column: that is an undecided tie.
    f = lambda x: jnp.max(jnp.stack([0.0 * jnp.sqrt(x[0]) + 1.0, x[1]]))
    d = jnp.asarray([1.0, 0.0])
    for x1, undecided in ((0.0, False), (1.0, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            jr.directional_derivative(f, jnp.asarray([0.0, x1]), d)
        texts = [str(w.message) for w in caught]
        assert any(t.startswith("a tie the lexicographic rules") for t in texts) == undecided
        if not undecided:  # the unique maximiser's NaN is reported as a NaN
            assert any(t.startswith("the derivative is not a number") for t in texts)


def test_undecided_warnings_point_at_the_callers_line():
    """An undecided tie (argmax of x^3 against 0 at 0: equal values and first
    derivatives) warns at the line of the user's call, whichever function is called."""
    f = lambda x: x * jnp.argmax(jnp.stack([x**3, 0.0 * x])).astype(x.dtype)
    x = jnp.asarray(0.0)
    lines = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines.append(inspect.currentframe().f_lineno + 1)
        jr.directional_derivative(f, x, jnp.asarray(1.0))
        lines.append(inspect.currentframe().f_lineno + 1)
        jr.ld_jvp(f, x, jnp.asarray([[1.0]]))
        lines.append(inspect.currentframe().f_lineno + 1)
        jr.ld_jacobian(f, x)
        lines.append(inspect.currentframe().f_lineno + 1)
        jr.ld_grad(f)(x)
    got = [(w.filename, w.lineno) for w in caught if w.category is jr.UndecidedTieWarning]
    assert got == [(__file__, line) for line in lines]


def test_arcsin_at_the_end_of_its_domain_is_not_certified():
    """arcsin at 1: no nonsmooth primitive, but a vertical tangent (the difference quotient
    (arcsin(1) - arcsin(1 - h)) / h grows like sqrt(2 / h)): jax.grad and the forward
    derivative are infinite, and nothing is certified."""
    one = jnp.asarray(1.0)
    q = [float((jnp.arcsin(one) - jnp.arcsin(one - h)) / h) for h in (1e-4, 1e-8)]
    assert q[1] > 50 * q[0]  # sqrt(1e4) = 100 by hand: no finite limit
    g, cert = jr.certified_grad(jnp.arcsin)(one)
    assert not cert.certified and cert.method == "ad" and cert.sites == ()
    assert cert.reason.startswith("the gradient is not finite") and float(g) == np.inf


def test_a_straight_through_estimator_off_its_jumps_is_certified():
    """x + stop_gradient(round(x) - x) at 0.3: round is constant near 0.3 (no tie; the jumps
    are at half-integers), so the program's gradient 1 is certified, with the note that
    stop_gradient defines it; at 0.5 its value jumps and nothing is certified."""
    ste = lambda x: x + lax.stop_gradient(jnp.round(x) - x)
    g, cert = jr.certified_grad(ste)(jnp.asarray(0.3))
    assert cert.certified and float(g) == 1.0 and "stop_gradient" in cert.reason
    _, cert = jr.certified_grad(ste)(jnp.asarray(0.5))
    assert not cert.certified and "jumps" in cert.reason


def test_distinct_eigenvalues_beside_a_tie_give_no_warning():
    """relu(x0) + the largest eigenvalue of diag(x1, x2) at (0, 1, 2): relu is tied (the
    lexicographic rules decide it), the eigenvalues 1 and 2 are apart (differentiable): no
    warning, and the derivative along e0 then e2 is (1, 1)."""
    f = lambda x: jax.nn.relu(x[0]) + jnp.linalg.eigvalsh(jnp.diag(x[1:]))[-1]
    m = jnp.asarray([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, cols = jr.ld_jvp(f, jnp.asarray([0.0, 1.0, 2.0]), m)
    np.testing.assert_allclose(np.asarray(cols), [1.0, 1.0], rtol=1e-12)


def test_transformations_of_the_lexicographic_functions_are_one_clear_error():
    """They analyse f at concrete values on the host: under jit, vmap or grad their
    argument is a tracer, a TypeError naming it (JAX's own error did not say why)."""
    f = lambda x: jnp.maximum(x, 0.0)
    with pytest.raises(TypeError, match=r"`args\[0\]` is a traced value"):
        jax.vmap(jr.ld_grad(f))(jnp.asarray([0.0, 1.0]))
    with pytest.raises(TypeError, match="traced value"):
        jax.jit(lambda x: jr.certified_grad(f)(x)[0])(jnp.asarray(0.0))
    with pytest.raises(TypeError, match="`x` is a traced value"):
        jax.grad(lambda x: jr.directional_derivative(f, x, jnp.asarray(1.0)))(jnp.asarray(0.0))
    assert float(jr.ld_grad(f)(jnp.asarray(0.0))) == 1.0  # concrete: as before


def test_keyword_arguments_pass_through_undifferentiated_as_in_jax_grad():
    """s (relu(x) - relu(-x)) = s x: derivative s at 0 (by hand), with s a keyword
    argument that jax.grad passes through without differentiating; a boolean-valued f is
    a TypeError, as for jax.grad (ld_grad returned False)."""
    f = lambda x, s=1.0: s * (jr.relu(x) - jr.relu(-x))
    x = jnp.array(0.0)
    assert float(jr.ld_grad(f)(x, s=2.0)) == 2.0
    g, cert = jr.certified_grad(f)(x, s=-3.0)
    assert float(g) == -3.0 and cert.certified
    for make in (jr.ld_grad, jr.certified_grad):
        with pytest.raises(TypeError, match="floating-point scalar"):
            make(lambda x: x > 0)(x)
