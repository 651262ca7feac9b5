"""Linear-algebra factors whose sign conventions jump, and roots whose slope is infinite
at 0, each against an independent oracle: brute-force scans of f along a line (float64)
and hand derivations. Found by probing functions written elsewhere: before, these were
smooth to the analysis, which then certified gradients at jumps and gave infinite radii
where a norm reached 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrelu as jr

F64 = lambda v: jnp.asarray(v, jnp.float64)


def _scan_jump(f, x0, d, ts):
    """The largest change of f between neighbouring points of the scan ``x0 + t d``."""
    vals = np.array([float(f(x0 + t * d)) for t in ts])
    i = int(np.argmax(np.abs(np.diff(vals))))
    return ts[i], abs(vals[i + 1] - vals[i])


def _kinds(f, x):
    return sorted((s.primitive, s.kind) for s in jr.find_kinks(f, x))


# ------------------------------------------------------- eigen- and singular vectors


def _top_vector_entry(z):
    return jnp.linalg.eigh(z.reshape(2, 2))[1][0, 1]


def test_eigenvector_sign_flip_is_not_certified():
    # A(t) = [[1.6 - t, .5], [.5, 1.4 + t]]: eigenvalues 1.5 +- sqrt((0.1 - t)^2 + 0.25),
    # at least 1 apart, yet LAPACK's sign of the top eigenvector flips at t = 0.1
    x0, d = F64([1.6, 0.5, 0.5, 1.4]), F64([-1.0, 0.0, 0.0, 1.0])
    t, gap = _scan_jump(_top_vector_entry, x0, d, np.linspace(0.0, 0.2, 401))
    assert gap > 1.0 and abs(t - 0.1) < 1e-3  # the oracle: a jump of sqrt(2)
    assert ("eigh", "unknown") in _kinds(_top_vector_entry, x0)
    at_jump = F64([1.5, 0.5, 0.5, 1.5])
    _, cert = jr.certified_grad(_top_vector_entry)(at_jump)
    assert not cert.certified and "eigh is not analysed" in cert.reason


def test_eigenvalues_alone_have_no_vector_site():
    # eigvalsh calls eigh and drops the vectors (through a jit boundary): values only
    lam = lambda z: jnp.linalg.eigvalsh(z.reshape(2, 2))[-1]
    assert _kinds(lam, F64([2.0, 0.0, 0.0, 1.0])) == [("eigh", "kink")]
    g, cert = jr.certified_grad(lam)(F64([2.0, 0.0, 0.0, 1.0]))
    assert cert.certified  # distinct eigenvalues: d lam_max = e1 e1^T (symmetrised)
    np.testing.assert_allclose(np.asarray(g), [1.0, 0.0, 0.0, 0.0], atol=1e-12)
    # eigh itself, only the values read
    lam2 = lambda z: jnp.linalg.eigh(z.reshape(2, 2))[0][-1]
    assert _kinds(lam2, F64([2.0, 0.0, 0.0, 1.0])) == [("eigh", "kink")]


def test_singular_vectors_are_a_site_and_singular_values_are_not():
    a = F64([[2.0, 0.3], [0.1, 1.0]])
    u00 = lambda m: jnp.linalg.svd(m)[0][0, 0]
    assert ("svd", "unknown") in _kinds(u00, a)
    _, cert = jr.certified_grad(u00)(a)
    assert not cert.certified and "svd is not analysed" in cert.reason
    values = lambda m: jnp.sum(jnp.linalg.svd(m, compute_uv=False))
    assert _kinds(values, a) == [("svd", "kink")]
    # the vectors computed but only the values read: no vector site
    values2 = lambda m: jnp.sum(jnp.linalg.svd(m)[1])
    assert _kinds(values2, a) == [("svd", "kink")]


def test_qr_sign_convention_jump_is_not_certified():
    # Householder QR: R[0, 0] = -sign(a11) |column|, so Q and R flip sign as a11 crosses 0;
    # sum(Q * B) jumps by 10 there (hand: Q's first column is -+(a11, a21)/|.|)
    b = F64([[1.0, 2.0], [3.0, 4.0]])
    f = lambda z: jnp.sum(jnp.linalg.qr(z.reshape(2, 2))[0] * b)
    x0, d = F64([0.5, 1.0, 1.0, 1.0]), F64([-1.0, 0.0, 0.0, 0.0])
    t, gap = _scan_jump(f, x0, d, np.linspace(0.0, 1.0, 201))
    assert abs(t - 0.5) < 1e-2 + 1e-12 and gap > 5.0
    assert _kinds(f, x0) == [("qr", "unknown")]
    _, cert = jr.certified_grad(f)(F64([0.0, 1.0, 1.0, 1.0]))
    assert not cert.certified and "qr is not analysed" in cert.reason


def _lu_u01(z):
    """U[0, 1] of the LU factors (partial pivoting) of [[z0, 2], [z1, 3]]: 2 while row 0
    pivots (|z0| >= |z1|), 3 once row 1 does."""
    m = jnp.stack([jnp.stack([z[0], 2.0 + 0 * z[0]]), jnp.stack([z[1], 3.0 + 0 * z[1]])])
    return jax.scipy.linalg.lu(m)[2][0, 1]


@pytest.mark.parametrize("dt", [jnp.float32, jnp.float64])
def test_lu_pivot_ties_are_jumps_that_certify_nothing(dt):
    """Partial pivoting picks the larger of |z0|, |z1| as the pivot: U[0, 1] is 2 while
    |z0| > |z1| and 3 once |z1| > |z0| (hand; the scan below finds the jump where z1
    reaches z0, of size 1). At the tie the factors jump: nothing is certified; away
    from it the gradient (0: U[0, 1] is constant there) is, and the radius along z1 is
    the distance to the tie (the multiplier z1 / z0 moves linearly: exact)."""
    z, d = jnp.asarray([1.0, 0.5], dt), jnp.asarray([0.0, 1.0], dt)
    t, gap = _scan_jump(_lu_u01, z, d, np.linspace(0.0, 1.0, 201))
    assert abs(t - 0.5) < 1e-2 and gap == pytest.approx(1.0, rel=1e-5)
    tie = jnp.asarray([1.0, 1.0], dt)
    assert _kinds(_lu_u01, tie) == [("lu", "jump")]
    _, cert = jr.certified_grad(_lu_u01)(tie)
    assert not cert.certified and "lu" in cert.reason
    g, cert = jr.certified_grad(_lu_u01)(z)
    assert cert.certified and np.asarray(g).tolist() == [0.0, 0.0]
    assert jr.kink_radius(_lu_u01, z, d) == pytest.approx(0.5, rel=1e-6)
    # U[0, 0] = max(z0, z1) near the tie (for positive entries): a kink, not certified;
    # the directional derivative there is JAX's choice, flagged as undecided
    u00 = lambda v: jax.scipy.linalg.lu(jnp.diag(v) + jnp.asarray([[0, 0], [1, 0]], dt) * v[0])[2][
        0, 0
    ]
    assert float(u00(tie)) == 1.0
    _, cert = jr.certified_grad(u00)(tie)
    assert not cert.certified
    with pytest.warns(jr.UndecidedTieWarning, match="tied pivot candidates"):
        jr.directional_derivative(u00, tie, jnp.asarray([-1.0, 0.0], dt))


def test_complex_lu_ties_in_lapacks_measure():
    """LAPACK pivots a complex column by |Re| + |Im|: in [[v0, 2], [v1 (0.6 + 0.4j), 3]]
    at v = (1, 1) the candidates tie in that measure (1 and 0.6 + 0.4), not in modulus
    (1 and 0.72): U[0, 1] is 2 below v1 = 1 and 3 above (evaluated below), a jump,
    never certified; at v1 = 0.5 the tie is 0.5 away along v1."""
    c = jnp.asarray(0.6 + 0.4j, jnp.complex128)
    f = lambda v: jnp.real(
        jax.scipy.linalg.lu(jnp.array([[v[0] + 0j, 2.0 + 0j], [v[1] * c, 3.0 + 0j]]))[2][0, 1]
    )
    assert [float(f(F64([1.0, 1.0 + e]))) for e in (-1e-3, 1e-3)] == [2.0, 3.0]
    _, cert = jr.certified_grad(f)(F64([1.0, 1.0]))
    assert not cert.certified
    assert [(s.kind, s.ties) for s in jr.find_kinks(f, F64([1.0, 1.0]))] == [("jump", 1)]
    (site,) = jr.find_kinks(f, F64([1.0, 0.5]))
    assert site.ties == 0 and site.min_margin == pytest.approx(0.5, rel=1e-12)


def test_det_and_lu_solve_stay_certified_away_from_pivot_ties():
    """det of [[a, 2], [1, 3]] beside an identity = 3a - 2 (hand): gradient 3 in a at
    a = 2, where the pivot candidates 2 and 1 are apart; lu_solve likewise (its gradient
    against jax.grad, which is right where f is smooth). At a = 1 the candidates tie: not
    certified (the factors jump there, though det does not: refusing is conservative)."""
    # (4 x 4: JAX's det of a 2 x 2 or 3 x 3 matrix is the closed formula, without LU)
    det = lambda v: jnp.linalg.det(
        jnp.eye(4).at[:2, :2].set(jnp.array([[v[0], 2.0], [1.0, 3.0]])).at[3, 3].add(v[1])
    )
    g, cert = jr.certified_grad(det)(F64([2.0, 0.0]))
    assert cert.certified
    np.testing.assert_allclose(g[0], 3.0, rtol=1e-12)
    # (jnp.linalg.solve and inv go through custom_linear_solve, which is not analysed)
    f = lambda v: jnp.sum(
        jax.scipy.linalg.lu_solve(
            jax.scipy.linalg.lu_factor(jnp.array([[v[0], 2.0], [1.0, 3.0]])), v
        )
    )
    g, cert = jr.certified_grad(f)(F64([2.0, 0.5]))
    assert cert.certified, cert.reason
    np.testing.assert_allclose(g, jax.grad(f)(F64([2.0, 0.5])), rtol=1e-12)
    _, cert = jr.certified_grad(det)(F64([1.0, 0.0]))
    assert not cert.certified


# ------------------------------------------------------------------ roots at 0


def test_a_norm_at_zero_is_a_tied_kink():
    f = lambda x: jnp.linalg.norm(x - 1.0)  # |x - 1| for one element
    sites = jr.find_kinks(f, F64([1.0]))
    assert [(s.primitive, s.kind, s.ties) for s in sites] == [("sqrt", "kink", 1)]
    _, cert = jr.certified_grad(f)(F64([1.0]))
    assert not cert.certified
    # away from it: certified, the gradient of |x - 1|
    g, cert = jr.certified_grad(f)(F64([3.0]))
    assert cert.certified and float(g[0]) == 1.0


@pytest.mark.parametrize(
    "f, x0, d, truth, exact",
    [
        # an affine operand: the first-order crossing is the crossing
        (lambda x: jnp.sqrt(1.0 - x), 0.0, 1.0, 1.0, True),
        (lambda x: jnp.cbrt(x - 2.0), 0.0, 1.0, 2.0, True),
        (lambda x: jnp.cbrt(x - 2.0), 0.0, -1.0, np.inf, True),
        # a sum of squares: (1 - t)^2 reaches 0 at t = 1, estimated at 1/2
        (lambda x: jnp.linalg.norm(x - 1.0), 0.0, 1.0, 1.0, False),
    ],
)
def test_root_radius_is_never_beyond_the_kink(f, x0, d, truth, exact):
    r = jr.kink_radius(f, F64([x0]), F64([d]))
    if exact:
        assert r == pytest.approx(truth, rel=1e-12) if np.isfinite(truth) else r == np.inf
    else:
        assert 0 < r <= truth
        assert r == pytest.approx(truth / 2, rel=1e-12)


def test_group_lasso_radius_reaches_no_further_than_the_group_reaching_zero():
    # ||w[:2]|| + ||w[2:]|| along (-1, -1, 0, 1): f(t) = sqrt(2)|1 - t| + sqrt(4 + t^2),
    # slopes -sqrt(2) + 1/sqrt(5) before t = 1 and sqrt(2) + 1/sqrt(5) after (by hand;
    # float64 difference quotients agree)
    f = lambda w: jnp.linalg.norm(w[:2]) + jnp.linalg.norm(w[2:])
    x0, d = F64([1.0, 1.0, 2.0, 0.0]), F64([-1.0, -1.0, 0.0, 1.0])
    h = 1e-7
    slope = lambda t: (float(f(x0 + (t + h) * d)) - float(f(x0 + t * d))) / h
    assert slope(1.0 - 2 * h) == pytest.approx(-np.sqrt(2) + 1 / np.sqrt(5), abs=1e-5)
    assert slope(1.0) == pytest.approx(np.sqrt(2) + 1 / np.sqrt(5), abs=1e-5)
    r = jr.kink_radius(f, x0, d)
    assert 0 < r <= 1.0
    assert jr.check_linearization(f, x0 + 1.0 * d, d).verdict == "kink"


def test_a_provably_positive_root_has_no_site():
    f = lambda x: jnp.sqrt(jnp.exp(x)) + jnp.cbrt(jnp.exp(-x))
    assert jr.find_kinks(f, F64([0.3])) == []
    assert jr.kink_radius(f, F64([0.3]), F64([1.0])) == np.inf


def test_root_sites_in_float32():
    f = lambda x: jnp.sqrt(x * x)  # |x|
    x = jnp.asarray([0.0, 2.0], jnp.float32)
    sites = jr.find_kinks(f, x)
    assert [(s.primitive, s.ties) for s in sites] == [("sqrt", 1)]
    d = jnp.asarray([1.0, -1.0], jnp.float32)
    # operand x^2 = (2 - t)^2 for the second element: first order 4 / 4 = 1 (truth 2); the
    # first element leaves its tie
    assert jr.kink_radius(f, x, d) == pytest.approx(1.0, rel=1e-6)


def test_find_kinks_gives_no_radius_without_a_direction():
    # documented: radius NaN when no direction was given (find_kinks' own random direction
    # only tells kinks from jumps); kink_sites along a direction gives one
    f = lambda x: jnp.sqrt(1.0 - x) + jnp.abs(x - 0.5)
    x = F64([0.0])
    assert all(np.isnan(s.radius) for s in jr.find_kinks(f, x))
    along = {s.primitive: s.radius for s in jr.kink_sites(f, x, F64([1.0]))}
    assert along == {"sqrt": pytest.approx(1.0), "abs": pytest.approx(0.5)}


# ---------------------------------------- branch points crossed along the real axis
#
# A complex function of a real input (``x + 0j``, ``jnp.angle`` of a real array) sits on
# its branch cut's line with an imaginary part that never moves: the cut is not crossed
# there, but the real part crossing the branch point is (``jnp.angle(x)`` is 0 for x > 0 and
# pi for x < 0). Truths by hand: the point where the real part reaches the branch point.

BRANCH_POINTS = {
    # name: (f, the real part's branch point, whether the imaginary part is a constant)
    "angle": (lambda x: jnp.angle(x), 0.0, True),
    "atan2(0, x)": (lambda x: jnp.arctan2(0.0, x), 0.0, True),
    "imag log": (lambda x: jnp.imag(jnp.log(x + 0j)), 0.0, False),
    "real sqrt": (lambda x: jnp.real(jnp.sqrt(x + 0j)), 0.0, False),
    "|sqrt|^2": (lambda x: jnp.abs(jnp.sqrt(x + 0j)) ** 2, 0.0, False),
    "imag log1p": (lambda x: jnp.imag(jnp.log1p(x + 0j)), -1.0, False),
}


@pytest.mark.parametrize("name", list(BRANCH_POINTS))
@pytest.mark.parametrize("x0", [-2.5, 0.5])
@pytest.mark.parametrize("d", [1.0, -1.0])
def test_a_branch_point_crossed_along_the_real_axis(name, x0, d):
    f, point, constant = BRANCH_POINTS[name]
    g = lambda x: jnp.sum(f(x))
    truth = (point - x0) / d if (point - x0) * d > 0 else np.inf
    assert jr.kink_radius(g, jnp.asarray(x0), jnp.asarray(d)) == pytest.approx(truth)
    if x0 > point or constant:
        # off the cut, or on its line with an imaginary part that cannot move: no tie (an
        # imaginary part of x + 0j with a zero tangent stays tied on the line: its zero
        # one-sided tangent cannot tell it from -relu(-x) at 0)
        assert jr.count_ties(g, jnp.asarray(x0)) == 0
        assert [s for s in jr.find_kinks(g, jnp.asarray(x0)) if s.ties] == []


@pytest.mark.parametrize("name", list(BRANCH_POINTS))
def test_at_the_branch_point_the_site_is_tied(name):
    f, point, _ = BRANCH_POINTS[name]
    x = jnp.asarray([point, point + 3.0])
    tied = [s for s in jr.find_kinks(lambda x: jnp.sum(f(x)), x) if s.ties]
    assert tied and tied[0].ties == 1
    assert not jr.certified_grad(lambda x: jnp.sum(f(x)))(x)[1].certified
    # leaving the branch point toward the cut switches at once
    d = jnp.asarray([-1.0, 0.0])
    assert jr.kink_radius(lambda x: jnp.sum(f(x)), x, d) == 0.0


def test_a_branch_point_radius_is_the_nearest_element_reaching_it():
    x = jnp.asarray([0.5, -2.0, 3.0, -0.25])
    d = jnp.asarray([-1.0, 1.0, 1.0, -1.0])
    # element 0 reaches 0 at t = 0.5, element 1 at t = 2; 2 and 3 move away from it
    assert jr.kink_radius(lambda x: jnp.sum(jnp.angle(x)), x, d) == 0.5
    # jnp.angle is pi on x < 0: smooth there, derivative 0, certified
    g, cert = jr.certified_grad(lambda x: jnp.sum(jnp.angle(x)))(jnp.asarray([-2.0, -0.5]))
    assert cert.certified and np.all(np.asarray(g) == 0.0)


# ----------------------------------------------------------- the sign of a complex value


def test_complex_sign_is_smooth_away_from_zero_and_not_certified_from_jax():
    # sign(z) = z / |z|; Re sign(x + i y) = x / |z| has gradient (y^2, -x y) / |z|^3, by hand
    f = lambda v: jnp.real(jnp.sign(v[0] + 1j * v[1]))
    for v in ([0.0, 1.0], [1.0, 1.0], [-2.0, 0.5]):
        x, y = v
        want = np.array([y * y, -x * y]) / np.hypot(x, y) ** 3
        np.testing.assert_allclose(np.asarray(jr.ld_grad(f)(F64(v))), want, rtol=1e-12)
        for d in np.eye(2):
            got = float(jr.directional_derivative(f, F64(v), F64(d)))
            assert got == pytest.approx(float(want @ d), rel=1e-12, abs=1e-15)
        # JAX's own derivative of sign is 0: jax.grad is not certified
        assert not jr.certified_grad(f)(F64(v))[1].certified
    # the imaginary part, along (1, 1) from (1, 1): d/dt (1 + t) / sqrt(2 (1 + t)^2) = 0 and
    # likewise for the real part: the direction is radial
    g = lambda v: jnp.imag(jnp.sign(v[0] + 1j * v[1]))
    assert float(jr.directional_derivative(g, F64([1.0, 1.0]), F64([1.0, 1.0]))) == pytest.approx(
        0.0, abs=1e-15
    )
    # a jump at 0 only: its margin is |z|
    (jump,) = [s for s in jr.find_kinks(f, F64([3.0, 4.0])) if s.kind == "jump"]
    assert jump.min_margin == pytest.approx(5.0) and jump.ties == 0
    assert jr.kink_radius(f, F64([3.0, 4.0]), F64([-3.0, -4.0])) == pytest.approx(1.0)


def test_a_cut_reached_along_the_line_is_no_site_at_the_point():
    """angle((1 - x) + i (x - 2)) + angle((1 + x) + i (-x - 2)) at 0: both numbers are
    1 - 2i, off the negative real axis (angle is analytic there): no site. Along +1 the
    first reaches the cut at x = 2 (real part -1), along -1 the second does: f jumps by
    2 pi there (brute force on a grid), the radius is 2 either way."""
    f = lambda x: jnp.angle((1 - x) + 1j * (x - 2)) + jnp.angle((1 + x) + 1j * (-x - 2))
    x0 = jnp.asarray(0.0)
    assert jr.find_kinks(f, x0) == []
    ts = np.linspace(0.0, 3.0, 30001)
    for sign in (1.0, -1.0):
        vals = np.asarray(jax.vmap(lambda t, s=sign: f(s * t))(jnp.asarray(ts)))
        first = ts[np.argmax(np.abs(np.diff(vals)) > 1.0) + 1]
        assert first == pytest.approx(2.0, abs=1e-4)
        assert jr.kink_radius(f, x0, jnp.asarray(sign)) == pytest.approx(2.0, rel=1e-12)
