"""The order-based rules (``reduce_max``/``min``, ``argmax``, pooling, ``cummax``/``cummin``
forward and reversed, ``sort``, ``top_k``) against values derived independently:

* switch distances (``kink_radius``) worked out by hand from where two elements meet along
  ``x0 + t d``, and checked by brute force on a fine grid of ``t``;
* LD-derivatives at planted ties from the definition: the winner of a ``max`` is the
  element whose row ``(value, tangent along m_1, along m_2, ...)`` is lexicographically
  largest (first position on a complete tie), a plain NumPy oracle;
* constants with ties inside a differentiated program (the rule must not touch their
  missing tangents).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr


def lex_winner(values, tangents, largest=True):
    """Index of the lexicographically largest (smallest) row of [values | tangents]; the
    first one on a complete tie."""
    rows = np.column_stack([values, tangents])
    if not largest:
        rows = -rows
    best = 0
    for i in range(1, len(rows)):
        for a, b in zip(rows[i], rows[best]):
            if a != b:
                if a > b:
                    best = i
                break
    return best


def brute_radius(f, x0, d, t_max=4.0, n=40001):
    """The first t on a grid where the *structure* of f changes: f along x0 + t d stops
    being affine (second difference not zero) -- exact for these piecewise-linear f."""
    ts = jnp.linspace(0.0, t_max, n)
    along = jax.jit(jax.vmap(lambda t: jnp.ravel(f(jnp.asarray(x0) + t * jnp.asarray(d)))))
    ys, ts = np.asarray(along(ts)), np.asarray(ts)
    second = np.abs(ys[2:] - 2 * ys[1:-1] + ys[:-2]).max(axis=1)
    bad = np.flatnonzero(second > 1e-9)
    return np.inf if len(bad) == 0 else ts[bad[0] + 1]


# ---------------------------------------------------------------- radii of reductions

RADIUS_CASES = [
    # (name, f, x0, d, radius by hand)
    ("max, x0 rises to x1", lambda x: jnp.max(x), [1.0, 2.0, 0.0], [1.0, 0.0, 0.0], 1.0),
    ("max, x1 falls to x0", lambda x: jnp.max(x), [1.0, 2.0, 0.0], [0.0, -1.0, 0.0], 1.0),
    ("max, x2 rises at 3", lambda x: jnp.max(x), [1.0, 2.0, 0.0], [0.0, 0.0, 3.0], 2 / 3),
    ("min, x1 falls at 5", lambda x: jnp.min(x), [1.0, 2.0, 0.0], [0.0, -4.0, 1.0], 0.4),
    ("argmax as a gather", lambda x: x[jnp.argmax(x)] * 2.0, [1.0, 2.0, 0.0], [0.5, 0, 0], 2.0),
    ("cummax, x0 reaches x1", lambda x: lax.cummax(x), [1.0, 3.0, 2.0], [1.0, 0.0, 0.0], 2.0),
    ("cummax, x1 falls to x2", lambda x: lax.cummax(x), [1.0, 3.0, 2.0], [0.0, -1.0, 0.0], 1.0),
    ("cummax reversed, x0 up", lambda x: lax.cummax(x, reverse=True), [1.0, 3.0, 2.0],
     [1.0, 0.0, 0.0], 2.0),
    ("cummax reversed, x2 up", lambda x: lax.cummax(x, reverse=True), [1.0, 3.0, 2.0],
     [0.0, 0.0, 1.0], 1.0),
    ("cummin, x2 falls to x0", lambda x: lax.cummin(x), [1.0, 3.0, 2.0], [0.0, 0.0, -2.0], 0.5),
    ("cummin reversed, x0 up", lambda x: lax.cummin(x, reverse=True), [1.0, 3.0, 2.0],
     [4.0, 0.0, 0.0], 0.25),
    ("sort, x0 meets x2", lambda x: jnp.sort(x), [1.0, 3.0, 2.0], [1.0, 0.0, 0.0], 1.0),
    ("sort, x2 falls to x0", lambda x: jnp.sort(x), [1.0, 3.0, 2.0], [0.0, 0.0, -2.0], 0.5),
    ("top_k 2 of 4, outsider enters", lambda x: lax.top_k(x, 2)[0], [4.0, 1.0, 3.0, 0.0],
     [0.0, 1.0, 0.0, 0.0], 2.0),
    ("top_k 2 of 4, order inside", lambda x: lax.top_k(x, 2)[0], [4.0, 1.0, 3.0, 0.0],
     [0.0, 0.0, 4.0, 0.0], 0.25),
    ("max pooling", lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (2,), (1,), "VALID"),
     [1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 1.0, 0.5], 1.0),
]  # fmt: skip


@pytest.mark.parametrize("name, f, x0, d, radius", RADIUS_CASES, ids=[c[0] for c in RADIUS_CASES])
def test_radius_of_order_primitives(name, f, x0, d, radius):
    got = jr.kink_radius(f, jnp.array(x0), jnp.array(d))
    assert got == pytest.approx(radius, rel=1e-12), name
    # the brute-force first change of slope (grid step 1e-4) agrees
    assert brute_radius(f, x0, d) == pytest.approx(radius, abs=2e-4)


def test_moving_apart_never_switches():
    # x1 is the max and moves away from every other element
    assert jr.kink_radius(jnp.max, jnp.array([1.0, 2.0, 0.0]), jnp.array([0.0, 1.0, 0.0])) == (
        np.inf
    )
    assert jr.kink_radius(jnp.sort, jnp.array([1.0, 2.0]), jnp.array([-1.0, 1.0])) == np.inf


# ---------------------------------------------------------------- LD at planted ties

M_CASES = [
    np.array([[1.0, 0.0], [1.0, 1.0]]),  # tied along m_1, x1 wins along m_2
    np.array([[1.0, 1.0], [1.0, 0.0]]),  # tied along m_1, x0 wins along m_2
    np.array([[1.0, 0.0], [2.0, -5.0]]),  # x1 wins along m_1
    np.array([[1.0, 3.0], [1.0, 3.0]]),  # complete tie: the first
]


@pytest.mark.parametrize("largest", [True, False], ids=["max", "min"])
@pytest.mark.parametrize("m", M_CASES, ids=range(len(M_CASES)))
def test_extremum_ld_follows_the_lexicographic_winner(m, largest):
    x = jnp.zeros(2)
    reduce = jnp.max if largest else jnp.min
    _, ld = jr.ld_jvp(reduce, x, jnp.asarray(m))
    w = lex_winner(np.zeros(2), m, largest)
    np.testing.assert_array_equal(np.asarray(ld), m[w])


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("largest", [True, False], ids=["cummax", "cummin"])
@pytest.mark.parametrize("seed", range(4))
def test_cumulative_ld_at_planted_ties(seed, largest, reverse):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, 5).astype(float)  # many ties
    m = rng.integers(-2, 3, (5, 3)).astype(float)
    op = lax.cummax if largest else lax.cummin
    _, ld = jr.ld_jvp(lambda v: op(v, reverse=reverse), jnp.asarray(x), jnp.asarray(m))
    for j in range(5):
        idx = np.arange(j, 5) if reverse else np.arange(j + 1)
        w = idx[lex_winner(x[idx], m[idx], largest)]
        np.testing.assert_array_equal(np.asarray(ld)[j], m[w], err_msg=f"position {j}")


@pytest.mark.parametrize("seed", range(4))
def test_sort_and_top_k_ld_at_planted_ties(seed):
    rng = np.random.default_rng(10 + seed)
    x = rng.integers(0, 2, 4).astype(float)
    m = rng.integers(-2, 3, (4, 2)).astype(float)
    rows = np.column_stack([x, m])
    # ascending sort of the rows (value, m_1, m_2), stable: the perturbed order
    order = sorted(range(4), key=lambda i: (*rows[i],))
    _, ld = jr.ld_jvp(jnp.sort, jnp.asarray(x), jnp.asarray(m))
    np.testing.assert_array_equal(np.asarray(ld), m[order])
    # top 2: the two largest rows, largest first (the first position on a complete tie)
    desc = sorted(range(4), key=lambda i: tuple(-v for v in rows[i]))
    _, ld = jr.ld_jvp(lambda v: lax.top_k(v, 2)[0], jnp.asarray(x), jnp.asarray(m))
    np.testing.assert_array_equal(np.asarray(ld), m[desc[:2]])


def test_pooling_ld_at_a_tie_inside_a_window():
    # windows (x0, x1) and (x1, x2), all 0: along m_1 = (1, 1, 0) the first window ties and
    # m_2 = (0, 1, 0) picks x1; the second window: x1 (slope 1) beats x2 (0) at once
    pool = lambda v: lax.reduce_window(v, -jnp.inf, lax.max, (2,), (1,), "VALID")
    m = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    _, ld = jr.ld_jvp(pool, jnp.zeros(3), jnp.asarray(m))
    np.testing.assert_array_equal(np.asarray(ld), [[1.0, 1.0], [1.0, 1.0]])


# ---------------------------------------------------------------- constants with ties


def test_constants_with_ties_inside_a_differentiated_program():
    c = jnp.array([1.0, 1.0, 0.0])  # a tied maximum and minimum, no tangent

    def f(x):
        return x * jnp.max(c) + jnp.min(c[:2]) + x * lax.cummax(c)[-1]

    assert float(jr.ld_grad(f)(2.0)) == 2.0
    assert jr.kink_radius(f, jnp.asarray(2.0), jnp.asarray(1.0)) == np.inf
    # a constant sort key orders a payload that has tangents: x reversed
    g = lambda x: lax.sort((jnp.array([2.0, 1.0]), x), num_keys=1)[1]
    np.testing.assert_array_equal(np.asarray(jr.ld_jacobian(g, jnp.array([5.0, 7.0]))),
                                  [[0.0, 1.0], [1.0, 0.0]])  # fmt: skip
    assert jr.kink_radius(g, jnp.array([5.0, 7.0]), jnp.array([1.0, 0.0])) == np.inf


def test_spectral_functions_of_constants_inside_a_differentiated_program():
    # eigenvalues and singular values of constant matrices (tied ones included): no
    # tangent, never crossed
    a = jnp.eye(2)
    f = lambda x: x * jnp.linalg.eigvalsh(a)[-1] + x * jnp.linalg.svd(a, compute_uv=False)[0]
    assert jr.kink_radius(f, jnp.asarray(1.0), jnp.asarray(1.0)) == np.inf
    assert float(jr.ld_grad(f)(1.0)) == 2.0


@pytest.mark.parametrize("op, want", [(lax.cummax, 1.0), (lax.cummin, 0.0)])
def test_cumulative_tie_broken_by_a_single_direction(op, want):
    # x = (0, 0) along d = (0, 1): x1 rises, so the running max follows x1 (slope 1) and
    # the running min keeps x0 (slope 0) -- one direction, as kink_radius and the checker
    # carry
    f = lambda x: op(x)[1]
    x, d = jnp.zeros(2), jnp.array([0.0, 1.0])
    assert float(jr.directional_derivative(f, x, d)) == want
    h = 2.0**-20  # the function itself (piecewise linear, exact)
    assert float((f(x + h * d) - f(x)) / h) == want


def test_top_k_of_rows_radius():
    # rows (4, 1, 3, 0) and (0, 2, 5, 1), top 2 per row: the first row's outsider 1 reaches
    # 3 after 2 along +1; the second row's 0 reaches its top-2 boundary 2 after 2
    x = jnp.array([[4.0, 1.0, 3.0, 0.0], [0.0, 2.0, 5.0, 1.0]])
    g = lambda v: lax.top_k(v, 2)[0]
    up1 = jnp.zeros((2, 4)).at[0, 1].set(1.0)
    up2 = jnp.zeros((2, 4)).at[1, 0].set(1.0)
    assert jr.kink_radius(g, x, up1) == 2.0
    assert jr.kink_radius(g, x, up2) == 2.0
    assert jr.kink_radius(g, x, -up2) == np.inf  # moving away, nothing else moves
    down = jnp.zeros((2, 4)).at[1, 2].set(-1.0)  # 5 falls to 2 after 3
    assert jr.kink_radius(g, x, down) == 3.0


def test_top_k_of_a_constant_with_ties():
    c = jnp.array([2.0, 2.0, 1.0])
    f = lambda x: x * lax.top_k(c, 1)[0][0]
    assert jr.kink_radius(f, jnp.asarray(1.0), jnp.asarray(1.0)) == np.inf
    assert float(jr.ld_grad(f)(1.0)) == 2.0


# ---------------------------------------------------------------- rules off the main paths


def test_max_over_a_trailing_axis_follows_each_rows_lexicographic_winner():
    # rows (0, 0, -1) and (2, 1, 2) reduced along axis 1 (a non-leading axis): each row's
    # winner is the lexicographically largest (value, m_1, m_2) among its own elements
    x = np.array([[0.0, 0.0, -1.0], [2.0, 1.0, 2.0]])
    m = np.array([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]], [[0.0, 3.0], [9.0, 9.0], [0.0, 4.0]]])
    # (ld_jvp takes the directions as the columns of a (size, k) matrix)
    _, ld = jr.ld_jvp(lambda v: jnp.max(v, axis=1), jnp.asarray(x), jnp.asarray(m.reshape(6, 2)))
    for r in range(2):
        np.testing.assert_array_equal(np.asarray(ld)[r], m[r][lex_winner(x[r], m[r])])


def _undecided_warned(f, x, d):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d)))
    return value, any(issubclass(w.category, jr.UndecidedTieWarning) for w in caught)


def test_argmax_of_equal_linear_values_is_decided():
    # argmax((x, x)) is 0 on the whole line: equal linear values stay equal, so the
    # first-order columns decide the tie (no undecided warning); f = x * 0 has slope 0
    f = lambda x: x * jnp.argmax(jnp.stack([x, x])).astype(x.dtype)
    assert _undecided_warned(f, 0.5, 1.0) == (0.0, False)


def test_argmax_tied_in_value_and_first_order_is_undecided():
    # (x^3, 0, x - 1) at 0: x^3 and 0 are tied with equal first derivatives (argmax is 1
    # for x < 0 and 0 for x > 0: no first-order column decides it); the third element has
    # slope 1 but is not tied. f = 10 * argmax jumps from 10 to 0 across 0.
    f = lambda x: 10.0 * jnp.argmax(jnp.stack([x**3, 0.0 * x, x - 1.0])).astype(x.dtype)
    h = 2.0**-10
    assert float(f(jnp.asarray(-h))) == 10.0 and float(f(jnp.asarray(h))) == 0.0
    assert _undecided_warned(f, 0.0, 1.0)[1]


FLOORED = [
    # order primitives of values without tangents (floor's) inside a differentiated
    # program: at 1.5, floor((x, 2x)) = (1, 3); f = x * 3 locally, and floor(2x) steps at
    # x = 2 (0.5 away along +1)
    ("cummax", lambda x: x * lax.cummax(jnp.floor(jnp.stack([x, 2 * x])))[1]),
    ("top_k", lambda x: x * lax.top_k(jnp.floor(jnp.stack([x, 2 * x])), 1)[0][0]),
    ("sort", lambda x: x * jnp.sort(jnp.floor(jnp.stack([x, 2 * x])))[1]),
    ("segment_max", lambda x: x * jax.ops.segment_max(
        jnp.floor(jnp.stack([x, 2 * x])), jnp.array([0, 0]), num_segments=1)[0]),
]  # fmt: skip


@pytest.mark.parametrize("name, f", FLOORED, ids=[c[0] for c in FLOORED])
def test_order_primitives_of_floored_values(name, f):
    assert float(jr.ld_grad(f)(1.5)) == 3.0
    assert jr.kink_radius(f, jnp.asarray(1.5), jnp.asarray(1.0)) == 0.5
    assert brute_radius(f, 1.5, 1.0, t_max=1.0, n=10001) == pytest.approx(0.5, abs=2e-4)


PERMUTATION_CASES = [
    # (name, f, x0 shape): a payload that differs from the key, read in sorted order or at
    # the top-k positions: f jumps wherever two keys swap
    ("argsort", lambda x: (2.0 * x + jnp.arange(x.size))[jnp.argsort(x)], (4,)),
    ("sort with a payload", lambda x: lax.sort((x, x * x.size + 1.0), num_keys=1)[1], (4,)),
    ("top_k positions", lambda x: (x * jnp.arange(1.0, 6.0))[lax.top_k(x, 2)[1]], (5,)),
    ("top_k positions of rows", lambda x: jnp.take_along_axis(
        x * jnp.arange(1.0, 4.0), lax.top_k(x, 2)[1], axis=1), (2, 3)),
    ("argmax of rows", lambda x: jnp.take_along_axis(
        x * jnp.arange(1.0, 4.0), jnp.argmax(x, axis=1)[:, None], axis=1), (2, 3)),
]  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name, f, shape", PERMUTATION_CASES, ids=[c[0] for c in PERMUTATION_CASES])
def test_permutation_radius_against_brute_force(name, f, shape, seed):
    """Random points and directions with integer-spaced values: the first swap along the
    line, found by brute force on a grid (where f stops being affine), is the radius."""
    rng = np.random.default_rng(seed)
    x0 = rng.permutation(np.arange(float(np.prod(shape)))).reshape(shape)
    d = rng.uniform(-1.0, 1.0, shape)
    got = jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d))
    want = brute_radius(f, x0, d, t_max=8.0, n=80001)
    if want == np.inf:  # no swap on the grid: the first one lies beyond it
        assert 8.0 < got < np.inf, name
    else:
        assert got == pytest.approx(want, abs=2e-4), name


def test_a_permutation_of_two_at_a_tie_is_a_jump_site():
    # top 1 of (x0, x1) at a tie: the position switches with the direction, and the
    # payload (x0, 2 x1) read there jumps from 1 to 2
    f = lambda x: jnp.stack([x[0], 2.0 * x[1]])[lax.top_k(x, 1)[1][0]]
    kinds = sorted(s.kind for s in jr.find_kinks(f, jnp.array([1.0, 1.0])))
    assert "jump" in kinds


def test_segment_max_margin_and_ties_by_hand():
    ids = jnp.array([0, 0, 0, 1, 1])
    f = lambda x: jax.ops.segment_max(x, ids, num_segments=2)
    # segment 0: 3 leads 2 by 1 and 0.5 by 2.5; segment 1: 7 leads 5 by 2. The margin is
    # the smallest positive gap, 1
    (site,) = jr.find_kinks(f, jnp.array([3.0, 2.0, 0.5, 7.0, 5.0]))
    assert (site.ties, site.min_margin) == (0, 1.0)
    # a tie in segment 0 (3 and 3): one tie, margin exactly 0
    (site,) = jr.find_kinks(f, jnp.array([3.0, 3.0, 0.5, 7.0, 5.0]))
    assert (site.ties, site.min_margin) == (1, 0.0)
    # the same for the minimum, gaps measured the other way: 0.5 trails 2 by 1.5
    g = lambda x: jax.ops.segment_min(x, ids, num_segments=2)
    (site,) = jr.find_kinks(g, jnp.array([3.0, 2.0, 0.5, 7.0, 5.0]))
    assert (site.ties, site.min_margin) == (0, 1.5)


def test_scatter_max_of_windows_radius():
    # x.at[1].max(u) on a (2, 2, 2) operand: the updates are a (2, 2) window (two window
    # dimensions); u[0, 1] = 1 rises at rate 1 toward x[1, 0, 1] = 5: the switch is 4 away
    x = jnp.arange(8.0).reshape(2, 2, 2)
    f = lambda u: x.at[1].max(u)
    u0, d = jnp.array([[0.0, 1.0], [2.0, 3.0]]), jnp.array([[0.0, 1.0], [0.0, 0.0]])
    assert jr.kink_radius(f, u0, d) == 4.0
    assert brute_radius(f, np.asarray(u0), np.asarray(d), t_max=8.0, n=8001) == pytest.approx(
        4.0, abs=2e-3
    )
