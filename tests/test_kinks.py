"""Kink analysis from the jaxpr: sites, ties, margins, sources, radius, audit.

``kink_radius`` is compared with a brute-force search for the first change of the
activation pattern (float64, relative 1e-9): the first-order prediction is exact for
piecewise-linear programs, so the only error is the bisection's (1e-13 relative).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr


def _mlp(seed, widths=(4, 16, 16, 1), dt=jnp.float64):
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * len(widths))
    ps = []
    for i in range(len(widths) - 1):
        w = jax.random.normal(keys[2 * i], (widths[i + 1], widths[i]), dt) / math.sqrt(widths[i])
        b = jax.random.normal(keys[2 * i + 1], (widths[i + 1],), dt)
        ps.append((w, b))
    return ps


def _forward(ps, x):
    pre = []
    for w, b in ps[:-1]:
        z = w @ x + b
        pre.append(z)
        x = jr.relu(z)
    w, b = ps[-1]
    return (w @ x + b)[0], pre


def test_ties_counted_exactly_with_a_constructed_bias():
    ps = _mlp(0)
    x = jnp.array([0.3, -0.2, 0.5, 1.0])
    (w1, b1), rest = ps[0], ps[1:]
    b1 = b1.at[3].set(-(w1[3] @ x)).at[7].set(-(w1[7] @ x))  # neurons 3 and 7 exactly at 0
    ps = [(w1, b1), *rest]
    _, pre = _forward(ps, x)
    brute = int(sum(np.sum(np.asarray(z) == 0) for z in pre))
    assert brute >= 2
    f = lambda v: _forward(ps, v)[0]
    sites = jr.find_kinks(f, x)
    assert [s.primitive for s in sites] == ["max", "max"]
    assert all(s.activation == "relu" and s.kind == "kink" for s in sites)
    assert sum(s.ties for s in sites) == brute == jr.count_ties(f, x)
    assert sites[0].size == 16 and sites[0].min_margin == 0.0
    assert all(s.source.startswith("test_kinks.py:") for s in sites)


def test_source_points_at_the_users_line():
    def f(x):
        y = jnp.maximum(x, 0.5)  # the line to find
        return jnp.sum(y)

    line = f.__code__.co_firstlineno + 1
    (site,) = jr.find_kinks(f, jnp.array([0.5, 1.0]))
    assert site.source == f"test_kinks.py:{line}"
    assert site.ties == 1 and site.activation is None
    assert "max" in str(site) and "test_kinks.py" in jr.summary([site])
    assert str(site) == (
        f"max at test_kinks.py:{line} (kink): 1 of 2 element(s) at the kink, min margin 0"
    )


def test_sites_through_jit_scan_cond_custom_jvp_vmap_remat_while():
    @jax.jit
    def inner(v):
        return jnp.abs(v)

    def f(x):
        def body(c, xi):
            return c + jr.relu(xi), xi

        c, _ = lax.scan(body, 0.0, x)
        y = lax.cond(c > 0, lambda v: jnp.sort(v), lambda v: v, x)
        z = jax.vmap(jax.nn.relu)(x)
        w = jax.checkpoint(lambda v: jnp.max(v))(x)
        _, u = lax.while_loop(
            lambda s: s[1] < 3.0, lambda s: (s[0] + 1, jnp.floor(s[1]) + 1.5), (0, c - 4.0)
        )  # u: 0 -> 1.5 -> 2.5 -> 3.5
        return c + y.sum() + z.sum() + w + inner(x).sum() + u

    x = jnp.array([0.0, 2.0, -1.0, 2.0])
    sites = {(s.primitive, s.activation): s for s in jr.find_kinks(f, x)}
    assert sites[("max", "relu")].size == 4  # scan body: 4 iterations
    assert sites[("max", "relu")].ties == 1
    assert sites[("cond", None)].kind == "jump"
    assert sites[("sort", None)].ties == 1  # the taken branch: two equal values
    assert sites[("reduce_max", None)].ties == 1  # two maxima
    assert sites[("abs", None)].ties == 1
    assert sites[("floor", None)].kind == "jump"
    assert (sites[("floor", None)].size, sites[("floor", None)].ties) == (3, 1)
    assert sites[("while", None)].size == 4  # the loop test, 3 times true and once false
    relus = [s for s in jr.find_kinks(f, x) if s.activation == "relu"]
    assert len(relus) == 2  # jaxrelu in the scan and jax.nn under vmap


def test_select_kinks_and_jumps_and_unknown_primitives():
    x = jnp.array([0.0, 1.0, -2.0])
    (s,) = jr.find_kinks(lambda v: jnp.where(v > 0, v, 0.0).sum(), x)
    assert (s.primitive, s.kind, s.ties) == ("select_n", "kink", 1)
    (s,) = jr.find_kinks(lambda v: jnp.where(v > 0, 1.0, 0.0).sum(), x)
    assert s.kind == "jump"
    (s,) = jr.find_kinks(lambda v: lax.zeta(v + 3.0, 1.0).sum(), x)
    assert s.kind == "unknown" and "zeta" in str(s)
    assert str(s).endswith("not analysed (its switches are not located)")
    (s,) = jr.find_kinks(lambda v: (v > 1.0).astype(v.dtype).sum(), x)
    assert s.kind == "jump" and s.min_margin == 0.0


@pytest.mark.parametrize(
    "dtype, gap, kind",
    [
        # relative gap g / (2 + g) against the documented threshold 1e-3 (float32/64)
        (jnp.float32, 3.4e-3, "jump"),  # 1.7e-3 relative
        (jnp.float32, 1.6e-3, "kink"),  # 0.8e-3 relative: below the threshold
        # in float16 the threshold is 32 ulps = 0.03125: a 2% gap is rounding-size
        (jnp.float16, 0.04, "kink"),
        (jnp.float16, 0.0655, "jump"),  # 1.06543 in float16: 0.03168 relative, above 32 ulps
        (jnp.float16, 0.08, "jump"),
    ],
)
def test_jump_threshold_of_a_select(dtype, gap, kind):
    x = jnp.array([0.5, -0.5], dtype)
    f = lambda v: jnp.where(v > 0, jnp.ones_like(v), jnp.ones_like(v) * (1 + gap)).sum()
    (s,) = jr.find_kinks(f, x)
    assert (s.primitive, s.kind) == ("select_n", kind)


_PW_CASES = {
    # jnp.piecewise routes derivatives with stop_gradient and counts conditions with a
    # cumsum/argmax: two comparisons on one surface must cross together
    "piecewise |x|": (
        lambda v: jnp.piecewise(v, [v < 0, v >= 0], [lambda t: -t, lambda t: t]),
        "kink",
    ),
    "piecewise x-1 | x": (
        lambda v: jnp.piecewise(v, [v < 0, v >= 0], [lambda t: t - 1, lambda t: t]),
        "jump",
    ),
    # clip written as three pieces; the surfaces at -1 and 1 are equally far from 0
    "piecewise clip": (
        lambda v: jnp.piecewise(v, [v < -1, (v >= -1) & (v < 1), v >= 1], [-1.0, lambda t: t, 1.0]),
        "kink",
    ),
    "piecewise clip, -2 left": (
        lambda v: jnp.piecewise(v, [v < -1, (v >= -1) & (v < 1), v >= 1], [-2.0, lambda t: t, 1.0]),
        "jump",
    ),
    "select |x|": (lambda v: jnp.select([v < 0, v >= 0], [-v, v]), "kink"),
    "select x-1 | x": (lambda v: jnp.select([v < 0, v >= 0], [v - 1, v]), "jump"),
    "where constant branches": (lambda v: jnp.where(v > 0, 1.0, -1.0), "jump"),
    "heaviside": (lambda v: jnp.heaviside(v, 0.5), "jump"),
}


@pytest.mark.parametrize("name", sorted(_PW_CASES))
@pytest.mark.parametrize("point", [(0.3, -0.7, 2.5), (0.0, 1.0, -1.0)], ids=["away", "at"])
def test_kind_of_selects_written_elsewhere(name, point):
    """Continuity is a fact about the function (hand-labelled), whether the point is at a
    switch or away from it."""
    g, kind = _PW_CASES[name]
    sites = jr.find_kinks(lambda v: g(v).sum(), jnp.array(point))
    assert sites and all(s.kind == kind for s in sites if s.primitive == "select_n"), sites
    assert {s.kind for s in sites} <= {"kink", "jump"}


def test_radius_and_kind_follow_values_through_stop_gradient():
    # the value is nonsmooth at 0 even though AD sees no derivative through relu
    f = lambda x: jax.nn.relu(lax.stop_gradient(x)) + x
    assert jr.kink_radius(f, jnp.array(-1.0), jnp.array(1.0)) == pytest.approx(1.0)
    g = lambda v: jnp.piecewise(v, [v < 0, v >= 0], [lambda t: -t, lambda t: t]).sum()
    assert jr.kink_radius(g, jnp.array([0.3, -0.7]), jnp.array([-1.0, 0.0])) == pytest.approx(0.3)
    # softmax/logsumexp: the max shift never reaches the output
    assert jr.find_kinks(lambda x: jax.nn.logsumexp(x), jnp.array([1.0, 1.0])) == []


def test_max_pooling_ties_and_margin():
    img = jnp.array([[1.0, 1.0, 0.0, 3.0], [0.0, 0.5, 2.0, 2.5]]).reshape(1, 2, 4, 1)
    f = lambda v: lax.reduce_window(v, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID").sum()
    (s,) = jr.find_kinks(f, img)
    assert s.primitive == "reduce_window_max"
    assert s.ties == 1  # the first window has two 1.0s
    assert s.min_margin == 0.0
    (s,) = jr.find_kinks(f, img.at[0, 0, 1, 0].set(0.75))
    assert s.ties == 0 and s.min_margin == pytest.approx(0.25)


def test_smooth_program_has_no_sites():
    f = lambda x: jnp.sum(jnp.tanh(x) @ jnp.ones((3, 2)))
    assert jr.find_kinks(f, jnp.ones(3)) == []
    assert jr.kink_radius(f, jnp.ones(3), jnp.ones(3)) == math.inf
    assert jr.summary([]) == "no nonsmooth sites"


def test_kink_radius_simple_cases():
    f = lambda x: jr.relu(x - 1.0)
    assert jr.kink_radius(f, jnp.array(0.25), jnp.array(2.0)) == pytest.approx(0.375)
    assert jr.kink_radius(f, jnp.array(1.0), jnp.array(1.0)) == math.inf  # on the kink
    assert jr.kink_radius(jnp.floor, jnp.array(0.25), jnp.array(-1.0)) == pytest.approx(0.25)
    assert jr.kink_radius(jnp.floor, jnp.array(1.0), jnp.array(1.0)) == pytest.approx(1.0)
    g = lambda x: jnp.sort(x).sum()
    assert jr.kink_radius(g, jnp.array([0.0, 1.0]), jnp.array([1.0, -1.0])) == pytest.approx(0.5)


def _first_pattern_change(ps, x, d, t_max, n=4000):
    pattern = lambda t: np.concatenate([np.asarray(z > 0) for z in _forward(ps, x + t * d)[1]])
    p0 = pattern(0.0)
    ts = np.linspace(0.0, t_max, n + 1)[1:]
    prev = 0.0
    for t in ts:
        if not np.array_equal(pattern(t), p0):
            lo, hi = prev, t
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if np.array_equal(pattern(mid), p0) else (lo, mid)
            return hi
        prev = t
    return math.inf


@pytest.mark.parametrize("seed", range(4))
def test_kink_radius_equals_brute_force_on_random_relu_networks(seed):
    ps = _mlp(seed)
    x = jax.random.normal(jax.random.PRNGKey(100 + seed), (4,), jnp.float64)
    d = jax.random.normal(jax.random.PRNGKey(200 + seed), (4,), jnp.float64)
    f = lambda v: _forward(ps, v)[0]
    t = jr.kink_radius(f, x, d)
    brute = _first_pattern_change(ps, x, d, 2 * t)
    assert t == pytest.approx(brute, rel=1e-9)
    rep = jr.check_linearization(f, x, d, rtol=1e-12)
    if rep.verdict == "linear":
        assert t / 2 <= rep.radius <= 2 * t
        assert rep.kink_radius == pytest.approx(t)


# What JAX 0.10 returns at kinks, measured once by hand (REFERENCE.md's table), and the
# true one-sided slopes from the definitions: independent of how the audit computes.
JAX_AT_KINKS = {
    ("jax.nn.relu(x)", 0.0): (0.0, 0.0, 1.0),
    ("jax.nn.relu6(x)", 0.0): (0.0, 0.0, 1.0),
    ("jax.nn.relu6(x)", 6.0): (0.0, 1.0, 0.0),
    ("jax.nn.hard_tanh(x)", -1.0): (1.0, 0.0, 1.0),
    ("jax.nn.hard_tanh(x)", 1.0): (1.0, 1.0, 0.0),
    ("jax.nn.leaky_relu(x)", 0.0): (1.0, 0.01, 1.0),
    ("jnp.abs(x)", 0.0): (1.0, -1.0, 1.0),
    ("jnp.maximum(x, 0)", 0.0): (0.5, 0.0, 1.0),
    ("jnp.clip(x, 0, None)", 0.0): (0.5, 0.0, 1.0),
}


def test_audit_rows_against_hand_values_and_the_registry():
    audit = jr.audit_conventions()
    rows = {(r.expression, r.at): r for r in audit}
    for key, (ad, left, right) in JAX_AT_KINKS.items():
        r = rows[key]
        assert (r.ad, r.left, r.right) == (ad, left, right), key
        assert r.in_clarke == (min(left, right) <= ad <= max(left, right))
        assert r.lexicographic == right  # along +1: the right slope
    diff = rows[("relu(x) - relu(-x)  (= x)", 0.0)]
    assert (diff.ad, diff.left, diff.right, diff.lexicographic) == (0.0, 1.0, 1.0, 1.0)
    assert not diff.in_clarke
    # the jaxrelu rows come from REGISTRY, and AD returns its documented defaults
    for name, info in jr.REGISTRY.items():
        expr = f"jaxrelu.{name}(x, 0)" if info.arity == 2 else f"jaxrelu.{name}(x)"
        for k in info.kinks:
            r = rows[(expr, 0.0 if info.arity == 2 else k.at)]
            assert r.ad == k.default, (name, k)
            assert (r.left, r.right) == (k.left, k.right), (name, k)
    assert rows[("jaxrelu.relu(x, 1.0)", 0.0)].ad == 1.0
    text = str(audit)
    assert "lexicographic" in text.splitlines()[0] and "NO" in text
    assert audit.to_dicts()[0]["expression"] == "jax.nn.relu(x)"


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="callable"):
        jr.find_kinks(1.0, jnp.ones(2))
    with pytest.raises(TypeError, match="floating-point"):
        jr.find_kinks(lambda v: v, jnp.ones(2, jnp.int32))
    with pytest.raises(TypeError, match="`x0`"):
        jr.kink_radius(jr.relu, jnp.array([1, 2]), jnp.ones(2))
    with pytest.raises(ValueError, match="`direction`.*shape"):
        jr.kink_radius(jr.relu, jnp.ones(2), jnp.ones(3))
    with pytest.raises(ValueError, match="`direction` is zero"):
        jr.kink_radius(jr.relu, jnp.ones(2), jnp.zeros(2))
    # a float32 direction that float16 cannot hold: 1e5 overflows, 1e-9 underflows
    # (it was cast silently: radius 0 and inf where the truth is 1e-5 and 1e9)
    x16 = jnp.zeros(2, jnp.float16)
    with pytest.raises(ValueError, match="`direction` overflows"):
        jr.kink_radius(jr.relu, x16, np.array([1e5, 1.0], np.float32))
    for d in ([1e-9, 1e-9], [1e-9, 1.0]):
        with pytest.raises(ValueError, match="`direction` has elements that underflow"):
            jr.kink_radius(jr.relu, x16, np.array(d, np.float32))
    assert jr.kink_radius(lambda v: jr.relu(v - 1).sum(), x16, np.array([1e-3, 0], np.float32)) == (
        pytest.approx(1000.0, rel=1e-3)
    )


class _Compiles:
    """Counts XLA backend compilations (JAX's public monitoring events)."""

    def __enter__(self):
        self.n = 0
        self._cb = lambda name, secs, **kw: setattr(
            self, "n", self.n + (name == "/jax/core/compile/backend_compile_duration")
        )
        jax.monitoring.register_event_duration_secs_listener(self._cb)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._cb)


def test_analysis_is_compiled_once_per_shape_and_never_stale():
    f = lambda v: jr.relu(v).sum()
    points = [jnp.ones(3), jnp.zeros(3), -jnp.ones(3)]
    jr.find_kinks(f, points[0])
    with _Compiles() as c:
        jr.find_kinks(f, points[1])
        jr.find_kinks(f, points[2])
    assert c.n == 0
    # a closure variable rebound: a fresh trace, the same compilation, the new value
    c = jnp.array(1.0)
    g = lambda x: jr.relu(x - c)
    assert jr.kink_radius(g, jnp.array(0.25), jnp.array(1.0)) == 0.75
    c = jnp.array(2.0)
    with _Compiles() as again:
        assert jr.kink_radius(g, jnp.array(0.25), jnp.array(1.0)) == 1.75
    assert again.n == 0  # constants are arguments of the compiled program
    c = 3.0  # a Python number is part of the program: recompiled, never stale
    assert jr.kink_radius(g, jnp.array(0.25), jnp.array(1.0)) == 2.75
    # state mutated in place is not seen (as with jax.jit) until the caches are cleared
    shift = {"c": jnp.array(1.0)}
    h = lambda x: jr.relu(x - shift["c"])
    assert jr.kink_radius(h, jnp.array(0.25), jnp.array(1.0)) == 0.75
    shift["c"] = jnp.array(2.0)
    assert jr.kink_radius(h, jnp.array(0.25), jnp.array(1.0)) == 0.75  # documented
    jr.clear_caches()
    assert jr.kink_radius(h, jnp.array(0.25), jnp.array(1.0)) == 1.75


def test_scan_counts_without_named_parameters():
    """Newer JAX (0.11) no longer names the numbers of constants and carries of a scan:
    they are read off the shapes. Checked here against the named parameters."""
    from types import SimpleNamespace

    from jaxrelu._jaxpr import control

    def f(x, w):
        def body(c, xi):
            return (c[0] + w * xi, c[1]), (xi * w, jnp.sum(c[0]))

        return lax.scan(body, (jnp.zeros(3), jnp.ones((5, 3))), x)

    closed = jax.make_jaxpr(f)(jnp.ones((5, 3)), jnp.ones(3))
    (eqn,) = [e for e in closed.jaxpr.eqns if e.primitive.name == "scan"]
    body = eqn.params["jaxpr"].jaxpr
    named = control.scan_counts(eqn, body)
    params = {k: v for k, v in eqn.params.items() if k not in ("num_consts", "num_carry")}
    bare = SimpleNamespace(params=params, invars=eqn.invars, outvars=eqn.outvars)
    assert control.scan_counts(bare, body) == named


def test_summary_right_aligns_the_counts_under_their_headers():
    """size, ties and min margin are numbers: right-aligned, their last digits under the
    last letters of their headers (sites of 3 and 12 elements, 1 and 0 ties)."""
    x = jnp.linspace(-1.0, 1.0, 12).at[0].set(1.0)
    f = lambda x: jr.relu(x[:3] - 1.0).sum() + jnp.abs(x + 2.0).sum()
    head, *rows = jr.summary(jr.find_kinks(f, x)).splitlines()
    assert len(rows) == 2
    for title in ("size", "ties", "margin"):
        end = head.index(title) + len(title)
        assert all(r[end - 1] != " " and (len(r) == end or r[end] == " ") for r in rows)
    assert {r.split()[-3] for r in rows} == {"3", "12"}


def test_a_small_float16_direction_does_not_underflow_the_radius():
    """relu(1e-3 x - 0.5) from 0 along d = 1e-5 in float16: the switch is at
    x = 500, t = 5e7 (by hand; 4.99e7 with float16's rounding of 1e-3 and 1e-5). The
    tangent 1e-3 * 1e-5 underflows in float16: the radius was inf. A float32 run of the
    same values is the oracle (to float16's rounding of the rates)."""
    f = lambda x: jr.relu(jnp.asarray(1e-3, x.dtype) * x - jnp.asarray(0.5, x.dtype))
    d16 = jnp.asarray(1e-5, jnp.float16)
    want = jr.kink_radius(f, jnp.zeros((), jnp.float32), d16.astype(jnp.float32))
    assert want == pytest.approx(0.5 / (1e-3 * float(d16)), rel=1e-6)
    got = jr.kink_radius(f, jnp.zeros((), jnp.float16), d16)
    assert got == pytest.approx(want, rel=1e-3) and got <= want


def test_a_large_float16_direction_does_not_overflow_the_radius():
    """relu(100 x - 50) from 0 along d = 1000 in float16: the switch is at x = 0.5,
    t = 5e-4 (by hand). The tangent 100 * 1000 = 1e5 overflows float16 (largest 65504):
    the direction is scaled down by a power of 2 first."""
    f = lambda x: jr.relu(jnp.asarray(100.0, x.dtype) * x - jnp.asarray(50.0, x.dtype))
    got = jr.kink_radius(f, jnp.zeros((), jnp.float16), jnp.asarray(1000.0, jnp.float16))
    assert got == pytest.approx(5e-4, rel=1e-3)
