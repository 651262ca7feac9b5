"""The residual CNN, float32 accumulation, tangent support and the lexicographic kink
value, each against an independent oracle:

* the im2col convolutions against :func:`jax.lax.conv_general_dilated`;
* ``accumulate="float32"`` against one rounding of the exact result (integer-valued
  data, so that float32 accumulation is exact and the reference is known), ``"native"``
  against two roundings;
* :func:`models.tangent_support` against brute-force Jacobian rows;
* the lexicographic step against :func:`jaxrelu.ld_grad` (forward-mode lexicographic
  derivatives, a separate implementation) on a small MLP and a small residual CNN with
  planted ties, directly and through the engine's training step.

Tiny shapes; the expensive compiled pieces are module-scoped fixtures.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import jaxrelu
from jaxrelu.study import engine as T
from jaxrelu.study import models, ties
from jaxrelu.study.config import TrainConfig
from jaxrelu.study.data import Dataset

RNG = np.random.default_rng


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(tree)])


def integer_params(arch, seed, lo=-1, hi=2, dtype=jnp.float32):
    """Parameters with small integer entries: products and sums exact in float32, and
    exact zeros (ties) common -- the lexicographic rule has work to do."""
    params, state = models.init(arch, jax.random.PRNGKey(0), dtype)
    rng = RNG(seed)
    params = jax.tree.map(lambda v: jnp.asarray(rng.integers(lo, hi, v.shape), dtype), params)
    return params, state


# ----------------------------------------------------------------- residual CNN


RESNET = models.Architecture(
    kind="resnet", in_shape=(6, 6, 2), num_classes=3, channels=(2, 3), depth=1, init="he"
)


def test_resnet_layout_counts_convolutions_and_refuses_bad_shapes():
    blocks = models.resnet_blocks(RESNET)
    assert [(b.c_in, b.c_out, b.stride, b.proj) for b in blocks] == [
        (2, 2, 1, False),
        (2, 3, 2, True),
    ]
    assert models.n_activation_layers(RESNET) == 1 + 2 * len(blocks)
    params, _ = models.init(RESNET, jax.random.PRNGKey(0))
    convs = [params["layers"][0], *(c for layer in params["layers"][1:] for c in layer.values())]
    assert all(set(c) == {"w"} for c in convs)  # bias-free convolutions
    assert set(params["out"]) == {"w", "b"}
    # 9*2*2 + 2*(9*2*2) + 9*2*3 + 9*3*3 + 2*3 + 3*3 + 3
    assert models.n_params(RESNET) == 36 + 72 + 54 + 81 + 6 + 9 + 3
    with pytest.raises(ValueError, match=r"\(H, W, C\) images"):
        models.Architecture(kind="resnet", in_shape=(64,))
    with pytest.raises(ValueError, match="`channels`: 4 stages are too many for 6x6"):
        models.Architecture(kind="resnet", in_shape=(6, 6, 1), channels=(1, 1, 1, 1))


def _conv_ref(x, w, stride):
    pad = (w.shape[0] - 1) // 2
    return lax.conv_general_dilated(
        x.astype(jnp.float64), w.astype(jnp.float64), (stride, stride), [(pad, pad)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest",
    )  # fmt: skip


def test_resnet_convolutions_equal_lax_conv():
    """Every pre-activation of the residual CNN recomputed from the one before it with
    XLA's convolution (float64): stem, a stride-1 block, a stride-2 block with its 1x1
    projection. Random float32 data: float32 rounding of 9*C-term sums (< 1e-5)."""
    params, state = models.init(RESNET, jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 6, 2))
    _, _, pre = models.apply(RESNET, params, state, x)
    relu = lambda z: jnp.maximum(z, 0.0)
    L = params["layers"]
    checks = [(pre[0], _conv_ref(x, L[0]["w"], 1))]
    h0 = relu(pre[0])
    checks.append((pre[1], _conv_ref(h0, L[1]["conv1"]["w"], 1)))
    checks.append((pre[2], _conv_ref(relu(pre[1]), L[1]["conv2"]["w"], 1) + h0))
    h2 = relu(pre[2])
    checks.append((pre[3], _conv_ref(h2, L[2]["conv1"]["w"], 2)))
    short = _conv_ref(h2, L[2]["proj"]["w"], 2)
    checks.append((pre[4], _conv_ref(relu(pre[3]), L[2]["conv2"]["w"], 1) + short))
    assert [z.shape for z, _ in checks] == [(2, 6, 6, 2)] * 3 + [(2, 3, 3, 3)] * 2
    for got, ref in checks:
        np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------- accumulation


def test_float32_accumulation_rounds_once_and_native_twice():
    """Integer data whose dot products need more than float16's 11 bits: exact in float32
    and float64. ``"float32"`` must equal the exact value rounded once to float16;
    ``"native"`` the product rounded, then the bias addition rounded again. The two
    references differ on some entries, so each assertion can fail."""
    rng = RNG(3)
    h = jnp.asarray(rng.integers(0, 64, (64, 16)), jnp.float16)
    layer = {
        "w": jnp.asarray(rng.integers(-64, 64, (16, 8)), jnp.float16),
        "b": jnp.asarray(rng.integers(-2048, 2048, (8,)) + 0.5, jnp.float16),
    }
    exact = np.asarray(h, np.float64) @ np.asarray(layer["w"], np.float64)
    bias = np.asarray(layer["b"], np.float64)
    once = (exact + bias).astype(np.float16)
    twice = (exact.astype(np.float16).astype(np.float64) + bias).astype(np.float16)
    assert np.any(once != twice)
    wide = models.Architecture(in_shape=(16,), accumulate="float32")
    native = models.Architecture(in_shape=(16,))
    np.testing.assert_array_equal(np.asarray(models.linear(wide, layer, h)), once)
    np.testing.assert_array_equal(np.asarray(models.linear(native, layer, h)), twice)
    assert models.linear(wide, layer, h).dtype == jnp.float16
    # at 32 bits the two modes are one computation
    h32, l32 = h.astype(jnp.float32), jax.tree.map(lambda v: v.astype(jnp.float32), layer)
    np.testing.assert_array_equal(models.linear(wide, l32, h32), models.linear(native, l32, h32))


def test_float32_accumulation_in_the_residual_cnn():
    """The stem convolution of a float16 residual CNN with float32 accumulation equals the
    exact convolution rounded once (integer data: exact in float32)."""
    arch = models.Architecture(**{**RESNET.__dict__, "accumulate": "float32"})
    params, state = integer_params(arch, 4, -16, 16, jnp.float16)
    x = jnp.asarray(RNG(5).integers(0, 100, (2, 6, 6, 2)), jnp.float16)
    _, _, pre = models.apply(arch, params, state, x)
    ref = np.asarray(_conv_ref(x, params["layers"][0]["w"], 1))
    assert np.abs(ref).max() > 2048  # beyond float16's exact integers
    np.testing.assert_array_equal(np.asarray(pre[0]), ref.astype(np.float16))


def test_accumulate_mode_is_validated():
    with pytest.raises(ValueError, match="accumulate"):
        models.Architecture(accumulate="float64")
    with pytest.raises(ValueError, match="accumulate"):
        TrainConfig(accumulate="fused")


# ------------------------------------------------------------ tangent support


def _rows(arch, params, state, x, slopes):
    """Brute force: the Jacobian of every pre-activation with respect to all parameters,
    with the given derivative at the ties; per layer, whether each unit's row is nonzero."""
    jac = jax.jacrev(lambda p: models.apply(arch, p, state, x, slopes)[2])(params)
    return [
        np.asarray(
            jnp.any(
                jnp.stack(
                    [
                        jnp.any(g.reshape(*z.shape, -1) != 0, axis=-1)
                        for g in jax.tree.leaves(layer_jac)
                    ]
                ),
                axis=0,
            )
        )
        for z, layer_jac in zip(models.apply(arch, params, state, x)[2], jac)
    ]


def test_tangent_support_against_brute_force_rows():
    """Random weights (no cancellations) and images with zero background: where the
    support says False, every row is zero whatever slopes the ties take (conservative);
    with slope 1 at every tie a row is nonzero exactly where the support says True (the
    propagation rule is that of the tangents). The zeros must be there to test."""
    arch = models.Architecture(
        kind="resnet", in_shape=(6, 6, 1), num_classes=3, channels=(2, 2), depth=1, init="he"
    )
    params, state = models.init(arch, jax.random.PRNGKey(6))
    x = np.array(jax.random.uniform(jax.random.PRNGKey(7), (2, 6, 6, 1)))
    x[:, :, :3] = 0.0  # a blank left half: windows of zeros
    x = jnp.asarray(x)
    _, _, pre = models.apply(arch, params, state, x)
    support = [np.asarray(t) for t in models.tangent_support(arch, params, pre, x)]
    assert 0 < sum(int((~t).sum()) for t in support) < sum(t.size for t in support)
    ones = _rows(arch, params, state, x, 1.0)
    for t, nz in zip(support, ones):
        np.testing.assert_array_equal(t, nz)
    rng = RNG(8)
    for slopes in (0.0, [jnp.asarray(rng.uniform(size=z.shape), jnp.float32) for z in pre]):
        for t, nz in zip(support, _rows(arch, params, state, x, slopes)):
            assert not np.any(nz & ~t)


def test_tangent_support_is_all_true_with_own_parameters_and_refuses_the_cnn():
    mlp = models.Architecture(in_shape=(4,), width=3, depth=2)
    params, state = models.init(mlp, jax.random.PRNGKey(0))
    x = jnp.zeros((2, 4))
    _, _, pre = models.apply(mlp, params, state, x)
    assert all(bool(jnp.all(t)) for t in models.tangent_support(mlp, params, pre, x))
    cnn = models.Architecture(kind="cnn", in_shape=(4, 4, 1), channels=(2,))
    params, state = models.init(cnn, jax.random.PRNGKey(0))
    _, _, pre = models.apply(cnn, params, state, jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="max pooling"):
        models.tangent_support(cnn, params, pre, jnp.zeros((1, 4, 4, 1)))


def test_support_is_everywhere_only_where_every_unit_has_its_own_parameter():
    """The engine counts the zeros once where the support is all True: that must hold
    for every parameter and input (a blank image gives the residual network without batch
    norm structural zeros; with batch norm each unit's shift moves it)."""
    x = jnp.zeros((2, 6, 6, 1)).at[:, :, 3:].set(0.5)
    cases = {
        (False, "resnet"): False,
        (True, "resnet"): True,
        (False, "cnn"): False,
        (True, "cnn"): False,
    }
    for (bn, kind), everywhere in cases.items():
        arch = models.Architecture(
            kind=kind, in_shape=(6, 6, 1), num_classes=3, channels=(2, 2), depth=1,
            init="he", batchnorm=bn,
        )  # fmt: skip
        assert models.support_is_everywhere(arch) is everywhere, (kind, bn)
        if kind == "resnet":
            params, state = models.init(arch, jax.random.PRNGKey(6))
            _, _, pre = models.apply(arch, params, state, x)
            support = models.tangent_support(arch, params, pre, x)
            assert all(bool(jnp.all(t)) for t in support) is everywhere, (kind, bn)
    assert models.support_is_everywhere(models.Architecture(in_shape=(4,), width=3, depth=2))


# --------------------------------------------------------------- lexicographic


def test_first_signs():
    rows = {
        "a": jnp.array([[0.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]),
        "b": jnp.array([[-1.0], [-5.0], [3.0], [0.0]]),
    }
    assert ties.first_signs(rows).tolist() == [-1, 1, 1, 0]


MLP = models.Architecture(in_shape=(3,), num_classes=3, width=4, depth=2)


def _mlp_problem():
    """Integer weights and inputs with biases planted so that units of both hidden layers
    are exactly 0 on some example (and both signs of the gradient row occur)."""
    params, state = integer_params(MLP, 9, -2, 3)
    x = jnp.asarray(RNG(10).integers(-2, 3, (4, 3)), jnp.float32)
    z1 = x @ params["layers"][0]["w"]
    b1 = params["layers"][0]["b"].at[:2].set(-z1[2, :2]).at[2].set(-z1[3, 2])
    params["layers"][0]["b"] = b1
    h1 = jnp.maximum(x @ params["layers"][0]["w"] + b1, 0.0)
    z2 = h1 @ params["layers"][1]["w"]
    params["layers"][1]["b"] = params["layers"][1]["b"].at[1].set(-z2[2, 1]).at[3].set(-z2[3, 3])
    return params, state, x, jnp.array([0, 1, 2, 1])


def _problem(arch, params, state, x, y):
    def loss_of(p, slopes):
        logits, _, pre = models.apply(arch, p, state, x, slopes)
        return models.cross_entropy(logits, y), pre

    _, pre = loss_of(params, 0.0)
    support = models.tangent_support(arch, params, pre, x)
    cand = [(z == 0) & t for z, t in zip(pre, support)]
    lex = jax.jit(lambda p: ties.lexicographic_grad(loss_of, p, pre, cand))(params)
    oracle = jaxrelu.ld_grad(lambda p: loss_of(p, 0.0)[0])(params)
    at = {s: jax.grad(lambda p, s=s: loss_of(p, s)[0])(params) for s in (0.0, 1.0)}
    return pre, cand, lex, oracle, at


@pytest.fixture(scope="module")
def mlp_case():
    return _problem(MLP, *_mlp_problem())


@pytest.fixture(scope="module")
def resnet_case():
    arch = models.Architecture(
        kind="resnet", in_shape=(4, 4, 1), num_classes=3, channels=(2,), depth=1, init="he"
    )
    params, state = integer_params(arch, 11)
    x = jnp.asarray(RNG(12).integers(0, 3, (3, 4, 4, 1)), jnp.float32)
    return _problem(arch, params, state, x, jnp.array([0, 1, 2]))


@pytest.mark.parametrize("case", ["mlp_case", "resnet_case"])
def test_lexicographic_step_equals_ld_grad(case, request):
    """The rule's gradient equals jaxrelu.ld_grad's (forward-mode LD-derivatives, identity
    directions in jax.tree.leaves order) on networks whose planted ties change the
    gradient: both conventions (0 and 1) are wrong somewhere, the rule is not. Tolerance:
    forward and reverse mode sum the same float32 terms in different orders (~1e-7
    relative; 1e-5 absolute on gradients of order 1)."""
    _, cand, lex, oracle, at = request.getfixturevalue(case)
    assert sum(int(c.sum()) for c in cand) >= 3  # the planted ties are live
    assert sum(int(c.any()) for c in cand) >= 2  # in more than one layer
    np.testing.assert_allclose(flat(lex), flat(oracle), rtol=1e-5, atol=1e-5)
    for s in (0.0, 1.0):  # the ties matter: a convention would fail this test
        assert np.abs(flat(at[s]) - flat(oracle)).max() > 1e-2


def test_lexicographic_layers_are_resolved_in_order(mlp_case):
    """The second layer's ties depend on how the first layer's were resolved (slopes 0 or 1
    there give different answers), and the rule resolves them with the first layer's
    slopes in place: resolving the second layer alone, starting from the rule's first-layer
    slopes, reproduces the rule's second-layer slopes."""
    params, state, x, _ = _mlp_problem()

    def pre_of(p, slopes):
        return models.apply(MLP, p, state, x, slopes)[2]

    pre, cand, *_ = mlp_case
    zeros = [jnp.zeros(z.shape, z.dtype) for z in pre]
    second = [jnp.zeros_like(cand[0]), cand[1]]
    a = ties.resolve(pre_of, params, second, zeros)
    b = ties.resolve(pre_of, params, second, [cand[0].astype(pre[0].dtype), zeros[1]])
    assert not np.array_equal(np.asarray(a[1]), np.asarray(b[1]))
    full = ties.resolve(pre_of, params, cand, zeros)
    again = ties.resolve(pre_of, params, second, [full[0], zeros[1]])
    np.testing.assert_array_equal(np.asarray(full[1]), np.asarray(again[1]))
    for f, c in zip(full, cand):
        assert set(np.unique(np.asarray(f)[np.asarray(c)])) <= {0.0, 1.0}
        assert not np.any(np.asarray(f)[~np.asarray(c)])  # other entries kept at 0


@pytest.fixture(scope="module")
def engine_case():
    """One engine step (SGD, lr 1, no momentum) of the runs (1.0, "lexicographic") on the
    MLP case: the update is minus the gradient."""
    params, state, x, y = _mlp_problem()
    ds = Dataset("planted", np.asarray(x), np.asarray(y), np.asarray(x), np.asarray(y), 3)
    cfg = TrainConfig(
        width=4, depth=2, kink_grads=(1.0, "lexicographic"), learning_rate=1.0, momentum=0.0,
        batch_size=4, epochs=1, instrument=True,
    )  # fmt: skip
    spec = T.EngineSpec.of(cfg, ds)
    assert spec.lexicographic == (1,)
    st = T.init_state(spec, jax.random.PRNGKey(0), cfg.kink_grads)
    st = st._replace(params=jax.tree.map(lambda v: jnp.stack([v, v]), params))
    new, rec = jax.jit(T.train_step, static_argnums=0)(spec, st, (x, y))
    grads = jax.tree.map(lambda a, b: a - b, st.params, new.params)
    return params, state, x, y, grads, rec


def test_engine_lexicographic_run_steps_by_ld_grad(engine_case):
    params, state, x, y, grads, rec = engine_case

    def loss(p):
        return models.cross_entropy(models.apply(MLP, p, state, x, 0.0)[0], y)

    def loss_at_one(p):
        return models.cross_entropy(models.apply(MLP, p, state, x, 1.0)[0], y)

    oracle = flat(jaxrelu.ld_grad(loss)(params))
    lex = flat(jax.tree.map(lambda g: g[1], grads))
    conv = flat(jax.tree.map(lambda g: g[0], grads))
    np.testing.assert_allclose(lex, oracle, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conv, flat(jax.grad(loss_at_one)(params)), rtol=1e-6, atol=1e-6)
    assert np.abs(conv - oracle).max() > 1e-2
    assert np.all(np.asarray(rec.live_ties) > 0)  # both runs saw the live ties


def test_lexicographic_costs_nothing_without_ties():
    """Without live ties (float32, digits-like data, He init: biases 0 but no exact zeros
    with a nonzero row) the lexicographic run is the ReLU'(0) = 0 run, bit for bit, over
    a whole epoch; JSON rows name it."""
    rng = RNG(13)
    x = rng.uniform(0.1, 1.0, (96, 4)).astype(np.float32)
    y = rng.integers(0, 3, 96)
    ds = Dataset("positive", x, y, x[:32], y[:32], 3)
    cfg = TrainConfig(width=8, depth=2, init="he", kink_grads=(0.0, "lexicographic"),
                      batch_size=32, epochs=1)  # fmt: skip
    hist = T.train(cfg, ds, progress=False)
    assert hist.live_ties.sum() == 0
    assert np.all(hist.weight_l1[:, 1] == 0)
    assert [r["kink_grad"] for r in hist.runs()] == [0.0, "lexicographic"]
    assert np.isnan(hist.kink_grads[1])


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"model": "cnn"}, "needs a ReLU network without max pooling"),
        ({"activation": "abs"}, "activation 'abs'"),
    ],
)
def test_lexicographic_refused_where_unsupported(fields, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(kink_grads=(0.0, "lexicographic"), **fields)
    with pytest.raises(ValueError, match=r"`kink_grads\[1\]` must be a number or 'lexicographic'"):
        TrainConfig(kink_grads=(0.0, "lexico"))


def test_optimizer_is_plain_sgd_in_the_engine_case():
    """Guards the engine oracle above: lr 1, no momentum, no weight decay is new = old -
    grad (so the difference of parameters is the gradient)."""
    opt = T.make_optimizer("sgd", 1.0, 0.0, 0.0)
    g = {"w": jnp.array([0.5, -2.0])}
    upd, _ = opt.update(g, opt.init(g), g)
    np.testing.assert_array_equal(optax.apply_updates(g, upd)["w"], [0.0, 0.0])
