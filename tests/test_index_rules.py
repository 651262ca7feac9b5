"""Values read through an index that switches (``table[floor(x)]``, ``stack(...)[x > 1]``,
``dynamic_slice`` at a computed offset), and primitives the analysis does not know.

Expected values are worked out by hand from the piecewise definition of each function:
``stack([x, 2x - 1])[x > 1]`` is ``x`` up to 1 and ``2x - 1`` beyond, continuous at 1 with
slopes 1 and 2 (a kink that AD, reading the left piece, reports as slope 1 everywhere at
1); ``stack([x, 2x])[x > 1]`` jumps by 1 at 1.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxrelu as jr

KINK = lambda x: jnp.stack([x, 2 * x - 1])[(x > 1).astype(int)]
JUMP = lambda x: jnp.stack([x, 2 * x])[(x > 1).astype(int)]


def test_pieces_that_meet_at_an_index_switch_are_a_tied_kink():
    # at 1 the value read does not change across the switch (1 = 2 * 1 - 1) but the slope
    # does: the site is tied although the value alone would hide it
    (site,) = jr.find_kinks(KINK, jnp.asarray(1.0))
    assert (site.kind, site.ties, site.min_margin) == ("kink", 1, 0.0)
    g, cert = jr.certified_grad(KINK)(jnp.asarray(1.0))
    # not AD's 1 "certified": the lexicographic gradient takes the piece along +1, slope 2
    assert cert.method == "lexicographic" and cert.certified and float(g) == 2.0
    assert float(jr.directional_derivative(KINK, jnp.asarray(1.0), jnp.asarray(1.0))) == 2.0
    assert float(jr.directional_derivative(KINK, jnp.asarray(1.0), jnp.asarray(-1.0))) == -1.0
    r = jr.check_linearization(KINK, jnp.asarray(1.0), jnp.asarray(1.0))
    assert r.verdict == "kink" and r.exact_slope_plus == 2.0 and r.exact_slope_minus == 1.0


def test_away_from_the_switch_an_index_site_is_smooth_with_its_radius():
    g, cert = jr.certified_grad(KINK)(jnp.asarray(0.5))
    assert cert.method == "ad" and cert.certified and float(g) == 1.0
    assert jr.kink_radius(KINK, jnp.asarray(0.5), jnp.asarray(1.0)) == 0.5
    assert jr.kink_radius(KINK, jnp.asarray(1.5), jnp.asarray(-2.0)) == 0.25
    assert jr.kink_radius(KINK, jnp.asarray(1.5), jnp.asarray(1.0)) == np.inf
    assert jr.check_linearization(KINK, jnp.asarray(3.0), jnp.asarray(1.0)).verdict == "linear"


def test_an_index_switch_between_pieces_that_differ_is_a_jump():
    (site,) = jr.find_kinks(JUMP, jnp.asarray(1.0))
    assert (site.kind, site.ties) == ("jump", 1)
    _, cert = jr.certified_grad(JUMP)(jnp.asarray(1.0))
    assert not cert.certified and "jump" in cert.reason
    assert jr.check_linearization(JUMP, jnp.asarray(1.0), jnp.asarray(1.0)).verdict == (
        "discontinuous"
    )


def test_dynamic_slice_with_one_constant_and_one_switching_offset():
    # rows of t * x[1] at row floor(x[0]); the column offset is the constant 0
    t = jnp.arange(12.0).reshape(6, 2)
    f = lambda x: lax.dynamic_slice(t * x[1], (jnp.floor(x[0]).astype(int), 0), (1, 2)).sum()
    # row 2 is (4, 5): f = 9 x1; the row changes at x0 = 3, 0.5 away along (1, 0)
    x = jnp.array([2.5, 1.0])
    np.testing.assert_array_equal(np.asarray(jr.ld_grad(f)(x)), [0.0, 9.0])
    assert jr.kink_radius(f, x, jnp.array([1.0, 0.0])) == 0.5
    assert jr.kink_radius(f, x, jnp.array([-0.25, 0.0])) == 2.0
    kinds = {s.primitive: s.kind for s in jr.find_kinks(f, x)}
    assert kinds["dynamic_slice"] == "jump"  # rows (4, 5) and (6, 7) differ


@pytest.mark.parametrize("n, known", [(1024, True), (1025, False)])
def test_index_flips_are_traced_up_to_a_million_element_pairs(n, known):
    # n switching index elements, n outputs: n * n flips of one element each; 1024^2 = 2^20
    # is the most the analysis traces, beyond it the site is listed as unknown
    table = jnp.arange(n + 1.0)
    f = lambda x: table[jnp.floor(x).astype(int)]
    x = jnp.full(n, 0.5)
    sites = [s for s in jr.find_kinks(f, x) if s.primitive == "gather"]
    assert len(sites) == 1
    assert (sites[0].kind != "unknown") is known


def test_a_primitive_the_analysis_does_not_know_is_listed_untied():
    f = lambda x: lax.zeta(x + 3.0, 1.5)  # the Hurwitz zeta function: no rule here
    (site,) = jr.find_kinks(f, jnp.asarray(0.0))
    assert (site.primitive, site.kind, site.ties) == ("zeta", "unknown", 0)
    assert np.isnan(site.min_margin)
    # zeta of a constant is a constant (evaluated once: no site, as zeta has no
    # derivative rule, JAX's AD could not go through it): x * zeta(3, 1.5) is certified
    assert jr.find_kinks(lambda x: x * lax.zeta(jnp.asarray(3.0), 1.5), jnp.asarray(0.0)) == []
    g = lambda x: x * lax.zeta(jnp.asarray(3.0), 1.5)
    grad, cert = jr.certified_grad(g)(jnp.asarray(0.0))
    assert cert.certified and float(grad) == pytest.approx(float(lax.zeta(3.0, 1.5)))


# ------------------------------------------------ switches carried through integer values
# Each f reads a table at an index built from comparisons; f is a step function of x, and
# its switch distance along d is the first t at which some comparison flips (by hand).

TABLE = jnp.array([10.0, 20.0, 40.0, 80.0, 160.0])


def _padded(x):
    inner = (x[:2] > 0).astype(int)
    return lax.pad(inner, (x[2] > 0).astype(int), [(1, 1, 0)])  # [p, i0, i1, p]


def _concatenated(x):
    return jnp.concatenate([(x[:2] > 0).astype(int), jnp.array([3]), (x[2:] > 0).astype(int)])


@pytest.mark.parametrize("build", [_padded, _concatenated], ids=["pad", "concatenate"])
@pytest.mark.parametrize(
    "d, radius",
    [
        ([1.0, 1.0, 1.0], 0.5),  # x0 = -0.5 crosses 0 first
        ([0.0, 0.0, 2.0], 0.375),  # x2 = -0.75 at rate 2
        ([0.0, -1.0, 0.0], 0.25),  # x1 = 0.25 falls to 0
        ([0.0, 1.0, 0.0], np.inf),  # x1 moves away from 0
    ],
)
def test_switches_moved_by_data_movement(build, d, radius):
    f = lambda x: jnp.sum(TABLE[build(x)])
    x0 = jnp.array([-0.5, 0.25, -0.75])
    assert jr.kink_radius(f, x0, jnp.array(d)) == radius


def test_two_comparisons_combined_elementwise_switch_at_the_nearer():
    # index (x > 0) + (x > 1): from -0.5 along +1 it changes at t = 0.5, then 1.5
    f = lambda x: TABLE[(x > 0).astype(int) + (x > 1).astype(int)]
    assert jr.kink_radius(f, jnp.asarray(-0.5), jnp.asarray(1.0)) == 0.5
    assert jr.kink_radius(f, jnp.asarray(1.25), jnp.asarray(-1.0)) == 0.25


@pytest.mark.parametrize("n", [4, 16])
def test_first_threshold_passed_along_the_last_axis(n):
    # jnp.select-style: the first of n thresholds below x, per row; rows x = (0.3, 1.3,
    # 2.6) over thresholds 0, 1, 2, ...; along +1 the nearest flip is 2.6 reaching 3
    thr = jnp.arange(float(n))
    f = lambda x: jnp.sum(TABLE[jnp.argmax(x[:, None] < thr[None, :], axis=1) % 5])
    x0 = jnp.array([0.3, 1.3, 2.6])
    assert jr.kink_radius(f, x0, jnp.ones(3)) == pytest.approx(0.4, rel=1e-12)
    assert jr.kink_radius(f, x0, -jnp.ones(3)) == pytest.approx(0.3, rel=1e-12)
