"""Integer and index paths found in code written elsewhere, where a switch made by a float
comparison or an order must reach the select, count or indexing that uses it: one-hot
encodings (``jax.nn.one_hot`` compares an index of shape (1,) against ``iota``), counts by
scatter-add (``jnp.bincount``, ``jnp.nonzero(size=)``), positions from sorts (``argsort``,
``lexsort``, ``top_k``), segment extrema (``jax.ops.segment_max``) and loops whose test
``jax.vmap`` batches. Each expected value is derived by hand next to the test; none is read
from jaxrelu's output. Before these rules, every jump below was certified as a point of
differentiability (``method='ad'``) and its radius was infinite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr

E0 = jnp.array([1.0, 0.0, 0.0])
TBL = jnp.array([1.0, 5.0, 2.0, 7.0])


def dd(f, x, d):
    return float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d)))


def pieces(x):
    # x and 2x - 1/2 meet at x = 1/2 (both 1/2): slopes 1 on the left, 2 on the right
    return jnp.stack([x, 2.0 * x - 0.5])


@pytest.mark.parametrize(
    "select",
    [
        lambda x: jax.nn.one_hot((x > 0.5).astype(jnp.int32), 2),
        lambda x: lax.eq((x > 0.5).astype(jnp.int32)[None], jnp.arange(2, dtype=jnp.int32)),
        lambda x: jnp.bincount((x > 0.5).astype(jnp.int32)[None], length=2),
    ],
    ids=["one_hot", "eq_against_iota", "bincount"],
)
def test_a_continuous_select_by_one_hot_or_count_has_its_one_sided_slopes(select):
    # f(x) = x for x <= 1/2, 2x - 1/2 above: continuous, one-sided slopes 1 and 2
    f = lambda x: jnp.dot(select(x).astype(jnp.float64), pieces(x))
    x = jnp.array(0.5)
    assert dd(f, x, 1.0) == 2.0
    assert dd(f, x, -1.0) == -1.0
    assert float(jr.ld_grad(f)(x)) == 2.0  # the right piece's slope: in the Clarke set
    _, cert = jr.certified_grad(f)(x)
    assert cert.method != "ad"  # the tie is seen: not called differentiable
    # from 0.3 along +1 the switch at 1/2 is 0.2 away
    assert jr.kink_radius(f, jnp.array(0.3), jnp.array(1.0)) == pytest.approx(0.2, abs=1e-12)
    assert jr.kink_radius(f, jnp.array(0.3), jnp.array(-1.0)) == np.inf


@pytest.mark.parametrize(
    "f",
    [
        # a table read at the count of elements above 1/2, through one_hot and a dot
        lambda x: jnp.dot(jax.nn.one_hot(jnp.sum(x > 0.5), 4), TBL) + jnp.sum(x),
        # bincount of the indicator: (number below, number above) weighted by 1 and 5
        lambda x: (
            jnp.dot(jnp.bincount((x > 0.5).astype(jnp.int32), length=2), TBL[:2]) + jnp.sum(x)
        ),
        lambda x: (
            jnp.dot(
                jnp.zeros(3, jnp.int32).at[jnp.arange(3)].add((x > 0.5).astype(jnp.int32)),
                TBL[:3],
            )
            + jnp.sum(x)
        ),
        # the table at the position of the first element above 1/2
        lambda x: jnp.sum(TBL[jnp.nonzero(x > 0.5, size=2, fill_value=0)[0]]) + jnp.sum(x),
        lambda x: jnp.sum(TBL[jnp.argwhere(x > 0.5, size=2, fill_value=0)[:, 0]]) + jnp.sum(x),
    ],
    ids=["one_hot_count", "bincount", "int_scatter_add", "nonzero", "argwhere"],
)
def test_a_jump_through_a_count_or_nonzero_is_not_certified(f):
    # x0 = 1/2 is on the switch: just above it the count (or the positions) change, and
    # the table read jumps by a nonzero amount (brute force shows the gap)
    x = jnp.array([0.5, 0.9, 0.7])
    h = 1e-9
    assert abs(float(f(x + h * E0)) - float(f(x))) > 0.5
    _, cert = jr.certified_grad(f)(x)
    assert not cert.certified and "jump" in cert.reason
    assert any(s.kind == "jump" and s.ties > 0 for s in jr.find_kinks(f, x))
    # from x0 = 0.3 moving up, the first jump is at x0 = 1/2, a distance 0.2
    r = jr.kink_radius(f, jnp.array([0.3, 0.9, 0.7]), E0)
    assert r == pytest.approx(0.2, abs=1e-12)


def test_a_count_over_many_switched_elements_finds_the_nearest_crossing():
    # 21 elements (more than are flipped one at a time): x = linspace(0, 1, 21) + 0.01;
    # the element 0.51 is 0.01 above 1/2 and 0.46 is 0.04 below it
    f = lambda x: jnp.dot(jnp.bincount((x > 0.5).astype(jnp.int32), length=2), TBL[:2])
    x = jnp.linspace(0.0, 1.0, 21) + 0.01
    d = jnp.ones(21)
    assert jr.kink_radius(f, x, -d) == pytest.approx(0.01, abs=1e-12)
    assert jr.kink_radius(f, x, d) == pytest.approx(0.04, abs=1e-12)
    _, cert = jr.certified_grad(f)(x - 0.01)  # 0.5 itself is an element: a tie
    assert not cert.certified


C = jnp.array([1.0, 2.0, 3.0])
W = jnp.array([1.0, 10.0, 100.0])


@pytest.mark.parametrize(
    "f",
    [
        lambda x: jnp.sum(lax.sort((x, C), num_keys=1)[1] * W) + jnp.sum(x),
        lambda x: jnp.sum(C[jnp.argsort(x)] * W) + jnp.sum(x),
        lambda x: jnp.take_along_axis(C, jnp.argsort(x), axis=0)[1] + jnp.sum(x),
        lambda x: jnp.sum(C[lax.top_k(x, 2)[1]] * W[:2]) + jnp.sum(x),
        lambda x: jnp.sum(C[jnp.lexsort((jnp.array([1, 0, 0]), x))] * W) + jnp.sum(x),
    ],
    ids=["sort_payload", "argsort", "take_along_axis", "top_k_indices", "lexsort"],
)
def test_positions_from_a_sort_at_tied_keys_jump(f):
    # x0 == x1: moving x0 up swaps the two positions, and the values read there differ
    x = jnp.array([0.3, 0.3, 0.2])
    h = 1e-9
    gap = max(abs(float(f(x + h * E0) - f(x))), abs(float(f(x - h * E0) - f(x))))
    assert gap > 0.5
    _, cert = jr.certified_grad(f)(x)
    assert not cert.certified and "jump" in cert.reason


@pytest.mark.parametrize(
    "f, scale",
    [
        (lambda x: jnp.sum(x[jnp.argsort(x)] * W), 1.0),
        (lambda x: jnp.sum(lax.sort((x, 2.0 * x), num_keys=1)[1] * W), 2.0),
        # the payload is not used: the sort is the sorted keys alone
        (lambda x: jnp.sum(lax.sort((x, C), num_keys=1)[0] * W), 1.0),
    ],
    ids=["gather_of_argsort", "payload_equal_at_tie", "unused_payload"],
)
def test_sorted_values_stay_continuous_and_certified(f, scale):
    # scale * sum(sort(x) * w) at x = (0.3, 0.3, 0.2): sorted (0.2, 0.3, 0.3); along +e0,
    # x0 becomes the largest: slope w[2]; along -e0 it is the middle one: -w[1].
    # Continuous: the lexicographic gradient (w[2], w[1], w[0]) is certified.
    x = jnp.array([0.3, 0.3, 0.2])
    assert dd(f, x, E0) == pytest.approx(100.0 * scale)
    assert dd(f, x, -E0) == pytest.approx(-10.0 * scale)
    g, cert = jr.certified_grad(f)(x)
    assert cert.certified, cert.reason
    np.testing.assert_allclose(np.asarray(g), np.array([100.0, 10.0, 1.0]) * scale)


def test_top_k_positions_switch_where_an_element_enters_the_top():
    c = jnp.array([1.0, 2.0, 3.0, 4.0])
    f = lambda x: jnp.sum(c[lax.top_k(x, 2)[1]] * jnp.array([1.0, 10.0])) + jnp.sum(x)
    d = jnp.array([0.0, 0.0, 1.0, 0.0])
    # x2 = 0.2 moving up meets x0 = 0.3 (the second largest) after 0.1
    x = jnp.array([0.3, 0.9, 0.2, 0.1])
    assert jr.kink_radius(f, x, d) == pytest.approx(0.1, abs=1e-12)
    # the sum of the top-2 values is continuous: at the tie x0 == x2 it is certified
    g2 = lambda x: jnp.sum(x[lax.top_k(x, 2)[1]])
    _, cert = jr.certified_grad(g2)(jnp.array([0.3, 0.9, 0.3, 0.1]))
    assert cert.certified


def segmax(x):  # 2 max(x0, x1) + max(x2, x3)
    m = jax.ops.segment_max(x, jnp.array([0, 0, 1, 1]), num_segments=2)
    return 2.0 * m[0] + m[1]


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_segment_max_at_a_tie_has_the_one_sided_derivatives(dtype):
    # x0 == x1 == 0.7: along +e0, x0 becomes the max (slope 2); along -e0, x1 stays the
    # max (slope 0). JAX's own JVP averages the tied pair (slope 1 both ways).
    x = jnp.array([0.7, 0.7, 1.3, 0.2], dtype)
    d = jnp.array([1.0, 0.0, 0.0, 0.0], dtype)
    assert dd(segmax, x, d) == 2.0
    assert dd(segmax, x, -d) == 0.0
    # the lexicographic gradient along the basis: e0 first, so x0 is the max: (2, 0, 1, 0)
    np.testing.assert_array_equal(np.asarray(jr.ld_grad(segmax)(x)), [2.0, 0.0, 1.0, 0.0])
    (site,) = jr.find_kinks(segmax, x)
    assert site.kind == "kink" and site.ties == 1
    # x0 = 0.1 moving up reaches x1 = 0.7 after 0.6; moving down, never
    x2 = jnp.array([0.1, 0.7, 1.3, 0.2], dtype)
    assert jr.kink_radius(segmax, x2, d) == pytest.approx(0.6, rel=1e-6)
    assert jr.kink_radius(segmax, x2, -d) == np.inf


def test_segment_min_and_window_scatter_max_match_one_sided_differences():
    # brute force: forward differences with h = 1e-7 of piecewise-linear functions are
    # exact to ~1e-8 along random directions, at points with ties in every segment
    rng = np.random.default_rng(7)
    seg = jnp.array([0, 1, 1, 2, 2, 2])
    f1 = lambda x: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * jax.ops.segment_min(x, seg, 3))
    x1 = jnp.array([0.5, 0.2, 0.2, 0.7, 0.7, 0.7])
    wts = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    f2 = lambda x: jnp.sum(wts * jnp.zeros((3, 2)).at[jnp.array([0, 0, 2])].max(x.reshape(3, 2)))
    x2 = jnp.array([0.5, -1.0, 0.5, 0.3, -0.2, 0.0])  # ties: 0.5/0.5 and 0 (operand)/0.0
    for f, x in ((f1, x1), (f2, x2)):
        for _ in range(4):
            d = jnp.asarray(rng.standard_normal(x.shape))
            h = 1e-7
            assert dd(f, x, d) == pytest.approx(float((f(x + h * d) - f(x)) / h), abs=1e-6)


def newton_sqrt(a):
    cond = lambda c: (jnp.abs(c[0] * c[0] - a) > 1e-10) & (c[1] < 50)
    body = lambda c: (0.5 * (c[0] + a / c[0]), c[1] + 1)
    return lax.while_loop(cond, body, (a + 1.0, 0))[0]


def test_a_vmapped_while_loop_with_a_batched_test_is_analysed():
    # jax.vmap turns the loop test into a bool[2]; the loop runs until both fail and each
    # element stops at its own. d/da sqrt(a) = 1 / (2 sqrt(a)): 1/(2 sqrt 2) and 1/6.
    f = lambda a: jnp.sum(jax.vmap(newton_sqrt)(a))
    a = jnp.array([2.0, 9.0])
    true = np.array([1 / (2 * np.sqrt(2.0)), 1 / 6])
    g, cert = jr.certified_grad(f)(a)
    np.testing.assert_allclose(np.asarray(g), true, rtol=1e-8)
    assert cert.certified  # the loop test is 1e-10 from flipping: no jump here
    assert dd(f, a, jnp.array([1.0, -1.0])) == pytest.approx(true[0] - true[1], rel=1e-8)


def test_a_vmapped_loop_whose_trip_count_is_a_floor_switches_where_it_changes():
    # y <- 1.5 y + x, floor(3x) times, from y = x: at x0 = 0.5 one step (1.5 * 0.5 + 0.5);
    # the count becomes 2 at x0 = 2/3, reached along +e0 after 1/6
    def g(x):
        n = jnp.floor(x * 3).astype(jnp.int32)
        return lax.fori_loop(0, n, lambda i, y: y * 1.5 + x, x)

    f = lambda xs: jnp.sum(jax.vmap(g)(xs))
    xs = jnp.array([0.5, 1.2])
    e = jnp.array([1.0, 0.0])
    # d/dx0 of 1.5 x0 + x0 = 2.5
    assert dd(f, xs, e) == pytest.approx(2.5)
    assert jr.kink_radius(f, xs, e) == pytest.approx(1 / 6, rel=1e-9)
    _, cert = jr.certified_grad(f)(jnp.array([2 / 3, 1.2]))
    assert not cert.certified  # on the jump of the trip count


def test_finished_elements_of_a_batched_loop_keep_their_value_and_derivative():
    # y <- 1.5 y while y < 1: from 0.3 three steps (0.45, 0.675, 1.0125), from 0.8 one
    # (1.2); y = 1.5^n x with derivative 1.5^n. The element that finishes first must keep
    # its value and tangent while the other runs on.
    # (|xs - xs0| adds a tie at the point, so that the interpreter's tangents are read:
    # without one JAX's own derivative is returned; one-sided slope +1 along +e_i)
    g = lambda x: lax.while_loop(lambda y: y < 1.0, lambda y: 1.5 * y, x)
    xs = jnp.array([0.3, 0.8])
    f = lambda u: jax.vmap(g)(u) + jnp.abs(u - xs)
    np.testing.assert_allclose(np.asarray(f(xs)), [1.0125, 1.2])
    got = jr.directional_derivative(f, xs, jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(got), [1.5**3 + 1, 1.5 + 1], rtol=1e-12)
    # the lexicographic Jacobian is diagonal: each element depends on its own input only
    want = np.diag([1.5**3 + 1, 1.5 + 1])
    np.testing.assert_allclose(np.asarray(jr.ld_jacobian(f, xs)), want, rtol=1e-12)
    # moving the second element up, its test first fails before any step when 0.8 + t
    # reaches 1 (no step instead of one): t = 0.2
    assert jr.kink_radius(lambda xs: jnp.sum(f(xs)), xs, jnp.array([0.0, 1.0])) == pytest.approx(
        0.2, abs=1e-12
    )


def test_a_segment_max_tie_whose_tangents_are_not_numbers_is_undecided():
    # sqrt(x0 * x0) and sqrt(x1 * x1) are both 0 at 0, each with tangent NaN (sqrt's
    # infinite slope times 0): which one leads cannot be told from first derivatives (the
    # true one-sided derivative along (1, 0.5) is max(1, 0.5) = 1). Alone at the top, a
    # NaN tangent is no tie: only the NaN warning.
    # (|x1| adds a tie, so that the interpreter runs where nothing else is tied)
    seg = jnp.array([0, 0])
    root = lambda v: jnp.sqrt(v * v)
    tied = lambda x: jax.ops.segment_max(root(x), seg, 1)[0]
    # one NaN tangent beside a finite one (x1's) is as blind: the operand of .at[].max,
    # or an update
    tied_op = lambda x: root(x[:1]).at[jnp.array([0])].max(x[1:])[0]
    tied_up = lambda x: x[1:].at[jnp.array([0])].max(root(x[:1]))[0]
    alone = lambda x: jax.ops.segment_max(jnp.stack([root(x[0]), x[1] - 5]), seg, 1)[0]
    alone_op = lambda x: root(x[:1]).at[jnp.array([0])].max(x[1:] - 5)[0]
    d = jnp.array([1.0, 0.5])
    for f in (tied, tied_op, tied_up):
        with pytest.warns(jr.UndecidedTieWarning) as got:
            jr.directional_derivative(f, jnp.zeros(2), d)
        assert any("cannot resolve" in str(w.message) for w in got)
    for f in (alone, alone_op):
        with pytest.warns(jr.UndecidedTieWarning) as got:
            jr.directional_derivative(lambda x, f=f: f(x) + jnp.abs(x[1]), jnp.zeros(2), d)
        assert [str(w.message).startswith("the derivative is not") for w in got] == [True]
        assert all(w.filename == __file__ for w in got)  # attributed to the caller


def test_a_gradient_not_a_number_in_a_pytree_warns():
    # norm at 0 in one leaf of a pytree argument (forward mode carries sqrt's NaN into
    # every column, as JAX's jacfwd does)
    f = lambda p: p["a"] + jnp.linalg.norm(p["b"])
    p = {"a": jnp.array(1.0), "b": jnp.zeros(3)}
    with pytest.warns(jr.UndecidedTieWarning, match="not a number where f is finite"):
        g = jr.ld_grad(f)(p)
    assert np.all(np.isnan(np.asarray(g["b"])))


@pytest.mark.parametrize(
    "f",
    [
        lambda x: lax.cond(x > 0, lambda z: jax.nn.relu(z - 1.0), lambda z: 0.0 * z, x),
        lambda x: lax.cond(x <= 0, lambda z: -z, lambda z: jnp.abs(z - 1.0) - 1.0, x),
        lambda x: lax.switch(
            (x > 0).astype(jnp.int32), [lambda z: 0.0 * z, lambda z: jax.nn.relu(z - 1.0)], x
        ),
    ],
    ids=["cond_relu", "cond_abs", "switch"],
)
def test_the_radius_at_a_tied_branch_reads_the_branch_entered(f):
    # at x = 0 the branch index is tied; along +1 the program enters the second branch,
    # whose own kink (at x = 1) is the first one met: radius 1. Along -1 it stays in the
    # first branch, smooth for ever.
    x = jnp.array(0.0)
    assert jr.kink_radius(f, x, jnp.array(1.0)) == pytest.approx(1.0, abs=1e-12)
    assert jr.kink_radius(f, x, jnp.array(-1.0)) == np.inf


def test_a_straight_through_quantizer_at_its_jump_is_not_certified():
    # f(x) = x + stop_gradient(round(4x)/4 - x) has the values round(4x)/4: at x = 1/8,
    # 4x = 1/2 rounds to 0 (half to even) and just above to 1: f jumps from 0 to 1/4.
    # JAX's gradient (1, the straight-through surrogate) is no derivative of f there.
    # Away from the jump (x = 0.1) f is constant and the surrogate is certified with the
    # stop_gradient note, as before. The logsumexp max shift under stop_gradient, tied,
    # is no jump: still certified.
    sg = lax.stop_gradient
    f = lambda x: x + sg(jnp.round(4 * x) / 4 - x)
    assert float(f(jnp.array(0.125 + 1e-12))) - float(f(jnp.array(0.125))) == 0.25
    g, cert = jr.certified_grad(f)(jnp.array(0.125))
    assert float(g) == 1.0 and not cert.certified
    assert "jump reaches f through stop_gradient (round" in cert.reason
    assert "f is differentiable here" not in cert.reason
    _, cert = jr.certified_grad(f)(jnp.array(0.1))
    assert cert.certified and "stop_gradient" in cert.reason
    lse = lambda x: sg(jnp.max(x)) + jnp.log(jnp.sum(jnp.exp(x - sg(jnp.max(x)))))
    _, cert = jr.certified_grad(lse)(jnp.array([1.0, 1.0, 0.0]))
    assert cert.certified


def test_a_flat_table_read_at_a_switching_index_is_a_site():
    """``floor(t)[(x1 > 0).astype(int)]`` with t = (x0, x0 + 1) at (0.5, 0): the table is
    piecewise constant, but the index switches at x1 = 0 (no site of its own: a cast of
    a comparison), and the value read jumps from 0 to 1 there (the oracle: f at x1 =
    +-1e-9). The read is a site (a jump), not a flat value carried along."""
    f = lambda x: jnp.floor(jnp.stack([x[0], x[0] + 1.0]))[(x[1] > 0).astype(jnp.int32)]
    x = jnp.array([0.5, 0.0])
    assert float(f(x + jnp.array([0.0, 1e-9]))) - float(f(x - jnp.array([0.0, 1e-9]))) == 1.0
    _, cert = jr.certified_grad(f)(x)
    assert not cert.certified and "jump" in cert.reason


_SPLIT = lambda x: jnp.split(jnp.floor(x), 2)[0][0]  # floor(x0), through a 2-output split
_BARRIER = lambda x: lax.optimization_barrier((jnp.floor(x), 2 * jnp.floor(x)))[0][0]


@pytest.mark.parametrize("flat", [_SPLIT, _BARRIER], ids=["split", "optimization_barrier"])
def test_piecewise_constant_results_of_a_multi_output_op_switch_where_their_operand_does(flat):
    """f = where(floor(x0) > 0, x1, 2 x1) with floor(x0) read through a primitive of two
    results. By hand: for x0 in [0, 1), floor(x0) = 0 and f = 2 x1, smooth with gradient
    (0, 2); at x0 = 1 floor steps to 1 and f jumps from 2 x1 to x1. The comparison
    ``0 > 0`` is tied in value, but its operand is constant there: its switch is the
    floor's, at x0 = 1, not at the point."""
    f = lambda x: jnp.where(flat(x) > 0, x[1], 2 * x[1])
    d = jnp.array([1.0, 0.5])
    for x0 in (0.5, 1.0 - 2.0**-20):
        x = jnp.array([x0, 0.3])
        g, cert = jr.certified_grad(f)(x)
        assert cert.certified, cert.reason
        np.testing.assert_array_equal(g, [0.0, 2.0])
        # the first switch along d: where x0 reaches 1 (the oracle: f before and after)
        r = jr.kink_radius(f, x, d)
        assert r == pytest.approx(1.0 - x0, rel=1e-9)
        assert float(f(x + (r * 0.99) * d)) == pytest.approx(2 * (0.3 + 0.5 * r * 0.99))
        assert float(f(x + (r * 1.01) * d)) == pytest.approx(0.3 + 0.5 * r * 1.01)
    x = jnp.array([1.0, 0.3])  # at the jump: the select is a tied jump
    gap = float(f(x - jnp.array([1e-9, 0.0]))) - float(f(x))
    assert gap == pytest.approx(0.3)
    sel = [s for s in jr.kink_sites(f, x, d) if s.primitive == "select_n"]
    assert [(s.kind, s.ties) for s in sel] == [("jump", 1)]


def test_a_select_on_the_sign_of_a_negative_value_jumps_where_it_turns_positive():
    """where(sign(x) > 0, 1, 0) from -0.5 is 0 until x crosses 0, then 1 (by evaluation):
    the select is a jump, 0.5 away; so is the count sum(sign(x) > 0) * x0. The value of
    sign across its switch is +1 from a negative x, not its own -1."""
    x = -0.5 * jnp.ones(3)
    heav = lambda v: jnp.where(jnp.sign(v) > 0, 1.0, 0.0)
    assert float(heav(jnp.float32(1e-6))) - float(heav(jnp.float32(-1e-6))) == 1.0
    sel = [s for s in jr.find_kinks(heav, x) if s.primitive == "select_n"]
    assert [(s.kind, s.min_margin) for s in sel] == [("jump", 0.5)]
    cnt = lambda v: jnp.sum(jnp.sign(v) > 0) * v[0]
    step = [s for s in jr.kink_sites(cnt, x, jnp.ones(3)) if s.primitive == "step"]
    assert [(s.kind, s.radius) for s in step] == [("jump", 0.5)]
