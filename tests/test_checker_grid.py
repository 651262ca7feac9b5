"""The checker's step grid, against values worked out by hand from IEEE rounding.

float32 has 23 fraction bits, so near 1 its spacing is u = 2^-23: ``1 + 3u`` is exact,
``1 + 1.5u`` rounds to ``1 + 2u`` (a tie, to the even neighbour: a third of the step
lost), ``1 + 0.75u`` rounds to ``1 + u`` (a third gained). A step is kept while the move
it makes is within a quarter of the intended one.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import jaxrelu as jr
from jaxrelu.checker import grid

U = 2.0**-23


def test_ladder_is_halving_powers_of_two_from_the_point_scale():
    h = grid.ladder(3.0, 1.0, 2.0**-52)  # scale 3 rounds to 4; 52 + 4 halvings
    assert len(h) == 56 and h[0] == 4.0 and h[-1] == 4.0 * 2.0**-55
    np.testing.assert_array_equal(h[1:] / h[:-1], 0.5)
    h = grid.ladder(0.1, 8.0, 2.0**-23)  # scale max(0.1, 1) / 8 = 2^-3
    assert len(h) == 27 and h[0] == 0.125


def test_a_step_is_kept_while_it_moves_x0_within_a_quarter():
    x0, d = [np.float32(1.0)], [np.float32(1.0)]
    steps = np.array([3 * U, 1.5 * U, 0.75 * U])
    # 3u exact; 1.5u moves 2u (a third too far): the grid stops there
    assert grid.moving_steps(steps, x0, d) == 1
    assert grid.moving_steps(np.array([3 * U, 2 * U, U]), x0, d) == 3


@pytest.mark.parametrize("many", [False, True], ids=["one point", "batched"])
def test_at_least_three_steps_even_when_none_moves_cleanly(many):
    # the largest float16: the first step already overflows, yet 3 steps are kept
    x0, d = np.float16(65504.0), np.float16(1.0)
    eps = float(jnp.finfo(jnp.float16).eps)
    if many:
        (got,) = grid.default_steps_many([np.array([x0])], [np.array([d])], eps)
    else:
        got = grid.default_steps([np.asarray(x0)], [np.asarray(d)], eps)
    assert len(got) == 3 and got[0] == 2.0 ** round(math.log2(65504.0))


def test_batched_grid_equals_the_single_point_grids():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(5, 3)).astype(np.float32) * np.array([1.0, 100.0, 1e-3], np.float32)
    d = rng.normal(size=(5, 3)).astype(np.float32)
    eps = float(jnp.finfo(jnp.float32).eps)
    many = grid.default_steps_many([x0], [d], eps)
    for i in range(5):
        np.testing.assert_array_equal(many[i], grid.default_steps([x0[i]], [d[i]], eps))


def test_user_steps_validated():
    f = lambda x: x * x
    r = jr.check_linearization(f, jnp.asarray(1.0), jnp.asarray(1.0), steps=[0.5, 0.25, 0.125])
    assert len(r.steps) == 3  # exactly three is enough
    for bad in ([0.5, 0.25, 0.0], [0.5, 0.25], [0.5, 0.5, 0.25], [[0.5, 0.25, 0.1]]):
        with pytest.raises(ValueError, match="`steps`"):
            jr.check_linearization(f, jnp.asarray(1.0), jnp.asarray(1.0), steps=bad)


def test_points_near_float64s_limit_are_checked_without_overflow():
    """||x0||^2 overflows for x0 = 1e160 (the grid's scale was inf: a crash); the norms
    are scaled first. 2 x is linear there; a direction whose size ratio to x0 leaves
    float64's range is one clear error."""
    f = lambda x: 2 * x
    cases = [(1e160, 1.0), ([-1e300, -1e300], [1.0, 0.0]), (1.0, 1e300)]
    for x0, d in cases:
        x0, d = jnp.asarray(x0, jnp.float64), jnp.asarray(d, jnp.float64)
        assert jr.check_linearization(f, x0, d).verdict == "linear"
    many = jr.check_many(f, jnp.asarray([1e160, 1.0]), jnp.asarray([1.0, 1.0]))
    assert many.counts["linear"] == 2
    with pytest.raises(ValueError, match="direction"):
        jr.check_linearization(f, jnp.asarray(1e300), jnp.asarray(1e-300))
