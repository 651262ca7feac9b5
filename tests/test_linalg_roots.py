"""Linear-algebra factors whose sign conventions jump, and roots whose slope is infinite
at 0, each against an independent oracle: brute-force scans of f along a line (float64)
and hand derivations. Found by probing functions written elsewhere: before, these were
smooth to the analysis, which then certified gradients at jumps and gave infinite radii
where a norm reached 0."""

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
