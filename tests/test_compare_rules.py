"""Comparisons at a tie: which side the perturbed program takes, checked against the
function itself.

Each function here is piecewise linear and continuous in the differentiated argument
along the direction (or the comparison does not move along it), so the one-sided
directional derivative is exactly the forward difference ``(f(x + h d) - f(x)) / h`` for
a small dyadic ``h`` (no rounding in float64 for these integer-valued slopes): an oracle
that knows nothing of the rules. A comparison tied *with a zero rate* (the direction does
not move ``x[0]``) must keep the unperturbed outcome; one tied with a nonzero rate takes
the side the direction enters.
"""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr

H = 2.0**-20
OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def forward_difference(f, x, d):
    x, d = jnp.asarray(x), jnp.asarray(d)
    return float((f(x + H * d) - f(x)) / H)


@pytest.mark.parametrize("a", [-1.0, 0.0, 1.0], ids=["down", "still", "up"])
@pytest.mark.parametrize("op", list(OPS), ids=list(OPS))
def test_tied_comparison_takes_the_side_the_direction_enters(op, a):
    cmp = OPS[op]
    # x[0] = 0 ties the comparison; both branches are 0 at x = (0, 0), so f is continuous
    # there, with slope 3 + a on one piece and 5 + 2a on the other
    f = lambda x: jnp.where(cmp(x[0], 0.0), 3.0 * x[1] + x[0], 5.0 * x[1] + 2.0 * x[0])
    x, d = [0.0, 0.0], [a, 1.0]
    want = forward_difference(f, x, d)
    assert want in (3.0 + a, 5.0 + 2.0 * a)
    got = float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d)))
    assert got == want, (op, a)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("a", [-1.0, 0.0, 1.0], ids=["down", "still", "up"])
def test_searchsorted_at_a_breakpoint_takes_the_side_the_direction_enters(side, a):
    # the total-order comparisons of jnp.searchsorted: x[0] = 1 sits on a breakpoint
    grid = jnp.array([0.0, 1.0, 2.0])
    weights = jnp.array([2.0, 3.0, 5.0, 7.0])
    f = lambda x: weights[jnp.searchsorted(grid, x[0], side=side)] * x[1]
    x, d = [1.0, 0.0], [a, 1.0]  # f = 0 at x: continuous whichever weight is read
    want = forward_difference(f, x, d)
    got = float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d)))
    assert got == want, (side, a)


@pytest.mark.parametrize("a", [-1.0, 0.0, 1.0], ids=["down", "still", "up"])
def test_signbit_at_zero(a):
    f = lambda x: jnp.where(jnp.signbit(x[0]), 3.0 * x[1] + x[0], 5.0 * x[1] + 2.0 * x[0])
    x, d = [0.0, 0.0], [a, 1.0]
    want = forward_difference(f, x, d)
    assert float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d))) == want


@pytest.mark.parametrize("a", [-1.0, 1.0], ids=["down", "up"])
def test_comparison_of_a_value_that_jumps_at_the_point(a):
    # floor(x) >= 1 at x = 1: floor is tied (1 here, 0 just below); the pieces x and
    # 2 - x meet at 1, so f is continuous: slopes +1 along +1 and +1 along -1
    f = lambda x: jnp.where(jnp.floor(x) >= 1.0, x, 2.0 - x)
    want = forward_difference(f, 1.0, a)
    got = float(jr.directional_derivative(f, jnp.asarray(1.0), jnp.asarray(a)))
    assert got == want == 1.0


def test_nan_guards_are_no_switch():
    guarded = lambda x: jnp.where(jnp.isnan(x), 0.0, x) + jnp.nan_to_num(x)
    assert jr.find_kinks(guarded, jnp.asarray(1.0)) == []
    assert jr.count_ties(guarded, jnp.asarray(1.0)) == 0
    assert jr.kink_radius(guarded, jnp.asarray(1.0), jnp.asarray(1.0)) == np.inf


def test_a_plateau_test_is_a_select_site_with_its_radius():
    # floor(x) == 2 holds on [2, 3): a plateau, not an instant; f jumps at 2 and at 3
    f = lambda x: jnp.where(jnp.floor(x) == 2.0, x, 0.5 * x)
    kinds = {s.primitive: s.kind for s in jr.find_kinks(f, jnp.asarray(2.5))}
    assert kinds.get("select_n") == "jump"
    assert jr.kink_radius(f, jnp.asarray(2.5), jnp.asarray(1.0)) == 0.5
    assert jr.kink_radius(f, jnp.asarray(2.25), jnp.asarray(-1.0)) == 0.25


# ------------------------------------------------------------ clip at its bounds


@pytest.mark.parametrize("x0", [0.0, 1.0], ids=["at lo", "at hi"])
@pytest.mark.parametrize("a", [-1.0, 1.0], ids=["down", "up"])
def test_clip_at_a_bound(x0, a):
    f = lambda x: jnp.clip(x[0], 0.0, 1.0) + 0.0 * x[1]
    x, d = [x0, 0.0], [a, 0.0]
    want = forward_difference(f, x, d)  # 0 leaving the range, a entering it
    assert float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d))) == want


# ------------------------------------------------------------ |z| of a complex value at 0


def test_complex_abs_at_zero_reads_the_first_direction_that_moves_it():
    f = lambda x: jnp.abs(x[0] + 1j * x[1]) + x[2]
    # columns (0, 0, 1) then (3, 4, 0): the first leaves |z| at 0 (slope 1 from x[2]), the
    # second gives |(3, 4)| = 5
    m = jnp.array([[0.0, 3.0], [0.0, 4.0], [1.0, 0.0]])
    _, ld = jr.ld_jvp(f, jnp.zeros(3), m)
    np.testing.assert_array_equal(np.asarray(ld), [1.0, 5.0])
    # no column moves z: |z| contributes exactly 0 (not NaN, not a tiny fill)
    _, ld = jr.ld_jvp(f, jnp.zeros(3), jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0]]))
    np.testing.assert_array_equal(np.asarray(ld), [1.0, 2.0])


# ------------------------------------------------------------ truncation to an integer
# x.astype(int) truncates toward zero: it jumps at every nonzero integer, not at 0
# (trunc(-0.5) = trunc(0.5) = 0)


@pytest.mark.parametrize(
    "x0, d, radius",
    [
        (0.3, 1.0, 0.7),  # reaches 1
        (0.3, -1.0, 1.3),  # passes 0 (no jump) and reaches -1
        (-0.3, 1.0, 1.3),
        (-0.3, -1.0, 0.7),
        (0.0, 1.0, 1.0),
        (0.0, -1.0, 1.0),
        (1.0, -1.0, 0.0),  # trunc(1 - h) = 0 at once
        (1.0, 1.0, 1.0),  # reaches 2
        (2.5, 2.0, 0.25),
    ],
)
def test_truncation_radius(x0, d, radius):
    f = lambda x: jnp.array([10.0, 20.0, 40.0, 80.0, 160.0, 320.0])[x.astype(int) + 2]
    got = jr.kink_radius(f, jnp.asarray(x0), jnp.asarray(d))
    assert got == pytest.approx(radius, rel=1e-12, abs=0.0)


@pytest.mark.parametrize("x0", [-1.0, 0.0, 1.0, 1.5])
@pytest.mark.parametrize("a", [-1.0, 1.0], ids=["down", "up"])
def test_truncation_reads_the_piece_the_direction_enters(x0, a):
    table = jnp.array([10.0, 20.0, 40.0, 80.0, 160.0])
    f = lambda x: table[x[0].astype(int) + 2] * x[1]  # 0 at x[1] = 0: continuous there
    x, d = [x0, 0.0], [a, 1.0]
    want = forward_difference(f, x, d)
    assert float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d))) == want


def test_complex_abs_radius_inside_the_unit_disc():
    # |z| with z = 0.5 moving to 0 along -1 (real part): the kink at z = 0 is 0.5 away
    f = lambda x: jnp.abs(x[0] + 1j * x[1])
    assert jr.kink_radius(f, jnp.array([0.5, 0.0]), jnp.array([-1.0, 0.0])) == 0.5
    assert jr.kink_radius(f, jnp.array([0.0, 0.25]), jnp.array([0.0, -2.0])) == 0.125


def test_truncated_remainder_jumps_at_nonzero_integers_only():
    # rem(x, 1) = x - trunc(x): continuous at 0, jumps at +-1, +-2, ...
    f = lambda x: lax.rem(x, 1.0)
    (site,) = jr.find_kinks(f, jnp.asarray(0.3))
    assert site.kind == "jump" and site.min_margin == pytest.approx(0.7, rel=1e-12)
    (site,) = jr.find_kinks(f, jnp.asarray(-1.25))
    assert site.min_margin == pytest.approx(0.25, rel=1e-12)
    assert jr.kink_radius(f, jnp.asarray(0.3), jnp.asarray(-1.0)) == pytest.approx(1.3, 1e-12)


def test_staircases_of_constants_inside_a_differentiated_program():
    # floor and round of constants: no tangent, never crossed
    f = lambda x: x * jnp.floor(jnp.asarray(2.5)) + x * jnp.round(jnp.asarray(0.5))
    assert jr.kink_radius(f, jnp.asarray(1.0), jnp.asarray(1.0)) == np.inf
    assert float(jr.ld_grad(f)(1.0)) == 2.0


@pytest.mark.parametrize("x0", [0.0, 1.0], ids=["at lo", "at hi"])
@pytest.mark.parametrize("a", [-1.0, 1.0], ids=["down", "up"])
def test_lax_clamp_at_a_bound(x0, a):
    f = lambda x: lax.clamp(0.0, x[0], 1.0) + 0.0 * x[1]
    x, d = [x0, 0.0], [a, 0.0]
    want = forward_difference(f, x, d)
    assert float(jr.directional_derivative(f, jnp.asarray(x), jnp.asarray(d))) == want


@pytest.mark.parametrize(
    "x0, margin", [(0.3, 0.7), (-0.3, 0.7), (0.0, 1.0), (1.25, 0.25), (2.75, 0.25)]
)
def test_truncation_margin_is_the_distance_to_the_nearest_nonzero_integer(x0, margin):
    f = lambda x: jnp.array([10.0, 20.0, 40.0, 80.0, 160.0, 320.0])[x.astype(int) + 2]
    m = min(s.min_margin for s in jr.find_kinks(f, jnp.asarray(x0)))
    assert m == pytest.approx(margin, rel=1e-12)


def test_stop_gradient_values_that_reach_the_output_keep_their_sites():
    # a straight-through estimator: round's value reaches the output (its derivative does
    # not): a site; the max shift of logsumexp cancels in the output: none
    ste = lambda x: x + lax.stop_gradient(jnp.round(x) - x)
    assert [s.primitive for s in jr.find_kinks(ste, jnp.asarray(0.3))] == ["round"]
    lse = lambda x: jax.nn.logsumexp(x)
    assert jr.find_kinks(lse, jnp.array([1.0, 1.0])) == []
    # x * stop_gradient(x): derivative x0 (the stopped factor is a constant)
    assert float(jr.ld_grad(lambda x: x * lax.stop_gradient(x))(3.0)) == 3.0


# ------------------------------------------- comparisons of piecewise-constant values
#
# ``x // c`` on floats compares ``sign(c)`` with ``sign(rem(x, c))``: two values that are
# equal on whole intervals. Their equality is no tie: the test changes only where
# ``rem(x, c)`` crosses 0, i.e. at the multiples of ``c``. The oracle is the brute-force
# distance from x0 to the nearest multiple of |c| ahead along the direction.


def _to_next_multiple(x0, c, d):
    k = x0 / abs(c)
    ahead = np.floor(k) + 1 if d > 0 else np.ceil(k) - 1
    return abs(ahead * abs(c) - x0)


FLOOR_DIVIDES = {
    "floor_divide": lambda c: lambda z: (z // c) * z,
    "divmod": lambda c: lambda z: jnp.sum(jnp.stack(jnp.divmod(z, c))) * z,
}


@pytest.mark.parametrize("form", list(FLOOR_DIVIDES))
@pytest.mark.parametrize("c", [0.5, -0.5, 3.0])
@pytest.mark.parametrize("x0", [0.3, -0.7, 2.9, 1.0])
def test_floor_division_switches_at_the_multiples_only(form, c, x0):
    f = FLOOR_DIVIDES[form](c)
    x = jnp.asarray(x0)
    on_multiple = x0 % abs(c) == 0
    ties = jr.count_ties(f, x)
    assert (ties > 0) == on_multiple
    if on_multiple:
        return
    assert [s for s in jr.find_kinks(f, x) if s.ties] == []
    for d in (1.0, -1.0):
        want = _to_next_multiple(x0, c, d)
        got = jr.kink_radius(f, x, jnp.asarray(d))
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # f is polynomial between multiples: AD's derivative is right and certified
    g, cert = jr.certified_grad(f)(x)
    assert cert.certified and cert.method == "ad"
    h = 2.0**-20
    np.testing.assert_allclose(float(g), float((f(x + h) - f(x - h)) / (2 * h)), rtol=1e-6)
    r = jr.check_linearization(f, x, direction=jnp.asarray(1.0))
    assert r.verdict in ("linear", "smooth"), r.reason


def test_floor_division_in_float32_is_no_tie_between_multiples():
    f = lambda z: jnp.sum((z // jnp.float32(0.25)) * z)
    x = jnp.asarray([0.3, -0.6, 1.1], jnp.float32)
    assert jr.count_ties(f, x) == 0
    assert jr.count_ties(f, x.at[1].set(-0.5)) > 0


def test_a_test_of_two_signs_switches_where_either_sign_does():
    # sign(x) == sign(x reversed): equal or not on whole orthants, switching where an
    # element crosses 0 (the nearest |x_i| among the pair compared)
    f = lambda x: jnp.sum(jnp.where(jnp.sign(x) == jnp.sign(x[::-1]), x, -x))
    x = jnp.asarray([1.5, 2.0, -3.0])
    (sel,) = [s for s in jr.find_kinks(f, x) if s.primitive == "select_n"]
    assert sel.ties == 0 and sel.min_margin == 1.5 and sel.kind == "jump"
    # one element at 0: the two pairs holding it are tied (elements 0 and 2)
    tied = [s for s in jr.find_kinks(f, x.at[0].set(0.0)) if s.primitive == "select_n"]
    assert tied[0].ties == 2


def test_a_plateau_product_is_differentiable_inside_its_plateau():
    # (floor(x) == 2) * x is x on [2, 3) and 0 elsewhere: slope 1 inside, a jump at 2
    f = lambda x: (jnp.floor(x) == 2) * x
    g, cert = jr.certified_grad(f)(jnp.asarray(2.5))
    assert cert.certified and float(g) == 1.0
    assert jr.count_ties(f, jnp.asarray(2.5)) == 0
    _, cert = jr.certified_grad(f)(jnp.asarray(2.0))
    assert not cert.certified


# Piecewise-constant values carried through elementwise arithmetic and data movement
# (``round(2 x) / 2``, ``sign(x)[:, None]``, a concatenation): still compared by their
# switches. Oracle: the test's own outcome evaluated along the line on a fine grid; the
# radius is the first grid step where it changes (each case is built so that the nearest
# switch along the direction does change it), and no element is tied at a generic point.

_STEPS = np.linspace(0.0, 2.0, 40001)[1:]  # (resolution 5e-5)

PLATEAU_TESTS = {
    "scaled round": lambda x: jnp.round(2 * x) / 2 == -0.5,
    "broadcast signs": lambda x: (jnp.sign(x)[:, None] == jnp.sign(x)[None, :]).ravel(),
    "reversed floors": lambda x: jnp.floor(x) + jnp.floor(x)[::-1] == 0.0,
    "concatenated": lambda x: jnp.concatenate([jnp.floor(x), -jnp.ceil(x)]) == 0.0,
    "padded": lambda x: jnp.pad(jnp.floor(3 * x), 1) < 1.0,
    # a gather at a fixed index (not a shape operation) keeps the floors' plateaus
    "gathered": lambda x: jnp.floor(x)[jnp.array([2, 0, 1, 1])] == 1.0,
}


@pytest.mark.parametrize("name", list(PLATEAU_TESTS))
def test_plateau_tests_through_arithmetic_and_data_movement(name):
    test = PLATEAU_TESTS[name]
    f = lambda x: jnp.sum(jnp.where(test(x), 1.0, -1.0) * jnp.sum(x))
    x0 = np.array([0.3, 1.2, -0.4])
    d = np.array([1.0, -0.5, 0.75])
    x = jnp.asarray(x0)
    assert jr.count_ties(f, x) == 0
    assert [s for s in jr.find_kinks(f, x) if s.ties] == []
    here = np.asarray(test(x))
    outcomes = jax.vmap(lambda s: test(x + s * jnp.asarray(d)))(jnp.asarray(_STEPS))
    first = _STEPS[np.argmax(np.any(np.asarray(outcomes) != here, axis=1))]
    got = jr.kink_radius(f, x, jnp.asarray(d))
    # the radius is the crossing itself; the grid's first changed step lies within one
    # step after it (1e-9: rounding of x0 + s d at the crossing)
    assert first - 5e-5 - 1e-9 <= got <= first + 1e-9
    # at that crossing the test is tied: a jump of f
    assert jr.count_ties(f, x + got * jnp.asarray(d)) > 0


def test_a_window_sum_of_floors_switches_with_every_window_holding_the_element():
    # a 3-wide window ('SAME', zero padding) of floor(x) compared with c: moving x[1] off
    # the integer 1 (downward) changes the windows 0 and 2 from equal to unequal (0 -> -1,
    # 3 -> 2), not window 1 (2 -> 1, never 5). An elementwise reading would tie window 1
    # alone, through x[1]; every window holding x[1] switches with it.
    c = jnp.asarray([0.0, 5.0, 3.0])
    window = lambda v: lax.reduce_window(v, 0.0, lax.add, (3,), (1,), "SAME")
    test = lambda x: window(jnp.floor(x)) == c
    f = lambda x: jnp.sum(jnp.where(test(x), x, 0.0))
    x = jnp.asarray([-0.6, 1.0, 2.4])
    flips = int(np.sum(np.asarray(test(x)) != np.asarray(test(x.at[1].add(-1e-9)))))
    assert flips == 2
    (sel,) = [s for s in jr.find_kinks(f, x) if s.primitive == "select_n"]
    assert sel.ties >= flips
    # between integers nothing is tied
    (sel,) = [s for s in jr.find_kinks(f, x.at[1].set(1.5)) if s.primitive == "select_n"]
    assert sel.ties == 0
