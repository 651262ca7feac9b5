"""An oracle table for the kink analysis: one row per primitive (or way of writing piecewise
code) the analysis claims, with the site, its kind, ties, margin and radius worked out by
hand from the definition of the function at the point, along the direction.

Radius: the first ``t > 0`` at which an element of the site switches along ``x + t d``
(exact for these piecewise-linear cases); 0 for a tied jump the direction crosses at
once; ``inf`` when nothing switches. Margin: the smallest distance of an element to its
switch, in the site's own switching quantity. All in float64.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr

INF = math.inf


def v(*xs):
    return jnp.asarray(xs, jnp.float64)


ROWS = [
    # id, f, x, d, [(primitive, kind, ties, margin, radius), ...]
    (
        "max",
        lambda x: jnp.maximum(x, 1.0).sum(),
        v(0.5, 1.0, 3.0),
        v(1.0, 1.0, -1.0),
        [("max", "kink", 1, 0.0, 0.5)],
    ),  # 0.5 -> 1 at t = 0.5; 3 -> 1 at t = 2
    (
        "min",
        lambda x: jnp.minimum(x, 0.0).sum(),
        v(-2.0, 0.5),
        v(1.0, 1.0),
        [("min", "kink", 0, 0.5, 2.0)],
    ),
    (
        "abs",
        lambda x: jnp.abs(x).sum(),
        v(0.0, -0.25),
        v(1.0, 1.0),
        [("abs", "kink", 1, 0.0, 0.25)],
    ),
    (
        "abs of a complex value",
        lambda x: jnp.abs(x[0] + 1j * x[1]),
        v(0.0, 0.0),
        v(1.0, 0.0),
        [("abs", "kink", 1, 0.0, INF)],
    ),
    (
        "clamp",
        lambda x: lax.clamp(-1.0, x, 1.0).sum(),
        v(0.5, -1.0),
        v(1.0, 2.0),
        [("clamp", "kink", 1, 0.0, 0.5)],
    ),  # 0.5 -> 1 at 0.5; -1 -> 1 at 1
    (
        "relu",
        lambda x: jax.nn.relu(x - 1.0).sum(),
        v(0.0, 1.0),
        v(0.5, -1.0),
        [("max", "kink", 1, 0.0, 2.0)],
    ),
    (
        "where(x > 0, x, 0): continuous",
        lambda x: jnp.where(x > 0, x, 0.0).sum(),
        v(-1.0, 0.0),
        v(2.0, 1.0),
        [("select_n", "kink", 1, 0.0, 0.5)],
    ),
    (
        "where(x > 0, 1, 0): a jump",
        lambda x: jnp.where(x > 0, 1.0, 0.0).sum(),
        v(0.0),
        v(1.0),
        [("select_n", "jump", 1, 0.0, 0.0)],
    ),  # tied and entered at once: radius 0
    (
        "jnp.select, three pieces",
        lambda x: jnp.select([x < 0, x < 1], [-x, x], 2 * x - 1).sum(),
        v(0.25, 2.0),
        v(1.0, -1.0),
        [("select_n", "kink", 0, 0.25, 0.75)],
    ),  # continuous at 0 and 1
    (
        "jnp.piecewise, a jump at 1",
        lambda x: jnp.piecewise(x, [x < 1], [lambda u: u, lambda u: u + 1]).sum(),
        v(0.5, 3.0),
        v(1.0, 1.0),
        [("select_n", "jump", 0, 0.5, 0.5)],
    ),
    (
        "cond",
        lambda x: lax.cond(x > 1.0, lambda u: 2 * u, lambda u: u, x),
        v(0.0)[0],
        v(1.0)[0],
        [("cond", "jump", 0, 1.0, 1.0)],
    ),  # 2u vs u differ at the switch u = 1
    (
        "cond whose branches agree",
        lambda x: lax.cond(x > 0, lambda u: u, lambda u: 0.0 * u, x),
        v(0.0)[0],
        v(1.0)[0],
        [("cond", "kink", 1, 0.0, INF)],
    ),
    (
        "comparison turned into a number",
        lambda x: (x > 2.0).astype(x.dtype).sum(),
        v(0.0),
        v(1.0),
        [("step", "jump", 0, 2.0, 2.0)],
    ),
    (
        "floor",
        lambda x: jnp.floor(x).sum(),
        v(0.25, 2.0),
        v(1.0, -1.0),
        [("floor", "jump", 1, 0.0, 0.0)],
    ),  # floor(2 - t) jumps at once
    ("ceil", lambda x: jnp.ceil(x).sum(), v(0.25), v(-1.0), [("ceil", "jump", 0, 0.25, 0.25)]),
    (
        "round: jumps at half-integers",
        lambda x: jnp.round(x).sum(),
        v(0.2, 1.5),
        v(1.0, 0.0),
        [("round", "jump", 1, 0.0, 0.3)],
    ),
    (
        "sign",
        lambda x: jnp.sign(x).sum(),
        v(-0.5, 2.0),
        v(1.0, 1.0),
        [("sign", "jump", 0, 0.5, 0.5)],
    ),
    (
        "rem: jumps where x / y crosses a nonzero integer",
        lambda x: jnp.fmod(x, 2.0).sum(),
        v(1.5, 0.5),
        v(1.0, -1.0),
        [("rem", "jump", 0, 0.25, 0.5)],
    ),  # q = 0.75: 0.25 from 1; q = 0.25 moving to 0: no jump there
    (
        "reduce_max",
        lambda x: jnp.max(x),
        v(1.0, 3.0, 2.0),
        v(0.0, 1.0, 1.0),
        [("reduce_max", "kink", 0, 1.0, INF)],
    ),  # 2 + t vs 3 + t: the gap to the max stays 1
    (
        "reduce_max closing gap",
        lambda x: jnp.max(x),
        v(1.0, 3.0, 2.0),
        v(0.0, 0.0, 2.0),
        [("reduce_max", "kink", 0, 1.0, 0.5)],
    ),
    (
        "reduce_min tie",
        lambda x: jnp.min(x),
        v(1.0, 1.0, 2.0),
        v(0.0, 1.0, 0.0),
        [("reduce_min", "kink", 1, 0.0, INF)],
    ),
    (
        "argmax",
        lambda x: x[jnp.argmax(x)] * 1.0,
        v(1.0, 2.0),
        v(2.0, 0.0),
        [("argmax", "jump", 0, 1.0, 0.5)],
    ),
    (
        "max pooling",
        lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (2,), (2,), "VALID").sum(),
        v(1.0, 1.0, 0.0, 3.0),
        v(0.0, 0.0, 1.0, 0.0),
        [("reduce_window_max", "kink", 1, 0.0, 3.0)],
    ),
    (
        "min pooling",
        lambda x: lax.reduce_window(x, jnp.inf, lax.min, (2,), (2,), "VALID").sum(),
        v(1.0, 2.0),
        v(1.0, 0.0),
        [("reduce_window_min", "kink", 0, 1.0, 1.0)],
    ),  # 1 + t reaches 2 at t = 1
    (
        "cummax",
        lambda x: lax.cummax(x).sum(),
        v(1.0, 0.0, 2.0),
        v(0.0, 1.0, 0.0),
        [("cummax", "kink", 0, 1.0, 1.0)],
    ),
    ("sort", lambda x: jnp.sort(x)[0], v(0.0, 1.0), v(1.0, -1.0), [("sort", "kink", 0, 1.0, 0.5)]),
    (
        "top_k: tie with the element left out",
        lambda x: lax.top_k(x, 1)[0].sum(),
        v(1.0, 1.0, 0.0),
        v(0.0, 0.0, 1.0),
        [("top_k", "kink", 1, 0.0, 1.0)],
    ),
    (
        "float to integer truncates toward zero",
        lambda x: x.astype(jnp.int32).astype(x.dtype).sum(),
        v(0.3, -0.3, 2.6),
        v(1.0, -1.0, -1.0),
        [("step", "jump", 0, 0.4, 0.6)],
    ),  # jumps at the nonzero integers: 0.3 -> 1, -0.3 -> -1 at t = 0.7; 2.6 -> 2 at 0.6
    (
        "truncation at an integer, left toward zero",
        lambda x: x.astype(jnp.int32).astype(x.dtype).sum(),
        v(1.0, 2.5),
        v(-1.0, 1.0),
        [("step", "jump", 1, 0.0, 0.0)],
    ),  # trunc(1 - t) = 0 at once
    (
        "truncation at an integer, left away from zero",
        lambda x: x.astype(jnp.int32).astype(x.dtype).sum(),
        v(1.0),
        v(1.0),
        [("step", "jump", 1, 0.0, 1.0)],
    ),  # trunc(1 + t) = 1 until t = 1
    (
        "float to bool",
        lambda x: x.astype(bool).astype(x.dtype).sum(),
        v(0.3),
        v(-1.0),
        [("step", "jump", 0, 0.3, 0.3)],
    ),
    (
        "table lookup at a truncated index",
        lambda x: jnp.array([1.0, 2.0, 3.0])[jnp.clip((2 * x).astype(jnp.int32), 0, 2)].sum(),
        v(0.2),
        v(1.0),
        [("gather", "jump", 0, 0.6, 0.3)],
    ),  # index trunc(2x): 0.4 is 0.6 from 1, reached at t = 0.3; the value jumps 1 -> 2
    (
        "dynamic_slice at a floor offset",
        lambda x: lax.dynamic_slice(
            jnp.arange(10.0), (jnp.floor(3 * x[0]).astype(int),), (2,)
        ).sum(),
        v(0.5),
        v(1.0),
        [("floor", "jump", 0, 0.5, 1 / 6), ("dynamic_slice", "jump", 0, 0.5, 1 / 6)],
    ),  # floor(3x) jumps 1 -> 2 at x = 2/3
    (
        "while loop test",
        lambda x: lax.while_loop(lambda s: s < 2.0, lambda s: s + 1.0, x),
        v(0.5)[0],
        v(1.0)[0],
        [("while", "jump", 0, 0.5, 0.5)],
    ),
]


def _expected_sites(sites):
    return [(s.primitive, s.kind, s.ties, s.min_margin, s.radius) for s in sites]


@pytest.mark.parametrize("name, f, x, d, want", ROWS, ids=[r[0] for r in ROWS])
def test_oracle_table(name, f, x, d, want):
    got = _expected_sites(jr.kink_sites(f, x, d))
    assert len(got) == len(want), got
    for g, w in zip(got, want):
        assert g[:3] == w[:3], (got, want)
        assert g[3] == pytest.approx(w[3], abs=1e-12), (got, want)
        assert g[4] == pytest.approx(w[4], rel=1e-12, abs=1e-12), (got, want)
    assert jr.kink_radius(f, x, d) == pytest.approx(min(w[4] for w in want), abs=1e-12)


NO_SITES = [
    ("isnan guard", lambda x: jnp.where(jnp.isnan(x), 0.0, x).sum()),
    ("nan_to_num", lambda x: jnp.nan_to_num(x).sum()),
    ("logsumexp", jax.nn.logsumexp),
    ("softmax", lambda x: jax.nn.softmax(x)[0]),
    ("log_softmax", lambda x: jax.nn.log_softmax(x).sum()),
    ("cross-entropy", lambda x: -jax.nn.log_softmax(x)[1]),
    (
        "numerically stable softmax by hand",
        lambda x: (
            jnp.exp(x - lax.stop_gradient(x.max())) / jnp.exp(x - lax.stop_gradient(x.max())).sum()
        )[0],
    ),
    ("smooth", lambda x: jnp.tanh(x).sum() + jnp.sum(x**2)),
]


@pytest.mark.parametrize("name, f", NO_SITES, ids=[r[0] for r in NO_SITES])
def test_what_is_not_a_site(name, f):
    x = v(1.0, 2.0, 2.0)  # a tie of the max inside logsumexp/softmax
    assert jr.find_kinks(f, x) == []
    assert jr.kink_radius(f, x, v(1.0, -1.0, 0.5)) == INF


def test_site_sizes_count_elements_evaluated():
    """size: elements evaluated (a scalar select is 1, a select over 3 elements 3, a loop
    body's site once per iteration)."""
    sizes = lambda f, x: [s.size for s in jr.find_kinks(f, x)]
    assert sizes(lambda x: jnp.where(x > 0, x, 0.0).sum(), v(1.0, -1.0, 2.0)) == [3]
    assert sizes(lambda x: lax.select_n(x[0] > 0, x[0], 2 * x[0]), v(1.0, 2.0)) == [1]
    body = lambda c, u: (c + jnp.abs(u), None)
    assert sizes(lambda x: lax.scan(body, 0.0, x)[0], v(1.0, 2.0, 3.0, 4.0)) == [4]
    assert sizes(lambda x: jnp.sort(x)[0], v(3.0, 1.0, 2.0)) == [3]


def test_rem_near_a_zero_quotient():
    """fmod(x, 2) with x / 2 = 0.25: no jump at the quotient 0, the nearest at 1: margin 0.75,
    reached at t = 1.5 along +1."""
    (s,) = jr.kink_sites(lambda x: jnp.fmod(x, 2.0).sum(), v(0.5), v(1.0))
    assert (s.primitive, s.kind, s.ties) == ("rem", "jump", 0)
    assert s.min_margin == pytest.approx(0.75) and s.radius == pytest.approx(1.5)


def test_reductions_over_a_leading_axis_and_trivial_sorts():
    """Ties counted per output over a non-trailing axis; a length-1 sort has no switch."""
    x = jnp.array([[1.0, 2.0, 5.0], [1.0, 3.0, 4.0]])  # column 0 tied
    (s,) = jr.find_kinks(lambda v: jnp.max(v, axis=0).sum(), x)
    assert (s.primitive, s.ties, s.min_margin) == ("reduce_max", 1, 0.0)
    d = jnp.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # along d the second row wins column 0
    g = jr.directional_derivative(lambda v: jnp.max(v, axis=0), x, d)
    assert g.tolist() == [1.0, 0.0, 0.0]
    # over the last axis of a square array: row 0 tied between its first two entries
    y = jnp.array([[2.0, 2.0, 0.0], [0.0, 1.0, 3.0], [5.0, 4.0, 0.0]])
    e = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    g = jr.directional_derivative(lambda v: jnp.max(v, axis=1), y, e)
    assert g.tolist() == [1.0, 0.0, 0.0]  # row 0: the second entry rises; rows 1, 2: fixed max
    (s,) = jr.find_kinks(lambda v: jnp.max(v, axis=1).sum(), y)
    assert (s.ties, s.min_margin) == (1, 0.0)
    assert jr.find_kinks(lambda v: jnp.sort(v[:1]).sum(), v(3.0, 1.0)) == []


def test_a_straight_through_estimator_keeps_its_jump():
    f = lambda x: (x + lax.stop_gradient(jnp.round(x) - x)).sum()  # the value is round(x)
    (s,) = jr.find_kinks(f, v(0.3))
    assert (s.primitive, s.kind) == ("round", "jump")
    assert jr.kink_radius(f, v(0.3), v(1.0)) == pytest.approx(0.2)


def test_sites_through_calls_loops_and_custom_rules():
    @jax.custom_vjp
    def g(x):
        return jnp.abs(x)

    g.defvjp(lambda x: (jnp.abs(x), x), lambda x, c: (jnp.sign(x) * c,))

    def f(x):
        y = jax.jit(lambda u: jnp.maximum(u, 0.0))(x)  # pjit
        z = jax.checkpoint(lambda u: jnp.minimum(u, 1.0))(y)  # remat
        c, _ = lax.scan(lambda c, u: (c + jax.nn.relu(u), None), 0.0, x)  # custom_jvp in scan
        return jnp.sum(z) + c + jnp.sum(g(x))  # custom_vjp: its primal

    x = v(0.0, 1.0, -2.0)
    got = {(s.primitive, s.activation): s.ties for s in jr.find_kinks(f, x)}
    assert got == {("max", None): 1, ("min", None): 1, ("max", "relu"): 1, ("abs", None): 1}


def test_interpolation_through_a_floor_index():
    """Linear interpolation in a table [0, 2, 1, 5] written with a floor index (the
    textbook lookup): continuous, slopes 2, -1, 4 on [0, 1], [1, 2], [2, 3]; each gather
    of it jumps, the sum does not."""
    tab = jnp.array([0.0, 2.0, 1.0, 5.0])

    def f(x):
        i = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, 2)
        return (tab[i] + (x - i) * (tab[i + 1] - tab[i])).sum()

    one = v(1.0)
    rep = jr.check_linearization(f, v(1.0), one)
    assert rep.verdict == "kink"
    assert (rep.slope_plus, rep.slope_minus) == (pytest.approx(-1.0), pytest.approx(2.0))
    assert jr.check_linearization(f, v(2.25), one).verdict == "linear"
    assert float(jr.ld_grad(f)(v(1.0))[0]) == -1.0  # the slope the direction +1 enters
    assert float(jr.directional_derivative(f, v(1.0), -one)) == -2.0
    assert jr.kink_radius(f, v(2.25), one) == pytest.approx(0.75)  # floor jumps at 3
    assert jr.kink_radius(f, v(2.25), -one) == pytest.approx(0.25)
    # a floor result is integral and constant between its jumps: no tie of its truncation
    assert jr.count_ties(f, v(2.25)) == 0


def test_a_scalar_predicate_over_array_operands():
    f = lambda x: lax.select_n(x[0] > 0, x, 2 * x).sum()
    (s,) = jr.find_kinks(f, v(0.0, 1.0))
    assert (s.primitive, s.kind, s.ties) == ("select_n", "jump", 2)


def test_kink_radius_is_exact_on_ties_against_brute_force():
    """A 2-layer ReLU net with a unit planted on its kink: the directional derivatives
    carried through the tie give the first switch; brute force finds the first change of
    the activation pattern of x + t d for t > 0."""
    rng = np.random.default_rng(7)
    for trial in range(6):  # integers: the planted zeros are exact in float64
        w1 = rng.integers(-3, 4, (3, 6)).astype(float)
        w2 = rng.integers(-3, 4, (6, 4)).astype(float)
        x = rng.integers(-3, 4, 3).astype(float)
        b1 = rng.integers(-3, 4, 6).astype(float)
        b1[trial % 6] = -(x @ w1)[trial % 6]  # unit on its kink
        b2 = rng.integers(-3, 4, 4).astype(float)
        z2 = np.maximum(x @ w1 + b1, 0) @ w2 + b2
        b2[0] -= z2[0]  # and one in the second layer
        W1, B1, W2, B2 = map(jnp.asarray, (w1, b1, w2, b2))
        f = lambda u: jnp.sum(jax.nn.relu(jax.nn.relu(u @ W1 + B1) @ W2 + B2))
        d = rng.normal(size=3)
        t = jr.kink_radius(f, jnp.asarray(x), jnp.asarray(d))

        def pattern(s):
            u = x + s * d
            h = np.maximum(u @ w1 + b1, 0)
            return np.concatenate([u @ w1 + b1 > 0, h @ w2 + b2 > 0])

        p0 = pattern(1e-9)  # the piece entered at once
        ts = np.linspace(1e-9, 5.0, 20001)
        change = next((s for s in ts if not np.array_equal(pattern(s), p0)), INF)
        assert t == pytest.approx(change, abs=5.0 / 20000 + 1e-9)
