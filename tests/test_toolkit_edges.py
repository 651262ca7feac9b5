"""Edges of the toolkit's public functions, with expected values fixed by their contracts:
the site summary table, ``argnums`` validation (as ``jax.grad``), compiled programs reused
across input shapes, and ``find_kinks`` telling a jump from a kink away from any tie.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrelu as jr


def test_summary_marks_a_missing_activation_and_right_aligns_numbers():
    f = lambda x: jnp.maximum(x, 0.25).sum() + jr.relu(x - 1.0).sum()
    table = jr.summary(jr.find_kinks(f, jnp.ones(3))).splitlines()
    rows = {line.split()[0] + " " + line.split()[2]: line for line in table[1:]}
    assert "max -" in rows  # jnp.maximum: no activation, shown as "-"
    assert "max relu" in rows
    # size, ties and margin are right-aligned: each row's last character is under the
    # header's last character ("margin")
    width = len(table[0].rstrip())
    assert all(len(line.rstrip()) == width for line in table[1:])


def test_argnums_validated_as_in_jax_grad():
    f = lambda a, b: jnp.maximum(a, b)
    a, b = jnp.asarray(1.0), jnp.asarray(2.0)
    assert float(jr.ld_grad(f, argnums=-1)(a, b)) == 1.0  # the last argument
    assert jr.ld_grad(f, argnums=(-2, 1))(a, b) == (0.0, 1.0)
    for bad in [(), True, (0, 1.5), "0"]:
        with pytest.raises(TypeError, match="`argnums`"):
            jr.ld_grad(f, argnums=bad)(a, b)
    for bad in [2, -3, (0, 2)]:
        with pytest.raises(ValueError, match="out of range"):
            jr.ld_grad(f, argnums=bad)(a, b)


@pytest.mark.parametrize("tied", [True, False], ids=["at ties", "away from ties"])
def test_one_function_at_two_input_shapes(tied):
    f = lambda x: jnp.sum(jr.relu(x)) + jnp.sum(x) ** 2  # one object, two shapes
    for n in (3, 4):
        x = jnp.zeros(n) if tied else jnp.full(n, 0.5)
        jac = np.asarray(jr.ld_jacobian(f, x))
        # d/dx_i = [x_i > 0 or tied along e_i: 1] + 2 sum(x)
        want = np.ones(n) + 2 * float(np.sum(np.asarray(x)))
        assert jac.shape == (n,)
        np.testing.assert_allclose(jac, want, rtol=1e-12)


def test_find_kinks_tells_a_jump_from_a_kink_away_from_the_switch():
    # at 1.5 no element is tied; the switch at 1 is a jump for the first (x + 1 against
    # x) and a kink for the second (the pieces meet at 1)
    jump = lambda x: jnp.where(x > 1.0, x + 1.0, x)
    kink = lambda x: jnp.where(x > 1.0, 2.0 * x - 1.0, x)
    assert [s.kind for s in jr.find_kinks(jump, jnp.asarray(1.5))] == ["jump"]
    assert [s.kind for s in jr.find_kinks(kink, jnp.asarray(1.5))] == ["kink"]


def test_a_tied_jump_left_at_once_has_radius_exactly_zero():
    f = lambda x: jnp.floor(x) * 2.0
    assert jr.kink_radius(f, jnp.asarray(1.0), jnp.asarray(-1.0)) == 0.0
    assert jr.kink_radius(f, jnp.asarray(1.0), jnp.asarray(1.0)) == 1.0
    assert jax.grad(f)(1.0) == 0.0  # (AD's derivative of the staircase is 0 everywhere)


def test_a_cond_whose_branch_holds_a_loop_runs_in_float64():
    """jax.scipy.linalg.expm: a cond (the Pade degree) whose branches hold a loop (the
    squarings). With x64 on, the loop's site counts came out int64 in one branch and
    int32 in the other, and every analysis crashed (a TypeError from lax.switch). Its
    gradient is JAX's there (no site tied)."""
    f = lambda x: jnp.sum(jax.scipy.linalg.expm(x.reshape(2, 2)))
    x = jnp.asarray([0.1, 0.2, 0.3, 0.4], jnp.float64)
    assert jr.find_kinks(f, x)  # (runs; the pivots, norms and degree choices are sites)
    g, _ = jr.certified_grad(f)(x)
    np.testing.assert_allclose(g, jax.grad(f)(x), rtol=1e-10)
    with warnings.catch_warnings():  # (a loop test that the direction leaves: undecided)
        warnings.simplefilter("ignore", jr.UndecidedTieWarning)
        assert np.isfinite(float(jr.directional_derivative(f, x, jnp.ones(4))))


def _shifted_sin(off):
    """sin with the rule cos + off (``defjvps``: the tangent rule alone)."""
    s = jax.custom_jvp(lambda x: jnp.sin(x))
    s.defjvps(lambda t, ans, x: (jnp.cos(x) + off) * t)
    return s


def test_a_rule_closed_over_a_value_computed_inside_f_is_a_clear_type_error():
    # a custom_jvp built on every call of f around an array f computes: its rule holds a
    # tracer of f's trace, which jaxrelu's later runs of the rule cannot use (JAX: "compiled
    # for 4 inputs but called with 3", or a leaked tracer). Said so, with the fix; the
    # same rule around a value computed outside f works (its error found: AD off by 0.1)
    x = jnp.array([1.0, 2.0])
    inside = lambda v: jnp.sum(_shifted_sin(jnp.cos(1.0) * 0.1)(v))
    with pytest.raises(TypeError, match="Compute the value outside `f`"):
        jr.check_linearization(inside, x)
    with pytest.raises(TypeError, match="closes a custom_jvp/custom_vjp rule"):
        jr.certified_grad(inside)(x)
    off = jnp.cos(1.0) * 0.1
    outside = lambda v: jnp.sum(_shifted_sin(off)(v))
    assert jr.check_linearization(outside, x).verdict == "wrong_derivative"
    np.testing.assert_allclose(jr.ld_grad(outside)(x), np.cos([1.0, 2.0]), rtol=1e-6)
