"""Switches carried through discrete reductions over many elements (more than are flipped
one at a time): counts, ``any`` and ``argmax`` of comparisons over 17 to 60 elements, on
one axis, a leading axis and several axes. Expected values come from the construction:
an element ``x_i`` moving at ``d_i`` crosses the threshold ``c`` at ``(c - x_i) / d_i``,
and a count changes at every crossing; radii are confirmed by brute force on a grid of
``t`` where the function is piecewise linear. Before this rule the analysis dropped such
switches: ``find_kinks`` missed the jump of ``x[0] * jnp.sum(x > c)`` at 17 elements
and ``certified_grad`` certified JAX's gradient across it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr


def brute_radius(f, x0, d, t_max, n=20001):
    """The first t on a grid where f along x0 + t d stops being affine (within two grid
    steps, ``2 * t_max / (n - 1)``, of the kink)."""
    ts = jnp.linspace(0.0, t_max, n)
    along = jax.jit(jax.vmap(lambda t: jnp.ravel(f(jnp.asarray(x0) + t * jnp.asarray(d)))))
    ys, ts = np.asarray(along(ts), np.float64), np.asarray(ts)
    second = np.abs(ys[2:] - 2 * ys[1:-1] + ys[:-2]).max(axis=1)
    bad = np.flatnonzero(second > 1e-4)
    return np.inf if len(bad) == 0 else ts[bad[0] + 1]


def crossings(x0, d, c):
    """Every element's first-order crossing time of ``c`` (inf if it moves away)."""
    x0, d = np.asarray(x0, np.float64), np.asarray(d, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (c - x0) / d
    return np.where(t > 0, t, np.inf)


RNG = np.random.default_rng(7)


@pytest.mark.parametrize("n", [17, 40])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_count_switches_at_the_first_crossing(n, sign):
    x0 = np.linspace(0.0, 1.0, n, dtype=np.float32)
    d = np.full(n, sign, np.float32)
    c = float(x0[n // 2] + 0.3 * (x0[1] - x0[0]))
    f = lambda x: x[0] * jnp.sum(x > c)
    want = crossings(x0, d, c).min()  # every crossing changes a count
    got = jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d))
    assert got == pytest.approx(want, rel=1e-5)
    assert brute_radius(f, x0, d, 2 * want) == pytest.approx(want, abs=4 * want / 20000)
    assert [(s.primitive, s.kind) for s in jr.find_kinks(f, jnp.asarray(x0))] == [("step", "jump")]


def test_random_directions_on_a_long_count():
    x0 = RNG.uniform(-1, 1, 60).astype(np.float32)
    for _ in range(5):
        d = RNG.normal(size=60).astype(np.float32)
        f = lambda x: jnp.where(jnp.sum(x > 0.1) > 30, 2.0 * x[0], -x[1])
        want = crossings(x0, d, 0.1).min()
        got = jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d))
        assert got == pytest.approx(want, rel=1e-4)


def test_a_leading_reduced_axis_keeps_each_column_apart():
    """``sum(X > C, axis=0)`` of a (20, 3) array: three counts, one per column, each with
    its own threshold; only the right axis bookkeeping gives every column's crossing."""
    x0 = RNG.uniform(0, 1, (20, 3)).astype(np.float32)
    c = np.array([0.3, 0.5, 0.7], np.float32)
    weights = jnp.array([1.0, -2.0, 3.0])
    f = lambda x: jnp.sum(weights * x[0] * jnp.sum(x > c, axis=0))
    for col in range(3):  # only column `col` moves
        d = np.zeros((20, 3), np.float32)
        d[:, col] = RNG.choice([-1.0, 1.0], 20)
        want = crossings(x0[:, col], d[:, col], c[col]).min()
        got = jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d))
        assert got == pytest.approx(want, rel=1e-5)


def test_a_count_over_several_axes():
    x0 = RNG.uniform(0, 1, (5, 8)).astype(np.float32)
    d = RNG.normal(size=(5, 8)).astype(np.float32)
    f = lambda x: x[0, 0] * jnp.sum(x > 0.45, axis=(0, 1))
    want = crossings(x0, d, 0.45).min()
    assert jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d)) == pytest.approx(want, rel=1e-5)


def test_any_switches_no_later_than_the_truth():
    """``any`` over 40 elements with several above the threshold changes only when the
    last of them crosses down: the radius is a lower bound there (the nearest crossing),
    never later than the truth; with none above, the first crossing up is exact."""
    x0 = np.linspace(0.0, 1.0, 40, dtype=np.float32)
    f = lambda x: jnp.where(jnp.any(x > 0.9), x[0], -x[0])
    down = np.full(40, -1.0, np.float32)
    truth = brute_radius(f, x0, down, 0.5)
    assert truth == pytest.approx(1.0 - 0.9, abs=1e-4)  # the largest element leaves last
    got = jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(down))
    assert 0 < got <= truth + 2 * 0.5 / 20000
    assert got == pytest.approx(crossings(x0, down, 0.9).min(), rel=1e-4)
    g = lambda x: jnp.where(jnp.any(x > 1.2), x[0], -x[0])
    up = np.full(40, 1.0, np.float32)
    assert jr.kink_radius(g, jnp.asarray(x0), jnp.asarray(up)) == pytest.approx(0.2, rel=1e-4)


def test_argmax_of_a_long_mask_switches_no_later_than_the_truth():
    x0 = np.linspace(0.0, 1.0, 30, dtype=np.float32)
    f = lambda x: x[jnp.argmax(x > 0.5)] * 3.0  # the first element above 0.5
    d = np.full(30, 1.0, np.float32)
    truth = brute_radius(f, x0, d, 0.2)
    got = jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d))
    assert 0 < got <= truth + 2 * 0.2 / 20000


def test_a_tie_inside_a_long_count_is_a_tied_jump():
    x0 = np.linspace(0.0, 1.0, 40, dtype=np.float32)
    c = float(x0[25])  # exactly on an element
    f = lambda x: x[0] * jnp.sum(x > c) + jnp.sum(x)
    (site,) = jr.find_kinks(f, jnp.asarray(x0))
    assert (site.kind, site.ties) == ("jump", 1)
    _, cert = jr.certified_grad(f)(jnp.asarray(x0))
    assert cert.method == "lexicographic" and not cert.certified


def test_a_tie_that_does_not_change_a_long_any_is_no_tie():
    """One element exactly at the threshold, another well above it: ``any`` is true on
    both sides of the tie, so f is smooth there and JAX's gradient is certified."""
    x0 = np.linspace(0.0, 1.0, 40, dtype=np.float32)
    c = float(x0[20])
    f = lambda x: jnp.where(jnp.any(x > c), x[0] * x[1], -x[0])
    _, cert = jr.certified_grad(f)(jnp.asarray(x0))
    assert (cert.method, cert.certified) == ("ad", True)
    assert all(s.ties == 0 for s in jr.find_kinks(f, jnp.asarray(x0)))
    h = lambda x: jnp.where(jnp.any(x > 1.0), x[0] * x[1], -x[0])  # only the tied one
    _, cert = jr.certified_grad(h)(jnp.asarray(x0))
    assert cert.method == "lexicographic"


@pytest.mark.parametrize("n", [17, 40])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_long_cumulative_count_switches_at_each_prefix_first_crossing(n, reverse):
    """cumsum(x > c) over more than 16 elements, weighted: each result counts the elements
    before it (after it, reversed), so f jumps at the first crossing among all of them
    (every crossing changes the last, or first, result). Checked against the crossings
    and brute force; at a tie (one element exactly at c) it is a tied jump, never
    certified (it was dropped: no site, certified differentiable)."""
    x0 = np.linspace(0.0, 1.0, n, dtype=np.float32)
    d = np.full(n, 1.0, np.float32)
    c = float(x0[n // 3] + 0.3 * (x0[1] - x0[0]))
    w = jnp.arange(1.0, n + 1.0)
    cs = (lambda v: jnp.cumsum(v[::-1])[::-1]) if reverse else jnp.cumsum
    f = lambda x: jnp.sum(x) + cs((x > c).astype(jnp.int32)).astype(jnp.float32) @ w
    want = crossings(x0, d, c).min()
    assert jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d)) == pytest.approx(want, rel=1e-5)
    assert brute_radius(f, x0, d, 2 * want) == pytest.approx(want, abs=4 * want / 20000)
    tie = jnp.asarray(x0).at[n // 2].set(c)
    step = jnp.zeros(n).at[n // 2].set(1e-3)
    assert abs(float(f(tie + step)) - float(f(tie - step))) > 1.0  # (a jump: by hand, >= 1)
    sites = jr.find_kinks(f, tie)  # (ties: the results the tied element changes)
    assert [s.kind for s in sites] == ["jump"] and sites[0].ties >= 1
    _, cert = jr.certified_grad(f)(tie)
    assert not cert.certified


@pytest.mark.parametrize("n", [8, 20])
def test_a_long_cumulative_count_looks_past_a_nearer_flip_that_changes_nothing(n):
    """cumsum((v0 > 0) & (v1 > 0)): element 0 at (0, -1) is tied, but its flip changes
    nothing (v1 < 0); element 1 at (0.5, 0) is tied and its flip changes the count: f
    jumps by n - 1 there (evaluated below). Short or long, a tied jump, never certified
    (long, the nearer flip hid the other: certified, 'differentiable here')."""
    x = np.ones((2, n), np.float32)
    x[:, 0], x[:, 1] = (0.0, -1.0), (0.5, 0.0)
    x = jnp.asarray(x)
    f = lambda v: jnp.sum(jnp.cumsum((v[0] > 0) & (v[1] > 0)).astype(jnp.float32))
    d = jnp.zeros_like(x).at[1, 1].set(1.0)
    assert float(f(x + 1e-3 * d)) - float(f(x)) == n - 1
    _, cert = jr.certified_grad(f)(x)
    assert not cert.certified
    assert [(s.kind, s.radius) for s in jr.kink_sites(f, x, d)] == [("jump", 0.0)]


def test_a_long_cumulative_max_of_a_switching_value_is_an_unknown_site():
    """cummax over more than 16 switching elements is not traced: listed as "unknown",
    so nothing is certified (f jumps where an element crosses c: by hand)."""
    x0 = jnp.linspace(0.0, 1.0, 20, dtype=jnp.float32)
    f = lambda x: x[0] + lax.cummax((x > 0.51).astype(jnp.int32))[-1].astype(jnp.float32)
    assert ("cummax", "unknown") in [(s.primitive, s.kind) for s in jr.find_kinks(f, x0)]
    _, cert = jr.certified_grad(f)(x0)
    assert not cert.certified


@pytest.mark.parametrize("n", [14, 20, 40])
def test_two_ties_at_once_where_only_the_farther_one_changes_a_max(n):
    """Elements 2 and 12 sit exactly on the threshold; the max of the indices at or above
    it is 12: moving element 2 changes nothing, moving element 12 down changes f. The
    point is a tied jump at every length (flipped one by one up to 16 elements, by
    distance beyond)."""
    x0 = np.linspace(0.0, 0.4, n).astype(np.float32)
    x0[2] = x0[12] = 0.5
    f = lambda x: x[0] * jnp.max(jnp.where(x >= 0.5, jnp.arange(n), -1)) + x[1]
    sites = jr.find_kinks(f, jnp.asarray(x0))
    assert sum(s.ties for s in sites) >= 1
    _, cert = jr.certified_grad(f)(jnp.asarray(x0))
    assert cert.method == "lexicographic" and not cert.certified
    down = np.zeros(n, np.float32)
    down[12] = -1.0
    assert jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(down)) == 0.0
