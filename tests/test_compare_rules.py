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

import jax.numpy as jnp
import numpy as np
import pytest

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
