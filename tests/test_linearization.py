"""The linearization checker on cases with known answers, in float64 and float32.

Batched and single checks agree up to the roundoff floor (a vmapped matrix product may
sum in another order).

Tolerances: orders are asserted within 0.25 of 2 (smooth) or 0.1 of 1 (kinks): the
order is fitted over the 5 cleanest steps above the roundoff floor, where higher-order
terms and noise move it by a few hundredths. One-sided slopes of piecewise-linear
functions are exact up to roundoff: 1e-6 relative in float32, 1e-12 in float64.
"""

import math
import pickle

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import jaxrelu as jr

DTYPES = [jnp.float32, jnp.float64]
TOL = {jnp.float32: 1e-6, jnp.float64: 1e-12}


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dt(request):
    return request.param


def A(v, dt):
    return jnp.asarray(v, dt)


def test_smooth_has_order_two(dt):
    f = lambda x: jnp.sum(jnp.sin(x) * x**2)
    rep = jr.check_linearization(f, A([0.3, -1.2, 2.0], dt))
    assert rep.verdict == "smooth", rep
    assert abs(rep.order - 2) < 0.25
    assert rep.ad_in_hull
    ad = float(rep.ad_slope)
    assert abs(rep.slope_plus - ad) < 1e-2 * abs(ad) and abs(rep.slope_minus - ad) < 1e-2 * abs(ad)


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0, 2.0])
def test_relu_at_zero_is_a_kink_for_every_kink_value(s, dt):
    rep = jr.check_linearization(lambda x: jr.relu(x, s), A(0.0, dt), A(1.0, dt))
    assert rep.verdict == "kink", rep
    assert abs(rep.order - 1) < 0.1
    assert abs(rep.slope_plus - 1) < TOL[dt] and abs(rep.slope_minus) < TOL[dt]
    assert rep.ad_slope == s
    assert rep.ad_in_hull == (0 <= s <= 1)
    # along +d the linearization holds exactly when AD picked the right slope
    assert (rep.radius == rep.steps[0]) == (s == 1.0)


def test_relu_away_from_zero_is_linear_with_the_kink_radius(dt):
    rep = jr.check_linearization(jr.relu, A(1.5, dt), A(-1.0, dt))
    assert rep.verdict == "linear", rep
    assert math.isnan(rep.order)
    assert 0.75 <= rep.radius <= 1.5  # the kink is 1.5 away along d, grid ratio 2
    assert rep.kink_radius == pytest.approx(1.5)
    assert rep.sites and rep.sites[0].primitive == "max"


def test_abs_at_zero_and_sites_named(dt):
    rep = jr.check_linearization(jr.abs, A(0.0, dt), A(1.0, dt))
    assert rep.verdict == "kink"
    assert rep.slope_plus == pytest.approx(1) and rep.slope_minus == pytest.approx(-1)
    assert "abs" in rep.reason and "test_linearization.py" in rep.reason


def test_relu_difference_is_a_wrong_derivative(dt):
    rep = jr.check_linearization(lambda x: jr.relu(x) - jr.relu(-x), A(0.0, dt), A(1.0, dt))
    assert rep.verdict == "wrong_derivative", rep
    assert not rep.ad_in_hull
    assert abs(rep.slope_plus - 1) < TOL[dt] and abs(rep.slope_minus - 1) < TOL[dt]


def test_max_of_two_smooth_functions_at_a_tie(dt):
    rep = jr.check_linearization(lambda x: jnp.maximum(x, x**2), A(1.0, dt), A(1.0, dt))
    assert rep.verdict == "kink", rep
    assert rep.slope_plus == pytest.approx(2, rel=1e-3)
    assert rep.slope_minus == pytest.approx(1, rel=1e-3)
    assert rep.ad_slope == pytest.approx(1.5) and rep.ad_in_hull


@pytest.mark.parametrize(
    "f, x0",
    [(jnp.floor, 1.0), (lambda x: jnp.where(x > 0, 1.0, 0.0) + x, 0.0), (jnp.sign, 0.0)],
)
def test_jumps_are_discontinuous(f, x0, dt):
    rep = jr.check_linearization(f, A(x0, dt), A(1.0, dt))
    assert rep.verdict == "discontinuous", rep
    assert abs(rep.order) < 0.1


def test_sqrt_abs_at_zero_is_inconclusive(dt):
    rep = jr.check_linearization(lambda x: jnp.sqrt(jnp.abs(x)), A(0.0, dt), A(1.0, dt))
    assert rep.verdict == "inconclusive"
    assert "not finite" in rep.reason


def test_nonfinite_value_is_inconclusive():
    rep = jr.check_linearization(jnp.log, A(0.0, jnp.float64), A(1.0, jnp.float64))
    assert rep.verdict == "inconclusive" and "not finite" in rep.reason


def test_domain_edge_at_large_steps_is_reported_not_fatal():
    rep = jr.check_linearization(jnp.log, A(0.5, jnp.float64), A(1.0, jnp.float64))
    assert rep.verdict == "smooth" and "left out" in rep.reason


def _net(dt, seed=0, widths=(5, 24, 12, 1)):
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * len(widths))
    params = []
    for i in range(len(widths) - 1):
        w = jax.random.normal(keys[2 * i], (widths[i + 1], widths[i]), dt) / math.sqrt(widths[i])
        b = jax.random.normal(keys[2 * i + 1], (widths[i + 1],), dt)
        params.append((w, b))

    def f(x):
        for w, b in params[:-1]:
            x = jr.relu(w @ x + b)
        w, b = params[-1]
        return (w @ x + b)[0]

    return f, params


def test_relu_network_linear_region_and_radius(dt):
    f, _ = _net(dt)
    x = jax.random.normal(jax.random.PRNGKey(5), (5,), dt)
    d = jax.random.normal(jax.random.PRNGKey(6), (5,), dt)
    t = jr.kink_radius(f, x, d)
    rep = jr.check_linearization(f, x, d)
    assert rep.verdict == "linear", rep
    assert t / 2 <= rep.radius <= 2 * t
    assert rep.slope_plus == pytest.approx(rep.ad_slope, rel=1e-5)


def test_pytree_inputs_and_vector_outputs(dt):
    def f(p):
        return {"u": jr.relu(p["a"]) * p["b"], "v": jnp.sin(p["a"]).sum()}

    x0 = {"a": A([1.0, 2.0], dt), "b": A(3.0, dt)}
    rep = jr.check_linearization(f, x0)
    assert rep.verdict == "smooth"
    assert set(rep.ad_slope) == {"u", "v"} and rep.ad_slope["u"].shape == (2,)
    assert rep.slope_plus["u"].shape == (2,)
    # at the kink: a = 0 along +a
    x1 = {"a": A([0.0, 2.0], dt), "b": A(3.0, dt)}
    d = {"a": A([1.0, 0.0], dt), "b": A(0.0, dt)}
    rep = jr.check_linearization(f, x1, d)
    assert rep.verdict == "kink"
    np.testing.assert_allclose(rep.slope_plus["u"], [3.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(rep.slope_minus["u"], [0.0, 0.0], atol=1e-6)


def test_default_direction_is_reproducible_and_unit():
    f = lambda x: jnp.sum(x**3)
    x0 = jnp.array([0.5, -0.2, 1.0])
    r1 = jr.check_linearization(f, x0)
    r2 = jr.check_linearization(f, x0)
    r3 = jr.check_linearization(f, x0, key=jax.random.PRNGKey(7))
    assert r1.ad_slope == r2.ad_slope != r3.ad_slope
    np.testing.assert_array_equal(r1.remainder_plus, r2.remainder_plus)


def test_low_precision_does_not_give_confident_wrong_verdicts():
    for dtype in (jnp.float16, jnp.bfloat16):
        rep = jr.check_linearization(jr.relu, A(0.0, dtype), A(1.0, dtype))
        assert rep.verdict == "kink", rep
        rep = jr.check_linearization(jnp.sin, A(0.5, dtype))
        assert rep.verdict in ("smooth", "inconclusive"), rep
    # float16 cannot resolve a relative curvature of 1e-3: not a confident "linear"
    rep = jr.check_linearization(
        lambda x: x + 1e-3 * x**2, A(1.0, jnp.float16), A(1.0, jnp.float16)
    )
    assert rep.verdict in ("smooth", "inconclusive"), rep
    assert jr.check_linearization(jr.relu, A(2.0, jnp.float16)).verdict == "linear"
    # steps 2^0 .. 2^-11: the last that moves 0.5 in float16 is its ulp, 2^-11
    assert len(jr.check_linearization(jnp.sin, A(0.5, jnp.float16)).steps) == 12


def test_check_many_equals_single(dt):
    f, _ = _net(dt, seed=1)
    xs = jax.random.normal(jax.random.PRNGKey(2), (6, 5), dt)
    xs = xs.at[0].set(0.0)
    ds = jax.random.normal(jax.random.PRNGKey(3), (6, 5), dt)
    many = jr.check_many(f, xs, ds)
    assert len(many) == 6 and sum(many.counts.values()) == 6
    for i in range(6):
        one = jr.check_linearization(f, xs[i], ds[i], analyze_kinks=False)
        assert many.verdict[i] == one.verdict
        # a vmapped matmul may round differently: equal up to the roundoff floor
        diff = np.abs(many.reports[i].remainder_plus - one.remainder_plus)
        assert np.all(diff <= 1e-4 * one.remainder_plus + 2 * one.floor)
        assert many.ad_slope[i] == pytest.approx(one.ad_slope, rel=1e-5)


def test_check_many_diagnoses_each_point_as_check_linearization_does(dt):
    """The batched diagnosis (slopes and floors of all points at once) against the
    one-point path, on points that take every branch: f not finite at the largest steps
    (log near -1), a kink, smooth points, a NaN derivative (sqrt at 0)."""
    f = lambda x: jnp.log(x + 1.0) + jax.nn.relu(x - 0.5) + jnp.sqrt(jnp.abs(x - 2.0))
    xs = jnp.array([-0.999, 0.5, 0.2, 2.0, 3.0], dt)
    many = jr.check_many(f, xs, jnp.ones_like(xs))
    for i in range(len(xs)):
        one = jr.check_linearization(f, xs[i], jnp.ones((), dt))
        rep = many.reports[i]
        assert rep.verdict == one.verdict, (i, rep.reason, one.reason)
        # the vmapped evaluation may round magnitudes differently in the last bits
        tol = TOL[dt]
        assert rep.slope_plus == pytest.approx(one.slope_plus, rel=tol, nan_ok=True)
        assert rep.slope_minus == pytest.approx(one.slope_minus, rel=tol, nan_ok=True)
        np.testing.assert_allclose(rep.floor, one.floor, rtol=tol)
        assert rep.radius == one.radius
    verdicts = many.verdict.tolist()
    assert verdicts[1] == "kink" and verdicts[2] == "smooth", verdicts


def test_check_many_default_directions():
    res = jr.check_many(lambda x: jnp.sum(jnp.tanh(x)), jnp.ones((3, 4)))
    assert res.counts["smooth"] == 3


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_random_relu_networks_at_random_points(seed):
    f, _ = _net(jnp.float64, seed=seed, widths=(3, 8, 8, 1))
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 1))
    x = jax.random.normal(k1, (3,), jnp.float64)
    d = jax.random.normal(k2, (3,), jnp.float64)
    t_plus = jr.kink_radius(f, x, d)
    t_minus = jr.kink_radius(f, x, -d)
    rep = jr.check_linearization(f, x, d, analyze_kinks=False)
    if min(t_plus, t_minus) > 1e-3 * rep.steps[0]:
        assert rep.verdict == "linear", rep
        top = rep.steps[0]
        # the first switch along +d may change nothing (a unit whose output is dead
        # downstream): the radius is where the slope along the line first changes, found
        # by brute force (second differences on a grid of 20001 points up to the top step)
        ts = np.linspace(0.0, top, 20001)
        ys = np.asarray(jax.vmap(lambda t: f(x + t * d))(jnp.asarray(ts))).ravel()
        bent = np.flatnonzero(np.abs(ys[2:] - 2 * ys[1:-1] + ys[:-2]) > 1e-9)
        t_eff = ts[bent[0] + 1] if len(bent) else np.inf
        # no change before the first switch (a bend found at ts[j + 1] lies in
        # (ts[j], ts[j + 2]): the grid locates it to one spacing)
        assert t_eff + (ts[1] - ts[0]) >= t_plus * (1 - 1e-3)
        assert min(t_eff, top) / 2 <= rep.radius <= 2 * min(t_eff, top) or (
            rep.radius == top and t_eff >= top
        )
    assert rep.verdict in ("linear", "inconclusive")
    assert rep.ad_in_hull
    assert rep.slope_plus == pytest.approx(rep.ad_slope, rel=1e-9, abs=1e-12)


def test_report_prints_pickles_and_plots(tmp_path):
    rep = jr.check_linearization(jr.relu, jnp.array(0.0), jnp.array(1.0))
    text = str(rep)
    assert "kink" in text and "floor" in text and len(text.splitlines()) > len(rep.steps)
    again = pickle.loads(pickle.dumps(rep))
    assert again.verdict == rep.verdict
    np.testing.assert_array_equal(again.remainder_plus, rep.remainder_plus)
    import matplotlib

    matplotlib.use("Agg")
    ax = rep.plot()
    assert len(ax.lines) >= 4
    ax.figure.savefig(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0


def test_neighbourhood_error_orders():
    sm = jr.neighbourhood_error(
        lambda x: jnp.sum(jnp.exp(x)), jnp.array([0.1, 0.2]), 2.0 ** -np.arange(2, 14)
    )
    assert abs(sm.order - 2) < 0.1
    k = jr.neighbourhood_error(
        lambda x: jr.relu(x).sum(), jnp.zeros(4), 2.0 ** -np.arange(2, 14), n_directions=16
    )
    assert abs(k.order - 1) < 0.05
    assert k.error.shape == (12,) and np.all(np.diff(k.error) < 0)


def test_assert_linearization():
    jr.assert_linearization(jnp.tanh, jnp.array([0.3]))
    with pytest.raises(AssertionError, match="verdict 'kink'") as info:
        jr.assert_linearization(jr.relu, jnp.array(0.0), jnp.array(1.0))
    assert "floor" in str(info.value)
    jr.assert_linearization(jr.relu, jnp.array(0.0), jnp.array(1.0), allow=("kink",))


# --------------------------------------------------------------------- bad input


def test_bad_arguments_are_clear_errors():
    x = jnp.array([1.0, 2.0])
    with pytest.raises(TypeError, match="`f` must be callable, got float"):
        jr.check_linearization(3.0, x)
    for bad in (jnp.array([1, 2]), jnp.array([True]), jnp.array([1j]), 1):
        with pytest.raises(TypeError, match="`x0`"):
            jr.check_linearization(jnp.sin, bad)
    with pytest.raises(ValueError, match="`direction`.*shape"):
        jr.check_linearization(jnp.sin, x, jnp.ones(3))
    with pytest.raises(ValueError, match="`direction`.*structure"):
        jr.check_linearization(jnp.sin, x, {"a": x})
    with pytest.raises(ValueError, match="`direction` is zero"):
        jr.check_linearization(jnp.sin, x, jnp.zeros(2))
    with pytest.raises(ValueError, match="decreasing"):
        jr.check_linearization(jnp.sin, x, steps=[1e-3, 1e-2, 1e-1])
    with pytest.raises(ValueError, match="positive"):
        jr.check_linearization(jnp.sin, x, steps=[1.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="at least 3"):
        jr.check_linearization(jnp.sin, x, steps=[1.0, 0.5])
    with pytest.raises(TypeError, match="floating-point"):
        jr.check_linearization(lambda v: v > 0, x)
    with pytest.raises(ValueError, match="`rtol`"):
        jr.check_linearization(jnp.sin, x, rtol=-1.0)
    with pytest.raises(ValueError, match="unknown verdicts"):
        jr.assert_linearization(jnp.sin, x, allow=("fine",))


def test_untraceable_function_error_says_where():
    def f(v):
        if v[0] > 0:  # Python control flow on a traced value
            return v
        return -v

    with pytest.raises(TypeError, match=r"JAX-traceable.*test_linearization\.py:\d+"):
        jr.check_linearization(f, jnp.array([1.0, 2.0]))
